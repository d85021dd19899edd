//! One file per hook family.

pub mod consumer;
pub mod exec;
pub mod file;
pub mod lsm;
pub mod net;
pub mod proc;
pub mod protect;
pub mod refusal;
pub mod unix;

use aya_ebpf::helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, generated::bpf_ktime_get_ns};
use guard_common::{EventHeader, KernelOffsets, action, detector, stat};

use crate::{kread, maps, session, session::Session};

/// A task some program governs: its session, and the kernel offsets to read its objects with.
pub struct Governed {
    pub session: Session,
    pub off: KernelOffsets,
}

/// Every program's prologue. A task outside every registered session (one cached lookup) gets
/// `None`, and so does every task until the loader has filled the offsets in: the caller then
/// returns its "allow" at once.
#[inline(always)]
pub fn governed() -> Option<Governed> {
    let session = session::current()?;
    let off = maps::offsets();
    if !off.is_valid() {
        return None;
    }
    Some(Governed { session, off })
}

/// Fill the common head of an event in place (ring buffer memory is not zeroed).
#[inline(always)]
pub fn fill_header(header: &mut EventHeader, kind: u32, task: &Governed) {
    let (session, off) = (&task.session, &task.off);
    let pid_tgid = bpf_get_current_pid_tgid();
    header.kind = kind;
    header.action = action::ALLOW;
    // SAFETY: plain helper call.
    header.ktime_ns = unsafe { bpf_ktime_get_ns() };
    header.cgroup_id = session.cgroup_id;
    header.session_id = session.session_id;
    header.pid = pid_tgid as u32;
    header.tgid = (pid_tgid >> 32) as u32;
    let current = kread::current_task();
    header.ppid = kread::parent_tgid(off, current);
    // The thread group leader's start time names the process across pid reuse.
    let leader = kread::read(current, off.task_group_leader()).unwrap_or(0);
    header.start_ns = kread::read(leader, off.task_start_time()).unwrap_or(0);
    header.detector = detector::NONE;
    header.rule = u32::MAX;
    header.flags = 0;
    header.comm = bpf_get_current_comm().unwrap_or([0; 16]);
}

/// Count an event that could not be queued (ring buffer full).
#[inline(always)]
pub fn dropped() {
    maps::bump(stat::EVENTS_DROPPED);
}

#[inline(always)]
pub fn sent(kind_stat: u32) {
    maps::bump(stat::EVENTS_SENT);
    maps::bump(kind_stat);
}

/// Is enforcement on for a rule of this mode (the global kill switch can force monitor)?
#[inline(always)]
pub fn enforcing(rule_mode: u8) -> bool {
    match maps::config() {
        Some(cfg) => cfg.enforce != 0 && rule_mode == guard_common::mode::ENFORCE,
        None => false,
    }
}

/// Is the lsm tier attached? Its hooks then decide, and host-tier programs only report.
#[inline(always)]
pub fn lsm_tier() -> bool {
    maps::config().is_some_and(|cfg| cfg.lsm != 0)
}

/// A session that touched a credential loses its out-of-scope network (and `scope.unix`
/// sockets) whatever the rule's mode, unless the daemon's kill switch says monitor.
#[inline(always)]
pub fn network_escalated(session_id: u64) -> bool {
    escalation(session_id) & guard_common::escalation::DENY_NET != 0
        && maps::config().is_some_and(|cfg| cfg.enforce != 0)
}

/// Mark the session as having touched a credential (the kernel reads this for escalation).
#[inline(always)]
pub fn mark_credential(session_id: u64) {
    if let Some(state) = maps::SESSIONS.get_ptr_mut(&session_id) {
        // SAFETY: a plain u32 store into map memory.
        unsafe { (*state).credential_touched = 1 };
    } else {
        let state = guard_common::SessionState { credential_touched: 1, escalation: 0 };
        let _ = maps::SESSIONS.insert(&session_id, &state, 0);
    }
}

/// Escalation flags of a session, 0 when it has none. Touching a credential escalates at
/// once, in the kernel: out-of-scope network is denied and watched execs are held.
#[inline(always)]
pub fn escalation(session_id: u64) -> u32 {
    // SAFETY (both): copies of plain u32s.
    let flags = unsafe { maps::SESSION_FLAGS.get(&session_id) }.copied().unwrap_or(0);
    let touched = unsafe { maps::SESSIONS.get(&session_id) }.is_some_and(|state| state.credential_touched != 0);
    guard_common::escalation::effective(flags, touched)
}

/// With `$CWD` roots (`scope` carries `WRITE_SCOPE_SESSION_CWD`), a session whose workspace the
/// daemon has not registered yet is recorded, not stopped: its workspace may be exactly where
/// it works.
#[inline(always)]
pub fn workspace_pending(scope: u32, session_id: u64) -> bool {
    scope & guard_common::WRITE_SCOPE_SESSION_CWD != 0
        && escalation(session_id) & guard_common::SESSION_WORKSPACE_KNOWN == 0
}
