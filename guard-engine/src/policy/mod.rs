//! guard's policy: a YAML file, validated into [`Policy`], compiled into [`CompiledPolicy`]
//! (plain data for the BPF maps).
//!
//! # Schema
//!
//! ```yaml
//! mode: enforce                 # default for rules without `mode` (enforce | monitor); default enforce
//! cgroup_roots: [/sys/fs/cgroup/ci-agents]   # extra roots beside <cgroup2 mount>/guard
//! credentials:
//!   rules:
//!     - id: ssh-keys            # unique across the policy
//!       mode: enforce           # optional, else the global mode
//!       severity: critical      # info | low | medium | high | critical; default critical
//!       mitre: T1552.001        # default T1552.001
//!       description: SSH private keys
//!       paths: ["~/.ssh/id_*", "!~/.ssh/*.pub", /etc/ssl/private/]   # abs or ~/ (every home), globs; `dir/` = everything below; `!` exempts
//!       names: [".env", ".env.*", "*.pem", "!*.pub"]                 # exact, prefix*, *suffix; `!` exempts
//!       consumers: [ssh, ssh-keygen]   # programs that own these files: their reads are allowed
//!     - id: proc-environ
//!       proc_environ: true      # reading another process's /proc/<pid>/environ
//! scope:
//!   network:
//!     mode: enforce
//!     severity: high            # default high
//!     mitre: T1041              # default T1041
//!     allow_loopback: true      # default true
//!     allow: [10.0.0.0/8, "192.168.1.0/24:22,443", "[2001:db8::/32]:443", "github.com:443", pypi.org]
//!   files:
//!     mode: monitor
//!     severity: high            # default high
//!     mitre: T1565.001          # default T1565.001
//!     write_roots: [$CWD, /tmp, "~/.cache"]
//!     read_allow: [$CWD, /usr]  # optional
//!   unix:
//!     mode: monitor             # enforce: connect()/sendmsg() to these sockets is refused
//!     severity: critical        # default critical
//!     mitre: T1611              # default T1611 (escape to host)
//!     paths: [/run/docker.sock, "/run/user/*/podman/podman.sock", $GUARD_SOCKET]   # abs, globs in components, <= 107 bytes
//! destructive:
//!   hold_timeout_secs: 120      # default 120, 1..=86400
//!   scratch_roots: [/tmp, /var/tmp]
//!   rules:
//!     - id: rm-recursive-force
//!       severity: critical      # default high
//!       mitre: T1485            # default T1485 (T1490 for backups, volumes, snapshots)
//!       description: rm -rf outside scratch roots
//!       action: kill            # kill (default) | hold (wait for approval)
//!       match:
//!         programs: [rm]
//!         all:
//!           - flag: [-r, -R, --recursive]
//!           - flag: [-f, --force]
//!           - outside_scratch: all
//! chains:                       # optional; see "Chains" below
//!   - id: incident              # unique among chains; same charset as rule ids
//!     description: credential discovery, then out-of-scope use, then a destructive action
//!     stages: [credential_discovery, out_of_scope_use, destructive_action]   # >= 2, in order
//!     window_secs: 600          # first to last stage; default 600, 1..=86400
//!     severity: critical        # default critical
//!     mitre: T1485              # optional
//! escalations:                  # optional
//!   on_credential: [freeze_session, hold_all_exec]   # extras; default none
//! provenance:                   # optional
//!   enabled: true               # default true
//! confinement:                  # optional; applied by `guard launch` (see below)
//!   landlock: true              # default true
//!   seccomp:
//!     deny: [bpf, io_uring, perf_event_open, kexec, kernel_modules, userfaultfd, new_mount_api]   # default: all
//! audit:                        # optional; the audit file (see README, "Audit stream")
//!   max_bytes: 104857600        # rotate before the file passes this; >= 4096; default: no limit
//!   keep: 5                     # rotated files kept (audit.jsonl.1 ..); 1..=100; default 5
//!   record: decisions           # decisions | writes | all; default decisions; `guard run --record` overrides
//! kubernetes:                   # optional; pods as sessions (see crate::kubernetes)
//!   enabled: true               # default false
//!   root: kubepods.slice        # the kubelet's cgroup root below the cgroup2 mount (or absolute); kubepods for cgroupfs
//! ```
//!
//! The match language is described in [`destructive_rules`].
//!
//! # Semantics
//!
//! * **Nothing missing is ever "allow everything" in silence.** Missing sections are legal but
//!   each one adds a [`Policy::warnings`] line that the daemon logs at load:
//!   - no `credentials` (or `rules: []`): no file is protected as a credential;
//!   - no `scope.network`: destinations are not scoped at all (`Config.net_scope = 0`);
//!   - no `scope.files`: writes are not scoped (`Config.write_scope = 0`);
//!   - no `scope.unix`: unix socket use is not watched;
//!   - no `destructive` (or `rules: []`): no command is held.
//! * Inside a section that is present, the lists that define it are required:
//!   `scope.network.allow`, `scope.files.write_roots`, `credentials.rules`,
//!   `destructive.rules`, a destructive rule's `programs`. `allow: []` is the explicit
//!   "deny everything except loopback" (loopback stays allowed unless
//!   `allow_loopback: false`). `write_roots: []`, `read_allow: []`, `paths: []`, `names: []`,
//!   `all: []`, `any: []` are errors (empty required lists).
//! * A credential rule must protect something: a non-exempt path or name, or
//!   `proc_environ: true` (only one rule may set it). An empty file is an error.
//! * Exemptions win: a name matching an exempt name pattern (`!*.pub`) or a path matching an
//!   exempt path (`!~/.ssh/*.pub`) is never a credential, whatever other rule matches. Two
//!   rules giving the same name share one kernel slot: the exemption, else the enforced rule,
//!   else the earlier rule keeps it. The kernel consults the exact name, the longest prefix
//!   and the longest suffix entry ([`CompiledCredentials::match_name`] models it).
//! * Consumers: a rule's `consumers` are the programs whose business its files are (`kubectl` for
//!   the kubeconfig). A read by a consumer is allowed and recorded once per process (verdict
//!   `audit`, the consumer named); it does not mark the session. Any other program gets the
//!   rule's mode. Consumers are recognised by what the kernel sees, never by a name the agent
//!   chooses: the identity (device, inode) of the executable, resolved at load and at every
//!   rescan, and for `#!` scripts (npm, the aws CLI) the script's identity as well; see
//!   [`crate::consumer`]. At most 64 rules may name consumers.
//! * Network: an address/port is allowed when any allow entry covers the address and admits
//!   the port (entries without ports admit every port). Hostnames are resolved by the daemon
//!   ([`CompiledNetwork::hosts`], [`CompiledNetwork::with_resolved_hosts`]). IPv4-mapped IPv6
//!   entries go to the IPv4 table. CIDRs with host bits set are errors, as are more than
//!   `PORTS_PER_ENTRY` ports on one entry (after nested-prefix merging).
//! * Files: `$CWD` stands for each session's working directory at registration (the daemon
//!   adds it); `~/dir` expands to every home given to [`Policy::compile`].
//! * Destructive rules match the basename of the executable **or** of `argv[0]`; shells with
//!   `-c`, `busybox`, and wrappers (`env`, `sudo`, `nohup`, `timeout`, `xargs`, ...) are looked
//!   through (see [`crate::destructive`]). Paths are resolved lexically against the
//!   process's working directory; what cannot be resolved statically (`$VAR`, `~`) counts as
//!   outside the scratch roots. `rm -r` without `-f` is not matched by the default rule.
//! * The rule table ([`CompiledPolicy::rules`], index = `RuleRef.rule`) lists credential rules,
//!   then `scope.network`, then `scope.files`, then `scope.unix`, then destructive rules, each
//!   in file order.
//! * Chains ([`crate::trajectory`]): stage names are `credential_discovery` (a `credential`
//!   record), `out_of_scope_use` (`scope_network`/`scope_file`), `destructive_action`
//!   (`destructive`) and `self_protection`. The `incident` chain ([`ChainSpec::incident`]) is
//!   built in: a policy without `chains` gets it, a `chains` list that does not define an
//!   `incident` chain gets it too (first), and a chain with id `incident` replaces it. Only
//!   `chains: []` turns chain detection off, and that adds a warning.
//! * Escalations: once a session touched a credential, its out-of-scope network use is denied
//!   and its destructive commands are held for approval whatever the rule's mode or action;
//!   this is always on and cannot be turned off here. `on_credential` adds `freeze_session`
//!   (freeze the session cgroup) and/or `hold_all_exec` (hold every exec of the session)
//!   ([`EscalationPolicy`]).
//! * Provenance ([`crate::provenance`]): `enabled: false` stops learning fingerprints of
//!   secrets read from credential files (and adds a warning); redaction of known token
//!   formats from the audit stream stays on.
//! * Confinement ([`crate::confinement`]): what `guard launch` applies before it execs the
//!   command, asking the daemon for it (`confinement` control request). `landlock: true`
//!   creates a Landlock domain: always with signal scoping (signals to and ptrace of processes
//!   outside the session are refused); when `scope.files.mode` is `enforce` (and enforcement is
//!   not switched off) writing, creating, removing, renaming and truncating files is refused
//!   outside the expanded write roots (`$CWD`: the launch directory). `seccomp.deny` lists
//!   groups of system calls refused with EPERM: `bpf`; `io_uring` (setup, enter, register);
//!   `perf_event_open`; `kexec` (kexec_load, kexec_file_load); `kernel_modules` (init_module,
//!   finit_module, delete_module); `userfaultfd`; `new_mount_api` (fsopen, fsconfig, fsmount,
//!   fspick, move_mount, open_tree, mount_setattr). A missing section, key or list means the
//!   defaults; `deny: []` and `landlock: false` are allowed and each adds a warning; an unknown
//!   group name is an error. Sessions not started by `guard launch` get no confinement.
//! * Audit: `max_bytes` makes the daemon rotate the file before a record would take it past
//!   the limit (`audit.jsonl` becomes `audit.jsonl.1`, `.1` becomes `.2`, ..., the oldest
//!   beyond `keep` is deleted); the hash chain links across the files. A reload applies new
//!   values. `record` is parsed, validated and handed to the daemon as a [`RecordLevel`]
//!   ([`CompiledPolicy::audit`]).
//! * Errors: every problem is reported as `FILE:LINE:COLUMN: problem`. YAML syntax errors,
//!   unknown keys, wrong types and unknown enum values stop parsing at the first one; all
//!   other problems (bad CIDR, port, regex, glob, name pattern, path, duplicate id, empty
//!   list...) are collected and reported together.

