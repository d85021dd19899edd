//! `cargo xtask vm-test`: the BPF LSM tier, tested inside qemu guests.
//!
//! The build/CI host refuses `lsm/` programs, so this boots Debian kernels that have BPF LSM
//! (booted with `lsm=...,bpf`) under qemu's TCG (KVM is unusable here) with an initramfs
//! holding busybox, static builds of `guard` and `guard-actor`, and the guest suite from
//! `tests/vm/` (see tests/vm/README.md). Nothing here loads BPF on the host.
//!
//! Steps, each skipped when already done:
//! 1. host tools: qemu-system-x86, busybox-static, cpio (apt);
//! 2. kernels: the newest Debian `linux-image-6.12.*-cloud-amd64` and
//!    `linux-image-6.1.0-*-cloud-amd64`, downloaded with apt and cached by package and version
//!    in `~/.cache/guard/kernels/<package>_<version>/` (vmlinuz and config only);
//! 3. static binaries (`-C target-feature=+crt-static`, glibc) in `<target>/vm`, so the host
//!    build is not invalidated;
//! 4. an initramfs (gzip'd newc cpio) in a temporary directory (kept with `--keep`);
//! 5. one qemu run per kernel under `timeout`, output streamed (`[6.12] ...`) and logged to
//!    `<target>/vm/logs/<kernel>.log`; the verdict comes from the guest's marker line
//!    `GUARD-VM-RESULT rc=N` and the summary after it (`vm: N passed, N failed`).

use std::{
    fs,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    note, setup,
    util::{self, cargo},
};

const TARGET: &str = "x86_64-unknown-linux-gnu";
const MARKER: &str = "GUARD-VM-RESULT rc=";
const KERNEL_ARGS: &str = "console=ttyS0 lsm=lockdown,capability,landlock,bpf panic=-1 quiet";
/// Kernel options the lsm tier needs, checked in each kernel's config before booting it.
const NEEDED_CONFIG: &[&str] = &["CONFIG_BPF_LSM=y", "CONFIG_DEBUG_INFO_BTF=y", "CONFIG_BPF_SYSCALL=y"];

#[derive(Debug, clap::Args)]
pub struct VmArgs {
    /// Guest kernel: 6.12, 6.1 or all (both, one after the other).
    #[arg(long, default_value = "all", value_parser = ["6.12", "6.1", "all"])]
    pub kernel: String,
    /// Keep the staging directory (initramfs tree and image) and say where it is.
    #[arg(long)]
    pub keep: bool,
    /// Run only the guest tests whose name contains one of these (comma-separated).
    #[arg(long, value_name = "NAMES")]
    pub only: Option<String>,
    /// Seconds allowed per kernel (boot + suite) before qemu is killed [default: 280, or 1500
    /// with --rust-tests].
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Seconds allowed per guest test.
    #[arg(long, default_value_t = 180)]
    pub test_timeout: u64,
    /// Build the guest binaries with the release profile (slower to build, faster in the guest).
    #[arg(long)]
    pub release: bool,
    /// Also run these integration-test binaries of guard-tests in the guest (comma-separated
    /// target names such as `foundation`, or `all`), as the guest test t_rust_integration. Tests
    /// that need python3 or git fail there (the guest has only busybox); each starts its own
    /// daemon, ~10-20 s under TCG.
    #[arg(long, value_name = "TESTS")]
    pub rust_tests: Option<String>,
    /// libtest filter for --rust-tests (a substring of test names; no spaces).
    #[arg(long, value_name = "SUBSTRING", requires = "rust_tests")]
    pub rust_filter: Option<String>,
}

impl VmArgs {
    /// What `cargo xtask test` runs after the host-tier suite: every kernel, every guest test.
    pub fn full_suite() -> Self {
        Self {
            kernel: "all".into(),
            keep: false,
            only: None,
            timeout: None,
            test_timeout: 180,
            release: false,
            rust_tests: None,
            rust_filter: None,
        }
    }

    fn timeout(&self) -> u64 {
        self.timeout.unwrap_or(if self.rust_tests.is_some() { 1500 } else { 280 })
    }
}

