//! The session-level sections as validated: `chains` (trajectory detection, with the stage
//! kinds they are made of), `escalations` (what a session that touched a credential may no
//! longer do) and `provenance` (secret fingerprints). Plain data, copied into
//! [`CompiledPolicy`](crate::policy::CompiledPolicy); the written forms are in `raw`.

use guard_common::Detector;
use serde::{Deserialize, Serialize};

use crate::audit::{AuditRecord, Severity, Verdict};

/// Id of the built-in chain (see [`ChainSpec::incident`]).
pub const INCIDENT_CHAIN_ID: &str = "incident";
/// `window_secs` when a chain leaves it out, and the incident chain's window.
pub const DEFAULT_CHAIN_WINDOW_SECS: u64 = 600;
/// Longest accepted window: state older than a day is not kept.
pub const MAX_CHAIN_WINDOW_SECS: u64 = 86_400;

/// A sequence of stages that, reached in order within `window_secs` by any processes of one
/// session, is reported as an attack (see [`crate::trajectory`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct ChainSpec {
    pub id: String,
    pub description: String,
    /// At least two when written in a policy, in the order they must happen.
    pub stages: Vec<StageKind>,
    /// Measured from the first stage's time to the last stage's time.
    pub window_secs: u64,
    pub severity: Severity,
    pub mitre: Option<String>,
}

impl ChainSpec {
    /// The seed incident: credential discovery, then out-of-scope use, then an irreversible
    /// action, within ten minutes. Always present unless the policy says `chains: []` or
    /// redefines a chain with the id `incident`.
    pub fn incident() -> Self {
        Self {
            id: INCIDENT_CHAIN_ID.into(),
            description: "credential discovery, then out-of-scope use, then a destructive action".into(),
            stages: vec![StageKind::CredentialAccess, StageKind::ScopeViolation, StageKind::DestructiveAttempt],
            window_secs: DEFAULT_CHAIN_WINDOW_SECS,
            severity: Severity::Critical,
            mitre: Some("T1485".into()),
        }
    }

    pub fn window_ns(&self) -> i128 {
        i128::from(self.window_secs) * 1_000_000_000
    }
}

/// What happens to a session once it touched a credential (a `credential` record).
///
/// Always on, whatever the policy says: the session's out-of-scope network use is denied and
/// its destructive commands are held for approval, whatever the matching rule's mode or
/// action. These flags add to that.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct EscalationPolicy {
    /// Freeze the whole session cgroup (`cgroup.freeze`) until an operator thaws it.
    pub freeze_session: bool,
    /// Hold every exec of the session for approval, not only destructive ones.
    pub hold_all_exec: bool,
}

/// Provenance tracking of secrets (see [`crate::provenance`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct ProvenanceSettings {
    /// Learn fingerprints of secrets read from credential files and flag their later use.
    /// Redaction of known token formats in the audit stream stays on regardless.
    pub enabled: bool,
}

impl Default for ProvenanceSettings {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// The kind of step a significant event is. Serialised as the policy's stage names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum StageKind {
    /// A credential was opened (killed, or let through in monitor mode).
    #[serde(rename = "credential_discovery")]
    CredentialAccess,
    /// A network destination or file outside the session's scope (denied, killed or audited).
    #[serde(rename = "out_of_scope_use")]
    ScopeViolation,
    /// A destructive command (killed, held or audited).
    #[serde(rename = "destructive_action")]
    DestructiveAttempt,
    /// A session process signalled or traced a held task or the daemon.
    #[serde(rename = "self_protection")]
    SelfProtection,
}

impl StageKind {
    pub const ALL: [StageKind; 4] = [
        StageKind::CredentialAccess,
        StageKind::ScopeViolation,
        StageKind::DestructiveAttempt,
        StageKind::SelfProtection,
    ];

    /// The name used for this stage in the policy's `chains` and in `chain` records.
    pub fn stage_name(self) -> &'static str {
        match self {
            StageKind::CredentialAccess => "credential_discovery",
            StageKind::ScopeViolation => "out_of_scope_use",
            StageKind::DestructiveAttempt => "destructive_action",
            StageKind::SelfProtection => "self_protection",
        }
    }

    pub fn from_stage_name(name: &str) -> Option<Self> {
        StageKind::ALL.into_iter().find(|kind| kind.stage_name() == name)
    }

    /// The stage an audit record represents, if any.
    ///
    /// A record is significant when a detector flagged it: any verdict but `allow` (the
    /// detectors only produce kill/audit for credentials, deny/kill/audit for scope and
    /// kill/hold/audit for destructive commands; a verdict they do not produce today still
    /// counts, so a new enforcement path cannot hide a step). `self_protection` records count
    /// whatever their verdict. `chain` records never count, so reports cannot feed back.
    pub fn from_record(record: &AuditRecord) -> Option<Self> {
        if record.event == "self_protection" {
            return Some(StageKind::SelfProtection);
        }
        let flagged = matches!(record.verdict, Some(verdict) if verdict != Verdict::Allow);
        // A credential read by its own consumer (kubectl and its kubeconfig) is no discovery.
        if !flagged || (record.consumer.is_some() && record.detector == Some(Detector::Credential)) {
            return None;
        }
        match record.detector? {
            Detector::Credential => Some(StageKind::CredentialAccess),
            Detector::ScopeNetwork | Detector::ScopeFile | Detector::Confinement => Some(StageKind::ScopeViolation),
            Detector::Destructive => Some(StageKind::DestructiveAttempt),
            Detector::SelfProtection => Some(StageKind::SelfProtection),
            Detector::None | Detector::Chain | Detector::Escalation | Detector::Provenance => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use StageKind::{CredentialAccess as Cred, DestructiveAttempt as Destroy, ScopeViolation as Scope};

    #[test]
    fn records_map_to_stages() {
        let record = |event: &str, detector: Option<&str>, verdict: Option<Verdict>| AuditRecord {
            event: event.into(),
            detector: detector.map(|name| Detector::parse(name).expect("a detector name")),
            verdict,
            ..Default::default()
        };
        let cases = [
            (record("open", Some("credential"), Some(Verdict::Kill)), Some(Cred)),
            (record("open", Some("credential"), Some(Verdict::Audit)), Some(Cred)),
            (record("open", Some("credential"), Some(Verdict::Allow)), None),
            (record("connect", Some("scope_network"), Some(Verdict::Deny)), Some(Scope)),
            // scope.unix rules are network scope rules (the rule id tells them apart).
            (record("unix_connect", Some("scope_network"), Some(Verdict::Audit)), Some(Scope)),
            (record("unix_sendmsg", Some("scope_network"), Some(Verdict::Deny)), Some(Scope)),
            (record("open", Some("scope_file"), Some(Verdict::Audit)), Some(Scope)),
            (record("exec", Some("destructive"), Some(Verdict::Hold)), Some(Destroy)),
            (record("exec", Some("destructive"), Some(Verdict::Kill)), Some(Destroy)),
            (record("exec", None, Some(Verdict::Allow)), None),
            (record("chain", Some("chain"), Some(Verdict::Audit)), None),
            (record("self_protection", None, Some(Verdict::Deny)), Some(StageKind::SelfProtection)),
        ];
        for (record, expected) in cases {
            assert_eq!(StageKind::from_record(&record), expected, "{record:?}");
        }
        for kind in StageKind::ALL {
            assert_eq!(StageKind::from_stage_name(kind.stage_name()), Some(kind));
            assert_eq!(serde_json::to_value(kind).ok(), Some(serde_json::Value::from(kind.stage_name())));
        }
    }
}
