//! The running daemon: kernel handle, policy, audit sink, and the engine that decides.
//!
//! `guard run` (cli/run.rs) builds it and drives it from one event loop; everything that
//! changes state (kernel events, control requests, timers, signals) goes through that loop.
//! The decisions are the engine's ([`guard_engine::engine::Engine`]); the daemon feeds it
//! events and carries out the actions it returns against the kernel and the processes
//! ([`host`]), and owns the audit stream ([`audit`]).

mod audit;
mod host;
mod lifecycle;
#[cfg(test)]
mod tests;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use guard_common::stat;
use guard_engine::{
    audit::{RecordLevel, Severity, Verdict},
    control::{Counters, Request, Response, StatusReport},
    engine::{Engine, Signal},
};

pub use host::Host;

use crate::{
    audit_sink::{AuditSink, Rotation},
    cgroup,
    control::{ControlHandler, PeerCred},
    kernel::{Kernel, handle::KernelHandle},
    policy_load::{self, LoadedPolicy},
};

/// How often credential files and allow-list hosts are looked up again.
pub const RESCAN_EVERY: Duration = Duration::from_secs(30);

/// How long a control client waits for the event loop to answer.
const CONTROL_REPLY_WAIT: Duration = Duration::from_secs(10);

/// A control request the event loop answers (it owns the holds and the kernel maps).
pub struct ControlCall {
    pub request: Request,
    pub peer: PeerCred,
    pub reply: std::sync::mpsc::SyncSender<Response>,
}

/// What the control socket sees: a status snapshot refreshed by the event loop, and a channel
/// into the loop for everything that changes state.
pub struct Shared {
    pub report: Mutex<StatusReport>,
    pub calls: tokio::sync::mpsc::UnboundedSender<ControlCall>,
}

impl ControlHandler for Shared {
    fn status(&self) -> StatusReport {
        self.report.lock().map(|r| r.clone()).unwrap_or_default()
    }

    fn handle(&self, request: Request, peer: &PeerCred) -> Response {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        if self.calls.send(ControlCall { request, peer: *peer, reply }).is_err() {
            return Response::error("the daemon is shutting down");
        }
        // A short blocking wait on a runtime worker (the multi-threaded runtime keeps others).
        tokio::task::block_in_place(|| answer.recv_timeout(CONTROL_REPLY_WAIT))
            .unwrap_or_else(|_| Response::error("the daemon did not answer in time"))
    }
}

pub fn now_unix_ns() -> i128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i128).unwrap_or(0)
}

/// CLOCK_MONOTONIC in ns: the clock of the kernel's `bpf_ktime_get_ns()`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub fn clock_base() -> guard_engine::records::ClockBase {
    guard_engine::records::ClockBase { realtime_ns: now_unix_ns(), monotonic_ns: i128::from(monotonic_ns()) }
}

fn now() -> guard_engine::engine::Now {
    guard_engine::engine::Now { mono_ns: monotonic_ns(), wall_ns: now_unix_ns() }
}

/// Mount a pseudo filesystem the kernel side needs when it is missing.
pub fn ensure_mounted(fstype: &str, target: &str) -> anyhow::Result<()> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    if mounts.lines().any(|l| l.split_whitespace().nth(1) == Some(target)) {
        return Ok(());
    }
    let c = |s: &str| std::ffi::CString::new(s).context("mount argument with NUL");
    let (src, tgt, ty) = (c("none")?, c(target)?, c(fstype)?);
    // SAFETY: valid C strings, no data argument.
    let rc = unsafe { libc::mount(src.as_ptr(), tgt.as_ptr(), ty.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("mounting {fstype} at {target}"));
    }
    Ok(())
}

