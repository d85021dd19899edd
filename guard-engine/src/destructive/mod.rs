//! Destructive-command evaluation: does this exec (or a command inside it) match a
//! destructive rule of the policy?
//!
//! The kernel holds the exec of every watched basename
//! ([`exec_watch_set`](crate::policy::compile::exec_watch_set)); the daemon reads
//! the argument vector and working directory, builds an [`ExecContext`] and asks
//! [`DestructiveEvaluator::evaluate`]. A rule matches the basename of the executable **or** of
//! `argv[0]`, so a renamed copy or a symlink is caught by either.
//!
//! The evaluator looks through what runs other commands:
//! * shells with `-c` (`sh bash dash zsh ash ksh mksh fish`, and `busybox sh`): the script is
//!   split into commands on `;`, `&&`, `||`, `|`, `&`, newlines and parentheses (quote-aware;
//!   words are split by `shlex`), `$(...)` and backquoted substitutions are evaluated too,
//!   `cd DIR` moves the working directory for later commands, heredocs, here-strings and
//!   `echo ... |` become the next command's standard input (so `psql <<EOF DROP ...` is seen);
//! * wrappers: `env` (incl. `-C`, `-S`), `sudo`, `doas`, `nohup`, `timeout`, `nice`,
//!   `ionice`, `stdbuf`, `time`, `setsid`, `xargs` (whose operands come from standard input,
//!   so they count as unresolvable), `busybox APPLET`, and `find ... -exec CMD {} ;` (with
//!   `{}` standing for each start point);
//! * nesting is bounded ([`MAX_NESTING`] levels, [`MAX_COMMANDS`] commands per exec).
//!
//! Wrappers are not in the exec watch set: they exec the wrapped program, whose own exec is
//! watched; only shells and script interpreters, which may run the destructive part
//! in-process, are held (and only when their arguments carry a script flag).
//!
//! Limits: scripts read from files (`bash deploy.sh`, `psql -f x.sql`), variables and aliases
//! are not expanded (an operand with `$` or `~` counts as outside the scratch roots), and
//! paths are resolved lexically (symlinks are not followed).

mod conditions;
mod shell;
mod walk;
mod wrappers;

use std::cmp::Reverse;

use serde::Serialize;

use self::walk::{Invocation, Walk, WorkingDir, basename};
use crate::audit::Severity;
use crate::policy::model::{DestructiveRule, ExecAction, Mode, Policy};
// The watch set is compiled with the policy; its hold kinds keep their old path here.
pub use crate::policy::model::WatchKind;

/// Deepest nesting of shells, wrappers and substitutions that is looked through.
pub const MAX_NESTING: usize = 8;
/// Most commands evaluated for one exec (a huge generated script stops here).
pub const MAX_COMMANDS: usize = 1024;
/// Longest command text kept in a match, in characters.
const MAX_COMMAND_TEXT: usize = 300;

/// An exec as the daemon sees it while the process is held.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecContext {
    /// Resolved path of the executed binary.
    pub exe: String,
    pub argv: Vec<String>,
    /// The process's working directory (absolute; anything else counts as unknown).
    pub cwd: String,
    /// The environment, when read (may be empty). Not consulted yet: variables are never
    /// expanded, so an operand that uses one counts as unresolvable (the safe side).
    pub env: Vec<(String, String)>,
}

/// A destructive rule that matched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DestructiveMatch {
    /// Index in the compiled rule table (`RuleRef.rule`).
    pub rule: u32,
    pub rule_id: String,
    pub mode: Mode,
    pub severity: Severity,
    pub mitre: String,
    pub action: ExecAction,
    /// Human-readable: the rule's description and what matched, e.g.
    /// `rm -rf outside scratch roots: /srv/data`.
    pub reason: String,
    /// The command that matched (possibly found inside a script), shell-quoted.
    pub command: String,
    /// What it was found inside, outermost first (e.g. `["sudo", "bash -c"]`).
    pub via: Vec<String>,
}

/// Evaluates execs against a policy's destructive rules.
#[derive(Clone, Debug)]
pub struct DestructiveEvaluator {
    rules: Vec<DestructiveRule>,
    rule_offset: u32,
    scratch_roots: Vec<String>,
}

impl DestructiveEvaluator {
    pub fn new(policy: &Policy) -> Self {
        Self {
            rules: policy.destructive().rules.clone(),
            rule_offset: policy.destructive_rule_offset(),
            scratch_roots: policy.destructive().scratch_roots.clone(),
        }
    }

    /// The most serious match: enforced before monitored, then by severity, then first found.
    pub fn evaluate(&self, exec: &ExecContext) -> Option<DestructiveMatch> {
        self.evaluate_all(exec).into_iter().min_by_key(|found| (found.mode == Mode::Monitor, Reverse(found.severity)))
    }

    /// Every match, in the order found.
    pub fn evaluate_all(&self, exec: &ExecContext) -> Vec<DestructiveMatch> {
        let mut names = Vec::new();
        for path in std::iter::once(&exec.exe).chain(exec.argv.first()) {
            let name = basename(path);
            if !name.is_empty() && !names.iter().any(|known| known == name) {
                names.push(name.to_string());
            }
        }
        let program = exec.argv.first().unwrap_or(&exec.exe).clone();
        let invocation = Invocation {
            names,
            program,
            args: exec.argv.iter().skip(1).cloned().collect(),
            cwd: WorkingDir::from_path(&exec.cwd),
            stdin: None,
            operands_from_stdin: false,
            via: Vec::new(),
        };
        let mut walk = Walk { evaluator: self, found: Vec::new(), budget: MAX_COMMANDS };
        walk.visit(invocation, 0);
        walk.found
    }
}
