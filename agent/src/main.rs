//! The `tally` binary: everything lives in the library; this only runs it.

fn main() -> std::process::ExitCode {
    one_malloc_arena();
    tally_agent::cli::main()
}

/// Keeps the C library's allocator to one arena. By default glibc gives each thread that
/// allocates its own arena, and memory one thread freed is not reused by another: a large
/// MSP's first sync held about a fifth more memory than its data needed, in arenas of threads
/// that had finished with it. `MALLOC_ARENA_MAX`, when set, is left to decide.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only changes the allocator's tuning; it is called before any other
        // thread exists, and a refused setting leaves the default in place.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}
