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

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::num::NonZeroUsize;

use lru::LruCache;
use serde::{Deserialize, Serialize};

use crate::audit::{AuditRecord, Severity, Verdict, format_ts};
use crate::policy::model::ChainSpec;
// Defined beside the policy's chains, whose stages it names; kept reachable from here.
pub use crate::policy::model::StageKind;

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
            detector: Some("chain".into()),
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

/// Partial matches of one chain in one session.
#[derive(Clone, Debug, Default)]
struct ChainMatch {
    /// `partial[k]`: the match with the most recent start that reached stages `0..=k`.
    /// Complete matches are reported and reset, so there are `stages - 1` slots.
    partial: Vec<Option<Vec<ReachedStage>>>,
    completions: u64,
    last_progress: Option<ChainProgress>,
}

impl ChainMatch {
    fn new(stages: usize) -> Self {
        Self { partial: vec![None; stages.saturating_sub(1)], completions: 0, last_progress: None }
    }

    fn depth(&self) -> usize {
        self.partial.iter().rposition(Option::is_some).map_or(0, |index| index + 1)
    }

    fn expire(&mut self, now_ns: i128, window_ns: i128) {
        for slot in &mut self.partial {
            if slot.as_ref().and_then(|stages| stages.first()).is_some_and(|first| now_ns - first.ts_ns > window_ns) {
                *slot = None;
            }
        }
    }
}

#[derive(Debug)]
struct SessionState {
    name: String,
    history: VecDeque<HistoryEntry>,
    counts: StageCounts,
    credential_marked: bool,
    last_ts_ns: i128,
    /// Index-aligned with `Trajectory::chains`.
    chains: Vec<ChainMatch>,
}

#[derive(Clone, Copy, Debug)]
struct ProcessEntry {
    seq: u64,
    ts_ns: i128,
    kind: StageKind,
}

#[derive(Debug, Default)]
struct ProcessState {
    parent: Option<ProcessKey>,
    session: Option<u64>,
    history: VecDeque<ProcessEntry>,
    /// The process or an ancestor (at fork time) touched a credential.
    credential_marked: bool,
    exited: bool,
}

/// Longest ancestry walked: deeper trees are cut (and a corrupt cycle cannot loop).
const MAX_ANCESTRY: usize = 256;

/// Per-session chain matching and bounded per-process/per-session histories.
pub struct Trajectory {
    chains: Vec<ChainSpec>,
    limits: TrajectoryLimits,
    sessions: LruCache<u64, SessionState>,
    processes: LruCache<ProcessKey, ProcessState>,
    /// Exited processes, oldest first, still kept for lineage.
    exited: VecDeque<ProcessKey>,
}

fn non_zero(value: usize) -> NonZeroUsize {
    NonZeroUsize::new(value).unwrap_or(NonZeroUsize::MIN)
}

fn push_bounded<T>(queue: &mut VecDeque<T>, item: T, limit: usize) {
    if limit == 0 {
        return;
    }
    while queue.len() >= limit {
        queue.pop_front();
    }
    queue.push_back(item);
}

impl Trajectory {
    pub fn new(chains: Vec<ChainSpec>) -> Self {
        Self::with_limits(chains, TrajectoryLimits::default())
    }

    pub fn with_limits(chains: Vec<ChainSpec>, limits: TrajectoryLimits) -> Self {
        Self {
            chains,
            limits,
            sessions: LruCache::new(non_zero(limits.max_sessions)),
            processes: LruCache::new(non_zero(limits.max_processes)),
            exited: VecDeque::new(),
        }
    }

    pub fn chains(&self) -> &[ChainSpec] {
        &self.chains
    }

    pub fn limits(&self) -> TrajectoryLimits {
        self.limits
    }

    /// Replaces the chains (policy reload). Partial matches of a chain whose id, stages and
    /// window are unchanged are kept; the others start over.
    pub fn set_chains(&mut self, chains: Vec<ChainSpec>) {
        let old = std::mem::take(&mut self.chains);
        for (_, session) in self.sessions.iter_mut() {
            let mut previous: Vec<Option<ChainMatch>> =
                std::mem::take(&mut session.chains).into_iter().map(Some).collect();
            session.chains = chains
                .iter()
                .map(|spec| {
                    let kept = old.iter().position(|before| {
                        before.id == spec.id && before.stages == spec.stages && before.window_secs == spec.window_secs
                    });
                    kept.and_then(|index| previous.get_mut(index).and_then(Option::take))
                        .unwrap_or_else(|| ChainMatch::new(spec.stages.len()))
                })
                .collect();
        }
        self.chains = chains;
    }

