//! Credential consumers: is this exec the program that owns a credential?
//!
//! A credential rule names its consumers (`consumers: [kubectl, helm]`). The daemon resolves
//! each name to files at load and every rescan ([`ConsumerTable`]); the kernel holds every exec
//! of those files for a moment, and [`ConsumerTable::judge`] decides, from what the held image
//! is about to run with, whether it is the consumer. Only then does the kernel let its reads of
//! the rule's files through.
//!
//! What makes a consumer:
//! * a binary: the file the kernel executed (device, inode) is the consumer's file, and
//!   `argv[0]` names it (a multi-call binary such as git dispatches on `argv[0]`); a copy or a
//!   rename has another inode, the dynamic loader or a memfd is another file;
//! * a `#!` script (npm, the aws CLI): the kernel executed one of its interpreters with the
//!   script as the first argument, no interpreter option before it (`python3 -c`, `node -e`,
//!   `node -r evil.js` are never the tool), and the argument resolves to the script's file.
//!   The kernel then confirms it at the interpreter's first open of a file of that name, so a
//!   path swapped after this judgement loses the grant;
//! * an environment that cannot inject code into it: no `LD_PRELOAD` and kin for a dynamically
//!   linked binary or an interpreter, no `NODE_OPTIONS`, `PYTHONPATH` and kin for scripts.
//!
//! A consumer can still be asked to do harm (`kubectl delete`): that is what the scope, the
//! destructive and the trajectory rules are for.

use std::collections::HashMap;

use guard_common::{ConsumerGrant, DevIno, NAME_LEN, consumer_file, consumer_state};

/// Environment variables that load foreign code into a dynamically linked program.
/// `LD_LIBRARY_PATH` is judged by its directories instead ([`Resolver::trusted_library_dir`]):
/// cargo, conda and CUDA set it to directories only root can write.
pub const LOADER_INJECTION: &[&str] = &["LD_PRELOAD", "LD_AUDIT", "GCONV_PATH"];

/// What the judgement needs from the machine, as the held process sees it.
pub trait Resolver {
    /// The identity and real basename of the file a script argument names, or `None`.
    fn script(&self, argument: &str) -> Option<(DevIno, String)>;
    /// May libraries be loaded from this `LD_LIBRARY_PATH` directory (no one but root can
    /// put a library there)?
    fn trusted_library_dir(&self, dir: &str) -> bool;
}

/// Environment variables that load foreign code into an interpreter's script.
pub const INTERPRETER_INJECTION: &[&str] = &[
    "NODE_OPTIONS",
    "NODE_PATH",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONUSERBASE",
    "PYTHONINSPECT",
    "PYTHONPLATLIBDIR",
    "PERL5OPT",
    "PERL5LIB",
    "PERLLIB",
    "RUBYOPT",
    "RUBYLIB",
];

/// One consumer program as the policy names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerInfo {
    pub name: String,
    /// Rule slots it owns (`ConsumerGrant::mask`).
    pub mask: u64,
    pub rule_ids: Vec<String>,
}

/// A file a consumer name resolved to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsumerFile {
    /// An executable: `dynamic` when it has an ELF interpreter (the loader honours LD_*).
    Binary { identity: DevIno, path: String, dynamic: bool },
    /// A `#!` script and the identities of the interpreters that may run it.
    Script { identity: DevIno, path: String, interpreters: Vec<DevIno> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct BinaryEntry {
    consumer: u32,
    /// Basename of the resolved file.
    file_name: String,
    dynamic: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct ScriptEntry {
    consumer: u32,
    script: DevIno,
    /// Basename of the script's real file (what its interpreter opens).
    script_name: String,
}

/// The consumers of the loaded policy, by the identity of the files the kernel executes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsumerTable {
    consumers: Vec<ConsumerInfo>,
    binaries: HashMap<DevIno, Vec<BinaryEntry>>,
    interpreters: HashMap<DevIno, Vec<ScriptEntry>>,
    scripts: Vec<DevIno>,
}

/// What the held image is about to run with.
#[derive(Clone, Debug, Default)]
pub struct ExecFacts<'a> {
    /// Identity of the file the kernel executed (`bprm->file`).
    pub file: DevIno,
    pub argv: &'a [String],
    pub env: &'a [(String, String)],
}

/// The outcome of [`ConsumerTable::judge`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// Not a consumer executable at all.
    NotWatched,
    /// A consumer's file, but not run as the consumer: why.
    Refused { consumer: String, why: String },
    /// The consumer: the grant to write for the process.
    Consumer { consumer: String, grant: ConsumerGrant },
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

