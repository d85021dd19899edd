//! File opens: who opened what, decided on the file actually opened.
//!
//! Entry programs save the arguments; the exit program looks up the new fd's `struct file`
//! (inode identity, dentry name, f_flags: kernel objects) and decides. A SIGKILL queued at
//! syscall exit kills the task before it returns to user space, so it never reads the data
//! nor writes through the fd. What the open itself did (O_CREAT, O_TRUNC) has already
//! happened on this tier; the LSM tier refuses before.

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_probe_read_kernel_str_bytes, bpf_probe_read_user, bpf_probe_read_user_str_bytes,
        generated::bpf_send_signal,
    },
    macros::tracepoint,
    maps::HashMap,
    programs::TracePointContext,
};
use guard_common::{
    DevIno, KernelOffsets, MAX_DIR_DEPTH, NAME_LEN, OpenArgs, OpenEvent, RuleRef, WriteRootKey, action, detector,
    flags, kind, stat,
};

use super::{consumer, dropped, enforcing, fill_header, governed, mark_credential, sent, workspace_pending};
use crate::{
    kread::{self, read},
    maps, session,
};

const SIGKILL: u32 = 9;
const O_ACCMODE: u64 = 0o3;
const O_WRONLY: u64 = 0o1;
const O_CREAT: u64 = 0o100;
const O_TRUNC: u64 = 0o1000;
const AT_FDCWD: i64 = -100;
const EPERM: i64 = 1;
const EACCES: i64 = 13;

// Syscall tracepoint argument offsets (stable: common header, syscall nr, then 8-byte args).
const ARG0: usize = 16;
const ARG1: usize = 24;
const ARG2: usize = 32;

#[inline(always)]
fn save(filename_ptr: u64, open_flags: u64, dfd: i64) {
    if governed().is_none() {
        return;
    }
    let args = OpenArgs { filename_ptr, flags: open_flags, dfd };
    let _ = maps::OPEN_ARGS.insert(&bpf_get_current_pid_tgid(), &args, 0);
}

#[inline(always)]
fn arg(ctx: &TracePointContext, offset: usize) -> u64 {
    // SAFETY: reads the tracepoint record at a fixed offset.
    unsafe { ctx.read_at::<u64>(offset) }.unwrap_or(0)
}

/// `openat(dfd, filename, flags, mode)`.
#[tracepoint(category = "syscalls", name = "sys_enter_openat")]
pub fn guard_enter_openat(ctx: TracePointContext) -> u32 {
    save(arg(&ctx, ARG1), arg(&ctx, ARG2), arg(&ctx, ARG0) as i64);
    0
}

/// `openat2(dfd, filename, how, size)`: flags live in user memory (`how->flags`), read at
/// entry; they only add O_CREAT/O_TRUNC intent, the access mode comes from the file itself.
#[tracepoint(category = "syscalls", name = "sys_enter_openat2")]
pub fn guard_enter_openat2(ctx: TracePointContext) -> u32 {
    let how = arg(&ctx, ARG2);
    // SAFETY: bounded user read, failure gives 0.
    let how_flags = unsafe { bpf_probe_read_user(how as *const u64) }.unwrap_or(0);
    save(arg(&ctx, ARG1), how_flags, arg(&ctx, ARG0) as i64);
    0
}

/// `open(filename, flags, mode)`.
#[tracepoint(category = "syscalls", name = "sys_enter_open")]
pub fn guard_enter_open(ctx: TracePointContext) -> u32 {
    save(arg(&ctx, ARG0), arg(&ctx, ARG1), AT_FDCWD);
    0
}

/// `creat(pathname, mode)` = open(O_CREAT|O_WRONLY|O_TRUNC).
#[tracepoint(category = "syscalls", name = "sys_enter_creat")]
pub fn guard_enter_creat(ctx: TracePointContext) -> u32 {
    save(arg(&ctx, ARG0), O_CREAT | O_WRONLY | O_TRUNC, AT_FDCWD);
    0
}

