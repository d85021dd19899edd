//! One guest boot under qemu TCG, under `timeout`: its console streamed (`[6.12] ...`),
//! logged, and read for the marker, the summary and what the report shows.

use std::{
    fs,
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use super::{MARKER, kernel::Kernel, libtest::Suite};
use crate::{note, util};

pub const KERNEL_ARGS: &str = "console=ttyS0 lsm=lockdown,capability,landlock,bpf panic=-1 quiet";

/// A virtio disk.
pub enum Disk {
    /// Writes go to a temporary overlay (qemu `snapshot=on`): the cached root image.
    Snapshot(PathBuf),
    /// Writes reach the file: the build-tree disk, read back afterwards.
    Writable(PathBuf),
}

#[derive(Clone)]
pub struct Boot<'a> {
    pub label: &'a str,
    pub stage: &'a str,
    pub kernel: &'a Kernel,
    pub initrd: &'a Path,
    pub disks: &'a [Disk],
    pub append: String,
    pub timeout: u64,
    pub memory_mb: u32,
}

/// What one guest run produced.
#[derive(Default)]
pub struct GuestReport {
    pub rc: Option<i32>,
    pub summary: Option<(u32, u32)>,
    pub summary_lines: Vec<String>,
    /// Host seconds from qemu start to the guest's first `vm-init:` line.
    pub init_at: Option<f64>,
    pub daemon_start: Option<String>,
    pub suite: Option<String>,
    pub tier: Option<String>,
    /// The first `guard: error:` line (e.g. a program the guest kernel's verifier refused).
    pub guard_error: Option<String>,
    /// The verifier's complaint: the line before the first `verification time` line.
    pub verifier_error: Option<String>,
    previous_line: String,
    pub lsm: Option<String>,
    pub kernel_release: Option<String>,
    /// Fast stage: the runner's PASS/FAIL/SKIP lines.
    pub results: Vec<String>,
    /// Full stage: what libtest said, test by test.
    pub rust: Suite,
    pub wall: f64,
    pub timed_out: bool,
    pub qemu_status: Option<String>,
    /// The guest kernel printed an Oops (the boot ended without the marker).
    pub guest_oops: bool,
    /// Boots after such an oops, for the binaries that had not finished.
    pub retries: u32,
}

impl GuestReport {
    /// This (crashed) boot's finished binaries, then a later boot's: results and summary of
    /// both, the later boot's verdict.
    pub fn merge_retry(self, mut later: GuestReport) -> GuestReport {
        let earlier = self.rust.finished_only();
        let (passed, failed) = earlier.counts();
        later.rust = earlier.then(later.rust);
        if let Some((p, f)) = later.summary {
            later.summary = Some((p + passed, f + failed));
            later.summary_lines = vec![format!("vm: {} passed, {} failed", p + passed, f + failed)];
        }
        later.retries = self.retries + 1;
        later.summary_lines.push(format!("after {} reboot(s): the guest kernel oopsed", later.retries));
        later.wall += self.wall;
        later
    }
}

enum Line {
    Out(String),
    Done,
}

/// Boots, streaming the console to stdout.
pub fn boot(boot: &Boot, log_path: &Path) -> Result<GuestReport> {
    boot_with(boot, log_path, Echo::Stdout)
}

