//! cgroup v2 sessions.
//!
//! guard governs the processes of *sessions*: a session is a cgroup directly below a *root*
//! (by default `<cgroup2 mount>/guard`), or the root itself for processes sitting directly in
//! it. A session's processes and all their descendants stay in its subtree, which is what the
//! kernel programs match on. A cgroup's id is the inode number of its directory: the value
//! `bpf_get_current_cgroup_id()` returns.
//!
//! The cgroup2 mount is found in /proc/self/mountinfo, never assumed: it is `/sys/fs/cgroup`
//! on unified hosts and e.g. `/sys/fs/cgroup/unified` on hybrid ones. Nothing here needs a
//! controller to be enabled: `cgroup.procs` exists in every cgroup2 directory.

use std::{
    collections::{HashMap, HashSet},
    io,
    path::{Component, Path, PathBuf},
};

use guard_common::MAX_CGROUP_DEPTH;
use guard_daemon::mountinfo::{self, MountInfoError};
use guard_engine::{confinement::AppliedConfinement, control::SessionStatus, lifecycle::Created};

use crate::sys::Sys;

/// Directory name of the default root below the cgroup2 mount.
pub const DEFAULT_ROOT_NAME: &str = "guard";
/// Longest session name, in bytes.
pub const MAX_SESSION_NAME: usize = 64;
const PROCS: &str = "cgroup.procs";
/// Bound on remembered unknown cgroup ids (see [`SessionIndex::resolve`]).
const MAX_UNKNOWN: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup2 mount found in /proc/self/mountinfo")]
    NotMounted,
    #[error("cannot read /proc/self/mountinfo: {0}")]
    MountInfo(io::Error),
    #[error(transparent)]
    MountInfoParse(#[from] MountInfoError),
    #[error(
        "invalid session name {name:?}: {reason} (use 1-{MAX_SESSION_NAME} bytes of A-Z a-z 0-9 . _ -, not starting with a dot)"
    )]
    InvalidName { name: String, reason: &'static str },
    #[error("{path} is not a directory inside the cgroup2 mount {mount}", path = .path.display(), mount = .mount.display())]
    OutsideMount { path: PathBuf, mount: PathBuf },
    #[error("{action} {path}: {err}; run as root (managing cgroups needs root)", path = .path.display())]
    PermissionDenied { action: &'static str, path: PathBuf, err: io::Error },
    #[error("{action} {path}: {err}", path = .path.display())]
    Io { action: &'static str, path: PathBuf, err: io::Error },
    #[error("{path}: unexpected line {line:?}", path = .path.display())]
    BadProcs { path: PathBuf, line: String },
}

impl CgroupError {
    fn io(action: &'static str, path: &Path, err: io::Error) -> Self {
        let path = path.to_path_buf();
        match err.kind() {
            io::ErrorKind::PermissionDenied => CgroupError::PermissionDenied { action, path, err },
            _ => CgroupError::Io { action, path, err },
        }
    }

    /// The underlying I/O error kind, if any (e.g. to tell a vanished cgroup from a real error).
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            CgroupError::MountInfo(err) | CgroupError::PermissionDenied { err, .. } | CgroupError::Io { err, .. } => {
                Some(err.kind())
            }
            _ => None,
        }
    }
}

/// The cgroup2 hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroup2 {
    pub mount: PathBuf,
}

impl Cgroup2 {
    /// Finds the cgroup2 mount in /proc/self/mountinfo.
    pub fn discover(sys: &dyn Sys) -> Result<Self, CgroupError> {
        let text = sys.mountinfo().map_err(CgroupError::MountInfo)?;
        Self::from_mountinfo(&text)?.ok_or(CgroupError::NotMounted)
    }

    /// The first cgroup2 mount in mountinfo order (the kernel lists older mounts first).
    pub fn from_mountinfo(text: &str) -> Result<Option<Self>, CgroupError> {
        let entries = mountinfo::parse(text)?;
        Ok(mountinfo::cgroup2_mount(&entries).map(|mount| Cgroup2 { mount: mount.to_path_buf() }))
    }

    /// `<mount>/guard`.
    pub fn default_root(&self) -> PathBuf {
        self.mount.join(DEFAULT_ROOT_NAME)
    }