// Bottom-up: value types, then the model, then the written form, validation and compilation.
pub mod compile;
pub mod dns;
mod error;
pub mod model;
pub mod names;
pub mod network;
pub mod paths;
mod raw;
mod validate;

#[cfg(test)]
mod tests;

pub use crate::audit::{RecordLevel, Severity};
// The model's parts keep their old paths (`policy::chains`, `policy::destructive_rules`).
pub use compile::{
    CompileContext, CompiledConsumer, CompiledCredentialPath, CompiledCredentials, CompiledFiles, CompiledName,
    CompiledNetwork, CompiledPolicy, CompiledUnix, CredentialPathMatcher, ExecWatch, RuleMeta, UnresolvedHost,
    exec_watch_set,
};
pub(crate) use error::from_yaml_error;
pub use error::{PolicyError, Problem};
pub use model::{
    AuditSettings, CredentialPath, CredentialRule, DEFAULT_AUDIT_KEEP, DEFAULT_CONTROL_SOCKET, DEFAULT_KUBERNETES_ROOT,
    DestructiveSection, Detector, ExecAction, FileScope, GUARD_SOCKET_TOKEN, KubernetesSettings, MAX_AUDIT_KEEP,
    MIN_AUDIT_MAX_BYTES, Mode, NetworkScope, Policy, UNIX_RULE_ID, UnixPath, UnixScope,
};
pub use model::{
    ChainSpec, DEFAULT_CHAIN_WINDOW_SECS, EscalationPolicy, INCIDENT_CHAIN_ID, MAX_CHAIN_WINDOW_SECS,
    ProvenanceSettings, StageKind, WatchKind,
};
pub use model::{Condition, DestructiveRule, OperandSelection, ScriptCondition};
pub use model::{chains, destructive_rules};
pub use names::{NamePattern, NameShape};
pub use network::{
    AllowEntry, AllowTarget, AllowedPorts, LpmPrefix, LpmTables, NetEntry, TooManyPorts, build_lpm_tables,
    lpm_port_allowed,
};
pub use paths::RootPath;

