//! `cargo xtask`: developer and CI tasks for the guard workspace.
//!
//! - `setup`: fresh-machine toolchain prerequisites (rust-src for nightly, bpf-linker).
//! - `build`: setup, then build the daemon (its build script compiles the eBPF object).
//! - `run`: setup + build, then run `guard run` as root with the built-in default policy.
//! - `test`: THE test command (what `.ci/run` runs): setup + build + the whole test suite.
//! - `bench`: measure guard's overhead and write BENCHMARKS.md.
//! - `fuzz`: the cargo-fuzz targets in fuzz/, briefly (a stage of `test`) or `--long`.
//! - `dist`: the release `.deb` (cargo-deb); `package-check`: install it, check it, remove it.
//! - `vm-test`: boot Debian kernels with BPF LSM under qemu and run the guest suite (tests/vm).

mod bench;
mod cgroup;
mod flow;
mod fuzz;
mod package;
mod setup;
mod util;
mod vm;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "xtask", bin_name = "cargo xtask", about = "Developer tasks for the guard workspace")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install the toolchain prerequisites if missing (idempotent): rust-src for nightly and
    /// bpf-linker 0.13.0 linked against the nightly toolchain's own libLLVM.
    Setup {
        /// Only print what would be done.
        #[arg(long)]
        dry_run: bool,
    },
    /// Setup, then build the daemon (`cargo build -p guard-daemon`).
    Build {
        /// Build with the release profile.
        #[arg(long)]
        release: bool,
    },
    /// Setup + build, then run `guard run [ARGS]` (root only) with the built-in default policy.
    Run {
        /// Build and run the release binary.
        #[arg(long)]
        release: bool,
        /// Extra arguments for `guard run`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Setup + build, then run the whole test suite (unit tests of every crate, then the
    /// integration tests of guard-tests, serially, against the built `guard`).
    Test {
        /// Build and test with the release profile.
        #[arg(long)]
        release: bool,
        /// Kill the test run after this many seconds (0: never).
        #[arg(long, default_value_t = 1200)]
        timeout: u64,
        /// Skip the lsm-tier stage (qemu guests; `cargo xtask vm-test` runs it alone).
        #[arg(long)]
        no_vm: bool,
        /// Also run the integration suite in the 6.1 guest (CI runs it in the 6.12 guest only).
        #[arg(long, conflicts_with = "no_vm")]
        full: bool,
        /// Skip the fuzz stage (`cargo xtask fuzz` runs it alone).
        #[arg(long)]
        no_fuzz: bool,
    },
    /// Build the release binary and the .deb (cargo-deb): target/debian/guard_VERSION-1_ARCH.deb.
    Dist,
    /// Root: dist, then `dpkg -i` it here, check the binary, man pages, completions and unit
    /// (`systemd-analyze verify`, its ExecStart run by hand), then `dpkg -r` and `--purge`
    /// (the package stage of `test`).
    PackageCheck,
    /// Measure guard's overhead on openat, fork+exec and connect; writes BENCHMARKS.md.
    Bench(bench::BenchArgs),
    /// Install cargo-fuzz if missing, build the fuzz targets (fuzz/) with nightly and run each
    /// briefly (15 s); `--long`: 1,000,000 inputs each, counts written into BENCHMARKS.md.
    Fuzz(fuzz::FuzzArgs),
    /// Boot Debian kernels with BPF LSM (6.12, 6.1) under qemu: the fast guest cases (tests/vm)
    /// and the whole integration suite on a Debian root filesystem.
    VmTest(vm::VmArgs),
    /// Boot the Debian guest (lsm tier) with the build tree and a directory, run CMD there as
    /// root with guard on PATH; CMD's output and exit status are this command's.
    VmRun(vm::VmRunArgs),
    /// One benchmark loop; prints a JSON line (used by `bench`).
    #[command(hide = true)]
    BenchWorker(bench::worker::WorkerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup { dry_run } => setup::setup(dry_run).map(|_| ExitCode::SUCCESS),
        Command::Build { release } => flow::build(release).map(|_| ExitCode::SUCCESS),
        Command::Run { release, args } => flow::run(release, &args),
        Command::Test { release, timeout, no_vm, full, no_fuzz } => {
            flow::test(release, timeout, !no_vm, full, !no_fuzz)
        }
        Command::Dist => package::dist().map(|_| ExitCode::SUCCESS),
        Command::PackageCheck => package::check().map(|_| ExitCode::SUCCESS),
        Command::Bench(args) => bench::bench(&args).map(|_| ExitCode::SUCCESS),
        Command::Fuzz(args) => fuzz::fuzz(&args),
        Command::VmTest(args) => vm::vm_test(&args),
        Command::VmRun(args) => vm::vm_run(&args),
        Command::BenchWorker(args) => bench::worker::main(&args).map(|_| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}
