//! Process helpers shared by the tasks.

use std::{
    ffi::{OsStr, OsString},
    fmt::Write as _,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::atomic::{AtomicI32, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// Prints an xtask progress line (stderr, so stdout stays the children's).
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => { eprintln!("[xtask] {}", format_args!($($arg)*)) };
}

/// The cargo that runs us (cargo sets `CARGO`), else `cargo` from PATH.
pub fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `CI` set to anything but "", "0" or "false".
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// A shell-like rendering of a command, for logs.
pub fn display(cmd: &Command) -> String {
    let mut out = String::new();
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            let _ = write!(out, "{}={} ", key.to_string_lossy(), quote(value));
        }
    }
    out.push_str(&quote(cmd.get_program()));
    for arg in cmd.get_args() {
        out.push(' ');
        out.push_str(&quote(arg));
    }
    out
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:+,@%".contains(c)) {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Runs a command with inherited stdio; fails unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = display(cmd);
    note!("$ {shown}");
    let status = cmd.status().with_context(|| format!("cannot start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// Runs a command and returns its stdout; fails (with its stderr) unless it exits 0.
pub fn output(cmd: &mut Command) -> Result<String> {
    let shown = display(cmd);
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("cannot start `{shown}`"))?;
    if !out.status.success() {
        bail!("`{shown}` failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    String::from_utf8(out.stdout).with_context(|| format!("`{shown}` printed non-UTF-8 output"))
}

/// First executable named `name` on PATH.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| is_executable(p))
}

pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Puts `dir` first on this process's PATH (inherited by every child) unless already on it.
pub fn prepend_path(dir: &Path) -> Result<()> {
    let current = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&current).any(|p| p == dir) {
        return Ok(());
    }
    let joined = std::env::join_paths(std::iter::once(dir.to_path_buf()).chain(std::env::split_paths(&current)))
        .context("cannot extend PATH")?;
    // SAFETY: xtask sets PATH only from its main thread, before it starts any other thread.
    unsafe { std::env::set_var("PATH", joined) };
    Ok(())
}

/// The build's target directory (honours CARGO_TARGET_DIR and cargo config).
pub fn target_dir() -> Result<PathBuf> {
    let json = output(
        Command::new(cargo())
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .current_dir(crate::workspace_root()),
    )?;
    let value: serde_json::Value = serde_json::from_str(&json).context("cannot parse `cargo metadata` output")?;
    let dir = value
        .get("target_directory")
        .and_then(|v| v.as_str())
        .context("`cargo metadata` output has no target_directory")?;
    Ok(PathBuf::from(dir))
}

static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    SIGNAL.store(sig, Ordering::SeqCst);
}

/// From now on SIGINT/SIGTERM only record themselves (see `pending_signal`), so xtask can
/// clean up (stop children, remove cgroups) instead of dying.
pub fn catch_signals() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores into an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

pub fn pending_signal() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}

pub fn kill(pid: i32, sig: libc::c_int) {
    // SAFETY: plain syscall; errors (e.g. ESRCH for an exited process) are harmless here.
    unsafe { libc::kill(pid, sig) };
}

/// Waits for `child` at most `timeout`; `None` when it is still running.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().context("cannot wait for child process")? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// How a supervised command ended.
pub enum Outcome {
    Exited(ExitStatus),
    TimedOut,
    Interrupted(i32),
}

/// Runs `cmd` in its own process group with a deadline; on timeout or SIGINT/SIGTERM to xtask
/// the whole group gets SIGTERM, then SIGKILL 10 s later. Needs `catch_signals` first.
pub fn run_supervised(cmd: &mut Command, timeout: Option<Duration>) -> Result<Outcome> {
    let shown = display(cmd);
    note!("$ {shown}");
    let mut child = cmd.process_group(0).spawn().with_context(|| format!("cannot start `{shown}`"))?;
    let group = i32::try_from(child.id()).context("child pid out of range")?;
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        if let Some(status) = child.try_wait().context("cannot wait for child process")? {
            return Ok(Outcome::Exited(status));
        }
        let outcome = if let Some(sig) = pending_signal() {
            Outcome::Interrupted(sig)
        } else if deadline.is_some_and(|d| Instant::now() >= d) {
            Outcome::TimedOut
        } else {
            thread::sleep(Duration::from_millis(100));
            continue;
        };
        kill(-group, libc::SIGTERM);
        if wait_timeout(&mut child, Duration::from_secs(10))?.is_none() {
            kill(-group, libc::SIGKILL);
            let _ = child.wait();
        }
        return Ok(outcome);
    }
}

/// Last `max` bytes of a (log) file, for error messages.
pub fn tail_of(path: &Path, max: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(max);
            String::from_utf8_lossy(&bytes[start..]).trim().to_string()
        }
        Err(err) => format!("(cannot read {}: {err})", path.display()),
    }
}
