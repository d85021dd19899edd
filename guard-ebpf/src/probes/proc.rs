//! Process lineage: fork and exit (tp_btf, typed arguments, stable across kernel versions
//! where the classic tracepoint formats are not).

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use guard_common::{ExitEvent, ForkEvent, kind, stat};

use super::{consumer, dropped, fill_header, governed, sent};
use crate::{
    kread::{self, read},
    maps,
};

/// `sched_process_fork(struct task_struct *parent, struct task_struct *child)`.
#[btf_tracepoint(function = "sched_process_fork")]
pub fn guard_sched_fork(ctx: BtfTracePointContext) -> i32 {
    let Some(task) = governed() else { return 0 };
    let off = &task.off;
    let child: u64 = ctx.arg(1);
    let child_pid = read(child, off.task_pid()).unwrap_or(0);
    let child_tgid = read(child, off.task_tgid()).unwrap_or(0);
    if child_pid != child_tgid {
        // A new thread, not a new process.
        return 0;
    }
    let Some(mut entry) = maps::EVENTS.reserve::<ForkEvent>(0) else {
        dropped();
        return 0;
    };
    // SAFETY: the reservation is exactly one ForkEvent; every field is written below.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.header, kind::FORK, &task);
    ev.child_pid = child_pid;
    ev.child_tgid = child_tgid;
    ev.child_start_ns = read(child, off.task_start_time()).unwrap_or(0);
    entry.submit(0);
    consumer::inherit((aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32, child_tgid);
    sent(stat::FORK);
    0
}

/// `sched_process_exit(struct task_struct *p, ...)`, in the exiting task's context.
#[btf_tracepoint(function = "sched_process_exit")]
pub fn guard_sched_exit(_ctx: BtfTracePointContext) -> i32 {
    let pid_tgid = aya_ebpf::helpers::bpf_get_current_pid_tgid();
    if maps::config().is_some_and(|cfg| cfg.daemon_tgid != 0 && cfg.daemon_tgid as u64 == pid_tgid >> 32)
        && pid_tgid as u32 == (pid_tgid >> 32) as u32
        && let Some(state) = maps::DAEMON_STATE.get_ptr_mut(0)
    {
        // The daemon is gone (killed, crashed): from now on held execs fail closed at once.
        // SAFETY: a plain u32 store into map memory.
        unsafe { (*state).exited = 1 };
    }
    let Some(task) = governed() else { return 0 };
    if pid_tgid as u32 != (pid_tgid >> 32) as u32 {
        // A thread other than the leader: the process lives on.
        return 0;
    }
    let tgid = (pid_tgid >> 32) as u32;
    consumer::forget(tgid);
    // SAFETY: copy of a plain value.
    let counts = unsafe { maps::PROC_COUNTS.get(&tgid) }.copied().unwrap_or_default();
    let _ = maps::PROC_COUNTS.remove(&tgid);
    let Some(mut entry) = maps::EVENTS.reserve::<ExitEvent>(0) else {
        dropped();
        return 0;
    };
    // SAFETY: as above.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.header, kind::EXIT, &task);
    ev.start_ns = read(kread::current_task(), task.off.task_start_time()).unwrap_or(0);
    ev.counts = counts;
    entry.submit(0);
    sent(stat::EXIT);
    0
}
