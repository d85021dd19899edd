//! cgroup v2 helpers: where the hierarchy is mounted, and removing session cgroups.

use std::{
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use guard_daemon::mountinfo;

/// The cgroup2 mount point, from /proc/self/mountinfo (never hard-coded: it is
/// /sys/fs/cgroup on most hosts, /sys/fs/cgroup/unified on hybrid ones).
pub fn cgroup2_mount() -> Result<PathBuf> {
    let entries = mountinfo::read_self().context("finding the cgroup2 mount")?;
    mountinfo::cgroup2_mount(&entries)
        .map(Path::to_path_buf)
        .context("no cgroup2 file system is mounted (see /proc/self/mountinfo)")
}

/// Directory of guard session `name`: `<cgroup2 mount>/guard/<name>`.
pub fn session_dir(name: &str) -> Result<PathBuf> {
    Ok(cgroup2_mount()?.join("guard").join(name))
}

/// Removes a cgroup directory and its child cgroups. Left-over processes are killed first
/// (cgroup.kill); a missing directory is fine.
pub fn remove_tree(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if populated(dir) {
        // Best effort: cgroup.kill exists since Linux 5.14.
        let _ = std::fs::write(dir.join("cgroup.kill"), "1");
    }
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path())?;
        }
    }
    // The last processes may still be exiting: retry while the cgroup is busy.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(err) if Instant::now() < deadline && err.raw_os_error() == Some(libc::EBUSY) => {
                thread::sleep(Duration::from_millis(50));
            }
            Err(err) => bail!("cannot remove cgroup {}: {err}", dir.display()),
        }
    }
}

fn populated(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events"))
        .is_ok_and(|events| events.lines().any(|l| l.trim() == "populated 1"))
}

/// This process's cgroup v2 path, relative to the hierarchy root (`0::/path` line).
pub fn own_cgroup() -> String {
    std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("0::").map(str::to_string)))
        .unwrap_or_default()
}