/// A kernel series we boot.
#[derive(Clone, Copy, Debug)]
struct Series {
    label: &'static str,
    /// apt-cache search pattern.
    pattern: &'static str,
    /// What follows `linux-image-` in a concrete (non-meta) package of the series.
    version_prefix: &'static str,
}

const SERIES: &[Series] = &[
    Series { label: "6.12", pattern: r"^linux-image-6\.12\..*cloud-amd64$", version_prefix: "6.12." },
    Series { label: "6.1", pattern: r"^linux-image-6\.1\..*cloud-amd64$", version_prefix: "6.1." },
];

struct Kernel {
    label: &'static str,
    package: String,
    vmlinuz: PathBuf,
}

/// What one guest run produced.
#[derive(Default)]
struct GuestReport {
    rc: Option<i32>,
    summary: Option<(u32, u32)>,
    summary_lines: Vec<String>,
    /// Host seconds from qemu start to the guest's first `vm-init:` line.
    init_at: Option<f64>,
    daemon_start: Option<String>,
    suite: Option<String>,
    tier: Option<String>,
    /// The first `guard: error:` line (e.g. a program the guest kernel's verifier refused).
    guard_error: Option<String>,
    /// The verifier's complaint: the line before the first `verification time` line.
    verifier_error: Option<String>,
    previous_line: String,
    lsm: Option<String>,
    kernel_release: Option<String>,
    results: Vec<String>,
    wall: f64,
    timed_out: bool,
    qemu_status: Option<String>,
}

