//! Engine throughput on one core: raw ring-buffer records → decode → rules → trajectory →
//! hash-chained JSON lines, as the daemon's loop does minus the kernel and the disk.
//! `cargo xtask bench` runs it (release build) and puts the figure in BENCHMARKS.md.
//!
//! `cargo run --release -p guard-engine --example engine_throughput -- [EVENTS]` prints one
//! JSON line: events, lines, bytes, seconds, events per second; and the same for decoding
//! alone (the floor any pipeline pays), measured in the same process.

use std::{hint::black_box, time::Instant};

use guard_common::{DevIno, action, detector};
use guard_engine::{
    audit::chain::Chain,
    engine::{Engine, EnginePolicy, EngineSettings, Now, Offline, synth},
    event::decode,
    policy::DEFAULT_POLICY_YAML,
    records::ClockBase,
};

/// The event mix of a busy session recorded at `all`: mostly allowed opens, a process
/// lifecycle (fork, exec, exit) every few dozen events, some connects.
fn mix(count: usize) -> Vec<Vec<u8>> {
    let session = 4242;
    let mut events = Vec::with_capacity(count);
    let mut pid = 10_000u32;
    let mut ktime = 1_000_000_000u64;
    while events.len() < count {
        let parent = synth::Task::new(session, 9_999).at(ktime);
        let child = synth::Task::new(session, pid).at(ktime);
        events.push(synth::fork(parent, child));
        let file = DevIno { dev: 2049, ino: u64::from(pid) };
        events.push(synth::exec(child, "/usr/bin/cc", &["cc", "-c", "main.c", "-o", "main.o"], file, action::ALLOW));
        for i in 0..40u64 {
            let path = format!("/usr/include/x86_64-linux-gnu/bits/header{i}.h");
            let file = DevIno { dev: 2049, ino: 5_000 + i };
            events.push(synth::open(child.at(ktime + i), &path, file, action::ALLOW, detector::NONE, None));
        }
        events.push(synth::connect(child, [127, 0, 0, 1], 5432, action::ALLOW, detector::NONE, None));
        events.push(synth::exit(child.at(ktime + 50)));
        pid = if pid > 4_000_000 { 10_000 } else { pid + 1 };
        ktime += 100_000;
    }
    events.truncate(count);
    events
}

fn main() {
    let count: usize = match std::env::args().nth(1).map(|arg| arg.parse()) {
        None => 2_000_000,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("usage: engine_throughput [EVENTS (a positive number)]");
            std::process::exit(2);
        }
    };
    let policy = match EnginePolicy::parse("<default policy>", DEFAULT_POLICY_YAML) {
        Ok(policy) => policy,
        Err(err) => {
            eprintln!("the default policy does not load: {err}");
            std::process::exit(1);
        }
    };
    // A pool cycled through: fork/exit pairs keep the trajectory's state as in a long run.
    let pool = mix(count.min(1 << 16));
    let settings = EngineSettings {
        fingerprint_key: [7; 32],
        clock: ClockBase { realtime_ns: 1_700_000_000_000_000_000, monotonic_ns: 0 },
        enforce: true,
    };
    let mut engine = Engine::new(settings, policy.as_ref());
    let machine = Offline { now: Now { mono_ns: 1_000_000_000, wall_ns: 1_700_000_000_000_000_000 } };
    let mut chain = Chain::genesis();
    // A buffer standing in for the file: written lines are dropped every MiB.
    let mut out: Vec<u8> = Vec::with_capacity(2 << 20);
    let (mut lines, mut bytes) = (0u64, 0u64);

    // Warm-up: a tenth, not timed.
    for bytes_in in pool.iter().cycle().take(count / 10) {
        black_box(engine.on_event(bytes_in, &machine));
    }
    let started = Instant::now();
    for bytes_in in pool.iter().cycle().take(count) {
        for action in engine.on_event(bytes_in, &machine) {
            if let Some(record) = action.into_record() {
                let line = chain.seal(&record);
                out.extend_from_slice(line.as_bytes());
                out.push(b'\n');
                lines += 1;
                bytes += line.len() as u64 + 1;
                if out.len() > 1 << 20 {
                    black_box(&out);
                    out.clear();
                }
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();

    // The floor: decoding alone, same events.
    let decode_started = Instant::now();
    for bytes_in in pool.iter().cycle().take(count) {
        let _ = black_box(decode(black_box(bytes_in)));
    }
    let decode_seconds = decode_started.elapsed().as_secs_f64();

    println!(
        "{}",
        serde_json::json!({
            "events": count,
            "lines": lines,
            "bytes": bytes,
            "seconds": seconds,
            "events_per_s": count as f64 / seconds,
            "decode_only_events_per_s": count as f64 / decode_seconds,
        })
    );
}
