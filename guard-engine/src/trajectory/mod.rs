//! Trajectory: chains of significant events across the processes of one session.
//!
//! Single steps of an attack look plausible on their own; the seed incident was the chain
//! credential discovery -> out-of-scope use -> irreversible action, spread over several
//! processes of one session within minutes. The daemon derives a [`Significant`] event from
//! each audit record ([`StageKind::from_record`]) and feeds it to [`Trajectory::observe`],
//! which returns a [`ChainProgress`] each time a chain of the policy reaches a new stage; the
//! daemon writes each as a `chain` audit record ([`ChainProgress::to_audit_record`]).
//!
//! # Semantics
//!
//! * Chains are matched per (session, chain), over every process of the session: the point is
//!   that the stages may be taken by different processes.
//! * Stages must happen in order (by `seq`, the order the daemon observes them) and the last
//!   one within `window_secs` of the first one's wall-clock time (inclusive). An event of a
//!   stage that is not the next one of any partial match changes nothing: out-of-order stages
//!   never advance a chain.
//! * For each depth the matcher keeps the partial match whose first stage is the most recent.
//!   A second credential access while a match is in progress therefore does not extend the
//!   running match's window (the report names the earliest start that still fits) but starts a
//!   fresher candidate beside it: if the older one expires, the fresher one carries on. This
//!   finds a complete chain whenever one exists inside the window, and the stages listed in
//!   the final progress are the ones that form it (the `seq` of each record).
//! * A [`ChainProgress`] is returned when a chain reaches a depth it had not reached
//!   (counting only partial matches still inside their window): the first stage, then each
//!   later one. Repeated events of a stage already reached do not re-emit. A completed chain is
//!   reset, so the next first-stage event starts (and reports) it again.
//! * Expiry: partial matches whose first stage is older than the window are dropped when the
//!   session sees its next event, or for every session by [`Trajectory::expire`].
//! * Processes are keyed by [`ProcessKey`] (pid and start time) so a reused pid never mixes
//!   histories. [`Trajectory::fork`] and [`Trajectory::exit`] keep the lineage; an exited
//!   process stays known (for its children's ancestry) until
//!   [`TrajectoryLimits::exited_retained`] later exits have pushed it out.
//! * Everything is bounded ([`TrajectoryLimits`]): histories drop their oldest entries;
//!   sessions and processes beyond their caps are evicted least-recently-active first. An
//!   evicted session loses its partial matches and its credential mark.

mod matcher;
mod tracker;

use guard_common::Detector;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::audit::{AuditRecord, Severity, Verdict, format_ts};
// Defined beside the policy's chains, whose stages it names; kept reachable from here.
pub use crate::policy::model::StageKind;

pub use self::tracker::Trajectory;

/// A process, told apart from later processes that reuse its pid by its start time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProcessKey {
    pub pid: u32,
    /// The task's start time (boot-relative ns) as the kernel reports it.
    pub start_ns: u64,
}

/// One significant event, as the daemon derives it from an audit record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Significant {
    /// The audit record's `seq`.
    pub seq: u64,
    /// Wall clock, ns since the Unix epoch.
    pub ts_ns: i128,
    /// The session cgroup's id.
    pub session: u64,
    pub session_name: String,
    pub process: ProcessKey,
    pub kind: StageKind,
}

impl Significant {
    /// The significant event for `record`, or `None` when the record is not one. The caller
    /// supplies what the record does not carry: the session cgroup id, the process's start
    /// time and the wall-clock time in ns.
    pub fn from_record(record: &AuditRecord, session: u64, process: ProcessKey, ts_ns: i128) -> Option<Self> {
        Some(Self {
            seq: record.seq,
            ts_ns,
            session,
            session_name: record.session.clone().unwrap_or_default(),
            process,
            kind: StageKind::from_record(record)?,
        })
    }
}

/// One entry of a session's or a process's history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    pub seq: u64,
    pub ts_ns: i128,
    pub process: ProcessKey,
    pub kind: StageKind,
}

/// A stage a chain reached, and the record that made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ReachedStage {
    pub stage: StageKind,
    pub seq: u64,
    pub pid: u32,
    pub process: ProcessKey,
    pub ts_ns: i128,
}

/// A chain reached a new stage in a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainProgress {
    pub chain_id: String,
    pub description: String,
    pub session: u64,
    pub session_name: String,
    /// In order; the last one is the stage just reached.
    pub stages_reached: Vec<ReachedStage>,
    pub stages_total: usize,
    pub complete: bool,
    pub severity: Severity,
    pub mitre: Option<String>,
    pub window_secs: u64,
}

