//! Initramfs images (gzip'd newc cpio): the fast stage's whole guest (busybox, the static
//! binaries, the shell cases of tests/vm), and the full stage's boot stub (busybox, the disk
//! modules, `tests/vm/boot-init.sh`), which mounts the Debian root disk and switches to it.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result};

use super::{build::Binaries, kernel::Kernel};
use crate::{note, util};

/// The fast stage's initramfs in `stage`.
pub fn build_fast(stage: &Path, bins: &Binaries) -> Result<PathBuf> {
    let root = busybox_tree(stage, &["usr/local/bin", "etc", "root", "tmp", "run", "var/log/guard", "vm/cases"])?;
    // The binaries under test, without debug info (a smaller image boots faster).
    copy_stripped(&bins.guard, &root.join("usr/local/bin/guard"))?;
    copy_stripped(&bins.actor, &root.join("usr/local/bin/guard-actor"))?;
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
    pack(&root, &stage.join("initramfs.cpio.gz"))
}

/// The full stage's boot stub for one kernel: busybox, that kernel's disk modules
/// (`/modules/order`) and `/init` (tests/vm/boot-init.sh), which mounts the root disk (vda) and
/// the build-tree disk (vdb) and switches to the root disk's tests/vm/guest-init.sh.
pub fn build_boot(stage: &Path, kernel: &Kernel) -> Result<PathBuf> {
    let root = busybox_tree(stage, &["modules", "newroot"])?;
    let order = fs::read_to_string(kernel.modules.join("order"))
        .with_context(|| format!("cannot read {} (kernel cache)", kernel.modules.join("order").display()))?;
    for module in order.lines().filter(|l| !l.is_empty()) {
        fs::copy(kernel.modules.join(module), root.join("modules").join(module))
            .with_context(|| format!("copying module {module}"))?;
    }
    fs::write(root.join("modules/order"), order)?;
    install_script(&crate::workspace_root().join("tests/vm/boot-init.sh"), &root.join("init"))?;
    pack(&root, &stage.join("boot.cpio.gz"))
}

/// A fresh `stage/root` holding busybox with its applets, /dev/console and `dirs`.
fn busybox_tree(stage: &Path, dirs: &[&str]) -> Result<PathBuf> {
    let _ = fs::remove_dir_all(stage);
    let root = stage.join("root");
    for dir in ["bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev"].iter().chain(dirs) {
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
    // /dev/console: without it the kernel starts /init with no stdio (the scripts cope, late).
    let console = root.join("dev/console");
    let c = std::ffi::CString::new(console.as_os_str().as_encoded_bytes()).context("console path")?;
    // SAFETY: valid C string; mknod has no other preconditions.
    if unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(5, 1)) } != 0 {
        note!(
            "warning: cannot create /dev/console in the initramfs ({}): early guest output is lost",
            std::io::Error::last_os_error()
        );
    }
    Ok(root)
}

/// gzip'd newc cpio of `root`, owned by root, in a stable order.
fn pack(root: &Path, image: &Path) -> Result<PathBuf> {
    let script = "set -o pipefail; cd \"$1\" && find . -print0 | LC_ALL=C sort -z | cpio --null --create --format=newc --owner=0:0 --quiet | gzip -1 > \"$2\"";
    util::run(Command::new("bash").args(["-c", script, "pack"]).arg(root).arg(image))?;
    Ok(image.to_path_buf())
}

/// A binary without its debug info (smaller images boot and copy faster), else a plain copy.
pub fn copy_stripped(bin: &Path, dest: &Path) -> Result<()> {
    let stripped = util::find_in_path("strip").is_some()
        && Command::new("strip").arg("--strip-debug").arg("-o").arg(dest).arg(bin).status().is_ok_and(|s| s.success());
    if !stripped {
        fs::copy(bin, dest).with_context(|| format!("copying {}", bin.display()))?;
    }
    Ok(())
}

pub fn install_script(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o755))?;
    Ok(())
}