/// Boots with the console only in the log (or on stderr when `console`): `vm-run`'s stdout is
/// the command's.
pub fn boot_quiet(boot: &Boot, log_path: &Path, console: bool) -> Result<GuestReport> {
    boot_with(boot, log_path, if console { Echo::Stderr } else { Echo::None })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Echo {
    Stdout,
    Stderr,
    None,
}

fn boot_with(boot: &Boot, log_path: &Path, echo: Echo) -> Result<GuestReport> {
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", &boot.timeout.to_string(), "qemu-system-x86_64"])
        .args(["-accel", "tcg", "-cpu", "max", "-m", &boot.memory_mb.to_string(), "-smp", "2"])
        .args(["-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio"])
        .arg("-kernel")
        .arg(&boot.kernel.vmlinuz)
        .arg("-initrd")
        .arg(boot.initrd)
        .arg("-append")
        .arg(&boot.append);
    for disk in boot.disks {
        let (path, extra) = match disk {
            Disk::Snapshot(path) => (path, ",snapshot=on"),
            Disk::Writable(path) => (path, ""),
        };
        let mut spec = std::ffi::OsString::from("file=");
        spec.push(path.as_os_str());
        spec.push(format!(",format=raw,if=virtio,cache=unsafe{extra}"));
        cmd.arg("-drive").arg(spec);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let kernel = boot.kernel;
    note!("== [{} {}] booting {} (limit {} s)", boot.label, boot.stage, kernel.package, boot.timeout);
    note!("$ {}", util::display(&cmd));
    let mut log = fs::File::create(log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let started = Instant::now();
    let mut child = cmd.spawn().context("cannot start qemu (under timeout)")?;
    let (tx, rx) = mpsc::channel();
    let mut readers = Vec::new();
    for stream in [
        child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child.stderr.take().map(|s| Box::new(s) as _),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        readers.push(thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut buf = Vec::new();
            while reader.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
                let _ = tx.send(Line::Out(printable(&String::from_utf8_lossy(&buf))));
                buf.clear();
            }
            let _ = tx.send(Line::Done);
        }));
    }
    drop(tx);

    let mut report = GuestReport::default();
    let mut open_streams = readers.len();
    let mut after_marker = false;
    let mut interrupted = false;
    let prefix = format!("[{}] ", boot.label);
    let stdout = std::io::stdout();
    while open_streams > 0 {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Line::Out(line)) => {
                match echo {
                    Echo::Stdout => drop(writeln!(stdout.lock(), "{prefix}{line}")),
                    Echo::Stderr => drop(writeln!(std::io::stderr().lock(), "{prefix}{line}")),
                    Echo::None => {}
                }
                let _ = writeln!(log, "{line}");
                observe(&mut report, &line, &mut after_marker, started);
            }
            Ok(Line::Done) => open_streams -= 1,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if !interrupted && util::pending_signal().is_some() {
            interrupted = true;
            util::kill(child.id() as i32, libc::SIGTERM);
        }
    }
    for reader in readers {
        let _ = reader.join();
    }
    let status = child.wait().context("waiting for qemu")?;
    report.wall = started.elapsed().as_secs_f64();
    report.qemu_status = Some(status.to_string());
    // timeout(1): 124 when the limit hit (137 if qemu then needed SIGKILL).
    report.timed_out = !interrupted && matches!(status.code(), Some(124) | Some(137));
    let _ = writeln!(log, "# host: qemu {status} after {:.1} s", report.wall);
    note!("[{} {}] qemu finished ({status}) after {:.0} s", boot.label, boot.stage, report.wall);
    Ok(report)
}

/// A guest line without terminal control sequences (SeaBIOS clears the screen and turns off
/// line wrapping: that must not reach the user's terminal), carriage returns or the newline.
fn printable(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                // CSI: parameters and intermediates up to a final byte in @..~
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC: up to BEL or ESC \\
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\x07' || (c == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                            break;
                        }
                    }
                }
                // Two-byte sequences such as ESC c (reset), ESC ( B (charset: one more byte)
                Some('(' | ')') => {
                    chars.next();
                }
                _ => {}
            },
            '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Picks what the host reports out of one guest line. Tags are searched anywhere in the line:
/// firmware or kernel output without a newline may precede them.
pub fn observe(report: &mut GuestReport, line: &str, after_marker: &mut bool, started: Instant) {
    let line = line.trim();
    let after = |tag: &str| line.find(tag).map(|i| &line[i + tag.len()..]);
    if line.contains("Oops: ") || line.contains("Kernel panic - not syncing") {
        report.guest_oops = true;
    }
    if line.starts_with("verification time") && report.verifier_error.is_none() {
        report.verifier_error = Some(report.previous_line.chars().take(300).collect());
    }
    report.previous_line = line.to_string();
    if let Some(rest) = after(MARKER) {
        report.rc = rest.trim().parse().ok().or(Some(-1));
        *after_marker = true;
        return;
    }
    if *after_marker {
        if let Some(counts) = after("vm: ").and_then(|rest| parse_summary(&format!("vm: {rest}"))) {
            report.summary = Some(counts);
            report.summary_lines.push(format!("vm: {} passed, {} failed", counts.0, counts.1));
        } else if let Some(i) = line.find("vm-") {
            report.summary_lines.push(line[i..].to_string());
        }
        return;
    }
    if let Some(rest) = after("vm-init: ") {
        report.init_at.get_or_insert(started.elapsed().as_secs_f64());
        if let Some(lsm) = rest.strip_prefix("lsm=") {
            report.lsm = Some(lsm.to_string());
        } else if let Some(kernel) = rest.split(" kernel ").nth(1) {
            report.kernel_release = kernel.split(',').next().map(str::to_string);
        }
    } else if let Some(v) = after("vm-timing: daemon_start=") {
        report.daemon_start = Some(v.to_string());
    } else if let Some(v) = after("vm-timing: suite=") {
        report.suite = Some(v.to_string());
    } else if let Some(v) = after("vm-tier: ") {
        report.tier = Some(v.to_string());
    } else if let Some(v) = after("guard: error: ") {
        report.guard_error.get_or_insert_with(|| v.chars().take(300).collect());
    } else if line.starts_with("PASS ") || line.starts_with("FAIL ") || line.starts_with("SKIP ") {
        report.results.push(line.to_string());
    } else {
        report.rust.observe(line);
    }
}

