//! Credential consumers: a credential read by the program that owns it (kubectl reading its
//! kubeconfig) is that program's business, not harvesting.
//!
//! The daemon judges, while the exec is held, whether a new image is a consumer (its file's
//! identity, argv, environment) and writes a grant for the process; the kernel only looks the
//! grant up. A grant dies with the image: the next exec and the exit remove it; a forked
//! child (same image) gets a copy.

use aya_ebpf::helpers::bpf_get_current_pid_tgid;
use guard_common::{ConsumerGrant, DevIno, NAME_LEN, consumer_file, consumer_state};

use crate::maps::{CONSUMER_FILES, TASK_CONSUMER};

#[inline(always)]
pub fn current_tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

/// A new image is no consumer until the daemon says so.
#[inline(always)]
pub fn forget(tgid: u32) {
    let _ = TASK_CONSUMER.remove(&tgid);
}

/// Is this the file of a consumer binary, or of an interpreter of a consumer script? Its exec
/// is held for the daemon's judgement.
#[inline(always)]
pub fn wants_judgement(identity: &DevIno) -> bool {
    // SAFETY: the value is copied out at once.
    unsafe { CONSUMER_FILES.get(identity) }.is_some_and(|bits| bits & consumer_file::EXEC != 0)
}

/// A consumer binary or script: sessions never open it for writing (that would make any
/// program its consumer).
#[inline(always)]
pub fn is_consumer_file(identity: &DevIno) -> bool {
    // SAFETY: presence check only.
    unsafe { CONSUMER_FILES.get(identity) }.is_some()
}

/// fork: the child runs the same image, so it is the same consumer (reporting anew).
#[inline(always)]
pub fn inherit(parent: u32, child: u32) {
    // SAFETY: the value is copied out at once.
    let Some(grant) = (unsafe { TASK_CONSUMER.get(&parent) }).copied() else { return };
    if grant.state != consumer_state::GRANTED {
        return;
    }
    let copy = ConsumerGrant { reported: 0, ..grant };
    let _ = TASK_CONSUMER.insert(&child, &copy, 0);
}

/// What a credential read is to the reader's grant.
pub enum Read {
    /// Not (or not yet) this rule's consumer: the rule's mode applies.
    NotConsumer,
    /// Its consumer, first read of this rule: recorded once (the consumer's index).
    First(u32),
    /// Its consumer, read again: allowed silently.
    Again,
}

/// `slot` is the rule's `RuleRef::consumer_slot` (non-zero).
#[inline(always)]
pub fn check_read(slot: u8) -> Read {
    let tgid = current_tgid();
    let Some(grant) = TASK_CONSUMER.get_ptr_mut(&tgid) else { return Read::NotConsumer };
    let bit = 1u64 << ((slot as u64 - 1) & 63);
    // SAFETY: map memory of an entry we just looked up; plain integer reads and one store.
    unsafe {
        if (*grant).state != consumer_state::GRANTED || (*grant).mask & bit == 0 {
            return Read::NotConsumer;
        }
        if (*grant).reported & bit != 0 {
            return Read::Again;
        }
        (*grant).reported |= bit;
        Read::First((*grant).consumer)
    }
}

/// An interpreter judged to be starting a consumer script: the first file it opens under the
/// script's name decides. The very script (by identity): granted. Anything else named so (the
/// path was swapped after the daemon looked): no consumer.
#[inline(always)]
pub fn confirm_script(identity: &DevIno, name_ptr: u64) {
    let tgid = current_tgid();
    let Some(grant) = TASK_CONSUMER.get_ptr_mut(&tgid) else { return };
    // SAFETY: map memory of an entry we just looked up; plain reads and stores.
    unsafe {
        if (*grant).state != consumer_state::AWAIT_SCRIPT {
            return;
        }
        // The dentry's name, read only for an interpreter awaiting its script (rare).
        let Some(scratch) = crate::maps::SCRATCH.get_ptr_mut(0) else { return };
        let name = &mut (*scratch).name;
        if aya_ebpf::helpers::bpf_probe_read_kernel_str_bytes(name_ptr as *const u8, name).is_err() {
            return;
        }
        let mut i = 0;
        while i < NAME_LEN {
            let expected = (*grant).script_name[i];
            if name[i] != expected {
                return;
            }
            if expected == 0 {
                break;
            }
            i += 1;
        }
        if (*grant).script == *identity {
            (*grant).state = consumer_state::GRANTED;
        } else {
            (*grant).state = 0;
            (*grant).mask = 0;
        }
    }
}