    /// Records a significant event and advances the session's chains. Returns one progress
    /// per chain that reached a new stage (at most one per chain).
    pub fn observe(&mut self, event: Significant) -> Vec<ChainProgress> {
        self.observe_process(&event);
        let chains = &self.chains;
        let limits = self.limits;
        let session = self.sessions.get_or_insert_mut(event.session, || SessionState {
            name: event.session_name.clone(),
            history: VecDeque::new(),
            counts: StageCounts::default(),
            credential_marked: false,
            last_ts_ns: event.ts_ns,
            chains: chains.iter().map(|spec| ChainMatch::new(spec.stages.len())).collect(),
        });
        if !event.session_name.is_empty() {
            session.name.clone_from(&event.session_name);
        }
        session.last_ts_ns = session.last_ts_ns.max(event.ts_ns);
        session.counts.bump(event.kind);
        if event.kind == StageKind::CredentialAccess {
            session.credential_marked = true;
        }
        push_bounded(
            &mut session.history,
            HistoryEntry { seq: event.seq, ts_ns: event.ts_ns, process: event.process, kind: event.kind },
            limits.session_history,
        );

        let reached = ReachedStage {
            stage: event.kind,
            seq: event.seq,
            pid: event.process.pid,
            process: event.process,
            ts_ns: event.ts_ns,
        };
        let mut progress = Vec::new();
        for (spec, state) in chains.iter().zip(session.chains.iter_mut()) {
            if let Some(report) = advance(spec, state, reached, event.session, &session.name) {
                state.last_progress = Some(report.clone());
                progress.push(report);
            }
        }
        progress
    }

    fn observe_process(&mut self, event: &Significant) {
        let limits = self.limits;
        let process = self.processes.get_or_insert_mut(event.process, ProcessState::default);
        process.session = Some(event.session);
        if event.kind == StageKind::CredentialAccess {
            process.credential_marked = true;
        }
        push_bounded(
            &mut process.history,
            ProcessEntry { seq: event.seq, ts_ns: event.ts_ns, kind: event.kind },
            limits.process_history,
        );
    }

    /// `parent` forked `child`: the child inherits the parent's session and credential mark.
    pub fn fork(&mut self, parent: ProcessKey, child: ProcessKey) {
        let (session, credential_marked) =
            self.processes.get(&parent).map_or((None, false), |state| (state.session, state.credential_marked));
        let state = self.processes.get_or_insert_mut(child, ProcessState::default);
        state.parent = Some(parent);
        state.session = state.session.or(session);
        state.credential_marked |= credential_marked;
    }

    /// `process` exited. It stays known for its children's lineage until
    /// `exited_retained` later exits push it out.
    pub fn exit(&mut self, process: ProcessKey) {
        let Some(state) = self.processes.peek_mut(&process) else {
            return;
        };
        if state.exited {
            return;
        }
        state.exited = true;
        self.exited.push_back(process);
        while self.exited.len() > self.limits.exited_retained {
            if let Some(oldest) = self.exited.pop_front()
                && self.processes.peek(&oldest).is_some_and(|state| state.exited)
            {
                self.processes.pop(&oldest);
            }
        }
    }

    /// Drops partial matches whose first stage is older than their chain's window at
    /// `now_ns` (wall clock), in every session.
    pub fn expire(&mut self, now_ns: i128) {
        let chains = &self.chains;
        for (_, session) in self.sessions.iter_mut() {
            for (spec, state) in chains.iter().zip(session.chains.iter_mut()) {
                state.expire(now_ns, spec.window_ns());
            }
        }
    }

    /// Forgets a session (its cgroup is gone).
    pub fn forget_session(&mut self, session: u64) {
        self.sessions.pop(&session);
    }

    /// The session touched a credential (a `credential` record) since it is tracked.
    pub fn session_marked_credential(&self, session: u64) -> bool {
        self.sessions.peek(&session).is_some_and(|state| state.credential_marked)
    }