impl ConsumerTable {
    /// Register a consumer; returns its index.
    pub fn add_consumer(&mut self, info: ConsumerInfo) -> u32 {
        self.consumers.push(info);
        (self.consumers.len() - 1) as u32
    }

    /// A file the consumer `index` resolved to.
    pub fn add_file(&mut self, index: u32, file: ConsumerFile) {
        match file {
            ConsumerFile::Binary { identity, path, dynamic } => {
                let entry = BinaryEntry { consumer: index, file_name: basename(&path).to_string(), dynamic };
                let entries = self.binaries.entry(identity).or_default();
                if !entries.contains(&entry) {
                    entries.push(entry);
                }
            }
            ConsumerFile::Script { identity, path, interpreters } => {
                let entry = ScriptEntry { consumer: index, script: identity, script_name: basename(&path).to_string() };
                for interpreter in interpreters {
                    let entries = self.interpreters.entry(interpreter).or_default();
                    if !entries.contains(&entry) {
                        entries.push(entry.clone());
                    }
                }
                if !self.scripts.contains(&identity) {
                    self.scripts.push(identity);
                }
            }
        }
    }

    pub fn consumer(&self, index: u32) -> Option<&ConsumerInfo> {
        self.consumers.get(index as usize)
    }

    pub fn consumers(&self) -> &[ConsumerInfo] {
        &self.consumers
    }

    /// `CONSUMER_FILES` for the kernel: binaries and interpreters (held at exec), scripts.
    pub fn kernel_entries(&self) -> Vec<(DevIno, u32)> {
        let mut entries: Vec<(DevIno, u32)> = Vec::new();
        let mut add = |identity: DevIno, bits: u32| match entries.iter_mut().find(|(known, _)| *known == identity) {
            Some((_, known)) => *known |= bits,
            None => entries.push((identity, bits)),
        };
        for identity in self.binaries.keys().chain(self.interpreters.keys()) {
            add(*identity, consumer_file::EXEC);
        }
        for identity in &self.scripts {
            add(*identity, consumer_file::SCRIPT);
        }
        entries.sort();
        entries
    }

    /// Consumer names that resolved to no file (the operator should know).
    pub fn unresolved(&self) -> Vec<&str> {
        self.consumers
            .iter()
            .enumerate()
            .filter(|(index, _)| {
                let index = *index as u32;
                !self.binaries.values().flatten().any(|e| e.consumer == index)
                    && !self.interpreters.values().flatten().any(|e| e.consumer == index)
            })
            .map(|(_, info)| info.name.as_str())
            .collect()
    }

    /// Is the held exec a consumer? `resolver` answers for the held process's view of the
    /// machine (its working directory, the library directories it would load from).
    pub fn judge(&self, facts: &ExecFacts<'_>, resolver: &dyn Resolver) -> Judgement {
        if let Some(entries) = self.binaries.get(&facts.file) {
            return self.judge_binary(entries, facts, resolver);
        }
        if let Some(entries) = self.interpreters.get(&facts.file) {
            return self.judge_script(entries, facts, resolver);
        }
        Judgement::NotWatched
    }

    fn name_of(&self, index: u32) -> String {
        self.consumer(index).map_or_else(|| format!("consumer #{index}"), |info| info.name.clone())
    }

    fn judge_binary(&self, entries: &[BinaryEntry], facts: &ExecFacts<'_>, resolver: &dyn Resolver) -> Judgement {
        let first = &entries[0];
        let argv0 = facts.argv.first().map_or("", |arg| basename(arg));
        // A multi-call binary (git-credential-store is git) acts as what argv[0] names, or,
        // in its undashed form, as `git credential-store` (what git itself runs): the
        // subcommand right after argv[0], no option before it.
        let undashed = |name: &str| {
            facts.argv.get(1).is_some_and(|sub| {
                name.strip_prefix(argv0).and_then(|rest| rest.strip_prefix('-')) == Some(sub.as_str())
            })
        };
        let Some(entry) = entries.iter().find(|entry| {
            argv0 == entry.file_name
                || undashed(&entry.file_name)
                || self.consumer(entry.consumer).is_some_and(|info| basename(&info.name) == argv0)
        }) else {
            return Judgement::Refused {
                consumer: self.name_of(first.consumer),
                why: format!("argv[0] `{argv0}` does not name the consumer `{}`", first.file_name),
            };
        };
        let name = self.name_of(entry.consumer);
        if entry.dynamic
            && let Some(why) = loader_injection(facts.env, resolver)
        {
            return Judgement::Refused { consumer: name, why };
        }
        let mask = entries
            .iter()
            .filter(|e| e.file_name == entry.file_name)
            .filter_map(|e| self.consumer(e.consumer))
            .fold(0, |mask, info| mask | info.mask);
        let grant = ConsumerGrant {
            mask,
            reported: 0,
            script: DevIno::default(),
            state: consumer_state::GRANTED,
            consumer: entry.consumer,
            script_name: [0; NAME_LEN],
        };
        Judgement::Consumer { consumer: name, grant }
    }

