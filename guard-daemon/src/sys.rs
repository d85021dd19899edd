//! The one place where the cgroup and launch code touches the system.
//!
//! Everything goes through the [`Sys`] trait so that code can be unit-tested against
//! [`FakeSys`], an in-memory file tree that behaves like cgroupfs below its cgroup2 mount
//! (`cgroup.procs` appears on mkdir, a pid written to it moves between cgroups, rmdir of a
//! populated cgroup fails with EBUSY). [`RealSys`] is the thin real implementation.

use std::{
    ffi::{OsStr, OsString},
    io,
    path::{Path, PathBuf},
};

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub name: OsString,
    /// A directory, not following symlinks (cgroupfs has none).
    pub is_dir: bool,
}

/// `st_dev` and `st_ino` of a file (a cgroup's id is the inode number of its directory).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

/// Syscall-ish operations used by the cgroup and launch code.
pub trait Sys {
    /// mkdir(2) of one directory (the parent must exist); `AlreadyExists` if it does.
    fn mkdir(&self, path: &Path) -> io::Result<()>;
    /// rmdir(2).
    #[cfg_attr(not(test), allow(dead_code, reason = "used by remove_session, which the daemon does not call yet"))]
    fn rmdir(&self, path: &Path) -> io::Result<()>;
    fn read_to_string(&self, path: &Path) -> io::Result<String>;
    /// Writes `data` with one write(2) to an existing file, without creating or truncating it:
    /// cgroupfs acts on each write, so the whole value must arrive at once.
    fn write_file(&self, path: &Path, data: &[u8]) -> io::Result<()>;
    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>>;
    /// stat(2), following symlinks.
    fn stat(&self, path: &Path) -> io::Result<FileId>;
    /// The text of /proc/self/mountinfo.
    fn mountinfo(&self) -> io::Result<String>;
    fn getpid(&self) -> u32;
    /// Extended attributes (cgroupfs keeps `trusted.*` ones on cgroup directories).
    fn set_xattr(&self, path: &Path, name: &str, value: &[u8]) -> io::Result<()>;
    fn get_xattr(&self, path: &Path, name: &str) -> io::Result<Option<Vec<u8>>>;
    fn current_dir(&self) -> io::Result<PathBuf>;
    /// execvp(3): replaces the process image; returns only on failure. `program` is looked up
    /// in PATH unless it contains a slash.
    fn exec(&self, program: &OsStr, args: &[OsString]) -> io::Error;
}

/// The real system.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealSys;

impl Sys for RealSys {
    fn mkdir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)
    }

    fn rmdir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }

    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn write_file(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
        let written = file.write(data)?;
        if written != data.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write ({written} of {} bytes)", data.len()),
            ));
        }
        Ok(())
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            out.push(DirEntry { name: entry.file_name(), is_dir: entry.file_type()?.is_dir() });
        }
        Ok(out)
    }

    fn stat(&self, path: &Path) -> io::Result<FileId> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path)?;
        Ok(FileId { dev: meta.dev(), ino: meta.ino() })
    }

    fn mountinfo(&self) -> io::Result<String> {
        std::fs::read_to_string("/proc/self/mountinfo")
    }

    fn getpid(&self) -> u32 {
        std::process::id()
    }

    fn set_xattr(&self, path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
        xattr::set(path, name, value)
    }

    fn get_xattr(&self, path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
        xattr::get(path, name)
    }

    fn current_dir(&self) -> io::Result<PathBuf> {
        std::env::current_dir()
    }

    fn exec(&self, program: &OsStr, args: &[OsString]) -> io::Error {
        use std::os::unix::process::CommandExt;
        std::process::Command::new(program).args(args).exec()
    }
}

#[cfg(test)]
pub use fake::{FakeOp, FakeSys};

#[cfg(test)]
mod fake {
    use std::{
        collections::{BTreeMap, HashMap},
        ffi::{OsStr, OsString},
        io,
        path::{Path, PathBuf},
        sync::Mutex,
    };

    use super::{DirEntry, FileId, Sys};

    const FAKE_DEV: u64 = 0x1d;

    /// Operations that can be made to fail with [`FakeSys::fail`].
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum FakeOp {
        Mkdir,
        Rmdir,
        Read,
        Write,
        ReadDir,
        Stat,
    }

