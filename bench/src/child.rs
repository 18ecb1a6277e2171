//! Running the real `tally` binary as a child process and measuring it: wall time, CPU time
//! (user and system, from `wait4`'s resource usage) and peak resident memory (`ru_maxrss`).
//!
//! Linux gives a process that calls `exec` the peak memory of the process it was before, so a
//! child started straight from the benchmark (which holds the whole generated MSP and the
//! emulator) would report the benchmark's size, not its own. Each measured child is therefore
//! started by a small launcher (this binary again, see [`LAUNCHER`]) that runs `tally`, reaps it
//! and writes its figures to a file.
//!
//! This module owns the child processes the benchmark starts and reaps each of them itself, so
//! that the kernel's figures are the child's alone. It must never signal or reap any process it
//! did not start, and never leave one running: a long-lived agent is stopped when its handle is
//! dropped.

use std::ffi::OsStr;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// What one finished child cost.
#[derive(Debug, Clone)]
pub struct Measured {
    pub wall: Duration,
    /// User plus system CPU time of the child and its threads.
    pub cpu: Duration,
    /// Peak resident set size, in bytes.
    pub max_rss: u64,
    pub stdout: Vec<u8>,
}

/// How to run tally against one working directory.
#[derive(Debug, Clone)]
pub struct Tally {
    pub bin: PathBuf,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Tally {
    fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut command = Command::new(&self.bin);
        command
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("TALLY_CONFIG")
            .env_remove("RUST_LOG")
            .env_remove("TALLY_LOG")
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        for (name, value) in &self.env {
            command.env(name, value);
        }
        command
    }

    /// Where the stderr of the child `label` goes.
    pub fn log_path(&self, label: &str) -> PathBuf {
        self.dir.join(format!("{label}.log"))
    }

    /// Runs `tally ARGS` to its end, through the launcher, and measures it; a non-zero exit is
    /// an error that quotes the end of the child's log.
    pub fn run(&self, label: &str, args: &[&str]) -> anyhow::Result<Measured> {
        let log_path = self.log_path(label);
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let figures_path = self.dir.join(format!("{label}.rusage"));
        let launcher = std::env::current_exe().context("cannot find the benchmark's executable")?;
        let mut command = self.command(args);
        let tally_args: Vec<_> = command.get_args().map(|a| a.to_os_string()).collect();
        let mut launched = Command::new(launcher);
        launched
            .arg(LAUNCHER)
            .arg(&figures_path)
            .arg(&self.bin)
            .args(&tally_args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        for (name, value) in command.get_envs() {
            match value {
                Some(value) => launched.env(name, value),
                None => launched.env_remove(name),
            };
        }
        command = launched;
        let mut child =
            command.spawn().with_context(|| format!("cannot start {}", self.bin.display()))?;
        let mut stdout = child.stdout.take().context("the child's stdout is not piped")?;
        // Drain stdout while the child runs: a large report would otherwise fill the pipe.
        let reader = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            stdout.read_to_end(&mut bytes).map(|_| bytes)
        });
        let status = child.wait().context("cannot wait for the launcher")?;
        let stdout = match reader.join() {
            Ok(read) => read.context("cannot read the child's stdout")?,
            Err(_) => bail!("the thread reading tally's output panicked"),
        };
        if !status.success() {
            bail!(
                "`tally {}` failed ({status}); the end of its log, {}:\n{}",
                args.join(" "),
                log_path.display(),
                tail(&log_path, 20)
            );
        }
        let figures = std::fs::read_to_string(&figures_path).with_context(|| {
            format!("the launcher left no figures in {}", figures_path.display())
        })?;
        let figures = ChildFigures::parse(&figures)
            .with_context(|| format!("{}: unreadable figures", figures_path.display()))?;
        Ok(Measured { wall: figures.wall, cpu: figures.cpu, max_rss: figures.max_rss, stdout })
    }

    /// Starts `tally ARGS` in the background (for `tally run`).
    pub fn spawn(&self, label: &str, args: &[&str]) -> anyhow::Result<Background> {
        let log_path = self.log_path(label);
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let child = self
            .command(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        Ok(Background { pid: child.id() as libc::pid_t, log: log_path, reaped: false })
    }
}

/// A child running in the background; stopped with SIGTERM (then SIGKILL) when dropped.
pub struct Background {
    pid: libc::pid_t,
    log: PathBuf,
    reaped: bool,
}