    fn judge_script(&self, entries: &[ScriptEntry], facts: &ExecFacts<'_>, resolver: &dyn Resolver) -> Judgement {
        let interpreter = facts.argv.first().map_or("the interpreter", |arg| basename(arg)).to_string();
        let refused = |why: String| Judgement::Refused { consumer: interpreter.clone(), why };
        let Some(script) = facts.argv.get(1) else {
            return refused("no script argument".into());
        };
        if script.starts_with('-') {
            return refused(format!("an interpreter option (`{script}`) comes before any script"));
        }
        let Some((identity, real_name)) = resolver.script(script) else {
            return refused(format!("its script `{script}` cannot be resolved"));
        };
        let Some(entry) = entries.iter().find(|entry| entry.script == identity) else {
            return refused(format!("its script `{script}` is not a consumer's script"));
        };
        let name = self.name_of(entry.consumer);
        if let Some(why) = loader_injection(facts.env, resolver).or_else(|| {
            injected(facts.env, INTERPRETER_INJECTION)
                .map(|var| format!("its environment sets {var}, which loads foreign code"))
        }) {
            return Judgement::Refused { consumer: name, why };
        }
        let mut script_name = [0u8; NAME_LEN];
        let bytes = real_name.as_bytes();
        if bytes.len() >= NAME_LEN {
            return Judgement::Refused {
                consumer: name,
                why: format!("its script name `{real_name}` is too long to confirm"),
            };
        }
        script_name[..bytes.len()].copy_from_slice(bytes);
        let mask = entries
            .iter()
            .filter(|e| e.script == identity)
            .filter_map(|e| self.consumer(e.consumer))
            .fold(0, |mask, info| mask | info.mask);
        let grant = ConsumerGrant {
            mask,
            reported: 0,
            script: identity,
            state: consumer_state::AWAIT_SCRIPT,
            consumer: entry.consumer,
            script_name,
        };
        Judgement::Consumer { consumer: name, grant }
    }
}

/// Why the dynamic loader would load foreign code into the program, if it would.
fn loader_injection(env: &[(String, String)], resolver: &dyn Resolver) -> Option<String> {
    if let Some(var) = injected(env, LOADER_INJECTION) {
        return Some(format!("its environment sets {var}, which loads foreign code"));
    }
    let (_, dirs) = env.iter().find(|(key, value)| key == "LD_LIBRARY_PATH" && !value.is_empty())?;
    // An empty element means the working directory.
    let untrusted = dirs.split([':', ';']).find(|dir| dir.is_empty() || !resolver.trusted_library_dir(dir))?;
    Some(format!("its LD_LIBRARY_PATH loads libraries from `{untrusted}`, which others than root can write"))
}

/// The first variable of `names` that the environment sets (to anything but empty).
fn injected<'a>(env: &[(String, String)], names: &[&'a str]) -> Option<&'a str> {
    names.iter().copied().find(|name| env.iter().any(|(key, value)| key == name && !value.is_empty()))
}

