//! `cargo xtask vm-test` and `vm-run`: the BPF LSM tier, tested inside qemu guests.
//!
//! The build/CI host refuses `lsm/` programs, so this boots Debian kernels that have BPF LSM
//! (booted with `lsm=...,bpf`) under qemu's TCG (KVM is unusable here). Nothing here loads
//! BPF on the host. Two stages (tests/vm/README.md):
//!
//! - **fast**: an initramfs holding busybox, static `guard` and `guard-actor` and the shell
//!   cases of `tests/vm/cases` (a minute or two per kernel);
//! - **full**: a Debian root filesystem built with mmdebstrap from Debian's packages (cached by
//!   a hash of its package list, [`rootfs`]) on a virtio disk, a second disk holding the build
//!   tree (static `guard`, `guard-actor` and every integration-test binary of guard-tests), and
//!   the integration suite run there with `--include-ignored`, as on the host.
//!
//! `vm-run -- CMD` boots the full-stage guest with a directory of the caller's and runs CMD.
//!
//! Steps, each skipped when already done: host tools (apt); kernels ([`kernel`], cached by
//! package and version in `~/.cache/guard/kernels/`); static binaries ([`build`], in
//! `<target>/vm`, so the host build is not invalidated); images ([`initramfs`], [`rootfs`]);
//! one qemu run per kernel and stage under `timeout` ([`qemu`]), streamed (`[6.12] ...`) and
//! logged to `<target>/vm/logs/<kernel>-<stage>.log`. The verdict comes from the guest's
//! marker line `GUARD-VM-RESULT rc=N` and the summary after it (`vm: N passed, N failed`).

mod build;
mod initramfs;
mod kernel;
mod libtest;
mod qemu;
mod rootfs;
mod run;

use std::{
    fs,
    io::Read as _,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::Instant,
};

use anyhow::{Context, Result, bail};
pub use run::{VmRunArgs, vm_run};

use crate::{note, util};

const MARKER: &str = "GUARD-VM-RESULT rc=";
/// Kernel options the lsm tier needs, checked in each kernel's config before booting it.
const NEEDED_CONFIG: &[&str] = &["CONFIG_BPF_LSM=y", "CONFIG_DEBUG_INFO_BTF=y", "CONFIG_BPF_SYSCALL=y"];

#[derive(Debug, clap::Args)]
pub struct VmArgs {
    /// Guest kernel: 6.12, 6.1 or all (both, one after the other).
    #[arg(long, default_value = "all", value_parser = ["6.12", "6.1", "all"])]
    pub kernel: String,
    /// Which stage: fast (busybox initramfs, shell cases), full (Debian root filesystem, the
    /// Rust integration suite) or all (fast, then full).
    #[arg(long, default_value = "all", value_parser = ["fast", "full", "all"])]
    pub stage: String,
    /// Keep the staging directory (images) and say where it is.
    #[arg(long)]
    pub keep: bool,
    /// Fast stage: run only the guest cases whose name contains one of these (comma-separated).
    #[arg(long, value_name = "NAMES")]
    pub only: Option<String>,
    /// Full stage: run only these integration-test files of guard-tests (comma-separated target
    /// names such as `foundation,detectors`) [default: all].
    #[arg(long, value_name = "FILES")]
    pub tests: Option<String>,
    /// Full stage: libtest filter (a substring of test names; no spaces).
    #[arg(long, value_name = "SUBSTRING")]
    pub filter: Option<String>,
    /// Full stage: tests run at once in the guest (each starts its own daemon).
    #[arg(long, default_value_t = 2)]
    pub threads: u32,
    /// Seconds allowed per kernel and stage (boot + suite) before qemu is killed [default: 300
    /// for fast, 1800 for full].
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Fast stage: seconds allowed per guest case.
    #[arg(long, default_value_t = 180)]
    pub test_timeout: u64,
    /// Build the integration-test binaries with the release profile too (guard itself always is).
    #[arg(long)]
    pub release: bool,
}

/// One guest boot: a kernel and a stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Fast,
    Full,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::Fast => "fast",
            Stage::Full => "full",
        }
    }
}

impl VmArgs {
    fn defaults() -> Self {
        Self {
            kernel: "all".into(),
            stage: "all".into(),
            keep: false,
            only: None,
            tests: None,
            filter: None,
            threads: 2,
            timeout: None,
            test_timeout: 180,
            release: false,
        }
    }

