//! `cargo xtask fuzz`: the cargo-fuzz targets in `fuzz/` (libFuzzer, built with the installed
//! nightly toolchain).
//!
//! Brief (the default, a stage of `cargo xtask test`): each target for `--seconds` (15 s),
//! `-timeout=1`. `--long`: each target for `--runs` inputs (1,000,000), then the counts go into
//! BENCHMARKS.md between the fuzz markers. Either way a crash, a hang over 1 s or a run that
//! ends in any other way fails the command, naming the target and the input libFuzzer saved.
//!
//! No sanitizer: the engine is safe Rust (its one `unsafe` read is length-checked first), and
//! AddressSanitizer made each input 5 to 7 times slower and the fuzzer's memory grow to 500 MB
//! on a 2-core machine; panics, debug assertions and overflow checks are what can fail here.
//!
//! Each run starts from the committed seeds (`fuzz/corpus/<target>/`, read only) and a fresh
//! working corpus under the build's target directory, so its length and its counts do not
//! depend on earlier runs on the machine.

use std::{
    fmt::Write as _,
    fs::File,
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::{
    bench::report::{self, FUZZ_BEGIN, FUZZ_END},
    note, setup,
    util::{self, Outcome},
};

pub struct Target {
    pub name: &'static str,
    /// What the target feeds and where, for the README and BENCHMARKS.md.
    pub covers: &'static str,
}

pub const TARGETS: &[Target] = &[
    Target {
        name: "policy_parse",
        covers: "policy YAML → parse, validate, compile, matchers, network tables (the daemon's load path)",
    },
    Target {
        name: "event_decode",
        covers: "ring-buffer records → the engine (`Engine::on_event`): decode, audit records, held-exec judgement, trajectory, provenance",
    },
    Target {
        name: "destructive_eval",
        covers: "argv and `sh -c` scripts → the destructive evaluator and its shell parser (default policy)",
    },
    Target { name: "control_protocol", covers: "control-socket request and reply lines → parse, round trip" },
];

/// Seconds per target of the brief run.
pub const BRIEF_SECONDS: u64 = 15;
/// Inputs per target of the long run.
pub const LONG_RUNS: u64 = 1_000_000;
/// libFuzzer's `-timeout`: one input taking longer is a hang, and a failure.
const INPUT_TIMEOUT_SECS: u64 = 1;

#[derive(Debug, Args)]
pub struct FuzzArgs {
    /// Run each target for `--runs` inputs (default 1,000,000) and write the counts reached
    /// into BENCHMARKS.md (the section between `<!-- fuzz:begin -->` and `<!-- fuzz:end -->`).
    #[arg(long)]
    pub long: bool,
    /// Run only this target (policy_parse, event_decode, destructive_eval, control_protocol).
    #[arg(long, value_name = "NAME")]
    pub target: Option<String>,
    /// Seconds per target of the brief run.
    #[arg(long, default_value_t = BRIEF_SECONDS, conflicts_with = "long")]
    pub seconds: u64,
    /// Inputs per target with --long.
    #[arg(long, default_value_t = LONG_RUNS, requires = "long")]
    pub runs: u64,
}

/// How long each target runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    Seconds(u64),
    Runs(u64),
}

/// What one target's run reached, from libFuzzer's final lines.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    pub runs: u64,
    pub exec_per_sec: u64,
    pub corpus_units: u64,
    /// As libFuzzer prints it (`144Kb`).
    pub corpus_size: String,
    pub coverage: u64,
    pub peak_rss_mb: u64,
}

/// How a target's run ended when it did not end well.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// `crash`, `hang (over 1 s)`, `out of memory`, ... and libFuzzer's summary line.
    pub what: String,
    /// The input libFuzzer saved (`fuzz/artifacts/<target>/crash-...`), when it saved one.
    pub artifact: Option<String>,
}

pub struct TargetRun {
    pub target: &'static Target,
    pub stats: Stats,
    pub elapsed: Duration,
    pub failure: Option<Failure>,
    pub log: PathBuf,
}

