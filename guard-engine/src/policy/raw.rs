//! The policy file as written: serde types with source spans, before validation.
//!
//! Every struct denies unknown keys so a typo (`alow:`) is an error rather than a silently
//! missing rule.

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::model::{ExecAction, Mode, OperandSelection};
use crate::audit::{RecordLevel, Severity};

pub(crate) type SpannedList = Spanned<Vec<Spanned<String>>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    pub mode: Option<Spanned<Mode>>,
    pub cgroup_roots: Option<SpannedList>,
    pub credentials: Option<Spanned<RawCredentials>>,
    pub scope: Option<Spanned<RawScope>>,
    pub destructive: Option<Spanned<RawDestructive>>,
    pub chains: Option<SpannedRules<RawChain>>,
    pub escalations: Option<Spanned<RawEscalations>>,
    pub provenance: Option<Spanned<RawProvenance>>,
    pub confinement: Option<Spanned<RawConfinement>>,
    pub audit: Option<Spanned<RawAudit>>,
    pub kubernetes: Option<Spanned<RawKubernetes>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKubernetes {
    pub enabled: Option<Spanned<bool>>,
    pub root: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCredentials {
    pub rules: SpannedRules<RawCredentialRule>,
}

pub(crate) type SpannedRules<T> = Spanned<Vec<Spanned<T>>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCredentialRule {
    pub id: Spanned<String>,
    pub mode: Option<Spanned<Mode>>,
    pub severity: Option<Spanned<Severity>>,
    pub mitre: Option<Spanned<String>>,
    pub description: Option<Spanned<String>>,
    pub paths: Option<SpannedList>,
    pub names: Option<SpannedList>,
    /// Reading another process's `/proc/<pid>/environ`.
    pub proc_environ: Option<Spanned<bool>>,
    /// Programs that own these files: their reads are allowed (and recorded once).
    pub consumers: Option<SpannedList>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScope {
    pub network: Option<Spanned<RawNetworkScope>>,
    pub files: Option<Spanned<RawFileScope>>,
    pub unix: Option<Spanned<RawUnixScope>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNetworkScope {
    pub mode: Option<Spanned<Mode>>,
    pub severity: Option<Spanned<Severity>>,
    pub mitre: Option<Spanned<String>>,
    pub description: Option<Spanned<String>>,
    pub allow_loopback: Option<bool>,
    /// Required: `allow: []` is the explicit "nothing but loopback".
    pub allow: SpannedList,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFileScope {
    pub mode: Option<Spanned<Mode>>,
    pub severity: Option<Spanned<Severity>>,
    pub mitre: Option<Spanned<String>>,
    pub description: Option<Spanned<String>>,
    pub write_roots: SpannedList,
    pub read_allow: Option<SpannedList>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUnixScope {
    pub mode: Option<Spanned<Mode>>,
    pub severity: Option<Spanned<Severity>>,
    pub mitre: Option<Spanned<String>>,
    pub description: Option<Spanned<String>>,
    /// Socket paths (globs allowed) and `$GUARD_SOCKET`.
    pub paths: SpannedList,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDestructive {
    pub hold_timeout_secs: Option<Spanned<u64>>,
    pub scratch_roots: Option<SpannedList>,
    pub rules: SpannedRules<RawDestructiveRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDestructiveRule {
    pub id: Spanned<String>,
    pub mode: Option<Spanned<Mode>>,
    pub severity: Option<Spanned<Severity>>,
    pub mitre: Option<Spanned<String>>,
    pub description: Option<Spanned<String>>,
    pub action: Option<Spanned<ExecAction>>,
    #[serde(rename = "match")]
    pub matcher: Spanned<RawMatch>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMatch {
    pub programs: SpannedList,
    pub all: Option<Spanned<Vec<RawCondition>>>,
    pub any: Option<Spanned<Vec<RawCondition>>>,
}

/// One condition: a single-key mapping such as `flag: [-f, --force]`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum RawCondition {
    Flag(SpannedList),
    Subcommand(SpannedList),
    ArgRegex(Spanned<String>),
    OptionValue(Spanned<RawOptionValue>),
    Script(Spanned<RawScript>),
    OutsideScratch(Spanned<OperandSelection>),
    Any(Spanned<Vec<RawCondition>>),
    All(Spanned<Vec<RawCondition>>),
    Not(Box<RawCondition>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOptionValue {
    pub options: SpannedList,
    pub regex: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScript {
    pub options: Option<SpannedList>,
    pub positional: Option<bool>,
    pub stdin: Option<bool>,
    pub split: Option<Spanned<String>>,
    pub matches: Spanned<String>,
    pub unless: Option<Spanned<String>>,
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

/// `confinement`: what `guard launch` applies before it execs the agent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfinement {
    pub landlock: Option<Spanned<bool>>,
    pub seccomp: Option<Spanned<RawSeccomp>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSeccomp {
    /// Group names, as strings so an unknown one gets our message (with the valid names).
    pub deny: Option<SpannedList>,
}

/// `audit`: rotation of the audit file and how much it records.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAudit {
    pub max_bytes: Option<Spanned<u64>>,
    pub keep: Option<Spanned<u64>>,
    pub record: Option<Spanned<RecordLevel>>,
}
