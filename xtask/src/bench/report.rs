//! BENCHMARKS.md: machine description, results table (generated from the cells), raw data;
//! and the fuzz section (`cargo xtask fuzz --long`), which a bench run carries over as it was.

use std::{
    fmt::Write as _,
    path::Path,
    process::Command,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use super::{Cell, Condition, WORKLOADS};

pub struct Machine {
    pub kernel: String,
    pub cpu: String,
    pub cores: usize,
    pub date: String,
    pub commit: String,
    pub worker_profile: &'static str,
    /// /proc/loadavg's 1, 5 and 15 minute averages when the run started.
    pub load: String,
}

impl Machine {
    pub fn detect(root: &Path) -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".to_string());
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs();
        Self {
            kernel: kernel(),
            cpu,
            cores,
            date: utc_date_time(secs),
            commit: git_commit(root),
            worker_profile: if cfg!(debug_assertions) { "debug" } else { "release" },
            load: std::fs::read_to_string("/proc/loadavg")
                .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|_| "unknown".to_string()),
        }
    }
}

fn kernel() -> String {
    // SAFETY: utsname is plain data; uname fills it with NUL-terminated strings.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut uts) } != 0 {
        return "unknown kernel".to_string();
    }
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    format!("{} {} {}", field(&uts.sysname), field(&uts.release), field(&uts.machine))
}

fn git_commit(root: &Path) -> String {
    let run = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match run(&["rev-parse", "--short=12", "HEAD"]) {
        Some(commit) => {
            let dirty = run(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            if dirty { format!("{commit} (with uncommitted changes)") } else { commit }
        }
        None => "unknown".to_string(),
    }
}

/// `YYYY-MM-DD HH:MM UTC` from seconds since the epoch.
pub fn utc_date_time(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", rem / 3600, rem % 3600 / 60)
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Markers around the section `cargo xtask fuzz --long` writes.
pub const FUZZ_BEGIN: &str = "<!-- fuzz:begin -->";
pub const FUZZ_END: &str = "<!-- fuzz:end -->";

/// The section of `text` from `begin` to `end`, markers included; `None` unless both are
/// there, in that order.
pub fn marked_section<'a>(text: &'a str, begin: &str, end: &str) -> Option<&'a str> {
    let start = text.find(begin)?;
    let stop = start + text[start..].find(end)? + end.len();
    Some(&text[start..stop])
}

/// `text` with its marked section replaced by `section` (markers included), or with
/// `section` appended, after a blank line, when it has none.
pub fn replace_section(text: &str, begin: &str, end: &str, section: &str) -> String {
    let section = section.trim_end_matches('\n');
    if let Some(old) = marked_section(text, begin, end) {
        let start = old.as_ptr() as usize - text.as_ptr() as usize;
        return format!("{}{section}{}", &text[..start], &text[start + old.len()..]);
    }
    let mut out = text.trim_end_matches('\n').to_string();
    if !out.is_empty() {
        out.push_str("\n\n");
    }
    out.push_str(section);
    out.push('\n');
    out
}

pub struct Report<'a> {
    pub machine: &'a Machine,
    pub cells: &'a [Cell],
    pub reps: usize,
    /// The benchmarked guard binary (None: guard conditions not measured).
    pub guard: Option<&'a str>,
    pub absent_only: bool,
    pub duration: Duration,
    /// Figures beside the table (hold latency, start time, memory, drops).
    pub extras: &'a [String],
    /// Further sections (title, markdown body): goals, engine, flood, real workloads.
    pub sections: &'a [(String, String)],
    /// The fuzz section of the file being replaced (markers included): kept, at the end.
    pub carried: Option<&'a str>,
}

/// The baseline median a cell is compared with (guard absent, or the unconfined session for
/// the confinement rows).
pub(super) fn baseline(cells: &[Cell], cell: &Cell) -> Option<f64> {
    let key = cell.workload.baseline.unwrap_or(cell.workload.key);
    let versus = cell.workload.versus;
    cells.iter().find(|c| c.workload.key == key && c.condition == versus && !c.samples.is_empty()).map(Cell::median)
}

/// The results table: one row per measured (workload, condition), in `WORKLOADS` order.
pub fn table(cells: &[Cell]) -> String {
    let mut out = String::new();
    out.push_str("| Operation | Condition | Iterations | ns/op (median) | min – max | ratio | Δ ns/op |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|\n");
    for w in WORKLOADS {
        for cell in cells.iter().filter(|c| c.workload.key == w.key && !c.samples.is_empty()) {
            let med = cell.median();
            let min = cell.samples.iter().copied().fold(f64::INFINITY, f64::min);
            let max = cell.samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let (ratio, delta) = match baseline(cells, cell) {
                Some(base) => (format!("{:.2}×", med / base), fmt_delta(med - base)),
                None => ("–".to_string(), "–".to_string()),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} – {} | {ratio} | {delta} |",
                w.label,
                cell.condition.label(),
                cell.iters,
                fmt_ns(med),
                fmt_ns(min),
                fmt_ns(max),
            );
        }
    }
    out
}

