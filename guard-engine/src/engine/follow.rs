//! What an event means beyond its own record: a session's first sight, lineage and chains
//! (trajectory), secrets read and used (provenance), escalation after a credential touch.

use guard_common::Detector;
use std::path::PathBuf;

use guard_common::action;

use super::{
    Engine,
    action::{Action, Escalate, Freeze, RegisterWorkspace},
    machine::Machine,
};
use crate::{
    audit::{AuditRecord, Severity, Verdict},
    event::{Body, KernelEvent},
    provenance::Origin,
    records::Enrichment,
    trajectory::{ProcessKey, Significant},
};

/// Largest credential file read to fingerprint its secrets.
pub const MAX_CREDENTIAL_FILE: u64 = 1 << 20;

impl Engine {
    /// What the kernel did not say: the session's name, argv from /proc when the kernel's
    /// copy was cut, the working directory of an exec, the consumer's name.
    pub(super) fn enrich(&self, event: &KernelEvent, machine: &dyn Machine) -> Enrichment {
        let session = machine.session_name(event.head.session_id);
        let cwd = || machine.cwd(event.head.tgid).ok().map(|dir| dir.display().to_string());
        let (argv, cwd) = match &event.body {
            // The kernel's argv copy is complete unless truncated; then /proc has the rest if
            // the process still runs (held execs are read while stopped, race-free). cwd is
            // best effort.
            Body::Exec { argv_truncated: true, .. } => (machine.cmdline(event.head.tgid), cwd()),
            Body::Exec { .. } => (None, cwd()),
            _ => (None, None),
        };
        let consumer = match &event.body {
            Body::Open { consumer: Some(index), .. } => self.policy.consumers.consumer(*index).map(|c| c.name.clone()),
            _ => None,
        };
        Enrichment { session, argv, cwd, consumer }
    }

    /// A session's first event: register its workspace (`$CWD` write roots) from the working
    /// directory of its first process, and say so in the audit stream.
    pub(super) fn first_sight(&mut self, event: &KernelEvent, machine: &dyn Machine, actions: &mut Vec<Action>) {
        let session_id = event.head.session_id;
        let found = machine.session_cgroup(session_id);
        let session = found.as_ref().map(|s| s.name.clone());
        // `guard launch` records the workspace on the session cgroup; /proc is the fallback
        // for sessions made some other way (and races with short-lived processes).
        let recorded = found.as_ref().and_then(|s| s.workspace.clone());
        let reason = format!("session {} seen first (cgroup {session_id})", session.as_deref().unwrap_or("?"));
        let mut cwd_text = None;
        let mut pending_note = String::new();
        let mut register = None;
        if !self.policy.session_workspace {
            if let Some(dir) = recorded.or_else(|| machine.cwd(event.head.tgid).ok()) {
                cwd_text = Some(dir.display().to_string());
                self.marks.set_workspace(session_id, dir);
            }
        } else {
            let cwd = match recorded {
                Some(dir) => Ok(dir),
                None => machine.cwd(event.head.tgid),
            };
            match cwd.and_then(|dir| machine.identity(&dir).map(|identity| (dir, identity))) {
                Ok((dir, identity)) => {
                    // Used to find a short-lived reader's file, so kept even should the
                    // registration fail (only the very inode the kernel reported is read).
                    self.marks.set_workspace(session_id, dir.clone());
                    register = Some((dir, identity));
                }
                Err(err) => {
                    pending_note =
                        format!("; its workspace could not be read ({err}): writes stay recorded, not killed")
                }
            }
        }
        // What `guard launch` applied (written before the session's first event): the
        // session's own boundary, or null for cgroups guard adopted without launching them.
        let confinement = found.as_ref().and_then(|s| s.confinement.clone());
        let rest = match &confinement {
            Some(applied) => format!("; confined: {}", applied.summary()),
            None => "; no confinement recorded (not started by `guard launch`)".to_string(),
        };
        let mut record = self.recorder.daemon_record("session", machine.now().wall_ns, reason);
        record.details = Some(serde_json::json!({ "confinement": confinement }));
        record.session = session;
        record.cgroup_id = Some(session_id);
        record.pid = Some(event.head.tgid);
        record.cwd = cwd_text;
        let mut record = self.redacted(record);
        match register {
            Some((dir, identity)) => {
                let rest = self.provenance.redact_text(&rest);
                actions.push(Action::RegisterWorkspace(RegisterWorkspace {
                    session: session_id,
                    dir,
                    identity,
                    record,
                    rest,
                }));
            }
            None => {
                let reason = record.reason.get_or_insert_with(String::new);
                reason.push_str(&self.provenance.redact_text(&format!("{pending_note}{rest}")));
                actions.push(Action::Emit(record));
            }
        }
    }

