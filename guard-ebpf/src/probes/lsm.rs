//! The lsm tier: BPF LSM hooks refuse (EPERM) before the operation happens, where the host
//! tier can only kill afterwards. Same maps and decisions as the host tier (`file::judge_open`,
//! the HELD map, the daemon's tgid); attached only when the kernel accepts `lsm/` programs.
//!
//! Every hook's last argument is the verdict of the LSM programs before it: a non-zero value
//! is passed on unchanged.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel_str_bytes, bpf_probe_read_user_str_bytes},
    macros::lsm,
    programs::LsmContext,
};
use guard_common::{ExecWatch, FsEvent, NAME_LEN, OpenEvent, action, detector, fsop, kind, protect, stat, watch};

use super::{Governed, dropped, enforcing, file, fill_header, governed, sent};
use crate::{
    kread::{self, read},
    maps,
};

const EPERM: i32 = -1;
const O_ACCMODE: u32 = 0o3;
const O_WRONLY: u32 = 0o1;
const O_TRUNC: u32 = 0o1000;
const O_CREAT: u32 = 0o100;

#[lsm(hook = "file_open")]
pub fn guard_lsm_probe(_ctx: LsmContext) -> i32 {
    // Loaded, never attached: the tier probe (see kernel/tier.rs).
    0
}

/// The prologue of the hooks that pass an earlier LSM program's refusal on (`previous`, the
/// hook's last argument): that first, then the common one (`governed`), then `hook`.
#[inline(always)]
pub(super) fn after(previous: i32, hook: impl FnOnce(&Governed) -> i32) -> i32 {
    if previous != 0 {
        return previous;
    }
    match governed() {
        Some(task) => hook(&task),
        None => 0,
    }
}

/// `file_open(struct file *file)`.
#[lsm(hook = "file_open")]
pub fn guard_lsm_file_open(ctx: LsmContext) -> i32 {
    after(ctx.arg(1), |task| file_open(task, ctx.arg(0)))
}

#[inline(always)]
fn file_open(task: &Governed, file: u64) -> i32 {
    let off = &task.off;
    let identity = kread::file_identity(off, file);
    let dentry = kread::file_dentry(off, file);
    let name_ptr = kread::dentry_name_ptr(off, dentry);
    let f_flags = read(file, off.file_f_flags()).unwrap_or(0);
    // O_TRUNC is still in f_flags here: the truncation comes after this hook.
    let access = file::Access {
        reads_or_empties: f_flags & O_ACCMODE != O_WRONLY || (f_flags & O_TRUNC != 0 && f_flags & O_CREAT == 0),
        writes: f_flags & O_ACCMODE != 0 || f_flags & O_TRUNC != 0,
    };
    let Some(verdict) = file::judge_open(off, &task.session, file, &identity, dentry, name_ptr, access) else {
        return 0;
    };
    let act = if verdict.enforced { action::DENY } else { action::AUDIT };
    if let Some(mut entry) = maps::EVENTS.reserve::<OpenEvent>(0) {
        // SAFETY: the reservation is exactly one OpenEvent; every field is written below.
        let ev = unsafe { &mut *entry.as_mut_ptr() };
        fill_header(&mut ev.header, kind::OPEN, task);
        ev.header.action = act;
        ev.header.detector = verdict.detector;
        ev.header.rule = verdict.rule;
        if verdict.from_inode {
            ev.header.flags |= guard_common::flags::MATCH_INODE;
        }
        ev.consumer = verdict.consumer;
        ev._pad = 0;
        if verdict.consumer != u32::MAX {
            ev.header.flags |= guard_common::flags::CONSUMER_READ;
        }
        ev.file = identity;
        ev.flags = f_flags as u64;
        ev.dfd = 0;
        ev.ret = if verdict.enforced { -1 } else { 0 };
        ev.path[0] = 0;
        ev.name[0] = 0;
        // The path as the caller gave it, saved by the syscall entry program (for the record
        // only); else the dentry name stands in.
        let pid_tgid = bpf_get_current_pid_tgid();
        // SAFETY: the pointer value is copied out at once.
        let user_path = unsafe { maps::OPEN_ARGS.get(&pid_tgid) }.map_or(0, |args| args.filename_ptr);
        // SAFETY: bounded user read; failure leaves the fallback below.
        let from_user =
            user_path != 0 && unsafe { bpf_probe_read_user_str_bytes(user_path as *const u8, &mut ev.path) }.is_ok();
        if !from_user {
            // SAFETY: kernel string, bounded copy.
            let _ = unsafe { bpf_probe_read_kernel_str_bytes(name_ptr as *const u8, &mut ev.path[..NAME_LEN]) };
        }
        // SAFETY: kernel string, bounded copy.
        let _ = unsafe { bpf_probe_read_kernel_str_bytes(name_ptr as *const u8, &mut ev.name) };
        entry.submit(0);
        sent(stat::OPEN);
    } else {
        dropped();
    }
    if verdict.enforced {
        // The exit tracepoint leaves an EPERM'd open alone on this tier: count it here.
        maps::count(maps::Count::Open { writes: access.writes }, true);
        maps::bump(stat::DENIED);
        EPERM
    } else {
        0
    }
}