pub fn fuzz(args: &FuzzArgs) -> Result<ExitCode> {
    util::catch_signals();
    let targets = select(args.target.as_deref())?;
    let budget = if args.long { Budget::Runs(args.runs) } else { Budget::Seconds(args.seconds) };
    if budget == Budget::Seconds(0) || budget == Budget::Runs(0) {
        bail!("--seconds and --runs must be at least 1");
    }
    let root = crate::workspace_root();
    // Before the runs: the date and commit describe what was fuzzed.
    let machine = report::Machine::detect(&root);
    let Some(runs) = run_targets(&targets, budget)? else {
        return Ok(ExitCode::from(130));
    };
    for run in &runs {
        note!("{}", summary_line(run));
    }
    if args.long {
        let path = root.join("BENCHMARKS.md");
        let existing = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
        };
        let section = render_section(&machine, &runs, report::marked_section(&existing, FUZZ_BEGIN, FUZZ_END));
        crate::bench::write_atomically(&path, &report::replace_section(&existing, FUZZ_BEGIN, FUZZ_END, &section))?;
        note!("wrote the fuzz section of {}", path.display());
    }
    Ok(if runs.iter().all(|run| run.failure.is_none()) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The brief run as a stage of `cargo xtask test`: `(ok, text)` for its summary.
pub fn test_stage() -> (bool, String) {
    match run_targets(&TARGETS.iter().collect::<Vec<_>>(), Budget::Seconds(BRIEF_SECONDS)) {
        Ok(Some(runs)) => {
            for run in &runs {
                note!("{}", summary_line(run));
            }
            let failed: Vec<String> = runs
                .iter()
                .filter_map(|run| {
                    let failure = run.failure.as_ref()?;
                    Some(format!("{} (log: {})", failure_text(run.target.name, failure), run.log.display()))
                })
                .collect();
            let total: u64 = runs.iter().map(|run| run.stats.runs).sum();
            if failed.is_empty() {
                (
                    true,
                    format!("passed ({} targets, {} inputs, no crash, no hang over 1 s)", runs.len(), thousands(total)),
                )
            } else {
                (false, format!("FAILED: {}", failed.join("; ")))
            }
        }
        Ok(None) => (false, "interrupted".to_string()),
        Err(err) => (false, format!("FAILED: {err:#}")),
    }
}

fn select(name: Option<&str>) -> Result<Vec<&'static Target>> {
    match name {
        None => Ok(TARGETS.iter().collect()),
        Some(name) => match TARGETS.iter().find(|t| t.name == name) {
            Some(target) => Ok(vec![target]),
            None => bail!(
                "--target {name}: no such fuzz target (targets: {})",
                TARGETS.iter().map(|t| t.name).collect::<Vec<_>>().join(", ")
            ),
        },
    }
}

/// Installs cargo-fuzz if needed, builds the targets once, runs each. `None`: interrupted.
pub fn run_targets(targets: &[&'static Target], budget: Budget) -> Result<Option<Vec<TargetRun>>> {
    setup::ensure_cargo_fuzz(false)?;
    let toolchain = setup::installed_nightly()?;
    let root = crate::workspace_root();
    let work = util::target_dir()?.join("fuzz");

    let mut build = fuzz_command(&toolchain, &root);
    build.arg("build").args(fuzz_dir_args(&root));
    if let [only] = targets {
        build.arg(only.name);
    }
    note!("building the fuzz targets with {toolchain} (libFuzzer, debug assertions, overflow checks)");
    match util::run_supervised(&mut build, Some(Duration::from_secs(3600)))? {
        Outcome::Exited(status) if status.success() => {}
        Outcome::Exited(status) => bail!("building the fuzz targets failed ({status})"),
        Outcome::TimedOut => bail!("building the fuzz targets took over an hour"),
        Outcome::Interrupted(_) => return Ok(None),
    }

    let mut runs = Vec::new();
    for target in targets {
        match run_one(&toolchain, &root, &work, target, budget)? {
            Some(run) => runs.push(run),
            None => return Ok(None),
        }
    }
    Ok(Some(runs))
}

/// `rustup run TOOLCHAIN cargo fuzz`: cargo-fuzz runs `cargo` from PATH, which rustup points
/// at the nightly toolchain (the sanitizer and coverage flags are nightly-only).
fn fuzz_command(toolchain: &str, root: &Path) -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", toolchain, "cargo", "fuzz"]).current_dir(root);
    // One build directory per machine, not per checkout: CI's clean clone would otherwise
    // compile every dependency afresh (8-14 min on 2 cores); only the workspace crates rebuild.
    if std::env::var_os("CARGO_TARGET_DIR").is_none()
        && let Some(home) = std::env::var_os("HOME")
    {
        cmd.env("CARGO_TARGET_DIR", Path::new(&home).join(".cache/guard/fuzz-target"));
    }
    cmd
}

