//! exec: report every exec of a session process, and stop watched ones before their first
//! instruction.
//!
//! `sched_process_exec` fires after the new image is loaded and before it runs. A signal
//! queued here is delivered on the way back to user space, so SIGKILL means the image never
//! runs and SIGSTOP holds it for the daemon, which reads argv/env from /proc race-free and
//! then sends SIGCONT or SIGKILL.

use aya_ebpf::{
    helpers::{bpf_probe_read_kernel_str_bytes, bpf_probe_read_user_buf, generated::bpf_send_signal},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use guard_common::{
    ARGS_LEN, ExecEvent, ExecWatch, HeldInfo, NAME_LEN, PATH_LEN, action, detector, escalation, flags, kind, stat,
    watch,
};

use super::{Governed, consumer, dropped, enforcing, escalation, fill_header, governed, sent, workspace_pending};
use crate::{
    kread::{self, read},
    maps,
};

const SIGKILL: u32 = 9;
const SIGSTOP: u32 = 19;

/// `sched_process_exec(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)`.
#[btf_tracepoint(function = "sched_process_exec")]
pub fn guard_sched_exec(ctx: BtfTracePointContext) -> i32 {
    let Some(task) = governed() else { return 0 };
    let off = &task.off;
    let old_pid: u32 = ctx.arg(1);
    let bprm: u64 = ctx.arg(2);
    let file = read(bprm, off.bprm_file()).unwrap_or(0);
    let identity = kread::file_identity(off, file);

    let Some(mut entry) = maps::EVENTS.reserve::<ExecEvent>(0) else {
        dropped();
        // The daemon will never hear of this exec. A watched one cannot be judged: kill it
        // rather than let it run unjudged or leave it stopped forever.
        if lookup_watch(off, file, &identity, None).is_some() && enforcing(guard_common::mode::ENFORCE) {
            // SAFETY: plain helper call; signals the current (exec'ing) process.
            unsafe { bpf_send_signal(SIGKILL) };
            maps::bump(stat::KILLED);
        }
        return 0;
    };
    // SAFETY: the reservation is exactly one ExecEvent; every field is written below.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.header, kind::EXEC, &task);
    ev.file = identity;
    ev.old_pid = old_pid;
    ev.args_len = read_args(off, &mut ev.args, &mut ev.header.flags);
    let filename = read(bprm, off.bprm_filename()).unwrap_or(0);
    // SAFETY: bprm->filename is a kernel string; the helper bounds the copy.
    let filename_len = match unsafe { bpf_probe_read_kernel_str_bytes(filename as *const u8, &mut ev.filename) } {
        Ok(bytes) => bytes.len(),
        Err(_) => {
            ev.filename[0] = 0;
            0
        }
    };

    let verdict = judge(&task, file, &identity, (&ev.args, ev.args_len), (&ev.filename, filename_len));
    // Whatever the old image was allowed to read, the new one is not, until judged.
    consumer::forget((aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32);
    if let Some((act, rule)) = verdict {
        ev.header.action = act;
        ev.header.detector = detector::DESTRUCTIVE;
        ev.header.rule = rule;
    } else if consumer::wants_judgement(&identity) {
        // A consumer binary (or a consumer script's interpreter): held so the daemon can
        // judge, from argv and the environment, whether this image is the consumer.
        ev.header.action = action::HOLD;
        ev.header.flags |= flags::CONSUMER_HOLD;
    } else if maps::config()
        .is_some_and(|cfg| workspace_pending(cfg.write_scope | cfg.read_scope, task.session.session_id))
    {
        // The session's first exec (`guard launch`'s command): held until the daemon made
        // its workspace a root, else the first writes race that registration and are only
        // recorded.
        ev.header.action = action::HOLD;
        ev.header.flags |= flags::WORKSPACE_HOLD;
    }
    if ev.header.action == action::HOLD && !maps::daemon_alive() {
        // No one to ask. A hold only for the consumer judgement or the workspace lets the
        // image run (without a grant; writes recorded as before); any other fails closed.
        if ev.header.flags & (flags::CONSUMER_HOLD | flags::WORKSPACE_HOLD) != 0 {
            ev.header.action = action::ALLOW;
        } else {
            ev.header.action = action::KILL;
            maps::bump(stat::KILLED_NO_DAEMON);
        }
    }
    let act = ev.header.action;
    let ev_time = ev.header.ktime_ns;
    // Signal and list the hold before the daemon can read of it: it may judge and send
    // SIGCONT at once, and a SIGCONT discards a pending SIGSTOP only if that is already
    // queued. Nothing takes effect before this program returns: the signal is acted on at the
    // return to user space, so no instruction of the new image runs either way.
    match act {
        action::KILL => {
            // SAFETY: plain helper call; signals the current (exec'ing) process.
            unsafe { bpf_send_signal(SIGKILL) };
            maps::bump(stat::KILLED);
        }
        action::HOLD => {
            let pid_tgid = aya_ebpf::helpers::bpf_get_current_pid_tgid();
            let info = HeldInfo { session_id: task.session.session_id, since_ns: ev_time };
            // Listed first, flagged second: the daemon clears the flag only after checking the
            // list is empty, so it can never miss this entry.
            let _ = maps::HELD.insert(&((pid_tgid >> 32) as u32), &info, 0);
            if let Some(flag) = maps::HELD_ANY.get_ptr_mut(0) {
                // SAFETY: a plain u32 store into map memory.
                unsafe { *flag = 1 };
            }
            // SAFETY: as above.
            unsafe { bpf_send_signal(SIGSTOP) };
            maps::bump(stat::HELD);
        }
        _ => {}
    }
    entry.submit(0);
    sent(stat::EXEC);
    0
}

/// What to do with this exec: `None` lets it run unremarked.
#[inline(always)]
fn judge(
    task: &Governed,
    file: u64,
    identity: &guard_common::DevIno,
    args: (&[u8; ARGS_LEN], u32),
    filename: (&[u8; PATH_LEN], usize),
) -> Option<(u32, u32)> {
    let esc = escalation(task.session.session_id);
    if esc & escalation::FREEZE != 0 {
        return Some((action::HOLD, u32::MAX));
    }
    let watch = lookup_watch(&task.off, file, identity, Some(filename))?;
    match watch.kind {
        watch::DENY => {
            if enforcing(watch.mode) {
                Some((action::KILL, watch.rule))
            } else {
                Some((action::AUDIT, watch.rule))
            }
        }
        watch::HOLD => Some((action::HOLD, watch.rule)),
        watch::HOLD_IF_SCRIPT if runs_script(args.0, args.1) => Some((action::HOLD, watch.rule)),
        _ => None,
    }
}

/// An `ExecWatch` as one scalar (0 = none), so results of separate lookups never meet as
/// pointers: LLVM folds `a.is_some() || b.is_some()` on map pointers into a pointer OR, which
/// the verifier refuses.
#[inline(always)]
fn pack(w: &ExecWatch) -> u64 {
    w.kind as u64 | (w.mode as u64) << 8 | (w.rule as u64) << 32
}

#[inline(always)]
fn unpack(v: u64) -> ExecWatch {
    ExecWatch { kind: v as u8, mode: (v >> 8) as u8, _pad: [0; 2], rule: (v >> 32) as u32 }
}

#[inline(never)]
fn watch_by_inode(identity: &guard_common::DevIno) -> u64 {
    // SAFETY: the value is copied out at once.
    match unsafe { maps::EXEC_WATCH_INODES.get(identity) } {
        Some(w) => pack(w),
        None => 0,
    }
}

#[inline(never)]
fn watch_by_name(name: &[u8; NAME_LEN]) -> u64 {
    // SAFETY: the value is copied out at once.
    match unsafe { maps::EXEC_WATCH_NAMES.get(name) } {
        Some(w) => pack(w),
        None => 0,
    }
}

#[inline(never)]
fn watch_by_path(key: &aya_ebpf::maps::lpm_trie::Key<[u8; PATH_LEN]>) -> u64 {
    match maps::EXEC_WATCH_PATHS.get(key) {
        Some(w) => pack(w),
        None => 0,
    }
}

#[inline(always)]
fn lookup_watch(
    off: &guard_common::KernelOffsets,
    file: u64,
    identity: &guard_common::DevIno,
    filename: Option<(&[u8; PATH_LEN], usize)>,
) -> Option<ExecWatch> {
    // The strongest of three views wins: a `#!` script run as `curl` is an "always" hold by
    // its name although its interpreter (/bin/sh) is only a script-flag watch.
    let by_inode = watch_by_inode(identity);
    if by_inode != 0 && (by_inode & 0xff) as u8 != watch::HOLD_IF_SCRIPT {
        return Some(unpack(by_inode));
    }
    let mut best = by_inode;
    let scratch = maps::SCRATCH.get_ptr_mut(0)?;
    // SAFETY: per-CPU scratch, ours for the duration of this program.
    let scratch = unsafe { &mut *scratch };
    // The name of the file actually executed (its dentry), not the string the caller passed.
    scratch.name = [0; NAME_LEN];
    let dentry = kread::file_dentry(off, file);
    let name_ptr = kread::dentry_name_ptr(off, dentry);
    // SAFETY: kernel string, bounded copy.
    if unsafe { bpf_probe_read_kernel_str_bytes(name_ptr as *const u8, &mut scratch.name) }.is_ok() {
        let by_name = watch_by_name(&scratch.name);
        if by_name != 0 && (by_name & 0xff) as u8 != watch::HOLD_IF_SCRIPT {
            return Some(unpack(by_name));
        }
        if best == 0 {
            best = by_name;
        }
    }
    // For `#!` scripts bprm->file is already the interpreter; the name the script was run by
    // ends bprm->filename (a kernel copy). Match `/<name>` at its end: "/" + filename reversed
    // into a trie key whose entries are reversed "/<name>" prefixes. `len` comes from the
    // string-copy helper: one bounded unknown for the verifier.
    if let Some((filename, len)) = filename {
        if len > 0 && len < PATH_LEN {
            let key = &mut scratch.path_key;
            // Branch-free, so the verifier sees one state per iteration whatever `len` is:
            // bytes past `len + 1` are garbage (wrapped reads) but beyond the prefix length.
            let mut i = 0;
            while i < PATH_LEN {
                key.data[i] = filename[(len + PATH_LEN - 1 - i) & (PATH_LEN - 1)];
                i += 1;
            }
            key.data[len & (PATH_LEN - 1)] = b'/';
            key.prefix_len = ((len + 1) * 8) as u32;
            let by_path = watch_by_path(&scratch.path_key);
            if by_path != 0 && ((by_path & 0xff) as u8 != watch::HOLD_IF_SCRIPT || best == 0) {
                return Some(unpack(by_path));
            }
        }
    }
    if best != 0 { Some(unpack(best)) } else { None }
}

/// Copy the new image's argv (`mm->arg_start..arg_end`): no user code has run yet, so the
/// pages hold exactly what execve passed. Returns the bytes copied.
#[inline(always)]
fn read_args(off: &guard_common::KernelOffsets, args: &mut [u8; ARGS_LEN], event_flags: &mut u32) -> u32 {
    args[0] = 0;
    let task = kread::current_task();
    let mm = read(task, off.task_mm()).unwrap_or(0);
    let arg_start = read(mm, off.mm_arg_start()).unwrap_or(0);
    let arg_end = read(mm, off.mm_arg_end()).unwrap_or(0);
    if arg_start == 0 || arg_end <= arg_start {
        return 0;
    }
    let mut len = (arg_end - arg_start) as usize;
    if len > ARGS_LEN {
        len = ARGS_LEN;
        *event_flags |= flags::ARGS_TRUNCATED;
    }
    // Keep the bound visible to the verifier.
    let len = len & (2 * ARGS_LEN - 1);
    if len == 0 || len > ARGS_LEN {
        return 0;
    }
    // SAFETY: reads user memory of the new image into the event; failure reports nothing.
    match unsafe { bpf_probe_read_user_buf(arg_start as *const u8, &mut args[..len]) } {
        Ok(()) => len as u32,
        Err(_) => 0,
    }
}

/// Does an interpreter run a script we can read: does argv carry, after argv[0], an
/// inline-script option (a short cluster holding `c` or `e`: `-c`, `-e`, `-lc`, `-ec`; a long
/// option starting `--c`/`--e`: `--command`, `--eval`) or a word that is no option (a script
/// file: `bash x.sh`, `python3 x.py`, and every `#!` script, whose argv the kernel makes
/// `INTERPRETER SCRIPT`)? Words like `--instance-ids` or `-X` do not count; neither does a bare
/// interactive `bash`. Only the `len` bytes copied count (the rest of the buffer is stale).
#[inline(always)]
fn runs_script(args: &[u8; ARGS_LEN], len: u32) -> bool {
    let len = len as usize;
    // 0: inside a word that is not an option; 1: just after `-`; 2: inside a short cluster;
    // 3: just after `--`; 4: inside a long option (already judged).
    let mut state: u8 = 0;
    let mut at_arg_start = false;
    let mut i = 0;
    while i < ARGS_LEN {
        let b = if i < len { args[i] } else { 0 };
        if b == 0 {
            at_arg_start = true;
            state = 0;
        } else {
            if at_arg_start {
                if b != b'-' {
                    // An operand: the script file.
                    return true;
                }
                state = 1;
            } else if state == 1 {
                if b == b'-' {
                    state = 3;
                } else if b == b'c' || b == b'e' {
                    return true;
                } else {
                    state = if b.is_ascii_alphabetic() { 2 } else { 0 };
                }
            } else if state == 2 {
                if b == b'c' || b == b'e' {
                    return true;
                }
                if !b.is_ascii_alphabetic() {
                    state = 0;
                }
            } else if state == 3 {
                if b == b'c' || b == b'e' {
                    return true;
                }
                state = 4;
            }
            at_arg_start = false;
        }
        i += 1;
    }
    false
}
