//! Static builds of `guard`, `guard-actor` and guard-tests' integration-test binaries for the
//! guests (glibc, `+crt-static`), in `<target>/vm` so the host build is not invalidated.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};

use super::is_static_elf;
use crate::{
    note, setup,
    util::{self, cargo},
};

const TARGET: &str = "x86_64-unknown-linux-gnu";

pub struct Binaries {
    /// The target directory of the static build (`<target>/vm`).
    pub target: PathBuf,
    pub guard: PathBuf,
    pub actor: PathBuf,
    /// Integration-test binaries for the full stage: (target name, executable).
    pub rust_tests: Vec<(String, PathBuf)>,
}

/// `cargo build|test` for the guest: static glibc binaries in their own target directory.
fn static_cargo(target: &Path, release: bool, args: &[&str]) -> Command {
    let mut cmd = Command::new(cargo());
    cmd.current_dir(crate::workspace_root())
        .args(args)
        .args(["--target", TARGET])
        .env("CARGO_TARGET_DIR", target)
        .env("RUSTFLAGS", "-C target-feature=+crt-static");
    if util::in_ci() {
        cmd.arg("--locked");
    }
    if release {
        cmd.arg("--release");
    }
    cmd
}

/// `guard` and `guard-actor` are always release builds: under TCG a debug daemon takes twice
/// as long to start (21-34 s against 12-18 s, measured with vm-run on 6.12) and every test
/// starts one. The integration-test binaries follow `release`.
pub fn build_static(release: bool, rust_tests: Option<&str>) -> Result<Binaries> {
    setup::setup(false)?;
    let target = util::target_dir()?.join("vm");
    util::run(&mut static_cargo(
        &target,
        true,
        &["build", "-p", "guard-daemon", "-p", "guard-tests", "--bin", "guard", "--bin", "guard-actor"],
    ))?;
    let out = target.join(TARGET).join("release");
    let mut bins =
        Binaries { guard: out.join("guard"), actor: out.join("guard-actor"), target, rust_tests: Vec::new() };
    if let Some(names) = rust_tests {
        bins.rust_tests = build_rust_tests(&bins.target, release, names)?;
    }
    for bin in [&bins.guard, &bins.actor].into_iter().chain(bins.rust_tests.iter().map(|(_, p)| p)) {
        if !is_static_elf(bin)? {
            bail!("{} is dynamically linked (RUSTFLAGS not applied?)", bin.display());
        }
    }
    Ok(bins)
}

/// `cargo test --no-run` of guard-tests' integration tests; their executables by target name.
fn build_rust_tests(target: &Path, release: bool, names: &str) -> Result<Vec<(String, PathBuf)>> {
    let mut args = vec!["test", "--no-run", "--message-format=json-render-diagnostics", "-p", "guard-tests"];
    let names: Vec<&str> = names.split(',').map(str::trim).filter(|n| !n.is_empty()).collect();
    if names.is_empty() || names.contains(&"all") {
        args.push("--tests");
    } else {
        for name in &names {
            args.extend(["--test", name]);
        }
    }
    let mut cmd = static_cargo(target, release, &args);
    note!("$ {}", util::display(&cmd));
    let out = cmd.stderr(Stdio::inherit()).output().context("cannot run cargo test --no-run")?;
    if !out.status.success() {
        bail!("building the integration tests failed ({})", out.status);
    }
    let mut found = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let is_test = msg["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "test"));
        if let (true, Some(name), Some(exe)) = (is_test, msg["target"]["name"].as_str(), msg["executable"].as_str()) {
            found.push((name.to_string(), PathBuf::from(exe)));
        }
    }
    if found.is_empty() {
        bail!("cargo test --no-run built no integration-test executable for {names:?}");
    }
    note!("integration tests for the guest: {}", found.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", "));
    Ok(found)
}