pub struct Daemon<K: KernelHandle = Kernel> {
    /// Every decision: records, holds, trajectory, provenance, session marks.
    pub engine: Engine,
    /// Kernel, processes, file system, session cgroups: what the actions act on.
    pub host: Host<K>,
    pub policy: LoadedPolicy,
    pub policy_path: Option<PathBuf>,
    /// False when the global kill switch makes every rule monitor-only.
    pub enforce: bool,
    pub sink: AuditSink,
    pub shared: Arc<Shared>,
    pub started: Instant,
    pub base: StatusReport,
    pub audit_records: u64,
    pub last_dropped: u64,
    /// `guard stop` asked for a stop (keep the pins?).
    pub stop_requested: Option<bool>,
    /// Set while the audit file takes no writes (the sessions are frozen meanwhile).
    pub audit_down: Option<crate::audit_down::AuditDown>,
    /// The cgroup2 mount (to place a signal's sender).
    pub cgroup2_mount: PathBuf,
    /// `guard run --record`: wins over the policy's `audit.record`, across reloads.
    pub record_override: Option<RecordLevel>,
    /// Recent hold → released round trips (µs), for `guard status`.
    pub hold_release_us: std::collections::VecDeque<u64>,
    /// Identities of the audit files the kernel protects from sessions (the current file and
    /// its rotated predecessors), to follow rotations and reopens.
    pub protected_audit: Vec<guard_common::DevIno>,
    /// Session cgroups guard created that clean-up looks found empty, and since when
    /// ([`lifecycle`]).
    pub empty_sessions: std::collections::HashMap<u64, Instant>,
    /// What `--metrics` serves (updated whether or not it is served).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// `--audit syslog`, `--audit journald`: copies of every record the JSON stream takes.
    pub copies: Vec<crate::audit_fanout::Secondary>,
}

impl<K: KernelHandle> Daemon<K> {
    /// The record level in force: `guard run --record`, else the policy's.
    pub fn record_level(&self) -> RecordLevel {
        self.record_override.unwrap_or(self.policy.compiled.audit.record)
    }

    /// One ring-buffer record: the engine decides, the daemon carries it out.
    pub fn handle_event(&mut self, bytes: &[u8]) {
        let started = Instant::now();
        let actions = self.engine.on_event(bytes, &self.host.view());
        self.carry_out(actions);
        self.metrics.event_decision.observe(started.elapsed().as_secs_f64());
    }

    /// Once a second: holds past their timeout (or whose task is gone), chain windows.
    pub fn tick(&mut self) {
        let actions = self.engine.tick(&self.host.view());
        self.carry_out(actions);
    }

    /// Fail closed on shutdown: nothing held runs without a decision.
    pub fn abandon_holds(&mut self) {
        let actions = self.engine.abandon_holds(now());
        self.carry_out(actions);
    }

    /// A person's decision on a pending hold.
    fn decide(&mut self, id: u64, approve: bool, peer: &PeerCred) -> Response {
        let who = format!("uid {} (pid {})", peer.uid, peer.pid.map_or_else(|| "?".to_string(), |p| p.to_string()));
        let actions = match self.engine.decide(id, approve, &who, now()) {
            Ok(actions) => actions,
            Err(message) => return Response::error(message),
        };
        match self.carry_out(actions) {
            Some(Ok(message)) => Response::done(message),
            Some(Err(message)) => Response::error(message),
            None => Response::error(format!("hold {id}: nothing was decided")),
        }
    }

    /// One hold → judged → released round trip, in µs (the last 4096 are kept for status).
    fn note_hold_release(&mut self, micros: u64) {
        if self.hold_release_us.len() >= 4096 {
            self.hold_release_us.pop_front();
        }
        self.hold_release_us.push_back(micros);
    }

    /// Forget a held task in the kernel before it is continued or killed.
    fn unhold(&mut self, pid: u32) {
        if let Err(err) = self.host.kernel.unhold(pid) {
            log::error!("clearing the kernel hold of {pid}: {err:#}");
        }
    }

    /// Answer a control request from the event loop.
    pub fn control(&mut self, call: ControlCall) {
        let response = match call.request {
            Request::Status => Response::status(self.shared.status()),
            Request::Pending => Response::pending(self.engine.pending_holds(now())),
            Request::Approve { id } => self.decide(id, true, &call.peer),
            Request::Deny { id } => self.decide(id, false, &call.peer),
            Request::Stop { .. } if call.peer.uid != 0 => {
                Response::error(format!("permission denied: only root may stop guard (uid {})", call.peer.uid))
            }
            Request::Stop { keep_pins } => {
                self.stop_requested = Some(keep_pins);
                Response::done(if keep_pins {
                    format!("guard stops; programs and maps stay pinned in {}", self.host.kernel.pin_dir().display())
                } else {
                    "guard stops; programs detached".to_string()
                })
            }
            Request::Reopen if call.peer.uid != 0 => Response::error(format!(
                "permission denied: only root may reopen the audit file (uid {})",
                call.peer.uid
            )),
            Request::Reopen => {
                let by = format!(
                    "`guard reopen` by uid 0 (pid {})",
                    call.peer.pid.map_or_else(|| "?".to_string(), |pid| pid.to_string())
                );
                match self.reopen_audit("request", &by) {
                    Ok(message) => Response::done(message),
                    Err(message) => Response::error(message),
                }
            }
            Request::Record { .. } if call.peer.uid != 0 => Response::error(format!(
                "permission denied: only root may set a session's record level (uid {})",
                call.peer.uid
            )),
            Request::Record { .. } if call.peer.pid.is_some_and(|pid| self.sent_by_session(pid as u32)) => {
                Response::error("permission denied: a session cannot change a record level".to_string())
            }
            Request::Record { cgroup, level } => match self.set_session_record(Path::new(&cgroup), level) {
                Ok(message) => Response::done(message),
                Err(message) => Response::error(message),
            },
            Request::Confinement { cwd } => {
                Response::confinement(self.policy.compiled.session_confinement(cwd.as_deref(), self.enforce))
            }
        };
        // The client may have given up; nothing to do then.
        let _ = call.reply.send(response);
    }

