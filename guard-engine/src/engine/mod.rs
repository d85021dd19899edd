//! The engine: every decision the daemon makes about what sessions do, in one owner.
//!
//! [`Engine`] holds the recorder, the trajectory, the provenance store, the destructive
//! evaluator and consumer table, what it knows per session ([`marks`]) and the commands held
//! for a person ([`holds`]). The policy reaches it through one door, [`Engine::apply_policy`],
//! at start and at every reload or rescan. It decides; it does not act: each input gives a
//! list of [`Action`]s the daemon carries out against the kernel, in order. What it must read
//! from the machine (/proc, the session cgroups, the kernel's session marks) it reads through
//! a [`Machine`], which tests fake.
//!
//! For a replay or a benchmark: [`Engine::on_event`] takes one raw ring-buffer record
//! (`event::encode` makes them), and [`Action::into_record`] gives the audit record each
//! action writes; with [`Offline`] as the machine nothing outside the process is touched:
//!
//! ```
//! use guard_engine::engine::{Action, Engine, EnginePolicy, EngineSettings, Offline, synth};
//! use guard_engine::{policy::DEFAULT_POLICY_YAML, records::ClockBase};
//!
//! let policy = EnginePolicy::parse("default", DEFAULT_POLICY_YAML).expect("the default policy parses");
//! let settings = EngineSettings { fingerprint_key: [0; 32], clock: ClockBase::default(), enforce: true };
//! let mut engine = Engine::new(settings, policy.as_ref());
//! let machine = Offline::default();
//! let bytes = synth::fork(synth::Task::new(7, 100), synth::Task::new(7, 101));
//! let lines: Vec<String> = engine
//!     .on_event(&bytes, &machine)
//!     .into_iter()
//!     .filter_map(Action::into_record)
//!     .filter_map(|record| serde_json::to_string(&record).ok())
//!     .collect();
//! assert!(lines.iter().any(|line| line.contains("\"event\":\"fork\"")));
//! ```

pub mod action;
pub mod exec;
mod follow;
pub mod holds;
pub mod machine;
pub mod marks;
pub mod synth;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_exec;

use std::collections::BTreeMap;
use std::time::Duration;

use guard_common::{DevIno, action as kernel_action};

pub use action::{Action, Escalate, Freeze, GrantStep, RegisterWorkspace, Settle, Signal};
pub use exec::{ExecJudgement, ExecVerdict};
pub use follow::MAX_CREDENTIAL_FILE;
pub use holds::PendingEntry;
pub use machine::{HeldView, Machine, Now, Offline, SessionCgroup};

use crate::{
    audit::AuditRecord,
    consumer::ConsumerTable,
    destructive::DestructiveEvaluator,
    event::{Body, KernelEvent, decode},
    policy::{CompileContext, CompiledPolicy, EscalationPolicy, Policy, PolicyError, parse_policy},
    provenance::ProvenanceStore,
    records::{ClockBase, Recorder, RuleInfo},
    trajectory::Trajectory,
};

/// What the engine takes from a loaded policy (borrowed: it keeps its own copies).
#[derive(Clone, Copy, Debug)]
pub struct PolicyRef<'a> {
    pub compiled: &'a CompiledPolicy,
    pub evaluator: &'a DestructiveEvaluator,
    /// The consumers resolved against the machine (empty when none are).
    pub consumers: &'a ConsumerTable,
    /// The `scope.unix` sockets found on the machine, by identity: the kernel's inode hooks
    /// send no path (empty when none are).
    pub unix_names: &'a BTreeMap<DevIno, String>,
}

/// A policy compiled for the engine alone (tests, benchmarks): no machine scan, no consumers
/// resolved.
#[derive(Clone, Debug)]
pub struct EnginePolicy {
    pub compiled: CompiledPolicy,
    pub evaluator: DestructiveEvaluator,
    pub consumers: ConsumerTable,
    pub unix_names: BTreeMap<DevIno, String>,
}

impl EnginePolicy {
    pub fn new(policy: &Policy, homes: Vec<String>) -> Self {
        Self {
            compiled: policy.compile(&CompileContext::with_homes(homes)),
            evaluator: DestructiveEvaluator::new(policy),
            consumers: ConsumerTable::default(),
            unix_names: BTreeMap::new(),
        }
    }

    /// Parses and compiles a policy text (`source_name` prefixes every problem).
    pub fn parse(source_name: &str, text: &str) -> Result<Self, PolicyError> {
        Ok(Self::new(&parse_policy(source_name, text)?, Vec::new()))
    }

    pub fn as_ref(&self) -> PolicyRef<'_> {
        PolicyRef {
            compiled: &self.compiled,
            evaluator: &self.evaluator,
            consumers: &self.consumers,
            unix_names: &self.unix_names,
        }
    }
}

