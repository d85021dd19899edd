//! What the engine needs from the machine: clocks, /proc, session cgroups, the kernel's
//! session marks. The daemon implements [`Machine`] against the real system; tests and
//! benchmarks use a fake (or [`Offline`]).

use std::{
    io,
    path::{Path, PathBuf},
};

use guard_common::{DevIno, SessionState};

use crate::confinement::AppliedConfinement;
use crate::destructive::{HeldFiles, InputError};

/// Both clocks at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Now {
    /// CLOCK_MONOTONIC in ns: the kernel's `bpf_ktime_get_ns()` clock (hold stamps).
    pub mono_ns: u64,
    /// Wall clock, ns since the Unix epoch.
    pub wall_ns: i128,
}

/// What the held image is about to run with, read from /proc while it is stopped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeldView {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub exe: Option<String>,
}

/// A session cgroup and what `guard launch` recorded on it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionCgroup {
    pub name: String,
    pub path: PathBuf,
    /// The launch directory `guard launch` recorded, if it did.
    pub workspace: Option<PathBuf>,
    /// What the latest `guard launch` applied; `None` for cgroups it did not start.
    pub confinement: Option<AppliedConfinement>,
}

/// The machine as the engine's decisions see it. Every method reads; nothing here changes
/// the machine except [`Machine::pin_held`], which only takes a handle on a held process so
/// the daemon's later signals cannot reach a recycled pid.
pub trait Machine {
    fn now(&self) -> Now;
    /// The session's name (its cgroup directory's), cheap: called for every event.
    fn session_name(&self, session: u64) -> Option<String>;
    /// The session's cgroup with its recorded workspace and confinement (first sight,
    /// escalation).
    fn session_cgroup(&self, session: u64) -> Option<SessionCgroup>;
    /// The kernel's marks for the session (credential touched, escalation flags).
    fn kernel_session(&self, session: u64) -> Option<SessionState>;
    /// `/proc/PID/cwd`.
    fn cwd(&self, pid: u32) -> io::Result<PathBuf>;
    /// `/proc/PID/cmdline`.
    fn cmdline(&self, pid: u32) -> Option<Vec<String>>;
    /// Device and inode of `path` (following symlinks).
    fn identity(&self, path: &Path) -> io::Result<DevIno>;
    /// The text of `path` if it is the file `file` and at most `max_len` bytes long.
    fn read_identified(&self, path: &Path, file: DevIno, max_len: u64) -> Option<String>;
    /// Take a handle on a held process (pidfd) and wait for its stop; `Err` when it is gone.
    fn pin_held(&self, pid: u32) -> io::Result<()>;
    /// argv, environment, cwd and exe of a pinned held process; `Err` when /proc cannot be
    /// read (the engine then fails closed).
    fn held_view(&self, pid: u32) -> io::Result<HeldView>;
    /// The process still runs (not gone, not a zombie).
    fn process_alive(&self, pid: u32) -> bool;
    /// The file a held interpreter's script argument names, as `pid` resolves it: identity and
    /// the real file's name.
    fn script(&self, pid: u32, argument: &str) -> Option<(DevIno, String)>;
    /// Only root can put a library in `dir` (as `pid` resolves it).
    fn trusted_library_dir(&self, pid: u32, dir: &str) -> bool;
    /// A file a held process will read (its script, a config file): `path` is absolute as
    /// `pid` sees it (its root and mounts), at most `max_len` bytes (`true`: there was more).
    /// Only regular files; never blocks. None here by default.
    fn read_held_file(&self, pid: u32, path: &str, max_len: u64) -> Result<(Vec<u8>, bool), InputError> {
        let _ = (pid, path, max_len);
        Err(InputError::Unavailable)
    }
}

/// A machine with nothing on it but a clock: no sessions, no /proc, nothing held. For
/// benchmarks and tools that replay recorded events.
#[derive(Clone, Copy, Debug, Default)]
pub struct Offline {
    pub now: Now,
}

fn absent() -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, "offline: no process table")
}

impl Machine for Offline {
    fn now(&self) -> Now {
        self.now
    }
    fn session_name(&self, _: u64) -> Option<String> {
        None
    }
    fn session_cgroup(&self, _: u64) -> Option<SessionCgroup> {
        None
    }
    fn kernel_session(&self, _: u64) -> Option<SessionState> {
        None
    }
    fn cwd(&self, _: u32) -> io::Result<PathBuf> {
        Err(absent())
    }
    fn cmdline(&self, _: u32) -> Option<Vec<String>> {
        None
    }
    fn identity(&self, _: &Path) -> io::Result<DevIno> {
        Err(absent())
    }
    fn read_identified(&self, _: &Path, _: DevIno, _: u64) -> Option<String> {
        None
    }
    fn pin_held(&self, _: u32) -> io::Result<()> {
        Err(absent())
    }
    fn held_view(&self, _: u32) -> io::Result<HeldView> {
        Err(absent())
    }
    fn process_alive(&self, _: u32) -> bool {
        false
    }
    fn script(&self, _: u32, _: &str) -> Option<(DevIno, String)> {
        None
    }
    fn trusted_library_dir(&self, _: u32, _: &str) -> bool {
        false
    }
}

/// The files of one held process, through the machine, for the destructive evaluator.
pub(crate) struct HeldFileReader<'a> {
    pub machine: &'a dyn Machine,
    pub pid: u32,
}

impl HeldFiles for HeldFileReader<'_> {
    fn read(&self, path: &str, max_len: u64) -> Result<(Vec<u8>, bool), InputError> {
        self.machine.read_held_file(self.pid, path, max_len)
    }
}

/// [`crate::consumer::Resolver`] for one held process, through the machine.
pub(crate) struct HeldResolver<'a> {
    pub machine: &'a dyn Machine,
    pub pid: u32,
}

impl crate::consumer::Resolver for HeldResolver<'_> {
    fn script(&self, argument: &str) -> Option<(DevIno, String)> {
        self.machine.script(self.pid, argument)
    }

    fn trusted_library_dir(&self, dir: &str) -> bool {
        self.machine.trusted_library_dir(self.pid, dir)
    }
}
