//! The match language of destructive-command rules, and its validation.
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
use serde_saphyr::Spanned;

use super::error::Problems;
use super::model::{ExecAction, Mode};
use super::raw::{RawCondition, RawOptionValue, RawScript, SpannedList};
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

/// Validates `programs`: plain basenames the kernel can look up exactly.
pub(crate) fn validate_programs(list: &SpannedList, problems: &mut Problems) -> Vec<String> {
    if list.value.is_empty() {
        problems.at_spanned(list, "`programs` must name at least one program");
    }
    let mut programs = Vec::new();
    for program in &list.value {
        let name = program.value.as_str();
        let bad = if name.is_empty() {
            Some("empty program name".to_string())
        } else if name.contains('/') {
            Some(format!(
                "program `{name}`: give the basename, not a path (both the executable's and argv[0]'s basenames are matched)"
            ))
        } else if name.contains(super::paths::GLOB_META) || name.contains(char::is_whitespace) {
            Some(format!(
                "program `{name}`: exact basenames only (the kernel looks names up exactly; list variants such as mkfs.ext4 one by one)"
            ))
        } else if name.len() > guard_common::NAME_LEN - 1 {
            Some(format!("program `{name}` is longer than {} bytes", guard_common::NAME_LEN - 1))
        } else {
            None
        };
        match bad {
            Some(message) => problems.at_spanned(program, message),
            None => programs.push(name.to_string()),
        }
    }
    programs
}

/// Validates a list of conditions; `None` entries (invalid) are dropped after reporting.
pub(crate) fn validate_conditions(
    list: &Spanned<Vec<RawCondition>>,
    key: &str,
    problems: &mut Problems,
) -> Vec<Condition> {
    if list.value.is_empty() {
        problems.at_spanned(list, format!("`{key}` must hold at least one condition"));
    }
    list.value.iter().filter_map(|raw| validate_condition(raw, problems)).collect()
}

fn validate_condition(raw: &RawCondition, problems: &mut Problems) -> Option<Condition> {
    Some(match raw {
        RawCondition::Flag(flags) => Condition::Flag(validate_flags(flags, "flag", problems)?),
        RawCondition::Subcommand(words) => {
            if words.value.is_empty() {
                problems.at_spanned(words, "`subcommand` must name at least one word");
                return None;
            }
            let mut valid = true;
            for word in &words.value {
                if word.value.is_empty() || word.value.contains(char::is_whitespace) {
                    problems.at_spanned(word, format!("subcommand word `{}` must be one non-empty word", word.value));
                    valid = false;
                }
            }
            if !valid {
                return None;
            }
            Condition::Subcommand(words.value.iter().map(|word| word.value.clone()).collect())
        }
        RawCondition::ArgRegex(pattern) => Condition::ArgRegex(compile_regex(pattern, problems)?),
        RawCondition::OptionValue(option_value) => {
            let RawOptionValue { options, regex } = &option_value.value;
            let options = validate_flags(options, "option_value.options", problems);
            let regex = compile_regex(regex, problems);
            Condition::OptionValue { options: options?, regex: regex? }
        }
        RawCondition::Script(script) => Condition::Script(validate_script(script, problems)?),
        RawCondition::OutsideScratch(selection) => Condition::OutsideScratch(selection.value),
        RawCondition::Any(list) => Condition::Any(validate_conditions(list, "any", problems)),
        RawCondition::All(list) => Condition::All(validate_conditions(list, "all", problems)),
        RawCondition::Not(inner) => Condition::Not(Box::new(validate_condition(inner, problems)?)),
    })
}

fn validate_script(script: &Spanned<RawScript>, problems: &mut Problems) -> Option<ScriptCondition> {
    let raw = &script.value;
    let options = match &raw.options {
        Some(list) => validate_flags(list, "script.options", problems),
        None => Some(Vec::new()),
    };
    let positional = raw.positional.unwrap_or(false);
    let stdin = raw.stdin.unwrap_or(false);
    let mut valid = true;
    if options.as_ref().is_some_and(Vec::is_empty) && !positional && !stdin {
        problems.at_spanned(script, "`script` reads no text: give `options`, or set `positional` or `stdin` to true");
        valid = false;
    }
    if let Some(split) = &raw.split
        && split.value.is_empty()
    {
        problems.at_spanned(split, "`split` must not be empty");
        valid = false;
    }
    let matches = compile_regex(&raw.matches, problems);
    let unless = match &raw.unless {
        Some(pattern) => Some(compile_regex(pattern, problems)?),
        None => None,
    };
    if !valid {
        return None;
    }
    Some(ScriptCondition {
        options: options?,
        positional,
        stdin,
        split: raw.split.as_ref().map(|split| split.value.clone()),
        matches: matches?,
        unless,
    })
}

/// Flags are `-x`, `-long` or `--long`; values are not part of a flag.
fn validate_flags(list: &SpannedList, key: &str, problems: &mut Problems) -> Option<Vec<String>> {
    if list.value.is_empty() {
        problems.at_spanned(list, format!("`{key}` must name at least one flag"));
        return None;
    }
    let mut valid = true;
    for flag in &list.value {
        let text = flag.value.as_str();
        let shaped = text.starts_with('-')
            && text.len() >= 2
            && text != "--"
            && !text.starts_with("---")
            && !text.contains('=')
            && !text.contains(char::is_whitespace);
        if !shaped {
            problems
                .at_spanned(flag, format!("bad flag `{text}`: expected `-x`, `-long` or `--long` (without a value)"));
            valid = false;
        }
    }
    valid.then(|| list.value.iter().map(|flag| flag.value.clone()).collect())
}

pub(crate) fn compile_regex(pattern: &Spanned<String>, problems: &mut Problems) -> Option<Regex> {
    match Regex::new(&pattern.value) {
        Ok(regex) => Some(regex),
        Err(error) => {
            problems.at_spanned(pattern, format!("bad regex `{}`: {}", pattern.value, regex_error_summary(&error)));
            None
        }
    }
}

/// The regex crate's syntax errors are multi-line diagrams; keep the final `error: ...` line.
fn regex_error_summary(error: &regex::Error) -> String {
    let text = error.to_string();
    text.lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .map(|line| line.trim().trim_start_matches("error: ").to_string())
        .unwrap_or(text)
}