impl ChainProgress {
    /// `credential_discovery (seq 10, pid 100) -> out_of_scope_use (seq 12, pid 101)`.
    pub fn stages_text(&self) -> String {
        let mut text = String::new();
        for (index, stage) in self.stages_reached.iter().enumerate() {
            if index > 0 {
                text.push_str(" -> ");
            }
            // Writing to a String cannot fail.
            let _ = write!(text, "{} (seq {}, pid {})", stage.stage.stage_name(), stage.seq, stage.pid);
        }
        text
    }

    /// The `chain` audit record for this progress; the caller stamps `seq` (e.g.
    /// `Recorder::stamp`) and may set `verdict` to what it did about it (`audit` here: the
    /// record itself blocks nothing).
    pub fn to_audit_record(&self) -> AuditRecord {
        let last = self.stages_reached.last();
        let state = if self.complete {
            format!("complete ({}/{} stages)", self.stages_reached.len(), self.stages_total)
        } else {
            format!("reached stage {}/{}", self.stages_reached.len(), self.stages_total)
        };
        let stages: Vec<serde_json::Value> = self
            .stages_reached
            .iter()
            .map(|stage| {
                serde_json::json!({
                    "stage": stage.stage.stage_name(),
                    "seq": stage.seq,
                    "pid": stage.pid,
                    "ts": format_ts(stage.ts_ns),
                })
            })
            .collect();
        AuditRecord {
            ts: format_ts(last.map_or(0, |stage| stage.ts_ns)),
            seq: 0,
            session: Some(self.session_name.clone()),
            cgroup_id: Some(self.session),
            pid: last.map(|stage| stage.pid),
            event: "chain".into(),
            verdict: Some(Verdict::Audit),
            detector: Some(Detector::Chain),
            rule: Some(self.chain_id.clone()),
            severity: Some(self.severity),
            mitre: self.mitre.clone(),
            reason: Some(format!(
                "chain {} {state} within {} s: {}",
                self.chain_id,
                self.window_secs,
                self.stages_text()
            )),
            details: Some(serde_json::json!({
                "chain": self.chain_id,
                "description": self.description,
                "complete": self.complete,
                "stages_total": self.stages_total,
                "window_secs": self.window_secs,
                "stages": stages,
            })),
            ..Default::default()
        }
    }
}

/// Bounds on what the trajectory keeps. Zero caps are raised to one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrajectoryLimits {
    pub max_sessions: usize,
    pub max_processes: usize,
    /// Significant events kept per session.
    pub session_history: usize,
    /// Significant events kept per process.
    pub process_history: usize,
    /// Exited processes kept for their children's lineage.
    pub exited_retained: usize,
}

impl Default for TrajectoryLimits {
    fn default() -> Self {
        // Worst case about 60 MiB: 16,384 processes x 64 entries x 48 bytes, plus 1,024
        // sessions x 256 entries.
        Self {
            max_sessions: 1_024,
            max_processes: 16_384,
            session_history: 256,
            process_history: 64,
            exited_retained: 4_096,
        }
    }
}

/// Counts of significant events per stage kind (not bounded by the history).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StageCounts {
    pub credential_discovery: u64,
    pub out_of_scope_use: u64,
    pub destructive_action: u64,
    pub self_protection: u64,
}

impl StageCounts {
    pub fn get(&self, kind: StageKind) -> u64 {
        match kind {
            StageKind::CredentialAccess => self.credential_discovery,
            StageKind::ScopeViolation => self.out_of_scope_use,
            StageKind::DestructiveAttempt => self.destructive_action,
            StageKind::SelfProtection => self.self_protection,
        }
    }

    fn bump(&mut self, kind: StageKind) {
        let count = match kind {
            StageKind::CredentialAccess => &mut self.credential_discovery,
            StageKind::ScopeViolation => &mut self.out_of_scope_use,
            StageKind::DestructiveAttempt => &mut self.destructive_action,
            StageKind::SelfProtection => &mut self.self_protection,
        };
        *count = count.saturating_add(1);
    }
}

/// A chain's state in one session, for `guard status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainState {
    pub chain_id: String,
    pub stages_total: usize,
    /// Deepest live partial match (0: none in progress), as of the last event or `expire`.
    pub stages_reached: usize,
    pub completions: u64,
    pub last_progress: Option<ChainProgress>,
}

/// What `guard status` shows about a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SessionSummary {
    pub session: u64,
    pub session_name: String,
    pub credential_marked: bool,
    pub counts: StageCounts,
    pub last_ts_ns: i128,
    pub chains: Vec<ChainState>,
}
