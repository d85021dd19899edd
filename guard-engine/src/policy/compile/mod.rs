//! Compilation: the validated policy becomes plain data the daemon writes into BPF maps.

mod exec_watch;

use std::collections::BTreeMap;
use std::net::IpAddr;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use guard_common::{Config, NameKey, RuleRef};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Serialize;

use super::model::{
    AuditSettings, ChainSpec, CredentialPath, DEFAULT_CONTROL_SOCKET, Detector, EscalationPolicy, ExecAction,
    FILES_RULE_ID, KubernetesSettings, Mode, NETWORK_RULE_ID, Policy, ProvenanceSettings, UNIX_RULE_ID, UnixPath,
};
use super::names::{NamePattern, NameShape};
use super::network::{AllowTarget, AllowedPorts, LpmTables, NetEntry, build_lpm_tables};
use super::paths::{GLOB_META, RootPath, join_below, normalize_absolute};
use crate::audit::Severity;
use crate::confinement::{Confinement, ConfinementSettings};

pub use self::exec_watch::{ExecWatch, exec_watch_set};

/// What compilation needs to know about the machine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompileContext {
    /// Home directories of the machine's users; `~/` in the policy expands to each.
    pub homes: Vec<String>,
    /// The daemon's control socket (its `--socket`), what `$GUARD_SOCKET` in `scope.unix`
    /// stands for; `None`: [`DEFAULT_CONTROL_SOCKET`].
    pub control_socket: Option<String>,
}

impl CompileContext {
    /// A context for these homes and the default control socket.
    pub fn with_homes(homes: Vec<String>) -> Self {
        Self { homes, control_socket: None }
    }
}

/// One row of the rule table; its index is `RuleRef.rule` / `EventHeader.rule`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleMeta {
    pub id: String,
    pub detector: Detector,
    pub mode: Mode,
    pub severity: Severity,
    pub mitre: String,
    pub description: String,
    /// Destructive rules only: what enforcement does to the held exec.
    pub action: Option<ExecAction>,
}

/// A credential path glob, expanded for one home.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledCredentialPath {
    /// Absolute glob (`*` does not cross `/`; `**` does). Home directories are escaped.
    pub glob: String,
    /// The same path unescaped: the file itself when `literal` (stat this, not `glob`).
    pub path: String,
    /// `exempt == 1` for `!` paths: matching files are never credentials.
    pub rule: RuleRef,
    /// No glob characters: the daemon can stat the path directly.
    pub literal: bool,
    /// Deepest directory of the glob without glob characters: where the daemon scans.
    pub scan_root: String,
    /// Levels below `scan_root` the glob can reach; `None` when it contains `**`.
    pub max_depth: Option<usize>,
}

/// A credential name for one of the kernel's name maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledName {
    /// As written in the policy (`*.pem`, `!*.pub`).
    pub pattern: String,
    /// The literal part, not reversed.
    pub literal: String,
    /// The map key: NUL-padded literal, reversed for suffixes.
    pub key: NameKey,
    /// Significant bits for the LPM tries (`literal.len() * 8`).
    pub prefix_bits: u32,
    pub rule: RuleRef,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompiledCredentials {
    /// Home-expanded globs the daemon resolves to inodes at load (`CRED_INODES`).
    pub paths: Vec<CompiledCredentialPath>,
    /// `CRED_NAMES` (hash).
    pub exact_names: Vec<CompiledName>,
    /// `CRED_NAME_PREFIX` (LPM trie).
    pub prefix_names: Vec<CompiledName>,
    /// `CRED_NAME_SUFFIX` (LPM trie over reversed names).
    pub suffix_names: Vec<CompiledName>,
    /// Reading another process's `/proc/<pid>/environ` matches this rule.
    pub proc_environ: Option<RuleRef>,
    /// The programs named as consumers, each with the rules (slots) it owns.
    pub consumers: Vec<CompiledConsumer>,
}

/// A consumer program and the credential rules whose files it may read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CompiledConsumer {
    /// As written: a program name or an absolute path.
    pub name: String,
    /// Bit `consumer_slot - 1` of each rule ([`guard_common::ConsumerGrant::mask`]).
    pub mask: u64,
    /// Ids of those rules, in policy order.
    pub rule_ids: Vec<String>,
}