    #[derive(Debug)]
    enum Node {
        Dir { ino: u64 },
        File { ino: u64, data: Vec<u8> },
    }

    #[derive(Debug)]
    struct State {
        nodes: BTreeMap<PathBuf, Node>,
        next_ino: u64,
        cgroup_mount: Option<PathBuf>,
        mountinfo: String,
        pid: u32,
        failures: HashMap<(FakeOp, PathBuf), i32>,
        execs: Vec<(OsString, Vec<OsString>)>,
        exec_errno: i32,
        xattrs: HashMap<(PathBuf, String), Vec<u8>>,
        cwd: PathBuf,
    }

    /// An in-memory file system; below `cgroup_mount` it behaves like cgroupfs.
    #[derive(Debug)]
    pub struct FakeSys {
        state: Mutex<State>,
    }

    fn errno(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    impl FakeSys {
        /// Just `/`, no mounts.
        pub fn new() -> Self {
            let mut nodes = BTreeMap::new();
            nodes.insert(PathBuf::from("/"), Node::Dir { ino: 1 });
            Self {
                state: Mutex::new(State {
                    nodes,
                    next_ino: 2,
                    cgroup_mount: None,
                    mountinfo: String::new(),
                    pid: 4242,
                    failures: HashMap::new(),
                    execs: Vec::new(),
                    exec_errno: libc::ENOEXEC,
                    xattrs: HashMap::new(),
                    cwd: PathBuf::from("/work"),
                }),
            }
        }

        /// A system with cgroup2 mounted at `mount` (and a matching mountinfo line).
        pub fn with_cgroup2(mount: &str) -> Self {
            let sys = Self::new();
            sys.add_dir(mount);
            {
                let mut st = sys.lock();
                st.cgroup_mount = Some(PathBuf::from(mount));
                st.mountinfo = format!(
                    "22 1 0:21 / /proc rw,nosuid - proc proc rw\n\
                     41 31 0:38 / {mount} rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
                );
            }
            sys.add_file(&format!("{mount}/cgroup.procs"), "");
            sys
        }

        fn lock(&self) -> std::sync::MutexGuard<'_, State> {
            // A panicking test thread poisons the lock; the data is still usable.
            self.state.lock().unwrap_or_else(|poison| poison.into_inner())
        }

        /// Creates `path` and its missing parents (plain directories, even below the mount).
        pub fn add_dir(&self, path: &str) {
            let mut st = self.lock();
            let mut cur = PathBuf::new();
            for comp in Path::new(path).components() {
                cur.push(comp);
                if !st.nodes.contains_key(&cur) {
                    let ino = st.next_ino;
                    st.next_ino += 1;
                    st.nodes.insert(cur.clone(), Node::Dir { ino });
                }
            }
        }

        pub fn add_file(&self, path: &str, data: &str) {
            let mut st = self.lock();
            let ino = st.next_ino;
            st.next_ino += 1;
            st.nodes.insert(PathBuf::from(path), Node::File { ino, data: data.as_bytes().to_vec() });
        }

        /// The content of a file, if it exists.
        pub fn file(&self, path: &str) -> Option<String> {
            match self.lock().nodes.get(Path::new(path)) {
                Some(Node::File { data, .. }) => Some(String::from_utf8_lossy(data).into_owned()),
                _ => None,
            }
        }

        pub fn exists(&self, path: &str) -> bool {
            self.lock().nodes.contains_key(Path::new(path))
        }

        pub fn set_mountinfo(&self, text: &str) {
            self.lock().mountinfo = text.to_string();
        }

        pub fn set_pid(&self, pid: u32) {
            self.lock().pid = pid;
        }

        /// Makes `op` on exactly `path` fail with `errno`.
        pub fn fail(&self, op: FakeOp, path: &str, code: i32) {
            self.lock().failures.insert((op, PathBuf::from(path)), code);
        }

        /// What `exec` returns (it also records the call).
        pub fn set_exec_errno(&self, code: i32) {
            self.lock().exec_errno = code;
        }

        pub fn execs(&self) -> Vec<(OsString, Vec<OsString>)> {
            self.lock().execs.clone()
        }

        fn check(st: &State, op: FakeOp, path: &Path) -> io::Result<()> {
            match st.failures.get(&(op, path.to_path_buf())) {
                Some(&code) => Err(errno(code)),
                None => Ok(()),
            }
        }
    }