pub fn vm_test(args: &VmArgs) -> Result<ExitCode> {
    let started = Instant::now();
    util::catch_signals();
    if args.timeout() == 0 {
        bail!("--timeout must be at least 1 s");
    }
    ensure_host_tools()?;
    let series: Vec<Series> =
        SERIES.iter().copied().filter(|s| args.kernel == "all" || args.kernel == s.label).collect();
    let mut kernels = Vec::new();
    for s in &series {
        kernels.push(fetch_kernel(s)?);
    }
    let t_build = Instant::now();
    let bins = build_static(args.release, args.rust_tests.as_deref())?;
    note!("static binaries ready in {:.0} s", t_build.elapsed().as_secs_f64());

    let stage = std::env::temp_dir().join(format!("guard-vm-{}", std::process::id()));
    let _cleanup = (!args.keep).then(|| RemoveOnDrop(stage.clone()));
    let t_initrd = Instant::now();
    let initrd = build_initramfs(&stage, &bins)?;
    note!(
        "initramfs {} ({:.1} MB) in {:.1} s",
        initrd.display(),
        fs::metadata(&initrd).map(|m| m.len()).unwrap_or(0) as f64 / 1e6,
        t_initrd.elapsed().as_secs_f64()
    );

    let log_dir = bins.target.join("logs");
    fs::create_dir_all(&log_dir).with_context(|| format!("cannot create {}", log_dir.display()))?;
    let vm_started = Instant::now();
    let mut reports = Vec::new();
    for kernel in &kernels {
        let log = log_dir.join(format!("{}.log", kernel.label));
        let report = boot(kernel, &initrd, &log, args)?;
        if let Some(sig) = util::pending_signal() {
            note!("interrupted by signal {sig}");
            return Ok(ExitCode::from(130));
        }
        reports.push((kernel, log, report));
    }
    let vm_elapsed = vm_started.elapsed().as_secs_f64();

    note!("== vm-test summary (VM stage {vm_elapsed:.0} s, total {:.0} s)", started.elapsed().as_secs_f64());
    let mut all_ok = true;
    for (kernel, log, r) in &reports {
        let verdict = verdict(r);
        all_ok &= verdict.is_ok();
        note!(
            "[{}] {}: {}",
            kernel.label,
            kernel.package,
            match &verdict {
                Ok(text) | Err(text) => text,
            }
        );
        note!(
            "[{}]   wall {:.0} s; /init after {}; daemon start {}; suite {}",
            kernel.label,
            r.wall,
            r.init_at.map_or("?".to_string(), |s| format!("{s:.1} s")),
            r.daemon_start.as_deref().unwrap_or("?"),
            r.suite.as_deref().unwrap_or("?"),
        );
        note!(
            "[{}]   kernel {}; lsm={}; {}",
            kernel.label,
            r.kernel_release.as_deref().unwrap_or("?"),
            r.lsm.as_deref().unwrap_or("?"),
            r.tier.as_deref().unwrap_or("tier: ?"),
        );
        if let Some(err) = &r.guard_error {
            note!("[{}]   first guard error: {err}", kernel.label);
        }
        if let Some(err) = &r.verifier_error {
            note!("[{}]   verifier: {err}", kernel.label);
        }
        for line in r.results.iter().filter(|l| !l.starts_with("PASS ")) {
            note!("[{}]   {line}", kernel.label);
        }
        note!("[{}]   log: {}", kernel.label, log.display());
    }
    if args.keep {
        note!("kept the staging directory {} (initramfs: {})", stage.display(), initrd.display());
    }
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn verdict(r: &GuestReport) -> Result<String, String> {
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

// ---- host tools ------------------------------------------------------------------------------

fn ensure_host_tools() -> Result<()> {
    let have_qemu = util::find_in_path("qemu-system-x86_64").is_some();
    let have_busybox = is_static_elf(Path::new("/bin/busybox")).unwrap_or(false);
    let have_cpio = util::find_in_path("cpio").is_some();
    if have_qemu && have_busybox && have_cpio {
        note!("skip: qemu-system-x86_64, static /bin/busybox and cpio are installed");
        return Ok(());
    }
    if !util::is_root() {
        bail!("need qemu-system-x86, busybox-static and cpio: run as root or install them with apt-get");
    }
    let install = || {
        let mut cmd = Command::new("apt-get");
        cmd.args(["install", "-y", "--no-install-recommends", "qemu-system-x86", "busybox-static", "cpio"])
            .env("DEBIAN_FRONTEND", "noninteractive");
        util::run(&mut cmd)
    };
    if install().is_err() {
        note!("apt-get install failed: refreshing the package lists and retrying");
        util::run(Command::new("apt-get").arg("update"))?;
        install()?;
    }
    if !is_static_elf(Path::new("/bin/busybox")).unwrap_or(false) {
        bail!("/bin/busybox is not statically linked even after installing busybox-static");
    }
    Ok(())
}

/// An ELF file without a PT_INTERP program header (static or static-pie).
fn is_static_elf(path: &Path) -> Result<bool> {
    let mut bytes = Vec::new();
    fs::File::open(path)
        .with_context(|| format!("cannot open {}", path.display()))?
        .take(64 * 1024)
        .read_to_end(&mut bytes)?;
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 {
        bail!("{} is not a 64-bit ELF file", path.display());
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        if at + 4 > bytes.len() {
            bail!("{}: program headers beyond the first 64 KiB", path.display());
        }
        if u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) == 3 {
            return Ok(false); // PT_INTERP: dynamically linked
        }
    }
    Ok(true)
}

// ---- kernels ---------------------------------------------------------------------------------

fn cache_root() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("guard"));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).context("HOME is not set (kernel cache)")?;
    Ok(PathBuf::from(home).join(".cache/guard"))
}

/// Numeric fields of a version string, for ordering (`6.12.117+deb12` -> [6, 12, 117, 12]).
fn version_key(text: &str) -> Vec<u64> {
    text.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).filter_map(|s| s.parse().ok()).collect()
}

/// The newest concrete package of a series in `apt-cache search` output (meta packages such
/// as `linux-image-6.12-cloud-amd64`, -dbg and -unsigned ones are not considered).
fn pick_package(series: &Series, search_output: &str) -> Option<String> {
    search_output
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| {
            name.strip_prefix("linux-image-")
                .and_then(|rest| rest.strip_suffix("-cloud-amd64"))
                .is_some_and(|version| version.starts_with(series.version_prefix))
        })
        .max_by_key(|name| version_key(name))
        .map(str::to_string)
}

fn apt_search(series: &Series) -> Result<Option<String>> {
    let out = util::output(Command::new("apt-cache").args(["search", "--names-only", series.pattern]))?;
    Ok(pick_package(series, &out))
}

fn fetch_kernel(series: &Series) -> Result<Kernel> {
    match fetch_kernel_once(series, false) {
        // Stale lists can name a package the mirror no longer has: refresh them once.
        Err(err) if util::is_root() && format!("{err:#}").contains("apt-get download") => {
            note!("{err:#}: running apt-get update and trying again");
            util::run(Command::new("apt-get").arg("update"))?;
            fetch_kernel_once(series, true)
        }
        other => other,
    }
}