/// The policy used when the operator gives none.
pub const DEFAULT_POLICY_YAML: &str = include_str!("../default-policy.yaml");

/// Parses and validates a policy. `source_name` (usually the file path) prefixes every
/// problem in the error.
pub fn parse_policy(source_name: &str, text: &str) -> Result<Policy, PolicyError> {
    let options = serde_saphyr::options! {
        // Our error carries the location; the snippet rendering would duplicate it.
        with_snippet: false,
    };
    let raw: Option<raw::RawPolicy> = serde_saphyr::from_str_with_options(text, options)
        .map_err(|error| error::from_yaml_error(source_name, &error))?;
    let mut problems = error::Problems::default();
    let Some(raw) = raw else {
        return Err(PolicyError {
            source_name: source_name.to_string(),
            problems: vec![Problem {
                line: 1,
                column: 1,
                message: "the policy is empty; an empty policy would protect nothing".into(),
            }],
        });
    };
    let policy = validate::validate(raw, &mut problems);
    if problems.is_empty() { Ok(policy) } else { Err(problems.into_error(source_name)) }
}

/// The built-in default policy ([`DEFAULT_POLICY_YAML`]).
pub fn default_policy() -> Policy {
    match parse_policy("<default policy>", DEFAULT_POLICY_YAML) {
        Ok(policy) => policy,
        // The embedded text is a constant checked by the tests; failing here is a build bug.
        Err(error) => panic!("the embedded default policy is invalid:\n{error}"),
    }
}
