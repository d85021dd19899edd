//! Is the current task governed, and by which session?
//!
//! A session is the cgroup directly below a registered root (the deepest one when roots nest),
//! or the root itself for a task sitting in it. The answer per cgroup id is cached; the first task of a new cgroup pays a
//! bounded ancestor walk. Everything outside returns `None` after one hash lookup.

use aya_ebpf::helpers::generated::{bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id};
use guard_common::MAX_CGROUP_DEPTH;

use crate::maps::{CGROUP_SESSION, ROOTS};

pub struct Session {
    pub cgroup_id: u64,
    pub session_id: u64,
}

#[inline(always)]
pub fn current() -> Option<Session> {
    // SAFETY: plain helper call.
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    // SAFETY: the value is a plain u64 copied out before anything else touches the map.
    if let Some(&cached) = unsafe { CGROUP_SESSION.get(&cgroup_id) } {
        return if cached == 0 { None } else { Some(Session { cgroup_id, session_id: cached }) };
    }
    let session_id = walk_ancestors();
    // A full cache only evicts old entries (LRU); failing to insert just means walking again.
    let _ = CGROUP_SESSION.insert(&cgroup_id, &session_id, 0);
    if session_id == 0 { None } else { Some(Session { cgroup_id, session_id }) }
}

#[inline(always)]
fn walk_ancestors() -> u64 {
    // The deepest registered root wins: Kubernetes QoS cgroups are roots nested in the
    // kubelet's root, so a pod (the cgroup below its QoS root) is the session.
    let mut session = 0u64;
    let mut level: i32 = 0;
    while level < MAX_CGROUP_DEPTH as i32 {
        // SAFETY: plain helper call; returns 0 past the task's own level.
        let ancestor = unsafe { bpf_get_current_ancestor_cgroup_id(level) };
        if ancestor == 0 {
            break;
        }
        // SAFETY: only presence is checked.
        if unsafe { ROOTS.get(&ancestor) }.is_some() {
            // SAFETY: plain helper call.
            let below = unsafe { bpf_get_current_ancestor_cgroup_id(level + 1) };
            session = if below != 0 { below } else { ancestor };
        }
        level += 1;
    }
    session
}