    /// The process, or an ancestor before it forked it, touched a credential.
    pub fn process_marked_credential(&self, process: ProcessKey) -> bool {
        self.processes.peek(&process).is_some_and(|state| state.credential_marked)
    }

    /// Known ancestors, parent first, as far as the lineage is kept.
    pub fn ancestors(&self, process: ProcessKey) -> Vec<ProcessKey> {
        let mut ancestors = Vec::new();
        let mut current = process;
        while let Some(parent) = self.processes.peek(&current).and_then(|state| state.parent) {
            if ancestors.len() >= MAX_ANCESTRY || parent == process || ancestors.contains(&parent) {
                break;
            }
            ancestors.push(parent);
            current = parent;
        }
        ancestors
    }

    /// The session's significant events, oldest first (at most `session_history`).
    pub fn session_history(&self, session: u64) -> Vec<HistoryEntry> {
        self.sessions.peek(&session).map(|state| state.history.iter().copied().collect()).unwrap_or_default()
    }

    /// The process's significant events, oldest first (at most `process_history`).
    pub fn process_history(&self, process: ProcessKey) -> Vec<HistoryEntry> {
        self.processes
            .peek(&process)
            .map(|state| {
                state
                    .history
                    .iter()
                    .map(|entry| HistoryEntry { seq: entry.seq, ts_ns: entry.ts_ns, process, kind: entry.kind })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn session_summary(&self, session: u64) -> Option<SessionSummary> {
        let state = self.sessions.peek(&session)?;
        Some(SessionSummary {
            session,
            session_name: state.name.clone(),
            credential_marked: state.credential_marked,
            counts: state.counts,
            last_ts_ns: state.last_ts_ns,
            chains: self
                .chains
                .iter()
                .zip(&state.chains)
                .map(|(spec, chain)| ChainState {
                    chain_id: spec.id.clone(),
                    stages_total: spec.stages.len(),
                    stages_reached: chain.depth(),
                    completions: chain.completions,
                    last_progress: chain.last_progress.clone(),
                })
                .collect(),
        })
    }

    /// Every tracked session's summary, by session id.
    pub fn summaries(&self) -> Vec<SessionSummary> {
        let mut ids: Vec<u64> = self.sessions.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids.into_iter().filter_map(|id| self.session_summary(id)).collect()
    }

    pub fn tracked_sessions(&self) -> usize {
        self.sessions.len()
    }

    pub fn tracked_processes(&self) -> usize {
        self.processes.len()
    }
}

/// Feeds one stage to one chain's partial matches; returns the progress to report, if the
/// chain reached a depth it had not reached.
fn advance(
    spec: &ChainSpec,
    state: &mut ChainMatch,
    reached: ReachedStage,
    session: u64,
    session_name: &str,
) -> Option<ChainProgress> {
    let stages = spec.stages.len();
    if stages == 0 {
        return None;
    }
    if state.partial.len() != stages - 1 {
        *state = ChainMatch::new(stages);
    }
    state.expire(reached.ts_ns, spec.window_ns());
    let depth_before = state.depth();
    let report = |stages_reached: Vec<ReachedStage>, complete: bool| ChainProgress {
        chain_id: spec.id.clone(),
        description: spec.description.clone(),
        session,
        session_name: session_name.to_string(),
        stages_reached,
        stages_total: stages,
        complete,
        severity: spec.severity,
        mitre: spec.mitre.clone(),
        window_secs: spec.window_secs,
    };
    // Deepest stage first, so one event never fills two stages of the same match (a chain
    // may list a kind twice) and each extension reads the state before this event.
    let mut deepest_new: Option<usize> = None;
    for index in (0..stages).rev() {
        if spec.stages[index] != reached.stage {
            continue;
        }
        let extended = if index == 0 {
            vec![reached]
        } else {
            let Some(prefix) = state.partial[index - 1].as_ref() else {
                continue;
            };
            let mut extended = prefix.clone();
            extended.push(reached);
            extended
        };
        if index == stages - 1 {
            // Complete: report it and start over, so the chain can be reported again.
            state.partial.iter_mut().for_each(|slot| *slot = None);
            state.completions = state.completions.saturating_add(1);
            return Some(report(extended, true));
        }
        let start = extended[0].ts_ns;
        let fresher = state.partial[index].as_ref().is_none_or(|current| start > current[0].ts_ns);
        if fresher {
            state.partial[index] = Some(extended);
            deepest_new = deepest_new.max(Some(index));
        }
    }
    let index = deepest_new?;
    if index < depth_before {
        return None;
    }
    state.partial[index].clone().map(|stages_reached| report(stages_reached, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i128 = 1_000_000_000;
    const T0: i128 = 1_700_000_000 * SECOND;

    fn process(pid: u32) -> ProcessKey {
        ProcessKey { pid, start_ns: u64::from(pid) * 1_000 }
    }

    fn event(seq: u64, at_secs: i128, session: u64, process: ProcessKey, kind: StageKind) -> Significant {
        Significant {
            seq,
            ts_ns: T0 + at_secs * SECOND,
            session,
            session_name: format!("session-{session}"),
            process,
            kind,
        }
    }

    fn incident() -> Trajectory {
        Trajectory::new(vec![ChainSpec::incident()])
    }

    use StageKind::{CredentialAccess as Cred, DestructiveAttempt as Destroy, ScopeViolation as Scope};

    #[test]
    fn three_processes_of_one_session_complete_the_incident_chain() {
        let mut trajectory = incident();
        let first = trajectory.observe(event(10, 0, 7, process(100), Cred));
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].stages_reached.len(), 1);
        assert!(!first[0].complete);
        let second = trajectory.observe(event(12, 30, 7, process(101), Scope));
        assert_eq!(second[0].stages_reached.len(), 2);
        let last = trajectory.observe(event(15, 90, 7, process(102), Destroy));
        assert_eq!(last.len(), 1);
        let progress = &last[0];
        assert!(progress.complete);
        assert_eq!(progress.chain_id, "incident");
        assert_eq!(progress.severity, Severity::Critical);
        assert_eq!(progress.session, 7);
        assert_eq!(progress.session_name, "session-7");
        let seqs: Vec<(StageKind, u64, u32)> =
            progress.stages_reached.iter().map(|stage| (stage.stage, stage.seq, stage.pid)).collect();
        assert_eq!(seqs, vec![(Cred, 10, 100), (Scope, 12, 101), (Destroy, 15, 102)]);

        let record = progress.to_audit_record();
        assert_eq!(record.event, "chain");
        assert_eq!(record.rule.as_deref(), Some("incident"));
        let reason = record.reason.unwrap_or_default();
        assert!(reason.contains("credential_discovery (seq 10, pid 100)"), "{reason}");
        assert!(reason.contains("destructive_action (seq 15, pid 102)"), "{reason}");
        let details = record.details.unwrap_or_default();
        assert_eq!(details["stages"][1]["seq"], 12);
        assert_eq!(details["complete"], true);

        let summary = trajectory.session_summary(7).unwrap();
        assert!(summary.credential_marked);
        assert_eq!(summary.counts.get(Cred), 1);
        assert_eq!(summary.chains[0].completions, 1);
        assert_eq!(summary.chains[0].stages_reached, 0, "a completed chain starts over");
        assert!(summary.chains[0].last_progress.as_ref().is_some_and(|progress| progress.complete));
    }

    #[test]
    fn stages_out_of_order_do_not_advance() {
        let mut trajectory = incident();
        assert!(trajectory.observe(event(1, 0, 1, process(1), Destroy)).is_empty());
        assert!(trajectory.observe(event(2, 1, 1, process(1), Scope)).is_empty());
        assert_eq!(trajectory.observe(event(3, 2, 1, process(1), Cred)).len(), 1);
        // Skipping the middle stage does nothing, and that destructive attempt is not reused.
        assert!(trajectory.observe(event(4, 3, 1, process(1), Destroy)).is_empty());
        let scope = trajectory.observe(event(5, 4, 1, process(1), Scope));
        assert_eq!(scope[0].stages_reached.len(), 2);
        let done = trajectory.observe(event(6, 5, 1, process(1), Destroy));
        assert!(done[0].complete);
        let seqs: Vec<u64> = done[0].stages_reached.iter().map(|stage| stage.seq).collect();
        assert_eq!(seqs, vec![3, 5, 6]);
    }

    #[test]
    fn repeated_stages_do_not_re_emit_but_a_completed_chain_starts_again() {
        let mut trajectory = incident();
        assert_eq!(trajectory.observe(event(1, 0, 1, process(1), Cred)).len(), 1);
        assert!(trajectory.observe(event(2, 1, 1, process(2), Cred)).is_empty());
        assert_eq!(trajectory.observe(event(3, 2, 1, process(1), Scope)).len(), 1);
        assert!(trajectory.observe(event(4, 3, 1, process(1), Scope)).is_empty());
        assert!(trajectory.observe(event(5, 4, 1, process(1), Destroy))[0].complete);
        // After completion the next first stage reports again.
        let again = trajectory.observe(event(6, 5, 1, process(3), Cred));
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].stages_reached[0].seq, 6);
        assert!(trajectory.observe(event(7, 6, 1, process(3), Destroy)).is_empty());
    }

    #[test]
    fn window_is_inclusive_and_measured_from_the_first_stage() {
        // Just inside: the last stage exactly window_secs after the first.
        let mut trajectory = incident();
        trajectory.observe(event(1, 0, 1, process(1), Cred));
        trajectory.observe(event(2, 300, 1, process(1), Scope));
        let inside = trajectory.observe(event(3, 600, 1, process(1), Destroy));
        assert!(inside.first().is_some_and(|progress| progress.complete));

        // Just outside: one nanosecond later, the match has expired.
        let mut trajectory = incident();
        trajectory.observe(event(1, 0, 1, process(1), Cred));
        trajectory.observe(event(2, 300, 1, process(1), Scope));
        let mut late = event(3, 600, 1, process(1), Destroy);
        late.ts_ns += 1;
        assert!(trajectory.observe(late).is_empty());
        assert_eq!(trajectory.session_summary(1).unwrap().chains[0].stages_reached, 0);

        // A new first stage starts over (and reports again).
        let restart = trajectory.observe(event(4, 700, 1, process(1), Cred));
        assert_eq!(restart[0].stages_reached[0].seq, 4);
    }

    #[test]
    fn explicit_expire_drops_old_matches() {
        let mut trajectory = incident();
        trajectory.observe(event(1, 0, 1, process(1), Cred));
        trajectory.observe(event(2, 10, 1, process(1), Scope));
        trajectory.expire(T0 + 600 * SECOND);
        assert_eq!(trajectory.session_summary(1).unwrap().chains[0].stages_reached, 2);
        trajectory.expire(T0 + 601 * SECOND);
        assert_eq!(trajectory.session_summary(1).unwrap().chains[0].stages_reached, 0);
        // The credential mark is not windowed.
        assert!(trajectory.session_marked_credential(1));
    }

    #[test]
    fn a_later_credential_access_keeps_the_chain_alive_when_the_first_expires() {
        let mut trajectory = incident();
        trajectory.observe(event(1, 0, 1, process(1), Cred));
        // Not reported: the stage is already reached, but the fresher start is kept.
        assert!(trajectory.observe(event(2, 500, 1, process(2), Cred)).is_empty());
        let scope = trajectory.observe(event(3, 550, 1, process(3), Scope));
        // The reported match is the one with the most recent start.
        assert_eq!(scope[0].stages_reached[0].seq, 2);
        let done = trajectory.observe(event(4, 650, 1, process(4), Destroy));
        let seqs: Vec<u64> = done[0].stages_reached.iter().map(|stage| stage.seq).collect();
        assert_eq!(seqs, vec![2, 3, 4]);
    }

    #[test]
    fn reused_pid_keeps_separate_histories_and_the_session_chain() {
        let mut trajectory = incident();
        let old = ProcessKey { pid: 4242, start_ns: 1 };
        let new = ProcessKey { pid: 4242, start_ns: 2 };
        trajectory.observe(event(1, 0, 9, old, Cred));
        trajectory.exit(old);
        trajectory.observe(event(2, 1, 9, new, Scope));
        assert_eq!(trajectory.process_history(old).iter().map(|entry| entry.seq).collect::<Vec<_>>(), vec![1]);
        assert_eq!(trajectory.process_history(new).iter().map(|entry| entry.seq).collect::<Vec<_>>(), vec![2]);
        assert!(trajectory.process_marked_credential(old));
        assert!(!trajectory.process_marked_credential(new));
        let done = trajectory.observe(event(3, 2, 9, new, Destroy));
        assert!(done[0].complete);
        let keys: Vec<ProcessKey> = done[0].stages_reached.iter().map(|stage| stage.process).collect();
        assert_eq!(keys, vec![old, new, new]);
    }

    #[test]
    fn sessions_are_isolated() {
        let mut trajectory = incident();
        trajectory.observe(event(1, 0, 1, process(1), Cred));
        assert_eq!(trajectory.observe(event(2, 1, 2, process(2), Scope)).len(), 0);
        assert!(trajectory.observe(event(3, 2, 2, process(2), Destroy)).is_empty());
        assert!(trajectory.session_marked_credential(1));
        assert!(!trajectory.session_marked_credential(2));
        assert_eq!(trajectory.session_summary(2).unwrap().chains[0].stages_reached, 0);
        assert_eq!(trajectory.summaries().len(), 2);
    }

    #[test]
    fn histories_and_tables_stay_bounded() {
        let limits = TrajectoryLimits {
            max_sessions: 4,
            max_processes: 8,
            session_history: 16,
            process_history: 4,
            exited_retained: 2,
        };
        let mut trajectory = Trajectory::with_limits(vec![ChainSpec::incident()], limits);
        for seq in 0..1_000u64 {
            let session = seq % 6;
            let pid = (seq % 13) as u32;
            trajectory.observe(event(seq, seq as i128, session, process(pid), Scope));
            assert!(trajectory.tracked_sessions() <= 4);
            assert!(trajectory.tracked_processes() <= 8);
        }
        for session in 0..6 {
            assert!(trajectory.session_history(session).len() <= 16);
        }
        for pid in 0..13 {
            assert!(trajectory.process_history(process(pid)).len() <= 4);
        }
        // Oldest entries are the ones dropped.
        let last_session = trajectory.session_history(999 % 6);
        assert_eq!(last_session.last().map(|entry| entry.seq), Some(999));
        // Exited processes beyond the retention are forgotten.
        let mut trajectory = Trajectory::with_limits(vec![], limits);
        for pid in 0..5 {
            trajectory.fork(process(1000), process(pid));
            trajectory.exit(process(pid));
        }
        assert_eq!(trajectory.tracked_processes(), 2);
    }

    #[test]
    fn lineage_follows_fork_and_inherits_the_credential_mark() {
        let mut trajectory = incident();
        trajectory.observe(event(1, 0, 3, process(10), Cred));
        trajectory.fork(process(10), process(11));
        trajectory.fork(process(11), process(12));
        assert_eq!(trajectory.ancestors(process(12)), vec![process(11), process(10)]);
        assert!(trajectory.process_marked_credential(process(12)));
        // An exited parent stays known for its children's lineage.
        trajectory.exit(process(11));
        assert_eq!(trajectory.ancestors(process(12)), vec![process(11), process(10)]);
    }

    #[test]
    fn chains_listing_a_kind_twice_need_two_events() {
        let spec = ChainSpec {
            id: "double-scope".into(),
            description: String::new(),
            stages: vec![Scope, Scope],
            window_secs: 60,
            severity: Severity::High,
            mitre: None,
        };
        let mut trajectory = Trajectory::new(vec![spec]);
        let first = trajectory.observe(event(1, 0, 1, process(1), Scope));
        assert!(!first[0].complete);
        assert!(trajectory.observe(event(2, 1, 1, process(1), Scope))[0].complete);
    }

    #[test]
    fn reload_keeps_unchanged_chains() {
        let mut trajectory = incident();
        trajectory.observe(event(1, 0, 1, process(1), Cred));
        trajectory.observe(event(2, 1, 1, process(1), Scope));
        let mut shorter = ChainSpec::incident();
        shorter.id = "other".into();
        trajectory.set_chains(vec![shorter, ChainSpec::incident()]);
        let done = trajectory.observe(event(3, 2, 1, process(1), Destroy));
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].chain_id, "incident");
        assert!(done[0].complete);
    }
}
