//! `build`, `run` and `test`.

use std::{
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    note, setup,
    util::{self, Outcome, cargo},
};

/// Integration tests (they load BPF programs: run them one at a time).
const INTEGRATION_PACKAGE: &str = "guard-tests";
/// Built only for bpfel with nightly, by guard-daemon's build script.
const EBPF_PACKAGE: &str = "guard-ebpf";

pub fn profile_dir(release: bool) -> &'static str {
    if release { "release" } else { "debug" }
}

/// `--locked` in CI: the committed Cargo.lock must be complete and current.
fn locked_args() -> &'static [&'static str] {
    if util::in_ci() { &["--locked"] } else { &[] }
}

/// Setup, then `cargo build -p guard-daemon`; returns the path of the built `guard`.
pub fn build(release: bool) -> Result<PathBuf> {
    setup::setup(false)?;
    let mut cmd = Command::new(cargo());
    cmd.current_dir(crate::workspace_root()).args(["build", "-p", "guard-daemon"]).args(locked_args());
    if release {
        cmd.arg("--release");
    }
    util::run(&mut cmd)?;
    let bin = util::target_dir()?.join(profile_dir(release)).join("guard");
    if !util::is_executable(&bin) {
        bail!("the build succeeded but {} is missing", bin.display());
    }
    note!("built {}", bin.display());
    Ok(bin)
}

/// Setup + build, then replace xtask with `guard run ARGS` (built-in default policy).
pub fn run(release: bool, args: &[String]) -> Result<ExitCode> {
    if !util::is_root() {
        bail!("`guard run` loads BPF programs and manages cgroups: run this as root (e.g. `sudo -E cargo xtask run`)");
    }
    let bin = build(release)?;
    let mut cmd = Command::new(&bin);
    cmd.arg("run").args(args);
    note!("$ {}", util::display(&cmd));
    let err = cmd.exec();
    Err(err).with_context(|| format!("cannot exec {}", bin.display()))
}

struct Stage {
    name: &'static str,
    /// Package selection for `cargo test`.
    selection: &'static [&'static str],
    /// RUST_TEST_THREADS=1.
    serial: bool,
    /// Pass `--include-ignored` to the test binaries.
    include_ignored: bool,
}

/// THE test command: setup + build, unit tests of every crate, the integration tests, the
/// brief fuzz run, then the lsm tier in qemu guests.
pub fn test(release: bool, timeout_secs: u64, with_vm: bool, full: bool, with_fuzz: bool) -> Result<ExitCode> {
    let started = Instant::now();
    util::catch_signals();
    let guard_bin = build(release)?;
    if !util::is_root() {
        note!("warning: not root: the integration tests ({INTEGRATION_PACKAGE}) need root to load BPF programs");
    }
    let deadline = (timeout_secs > 0).then(|| Instant::now() + Duration::from_secs(timeout_secs));

    let root = util::is_root();
    let stages = [
        Stage {
            name: "unit tests (all crates)",
            selection: &["--workspace", "--exclude", EBPF_PACKAGE, "--exclude", INTEGRATION_PACKAGE],
            serial: false,
            include_ignored: false,
        },
        // The root-only tests are `#[ignore = "needs root ..."]` so that a plain `cargo test`
        // skips them; here, as root, they run, one at a time (each loads BPF programs).
        Stage {
            name: "integration tests (guard-tests, one at a time)",
            selection: &["-p", INTEGRATION_PACKAGE],
            serial: true,
            include_ignored: root,
        },
    ];
    let mut results = Vec::new();
    for stage in stages {
        let name = stage.name;
        let mut cmd = Command::new(cargo());
        cmd.current_dir(crate::workspace_root())
            .args(["test", "--no-fail-fast"])
            .args(locked_args())
            .args(stage.selection)
            .env("GUARD_BIN", &guard_bin);
        if release {
            cmd.arg("--release");
        }
        if stage.serial {
            cmd.env("RUST_TEST_THREADS", "1");
        }
        if stage.include_ignored {
            cmd.args(["--", "--include-ignored"]);
        }
        note!("== {name}");
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let outcome = if remaining == Some(Duration::ZERO) {
            Outcome::TimedOut
        } else {
            util::run_supervised(&mut cmd, remaining)?
        };
        let (ok, text) = match outcome {
            Outcome::Exited(status) if status.success() => (true, "passed".to_string()),
            Outcome::Exited(status) => (false, format!("FAILED ({status})")),
            Outcome::TimedOut => (false, format!("TIMED OUT (limit {timeout_secs} s for all tests; see --timeout)")),
            Outcome::Interrupted(sig) => {
                note!("interrupted by signal {sig}");
                return Ok(ExitCode::from(130));
            }
        };
        results.push((name, ok, text));
    }

    // The .deb: dist, dpkg -i, what it installed, dpkg -r (crate::package; root only).
    let package_stage = "package (cargo xtask dist, dpkg -i, man, completions, systemd-analyze verify, dpkg -r)";
    note!("== {package_stage}");
    let (ok, text) = crate::package::test_stage();
    results.push((package_stage, ok, text));

    // Outside the --timeout budget (that bounds the test binaries): the fuzz stage bounds its
    // own build and runs.
    let fuzz_stage = "fuzz (cargo-fuzz targets, 15 s each)";
    if with_fuzz {
        note!("== {fuzz_stage}");
        let (ok, text) = crate::fuzz::test_stage();
        if util::pending_signal().is_some() {
            return Ok(ExitCode::from(130));
        }
        results.push((fuzz_stage, ok, text));
    } else {
        results.push((fuzz_stage, true, "skipped (--no-fuzz)".to_string()));
    }

    // The lsm tier cannot load on this host kind: it is tested in qemu guests, after the
    // host-tier suite.
    let vm_stage = if full {
        "lsm tier (qemu guests: fast cases on 6.12 and 6.1, the integration suite on 6.12 and 6.1)"
    } else {
        "lsm tier (qemu guests: fast cases on 6.12 and 6.1, the integration suite on 6.12)"
    };
    if !with_vm {
        results.push((vm_stage, true, "skipped (--no-vm)".to_string()));
    } else if !root {
        note!("SKIPPED {vm_stage}: needs root (apt installs qemu, guests load BPF)");
        results.push((vm_stage, true, "skipped: not root".to_string()));
    } else {
        note!("== {vm_stage}");
        let (args, plan) = crate::vm::VmArgs::ci_plan(full);
        let (ok, text) = match crate::vm::run_plan(&args, &plan) {
            Ok(code) if code == ExitCode::SUCCESS => (true, "passed".to_string()),
            Ok(code) => (false, format!("FAILED ({code:?})")),
            Err(err) => (false, format!("FAILED: {err:#}")),
        };
        results.push((vm_stage, ok, text));
    }

    note!("== summary ({:.0} s)", started.elapsed().as_secs_f64());
    for (name, _, text) in &results {
        note!("{name}: {text}");
    }
    if results.iter().all(|(_, ok, _)| *ok) { Ok(ExitCode::SUCCESS) } else { Ok(ExitCode::FAILURE) }
}
