//! The validated policy. Only `parse_policy` builds one, so everything here already passed
//! validation (patterns compile, ports fit the kernel, ids are unique).
//!
//! This is the bottom of the policy: the written form (`raw`), validation and compilation
//! build on it, and the engine's evaluators (`destructive`, `trajectory`) read only it.

pub mod chains;
pub mod destructive_rules;
pub mod interpreters;

use serde::{Deserialize, Serialize};

pub use self::chains::{
    ChainSpec, DEFAULT_CHAIN_WINDOW_SECS, EscalationPolicy, INCIDENT_CHAIN_ID, MAX_CHAIN_WINDOW_SECS,
    ProvenanceSettings, StageKind,
};
pub use self::destructive_rules::{Condition, DestructiveRule, OperandSelection, ScriptCondition};
pub use self::interpreters::WatchKind;
pub(crate) use self::interpreters::{SHELLS, interpreter_script_flags};
use super::names::NamePattern;
use super::network::AllowEntry;
use super::paths::RootPath;
use crate::audit::{RecordLevel, Severity};
use crate::confinement::ConfinementSettings;

/// What a matching rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Block (deny, kill or hold, depending on the detector).
    Enforce,
    /// Let it happen and record an `audit` verdict.
    Monitor,
}

impl Mode {
    /// `guard_common::mode::*`.
    pub fn kernel_value(self) -> u8 {
        match self {
            Mode::Enforce => guard_common::mode::ENFORCE,
            Mode::Monitor => guard_common::mode::MONITOR,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Monitor => "monitor",
        }
    }
}

/// What an enforced destructive rule does to the held exec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecAction {
    /// Kill the held process (the default).
    Kill,
    /// Keep it stopped until approved, killing it after `hold_timeout_secs`.
    Hold,
}

impl ExecAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecAction::Kill => "kill",
            ExecAction::Hold => "hold",
        }
    }
}

/// The detector a rule belongs to (the audit record's `detector`): one enum with the kernel.
pub use guard_common::Detector;

/// A credential path as written: absolute or below every home, possibly a glob.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct CredentialPath {
    /// As written in the policy (`~/.ssh/id_*`).
    pub written: String,
    /// `~/...`: expanded once per home directory.
    pub home_relative: bool,
    /// The glob without the `~/` (home-relative) or the normalised absolute glob. A trailing
    /// `/` in the policy (a whole directory) is stored as `dir/**`.
    pub glob: String,
    /// Written with a leading `!`: matching files are never credentials.
    pub exempt: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CredentialRule {
    pub id: String,
    pub mode: Mode,
    pub severity: Severity,
    pub mitre: String,
    pub description: String,
    pub paths: Vec<CredentialPath>,
    pub names: Vec<NamePattern>,
    /// The rule also covers reading another process's `/proc/<pid>/environ`.
    pub proc_environ: bool,
    /// Programs that own these files (names looked up in the system's binary directories,
    /// or absolute paths): a read by one of them is its own business, recorded once per
    /// process. See [`crate::consumer`].
    pub consumers: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NetworkScope {
    pub mode: Mode,
    pub severity: Severity,
    pub mitre: String,
    pub description: String,
    pub allow_loopback: bool,
    /// Empty means nothing but loopback (when `allow_loopback`).
    pub allow: Vec<AllowEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileScope {
    pub mode: Mode,
    pub severity: Severity,
    pub mitre: String,
    pub description: String,
    /// Writes outside these directories match the rule.
    pub write_roots: Vec<RootPath>,
    /// When present, reads outside these directories match the rule too.
    pub read_allow: Option<Vec<RootPath>>,
}

/// One `scope.unix` entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnixPath {
    /// A normalised absolute path, possibly with glob characters in its components.
    Pattern(String),
    /// `$GUARD_SOCKET`: the running daemon's control socket (known only at compile time).
    GuardSocket,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnixScope {
    pub mode: Mode,
    pub severity: Severity,
    pub mitre: String,
    pub description: String,
    /// Sockets whose use (connect, sendmsg) matches the rule.
    pub paths: Vec<UnixPath>,
}

#[derive(Clone, Debug)]
pub struct DestructiveSection {
    pub hold_timeout_secs: u64,
    /// Normalised absolute directories below which recursive deletion is allowed.
    pub scratch_roots: Vec<String>,
    pub rules: Vec<DestructiveRule>,
}

/// The `audit` section: when the daemon rotates its audit file, how many rotated files it
/// keeps, and how much it records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct AuditSettings {
    /// Rotate before the file would grow past this many bytes; `None`: never (an external
    /// logrotate may still move it away and send SIGUSR1).
    pub max_bytes: Option<u64>,
    /// Rotated files kept (`audit.jsonl.1` .. `audit.jsonl.<keep>`); older ones are deleted.
    pub keep: u32,
    pub record: RecordLevel,
}

/// Smallest `audit.max_bytes`: a file must hold more than a handful of records.
pub const MIN_AUDIT_MAX_BYTES: u64 = 4096;
/// Most rotated audit files kept.
pub const MAX_AUDIT_KEEP: u32 = 100;
pub const DEFAULT_AUDIT_KEEP: u32 = 5;

impl Default for AuditSettings {
    fn default() -> Self {
        Self { max_bytes: None, keep: DEFAULT_AUDIT_KEEP, record: RecordLevel::default() }
    }
}

/// Defaults used when a key is left out.
pub const DEFAULT_HOLD_TIMEOUT_SECS: u64 = 120;
pub const DEFAULT_CREDENTIAL_MITRE: &str = "T1552.001";
pub const DEFAULT_DESTRUCTIVE_MITRE: &str = "T1485";
pub const DEFAULT_NETWORK_MITRE: &str = "T1041";
pub const DEFAULT_FILES_MITRE: &str = "T1565.001";
/// Escape to host: a container runtime's socket hands out root on the machine.
pub const DEFAULT_UNIX_MITRE: &str = "T1611";
pub const DEFAULT_UNIX_DESCRIPTION: &str = "a container runtime or other privileged unix socket";
/// Fixed ids of the scope rules; validation refuses user rules that take them.
pub const NETWORK_RULE_ID: &str = "scope.network";
pub const FILES_RULE_ID: &str = "scope.files";
pub const UNIX_RULE_ID: &str = "scope.unix";
/// The token in `scope.unix.paths` for the daemon's control socket.
pub const GUARD_SOCKET_TOKEN: &str = "$GUARD_SOCKET";
/// The control socket `$GUARD_SOCKET` stands for when the compile context names none (the
/// daemon's `--socket` default).
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/guard/control.sock";

/// A validated policy. Build it with [`super::parse_policy`] or [`super::default_policy`].
#[derive(Clone, Debug)]
pub struct Policy {
    pub(crate) mode: Mode,
    pub(crate) cgroup_roots: Vec<String>,
    pub(crate) credential_rules: Vec<CredentialRule>,
    pub(crate) network: Option<NetworkScope>,
    pub(crate) files: Option<FileScope>,
    pub(crate) unix: Option<UnixScope>,
    pub(crate) destructive: DestructiveSection,
    pub(crate) chains: Vec<ChainSpec>,
    pub(crate) escalation: EscalationPolicy,
    pub(crate) provenance: ProvenanceSettings,
    pub(crate) confinement: ConfinementSettings,
    pub(crate) audit: AuditSettings,
    pub(crate) kubernetes: Option<KubernetesSettings>,
    pub(crate) warnings: Vec<String>,
}

/// The kubelet's cgroup root whose pods become sessions (`kubernetes:` with `enabled: true`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KubernetesSettings {
    /// The kubelet's cgroup root, relative to the cgroup2 mount (`kubepods.slice` for the
    /// systemd driver, `kubepods` for cgroupfs) or absolute inside it.
    pub root: String,
}

