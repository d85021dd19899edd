//! `cargo xtask setup`: idempotent toolchain prerequisites for building the eBPF object.
//!
//! 1. `rust-src` for the nightly toolchain (aya-build runs `cargo +nightly build -Z build-std=core`).
//! 2. bpf-linker 0.13.0 built against the nightly toolchain's own libLLVM (no system LLVM):
//!    a prefix directory D whose `lib/` holds `libLLVM.so` and `libLLVM.so.<ver>` symlinks to
//!    the sysroot's library, then `LLVM_PREFIX=D cargo install bpf-linker --features llvm-<major>`.
//!
//! 3. cargo-deb CARGO_DEB_VERSION (`cargo deb`, for `cargo xtask dist`), with `cargo install`.
//!
//! Each step is skipped when already satisfied. Mounting tracefs/bpffs is the daemon's job.
//!
//! `cargo xtask fuzz` adds cargo-fuzz ([`ensure_cargo_fuzz`]), in the same way, only for itself:
//! building and running guard needs no fuzzer.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::{
    note,
    util::{self, cargo, output},
};

pub const BPF_LINKER_VERSION: &str = "0.13.0";
pub const CARGO_FUZZ_VERSION: &str = "0.13.2";
pub const CARGO_DEB_VERSION: &str = "3.8.0";
const NIGHTLY: &str = "nightly";

/// Ensures every prerequisite; with `dry_run` only reports what it would do.
pub fn setup(dry_run: bool) -> Result<()> {
    if util::find_in_path("rustup").is_none() {
        bail!(
            "rustup is not on PATH: install it from https://rustup.rs (guard needs a nightly toolchain for its eBPF programs)"
        );
    }
    ensure_rust_src(dry_run)?;
    ensure_bpf_linker(dry_run)?;
    ensure_cargo_tool(dry_run, "cargo-deb", CARGO_DEB_VERSION)?;
    Ok(())
}

fn ensure_rust_src(dry_run: bool) -> Result<()> {
    let listed = Command::new("rustup")
        .args(["component", "list", "--toolchain", NIGHTLY, "--installed"])
        .output()
        .context("cannot run `rustup component list`")?;
    if !listed.status.success() {
        // Typically: the nightly toolchain is not installed at all.
        let mut cmd = Command::new("rustup");
        cmd.args(["toolchain", "install", NIGHTLY, "--profile", "minimal", "--component", "rust-src"]);
        return act(dry_run, "nightly toolchain missing: installing it with rust-src", &mut cmd);
    }
    if has_component(&String::from_utf8_lossy(&listed.stdout), "rust-src") {
        note!("skip: rust-src is installed for {NIGHTLY}");
        return Ok(());
    }
    let mut cmd = Command::new("rustup");
    cmd.args(["component", "add", "rust-src", "--toolchain", NIGHTLY]);
    act(dry_run, "rust-src missing for nightly: adding it", &mut cmd)
}

/// Whether `rustup component list --installed` output lists `name` (lines look like
/// `rust-src` or `rustc-x86_64-unknown-linux-gnu`).
pub fn has_component(listing: &str, name: &str) -> bool {
    listing.lines().map(str::trim).any(|line| {
        // Target-specific components carry the triple: `rust-std-x86_64-unknown-linux-gnu`.
        line == name
            || line
                .strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|triple| triple.contains("-unknown-"))
    })
}