/// What `cargo fuzz build` and `cargo fuzz run` share (the same flags, so `run` rebuilds
/// nothing): the fuzz directory, no sanitizer (see the module comment).
fn fuzz_dir_args(root: &Path) -> [String; 4] {
    ["--fuzz-dir".to_string(), root.join("fuzz").display().to_string(), "--sanitizer".to_string(), "none".to_string()]
}

fn run_one(
    toolchain: &str,
    root: &Path,
    work: &Path,
    target: &'static Target,
    budget: Budget,
) -> Result<Option<TargetRun>> {
    let name = target.name;
    let corpus = work.join("corpus").join(name);
    if corpus.exists() {
        std::fs::remove_dir_all(&corpus).with_context(|| format!("cannot empty {}", corpus.display()))?;
    }
    std::fs::create_dir_all(&corpus).with_context(|| format!("cannot create {}", corpus.display()))?;
    let logs = work.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let log_path = logs.join(format!("{name}.log"));
    let log = File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let log_err = log.try_clone().with_context(|| format!("cannot reopen {}", log_path.display()))?;

    let mut cmd = fuzz_command(toolchain, root);
    cmd.arg("run").args(fuzz_dir_args(root)).arg(name);
    // The working corpus first: libFuzzer writes new inputs into the first directory only.
    cmd.arg(&corpus).arg(root.join("fuzz").join("corpus").join(name));
    cmd.arg("--").args(libfuzzer_args(budget));
    let dict = root.join("fuzz").join("dicts").join(format!("{name}.dict"));
    if dict.is_file() {
        cmd.arg(format!("-dict={}", dict.display()));
    }
    cmd.stdin(Stdio::null()).stdout(log).stderr(log_err);

    // Only a guard against a fuzzer that stops answering; libFuzzer ends the run itself.
    let limit = match budget {
        Budget::Seconds(secs) => Duration::from_secs(secs + 300),
        Budget::Runs(_) => Duration::from_secs(4 * 3600),
    };
    note!("== fuzz {name} ({}); log: {}", budget_text(budget), log_path.display());
    let started = Instant::now();
    let outcome = util::run_supervised(&mut cmd, Some(limit))?;
    let elapsed = started.elapsed();
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let stats = parse_stats(&text);
    let mut failure = match outcome {
        Outcome::Exited(status) if status.success() => None,
        Outcome::Exited(status) => {
            Some(parse_failure(&text).unwrap_or(Failure { what: format!("exited {status}"), artifact: None }))
        }
        Outcome::TimedOut => {
            Some(Failure { what: format!("still running after {} s (killed)", limit.as_secs()), artifact: None })
        }
        Outcome::Interrupted(sig) => {
            note!("interrupted by signal {sig}");
            return Ok(None);
        }
    };
    if let Some(failure) = &mut failure {
        // Panics in the engine name its files by absolute path (a path dependency of fuzz/).
        failure.what = failure.what.replace(&format!("{}/", root.display()), "");
        note!("{}", failure_text(name, failure));
        eprintln!("{}", util::tail_of(&log_path, 6000));
    }
    Ok(Some(TargetRun { target, stats, elapsed, failure, log: log_path }))
}

pub fn libfuzzer_args(budget: Budget) -> Vec<String> {
    let mut args = vec![format!("-timeout={INPUT_TIMEOUT_SECS}"), "-print_final_stats=1".to_string()];
    args.push(match budget {
        Budget::Seconds(secs) => format!("-max_total_time={secs}"),
        Budget::Runs(runs) => format!("-runs={runs}"),
    });
    args
}

fn budget_text(budget: Budget) -> String {
    match budget {
        Budget::Seconds(secs) => format!("{secs} s"),
        Budget::Runs(runs) => format!("{} inputs", thousands(runs)),
    }
}

