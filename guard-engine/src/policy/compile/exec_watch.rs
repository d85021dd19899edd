//! The kernel's exec watch set: the basenames whose exec is held for the destructive
//! evaluator, compiled from the policy's destructive rules and the known interpreters.

use guard_common::NameKey;
use serde::Serialize;

use crate::policy::model::{Policy, SHELLS, WatchKind, interpreter_script_flags};
use crate::policy::names::name_key;

/// One basename the kernel holds at exec. Names are exact (the kernel does one hash lookup):
/// `mkfs.*` is listed variant by variant in the policy, no prefixes are used.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct ExecWatch {
    pub name: String,
    pub kind: WatchKind,
    /// For `ScriptFlag`: the flags that make the exec worth holding.
    pub script_flags: Vec<String>,
}

impl ExecWatch {
    pub fn key(&self) -> NameKey {
        name_key(self.name.bytes())
    }
}

/// The basenames whose exec the kernel must hold for evaluation: every program named by a
/// destructive rule, every shell (scripts given with `-c` or in a file are evaluated),
/// `busybox` (its applets run in-process) and `ssh` (its remote command is evaluated).
/// Interpreters are held only with a script flag or a script file operand. Sorted by name.
/// Empty when the policy has no destructive rules.
pub fn exec_watch_set(policy: &Policy) -> Vec<ExecWatch> {
    let rules = &policy.destructive().rules;
    if rules.is_empty() {
        return Vec::new();
    }
    let mut names: Vec<&str> = rules
        .iter()
        .flat_map(|rule| rule.programs.iter().map(String::as_str))
        .chain(SHELLS.iter().copied())
        .chain(["busybox", "ssh"])
        .collect();
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .map(|name| match interpreter_script_flags(name) {
            Some(flags) => ExecWatch {
                name: name.to_string(),
                kind: WatchKind::ScriptFlag,
                script_flags: flags.iter().map(|flag| flag.to_string()).collect(),
            },
            None => ExecWatch { name: name.to_string(), kind: WatchKind::Always, script_flags: Vec::new() },
        })
        .collect()
}
