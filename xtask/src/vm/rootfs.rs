//! The full stage's disks.
//!
//! - The **root disk**: a Debian root filesystem made by `mmdebstrap` from the host's apt
//!   sources (Debian's package registry, nothing else), turned into an ext4 image with
//!   `mkfs.ext4 -d` and cached in `~/.cache/guard/rootfs/<hash>/rootfs.img`, where the hash
//!   covers the suite, the package list and this recipe. qemu opens it with `snapshot=on`: the
//!   guest's writes go to a temporary overlay and the cached image never changes.
//! - The **build-tree disk**, made for each run: static `guard` and `guard-actor` (`bin/`),
//!   the integration-test binaries (`tests/`), the guest's init script and settings (`vm/`),
//!   for `vm-run` a copy of the caller's directory (`share/`), and an empty `out/` where the
//!   guest leaves what the host reads back. Mounted at `/guard` in the guest.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context, Result, bail};

use super::{RemoveOnDrop, build::Binaries, cache_root, initramfs};
use crate::{note, util};

/// What the guest holds besides the minbase variant. The first line is what the issue names;
/// the rest is what guard-tests' workload cases use (they skip, saying so, without them).
pub const PACKAGES: &[&str] = &[
    "python3",
    "bash",
    "coreutils",
    "git",
    "curl",
    "perl",
    "iproute2",
    "util-linux",
    "busybox",
    "procps",
    "python3-venv",
    "openssh-client",
    "openssh-server",
    "postgresql-client",
    "twine",
    "awscli",
    "nodejs",
    "npm",
    "kubernetes-client",
    "docker.io",
];

/// Paths left out of every package: documentation, manuals and translations (a smaller image).
const DPKG_EXCLUDES: &[&str] = &["/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*"];

/// Bump when the recipe below changes in a way the package list does not show.
const RECIPE: &str = "guard-rootfs-v1";

/// What the guest's init does with the build-tree disk.
pub enum Mode {
    /// Run the integration-test binaries in `tests/`.
    Suite { threads: u32, filter: Option<String> },
    /// Run `argv` as root in `share/` (mounted at `share_path`, the caller's own path, too).
    Run { argv: Vec<String>, share: PathBuf },
}

/// The host's Debian codename (`VERSION_CODENAME` in /etc/os-release): the guest's suite.
fn host_suite() -> Result<String> {
    let text = fs::read_to_string("/etc/os-release").context("cannot read /etc/os-release")?;
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
        .context("/etc/os-release has no VERSION_CODENAME (not Debian?)")
}

/// The cache key: the suite, the packages, the exclusions and the recipe.
fn cache_key(suite: &str) -> String {
    let mut hasher = blake3::Hasher::new();
    for part in [RECIPE, suite].iter().chain(PACKAGES).chain(DPKG_EXCLUDES) {
        hasher.update(part.as_bytes());
        hasher.update(b"\n");
    }
    hasher.finalize().to_hex()[..16].to_string()
}

