//! The running daemon's state: kernel handle, policy, recorder, holds waiting for a person.
//!
//! `guard run` (cli/run.rs) builds it and drives it from one event loop; everything that
//! changes state (kernel events, control requests, timers, signals) goes through that loop.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use guard_common::{action, escalation, stat};
use guard_engine::{
    audit::{AuditRecord, RecordLevel, Severity, Verdict},
    consumer::{ExecFacts, Judgement},
    control::{Counters, PendingHold, Request, Response, StatusReport},
    destructive::{DestructiveEvaluator, ExecContext},
    event::{Body, KernelEvent, decode},
    policy::{ExecAction, Mode},
    provenance::{Origin, ProvenanceStore},
    records::{ClockBase, Enrichment, Recorder},
    trajectory::{ProcessKey, Significant, Trajectory},
};

use crate::{
    audit_sink::{AuditSink, Rotation},
    cgroup::{self, SessionIndex},
    control::{ControlHandler, PeerCred},
    hold::{self, Held},
    kernel::Kernel,
    policy_load::{self, LoadedPolicy},
    sys::RealSys,
};

/// Largest credential file the daemon reads to fingerprint its secrets.
const MAX_CREDENTIAL_FILE: u64 = 1 << 20;

/// A command held for a person.
pub struct PendingEntry {
    pub hold: PendingHold,
    pub severity: Option<Severity>,
    pub mitre: Option<String>,
    pub held: Held,
    pub since: Instant,
    pub timeout: Duration,
}

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

