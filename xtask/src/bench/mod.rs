//! `cargo xtask bench`: guard's overhead on common syscalls, written to BENCHMARKS.md.
//!
//! Every workload (a `bench-worker` loop, see `worker.rs`) is measured under each of its
//! conditions: guard absent, guard running with the worker outside any session, and inside a
//! session (`guard launch --session ...`). Each cell is run `reps` times (interleaved) and the
//! median is reported. Add a row by adding a `Workload` to `WORKLOADS`.

mod daemon;
mod engine;
mod flood;
mod goals;
pub mod report;
pub mod worker;
mod workloads;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::{note, util};
use daemon::Daemon;
use worker::Op;

/// Under which circumstances a workload runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Condition {
    /// No guard daemon on the machine: the baseline.
    Absent,
    /// guard running; the worker is in no session.
    Outside,
    /// guard running; the worker runs in a session via `guard launch` (confined: Landlock and
    /// seccomp as the daemon's policy says).
    Inside,
    /// guard running; the worker runs in a session via `guard launch --unconfined`.
    Unconfined,
    /// As `Inside`, the session recording allowed opens for write (`guard launch --record writes`).
    InsideWrites,
    /// As `Inside`, the session recording every open (`guard launch --record all`).
    InsideAll,
}

impl Condition {
    pub const ALL: [Condition; 3] = [Condition::Absent, Condition::Outside, Condition::Inside];

    pub fn key(self) -> &'static str {
        match self {
            Condition::Absent => "absent",
            Condition::Outside => "outside",
            Condition::Inside => "inside",
            Condition::Unconfined => "unconfined",
            Condition::InsideWrites => "inside-writes",
            Condition::InsideAll => "inside-all",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Condition::Absent => "guard absent",
            Condition::Outside => "guard running, outside any session",
            Condition::Inside => "guard running, inside a session",
            Condition::Unconfined => "guard running, inside a session, `--unconfined`",
            Condition::InsideWrites => "guard running, inside a session recorded at `writes`",
            Condition::InsideAll => "guard running, inside a session recorded at `all`",
        }
    }

    fn needs_daemon(self) -> bool {
        self != Condition::Absent
    }

    /// The session's `guard launch --record` level, if not the policy's.
    fn record(self) -> Option<&'static str> {
        match self {
            Condition::InsideWrites => Some("writes"),
            Condition::InsideAll => Some("all"),
            _ => None,
        }
    }
}

/// Every condition, and the record levels inside a session: the rows issue 12 asks for.
const WITH_LEVELS: [Condition; 5] =
    [Condition::Absent, Condition::Outside, Condition::Inside, Condition::InsideWrites, Condition::InsideAll];

/// One benchmarked operation (a row group of the table).
#[derive(Debug)]
pub struct Workload {
    /// Stable identifier (raw data, progress lines).
    pub key: &'static str,
    /// Table label.
    pub label: &'static str,
    pub op: Op,
    /// Extra `bench-worker` arguments (e.g. `--program`).
    pub worker_args: &'static [&'static str],
    /// Timed iterations per run (`--quick` divides by 10).
    pub iters: u64,
    pub conditions: &'static [Condition],
    /// Whose median the ratio compares with; `None`: this workload's own.
    pub baseline: Option<&'static str>,
    /// In which condition the baseline is taken: `Absent` for guard's overhead, `Unconfined`
    /// for what the confinement layers add.
    pub versus: Condition,
    /// The worker execs `guard launch [--unconfined] -- /bin/true` itself, from outside any
    /// session (`Inside`: confined, `Unconfined`: `--unconfined`).
    pub launches: bool,
}

/// The conditions of the confinement rows: the same session, confined or not.
const CONFINED_PAIR: [Condition; 2] = [Condition::Unconfined, Condition::Inside];

