//! Self-protection: nothing inside a session can undo a hold or touch the daemon.
//!
//! Host tier: a signal or ptrace from a session process to a held task or the daemon cannot be
//! refused at generation, so the sender is killed, and a held task that was continued anyway
//! is stopped again at its first system call (before it can act: the dynamic loader's first
//! instructions make no decision the kernel has not seen).

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, generated::bpf_send_signal},
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use guard_common::{SelfEvent, kind, protect, stat};

use super::{Governed, dropped, fill_header, governed, sent};
use crate::{kread::read, maps};

const SIGKILL: u32 = 9;
const SIGSTOP: u32 = 19;

/// Report a self-protection event; `act` is what happened (kill on the host tier, deny on the
/// lsm tier, hold for a re-stopped task). Shared with the lsm programs.
#[inline(always)]
pub fn report(task: &Governed, act: u32, target_tgid: u32, what: u32, detail: u32) {
    let Some(mut entry) = maps::EVENTS.reserve::<SelfEvent>(0) else {
        dropped();
        return;
    };
    // SAFETY: the reservation is exactly one SelfEvent; every field is written below.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.header, kind::SELF_PROTECT, task);
    ev.header.action = act;
    ev.header.detector = guard_common::detector::SELF_PROTECT;
    ev.target_tgid = target_tgid;
    ev.what = what;
    ev.detail = detail;
    ev._pad = 0;
    entry.submit(0);
    sent(stat::SELF_PROTECT);
}

#[inline(always)]
fn is_held(tgid: u32) -> bool {
    // SAFETY: presence check only.
    unsafe { maps::HELD.get(&tgid) }.is_some()
}

/// A dead daemon's pid may be someone else's by now: only a live one counts.
#[inline(always)]
fn is_daemon(tgid: u32) -> bool {
    maps::config().is_some_and(|cfg| cfg.daemon_tgid != 0 && cfg.daemon_tgid == tgid) && maps::daemon_alive()
}

/// Every system call: a held task running again was continued by someone else. One array
/// lookup when nothing is held (before the prologue: it runs for every task on the host).
#[tracepoint(category = "raw_syscalls", name = "sys_enter")]
pub fn guard_raw_sys_enter(_ctx: TracePointContext) -> u32 {
    match maps::HELD_ANY.get(0) {
        Some(&flag) if flag != 0 => {}
        _ => return 0,
    }
    let Some(task) = governed() else { return 0 };
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if !is_held(tgid) {
        return 0;
    }
    // SAFETY: plain helper call; stops the current task again.
    unsafe { bpf_send_signal(SIGSTOP) };
    report(&task, guard_common::action::HOLD, tgid, protect::ESCAPED_HOLD, SIGSTOP);
    0
}

/// `signal_generate(int sig, struct kernel_siginfo *info, struct task_struct *task, int group,
/// int result)`, in the sender's context.
#[btf_tracepoint(function = "signal_generate")]
pub fn guard_signal_generate(ctx: BtfTracePointContext) -> i32 {
    let Some(task) = governed() else { return 0 };
    let sig: u64 = ctx.arg(0);
    let target_task: u64 = ctx.arg(2);
    let target = read(target_task, task.off.task_tgid()).unwrap_or(0);
    let sender = (bpf_get_current_pid_tgid() >> 32) as u32;
    if target == 0 || target == sender {
        // Signals a task sends itself (our own SIGSTOP at exec among them).
        return 0;
    }
    let what = if is_held(target) {
        protect::SIGNAL_HELD
    } else if is_daemon(target) {
        // Told to the daemon before the signal arrives, so it can ignore it.
        // SAFETY: plain helper call.
        let now = unsafe { aya_ebpf::helpers::generated::bpf_ktime_get_ns() };
        let _ = maps::SIGNALERS.insert(&sender, &now, 0);
        protect::SIGNAL_DAEMON
    } else {
        return 0;
    };
    // SAFETY: plain helper call; the sender dies (the kernel defers it while IRQs are off).
    unsafe { bpf_send_signal(SIGKILL) };
    maps::bump(stat::KILLED);
    report(&task, guard_common::action::KILL, target, what, sig as u32);
    0
}

/// `ptrace(request, pid, addr, data)` at entry.
#[tracepoint(category = "syscalls", name = "sys_enter_ptrace")]
pub fn guard_enter_ptrace(ctx: TracePointContext) -> u32 {
    let Some(task) = governed() else { return 0 };
    // SAFETY: fixed syscall tracepoint layout (args at 16, 24, ...).
    let request = unsafe { ctx.read_at::<u64>(16) }.unwrap_or(0) as u32;
    // SAFETY: as above.
    let pid = unsafe { ctx.read_at::<u64>(24) }.unwrap_or(0) as u32;
    if pid == 0 || !(is_held(pid) || is_daemon(pid)) {
        return 0;
    }
    // SAFETY: plain helper call.
    unsafe { bpf_send_signal(SIGKILL) };
    maps::bump(stat::KILLED);
    report(&task, guard_common::action::KILL, pid, protect::PTRACE, request);
    0
}
