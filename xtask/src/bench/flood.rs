//! End to end: the most opens per second a session recorded at `all` (every open is an
//! event) sustains with no event lost at the default ring size, and the daemon's resident
//! memory once it has taken 1M events. A daemon of its own, so the counts start at zero.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::daemon::{self, Daemon, rss_kb};
use crate::{note, util};

/// One paced flood and what the daemon counted meanwhile.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Asked rate (opens per second; 0: unpaced).
    pub target: u64,
    pub achieved: f64,
    pub events: u64,
    pub dropped: u64,
}

#[derive(Debug)]
pub struct FloodReport {
    /// The fastest probe with no drop.
    pub sustained: Option<Probe>,
    /// The unpaced probe lost nothing: the generator, not guard, set the limit.
    pub generator_bound: bool,
    pub probes: Vec<Probe>,
    pub start_to_enforcing: Duration,
    pub rss_idle_kb: Option<u64>,
    /// (events the daemon had taken, dropped, VmRSS kB) once past 1M events.
    pub rss_after: Option<(u64, u64, u64)>,
}

const PROBE_SECONDS: f64 = 2.0;
const THREADS: u64 = 2;
/// The goal's event count for the memory figure.
const MILLION: u64 = 1_000_000;

pub fn run(exe: &Path, bin: &Path, daemon_args: &[String], ready_timeout: Duration) -> Result<FloodReport> {
    let began = Instant::now();
    let mut daemon = Daemon::start(bin, daemon_args)?;
    daemon.wait_ready(ready_timeout)?;
    let start_to_enforcing = began.elapsed();
    let session = format!("bench-flood-{}", std::process::id());
    daemon.sessions.push(session.clone());
    let socket = daemon.socket().to_path_buf();
    // Let the first status refresh happen, then take the idle figure.
    std::thread::sleep(Duration::from_millis(1500));
    let rss_idle_kb = rss_kb(daemon.pid());

    let mut probes = Vec::new();
    let mut probe = |rate: u64, seconds: f64, daemon: &mut Daemon| -> Result<Probe> {
        daemon.check_alive()?;
        let (events_before, dropped_before) = counters(bin, &socket)?;
        let achieved = flood(exe, bin, &socket, &session, rate, seconds)?;
        // `guard status` refreshes once a second; the ring buffer drains meanwhile.
        std::thread::sleep(Duration::from_millis(1500));
        let (events_after, dropped_after) = counters(bin, &socket)?;
        let probe = Probe {
            target: rate,
            achieved,
            events: events_after.saturating_sub(events_before),
            dropped: dropped_after.saturating_sub(dropped_before),
        };
        note!(
            "flood: asked {} /s, made {:.0} /s, events {}, dropped {}",
            if rate == 0 { "unpaced".to_string() } else { rate.to_string() },
            probe.achieved,
            probe.events,
            probe.dropped
        );
        probes.push(probe.clone());
        Ok(probe)
    };

    // Unpaced first: if nothing drops, the generator is the limit.
    let unpaced = probe(0, PROBE_SECONDS, &mut daemon)?;
    let mut sustained = (unpaced.dropped == 0).then(|| unpaced.clone());
    let generator_bound = sustained.is_some();
    if !generator_bound {
        // Bisect between nothing and the unpaced rate.
        let (mut low, mut high) = (0.0f64, unpaced.achieved);
        for _ in 0..6 {
            let mid = ((low + high) / 2.0).max(1000.0);
            let p = probe(mid as u64, PROBE_SECONDS, &mut daemon)?;
            if p.dropped == 0 && p.achieved >= 0.95 * mid {
                low = mid;
                if sustained.as_ref().is_none_or(|s| s.achieved < p.achieved) {
                    sustained = Some(p);
                }
            } else {
                high = mid;
            }
            if high - low < 0.05 * high {
                break;
            }
        }
    }

    // Memory: top up to 1M events at the sustained rate (at most a minute), then read VmRSS.
    let (events, _) = counters(bin, &socket)?;
    if events < MILLION {
        let rate = sustained.as_ref().map_or(50_000.0, |s| s.achieved);
        let seconds = ((MILLION - events) as f64 / rate * 1.1 + 0.5).min(60.0);
        probe(rate as u64, seconds, &mut daemon)?;
    }
    let (events, dropped) = counters(bin, &socket)?;
    let rss_after = rss_kb(daemon.pid()).map(|rss| (events, dropped, rss));
    daemon.stop()?;
    daemon.remove_sessions()?;
    Ok(FloodReport { sustained, generator_bound, probes, start_to_enforcing, rss_idle_kb, rss_after })
}