/// Exit of every open-family syscall (attached to each `sys_exit_*`; `ret` is at ARG0).
///
/// Judges first, from kernel objects, with nothing reserved: an allowed open the session's
/// record level leaves out is only counted, and a kill never waits on room in the ring buffer.
#[tracepoint(category = "syscalls", name = "sys_exit_openat")]
pub fn guard_exit_open(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: copy out of the map before removing the entry.
    let Some(args) = (unsafe { maps::OPEN_ARGS.get(&pid_tgid) }).copied() else { return 0 };
    let _ = maps::OPEN_ARGS.remove(&pid_tgid);
    let Some(task) = governed() else { return 0 };
    let (session, off) = (&task.session, &task.off);
    let ret = arg(&ctx, ARG0) as i64;
    // On the lsm tier the file_open hook already judged this open, refused it or reported its
    // verdict: here it is only counted and, at its record level, recorded as allowed.
    let lsm = super::lsm_tier();
    if ret == -EPERM && lsm {
        return 0;
    }

    let Some(scratch) = maps::SCRATCH.get_ptr_mut(0) else { return 0 };
    // SAFETY: this CPU's scratch slot; nothing else runs this program on it meanwhile.
    let j = unsafe { &mut (*scratch).open };
    j.identity = DevIno { dev: 0, ino: 0 };
    j.name_ptr = 0;
    j.action = action::ALLOW;
    j.detector = detector::NONE;
    j.rule = u32::MAX;
    j.flags = 0;
    j.consumer = u32::MAX;
    j.writes = u32::from(args.flags & (O_ACCMODE | O_CREAT | O_TRUNC) != 0);
    if ret >= 0 {
        let file = kread::fd_file(off, kread::current_task(), ret as u64);
        let identity = kread::file_identity(off, file);
        j.identity = identity;
        let dentry = kread::file_dentry(off, file);
        let name_ptr = kread::dentry_name_ptr(off, dentry);
        j.name_ptr = name_ptr;
        consumer::confirm_script(&identity, name_ptr);
        let f_flags = read(file, off.file_f_flags()).unwrap_or(0);
        let writes = (f_flags as u64 & O_ACCMODE) != 0 || args.flags & (O_CREAT | O_TRUNC) != 0;
        j.writes = u32::from(writes);
        let access = Access {
            // Reads only here: on this tier an O_TRUNC has emptied the file before this exit
            // runs, a kill saves nothing (the lsm tier refuses it before, see lsm.rs), and one
            // condition more is past the 6.1 verifier's budget for this program.
            reads_or_empties: (f_flags as u64 & O_ACCMODE) != O_WRONLY,
            writes,
        };
        if !lsm && let Some(v) = judge_open(off, session, file, &identity, dentry, name_ptr, access) {
            j.detector = v.detector;
            j.rule = v.rule;
            j.action = if v.enforced { action::KILL } else { action::AUDIT };
            if v.from_inode {
                j.flags |= flags::MATCH_INODE;
            }
            if v.consumer != u32::MAX {
                j.flags |= flags::CONSUMER_READ;
                j.consumer = v.consumer;
            }
        }
    } else if ret == -EACCES && args.flags & (O_ACCMODE | O_CREAT | O_TRUNC) != 0 {
        // A write refused by the session's Landlock write roots (or by file permissions:
        // the record says both).
        j.action = action::DENY;
        j.detector = detector::CONFINEMENT;
    }
    // Loaded back from map memory (volatile: not the values the compiler just stored).
    // SAFETY: plain reads of this CPU's scratch slot.
    let (act, writes) = unsafe { (core::ptr::read_volatile(&j.action), core::ptr::read_volatile(&j.writes) != 0) };
    maps::count(maps::Count::Open { writes }, act == action::KILL || act == action::DENY);
    if act == action::KILL {
        // SAFETY: plain helper call; the task dies before returning to user space.
        unsafe { bpf_send_signal(SIGKILL) };
        maps::bump(stat::KILLED);
    }
    if act == action::ALLOW
        && !guard_common::RecordLevel::sends_allowed_open(maps::record_level(session.session_id), writes)
    {
        maps::bump(stat::OPEN_UNRECORDED);
        return 0;
    }

    let Some(mut entry) = maps::EVENTS.reserve::<OpenEvent>(0) else {
        dropped();
        return 0;
    };
    // SAFETY: the reservation is exactly one OpenEvent; every field is written below.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.header, kind::OPEN, &task);
    // SAFETY (the reads): this CPU's scratch slot.
    unsafe {
        ev.header.action = act;
        ev.header.detector = core::ptr::read_volatile(&j.detector);
        ev.header.rule = core::ptr::read_volatile(&j.rule);
        ev.header.flags |= core::ptr::read_volatile(&j.flags);
        ev.consumer = core::ptr::read_volatile(&j.consumer);
        ev.file = core::ptr::read_volatile(&j.identity);
    }
    ev.flags = args.flags;
    ev.dfd = args.dfd;
    ev.ret = ret;
    ev._pad = 0;
    // SAFETY: as above.
    let name_ptr = unsafe { core::ptr::read_volatile(&j.name_ptr) };
    ev.name[0] = 0;
    if name_ptr != 0 {
        // SAFETY: kernel string, bounded copy.
        if unsafe { bpf_probe_read_kernel_str_bytes(name_ptr as *const u8, &mut ev.name) }.is_err() {
            ev.name[0] = 0;
        }
    }
    // The caller's path string, for the record only: decisions used the file above.
    // SAFETY: bounded user read.
    match unsafe { bpf_probe_read_user_str_bytes(args.filename_ptr as *const u8, &mut ev.path) } {
        Ok(bytes) if bytes.len() >= guard_common::PATH_LEN - 1 => ev.header.flags |= flags::PATH_TRUNCATED,
        Ok(_) => {}
        Err(_) => {
            ev.path[0] = 0;
            ev.header.flags |= flags::PATH_UNREADABLE;
        }
    }
    entry.submit(0);
    sent(stat::OPEN);
    0
}

