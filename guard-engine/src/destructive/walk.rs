//! The walk through one exec: the command itself and every command it runs (through
//! wrappers, shell scripts and substitutions, nested up to [`MAX_NESTING`]) is matched
//! against the rules.

use super::conditions::rule_holds;
use super::wrappers::{shell_script, unwrap_wrapper};
use super::{DestructiveEvaluator, DestructiveMatch, MAX_COMMAND_TEXT, MAX_NESTING, shell};
use crate::policy::paths::{join_below, normalize_absolute};

pub(super) fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Where a command runs, when we can tell statically.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum WorkingDir {
    Known(String),
    Unknown,
}

impl WorkingDir {
    pub(super) fn from_path(path: &str) -> Self {
        if path.starts_with('/') { WorkingDir::Known(normalize_absolute(path)) } else { WorkingDir::Unknown }
    }

    /// `cd target` from here.
    pub(super) fn change_to(&self, target: Option<&str>) -> Self {
        match target {
            Some(target) if !is_dynamic(target) && target != "-" => self.resolve(target),
            // `cd` alone goes home, `cd -` back: both unknown here.
            _ => WorkingDir::Unknown,
        }
    }

    pub(super) fn resolve(&self, path: &str) -> Self {
        if path.starts_with('/') {
            return WorkingDir::Known(normalize_absolute(path));
        }
        match self {
            WorkingDir::Known(dir) => WorkingDir::Known(normalize_absolute(&join_below(dir, path))),
            WorkingDir::Unknown => WorkingDir::Unknown,
        }
    }
}

/// Text the shell would expand at run time, so its value is unknown here.
pub(super) fn is_dynamic(word: &str) -> bool {
    word.contains('$') || word.contains('`') || word.starts_with('~')
}

/// One command to evaluate.
#[derive(Clone, Debug)]
pub(super) struct Invocation {
    /// Candidate program basenames (the executable's and argv[0]'s).
    pub(super) names: Vec<String>,
    /// The program as written (argv[0], or the word in a script), for messages.
    pub(super) program: String,
    pub(super) args: Vec<String>,
    pub(super) cwd: WorkingDir,
    /// Standard input text, when a script makes it visible.
    pub(super) stdin: Option<String>,
    /// More operands arrive on standard input (`xargs`).
    pub(super) operands_from_stdin: bool,
    pub(super) via: Vec<String>,
}

impl Invocation {
    pub(super) fn nested(&self, name: &str, args: Vec<String>, via: String) -> Invocation {
        let mut chain = self.via.clone();
        chain.push(via);
        Invocation {
            names: vec![basename(name).to_string()],
            program: name.to_string(),
            args,
            cwd: self.cwd.clone(),
            stdin: None,
            operands_from_stdin: false,
            via: chain,
        }
    }

    fn command_text(&self) -> String {
        let words: Vec<&str> =
            std::iter::once(self.program.as_str()).chain(self.args.iter().map(String::as_str)).collect();
        let text = shlex::try_join(words.iter().copied()).unwrap_or_else(|_| words.join(" "));
        truncate_chars(&text, MAX_COMMAND_TEXT)
    }
}

pub(super) fn truncate_chars(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

pub(super) struct Walk<'a> {
    pub(super) evaluator: &'a DestructiveEvaluator,
    pub(super) found: Vec<DestructiveMatch>,
    pub(super) budget: usize,
}

impl Walk<'_> {
    pub(super) fn visit(&mut self, invocation: Invocation, depth: usize) {
        if self.budget == 0 {
            return;
        }
        self.budget -= 1;
        self.match_rules(&invocation);
        if depth >= MAX_NESTING {
            return;
        }
        // The first name that runs something else is looked through (once, so `exe=bash`
        // with `argv[0]=sh` does not evaluate the script twice).
        for name in &invocation.names {
            if let Some(script) = shell_script(name, &invocation.args) {
                let via = format!("{name} -c");
                self.visit_script(&script, &invocation, via, depth + 1);
                return;
            }
            let inner = unwrap_wrapper(name, &invocation);
            if !inner.is_empty() {
                for wrapped in inner {
                    self.visit(wrapped, depth + 1);
                }
                return;
            }
        }
    }

    fn match_rules(&mut self, invocation: &Invocation) {
        let scratch = &self.evaluator.scratch_roots;
        for (position, rule) in self.evaluator.rules.iter().enumerate() {
            let named = rule.programs.iter().any(|program| invocation.names.contains(program));
            if !named {
                continue;
            }
            let Some(details) = rule_holds(rule, invocation, scratch) else {
                continue;
            };
            let command = invocation.command_text();
            let detail = details.into_iter().next().unwrap_or_else(|| command.clone());
            self.found.push(DestructiveMatch {
                rule: self.evaluator.rule_offset + position as u32,
                rule_id: rule.id.clone(),
                mode: rule.mode,
                severity: rule.severity,
                mitre: rule.mitre.clone(),
                action: rule.action,
                reason: format!("{}: {detail}", rule.description),
                command,
                via: invocation.via.clone(),
            });
        }
    }

    fn visit_script(&mut self, script: &str, outer: &Invocation, via: String, depth: usize) {
        if depth > MAX_NESTING || self.budget == 0 {
            return;
        }
        let parsed = shell::parse(script);
        let mut cwd = outer.cwd.clone();
        let mut previous_output: Option<String> = None;
        for command in parsed.commands {
            let piped_input = if command.piped { previous_output.take() } else { None };
            previous_output = None;
            let Some((program, args)) = command.words.split_first() else {
                continue;
            };
            let program_name = basename(program);
            match program_name {
                "cd" | "pushd" => {
                    let target = args.iter().find(|arg| !arg.starts_with('-') || arg.as_str() == "-");
                    cwd = cwd.change_to(target.map(String::as_str));
                    continue;
                }
                "popd" => {
                    cwd = WorkingDir::Unknown;
                    continue;
                }
                _ => {}
            }
            let stdin = command.stdin.clone().or(piped_input);
            previous_output = output_text(program_name, args, stdin.as_deref());
            let mut invocation = outer.nested(program, args.to_vec(), via.clone());
            invocation.cwd = cwd.clone();
            invocation.stdin = stdin;
            self.visit(invocation, depth);
        }
        for substitution in parsed.substitutions {
            self.visit_script(&substitution, outer, via.clone(), depth + 1);
        }
    }
}

/// What a pipeline stage writes, for the ones whose output is plain to see.
fn output_text(program: &str, args: &[String], stdin: Option<&str>) -> Option<String> {
    match program {
        "echo" | "printf" => Some(
            args.iter().filter(|arg| !(arg.starts_with('-') && arg.len() == 2)).cloned().collect::<Vec<_>>().join(" "),
        ),
        "cat" if args.is_empty() => stdin.map(str::to_string),
        _ => None,
    }
}
