//! [`Trajectory`]: per-session chain matching, process lineage and bounded histories.

use std::collections::VecDeque;
use std::num::NonZeroUsize;

use lru::LruCache;

use super::matcher::{ChainMatch, advance};
use super::{
    ChainProgress, ChainState, HistoryEntry, ProcessKey, ReachedStage, SessionSummary, Significant, StageCounts,
    StageKind, TrajectoryLimits,
};
use crate::policy::model::ChainSpec;

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

    /// A rough count of the heap bytes held (tables, histories, partial matches), to show
    /// that the state stays bounded.
    pub fn memory_estimate(&self) -> usize {
        use std::mem::size_of;
        // An LRU node holds key, value and two links.
        let link = 2 * size_of::<usize>();
        let processes: usize = self
            .processes
            .iter()
            .map(|(_, state)| {
                size_of::<ProcessKey>()
                    + size_of::<ProcessState>()
                    + link
                    + state.history.capacity() * size_of::<ProcessEntry>()
            })
            .sum();
        let sessions: usize = self
            .sessions
            .iter()
            .map(|(_, state)| {
                let partial: usize = state
                    .chains
                    .iter()
                    .map(|chain| {
                        size_of::<ChainMatch>()
                            + chain.partial.capacity() * size_of::<Option<Vec<ReachedStage>>>()
                            + chain
                                .partial
                                .iter()
                                .flatten()
                                .map(|m| m.capacity() * size_of::<ReachedStage>())
                                .sum::<usize>()
                    })
                    .sum();
                size_of::<u64>()
                    + size_of::<SessionState>()
                    + link
                    + state.name.capacity()
                    + state.history.capacity() * size_of::<HistoryEntry>()
                    + partial
            })
            .sum();
        processes + sessions + self.exited.capacity() * size_of::<ProcessKey>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Severity;

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