/// A file decision: which detector and rule, and whether enforcement applies (kill on the
/// host tier, EPERM on the lsm tier) or the match is only recorded.
pub struct FileVerdict {
    pub detector: u32,
    pub rule: u32,
    pub enforced: bool,
    pub from_inode: bool,
    /// A credential read by its consumer (the daemon's index), else `u32::MAX`.
    pub consumer: u32,
}

/// What an open can do with the file.
#[derive(Clone, Copy)]
pub struct Access {
    /// Read access (O_RDONLY, O_RDWR): a credential's data could reach user space; or O_TRUNC
    /// without O_CREAT: the caller means to empty a file that exists. (One flag: every bool
    /// more doubles the states the 6.1 verifier walks.)
    pub reads_or_empties: bool,
    /// Write access, O_CREAT or O_TRUNC.
    pub writes: bool,
}

const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;
const BPF_FS_MAGIC: u64 = 0xcafe_4a11;
const PIPEFS_MAGIC: u64 = 0x5049_5045;
const SOCKFS_MAGIC: u64 = 0x534f_434b;

/// Judge an open of `file` by a session process. Shared by the exit tracepoint (host tier)
/// and the `file_open` LSM hook (lsm tier).
#[inline(always)]
pub fn judge_open(
    off: &KernelOffsets,
    session: &session::Session,
    file: u64,
    identity: &DevIno,
    dentry: u64,
    name_ptr: u64,
    access: Access,
) -> Option<FileVerdict> {
    // A known credential file (by identity) counts whatever the open does (O_TRUNC destroys
    // it); a file that only has a credential's name counts when it is read or emptied on
    // purpose (O_TRUNC without O_CREAT): extracting a package that ships `test/key.pem`
    // (O_CREAT|O_TRUNC of a new file) is no harvesting.
    if let Some((rule, from_inode)) = credential_match(off, identity, dentry, name_ptr)
        && (from_inode || access.reads_or_empties)
    {
        if !from_inode {
            // Remember the file's identity: a hardlink to it under another name is the same
            // credential from now on.
            let _ = maps::CRED_INODES.insert(identity, &rule, 0);
        }
        if rule.consumer_slot != 0 {
            match consumer::check_read(rule.consumer_slot) {
                consumer::Read::First(index) => {
                    return Some(FileVerdict {
                        detector: detector::CREDENTIAL,
                        rule: rule.rule,
                        enforced: false,
                        from_inode,
                        consumer: index,
                    });
                }
                consumer::Read::Again => return None,
                consumer::Read::NotConsumer => {}
            }
        }
        mark_credential(session.session_id);
        return Some(FileVerdict {
            detector: detector::CREDENTIAL,
            rule: rule.rule,
            enforced: enforcing(rule.mode),
            from_inode,
            consumer: u32::MAX,
        });
    }
    let writes = access.writes;
    if !writes {
        let cfg = maps::config()?;
        if cfg.read_scope == 0 {
            return None;
        }
        if under_roots(off, dentry, session.session_id, &maps::READ_ROOTS) {
            return None;
        }
        return Some(FileVerdict {
            detector: detector::SCOPE_FILE,
            rule: cfg.read_rule,
            enforced: enforcing(cfg.write_mode) && !workspace_pending(cfg.read_scope, session.session_id),
            from_inode: false,
            consumer: u32::MAX,
        });
    }
    // Escape and tampering: cgroupfs (moving to another cgroup), bpffs, guard's own files.
    let inode = read(file, off.file_f_inode()).unwrap_or(0);
    let sb = read(inode, off.inode_i_sb()).unwrap_or(0);
    let magic = read(sb, off.sb_s_magic()).unwrap_or(0);
    // guard's own files, and the consumers' binaries and scripts (rewriting one would make
    // any code a consumer).
    // SAFETY: presence check only.
    let protected = unsafe { maps::PROTECTED.get(identity) }.is_some() || consumer::is_consumer_file(identity);
    // cgroupfs: writing inside the session's own subtree (moving to a nested cgroup) is fine;
    // a cgroup directory's inode number is its cgroup id.
    let escape = magic == CGROUP2_SUPER_MAGIC && !under_dir(off, dentry, |dir: &DevIno| dir.ino == session.session_id);
    if escape || magic == BPF_FS_MAGIC || protected {
        return Some(FileVerdict {
            detector: detector::SELF_PROTECT,
            rule: u32::MAX,
            enforced: enforcing(guard_common::mode::ENFORCE),
            from_inode: protected,
            consumer: u32::MAX,
        });
    }
    // A pipe or socket reopened through /dev/stdout or /proc/self/fd/N is no file write.
    if magic == PIPEFS_MAGIC || magic == SOCKFS_MAGIC {
        return None;
    }
    let cfg = maps::config()?;
    if cfg.write_scope != 0 && !under_write_root(off, dentry, session.session_id) {
        return Some(FileVerdict {
            detector: detector::SCOPE_FILE,
            rule: cfg.write_rule,
            enforced: enforcing(cfg.write_mode) && !workspace_pending(cfg.write_scope, session.session_id),
            from_inode: false,
            consumer: u32::MAX,
        });
    }
    None
}