    /// A root given by the user: relative paths are taken below the mount; absolute ones must
    /// lie inside it. `..` is refused so the containment check cannot be fooled.
    pub fn resolve_root(&self, root: &Path) -> Result<PathBuf, CgroupError> {
        let path = if root.is_absolute() { root.to_path_buf() } else { self.mount.join(root) };
        let clean = path.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        if !clean || !path.starts_with(&self.mount) {
            return Err(CgroupError::OutsideMount { path, mount: self.mount.clone() });
        }
        // Normalise away `.` and doubled slashes (components() already skipped them).
        Ok(path.components().collect())
    }

    /// Creates `root` and any missing directories between the mount and it.
    pub fn ensure_root(&self, sys: &dyn Sys, root: &Path) -> Result<(), CgroupError> {
        let root = self.resolve_root(root)?;
        let relative = root.strip_prefix(&self.mount).unwrap_or(Path::new(""));
        let mut cur = self.mount.clone();
        for comp in relative.components() {
            cur.push(comp);
            match sys.mkdir(&cur) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
                Err(err) => return Err(CgroupError::io("mkdir", &cur, err)),
            }
        }
        Ok(())
    }
}

/// Extended attribute on a session cgroup naming its workspace (the directory `guard launch`
/// ran in). The daemon reads it race-free, even when every session process already exited.
pub const WORKSPACE_XATTR: &str = "trusted.guard.workspace";

/// Record `dir` as the session's workspace unless one is recorded already (the first launch
/// into a session defines it).
pub fn record_workspace(sys: &dyn Sys, session: &Path, dir: &Path) -> Result<(), CgroupError> {
    if let Ok(Some(_)) = sys.get_xattr(session, WORKSPACE_XATTR) {
        return Ok(());
    }
    sys.set_xattr(session, WORKSPACE_XATTR, dir.as_os_str().as_encoded_bytes())
        .map_err(|err| CgroupError::io("setxattr", session, err))
}

/// The workspace recorded on a session cgroup, if any.
pub fn workspace(sys: &dyn Sys, session: &Path) -> Option<PathBuf> {
    let raw = sys.get_xattr(session, WORKSPACE_XATTR).ok()??;
    let text = String::from_utf8(raw).ok()?;
    Some(PathBuf::from(text))
}

/// Extended attribute on a session cgroup with what its latest `guard launch` applied (JSON,
/// [`AppliedConfinement`]). Informational: the kernel enforces the domain and the filter
/// whatever this says.
pub const CONFINEMENT_XATTR: &str = "trusted.guard.confinement";

/// Record what a launch applied. Every launch writes it (the latest launch is what a person
/// asking about the session wants to know).
pub fn record_confinement(sys: &dyn Sys, session: &Path, applied: &AppliedConfinement) -> Result<(), CgroupError> {
    // Serialising plain strings, bools and numbers cannot fail.
    let json = serde_json::to_vec(applied).unwrap_or_default();
    sys.set_xattr(session, CONFINEMENT_XATTR, &json).map_err(|err| CgroupError::io("setxattr", session, err))
}

/// What the latest `guard launch` into the session applied, if it recorded it.
pub fn confinement(sys: &dyn Sys, session: &Path) -> Option<AppliedConfinement> {
    let raw = sys.get_xattr(session, CONFINEMENT_XATTR).ok()??;
    serde_json::from_slice(&raw).ok()
}

/// Extended attribute `guard launch` sets on the session cgroups it creates: the daemon
/// removes such a cgroup once it has ended (see [`guard_engine::lifecycle`]); cgroups without
/// it (adopted roots' children, systemd units, pods) are never removed. `trusted.*` needs
/// CAP_SYS_ADMIN to set, so a session cannot mark a cgroup of someone else's for removal.
pub const CREATED_XATTR: &str = "trusted.guard.created";

/// Mark a session cgroup as created by `guard launch` (`fresh` or `named`, and the pid).
pub fn mark_created(sys: &dyn Sys, session: &Path, how: Created, pid: u32) -> Result<(), CgroupError> {
    sys.set_xattr(session, CREATED_XATTR, how.marker(pid).as_bytes())
        .map_err(|err| CgroupError::io("setxattr", session, err))
}