    /// Lineage and chains (trajectory), secrets read and used (provenance), escalation.
    pub(super) fn follow(
        &mut self,
        event: &KernelEvent,
        record: &AuditRecord,
        held_env: Option<Vec<(String, String)>>,
        machine: &dyn Machine,
        actions: &mut Vec<Action>,
    ) {
        let session = event.head.session_id;
        let process = ProcessKey { pid: event.head.tgid, start_ns: event.head.start_ns };
        if record.detector == Some(Detector::Credential) {
            if let Some(consumer) = &record.consumer {
                // Its own tool read it: "credential used by its tool", no discovery.
                self.marks.consumer_used(session, consumer);
            } else if self.marks.escalate(session) {
                self.escalate(event, record, machine, actions);
            }
        }
        match &event.body {
            Body::Fork { child_tgid, child_start_ns, .. } => {
                self.trajectory.fork(process, ProcessKey { pid: *child_tgid, start_ns: *child_start_ns });
            }
            Body::Exit { .. } => self.trajectory.exit(process),
            // `provenance.enabled: false`: nothing is learned, nothing followed.
            Body::Open { path, file: Some(file), .. }
                if self.policy.provenance
                    && record.detector == Some(Detector::Credential)
                    && record.verdict == Some(Verdict::Audit) =>
            {
                self.learn_credential_file(event, record.seq, path, file, machine);
            }
            Body::Exec { argv, .. } if self.policy.provenance => {
                let argv = record.argv.clone().unwrap_or_else(|| argv.clone());
                let env = held_env.unwrap_or_default();
                for used in self.provenance.check_exec(&argv, &env) {
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
                        detector: Some(Detector::Provenance),
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
                    actions.push(Action::Emit(self.redacted(rec)));
                }
                if !env.is_empty() || event.head.action == action::HOLD {
                    let origin = Origin {
                        file: format!("argv and environment of held pid {}", event.head.tgid),
                        reader_pid: event.head.tgid,
                        record_seq: record.seq,
                        session,
                        name: None,
                    };
                    self.provenance.learn_pairs(&env, &origin);
                    self.provenance.learn_argv(&argv, &origin);
                }
            }
            _ => {}
        }
        let ts_ns = self.clock.wall_ns(event.head.ktime_ns);
        if let Some(significant) = Significant::from_record(record, session, process, ts_ns) {
            for progress in self.trajectory.observe(significant) {
                let mut chain = progress.to_audit_record();
                self.recorder.stamp(&mut chain);
                actions.push(Action::Emit(self.redacted(chain)));
            }
        }
    }

    /// A session touched a credential: the kernel already denies its out-of-scope network and
    /// holds its watched execs; the policy may go further (hold every exec, freeze the session).
    fn escalate(
        &mut self,
        event: &KernelEvent,
        record: &AuditRecord,
        machine: &dyn Machine,
        actions: &mut Vec<Action>,
    ) {
        let wanted = self.policy.escalation;
        let session = event.head.session_id;
        let freeze = if !wanted.freeze_session {
            Freeze::No
        } else {
            match machine.session_cgroup(session) {
                Some(cgroup) => Freeze::Cgroup(cgroup.path),
                None => Freeze::Unknown,
            }
        };
        let mut rec = self.recorder.daemon_record(
            "escalation",
            machine.now().wall_ns,
            format!(
                "session touched a credential (record {}): out-of-scope network denied and destructive commands held",
                record.seq
            ),
        );
        rec.session = record.session.clone();
        rec.cgroup_id = Some(session);
        rec.pid = record.pid;
        rec.verdict = Some(Verdict::Audit);
        rec.detector = Some(Detector::Escalation);
        rec.severity = Some(Severity::High);
        let record = self.redacted(rec);
        actions.push(Action::Escalate(Escalate { session, hold_all_exec: wanted.hold_all_exec, freeze, record }));
    }

    /// A session read a credential file (monitor mode): fingerprint its secrets. The file is
    /// re-opened by path and accepted only if it is the very inode the kernel reported.
    fn learn_credential_file(
        &mut self,
        event: &KernelEvent,
        seq: u64,
        path: &str,
        file: &guard_common::DevIno,
        machine: &dyn Machine,
    ) {
        // A short-lived reader (`cat .env`) is often gone by now: its parent's working
        // directory and the session's workspace are the next best guesses for a relative
        // path. Only the very inode the kernel reported is accepted.
        let candidates: Vec<PathBuf> = if path.starts_with('/') {
            vec![PathBuf::from(path)]
        } else {
            let workspace = self.marks.get(event.head.session_id).and_then(|mark| mark.workspace.clone());
            [event.head.tgid, event.head.ppid]
                .iter()
                .filter_map(|pid| machine.cwd(*pid).ok())
                .chain(workspace)
                .map(|dir| dir.join(path))
                .collect()
        };
        let Some((full, text)) = candidates.into_iter().find_map(|candidate| {
            machine.read_identified(&candidate, *file, MAX_CREDENTIAL_FILE).map(|t| (candidate, t))
        }) else {
            return;
        };
        let origin = Origin {
            file: full.display().to_string(),
            reader_pid: event.head.tgid,
            record_seq: seq,
            session: event.head.session_id,
            name: None,
        };
        self.provenance.learn_file(&text, &origin);
    }
}