    impl State {
        fn in_cgroupfs(&self, path: &Path) -> bool {
            self.cgroup_mount.as_deref().is_some_and(|mount| path.starts_with(mount))
        }

        fn children(&self, dir: &Path) -> Vec<PathBuf> {
            self.nodes.keys().filter(|p| p.parent() == Some(dir) && p.as_path() != dir).cloned().collect()
        }

        fn is_dir(&self, path: &Path) -> bool {
            matches!(self.nodes.get(path), Some(Node::Dir { .. }))
        }
    }

    impl Sys for FakeSys {
        fn mkdir(&self, path: &Path) -> io::Result<()> {
            let mut st = self.lock();
            Self::check(&st, FakeOp::Mkdir, path)?;
            if st.nodes.contains_key(path) {
                return Err(errno(libc::EEXIST));
            }
            match path.parent() {
                Some(parent) if st.is_dir(parent) => {}
                Some(parent) if st.nodes.contains_key(parent) => return Err(errno(libc::ENOTDIR)),
                _ => return Err(errno(libc::ENOENT)),
            }
            let ino = st.next_ino;
            st.next_ino += 2;
            st.nodes.insert(path.to_path_buf(), Node::Dir { ino });
            if st.in_cgroupfs(path) {
                st.nodes.insert(path.join("cgroup.procs"), Node::File { ino: ino + 1, data: Vec::new() });
            }
            Ok(())
        }

        fn rmdir(&self, path: &Path) -> io::Result<()> {
            let mut st = self.lock();
            Self::check(&st, FakeOp::Rmdir, path)?;
            if !st.nodes.contains_key(path) {
                return Err(errno(libc::ENOENT));
            }
            if !st.is_dir(path) {
                return Err(errno(libc::ENOTDIR));
            }
            let children = st.children(path);
            if st.in_cgroupfs(path) {
                // cgroupfs: control files go with the directory; child cgroups and members block it.
                if children.iter().any(|c| st.is_dir(c)) {
                    return Err(errno(libc::ENOTEMPTY));
                }
                let procs = path.join("cgroup.procs");
                if let Some(Node::File { data, .. }) = st.nodes.get(&procs)
                    && data.iter().any(|b| b.is_ascii_digit())
                {
                    return Err(errno(libc::EBUSY));
                }
                for child in children {
                    st.nodes.remove(&child);
                }
            } else if !children.is_empty() {
                return Err(errno(libc::ENOTEMPTY));
            }
            st.nodes.remove(path);
            Ok(())
        }

        fn read_to_string(&self, path: &Path) -> io::Result<String> {
            let st = self.lock();
            Self::check(&st, FakeOp::Read, path)?;
            // cgroupfs: `cgroup.events` says whether any cgroup.procs in the subtree has a pid.
            if st.in_cgroupfs(path)
                && path.file_name() == Some(OsStr::new("cgroup.events"))
                && let Some(dir) = path.parent()
                && st.is_dir(dir)
            {
                let populated = st.nodes.iter().any(|(p, node)| {
                    p.starts_with(dir)
                        && p.file_name() == Some(OsStr::new("cgroup.procs"))
                        && matches!(node, Node::File { data, .. } if !data.is_empty())
                });
                return Ok(format!("populated {}\nfrozen 0\n", u8::from(populated)));
            }
            match st.nodes.get(path) {
                Some(Node::File { data, .. }) => {
                    String::from_utf8(data.clone()).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"))
                }
                Some(Node::Dir { .. }) => Err(errno(libc::EISDIR)),
                None => Err(errno(libc::ENOENT)),
            }
        }