/// How `guard launch` created this cgroup, if it did.
pub fn created_by(sys: &dyn Sys, path: &Path) -> Created {
    Created::of_marker(sys.get_xattr(path, CREATED_XATTR).ok().flatten().as_deref())
}

/// `populated` of the cgroup's `cgroup.events` (the kernel's word on whether any process is
/// left in its subtree); `None` when unreadable.
pub fn populated(sys: &dyn Sys, path: &Path) -> Option<bool> {
    guard_engine::lifecycle::populated(&sys.read_to_string(&path.join("cgroup.events")).ok()?)
}

/// Checks a session name: 1-64 bytes of `[A-Za-z0-9._-]`, no leading dot (so no `.`, `..` or
/// hidden names), hence no `/`.
pub fn validate_session_name(name: &str) -> Result<(), CgroupError> {
    let bad = |reason| Err(CgroupError::InvalidName { name: name.to_string(), reason });
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_SESSION_NAME {
        return bad("too long");
    }
    if name.contains('/') {
        return bad("contains '/'");
    }
    if name.starts_with('.') {
        return bad("starts with a dot");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return bad("contains a character outside A-Z a-z 0-9 . _ -");
    }
    Ok(())
}

/// `<root>/<name>` after validating the name.
pub fn session_path(root: &Path, name: &str) -> Result<PathBuf, CgroupError> {
    validate_session_name(name)?;
    Ok(root.join(name))
}

/// Creates the session cgroup `<root>/<name>`; `Ok(false)` when it already existed.
pub fn create_session(sys: &dyn Sys, root: &Path, name: &str) -> Result<(PathBuf, bool), CgroupError> {
    let path = session_path(root, name)?;
    match sys.mkdir(&path) {
        Ok(()) => Ok((path, true)),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok((path, false)),
        Err(err) => Err(CgroupError::io("mkdir", &path, err)),
    }
}

/// Creates a new session cgroup named `base`, or `base-1`, `base-2`, ... if taken: a fresh
/// cgroup (new id) every time, so no state of an older session with the same name carries over.
pub fn create_fresh_session(sys: &dyn Sys, root: &Path, base: &str) -> Result<(String, PathBuf), CgroupError> {
    for n in 0..1000 {
        let name = if n == 0 { base.to_string() } else { format!("{base}-{n}") };
        let (path, created) = create_session(sys, root, &name)?;
        if created {
            return Ok((name, path));
        }
    }
    Err(CgroupError::Io {
        action: "mkdir",
        path: root.join(base),
        err: io::Error::new(io::ErrorKind::AlreadyExists, "1000 sessions with this name already exist"),
    })
}

/// The cgroup id of a cgroup2 directory: its inode number.
pub fn cgroup_id(sys: &dyn Sys, path: &Path) -> Result<u64, CgroupError> {
    sys.stat(path).map(|id| id.ino).map_err(|err| CgroupError::io("stat", path, err))
}

/// Moves process `pid` (all its threads) into the cgroup at `path`.
pub fn join(sys: &dyn Sys, path: &Path, pid: u32) -> Result<(), CgroupError> {
    let procs = path.join(PROCS);
    sys.write_file(&procs, pid.to_string().as_bytes()).map_err(|err| CgroupError::io("write", &procs, err))
}

/// The processes directly in the cgroup at `path` (not its descendants).
pub fn processes(sys: &dyn Sys, path: &Path) -> Result<Vec<u32>, CgroupError> {
    let procs = path.join(PROCS);
    let text = sys.read_to_string(&procs).map_err(|err| CgroupError::io("read", &procs, err))?;
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| line.parse().map_err(|_| CgroupError::BadProcs { path: procs.clone(), line: line.to_string() }))
        .collect()
}

/// The processes of the cgroup at `path` and of every cgroup below it.
pub fn subtree_processes(sys: &dyn Sys, path: &Path) -> Result<Vec<u32>, CgroupError> {
    let mut pids = Vec::new();
    walk(sys, path, &mut |cgroup, _| {
        pids.extend(processes(sys, cgroup)?);
        Ok(())
    })?;
    Ok(pids)
}

/// Child cgroup directories of `path`, sorted by name.
pub(crate) fn child_cgroups(sys: &dyn Sys, path: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let mut out: Vec<PathBuf> = sys
        .read_dir(path)
        .map_err(|err| CgroupError::io("read directory", path, err))?
        .into_iter()
        .filter(|entry| entry.is_dir)
        .map(|entry| path.join(entry.name))
        .collect();
    out.sort();
    Ok(out)
}