/// `bprm_check_security(struct linux_binprm *bprm)`: exec refused by file identity. The exec
/// hold (tracepoint) still judges argv for everything the policy watches.
#[lsm(hook = "bprm_check_security")]
pub fn guard_lsm_bprm_check(ctx: LsmContext) -> i32 {
    after(ctx.arg(1), |task| bprm_check(task, ctx.arg(0)))
}

#[inline(always)]
fn bprm_check(task: &Governed, bprm: u64) -> i32 {
    let file = read(bprm, task.off.bprm_file()).unwrap_or(0);
    let identity = kread::file_identity(&task.off, file);
    // SAFETY: copy of a plain value.
    let Some(w) = (unsafe { maps::EXEC_WATCH_INODES.get(&identity) }).copied() else { return 0 };
    if deny_exec(&w) {
        maps::bump(stat::DENIED);
        return EPERM;
    }
    0
}

#[inline(always)]
fn deny_exec(w: &ExecWatch) -> bool {
    w.kind == watch::DENY && enforcing(w.mode)
}

/// Judge a change to `dentry` (the thing removed, renamed or truncated).
#[inline(always)]
fn judge_change(task: &Governed, dentry: u64, op: u32) -> i32 {
    let (session, off) = (&task.session, &task.off);
    let identity = kread::dentry_identity(off, dentry);
    // SAFETY: copy of a plain value.
    let credential = unsafe { maps::CRED_INODES.get(&identity) }.copied();
    let (det, rule, enforced) = if let Some(rule) = credential {
        (detector::CREDENTIAL, rule.rule, enforcing(rule.mode))
    } else {
        let Some(cfg) = maps::config() else { return 0 };
        if cfg.write_scope == 0 || file::under_write_root(off, dentry, session.session_id) {
            return 0;
        }
        let pending = super::workspace_pending(cfg.write_scope, session.session_id);
        (detector::SCOPE_FILE, cfg.write_rule, enforcing(cfg.write_mode) && !pending)
    };
    if let Some(mut entry) = maps::EVENTS.reserve::<FsEvent>(0) {
        // SAFETY: the reservation is exactly one FsEvent; every field is written below.
        let ev = unsafe { &mut *entry.as_mut_ptr() };
        fill_header(&mut ev.header, kind::FS_CHANGE, task);
        ev.header.action = if enforced { action::DENY } else { action::AUDIT };
        ev.header.detector = det;
        ev.header.rule = rule;
        ev.file = identity;
        ev.op = op;
        ev._pad = 0;
        ev.name[0] = 0;
        let name_ptr = kread::dentry_name_ptr(off, dentry);
        // SAFETY: kernel string, bounded copy.
        let _ = unsafe { bpf_probe_read_kernel_str_bytes(name_ptr as *const u8, &mut ev.name) };
        entry.submit(0);
        sent(stat::OPEN);
    } else {
        dropped();
    }
    if enforced {
        maps::bump(stat::DENIED);
        EPERM
    } else {
        0
    }
}