/// A hostname from the allow list; the daemon resolves it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnresolvedHost {
    pub host: String,
    pub ports: AllowedPorts,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledNetwork {
    pub rule: u32,
    pub mode: Mode,
    pub allow_loopback: bool,
    /// `NET_ALLOW4`, already merged for longest-prefix lookups.
    pub v4: Vec<NetEntry<Ipv4Net>>,
    /// `NET_ALLOW6`, already merged for longest-prefix lookups.
    pub v6: Vec<NetEntry<Ipv6Net>>,
    pub hosts: Vec<UnresolvedHost>,
    /// The literal entries before merging, kept to merge again with resolved hosts.
    pub static_entries: Vec<(IpNet, AllowedPorts)>,
}

impl CompiledNetwork {
    /// The LPM tables once the daemon resolved the hostnames: each address becomes a
    /// host prefix with the host's ports, merged with the literal entries.
    pub fn with_resolved_hosts(&self, resolved: &[(String, Vec<IpAddr>)]) -> LpmTables {
        let ports_by_host: BTreeMap<&str, &AllowedPorts> =
            self.hosts.iter().map(|host| (host.host.as_str(), &host.ports)).collect();
        let from_hosts = resolved.iter().flat_map(|(host, addrs)| {
            let ports = ports_by_host.get(host.as_str()).map(|ports| (*ports).clone());
            addrs.iter().filter_map(move |addr| ports.clone().map(|ports| (IpNet::from(*addr), ports)))
        });
        build_lpm_tables(self.static_entries.iter().cloned().chain(from_hosts), self.rule)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledFiles {
    pub rule: u32,
    pub mode: Mode,
    /// Home-expanded, normalised directories.
    pub write_roots: Vec<String>,
    /// `$CWD` was listed: the daemon adds each session's working directory.
    pub write_roots_session_cwd: bool,
    pub read_allow: Option<Vec<String>>,
    pub read_allow_session_cwd: bool,
}

/// `scope.unix`, with `$GUARD_SOCKET` replaced by the daemon's control socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledUnix {
    pub rule: u32,
    pub mode: Mode,
    /// Normalised absolute paths, some with glob characters (one component each: `*` does
    /// not cross `/`); the daemon expands them against the file system.
    pub patterns: Vec<String>,
}

impl CompiledUnix {
    /// The `UNIX_PATHS` / `UNIX_INODES` value.
    pub fn rule_ref(&self) -> RuleRef {
        RuleRef { rule: self.rule, mode: self.mode.kernel_value(), exempt: 0, consumer_slot: 0, _pad: 0 }
    }

    /// No glob characters: the pattern is the path itself (a key even before the socket exists).
    pub fn is_literal(pattern: &str) -> bool {
        !pattern.contains(GLOB_META)
    }
}

/// The policy as data for the kernel maps and the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledPolicy {
    pub mode: Mode,
    /// Indexed by `RuleRef.rule`.
    pub rules: Vec<RuleMeta>,
    /// Extra cgroup roots besides `<cgroup2 mount>/guard`.
    pub cgroup_roots: Vec<String>,
    pub credentials: CompiledCredentials,
    /// `None`: no network scope (`Config.net_scope = 0`).
    pub network: Option<CompiledNetwork>,
    /// `None`: no file scope (`Config.write_scope = 0`).
    pub files: Option<CompiledFiles>,
    /// `None`: no unix socket scope (`UNIX_PATHS` and `UNIX_INODES` stay empty).
    pub unix: Option<CompiledUnix>,
    /// `EXEC_WATCH_NAMES`: basenames whose exec is held for evaluation.
    pub exec_watch: Vec<ExecWatch>,
    pub hold_timeout_secs: u64,
    /// Normalised absolute directories where recursive deletion is allowed.
    pub scratch_roots: Vec<String>,
    /// Trajectory chains for [`crate::trajectory::Trajectory`].
    pub chains: Vec<ChainSpec>,
    /// Extra escalations for sessions that touched a credential.
    pub escalation: EscalationPolicy,
    pub provenance: ProvenanceSettings,
    /// What `guard launch` applies to new sessions.
    pub confinement: ConfinementSettings,
    /// Audit file rotation and record level (before `guard run --record` overrides it).
    pub audit: AuditSettings,
    /// Pods as sessions (`kubernetes.enabled`).
    pub kubernetes: Option<KubernetesSettings>,
    /// The policy's warnings plus compilation's (e.g. no home directories).
    pub warnings: Vec<String>,
}