fn fetch_kernel_once(series: &Series, refreshed: bool) -> Result<Kernel> {
    let kernels = cache_root()?.join("kernels");
    let mut package = apt_search(series)?;
    if package.is_none() && !refreshed && util::is_root() {
        note!("no {} cloud kernel in the apt lists: running apt-get update", series.label);
        util::run(Command::new("apt-get").arg("update"))?;
        package = apt_search(series)?;
    }
    let Some(package) = package else {
        // Offline fallback: the newest cached kernel of the series.
        if let Some(kernel) = newest_cached(&kernels, series)? {
            note!("apt knows no {} cloud kernel: using the cached {}", series.label, kernel.package);
            return Ok(kernel);
        }
        bail!("apt-cache search --names-only '{}' found no kernel package", series.pattern);
    };
    let version = util::output(Command::new("apt-cache").args(["show", "--no-all-versions", &package]))?
        .lines()
        .find_map(|l| l.strip_prefix("Version: ").map(|v| v.trim().to_string()))
        .with_context(|| format!("apt-cache show {package} printed no Version"))?;
    let dir = kernels.join(format!("{package}_{}", version.replace([':', '/'], "_")));
    let vmlinuz = dir.join("vmlinuz");
    if dir.join(".complete").exists() && vmlinuz.exists() {
        note!("skip: kernel {package} {version} is cached in {}", dir.display());
        check_config(&dir.join("config"), &package)?;
        return Ok(Kernel { label: series.label, package, vmlinuz });
    }
    fs::create_dir_all(&kernels).with_context(|| format!("cannot create {}", kernels.display()))?;
    let work = kernels.join(format!(".download-{}", std::process::id()));
    let _cleanup = RemoveOnDrop(work.clone());
    fs::create_dir_all(&work)?;
    note!("downloading {package} {version}");
    util::run(
        Command::new("apt-get")
            .args(["download", "-o", "APT::Sandbox::User=root", &format!("{package}={version}")])
            .current_dir(&work),
    )?;
    let deb = fs::read_dir(&work)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .with_context(|| format!("apt-get download left no .deb in {}", work.display()))?;
    let root = work.join("root");
    util::run(Command::new("dpkg").arg("-x").arg(&deb).arg(&root))?;
    let boot = root.join("boot");
    let find = |prefix: &str| -> Result<PathBuf> {
        fs::read_dir(&boot)
            .with_context(|| format!("{} has no boot/", deb.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix)))
            .with_context(|| format!("{} has no boot/{prefix}*", deb.display()))
    };
    let (image, config) = (find("vmlinuz-")?, find("config-")?);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    fs::copy(&image, &vmlinuz).with_context(|| format!("copying {}", image.display()))?;
    fs::copy(&config, dir.join("config")).with_context(|| format!("copying {}", config.display()))?;
    fs::write(dir.join("package"), format!("{package} {version}\n"))?;
    check_config(&dir.join("config"), &package)?;
    fs::write(dir.join(".complete"), b"")?;
    note!("cached {} in {}", image.file_name().unwrap_or_default().to_string_lossy(), dir.display());
    Ok(Kernel { label: series.label, package, vmlinuz })
}

fn newest_cached(kernels: &Path, series: &Series) -> Result<Option<Kernel>> {
    let Ok(entries) = fs::read_dir(kernels) else { return Ok(None) };
    let best = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(".complete").exists() && p.join("vmlinuz").exists())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            let package = name.split('_').next()?.to_string();
            pick_package(series, &package).map(|_| (version_key(&name), package, p))
        })
        .max_by(|a, b| a.0.cmp(&b.0));
    Ok(best.map(|(_, package, dir)| Kernel { label: series.label, package, vmlinuz: dir.join("vmlinuz") }))
}

fn check_config(config: &Path, package: &str) -> Result<()> {
    let text = fs::read_to_string(config).with_context(|| format!("cannot read {}", config.display()))?;
    let missing: Vec<&str> =
        NEEDED_CONFIG.iter().copied().filter(|opt| !text.lines().any(|l| l.trim() == *opt)).collect();
    if !missing.is_empty() {
        bail!("{package} lacks {} (its config: {})", missing.join(", "), config.display());
    }
    Ok(())
}

