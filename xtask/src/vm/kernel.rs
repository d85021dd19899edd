//! Guest kernels: the newest Debian cloud kernel of each series, downloaded with apt and
//! cached by package and version in `~/.cache/guard/kernels/<package>_<version>/`: vmlinuz,
//! config, and the modules the full stage's boot initramfs loads (virtio block disks), with
//! their dependencies, decompressed, in load order (`modules/order`).

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use super::{NEEDED_CONFIG, RemoveOnDrop, cache_root};
use crate::{note, util};

/// Bumped when the cache layout changes (v2: modules/).
const CACHE_MARK: &str = ".complete-v2";
/// Modules the full stage needs to mount its virtio disks (built in on some kernels).
const BOOT_MODULES: &[&str] = &["virtio_pci", "virtio_blk"];

/// A kernel series we boot.
#[derive(Clone, Copy, Debug)]
pub struct Series {
    pub label: &'static str,
    /// apt-cache search pattern.
    pattern: &'static str,
    /// What follows `linux-image-` in a concrete (non-meta) package of the series.
    version_prefix: &'static str,
}

pub const SERIES: &[Series] = &[
    Series { label: "6.12", pattern: r"^linux-image-6\.12\..*cloud-amd64$", version_prefix: "6.12." },
    Series { label: "6.1", pattern: r"^linux-image-6\.1\..*cloud-amd64$", version_prefix: "6.1." },
];

pub struct Kernel {
    pub label: &'static str,
    pub package: String,
    pub vmlinuz: PathBuf,
    /// Decompressed modules and their load order (`order`, one file name per line).
    pub modules: PathBuf,
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

pub fn fetch(series: &Series) -> Result<Kernel> {
    match fetch_once(series, false) {
        // Stale lists can name a package the mirror no longer has: refresh them once.
        Err(err) if util::is_root() && format!("{err:#}").contains("apt-get download") => {
            note!("{err:#}: running apt-get update and trying again");
            util::run(Command::new("apt-get").arg("update"))?;
            fetch_once(series, true)
        }
        other => other,
    }
}

fn cached(series: &Series, package: String, dir: &Path) -> Kernel {
    Kernel { label: series.label, package, vmlinuz: dir.join("vmlinuz"), modules: dir.join("modules") }
}

fn fetch_once(series: &Series, refreshed: bool) -> Result<Kernel> {
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
    if dir.join(CACHE_MARK).exists() && dir.join("vmlinuz").exists() {
        note!("skip: kernel {package} {version} is cached in {}", dir.display());
        check_config(&dir.join("config"), &package)?;
        return Ok(cached(series, package, &dir));
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
    fs::copy(&image, dir.join("vmlinuz")).with_context(|| format!("copying {}", image.display()))?;
    fs::copy(&config, dir.join("config")).with_context(|| format!("copying {}", config.display()))?;
    fs::write(dir.join("package"), format!("{package} {version}\n"))?;
    check_config(&dir.join("config"), &package)?;
    extract_modules(&root, &dir.join("modules"), BOOT_MODULES).with_context(|| format!("modules of {package}"))?;
    fs::write(dir.join(CACHE_MARK), b"")?;
    note!(
        "cached {} and its boot modules in {}",
        image.file_name().unwrap_or_default().to_string_lossy(),
        dir.display()
    );
    Ok(cached(series, package, &dir))
}

fn newest_cached(kernels: &Path, series: &Series) -> Result<Option<Kernel>> {
    let Ok(entries) = fs::read_dir(kernels) else { return Ok(None) };
    let best = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(CACHE_MARK).exists() && p.join("vmlinuz").exists())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            let package = name.split('_').next()?.to_string();
            pick_package(series, &package).map(|_| (version_key(&name), package, p))
        })
        .max_by(|a, b| a.0.cmp(&b.0));
    Ok(best.map(|(_, package, dir)| cached(series, package, &dir)))
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

// ---- modules ---------------------------------------------------------------------------------

/// Module name as the kernel spells it (`virtio-blk.ko.xz` -> `virtio_blk`).
fn module_name(file: &str) -> Option<String> {
    let stem = file.split(".ko").next().filter(|_| file.contains(".ko"))?;
    Some(stem.replace('-', "_"))
}

/// The `depends=` field of a module's .modinfo section (NUL-separated `key=value` strings).
fn modinfo_depends(image: &[u8]) -> Vec<String> {
    image
        .split(|b| *b == 0)
        .find_map(|field| field.strip_prefix(b"depends="))
        .map(|deps| {
            String::from_utf8_lossy(deps)
                .split(',')
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Decompressed bytes of a module file (`.ko`, `.ko.xz`, `.ko.zst`).
fn read_module(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        Some("xz")
    } else if name.ends_with(".zst") {
        Some("zstd")
    } else {
        None
    };
    match tool {
        None => fs::read(path).with_context(|| format!("cannot read {}", path.display())),
        Some(tool) => {
            let out = Command::new(tool)
                .arg("-dc")
                .arg(path)
                .output()
                .with_context(|| format!("cannot run {tool} -dc {}", path.display()))?;
            if !out.status.success() {
                bail!("{tool} -dc {}: {}", path.display(), out.status);
            }
            Ok(out.stdout)
        }
    }
}

/// Copies `wanted` and what they depend on out of an unpacked kernel package into `dest`,
/// decompressed, and writes `dest/order` (dependencies first). Modules the kernel has built
/// in (`modules.builtin`) are left out.
fn extract_modules(package_root: &Path, dest: &Path, wanted: &[&str]) -> Result<()> {
    let lib = package_root.join("lib/modules");
    let release = fs::read_dir(&lib)
        .with_context(|| format!("no lib/modules in {}", package_root.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.is_dir())
        .context("lib/modules has no release directory")?;
    let builtin: BTreeSet<String> = fs::read_to_string(release.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.rsplit('/').next().and_then(module_name))
        .collect();
    let mut files = BTreeMap::new();
    let mut stack = vec![release.join("kernel")];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(name) = path.file_name().and_then(|n| n.to_str()).and_then(module_name) {
                files.insert(name, path);
            }
        }
    }
    fs::create_dir_all(dest)?;
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    fn visit(
        name: &str,
        files: &BTreeMap<String, PathBuf>,
        builtin: &BTreeSet<String>,
        dest: &Path,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) -> Result<()> {
        if !seen.insert(name.to_string()) || builtin.contains(name) {
            return Ok(());
        }
        let Some(path) = files.get(name) else {
            bail!("module {name} is neither built in nor in the package");
        };
        let image = read_module(path)?;
        for dep in modinfo_depends(&image) {
            visit(&dep, files, builtin, dest, seen, order)?;
        }
        let file = format!("{name}.ko");
        fs::write(dest.join(&file), &image)?;
        order.push(file);
        Ok(())
    }
    for name in wanted {
        visit(name, &files, &builtin, dest, &mut seen, &mut order)?;
    }
    let mut text = order.join("\n");
    text.push('\n');
    fs::write(dest.join("order"), if order.is_empty() { String::new() } else { text })?;
    Ok(())
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
    fn module_names_and_dependencies() {
        assert_eq!(module_name("virtio-blk.ko.xz").as_deref(), Some("virtio_blk"));
        assert_eq!(module_name("virtio_pci.ko").as_deref(), Some("virtio_pci"));
        assert_eq!(module_name("modules.order"), None);
        let modinfo = b"\0license=GPL\0depends=virtio,virtio_ring\0intree=Y\0";
        assert_eq!(modinfo_depends(modinfo), vec!["virtio", "virtio_ring"]);
        assert!(modinfo_depends(b"\0depends=\0").is_empty());
    }
}
