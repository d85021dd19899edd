//! exec: report every exec of a session process, and stop watched ones before their first
//! instruction.
//!
//! `sched_process_exec` fires after the new image is loaded and before it runs. A signal
//! queued here is delivered on the way back to user space, so SIGKILL means the image never
//! runs and SIGSTOP holds it for the daemon, which reads argv/env from /proc race-free and
//! then sends SIGCONT or SIGKILL.

use aya_ebpf::{
    helpers::{
        bpf_probe_read_kernel_str_bytes, bpf_probe_read_user_buf, generated::bpf_send_signal,
    },
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use guard_common::{
    ExecEvent, ExecWatch, NAME_LEN, action, detector, escalation, kind, stat, watch,
};

use super::{dropped, enforcing, escalation, fill_header, sent};
use crate::{
    kread::{self, read_at},
    maps::{self, ARGS_SCAN},
    session,
};

const SIGKILL: u32 = 9;
const SIGSTOP: u32 = 19;

/// `sched_process_exec(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)`.
#[btf_tracepoint(function = "sched_process_exec")]
pub fn guard_sched_exec(ctx: BtfTracePointContext) -> i32 {
    let Some(session) = session::current() else { return 0 };
    let off = maps::offsets();
    if off.valid == 0 {
        return 0;
    }
    let old_pid: u32 = ctx.arg(1);
    let bprm: u64 = ctx.arg(2);
    let file: u64 = read_at(bprm, off.bprm_file).unwrap_or(0);
    let identity = kread::file_identity(&off, file);

    let Some(mut entry) = maps::EVENTS.reserve::<ExecEvent>(0) else {
        // Without an event the daemon cannot judge a hold, so a watched exec that cannot be
        // reported is decided by the inode/name maps alone below.
        dropped();
        return 0;
    };
    // SAFETY: the reservation is exactly one ExecEvent; every field is written below.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.header, kind::EXEC, &session, &off);
    ev.file = identity;
    ev.old_pid = old_pid;
    ev._pad = 0;
    let filename: u64 = read_at(bprm, off.bprm_filename).unwrap_or(0);
    // SAFETY: bprm->filename is a kernel string; the helper bounds the copy.
    if unsafe { bpf_probe_read_kernel_str_bytes(filename as *const u8, &mut ev.filename) }.is_err()
    {
        ev.filename[0] = 0;
    }

    let verdict = judge(&off, &session, file, &identity);
    if let Some((act, rule)) = verdict {
        ev.header.action = act;
        ev.header.detector = detector::DESTRUCTIVE;
        ev.header.rule = rule;
        match act {
            action::KILL => {
                // SAFETY: plain helper call; signals the current (exec'ing) process.
                unsafe { bpf_send_signal(SIGKILL) };
                maps::bump(stat::KILLED);
            }
            action::HOLD => {
                // SAFETY: as above.
                unsafe { bpf_send_signal(SIGSTOP) };
                maps::bump(stat::HELD);
            }
            _ => {}
        }
    }
    entry.submit(0);
    sent(stat::EXEC);
    0
}

/// What to do with this exec: `None` lets it run unremarked.
#[inline(always)]
fn judge(
    off: &guard_common::KernelOffsets,
    session: &session::Session,
    file: u64,
    identity: &guard_common::DevIno,
) -> Option<(u32, u32)> {
    let esc = escalation(session.session_id);
    if esc & escalation::FREEZE != 0 {
        return Some((action::HOLD, u32::MAX));
    }
    let watch = lookup_watch(off, file, identity)?;
    match watch.kind {
        watch::DENY => {
            if enforcing(watch.mode) { Some((action::KILL, watch.rule)) } else { Some((action::AUDIT, watch.rule)) }
        }
        watch::HOLD => Some((action::HOLD, watch.rule)),
        watch::HOLD_IF_SCRIPT if has_inline_script(off) => Some((action::HOLD, watch.rule)),
        _ => None,
    }
}

#[inline(always)]
fn lookup_watch(
    off: &guard_common::KernelOffsets,
    file: u64,
    identity: &guard_common::DevIno,
) -> Option<ExecWatch> {
    // SAFETY: copies of plain values.
    if let Some(w) = unsafe { maps::EXEC_WATCH_INODES.get(identity) } {
        return Some(*w);
    }
    // The name of the file actually executed (its dentry), not the string the caller passed.
    let scratch = maps::SCRATCH.get_ptr_mut(0)?;
    // SAFETY: per-CPU scratch, ours for the duration of this program.
    let scratch = unsafe { &mut *scratch };
    scratch.name = [0; NAME_LEN];
    let dentry = kread::file_dentry(off, file);
    let name_ptr = kread::dentry_name_ptr(off, dentry);
    // SAFETY: kernel string, bounded copy.
    unsafe { bpf_probe_read_kernel_str_bytes(name_ptr as *const u8, &mut scratch.name) }.ok()?;
    // SAFETY: copy of a plain value.
    unsafe { maps::EXEC_WATCH_NAMES.get(&scratch.name) }.copied()
}

/// Does the new image's argv carry an option with `c` or `e` in it (`-c`, `-e`, `-lc`, `-ec`)?
/// Read from the new mm's argument pages: no user code has run yet, so they cannot change.
#[inline(always)]
fn has_inline_script(off: &guard_common::KernelOffsets) -> bool {
    let task = kread::current_task();
    let mm: u64 = read_at(task, off.task_mm).unwrap_or(0);
    let arg_start: u64 = read_at(mm, off.mm_arg_start).unwrap_or(0);
    let arg_end: u64 = read_at(mm, off.mm_arg_end).unwrap_or(0);
    if arg_start == 0 || arg_end <= arg_start {
        return false;
    }
    let Some(scratch) = maps::SCRATCH.get_ptr_mut(0) else { return false };
    // SAFETY: per-CPU scratch.
    let scratch = unsafe { &mut *scratch };
    scratch.args = [0; ARGS_SCAN];
    let len = (arg_end - arg_start) as usize;
    let len = if len > ARGS_SCAN { ARGS_SCAN } else { len };
    if len == 0 {
        return false;
    }
    // SAFETY: reads user memory of the new image; failure leaves zeros.
    if unsafe { bpf_probe_read_user_buf(arg_start as *const u8, &mut scratch.args[..len]) }.is_err()
    {
        return false;
    }
    // One pass: after a NUL, an argument starting with '-' is an option; flag c/e letters in it.
    let mut at_arg_start = false;
    let mut in_option = false;
    let mut i = 0;
    while i < ARGS_SCAN {
        let b = scratch.args[i];
        if b == 0 {
            at_arg_start = true;
            in_option = false;
        } else {
            if at_arg_start && b == b'-' {
                in_option = true;
            } else if in_option && (b == b'c' || b == b'e') {
                return true;
            }
            at_arg_start = false;
        }
        i += 1;
    }
    false
}