fn failure_text(name: &str, failure: &Failure) -> String {
    match &failure.artifact {
        Some(artifact) => format!("fuzz target {name}: {}; input saved as {artifact}", failure.what),
        None => format!("fuzz target {name}: {}; no input saved", failure.what),
    }
}

fn summary_line(run: &TargetRun) -> String {
    let s = &run.stats;
    let result = match &run.failure {
        None => "ok".to_string(),
        Some(failure) => format!("FAILED: {}", failure.what),
    };
    format!(
        "fuzz {}: {} inputs in {:.0} s ({} exec/s), corpus {} ({}), {} edges: {result}",
        run.target.name,
        thousands(s.runs),
        run.elapsed.as_secs_f64(),
        thousands(s.exec_per_sec),
        s.corpus_units,
        s.corpus_size,
        s.coverage,
    )
}

/// The counts from libFuzzer's output: `-print_final_stats` lines and the last status line
/// (`#1000000 DONE cov: 4841 ft: 7803 corp: 795/4295b lim: 11 exec/s: 2288 rss: 319Mb`).
pub fn parse_stats(log: &str) -> Stats {
    let mut stats = Stats::default();
    for line in log.lines() {
        let line = line.trim();
        if let Some((key, value)) = line.strip_prefix("stat::").and_then(|rest| rest.split_once(':')) {
            let value = value.trim().parse().unwrap_or(0);
            match key {
                "number_of_executed_units" => stats.runs = value,
                "average_exec_per_sec" => stats.exec_per_sec = value,
                "peak_rss_mb" => stats.peak_rss_mb = value,
                _ => {}
            }
        } else if line.strip_prefix('#').is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit())) {
            // Status lines (`#N NEW ...`, `#N pulse ...`, `#N DONE ...`): the last one wins.
            let mut words = line.split_whitespace();
            while let Some(word) = words.next() {
                match (word, words.clone().next()) {
                    ("cov:", Some(v)) => stats.coverage = v.parse().unwrap_or(stats.coverage),
                    ("corp:", Some(v)) => {
                        if let Some((units, size)) = v.split_once('/') {
                            stats.corpus_units = units.parse().unwrap_or(stats.corpus_units);
                            stats.corpus_size = size.to_string();
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    stats
}

/// What went wrong, from libFuzzer's and the sanitizer's report.
pub fn parse_failure(log: &str) -> Option<Failure> {
    let artifact = log
        .lines()
        .rev()
        .find_map(|line| line.split_once("Test unit written to ").map(|(_, path)| path.trim().to_string()));
    let error = log.lines().find_map(|line| line.split_once("ERROR: ").map(|(_, what)| what.trim().to_string()));
    let panic = log.lines().position(|line| line.contains("panicked at")).map(|at| {
        // The message is the line after `thread '<unnamed>' panicked at FILE:LINE:COL:`.
        let place = log.lines().nth(at).unwrap_or_default().trim();
        let message = log.lines().nth(at + 1).unwrap_or_default().trim();
        format!("{message} ({})", place.rsplit(' ').next().unwrap_or(place).trim_end_matches(':'))
    });
    let kind = match error.as_deref() {
        Some(e) if e.starts_with("libFuzzer: timeout") => format!("hang (an input took over {INPUT_TIMEOUT_SECS} s)"),
        Some(e) if e.starts_with("libFuzzer: out-of-memory") => "out of memory".to_string(),
        Some(e) if e.starts_with("libFuzzer: deadly signal") => "crash".to_string(),
        Some(e) if e.starts_with("AddressSanitizer") => format!("memory error ({e})"),
        Some(e) => e.to_string(),
        None if artifact.is_some() => "crash".to_string(),
        None => return None,
    };
    let what = match panic {
        Some(panic) => format!("{kind}: panic: {panic}"),
        None => kind,
    };
    Some(Failure { what, artifact })
}

/// The BENCHMARKS.md section, markers included. Rows of targets not run this time are kept
/// from `previous` (a `--target` run replaces its own row only).
pub fn render_section(machine: &report::Machine, runs: &[TargetRun], previous: Option<&str>) -> String {
    let mut out = String::new();
    out.push_str(FUZZ_BEGIN);
    out.push_str("\n## Fuzzing\n\n");
    out.push_str("<!-- Written by `cargo xtask fuzz --long`; `cargo xtask bench` keeps this section. -->\n\n");
    out.push_str(
        "Each cargo-fuzz target (`fuzz/fuzz_targets/`) run from its seeds (`fuzz/corpus/<target>/`) for at least \
         1,000,000 inputs: libFuzzer, debug assertions and overflow checks, no sanitizer, `-timeout=1` (an \
         input taking over 1 s is a hang, and fails the run). \"Corpus\" is libFuzzer's corpus at the end \
         (inputs, total size); \"edges\" the coverage it reached.\n\n",
    );
    let _ = writeln!(out, "Machine: {} ({} cores available), {}.\n", machine.cpu, machine.cores, machine.kernel);
    out.push_str(
        "| Target | What it feeds | Inputs | Time | exec/s | Corpus | Edges | Peak RSS | Result | Date | Commit |\n",
    );
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---|---|---|\n");
    for target in TARGETS {
        let row = match runs.iter().find(|run| run.target.name == target.name) {
            Some(run) => {
                let s = &run.stats;
                let result = match &run.failure {
                    None => "no crash, no hang".to_string(),
                    Some(failure) => failure.what.replace('|', "\\|"),
                };
                format!(
                    "| `{}` | {} | {} | {:.0} s | {} | {} ({}) | {} | {} MB | {result} | {} | {} |",
                    target.name,
                    target.covers,
                    thousands(s.runs),
                    run.elapsed.as_secs_f64(),
                    thousands(s.exec_per_sec),
                    thousands(s.corpus_units),
                    s.corpus_size,
                    thousands(s.coverage),
                    s.peak_rss_mb,
                    machine.date,
                    machine.commit,
                )
            }
            None => match previous.and_then(|text| previous_row(text, target.name)) {
                Some(row) => row.to_string(),
                None => continue,
            },
        };
        out.push_str(&row);
        out.push('\n');
    }
    out.push('\n');
    out.push_str(FUZZ_END);
    out.push('\n');
    out
}

fn previous_row<'a>(section: &'a str, name: &str) -> Option<&'a str> {
    let start = format!("| `{name}` |");
    section.lines().find(|line| line.starts_with(&start))
}

/// `1,000,000`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DONE_LOG: &str = "\
INFO: Seed: 1055643951
#10\tINITED cov: 1416 ft: 1960 corp: 9/1304b exec/s: 0 rss: 39Mb
#2048\tpulse  cov: 3000 ft: 7000 corp: 600/100Kb lim: 652 exec/s: 1024 rss: 200Mb
#30010\tDONE   cov: 3180 ft: 7755 corp: 738/144Kb lim: 652 exec/s: 1875 rss: 238Mb
Done 30010 runs in 16 second(s)
stat::number_of_executed_units: 30010
stat::average_exec_per_sec:     1875
stat::new_units_added:          1200
stat::slowest_unit_time_sec:    0
stat::peak_rss_mb:              238
";

    #[test]
    fn stats_from_a_finished_run() {
        let stats = parse_stats(DONE_LOG);
        assert_eq!(
            stats,
            Stats {
                runs: 30010,
                exec_per_sec: 1875,
                corpus_units: 738,
                corpus_size: "144Kb".into(),
                coverage: 3180,
                peak_rss_mb: 238
            }
        );
        assert_eq!(parse_failure(DONE_LOG), None);
    }

    #[test]
    fn a_panic_names_its_message_and_the_saved_input() {
        let log = "\
#100\tNEW    cov: 10 ft: 10 corp: 5/50b lim: 4 exec/s: 0 rss: 30Mb
thread '<unnamed>' panicked at guard-engine/src/event.rs:151:20:
range end index 300 out of range for slice of length 256
==1234== ERROR: libFuzzer: deadly signal
    #0 0x55 in __sanitizer_print_stack_trace
artifact_prefix='/w/fuzz/artifacts/event_decode/'; Test unit written to /w/fuzz/artifacts/event_decode/crash-da39a3ee
Base64: AQID
";
        let failure = parse_failure(log).unwrap();
        assert_eq!(failure.artifact.as_deref(), Some("/w/fuzz/artifacts/event_decode/crash-da39a3ee"));
        assert_eq!(
            failure.what,
            "crash: panic: range end index 300 out of range for slice of length 256 (guard-engine/src/event.rs:151:20)"
        );
        assert_eq!(parse_stats(log).corpus_units, 5);
    }

    #[test]
    fn a_hang_is_named_as_one() {
        let log = "\
ALARM: working on the last Unit for 2 seconds
       and the timeout value is 1 (use -timeout=N to change)
==99== ERROR: libFuzzer: timeout after 2 seconds
artifact_prefix='fuzz/artifacts/policy_parse/'; Test unit written to fuzz/artifacts/policy_parse/timeout-0a1b
";
        let failure = parse_failure(log).unwrap();
        assert_eq!(failure.what, "hang (an input took over 1 s)");
        assert_eq!(failure.artifact.as_deref(), Some("fuzz/artifacts/policy_parse/timeout-0a1b"));
    }

    #[test]
    fn libfuzzer_arguments_follow_the_budget() {
        assert_eq!(libfuzzer_args(Budget::Seconds(15)), ["-timeout=1", "-print_final_stats=1", "-max_total_time=15"]);
        assert_eq!(libfuzzer_args(Budget::Runs(1_000_000)), ["-timeout=1", "-print_final_stats=1", "-runs=1000000"]);
    }

    #[test]
    fn targets_exist_in_the_fuzz_crate() {
        let root = crate::workspace_root();
        let manifest = std::fs::read_to_string(root.join("fuzz/Cargo.toml")).unwrap();
        for target in TARGETS {
            assert!(
                manifest.contains(&format!("name = \"{}\"", target.name)),
                "{} not in fuzz/Cargo.toml",
                target.name
            );
            assert!(root.join("fuzz/fuzz_targets").join(format!("{}.rs", target.name)).is_file());
            let seeds = root.join("fuzz/corpus").join(target.name);
            assert!(std::fs::read_dir(&seeds).is_ok_and(|mut d| d.next().is_some()), "no seeds in {}", seeds.display());
        }
        assert!(select(Some("nope")).is_err());
        assert_eq!(select(Some("event_decode")).unwrap().len(), 1);
        assert_eq!(select(None).unwrap().len(), TARGETS.len());
    }

    fn machine() -> report::Machine {
        report::Machine {
            kernel: "Linux 6.1.0 x86_64".into(),
            cpu: "Test CPU".into(),
            cores: 2,
            date: "2026-05-20 10:00 UTC".into(),
            commit: "0123456789ab".into(),
            worker_profile: "debug",
            load: "0.1 0.1 0.1".into(),
        }
    }

    fn run(name: &str, runs: u64) -> TargetRun {
        TargetRun {
            target: TARGETS.iter().find(|t| t.name == name).unwrap(),
            stats: Stats {
                runs,
                exec_per_sec: 2000,
                corpus_units: 700,
                corpus_size: "144Kb".into(),
                coverage: 3180,
                peak_rss_mb: 240,
            },
            elapsed: Duration::from_secs(500),
            failure: None,
            log: PathBuf::from("/tmp/x.log"),
        }
    }

    #[test]
    fn section_rows_and_a_single_target_run_keeps_the_others() {
        let all: Vec<TargetRun> = TARGETS.iter().map(|t| run(t.name, 1_000_000)).collect();
        let first = render_section(&machine(), &all, None);
        assert!(first.starts_with(FUZZ_BEGIN) && first.trim_end().ends_with(FUZZ_END), "{first}");
        assert_eq!(first.lines().filter(|l| l.starts_with("| `")).count(), TARGETS.len(), "{first}");
        assert!(first.contains("| `policy_parse` |") && first.contains("| 1,000,000 | 500 s | 2,000 | 700 (144Kb) |"));

        let mut again = run("event_decode", 1_200_000);
        again.failure = Some(Failure { what: "crash: panic: a | b".into(), artifact: None });
        let second = render_section(&machine(), &[again], Some(&first));
        assert_eq!(second.lines().filter(|l| l.starts_with("| `")).count(), TARGETS.len(), "{second}");
        let row = second.lines().find(|l| l.starts_with("| `event_decode` |")).unwrap();
        assert!(row.contains("1,200,000") && row.contains("crash: panic: a \\| b"), "{row}");
        let kept = second.lines().find(|l| l.starts_with("| `control_protocol` |")).unwrap();
        assert!(kept.contains("1,000,000"), "{kept}");
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
