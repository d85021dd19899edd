//! Script files handed to a program: `bash x.sh`/`sh x.sh` (judged like `sh -c` with the
//! script's lines numbered), `python3 x.py`, `perl x.pl`, `node x.js`, `ruby x.rb` (judged
//! like the inline script: `python3 -c CONTENT`), and `psql -f x.sql` (like its standard
//! input).

use super::super::inputs::{Inputs, Source};
use super::super::walk::Invocation;
use super::{Unit, absolute, with_args};
use crate::policy::model::{SHELLS, interpreter_script_flags};

/// Options that take the next word as their value, by interpreter (besides the script flags).
fn value_options(name: &str) -> &'static [&'static str] {
    match name {
        "perl" => &["-I", "-M", "-m", "-x"],
        "node" | "nodejs" => &["-r", "--require", "--import", "--loader", "--env-file", "--input-type"],
        "ruby" => &["-I", "-r", "-C", "-E", "--encoding"],
        _ if SHELLS.contains(&name) => &["-o", "-O", "+o", "+O", "--rcfile", "--init-file"],
        // python
        _ => &["-W", "-X", "--check-hash-based-pycs"],
    }
}

/// The script file a shell or interpreter runs: the first operand, unless a flag says the
/// script comes from elsewhere (`-c`, `-e`, `-s`, `-i`, `-m`, `-`). `None`: not a program
/// that runs script files.
pub(super) fn expand_script(name: &str, invocation: &Invocation, inputs: &mut Inputs) -> Option<Vec<Unit>> {
    let inline_flags = interpreter_script_flags(name)?;
    let shell = SHELLS.contains(&name);
    let args = &invocation.args;
    let takes_value = value_options(name);
    let mut index = 0;
    while let Some(arg) = args.get(index) {
        if arg == "--" {
            index += 1;
            break;
        }
        if arg == "-" || !(arg.starts_with('-') || (shell && arg.starts_with('+') && arg.len() > 1)) {
            break;
        }
        if inline_flags.iter().any(|flag| arg == flag || arg.starts_with(&format!("{flag}=")))
            || short_cluster_has(arg, inline_flags)
        {
            return Some(Vec::new());
        }
        let reads_elsewhere = if shell {
            short_cluster_has(arg, &["-s", "-i"])
        } else {
            arg == "-m" || arg.starts_with("-m") && name.starts_with("python") || arg == "-i"
        };
        if reads_elsewhere {
            return Some(Vec::new());
        }
        index += if takes_value.contains(&arg.as_str()) { 2 } else { 1 };
    }
    let Some(script) = args.get(index).filter(|script| script.as_str() != "-") else {
        return Some(Vec::new());
    };
    let what = format!("{name} script");
    let Some(path) = absolute(script, &invocation.cwd, inputs, &what) else {
        return Some(Vec::new());
    };
    let Some(input) = inputs.read_noting(&path, &what) else {
        return Some(Vec::new());
    };
    let via = format!("{name} {script}");
    if shell {
        let outer = with_args(invocation, args[index + 1..].to_vec(), via.clone());
        return Some(vec![Unit::Shell { script: input.text, outer, via, file: Some(path) }]);
    }
    let flag = inline_flags.first().copied().unwrap_or("-c");
    let base = with_args(invocation, Vec::new(), via);
    let source = Source::file(&path, None);
    let build = move |text: &str| {
        let mut unit = base.clone();
        unit.args = vec![flag.to_string(), text.to_string()];
        unit.source = source.clone();
        unit
    };
    Some(vec![Unit::FileContent { path, text: input.text, shown: invocation.command_text(), build: Box::new(build) }])
}

/// A short option cluster (`-ec`, `-xs`) holding one of these one-letter flags.
fn short_cluster_has(arg: &str, flags: &[&str]) -> bool {
    let Some(cluster) = arg.strip_prefix('-').filter(|rest| !rest.starts_with('-') && !rest.is_empty()) else {
        return false;
    };
    let cluster = cluster.split(['=']).next().unwrap_or(cluster);
    cluster.chars().all(|c| c.is_ascii_alphabetic())
        && flags
            .iter()
            .filter_map(|flag| flag.strip_prefix('-'))
            .any(|letter| letter.len() == 1 && cluster.contains(letter))
}

/// `psql -f FILE` (`-fFILE`, `--file FILE`, `--file=FILE`): the file is what psql runs.
pub(super) fn expand_psql(invocation: &Invocation, inputs: &mut Inputs) -> Vec<Unit> {
    let args = &invocation.args;
    let mut units = Vec::new();
    let mut index = 0;
    while let Some(arg) = args.get(index) {
        let (file, used) = match arg.as_str() {
            "-f" | "--file" => (args.get(index + 1).cloned(), 2),
            _ => match arg.strip_prefix("--file=").or_else(|| arg.strip_prefix("-f").filter(|rest| !rest.is_empty())) {
                Some(file) => (Some(file.to_string()), 1),
                None => (None, 1),
            },
        };
        let start = index;
        index += used;
        let Some(file) = file.filter(|file| file != "-") else {
            continue;
        };
        let Some(path) = absolute(&file, &invocation.cwd, inputs, "psql file") else {
            continue;
        };
        let Some(input) = inputs.read_noting(&path, "psql file") else {
            continue;
        };
        // The same command without the -f, the file as its input.
        let mut rest: Vec<String> = args[..start].to_vec();
        rest.extend(args[index.min(args.len())..].iter().cloned());
        let base = with_args(invocation, rest, format!("psql -f {file}"));
        let source = Source::file(&path, None);
        let build = move |text: &str| {
            let mut unit = base.clone();
            unit.stdin = Some(text.to_string());
            unit.source = source.clone();
            unit
        };
        units.push(Unit::FileContent {
            path,
            text: input.text,
            shown: invocation.command_text(),
            build: Box::new(build),
        });
    }
    units
}
