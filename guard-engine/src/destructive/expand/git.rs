//! Git aliases: `git yolo` runs what `alias.yolo` says, from (lowest precedence first) the
//! system config, the user's (`$GIT_CONFIG_GLOBAL`, `$XDG_CONFIG_HOME/git/config`,
//! `~/.gitconfig`), the repository's (found from the working directory, after `-C DIR`, or
//! `$GIT_DIR`/`--git-dir`), the environment (`GIT_CONFIG_*`) and `-c alias.x=...`. An alias
//! may name another alias (followed, a loop stops: git refuses it); `!cmd` is a shell command.

use super::super::inputs::{Inputs, Source};
use super::super::walk::{Invocation, WorkingDir};
use super::gitconfig::{self, split_assignment};
use super::{Unit, with_args};
use crate::policy::paths::normalize_absolute;

/// Aliases followed through other aliases, at most.
const MAX_ALIAS_CHAIN: usize = 16;
/// Directories looked at upward for the repository.
const MAX_DISCOVERY: usize = 64;

/// Git's own commands: an alias of one of these is ignored by git.
const BUILTINS: &[&str] = &[
    "add",
    "am",
    "apply",
    "archive",
    "bisect",
    "blame",
    "branch",
    "bundle",
    "checkout",
    "cherry-pick",
    "clean",
    "clone",
    "commit",
    "config",
    "describe",
    "diff",
    "fetch",
    "format-patch",
    "gc",
    "grep",
    "init",
    "log",
    "merge",
    "mv",
    "notes",
    "pull",
    "push",
    "rebase",
    "reflog",
    "remote",
    "reset",
    "restore",
    "revert",
    "rm",
    "show",
    "stash",
    "status",
    "submodule",
    "switch",
    "tag",
    "worktree",
    "help",
    "version",
];

/// Global options that take the next word as their value.
const VALUE_OPTIONS: &[&str] =
    &["-C", "-c", "--git-dir", "--work-tree", "--namespace", "--config-env", "--exec-path", "--super-prefix"];

/// One alias definition and where it was read.
struct Alias {
    value: Option<String>,
    source: Source,
}

pub(super) fn expand(invocation: &Invocation, inputs: &mut Inputs) -> Vec<Unit> {
    let args = &invocation.args;
    let mut cwd = invocation.cwd.clone();
    let mut git_dir = inputs.var("GIT_DIR").map(str::to_string);
    let mut command_line = Vec::new();
    let mut index = 0;
    while let Some(arg) = args.get(index) {
        if !arg.starts_with('-') {
            break;
        }
        let (option, inline) = match arg.split_once('=') {
            Some((option, value)) if arg.starts_with("--") => (option, Some(value.to_string())),
            _ => (arg.as_str(), None),
        };
        let takes_value = VALUE_OPTIONS.contains(&option) && inline.is_none();
        let value = if takes_value { args.get(index + 1).cloned() } else { inline };
        index += if takes_value { 2 } else { 1 };
        match (option, value) {
            ("-C", Some(dir)) => cwd = cwd.change_to(Some(&dir)),
            ("-c", Some(assignment)) => command_line.push(split_assignment(&assignment)),
            ("--config-env", Some(spec)) => {
                if let Some((key, var)) = spec.split_once('=') {
                    let value = inputs.var(var).map(str::to_string);
                    command_line.push((gitconfig::normalise_key(key), value));
                }
            }
            ("--git-dir", Some(dir)) => git_dir = Some(dir),
            _ => {}
        }
    }
    let Some(command) = args.get(index) else {
        return Vec::new();
    };
    if BUILTINS.contains(&command.as_str()) {
        return Vec::new();
    }
    let globals = args[..index].to_vec();
    let (aliases, top) = load_aliases(&cwd, git_dir.as_deref(), command_line, inputs);
    let mut current = command.clone();
    let mut rest: Vec<String> = args[index + 1..].to_vec();
    let mut seen = vec![current.clone()];
    let mut via = Vec::new();
    let mut source = invocation.source.clone();
    let mut expanded = None;
    loop {
        let key = format!("alias.{}", current.to_ascii_lowercase());
        let Some(alias) = aliases.iter().rev().find(|(name, _)| *name == key).map(|(_, alias)| alias) else {
            break;
        };
        let Some(value) = alias.value.clone() else {
            inputs.note(format!("git alias {current} has no value"));
            return Vec::new();
        };
        source = alias.source.clone();
        via.push(format!("git alias {current}"));
        if let Some(shell) = value.strip_prefix('!') {
            // Git runs `sh -c 'VALUE "$@"' VALUE ARGS...` from the top of the work tree.
            let mut outer = with_args(invocation, Vec::new(), via.join(" > "));
            outer.source = source;
            outer.cwd = top.clone().unwrap_or(cwd);
            let script = std::iter::once(shell.to_string()).chain(rest.iter().cloned()).collect::<Vec<_>>().join(" ");
            return vec![Unit::Shell { script, outer, via: format!("git alias {current}"), file: None }];
        }
        let Some(words) = shlex::split(&value) else {
            inputs.note(format!("git alias {current} not judged: unbalanced quoting"));
            return Vec::new();
        };
        let Some((first, more)) = words.split_first() else {
            return Vec::new();
        };
        let mut next_rest = more.to_vec();
        next_rest.extend(rest);
        rest = next_rest;
        expanded = Some(first.clone());
        if BUILTINS.contains(&first.as_str()) {
            break;
        }
        if seen.contains(first) || seen.len() >= MAX_ALIAS_CHAIN {
            // Git stops with "alias loop detected": nothing runs.
            inputs.note(format!("git alias loop through {}", seen.join(" > ")));
            return Vec::new();
        }
        seen.push(first.clone());
        current = first.clone();
    }
    let Some(program) = expanded else {
        return Vec::new();
    };
    let mut new_args = globals;
    new_args.push(program);
    new_args.extend(rest);
    let mut unit = with_args(invocation, new_args, via.join(" > "));
    unit.source = source;
    unit.cwd = cwd;
    vec![Unit::Command(unit)]
}

