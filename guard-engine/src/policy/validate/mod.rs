//! From the written policy (`raw`) to the validated one (`model`), collecting every problem.

mod chains;
mod destructive;

use std::collections::HashMap;

use serde_saphyr::{Location, Spanned};

use self::chains::{validate_chains, validate_escalations, validate_provenance};
use self::destructive::validate_destructive;
use super::error::Problems;
use super::model::{
    AuditSettings, CredentialPath, CredentialRule, DEFAULT_CREDENTIAL_MITRE, DEFAULT_FILES_MITRE,
    DEFAULT_HOLD_TIMEOUT_SECS, DEFAULT_KUBERNETES_ROOT, DEFAULT_NETWORK_MITRE, DEFAULT_UNIX_DESCRIPTION,
    DEFAULT_UNIX_MITRE, DestructiveSection, FILES_RULE_ID, FileScope, GUARD_SOCKET_TOKEN, KubernetesSettings,
    MAX_AUDIT_KEEP, MIN_AUDIT_MAX_BYTES, Mode, NETWORK_RULE_ID, NetworkScope, Policy, UNIX_RULE_ID, UnixPath,
    UnixScope,
};
use super::names::NamePattern;
use super::network::{AllowTarget, build_lpm_tables, largest_merged_port_count, parse_allow_entry};
use super::paths::{GLOB_META, RootPath, normalize_absolute, normalize_relative};
use super::raw::{
    RawAudit, RawConfinement, RawCredentialRule, RawFileScope, RawKubernetes, RawNetworkScope, RawPolicy, RawUnixScope,
    SpannedList,
};
use crate::audit::Severity;
use crate::confinement::{ConfinementSettings, SyscallGroup};

pub(crate) fn validate(raw: RawPolicy, problems: &mut Problems) -> Policy {
    let mode = raw.mode.as_ref().map_or(Mode::Enforce, |mode| mode.value);
    let mut ids = RuleIds::default();
    let mut warnings = Vec::new();

    let cgroup_roots = raw.cgroup_roots.as_ref().map(|list| validate_cgroup_roots(list, problems)).unwrap_or_default();

    let credential_rules = match &raw.credentials {
        Some(section) => {
            let rules = &section.value.rules;
            if rules.value.is_empty() {
                warnings.push("credentials.rules is empty: no file is protected as a credential".into());
            }
            let mut proc_environ_seen: Option<Location> = None;
            rules
                .value
                .iter()
                .filter_map(|rule| {
                    let validated = validate_credential_rule(rule, mode, &mut ids, problems)?;
                    if validated.proc_environ {
                        if proc_environ_seen.is_some() {
                            problems.at_spanned(rule, "only one credential rule may set `proc_environ: true`");
                        }
                        proc_environ_seen = Some(rule.referenced);
                    }
                    Some(validated)
                })
                .collect()
        }
        None => {
            warnings.push("no `credentials` section: no file is protected as a credential".into());
            Vec::new()
        }
    };
    let with_consumers = credential_rules.iter().filter(|rule| !rule.consumers.is_empty()).count();
    if with_consumers > guard_common::MAX_CONSUMER_RULES
        && let Some(section) = &raw.credentials
    {
        problems.at_spanned(
            &section.value.rules,
            format!(
                "{with_consumers} credential rules name consumers; the kernel tracks at most {}",
                guard_common::MAX_CONSUMER_RULES
            ),
        );
    }
    if !credential_rules.iter().any(|rule| rule.proc_environ) {
        warnings.push(
            "no credential rule sets `proc_environ: true`: reading other processes' /proc/<pid>/environ is not watched"
                .into(),
        );
    }

    let scope = raw.scope.as_ref().map(|scope| &scope.value);
    let network = match scope.and_then(|scope| scope.network.as_ref()) {
        Some(network) => Some(validate_network(network, mode, problems)),
        None => {
            warnings.push(
                "no `scope.network`: network destinations are not scoped (nothing is blocked or recorded)".into(),
            );
            None
        }
    };
    let files = match scope.and_then(|scope| scope.files.as_ref()) {
        Some(files) => Some(validate_files(files, mode, problems)),
        None => {
            warnings.push("no `scope.files`: file writes are not scoped".into());
            None
        }
    };
    let unix = match scope.and_then(|scope| scope.unix.as_ref()) {
        Some(unix) => Some(validate_unix(unix, mode, problems)),
        None => {
            warnings.push("no `scope.unix`: unix sockets (container runtimes, guard's own) are not watched".into());
            None
        }
    };

    let destructive = match &raw.destructive {
        Some(section) => validate_destructive(section, mode, &mut ids, problems),
        None => {
            warnings.push("no `destructive` section: no command is held or blocked".into());
            DestructiveSection {
                hold_timeout_secs: DEFAULT_HOLD_TIMEOUT_SECS,
                scratch_roots: Vec::new(),
                rules: Vec::new(),
            }
        }
    };
    if raw.destructive.is_some() && destructive.rules.is_empty() {
        warnings.push("destructive.rules is empty: no command is held or blocked".into());
    }

    let chains = validate_chains(raw.chains.as_ref(), problems, &mut warnings);
    let escalation = validate_escalations(raw.escalations.as_ref());
    let provenance = validate_provenance(raw.provenance.as_ref(), &mut warnings);
    let confinement = validate_confinement(raw.confinement.as_ref(), problems, &mut warnings);
    let audit = validate_audit(raw.audit.as_ref(), problems);
    let kubernetes = raw.kubernetes.as_ref().and_then(|section| validate_kubernetes(section, problems));

    Policy {
        mode,
        cgroup_roots,
        credential_rules,
        network,
        files,
        unix,
        destructive,
        chains,
        escalation,
        provenance,
        confinement,
        audit,
        kubernetes,
        warnings,
    }
}