        fn write_file(&self, path: &Path, data: &[u8]) -> io::Result<()> {
            let mut st = self.lock();
            Self::check(&st, FakeOp::Write, path)?;
            match st.nodes.get(path) {
                Some(Node::File { .. }) => {}
                Some(Node::Dir { .. }) => return Err(errno(libc::EISDIR)),
                None => return Err(errno(libc::ENOENT)),
            }
            let is_procs = st.in_cgroupfs(path) && path.file_name() == Some(OsStr::new("cgroup.procs"));
            if !is_procs {
                if let Some(Node::File { data: old, .. }) = st.nodes.get_mut(path) {
                    *old = data.to_vec();
                }
                return Ok(());
            }
            // Like the kernel: one pid per write; it leaves whatever cgroup it was in.
            let pid: u32 = std::str::from_utf8(data)
                .ok()
                .and_then(|text| text.trim().parse().ok())
                .ok_or_else(|| errno(libc::EINVAL))?;
            let pid_text = pid.to_string();
            for (node_path, node) in st.nodes.iter_mut() {
                if node_path.file_name() == Some(OsStr::new("cgroup.procs"))
                    && let Node::File { data, .. } = node
                {
                    let kept: Vec<&str> = std::str::from_utf8(data)
                        .unwrap_or("")
                        .lines()
                        .filter(|line| line.trim() != pid_text)
                        .collect();
                    let mut text = kept.join("\n");
                    if node_path == path {
                        if !text.is_empty() {
                            text.push('\n');
                        }
                        text.push_str(&pid_text);
                    }
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    *data = text.into_bytes();
                }
            }
            Ok(())
        }

        fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
            let st = self.lock();
            Self::check(&st, FakeOp::ReadDir, path)?;
            if !st.nodes.contains_key(path) {
                return Err(errno(libc::ENOENT));
            }
            if !st.is_dir(path) {
                return Err(errno(libc::ENOTDIR));
            }
            Ok(st
                .children(path)
                .into_iter()
                .map(|child| DirEntry {
                    name: child.file_name().map(OsStr::to_os_string).unwrap_or_default(),
                    is_dir: st.is_dir(&child),
                })
                .collect())
        }

        fn stat(&self, path: &Path) -> io::Result<FileId> {
            let st = self.lock();
            Self::check(&st, FakeOp::Stat, path)?;
            match st.nodes.get(path) {
                Some(Node::Dir { ino }) | Some(Node::File { ino, .. }) => Ok(FileId { dev: FAKE_DEV, ino: *ino }),
                None => Err(errno(libc::ENOENT)),
            }
        }

        fn mountinfo(&self) -> io::Result<String> {
            Ok(self.lock().mountinfo.clone())
        }

        fn getpid(&self) -> u32 {
            self.lock().pid
        }

        fn set_xattr(&self, path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
            let mut st = self.lock();
            if !st.nodes.contains_key(path) {
                return Err(errno(libc::ENOENT));
            }
            st.xattrs.insert((path.to_path_buf(), name.to_string()), value.to_vec());
            Ok(())
        }

        fn get_xattr(&self, path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
            Ok(self.lock().xattrs.get(&(path.to_path_buf(), name.to_string())).cloned())
        }

        fn current_dir(&self) -> io::Result<PathBuf> {
            Ok(self.lock().cwd.clone())
        }

        fn exec(&self, program: &OsStr, args: &[OsString]) -> io::Error {
            let mut st = self.lock();
            st.execs.push((program.to_os_string(), args.to_vec()));
            errno(st.exec_errno)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn fake_cgroupfs_moves_pids_and_guards_rmdir() {
            let sys = FakeSys::with_cgroup2("/cg");
            sys.mkdir(Path::new("/cg/a")).unwrap();
            sys.mkdir(Path::new("/cg/b")).unwrap();
            assert_eq!(sys.file("/cg/a/cgroup.procs").as_deref(), Some(""));
            sys.write_file(Path::new("/cg/a/cgroup.procs"), b"10").unwrap();
            sys.write_file(Path::new("/cg/a/cgroup.procs"), b"11\n").unwrap();
            sys.write_file(Path::new("/cg/b/cgroup.procs"), b"10").unwrap();
            assert_eq!(sys.file("/cg/a/cgroup.procs").as_deref(), Some("11\n"));
            assert_eq!(sys.file("/cg/b/cgroup.procs").as_deref(), Some("10\n"));
            assert_eq!(sys.rmdir(Path::new("/cg/b")).unwrap_err().raw_os_error(), Some(libc::EBUSY));
            sys.write_file(Path::new("/cg/cgroup.procs"), b"10").unwrap();
            sys.rmdir(Path::new("/cg/b")).unwrap();
            assert!(!sys.exists("/cg/b/cgroup.procs"));
            assert_eq!(sys.mkdir(Path::new("/cg/a")).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
            assert_eq!(sys.mkdir(Path::new("/cg/x/y")).unwrap_err().kind(), io::ErrorKind::NotFound);
            assert_ne!(sys.stat(Path::new("/cg/a")).unwrap(), sys.stat(Path::new("/cg")).unwrap());
        }
    }
}
