//! Real developer work inside a session, on the default policy: what it costs in wall time,
//! how many records each record level writes, and every decision guard took about it.
//!
//! Each workload is prepared once (untimed, outside guard), then run in a fresh directory
//! with guard absent, and inside a session at each record level (`guard launch --record L`,
//! the directory as the session's workspace). A workload that takes under 20 s is run 3
//! times per cell (median); a longer one once, so its ratio is indicative.

use std::{
    collections::BTreeMap,
    io::BufRead as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::daemon::Daemon;
use crate::{note, util};

pub const LEVELS: [&str; 3] = ["decisions", "writes", "all"];

/// One real workload.
pub struct RealWorkload {
    pub key: &'static str,
    pub label: &'static str,
    /// The shell command run in the workload's directory (`sh -c`).
    script: &'static str,
    /// Each run gets a fresh copy of the prepared directory (else: the prepared one itself).
    fresh_copy: bool,
}

pub static REAL_WORKLOADS: &[RealWorkload] = &[
    RealWorkload {
        key: "cargo-build",
        label: "`cargo build -p guard-engine --offline` in a clone of this repository, empty target directory",
        script: "cargo build --quiet --offline -p guard-engine",
        fresh_copy: true,
    },
    RealWorkload {
        key: "git",
        label: "git: init, commit 40 files, branch, commit, switch back, merge",
        script: "git init -q -b main . && git add -A && git commit -qm init && git switch -qc feature \
                 && echo change >> lib.rs && git commit -qam change && git switch -q main \
                 && git merge -q --no-edit feature && git branch -q -d feature && git log --oneline | wc -l",
        fresh_copy: true,
    },
    RealWorkload {
        key: "pip",
        label: "`python3 -m venv` + `pip install` of a local wheel (no network)",
        script: "/usr/bin/python3 -m venv venv && venv/bin/pip install --quiet --no-index --disable-pip-version-check \
                 ../guard_bench_pkg-0.1-py3-none-any.whl && venv/bin/python -c 'import guard_bench_pkg'",
        fresh_copy: true,
    },
    RealWorkload {
        key: "engine-tests",
        label: "`cargo test -p guard-engine --offline` (built beforehand: the tests run)",
        script: "cargo test --quiet --offline -p guard-engine",
        fresh_copy: false,
    },
];

/// One run of a workload.
#[derive(Debug, Clone)]
pub struct Run {
    pub workload: &'static str,
    /// `absent`, or the session's record level.
    pub condition: String,
    pub wall: Duration,
    pub session: Option<String>,
}

pub struct WorkloadReport {
    pub runs: Vec<Run>,
    /// (workload, level) → records of the session.
    pub records: BTreeMap<(String, String), u64>,
    /// workload → (a decision summarised → how many records), non-allow records of every level.
    pub decisions: BTreeMap<String, BTreeMap<String, u64>>,
    /// workload → runs per cell.
    pub reps: BTreeMap<String, usize>,
}

pub fn run(bin: &Path, daemon_args: &[String], ready_timeout: Duration, only: &[String]) -> Result<WorkloadReport> {
    let root = crate::workspace_root();
    let base = std::env::temp_dir().join(format!("guard-bench-wl-{}", std::process::id()));
    let _cleanup = RemoveOnDrop(base.clone());
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    let selected: Vec<&RealWorkload> =
        REAL_WORKLOADS.iter().filter(|w| only.is_empty() || only.iter().any(|k| k == w.key)).collect();
    for w in &selected {
        note!("workload {}: preparing", w.key);
        prepare(w, &root, &base)?;
    }
    let mut runs = Vec::new();
    let mut reps: BTreeMap<&str, usize> = BTreeMap::new();
    for w in &selected {
        let mut walls = Vec::new();
        let mut count = 1;
        while walls.len() < count {
            let dir = work_dir(w, &base, &format!("absent-{}", walls.len()))?;
            walls.push(timed(w, &dir, None)?);
            if walls[0] < SHORT {
                count = SHORT_REPS;
            }
        }
        reps.insert(w.key, count);
        runs.push(Run { workload: w.key, condition: "absent".into(), wall: median(walls), session: None });
    }
    let mut daemon = Daemon::start(bin, daemon_args)?;
    daemon.wait_ready(ready_timeout)?;
    let socket = daemon.socket().to_path_buf();
    let mut per_run = BTreeMap::new();
    for w in &selected {
        for level in LEVELS {
            daemon.check_alive()?;
            // One session per cell: its records are the cell's (all repetitions).
            let session = format!("wl-{}-{level}-{}", w.key, std::process::id());
            daemon.sessions.push(session.clone());
            let mut walls = Vec::new();
            for rep in 0..reps.get(w.key).copied().unwrap_or(1) {
                let dir = work_dir(w, &base, &format!("{level}-{rep}"))?;
                let launcher = Launch { guard: bin, socket: &socket, session: &session, level };
                walls.push(timed(w, &dir, Some(launcher))?);
            }
            let runs_here = walls.len() as u64;
            runs.push(Run { workload: w.key, condition: level.into(), wall: median(walls), session: Some(session) });
            per_run.insert(w.key, runs_here);
        }
    }
    // Everything the sessions did is recorded before the daemon stops (it flushes on exit).
    daemon.stop()?;
    let (mut records, decisions) = tally(daemon.audit(), &runs)?;
    daemon.remove_sessions()?;
    // Per run, not per cell: the repetitions shared the cell's session.
    for ((workload, _), count) in records.iter_mut() {
        *count /= per_run.get(workload.as_str()).copied().unwrap_or(1).max(1);
    }
    Ok(WorkloadReport { runs, records, decisions, reps: reps.into_iter().map(|(k, v)| (k.to_string(), v)).collect() })
}

/// Workloads shorter than this are run `SHORT_REPS` times per cell.
const SHORT: Duration = Duration::from_secs(20);
const SHORT_REPS: usize = 3;

fn median(mut walls: Vec<Duration>) -> Duration {
    walls.sort();
    walls.get(walls.len() / 2).copied().unwrap_or_default()
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if std::env::var_os("GUARD_BENCH_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn prepare(w: &RealWorkload, root: &Path, base: &Path) -> Result<()> {
    let prepared = base.join(w.key);
    match w.key {
        "cargo-build" | "engine-tests" => {
            // The committed tree: what a fresh checkout builds.
            util::run(
                Command::new("git").args(["clone", "--quiet", "--local", "--no-hardlinks"]).arg(root).arg(&prepared),
            )?;
            if w.key == "engine-tests" {
                util::run(
                    Command::new(util::cargo())
                        .current_dir(&prepared)
                        .args(["test", "--quiet", "--offline", "-p", "guard-engine", "--no-run"])
                        .env_remove("CARGO_TARGET_DIR"),
                )?;
            }
        }
        "git" => {
            std::fs::create_dir_all(&prepared)?;
            let src = root.join("guard-engine/src");
            let mut copied = 0;
            for entry in std::fs::read_dir(&src).with_context(|| format!("reading {}", src.display()))? {
                let path = entry?.path();
                if path.is_file() && copied < 40 {
                    std::fs::copy(&path, prepared.join(path.file_name().context("file without a name")?))?;
                    copied += 1;
                }
            }
            for i in copied..40 {
                std::fs::write(prepared.join(format!("file{i}.txt")), format!("file {i}\n"))?;
            }
            if !prepared.join("lib.rs").exists() {
                std::fs::write(prepared.join("lib.rs"), "// lib\n")?;
            }
        }
        "pip" => {
            std::fs::create_dir_all(&prepared)?;
            // A pure-python wheel written by hand (zipfile): no build backend, no network.
            let script = r#"
import base64, hashlib, sys, zipfile
out = sys.argv[1]
files = {
    "guard_bench_pkg/__init__.py": b"VALUE = 42\n",
    "guard_bench_pkg-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: guard-bench-pkg\nVersion: 0.1\n",
    "guard_bench_pkg-0.1.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: guard-bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = []
with zipfile.ZipFile(out, "w") as z:
    for name, data in files.items():
        z.writestr(name, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("guard_bench_pkg-0.1.dist-info/RECORD,,")
    z.writestr("guard_bench_pkg-0.1.dist-info/RECORD", "\n".join(record) + "\n")
"#;
            util::run(
                Command::new("/usr/bin/python3")
                    .arg("-c")
                    .arg(script)
                    .arg(base.join("guard_bench_pkg-0.1-py3-none-any.whl")),
            )?;
        }
        other => bail!("internal: no preparation for workload {other}"),
    }
    Ok(())
}

/// The directory a run works in: a fresh copy of the prepared one, or the prepared one.
fn work_dir(w: &RealWorkload, base: &Path, condition: &str) -> Result<PathBuf> {
    let prepared = base.join(w.key);
    if !w.fresh_copy {
        return Ok(prepared);
    }
    let dir = base.join(format!("{}-{condition}", w.key));
    util::run(Command::new("cp").arg("-a").arg(&prepared).arg(&dir))?;
    Ok(dir)
}

struct Launch<'a> {
    guard: &'a Path,
    socket: &'a Path,
    session: &'a str,
    level: &'a str,
}

/// Runs the workload in `dir` (in a session if `launch`), returns its wall time.
fn timed(w: &RealWorkload, dir: &Path, launch: Option<Launch<'_>>) -> Result<Duration> {
    if let Some(sig) = util::pending_signal() {
        bail!("interrupted by signal {sig}");
    }
    let mut cmd = match &launch {
        Some(l) => {
            let mut cmd = Command::new(l.guard);
            cmd.arg("launch").arg("--socket").arg(l.socket).args(["--record", l.level, "--session", l.session, "--"]);
            cmd.args(["/bin/sh", "-c", w.script]);
            cmd
        }
        None => {
            let mut cmd = Command::new("/bin/sh");
            cmd.args(["-c", w.script]);
            cmd
        }
    };
    cmd.current_dir(dir)
        .env_remove("CARGO_TARGET_DIR")
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.invalid")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.invalid");
    let shown = format!("{} (in {})", util::display(&cmd), dir.display());
    note!("workload {} {}", w.key, launch.as_ref().map_or("absent".to_string(), |l| format!("at {}", l.level)));
    let started = Instant::now();
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("cannot run `{shown}`"))?;
    let wall = started.elapsed();
    if !out.status.success() {
        bail!(
            "workload `{shown}` failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    note!("  {:.2} s", wall.as_secs_f64());
    Ok(wall)
}

type Tally = (BTreeMap<(String, String), u64>, BTreeMap<String, BTreeMap<String, u64>>);

/// Counts each session's records, and summarises its non-allow ones.
fn tally(audit: &Path, runs: &[Run]) -> Result<Tally> {
    let by_session: BTreeMap<&str, &Run> = runs.iter().filter_map(|r| r.session.as_deref().map(|s| (s, r))).collect();
    let mut records = BTreeMap::new();
    let mut decisions: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let file = std::fs::File::open(audit).with_context(|| format!("opening {}", audit.display()))?;
    for line in std::io::BufReader::new(file).lines() {
        let line = line.with_context(|| format!("reading {}", audit.display()))?;
        let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        let Some(run) = value["session"].as_str().and_then(|s| by_session.get(s)) else { continue };
        *records.entry((run.workload.to_string(), run.condition.clone())).or_insert(0) += 1;
        let verdict = value["verdict"].as_str().unwrap_or("");
        if verdict.is_empty() || verdict == "allow" {
            continue;
        }
        *decisions.entry(run.workload.to_string()).or_default().entry(summary(&value)).or_insert(0) += 1;
    }
    Ok((records, decisions))
}

/// `verdict event detector/rule: what` for a non-allow record.
pub fn summary(value: &serde_json::Value) -> String {
    let s = |k: &str| value[k].as_str().unwrap_or("").to_string();
    let what = if let Some(path) = value["path"].as_str() {
        path.to_string()
    } else if let Some(argv) = value["argv"].as_array() {
        argv.iter().filter_map(|a| a.as_str()).take(4).collect::<Vec<_>>().join(" ")
    } else if let Some(addr) = value["addr"].as_str() {
        format!("{addr}:{}", value["port"])
    } else {
        s("reason")
    };
    // Per-run directories and pids differ between levels: one line per kind of finding.
    let what = what.split("/guard-bench-wl-").next().unwrap_or(&what).to_string();
    format!("{} {} {}/{}: {}", s("verdict"), s("event"), s("detector"), s("rule"), what)
}

impl WorkloadReport {
    /// The BENCHMARKS.md section body.
    pub fn markdown(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Default policy; guard absent, then in a session at each record level (a session per cell). \
             Wall time: the median of the runs (runs per cell in the first column). Records: the session's \
             lines in the audit file, per run. Decisions: every non-allow record of all levels' runs.\n"
        );
        let _ = writeln!(
            out,
            "| Workload | absent (s) | `decisions` (s) | ratio | `writes` (s) | `all` (s) | records at `decisions` | at `writes` | at `all` |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for w in REAL_WORKLOADS {
            let wall = |c: &str| self.runs.iter().find(|r| r.workload == w.key && r.condition == c).map(|r| r.wall);
            let Some(absent) = wall("absent") else { continue };
            let secs = |c: &str| wall(c).map_or("-".to_string(), |d| format!("{:.2}", d.as_secs_f64()));
            let ratio = wall("decisions")
                .map_or("-".to_string(), |d| format!("{:.2}×", d.as_secs_f64() / absent.as_secs_f64()));
            let count =
                |c: &str| self.records.get(&(w.key.to_string(), c.to_string())).copied().unwrap_or(0).to_string();
            let _ = writeln!(
                out,
                "| {} ({} run{}) | {:.2} | {} | {} | {} | {} | {} | {} | {} |",
                w.label,
                self.reps.get(w.key).copied().unwrap_or(1),
                if self.reps.get(w.key).copied().unwrap_or(1) == 1 { "" } else { "s" },
                absent.as_secs_f64(),
                secs("decisions"),
                ratio,
                secs("writes"),
                secs("all"),
                count("decisions"),
                count("writes"),
                count("all")
            );
        }
        let _ = writeln!(out, "\nEvery non-allow record of these sessions (all levels together), by kind:\n");
        for w in REAL_WORKLOADS {
            if !self.runs.iter().any(|r| r.workload == w.key) {
                continue;
            }
            match self.decisions.get(w.key) {
                None => {
                    let _ = writeln!(out, "- **{}**: none (no kill, deny, hold or audit record)", w.key);
                }
                Some(found) => {
                    let _ = writeln!(out, "- **{}**:", w.key);
                    for (what, n) in found {
                        let _ = writeln!(out, "  - {n} × `{what}`");
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_name_the_finding_not_the_run() {
        let v = serde_json::json!({"verdict":"audit","event":"open","detector":"scope","rule":"files",
            "path":"/root/.cargo/.package-cache"});
        assert_eq!(summary(&v), "audit open scope/files: /root/.cargo/.package-cache");
        let v = serde_json::json!({"verdict":"hold","event":"exec","detector":"destructive","rule":"rm",
            "argv":["rm","-rf","/tmp/guard-bench-wl-12/x","y","z"]});
        assert_eq!(summary(&v), "hold exec destructive/rm: rm -rf /tmp");
    }
}
