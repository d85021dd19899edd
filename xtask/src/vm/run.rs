//! `cargo xtask vm-run [--dir DIR] -- CMD...`: boots the full-stage guest (Debian root disk,
//! lsm tier) with the build tree and a directory of the caller's, runs CMD there as root with
//! guard's binary on PATH, and returns CMD's stdout, stderr and exit status as its own. A hook
//! for suites outside this repository (tests/vm/README.md).

use std::{fs, io::Write as _, path::PathBuf, process::ExitCode};

use anyhow::{Context, Result, bail};

use super::{RemoveOnDrop, build, ensure_host_tools, initramfs, kernel, qemu, rootfs};
use crate::{note, util};

#[derive(Debug, clap::Args)]
pub struct VmRunArgs {
    /// Guest kernel.
    #[arg(long, default_value = "6.12", value_parser = ["6.12", "6.1"])]
    pub kernel: String,
    /// The directory shared with the guest: copied in, mounted at its own path (and at
    /// /guard/share), and CMD's working directory [default: the current directory].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Where the files CMD leaves in $GUARD_VM_OUT come back to [default: <target>/vm/run-out].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Seconds allowed for boot + CMD before qemu is killed.
    #[arg(long, default_value_t = 1200)]
    pub timeout: u64,
    /// Also print the guest's console (boot messages, guest-init's lines) on stderr.
    #[arg(long)]
    pub console: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub argv: Vec<String>,
}

pub fn vm_run(args: &VmRunArgs) -> Result<ExitCode> {
    if args.timeout == 0 {
        bail!("--timeout must be at least 1 s");
    }
    let share = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    if !share.is_dir() {
        bail!("--dir {}: not a directory", share.display());
    }
    util::catch_signals();
    ensure_host_tools(true)?;
    let series = kernel::SERIES.iter().find(|s| s.label == args.kernel).context("known kernel series")?;
    let kernel = kernel::fetch(series)?;
    let bins = build::build_static(true, None)?;
    let root = rootfs::ensure()?;
    let stage = std::env::temp_dir().join(format!("guard-vm-run-{}", std::process::id()));
    let _cleanup = RemoveOnDrop(stage.clone());
    let work = rootfs::work_disk(
        &stage.join("work"),
        &bins,
        &rootfs::Mode::Run { argv: args.argv.clone(), share: share.clone() },
    )?;
    let initrd = initramfs::build_boot(&stage.join("boot"), &kernel)?;
    let log_dir = bins.target.join("logs");
    fs::create_dir_all(&log_dir)?;
    let log = log_dir.join(format!("{}-run.log", kernel.label));
    let boot = qemu::Boot {
        label: kernel.label,
        stage: "run",
        kernel: &kernel,
        initrd: &initrd,
        disks: &[qemu::Disk::Snapshot(root), qemu::Disk::Writable(work.clone())],
        append: format!("{} guardvm_label={}", qemu::KERNEL_ARGS, kernel.label),
        timeout: args.timeout,
        memory_mb: 2048,
    };
    let report = qemu::boot_quiet(&boot, &log, args.console)?;
    if util::pending_signal().is_some() {
        return Ok(ExitCode::from(130));
    }
    let Some(guest_rc) = report.rc else {
        bail!(
            "the guest did not finish (qemu {}, {:.0} s{}); its console: {}",
            report.qemu_status.as_deref().unwrap_or("?"),
            report.wall,
            if report.timed_out { ", timed out" } else { "" },
            log.display()
        );
    };
    let back = stage.join("back");
    fs::create_dir_all(&back)?;
    let mut streams = Vec::new();
    for name in ["stdout", "stderr", "rc"] {
        let dest = back.join(name);
        rootfs::read_back(&work, &format!("/out/{name}"), &dest).with_context(|| {
            format!("reading CMD's {name} back (guest-init rc {guest_rc}; console: {})", log.display())
        })?;
        streams.push(fs::read(&dest).with_context(|| format!("cannot read {}", dest.display()))?);
    }
    let rc: i32 = String::from_utf8_lossy(&streams[2])
        .trim()
        .parse()
        .with_context(|| format!("the guest wrote no exit status (console: {})", log.display()))?;
    let out_dir = match &args.out {
        Some(dir) => dir.clone(),
        None => bins.target.join("run-out"),
    };
    let _ = fs::remove_dir_all(&out_dir);
    fs::create_dir_all(&out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    // rdump makes DEST/files.
    if let Err(err) = rootfs::read_back(&work, "/out/files", &out_dir) {
        note!("warning: no files came back from $GUARD_VM_OUT: {err:#}");
    }
    std::io::stdout().write_all(&streams[0])?;
    std::io::stderr().write_all(&streams[1])?;
    note!(
        "vm-run: {} exited {rc} in the {} guest ({:.0} s); files from $GUARD_VM_OUT in {}; console {}",
        args.argv[0],
        kernel.label,
        report.wall,
        out_dir.join("files").display(),
        log.display()
    );
    Ok(ExitCode::from(u8::try_from(rc.clamp(0, 255)).unwrap_or(1)))
}