/// Credential by identity first, then by the opened dentry's name: exact, exempting or
/// matching suffix (reversed trie), then prefix.
#[inline(always)]
pub fn credential_match(off: &KernelOffsets, identity: &DevIno, dentry: u64, name_ptr: u64) -> Option<(RuleRef, bool)> {
    // SAFETY: copy of a plain value.
    if let Some(rule) = unsafe { maps::CRED_INODES.get(identity) } {
        return Some((*rule, true));
    }
    let scratch = maps::SCRATCH.get_ptr_mut(0)?;
    // SAFETY: per-CPU scratch, ours for the duration of this program.
    let scratch = unsafe { &mut *scratch };
    scratch.name = [0; NAME_LEN];
    // SAFETY: kernel string, bounded copy.
    let len = unsafe { bpf_probe_read_kernel_str_bytes(name_ptr as *const u8, &mut scratch.name) }.ok()?.len();
    if len == 0 {
        return None;
    }
    // Exact, longest prefix and longest suffix (reversed) are all looked up: any exemption
    // (`!*.pub`) wins; otherwise the first hit names the rule. Same order as the engine's
    // `CompiledCredentials::match_name`, which the tests hold the two sides to.
    let mut found = false;
    let mut chosen = RuleRef { rule: 0, mode: 0, exempt: 0, consumer_slot: 0, _pad: 0 };
    // SAFETY: the reference is read at once, before any other map call.
    if let Some(hit) = unsafe { maps::CRED_NAMES.get(&scratch.name) } {
        if hit.exempt != 0 {
            return None;
        }
        chosen = *hit;
        found = true;
    }
    scratch.key.data = scratch.name;
    scratch.key.prefix_len = (len * 8) as u32;
    if let Some(hit) = maps::CRED_NAME_PREFIX.get(&scratch.key) {
        if hit.exempt != 0 {
            return None;
        }
        if !found {
            chosen = *hit;
            found = true;
        }
    }
    scratch.key.data = [0; NAME_LEN];
    let mut i = 0;
    while i < NAME_LEN {
        if i < len {
            let from = (len - 1 - i) & (NAME_LEN - 1);
            scratch.key.data[i] = scratch.name[from];
        }
        i += 1;
    }
    if let Some(hit) = maps::CRED_NAME_SUFFIX.get(&scratch.key) {
        if hit.exempt != 0 {
            return None;
        }
        if !found {
            chosen = *hit;
            found = true;
        }
    }
    if !found {
        return None;
    }
    if scratch.name[..8] == *b"environ\0" && own_proc_dir(off, dentry) {
        // A process reading its own environment learns nothing new.
        return None;
    }
    // A name match inside an exempt directory (public certificates) is no credential.
    if under_dir(off, dentry, |dir| unsafe { maps::CRED_EXEMPT_DIRS.get(dir) }.is_some()) {
        return None;
    }
    Some((chosen, false))
}

