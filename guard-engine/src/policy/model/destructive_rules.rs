//! The match language of destructive-command rules (validated in `validate::destructive`).
//!
//! A rule names `programs` (basenames) and conditions over the argument vector. Conditions
//! are single-key mappings, combined with `all` (every one) and `any` (at least one):
//!
//! | condition | holds when |
//! | --- | --- |
//! | `flag: [-r, --recursive]` | one of the flags is present before `--`. A one-letter flag is also found inside a cluster (`-rf`, `-fr`, `-Rfv`); a long flag also as `--flag=value`. Single-dash long flags (`-delete`, `-destroy`) match whole words only. |
//! | `subcommand: [ec2, terminate-instances]` | the words appear consecutively among the arguments before `--` (so options in front, like `aws --profile p ec2 ...`, do not hide them). |
//! | `arg_regex: '^of=/dev/'` | some argument matches. |
//! | `option_value: {options: [-X, --request], regex: '(?i)^delete$'}` | a value given to one of the options matches: `-X V`, `-XV`, `--request V`, `--request=V`. |
//! | `script: {options: [-c], positional: false, stdin: true, split: ';', matches: RE, unless: RE}` | the text passed to the program (the values of `options`, the positional words joined by spaces when `positional`, the standard input when `stdin` and the shell script makes it visible: heredoc, here-string, `echo ... |`) has a piece (split on `split` when given) that matches `matches` and not `unless`. |
//! | `outside_scratch: all \| leading` | an operand, resolved against the working directory, is not strictly below a scratch root, or cannot be resolved statically (`$VAR`, `~`, unknown working directory, operands read by `xargs`). `all`: every non-option word (`rm`); `leading`: the words before the first one starting with `-`, `(` or `!`, defaulting to `.` (`find`). |
//! | `any: [...]`, `all: [...]`, `not: {...}` | combinators. |

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::{ExecAction, Mode};
use crate::audit::Severity;

/// Which words `outside_scratch` treats as paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OperandSelection {
    /// Every non-option word (and every word after `--`).
    All,
    /// The words before the first expression word (`find PATH... EXPR`); `.` when none.
    Leading,
}

#[derive(Clone, Debug)]
pub struct ScriptCondition {
    pub options: Vec<String>,
    pub positional: bool,
    pub stdin: bool,
    pub split: Option<String>,
    pub matches: Regex,
    pub unless: Option<Regex>,
}

#[derive(Clone, Debug)]
pub enum Condition {
    Flag(Vec<String>),
    Subcommand(Vec<String>),
    ArgRegex(Regex),
    OptionValue { options: Vec<String>, regex: Regex },
    Script(ScriptCondition),
    OutsideScratch(OperandSelection),
    Any(Vec<Condition>),
    All(Vec<Condition>),
    Not(Box<Condition>),
}

#[derive(Clone, Debug)]
pub struct DestructiveRule {
    pub id: String,
    pub mode: Mode,
    pub severity: Severity,
    pub mitre: String,
    pub description: String,
    pub action: ExecAction,
    /// Basenames of the executable or of `argv[0]`.
    pub programs: Vec<String>,
    /// Every one must hold.
    pub all: Vec<Condition>,
    /// When non-empty, at least one must hold.
    pub any: Vec<Condition>,
}