    /// The boots `cargo xtask test` makes after the host-tier suite: the fast stage on both
    /// kernels, the full suite on 6.12, and on 6.1 too with `--full`.
    pub fn ci_plan(full: bool) -> (Self, Vec<(&'static str, Stage)>) {
        let mut plan = vec![("6.12", Stage::Fast), ("6.1", Stage::Fast), ("6.12", Stage::Full)];
        if full {
            plan.push(("6.1", Stage::Full));
        }
        (Self::defaults(), plan)
    }

    /// The boots this command line asks for, fast stages first.
    fn plan(&self) -> Vec<(&'static str, Stage)> {
        let stages: &[Stage] = match self.stage.as_str() {
            "fast" => &[Stage::Fast],
            "full" => &[Stage::Full],
            _ => &[Stage::Fast, Stage::Full],
        };
        let mut plan = Vec::new();
        for &stage in stages {
            for series in kernel::SERIES {
                if self.kernel == "all" || self.kernel == series.label {
                    plan.push((series.label, stage));
                }
            }
        }
        plan
    }

    fn timeout(&self, stage: Stage) -> u64 {
        self.timeout.unwrap_or(match stage {
            Stage::Fast => 300,
            Stage::Full => 1800,
        })
    }

    fn validate(&self) -> Result<()> {
        if self.timeout == Some(0) {
            bail!("--timeout must be at least 1 s");
        }
        if self.threads == 0 {
            bail!("--threads must be at least 1");
        }
        for (flag, value) in [("--only", &self.only), ("--filter", &self.filter), ("--tests", &self.tests)] {
            if value.as_deref().is_some_and(|v| v.chars().any(|c| c.is_whitespace() || c == '"' || c == '\'')) {
                bail!("{flag} takes comma-separated names without spaces or quotes");
            }
        }
        Ok(())
    }
}

pub fn vm_test(args: &VmArgs) -> Result<ExitCode> {
    args.validate()?;
    run_plan(args, &args.plan())
}

/// Boots every (kernel, stage) of `plan`; the exit code says whether all passed.
pub fn run_plan(args: &VmArgs, plan: &[(&'static str, Stage)]) -> Result<ExitCode> {
    let started = Instant::now();
    util::catch_signals();
    let need_full = plan.iter().any(|(_, s)| *s == Stage::Full);
    ensure_host_tools(need_full)?;
    let mut kernels = Vec::new();
    for series in kernel::SERIES.iter().filter(|s| plan.iter().any(|(label, _)| *label == s.label)) {
        kernels.push(kernel::fetch(series)?);
    }
    let t_build = Instant::now();
    let tests = need_full.then(|| args.tests.as_deref().unwrap_or("all"));
    let bins = build::build_static(args.release, tests)?;
    note!("static binaries ready in {:.0} s", t_build.elapsed().as_secs_f64());

    let stage_dir = std::env::temp_dir().join(format!("guard-vm-{}", std::process::id()));
    let _cleanup = (!args.keep).then(|| RemoveOnDrop(stage_dir.clone()));
    let _ = fs::remove_dir_all(&stage_dir);
    fs::create_dir_all(&stage_dir).with_context(|| format!("cannot create {}", stage_dir.display()))?;
    let log_dir = bins.target.join("logs");
    fs::create_dir_all(&log_dir).with_context(|| format!("cannot create {}", log_dir.display()))?;

    let mut fast_initrd = None;
    let mut full_disks = None;
    let mut reports = Vec::new();
    let vm_started = Instant::now();
    for &(label, stage) in plan {
        let kernel = kernels.iter().find(|k| k.label == label).context("kernel fetched for the plan")?;
        let log = log_dir.join(format!("{label}-{}.log", stage.name()));
        let report = match stage {
            Stage::Fast => {
                if fast_initrd.is_none() {
                    let t = Instant::now();
                    let image = initramfs::build_fast(&stage_dir.join("fast"), &bins)?;
                    note!(
                        "fast-stage initramfs {} ({}) in {:.1} s",
                        image.display(),
                        size_of(&image),
                        t.elapsed().as_secs_f64()
                    );
                    fast_initrd = Some(image);
                }
                let initrd = fast_initrd.as_deref().context("fast initramfs built")?;
                let boot = qemu::Boot {
                    label,
                    stage: stage.name(),
                    kernel,
                    initrd,
                    disks: &[],
                    append: fast_append(label, args),
                    timeout: args.timeout(stage),
                    memory_mb: 1024,
                };
                qemu::boot(&boot, &log)?
            }
            Stage::Full => {
                if full_disks.is_none() {
                    let root = rootfs::ensure()?;
                    let work = rootfs::work_disk(
                        &stage_dir.join("work"),
                        &bins,
                        &rootfs::Mode::Suite { threads: args.threads, filter: args.filter.clone() },
                    )?;
                    full_disks = Some((root, work));
                }
                let (root, work) = full_disks.as_ref().context("full-stage disks built")?;
                let initrd = initramfs::build_boot(&stage_dir.join(format!("boot-{label}")), kernel)?;
                let boot = qemu::Boot {
                    label,
                    stage: stage.name(),
                    kernel,
                    initrd: &initrd,
                    disks: &[qemu::Disk::Snapshot(root.clone()), qemu::Disk::Writable(work.clone())],
                    append: format!("{} guardvm_label={label}", qemu::KERNEL_ARGS),
                    timeout: args.timeout(stage),
                    memory_mb: 2048,
                };
                let mut report = qemu::boot(&boot, &log)?;
                // The guest kernel can oops in its own text patching under TCG (int3 while a
                // tracepoint's static key flips, seen in 1 of 3 full runs): boot again, at most
                // twice, for the binaries that had not finished, and say so.
                let mut retries = 0;
                while report.rc.is_none() && report.guest_oops && retries < 2 && !report.timed_out {
                    retries += 1;
                    let done: Vec<String> = report.rust.finished_binaries();
                    let remaining = build::Binaries {
                        target: bins.target.clone(),
                        guard: bins.guard.clone(),
                        actor: bins.actor.clone(),
                        rust_tests: bins.rust_tests.iter().filter(|(n, _)| !done.contains(n)).cloned().collect(),
                    };
                    note!(
                        "[{label} full] the guest kernel oopsed (TCG text patching): booting again for {} of {} test binaries",
                        remaining.rust_tests.len(),
                        bins.rust_tests.len()
                    );
                    let work = rootfs::work_disk(
                        &stage_dir.join(format!("work-retry-{retries}")),
                        &remaining,
                        &rootfs::Mode::Suite { threads: args.threads, filter: args.filter.clone() },
                    )?;
                    let retry_log = log_dir.join(format!("{label}-full-retry-{retries}.log"));
                    let disks = [qemu::Disk::Snapshot(root.clone()), qemu::Disk::Writable(work)];
                    let again = qemu::boot(&qemu::Boot { disks: &disks, ..boot.clone() }, &retry_log)?;
                    report = report.merge_retry(again);
                }
                report
            }
        };
        if let Some(sig) = util::pending_signal() {
            note!("interrupted by signal {sig}");
            return Ok(ExitCode::from(130));
        }
        reports.push((kernel, stage, log, report));
    }
    let vm_elapsed = vm_started.elapsed().as_secs_f64();

    note!("== vm-test summary (VM stage {vm_elapsed:.0} s, total {:.0} s)", started.elapsed().as_secs_f64());
    let mut all_ok = true;
    for (kernel, stage, log, r) in &reports {
        let tag = format!("[{} {}]", kernel.label, stage.name());
        let verdict = qemu::verdict(r);
        all_ok &= verdict.is_ok();
        note!(
            "{tag} {}: {}",
            kernel.package,
            match &verdict {
                Ok(text) | Err(text) => text,
            }
        );
        note!(
            "{tag}   wall {:.0} s; /init after {}; daemon start {}; suite {}",
            r.wall,
            r.init_at.map_or("?".to_string(), |s| format!("{s:.1} s")),
            r.daemon_start.as_deref().unwrap_or("?"),
            r.suite.as_deref().unwrap_or("?"),
        );
        note!(
            "{tag}   kernel {}; lsm={}; {}",
            r.kernel_release.as_deref().unwrap_or("?"),
            r.lsm.as_deref().unwrap_or("?"),
            r.tier.as_deref().unwrap_or("tier: ?"),
        );
        if let Some(err) = &r.guard_error {
            note!("{tag}   first guard error: {err}");
        }
        if let Some(err) = &r.verifier_error {
            note!("{tag}   verifier: {err}");
        }
        for line in r.results.iter().filter(|l| !l.starts_with("PASS ")) {
            note!("{tag}   {line}");
        }
        let rust = r.rust.summary();
        if !rust.is_empty() {
            note!("{tag}   {rust}");
            for line in r.rust.lines().iter().filter(|l| !l.starts_with("PASS ")) {
                note!("{tag}   {line}");
            }
        }
        note!("{tag}   log: {}", log.display());
    }
    if args.keep {
        note!("kept the staging directory {}", stage_dir.display());
    }
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn fast_append(label: &str, args: &VmArgs) -> String {
    let mut append = format!("{} guardvm_label={label} guardvm_test_timeout={}", qemu::KERNEL_ARGS, args.test_timeout);
    if let Some(only) = args.only.as_deref().filter(|o| !o.is_empty()) {
        append.push_str(&format!(" guardvm_only={only}"));
    }
    append
}

fn size_of(path: &Path) -> String {
    format!("{:.1} MB", fs::metadata(path).map(|m| m.len()).unwrap_or(0) as f64 / 1e6)
}

// ---- host tools ------------------------------------------------------------------------------

/// qemu, busybox-static and cpio for every stage; mmdebstrap (root filesystem), e2fsprogs
/// (mkfs.ext4 -d, debugfs) and xz-utils (compressed kernel modules) for the full stage.
fn ensure_host_tools(full: bool) -> Result<()> {
    let mut missing = Vec::new();
    if util::find_in_path("qemu-system-x86_64").is_none() {
        missing.push("qemu-system-x86");
    }
    if !is_static_elf(Path::new("/bin/busybox")).unwrap_or(false) {
        missing.push("busybox-static");
    }
    if util::find_in_path("cpio").is_none() {
        missing.push("cpio");
    }
    if full {
        for (tool, package) in
            [("mmdebstrap", "mmdebstrap"), ("mkfs.ext4", "e2fsprogs"), ("debugfs", "e2fsprogs"), ("xz", "xz-utils")]
        {
            if util::find_in_path(tool).is_none()
                && !Path::new("/usr/sbin").join(tool).exists()
                && !missing.contains(&package)
            {
                missing.push(package);
            }
        }
    }
    if missing.is_empty() {
        note!("skip: the guest tools are installed");
        return Ok(());
    }
    if !util::is_root() {
        bail!("need {}: run as root or install them with apt-get", missing.join(", "));
    }
    apt_install(&missing)?;
    if !is_static_elf(Path::new("/bin/busybox")).unwrap_or(false) {
        bail!("/bin/busybox is not statically linked even after installing busybox-static");
    }
    Ok(())
}

/// `apt-get install` that refreshes stale package lists once when the first try fails.
pub(crate) fn apt_install(packages: &[&str]) -> Result<()> {
    let install = || {
        let mut cmd = Command::new("apt-get");
        cmd.args(["install", "-y", "--no-install-recommends"]).args(packages).env("DEBIAN_FRONTEND", "noninteractive");
        util::run(&mut cmd)
    };
    if install().is_err() {
        note!("apt-get install failed: refreshing the package lists and retrying");
        util::run(Command::new("apt-get").arg("update"))?;
        install()?;
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

/// `~/.cache/guard` (or `$XDG_CACHE_HOME/guard`): kernels and root filesystems.
fn cache_root() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("guard"));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).context("HOME is not set (guest cache)")?;
    Ok(PathBuf::from(home).join(".cache/guard"))
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans() {
        let mut args = VmArgs::defaults();
        assert_eq!(
            args.plan(),
            vec![("6.12", Stage::Fast), ("6.1", Stage::Fast), ("6.12", Stage::Full), ("6.1", Stage::Full)]
        );
        args.kernel = "6.12".into();
        args.stage = "full".into();
        assert_eq!(args.plan(), vec![("6.12", Stage::Full)]);
        assert_eq!(VmArgs::ci_plan(false).1.len(), 3);
        assert_eq!(VmArgs::ci_plan(true).1.last(), Some(&("6.1", Stage::Full)));
        args.filter = Some("a b".into());
        assert!(args.validate().is_err());
    }

    #[test]
    fn static_elf_check() {
        // The running test binary is dynamically linked on the host (unless built static).
        let me = std::env::current_exe().unwrap();
        assert!(is_static_elf(&me).is_ok());
    }
}
