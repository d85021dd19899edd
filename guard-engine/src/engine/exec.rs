//! Held execs: the kernel stopped the new image before its first instruction; the engine
//! reads what it is about to run (through the machine), applies the consumer table and the
//! destructive rules, and lets it run, kills it, or keeps it for a person.

use guard_common::Detector;
use std::time::Duration;

use guard_common::escalation;

use super::{
    Engine,
    action::{Action, GrantStep, Settle, Signal},
    holds::PendingEntry,
    machine::{HeldFileReader, HeldResolver, HeldView, Machine},
};
use crate::{
    audit::{AuditRecord, Severity, Verdict},
    consumer::{ExecFacts, Judgement},
    control::PendingHold,
    destructive::ExecContext,
    event::{Body, KernelEvent},
    policy::{ExecAction, Mode},
};

/// What becomes of a held exec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecVerdict {
    /// It runs: nothing destructive, a monitor rule, or no enforcement.
    Release,
    /// Killed before it ran: an enforced rule, or it could not be inspected (fail closed).
    Kill,
    /// Kept stopped for a person, as hold `id`.
    Hold { id: u64 },
    /// It was gone before it could be judged: nothing to signal.
    Vanished,
}

/// The judgement of one held exec: the verdict, and what carrying it out takes.
#[derive(Clone, Debug, PartialEq)]
pub struct ExecJudgement {
    pub verdict: ExecVerdict,
    /// The consumer grant to write before the task is signalled.
    pub grant: Option<GrantStep>,
    /// The record's reason should the signal fail (`: <error>` follows).
    pub if_failed: Option<String>,
    /// The held environment, when it was read (provenance looks for secrets in it).
    pub env: Option<Vec<(String, String)>>,
}

impl ExecJudgement {
    fn new(verdict: ExecVerdict) -> Self {
        Self { verdict, grant: None, if_failed: None, env: None }
    }
}

