//! Whether a rule's conditions hold for one command's arguments and working directory.

use super::walk::{Invocation, WorkingDir, is_dynamic, truncate_chars};
use crate::policy::model::{Condition, DestructiveRule, OperandSelection, ScriptCondition};
use crate::policy::paths::is_strictly_below;

pub(super) fn rule_holds(rule: &DestructiveRule, invocation: &Invocation, scratch: &[String]) -> Option<Vec<String>> {
    let mut details = Vec::new();
    for condition in &rule.all {
        details.extend(check(condition, invocation, scratch)?);
    }
    if !rule.any.is_empty() {
        let detail = rule.any.iter().find_map(|condition| check(condition, invocation, scratch))?;
        details.extend(detail);
    }
    Some(details)
}

/// `None`: the condition does not hold. `Some(detail)`: it holds, with what matched.
fn check(condition: &Condition, invocation: &Invocation, scratch: &[String]) -> Option<Option<String>> {
    let view = ArgView::new(&invocation.args);
    match condition {
        Condition::Flag(flags) => {
            flags.iter().any(|flag| view.option_words().iter().any(|word| word_has_flag(word, flag))).then_some(None)
        }
        Condition::Subcommand(words) => view
            .option_words()
            .windows(words.len())
            .any(|window| window.iter().zip(words).all(|(arg, word)| arg == word))
            .then(|| Some(words.join(" "))),
        Condition::ArgRegex(regex) => invocation
            .args
            .iter()
            .find(|arg| regex.is_match(arg))
            .map(|arg| Some(format!("`{}`", truncate_chars(arg, 120)))),
        Condition::OptionValue { options, regex } => view
            .option_values(options)
            .into_iter()
            .find(|value| regex.is_match(value))
            .map(|value| Some(format!("`{}`", truncate_chars(value, 120)))),
        Condition::Script(script) => check_script(script, invocation, &view),
        Condition::OutsideScratch(selection) => check_outside_scratch(*selection, invocation, &view, scratch),
        Condition::Any(conditions) => conditions.iter().find_map(|inner| check(inner, invocation, scratch)),
        Condition::All(conditions) => {
            let mut first_detail = None;
            for inner in conditions {
                let detail = check(inner, invocation, scratch)?;
                first_detail = first_detail.or(detail);
            }
            Some(first_detail)
        }
        Condition::Not(inner) => match check(inner, invocation, scratch) {
            Some(_) => None,
            None => Some(None),
        },
    }
}

fn check_script(script: &ScriptCondition, invocation: &Invocation, view: &ArgView) -> Option<Option<String>> {
    let mut texts: Vec<String> = view.option_values(&script.options).into_iter().map(str::to_string).collect();
    if script.positional {
        let joined = view.positional().collect::<Vec<_>>().join(" ");
        if !joined.is_empty() {
            texts.push(joined);
        }
    }
    if script.stdin
        && let Some(stdin) = &invocation.stdin
    {
        texts.push(stdin.clone());
    }
    for text in &texts {
        let pieces: Vec<&str> = match &script.split {
            Some(separator) => text.split(separator.as_str()).collect(),
            None => vec![text.as_str()],
        };
        for piece in pieces {
            let excluded = script.unless.as_ref().is_some_and(|unless| unless.is_match(piece));
            if script.matches.is_match(piece) && !excluded {
                let shown = piece.split_whitespace().collect::<Vec<_>>().join(" ");
                return Some(Some(format!("`{}`", truncate_chars(&shown, 160))));
            }
        }
    }
    None
}

fn check_outside_scratch(
    selection: OperandSelection,
    invocation: &Invocation,
    view: &ArgView,
    scratch: &[String],
) -> Option<Option<String>> {
    let mut operands: Vec<&str> = match selection {
        OperandSelection::All => view.positional().collect(),
        OperandSelection::Leading => leading_operands(&invocation.args),
    };
    if operands.is_empty() && selection == OperandSelection::Leading {
        // `find` without a start point searches the working directory.
        operands.push(".");
    }
    for operand in operands {
        if is_dynamic(operand) {
            return Some(Some(format!("{operand} (not resolvable before it runs)")));
        }
        match invocation.cwd.resolve(operand) {
            WorkingDir::Known(path) => {
                if !scratch.iter().any(|root| is_strictly_below(&path, root)) {
                    return Some(Some(path));
                }
            }
            WorkingDir::Unknown => {
                return Some(Some(format!("{operand} (working directory unknown)")));
            }
        }
    }
    invocation.operands_from_stdin.then(|| Some("operands read from standard input".to_string()))
}

/// `find [-H|-L|-P|-O3|-D opts] START... EXPRESSION`: the start points.
pub(super) fn leading_operands(args: &[String]) -> Vec<&str> {
    let mut index = 0;
    while let Some(arg) = args.get(index) {
        match arg.as_str() {
            "-H" | "-L" | "-P" => index += 1,
            "-D" => index += 2,
            other if other.starts_with("-O") => index += 1,
            _ => break,
        }
    }
    args.iter()
        .skip(index)
        .take_while(|arg| {
            !(arg.starts_with('-') || arg.starts_with('(') || arg.starts_with('!') || arg.as_str() == ")")
        })
        .map(String::as_str)
        .collect()
}

/// Arguments split at the first `--`.
struct ArgView<'a> {
    args: &'a [String],
    options_end: usize,
}

impl<'a> ArgView<'a> {
    fn new(args: &'a [String]) -> Self {
        let options_end = args.iter().position(|arg| arg == "--").unwrap_or(args.len());
        Self { args, options_end }
    }

    /// Words where options may appear (before `--`).
    fn option_words(&self) -> &'a [String] {
        &self.args[..self.options_end]
    }

    /// Non-option words before `--`, and every word after it.
    fn positional(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        let before = self.args[..self.options_end].iter().filter(|arg| !arg.starts_with('-') || arg.as_str() == "-");
        let after = self.args.iter().skip(self.options_end + 1);
        before.chain(after).map(String::as_str)
    }

    /// Values given to these options: `-X V`, `-XV`, `--long V`, `--long=V`.
    fn option_values(&self, options: &[String]) -> Vec<&'a str> {
        let words = self.option_words();
        let mut values = Vec::new();
        for (index, word) in words.iter().enumerate() {
            for option in options {
                if word == option {
                    if let Some(next) = self.args.get(index + 1) {
                        values.push(next.as_str());
                    }
                } else if let Some(rest) = word.strip_prefix(option.as_str()) {
                    if is_short_flag(option) {
                        if !word.starts_with("--") && !rest.is_empty() {
                            values.push(rest);
                        }
                    } else if let Some(value) = rest.strip_prefix('=') {
                        values.push(value);
                    }
                }
            }
        }
        values
    }
}

fn is_short_flag(flag: &str) -> bool {
    flag.len() == 2 && flag.starts_with('-') && flag != "--"
}

/// `-r` is found as `-r`, in clusters (`-rf`, `-fR`); `--force` as `--force` or
/// `--force=...`; `-delete` only as itself (or `-delete=...`).
fn word_has_flag(word: &str, flag: &str) -> bool {
    if word == flag {
        return true;
    }
    if !is_short_flag(flag) {
        return word.strip_prefix(flag).is_some_and(|rest| rest.starts_with('='));
    }
    let letter = &flag[1..];
    match word.strip_prefix('-') {
        Some(cluster) if !cluster.starts_with('-') && cluster.len() > 1 => {
            cluster.chars().all(|c| c.is_ascii_alphanumeric()) && cluster.contains(letter)
        }
        _ => false,
    }
}
