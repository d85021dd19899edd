//! The walk through one exec: the command itself and every command it runs (through
//! wrappers, shell scripts and substitutions, nested up to [`MAX_NESTING`]) is matched
//! against the rules.

use super::conditions::rule_holds;
use super::expand::{self, Unit};
use super::inputs::{Inputs, Source};
use super::remote::ssh_command;
use super::wrappers::{shell_script, unwrap_wrapper};
use super::{DestructiveEvaluator, DestructiveMatch, MAX_COMMAND_TEXT, MAX_COMMANDS, MAX_NESTING, shell};
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
    /// Where its words came from.
    pub(super) source: Source,
    /// Made by an input expansion (its environment and config were already applied).
    pub(super) expanded: bool,
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
            source: self.source.clone(),
            expanded: false,
        }
    }

    pub(super) fn command_text(&self) -> String {
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

pub(super) struct Walk<'a, 'i> {
    pub(super) evaluator: &'a DestructiveEvaluator,
    pub(super) found: Vec<DestructiveMatch>,
    pub(super) budget: usize,
    pub(super) inputs: Inputs<'i>,
}

/// A script read from a file: its path and the file line its first line is on.
#[derive(Clone, Copy)]
pub(super) struct ScriptFile<'p> {
    pub(super) path: &'p str,
    pub(super) first_line: usize,
}

impl Walk<'_, '_> {
    pub(super) fn visit(&mut self, invocation: Invocation, depth: usize) {
        if self.budget == 0 {
            self.inputs.note(format!("only the first {MAX_COMMANDS} commands were judged"));
            return;
        }
        self.budget -= 1;
        self.match_rules(&invocation);
        if depth >= MAX_NESTING {
            return;
        }
        // What the program reads besides its argv: environment, config and script files.
        if !invocation.expanded {
            for unit in expand::expand(&invocation, &mut self.inputs) {
                self.visit_unit(unit, depth + 1);
            }
        }
        // The first name that runs something else is looked through (once, so `exe=bash`
        // with `argv[0]=sh` does not evaluate the script twice).
        for name in &invocation.names {
            if let Some(script) = shell_script(name, &invocation.args) {
                let via = format!("{name} -c");
                self.visit_script(&script, &invocation, via, depth + 1, None);
                return;
            }
            if name == "ssh"
                && let Some((host, script)) = ssh_command(&invocation.args)
            {
                // The remote shell starts in the remote user's home: unknown here.
                let mut remote = invocation.clone();
                remote.cwd = WorkingDir::Unknown;
                self.visit_script(&script, &remote, format!("ssh {host}"), depth + 1, None);
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
                source: invocation.source.clone(),
            });
        }
    }

    fn visit_unit(&mut self, unit: Unit, depth: usize) {
        match unit {
            Unit::Command(invocation) => self.visit(invocation, depth),
            Unit::Shell { script, outer, via, file } => {
                let file = file.as_deref().map(|path| ScriptFile { path, first_line: 1 });
                self.visit_script(&script, &outer, via, depth, file);
            }
            Unit::FileContent { path, text, shown, build } => {
                self.visit_file_content(&path, &text, &shown, &*build, depth)
            }
        }
    }

    /// Judges the command `build` makes of a file's content; each match names the file line
    /// it is complete at (the shortest run of first lines that still matches).
    fn visit_file_content(
        &mut self,
        path: &str,
        text: &str,
        shown: &str,
        build: &dyn Fn(&str) -> Invocation,
        depth: usize,
    ) {
        let mark = self.found.len();
        self.visit(build(text), depth);
        let matched = self.found.split_off(mark);
        if matched.is_empty() {
            return;
        }
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        for mut found in matched {
            let (mut low, mut high) = (1, lines.len().max(1));
            while low < high {
                let middle = (low + high) / 2;
                let mark = self.found.len();
                self.visit(build(&lines[..middle].concat()), depth);
                let hit = self.found[mark..].iter().any(|other| other.rule_id == found.rule_id);
                self.found.truncate(mark);
                if hit {
                    high = middle;
                } else {
                    low = middle + 1;
                }
            }
            found.source = Source::file(path, Some(low));
            found.command = truncate_chars(shown, MAX_COMMAND_TEXT);
            self.found.push(found);
        }
    }

    fn visit_script(&mut self, script: &str, outer: &Invocation, via: String, depth: usize, file: Option<ScriptFile>) {
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
            if let Some(file) = file {
                invocation.source = Source::file(file.path, Some(file.first_line + command.line - 1));
            }
            self.visit(invocation, depth);
        }
        for (substitution, line) in parsed.substitutions {
            let inner = file.map(|file| ScriptFile { path: file.path, first_line: file.first_line + line - 1 });
            self.visit_script(&substitution, outer, via.clone(), depth + 1, inner);
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