fn ensure_bpf_linker(dry_run: bool) -> Result<()> {
    let (bin_dir, explicit_root) = install_bin_dir()?;
    let found = locate_tool(&bin_dir, explicit_root, "bpf-linker");
    let sysroot =
        PathBuf::from(output(Command::new("rustup").args(["run", NIGHTLY, "rustc", "--print", "sysroot"]))?.trim());
    let lib_dir = sysroot.join("lib");
    let names = list_dir(&lib_dir)?;
    let llvm = LlvmLib::from_listing(&names)
        .with_context(|| format!("looking for the nightly toolchain's libLLVM in {}", lib_dir.display()))?;

    let mut force = false;
    if let Some(path) = &found {
        match linker_version(path) {
            Ok(version) if version == BPF_LINKER_VERSION => {
                note!("skip: {} reports bpf-linker {version}", path.display());
                match std::fs::read(path) {
                    Ok(bytes) if !contains(&bytes, llvm.file_name.as_bytes()) => note!(
                        "note: {} does not reference {} (built against another LLVM?); \
                         remove it and rerun setup if eBPF linking fails",
                        path.display(),
                        llvm.file_name
                    ),
                    _ => {}
                }
                if let Some(dir) = path.parent() {
                    util::prepend_path(dir)?;
                }
                return Ok(());
            }
            Ok(version) => note!("{} reports bpf-linker {version}; want {BPF_LINKER_VERSION}", path.display()),
            Err(err) => note!("{} is unusable ({err:#}); reinstalling", path.display()),
        }
        force = true;
    }

    let prefix = cache_root()?.join(format!("llvm-{}", llvm.file_name));
    let target = lib_dir.join(&llvm.file_name);
    if dry_run {
        note!("would link {}/lib/{{libLLVM.so,{}}} -> {}", prefix.display(), llvm.file_name, target.display());
    } else {
        link_llvm(&prefix, &llvm.file_name, &target)?;
    }
    let mut cmd = install_command(&prefix, llvm.major, force);
    act(dry_run, &format!("installing bpf-linker {BPF_LINKER_VERSION} against {}", llvm.file_name), &mut cmd)?;
    if dry_run {
        return Ok(());
    }
    let installed = bin_dir.join("bpf-linker");
    let version = linker_version(&installed).context("the freshly installed bpf-linker does not run")?;
    if version != BPF_LINKER_VERSION {
        bail!("installed bpf-linker reports {version}, expected {BPF_LINKER_VERSION}");
    }
    note!("installed {} ({version})", installed.display());
    util::prepend_path(&bin_dir)
}

/// cargo-fuzz CARGO_FUZZ_VERSION (`cargo fuzz`), installed with `cargo install` when missing
/// or of another version.
pub fn ensure_cargo_fuzz(dry_run: bool) -> Result<()> {
    ensure_cargo_tool(dry_run, "cargo-fuzz", CARGO_FUZZ_VERSION)
}

/// A cargo subcommand crate (`cargo-fuzz`, `cargo-deb`) at exactly `version`, installed with
/// `cargo install --locked` when missing or of another version (cached in ~/.cargo/bin).
fn ensure_cargo_tool(dry_run: bool, tool: &str, version: &str) -> Result<()> {
    let (bin_dir, explicit_root) = install_bin_dir()?;
    let mut force = false;
    if let Some(path) = locate_tool(&bin_dir, explicit_root, tool) {
        match tool_version(&path, tool) {
            Ok(found) if found == version => {
                note!("skip: {} reports {tool} {found}", path.display());
                if let Some(dir) = path.parent() {
                    util::prepend_path(dir)?;
                }
                return Ok(());
            }
            Ok(found) => note!("{} reports {tool} {found}; want {version}", path.display()),
            Err(err) => note!("{} is unusable ({err:#}); reinstalling", path.display()),
        }
        force = true;
    }
    let mut cmd = cargo_tool_install_command(tool, version, force);
    act(dry_run, &format!("installing {tool} {version}"), &mut cmd)?;
    if dry_run {
        return Ok(());
    }
    let installed = bin_dir.join(tool);
    let found = tool_version(&installed, tool).with_context(|| format!("the freshly installed {tool} does not run"))?;
    if found != version {
        bail!("installed {tool} reports {found}, expected {version}");
    }
    note!("installed {} ({found})", installed.display());
    util::prepend_path(&bin_dir)
}

