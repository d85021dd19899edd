//! Validation of the `destructive` section and of its match language (described in
//! [`destructive_rules`](crate::policy::destructive_rules)).

use regex::Regex;
use serde_saphyr::Spanned;

use super::{RuleIds, description_or, validate_mitre};
use crate::audit::Severity;
use crate::policy::error::Problems;
use crate::policy::model::{
    Condition, DEFAULT_DESTRUCTIVE_MITRE, DEFAULT_HOLD_TIMEOUT_SECS, DestructiveRule, DestructiveSection, ExecAction,
    Mode, ScriptCondition,
};
use crate::policy::paths::{GLOB_META, RootPath};
use crate::policy::raw::{RawCondition, RawDestructive, RawDestructiveRule, RawOptionValue, RawScript, SpannedList};

/// Longest accepted hold: a held process waits at most a day for a decision.
const MAX_HOLD_TIMEOUT_SECS: u64 = 86_400;
pub(super) fn validate_destructive(
    section: &Spanned<RawDestructive>,
    default_mode: Mode,
    ids: &mut RuleIds,
    problems: &mut Problems,
) -> DestructiveSection {
    let raw = &section.value;
    let hold_timeout_secs = match &raw.hold_timeout_secs {
        Some(timeout) if timeout.value == 0 || timeout.value > MAX_HOLD_TIMEOUT_SECS => {
            problems.at_spanned(timeout, format!("hold_timeout_secs must be between 1 and {MAX_HOLD_TIMEOUT_SECS}"));
            DEFAULT_HOLD_TIMEOUT_SECS
        }
        Some(timeout) => timeout.value,
        None => DEFAULT_HOLD_TIMEOUT_SECS,
    };
    let mut scratch_roots = Vec::new();
    if let Some(list) = &raw.scratch_roots {
        for root in &list.value {
            match RootPath::parse(&root.value, false) {
                Ok(RootPath::Absolute(path)) if path == "/" => {
                    problems.at_spanned(root, "scratch root `/` would let `rm -rf` anywhere");
                }
                Ok(RootPath::Absolute(path)) => {
                    if !scratch_roots.contains(&path) {
                        scratch_roots.push(path);
                    }
                }
                Ok(_) => problems.at_spanned(root, format!("scratch root `{}` must be an absolute path", root.value)),
                Err(message) => problems.at_spanned(root, message),
            }
        }
    }
    let rules = raw
        .rules
        .value
        .iter()
        .filter_map(|rule| validate_destructive_rule(rule, default_mode, ids, problems))
        .collect();
    DestructiveSection { hold_timeout_secs, scratch_roots, rules }
}

fn validate_destructive_rule(
    rule: &Spanned<RawDestructiveRule>,
    default_mode: Mode,
    ids: &mut RuleIds,
    problems: &mut Problems,
) -> Option<DestructiveRule> {
    let raw = &rule.value;
    let id_ok = ids.claim(&raw.id, problems);
    let mitre = validate_mitre(raw.mitre.as_ref(), DEFAULT_DESTRUCTIVE_MITRE, problems);
    let matcher = &raw.matcher.value;
    let programs = validate_programs(&matcher.programs, problems);
    let all = matcher.all.as_ref().map(|list| validate_conditions(list, "all", problems)).unwrap_or_default();
    let any = matcher.any.as_ref().map(|list| validate_conditions(list, "any", problems)).unwrap_or_default();
    id_ok.then(|| DestructiveRule {
        id: raw.id.value.clone(),
        mode: raw.mode.as_ref().map_or(default_mode, |mode| mode.value),
        severity: raw.severity.as_ref().map_or(Severity::High, |severity| severity.value),
        mitre,
        description: description_or(raw.description.as_ref(), &raw.id.value),
        action: raw.action.as_ref().map_or(ExecAction::Kill, |action| action.value),
        programs,
        all,
        any,
    })
}

/// Validates `programs`: plain basenames the kernel can look up exactly.
fn validate_programs(list: &SpannedList, problems: &mut Problems) -> Vec<String> {
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
        } else if name.contains(GLOB_META) || name.contains(char::is_whitespace) {
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
fn validate_conditions(list: &Spanned<Vec<RawCondition>>, key: &str, problems: &mut Problems) -> Vec<Condition> {
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

fn compile_regex(pattern: &Spanned<String>, problems: &mut Problems) -> Option<Regex> {
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
