//! What the confinement layers refused, and the calls a session without them must not make.
//!
//! Landlock (write roots, signal scoping) answers EACCES or EPERM and seccomp EPERM without
//! telling anyone (the kernel's audit subsystem would, at a cost to every task on the host for
//! the rest of the boot). The exit of each watched syscall sees that answer: a session
//! process's EACCES/EPERM becomes a record. A seccomp-refused call never reaches the entry
//! tracepoint (seccomp runs first), so a session process that does reach the entry of a call
//! on the policy's seccomp list has no such filter: an adopted cgroup that `guard launch` did
//! not start. It is killed there (the call itself still runs: a signal does not stop a syscall
//! body; only the lsm tier refuses it for those).

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user_str_bytes, generated::bpf_send_signal},
    macros::tracepoint,
    programs::TracePointContext,
};
use guard_common::{RefusalEvent, SyscallArgs, action, detector, kind, stat};

use super::{Governed, dropped, enforcing, fill_header, governed, sent};
use crate::maps;

const SIGKILL: u32 = 9;
const EACCES: i64 = 13;
const EPERM: i64 = 1;
// Syscall tracepoint layout: common header (8 bytes), `__syscall_nr` (int, at 8), then the
// arguments (8 bytes each, from 16); at exit `ret` (long) sits at 16.
const NR: usize = 8;
const ARG0: usize = 16;
const ARG1: usize = 24;
const RET: usize = 16;

fn read_u64(ctx: &TracePointContext, offset: usize) -> u64 {
    // SAFETY: fixed tracepoint layout; a failed read gives 0.
    unsafe { ctx.read_at::<u64>(offset) }.unwrap_or(0)
}

/// Entry of every watched syscall.
#[tracepoint(category = "syscalls", name = "sys_enter_unlinkat")]
pub fn guard_enter_watched(ctx: TracePointContext) -> u32 {
    let Some(task) = governed() else { return 0 };
    // SAFETY: as above.
    let nr = unsafe { ctx.read_at::<i32>(NR) }.unwrap_or(-1) as u32;
    let args = SyscallArgs { args: [read_u64(&ctx, ARG0), read_u64(&ctx, ARG1)] };
    // SAFETY: presence check only.
    if unsafe { maps::SECCOMP_KILL.get(&nr) }.is_some() && enforcing(guard_common::mode::ENFORCE) {
        // SAFETY: plain helper call; the task dies on its way back to user space.
        unsafe { bpf_send_signal(SIGKILL) };
        maps::bump(stat::KILLED);
        report(&task, action::KILL, nr, 0, &args);
        return 0;
    }
    let _ = maps::SYSCALL_ARGS.insert(&bpf_get_current_pid_tgid(), &args, 0);
    0
}

/// Exit of every watched syscall: an EACCES or EPERM for a session process is a refusal.
#[tracepoint(category = "syscalls", name = "sys_exit_unlinkat")]
pub fn guard_exit_watched(ctx: TracePointContext) -> u32 {
    let Some(task) = governed() else { return 0 };
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out before the entry is removed.
    let saved = unsafe { maps::SYSCALL_ARGS.get(&pid_tgid) }.copied();
    if saved.is_some() {
        let _ = maps::SYSCALL_ARGS.remove(&pid_tgid);
    }
    let ret = read_u64(&ctx, RET) as i64;
    if ret != -EACCES && ret != -EPERM {
        return 0;
    }
    // SAFETY: as above.
    let nr = unsafe { ctx.read_at::<i32>(NR) }.unwrap_or(-1) as u32;
    // A seccomp-refused call never reached the entry: no arguments were saved.
    let args = saved.unwrap_or_default();
    report(&task, action::DENY, nr, ret as i32, &args);
    0
}

#[inline(always)]
fn report(task: &Governed, act: u32, nr: u32, ret: i32, args: &SyscallArgs) {
    let Some(mut entry) = maps::EVENTS.reserve::<RefusalEvent>(0) else {
        dropped();
        return;
    };
    // SAFETY: the reservation is exactly one RefusalEvent; every field is written below.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.header, kind::REFUSAL, task);
    ev.header.action = act;
    ev.header.detector = detector::CONFINEMENT;
    ev.nr = nr;
    ev.ret = ret;
    ev.args = args.args;
    // The path argument, for the record only: the first argument that reads as a string
    // (`unlink(path)`; `unlinkat(dfd, path)` has an fd first). Either may be no pointer at all.
    // SAFETY (both reads): bounded user reads; failure leaves the buffer empty.
    if unsafe { bpf_probe_read_user_str_bytes(args.args[0] as *const u8, &mut ev.path) }.is_err()
        && unsafe { bpf_probe_read_user_str_bytes(args.args[1] as *const u8, &mut ev.path) }.is_err()
    {
        ev.path[0] = 0;
    }
    entry.submit(0);
    sent(stat::REFUSED);
}
