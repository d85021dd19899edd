//! BPF LSM: the probe that decides the tier at start-up.
//!
//! Loaded, never attached: if the kernel accepts an `lsm/` program, the lsm tier is possible.
//! (Some kernels list `bpf` among active LSMs yet refuse the load, e.g. when trampolines are
//! blocked, so the list alone is not proof.)

use aya_ebpf::{macros::lsm, programs::LsmContext};

#[lsm(hook = "file_open")]
pub fn guard_lsm_probe(_ctx: LsmContext) -> i32 {
    0
}