impl CompiledPolicy {
    pub fn rule(&self, index: u32) -> Option<&RuleMeta> {
        self.rules.get(index as usize)
    }

    /// `CONFIG[0]` for this policy. `enforce == false` is the kill switch (every rule
    /// behaves as monitor).
    pub fn kernel_config(&self, daemon_tgid: u32, enforce: bool) -> Config {
        let network = self.network.as_ref();
        let files = self.files.as_ref();
        Config {
            enforce: u32::from(enforce),
            daemon_tgid,
            allow_loopback: u32::from(network.is_none_or(|network| network.allow_loopback)),
            net_scope: u32::from(network.is_some()),
            write_scope: u32::from(files.is_some()),
            net_mode: network.map_or(guard_common::mode::MONITOR, |network| network.mode.kernel_value()),
            write_mode: files.map_or(guard_common::mode::MONITOR, |files| files.mode.kernel_value()),
            _pad: [0; 2],
            net_rule: network.map_or(u32::MAX, |network| network.rule),
            write_rule: files.map_or(u32::MAX, |files| files.rule),
            lsm: 0,
            read_scope: u32::from(files.is_some_and(|files| files.read_allow.is_some())),
            read_rule: files.map_or(u32::MAX, |files| files.rule),
            record_level: guard_common::RecordLevel::Decisions as u32,
            _pad2: 0,
        }
    }
}

impl CompiledPolicy {
    /// The confinement for a new session launched from `cwd` (the answer to the control
    /// request `confinement`). Landlock write roots only when `scope.files` is enforced and
    /// `enforce` (the daemon's kill switch) is on: a monitored scope must not refuse writes.
    /// `$CWD` becomes `cwd` (normalised; nothing when no cwd is given).
    pub fn session_confinement(&self, cwd: Option<&str>, enforce: bool) -> Confinement {
        let settings = &self.confinement;
        let write_roots = self.files.as_ref().filter(|files| enforce && files.mode == Mode::Enforce).map(|files| {
            let mut roots = files.write_roots.clone();
            if files.write_roots_session_cwd
                && let Some(cwd) = cwd.filter(|cwd| cwd.starts_with('/'))
            {
                let cwd = normalize_absolute(cwd);
                if !roots.contains(&cwd) {
                    roots.push(cwd);
                }
            }
            roots
        });
        Confinement {
            landlock: settings.landlock,
            write_roots: if settings.landlock { write_roots } else { None },
            seccomp_deny: settings.seccomp_syscalls(),
        }
    }
}

impl CompiledCredentials {
    /// What the kernel decides for a file name: the exact entry, the longest prefix entry
    /// and the longest suffix entry are looked up; if any of them is an exemption the file
    /// is not a credential, else the first hit (exact, prefix, suffix) names the rule.
    pub fn match_name(&self, name: &str) -> Option<RuleRef> {
        let exact = self.exact_names.iter().find(|entry| entry.literal == name);
        let prefix = longest(self.prefix_names.iter().filter(|entry| name.starts_with(&entry.literal)));
        let suffix = longest(self.suffix_names.iter().filter(|entry| name.ends_with(&entry.literal)));
        let hits = [exact, prefix, suffix];
        if hits.iter().flatten().any(|entry| entry.rule.exempt != 0) {
            return None;
        }
        hits.into_iter().flatten().next().map(|entry| entry.rule)
    }