/// What holds for the whole run, whatever the policy.
#[derive(Clone, Copy)]
pub struct EngineSettings {
    /// Keys the secrets' fingerprints: fresh random bytes per run.
    pub fingerprint_key: [u8; 32],
    pub clock: ClockBase,
    /// False when the global kill switch makes every rule monitor-only.
    pub enforce: bool,
}

/// The rules as audit records name them (index = `RuleRef.rule`).
pub fn rule_infos(compiled: &CompiledPolicy) -> Vec<RuleInfo> {
    compiled
        .rules
        .iter()
        .map(|r| RuleInfo {
            id: r.id.clone(),
            detector: r.detector,
            severity: r.severity,
            mitre: (!r.mitre.is_empty()).then(|| r.mitre.clone()),
            description: r.description.clone(),
        })
        .collect()
}

/// The policy lists `$CWD` among its write (or read) roots: each session's workspace counts.
pub fn wants_session_workspace(compiled: &CompiledPolicy) -> bool {
    compiled.files.as_ref().is_some_and(|files| files.write_roots_session_cwd || files.read_allow_session_cwd)
}

/// The engine's copy of what the policy decides.
struct Applied {
    evaluator: DestructiveEvaluator,
    consumers: ConsumerTable,
    escalation: EscalationPolicy,
    /// `provenance.enabled`: learn and follow secrets.
    provenance: bool,
    hold_timeout: Duration,
    /// `$CWD` is a root: the session's workspace is registered with the kernel.
    session_workspace: bool,
}

impl Applied {
    fn of(policy: PolicyRef<'_>) -> Self {
        Self {
            evaluator: policy.evaluator.clone(),
            consumers: policy.consumers.clone(),
            escalation: policy.compiled.escalation,
            provenance: policy.compiled.provenance.enabled,
            hold_timeout: Duration::from_secs(policy.compiled.hold_timeout_secs),
            session_workspace: wants_session_workspace(policy.compiled),
        }
    }
}

/// How much state the engine holds (counts, and an estimate of the bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    pub trajectory_sessions: usize,
    pub trajectory_processes: usize,
    pub recorder_processes: usize,
    pub fingerprints: usize,
    pub sessions: usize,
    pub pending_holds: usize,
    pub bytes: usize,
}

pub struct Engine {
    recorder: Recorder,
    trajectory: Trajectory,
    provenance: ProvenanceStore,
    clock: ClockBase,
    enforce: bool,
    policy: Applied,
    marks: marks::SessionMarks,
    holds: holds::Holds,
}

impl Engine {
    pub fn new(settings: EngineSettings, policy: PolicyRef<'_>) -> Self {
        let mut engine = Self {
            recorder: Recorder::new(Vec::new(), settings.clock),
            trajectory: Trajectory::new(Vec::new()),
            provenance: ProvenanceStore::new(settings.fingerprint_key),
            clock: settings.clock,
            enforce: settings.enforce,
            policy: Applied::of(policy),
            marks: marks::SessionMarks::default(),
            holds: holds::Holds::default(),
        };
        engine.apply_policy(policy);
        engine
    }

    /// The policy takes effect: rule names, unix socket names, chains (partial matches of unchanged chains
    /// kept), destructive rules, consumers, escalations, provenance, hold timeout, workspace
    /// registration. At start, at every reload and every rescan.
    pub fn apply_policy(&mut self, policy: PolicyRef<'_>) {
        self.recorder.set_rules(rule_infos(policy.compiled));
        self.recorder.set_unix_names(policy.unix_names.clone());
        self.trajectory.set_chains(policy.compiled.chains.clone());
        self.policy = Applied::of(policy);
    }

    /// One raw ring-buffer record: decode, record, judge (held execs), follow. An
    /// undecodable record gives a `decode_error` record.
    pub fn on_event(&mut self, bytes: &[u8], machine: &dyn Machine) -> Vec<Action> {
        match decode(bytes) {
            Ok(event) => self.on_kernel_event(&event, machine),
            Err(err) => {
                let record = self.recorder.daemon_record(
                    "decode_error",
                    machine.now().wall_ns,
                    format!("undecodable kernel event: {err}"),
                );
                vec![Action::Emit(self.redacted(record))]
            }
        }
    }

