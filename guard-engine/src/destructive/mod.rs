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
//! * `ssh [options] HOST COMMAND...`: the remote command line, judged as a shell script
//!   (its working directory unknown);
//! * nesting is bounded ([`MAX_NESTING`] levels, [`MAX_COMMANDS`] commands per exec).
//!
//! It also reads what the program will act on besides its argv (the `expand` stage, each
//! judged command naming its [`Source`]): arguments injected by environment variables
//! (`TF_CLI_ARGS[_cmd]`, git's `GIT_CONFIG_*` aliases), config files (`curl -K` and
//! `.curlrc`, git aliases from the repository's, user's and system's config), and script
//! files (`bash x.sh` judged like `sh -c`, `python3 x.py` like `python3 -c`, `psql -f x.sql`
//! like its standard input). Files are read through [`HeldFiles`], as the held process sees
//! them, bounded by [`MAX_INPUT_BYTES`] and [`MAX_INPUT_FILES`].
//!
//! Wrappers are not in the exec watch set: they exec the wrapped program, whose own exec is
//! watched; only shells and script interpreters, which may run the destructive part
//! in-process, are held (and only when their arguments carry a script flag).
//!
//! Limits: shell variables and shell aliases are not expanded (an operand with `$` or `~`
//! counts as outside the scratch roots), files a script sources (`. lib.sh`) are not read,
//! a file's content is judged as it is while the process is held (it could change after),
//! and paths are resolved lexically (symlinks are not followed).

mod conditions;
mod expand;
mod inputs;
mod remote;
mod shell;
mod walk;
mod wrappers;

use std::cmp::Reverse;

use serde::Serialize;

use self::inputs::Inputs;
pub use self::inputs::{HeldFiles, InputError, MAX_INPUT_BYTES, MAX_INPUT_FILES, NoFiles, Source};
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
    /// The environment, when read (may be empty). Read for variables that inject arguments
    /// or config (`TF_CLI_ARGS`, `GIT_CONFIG_*`, `HOME`); shell variables in operands are
    /// never expanded, so an operand that uses one counts as unresolvable (the safe side).
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
    /// Where its destructive part came from: argv, an environment variable, a file line.
    pub source: Source,
}

/// Everything one exec was judged to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evaluation {
    /// Every match, in the order found.
    pub matches: Vec<DestructiveMatch>,
    /// Inputs that could not be judged (an unreadable config, an alias loop, bad quoting).
    pub notes: Vec<String>,
}

impl Evaluation {
    /// The most serious match: enforced before monitored, then by severity, then first found.
    pub fn best(&self) -> Option<&DestructiveMatch> {
        self.matches.iter().min_by_key(|found| (found.mode == Mode::Monitor, Reverse(found.severity)))
    }
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

    /// The most serious match (see [`Evaluation::best`]), reading no files.
    pub fn evaluate(&self, exec: &ExecContext) -> Option<DestructiveMatch> {
        self.judge(exec, &NoFiles).best().cloned()
    }

    /// Every match, in the order found, reading no files.
    pub fn evaluate_all(&self, exec: &ExecContext) -> Vec<DestructiveMatch> {
        self.judge(exec, &NoFiles).matches
    }

    /// Judges the exec, reading the files it will act on through `files`.
    pub fn judge(&self, exec: &ExecContext, files: &dyn HeldFiles) -> Evaluation {
        let cwd = WorkingDir::from_path(&exec.cwd);
        let fresh = |names: Vec<String>, program: &str, args: &[String]| Invocation {
            names,
            program: program.to_string(),
            args: args.to_vec(),
            cwd: cwd.clone(),
            stdin: None,
            operands_from_stdin: false,
            via: Vec::new(),
            source: Source::Argv,
            expanded: false,
        };
        let argv0 = exec.argv.first().unwrap_or(&exec.exe);
        let mut invocations = Vec::new();
        // A `#!` script: the kernel made argv `INTERPRETER [ARG] SCRIPT ARGS...` while the
        // exec's file name is the script's. Judge the script by its own name with its own
        // arguments, and the interpreter running the script file.
        let script_at = (1..exec.argv.len().min(3)).find(|&at| !exec.exe.is_empty() && exec.argv[at] == exec.exe);
        match script_at {
            Some(at) if basename(&exec.exe) != basename(argv0) => {
                invocations.push(fresh(vec![basename(&exec.exe).to_string()], &exec.exe, &exec.argv[at + 1..]));
                invocations.push(fresh(vec![basename(argv0).to_string()], argv0, &exec.argv[1..]));
            }
            _ => {
                let mut names = Vec::new();
                for path in std::iter::once(&exec.exe).chain(exec.argv.first()) {
                    let name = basename(path);
                    if !name.is_empty() && !names.iter().any(|known| known == name) {
                        names.push(name.to_string());
                    }
                }
                invocations.push(fresh(names, argv0, exec.argv.get(1..).unwrap_or_default()));
            }
        }
        let mut walk =
            Walk { evaluator: self, found: Vec::new(), budget: MAX_COMMANDS, inputs: Inputs::new(&exec.env, files) };
        for invocation in invocations {
            walk.visit(invocation, 0);
        }
        let mut matches: Vec<DestructiveMatch> = Vec::new();
        for mut found in walk.found {
            let seen = matches.iter().any(|known| {
                known.rule_id == found.rule_id
                    && known.source == found.source
                    && known.command == found.command
                    && known.via == found.via
            });
            if !seen {
                found.reason.push_str(&found.source.reason_note());
                if let Some(remote) = found.via.iter().find(|via| via.starts_with("ssh ")) {
                    found.reason.push_str(&format!(" (the remote command of {remote})"));
                }
                matches.push(found);
            }
        }
        Evaluation { matches, notes: walk.inputs.notes }
    }
}