/// `audit`: a missing section or key means the defaults (no size limit, keep 5, decisions).
fn validate_audit(section: Option<&Spanned<RawAudit>>, problems: &mut Problems) -> AuditSettings {
    let mut settings = AuditSettings::default();
    let Some(section) = section else { return settings };
    let raw = &section.value;
    if let Some(max_bytes) = &raw.max_bytes {
        if max_bytes.value < MIN_AUDIT_MAX_BYTES {
            problems.at_spanned(
                max_bytes,
                format!("audit.max_bytes must be at least {MIN_AUDIT_MAX_BYTES} (got {})", max_bytes.value),
            );
        } else {
            settings.max_bytes = Some(max_bytes.value);
        }
    }
    if let Some(keep) = &raw.keep {
        match u32::try_from(keep.value) {
            Ok(count) if (1..=MAX_AUDIT_KEEP).contains(&count) => settings.keep = count,
            _ => problems
                .at_spanned(keep, format!("audit.keep must be between 1 and {MAX_AUDIT_KEEP} (got {})", keep.value)),
        }
    }
    if let Some(record) = &raw.record {
        settings.record = record.value;
    }
    settings
}

/// `confinement`: a missing section, key or list means the defaults (Landlock on, every
/// group denied); relaxing is explicit and warned about.
fn validate_confinement(
    section: Option<&Spanned<RawConfinement>>,
    problems: &mut Problems,
    warnings: &mut Vec<String>,
) -> ConfinementSettings {
    let mut settings = ConfinementSettings::default();
    let Some(section) = section else { return settings };
    if let Some(landlock) = &section.value.landlock {
        settings.landlock = landlock.value;
        if !landlock.value {
            warnings.push(
                "confinement.landlock is false: launched sessions get no Landlock domain (no kernel-enforced \
                 write roots, signals to the daemon are only answered by killing the sender)"
                    .into(),
            );
        }
    }
    let deny = section.value.seccomp.as_ref().and_then(|seccomp| seccomp.value.deny.as_ref());
    if let Some(list) = deny {
        settings.seccomp_deny.clear();
        for entry in &list.value {
            match SyscallGroup::parse(&entry.value) {
                Some(group) if !settings.seccomp_deny.contains(&group) => settings.seccomp_deny.push(group),
                Some(_) => {}
                None => {
                    let known: Vec<&str> = SyscallGroup::ALL.iter().map(|group| group.as_str()).collect();
                    problems.at_spanned(
                        entry,
                        format!("unknown syscall group `{}` (known: {})", entry.value, known.join(", ")),
                    );
                }
            }
        }
        if list.value.is_empty() {
            warnings.push(
                "confinement.seccomp.deny is empty: launched sessions may call bpf(), io_uring, perf_event_open, \
                 kexec, module loading, userfaultfd and the new mount API"
                    .into(),
            );
        }
    }
    settings
}