pub static WORKLOADS: &[Workload] = &[
    Workload {
        key: "open",
        label: "openat + close",
        op: Op::Open,
        worker_args: &[],
        iters: 200_000,
        conditions: &WITH_LEVELS,
        baseline: None,
        versus: Condition::Absent,
        launches: false,
    },
    Workload {
        key: "exec",
        label: "fork + exec /bin/true + wait",
        op: Op::Exec,
        worker_args: &[],
        iters: 1_500,
        conditions: &WITH_LEVELS,
        baseline: None,
        versus: Condition::Absent,
        launches: false,
    },
    Workload {
        key: "exec-held",
        label: "fork + exec of a watched name (`kubectl`, a copy of /bin/true: held, judged, released) + wait",
        op: Op::Exec,
        worker_args: &["--program", HELD_PROGRAM],
        iters: 1_500,
        conditions: &Condition::ALL,
        // Compared with plain /bin/true without guard: the same binary, so the difference
        // inside a session is the cost of the hold.
        baseline: Some("exec"),
        versus: Condition::Absent,
        launches: false,
    },
    Workload {
        key: "connect",
        label: "TCP connect 127.0.0.1 + close",
        op: Op::Connect,
        worker_args: &[],
        iters: 20_000,
        conditions: &WITH_LEVELS,
        baseline: None,
        versus: Condition::Absent,
        launches: false,
    },
    Workload {
        key: "exec-script",
        label: "fork + exec of a `#!/bin/sh` script (held, its file judged, released) + wait",
        op: Op::Exec,
        worker_args: &["--program", HELD_SCRIPT],
        iters: 1_000,
        conditions: &Condition::ALL,
        baseline: None,
        versus: Condition::Absent,
        launches: false,
    },
    Workload {
        key: "unix-connect",
        label: "unix stream connect + close (a socket scope.unix does not name)",
        op: Op::UnixConnect,
        worker_args: &[],
        iters: 20_000,
        conditions: &Condition::ALL,
        baseline: None,
        versus: Condition::Absent,
        launches: false,
    },
    Workload {
        key: "getppid",
        label: "getppid (a syscall guard does not watch), outside every session",
        op: Op::Getppid,
        worker_args: &[],
        iters: 2_000_000,
        conditions: &[Condition::Absent, Condition::Outside],
        baseline: None,
        versus: Condition::Absent,
        launches: false,
    },
    Workload {
        key: "launch",
        label: "`guard launch` of /bin/true (ask the daemon, Landlock, seccomp), confined vs `--unconfined`",
        op: Op::Exec,
        worker_args: &[],
        iters: 300,
        conditions: &CONFINED_PAIR,
        baseline: None,
        versus: Condition::Unconfined,
        launches: true,
    },
    Workload {
        key: "getppid-confined",
        label: "getppid in a session, confined vs `--unconfined` (seccomp filter)",
        op: Op::Getppid,
        worker_args: &[],
        iters: 2_000_000,
        conditions: &CONFINED_PAIR,
        baseline: None,
        versus: Condition::Unconfined,
        launches: false,
    },
    Workload {
        key: "open-confined",
        label: "openat + close in a session, confined vs `--unconfined` (seccomp, Landlock)",
        op: Op::Open,
        worker_args: &[],
        iters: 200_000,
        conditions: &CONFINED_PAIR,
        baseline: None,
        versus: Condition::Unconfined,
        launches: false,
    },
];

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Runs per (workload, condition); the median is reported.
    #[arg(long, default_value_t = 7)]
    pub reps: usize,
    /// A tenth of the iterations and 3 repetitions (smoke test).
    #[arg(long)]
    pub quick: bool,
    /// Only measure the "guard absent" baseline (no daemon, no root needed).
    #[arg(long)]
    pub absent_only: bool,
    /// Do not build: use --guard-bin/GUARD_BIN, else target/release/guard, else target/debug/guard.
    #[arg(long)]
    pub no_build: bool,
    /// The guard binary to benchmark [env: GUARD_BIN] (default: `cargo xtask build --release`'s).
    #[arg(long)]
    pub guard_bin: Option<PathBuf>,
    /// Extra argument for `guard run` (repeatable).
    #[arg(long = "daemon-arg", allow_hyphen_values = true)]
    pub daemon_args: Vec<String>,
    /// Seconds to wait for the daemon to become ready.
    #[arg(long, default_value_t = 60)]
    pub ready_timeout: u64,
    /// Where to write the report (default: BENCHMARKS.md at the workspace root).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Measure only these workloads (keys, repeatable: open, exec, exec-held, exec-script, connect, unix-connect,
    /// launch, getppid-confined, open-confined).
    #[arg(long = "only", value_name = "KEY")]
    pub only: Vec<String>,
    /// Stages to run (repeatable; default: all): `micro` (the table), `engine` (the engine alone
    /// on one core), `flood` (end to end with no loss, daemon memory after 1M events),
    /// `workloads` (real developer work).
    #[arg(long = "stage", value_enum)]
    pub stages: Vec<Stage>,
    /// Real workloads to run (keys, repeatable: cargo-build, git, pip, engine-tests).
    #[arg(long = "workload", value_name = "KEY")]
    pub workloads: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Stage {
    Micro,
    Engine,
    Flood,
    Workloads,
}

