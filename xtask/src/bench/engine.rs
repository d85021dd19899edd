//! The engine alone on one core: guard-engine's `engine_throughput` example (release build),
//! fed the daemon's raw event format, writing hash-chained JSON lines to memory.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{note, util};

const EVENTS: u64 = 2_000_000;

pub struct EngineFigures {
    pub events_per_s: f64,
    pub decode_only_per_s: f64,
    pub bytes_per_line: f64,
}

pub fn run() -> Result<EngineFigures> {
    let root = crate::workspace_root();
    note!("== engine throughput (release build of guard-engine's engine_throughput example)");
    util::run(Command::new(util::cargo()).current_dir(&root).args([
        "build",
        "--quiet",
        "--release",
        "-p",
        "guard-engine",
        "--example",
        "engine_throughput",
    ]))?;
    let exe = util::target_dir()?.join("release/examples/engine_throughput");
    let out = util::output(Command::new(&exe).arg(EVENTS.to_string()))
        .with_context(|| format!("running {}", exe.display()))?;
    let value: serde_json::Value = out
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line.trim()).ok())
        .with_context(|| format!("{} printed no JSON result: {out}", exe.display()))?;
    let number = |key: &str| value[key].as_f64().filter(|v| v.is_finite() && *v > 0.0);
    let (Some(events_per_s), Some(decode_only_per_s), Some(lines), Some(bytes)) =
        (number("events_per_s"), number("decode_only_events_per_s"), number("lines"), number("bytes"))
    else {
        bail!("engine_throughput's result lacks a figure: {value}");
    };
    Ok(EngineFigures { events_per_s, decode_only_per_s, bytes_per_line: bytes / lines })
}

impl EngineFigures {
    pub fn lines(&self) -> Vec<String> {
        vec![
            format!(
                "engine, one core (raw event → decode → rules → trajectory → redaction → hash-chained JSON line, into memory; {EVENTS} events of a build-like mix: 40 opens per fork/exec/connect/exit): {:.0} events/s",
                self.events_per_s
            ),
            format!(
                "decoding alone, same events and process: {:.0} events/s (the engine runs at {:.1}% of it); {:.0} bytes per line",
                self.decode_only_per_s,
                100.0 * self.events_per_s / self.decode_only_per_s,
                self.bytes_per_line
            ),
        ]
    }
}