/// 1-64 letters, digits, `-`, `_`, `.` or `:`, starting with a letter or digit (rule and
/// chain ids).
pub(super) fn id_is_well_formed(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        && text.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
}

/// Rule ids must be unique across the whole policy; the scope rules' ids are reserved.
#[derive(Default)]
struct RuleIds {
    seen: HashMap<String, Location>,
}

impl RuleIds {
    fn claim(&mut self, id: &Spanned<String>, problems: &mut Problems) -> bool {
        let text = id.value.as_str();
        if !id_is_well_formed(text) {
            problems.at_spanned(
                id,
                format!("bad rule id `{text}`: use 1-64 letters, digits, `-`, `_`, `.` or `:`, starting with a letter or digit"),
            );
            return false;
        }
        if text == NETWORK_RULE_ID || text == FILES_RULE_ID || text == UNIX_RULE_ID {
            problems.at_spanned(id, format!("rule id `{text}` is reserved for the scope rules"));
            return false;
        }
        if let Some(first) = self.seen.get(text) {
            problems.at_spanned(
                id,
                format!("duplicate rule id `{text}` (first used at line {}, column {})", first.line(), first.column()),
            );
            return false;
        }
        self.seen.insert(text.to_string(), id.referenced);
        true
    }
}

pub(super) fn validate_mitre(mitre: Option<&Spanned<String>>, default: &str, problems: &mut Problems) -> String {
    let Some(mitre) = mitre else {
        return default.to_string();
    };
    // ATT&CK technique ids: T1234 or T1234.001.
    let digits = |text: &str, count: usize| text.len() == count && text.bytes().all(|b| b.is_ascii_digit());
    let well_formed = match mitre.value.strip_prefix('T') {
        Some(rest) => match rest.split_once('.') {
            Some((technique, sub)) => digits(technique, 4) && digits(sub, 3),
            None => digits(rest, 4),
        },
        None => false,
    };
    if !well_formed {
        problems.at_spanned(
            mitre,
            format!("bad MITRE ATT&CK technique `{}`: expected `T1234` or `T1234.001`", mitre.value),
        );
    }
    mitre.value.clone()
}

fn description_or(description: Option<&Spanned<String>>, default: &str) -> String {
    description.map_or_else(|| default.to_string(), |text| text.value.clone())
}

/// `kubernetes:`: off unless `enabled: true`; the root is a plain cgroup path (relative to the
/// cgroup2 mount, or absolute) naming the kubelet's root, `kubepods.slice` or `kubepods`.
fn validate_kubernetes(section: &Spanned<RawKubernetes>, problems: &mut Problems) -> Option<KubernetesSettings> {
    let raw = &section.value;
    let enabled = raw.enabled.as_ref().is_some_and(|enabled| enabled.value);
    let root = match &raw.root {
        None => DEFAULT_KUBERNETES_ROOT.to_string(),
        Some(root) => {
            let text = root.value.trim_end_matches('/');
            let name = text.rsplit('/').next().unwrap_or("");
            let bad = if text.is_empty() {
                Some("must not be empty (the default is `kubepods.slice`)".to_string())
            } else if text.contains(GLOB_META) {
                Some("must be a plain cgroup path, not a glob".to_string())
            } else if text.split('/').any(|part| part == "..") {
                Some("must not contain `..`".to_string())
            } else if name != "kubepods" && !name.ends_with("kubepods.slice") {
                Some(format!(
                    "must name the kubelet's cgroup root: `kubepods.slice` (systemd driver), `kubepods` (cgroupfs) \
                     or `<prefix>-kubepods.slice` (--cgroup-root), not `{name}`"
                ))
            } else {
                None
            };
            if let Some(why) = bad {
                problems.at_spanned(root, format!("kubernetes.root `{}` {why}", root.value));
                return None;
            }
            if text.starts_with('/') {
                normalize_absolute(text)
            } else {
                text.split('/').filter(|part| !part.is_empty() && *part != ".").collect::<Vec<_>>().join("/")
            }
        }
    };
    enabled.then_some(KubernetesSettings { root })
}