pub fn cargo_tool_install_command(tool: &str, version: &str, force: bool) -> Command {
    let mut cmd = Command::new(cargo());
    cmd.args(["install", tool, "--locked", "--version", version]);
    if force {
        cmd.arg("--force");
    }
    cmd
}

/// The nightly toolchain rustup has installed, for what only nightly builds (libFuzzer's
/// sanitizer flags): `nightly` itself (what setup installs) when listed, else the newest dated one.
pub fn installed_nightly() -> Result<String> {
    let listing = output(Command::new("rustup").args(["toolchain", "list"]))?;
    pick_nightly(&listing).with_context(|| {
        format!(
            "rustup lists no nightly toolchain ({}); `cargo xtask setup` installs one",
            listing.lines().map(str::trim).collect::<Vec<_>>().join(", ")
        )
    })
}

/// From `rustup toolchain list` output (`nightly-x86_64-unknown-linux-gnu (active)`,
/// `nightly-2026-05-01-x86_64-unknown-linux-gnu`): the undated nightly, else the newest dated.
pub fn pick_nightly(listing: &str) -> Option<String> {
    let nightlies: Vec<&str> = listing
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name == NIGHTLY || name.starts_with("nightly-"))
        .collect();
    let undated =
        |name: &str| name.strip_prefix("nightly-").is_none_or(|rest| !rest.starts_with(|c: char| c.is_ascii_digit()));
    nightlies.iter().find(|name| undated(name)).or_else(|| nightlies.iter().max()).map(|name| name.to_string())
}

/// The directory `cargo install` puts binaries in, and whether it was set explicitly
/// (CARGO_INSTALL_ROOT), in which case only that directory counts as "installed".
fn install_bin_dir() -> Result<(PathBuf, bool)> {
    if let Some(root) = std::env::var_os("CARGO_INSTALL_ROOT").filter(|r| !r.is_empty()) {
        return Ok((PathBuf::from(root).join("bin"), true));
    }
    let cargo_home = match std::env::var_os("CARGO_HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home),
        None => home_dir()?.join(".cargo"),
    };
    Ok((cargo_home.join("bin"), false))
}

fn locate_tool(bin_dir: &Path, explicit_root: bool, name: &str) -> Option<PathBuf> {
    let in_root = bin_dir.join(name);
    if explicit_root {
        return util::is_executable(&in_root).then_some(in_root);
    }
    util::find_in_path(name).or_else(|| util::is_executable(&in_root).then_some(in_root))
}

/// `bpf-linker --version` prints `bpf-linker 0.13.0`.
fn linker_version(path: &Path) -> Result<String> {
    tool_version(path, "bpf-linker")
}

/// `TOOL --version` prints `TOOL VERSION` (`cargo-fuzz 0.13.2`).
fn tool_version(path: &Path, tool: &str) -> Result<String> {
    let out = output(Command::new(path).arg("--version"))?;
    parse_tool_version(&out, tool).with_context(|| format!("unexpected `{tool} --version` output: {out:?}"))
}

pub fn parse_tool_version(out: &str, tool: &str) -> Option<String> {
    let mut words = out.split_whitespace();
    (words.next()? == tool).then(|| words.next().map(str::to_string))?
}

pub fn install_command(prefix: &Path, llvm_major: u32, force: bool) -> Command {
    let mut cmd = Command::new(cargo());
    cmd.env("LLVM_PREFIX", prefix)
        .args(["install", "bpf-linker", "--locked", "--version", BPF_LINKER_VERSION])
        .args(["--no-default-features", "--features"])
        .arg(format!("llvm-{llvm_major}"));
    if force {
        cmd.arg("--force");
    }
    cmd
}

/// The nightly toolchain's libLLVM, as found in its sysroot's lib directory.
#[derive(Debug, PartialEq, Eq)]
pub struct LlvmLib {
    /// e.g. `libLLVM.so.22.1-rust-1.97.0-nightly`
    pub file_name: String,
    /// e.g. 22, for bpf-linker's `llvm-22` feature
    pub major: u32,
}