impl Background {
    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Whether the child has exited already (it is reaped if so).
    pub fn exited(&mut self) -> bool {
        if self.reaped {
            return true;
        }
        let mut status = 0;
        // SAFETY: `status` is a valid place for the kernel to write to, and `pid` is our child.
        let reaped = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
        if reaped == self.pid || reaped < 0 {
            self.reaped = true;
        }
        self.reaped
    }

    /// Asks the child to stop (SIGTERM) and waits up to `grace` before killing it.
    pub fn stop(&mut self, grace: Duration) {
        if self.exited() {
            return;
        }
        // SAFETY: sending a signal to our own child, which has not been reaped yet.
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.exited() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: as above; the child did not stop in time.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        let _ = wait_for(self.pid);
        self.reaped = true;
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(30));
    }
}

/// The first argument that makes this binary the launcher of one measured child:
/// `tally-bench __measure FIGURES PROGRAM [ARGS…]`.
pub const LAUNCHER: &str = "__measure";

/// What the launcher measured of its child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ChildFigures {
    wall: Duration,
    cpu: Duration,
    max_rss: u64,
}

impl ChildFigures {
    /// `wall_us cpu_us max_rss_bytes`
    fn render(&self) -> String {
        format!("{} {} {}\n", self.wall.as_micros(), self.cpu.as_micros(), self.max_rss)
    }

    fn parse(text: &str) -> Option<ChildFigures> {
        let mut numbers = text.split_whitespace().map(|n| n.parse::<u64>().ok());
        let (wall, cpu, max_rss) = (numbers.next()??, numbers.next()??, numbers.next()??);
        Some(ChildFigures {
            wall: Duration::from_micros(wall),
            cpu: Duration::from_micros(cpu),
            max_rss,
        })
    }
}

/// The launcher: runs PROGRAM with ARGS (inheriting stdin, stdout and stderr), reaps it, writes
/// its figures to FIGURES and exits as it did. Started by [`Tally::run`], it is small when it
/// starts PROGRAM, so PROGRAM's peak memory is its own.
pub fn launcher(args: &[std::ffi::OsString]) -> std::process::ExitCode {
    use std::process::ExitCode;
    let [figures_path, program, rest @ ..] = args else {
        eprintln!("tally-bench {LAUNCHER}: usage: tally-bench {LAUNCHER} FIGURES PROGRAM [ARGS…]");
        return ExitCode::from(2);
    };
    let started = Instant::now();
    let child = match Command::new(program).args(rest).spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!("tally-bench {LAUNCHER}: cannot start {}: {e}", program.to_string_lossy());
            return ExitCode::from(127);
        }
    };
    let (status, usage) = match wait_for(child.id() as libc::pid_t) {
        Ok(waited) => waited,
        Err(e) => {
            eprintln!("tally-bench {LAUNCHER}: cannot wait for the child: {e}");
            return ExitCode::FAILURE;
        }
    };
    let figures = ChildFigures {
        wall: started.elapsed(),
        cpu: cpu_time(&usage),
        max_rss: max_rss_bytes(&usage),
    };
    if let Err(e) = std::fs::write(figures_path, figures.render()) {
        eprintln!("tally-bench {LAUNCHER}: cannot write {}: {e}", figures_path.to_string_lossy());
        return ExitCode::FAILURE;
    }
    if libc::WIFEXITED(status) {
        ExitCode::from(libc::WEXITSTATUS(status) as u8)
    } else {
        eprintln!("tally-bench {LAUNCHER}: the child ended with {}", describe_status(status));
        ExitCode::FAILURE
    }
}

/// Waits for child `pid` and returns its raw status and resource usage.
fn wait_for(pid: libc::pid_t) -> io::Result<(libc::c_int, libc::rusage)> {
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is plain old data; all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers are to live locals the kernel may write; `pid` is our child.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            return Ok((status, usage));
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

fn describe_status(status: libc::c_int) -> String {
    if libc::WIFEXITED(status) {
        format!("exit code {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("wait status {status}")
    }
}

fn cpu_time(usage: &libc::rusage) -> Duration {
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Linux reports `ru_maxrss` in kilobytes.
fn max_rss_bytes(usage: &libc::rusage) -> u64 {
    (usage.ru_maxrss.max(0) as u64) * 1024
}

/// The last `lines` lines of a log file, for error messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launcher_figures_round_trip() {
        let figures = ChildFigures {
            wall: Duration::from_micros(1_250_000),
            cpu: Duration::from_micros(900_001),
            max_rss: 61_234_176,
        };
        assert_eq!(ChildFigures::parse(&figures.render()), Some(figures));
        assert_eq!(ChildFigures::parse("12 34"), None);
        assert_eq!(ChildFigures::parse("a b c"), None);
    }
}