/// `inode_unlink(struct inode *dir, struct dentry *dentry)`.
#[lsm(hook = "inode_unlink")]
pub fn guard_lsm_inode_unlink(ctx: LsmContext) -> i32 {
    after(ctx.arg(2), |task| judge_change(task, ctx.arg(1), fsop::UNLINK))
}

/// `inode_rmdir(struct inode *dir, struct dentry *dentry)`.
#[lsm(hook = "inode_rmdir")]
pub fn guard_lsm_inode_rmdir(ctx: LsmContext) -> i32 {
    after(ctx.arg(2), |task| judge_change(task, ctx.arg(1), fsop::RMDIR))
}

/// `inode_rename(struct inode *old_dir, struct dentry *old_dentry, struct inode *new_dir,
/// struct dentry *new_dentry)`: judged on what is moved away.
#[lsm(hook = "inode_rename")]
pub fn guard_lsm_inode_rename(ctx: LsmContext) -> i32 {
    after(ctx.arg(4), |task| judge_change(task, ctx.arg(1), fsop::RENAME))
}

/// `path_truncate(const struct path *path)`.
#[lsm(hook = "path_truncate")]
pub fn guard_lsm_path_truncate(ctx: LsmContext) -> i32 {
    after(ctx.arg(1), |task| {
        let path: u64 = ctx.arg(0);
        judge_change(task, read(path, task.off.path_dentry()).unwrap_or(0), fsop::TRUNCATE)
    })
}

/// Report a refused attempt on a held task, the daemon, or bpf().
#[inline(always)]
fn report_self(task: &Governed, target: u32, what: u32, detail: u32) {
    super::protect::report(task, action::DENY, target, what, detail);
    maps::bump(stat::DENIED);
}

/// Is `tgid` a held task or the daemon (and not the caller itself)?
#[inline(always)]
fn protected_task(tgid: u32) -> Option<u32> {
    let me = (bpf_get_current_pid_tgid() >> 32) as u32;
    if tgid == 0 || tgid == me {
        return None;
    }
    // SAFETY: presence check only.
    if unsafe { maps::HELD.get(&tgid) }.is_some() {
        return Some(protect::SIGNAL_HELD);
    }
    if maps::config().is_some_and(|cfg| cfg.daemon_tgid == tgid) && maps::daemon_alive() {
        return Some(protect::SIGNAL_DAEMON);
    }
    None
}

/// `task_kill(struct task_struct *p, struct kernel_siginfo *info, int sig, const struct cred *cred)`.
#[lsm(hook = "task_kill")]
pub fn guard_lsm_task_kill(ctx: LsmContext) -> i32 {
    after(ctx.arg(4), |task| {
        let target_task: u64 = ctx.arg(0);
        let sig: u64 = ctx.arg(2);
        let target = read(target_task, task.off.task_tgid()).unwrap_or(0);
        let Some(what) = protected_task(target) else { return 0 };
        report_self(task, target, what, sig as u32);
        EPERM
    })
}

/// `ptrace_access_check(struct task_struct *child, unsigned int mode)`.
#[lsm(hook = "ptrace_access_check")]
pub fn guard_lsm_ptrace(ctx: LsmContext) -> i32 {
    after(ctx.arg(2), |task| {
        let child: u64 = ctx.arg(0);
        let mode: u64 = ctx.arg(1);
        let target = read(child, task.off.task_tgid()).unwrap_or(0);
        if protected_task(target).is_none() {
            return 0;
        }
        report_self(task, target, protect::PTRACE, mode as u32);
        EPERM
    })
}

/// `bpf(int cmd, union bpf_attr *attr, unsigned int size, ...)`: no bpf() from sessions.
/// (The hook gained an argument in 6.9, so the previous verdict's position differs; guard is
/// the only BPF LSM user it expects, and refuses only for session tasks.)
#[lsm(hook = "bpf")]
pub fn guard_lsm_bpf(ctx: LsmContext) -> i32 {
    let Some(task) = governed() else { return 0 };
    let cmd: u64 = ctx.arg(0);
    if !enforcing(guard_common::mode::ENFORCE) {
        return 0;
    }
    report_self(&task, 0, protect::BPF, cmd as u32);
    EPERM
}
