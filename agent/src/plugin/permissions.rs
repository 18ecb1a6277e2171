//! Whether a plugin file may be loaded at all, judged before loading it.
//!
//! A plugin runs with the agent's rights, so anyone who can replace the file, or write into
//! its directory, can run code as the agent. A file or directory writable by group or others,
//! or owned by someone other than the agent's user or root, is refused. This check must run
//! before the library is opened: opening it already runs its code.

use std::path::Path;

use super::error::LoadError;

/// Checks the file and the directory holding it (after symlinks are resolved: `path` is
/// canonical).
pub fn check(path: &Path) -> Result<(), LoadError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;

        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        let dir = path.parent().unwrap_or(Path::new("/"));
        for (what, item) in [("file", path), ("directory", dir)] {
            let meta = std::fs::metadata(item).map_err(|e| LoadError::Unreadable(e.to_string()))?;
            judge(what, item, meta.mode(), meta.uid(), me)?;
        }
    }
    Ok(())
}

/// The rule itself, on a mode and an owner.
pub fn judge(what: &str, item: &Path, mode: u32, owner: u32, me: u32) -> Result<(), LoadError> {
    if mode & 0o022 != 0 {
        return Err(LoadError::UnsafePermissions(format!(
            "the {what} {} is writable by {} (mode {:o}); run `chmod go-w {}`",
            item.display(),
            match (mode & 0o020 != 0, mode & 0o002 != 0) {
                (true, true) => "group and others",
                (true, false) => "its group",
                _ => "others",
            },
            mode & 0o7777,
            item.display()
        )));
    }
    if owner != me && owner != 0 {
        return Err(LoadError::UnsafePermissions(format!(
            "the {what} {} is owned by uid {owner}, not by this user (uid {me}) or root; run \
             `chown` to change its owner",
            item.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writable_by_others_or_group_is_refused() {
        let p = Path::new("/x/lib.so");
        assert!(judge("file", p, 0o100755, 1000, 1000).is_ok());
        let e = judge("file", p, 0o100757, 1000, 1000).unwrap_err().to_string();
        assert!(e.contains("writable by others") && e.contains("chmod go-w /x/lib.so"), "{e}");
        let e = judge("directory", Path::new("/x"), 0o40775, 1000, 1000).unwrap_err();
        assert!(e.to_string().contains("the directory /x is writable by its group"), "{e}");
    }

    #[test]
    fn owner_must_be_this_user_or_root() {
        let p = Path::new("/x/lib.so");
        assert!(judge("file", p, 0o755, 0, 1000).is_ok());
        let e = judge("file", p, 0o755, 1001, 1000).unwrap_err().to_string();
        assert!(e.contains("owned by uid 1001, not by this user (uid 1000)"), "{e}");
    }
}