fn vanished(err: &CgroupError) -> bool {
    // Cgroups come and go while we walk: a missing one is not an error. ENODEV is what
    // cgroupfs returns for files of a cgroup being removed.
    err.io_kind() == Some(io::ErrorKind::NotFound)
        || matches!(err, CgroupError::Io { err, .. } if err.raw_os_error() == Some(libc::ENODEV))
}

/// Calls `visit(path, depth)` for `top` and every cgroup below it (pre-order, bounded depth);
/// cgroups that vanish meanwhile are skipped.
fn walk(
    sys: &dyn Sys,
    top: &Path,
    visit: &mut dyn FnMut(&Path, u32) -> Result<(), CgroupError>,
) -> Result<(), CgroupError> {
    let mut stack = vec![(top.to_path_buf(), 0u32)];
    while let Some((path, depth)) = stack.pop() {
        match visit(&path, depth) {
            Ok(()) => {}
            Err(err) if vanished(&err) => continue,
            Err(err) => return Err(err),
        }
        // The kernel walks at most MAX_CGROUP_DEPTH levels; deeper cgroups are not governed
        // anyway, and the bound keeps a hostile tree from costing us unbounded work.
        if depth + 1 >= MAX_CGROUP_DEPTH {
            continue;
        }
        match child_cgroups(sys, &path) {
            Ok(children) => stack.extend(children.into_iter().rev().map(|child| (child, depth + 1))),
            Err(err) if vanished(&err) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// A session as found in the cgroup tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// The session cgroup's directory name.
    pub name: String,
    pub path: PathBuf,
    /// The root this session belongs to.
    pub root: PathBuf,
    /// The session cgroup's id.
    pub id: u64,
    /// Processes in the session: its whole subtree, or for a root-as-session only the
    /// processes directly in the root.
    pub processes: u32,
    /// True when this is a root counted as a session for its own processes.
    pub is_root: bool,
}

impl Session {
    pub fn to_status(&self) -> SessionStatus {
        SessionStatus {
            name: self.name.clone(),
            path: self.path.display().to_string(),
            cgroup_id: self.id,
            processes: self.processes,
            trajectory: None,
            confinement: None,
        }
    }
}

pub(crate) fn dir_name(path: &Path) -> String {
    match path.file_name() {
        Some(name) => name.to_string_lossy().into_owned(),
        None => path.display().to_string(),
    }
}

fn count_processes(sys: &dyn Sys, top: &Path) -> Result<u32, CgroupError> {
    let mut total = 0u32;
    walk(sys, top, &mut |path, _| {
        total = total.saturating_add(u32::try_from(processes(sys, path)?.len()).unwrap_or(u32::MAX));
        Ok(())
    })?;
    Ok(total)
}

/// The sessions under `roots`: each root's child cgroups, plus the root itself when processes
/// sit directly in it. A root that does not exist has no sessions.
pub fn list_sessions(sys: &dyn Sys, roots: &[PathBuf]) -> Result<Vec<Session>, CgroupError> {
    list_sessions_named(sys, roots, &[])
}

/// The name of the session cgroup `child` of `root`: a pod's `pod-<UID>` below a Kubernetes
/// QoS root, else its directory name.
fn session_name_of(kube_roots: &[PathBuf], root: &Path, child: &Path) -> String {
    let dir = dir_name(child);
    if kube_roots.iter().any(|kube| kube == root) {
        guard_engine::kubernetes::session_name(&dir).unwrap_or(dir)
    } else {
        dir
    }
}

/// [`list_sessions`] naming the sessions below `kube_roots` by pod. A child that is a root
/// itself is listed as that root's (the deepest root wins, as in the kernel).
fn list_sessions_named(sys: &dyn Sys, roots: &[PathBuf], kube_roots: &[PathBuf]) -> Result<Vec<Session>, CgroupError> {
    let mut out = Vec::new();
    for root in roots {
        let root_id = match cgroup_id(sys, root) {
            Ok(id) => id,
            Err(err) if vanished(&err) => continue,
            Err(err) => return Err(err),
        };
        let own = match processes(sys, root) {
            Ok(pids) => pids.len(),
            Err(err) if vanished(&err) => continue,
            Err(err) => return Err(err),
        };
        if own > 0 {
            out.push(Session {
                name: dir_name(root),
                path: root.clone(),
                root: root.clone(),
                id: root_id,
                processes: u32::try_from(own).unwrap_or(u32::MAX),
                is_root: true,
            });
        }
        let children = match child_cgroups(sys, root) {
            Ok(children) => children,
            Err(err) if vanished(&err) => continue,
            Err(err) => return Err(err),
        };
        for path in children.into_iter().filter(|child| !roots.contains(child)) {
            let found = cgroup_id(sys, &path).and_then(|id| count_processes(sys, &path).map(|n| (id, n)));
            let (id, procs) = match found {
                Ok(found) => found,
                Err(err) if vanished(&err) => continue,
                Err(err) => return Err(err),
            };
            out.push(Session {
                name: session_name_of(kube_roots, root, &path),
                path: path.clone(),
                root: root.clone(),
                id,
                processes: procs,
                is_root: false,
            });
        }
    }
    Ok(out)
}

/// Removes a session cgroup and the cgroups nested in it (deepest first). Fails with EBUSY
/// while processes remain in it.
pub fn remove_session(sys: &dyn Sys, path: &Path) -> Result<(), CgroupError> {
    let mut all = Vec::new();
    walk(sys, path, &mut |p, depth| {
        all.push((depth, p.to_path_buf()));
        Ok(())
    })?;
    // Pre-order lists parents before children; reversed, every child goes before its parent.
    for (_, dir) in all.into_iter().rev() {
        match sys.rmdir(&dir) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(CgroupError::io("rmdir", &dir, err)),
        }
    }
    Ok(())
}

/// A session as the daemon names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRef {
    pub name: String,
    /// The session cgroup's id (`EventHeader::session_id`).
    pub id: u64,
    pub path: PathBuf,
    pub root: PathBuf,
}

