//! Held execs: the kernel queued SIGSTOP at exec, so the new image sits before its first
//! instruction. Here we read what it is about to do from /proc (race-free: it cannot run) and
//! let it go (SIGCONT) or kill it (SIGKILL). Signals go through a pidfd taken before the
//! reads, so a pid recycled in between cannot receive them.

use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

/// A held process, pinned by a pidfd.
pub struct Held {
    pub pid: u32,
    pidfd: OwnedFd,
}

/// What the held image is about to run with (the engine judges it).
pub use guard_engine::engine::HeldView;

impl Held {
    pub fn open(pid: u32) -> io::Result<Self> {
        // SAFETY: pidfd_open(2) with no flags; the result is a new fd we own.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor owned by nobody else.
        Ok(Held { pid, pidfd: unsafe { OwnedFd::from_raw_fd(fd as i32) } })
    }

    fn signal(&self, sig: i32) -> io::Result<()> {
        // SAFETY: pidfd_send_signal(2) on our pidfd, no siginfo, no flags.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }

    /// Let it run. A SIGCONT sent before the stop took effect also discards the pending stop.
    pub fn release(&self) -> io::Result<()> {
        self.signal(libc::SIGCONT)
    }

    pub fn kill(&self) -> io::Result<()> {
        self.signal(libc::SIGKILL)
    }

    /// Read argv, environment, cwd and exe while it is stopped.
    pub fn view(&self) -> io::Result<HeldView> {
        let argv = split_nul(&std::fs::read(format!("/proc/{}/cmdline", self.pid))?);
        let env = split_nul(&std::fs::read(format!("/proc/{}/environ", self.pid)).unwrap_or_default())
            .into_iter()
            .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        let link =
            |what: &str| std::fs::read_link(format!("/proc/{}/{what}", self.pid)).ok().map(|p| p.display().to_string());
        Ok(HeldView { argv, env, cwd: link("cwd"), exe: link("exe") })
    }
}

/// NUL-separated strings (/proc/PID/cmdline, environ), empty ones dropped.
pub fn split_nul(raw: &[u8]) -> Vec<String> {
    raw.split(|&b| b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
}

/// The state letter of /proc/PID/stat (after the parenthesised comm, which may hold spaces).
pub fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_state(&stat)
}

fn parse_state(stat: &str) -> Option<char> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_after_comm_with_spaces_and_parens() {
        assert_eq!(parse_state("123 (my (odd) name) T 1 2 3"), Some('T'));
        assert_eq!(parse_state("5 (sh) S 1"), Some('S'));
        assert_eq!(parse_state("garbage"), None);
    }

    #[test]
    fn nul_split_drops_empty_tail() {
        assert_eq!(split_nul(b"rm\0-rf\0/srv\0"), vec!["rm", "-rf", "/srv"]);
    }

    #[test]
    fn holds_and_releases_a_real_stopped_child() {
        use std::time::{Duration, Instant};
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let held = Held::open(child.id()).unwrap();
        held.signal(libc::SIGSTOP).unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        while process_state(child.id()) != Some('T') && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(process_state(child.id()), Some('T'));
        let view = held.view().unwrap();
        assert_eq!(view.argv, vec!["sleep", "5"]);
        held.release().unwrap();
        held.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success());
    }
}