// ---- static binaries -------------------------------------------------------------------------

struct Binaries {
    /// The target directory of the static build (`<target>/vm`).
    target: PathBuf,
    guard: PathBuf,
    actor: PathBuf,
    /// Integration-test binaries for --rust-tests: (target name, executable).
    rust_tests: Vec<(String, PathBuf)>,
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

fn build_static(release: bool, rust_tests: Option<&str>) -> Result<Binaries> {
    setup::setup(false)?;
    let target = util::target_dir()?.join("vm");
    util::run(&mut static_cargo(
        &target,
        release,
        &["build", "-p", "guard-daemon", "-p", "guard-tests", "--bin", "guard", "--bin", "guard-actor"],
    ))?;
    let out = target.join(TARGET).join(if release { "release" } else { "debug" });
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

// ---- initramfs -------------------------------------------------------------------------------

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn build_initramfs(stage: &Path, bins: &Binaries) -> Result<PathBuf> {
    let _ = fs::remove_dir_all(stage);
    let root = stage.join("root");
    for dir in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "usr/local/bin",
        "etc",
        "root",
        "proc",
        "sys",
        "dev",
        "tmp",
        "run",
        "var/log/guard",
        "vm/cases",
    ] {
        fs::create_dir_all(root.join(dir)).with_context(|| format!("cannot create {}", root.join(dir).display()))?;
    }
    // busybox and its applets (`busybox --list-full` prints paths such as `usr/bin/awk`).
    fs::copy("/bin/busybox", root.join("bin/busybox")).context("copying /bin/busybox")?;
    let applets = util::output(Command::new("/bin/busybox").arg("--list-full"))?;
    for applet in applets.lines().map(str::trim).filter(|a| !a.is_empty() && !a.contains("..")) {
        let link = root.join(applet);
        if link.exists() || applet == "bin/busybox" {
            continue;
        }
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent)?;
        }
        std::os::unix::fs::symlink("/bin/busybox", &link).with_context(|| format!("symlink {}", link.display()))?;
    }
    // The binaries under test, without debug info (a smaller image boots faster).
    let mut copies = vec![
        (bins.guard.clone(), root.join("usr/local/bin/guard")),
        (bins.actor.clone(), root.join("usr/local/bin/guard-actor")),
    ];
    if !bins.rust_tests.is_empty() {
        fs::create_dir_all(root.join("vm/rust"))?;
        copies.extend(bins.rust_tests.iter().map(|(name, exe)| (exe.clone(), root.join("vm/rust").join(name))));
    }
    for (bin, dest) in copies {
        let stripped = util::find_in_path("strip").is_some()
            && Command::new("strip")
                .arg("--strip-debug")
                .arg("-o")
                .arg(&dest)
                .arg(&bin)
                .status()
                .is_ok_and(|s| s.success());
        if !stripped {
            fs::copy(&bin, &dest).with_context(|| format!("copying {}", bin.display()))?;
        }
    }
    // The guest suite.
    let suite = crate::workspace_root().join("tests/vm");
    install_script(&suite.join("init.sh"), &root.join("init"))?;
    for name in ["run.sh", "run-one.sh", "lib.sh"] {
        install_script(&suite.join(name), &root.join("vm").join(name))?;
    }
    for entry in fs::read_dir(suite.join("cases")).context("reading tests/vm/cases")? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "sh") {
            install_script(&path, &root.join("vm/cases").join(path.file_name().expect("file name")))?;
        }
    }
    fs::write(root.join("etc/hostname"), "guard-vm\n")?;
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    fs::write(root.join("etc/nsswitch.conf"), "passwd: files\ngroup: files\nhosts: files\n")?;
    fs::write(root.join("etc/hosts"), "127.0.0.1 localhost guard-vm\n")?;
    // /dev/console: without it the kernel starts /init with no stdio (init.sh copes, late).
    let console = root.join("dev/console");
    let c = std::ffi::CString::new(console.as_os_str().as_encoded_bytes()).context("console path")?;
    // SAFETY: valid C string; mknod has no other preconditions.
    if unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(5, 1)) } != 0 {
        note!(
            "warning: cannot create /dev/console in the initramfs ({}): early guest output is lost",
            std::io::Error::last_os_error()
        );
    }

    let image = stage.join("initramfs.cpio.gz");
    let script = "set -o pipefail; cd \"$1\" && find . -print0 | LC_ALL=C sort -z | cpio --null --create --format=newc --owner=0:0 --quiet | gzip -1 > \"$2\"";
    util::run(Command::new("bash").args(["-c", script, "pack"]).arg(&root).arg(&image))?;
    Ok(image)
}