/// Is this dentry's parent the `/proc/<pid>` (or `task/<tid>`) directory of the current task?
/// (`/proc/self` is a symlink the open already followed to the numeric directory.)
#[inline(always)]
fn own_proc_dir(off: &KernelOffsets, dentry: u64) -> bool {
    let parent = read(dentry, off.dentry_d_parent()).unwrap_or(0);
    let name_ptr = kread::dentry_name_ptr(off, parent);
    let mut digits = [0u8; 12];
    // SAFETY: kernel string, bounded copy.
    if unsafe { bpf_probe_read_kernel_str_bytes(name_ptr as *const u8, &mut digits) }.is_err() {
        return false;
    }
    let mut value: u64 = 0;
    let mut i = 0;
    while i < 11 {
        let b = digits[i];
        if b == 0 {
            break;
        }
        if !b.is_ascii_digit() {
            return false;
        }
        value = value * 10 + (b - b'0') as u64;
        i += 1;
    }
    if i == 0 {
        return false;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    value == pid_tgid >> 32 || value == pid_tgid & 0xffff_ffff
}

/// Is the opened file below one of the write roots (global or the session's own)?
#[inline(always)]
pub fn under_write_root(off: &KernelOffsets, dentry: u64, session_id: u64) -> bool {
    under_roots(off, dentry, session_id, &maps::WRITE_ROOTS)
}

/// Is the dentry below a directory of `roots`, listed for every session (0) or this one?
#[inline(always)]
fn under_roots(off: &KernelOffsets, dentry: u64, session_id: u64, roots: &HashMap<WriteRootKey, u32>) -> bool {
    // SAFETY (both lookups): presence checks only.
    under_dir(off, dentry, |dir| {
        unsafe { roots.get(&WriteRootKey { session: 0, dir: *dir }) }.is_some()
            || unsafe { roots.get(&WriteRootKey { session: session_id, dir: *dir }) }.is_some()
    })
}

/// Does `listed` hold for the dentry or one of its parents? Walks at most MAX_DIR_DEPTH
/// levels, within the dentry's filesystem.
#[inline(always)]
fn under_dir(off: &KernelOffsets, dentry: u64, listed: impl Fn(&DevIno) -> bool) -> bool {
    let mut current = dentry;
    let mut depth = 0;
    while depth < MAX_DIR_DEPTH {
        if current == 0 {
            return false;
        }
        let dir = kread::dentry_identity(off, current);
        if listed(&dir) {
            return true;
        }
        let parent = read(current, off.dentry_d_parent()).unwrap_or(0);
        if parent == current {
            // The root of this filesystem: nothing above it here.
            return false;
        }
        current = parent;
        depth += 1;
    }
    false
}