/// Maps every cgroup id in the roots' subtrees (nested cgroups included) to its session.
///
/// Built by [`SessionIndex::rescan`]; lookups are a hash probe. The daemon calls
/// [`SessionIndex::resolve`] per event: on a miss (a cgroup created since the last scan) it
/// rescans once, and remembers ids still unknown afterwards so a stream of events from an
/// unknown cgroup costs one scan, not one per event.
#[derive(Debug, Default)]
pub struct SessionIndex {
    roots: Vec<PathBuf>,
    /// Kubernetes QoS roots: their sessions are pods, named `pod-<UID>`.
    kube_roots: Vec<PathBuf>,
    root_ids: Vec<(PathBuf, u64)>,
    sessions: Vec<SessionRef>,
    by_cgroup: HashMap<u64, usize>,
    unknown: HashSet<u64>,
}

impl SessionIndex {
    /// An empty index over `roots`; call [`rescan`](Self::rescan) to fill it.
    pub fn new(roots: Vec<PathBuf>) -> Self {
        Self { roots, ..Default::default() }
    }

    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// Make `kube_roots` (also to be among the roots) name their sessions by pod.
    pub fn with_kubernetes(mut self, kube_roots: Vec<PathBuf>) -> Self {
        self.kube_roots = kube_roots;
        self
    }

    /// The Kubernetes QoS roots.
    pub fn kube_roots(&self) -> &[PathBuf] {
        &self.kube_roots
    }

    /// The sessions in the cgroup tree now (for `guard status`), named as the index names them.
    pub fn list(&self, sys: &dyn Sys) -> Result<Vec<Session>, CgroupError> {
        list_sessions_named(sys, &self.roots, &self.kube_roots)
    }

    /// The ids of the roots that existed at the last scan (for the kernel's root map).
    pub fn root_ids(&self) -> &[(PathBuf, u64)] {
        &self.root_ids
    }

    /// Every session found by the last scan (roots included: a process may sit in one).
    #[cfg_attr(not(test), allow(dead_code, reason = "API for the daemon"))]
    pub fn sessions(&self) -> &[SessionRef] {
        &self.sessions
    }