/// `guard status --json`'s (events, dropped) counters.
fn counters(bin: &Path, socket: &Path) -> Result<(u64, u64)> {
    let json = daemon::status_json(bin, socket)?;
    let field = |name: &str| {
        json["counters"][name].as_u64().with_context(|| format!("guard status --json has no counters.{name}"))
    };
    Ok((field("events")?, field("dropped")?))
}

/// One `bench-worker flood` in the session at `--record all`; returns the rate it made.
fn flood(exe: &Path, bin: &Path, socket: &Path, session: &str, rate: u64, seconds: f64) -> Result<f64> {
    let mut cmd = Command::new(bin);
    cmd.arg("launch")
        .arg("--socket")
        .arg(socket)
        .args(["--record", "all", "--session", session, "--"])
        .arg(exe)
        .args(["bench-worker", "flood", "--iters", "1"])
        .args(["--rate", &rate.to_string(), "--seconds", &seconds.to_string(), "--threads", &THREADS.to_string()]);
    let shown = util::display(&cmd);
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("cannot run `{shown}`"))?;
    if !out.status.success() {
        bail!("`{shown}` failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value = stdout
        .lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line.trim()).ok())
        .find(|v| v["op"] == "flood")
        .with_context(|| format!("`{shown}` printed no flood result"))?;
    if !value["cgroup"].as_str().is_some_and(|c| c.contains(&format!("/guard/{session}"))) {
        bail!("the flood ran in cgroup {}, not in session {session}", value["cgroup"]);
    }
    value["rate"].as_f64().filter(|r| r.is_finite()).with_context(|| format!("bad flood result {value}"))
}

impl FloodReport {
    /// BENCHMARKS.md lines.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        match &self.sustained {
            Some(p) if self.generator_bound => out.push(format!(
                "end to end (a session at `all`, {THREADS} threads opening as fast as they can): {:.0} events/s with 0 drops; the generator, not guard, was the limit",
                p.achieved
            )),
            Some(p) => out.push(format!(
                "end to end (a session at `all`, {THREADS} threads, paced): at most {:.0} events/s with 0 drops at the default ring size; unpaced ({:.0} /s) dropped",
                p.achieved,
                self.probes.first().map_or(0.0, |u| u.achieved)
            )),
            None => out.push("end to end: every probe dropped events, even the slowest".to_string()),
        }
        let probes: Vec<String> = self
            .probes
            .iter()
            .map(|p| {
                format!(
                    "{} → {:.0} /s, {} events, {} dropped",
                    if p.target == 0 { "unpaced".to_string() } else { format!("{} /s", p.target) },
                    p.achieved,
                    p.events,
                    p.dropped
                )
            })
            .collect();
        out.push(format!("flood probes ({PROBE_SECONDS} s each): {}", probes.join("; ")));
        out.push(format!(
            "start to enforcing (flood daemon, `guard run` spawned → ready): {:.2} s",
            self.start_to_enforcing.as_secs_f64()
        ));
        if let Some(idle) = self.rss_idle_kb {
            out.push(format!("daemon resident memory, idle after start: {:.1} MiB", idle as f64 / 1024.0));
        }
        if let Some((events, dropped, rss)) = self.rss_after {
            out.push(format!(
                "daemon resident memory after {events} events ({dropped} dropped): {:.1} MiB",
                rss as f64 / 1024.0
            ));
        }
        out
    }
}
