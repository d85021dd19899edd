//! The processes the daemon looks at and signals: held tasks (pidfds), /proc, files a
//! session read. Behind [`Procs`] so the daemon's loop is tested against [`fake::FakeProcs`];
//! [`RealProcs`] is the machine.

use std::{
    collections::HashMap,
    io,
    path::{Path, PathBuf},
};

use guard_common::DevIno;
use guard_engine::destructive::InputError;
use guard_engine::engine::{HeldView, Signal};

use crate::hold::{self, Held};

pub trait Procs {
    /// Take a pidfd on a held task and wait (briefly) for its stop to take effect.
    fn pin(&mut self, pid: u32) -> io::Result<()>;
    /// argv, environment, cwd and exe of a pinned held task.
    fn view(&self, pid: u32) -> io::Result<HeldView>;
    /// Continue or kill the task through its pin (taking one if there is none); the pin is
    /// given up.
    fn signal(&mut self, pid: u32, signal: Signal) -> io::Result<()>;
    /// Give up the pin of a task that is gone.
    fn unpin(&mut self, pid: u32);
    /// The state letter of /proc/PID/stat.
    fn state(&self, pid: u32) -> Option<char>;
    fn cwd(&self, pid: u32) -> io::Result<PathBuf>;
    fn cmdline(&self, pid: u32) -> Option<Vec<String>>;
    /// The cgroup v2 path of the process (`0::` line of /proc/PID/cgroup).
    fn cgroup(&self, pid: u32) -> Option<String>;
    fn identity(&self, path: &Path) -> io::Result<DevIno>;
    /// The text of `path` if it is the file `file` and at most `max_len` bytes long.
    fn read_identified(&self, path: &Path, file: DevIno, max_len: u64) -> Option<String>;
    /// The file a held interpreter's script argument names: identity and the real name.
    fn script(&self, pid: u32, argument: &str) -> Option<(DevIno, String)>;
    /// The directory and every parent are root's, and nobody else can replace what is in
    /// them (a sticky parent such as /tmp only lets the owner replace its entries).
    fn trusted_library_dir(&self, pid: u32, dir: &str) -> bool;
    /// A file a held task will read, as it sees it (see [`crate::held_files`]).
    fn read_held_file(&self, pid: u32, path: &str, max_len: u64) -> Result<(Vec<u8>, bool), InputError> {
        let _ = (pid, path, max_len);
        Err(InputError::Unavailable)
    }
}

/// The real machine; pins are pidfds.
#[derive(Default)]
pub struct RealProcs {
    pins: HashMap<u32, Held>,
}

impl RealProcs {
    /// A path as the process would resolve it (relative to its working directory).
    fn resolve_from_cwd(pid: u32, path: &str) -> PathBuf {
        if path.starts_with('/') { PathBuf::from(path) } else { PathBuf::from(format!("/proc/{pid}/cwd")).join(path) }
    }
}

impl Procs for RealProcs {
    fn pin(&mut self, pid: u32) -> io::Result<()> {
        // No wait for the stop: the kernel queued the SIGSTOP before it sent the event, and
        // the task runs no user code before it stops, so /proc already shows what it will
        // run, and a release (SIGCONT) discards the pending stop. Waiting for the 'T' state
        // in 200 µs steps was most of the hold round trip.
        let held = Held::open(pid)?;
        self.pins.insert(pid, held);
        Ok(())
    }

    fn view(&self, pid: u32) -> io::Result<HeldView> {
        match self.pins.get(&pid) {
            Some(held) => held.view(),
            None => Err(io::Error::other(format!("pid {pid} is not pinned"))),
        }
    }

    fn signal(&mut self, pid: u32, signal: Signal) -> io::Result<()> {
        let held = match self.pins.remove(&pid) {
            Some(held) => held,
            None => Held::open(pid)?,
        };
        match signal {
            Signal::Continue => held.release(),
            Signal::Kill => held.kill(),
        }
    }

    fn unpin(&mut self, pid: u32) {
        self.pins.remove(&pid);
    }

    fn state(&self, pid: u32) -> Option<char> {
        hold::process_state(pid)
    }

    fn cwd(&self, pid: u32) -> io::Result<PathBuf> {
        std::fs::read_link(format!("/proc/{pid}/cwd"))
    }

    fn cmdline(&self, pid: u32) -> Option<Vec<String>> {
        std::fs::read(format!("/proc/{pid}/cmdline")).ok().map(|raw| hold::split_nul(&raw))
    }

