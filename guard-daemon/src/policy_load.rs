//! From a policy (file or built-in) to what the kernel maps hold.
//!
//! Everything that can fail (reading, parsing, compiling, scanning, resolving) happens here,
//! before any map is touched, so a bad policy never leaves the kernel half-configured.

use std::{
    collections::BTreeMap,
    net::{IpAddr, ToSocketAddrs as _},
    os::unix::fs::FileTypeExt as _,
    path::Path,
};

use anyhow::{Context as _, anyhow};
use guard_common::{Config, DevIno, ExecWatch, NameKey, PathSuffixKey, PortSet, RuleRef, UNIX_PATH_LEN, watch};
use guard_engine::{
    consumer::ConsumerTable,
    destructive::{DestructiveEvaluator, WatchKind},
    engine::PolicyRef,
    policy::{CompileContext, CompiledPolicy, CompiledUnix, Policy, default_policy, parse_policy},
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
    /// `UNIX_PATHS`: `scope.unix` socket paths as a caller may write them (expanded, canonical,
    /// the /run <-> /var/run twin), NUL-padded.
    pub unix_paths: Vec<([u8; UNIX_PATH_LEN], RuleRef)>,
    /// `UNIX_INODES`: the `scope.unix` sockets that exist now, by identity.
    pub unix_inodes: Vec<(DevIno, RuleRef)>,
    /// A path for each `unix_inodes` entry, for the records of the inode hooks.
    pub unix_names: BTreeMap<DevIno, String>,
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
    /// The daemon's control socket (absolute), what `$GUARD_SOCKET` stands for; kept so a
    /// rescan or reload compiles against the same one.
    pub control_socket: Option<String>,
}

/// Read and validate a policy file without touching the machine (for `guard policy check`).
pub fn parse_file(path: &Path) -> anyhow::Result<Policy> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading policy {}", path.display()))?;
    parse_policy(&path.display().to_string(), &text).map_err(|err| anyhow!("{err}"))
}

/// `control_socket`: the daemon's `--socket` (`None`: the default one), for `$GUARD_SOCKET`.
pub fn load(path: Option<&Path>, control_socket: Option<&Path>) -> anyhow::Result<LoadedPolicy> {
    let (source, policy) = match path {
        Some(path) => (path.display().to_string(), parse_file(path)?),
        None => ("builtin".to_string(), default_policy()),
    };
    // The daemon binds a relative --socket below its working directory: so does the key.
    let control_socket = control_socket
        .map(|socket| {
            let absolute = std::path::absolute(socket)
                .with_context(|| format!("control socket {}: making it absolute", socket.display()))?;
            absolute
                .to_str()
                .map(str::to_string)
                .ok_or_else(|| anyhow!("control socket {}: not UTF-8", absolute.display()))
        })
        .transpose()?;
    let compiled = policy.compile(&compile_context(control_socket.as_deref()));
    let evaluator = DestructiveEvaluator::new(&policy);
    let mut notes = compiled.warnings.clone();
    let (maps, consumers) = prepare(&compiled, &mut notes)?;
    Ok(LoadedPolicy { source, policy, compiled, evaluator, maps, consumers, notes, control_socket })
}

fn compile_context(control_socket: Option<&str>) -> CompileContext {
    CompileContext { homes: scan::home_dirs(), control_socket: control_socket.map(str::to_string) }
}

