//! What the `guard` binary shares with the rest of the workspace (xtask, the integration tests).
//! Everything else lives in the binary (`main.rs`).
//!
//! Depend on it with `default-features = false`: the default `ebpf` feature builds the kernel
//! object (nightly, bpf-linker), which only the binary embeds.

pub mod mountinfo;