fn install_script(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

// ---- booting ---------------------------------------------------------------------------------

enum Line {
    Out(String),
    Done,
}

fn boot(kernel: &Kernel, initrd: &Path, log_path: &Path, args: &VmArgs) -> Result<GuestReport> {
    let mut append = format!("{KERNEL_ARGS} guardvm_label={} guardvm_test_timeout={}", kernel.label, args.test_timeout);
    if let Some(only) = args.only.as_deref().filter(|o| !o.is_empty()) {
        if only.chars().any(|c| c.is_whitespace() || c == '"') {
            bail!("--only takes comma-separated names without spaces");
        }
        append.push_str(&format!(" guardvm_only={only}"));
    }
    if let Some(filter) = args.rust_filter.as_deref().filter(|f| !f.is_empty()) {
        if filter.chars().any(|c| c.is_whitespace() || c == '"') {
            bail!("--rust-filter takes a substring without spaces");
        }
        append.push_str(&format!(" guardvm_rust_filter={filter}"));
    }
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", &args.timeout().to_string(), "qemu-system-x86_64"])
        .args(["-accel", "tcg", "-cpu", "max", "-m", "1024", "-smp", "2"])
        .args(["-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio"])
        .arg("-kernel")
        .arg(&kernel.vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(&append)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    note!("== [{}] booting {} (limit {} s)", kernel.label, kernel.package, args.timeout());
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
    let prefix = format!("[{}] ", kernel.label);
    let stdout = std::io::stdout();
    while open_streams > 0 {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Line::Out(line)) => {
                let _ = writeln!(stdout.lock(), "{prefix}{line}");
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
    note!("[{}] qemu finished ({status}) after {:.0} s", kernel.label, report.wall);
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
fn observe(report: &mut GuestReport, line: &str, after_marker: &mut bool, started: Instant) {
    let line = line.trim();
    let after = |tag: &str| line.find(tag).map(|i| &line[i + tag.len()..]);
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
    fn picks_the_newest_concrete_kernel_of_a_series() {
        let listing = "linux-image-6.12-cloud-amd64 - Linux for x86-64 cloud (meta-package)\n\
                       linux-image-6.12.9+deb12-cloud-amd64 - Linux 6.12\n\
                       linux-image-6.12.117+deb12-cloud-amd64 - Linux 6.12\n\
                       linux-image-6.12.100+deb12-cloud-amd64 - Linux 6.12\n\
                       linux-image-6.1.0-48-cloud-amd64 - Linux 6.1\n\
                       linux-image-6.1.0-9-cloud-amd64 - Linux 6.1\n";
        assert_eq!(pick_package(&SERIES[0], listing).as_deref(), Some("linux-image-6.12.117+deb12-cloud-amd64"));
        assert_eq!(pick_package(&SERIES[1], listing).as_deref(), Some("linux-image-6.1.0-48-cloud-amd64"));
        assert_eq!(pick_package(&SERIES[1], "linux-image-6.12.1+deb12-cloud-amd64 - x\n"), None);
    }

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
    fn control_sequences_are_dropped() {
        assert_eq!(printable("\x1bc\x1b[?7l\x1b[2Jvm-init: x\r\n"), "vm-init: x");
        assert_eq!(printable("a\x1b[0mb\x1b]0;title\x07c\x1b(Bd\te"), "abcd\te");
    }

    #[test]
    fn busybox_elf_check() {
        // The running test binary is dynamically linked on the host (unless built static).
        let me = std::env::current_exe().unwrap();
        assert!(is_static_elf(&me).is_ok());
    }
}
