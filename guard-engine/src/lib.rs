//! guard's pure engine: policy, rules, trajectory and audit records.
//!
//! Nothing here makes a syscall, touches BPF or needs root: the daemon feeds it decoded kernel
//! events and applies what it decides. Like aya-obj beside aya, this is the part `cargo test`
//! covers on any machine.

pub mod audit;
pub mod confinement;
pub mod consumer;
pub mod control;
pub mod destructive;
pub mod engine;
pub mod event;
pub mod exposure;
pub mod kubernetes;
pub mod lifecycle;
pub mod policy;
pub mod policy_merge;
pub mod provenance;
pub mod records;
pub mod syscalls;
pub mod trajectory;
