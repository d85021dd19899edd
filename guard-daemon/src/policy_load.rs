//! From a policy (file or built-in) to what the kernel maps hold.
//!
//! Everything that can fail (reading, parsing, compiling, scanning, resolving) happens here,
//! before any map is touched, so a bad policy never leaves the kernel half-configured.

use std::{
    collections::BTreeMap,
    net::{IpAddr, ToSocketAddrs as _},
    path::Path,
};

use anyhow::{Context as _, anyhow};
use guard_common::{Config, DevIno, ExecWatch, NameKey, PathSuffixKey, PortSet, RuleRef, watch};
use guard_engine::{
    consumer::ConsumerTable,
    destructive::{DestructiveEvaluator, WatchKind},
    engine::PolicyRef,
    policy::{CompileContext, CompiledPolicy, Policy, default_policy, parse_policy},
};

use crate::scan::{self, identity};

/// Where watched binaries are looked up by name, so a symlink or hardlink to them (another
/// name, same inode) is held too.
const BIN_DIRS: &[&str] = &["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/// Plain data for the kernel maps.
#[derive(Debug, Default)]
pub struct PreparedMaps {
    pub cred_inodes: Vec<(DevIno, RuleRef)>,
    pub cred_names: Vec<(NameKey, RuleRef)>,
    pub cred_prefixes: Vec<(u32, NameKey, RuleRef)>,
    pub cred_suffixes: Vec<(u32, NameKey, RuleRef)>,
    /// Directories exempted with `!dir/` paths: name matches below them are no credentials.
    pub cred_exempt_dirs: Vec<(DevIno, u32)>,
    pub write_roots: Vec<(DevIno, String)>,
    pub read_roots: Vec<(DevIno, String)>,
    pub net4: Vec<(u32, [u8; 4], PortSet)>,
    pub net6: Vec<(u32, [u8; 16], PortSet)>,
    pub exec_names: Vec<(NameKey, ExecWatch)>,
    pub exec_paths: Vec<(u32, PathSuffixKey, ExecWatch)>,
    pub exec_inodes: Vec<(DevIno, ExecWatch)>,
    /// Consumer binaries, their scripts' interpreters and the scripts (`consumer_file::*`).
    pub consumer_files: Vec<(DevIno, u32)>,
}

pub struct LoadedPolicy {
    /// A file path, or `builtin`.
    pub source: String,
    pub policy: Policy,
    pub compiled: CompiledPolicy,
    pub evaluator: DestructiveEvaluator,
    pub maps: PreparedMaps,
    /// The credential consumers, by the identity of their files.
    pub consumers: ConsumerTable,
    /// Things an operator should know (unresolvable hosts, truncated scans, policy warnings).
    pub notes: Vec<String>,
}

/// Read and validate a policy file without touching the machine (for `guard policy check`).
pub fn parse_file(path: &Path) -> anyhow::Result<Policy> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading policy {}", path.display()))?;
    parse_policy(&path.display().to_string(), &text).map_err(|err| anyhow!("{err}"))
}

pub fn load(path: Option<&Path>) -> anyhow::Result<LoadedPolicy> {
    let (source, policy) = match path {
        Some(path) => (path.display().to_string(), parse_file(path)?),
        None => ("builtin".to_string(), default_policy()),
    };
    let compiled = policy.compile(&CompileContext::with_homes(scan::home_dirs()));
    let evaluator = DestructiveEvaluator::new(&policy);
    let mut notes = compiled.warnings.clone();
    let (maps, consumers) = prepare(&compiled, &mut notes)?;
    Ok(LoadedPolicy { source, policy, compiled, evaluator, maps, consumers, notes })
}

/// The same policy, resolved against the machine again (credential files that appeared,
/// hosts whose addresses changed).
pub fn rescan(current: &LoadedPolicy) -> anyhow::Result<LoadedPolicy> {
    let compiled = current.policy.compile(&CompileContext::with_homes(scan::home_dirs()));
    let mut notes = compiled.warnings.clone();
    let (maps, consumers) = prepare(&compiled, &mut notes)?;
    Ok(LoadedPolicy {
        source: current.source.clone(),
        policy: current.policy.clone(),
        compiled,
        evaluator: current.evaluator.clone(),
        maps,
        consumers,
        notes,
    })
}