fn validate_cgroup_roots(list: &SpannedList, problems: &mut Problems) -> Vec<String> {
    let mut roots: Vec<String> = Vec::new();
    for root in &list.value {
        if !root.value.starts_with('/') {
            problems.at_spanned(root, format!("cgroup root `{}` must be an absolute path", root.value));
            continue;
        }
        if root.value.contains(GLOB_META) {
            problems.at_spanned(root, format!("cgroup root `{}` must be a plain directory, not a glob", root.value));
            continue;
        }
        let normalized = normalize_absolute(&root.value);
        if normalized == "/" {
            problems.at_spanned(root, "cgroup root `/` is not allowed: it would govern every process");
            continue;
        }
        if !roots.contains(&normalized) {
            roots.push(normalized);
        }
    }
    roots
}

fn validate_credential_rule(
    rule: &Spanned<RawCredentialRule>,
    default_mode: Mode,
    ids: &mut RuleIds,
    problems: &mut Problems,
) -> Option<CredentialRule> {
    let raw = &rule.value;
    let id_ok = ids.claim(&raw.id, problems);
    let mitre = validate_mitre(raw.mitre.as_ref(), DEFAULT_CREDENTIAL_MITRE, problems);

    let mut paths = Vec::new();
    if let Some(list) = &raw.paths {
        if list.value.is_empty() {
            problems.at_spanned(list, "`paths` is empty: remove it or list at least one path");
        }
        for path in &list.value {
            match parse_credential_path(&path.value) {
                Ok(parsed) => paths.push(parsed),
                Err(message) => problems.at_spanned(path, message),
            }
        }
    }
    let mut names = Vec::new();
    if let Some(list) = &raw.names {
        if list.value.is_empty() {
            problems.at_spanned(list, "`names` is empty: remove it or list at least one name");
        }
        for name in &list.value {
            match NamePattern::parse(&name.value) {
                Ok(parsed) => names.push(parsed),
                Err(message) => problems.at_spanned(name, message),
            }
        }
    }
    let proc_environ = raw.proc_environ.as_ref().is_some_and(|flag| flag.value);
    let mut consumers: Vec<String> = Vec::new();
    if let Some(list) = &raw.consumers {
        if list.value.is_empty() {
            problems.at_spanned(list, "`consumers` is empty: remove it or name at least one program");
        }
        for consumer in &list.value {
            match validate_consumer(&consumer.value) {
                Ok(name) if !consumers.contains(&name) => consumers.push(name),
                Ok(_) => {}
                Err(message) => problems.at_spanned(consumer, message),
            }
        }
    }
    // Judged on what was written, so an entry already reported as invalid is not blamed twice.
    let written: Vec<&Spanned<String>> =
        [&raw.paths, &raw.names].into_iter().flatten().flat_map(|list| list.value.iter()).collect();
    if !proc_environ && written.is_empty() {
        problems.at_spanned(
            &raw.id,
            format!(
                "credential rule `{}` protects nothing: give `paths`, `names` or `proc_environ: true`",
                raw.id.value
            ),
        );
    } else if !proc_environ && written.iter().all(|entry| entry.value.starts_with('!')) {
        problems.at_spanned(
            &raw.id,
            format!("credential rule `{}` only has exemptions (`!...`): add a path or name to protect", raw.id.value),
        );
    }

    id_ok.then(|| CredentialRule {
        id: raw.id.value.clone(),
        mode: raw.mode.as_ref().map_or(default_mode, |mode| mode.value),
        severity: raw.severity.as_ref().map_or(Severity::Critical, |severity| severity.value),
        mitre,
        description: description_or(raw.description.as_ref(), "credential access"),
        paths,
        names,
        proc_environ,
        consumers,
    })
}