/// Samples (ns per op) of one (workload, condition) cell.
#[derive(Debug)]
pub struct Cell {
    pub workload: &'static Workload,
    pub condition: Condition,
    pub iters: u64,
    pub samples: Vec<f64>,
}

impl Cell {
    pub fn median(&self) -> f64 {
        median(&self.samples)
    }
}

pub fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// A copy of /bin/true under a name the default policy watches: its exec is held, judged
/// harmless (no rule matches `kubectl` without arguments) and released.
const HELD_PROGRAM: &str = "/tmp/guard-bench-bin/kubectl";
/// A `#!` script: every exec of one is held so the daemon can judge the file the shell will
/// read (judged harmless: it only exits).
const HELD_SCRIPT: &str = "/tmp/guard-bench-bin/noop.sh";

fn prepare_held_program() -> Result<()> {
    let path = Path::new(HELD_PROGRAM);
    let dir = path.parent().context("HELD_PROGRAM has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::copy("/bin/true", path).with_context(|| format!("copying /bin/true to {HELD_PROGRAM}"))?;
    std::fs::write(HELD_SCRIPT, "#!/bin/sh\nexit 0\n").with_context(|| format!("writing {HELD_SCRIPT}"))?;
    std::fs::set_permissions(HELD_SCRIPT, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .with_context(|| format!("chmod {HELD_SCRIPT}"))?;
    Ok(())
}

/// A worker's timeout: generous, only a guard against hangs.
const WORKER_TIMEOUT: Duration = Duration::from_secs(120);

pub fn bench(args: &BenchArgs) -> Result<()> {
    let started = Instant::now();
    if args.reps == 0 {
        bail!("--reps must be at least 1");
    }
    if !args.absent_only && !util::is_root() {
        bail!("the guard conditions start the daemon, which needs root: run as root, or pass --absent-only");
    }
    let reps = if args.quick { args.reps.min(3) } else { args.reps };
    let scale = if args.quick { 10 } else { 1 };
    let exe = std::env::current_exe().context("cannot find the xtask executable (the bench worker)")?;
    let root = crate::workspace_root();
    // Before any measurement: the date and load average describe the run's start.
    let machine = report::Machine::detect(&root);
    let output = args.output.clone().unwrap_or_else(|| root.join("BENCHMARKS.md"));

    util::catch_signals();
    prepare_held_program()?;

    if let Some(unknown) = args.only.iter().find(|key| !WORKLOADS.iter().any(|w| w.key == key.as_str())) {
        bail!("--only {unknown}: no such workload");
    }
    let stage = |s: Stage| args.stages.is_empty() || args.stages.contains(&s);
    if let Some(unknown) =
        args.workloads.iter().find(|key| !workloads::REAL_WORKLOADS.iter().any(|w| w.key == key.as_str()))
    {
        bail!("--workload {unknown}: no such workload");
    }
    let mut cells: Vec<Cell> = Vec::new();
    let micro = WORKLOADS.iter().filter(|_| stage(Stage::Micro));
    for w in micro.filter(|w| args.only.is_empty() || args.only.iter().any(|key| key == w.key)) {
        for &condition in w.conditions {
            if condition.needs_daemon() && args.absent_only {
                continue;
            }
            cells.push(Cell { workload: w, condition, iters: (w.iters / scale).max(1), samples: Vec::new() });
        }
    }

    let guard_bin = resolve_guard(args)?;
    // The baseline needs a machine without guard; rows compared within the run (confined vs
    // unconfined) only get a warning, since another daemon loads both sides alike.
    let needs_clean_machine = cells.iter().any(|cell| cell.condition == Condition::Absent);
    let others = daemon::running_daemons();
    if !others.is_empty() && !needs_clean_machine {
        note!(
            "warning: another guard daemon is running ({} of them): it adds its tracepoints to both sides",
            others.len()
        );
    } else if !others.is_empty() {
        bail!(
            "another guard daemon is running ({}): stop it first, the baseline needs a machine without guard",
            others.iter().map(|(pid, cmd)| format!("pid {pid}: {cmd}")).collect::<Vec<_>>().join("; ")
        );
    }
    if let Some(bin) = &guard_bin
        && needs_clean_machine
        && daemon::status_ok(bin, None)
    {
        bail!(
            "a guard daemon is already running (`{} status` succeeded): stop it first, the baseline needs a machine without guard",
            bin.display()
        );
    }
    // Guard absent.
    note!("== guard absent ({reps} repetitions)");
    for _ in 0..reps {
        for cell in cells.iter_mut().filter(|c| c.condition == Condition::Absent) {
            let sample = run_worker(&exe, cell.workload, cell.iters, None, &[])?;
            check_outside(&sample, cell)?;
            progress(cell, sample.ns_per_op);
            cell.samples.push(sample.ns_per_op);
        }
    }

    // Guard running.
    let mut daemon_info = None;
    let mut extras = Vec::new();
    let mut figures = goals::Figures::default();
    if !args.absent_only && !cells.is_empty() {
        let bin = guard_bin.clone().context("internal: no guard binary")?;
        let start_began = Instant::now();
        let mut daemon = Daemon::start(&bin, &args.daemon_args)?;
        let via = daemon.wait_ready(Duration::from_secs(args.ready_timeout))?;
        let start_to_enforcing = start_began.elapsed();
        note!("== guard running (pid {}, ready via {via}; {reps} repetitions)", daemon.pid());
        // One session for the whole run (`guard launch` joins an existing session).
        let session = format!("bench-{}", std::process::id());
        daemon.sessions.push(session.clone());
        // The launch rows launch into a session of their own (every launch joins it).
        let launch_session = format!("bench-launch-{}", std::process::id());
        daemon.sessions.push(launch_session.clone());
        let socket = daemon.socket().to_path_buf();
        for _ in 0..reps {
            for cell in cells.iter_mut().filter(|c| c.condition.needs_daemon()) {
                daemon.check_alive()?;
                let sample = match cell.condition {
                    _ if cell.workload.launches => {
                        let extra = launch_args(&bin, &socket, &launch_session, cell.condition);
                        let sample = run_worker(&exe, cell.workload, cell.iters, None, &extra)?;
                        check_outside(&sample, cell)?;
                        sample
                    }
                    Condition::Inside | Condition::Unconfined | Condition::InsideWrites | Condition::InsideAll => {
                        let unconfined = cell.condition == Condition::Unconfined;
                        let record = cell.condition.record();
                        // A session's record level is its own: one session per level.
                        let session = match record {
                            Some(level) => format!("{session}-{level}"),
                            None => session.clone(),
                        };
                        if record.is_some() && !daemon.sessions.contains(&session) {
                            daemon.sessions.push(session.clone());
                        }
                        let launcher = Launcher { guard: &bin, socket: &socket, session: &session, unconfined, record };
                        let sample = run_worker(&exe, cell.workload, cell.iters, Some(launcher), &[])?;
                        if !sample.cgroup.contains(&format!("/guard/{session}")) {
                            bail!(
                                "the worker launched in session {session} ran in cgroup {:?}, not under guard/{session}",
                                sample.cgroup
                            );
                        }
                        sample
                    }
                    _ => {
                        let sample = run_worker(&exe, cell.workload, cell.iters, None, &[])?;
                        check_outside(&sample, cell)?;
                        sample
                    }
                };
                progress(cell, sample.ns_per_op);
                cell.samples.push(sample.ns_per_op);
            }
        }
        extras.push(format!(
            "start to enforcing (`guard run` spawned → its `start` record written, programs attached): {:.2} s",
            start_to_enforcing.as_secs_f64()
        ));
        let (lines, p99) = daemon_extras(&bin, &socket, daemon.pid());
        extras.extend(lines);
        figures.hold_p99_us = p99;
        figures.start_to_enforcing_s = Some(start_to_enforcing.as_secs_f64());
        daemon.stop()?;
        daemon.remove_sessions()?;
        daemon_info = Some(format!("{}{}", bin.display(), daemon_args_note(&args.daemon_args)));
    }

    let mut sections = Vec::new();
    if stage(Stage::Engine) {
        let found = engine::run()?;
        figures.engine_events_per_s = Some(found.events_per_s);
        let body: String = found.lines().iter().map(|line| format!("- {line}\n")).collect();
        sections.push(("The engine alone".to_string(), body));
    }
    if !args.absent_only && (stage(Stage::Flood) || stage(Stage::Workloads)) {
        let bin = guard_bin.clone().context("internal: no guard binary")?;
        let ready = Duration::from_secs(args.ready_timeout);
        if stage(Stage::Flood) {
            note!("== end to end flood and daemon memory");
            let found = flood::run(&exe, &bin, &args.daemon_args, ready)?;
            figures.end_to_end_events_per_s = found.sustained.as_ref().map(|p| p.achieved);
            figures.rss_mib_after_1m =
                found.rss_after.filter(|(events, _, _)| *events >= 1_000_000).map(|(_, _, kb)| kb as f64 / 1024.0);
            figures.start_to_enforcing_s.get_or_insert(found.start_to_enforcing.as_secs_f64());
            let body: String = found.lines().iter().map(|line| format!("- {line}\n")).collect();
            sections.push(("End to end and memory".to_string(), body));
        }
        if stage(Stage::Workloads) {
            note!("== real workloads");
            let found = workloads::run(&bin, &args.daemon_args, ready, &args.workloads)?;
            sections.push(("Real workloads".to_string(), found.markdown()));
        }
        daemon_info.get_or_insert_with(|| format!("{}{}", bin.display(), daemon_args_note(&args.daemon_args)));
    }

    if !args.absent_only {
        sections.insert(0, ("Goals".to_string(), goals::markdown(&cells, &figures)));
    }
    // The fuzz section (`cargo xtask fuzz --long`) is not this run's to redo: keep it.
    let previous = std::fs::read_to_string(&output).unwrap_or_default();
    let carried = report::marked_section(&previous, report::FUZZ_BEGIN, report::FUZZ_END);
    let text = report::render(&report::Report {
        machine: &machine,
        cells: &cells,
        reps,
        guard: daemon_info.as_deref(),
        absent_only: args.absent_only,
        duration: started.elapsed(),
        extras: &extras,
        sections: &sections,
        carried,
    });
    write_atomically(&output, &text)?;
    note!("wrote {} ({:.0} s)", output.display(), started.elapsed().as_secs_f64());
    print!("{}", report::table(&cells));
    Ok(())
}

/// What the daemon says about itself after the run: hold round trips, events and drops, its
/// resident memory.
fn daemon_extras(bin: &Path, socket: &Path, pid: u32) -> (Vec<String>, Option<f64>) {
    let mut out = Vec::new();
    let mut p99 = None;
    let json = daemon::status_json(bin, socket).ok();
    if let Some(json) = &json {
        let c = &json["counters"];
        let holds = &c["hold_release_us"];
        if holds.is_object() {
            p99 = holds["p99"].as_f64();
            out.push(format!(
                "hold → judged → released (kernel hold to release, the `exec-held` rows' execs): p50 {} µs, p99 {} µs, max {} µs over the last {} holds",
                holds["p50"], holds["p99"], holds["max"], holds["count"]
            ));
        }
        out.push(format!(
            "events the kernel sent over the whole run: {}; dropped (ring buffer full): {}; opens judged and only counted (record level): {}",
            c["events"], c["dropped"], c["open_unrecorded"]
        ));
    } else {
        out.push("`guard status --json` failed after the run: no daemon figures".to_string());
    }
    if let Some(rss) = daemon::rss_kb(pid) {
        let events = json.as_ref().map_or("?".to_string(), |j| j["counters"]["events"].to_string());
        out.push(format!("daemon resident memory after the run ({events} events): {rss} kB"));
    }
    (out, p99)
}

fn daemon_args_note(args: &[String]) -> String {
    if args.is_empty() { String::new() } else { format!(" (extra `guard run` arguments: {})", args.join(" ")) }
}

fn progress(cell: &Cell, ns: f64) {
    note!("{:<8} {:<8} {:>12.1} ns/op ({} iterations)", cell.condition.key(), cell.workload.key, ns, cell.iters);
}

fn check_outside(sample: &Sample, cell: &Cell) -> Result<()> {
    if sample.cgroup.contains("/guard/") {
        bail!(
            "the {} worker for {:?} ran inside a guard cgroup ({}): is xtask itself running in a session?",
            cell.workload.key,
            cell.condition.label(),
            sample.cgroup
        );
    }
    Ok(())
}

/// The guard binary, if one is needed or available.
fn resolve_guard(args: &BenchArgs) -> Result<Option<PathBuf>> {
    let explicit =
        args.guard_bin.clone().or_else(|| std::env::var_os("GUARD_BIN").filter(|v| !v.is_empty()).map(PathBuf::from));
    if let Some(bin) = &explicit {
        if !util::is_executable(bin) {
            bail!("guard binary {} (--guard-bin/GUARD_BIN) is not an executable file", bin.display());
        }
        return Ok(Some(bin.clone()));
    }
    if !args.no_build && !args.absent_only {
        return crate::flow::build(true)
            .map(Some)
            .context("cannot build guard for the benchmark (use --absent-only to measure only the baseline)");
    }
    let target = util::target_dir()?;
    let found = ["release", "debug"].iter().map(|p| target.join(p).join("guard")).find(|p| util::is_executable(p));
    match found {
        Some(bin) => {
            if bin.parent().and_then(Path::file_name).is_some_and(|p| p == "debug") {
                note!("warning: benchmarking the debug build {}", bin.display());
            }
            Ok(Some(bin))
        }
        None if args.absent_only => Ok(None),
        None => bail!(
            "no guard binary in {}/{{release,debug}}: build it (`cargo xtask build --release`) or pass --guard-bin",
            target.display()
        ),
    }
}

/// One worker result.
pub struct Sample {
    pub ns_per_op: f64,
    pub cgroup: String,
}

/// How a worker is put in a session: `guard launch --socket S --session NAME [--unconfined]`.
struct Launcher<'a> {
    guard: &'a Path,
    socket: &'a Path,
    session: &'a str,
    unconfined: bool,
    /// `--record LEVEL`.
    record: Option<&'a str>,
}

/// Worker arguments for the launch rows: exec `guard launch ... -- /bin/true` in the loop.
fn launch_args(guard: &Path, socket: &Path, session: &str, condition: Condition) -> Vec<String> {
    let mut launch = vec!["launch".to_string(), "--socket".into(), socket.display().to_string()];
    if condition == Condition::Unconfined {
        launch.push("--unconfined".into());
    }
    launch.extend(["--session".into(), session.to_string(), "--".into(), "/bin/true".into()]);
    let mut args = vec!["--program".to_string(), guard.display().to_string()];
    for arg in launch {
        args.push(format!("--arg={arg}"));
    }
    args
}

/// Runs one `bench-worker` loop, directly or in a session (`guard launch --session S -- ...`).
fn run_worker(exe: &Path, w: &Workload, iters: u64, session: Option<Launcher<'_>>, extra: &[String]) -> Result<Sample> {
    if let Some(sig) = util::pending_signal() {
        bail!("interrupted by signal {sig}");
    }
    let mut cmd = match session {
        Some(launcher) => {
            let mut cmd = Command::new(launcher.guard);
            // The bench daemon's own socket: the launcher asks it for the confinement.
            cmd.arg("launch").arg("--socket").arg(launcher.socket);
            if launcher.unconfined {
                cmd.arg("--unconfined");
            }
            if let Some(level) = launcher.record {
                cmd.args(["--record", level]);
            }
            cmd.args(["--session", launcher.session, "--"]).arg(exe);
            cmd
        }
        None => Command::new(exe),
    };
    cmd.args(["bench-worker", w.op.name(), "--iters", &iters.to_string()]).args(w.worker_args).args(extra);
    let shown = util::display(&cmd);

    let dir = std::env::temp_dir();
    let tag = format!("guard-bench-{}-{}", std::process::id(), w.key);
    let out_path = dir.join(format!("{tag}.out"));
    let err_path = dir.join(format!("{tag}.err"));
    let out_file = std::fs::File::create(&out_path).with_context(|| format!("cannot create {}", out_path.display()))?;
    let err_file = std::fs::File::create(&err_path).with_context(|| format!("cannot create {}", err_path.display()))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out_file)
        .stderr(err_file)
        .spawn()
        .with_context(|| format!("cannot start `{shown}`"))?;
    let status = match util::wait_timeout(&mut child, WORKER_TIMEOUT)? {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            bail!("`{shown}` did not finish within {} s", WORKER_TIMEOUT.as_secs());
        }
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = util::tail_of(&err_path, 2000);
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);
    if !status.success() {
        bail!("`{shown}` failed ({status}): {stderr}");
    }
    parse_sample(&stdout, w.op, iters).with_context(|| format!("`{shown}` printed no valid result; stderr: {stderr}"))
}

