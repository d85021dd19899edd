//! The guard daemon as a child of the bench driver.

use std::{
    fmt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{cgroup, note, util};

pub struct Daemon {
    child: Option<Child>,
    bin: PathBuf,
    dir: PathBuf,
    audit: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    /// Session names used by the bench; their cgroups are removed after the daemon stopped.
    pub sessions: Vec<String>,
}

#[derive(Debug)]
pub enum ReadyVia {
    Status,
    AuditStart,
}

impl fmt::Display for ReadyVia {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReadyVia::Status => "`guard status`",
            ReadyVia::AuditStart => "the audit start record",
        })
    }
}

/// `guard status [--socket S]` exits 0 (within 5 s): a daemon is up.
pub fn status_ok(bin: &Path, socket: Option<&Path>) -> bool {
    let mut cmd = Command::new(bin);
    cmd.arg("status");
    if let Some(socket) = socket {
        cmd.arg("--socket").arg(socket);
    }
    let Ok(mut child) = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn() else {
        return false;
    };
    match util::wait_timeout(&mut child, Duration::from_secs(5)) {
        Ok(Some(status)) => status.success(),
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            false
        }
    }
}

/// `guard status --json --socket S`, parsed.
pub fn status_json(bin: &Path, socket: &Path) -> Result<serde_json::Value> {
    let out = Command::new(bin)
        .args(["status", "--json", "--socket"])
        .arg(socket)
        .stdin(Stdio::null())
        .output()
        .context("cannot run guard status")?;
    if !out.status.success() {
        bail!("guard status failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    serde_json::from_slice(&out.stdout).context("guard status --json printed no JSON")
}

/// A process's resident memory (VmRSS, kB).
pub fn rss_kb(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.trim_start_matches("VmRSS:").trim().trim_end_matches("kB").trim().parse().ok()
}

impl Daemon {
    /// The daemon's audit file.
    pub fn audit(&self) -> &Path {
        &self.audit
    }

    /// The daemon's private control socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Starts `guard run --audit <tmp file> --socket <tmp socket> [extra]`, output to a log
    /// file. The private socket keeps `guard status` talking to this daemon only.
    pub fn start(bin: &Path, extra: &[String]) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("guard-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let audit = dir.join("audit.jsonl");
        let log = dir.join("daemon.log");
        let socket = dir.join("control.sock");
        let log_file = std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let log_err = log_file.try_clone().context("cannot duplicate the log file handle")?;
        let mut cmd = Command::new(bin);
        cmd.arg("run").arg("--audit").arg(&audit).arg("--socket").arg(&socket).args(extra);
        let shown = util::display(&cmd);
        note!("$ {shown}");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .spawn()
            .with_context(|| format!("cannot start the guard daemon `{shown}`"))?;
        Ok(Self { child: Some(child), bin: bin.to_path_buf(), dir, audit, socket, log, sessions: Vec::new() })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Fails (with the daemon's log) if the daemon has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else { bail!("the guard daemon was already stopped") };
        if let Some(status) = child.try_wait().context("cannot wait for the guard daemon")? {
            self.child = None;
            bail!("the guard daemon exited ({status}); its output:\n{}", util::tail_of(&self.log, 4000));
        }
        Ok(())
    }

    /// Polls `guard status` and the audit file for a `"event":"start"` record.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<ReadyVia> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive().context("guard could not start")?;
            if let Some(sig) = util::pending_signal() {
                bail!("interrupted by signal {sig}");
            }
            if audit_has_start(&self.audit) {
                return Ok(ReadyVia::AuditStart);
            }
            if status_ok(&self.bin, Some(&self.socket)) {
                return Ok(ReadyVia::Status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "guard did not become ready within {} s (no `guard status` success, no start record in {}); its output:\n{}",
                    timeout.as_secs(),
                    self.audit.display(),
                    util::tail_of(&self.log, 4000)
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGTERM, then wait (30 s) for a clean exit; SIGKILL and fail otherwise.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Some(status) = child.try_wait().context("cannot wait for the guard daemon")? {
            bail!("the guard daemon had already exited ({status}); its output:\n{}", util::tail_of(&self.log, 4000));
        }
        let pid = i32::try_from(child.id()).context("daemon pid out of range")?;
        util::kill(pid, libc::SIGTERM);
        match util::wait_timeout(&mut child, Duration::from_secs(30))? {
            Some(status) if status.success() => {
                note!("guard daemon stopped ({status})");
                Ok(())
            }
            Some(status) => {
                note!(
                    "warning: guard daemon exited with {status} after SIGTERM; output:\n{}",
                    util::tail_of(&self.log, 2000)
                );
                Ok(())
            }
            None => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the guard daemon ignored SIGTERM for 30 s and was killed");
            }
        }
    }

    /// Removes the bench sessions' cgroups (`<cgroup2>/guard/<name>`).
    pub fn remove_sessions(&mut self) -> Result<()> {
        let mut first_err = None;
        for name in std::mem::take(&mut self.sessions) {
            let result = cgroup::session_dir(&name).and_then(|dir| cgroup::remove_tree(&dir));
            if let Err(err) = result {
                note!("warning: {err:#}");
                first_err.get_or_insert(err);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Err(err) = self.stop() {
            note!("warning: {err:#}");
        }
        let _ = self.remove_sessions();
        if std::env::var_os("GUARD_BENCH_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            note!("kept {}", self.dir.display());
        }
    }
}

/// Running `guard run` processes (pid, command line), found in /proc.
pub fn running_daemons() -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let argv: Vec<String> = raw
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            is_guard_daemon(&argv).then(|| (pid, argv.join(" ")))
        })
        .collect()
}

pub fn is_guard_daemon(argv: &[String]) -> bool {
    argv.len() >= 2 && Path::new(&argv[0]).file_name().is_some_and(|n| n == "guard") && argv[1] == "run"
}

fn audit_has_start(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|text| {
        text.lines().any(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .is_ok_and(|v| v.get("event").and_then(|e| e.as_str()) == Some("start"))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_command_lines() {
        let v = |s: &[&str]| s.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        assert!(is_guard_daemon(&v(&["/tmp/t/debug/guard", "run", "--audit", "-"])));
        assert!(is_guard_daemon(&v(&["guard", "run"])));
        assert!(!is_guard_daemon(&v(&["guard", "launch", "--", "run"])));
        assert!(!is_guard_daemon(&v(&["/usr/bin/guard-tests", "run"])));
        assert!(!is_guard_daemon(&v(&["guard"])));
    }

    #[test]
    fn audit_start_detection() {
        let dir = std::env::temp_dir().join(format!("xtask-audit-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a.jsonl");
        assert!(!audit_has_start(&file));
        std::fs::write(&file, "{\"seq\":1,\"event\":\"exec\"}\n").unwrap();
        assert!(!audit_has_start(&file));
        std::fs::write(&file, "{\"seq\":1,\"event\": \"start\",\"details\":{}}\npartial").unwrap();
        assert!(audit_has_start(&file));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
