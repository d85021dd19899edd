//! What the engine asks the daemon to do: write records, and act on the kernel and on held
//! processes. Actions are plain data, carried out in order. Those whose outcome the audit
//! record reports ([`Settle`], [`Escalate`], [`RegisterWorkspace`]) carry their record and a
//! `finish` that completes it with the outcome, so the text stays the engine's.

use std::path::PathBuf;

use guard_common::{ConsumerGrant, DevIno};

use crate::audit::AuditRecord;

/// One step for the daemon.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Write this record to the audit stream (already redacted).
    Emit(AuditRecord),
    /// Forget the kernel's hold of a task that is gone or vanished (nothing to signal).
    Unhold { pid: u32 },
    /// Write a consumer grant for a held task (it stays held: a [`Action::Pend`] follows).
    GrantConsumer { pid: u32, grant: ConsumerGrant },
    /// Grant (if any), forget the kernel's hold, continue or kill the task, then write the
    /// record [`Settle::finish`] makes of the outcomes.
    Settle(Settle),
    /// Keep the held task stopped for a person: hold `id` (the daemon keeps its handle).
    Pend { id: u64, pid: u32 },
    /// A session touched a credential: the policy's extra escalations, then the record.
    Escalate(Escalate),
    /// Make a session's workspace one of its write (and read) roots, then the record.
    RegisterWorkspace(RegisterWorkspace),
}

impl Action {
    /// The record this action writes, as it reads when everything it does succeeds (for
    /// replays and benchmarks that carry nothing out).
    pub fn into_record(self) -> Option<AuditRecord> {
        match self {
            Action::Emit(record) => Some(record),
            Action::Settle(settle) => {
                let granted = settle.grant.as_ref().map(|_| Ok(()));
                Some(settle.finish(granted, &Ok(())))
            }
            Action::Escalate(escalate) => {
                let held = escalate.hold_all_exec.then_some(Ok(()));
                let frozen = matches!(escalate.freeze, Freeze::Cgroup(_)).then_some(Ok(()));
                Some(escalate.finish(held, frozen))
            }
            Action::RegisterWorkspace(register) => Some(register.finish(Ok(()))),
            Action::Unhold { .. } | Action::GrantConsumer { .. } | Action::Pend { .. } => None,
        }
    }

    /// The record this action writes (before any outcome is known).
    pub fn record(&self) -> Option<&AuditRecord> {
        match self {
            Action::Emit(record) => Some(record),
            Action::Settle(settle) => Some(&settle.record),
            Action::Escalate(escalate) => Some(&escalate.record),
            Action::RegisterWorkspace(register) => Some(&register.record),
            Action::Unhold { .. } | Action::GrantConsumer { .. } | Action::Pend { .. } => None,
        }
    }
}

/// What becomes of a held task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGCONT: it runs.
    Continue,
    /// SIGKILL: it dies before its first instruction.
    Kill,
}

/// A consumer grant written before the held task is signalled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantStep {
    pub grant: ConsumerGrant,
    pub consumer: String,
    /// What the record's reason ends with when the grant is written.
    pub note: String,
}

/// The end of a hold: grant, unhold, signal, record.
#[derive(Clone, Debug, PartialEq)]
pub struct Settle {
    pub pid: u32,
    pub signal: Signal,
    pub grant: Option<GrantStep>,
    /// When the kernel held the task (CLOCK_MONOTONIC ns): the hold's round trip (judged at
    /// once, or pending until a person or the timeout decided) is measured from here.
    pub held_since_ns: Option<u64>,
    pub record: AuditRecord,
    /// The reason when the signal fails (`: <error>` follows); `None`: a failure changes
    /// nothing (killing what may already be gone).
    pub if_failed: Option<String>,
}

impl Settle {
    /// The record, given whether the grant (when there was one) and the signal went through.
    pub fn finish(self, granted: Option<Result<(), String>>, signalled: &Result<(), String>) -> AuditRecord {
        let mut record = self.record;
        if let (Some(step), Some(Err(err))) = (&self.grant, granted)
            && let Some(reason) = &mut record.reason
            && reason.ends_with(&step.note)
        {
            reason.truncate(reason.len() - step.note.len());
            reason.push_str(&format!("; consumer {} could not be granted: {err}", step.consumer));
        }
        if let (Err(err), Some(failed)) = (signalled, self.if_failed) {
            record.reason = Some(format!("{failed}: {err}"));
        }
        record
    }
}

/// What escalation does to the session cgroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Freeze {
    /// The policy does not freeze sessions.
    No,
    /// Write 1 to `cgroup.freeze` in this directory.
    Cgroup(PathBuf),
    /// The policy freezes sessions, but the session's cgroup is unknown.
    Unknown,
}

/// A session's escalation beyond what the kernel already does.
#[derive(Clone, Debug, PartialEq)]
pub struct Escalate {
    pub session: u64,
    /// Hold every exec of the session (the kernel's `escalation::FREEZE` flag).
    pub hold_all_exec: bool,
    pub freeze: Freeze,
    pub record: AuditRecord,
}

impl Escalate {
    /// The record, given the outcome of the exec hold (when asked) and of the freeze (when
    /// there was a cgroup to freeze).
    pub fn finish(self, held: Option<Result<(), String>>, frozen: Option<Result<(), String>>) -> AuditRecord {
        let mut done = Vec::new();
        match held {
            Some(Ok(())) => done.push("every exec now waits for a person".to_string()),
            Some(Err(err)) => done.push(format!("holding every exec failed: {err}")),
            None => {}
        }
        match (&self.freeze, frozen) {
            (Freeze::Cgroup(path), Some(Ok(()))) => {
                done.push(format!("session frozen ({}/cgroup.freeze = 1; write 0 there to thaw)", path.display()))
            }
            (Freeze::Cgroup(path), Some(Err(err))) => done.push(format!("freezing {} failed: {err}", path.display())),
            (Freeze::Unknown, _) => done.push("freezing failed: session cgroup not found".to_string()),
            _ => {}
        }
        let mut record = self.record;
        if !done.is_empty()
            && let Some(reason) = &mut record.reason
        {
            reason.push_str(&format!("; {}", done.join("; ")));
        }
        record
    }
}

/// A session's first sight: its workspace becomes a write root, then the `session` record.
#[derive(Clone, Debug, PartialEq)]
pub struct RegisterWorkspace {
    pub session: u64,
    pub dir: PathBuf,
    pub identity: DevIno,
    /// The `session` record; its reason goes on with the outcome, then `rest`.
    pub record: AuditRecord,
    pub rest: String,
}

impl RegisterWorkspace {
    pub fn finish(self, registered: Result<(), String>) -> AuditRecord {
        let mut record = self.record;
        let outcome = match registered {
            Ok(()) => {
                record.cwd = Some(self.dir.display().to_string());
                format!("; workspace {} is a write root for it", self.dir.display())
            }
            Err(err) => format!("; registering workspace {} failed: {err}", self.dir.display()),
        };
        let reason = record.reason.get_or_insert_with(String::new);
        reason.push_str(&outcome);
        reason.push_str(&self.rest);
        record
    }
}
