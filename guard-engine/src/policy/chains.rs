//! The session-level sections: `chains` (trajectory detection), `escalations` (what a session
//! that touched a credential may no longer do) and `provenance` (secret fingerprints).
//!
//! The written forms (`Raw*`) are parsed here beside their validation so `raw.rs` only names
//! them; the validated forms are plain data copied into [`super::CompiledPolicy`].

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_saphyr::{Location, Spanned};

use super::error::Problems;
use super::raw::SpannedList;
use super::validate::{id_is_well_formed, validate_mitre};
use crate::audit::Severity;
use crate::trajectory::StageKind;

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

/// An extra escalation a policy may ask for in `escalations.on_credential`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum EscalationAction {
    FreezeSession,
    HoldAllExec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawChain {
    pub id: Spanned<String>,
    pub description: Option<Spanned<String>>,
    pub stages: SpannedList,
    pub window_secs: Option<Spanned<u64>>,
    pub severity: Option<Spanned<Severity>>,
    pub mitre: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEscalations {
    pub on_credential: Option<Spanned<Vec<Spanned<EscalationAction>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProvenance {
    pub enabled: Option<bool>,
}

/// The validated `chains` list: the built-in incident chain when the section is absent, the
/// written chains plus the incident chain (unless redefined) otherwise, nothing for `[]`.
pub(crate) fn validate_chains(
    section: Option<&Spanned<Vec<Spanned<RawChain>>>>,
    problems: &mut Problems,
    warnings: &mut Vec<String>,
) -> Vec<ChainSpec> {
    let Some(section) = section else {
        return vec![ChainSpec::incident()];
    };
    if section.value.is_empty() {
        warnings.push(
            "`chains: []` disables trajectory detection, including the built-in `incident` chain \
             (credential discovery -> out-of-scope use -> destructive action)"
                .into(),
        );
        return Vec::new();
    }
    let mut seen: HashMap<&str, Location> = HashMap::new();
    let mut chains = Vec::new();
    for chain in &section.value {
        let raw = &chain.value;
        let id = raw.id.value.as_str();
        let mut ok = true;
        if !id_is_well_formed(id) {
            problems.at_spanned(
                &raw.id,
                format!("bad chain id `{id}`: use 1-64 letters, digits, `-`, `_`, `.` or `:`, starting with a letter or digit"),
            );
            ok = false;
        } else if let Some(first) = seen.get(id) {
            problems.at_spanned(
                &raw.id,
                format!("duplicate chain id `{id}` (first used at line {}, column {})", first.line(), first.column()),
            );
            ok = false;
        } else {
            seen.insert(id, raw.id.referenced);
        }
        let mut stages = Vec::new();
        for stage in &raw.stages.value {
            match StageKind::from_stage_name(&stage.value) {
                Some(kind) => stages.push(kind),
                None => {
                    let known: Vec<&str> = StageKind::ALL.iter().map(|kind| kind.stage_name()).collect();
                    problems.at_spanned(
                        stage,
                        format!("unknown stage `{}`: expected one of {}", stage.value, known.join(", ")),
                    );
                    ok = false;
                }
            }
        }
        if raw.stages.value.len() < 2 {
            problems.at_spanned(&raw.stages, "a chain needs at least two stages");
            ok = false;
        }
        let window_secs = match &raw.window_secs {
            Some(window) if window.value == 0 || window.value > MAX_CHAIN_WINDOW_SECS => {
                problems.at_spanned(window, format!("window_secs must be between 1 and {MAX_CHAIN_WINDOW_SECS}"));
                ok = false;
                DEFAULT_CHAIN_WINDOW_SECS
            }
            Some(window) => window.value,
            None => DEFAULT_CHAIN_WINDOW_SECS,
        };
        // validate_mitre reports a malformed id; the default is unused because it is present.
        let mitre = raw.mitre.as_ref().map(|mitre| validate_mitre(Some(mitre), "", problems));
        if ok {
            chains.push(ChainSpec {
                id: id.to_string(),
                description: raw.description.as_ref().map_or_else(|| id.to_string(), |text| text.value.clone()),
                stages,
                window_secs,
                severity: raw.severity.as_ref().map_or(Severity::Critical, |severity| severity.value),
                mitre,
            });
        }
    }
    // The incident chain is built in: a list that does not redefine it still gets it.
    if !seen.contains_key(INCIDENT_CHAIN_ID) {
        chains.insert(0, ChainSpec::incident());
    }
    chains
}

pub(crate) fn validate_escalations(section: Option<&Spanned<RawEscalations>>) -> EscalationPolicy {
    let mut policy = EscalationPolicy::default();
    let actions = section.and_then(|section| section.value.on_credential.as_ref());
    // Listing an action twice is harmless: it is the same flag.
    for action in actions.iter().flat_map(|list| list.value.iter()) {
        match action.value {
            EscalationAction::FreezeSession => policy.freeze_session = true,
            EscalationAction::HoldAllExec => policy.hold_all_exec = true,
        }
    }
    policy
}

pub(crate) fn validate_provenance(
    section: Option<&Spanned<RawProvenance>>,
    warnings: &mut Vec<String>,
) -> ProvenanceSettings {
    let enabled = section.and_then(|section| section.value.enabled).unwrap_or(true);
    if !enabled {
        warnings.push(
            "provenance is disabled: secrets read from credential files are not followed into later commands \
             (known token formats are still redacted from the audit stream)"
                .into(),
        );
    }
    ProvenanceSettings { enabled }
}