/// The kubelet root when `kubernetes.root` is left out (the systemd driver, kubeadm's default).
pub const DEFAULT_KUBERNETES_ROOT: &str = "kubepods.slice";

impl Policy {
    /// The global default mode (used by rules that do not set one).
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Extra cgroup v2 roots besides `<cgroup2 mount>/guard` (normalised absolute paths).
    pub fn cgroup_roots(&self) -> &[String] {
        &self.cgroup_roots
    }

    pub fn credential_rules(&self) -> &[CredentialRule] {
        &self.credential_rules
    }

    /// `None`: the policy has no `scope.network` (destinations are not scoped).
    pub fn network(&self) -> Option<&NetworkScope> {
        self.network.as_ref()
    }

    /// `None`: the policy has no `scope.files` (writes are not scoped).
    pub fn files(&self) -> Option<&FileScope> {
        self.files.as_ref()
    }

    /// `None`: the policy has no `scope.unix` (unix sockets are not watched).
    pub fn unix(&self) -> Option<&UnixScope> {
        self.unix.as_ref()
    }

    pub fn destructive(&self) -> &DestructiveSection {
        &self.destructive
    }

    /// Trajectory chains: the built-in `incident` chain unless redefined or `chains: []`.
    pub fn chains(&self) -> &[ChainSpec] {
        &self.chains
    }

    /// Extra escalations for sessions that touched a credential (the built-in ones are
    /// always on; see [`EscalationPolicy`]).
    pub fn escalation(&self) -> EscalationPolicy {
        self.escalation
    }

    pub fn provenance(&self) -> ProvenanceSettings {
        self.provenance
    }

    /// What `guard launch` applies to new sessions (Landlock, seccomp).
    pub fn confinement(&self) -> &ConfinementSettings {
        &self.confinement
    }

    /// Rotation of the audit file and how much it records.
    pub fn audit(&self) -> AuditSettings {
        self.audit
    }

    /// Pods as sessions: `None` unless `kubernetes.enabled`.
    pub fn kubernetes(&self) -> Option<&KubernetesSettings> {
        self.kubernetes.as_ref()
    }

    /// Things the operator should know that are not errors, e.g. a missing section. The
    /// daemon logs them at load so an absent section is never silent.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Index of the first destructive rule in the compiled rule table. The table is laid out
    /// as: credential rules, network scope rule (if any), file scope rule (if any), unix
    /// scope rule (if any), destructive rules, each in file order.
    pub fn destructive_rule_offset(&self) -> u32 {
        let scopes =
            usize::from(self.network.is_some()) + usize::from(self.files.is_some()) + usize::from(self.unix.is_some());
        (self.credential_rules.len() + scopes) as u32
    }
}