/// The interpreter a `#!` line asks for: its path, and for `#!/usr/bin/env [-S] NAME` the
/// program name env looks up. `None` when the text is no `#!` line.
pub fn shebang(head: &[u8]) -> Option<Shebang> {
    let rest = head.strip_prefix(b"#!")?;
    let line = rest.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim();
    let mut words = line.split_whitespace();
    let interpreter = words.next()?.to_string();
    if basename(&interpreter) == "env" {
        let program = words.find(|word| !word.starts_with('-'))?.to_string();
        return Some(Shebang { interpreter, via_env: Some(program) });
    }
    Some(Shebang { interpreter, via_env: None })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shebang {
    pub interpreter: String,
    /// `#!/usr/bin/env node`: `node`, looked up on PATH.
    pub via_env: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECTL: DevIno = DevIno { dev: 1, ino: 10 };
    const SSH_KEYGEN: DevIno = DevIno { dev: 1, ino: 11 };
    const GIT: DevIno = DevIno { dev: 1, ino: 12 };
    const NODE: DevIno = DevIno { dev: 1, ino: 20 };
    const NPM_CLI: DevIno = DevIno { dev: 1, ino: 21 };
    const EVIL: DevIno = DevIno { dev: 1, ino: 99 };

    fn table() -> ConsumerTable {
        let mut table = ConsumerTable::default();
        let kubectl =
            table.add_consumer(ConsumerInfo { name: "kubectl".into(), mask: 0b1, rule_ids: vec!["kubeconfig".into()] });
        table.add_file(
            kubectl,
            ConsumerFile::Binary { identity: KUBECTL, path: "/usr/bin/kubectl".into(), dynamic: false },
        );
        let keygen =
            table.add_consumer(ConsumerInfo { name: "ssh-keygen".into(), mask: 0b10, rule_ids: vec!["ssh".into()] });
        table.add_file(
            keygen,
            ConsumerFile::Binary { identity: SSH_KEYGEN, path: "/usr/bin/ssh-keygen".into(), dynamic: true },
        );
        let store = table.add_consumer(ConsumerInfo {
            name: "git-credential-store".into(),
            mask: 0b100,
            rule_ids: vec!["git".into()],
        });
        table.add_file(
            store,
            ConsumerFile::Binary {
                identity: GIT,
                path: "/usr/lib/git-core/git-credential-store".into(),
                dynamic: true,
            },
        );
        let npm = table.add_consumer(ConsumerInfo { name: "npm".into(), mask: 0b1000, rule_ids: vec!["npmrc".into()] });
        table.add_file(
            npm,
            ConsumerFile::Script {
                identity: NPM_CLI,
                path: "/usr/lib/node_modules/npm/bin/npm-cli.js".into(),
                interpreters: vec![NODE],
            },
        );
        table
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    struct Machine {
        script: Option<DevIno>,
    }

    impl Resolver for Machine {
        fn script(&self, _: &str) -> Option<(DevIno, String)> {
            self.script.map(|id| (id, "npm-cli.js".to_string()))
        }
        fn trusted_library_dir(&self, dir: &str) -> bool {
            dir.starts_with("/opt/")
        }
    }

    fn judge(
        table: &ConsumerTable,
        file: DevIno,
        argv: &[&str],
        env: &[(&str, &str)],
        script: Option<DevIno>,
    ) -> Judgement {
        let argv = strings(argv);
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let facts = ExecFacts { file, argv: &argv, env: &env };
        table.judge(&facts, &Machine { script })
    }

    #[test]
    fn a_consumer_binary_is_granted_its_rules() {
        let judged = judge(&table(), KUBECTL, &["kubectl", "config", "current-context"], &[], None);
        let Judgement::Consumer { consumer, grant } = judged else { panic!("{judged:?}") };
        assert_eq!(consumer, "kubectl");
        assert_eq!((grant.mask, grant.state, grant.consumer), (0b1, consumer_state::GRANTED, 0));
        // Through its full path too.
        assert!(matches!(judge(&table(), KUBECTL, &["/usr/bin/kubectl"], &[], None), Judgement::Consumer { .. }));
    }

    #[test]
    fn another_file_is_not_watched_whatever_it_is_called() {
        // A copy or rename of kubectl has another inode.
        assert_eq!(judge(&table(), EVIL, &["kubectl", "config", "view", "--raw"], &[], None), Judgement::NotWatched);
    }

    #[test]
    fn a_multi_call_binary_is_what_argv0_names() {
        let table = table();
        assert!(matches!(judge(&table, GIT, &["git-credential-store", "get"], &[], None), Judgement::Consumer { .. }));
        // What git runs for its credential helper: `git credential-store get`.
        assert!(matches!(
            judge(&table, GIT, &["git", "credential-store", "get"], &[], None),
            Judgement::Consumer { .. }
        ));
        // An option before the subcommand could reconfigure it: not the helper.
        let judged = judge(&table, GIT, &["git", "-c", "x=y", "credential-store", "get"], &[], None);
        assert!(matches!(judged, Judgement::Refused { .. }), "{judged:?}");
        let judged =
            judge(&table, GIT, &["git", "diff", "--no-index", "/root/.git-credentials", "/dev/null"], &[], None);
        assert!(matches!(&judged, Judgement::Refused { why, .. } if why.contains("argv[0] `git`")), "{judged:?}");
    }

    #[test]
    fn loader_injection_refuses_dynamic_binaries_only() {
        let table = table();
        let judged = judge(&table, SSH_KEYGEN, &["ssh-keygen", "-y"], &[("LD_PRELOAD", "/tmp/evil.so")], None);
        assert!(matches!(&judged, Judgement::Refused { why, .. } if why.contains("LD_PRELOAD")), "{judged:?}");
        // kubectl is static: the loader never runs, LD_LIBRARY_PATH cannot matter.
        assert!(matches!(
            judge(&table, KUBECTL, &["kubectl"], &[("LD_LIBRARY_PATH", "/opt/lib")], None),
            Judgement::Consumer { .. }
        ));
        // Libraries only root can place are fine; a directory anyone could fill is not.
        assert!(matches!(
            judge(&table, SSH_KEYGEN, &["ssh-keygen"], &[("LD_LIBRARY_PATH", "/opt/a:/opt/b")], None),
            Judgement::Consumer { .. }
        ));
        for dirs in ["/opt/a:/tmp/evil", "/opt/a::/opt/b"] {
            let judged = judge(&table, SSH_KEYGEN, &["ssh-keygen"], &[("LD_LIBRARY_PATH", dirs)], None);
            assert!(
                matches!(&judged, Judgement::Refused { why, .. } if why.contains("LD_LIBRARY_PATH")),
                "{dirs}: {judged:?}"
            );
        }
        // Set but empty loads nothing.
        assert!(matches!(
            judge(&table, SSH_KEYGEN, &["ssh-keygen"], &[("LD_PRELOAD", "")], None),
            Judgement::Consumer { .. }
        ));
    }

    #[test]
    fn a_script_consumer_needs_its_script_first_and_a_clean_environment() {
        let table = table();
        let judged = judge(&table, NODE, &["node", "/usr/bin/npm", "install"], &[], Some(NPM_CLI));
        let Judgement::Consumer { consumer, grant } = judged else { panic!("{judged:?}") };
        assert_eq!(consumer, "npm");
        assert_eq!(grant.state, consumer_state::AWAIT_SCRIPT);
        assert_eq!(grant.script, NPM_CLI);
        assert_eq!(guard_common::c_bytes(&grant.script_name), b"npm-cli.js");
        assert_eq!(grant.mask, 0b1000);

        for (argv, why) in [
            (&["node", "-e", "require('fs').readFileSync('/root/.npmrc')"][..], "option (`-e`)"),
            (&["node", "-r", "/tmp/evil.js", "/usr/bin/npm"][..], "option (`-r`)"),
            (&["node"][..], "no script"),
        ] {
            let judged = judge(&table, NODE, argv, &[], Some(NPM_CLI));
            assert!(matches!(&judged, Judgement::Refused { why: w, .. } if w.contains(why)), "{argv:?}: {judged:?}");
        }
        let judged = judge(&table, NODE, &["node", "/tmp/npm"], &[], Some(EVIL));
        assert!(
            matches!(&judged, Judgement::Refused { why, .. } if why.contains("not a consumer's script")),
            "{judged:?}"
        );
        let judged = judge(&table, NODE, &["node", "/usr/bin/npm"], &[], None);
        assert!(matches!(&judged, Judgement::Refused { why, .. } if why.contains("cannot be resolved")), "{judged:?}");
        let judged = judge(
            &table,
            NODE,
            &["node", "/usr/bin/npm"],
            &[("NODE_OPTIONS", "--require=/tmp/evil.js")],
            Some(NPM_CLI),
        );
        assert!(matches!(&judged, Judgement::Refused { why, .. } if why.contains("NODE_OPTIONS")), "{judged:?}");
    }

    #[test]
    fn kernel_entries_mark_exec_and_script_files() {
        let entries = table().kernel_entries();
        let bits = |id: DevIno| entries.iter().find(|(k, _)| *k == id).map(|(_, v)| *v);
        assert_eq!(bits(KUBECTL), Some(consumer_file::EXEC));
        assert_eq!(bits(NODE), Some(consumer_file::EXEC));
        assert_eq!(bits(NPM_CLI), Some(consumer_file::SCRIPT));
        assert_eq!(bits(EVIL), None);
    }

    #[test]
    fn unresolved_consumers_are_listed() {
        let mut table = table();
        table.add_consumer(ConsumerInfo { name: "k9s".into(), mask: 1, rule_ids: vec![] });
        assert_eq!(table.unresolved(), vec!["k9s"]);
    }

    #[test]
    fn shebang_lines() {
        assert_eq!(
            shebang(b"#!/usr/bin/env node\nrequire('x')"),
            Some(Shebang { interpreter: "/usr/bin/env".into(), via_env: Some("node".into()) })
        );
        assert_eq!(
            shebang(b"#!/usr/bin/env -S node --no-warnings\n"),
            Some(Shebang { interpreter: "/usr/bin/env".into(), via_env: Some("node".into()) })
        );
        assert_eq!(
            shebang(b"#! /usr/bin/python3 -s\n"),
            Some(Shebang { interpreter: "/usr/bin/python3".into(), via_env: None })
        );
        assert_eq!(shebang(b"\x7fELF..."), None);
    }
}
