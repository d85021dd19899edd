//! What runs other commands: shells given a script with `-c`, and wrappers (`env`, `sudo`,
//! `timeout`, `xargs`, `busybox`, `find -exec`, ...), each giving the commands it would run.

use super::conditions::leading_operands;
use super::walk::{Invocation, WorkingDir};
use crate::policy::model::SHELLS;

/// The script of `SHELL [options] -c SCRIPT [args]` (the `c` may sit in a cluster: `-lc`).
pub(super) fn shell_script(name: &str, args: &[String]) -> Option<String> {
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
pub(super) fn unwrap_wrapper(name: &str, invocation: &Invocation) -> Vec<Invocation> {
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

pub(super) fn is_assignment(word: &str) -> bool {
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