/// The same policy, resolved against the machine again (credential files that appeared,
/// hosts whose addresses changed).
pub fn rescan(current: &LoadedPolicy) -> anyhow::Result<LoadedPolicy> {
    let compiled = current.policy.compile(&compile_context(current.control_socket.as_deref()));
    let mut notes = compiled.warnings.clone();
    let (maps, consumers) = prepare(&compiled, &mut notes)?;
    Ok(LoadedPolicy {
        control_socket: current.control_socket.clone(),
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

    if let Some(unix) = &compiled.unix {
        prepare_unix(unix, &mut maps, notes);
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

/// Upper bound on the sockets one `scope.unix` glob may expand to (a glob over a directory
/// with many entries must not stall start-up or fill the map).
pub const MAX_UNIX_MATCHES: usize = 1024;

/// `scope.unix`: every pattern expanded against the file system. Each path gets its
/// `UNIX_PATHS` keys (a literal one even before its socket exists: it may appear later; the
/// rescan then finds its inode), each existing socket its `UNIX_INODES` entry.
fn prepare_unix(unix: &CompiledUnix, maps: &mut PreparedMaps, notes: &mut Vec<String>) {
    let rule = unix.rule_ref();
    let mut keys: BTreeMap<[u8; UNIX_PATH_LEN], RuleRef> = BTreeMap::new();
    let mut inodes: BTreeMap<DevIno, RuleRef> = BTreeMap::new();
    for pattern in &unix.patterns {
        let paths = if CompiledUnix::is_literal(pattern) {
            vec![pattern.clone()]
        } else {
            match expand_unix_glob(pattern) {
                Ok(paths) => paths,
                Err(err) => {
                    notes.push(format!("scope.unix {pattern}: {err}; ignored until reload"));
                    continue;
                }
            }
        };
        if paths.len() > MAX_UNIX_MATCHES {
            notes.push(format!("scope.unix {pattern}: more than {MAX_UNIX_MATCHES} matches; the rest are ignored"));
        }
        for path in paths.into_iter().take(MAX_UNIX_MATCHES) {
            let canonical = std::fs::canonicalize(&path).ok().and_then(|p| p.to_str().map(str::to_string));
            for spelling in unix_spellings(&path, canonical.as_deref()) {
                match unix_key(&spelling) {
                    Some(key) => {
                        keys.entry(key).or_insert(rule);
                    }
                    None => notes.push(format!(
                        "scope.unix {pattern}: {spelling} is longer than a socket path ({} bytes); not a key",
                        UNIX_PATH_LEN - 1
                    )),
                }
            }
            match std::fs::metadata(&path) {
                Ok(meta) if meta.file_type().is_socket() => {
                    let id = identity(&meta);
                    inodes.entry(id).or_insert(rule);
                    maps.unix_names.entry(id).or_insert(path);
                }
                // Not a socket (yet): only the path keys stand for it.
                Ok(_) | Err(_) => {}
            }
        }
    }
    maps.unix_paths = keys.into_iter().collect();
    maps.unix_inodes = inodes.into_iter().collect();
}

/// The paths a glob pattern (`*` within single components) matches now, sorted: a walk from
/// its deepest literal directory down exactly as many levels as it has components left,
/// following symlinks (as connect() would). A missing directory matches nothing; an unreadable
/// one is an error.
fn expand_unix_glob(pattern: &str) -> anyhow::Result<Vec<String>> {
    let components: Vec<&str> = pattern.split('/').filter(|component| !component.is_empty()).collect();
    let literal = components.iter().take_while(|component| CompiledUnix::is_literal(component)).count();
    let root = format!("/{}", components[..literal].join("/"));
    let depth = components.len() - literal;
    let matcher = globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .with_context(|| format!("pattern {pattern}"))?
        .compile_matcher();
    let mut found = Vec::new();
    for entry in walkdir::WalkDir::new(&root).follow_links(true).min_depth(depth).max_depth(depth) {
        let entry = match entry {
            Ok(entry) => entry,
            Err(err) if err.loop_ancestor().is_some() => continue,
            Err(err) if err.io_error().is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound) => continue,
            Err(err) => return Err(anyhow!("reading below {root}: {err}")),
        };
        if let Some(text) = entry.path().to_str()
            && matcher.is_match(text)
        {
            found.push(text.to_string());
            if found.len() > MAX_UNIX_MATCHES * 4 {
                return Err(anyhow!("more than {} candidates below {root}", MAX_UNIX_MATCHES * 4));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// How callers may spell a socket: as expanded, canonical (symlinks resolved), and each with
/// its /run <-> /var/run twin (on most systems /var/run is a symlink to /run; clients use both).
fn unix_spellings(path: &str, canonical: Option<&str>) -> Vec<String> {
    let mut spellings: Vec<String> = Vec::new();
    for base in std::iter::once(path).chain(canonical) {
        let twin = if let Some(rest) = base.strip_prefix("/var/run/") {
            Some(format!("/run/{rest}"))
        } else {
            base.strip_prefix("/run/").map(|rest| format!("/var/run/{rest}"))
        };
        for spelling in std::iter::once(base.to_string()).chain(twin) {
            if !spellings.contains(&spelling) {
                spellings.push(spelling);
            }
        }
    }
    spellings
}

/// A `UNIX_PATHS` key: the path NUL-padded, as the kernel copies sun_path; `None` when it
/// does not fit with its NUL.
fn unix_key(path: &str) -> Option<[u8; UNIX_PATH_LEN]> {
    let bytes = path.as_bytes();
    if bytes.len() >= UNIX_PATH_LEN {
        return None;
    }
    let mut key = [0u8; UNIX_PATH_LEN];
    key[..bytes.len()].copy_from_slice(bytes);
    Some(key)
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
        PolicyRef {
            compiled: &self.compiled,
            evaluator: &self.evaluator,
            consumers: &self.consumers,
            unix_names: &self.maps.unix_names,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use guard_engine::policy::Mode;

    use super::*;
    use crate::audit_sink::tests::TempDir;

    fn key_text(key: &[u8; UNIX_PATH_LEN]) -> String {
        String::from_utf8_lossy(guard_common::c_bytes(key)).into_owned()
    }

    #[test]
    fn unix_scope_keys_paths_and_inodes() {
        let dir = TempDir::new("unix");
        let base = dir.0.to_str().expect("utf-8 temp dir").to_string();
        for sub in ["rt/a", "rt/b", "rt/c"] {
            std::fs::create_dir_all(dir.0.join(sub)).expect("mkdir");
        }
        let _a = UnixListener::bind(dir.0.join("rt/a/docker.sock")).expect("bind a");
        let _b = UnixListener::bind(dir.0.join("rt/b/docker.sock")).expect("bind b");
        std::fs::write(dir.0.join("rt/c/docker.sock"), b"not a socket").expect("file");
        std::os::unix::fs::symlink(dir.0.join("rt/a/docker.sock"), dir.0.join("link.sock")).expect("symlink");
        let unix = CompiledUnix {
            rule: 3,
            mode: Mode::Enforce,
            patterns: vec![
                format!("{base}/rt/*/docker.sock"),
                format!("{base}/link.sock"),
                format!("{base}/missing.sock"),
            ],
        };
        let mut maps = PreparedMaps::default();
        let mut notes = Vec::new();
        prepare_unix(&unix, &mut maps, &mut notes);
        assert!(notes.is_empty(), "{notes:?}");

        let keys: Vec<String> = maps.unix_paths.iter().map(|(key, _)| key_text(key)).collect();
        let canonical_a = std::fs::canonicalize(dir.0.join("rt/a/docker.sock")).expect("canonical");
        for expected in [
            format!("{base}/rt/a/docker.sock"),
            format!("{base}/rt/b/docker.sock"),
            format!("{base}/link.sock"),
            canonical_a.to_str().expect("utf-8").to_string(),
            // Not there (yet): the path key stands for it, no inode.
            format!("{base}/missing.sock"),
        ] {
            assert!(keys.contains(&expected), "{expected} not in {keys:?}");
        }
        assert!(maps.unix_paths.iter().all(|(_, rule)| rule.rule == 3 && rule.mode == guard_common::mode::ENFORCE));

        let id = |path: &str| identity(&std::fs::metadata(dir.0.join(path)).expect("stat"));
        let inodes: Vec<DevIno> = maps.unix_inodes.iter().map(|(id, _)| *id).collect();
        assert_eq!(inodes.len(), 2, "{inodes:?}");
        assert!(inodes.contains(&id("rt/a/docker.sock")) && inodes.contains(&id("rt/b/docker.sock")));
        assert!(!inodes.contains(&id("rt/c/docker.sock")), "a regular file is no socket");
        // The symlink reaches socket a, which keeps the name the glob found it by.
        assert_eq!(maps.unix_names.get(&id("rt/a/docker.sock")), Some(&format!("{base}/rt/a/docker.sock")));
        assert_eq!(maps.unix_names.len(), 2);
    }

    #[test]
    fn run_and_var_run_are_twins() {
        assert_eq!(unix_spellings("/var/run/docker.sock", None), ["/var/run/docker.sock", "/run/docker.sock"]);
        assert_eq!(
            unix_spellings("/var/run/crio/crio.sock", Some("/run/crio/crio.sock")),
            ["/var/run/crio/crio.sock", "/run/crio/crio.sock"]
        );
        assert_eq!(unix_spellings("/srv/x.sock", Some("/srv/y.sock")), ["/srv/x.sock", "/srv/y.sock"]);
        assert_eq!(unix_key(&"/".repeat(107)).map(|key| key[106]), Some(b'/'));
        assert_eq!(unix_key(&"/".repeat(108)), None);
    }

    #[test]
    fn the_default_policy_keys_the_control_socket() {
        let policy = default_policy();
        let context = CompileContext { homes: Vec::new(), control_socket: Some("/tmp/guard-test/ctl.sock".into()) };
        let compiled = policy.compile(&context);
        let mut maps = PreparedMaps::default();
        prepare_unix(compiled.unix.as_ref().expect("scope.unix"), &mut maps, &mut Vec::new());
        let keys: Vec<String> = maps.unix_paths.iter().map(|(key, _)| key_text(key)).collect();
        for expected in [
            "/tmp/guard-test/ctl.sock",
            "/run/docker.sock",
            "/var/run/docker.sock",
            "/run/containerd/containerd.sock",
            "/var/run/containerd/containerd.sock",
        ] {
            assert!(keys.contains(&expected.to_string()), "{expected} not in {keys:?}");
        }
    }
}