impl LlvmLib {
    /// Picks the single `libLLVM.so.<major>...` entry of a sysroot lib listing.
    pub fn from_listing(names: &[String]) -> Result<Self> {
        let mut found: Vec<Self> = names
            .iter()
            .filter_map(|name| {
                let rest = name.strip_prefix("libLLVM.so.")?;
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                let major = digits.parse().ok()?;
                Some(Self { file_name: name.clone(), major })
            })
            .collect();
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => bail!(
                "no libLLVM.so.<version> file (entries: {}); is the nightly toolchain complete?",
                names.join(", ")
            ),
            _ => bail!(
                "several libLLVM.so.<version> files, cannot choose: {}",
                found.iter().map(|l| l.file_name.as_str()).collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

fn list_dir(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Makes `prefix/lib/{libLLVM.so, file_name}` symlinks to `target` (replacing stale ones).
fn link_llvm(prefix: &Path, file_name: &str, target: &Path) -> Result<()> {
    let lib = prefix.join("lib");
    std::fs::create_dir_all(&lib).with_context(|| format!("cannot create {}", lib.display()))?;
    for name in ["libLLVM.so", file_name] {
        let link = lib.join(name);
        match std::fs::read_link(&link) {
            Ok(existing) if existing == target => continue,
            Ok(_) => std::fs::remove_file(&link).with_context(|| format!("cannot replace {}", link.display()))?,
            Err(_) if link.symlink_metadata().is_ok() => {
                std::fs::remove_file(&link).with_context(|| format!("cannot replace {}", link.display()))?;
            }
            Err(_) => {}
        }
        std::os::unix::fs::symlink(target, &link)
            .with_context(|| format!("cannot link {} -> {}", link.display(), target.display()))?;
        note!("linked {} -> {}", link.display(), target.display());
    }
    Ok(())
}

/// `$XDG_CACHE_HOME/guard` or `$HOME/.cache/guard`.
fn cache_root() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => home_dir()?.join(".cache"),
    };
    Ok(base.join("guard"))
}

fn home_dir() -> Result<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .context("HOME is not set (needed for ~/.cargo and ~/.cache)")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn act(dry_run: bool, what: &str, cmd: &mut Command) -> Result<()> {
    if dry_run {
        note!("would run ({what}): {}", util::display(cmd));
        Ok(())
    } else {
        note!("{what}");
        util::run(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn llvm_lib_from_real_listing() {
        let lib = LlvmLib::from_listing(&names(&[
            "libLLVM-22-rust-1.97.0-nightly.so",
            "libLLVM.so.22.1-rust-1.97.0-nightly",
            "librustc_driver-b5a965480ee51f9a.so",
            "rustlib",
        ]))
        .unwrap();
        assert_eq!(lib, LlvmLib { file_name: "libLLVM.so.22.1-rust-1.97.0-nightly".into(), major: 22 });
    }

    #[test]
    fn llvm_lib_other_versions() {
        let lib = LlvmLib::from_listing(&names(&["libLLVM.so.19.1-rust-1.84.0-nightly"])).unwrap();
        assert_eq!(lib.major, 19);
        let lib = LlvmLib::from_listing(&names(&["libLLVM.so.23"])).unwrap();
        assert_eq!((lib.file_name.as_str(), lib.major), ("libLLVM.so.23", 23));
    }

    #[test]
    fn llvm_lib_missing_or_ambiguous() {
        assert!(LlvmLib::from_listing(&names(&["libLLVM-22-rust-1.97.0-nightly.so", "libLLVM.so"])).is_err());
        assert!(LlvmLib::from_listing(&names(&["libLLVM.so.22.1-a", "libLLVM.so.21.1-b"])).is_err());
        assert!(LlvmLib::from_listing(&names(&["libLLVM.so.x"])).is_err());
    }

    #[test]
    fn tool_version_parsing() {
        assert_eq!(parse_tool_version("bpf-linker 0.13.0\n", "bpf-linker").as_deref(), Some("0.13.0"));
        assert_eq!(parse_tool_version("bpf-linker 0.9.15", "bpf-linker").as_deref(), Some("0.9.15"));
        assert_eq!(parse_tool_version("something 0.13.0", "bpf-linker"), None);
        assert_eq!(parse_tool_version("", "bpf-linker"), None);
        assert_eq!(parse_tool_version("cargo-fuzz 0.13.2\n", "cargo-fuzz").as_deref(), Some("0.13.2"));
        assert_eq!(parse_tool_version("bpf-linker 0.13.0", "cargo-fuzz"), None);
    }

    #[test]
    fn nightly_choice() {
        let listing = "stable-x86_64-unknown-linux-gnu (active, default)\nnightly-x86_64-unknown-linux-gnu\n1.95.0-x86_64-unknown-linux-gnu\n";
        assert_eq!(pick_nightly(listing).as_deref(), Some("nightly-x86_64-unknown-linux-gnu"));
        let dated = "stable-x86_64-unknown-linux-gnu (default)\nnightly-2026-01-02-x86_64-unknown-linux-gnu\nnightly-2026-05-01-x86_64-unknown-linux-gnu (active)\n";
        assert_eq!(pick_nightly(dated).as_deref(), Some("nightly-2026-05-01-x86_64-unknown-linux-gnu"));
        let both = "nightly-2026-05-01-x86_64-unknown-linux-gnu\nnightly-x86_64-unknown-linux-gnu (active)\n";
        assert_eq!(pick_nightly(both).as_deref(), Some("nightly-x86_64-unknown-linux-gnu"));
        assert_eq!(pick_nightly("stable-x86_64-unknown-linux-gnu (default)\n"), None);
        assert_eq!(pick_nightly(""), None);
    }

    #[test]
    fn cargo_tool_install_shape() {
        let shown = util::display(&cargo_tool_install_command("cargo-fuzz", CARGO_FUZZ_VERSION, false));
        assert!(shown.ends_with("install cargo-fuzz --locked --version 0.13.2"), "{shown}");
        let forced = util::display(&cargo_tool_install_command("cargo-fuzz", CARGO_FUZZ_VERSION, true));
        assert!(forced.ends_with("0.13.2 --force"), "{forced}");
        let deb = util::display(&cargo_tool_install_command("cargo-deb", CARGO_DEB_VERSION, false));
        assert!(deb.ends_with("install cargo-deb --locked --version 3.8.0"), "{deb}");
        assert_eq!(parse_tool_version("cargo-deb 3.8.0\n", "cargo-deb").as_deref(), Some("3.8.0"));
    }

    #[test]
    fn component_listing() {
        let listing = "cargo-x86_64-unknown-linux-gnu\nrust-src\nrust-std-x86_64-unknown-linux-gnu\n";
        assert!(has_component(listing, "rust-src"));
        assert!(has_component(listing, "rust-std"));
        assert!(!has_component("rust-std-x86_64-unknown-linux-gnu\n", "rust-src"));
        assert!(!has_component("rust-src-extra\n", "rust-src"));
    }

    #[test]
    fn install_command_shape() {
        let cmd = install_command(Path::new("/cache/llvm-x"), 22, false);
        let shown = util::display(&cmd);
        assert!(shown.starts_with("LLVM_PREFIX=/cache/llvm-x "), "{shown}");
        assert!(
            shown.ends_with("install bpf-linker --locked --version 0.13.0 --no-default-features --features llvm-22"),
            "{shown}"
        );
        assert!(util::display(&install_command(Path::new("/p"), 21, true)).ends_with("llvm-21 --force"));
    }
}