    /// A matcher for concrete paths the daemon found while expanding `paths`.
    pub fn path_matcher(&self) -> Result<CredentialPathMatcher, globset::Error> {
        let mut positive = GlobSetBuilder::new();
        let mut positive_rules = Vec::new();
        let mut exempt = GlobSetBuilder::new();
        for path in &self.paths {
            let glob = credential_glob(&path.glob)?;
            if path.rule.exempt != 0 {
                exempt.add(glob);
            } else {
                positive.add(glob);
                positive_rules.push(path.rule);
            }
        }
        let exempt_names = self
            .exact_names
            .iter()
            .chain(&self.prefix_names)
            .chain(&self.suffix_names)
            .filter(|entry| entry.rule.exempt != 0)
            .filter_map(|entry| NamePattern::parse(entry.pattern.trim_start_matches('!')).ok())
            .collect();
        Ok(CredentialPathMatcher { positive: positive.build()?, positive_rules, exempt: exempt.build()?, exempt_names })
    }
}

fn longest<'a>(entries: impl Iterator<Item = &'a CompiledName>) -> Option<&'a CompiledName> {
    entries.max_by_key(|entry| entry.literal.len())
}

fn credential_glob(glob: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(glob).literal_separator(true).build()
}

/// Classifies concrete paths against the credential path globs.
#[derive(Clone, Debug)]
pub struct CredentialPathMatcher {
    positive: GlobSet,
    positive_rules: Vec<RuleRef>,
    exempt: GlobSet,
    exempt_names: Vec<NamePattern>,
}

impl CredentialPathMatcher {
    /// The rule protecting `path`, or `None` when no path glob matches or an exemption does
    /// (a `!` path, or an exempt name such as `!*.pub` matching the basename).
    pub fn classify(&self, path: &str) -> Option<RuleRef> {
        let basename = path.rsplit('/').next().unwrap_or(path);
        if self.exempt_names.iter().any(|name| name.matches(basename)) || self.exempt.is_match(path) {
            return None;
        }
        let first = self.positive.matches(path).into_iter().min()?;
        self.positive_rules.get(first).copied()
    }
}