/// The last JSON line of a worker's stdout that carries a result for `op`.
pub fn parse_sample(stdout: &str, op: Op, iters: u64) -> Result<Sample> {
    let value = stdout
        .lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line.trim()).ok())
        .find(|v| v.get("ns_per_op").is_some())
        .context("no JSON result line")?;
    if value.get("op").and_then(|v| v.as_str()) != Some(op.name()) {
        bail!("result is for another operation: {value}");
    }
    if value.get("iters").and_then(|v| v.as_u64()) != Some(iters) {
        bail!("result has another iteration count: {value}");
    }
    let ns_per_op = value
        .get("ns_per_op")
        .and_then(|v| v.as_f64())
        .filter(|ns| ns.is_finite() && *ns > 0.0)
        .with_context(|| format!("bad ns_per_op in {value}"))?;
    let cgroup = value.get("cgroup").and_then(|v| v.as_str()).unwrap_or_default().to_string();
    Ok(Sample { ns_per_op, cgroup })
}

pub(crate) fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("md.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot move {} to {}", tmp.display(), path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn parses_worker_output() {
        let out = "launching...\n{\"op\":\"open\",\"iters\":10,\"ns_per_op\":812.5,\"cgroup\":\"/guard/bench-1-0\"}\n";
        let s = parse_sample(out, Op::Open, 10).unwrap();
        assert_eq!(s.ns_per_op, 812.5);
        assert_eq!(s.cgroup, "/guard/bench-1-0");
        assert!(parse_sample(out, Op::Exec, 10).is_err());
        assert!(parse_sample(out, Op::Open, 11).is_err());
        assert!(parse_sample("{\"op\":\"open\",\"iters\":10,\"ns_per_op\":0}", Op::Open, 10).is_err());
        assert!(parse_sample("garbage", Op::Open, 10).is_err());
    }

    #[test]
    fn workload_keys_unique_and_baselines_exist() {
        for (i, w) in WORKLOADS.iter().enumerate() {
            assert!(WORKLOADS[..i].iter().all(|o| o.key != w.key), "duplicate key {}", w.key);
            if let Some(base) = w.baseline {
                let b = WORKLOADS.iter().find(|o| o.key == base).expect("baseline workload exists");
                assert!(b.conditions.contains(&Condition::Absent), "baseline {base} is measured absent");
            }
        }
    }
}