/// `+1,234`, `-95.3`, `0`.
fn fmt_delta(delta: f64) -> String {
    if delta == 0.0 {
        return "0".to_string();
    }
    format!("{}{}", if delta < 0.0 { "-" } else { "+" }, fmt_ns(delta.abs()))
}

/// `851,234` for large values, `95.3` below 100.
fn fmt_ns(ns: f64) -> String {
    if ns < 100.0 {
        return format!("{ns:.1}");
    }
    let digits = format!("{ns:.0}");
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn render(r: &Report<'_>) -> String {
    let m = r.machine;
    let mut out = String::new();
    out.push_str("# guard benchmarks\n\n");
    out.push_str("<!-- Generated by `cargo xtask bench`; do not edit by hand. -->\n\n");
    out.push_str("What guard costs the processes it watches, and everything else on the machine.\n\n");
    out.push_str("## Machine and run\n\n");
    let _ = writeln!(out, "- Date: {}", m.date);
    let _ = writeln!(out, "- Kernel: {}", m.kernel);
    let _ = writeln!(out, "- CPU: {} ({} cores available)", m.cpu, m.cores);
    let _ = writeln!(
        out,
        "- Load average at the start (1, 5, 15 min): {} (other work on the machine inflates and scatters the numbers)",
        m.load
    );
    let _ = writeln!(out, "- Commit: {}", m.commit);
    match r.guard {
        Some(guard) => {
            let _ = writeln!(
                out,
                "- guard: `{guard}`, started as `guard run --audit <temp file> --socket <temp socket>` (built-in default policy)"
            );
        }
        None => out.push_str("- guard: not measured (`--absent-only`): only the baseline below\n"),
    }
    let _ = writeln!(
        out,
        "- Repetitions: {} per cell, interleaved; the median is reported (worker: `cargo xtask bench-worker`, {} build, after a warm-up of a tenth of the iterations)",
        r.reps, m.worker_profile
    );
    let _ = writeln!(out, "- Whole run: {:.0} s", r.duration.as_secs_f64());
    out.push_str("\n## Results\n\n");
    out.push_str(&table(r.cells));
    out.push_str("\n\"ratio\" is the median divided by the same operation's median with guard absent (for the ");
    out.push_str("\"confined vs `--unconfined`\" rows: in the same kind of session launched `--unconfined`); ");
    out.push_str("\"Δ ns/op\" is their difference.\n\n");
    if !r.extras.is_empty() {
        out.push_str("## The daemon\n\n");
        for line in r.extras {
            let _ = writeln!(out, "- {line}");
        }
        out.push('\n');
    }
    for (title, body) in r.sections {
        let _ = writeln!(out, "## {title}\n\n{}", body.trim_end());
        out.push('\n');
    }
    out.push_str("## Conditions\n\n");
    for c in Condition::ALL.into_iter().chain([Condition::Unconfined, Condition::InsideWrites, Condition::InsideAll]) {
        let measured = r.cells.iter().any(|cell| cell.condition == c && !cell.samples.is_empty());
        let what = match c {
            Condition::Absent => {
                "no guard daemon on the machine (checked: no `guard run` process in /proc, and `guard status` fails)"
            }
            Condition::Outside => {
                "the daemon runs; the worker is in no session, like every process guard does not govern"
            }
            Condition::Inside => {
                "the worker runs in a session (`guard launch --session bench-<pid> -- <worker>`; one session for the whole run), like an agent, confined as the daemon's policy says (Landlock, seccomp); for the launch row, the worker execs `guard launch -- /bin/true`"
            }
            Condition::Unconfined => {
                "as the previous, launched with `guard launch --unconfined`: no Landlock domain, no seccomp filter"
            }
            Condition::InsideWrites | Condition::InsideAll => {
                "as \"inside a session\", in a session of its own launched with `guard launch --record writes` (allowed opens for write sent to the daemon) or `--record all` (every open sent); the default level, `decisions`, sends no allowed open and only counts it"
            }
        };
        let _ =
            writeln!(out, "- **{}**: {what}{}", c.label(), if measured { "" } else { " (not measured in this run)" });
    }
    out.push_str("\n## Operations\n\n");
    for w in WORKLOADS {
        let _ = writeln!(out, "- **{}** (`bench-worker {}`): {}", w.label, w.op.name(), op_description(w.op));
    }
    let _ = r.absent_only;
    out.push_str("\n## Raw samples (ns/op)\n\n```json\n");
    let raw: Vec<serde_json::Value> = r
        .cells
        .iter()
        .filter(|c| !c.samples.is_empty())
        .map(|c| {
            serde_json::json!({
                "workload": c.workload.key,
                "condition": c.condition.key(),
                "iters": c.iters,
                "samples": c.samples.iter().map(|s| (s * 10.0).round() / 10.0).collect::<Vec<_>>(),
            })
        })
        .collect();
    for (i, v) in raw.iter().enumerate() {
        let _ = writeln!(out, "{}{v}{}", if i == 0 { "[" } else { " " }, if i + 1 == raw.len() { "]" } else { "," });
    }
    if raw.is_empty() {
        out.push_str("[]\n");
    }
    out.push_str("```\n");
    if let Some(section) = r.carried {
        out.push('\n');
        out.push_str(section.trim_end_matches('\n'));
        out.push('\n');
    }
    out
}

fn op_description(op: super::worker::Op) -> &'static str {
    use super::worker::Op;
    match op {
        Op::Open => "`openat(O_RDONLY)` of a small file in the temp directory, then `close`",
        Op::Exec => "`fork`, `execv(\"/bin/true\")` in the child, `waitpid` in the parent",
        Op::Connect => {
            "TCP `connect` to a listener on 127.0.0.1 (accepting in another thread), then `close` \
             with `SO_LINGER` 0 (RST: no TIME_WAIT piles up over the run)"
        }
        Op::UnixConnect => {
            "unix stream `connect` to a listener in the temp directory (not in `scope.unix`; accepting in \
             another thread), then `close`"
        }
        Op::Getppid => "`getppid` (the cheapest system call: what every call pays for the seccomp filter)",
        Op::Flood => "`openat` + `close` from several threads at a paced rate (the end-to-end flood)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ns_formatting() {
        assert_eq!(fmt_ns(95.26), "95.3");
        assert_eq!(fmt_ns(612.4), "612");
        assert_eq!(fmt_ns(1234.0), "1,234");
        assert_eq!(fmt_ns(850_958.7), "850,959");
        assert_eq!(fmt_ns(1_221_277.3), "1,221,277");
        assert_eq!(fmt_delta(0.0), "0");
        assert_eq!(fmt_delta(854_331.2), "+854,331");
        assert_eq!(fmt_delta(-12.34), "-12.3");
    }

    #[test]
    fn dates() {
        assert_eq!(utc_date_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_date_time(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc_date_time(1_795_612_500), "2026-11-25 13:15 UTC");
    }

    #[test]
    fn marked_sections_are_found_replaced_or_appended() {
        let (b, e) = (FUZZ_BEGIN, FUZZ_END);
        let text = format!("# t\n\nbefore\n\n{b}\nold rows\n{e}\n\nafter\n");
        assert_eq!(marked_section(&text, b, e), Some(format!("{b}\nold rows\n{e}").as_str()));
        let replaced = replace_section(&text, b, e, &format!("{b}\nnew\n{e}\n"));
        assert_eq!(replaced, format!("# t\n\nbefore\n\n{b}\nnew\n{e}\n\nafter\n"));
        let appended = replace_section("# t\n\nbody\n", b, e, &format!("{b}\nnew\n{e}\n"));
        assert_eq!(appended, format!("# t\n\nbody\n\n{b}\nnew\n{e}\n"));
        assert_eq!(replace_section("", b, e, &format!("{b}\nx\n{e}")), format!("{b}\nx\n{e}\n"));
        // An end marker before the begin marker, or a missing one, is no section.
        assert_eq!(marked_section(&format!("{e}\n{b}\n"), b, e), None);
        assert_eq!(marked_section(&format!("{b}\nrows\n"), b, e), None);
    }

    #[test]
    fn the_fuzz_section_is_carried_over() {
        let machine = Machine {
            kernel: "k".into(),
            cpu: "c".into(),
            cores: 2,
            date: "d".into(),
            commit: "x".into(),
            worker_profile: "debug",
            load: "0".into(),
        };
        let section = format!("{FUZZ_BEGIN}\n## Fuzzing\n| `event_decode` | 1,000,000 |\n{FUZZ_END}");
        let report = Report {
            machine: &machine,
            cells: &[],
            reps: 1,
            guard: None,
            absent_only: true,
            duration: Duration::ZERO,
            extras: &[],
            sections: &[],
            carried: Some(&section),
        };
        let text = render(&report);
        assert_eq!(marked_section(&text, FUZZ_BEGIN, FUZZ_END), Some(section.as_str()));
        assert!(text.ends_with(&format!("{FUZZ_END}\n")));
        assert!(!render(&Report { carried: None, ..report }).contains(FUZZ_BEGIN));
    }

    #[test]
    fn table_rows_follow_the_data() {
        let cells = vec![
            Cell {
                workload: &WORKLOADS[0],
                condition: Condition::Absent,
                iters: 10,
                samples: vec![100.0, 110.0, 90.0],
            },
            Cell { workload: &WORKLOADS[0], condition: Condition::Inside, iters: 10, samples: vec![150.0] },
            Cell { workload: &WORKLOADS[1], condition: Condition::Outside, iters: 5, samples: vec![1000.0] },
            Cell { workload: &WORKLOADS[2], condition: Condition::Absent, iters: 5, samples: vec![] },
        ];
        let t = table(&cells);
        let rows: Vec<&str> = t.lines().skip(2).collect();
        assert_eq!(rows.len(), 3, "{t}");
        assert!(rows[0].contains("guard absent") && rows[0].contains("| 100 |") && rows[0].contains("1.00×"), "{t}");
        assert!(rows[1].contains("inside a session") && rows[1].contains("1.50×") && rows[1].contains("+50"), "{t}");
        assert!(rows[2].contains("| – | – |"), "{t}");
    }
}