    /// `guard launch --record`: the session cgroup's own level, in the kernel's SESSION_RECORD
    /// (the session id is the session cgroup's id, its directory's inode).
    fn set_session_record(&mut self, cgroup: &Path, level: RecordLevel) -> Result<String, String> {
        let Some(root) =
            self.host.sessions.roots().iter().find(|root| cgroup.parent() == Some(root.as_path())).cloned()
        else {
            return Err(format!(
                "{} is not a session cgroup of this daemon (a directory right below a root)",
                cgroup.display()
            ));
        };
        let id = self.host.sys.stat(cgroup).map_err(|err| format!("{}: {err}", cgroup.display()))?.ino;
        self.host
            .kernel
            .set_session_record(id, Some(level.into()))
            .map_err(|err| format!("setting the record level of {}: {err:#}", cgroup.display()))?;
        Ok(format!("session {} below {} records at level {}", cgroup.display(), root.display(), level.as_str()))
    }

    /// Was this signal sent by a session process? The kernel notes session senders before the
    /// signal leaves; a sender that is already gone is placed by its cgroup otherwise.
    pub fn sent_by_session(&mut self, pid: u32) -> bool {
        if self.host.kernel.signalled_by_session(pid) {
            return true;
        }
        let Some(relative) = self.host.procs.cgroup(pid) else { return false };
        let path = self.cgroup2_mount.join(relative.trim_start_matches('/'));
        self.host.sessions.roots().iter().any(|root| path.starts_with(root))
    }

    /// A session process signalled the daemon: nothing happens but this record.
    pub fn signal_ignored(&mut self, signal: i32, pid: u32) {
        let name = match signal {
            libc::SIGTERM => "SIGTERM",
            libc::SIGINT => "SIGINT",
            libc::SIGHUP => "SIGHUP",
            libc::SIGUSR1 => "SIGUSR1",
            _ => "a signal",
        };
        let mut record = self.engine.daemon_record(
            "signal_ignored",
            now_unix_ns(),
            format!("{name} from session process {pid} ignored: sessions do not stop, reload or reopen guard"),
        );
        record.pid = Some(pid);
        record.verdict = Some(Verdict::Deny);
        record.detector = Some(guard_common::Detector::SelfProtection);
        record.severity = Some(Severity::Critical);
        self.emit(&record);
    }

    /// This daemon adopted the pins of one that is gone: say how long no one was there and
    /// what the kernel did meanwhile, and end the holds nobody can decide any more.
    pub fn adopt(&mut self, previous: &guard_common::DaemonState, gap_ns: u64, retired: usize) {
        let now = self.host.kernel.stats().unwrap_or([0; stat::COUNT as usize]);
        let delta = |index: u32| now[index as usize].saturating_sub(previous.stats[index as usize]);
        let killed_no_daemon = delta(stat::KILLED_NO_DAEMON);
        let mut record = self.engine.daemon_record(
            "gap",
            now_unix_ns(),
            format!(
                "no daemon for {:.1} s (after pid {}): the kernel side went on enforcing: {} killed ({} held execs killed for want of a daemon), {} denied, {} refused, {} events queued, {} lost; {retired} earlier programs replaced",
                gap_ns as f64 / 1e9,
                previous.pid,
                delta(stat::KILLED),
                killed_no_daemon,
                delta(stat::DENIED),
                delta(stat::REFUSED),
                delta(stat::EVENTS_SENT),
                delta(stat::EVENTS_DROPPED),
            ),
        );
        record.details = Some(serde_json::json!({
            "no_daemon_secs": gap_ns as f64 / 1e9,
            "previous_pid": previous.pid,
            "killed": delta(stat::KILLED),
            "killed_no_daemon": killed_no_daemon,
            "denied": delta(stat::DENIED),
            "refused": delta(stat::REFUSED),
            "events": delta(stat::EVENTS_SENT),
            "dropped": delta(stat::EVENTS_DROPPED),
            "programs_replaced": retired,
            "pin_dir": self.host.kernel.pin_dir().display().to_string(),
        }));
        self.emit(&record);
        match self.host.kernel.held_tasks() {
            Ok(held) => {
                for (tgid, _) in held {
                    self.unhold(tgid);
                    let outcome = self.host.procs.signal(tgid, Signal::Kill);
                    let by = previous.pid;
                    let reason = match outcome {
                        Ok(()) => format!(
                            "pid {tgid} was held by guard pid {by}, which is gone: killed before it ran (fail closed)"
                        ),
                        Err(err) if err.raw_os_error() == Some(libc::ESRCH) => {
                            format!(
                                "pid {tgid} was held by guard pid {by}, which is gone; it had exited (killed from outside)"
                            )
                        }
                        Err(err) => format!(
                            "pid {tgid} was held by guard pid {by}, which is gone; it could not be killed: {err}"
                        ),
                    };
                    let mut record = self.engine.daemon_record("hold_abandoned", now_unix_ns(), reason);
                    record.pid = Some(tgid);
                    record.verdict = Some(Verdict::Kill);
                    record.detector = Some(guard_common::Detector::Destructive);
                    self.emit(&record);
                }
            }
            Err(err) => log::error!("reading the tasks an earlier daemon held: {err:#}"),
        }
    }

