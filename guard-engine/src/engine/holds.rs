//! Commands held for a person: the pending table, its decisions and timeouts.

use guard_common::Detector;
use std::{collections::BTreeMap, time::Duration};

use super::{
    Engine,
    action::{Action, Settle, Signal},
    machine::{Machine, Now},
};
use crate::{
    audit::{AuditRecord, Severity, Verdict, format_ts},
    control::PendingHold,
};

/// A command held for a person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingEntry {
    pub hold: PendingHold,
    pub severity: Option<Severity>,
    pub mitre: Option<String>,
    /// When it was put on hold (CLOCK_MONOTONIC ns).
    pub since_ns: u64,
    pub timeout: Duration,
}

impl PendingEntry {
    fn age(&self, now: Now) -> Duration {
        Duration::from_nanos(now.mono_ns.saturating_sub(self.since_ns))
    }
}

/// The pending table and its ids.
#[derive(Debug, Default)]
pub struct Holds {
    pub(super) pending: BTreeMap<u64, PendingEntry>,
    next_id: u64,
}

impl Holds {
    pub(super) fn insert(&mut self, mut entry: PendingEntry) -> u64 {
        self.next_id += 1;
        entry.hold.id = self.next_id;
        self.pending.insert(self.next_id, entry);
        self.next_id
    }

    /// The id the next hold gets.
    pub(super) fn next_id(&self) -> u64 {
        self.next_id + 1
    }
}

impl Engine {
    /// The pending holds as `guard pending` shows them.
    pub fn pending_holds(&self, now: Now) -> Vec<PendingHold> {
        self.holds
            .pending
            .values()
            .map(|entry| {
                let mut hold = entry.hold.clone();
                hold.age_secs = entry.age(now).as_secs();
                hold.timeout_in_secs = entry.timeout.saturating_sub(entry.age(now)).as_secs();
                hold
            })
            .collect()
    }

    pub fn pending_entry(&self, id: u64) -> Option<&PendingEntry> {
        self.holds.pending.get(&id)
    }

    /// A person's decision on hold `id` (`who`: uid and pid of the asker). The last action is
    /// the [`Settle`] whose finished reason is the answer to give; `Err` when there is no
    /// such hold.
    pub fn decide(&mut self, id: u64, approve: bool, who: &str, now: Now) -> Result<Vec<Action>, String> {
        let Some(entry) = self.holds.pending.remove(&id) else {
            return Err(format!("no pending hold {id} (`guard pending` lists them)"));
        };
        let age = entry.age(now).as_secs();
        let command = entry.hold.argv.join(" ");
        let (event, verdict, signal, done, failed) = if approve {
            (
                "approve",
                Verdict::Allow,
                Signal::Continue,
                format!("hold {id} approved by {who} after {age} s: `{command}` runs"),
                format!("hold {id} approved by {who} but could not be continued"),
            )
        } else {
            (
                "deny",
                Verdict::Kill,
                Signal::Kill,
                format!("hold {id} denied by {who} after {age} s: `{command}` killed before it ran"),
                format!("hold {id} denied by {who} but could not be killed"),
            )
        };
        let pid = entry.hold.pid;
        let record = self.close_record(&entry, event, verdict, done, now);
        Ok(vec![Action::Settle(Settle {
            pid,
            signal,
            grant: None,
            held_since_ns: Some(entry.since_ns),
            record,
            if_failed: Some(failed),
        })])
    }

    /// Deny holds past their timeout, and forget holds whose task is gone.
    pub fn expire_holds(&mut self, machine: &dyn Machine) -> Vec<Action> {
        let now = machine.now();
        let expired: Vec<u64> = self
            .holds
            .pending
            .iter()
            .filter(|(_, entry)| entry.age(now) >= entry.timeout || !machine.process_alive(entry.hold.pid))
            .map(|(id, _)| *id)
            .collect();
        let mut actions = Vec::new();
        for id in expired {
            let Some(entry) = self.holds.pending.remove(&id) else { continue };
            let pid = entry.hold.pid;
            if entry.age(now) >= entry.timeout {
                let reason = format!(
                    "hold {id} timed out after {} s without a decision: killed before it ran",
                    entry.timeout.as_secs()
                );
                let record = self.close_record(&entry, "hold_timeout", Verdict::Kill, reason, now);
                actions.push(Action::Settle(Settle {
                    pid,
                    signal: Signal::Kill,
                    grant: None,
                    held_since_ns: Some(entry.since_ns),
                    record,
                    if_failed: Some(format!("hold {id} timed out but could not be killed")),
                }));
            } else {
                let reason = format!("hold {id}: the held task is gone (killed from outside)");
                actions.push(Action::Unhold { pid });
                actions.push(Action::Emit(self.close_record(&entry, "hold_ended", Verdict::Kill, reason, now)));
            }
        }
        actions
    }

    /// Fail closed on shutdown: nothing held runs without a decision.
    pub fn abandon_holds(&mut self, now: Now) -> Vec<Action> {
        let pending = std::mem::take(&mut self.holds.pending);
        pending
            .into_iter()
            .map(|(id, entry)| {
                let reason = format!("hold {id}: guard is stopping; the held command was killed (fail closed)");
                let record = self.close_record(&entry, "hold_abandoned", Verdict::Kill, reason, now);
                Action::Settle(Settle {
                    pid: entry.hold.pid,
                    signal: Signal::Kill,
                    grant: None,
                    held_since_ns: Some(entry.since_ns),
                    record,
                    if_failed: None,
                })
            })
            .collect()
    }

    /// The record of a pending hold's end.
    fn close_record(
        &mut self,
        entry: &PendingEntry,
        event: &str,
        verdict: Verdict,
        reason: String,
        now: Now,
    ) -> AuditRecord {
        let mut record = AuditRecord {
            ts: format_ts(now.wall_ns),
            session: Some(entry.hold.session.clone()),
            pid: Some(entry.hold.pid),
            exe: Some(entry.hold.exe.clone()),
            event: event.to_string(),
            verdict: Some(verdict),
            detector: Some(Detector::Destructive),
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
        self.redacted(record)
    }
}