/// A consumer: a program name (`kubectl`, `docker-buildx`) or an absolute path.
fn validate_consumer(text: &str) -> Result<String, String> {
    if text.starts_with('/') {
        if text.split('/').any(|component| component == "..") || text.contains(GLOB_META) {
            return Err(format!("consumer `{text}`: an absolute path without `..` or glob characters"));
        }
        let normalized = normalize_absolute(text);
        if normalized == "/" {
            return Err(format!("consumer `{text}` names no program"));
        }
        return Ok(normalized);
    }
    let well_formed = !text.is_empty()
        && text.len() < guard_common::NAME_LEN
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+'))
        && !text.starts_with('.');
    if !well_formed {
        return Err(format!(
            "consumer `{text}`: a program name (letters, digits, `-`, `_`, `.`, `+`, at most {} bytes) or an absolute path",
            guard_common::NAME_LEN - 1
        ));
    }
    Ok(text.to_string())
}

/// `/abs/glob`, `~/glob`, either with a leading `!` (exemption); a trailing `/` means
/// everything below the directory.
fn parse_credential_path(text: &str) -> Result<CredentialPath, String> {
    let (exempt, body) = match text.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let whole_directory = body.ends_with('/');
    let (home_relative, mut glob) = if let Some(rest) = body.strip_prefix("~/") {
        (true, normalize_relative(rest)?)
    } else if body.starts_with('/') {
        if body.split('/').any(|component| component == "..") {
            return Err(format!("credential path `{text}`: `..` is not allowed"));
        }
        (false, normalize_absolute(body))
    } else if body.starts_with('~') {
        return Err(format!("credential path `{text}`: `~user/` is not supported; `~/` means every user's home"));
    } else {
        return Err(format!(
            "credential path `{text}` must be absolute or start with `~/` (use `names` for file names anywhere)"
        ));
    };
    if glob.is_empty() || glob == "/" {
        return Err(format!("credential path `{text}` names a whole home or the root directory"));
    }
    if whole_directory {
        glob.push_str("/**");
    }
    // Compile once here so a bad glob is reported against the policy line.
    let probe = if home_relative { format!("/home/probe/{glob}") } else { glob.clone() };
    globset::GlobBuilder::new(&probe)
        .literal_separator(true)
        .build()
        .map_err(|error| format!("bad glob `{text}`: {}", glob_error_kind(&error)))?;
    Ok(CredentialPath { written: text.to_string(), home_relative, glob, exempt })
}

fn glob_error_kind(error: &globset::Error) -> String {
    error.kind().to_string()
}

fn validate_network(section: &Spanned<RawNetworkScope>, default_mode: Mode, problems: &mut Problems) -> NetworkScope {
    let raw = &section.value;
    let mut allow = Vec::new();
    let mut first_location: Option<Location> = None;
    for entry in &raw.allow.value {
        match parse_allow_entry(&entry.value) {
            Ok(parsed) => {
                first_location.get_or_insert(entry.referenced);
                allow.push(parsed);
            }
            Err(message) => problems.at_spanned(entry, message),
        }
    }
    // Nested prefixes inherit their covering entries' ports; the result must still fit.
    let nets = allow.iter().filter_map(|entry| match &entry.target {
        AllowTarget::Net(net) => Some((*net, entry.ports.clone())),
        AllowTarget::Host(_) => None,
    });
    let merged = largest_merged_port_count(&build_lpm_tables(nets, 0));
    if merged > guard_common::PORTS_PER_ENTRY {
        problems.at_spanned(
            &raw.allow,
            format!(
                "after merging nested prefixes an entry would allow {merged} ports; the kernel holds at most {} per entry",
                guard_common::PORTS_PER_ENTRY
            ),
        );
    }
    NetworkScope {
        mode: raw.mode.as_ref().map_or(default_mode, |mode| mode.value),
        severity: raw.severity.as_ref().map_or(Severity::High, |severity| severity.value),
        mitre: validate_mitre(raw.mitre.as_ref(), DEFAULT_NETWORK_MITRE, problems),
        description: description_or(raw.description.as_ref(), "network destination outside scope"),
        allow_loopback: raw.allow_loopback.unwrap_or(true),
        allow,
    }
}

fn validate_roots(list: &SpannedList, key: &str, allow_session_cwd: bool, problems: &mut Problems) -> Vec<RootPath> {
    if list.value.is_empty() {
        problems.at_spanned(list, format!("`{key}` must list at least one directory"));
    }
    let mut roots = Vec::new();
    for root in &list.value {
        match RootPath::parse(&root.value, allow_session_cwd) {
            Ok(parsed) if !roots.contains(&parsed) => roots.push(parsed),
            Ok(_) => {}
            Err(message) => problems.at_spanned(root, message),
        }
    }
    roots
}