    /// Rebuilds the index from the cgroup tree. Missing roots are skipped.
    pub fn rescan(&mut self, sys: &dyn Sys) -> Result<(), CgroupError> {
        let mut sessions = Vec::new();
        let mut by_cgroup = HashMap::new();
        let mut root_ids = Vec::new();
        for root in &self.roots {
            let root_id = match cgroup_id(sys, root) {
                Ok(id) => id,
                Err(err) if vanished(&err) => continue,
                Err(err) => return Err(err),
            };
            root_ids.push((root.clone(), root_id));
            by_cgroup.insert(root_id, sessions.len());
            sessions.push(SessionRef { name: dir_name(root), id: root_id, path: root.clone(), root: root.clone() });
            let children = match child_cgroups(sys, root) {
                Ok(children) => children,
                Err(err) if vanished(&err) => continue,
                Err(err) => return Err(err),
            };
            // A child that is a root itself is that root's (the deepest root wins).
            for child in children.into_iter().filter(|child| !self.roots.contains(child)) {
                let index = sessions.len();
                let mut session_id = None;
                walk(sys, &child, &mut |path, depth| {
                    let id = cgroup_id(sys, path)?;
                    if depth == 0 {
                        session_id = Some(id);
                    }
                    by_cgroup.insert(id, index);
                    Ok(())
                })?;
                // None: the session vanished before we could stat it.
                if let Some(id) = session_id {
                    let name = session_name_of(&self.kube_roots, root, &child);
                    sessions.push(SessionRef { name, id, path: child, root: root.clone() });
                }
            }
        }
        self.sessions = sessions;
        self.by_cgroup = by_cgroup;
        self.root_ids = root_ids;
        self.unknown.clear();
        Ok(())
    }

    /// The session of a cgroup id as of the last scan.
    pub fn get(&self, cgroup_id: u64) -> Option<&SessionRef> {
        self.by_cgroup.get(&cgroup_id).and_then(|&i| self.sessions.get(i))
    }

    /// Like [`get`](Self::get), rescanning once on a miss (see the type's docs).
    pub fn resolve(&mut self, sys: &dyn Sys, cgroup_id: u64) -> Result<Option<&SessionRef>, CgroupError> {
        if !self.by_cgroup.contains_key(&cgroup_id) && !self.unknown.contains(&cgroup_id) {
            let unknown = std::mem::take(&mut self.unknown);
            self.rescan(sys)?;
            if !self.by_cgroup.contains_key(&cgroup_id) {
                // Keep earlier misses too: a rescan for one id must not unleash scans for all.
                self.unknown = unknown;
                if self.unknown.len() >= MAX_UNKNOWN {
                    self.unknown.clear();
                }
                self.unknown.insert(cgroup_id);
            }
        }
        Ok(self.get(cgroup_id))
    }
}