/// Passed only with the marker, rc 0 and a summary counting at least one test and no failure
/// (qemu exits 0 whatever happened in the guest).
pub fn verdict(r: &GuestReport) -> Result<String, String> {
    if r.timed_out {
        return Err(format!("FAILED: timed out after {:.0} s (see --timeout)", r.wall));
    }
    let Some(rc) = r.rc else {
        return Err(format!(
            "FAILED: guest did not report (no `{MARKER}N` line; qemu {})",
            r.qemu_status.as_deref().unwrap_or("?")
        ));
    };
    let summary = r.summary_lines.join("; ");
    match r.summary {
        None => Err(format!("FAILED: rc={rc} but no `vm: N passed, N failed` line")),
        Some((_, failed)) if failed > 0 || rc != 0 => Err(format!("FAILED (rc={rc}): {summary}")),
        Some((0, _)) => Err(format!("FAILED: no test ran ({summary})")),
        Some(_) => Ok(format!("ok: {summary}")),
    }
}

/// `vm: 3 passed, 1 failed` -> (3, 1).
fn parse_summary(line: &str) -> Option<(u32, u32)> {
    let rest = line.strip_prefix("vm: ")?;
    let (passed, rest) = rest.split_once(" passed, ")?;
    let failed = rest.strip_suffix(" failed")?;
    Some((passed.parse().ok()?, failed.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line_and_marker() {
        assert_eq!(parse_summary("vm: 3 passed, 1 failed"), Some((3, 1)));
        assert_eq!(parse_summary("vm: 3 passed"), None);
        let mut report = GuestReport::default();
        let mut after = false;
        let t = Instant::now();
        for line in [
            "Booting from ROM..vm-init: 6.12 kernel 6.12.1-cloud-amd64, /init at 2.1 s (uptime)",
            "vm-init: lsm=lockdown,bpf",
            "PASS t_a (1.0 s)",
            "FAIL t_b (status 1, 2.0 s)",
            "GUARD-VM-RESULT rc=1",
            "vm: 1 passed, 1 failed",
            "vm-failed: t_b",
        ] {
            observe(&mut report, line, &mut after, t);
        }
        assert_eq!(report.rc, Some(1));
        assert_eq!(report.summary, Some((1, 1)));
        assert_eq!(report.kernel_release.as_deref(), Some("6.12.1-cloud-amd64"));
        assert_eq!(report.lsm.as_deref(), Some("lockdown,bpf"));
        assert_eq!(report.results.len(), 2);
        assert!(verdict(&report).is_err());
        assert!(verdict(&GuestReport::default()).unwrap_err().contains("guest did not report"));
    }

    #[test]
    fn an_oopsed_boot_is_merged_with_its_retry() {
        let t = Instant::now();
        let mut crashed = GuestReport::default();
        let mut after = false;
        for line in [
            "vm-rust: begin a",
            "test one ... ok",
            "vm-rust: end a rc=0 secs=3",
            "vm-rust: begin b",
            "test two ... ok",
            "[  393.3] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI",
        ] {
            observe(&mut crashed, line, &mut after, t);
        }
        assert!(crashed.guest_oops && crashed.rc.is_none());
        assert_eq!(crashed.rust.finished_binaries(), vec!["a"]);
        let mut retry = GuestReport::default();
        let mut after = false;
        for line in [
            "vm-rust: begin b",
            "test two ... ok",
            "test three ... ok",
            "vm-rust: end b rc=0 secs=4",
            "GUARD-VM-RESULT rc=0",
            "vm: 2 passed, 0 failed",
        ] {
            observe(&mut retry, line, &mut after, t);
        }
        let merged = crashed.merge_retry(retry);
        assert_eq!(merged.summary, Some((3, 0)));
        assert_eq!(merged.rust.tests.len(), 3, "b's first, cut-short run is not counted");
        assert!(verdict(&merged).unwrap().contains("after 1 reboot(s)"), "{:?}", verdict(&merged));
    }

    #[test]
    fn control_sequences_are_dropped() {
        assert_eq!(printable("\x1bc\x1b[?7l\x1b[2Jvm-init: x\r\n"), "vm-init: x");
        assert_eq!(printable("a\x1b[0mb\x1b]0;title\x07c\x1b(Bd\te"), "abcd\te");
    }
}