/// The cached root disk, built first when missing.
pub fn ensure() -> Result<PathBuf> {
    let suite = host_suite()?;
    let dir = cache_root()?.join("rootfs").join(format!("{suite}-{}", cache_key(&suite)));
    let image = dir.join("rootfs.img");
    if dir.join(".complete").exists() && image.exists() {
        note!("skip: guest root filesystem cached in {}", image.display());
        return Ok(image);
    }
    if !util::is_root() {
        bail!("building the guest root filesystem (mmdebstrap) needs root");
    }
    let started = Instant::now();
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tree = dir.join(".tree");
    let _cleanup = RemoveOnDrop(tree.clone());
    note!("building the guest root filesystem ({suite}, {} packages) with mmdebstrap", PACKAGES.len());
    let mut cmd = Command::new("mmdebstrap");
    cmd.args(["--variant=minbase", "--mode=root", "--format=directory", "--quiet"])
        .arg(format!("--include={}", PACKAGES.join(",")));
    for path in DPKG_EXCLUDES {
        cmd.arg(format!("--dpkgopt=path-exclude={path}"));
    }
    // The guest's own identity and a mount point for the build-tree disk; no package lists
    // (the guest has no network to use them).
    cmd.arg("--customize-hook=mkdir -p \"$1/guard\" && echo guard-vm > \"$1/etc/hostname\"")
        .arg("--customize-hook=printf '127.0.0.1 localhost guard-vm\\n::1 localhost\\n' > \"$1/etc/hosts\"")
        .arg("--customize-hook=rm -rf \"$1\"/var/lib/apt/lists/* \"$1\"/var/cache/apt/*")
        // No mirror argument: mmdebstrap takes the host's apt sources.
        .arg(&suite)
        .arg(&tree);
    util::run(&mut cmd)?;
    let used_mb = dir_size_mb(&tree)?;
    // Room for what the tests write (into qemu's snapshot overlay) and ext4's own metadata.
    let size_mb = used_mb + used_mb / 3 + 1024;
    make_ext4(&tree, &image, size_mb, "guardroot")?;
    fs::write(dir.join("packages"), PACKAGES.join("\n") + "\n")?;
    fs::write(dir.join(".complete"), b"")?;
    note!(
        "guest root filesystem: {} ({used_mb} MB used of {size_mb} MB) in {:.0} s",
        image.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(image)
}

fn dir_size_mb(dir: &Path) -> Result<u64> {
    let out = util::output(Command::new("du").args(["-s", "-x", "--block-size=1M"]).arg(dir))?;
    out.split_whitespace().next().and_then(|n| n.parse().ok()).with_context(|| format!("du printed {out:?}"))
}

/// `mkfs.ext4 -d TREE IMAGE SIZE`: an ext4 image holding `tree`, without mounting anything.
fn make_ext4(tree: &Path, image: &Path, size_mb: u64, label: &str) -> Result<()> {
    let _ = fs::remove_file(image);
    let mut cmd = Command::new("mkfs.ext4");
    cmd.args(["-q", "-F", "-L", label, "-O", "^has_journal", "-E", "root_owner=0:0", "-d"])
        .arg(tree)
        .arg(image)
        .arg(format!("{size_mb}M"));
    util::run(&mut cmd)
}

/// Quotes one word for bash.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// Source directories the integration tests read (`guard_tests::source_path`).
const SOURCE_DIRS_FOR_TESTS: [&str; 2] = ["recipes", "deploy"];

/// The build-tree disk for one run, in `stage/work.img`.
pub fn work_disk(stage: &Path, bins: &Binaries, mode: &Mode) -> Result<PathBuf> {
    let _ = fs::remove_dir_all(stage);
    let tree = stage.join("tree");
    for dir in ["bin", "tests", "vm", "out", "src"] {
        fs::create_dir_all(tree.join(dir)).with_context(|| format!("cannot create {}", tree.join(dir).display()))?;
    }
    initramfs::copy_stripped(&bins.guard, &tree.join("bin/guard"))?;
    initramfs::copy_stripped(&bins.actor, &tree.join("bin/guard-actor"))?;
    initramfs::install_script(&crate::workspace_root().join("tests/vm/guest-init.sh"), &tree.join("vm/guest-init.sh"))?;
    let mut settings = String::from("# written by cargo xtask (vm/rootfs.rs); sourced by guest-init.sh\n");
    match mode {
        Mode::Suite { threads, filter } => {
            for (name, exe) in &bins.rust_tests {
                initramfs::copy_stripped(exe, &tree.join("tests").join(name))?;
            }
            // The source files the tests read (recipes, manifests), at $GUARD_SOURCE_DIR=/guard/src.
            for dir in SOURCE_DIRS_FOR_TESTS {
                let from = crate::workspace_root().join(dir);
                let status = Command::new("cp").arg("-a").arg(&from).arg(tree.join("src").join(dir)).status();
                if !status.as_ref().is_ok_and(|s| s.success()) {
                    bail!("copying {} into the build-tree disk failed ({status:?})", from.display());
                }
            }
            let names: Vec<&str> = bins.rust_tests.iter().map(|(n, _)| n.as_str()).collect();
            settings.push_str(&format!(
                "GUARDVM_MODE=suite\nGUARDVM_THREADS={threads}\nGUARDVM_FILTER={}\nGUARDVM_TESTS={}\n",
                quote(filter.as_deref().unwrap_or("")),
                quote(&names.join(" "))
            ));
        }
        Mode::Run { argv, share } => {
            let share = share.canonicalize().with_context(|| format!("cannot resolve {}", share.display()))?;
            let status = Command::new("cp").arg("-a").arg(share.join(".")).arg(tree.join("share")).status();
            if !status.as_ref().is_ok_and(|s| s.success()) {
                bail!("copying {} into the build-tree disk failed ({status:?})", share.display());
            }
            let words: Vec<String> = argv.iter().map(|w| quote(w)).collect();
            fs::write(tree.join("vm/cmd.sh"), format!("exec {}\n", words.join(" ")))?;
            settings.push_str(&format!("GUARDVM_MODE=run\nGUARDVM_SHARE_PATH={}\n", quote(&share.to_string_lossy())));
        }
    }
    fs::write(tree.join("vm/settings"), settings)?;
    let used_mb = dir_size_mb(&tree)?;
    let image = stage.join("work.img");
    make_ext4(&tree, &image, used_mb + used_mb / 4 + 512, "guardwork")?;
    let _ = fs::remove_dir_all(&tree);
    Ok(image)
}

/// Copies `path` (a file or directory of the build-tree disk) out of `image` into `dest`.
pub fn read_back(image: &Path, path: &str, dest: &Path) -> Result<()> {
    let request = if dest.is_dir() {
        format!("rdump {path} {}", dest.display())
    } else {
        format!("dump {path} {}", dest.display())
    };
    let out = Command::new("debugfs").arg("-R").arg(&request).arg(image).output().context("cannot run debugfs")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // debugfs exits 0 whatever happened; it names a missing file on stderr.
    if !out.status.success() || stderr.contains("File not found") || stderr.contains("not found by ext2_lookup") {
        bail!("debugfs -R '{request}' {}: {}", image.display(), stderr.trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_key_follows_the_suite_and_is_stable() {
        assert_eq!(cache_key("bookworm"), cache_key("bookworm"));
        assert_ne!(cache_key("bookworm"), cache_key("trixie"));
        assert_eq!(cache_key("bookworm").len(), 16);
    }

    #[test]
    fn quoting_for_bash() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