/// Every `alias.*` entry, lowest precedence first, and the work tree's top when a repository
/// was found.
fn load_aliases(
    cwd: &WorkingDir,
    git_dir: Option<&str>,
    command_line: Vec<(String, Option<String>)>,
    inputs: &mut Inputs,
) -> (Vec<(String, Alias)>, Option<WorkingDir>) {
    let mut files = Vec::new();
    if inputs.var("GIT_CONFIG_NOSYSTEM").is_none_or(|value| value.is_empty() || value == "0") {
        files.push(inputs.var("GIT_CONFIG_SYSTEM").unwrap_or("/etc/gitconfig").to_string());
    }
    if let Some(global) = inputs.var("GIT_CONFIG_GLOBAL") {
        files.push(global.to_string());
    } else if let Some(home) = inputs.home() {
        let xdg = inputs.var("XDG_CONFIG_HOME").filter(|dir| dir.starts_with('/'));
        files.push(match xdg {
            Some(dir) => Inputs::below(dir, "git/config"),
            None => Inputs::below(home, ".config/git/config"),
        });
        files.push(Inputs::below(home, ".gitconfig"));
    }
    let (repo_config, top) = match git_dir {
        Some(dir) => match cwd.resolve(dir) {
            WorkingDir::Known(dir) => (Some(Inputs::below(&dir, "config")), None),
            WorkingDir::Unknown => (None, None),
        },
        None => discover(cwd, inputs),
    };
    files.extend(repo_config);
    let mut aliases = Vec::new();
    for path in files {
        let Some(input) = inputs.read_noting(&path, "git config") else {
            continue;
        };
        for entry in gitconfig::parse(&input.text) {
            if entry.key.starts_with("alias.") {
                let source = Source::file(&path, Some(entry.line));
                aliases.push((entry.key, Alias { value: entry.value, source }));
            }
        }
    }
    for (key, value, source) in gitconfig::from_env(inputs) {
        aliases.push((key, Alias { value, source }));
    }
    for (key, value) in command_line {
        aliases.push((key, Alias { value, source: Source::Argv }));
    }
    (aliases, top)
}

/// The repository config of the first directory upward holding `.git` (a directory, or a
/// file `gitdir: PATH` for worktrees and submodules), and that directory.
fn discover(cwd: &WorkingDir, inputs: &mut Inputs) -> (Option<String>, Option<WorkingDir>) {
    let WorkingDir::Known(start) = cwd else {
        return (None, None);
    };
    let mut dir = normalize_absolute(start);
    for _ in 0..MAX_DISCOVERY {
        let dot_git = Inputs::below(&dir, ".git");
        let config = Inputs::below(&dot_git, "config");
        if inputs.read(&config).is_ok() {
            return (Some(config), Some(WorkingDir::Known(dir)));
        }
        if let Ok(link) = inputs.read(&dot_git)
            && let Some(target) = link.text.lines().next().and_then(|line| line.strip_prefix("gitdir:"))
        {
            let target = WorkingDir::Known(dir.clone()).resolve(target.trim());
            if let WorkingDir::Known(git_dir) = target {
                // A linked worktree's config is its common directory's.
                let common = inputs
                    .read(&Inputs::below(&git_dir, "commondir"))
                    .ok()
                    .and_then(|common| match WorkingDir::Known(git_dir.clone()).resolve(common.text.trim()) {
                        WorkingDir::Known(common) => Some(common),
                        WorkingDir::Unknown => None,
                    })
                    .unwrap_or(git_dir);
                return (Some(Inputs::below(&common, "config")), Some(WorkingDir::Known(dir)));
            }
        }
        if dir == "/" {
            break;
        }
        dir = match dir.rfind('/') {
            Some(0) | None => "/".to_string(),
            Some(cut) => dir[..cut].to_string(),
        };
    }
    (None, None)
}