    /// SIGHUP: re-read the policy. An invalid one is refused and the running one stays in
    /// force, untouched. `rescan_only` re-resolves the current policy (new credential files,
    /// re-resolved hosts) without re-reading it.
    pub fn reload(&mut self, rescan_only: bool) {
        let path = if rescan_only { None } else { Some(self.policy_path.clone()) };
        let loaded = match path {
            None => policy_load::rescan(&self.policy),
            Some(path) => policy_load::load(path.as_deref(), self.policy.control_socket.as_deref().map(Path::new)),
        };
        let what = if rescan_only { "rescan" } else { "reload" };
        let policy = match loaded {
            Ok(policy) => policy,
            Err(err) => {
                self.metrics.policy_reload(what, false);
                let record = self.engine.daemon_record(
                    &format!("policy_{what}_failed"),
                    now_unix_ns(),
                    format!("policy {what} refused, the running policy stays in force: {err:#}"),
                );
                self.emit(&record);
                return;
            }
        };
        let mut config = policy.kernel_config(std::process::id());
        config.enforce = u32::from(self.enforce);
        // The tier was chosen at start; a reload must not turn the lsm tier's flag off.
        config.lsm = self.host.kernel.config().map_or(0, |current| current.lsm);
        config.record_level =
            guard_common::RecordLevel::from(self.record_override.unwrap_or(policy.compiled.audit.record)) as u32;
        // Learned credential inodes follow their rule by id into the new rule table.
        let old_rules = &self.policy.compiled.rules;
        let new_rules = &policy.compiled.rules;
        let remap = |old: guard_common::RuleRef| {
            let id = &old_rules.get(old.rule as usize)?.id;
            let (index, rule) = new_rules.iter().enumerate().find(|(_, r)| &r.id == id)?;
            Some(guard_common::RuleRef { rule: index as u32, mode: rule.mode.kernel_value(), ..old })
        };
        let kernel = &mut self.host.kernel;
        let applied = kernel
            .write_policy(&policy.maps, &remap)
            .and_then(|()| kernel.set_seccomp_kill(&policy.compiled.confinement.seccomp_syscalls()))
            .and_then(|()| kernel.set_config(&config));
        if let Err(err) = applied {
            self.metrics.policy_reload(what, false);
            let record = self.engine.daemon_record(
                &format!("policy_{what}_failed"),
                now_unix_ns(),
                format!("writing the {what}ed policy into the kernel failed: {err:#}"),
            );
            self.emit(&record);
            return;
        }
        if !rescan_only {
            let mut record = self.engine.daemon_record(
                "policy_reload",
                now_unix_ns(),
                format!(
                    "policy {} reloaded ({} rules, {} credential files)",
                    policy.source,
                    policy.compiled.rules.len(),
                    policy.maps.cred_inodes.len()
                ),
            );
            let record_level = self.record_override.unwrap_or(policy.compiled.audit.record);
            record.details = Some(serde_json::json!({
                "notes": policy.notes,
                "audit": policy.compiled.audit,
                "record": record_level,
            }));
            self.emit(&record);
        }
        self.metrics.policy_reload(what, true);
        // New rotation settings apply from the next record.
        self.sink.set_rotation(Rotation::from(policy.compiled.audit));
        self.engine.apply_policy(policy.engine_policy());
        self.base.policy_source = policy.source.clone();
        self.policy = policy;
    }