    fn cgroup(&self, pid: u32) -> Option<String> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        text.lines().find_map(|line| line.strip_prefix("0::")).map(str::to_string)
    }

    fn identity(&self, path: &Path) -> io::Result<DevIno> {
        std::fs::metadata(path).map(|meta| crate::scan::identity(&meta))
    }

    fn read_identified(&self, path: &Path, file: DevIno, max_len: u64) -> Option<String> {
        let meta = std::fs::metadata(path).ok()?;
        if crate::scan::identity(&meta) != file || meta.len() > max_len {
            return None;
        }
        std::fs::read_to_string(path).ok()
    }

    fn script(&self, pid: u32, argument: &str) -> Option<(DevIno, String)> {
        let real = std::fs::canonicalize(Self::resolve_from_cwd(pid, argument)).ok()?;
        let meta = std::fs::metadata(&real).ok()?;
        Some((crate::scan::identity(&meta), real.file_name()?.to_str()?.to_string()))
    }

    fn trusted_library_dir(&self, pid: u32, dir: &str) -> bool {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        let Ok(real) = std::fs::canonicalize(Self::resolve_from_cwd(pid, dir)) else { return false };
        real.ancestors().all(|path| {
            std::fs::metadata(path).is_ok_and(|meta| {
                let mode = meta.permissions().mode();
                meta.uid() == 0 && (mode & 0o022 == 0 || (path != real && mode & 0o1000 != 0))
            })
        })
    }

    fn read_held_file(&self, pid: u32, path: &str, max_len: u64) -> Result<(Vec<u8>, bool), InputError> {
        crate::held_files::read(pid, path, max_len)
    }
}

#[cfg(test)]
pub mod fake {
    //! Processes in memory: held tasks with their views, signals remembered.

    use std::{
        collections::{HashMap, HashSet},
        sync::{Arc, Mutex},
    };

    use super::*;

    #[derive(Debug, Default)]
    pub struct State {
        /// Held tasks: `Ok` readable, `Err` /proc unreadable; absent: gone.
        pub held: HashMap<u32, Result<HeldView, String>>,
        pub pinned: HashSet<u32>,
        pub signals: Vec<(u32, Signal)>,
        pub cwds: HashMap<u32, PathBuf>,
        pub files: HashMap<PathBuf, (DevIno, String)>,
    }

    /// Shared with the test, which keeps a handle while the daemon owns the box.
    #[derive(Clone, Debug, Default)]
    pub struct FakeProcs(pub Arc<Mutex<State>>);

    impl FakeProcs {
        pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
            self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
        }

        pub fn hold(&self, pid: u32, argv: &[&str]) {
            let view = HeldView {
                argv: argv.iter().map(|a| a.to_string()).collect(),
                env: Vec::new(),
                cwd: Some("/work".into()),
                exe: None,
            };
            self.lock().held.insert(pid, Ok(view));
        }
    }

    fn gone() -> io::Error {
        io::Error::from_raw_os_error(libc::ESRCH)
    }

    impl Procs for FakeProcs {
        fn pin(&mut self, pid: u32) -> io::Result<()> {
            let mut state = self.lock();
            if !state.held.contains_key(&pid) {
                return Err(gone());
            }
            state.pinned.insert(pid);
            Ok(())
        }
        fn view(&self, pid: u32) -> io::Result<HeldView> {
            match self.lock().held.get(&pid) {
                Some(Ok(view)) => Ok(view.clone()),
                Some(Err(why)) => Err(io::Error::other(why.clone())),
                None => Err(gone()),
            }
        }
        fn signal(&mut self, pid: u32, signal: Signal) -> io::Result<()> {
            let mut state = self.lock();
            state.pinned.remove(&pid);
            if !state.held.contains_key(&pid) {
                return Err(gone());
            }
            state.signals.push((pid, signal));
            if signal == Signal::Kill {
                state.held.remove(&pid);
            }
            Ok(())
        }
        fn unpin(&mut self, pid: u32) {
            self.lock().pinned.remove(&pid);
        }
        fn state(&self, pid: u32) -> Option<char> {
            // A held task is stopped; one killed or never held is gone.
            self.lock().held.contains_key(&pid).then_some('T')
        }
        fn cwd(&self, pid: u32) -> io::Result<PathBuf> {
            self.lock().cwds.get(&pid).cloned().ok_or_else(gone)
        }
        fn cmdline(&self, _: u32) -> Option<Vec<String>> {
            None
        }
        fn cgroup(&self, _: u32) -> Option<String> {
            None
        }
        fn identity(&self, path: &Path) -> io::Result<DevIno> {
            self.lock().files.get(path).map(|(id, _)| *id).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        }
        fn read_identified(&self, path: &Path, file: DevIno, max_len: u64) -> Option<String> {
            let state = self.lock();
            let (id, text) = state.files.get(path)?;
            (*id == file && text.len() as u64 <= max_len).then(|| text.clone())
        }
        fn script(&self, _: u32, _: &str) -> Option<(DevIno, String)> {
            None
        }
        fn trusted_library_dir(&self, _: u32, _: &str) -> bool {
            false
        }
    }
}