impl Engine {
    /// Judges a held exec (`event` is an `exec` event with the kernel's hold). `record` is
    /// its audit record; it gets the verdict, rule and reason.
    pub fn judge_exec(
        &mut self,
        event: &KernelEvent,
        record: &mut AuditRecord,
        machine: &dyn Machine,
    ) -> ExecJudgement {
        let Body::Exec { filename, argv: kernel_argv, file, .. } = &event.body else {
            return ExecJudgement::new(ExecVerdict::Release);
        };
        let pid = event.head.tgid;
        let started = machine.now().mono_ns;
        if let Err(err) = machine.pin_held(pid) {
            record.verdict = Some(Verdict::Allow);
            record.reason = Some(format!("held exec of {filename} vanished before judgement: {err}"));
            return ExecJudgement::new(ExecVerdict::Vanished);
        }
        let view = match machine.held_view(pid) {
            Ok(view) => view,
            Err(err) => {
                // Cannot see what it would run: fail closed.
                record.verdict = Some(Verdict::Kill);
                record.reason = Some(format!("held exec of {filename} could not be inspected ({err}); killed"));
                return ExecJudgement::new(ExecVerdict::Kill);
            }
        };
        let argv = if view.argv.is_empty() { kernel_argv.clone() } else { view.argv.clone() };
        let context = ExecContext {
            exe: filename.clone(),
            argv: argv.clone(),
            cwd: view.cwd.clone().unwrap_or_default(),
            env: view.env.clone(),
        };
        let evaluation = self.policy.evaluator.judge(&context, &HeldFileReader { machine, pid });
        let matched = evaluation.best().cloned();
        // Inputs that could not be judged (an unreadable config file, an alias loop).
        let not_judged = if evaluation.notes.is_empty() {
            String::new()
        } else {
            format!("; not judged: {}", evaluation.notes.join("; "))
        };
        let waited = Duration::from_nanos(machine.now().mono_ns.saturating_sub(started)).as_micros();
        record.argv = Some(argv.clone());
        record.cwd = view.cwd.clone();
        if view.exe.is_some() {
            // What /proc says is executing (the interpreter for a `#!` script).
            record.exe = view.exe.clone();
        }
        let grant = self.judge_consumer(pid, file, &argv, &view, machine);
        let consumer_note = match &grant {
            Ok(Some(step)) => step.note.clone(),
            Ok(None) => String::new(),
            Err(note) => note.clone(),
        };
        let grant = grant.ok().flatten();
        let session = event.head.session_id;
        let state = machine.kernel_session(session).unwrap_or_default();
        // As the kernel derives it, with the engine's own sight of a credential read too.
        let bits =
            escalation::effective(state.escalation, state.credential_touched != 0 || self.marks.escalated(session));
        let escalated = bits & escalation::HOLD_EXEC != 0;
        let frozen =
            bits & escalation::FREEZE != 0 || (self.marks.escalated(session) && self.policy.escalation.hold_all_exec);
        let mut judged =
            ExecJudgement { verdict: ExecVerdict::Release, grant, if_failed: None, env: Some(view.env.clone()) };

        let Some(m) = matched else {
            if frozen && self.enforce {
                // (No "credential: ..." in the text: the redactor would take it for a secret.)
                record.detector = Some(Detector::Escalation);
                record.rule = Some("escalation.freeze".into());
                let why = format!(
                    "every exec of this session waits for a person since it touched a credential (held {waited} µs so far)"
                );
                judged.verdict =
                    self.pend(event, filename, &argv, view.cwd.as_deref(), "escalation.freeze", why, record, machine);
                return judged;
            }
            record.verdict = Some(Verdict::Allow);
            record.detector = None;
            record.rule = None;
            record.severity = Some(Severity::Info);
            record.reason = Some(format!(
                "exec of {filename} held {waited} µs for judgement: no destructive rule matched{consumer_note}{not_judged}"
            ));
            judged.if_failed = Some(format!("exec of {filename} judged harmless but could not be released"));
            return judged;
        };
        record.detector = Some(Detector::Destructive);
        record.rule = Some(m.rule_id.clone());
        record.source = Some(m.source.to_string());
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
            judged.verdict = self.pend(event, filename, &argv, view.cwd.as_deref(), &m.rule_id, why, record, machine);
            return judged;
        }
        if m.mode == Mode::Enforce && self.enforce {
            record.verdict = Some(Verdict::Kill);
            record.reason = Some(format!("{}: `{}` killed before it ran (held {waited} µs)", m.reason, m.command));
            judged.if_failed = Some(format!("{}: `{}` could not be killed", m.reason, m.command));
            judged.verdict = ExecVerdict::Kill;
        } else {
            record.verdict = Some(Verdict::Audit);
            record.reason = Some(format!("{}: `{}` allowed to run (monitor)", m.reason, m.command));
            judged.if_failed = Some(format!("{}: `{}` (monitor) could not be released", m.reason, m.command));
        }
        judged
    }

    /// The steps that carry a judgement out, the exec record last (or, for a hold, after it
    /// is registered).
    pub(super) fn carry_out_judgement(
        &self,
        event: &KernelEvent,
        judged: &ExecJudgement,
        record: AuditRecord,
    ) -> Vec<Action> {
        let pid = event.head.tgid;
        match judged.verdict {
            ExecVerdict::Vanished => vec![Action::Unhold { pid }, Action::Emit(record)],
            ExecVerdict::Hold { id } => {
                let mut actions = Vec::new();
                if let Some(step) = &judged.grant {
                    actions.push(Action::GrantConsumer { pid, grant: step.grant });
                }
                actions.push(Action::Pend { id, pid });
                actions.push(Action::Emit(record));
                actions
            }
            ExecVerdict::Release | ExecVerdict::Kill => {
                let release = judged.verdict == ExecVerdict::Release;
                vec![Action::Settle(Settle {
                    pid,
                    signal: if release { Signal::Continue } else { Signal::Kill },
                    grant: judged.grant.clone(),
                    held_since_ns: Some(event.head.ktime_ns),
                    record,
                    if_failed: judged.if_failed.clone(),
                })]
            }
        }
    }

    /// Is the held image one of the policy's credential consumers? `Ok(Some)`: the grant to
    /// write before it is released; `Err`: a note for the record on why it is not one.
    fn judge_consumer(
        &self,
        pid: u32,
        file: &guard_common::DevIno,
        argv: &[String],
        view: &HeldView,
        machine: &dyn Machine,
    ) -> Result<Option<GrantStep>, String> {
        let facts = ExecFacts { file: *file, argv, env: &view.env };
        match self.policy.consumers.judge(&facts, &HeldResolver { machine, pid }) {
            Judgement::NotWatched => Ok(None),
            Judgement::Refused { consumer, why } => Err(format!("; not the credential consumer {consumer}: {why}")),
            Judgement::Consumer { consumer, grant } => {
                let rules =
                    self.policy.consumers.consumer(grant.consumer).map(|c| c.rule_ids.join(", ")).unwrap_or_default();
                let note = format!("; runs as {consumer}, the consumer of {rules}");
                Ok(Some(GrantStep { grant, consumer, note }))
            }
        }
    }

    /// Keep a held command stopped until `guard approve`/`guard deny` or the timeout.
    #[allow(clippy::too_many_arguments)]
    fn pend(
        &mut self,
        event: &KernelEvent,
        filename: &str,
        argv: &[String],
        cwd: Option<&str>,
        rule: &str,
        why: String,
        record: &mut AuditRecord,
        machine: &dyn Machine,
    ) -> ExecVerdict {
        let id = self.holds.next_id();
        let timeout = self.policy.hold_timeout;
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
        let entry = PendingEntry {
            hold,
            severity: record.severity,
            mitre: record.mitre.clone(),
            since_ns: machine.now().mono_ns,
            timeout,
        };
        ExecVerdict::Hold { id: self.holds.insert(entry) }
    }
}