fn prepare(compiled: &CompiledPolicy, notes: &mut Vec<String>) -> anyhow::Result<(PreparedMaps, ConsumerTable)> {
    let mut maps = PreparedMaps::default();
    let consumers = crate::consumers::resolve(&compiled.credentials.consumers, notes);
    maps.consumer_files = consumers.kernel_entries();
    let creds = &compiled.credentials;
    let matcher = creds.path_matcher().context("building the credential path matcher")?;
    let scanned = scan::scan_credentials(creds, &matcher);
    if scanned.truncated {
        notes.push(format!("credential scan stopped after {} entries; narrow the policy's globs", scan::MAX_VISITED));
    }
    maps.cred_inodes = scanned.files.iter().map(|(id, (rule, _))| (*id, *rule)).collect();
    maps.cred_names = creds.exact_names.iter().map(|n| (n.key, n.rule)).collect();
    maps.cred_prefixes = creds.prefix_names.iter().map(|n| (n.prefix_bits, n.key, n.rule)).collect();
    maps.cred_suffixes = creds.suffix_names.iter().map(|n| (n.prefix_bits, n.key, n.rule)).collect();
    for path in creds.paths.iter().filter(|p| p.rule.exempt != 0 && p.glob.ends_with("/**")) {
        if let Ok(meta) = std::fs::metadata(&path.scan_root)
            && meta.is_dir()
        {
            maps.cred_exempt_dirs.push((identity(&meta), 1));
        }
    }
    if let Some(rule) = creds.proc_environ {
        // `environ` of another process: the kernel matches the name; see the open probe.
        let key = guard_engine::policy::names::name_key(*b"environ");
        maps.cred_names.push((key, rule));
    }

    if let Some(files) = &compiled.files {
        for root in files.read_allow.iter().flatten() {
            match std::fs::metadata(root) {
                Ok(meta) if meta.is_dir() => maps.read_roots.push((identity(&meta), root.clone())),
                Ok(_) => notes.push(format!("read root {root} is not a directory; ignored")),
                Err(err) => notes.push(format!("read root {root}: {err}; ignored until reload")),
            }
        }
        for root in &files.write_roots {
            match std::fs::metadata(root) {
                // A regular file is a root of itself: the kernel's walk starts at the opened
                // file (cargo's lock files directly in ~/.cargo).
                Ok(meta) if meta.is_dir() || meta.is_file() => maps.write_roots.push((identity(&meta), root.clone())),
                Ok(_) => notes.push(format!("write root {root} is neither a directory nor a file; ignored")),
                Err(err) => notes.push(format!("write root {root}: {err}; ignored until reload")),
            }
        }
    }

    if let Some(network) = &compiled.network {
        // The resolver task's sets (by TTL, see crate::dns); a host it has not answered yet
        // is resolved here once through libc (start-up, a host new in a reload).
        let names: Vec<&str> = network.hosts.iter().map(|host| host.host.as_str()).collect();
        let resolved: Vec<(String, Vec<IpAddr>)> = crate::dns::sync_hosts(&names)
            .into_iter()
            .map(|(host, known)| {
                let addrs = known.unwrap_or_else(|| match (host.as_str(), 0).to_socket_addrs() {
                    Ok(found) => found.map(|sa| sa.ip()).collect(),
                    Err(err) => {
                        notes.push(format!("allow-list host {host} does not resolve ({err}); nothing allowed for it"));
                        Vec::new()
                    }
                });
                (host, addrs)
            })
            .collect();
        let tables = network.with_resolved_hosts(&resolved);
        for entry in &tables.v4 {
            let ports = entry.port_set().map_err(|err| anyhow!("network allow entry {}: {err}", entry.net))?;
            maps.net4.push((u32::from(entry.net.prefix_len()), entry.net.network().octets(), ports));
        }
        for entry in &tables.v6 {
            let ports = entry.port_set().map_err(|err| anyhow!("network allow entry {}: {err}", entry.net))?;
            maps.net6.push((u32::from(entry.net.prefix_len()), entry.net.network().octets(), ports));
        }
    }

    let mut inodes: BTreeMap<DevIno, ExecWatch> = BTreeMap::new();
    for w in &compiled.exec_watch {
        let kind = match w.kind {
            WatchKind::Always => watch::HOLD,
            WatchKind::ScriptFlag => watch::HOLD_IF_SCRIPT,
        };
        let value = ExecWatch { kind, mode: guard_common::mode::ENFORCE, _pad: [0; 2], rule: u32::MAX };
        maps.exec_names.push((w.key(), value));
        let (bits, key) = PathSuffixKey::for_program(w.name.as_bytes());
        maps.exec_paths.push((bits, key, value));
        for dir in BIN_DIRS {
            if let Ok(meta) = std::fs::metadata(Path::new(dir).join(&w.name))
                && meta.is_file()
            {
                // An "always" hold wins over a script-flag hold on a shared inode.
                let slot = inodes.entry(identity(&meta)).or_insert(value);
                if kind == watch::HOLD {
                    *slot = value;
                }
            }
        }
    }
    maps.exec_inodes = inodes.into_iter().collect();
    Ok((maps, consumers))
}

impl LoadedPolicy {
    pub fn kernel_config(&self, daemon_tgid: u32) -> Config {
        let mut config = self.compiled.kernel_config(daemon_tgid, true);
        if self.wants_session_workspace() {
            config.write_scope |= guard_common::WRITE_SCOPE_SESSION_CWD;
        }
        if self.compiled.files.as_ref().is_some_and(|files| files.read_allow_session_cwd) && config.read_scope != 0 {
            config.read_scope |= guard_common::WRITE_SCOPE_SESSION_CWD;
        }
        config
    }

    /// The policy lists `$CWD` among its write (or read) roots: each session's workspace counts.
    pub fn wants_session_workspace(&self) -> bool {
        guard_engine::engine::wants_session_workspace(&self.compiled)
    }

    /// What the engine takes of it ([`guard_engine::engine::Engine::apply_policy`]).
    pub fn engine_policy(&self) -> PolicyRef<'_> {
        PolicyRef { compiled: &self.compiled, evaluator: &self.evaluator, consumers: &self.consumers }
    }
}
