//! A machine in memory for the engine's tests.

use std::{
    cell::{Cell, RefCell},
    collections::{HashMap, HashSet},
    io,
    path::{Path, PathBuf},
};

use guard_common::{DevIno, SessionState};

use super::machine::{HeldView, Machine, Now, SessionCgroup};
use crate::destructive::InputError;

pub const T0_WALL: i128 = 1_700_000_000_000_000_000;
pub const T0_MONO: u64 = 1_000_000_000;

#[derive(Default)]
pub struct FakeMachine {
    pub now: Cell<Now>,
    pub sessions: RefCell<HashMap<u64, SessionCgroup>>,
    pub kernel: RefCell<HashMap<u64, SessionState>>,
    pub cwds: RefCell<HashMap<u32, PathBuf>>,
    /// Held processes: `Ok` readable, `Err` /proc unreadable; absent: gone.
    pub held: RefCell<HashMap<u32, Result<HeldView, String>>>,
    /// Files by path: identity and text.
    pub files: RefCell<HashMap<PathBuf, (DevIno, String)>>,
    pub gone: RefCell<HashSet<u32>>,
    pub pinned: RefCell<Vec<u32>>,
    /// Files held processes would read, by absolute path (the same for every process).
    pub held_files: RefCell<HashMap<String, Vec<u8>>>,
}

impl FakeMachine {
    pub fn new() -> Self {
        let machine = Self::default();
        machine.now.set(Now { mono_ns: T0_MONO, wall_ns: T0_WALL });
        machine
    }

    pub fn advance_secs(&self, secs: u64) {
        let now = self.now.get();
        let ns = secs * 1_000_000_000;
        self.now.set(Now { mono_ns: now.mono_ns + ns, wall_ns: now.wall_ns + i128::from(ns) });
    }

    pub fn session(&self, id: u64, name: &str) {
        let cgroup = SessionCgroup {
            name: name.to_string(),
            path: PathBuf::from(format!("/sys/fs/cgroup/guard/{name}")),
            workspace: Some(PathBuf::from("/work")),
            confinement: None,
        };
        self.sessions.borrow_mut().insert(id, cgroup);
    }

    pub fn hold(&self, pid: u32, argv: &[&str], env: &[(&str, &str)]) {
        let view = HeldView {
            argv: argv.iter().map(|a| a.to_string()).collect(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            cwd: Some("/work".into()),
            exe: None,
        };
        self.held.borrow_mut().insert(pid, Ok(view));
    }

    pub fn file(&self, path: &str, identity: DevIno, text: &str) {
        self.files.borrow_mut().insert(PathBuf::from(path), (identity, text.to_string()));
    }
}

fn gone() -> io::Error {
    // ESRCH, as pidfd_open says of a process that is gone.
    io::Error::from_raw_os_error(3)
}

impl Machine for FakeMachine {
    fn now(&self) -> Now {
        self.now.get()
    }
    fn session_name(&self, session: u64) -> Option<String> {
        self.sessions.borrow().get(&session).map(|s| s.name.clone())
    }
    fn session_cgroup(&self, session: u64) -> Option<SessionCgroup> {
        self.sessions.borrow().get(&session).cloned()
    }
    fn kernel_session(&self, session: u64) -> Option<SessionState> {
        self.kernel.borrow().get(&session).copied()
    }
    fn cwd(&self, pid: u32) -> io::Result<PathBuf> {
        self.cwds.borrow().get(&pid).cloned().ok_or_else(gone)
    }
    fn cmdline(&self, _: u32) -> Option<Vec<String>> {
        None
    }
    fn identity(&self, path: &Path) -> io::Result<DevIno> {
        if path == Path::new("/work") {
            return Ok(DevIno { dev: 1, ino: 2 });
        }
        self.files.borrow().get(path).map(|(id, _)| *id).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
    fn read_identified(&self, path: &Path, file: DevIno, max_len: u64) -> Option<String> {
        let files = self.files.borrow();
        let (id, text) = files.get(path)?;
        (*id == file && text.len() as u64 <= max_len).then(|| text.clone())
    }
    fn pin_held(&self, pid: u32) -> io::Result<()> {
        if self.held.borrow().contains_key(&pid) {
            self.pinned.borrow_mut().push(pid);
            Ok(())
        } else {
            Err(gone())
        }
    }
    fn held_view(&self, pid: u32) -> io::Result<HeldView> {
        match self.held.borrow().get(&pid) {
            Some(Ok(view)) => Ok(view.clone()),
            Some(Err(why)) => Err(io::Error::new(io::ErrorKind::PermissionDenied, why.clone())),
            None => Err(gone()),
        }
    }
    fn process_alive(&self, pid: u32) -> bool {
        !self.gone.borrow().contains(&pid)
    }
    fn script(&self, _: u32, _: &str) -> Option<(DevIno, String)> {
        None
    }
    fn trusted_library_dir(&self, _: u32, _: &str) -> bool {
        false
    }
    fn read_held_file(&self, _: u32, path: &str, max_len: u64) -> Result<(Vec<u8>, bool), InputError> {
        let files = self.held_files.borrow();
        let bytes = files.get(path).ok_or(InputError::NotFound)?;
        let max = usize::try_from(max_len).unwrap_or(usize::MAX);
        Ok((bytes[..bytes.len().min(max)].to_vec(), bytes.len() > max))
    }
}