    /// One decoded kernel event.
    pub fn on_kernel_event(&mut self, event: &KernelEvent, machine: &dyn Machine) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.marks.sight(event.head.session_id) {
            self.first_sight(event, machine, &mut actions);
        }
        let extra = self.enrich(event, machine);
        let mut record = self.recorder.record(event, extra);
        let mut held_env = None;
        if event.head.action == kernel_action::HOLD && matches!(event.body, Body::Exec { .. }) {
            let judged = self.judge_exec(event, &mut record, machine);
            let redacted = self.redacted(record.clone());
            actions.extend(self.carry_out_judgement(event, &judged, redacted));
            held_env = judged.env;
        } else if matches!(event.body, Body::Fork { .. } | Body::Exit { .. }) {
            // Pids and counters only: nothing to redact (and these are the most frequent).
            actions.push(Action::Emit(record.clone()));
        } else {
            actions.push(Action::Emit(self.redacted(record.clone())));
        }
        self.follow(event, &record, held_env, machine, &mut actions);
        actions
    }

    /// Once a second or so: holds past their timeout or whose task is gone, and chain matches
    /// past their window.
    pub fn tick(&mut self, machine: &dyn Machine) -> Vec<Action> {
        let actions = self.expire_holds(machine);
        self.trajectory.expire(machine.now().wall_ns);
        actions
    }

    /// A record about the daemon itself (start, reload, drops), stamped into the sequence.
    pub fn daemon_record(&mut self, event: &str, now_wall_ns: i128, reason: String) -> AuditRecord {
        self.recorder.daemon_record(event, now_wall_ns, reason)
    }

    /// Stamp a record built elsewhere into the sequence.
    pub fn stamp(&mut self, record: &mut AuditRecord) {
        self.recorder.stamp(record);
    }

    /// The record as it may be written: known secrets and token formats redacted from argv
    /// and reason. Every record the engine's actions carry already is.
    pub fn redact(&self, record: &AuditRecord) -> AuditRecord {
        let mut redacted = record.clone();
        if let Some(argv) = &record.argv {
            redacted.argv = Some(self.provenance.redact_argv(argv));
        }
        if let Some(reason) = &record.reason {
            redacted.reason = Some(self.provenance.redact_text(reason));
        }
        redacted
    }

    fn redacted(&self, record: AuditRecord) -> AuditRecord {
        // No secret value ever reaches the audit stream.
        if record.argv.is_none() && record.reason.is_none() { record } else { self.redact(&record) }
    }

    /// The trajectory's view of a session for `guard status`, if there is anything to say.
    pub fn session_trajectory(&self, session: u64) -> Option<String> {
        let used = self.marks.get(session).map(|mark| &mark.consumers_used).filter(|used| !used.is_empty());
        let summary = self.trajectory.session_summary(session)?;
        let mut parts = Vec::new();
        if let Some(used) = used {
            parts
                .push(format!("credential used by its tool ({})", used.iter().cloned().collect::<Vec<_>>().join(", ")));
        }
        if summary.credential_marked {
            parts.push("touched a credential: escalated".to_string());
        }
        for chain in &summary.chains {
            if chain.stages_reached > 0 {
                parts.push(format!("chain {} at {}/{}", chain.chain_id, chain.stages_reached, chain.stages_total));
            }
            if chain.completions > 0 {
                parts.push(format!("chain {} completed {} time(s)", chain.chain_id, chain.completions));
            }
        }
        Some(parts.join("; ")).filter(|text| !text.is_empty())
    }

    /// The session touched a credential outside its consumers (as far as the engine saw).
    pub fn session_escalated(&self, session: u64) -> bool {
        self.marks.escalated(session)
    }

    pub fn trajectory(&self) -> &Trajectory {
        &self.trajectory
    }

    pub fn provenance(&self) -> &ProvenanceStore {
        &self.provenance
    }

    pub fn last_seq(&self) -> u64 {
        self.recorder.last_seq()
    }

    pub fn footprint(&self) -> Footprint {
        use std::mem::size_of;
        // Per-entry guesses where the tables are not ours to walk: a recorder entry is a pid
        // and a short exe path; a fingerprint is 32 bytes and an origin with a path.
        let recorder = self.recorder.tracked_processes() * (size_of::<u32>() + size_of::<Option<String>>() + 64 + 16);
        let fingerprints = self.provenance.len() * (32 + size_of::<crate::provenance::Origin>() + 96 + 16);
        let pending = self.holds.pending.len() * (size_of::<PendingEntry>() + 256);
        Footprint {
            trajectory_sessions: self.trajectory.tracked_sessions(),
            trajectory_processes: self.trajectory.tracked_processes(),
            recorder_processes: self.recorder.tracked_processes(),
            fingerprints: self.provenance.len(),
            sessions: self.marks.len(),
            pending_holds: self.holds.pending.len(),
            bytes: self.trajectory.memory_estimate() + recorder + fingerprints + self.marks.memory_estimate() + pending,
        }
    }
}