impl Policy {
    /// Compiles the policy for a machine. Never fails: everything that could was checked by
    /// `parse_policy`.
    pub fn compile(&self, context: &CompileContext) -> CompiledPolicy {
        let mut rules = Vec::new();
        let mut warnings = self.warnings.clone();
        let homes: Vec<String> = context.homes.iter().map(|home| normalize_absolute(home)).collect();
        if homes.is_empty() {
            warnings.push("no home directories given: `~/` paths and roots expand to nothing".into());
        }

        let mut credentials = CompiledCredentials::default();
        let mut names: BTreeMap<(NameShape, String), CompiledName> = BTreeMap::new();
        let mut next_slot: u8 = 0;
        for rule in &self.credential_rules {
            // Validation allows at most MAX_CONSUMER_RULES rules with consumers.
            let consumer_slot = if rule.consumers.is_empty() {
                0
            } else {
                next_slot += 1;
                next_slot
            };
            for name in &rule.consumers {
                let bit = 1u64 << (consumer_slot - 1);
                match credentials.consumers.iter_mut().find(|known| &known.name == name) {
                    Some(known) => {
                        known.mask |= bit;
                        known.rule_ids.push(rule.id.clone());
                    }
                    None => credentials.consumers.push(CompiledConsumer {
                        name: name.clone(),
                        mask: bit,
                        rule_ids: vec![rule.id.clone()],
                    }),
                }
            }
            let index = push_rule(
                &mut rules,
                RuleMeta {
                    id: rule.id.clone(),
                    detector: Detector::Credential,
                    mode: rule.mode,
                    severity: rule.severity,
                    mitre: rule.mitre.clone(),
                    description: rule.description.clone(),
                    action: None,
                },
            );
            let rule_ref = |exempt: bool| RuleRef {
                rule: index,
                mode: rule.mode.kernel_value(),
                exempt: u8::from(exempt),
                consumer_slot: if exempt { 0 } else { consumer_slot },
                _pad: 0,
            };
            for path in &rule.paths {
                credentials.paths.extend(expand_credential_path(path, &homes, rule_ref(path.exempt)));
            }
            for name in &rule.names {
                let candidate = CompiledName {
                    pattern: name.written(),
                    literal: name.literal.clone(),
                    key: name.kernel_key(),
                    prefix_bits: name.prefix_bits(),
                    rule: rule_ref(name.exempt),
                };
                names
                    .entry((name.shape, name.literal.clone()))
                    .and_modify(|existing| {
                        if outranks(&candidate.rule, &existing.rule) {
                            *existing = candidate.clone();
                        }
                    })
                    .or_insert(candidate);
            }
            if rule.proc_environ && credentials.proc_environ.is_none() {
                credentials.proc_environ = Some(rule_ref(false));
            }
        }
        for ((shape, _), entry) in names {
            match shape {
                NameShape::Exact => credentials.exact_names.push(entry),
                NameShape::Prefix => credentials.prefix_names.push(entry),
                NameShape::Suffix => credentials.suffix_names.push(entry),
            }
        }

        let network = self.network.as_ref().map(|scope| {
            let rule = push_rule(
                &mut rules,
                scope_rule(
                    NETWORK_RULE_ID,
                    Detector::ScopeNetwork,
                    scope.mode,
                    scope.severity,
                    &scope.mitre,
                    &scope.description,
                ),
            );
            let mut static_entries = Vec::new();
            let mut hosts: Vec<UnresolvedHost> = Vec::new();
            for entry in &scope.allow {
                match &entry.target {
                    AllowTarget::Net(net) => static_entries.push((*net, entry.ports.clone())),
                    AllowTarget::Host(host) => match hosts.iter_mut().find(|known| &known.host == host) {
                        Some(known) => known.ports.union_with(&entry.ports),
                        None => hosts.push(UnresolvedHost { host: host.clone(), ports: entry.ports.clone() }),
                    },
                }
            }
            let tables = build_lpm_tables(static_entries.iter().cloned(), rule);
            CompiledNetwork {
                rule,
                mode: scope.mode,
                allow_loopback: scope.allow_loopback,
                v4: tables.v4,
                v6: tables.v6,
                hosts,
                static_entries,
            }
        });

        let files = self.files.as_ref().map(|scope| {
            let rule = push_rule(
                &mut rules,
                scope_rule(
                    FILES_RULE_ID,
                    Detector::ScopeFile,
                    scope.mode,
                    scope.severity,
                    &scope.mitre,
                    &scope.description,
                ),
            );
            let (write_roots, write_roots_session_cwd) = expand_roots(&scope.write_roots, &homes);
            let read = scope.read_allow.as_ref().map(|roots| expand_roots(roots, &homes));
            CompiledFiles {
                rule,
                mode: scope.mode,
                write_roots,
                write_roots_session_cwd,
                read_allow_session_cwd: read.as_ref().is_some_and(|(_, cwd)| *cwd),
                read_allow: read.map(|(roots, _)| roots),
            }
        });

        let unix = self.unix.as_ref().map(|scope| {
            // A unix socket is a network endpoint; the rule id tells the two apart.
            let rule = push_rule(
                &mut rules,
                scope_rule(
                    UNIX_RULE_ID,
                    Detector::ScopeNetwork,
                    scope.mode,
                    scope.severity,
                    &scope.mitre,
                    &scope.description,
                ),
            );
            let mut patterns: Vec<String> = Vec::new();
            for path in &scope.paths {
                let pattern = match path {
                    UnixPath::Pattern(pattern) => pattern.clone(),
                    UnixPath::GuardSocket => match control_socket(context, &mut warnings) {
                        Some(socket) => socket,
                        None => continue,
                    },
                };
                if !patterns.contains(&pattern) {
                    patterns.push(pattern);
                }
            }
            CompiledUnix { rule, mode: scope.mode, patterns }
        });

        for rule in &self.destructive.rules {
            push_rule(
                &mut rules,
                RuleMeta {
                    id: rule.id.clone(),
                    detector: Detector::Destructive,
                    mode: rule.mode,
                    severity: rule.severity,
                    mitre: rule.mitre.clone(),
                    description: rule.description.clone(),
                    action: Some(rule.action),
                },
            );
        }

        CompiledPolicy {
            mode: self.mode,
            rules,
            cgroup_roots: self.cgroup_roots.clone(),
            credentials,
            network,
            files,
            unix,
            exec_watch: exec_watch_set(self),
            hold_timeout_secs: self.destructive.hold_timeout_secs,
            scratch_roots: self.destructive.scratch_roots.clone(),
            chains: self.chains.clone(),
            escalation: self.escalation,
            provenance: self.provenance,
            confinement: self.confinement.clone(),
            audit: self.audit,
            kubernetes: self.kubernetes.clone(),
            warnings,
        }
    }
}

