//! Programs that run code given on their command line: shells (`-c`) and script
//! interpreters (`python -c`, `perl -e`, ...). The destructive evaluator looks into their
//! scripts and the exec watch set holds them, so both read the lists here.

use serde::Serialize;

/// Shells and their script flag; `fish` also takes `--command`.
pub(crate) const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ash", "ksh", "mksh", "fish"];

/// Flags that make an interpreter run a script given on the command line.
pub(crate) fn interpreter_script_flags(name: &str) -> Option<&'static [&'static str]> {
    let is_python = name == "python"
        || name == "pypy"
        || name == "pypy3"
        || name
            .strip_prefix("python")
            .is_some_and(|version| !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit() || b == b'.'));
    if is_python {
        return Some(&["-c"]);
    }
    match name {
        "fish" => Some(&["-c", "--command"]),
        _ if SHELLS.contains(&name) => Some(&["-c"]),
        "perl" => Some(&["-e", "-E"]),
        "node" | "nodejs" => Some(&["-e", "--eval", "-p", "--print"]),
        "ruby" => Some(&["-e"]),
        _ => None,
    }
}

/// Hold kinds for the kernel's exec watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchKind {
    /// Hold every exec of this name.
    Always,
    /// Hold only when the argument vector carries a script flag (`ExecWatch::script_flags`;
    /// a one-letter flag may sit in a cluster such as `-lc`) or an operand (the script file,
    /// which the evaluator reads); otherwise the interpreter runs stdin or interactively,
    /// which we cannot see, and any child it execs is watched on its own.
    ScriptFlag,
}

impl WatchKind {
    /// `guard_common::watch::*` for the exec watch maps.
    pub fn kernel_value(self) -> u8 {
        match self {
            WatchKind::Always => guard_common::watch::HOLD,
            WatchKind::ScriptFlag => guard_common::watch::HOLD_IF_SCRIPT,
        }
    }
}
