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

use std::cmp::Reverse;

use serde::Serialize;

use crate::audit::Severity;
use crate::policy::model::{
    Condition, DestructiveRule, ExecAction, Mode, OperandSelection, Policy, SHELLS, ScriptCondition,
};
use crate::policy::paths::{is_strictly_below, join_below, normalize_absolute};
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

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Where a command runs, when we can tell statically.
#[derive(Clone, Debug, PartialEq, Eq)]
enum WorkingDir {
    Known(String),
    Unknown,
}

impl WorkingDir {
    fn from_path(path: &str) -> Self {
        if path.starts_with('/') { WorkingDir::Known(normalize_absolute(path)) } else { WorkingDir::Unknown }
    }

    /// `cd target` from here.
    fn change_to(&self, target: Option<&str>) -> Self {
        match target {
            Some(target) if !is_dynamic(target) && target != "-" => self.resolve(target),
            // `cd` alone goes home, `cd -` back: both unknown here.
            _ => WorkingDir::Unknown,
        }
    }

    fn resolve(&self, path: &str) -> Self {
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
fn is_dynamic(word: &str) -> bool {
    word.contains('$') || word.contains('`') || word.starts_with('~')
}

/// One command to evaluate.
#[derive(Clone, Debug)]
struct Invocation {
    /// Candidate program basenames (the executable's and argv[0]'s).
    names: Vec<String>,
    /// The program as written (argv[0], or the word in a script), for messages.
    program: String,
    args: Vec<String>,
    cwd: WorkingDir,
    /// Standard input text, when a script makes it visible.
    stdin: Option<String>,
    /// More operands arrive on standard input (`xargs`).
    operands_from_stdin: bool,
    via: Vec<String>,
}

impl Invocation {
    fn nested(&self, name: &str, args: Vec<String>, via: String) -> Invocation {
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

fn truncate_chars(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

struct Walk<'a> {
    evaluator: &'a DestructiveEvaluator,
    found: Vec<DestructiveMatch>,
    budget: usize,
}

impl Walk<'_> {
    fn visit(&mut self, invocation: Invocation, depth: usize) {
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

fn rule_holds(rule: &DestructiveRule, invocation: &Invocation, scratch: &[String]) -> Option<Vec<String>> {
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
fn leading_operands(args: &[String]) -> Vec<&str> {
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

/// The script of `SHELL [options] -c SCRIPT [args]` (the `c` may sit in a cluster: `-lc`).
fn shell_script(name: &str, args: &[String]) -> Option<String> {
    if !SHELLS.contains(&name) {
        return None;
    }
    let mut wants_script = false;
    let mut index = 0;
    while let Some(arg) = args.get(index) {
        if arg == "--" || arg == "-" {
            index += 1;
            break;
        }
        if arg == "--command" {
            return args.get(index + 1).cloned();
        }
        if let Some(script) = arg.strip_prefix("--command=") {
            return Some(script.to_string());
        }
        if arg.starts_with("--") {
            // Long options; these two take a value.
            index += if arg == "--rcfile" || arg == "--init-file" { 2 } else { 1 };
            continue;
        }
        if (arg.starts_with('-') || arg.starts_with('+')) && arg.len() > 1 {
            let letters = &arg[1..];
            if arg.starts_with('-') && letters.contains('c') {
                wants_script = true;
            }
            // `-o OPTION` / `-O SHOPT` take the next word.
            index += if letters.ends_with('o') || letters.ends_with('O') { 2 } else { 1 };
            continue;
        }
        break;
    }
    if wants_script { args.get(index).cloned() } else { None }
}

/// The command a wrapper runs (several for `find` with several start points).
fn unwrap_wrapper(name: &str, invocation: &Invocation) -> Vec<Invocation> {
    let args = &invocation.args;
    let single = |start: usize, cwd: WorkingDir, operands_from_stdin: bool| -> Vec<Invocation> {
        match args.get(start..).and_then(|rest| rest.split_first()) {
            Some((program, rest)) => {
                let mut inner = invocation.nested(program, rest.to_vec(), name.to_string());
                inner.cwd = cwd;
                inner.stdin = invocation.stdin.clone();
                inner.operands_from_stdin = operands_from_stdin;
                vec![inner]
            }
            None => Vec::new(),
        }
    };
    let cwd = invocation.cwd.clone();
    match name {
        "env" => unwrap_env(invocation),
        "sudo" => {
            let (start, cwd) = skip_options(
                args,
                &[
                    "-u",
                    "-g",
                    "-h",
                    "-p",
                    "-C",
                    "-r",
                    "-t",
                    "-U",
                    "-T",
                    "--user",
                    "--group",
                    "--host",
                    "--prompt",
                    "--close-from",
                    "--role",
                    "--type",
                    "--other-user",
                    "--command-timeout",
                ],
                &["-D", "--chdir"],
                0,
                true,
                cwd,
            );
            single(start, cwd, false)
        }
        "doas" => {
            let (start, cwd) = skip_options(args, &["-u", "-C"], &[], 0, false, cwd);
            single(start, cwd, false)
        }
        "nohup" | "setsid" => {
            let (start, cwd) = skip_options(args, &[], &[], 0, false, cwd);
            single(start, cwd, false)
        }
        "timeout" => {
            let (start, cwd) = skip_options(args, &["-s", "-k", "--signal", "--kill-after"], &[], 1, false, cwd);
            single(start, cwd, false)
        }
        "nice" => {
            let (start, cwd) = skip_options(args, &["-n", "--adjustment"], &[], 0, false, cwd);
            single(start, cwd, false)
        }
        "ionice" => {
            let (start, cwd) = skip_options(args, &["-c", "-n", "--class", "--classdata"], &[], 0, false, cwd);
            single(start, cwd, false)
        }
        "stdbuf" => {
            let (start, cwd) =
                skip_options(args, &["-i", "-o", "-e", "--input", "--output", "--error"], &[], 0, false, cwd);
            single(start, cwd, false)
        }
        "time" => {
            let (start, cwd) = skip_options(args, &["-o", "-f", "--output", "--format"], &[], 0, false, cwd);
            single(start, cwd, false)
        }
        "xargs" => {
            let (start, cwd) = skip_options(
                args,
                &[
                    "-I",
                    "-L",
                    "-n",
                    "-P",
                    "-s",
                    "-d",
                    "-E",
                    "-a",
                    "--arg-file",
                    "--delimiter",
                    "--eof",
                    "--max-lines",
                    "--max-args",
                    "--max-procs",
                    "--max-chars",
                    "--process-slot-var",
                    "--replace",
                ],
                &[],
                0,
                false,
                cwd,
            );
            // `xargs` alone runs `echo`.
            single(start, cwd, true)
        }
        "busybox" => match args.first() {
            Some(applet) if !applet.starts_with('-') => single(0, cwd, false),
            _ => Vec::new(),
        },
        "find" => unwrap_find_exec(invocation),
        _ => Vec::new(),
    }
}

/// Skips a wrapper's options (and `VAR=value` words when `assignments`), then `positionals`
/// words (the duration of `timeout`). Returns where the command starts and the working
/// directory after `chdir_options`.
fn skip_options(
    args: &[String],
    value_options: &[&str],
    chdir_options: &[&str],
    positionals: usize,
    assignments: bool,
    mut cwd: WorkingDir,
) -> (usize, WorkingDir) {
    let mut index = 0;
    while let Some(arg) = args.get(index) {
        if arg == "--" {
            index += 1;
            break;
        }
        if chdir_options.contains(&arg.as_str()) {
            cwd = cwd.change_to(args.get(index + 1).map(String::as_str));
            index += 2;
            continue;
        }
        if let Some((option, value)) = arg.split_once('=')
            && chdir_options.contains(&option)
        {
            cwd = cwd.change_to(Some(value));
            index += 1;
            continue;
        }
        if value_options.contains(&arg.as_str()) {
            index += 2;
            continue;
        }
        if arg.starts_with('-') && arg.len() > 1 {
            index += 1;
            continue;
        }
        if assignments && is_assignment(arg) {
            index += 1;
            continue;
        }
        break;
    }
    (index + positionals, cwd)
}

fn is_assignment(word: &str) -> bool {
    match word.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !name.as_bytes()[0].is_ascii_digit()
        }
        None => false,
    }
}

/// `env [-i] [-u NAME] [-C DIR] [-S STRING] [NAME=VALUE]... COMMAND...`
fn unwrap_env(invocation: &Invocation) -> Vec<Invocation> {
    let args = &invocation.args;
    let mut cwd = invocation.cwd.clone();
    let mut index = 0;
    let mut words: Option<Vec<String>> = None;
    while let Some(arg) = args.get(index) {
        let arg = arg.as_str();
        let split_string = match arg {
            "-S" | "--split-string" => args.get(index + 1).map(|text| (text.as_str(), index + 2)),
            _ => arg
                .strip_prefix("--split-string=")
                .or_else(|| arg.strip_prefix("-S").filter(|rest| !rest.is_empty()))
                .map(|text| (text, index + 1)),
        };
        if let Some((text, rest_start)) = split_string {
            // `-S` splits its string into words, followed by the remaining arguments.
            let mut split = shlex::split(text).unwrap_or_else(|| text.split_whitespace().map(str::to_string).collect());
            split.extend(args.iter().skip(rest_start).cloned());
            words = Some(split);
            break;
        }
        match arg {
            "--" => {
                index += 1;
                break;
            }
            "-C" | "--chdir" => {
                cwd = cwd.change_to(args.get(index + 1).map(String::as_str));
                index += 2;
            }
            "-u" | "--unset" => index += 2,
            _ if arg.starts_with("--chdir=") => {
                cwd = cwd.change_to(arg.strip_prefix("--chdir="));
                index += 1;
            }
            _ if arg.starts_with('-') && arg.len() > 1 => index += 1,
            _ if is_assignment(arg) => index += 1,
            _ => break,
        }
    }
    let mut words = words.unwrap_or_else(|| args.iter().skip(index).cloned().collect());
    // Words from `-S` may themselves start with assignments.
    while words.first().is_some_and(|word| is_assignment(word)) {
        words.remove(0);
    }
    match words.split_first() {
        Some((program, rest)) => {
            let mut inner = invocation.nested(program, rest.to_vec(), "env".into());
            inner.cwd = cwd;
            inner.stdin = invocation.stdin.clone();
            vec![inner]
        }
        None => Vec::new(),
    }
}

/// `find START... -exec CMD ARGS {} ;` (also `-execdir`, `-ok`, `-okdir`, `+`): one
/// invocation per start point with `{}` replaced by it (what `find` visits is at or below it).
fn unwrap_find_exec(invocation: &Invocation) -> Vec<Invocation> {
    let args = &invocation.args;
    let mut starts: Vec<String> = leading_operands(args).into_iter().map(str::to_string).collect();
    if starts.is_empty() {
        starts.push(".".into());
    }
    let mut commands = Vec::new();
    let mut index = 0;
    while index < args.len() {
        if matches!(args[index].as_str(), "-exec" | "-execdir" | "-ok" | "-okdir") {
            let body: Vec<&String> =
                args[index + 1..].iter().take_while(|arg| arg.as_str() != ";" && arg.as_str() != "+").collect();
            index += body.len() + 2;
            let Some((program, rest)) = body.split_first() else {
                continue;
            };
            for start in &starts {
                let substituted = rest.iter().map(|arg| arg.replace("{}", start)).collect();
                commands.push(invocation.nested(program, substituted, "find -exec".into()));
            }
        } else {
            index += 1;
        }
    }
    commands
}

/// Splitting shell scripts into commands. Only the structure is parsed here (quote-aware
/// separators, heredocs, substitutions); words are split by `shlex`.
mod shell {
    /// One simple command of a script.
    #[derive(Debug, Default)]
    pub(super) struct ScriptCommand {
        pub words: Vec<String>,
        /// From a heredoc or here-string.
        pub stdin: Option<String>,
        /// Its standard input is the previous command's output (`a | b`).
        pub piped: bool,
    }

    #[derive(Debug, Default)]
    pub(super) struct ParsedScript {
        pub commands: Vec<ScriptCommand>,
        /// Bodies of `$(...)` and backquotes, to evaluate as scripts of their own.
        pub substitutions: Vec<String>,
    }

    /// Quotes inside substitutions inside quotes... deeper than this are not looked into (the
    /// rest of the script is taken as one opaque word), so hostile input cannot exhaust the
    /// stack.
    const MAX_LEXER_DEPTH: usize = 32;

    #[derive(Debug, Default)]
    struct Segment {
        text: String,
        heredoc: Option<String>,
        piped: bool,
    }

    struct PendingHeredoc {
        delimiter: String,
        strip_tabs: bool,
        segment: usize,
    }

    pub(super) fn parse(script: &str) -> ParsedScript {
        let (segments, substitutions) = segment(script);
        let commands = segments
            .into_iter()
            .map(|segment| {
                let words = shlex::split(&segment.text)
                    .unwrap_or_else(|| segment.text.split_whitespace().map(str::to_string).collect());
                let (words, here_string) = strip_redirections(words);
                ScriptCommand {
                    words: strip_command_prefix(words),
                    stdin: segment.heredoc.or(here_string),
                    piped: segment.piped,
                }
            })
            .collect();
        ParsedScript { commands, substitutions }
    }

    /// Splits at unquoted separators; collects heredoc bodies and substitutions.
    fn segment(script: &str) -> (Vec<Segment>, Vec<String>) {
        let chars: Vec<char> = script.chars().collect();
        let mut segments: Vec<Segment> = Vec::new();
        let mut substitutions = Vec::new();
        let mut current = Segment::default();
        let mut pending: Vec<PendingHeredoc> = Vec::new();
        let mut index = 0;

        // Ends the current segment; the next one reads the pipe when `piped_next`.
        let finish = |segments: &mut Vec<Segment>, current: &mut Segment, piped_next: bool| {
            segments.push(std::mem::take(current));
            current.piped = piped_next;
        };
        while index < chars.len() {
            let c = chars[index];
            let next = chars.get(index + 1).copied();
            match c {
                '\\' => {
                    if next == Some('\n') {
                        index += 2; // line continuation
                        continue;
                    }
                    current.text.push(c);
                    if let Some(escaped) = next {
                        current.text.push(escaped);
                    }
                    index += 2;
                }
                '\'' => {
                    let end = find_char(&chars, index + 1, '\'').unwrap_or(chars.len());
                    current.text.extend(&chars[index..(end + 1).min(chars.len())]);
                    index = end + 1;
                }
                '"' => {
                    let end = double_quote_end(&chars, index + 1, &mut substitutions, 0);
                    current.text.extend(&chars[index..(end + 1).min(chars.len())]);
                    index = end + 1;
                }
                '`' => {
                    let end = backquote_end(&chars, index + 1);
                    substitutions.push(chars[index + 1..end.min(chars.len())].iter().collect());
                    current.text.extend(&chars[index..(end + 1).min(chars.len())]);
                    index = end + 1;
                }
                '$' if next == Some('(') => {
                    let end = matching_paren(&chars, index + 2, 0);
                    let body: String = chars[index + 2..end.min(chars.len())].iter().collect();
                    // `$((...))` is arithmetic, not a command.
                    if !body.starts_with('(') {
                        substitutions.push(body);
                    }
                    current.text.extend(&chars[index..(end + 1).min(chars.len())]);
                    index = end + 1;
                }
                '#' if current.text.is_empty() || current.text.ends_with(char::is_whitespace) => {
                    while index < chars.len() && chars[index] != '\n' {
                        index += 1;
                    }
                }
                '\n' => {
                    finish(&mut segments, &mut current, false);
                    index += 1;
                    for heredoc in pending.drain(..) {
                        let (body, after) = read_heredoc(&chars, index, &heredoc);
                        if let Some(segment) = segments.get_mut(heredoc.segment) {
                            segment.heredoc = Some(body);
                        }
                        index = after;
                    }
                }
                ';' | '(' | ')' => {
                    finish(&mut segments, &mut current, false);
                    index += 1;
                }
                '&' => {
                    let redirect = current.text.ends_with('>') || current.text.ends_with('<') || next == Some('>');
                    if redirect {
                        current.text.push(c);
                        index += 1;
                    } else {
                        finish(&mut segments, &mut current, false);
                        index += if next == Some('&') { 2 } else { 1 };
                    }
                }
                '|' => {
                    if next == Some('|') {
                        finish(&mut segments, &mut current, false);
                        index += 2;
                    } else {
                        finish(&mut segments, &mut current, true);
                        index += if next == Some('&') { 2 } else { 1 };
                    }
                }
                '<' if next == Some('<') && chars.get(index + 2) == Some(&'<') => {
                    // A here-string: kept as text, its word becomes stdin later.
                    current.text.push_str("<<<");
                    index += 3;
                }
                '<' if next == Some('<') => {
                    let (heredoc, after) = heredoc_operator(&chars, index + 2, segments.len());
                    pending.extend(heredoc);
                    index = after;
                }
                _ => {
                    current.text.push(c);
                    index += 1;
                }
            }
        }
        finish(&mut segments, &mut current, false);
        (segments, substitutions)
    }

    fn find_char(chars: &[char], from: usize, wanted: char) -> Option<usize> {
        chars.iter().skip(from).position(|&c| c == wanted).map(|offset| from + offset)
    }

    /// Index of the closing `"` (or the end), collecting substitutions inside.
    fn double_quote_end(chars: &[char], from: usize, substitutions: &mut Vec<String>, nesting: usize) -> usize {
        if nesting > MAX_LEXER_DEPTH {
            return chars.len();
        }
        let mut index = from;
        while index < chars.len() {
            match chars[index] {
                '\\' => index += 2,
                '"' => return index,
                '`' => {
                    let end = backquote_end(chars, index + 1);
                    substitutions.push(chars[index + 1..end.min(chars.len())].iter().collect());
                    index = end + 1;
                }
                '$' if chars.get(index + 1) == Some(&'(') => {
                    let end = matching_paren(chars, index + 2, nesting + 1);
                    let body: String = chars[index + 2..end.min(chars.len())].iter().collect();
                    if !body.starts_with('(') {
                        substitutions.push(body);
                    }
                    index = end + 1;
                }
                _ => index += 1,
            }
        }
        chars.len()
    }

    fn backquote_end(chars: &[char], from: usize) -> usize {
        let mut index = from;
        while index < chars.len() {
            match chars[index] {
                '\\' => index += 2,
                '`' => return index,
                _ => index += 1,
            }
        }
        chars.len()
    }

    /// Index of the `)` closing a `$(` whose body starts at `from` (quote-aware).
    fn matching_paren(chars: &[char], from: usize, nesting: usize) -> usize {
        if nesting > MAX_LEXER_DEPTH {
            return chars.len();
        }
        let mut depth = 1;
        let mut index = from;
        while index < chars.len() {
            match chars[index] {
                '\\' => index += 1,
                '\'' => index = find_char(chars, index + 1, '\'').unwrap_or(chars.len()),
                '"' => index = double_quote_end(chars, index + 1, &mut Vec::new(), nesting + 1),
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        return index;
                    }
                }
                _ => {}
            }
            index += 1;
        }
        chars.len()
    }

    /// After `<<`: `[-]` then the delimiter word (quotes removed). Returns the pending
    /// heredoc for segment `segment` and where parsing resumes.
    fn heredoc_operator(chars: &[char], from: usize, segment: usize) -> (Option<PendingHeredoc>, usize) {
        let mut index = from;
        let strip_tabs = chars.get(index) == Some(&'-');
        if strip_tabs {
            index += 1;
        }
        while chars.get(index).is_some_and(|c| *c == ' ' || *c == '\t') {
            index += 1;
        }
        let mut delimiter = String::new();
        while let Some(&c) = chars.get(index) {
            match c {
                '\'' | '"' => {
                    let end = find_char(chars, index + 1, c).unwrap_or(chars.len());
                    delimiter.extend(&chars[index + 1..end.min(chars.len())]);
                    index = end + 1;
                }
                '\\' => {
                    if let Some(&escaped) = chars.get(index + 1) {
                        delimiter.push(escaped);
                    }
                    index += 2;
                }
                c if c.is_whitespace() || ";&|<>()".contains(c) => break,
                c => {
                    delimiter.push(c);
                    index += 1;
                }
            }
        }
        let pending = (!delimiter.is_empty()).then_some(PendingHeredoc { delimiter, strip_tabs, segment });
        (pending, index)
    }

    /// Lines from `from` up to the delimiter line; returns the body and the index after it.
    fn read_heredoc(chars: &[char], from: usize, heredoc: &PendingHeredoc) -> (String, usize) {
        let mut body = String::new();
        let mut index = from;
        while index < chars.len() {
            let end = find_char(chars, index, '\n').unwrap_or(chars.len());
            let line: String = chars[index..end].iter().collect();
            index = end + 1;
            let compared = if heredoc.strip_tabs { line.trim_start_matches('\t') } else { line.as_str() };
            if compared == heredoc.delimiter {
                return (body, index);
            }
            body.push_str(&line);
            body.push('\n');
        }
        (body, chars.len())
    }

    /// Removes redirections (`>out`, `2> err`, `&>/dev/null`, `<in`) and returns the text of
    /// a here-string (`<<< text`).
    fn strip_redirections(words: Vec<String>) -> (Vec<String>, Option<String>) {
        let mut kept = Vec::new();
        let mut here_string = None;
        let mut iter = words.into_iter();
        while let Some(word) = iter.next() {
            if word == "<<<" {
                here_string = iter.next();
                continue;
            }
            if let Some(text) = word.strip_prefix("<<<") {
                here_string = Some(text.to_string());
                continue;
            }
            match redirection_needs_target(&word) {
                Some(true) => {
                    iter.next();
                }
                Some(false) => {}
                None => kept.push(word),
            }
        }
        (kept, here_string)
    }

    /// `Some(needs_next_word)` when the word is a redirection.
    fn redirection_needs_target(word: &str) -> Option<bool> {
        let rest = word.trim_start_matches(|c: char| c.is_ascii_digit());
        let rest = rest.strip_prefix('&').unwrap_or(rest);
        [">>", ">|", ">&", "<&", "<>", ">", "<"]
            .iter()
            .find_map(|operator| rest.strip_prefix(operator))
            .map(str::is_empty)
    }

    /// Drops what precedes the program: assignments (`A=1 cmd`) and reserved words
    /// (`if`, `then`, `!`, `{`, `exec`, ...). Loop and case headers run no command.
    fn strip_command_prefix(mut words: Vec<String>) -> Vec<String> {
        let mut start = 0;
        while let Some(word) = words.get(start) {
            match word.as_str() {
                "if" | "then" | "else" | "elif" | "fi" | "do" | "done" | "while" | "until" | "!" | "{" | "}"
                | "time" | "exec" | "command" | "builtin" | "coproc" | "noglob" | "nocorrect" | "esac" => start += 1,
                "for" | "case" | "select" | "function" | "in" => return Vec::new(),
                _ if super::is_assignment(word) => start += 1,
                _ => break,
            }
        }
        words.drain(..start);
        words
    }
}
