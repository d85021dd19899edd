//! guard's kernel programs.
//!
//! Small and dumb on purpose: read the context, look up maps the daemon compiled from the
//! policy, emit an event, decide. Every program starts with the same prologue,
//! `probes::governed`: "allow" at once for tasks outside a registered agent session (see
//! `session.rs`).
#![no_std]
#![no_main]

mod kread;
mod maps;
mod probes;
mod session;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path, so this is never executed.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