#[cfg(test)]
#[path = "cgroup_tests.rs"]
mod lifecycle_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{FakeOp, FakeSys};

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    const UNIFIED: &str = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
28 25 0:25 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    fn p(path: &str) -> PathBuf {
        PathBuf::from(path)
    }

    #[test]
    fn finds_cgroup2_in_hybrid_and_unified_layouts() {
        let mount = |text| Cgroup2::from_mountinfo(text).expect("parses").map(|cg| cg.mount);
        assert_eq!(mount(HYBRID), Some(p("/sys/fs/cgroup/unified")));
        assert_eq!(mount(UNIFIED), Some(p("/sys/fs/cgroup")));
        assert_eq!(mount("32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"), None);
        // The parser's own tests (guard_daemon::mountinfo) cover escapes and optional fields.
        assert_eq!(mount("30 1 0:26 / /mnt/my\\040cg rw - cgroup2 none rw\n"), Some(p("/mnt/my cg")));
    }

    #[test]
    fn discover_reports_missing_cgroup2() {
        let sys = FakeSys::new();
        sys.set_mountinfo(HYBRID.lines().take(2).collect::<Vec<_>>().join("\n").as_str());
        let err = Cgroup2::discover(&sys).unwrap_err();
        assert_eq!(err.to_string(), "no cgroup2 mount found in /proc/self/mountinfo");
        sys.set_mountinfo("garbage\n");
        let err = Cgroup2::discover(&sys).unwrap_err();
        assert_eq!(err.to_string(), "mountinfo line 1: the mount id is not a number: \"garbage\"");
        let sys = FakeSys::with_cgroup2("/sys/fs/cgroup/unified");
        let cg = Cgroup2::discover(&sys).unwrap();
        assert_eq!(cg.default_root(), p("/sys/fs/cgroup/unified/guard"));
    }

    #[test]
    fn session_names() {
        for good in ["a", "s-1234", "agent_1.dev", "A", &"x".repeat(64)] {
            validate_session_name(good).unwrap();
        }
        for (bad, why) in [
            ("", "empty"),
            (".", "dot"),
            ("..", "dot"),
            (".hidden", "dot"),
            ("a/b", "'/'"),
            ("../x", "'/'"),
            ("a b", "character"),
            ("é", "character"),
            ("a\nb", "character"),
            (&"x".repeat(65), "too long"),
        ] {
            let err = validate_session_name(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
            assert!(err.contains(&format!("{bad:?}")), "error names the bad name: {err}");
        }
        assert_eq!(session_path(Path::new("/cg/guard"), "s-1").unwrap(), p("/cg/guard/s-1"));
    }

    #[test]
    fn roots_resolve_inside_the_mount_only() {
        let cg = Cgroup2 { mount: p("/cg") };
        assert_eq!(cg.resolve_root(Path::new("guard-ci")).unwrap(), p("/cg/guard-ci"));
        assert_eq!(cg.resolve_root(Path::new("/cg/a/./b/")).unwrap(), p("/cg/a/b"));
        assert_eq!(cg.resolve_root(Path::new("/cg")).unwrap(), p("/cg"));
        for bad in ["/tmp/x", "/cg/../etc", "../x", "/cgroup"] {
            let err = cg.resolve_root(Path::new(bad)).unwrap_err();
            assert!(matches!(err, CgroupError::OutsideMount { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn ensure_root_creates_missing_levels_and_is_idempotent() {
        let sys = FakeSys::with_cgroup2("/cg");
        let cg = Cgroup2::discover(&sys).unwrap();
        cg.ensure_root(&sys, Path::new("/cg/a/b")).unwrap();
        cg.ensure_root(&sys, Path::new("/cg/a/b")).unwrap();
        assert!(sys.exists("/cg/a/b/cgroup.procs"));
    }

    #[test]
    fn permission_errors_say_run_as_root() {
        let sys = FakeSys::with_cgroup2("/cg");
        let cg = Cgroup2::discover(&sys).unwrap();
        sys.fail(FakeOp::Mkdir, "/cg/guard", libc::EACCES);
        let err = cg.ensure_root(&sys, &cg.default_root()).unwrap_err();
        assert!(matches!(err, CgroupError::PermissionDenied { .. }));
        assert!(err.to_string().contains("run as root"), "{err}");
        assert!(err.to_string().contains("/cg/guard"), "{err}");

        let sys = FakeSys::with_cgroup2("/cg");
        sys.add_dir("/cg/s");
        sys.add_file("/cg/s/cgroup.procs", "");
        sys.fail(FakeOp::Write, "/cg/s/cgroup.procs", libc::EPERM);
        let err = join(&sys, Path::new("/cg/s"), 1).unwrap_err();
        assert!(err.to_string().contains("run as root"), "{err}");
    }

    #[test]
    fn create_join_list_remove() {
        let sys = FakeSys::with_cgroup2("/cg");
        let cg = Cgroup2::discover(&sys).unwrap();
        let root = cg.default_root();
        cg.ensure_root(&sys, &root).unwrap();
        let (path, created) = create_session(&sys, &root, "alpha").unwrap();
        assert!(created);
        assert!(!create_session(&sys, &root, "alpha").unwrap().1);
        join(&sys, &path, 100).unwrap();
        join(&sys, &path, 101).unwrap();
        // A nested cgroup inside the session counts towards it.
        sys.mkdir(&path.join("inner")).unwrap();
        join(&sys, &path.join("inner"), 102).unwrap();
        let (beta, _) = create_session(&sys, &root, "beta").unwrap();

        assert_eq!(processes(&sys, &path).unwrap(), vec![100, 101]);
        let sessions = list_sessions(&sys, std::slice::from_ref(&root)).unwrap();
        let summary: Vec<(&str, u32, bool)> =
            sessions.iter().map(|s| (s.name.as_str(), s.processes, s.is_root)).collect();
        assert_eq!(summary, vec![("alpha", 3, false), ("beta", 0, false)]);
        assert_eq!(sessions[0].id, cgroup_id(&sys, &path).unwrap());
        assert_eq!(sessions[0].to_status().path, "/cg/guard/alpha");

        // Populated: rmdir refuses, and so does remove_session.
        let err = remove_session(&sys, &path).unwrap_err();
        assert!(err.to_string().contains("rmdir"), "{err}");
        for pid in [100, 101, 102] {
            join(&sys, Path::new("/cg"), pid).unwrap();
        }
        remove_session(&sys, &path).unwrap();
        assert!(!sys.exists("/cg/guard/alpha"));
        remove_session(&sys, &beta).unwrap();
        assert!(list_sessions(&sys, &[root]).unwrap().is_empty());
    }

    #[test]
    fn a_root_with_its_own_processes_is_a_session_and_missing_roots_are_empty() {
        let sys = FakeSys::with_cgroup2("/cg");
        sys.mkdir(Path::new("/cg/agent.service")).unwrap();
        join(&sys, Path::new("/cg/agent.service"), 7).unwrap();
        sys.mkdir(Path::new("/cg/agent.service/child")).unwrap();
        let roots = vec![p("/cg/agent.service"), p("/cg/missing")];
        let sessions = list_sessions(&sys, &roots).unwrap();
        let summary: Vec<(&str, u32, bool)> =
            sessions.iter().map(|s| (s.name.as_str(), s.processes, s.is_root)).collect();
        assert_eq!(summary, vec![("agent.service", 1, true), ("child", 0, false)]);
    }

    #[test]
    fn fresh_sessions_never_reuse_a_cgroup() {
        let sys = FakeSys::with_cgroup2("/cg");
        sys.mkdir(Path::new("/cg/guard")).unwrap();
        let root = p("/cg/guard");
        let (a, _) = create_fresh_session(&sys, &root, "s-9").unwrap();
        let (b, _) = create_fresh_session(&sys, &root, "s-9").unwrap();
        let (c, path) = create_fresh_session(&sys, &root, "s-9").unwrap();
        assert_eq!((a.as_str(), b.as_str(), c.as_str()), ("s-9", "s-9-1", "s-9-2"));
        assert_eq!(path, p("/cg/guard/s-9-2"));
    }

    #[test]
    fn index_maps_nested_cgroups_to_their_session() {
        let sys = FakeSys::with_cgroup2("/cg");
        for dir in ["/cg/guard", "/cg/guard/a", "/cg/guard/a/x", "/cg/guard/a/x/y", "/cg/guard/b", "/cg/other"] {
            sys.mkdir(Path::new(dir)).unwrap();
        }
        let id = |path: &str| cgroup_id(&sys, Path::new(path)).unwrap();
        let mut index = SessionIndex::new(vec![p("/cg/guard"), p("/cg/gone")]);
        index.rescan(&sys).unwrap();
        assert_eq!(index.root_ids(), &[(p("/cg/guard"), id("/cg/guard"))]);
        assert_eq!(index.get(id("/cg/guard/a/x/y")).unwrap().name, "a");
        assert_eq!(index.get(id("/cg/guard/a/x/y")).unwrap().id, id("/cg/guard/a"));
        assert_eq!(index.get(id("/cg/guard/b")).unwrap().name, "b");
        assert_eq!(index.get(id("/cg/guard")).unwrap().name, "guard");
        assert_eq!(index.get(id("/cg/other")), None);
        assert_eq!(index.sessions().len(), 3);

        // A session created after the scan is found by resolve (one rescan).
        sys.mkdir(Path::new("/cg/guard/c")).unwrap();
        let c = id("/cg/guard/c");
        assert_eq!(index.get(c), None);
        assert_eq!(index.resolve(&sys, c).unwrap().unwrap().name, "c");

        // An id outside the roots stays unknown and does not trigger a second scan: prove it by
        // making a scan fail.
        let other = id("/cg/other");
        assert!(index.resolve(&sys, other).unwrap().is_none());
        sys.fail(FakeOp::ReadDir, "/cg/guard", libc::EIO);
        assert!(index.resolve(&sys, other).unwrap().is_none());
        assert!(index.resolve(&sys, 999_999).is_err());
    }
}