fn validate_files(section: &Spanned<RawFileScope>, default_mode: Mode, problems: &mut Problems) -> FileScope {
    let raw = &section.value;
    let write_roots = validate_roots(&raw.write_roots, "write_roots", true, problems);
    if write_roots.contains(&RootPath::Absolute("/".into())) {
        problems.at_spanned(&raw.write_roots, "write root `/` allows every write: remove `scope.files` instead");
    }
    let read_allow = raw.read_allow.as_ref().map(|list| validate_roots(list, "read_allow", true, problems));
    FileScope {
        mode: raw.mode.as_ref().map_or(default_mode, |mode| mode.value),
        severity: raw.severity.as_ref().map_or(Severity::High, |severity| severity.value),
        mitre: validate_mitre(raw.mitre.as_ref(), DEFAULT_FILES_MITRE, problems),
        description: description_or(raw.description.as_ref(), "file access outside scope"),
        write_roots,
        read_allow,
    }
}

fn validate_unix(section: &Spanned<RawUnixScope>, default_mode: Mode, problems: &mut Problems) -> UnixScope {
    let raw = &section.value;
    if raw.paths.value.is_empty() {
        problems.at_spanned(&raw.paths, "`paths` must list at least one socket (or remove `scope.unix`)");
    }
    let mut paths = Vec::new();
    for entry in &raw.paths.value {
        match parse_unix_path(&entry.value) {
            Ok(parsed) if !paths.contains(&parsed) => paths.push(parsed),
            Ok(_) => {}
            Err(message) => problems.at_spanned(entry, message),
        }
    }
    UnixScope {
        mode: raw.mode.as_ref().map_or(default_mode, |mode| mode.value),
        severity: raw.severity.as_ref().map_or(Severity::Critical, |severity| severity.value),
        mitre: validate_mitre(raw.mitre.as_ref(), DEFAULT_UNIX_MITRE, problems),
        description: description_or(raw.description.as_ref(), DEFAULT_UNIX_DESCRIPTION),
        paths,
    }
}

/// `$GUARD_SOCKET`, or an absolute socket path whose components may be globs (`*` stands
/// for one component: rootless runtimes live under `/run/user/<uid>/`).
fn parse_unix_path(text: &str) -> Result<UnixPath, String> {
    if text == GUARD_SOCKET_TOKEN {
        return Ok(UnixPath::GuardSocket);
    }
    if text.starts_with('$') {
        return Err(format!("unix socket `{text}`: the only variable here is `{GUARD_SOCKET_TOKEN}`"));
    }
    if !text.starts_with('/') {
        return Err(format!("unix socket `{text}` must be an absolute path (abstract sockets are not supported)"));
    }
    if text.contains('\0') {
        return Err(format!("unix socket `{}` contains a NUL byte", text.escape_debug()));
    }
    if text.split('/').any(|component| component == "..") {
        return Err(format!("unix socket `{text}`: `..` is not allowed"));
    }
    if text.ends_with('/') {
        return Err(format!("unix socket `{text}` names a directory; name the socket file"));
    }
    let normalized = normalize_absolute(text);
    if normalized == "/" {
        return Err(format!("unix socket `{text}` names the root directory"));
    }
    // The kernel compares the caller's sun_path, which holds 107 bytes and a NUL.
    let max = guard_common::UNIX_PATH_LEN - 1;
    if normalized.len() > max {
        return Err(format!(
            "unix socket `{text}` is {} bytes long; a socket path has at most {max}",
            normalized.len()
        ));
    }
    if normalized.split('/').any(|component| component == "**") {
        return Err(format!("unix socket `{text}`: `**` is not supported; use `*` for one directory level"));
    }
    if normalized.contains(GLOB_META) {
        globset::GlobBuilder::new(&normalized)
            .literal_separator(true)
            .build()
            .map_err(|error| format!("bad glob `{text}`: {}", glob_error_kind(&error)))?;
    }
    Ok(UnixPath::Pattern(normalized))
}