    /// The resolver task saw a host's address set change, or a lookup fail: record it, and
    /// rewrite the kernel's allow map through the rescan path when the set changed.
    pub fn dns_event(&mut self, event: crate::dns::DnsEvent) {
        use crate::dns::DnsEvent;
        let changes_map = event.changes_map();
        let record = match &event {
            DnsEvent::Changed { host, added, removed, retiring, ttl_secs } => {
                let mut record = self.engine.daemon_record(
                    "dns_change",
                    now_unix_ns(),
                    format!(
                        "allow-list host {host}: added {added:?}, removed {removed:?}, in grace {retiring:?} (ttl {ttl_secs} s)"
                    ),
                );
                record.details = Some(serde_json::json!({
                    "host": host, "added": added, "removed": removed, "retiring": retiring, "ttl": ttl_secs,
                }));
                record
            }
            DnsEvent::Failed { host, error, kept } => {
                let mut record = self.engine.daemon_record(
                    "dns_failed",
                    now_unix_ns(),
                    format!("resolving allow-list host {host} failed ({error}); keeping {kept:?}"),
                );
                record.details = Some(serde_json::json!({ "host": host, "error": error, "kept": kept }));
                record
            }
        };
        self.emit(&record);
        if changes_map {
            self.reload(true);
        }
        self.refresh_status();
    }

    pub fn refresh_status(&mut self) {
        let stats = match self.host.kernel.stats() {
            Ok(s) => s,
            Err(err) => {
                log::warn!("reading kernel counters: {err:#}");
                return;
            }
        };
        match self.host.kernel.heartbeat(&stats) {
            Ok(()) => self.metrics.last_heartbeat_ns.store(monotonic_ns(), std::sync::atomic::Ordering::Relaxed),
            Err(err) => log::error!("writing the heartbeat: {err:#}"),
        }
        self.metrics.pending_holds.set(self.engine.pending_holds(now()).len() as i64);
        self.note_copy_changes();
        let dropped = stats[stat::EVENTS_DROPPED as usize];
        if dropped > self.last_dropped {
            let mut record = self.engine.daemon_record(
                "drops",
                now_unix_ns(),
                format!("{} kernel events lost (ring buffer full); {dropped} since start", dropped - self.last_dropped),
            );
            record.details =
                Some(serde_json::json!({ "dropped_total": dropped, "dropped_new": dropped - self.last_dropped }));
            self.emit(&record);
            self.last_dropped = dropped;
        }
        let sys = self.host.sys.as_ref();
        let mut sessions: Vec<guard_engine::control::SessionStatus> =
            self.host.sessions.list(sys).map(|list| list.iter().map(|s| s.to_status()).collect()).unwrap_or_default();
        // Live sessions first (a stable sort keeps the tree order within each group).
        sessions.sort_by_key(|session| session.processes == 0);
        for session in &mut sessions {
            session.confinement = cgroup::confinement(sys, Path::new(&session.path));
            session.trajectory = self.engine.session_trajectory(session.cgroup_id);
        }
        let mut report = self.base.clone();
        report.uptime_secs = self.started.elapsed().as_secs();
        report.audit_unwritable = self.audit_down.as_ref().map(|down| {
            format!(
                "since {:.0} s ({}): sessions frozen, {} records waiting in memory",
                down.since.elapsed().as_secs_f64(),
                down.error,
                down.backlog.len()
            )
        });
        report.sessions = sessions;
        report.audit_sinks = self.copies.iter().map(|copy| copy.status()).collect();
        report.dns_hosts = crate::dns::status();
        report.counters = Counters {
            events: stats[stat::EVENTS_SENT as usize],
            dropped,
            exec: stats[stat::EXEC as usize],
            open: stats[stat::OPEN as usize],
            connect: stats[stat::CONNECT as usize],
            sendmsg: stats[stat::SENDMSG as usize],
            fork: stats[stat::FORK as usize],
            exit: stats[stat::EXIT as usize],
            denied: stats[stat::DENIED as usize],
            killed: stats[stat::KILLED as usize],
            held: stats[stat::HELD as usize],
            audit_records: self.audit_records,
            open_unrecorded: stats[stat::OPEN_UNRECORDED as usize],
            hold_release_us: guard_engine::control::LatencySummary::of(self.hold_release_us.iter().copied()),
        };
        if let Ok(mut shared) = self.shared.report.lock() {
            *shared = report;
        }
    }
}