/// What `$GUARD_SOCKET` becomes; `None` (with a warning) when the daemon's socket cannot be
/// a `sun_path` key (relative, or too long).
fn control_socket(context: &CompileContext, warnings: &mut Vec<String>) -> Option<String> {
    let written = context.control_socket.as_deref().unwrap_or(DEFAULT_CONTROL_SOCKET);
    if !written.starts_with('/') {
        warnings.push(format!(
            "control socket `{written}` is not an absolute path: `$GUARD_SOCKET` in scope.unix matches nothing"
        ));
        return None;
    }
    let socket = normalize_absolute(written);
    if socket.len() >= guard_common::UNIX_PATH_LEN {
        warnings.push(format!(
            "control socket `{written}` is longer than a socket path: `$GUARD_SOCKET` in scope.unix matches nothing"
        ));
        return None;
    }
    Some(socket)
}

/// The rule-table row of a scope section (`scope.network`, `scope.files`, `scope.unix`).
fn scope_rule(
    id: &str,
    detector: Detector,
    mode: Mode,
    severity: Severity,
    mitre: &str,
    description: &str,
) -> RuleMeta {
    RuleMeta {
        id: id.into(),
        detector,
        mode,
        severity,
        mitre: mitre.to_string(),
        description: description.to_string(),
        action: None,
    }
}

fn push_rule(rules: &mut Vec<RuleMeta>, meta: RuleMeta) -> u32 {
    rules.push(meta);
    (rules.len() - 1) as u32
}

/// When two rules give the same name, one map slot remains: an exemption wins, then
/// enforce over monitor, then the earlier rule.
fn outranks(candidate: &RuleRef, existing: &RuleRef) -> bool {
    (candidate.exempt, candidate.mode) > (existing.exempt, existing.mode)
}

fn expand_roots(roots: &[RootPath], homes: &[String]) -> (Vec<String>, bool) {
    let mut expanded: Vec<String> = Vec::new();
    for root in roots {
        for path in root.expand(homes) {
            if !expanded.contains(&path) {
                expanded.push(path);
            }
        }
    }
    (expanded, roots.contains(&RootPath::SessionCwd))
}

fn expand_credential_path(path: &CredentialPath, homes: &[String], rule: RuleRef) -> Vec<CompiledCredentialPath> {
    let bases: Vec<String> = if path.home_relative { homes.to_vec() } else { vec![String::from("/")] };
    bases
        .iter()
        .map(|base| {
            let relative = path.glob.trim_start_matches('/');
            // The home is literal text: escape it so `[` or `*` in a home cannot act as glob.
            let glob = join_below(&globset::escape(base), relative);
            let components: Vec<&str> = relative.split('/').collect();
            let literal_len = components.iter().take_while(|component| !component.contains(GLOB_META)).count();
            let literal = literal_len == components.len();
            let (scan_root, max_depth) = if literal {
                let parent = components.len().saturating_sub(1);
                (directory(base, &components[..parent]), Some(1))
            } else {
                let rest = &components[literal_len..];
                let depth = (!rest.contains(&"**")).then_some(rest.len());
                (directory(base, &components[..literal_len]), depth)
            };
            CompiledCredentialPath { glob, path: join_below(base, relative), rule, literal, scan_root, max_depth }
        })
        .collect()
}

/// `base` joined with some leading components of a glob (`base` itself when none).
fn directory(base: &str, components: &[&str]) -> String {
    if components.is_empty() { base.to_string() } else { join_below(base, &components.join("/")) }
}