pub fn clock_base() -> ClockBase {
    ClockBase { realtime_ns: now_unix_ns(), monotonic_ns: i128::from(monotonic_ns()) }
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

fn read_proc_list(pid: u32, what: &str) -> Option<Vec<String>> {
    std::fs::read(format!("/proc/{pid}/{what}")).ok().map(|raw| hold::split_nul(&raw))
}

/// The machine as a held process sees it, for the consumer judgement.
struct HeldMachine {
    pid: u32,
}

impl HeldMachine {
    /// A path as the held process would resolve it (relative to its working directory).
    fn resolve_from_cwd(&self, path: &str) -> PathBuf {
        if path.starts_with('/') {
            PathBuf::from(path)
        } else {
            PathBuf::from(format!("/proc/{}/cwd", self.pid)).join(path)
        }
    }
}

impl guard_engine::consumer::Resolver for HeldMachine {
    /// The file a held interpreter's script argument names: identity and the real file's
    /// name (what the interpreter will open).
    fn script(&self, argument: &str) -> Option<(guard_common::DevIno, String)> {
        let real = std::fs::canonicalize(self.resolve_from_cwd(argument)).ok()?;
        let meta = std::fs::metadata(&real).ok()?;
        Some((crate::scan::identity(&meta), real.file_name()?.to_str()?.to_string()))
    }

    /// The directory and every parent are root's, and nobody else can replace what is in them
    /// (a sticky parent such as /tmp only lets the owner replace its entries).
    fn trusted_library_dir(&self, dir: &str) -> bool {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        let Ok(real) = std::fs::canonicalize(self.resolve_from_cwd(dir)) else { return false };
        real.ancestors().all(|path| {
            std::fs::metadata(path).is_ok_and(|meta| {
                let mode = meta.permissions().mode();
                meta.uid() == 0 && (mode & 0o022 == 0 || (path != real && mode & 0o1000 != 0))
            })
        })
    }
}

fn read_cwd(pid: u32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/cwd")).ok().map(|p| p.display().to_string())
}

pub struct Daemon {
    pub kernel: Kernel,
    pub policy: LoadedPolicy,
    pub policy_path: Option<PathBuf>,
    pub evaluator: DestructiveEvaluator,
    /// False when the global kill switch makes every rule monitor-only.
    pub enforce: bool,
    pub recorder: Recorder,
    pub sink: AuditSink,
    pub sessions: SessionIndex,
    pub shared: Arc<Shared>,
    pub started: Instant,
    pub base: StatusReport,
    pub audit_records: u64,
    pub last_dropped: u64,
    /// The session trajectory: chains of significant events across a session's processes.
    pub trajectory: Trajectory,
    /// Keyed fingerprints of secrets sessions read (never the values).
    pub provenance: ProvenanceStore,
    pub clock: ClockBase,
    /// Each session's workspace (its first process's working directory), when known.
    pub workspaces: std::collections::HashMap<u64, PathBuf>,
    /// Sessions already escalated after touching a credential.
    pub escalated: std::collections::HashSet<u64>,
    /// Sessions whose credentials were read by their own tools ("credential used by its
    /// tool"), with the consumers that did.
    pub consumer_use: std::collections::HashMap<u64, std::collections::BTreeSet<String>>,
    /// Sessions already announced (and their workspace registered).
    pub seen_sessions: std::collections::HashSet<u64>,
    /// Commands held for a person, by hold id.
    pub pending: BTreeMap<u64, PendingEntry>,
    /// `guard stop` asked for a stop (keep the pins?).
    pub stop_requested: Option<bool>,
    /// Set while the audit file takes no writes (the sessions are frozen meanwhile).
    pub audit_down: Option<crate::audit_down::AuditDown>,
    /// The cgroup2 mount (to place a signal's sender).
    pub cgroup2_mount: PathBuf,
    pub next_hold_id: u64,
    /// `guard run --record`: wins over the policy's `audit.record`, across reloads.
    pub record_override: Option<RecordLevel>,
    /// Recent hold → released round trips (µs), for `guard status`.
    pub hold_release_us: std::collections::VecDeque<u64>,
    /// Identities of the audit files the kernel protects from sessions (the current file and
    /// its rotated predecessors), to follow rotations and reopens.
    pub protected_audit: Vec<guard_common::DevIno>,
}

/// Rotated audit files the kernel protects besides the current one (its PROTECTED map is
/// small; the newest matter most).
const PROTECTED_ROTATED_FILES: usize = 16;

/// Which verdicts are on disk before the daemon goes on: what a session was refused, or held.
fn needs_sync(record: &AuditRecord) -> bool {
    matches!(record.verdict, Some(Verdict::Deny | Verdict::Kill | Verdict::Hold))
}

impl Daemon {
    pub fn emit(&mut self, record: &AuditRecord) {
        // No secret value ever reaches the audit stream: known secrets and known token
        // formats are redacted from argv and reasons.
        let mut redacted;
        let mut record = record;
        if record.argv.is_some() || record.reason.is_some() {
            redacted = record.clone();
            if let Some(argv) = &record.argv {
                redacted.argv = Some(self.provenance.redact_argv(argv));
            }
            if let Some(reason) = &record.reason {
                redacted.reason = Some(self.provenance.redact_text(reason));
            }
            record = &redacted;
        }
        self.audit_records += 1;
        if let Some(down) = &mut self.audit_down {
            down.keep(record.clone());
            return;
        }
        if let Err(err) = self.sink.write(record) {
            self.audit_failed(&err);
            if let Some(down) = &mut self.audit_down {
                down.keep(record.clone());
            }
            return;
        }
        // A refusal or a hold is on disk before the daemon acts on anything else, so a crash
        // cannot take the record of what it stopped. (The record was taken: a failure here
        // leaves it queued, and the sessions frozen until it is written.)
        if needs_sync(record)
            && let Err(err) = self.sink.sync()
        {
            self.audit_failed(&err);
        }
        self.follow_audit_file();
    }

    /// Flush the audit stream; a failure freezes the sessions until it takes writes again.
    pub fn flush_audit(&mut self) {
        if self.audit_down.is_some() {
            self.retry_audit();
        } else if let Err(err) = self.sink.flush() {
            self.audit_failed(&err);
        }
        self.follow_audit_file();
    }

    /// Flush when records have waited [`crate::audit_sink::FLUSH_EVERY`]: a long batch of
    /// kernel events must not keep them from readers.
    pub fn flush_audit_if_due(&mut self) {
        if self.sink.flush_due() {
            self.flush_audit();
        }
    }

    /// The record level in force: `guard run --record`, else the policy's.
    pub fn record_level(&self) -> RecordLevel {
        self.record_override.unwrap_or(self.policy.compiled.audit.record)
    }

    /// After a rotation or reopen the audit file is another inode: protect it (and the rotated
    /// ones still kept) from sessions, and forget the ones deleted.
    fn follow_audit_file(&mut self) {
        if self.sink.take_file_changed()
            && let Err(err) = self.protect_audit_files()
        {
            log::error!("{err:#}");
        }
    }

    /// No session may rewrite the audit trail: the kernel refuses their writes to these inodes.
    pub fn protect_audit_files(&mut self) -> anyhow::Result<()> {
        let files = self.sink.files();
        let wanted: Vec<guard_common::DevIno> = files
            .iter()
            .take(1 + PROTECTED_ROTATED_FILES)
            .filter_map(|path| std::fs::metadata(path).ok())
            .map(|meta| crate::scan::identity(&meta))
            .collect();
        let gone: Vec<guard_common::DevIno> =
            self.protected_audit.iter().filter(|id| !wanted.contains(id)).copied().collect();
        self.kernel
            .set_protected(&wanted)
            .and_then(|()| self.kernel.unprotect(&gone))
            .context("protecting the audit files from sessions")?;
        self.protected_audit = wanted;
        Ok(())
    }

    /// SIGUSR1 or `guard reopen`: open the audit path again (an external logrotate moved the
    /// file). The new file's first record says so; the chain goes on from the old file's last.
    /// `Err` says why not, for the caller to pass on (log line, control reply).
    pub fn reopen_audit(&mut self, reason: &str, by: &str) -> Result<String, String> {
        let path = match self.sink.reopen() {
            Ok(Some(path)) => path,
            Ok(None) => return Err("the audit stream goes to stdout: there is no file to reopen".to_string()),
            Err(err) => {
                return Err(format!("reopening the audit file ({by}) failed, records go on into the old one: {err:#}"));
            }
        };
        let message =
            format!("audit file {} reopened ({by}); the chain continues from the previous file", path.display());
        let mut record = self.recorder.daemon_record("audit_reopened", now_unix_ns(), message.clone());
        record.details = Some(serde_json::json!({ "path": path.display().to_string(), "reason": reason }));
        self.emit(&record);
        if self.audit_down.is_some() {
            self.retry_audit();
        } else if let Err(err) = self.sink.sync() {
            self.audit_failed(&err);
        }
        self.follow_audit_file();
        Ok(message)
    }

    /// The audit file took no write: freeze every governed cgroup, keep records in memory.
    fn audit_failed(&mut self, err: &std::io::Error) {
        if self.audit_down.is_some() {
            return;
        }
        log::error!("the audit stream takes no writes ({err}): freezing the sessions until it does");
        let mut frozen = Vec::new();
        for root in self.sessions.roots() {
            match crate::audit_down::set_frozen(root, true) {
                Ok(()) => frozen.push(root.clone()),
                Err(freeze_err) => log::error!("freezing {}: {freeze_err}", root.display()),
            }
        }
        self.audit_down = Some(crate::audit_down::AuditDown {
            since: Instant::now(),
            since_unix_ns: now_unix_ns(),
            error: err.to_string(),
            frozen,
            backlog: Default::default(),
            lost: 0,
        });
    }

    /// While the audit file is unwritable: try again; once everything kept is written, thaw.
    fn retry_audit(&mut self) {
        let Some(down) = &mut self.audit_down else { return };
        if self.sink.flush().is_err() {
            return;
        }
        while let Some(record) = down.backlog.front() {
            if self.sink.write(record).is_err() || self.sink.flush().is_err() {
                return;
            }
            down.backlog.pop_front();
        }
        // What waited includes refusals: on disk before the sessions move again.
        if self.sink.sync().is_err() {
            return;
        }
        let Some(down) = self.audit_down.take() else { return };
        let mut record = self.recorder.daemon_record(
            "audit_unwritable",
            now_unix_ns(),
            format!(
                "the audit stream took no writes for {:.1} s ({}); the sessions were frozen meanwhile and thawed now{}",
                down.since.elapsed().as_secs_f64(),
                down.error,
                if down.lost > 0 {
                    format!("; {} records did not fit in memory and are lost", down.lost)
                } else {
                    String::new()
                }
            ),
        );
        record.details = Some(serde_json::json!({
            "since": guard_engine::audit::format_ts(down.since_unix_ns),
            "secs": down.since.elapsed().as_secs_f64(),
            "error": down.error,
            "lost": down.lost,
            "frozen": down.frozen.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        }));
        self.emit(&record);
        if let Err(err) = self.sink.sync() {
            self.audit_failed(&err);
            return;
        }
        for root in &down.frozen {
            if let Err(err) = crate::audit_down::set_frozen(root, false) {
                log::error!("thawing {}: {err}", root.display());
            }
        }
    }

    pub fn handle_event(&mut self, bytes: &[u8]) {
        let event = match decode(bytes) {
            Ok(ev) => ev,
            Err(err) => {
                let record = self.recorder.daemon_record(
                    "decode_error",
                    now_unix_ns(),
                    format!("undecodable kernel event: {err}"),
                );
                self.emit(&record);
                return;
            }
        };
        if self.seen_sessions.insert(event.head.session_id) {
            self.first_sight(&event);
        }
        let extra = self.enrich(&event);
        let mut record = self.recorder.record(&event, extra);
        let mut held_env = None;
        if event.head.action == action::HOLD
            && let Body::Exec { filename, argv, file, .. } = &event.body
        {
            held_env = self.judge_held(&event, file, filename, argv, &mut record);
        }
        self.emit(&record);
        self.follow(&event, &record, held_env);
    }

    /// What a record means beyond itself: lineage and chains (trajectory), secrets read and
    /// secrets used (provenance).
    fn follow(&mut self, event: &KernelEvent, record: &AuditRecord, held_env: Option<Vec<(String, String)>>) {
        let process = ProcessKey { pid: event.head.tgid, start_ns: event.head.start_ns };
        if record.detector.as_deref() == Some("credential") {
            if let Some(consumer) = &record.consumer {
                // Its own tool read it: "credential used by its tool", no discovery.
                self.consumer_use.entry(event.head.session_id).or_default().insert(consumer.clone());
            } else if self.escalated.insert(event.head.session_id) {
                self.escalate(event, record);
            }
        }
        match &event.body {
            Body::Fork { child_tgid, child_start_ns, .. } => {
                self.trajectory.fork(process, ProcessKey { pid: *child_tgid, start_ns: *child_start_ns });
            }
            Body::Exit { .. } => self.trajectory.exit(process),
            Body::Open { path, file: Some(file), .. }
                if record.detector.as_deref() == Some("credential") && record.verdict == Some(Verdict::Audit) =>
            {
                self.learn_credential_file(event, record.seq, path, file);
            }
            Body::Exec { argv, .. } => {
                let argv = record.argv.clone().unwrap_or_else(|| argv.clone());
                let env = held_env.unwrap_or_default();
                let uses = self.provenance.check_exec(&argv, &env);
                for used in uses {
                    let origin = &used.origin;
                    let mut rec = AuditRecord {
                        ts: record.ts.clone(),
                        session: record.session.clone(),
                        cgroup_id: record.cgroup_id,
                        pid: record.pid,
                        ppid: record.ppid,
                        comm: record.comm.clone(),
                        exe: record.exe.clone(),
                        event: "provenance".into(),
                        verdict: Some(Verdict::Audit),
                        detector: Some("provenance".into()),
                        severity: Some(Severity::High),
                        mitre: Some("T1552.001".into()),
                        reason: Some(format!(
                            "secret {}from {} (read by pid {}, record {}) used by {} in {} [{}]",
                            origin.name.as_deref().map(|n| format!("{n} ")).unwrap_or_default(),
                            origin.file,
                            origin.reader_pid,
                            origin.record_seq,
                            record.exe.as_deref().unwrap_or("?"),
                            used.where_,
                            used.fingerprint_short,
                        )),
                        argv: Some(argv.clone()),
                        details: serde_json::to_value(&used).ok(),
                        ..Default::default()
                    };
                    self.recorder.stamp(&mut rec);
                    self.emit(&rec);
                }
                if !env.is_empty() || event.head.action == action::HOLD {
                    let origin = Origin {
                        file: format!("argv and environment of held pid {}", event.head.tgid),
                        reader_pid: event.head.tgid,
                        record_seq: record.seq,
                        session: event.head.session_id,
                        name: None,
                    };
                    self.provenance.learn_pairs(&env, &origin);
                    self.provenance.learn_argv(&argv, &origin);
                }
            }
            _ => {}
        }
        let ts_ns = self.clock.wall_ns(event.head.ktime_ns);
        if let Some(significant) = Significant::from_record(record, event.head.session_id, process, ts_ns) {
            for progress in self.trajectory.observe(significant) {
                let mut chain = progress.to_audit_record();
                self.recorder.stamp(&mut chain);
                self.emit(&chain);
            }
        }
    }

    /// A session touched a credential: the kernel already denies its out-of-scope network and
    /// holds its watched execs; the policy may go further (hold every exec, freeze the session).
    fn escalate(&mut self, event: &KernelEvent, record: &AuditRecord) {
        let wanted = self.policy.compiled.escalation;
        let mut done = Vec::new();
        if wanted.hold_all_exec {
            match self.kernel.set_escalation(event.head.session_id, escalation::FREEZE) {
                Ok(()) => done.push("every exec now waits for a person".to_string()),
                Err(err) => done.push(format!("holding every exec failed: {err:#}")),
            }
        }
        if wanted.freeze_session {
            let path = self.sessions.resolve(&RealSys, event.head.session_id).ok().flatten().map(|s| s.path.clone());
            let outcome = match path {
                Some(path) => std::fs::write(path.join("cgroup.freeze"), b"1")
                    .map(|()| format!("session frozen ({}/cgroup.freeze = 1; write 0 there to thaw)", path.display()))
                    .map_err(|err| format!("freezing {} failed: {err}", path.display())),
                None => Err("freezing failed: session cgroup not found".to_string()),
            };
            done.push(outcome.unwrap_or_else(|err| err));
        }
        let mut rec = self.recorder.daemon_record(
            "escalation",
            now_unix_ns(),
            format!(
                "session touched a credential (record {}): out-of-scope network denied and destructive commands held{}",
                record.seq,
                if done.is_empty() { String::new() } else { format!("; {}", done.join("; ")) }
            ),
        );
        rec.session = record.session.clone();
        rec.cgroup_id = Some(event.head.session_id);
        rec.pid = record.pid;
        rec.verdict = Some(Verdict::Audit);
        rec.detector = Some("escalation".into());
        rec.severity = Some(Severity::High);
        self.emit(&rec);
    }

    /// A session read a credential file (monitor mode): fingerprint its secrets. The file is
    /// re-opened by path and accepted only if it is the very inode the kernel reported.
    fn learn_credential_file(&mut self, event: &KernelEvent, seq: u64, path: &str, file: &guard_common::DevIno) {
        // A short-lived reader (`cat .env`) is often gone by now: its parent's working
        // directory and the session's workspace are the next best guesses for a relative
        // path. Only the very inode the kernel reported is accepted.
        let candidates: Vec<std::path::PathBuf> = if path.starts_with('/') {
            vec![std::path::PathBuf::from(path)]
        } else {
            [event.head.tgid, event.head.ppid]
                .iter()
                .filter_map(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).ok())
                .chain(self.workspaces.get(&event.head.session_id).cloned())
                .map(|dir| dir.join(path))
                .collect()
        };
        let Some((full, meta)) = candidates.into_iter().find_map(|candidate| {
            let meta = std::fs::metadata(&candidate).ok()?;
            (crate::scan::identity(&meta) == *file).then_some((candidate, meta))
        }) else {
            return;
        };
        if meta.len() > MAX_CREDENTIAL_FILE {
            return;
        }
        let Ok(text) = std::fs::read_to_string(&full) else { return };
        let origin = Origin {
            file: full.display().to_string(),
            reader_pid: event.head.tgid,
            record_seq: seq,
            session: event.head.session_id,
            name: None,
        };
        self.provenance.learn_file(&text, &origin);
    }

    /// Decide a held exec: read what it is about to run, apply the destructive rules, then
    /// release it, kill it, or keep it for a person. The record carries the verdict.
    /// Returns the held process's environment when it could be read (for provenance).
    fn judge_held(
        &mut self,
        event: &KernelEvent,
        file: &guard_common::DevIno,
        filename: &str,
        kernel_argv: &[String],
        record: &mut AuditRecord,
    ) -> Option<Vec<(String, String)>> {
        let pid = event.head.tgid;
        let started = Instant::now();
        let held = match Held::open(pid) {
            Ok(held) => held,
            Err(err) => {
                self.unhold(pid);
                record.verdict = Some(Verdict::Allow);
                record.reason = Some(format!("held exec of {filename} vanished before judgement: {err}"));
                return None;
            }
        };
        held.wait_stopped(hold::STOP_WAIT);
        let view = match held.view() {
            Ok(view) => view,
            Err(err) => {
                // Cannot see what it would run: fail closed.
                self.unhold(pid);
                let _ = held.kill();
                record.verdict = Some(Verdict::Kill);
                record.reason = Some(format!("held exec of {filename} could not be inspected ({err}); killed"));
                return None;
            }
        };
        let argv = if view.argv.is_empty() { kernel_argv.to_vec() } else { view.argv.clone() };
        let context = ExecContext {
            exe: filename.to_string(),
            argv: argv.clone(),
            cwd: view.cwd.clone().unwrap_or_default(),
            env: view.env.clone(),
        };
        let matched = self.evaluator.evaluate(&context);
        let waited = started.elapsed().as_micros();
        record.argv = Some(argv.clone());
        record.cwd = view.cwd.clone();
        if view.exe.is_some() {
            // What /proc says is executing (the interpreter for a `#!` script).
            record.exe = view.exe.clone();
        }
        let consumer_note = self.judge_consumer(pid, file, &argv, &view);
        let state = self.kernel.session_state(event.head.session_id).ok().flatten().unwrap_or_default();
        let escalated = state.credential_touched != 0 || state.escalation & escalation::HOLD_EXEC != 0;
        let frozen = state.escalation & escalation::FREEZE != 0;

        let Some(m) = matched else {
            if frozen && self.enforce {
                // (No "credential: ..." in the text: the redactor would take it for a secret.)
                record.detector = Some("escalation".into());
                record.rule = Some("escalation.freeze".into());
                let why = format!(
                    "every exec of this session waits for a person since it touched a credential (held {waited} µs so far)"
                );
                self.pend(event, held, filename, &argv, view.cwd.as_deref(), "escalation.freeze", why, record);
                return Some(view.env);
            }
            self.unhold(pid);
            let outcome = held.release();
            if outcome.is_ok() {
                // The kernel stamped the hold with CLOCK_MONOTONIC, as monotonic_ns() reads it.
                self.note_hold_release(monotonic_ns().saturating_sub(event.head.ktime_ns) / 1000);
            }
            record.verdict = Some(Verdict::Allow);
            record.detector = None;
            record.rule = None;
            record.severity = Some(Severity::Info);
            record.reason = Some(match outcome {
                Ok(()) => format!(
                    "exec of {filename} held {waited} µs for judgement: no destructive rule matched{consumer_note}"
                ),
                Err(err) => format!("exec of {filename} judged harmless but could not be released: {err}"),
            });
            return Some(view.env);
        };
        record.detector = Some("destructive".to_string());
        record.rule = Some(m.rule_id.clone());
        record.severity = Some(m.severity);
        record.mitre = Some(m.mitre.clone());
        let wants_person = m.action == ExecAction::Hold || escalated || frozen;
        if self.enforce && wants_person {
            let why = if m.action == ExecAction::Hold {
                format!("{}: `{}` needs a person's confirmation", m.reason, m.command)
            } else {
                format!(
                    "{}: `{}` held for a person because this session touched a credential (rule mode {})",
                    m.reason,
                    m.command,
                    m.mode.as_str()
                )
            };
            self.pend(event, held, filename, &argv, view.cwd.as_deref(), &m.rule_id, why, record);
            return Some(view.env);
        }
        self.unhold(pid);
        if m.mode == Mode::Enforce && self.enforce {
            let outcome = held.kill();
            record.verdict = Some(Verdict::Kill);
            record.reason = Some(match outcome {
                Ok(()) => format!("{}: `{}` killed before it ran (held {waited} µs)", m.reason, m.command),
                Err(err) => format!("{}: `{}` could not be killed: {err}", m.reason, m.command),
            });
        } else {
            let outcome = held.release();
            record.verdict = Some(Verdict::Audit);
            record.reason = Some(match outcome {
                Ok(()) => format!("{}: `{}` allowed to run (monitor)", m.reason, m.command),
                Err(err) => format!("{}: `{}` (monitor) could not be released: {err}", m.reason, m.command),
            });
        }
        Some(view.env)
    }

    /// Is the held image one of the policy's credential consumers? If so its grant goes into
    /// the kernel now, before the task is released. Returns a note for the exec record.
    fn judge_consumer(
        &mut self,
        pid: u32,
        file: &guard_common::DevIno,
        argv: &[String],
        view: &hold::HeldView,
    ) -> String {
        let facts = ExecFacts { file: *file, argv, env: &view.env };
        match self.policy.consumers.judge(&facts, &HeldMachine { pid }) {
            Judgement::NotWatched => String::new(),
            Judgement::Refused { consumer, why } => format!("; not the credential consumer {consumer}: {why}"),
            Judgement::Consumer { consumer, grant } => match self.kernel.grant_consumer(pid, &grant) {
                Ok(()) => {
                    let rules = self
                        .policy
                        .consumers
                        .consumer(grant.consumer)
                        .map(|c| c.rule_ids.join(", "))
                        .unwrap_or_default();
                    format!("; runs as {consumer}, the consumer of {rules}")
                }
                Err(err) => format!("; consumer {consumer} could not be granted: {err:#}"),
            },
        }
    }

    /// Keep a held command stopped until `guard approve`/`guard deny` or the timeout.
    #[allow(clippy::too_many_arguments)]
    fn pend(
        &mut self,
        event: &KernelEvent,
        held: Held,
        filename: &str,
        argv: &[String],
        cwd: Option<&str>,
        rule: &str,
        why: String,
        record: &mut AuditRecord,
    ) {
        self.next_hold_id += 1;
        let id = self.next_hold_id;
        let timeout = Duration::from_secs(self.policy.compiled.hold_timeout_secs);
        record.verdict = Some(Verdict::Hold);
        record.hold_id = Some(id);
        record.reason = Some(format!(
            "{why}; waiting for `guard approve {id}` or `guard deny {id}` (denied after {} s)",
            timeout.as_secs()
        ));
        let hold = PendingHold {
            id,
            session: record.session.clone().unwrap_or_default(),
            pid: event.head.tgid,
            exe: filename.to_string(),
            argv: self.provenance.redact_argv(argv),
            cwd: cwd.unwrap_or_default().to_string(),
            rule: rule.to_string(),
            why,
            age_secs: 0,
            timeout_in_secs: timeout.as_secs(),
            seq: record.seq,
        };
        let (severity, mitre) = (record.severity, record.mitre.clone());
        self.pending.insert(id, PendingEntry { hold, severity, mitre, held, since: Instant::now(), timeout });
    }

    /// A session's first event: register its workspace (`$CWD` write roots) from the working
    /// directory of its first process, and say so in the audit stream.
    fn first_sight(&mut self, event: &KernelEvent) {
        let found = self.sessions.resolve(&RealSys, event.head.session_id).ok().flatten().cloned();
        let session = found.as_ref().map(|s| s.name.clone());
        // `guard launch` records the workspace on the session cgroup; /proc is the fallback
        // for sessions made some other way (and races with short-lived processes).
        let recorded = found.as_ref().and_then(|s| cgroup::workspace(&RealSys, &s.path));
        let mut reason =
            format!("session {} seen first (cgroup {})", session.as_deref().unwrap_or("?"), event.head.session_id);
        let mut cwd_text = None;
        let from_proc = || std::fs::read_link(format!("/proc/{}/cwd", event.head.tgid));
        if !self.policy.wants_session_workspace() {
            if let Some(dir) = recorded.clone().or_else(|| from_proc().ok()) {
                cwd_text = Some(dir.display().to_string());
                self.workspaces.insert(event.head.session_id, dir);
            }
        } else {
            let cwd = match recorded.clone() {
                Some(dir) => Ok(dir),
                None => from_proc(),
            };
            match cwd.and_then(|dir| std::fs::metadata(&dir).map(|meta| (dir, meta))) {
                Ok((dir, meta)) => match self
                    .kernel
                    .register_workspace(event.head.session_id, crate::scan::identity(&meta))
                {
                    Ok(()) => {
                        reason.push_str(&format!("; workspace {} is a write root for it", dir.display()));
                        cwd_text = Some(dir.display().to_string());
                        self.workspaces.insert(event.head.session_id, dir);
                    }
                    Err(err) => reason.push_str(&format!("; registering workspace {} failed: {err:#}", dir.display())),
                },
                Err(err) => reason
                    .push_str(&format!("; its workspace could not be read ({err}): writes stay recorded, not killed")),
            }
        }
        // What `guard launch` applied (written before the session's first event): the
        // session's own boundary, or null for cgroups guard adopted without launching them.
        let confinement = found.as_ref().and_then(|s| cgroup::confinement(&RealSys, &s.path));
        match &confinement {
            Some(applied) => reason.push_str(&format!("; confined: {}", applied.summary())),
            None => reason.push_str("; no confinement recorded (not started by `guard launch`)"),
        }
        let mut record = self.recorder.daemon_record("session", now_unix_ns(), reason);
        record.details = Some(serde_json::json!({ "confinement": confinement }));
        record.session = session;
        record.cgroup_id = Some(event.head.session_id);
        record.pid = Some(event.head.tgid);
        record.cwd = cwd_text;
        self.emit(&record);
    }

    /// Forget a held task in the kernel before it is continued or killed.
    fn unhold(&mut self, pid: u32) {
        if let Err(err) = self.kernel.unhold(pid) {
            log::error!("clearing the kernel hold of {pid}: {err:#}");
        }
    }

    /// Record the end of a pending hold.
    fn close_hold(&mut self, entry: PendingEntry, event: &str, verdict: Verdict, reason: String) {
        let mut record = AuditRecord {
            ts: guard_engine::audit::format_ts(now_unix_ns()),
            session: Some(entry.hold.session.clone()),
            pid: Some(entry.hold.pid),
            exe: Some(entry.hold.exe.clone()),
            event: event.to_string(),
            verdict: Some(verdict),
            detector: Some("destructive".into()),
            rule: Some(entry.hold.rule.clone()),
            severity: entry.severity.or(Some(Severity::High)),
            mitre: entry.mitre.clone(),
            reason: Some(reason),
            argv: Some(entry.hold.argv.clone()),
            cwd: Some(entry.hold.cwd.clone()),
            hold_id: Some(entry.hold.id),
            ..Default::default()
        };
        self.recorder.stamp(&mut record);
        self.emit(&record);
        self.flush_audit();
    }

    /// A person's decision on a pending hold.
    fn decide(&mut self, id: u64, approve: bool, peer: &PeerCred) -> Response {
        let Some(entry) = self.pending.remove(&id) else {
            return Response::error(format!("no pending hold {id} (`guard pending` lists them)"));
        };
        let pid = entry.hold.pid;
        self.unhold(pid);
        let who = format!("uid {} (pid {})", peer.uid, peer.pid.map_or_else(|| "?".to_string(), |p| p.to_string()));
        let age = entry.since.elapsed().as_secs();
        if approve {
            let outcome = entry.held.release();
            let message = match &outcome {
                Ok(()) => format!("hold {id} approved by {who} after {age} s: `{}` runs", entry.hold.argv.join(" ")),
                Err(err) => format!("hold {id} approved by {who} but could not be continued: {err}"),
            };
            self.close_hold(entry, "approve", Verdict::Allow, message.clone());
            if outcome.is_ok() { Response::done(message) } else { Response::error(message) }
        } else {
            let outcome = entry.held.kill();
            let message = match &outcome {
                Ok(()) => format!(
                    "hold {id} denied by {who} after {age} s: `{}` killed before it ran",
                    entry.hold.argv.join(" ")
                ),
                Err(err) => format!("hold {id} denied by {who} but could not be killed: {err}"),
            };
            self.close_hold(entry, "deny", Verdict::Kill, message.clone());
            if outcome.is_ok() { Response::done(message) } else { Response::error(message) }
        }
    }

    /// Deny holds past their timeout, and forget holds whose task is gone.
    pub fn expire_holds(&mut self) {
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, e)| {
                e.since.elapsed() >= e.timeout || hold::process_state(e.hold.pid).is_none_or(|s| s == 'Z' || s == 'X')
            })
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let Some(entry) = self.pending.remove(&id) else { continue };
            self.unhold(entry.hold.pid);
            if entry.since.elapsed() >= entry.timeout {
                let outcome = entry.held.kill();
                let reason = match outcome {
                    Ok(()) => format!(
                        "hold {id} timed out after {} s without a decision: killed before it ran",
                        entry.timeout.as_secs()
                    ),
                    Err(err) => format!("hold {id} timed out but could not be killed: {err}"),
                };
                self.close_hold(entry, "hold_timeout", Verdict::Kill, reason);
            } else {
                let reason = format!("hold {id}: the held task is gone (killed from outside)");
                self.close_hold(entry, "hold_ended", Verdict::Kill, reason);
            }
        }
    }

    /// Fail closed on shutdown: nothing held runs without a decision.
    pub fn abandon_holds(&mut self) {
        let ids: Vec<u64> = self.pending.keys().copied().collect();
        for id in ids {
            let Some(entry) = self.pending.remove(&id) else { continue };
            self.unhold(entry.hold.pid);
            let _ = entry.held.kill();
            let reason = format!("hold {id}: guard is stopping; the held command was killed (fail closed)");
            self.close_hold(entry, "hold_abandoned", Verdict::Kill, reason);
        }
    }

    /// Answer a control request from the event loop.
    pub fn control(&mut self, call: ControlCall) {
        let response = match call.request {
            Request::Status => Response::status(self.shared.status()),
            Request::Pending => Response::pending(
                self.pending
                    .values()
                    .map(|e| {
                        let mut hold = e.hold.clone();
                        hold.age_secs = e.since.elapsed().as_secs();
                        hold.timeout_in_secs = e.timeout.saturating_sub(e.since.elapsed()).as_secs();
                        hold
                    })
                    .collect(),
            ),
            Request::Approve { id } => self.decide(id, true, &call.peer),
            Request::Deny { id } => self.decide(id, false, &call.peer),
            Request::Stop { .. } if call.peer.uid != 0 => {
                Response::error(format!("permission denied: only root may stop guard (uid {})", call.peer.uid))
            }
            Request::Stop { keep_pins } => {
                self.stop_requested = Some(keep_pins);
                Response::done(if keep_pins {
                    format!("guard stops; programs and maps stay pinned in {}", self.kernel.pin_dir().display())
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

    /// One hold → judged → released round trip, in µs (the last 4096 are kept for status).
    fn note_hold_release(&mut self, micros: u64) {
        if self.hold_release_us.len() >= 4096 {
            self.hold_release_us.pop_front();
        }
        self.hold_release_us.push_back(micros);
    }

    /// `guard launch --record`: the session cgroup's own level, in the kernel's SESSION_RECORD
    /// (the session id is the session cgroup's id, its directory's inode).
    fn set_session_record(&mut self, cgroup: &Path, level: RecordLevel) -> Result<String, String> {
        use std::os::unix::fs::MetadataExt as _;
        let Some(root) = self.sessions.roots().iter().find(|root| cgroup.parent() == Some(root.as_path())).cloned()
        else {
            return Err(format!(
                "{} is not a session cgroup of this daemon (a directory right below a root)",
                cgroup.display()
            ));
        };
        let meta = std::fs::metadata(cgroup).map_err(|err| format!("{}: {err}", cgroup.display()))?;
        self.kernel
            .set_session_record(meta.ino(), Some(level.into()))
            .map_err(|err| format!("setting the record level of {}: {err:#}", cgroup.display()))?;
        Ok(format!("session {} below {} records at level {}", cgroup.display(), root.display(), level.as_str()))
    }

    /// Was this signal sent by a session process? The kernel notes session senders before the
    /// signal leaves; a sender that is already gone is placed by its cgroup otherwise.
    pub fn sent_by_session(&mut self, pid: u32) -> bool {
        if self.kernel.signalled_by_session(pid) {
            return true;
        }
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else { return false };
        let Some(relative) = text.lines().find_map(|line| line.strip_prefix("0::")) else { return false };
        let path = self.cgroup2_mount.join(relative.trim_start_matches('/'));
        self.sessions.roots().iter().any(|root| path.starts_with(root))
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
        let mut record = self.recorder.daemon_record(
            "signal_ignored",
            now_unix_ns(),
            format!("{name} from session process {pid} ignored: sessions do not stop, reload or reopen guard"),
        );
        record.pid = Some(pid);
        record.verdict = Some(Verdict::Deny);
        record.detector = Some("self_protection".into());
        record.severity = Some(Severity::Critical);
        self.emit(&record);
    }

    /// This daemon adopted the pins of one that is gone: say how long no one was there and
    /// what the kernel did meanwhile, and end the holds nobody can decide any more.
    pub fn adopt(&mut self, previous: &guard_common::DaemonState, gap_ns: u64, retired: usize) {
        let now = self.kernel.stats().unwrap_or([0; stat::COUNT as usize]);
        let delta = |index: u32| now[index as usize].saturating_sub(previous.stats[index as usize]);
        let killed_no_daemon = delta(stat::KILLED_NO_DAEMON);
        let mut record = self.recorder.daemon_record(
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
            "pin_dir": self.kernel.pin_dir().display().to_string(),
        }));
        self.emit(&record);
        match self.kernel.held_tasks() {
            Ok(held) => {
                for (tgid, _) in held {
                    self.unhold(tgid);
                    let outcome = Held::open(tgid).and_then(|held| held.kill());
                    let mut record = self.recorder.daemon_record(
                        "hold_abandoned",
                        now_unix_ns(),
                                                match outcome {
                            Ok(()) => format!("pid {tgid} was held by guard pid {}, which is gone: killed before it ran (fail closed)", previous.pid),
                            Err(err) if err.raw_os_error() == Some(libc::ESRCH) => {
                                format!("pid {tgid} was held by guard pid {}, which is gone; it had exited (killed from outside)", previous.pid)
                            }
                            Err(err) => format!("pid {tgid} was held by guard pid {}, which is gone; it could not be killed: {err}", previous.pid),
                        },
                    );
                    record.pid = Some(tgid);
                    record.verdict = Some(Verdict::Kill);
                    record.detector = Some("destructive".into());
                    self.emit(&record);
                }
            }
            Err(err) => log::error!("reading the tasks an earlier daemon held: {err:#}"),
        }
    }

    fn enrich(&mut self, event: &KernelEvent) -> Enrichment {
        let session = match self.sessions.resolve(&RealSys, event.head.session_id) {
            Ok(found) => found.map(|s| s.name.clone()),
            Err(err) => {
                log::warn!("resolving session {}: {err}", event.head.session_id);
                None
            }
        };
        let (argv, cwd) = match &event.body {
            // The kernel's argv copy is complete unless truncated; then /proc has the rest if
            // the process still runs (held execs are read while stopped, race-free). cwd is
            // best effort.
            Body::Exec { argv_truncated: true, .. } => {
                (read_proc_list(event.head.tgid, "cmdline"), read_cwd(event.head.tgid))
            }
            Body::Exec { .. } => (None, read_cwd(event.head.tgid)),
            _ => (None, None),
        };
        let consumer = match &event.body {
            Body::Open { consumer: Some(index), .. } => self.policy.consumers.consumer(*index).map(|c| c.name.clone()),
            _ => None,
        };
        Enrichment { session, argv, cwd, consumer }
    }

    /// SIGHUP: re-read the policy. An invalid one is refused and the running one stays in
    /// force, untouched. `rescan_only` re-resolves the current policy (new credential files,
    /// re-resolved hosts) without re-reading it.
    pub fn reload(&mut self, rescan_only: bool) {
        let path = if rescan_only { None } else { Some(self.policy_path.clone()) };
        let loaded = match path {
            None => policy_load::rescan(&self.policy),
            Some(path) => policy_load::load(path.as_deref()),
        };
        let what = if rescan_only { "rescan" } else { "reload" };
        let policy = match loaded {
            Ok(policy) => policy,
            Err(err) => {
                let record = self.recorder.daemon_record(
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
        config.lsm = self.kernel.config().map_or(0, |current| current.lsm);
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
        let applied = self
            .kernel
            .write_policy(&policy.maps, remap)
            .and_then(|()| self.kernel.set_seccomp_kill(&policy.compiled.confinement.seccomp_syscalls()))
            .and_then(|()| self.kernel.set_config(&config));
        if let Err(err) = applied {
            let record = self.recorder.daemon_record(
                &format!("policy_{what}_failed"),
                now_unix_ns(),
                format!("writing the {what}ed policy into the kernel failed: {err:#}"),
            );
            self.emit(&record);
            return;
        }
        if !rescan_only {
            let mut record = self.recorder.daemon_record(
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
        // New rotation settings apply from the next record.
        self.sink.set_rotation(Rotation::from(policy.compiled.audit));
        self.recorder.set_rules(policy.rule_infos());
        self.evaluator = policy.evaluator.clone();
        self.base.policy_source = policy.source.clone();
        self.policy = policy;
    }

    pub fn refresh_status(&mut self) {
        let stats = match self.kernel.stats() {
            Ok(s) => s,
            Err(err) => {
                log::warn!("reading kernel counters: {err:#}");
                return;
            }
        };
        if let Err(err) = self.kernel.heartbeat(&stats) {
            log::error!("writing the heartbeat: {err:#}");
        }
        let dropped = stats[stat::EVENTS_DROPPED as usize];
        if dropped > self.last_dropped {
            let mut record = self.recorder.daemon_record(
                "drops",
                now_unix_ns(),
                format!("{} kernel events lost (ring buffer full); {dropped} since start", dropped - self.last_dropped),
            );
            record.details =
                Some(serde_json::json!({ "dropped_total": dropped, "dropped_new": dropped - self.last_dropped }));
            self.emit(&record);
            self.last_dropped = dropped;
        }
        let mut sessions: Vec<guard_engine::control::SessionStatus> =
            cgroup::list_sessions(&RealSys, self.sessions.roots())
                .map(|list| list.iter().map(|s| s.to_status()).collect())
                .unwrap_or_default();
        for session in &mut sessions {
            session.confinement = cgroup::confinement(&RealSys, std::path::Path::new(&session.path));
            let used = self.consumer_use.get(&session.cgroup_id);
            session.trajectory = self
                .trajectory
                .session_summary(session.cgroup_id)
                .map(|summary| {
                    let mut parts = Vec::new();
                    if let Some(used) = used {
                        parts.push(format!(
                            "credential used by its tool ({})",
                            used.iter().cloned().collect::<Vec<_>>().join(", ")
                        ));
                    }
                    if summary.credential_marked {
                        parts.push("touched a credential: escalated".to_string());
                    }
                    for chain in &summary.chains {
                        if chain.stages_reached > 0 {
                            parts.push(format!(
                                "chain {} at {}/{}",
                                chain.chain_id, chain.stages_reached, chain.stages_total
                            ));
                        }
                        if chain.completions > 0 {
                            parts.push(format!("chain {} completed {} time(s)", chain.chain_id, chain.completions));
                        }
                    }
                    parts.join("; ")
                })
                .filter(|text| !text.is_empty());
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
