//! The destructive evaluator and its shell parser, on the built-in default policy (29 rules).
//!
//! Input, by its first byte (so seeds stay readable text):
//! * `s`: the rest is a script, evaluated as `sh -c SCRIPT` (the shell splitter, quoting,
//!   substitutions, heredocs, `cd`);
//! * `a`: the rest is NUL-separated: the working directory, then argv (wrappers, flags,
//!   operands against the scratch roots);
//! * `e`: the rest is NUL-separated: `NAME=VALUE` environment entries, then argv (input
//!   expansion: `TF_CLI_ARGS`, `GIT_CONFIG_*`);
//! * `f`: the rest is NUL-separated: a file's content, then argv; every file the exec reads
//!   (script, `.git/config`, curl config, `psql -f`) has that content;
//! * anything else: a whole exec (exe, argv, cwd, environment) built with `arbitrary`.
//!
//! Besides not panicking or hanging: `evaluate` is the best of `evaluate_all`, and every match
//! serialises (it goes into an audit record).

#![no_main]

use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use guard_engine::destructive::{DestructiveEvaluator, ExecContext, HeldFiles, InputError, NoFiles};
use guard_engine::policy::default_policy;
use libfuzzer_sys::fuzz_target;

fn evaluator() -> &'static DestructiveEvaluator {
    static EVALUATOR: OnceLock<DestructiveEvaluator> = OnceLock::new();
    EVALUATOR.get_or_init(|| DestructiveEvaluator::new(&default_policy()))
}

#[derive(Arbitrary, Debug)]
struct Exec {
    exe: String,
    argv: Vec<String>,
    cwd: String,
    env: Vec<(String, String)>,
}

/// Every path holds the same content.
struct SameFiles(Vec<u8>);

impl HeldFiles for SameFiles {
    fn read(&self, _: &str, max_len: u64) -> Result<(Vec<u8>, bool), InputError> {
        let max = usize::try_from(max_len).unwrap_or(usize::MAX);
        Ok((self.0[..self.0.len().min(max)].to_vec(), self.0.len() > max))
    }
}

fn fields(rest: &[u8]) -> impl Iterator<Item = String> + '_ {
    rest.split(|&b| b == 0).map(|f| String::from_utf8_lossy(f).into_owned())
}

fn exec_of(data: &[u8]) -> Option<(ExecContext, Option<SameFiles>)> {
    let (&mode, rest) = data.split_first()?;
    let with_argv = |argv: Vec<String>, env: Vec<(String, String)>| {
        let exe = argv.first().map(|name| format!("/usr/bin/{name}")).unwrap_or_default();
        ExecContext { exe, argv, cwd: "/work/repo".into(), env }
    };
    if mode == b'e' {
        let mut env = Vec::new();
        let mut argv = Vec::new();
        for field in fields(rest) {
            match field.split_once('=') {
                Some((name, value)) if argv.is_empty() => env.push((name.to_string(), value.to_string())),
                _ => argv.push(field),
            }
        }
        return Some((with_argv(argv, env), None));
    }
    if mode == b'f' {
        let (content, argv) = match rest.iter().position(|&b| b == 0) {
            Some(end) => (&rest[..end], &rest[end + 1..]),
            None => (rest, &[][..]),
        };
        let env = vec![("HOME".to_string(), "/home/agent".to_string())];
        return Some((with_argv(fields(argv).collect(), env), Some(SameFiles(content.to_vec()))));
    }
    Some((match mode {
        b's' => ExecContext {
            exe: "/usr/bin/sh".into(),
            argv: vec!["sh".into(), "-c".into(), String::from_utf8_lossy(rest).into_owned()],
            cwd: "/home/agent/project".into(),
            env: Vec::new(),
        },
        b'a' => {
            let mut fields = rest.split(|&b| b == 0).map(|f| String::from_utf8_lossy(f).into_owned());
            let cwd = fields.next().unwrap_or_default();
            let argv: Vec<String> = fields.collect();
            let exe = argv.first().map(|name| format!("/usr/bin/{name}")).unwrap_or_default();
            ExecContext { exe, argv, cwd, env: Vec::new() }
        }
        _ => {
            let exec = Exec::arbitrary_take_rest(Unstructured::new(rest)).ok()?;
            ExecContext { exe: exec.exe, argv: exec.argv, cwd: exec.cwd, env: exec.env }
        }
    }, None))
}

fuzz_target!(|data: &[u8]| {
    let Some((exec, files)) = exec_of(data) else { return };
    let evaluator = evaluator();
    let judged = match &files {
        Some(files) => evaluator.judge(&exec, files),
        None => evaluator.judge(&exec, &NoFiles),
    };
    let all = judged.matches.clone();
    let best = judged.best().cloned();
    if files.is_none() {
        assert_eq!(evaluator.evaluate_all(&exec), all, "judge and evaluate_all disagree on {exec:?}");
    }
    assert_eq!(best.is_some(), !all.is_empty(), "evaluate and evaluate_all disagree on {exec:?}");
    if let Some(best) = &best {
        assert!(all.contains(best), "evaluate found a match evaluate_all did not: {best:?}");
    }
    for found in &all {
        serde_json::to_string(found).expect("a destructive match serialises");
    }
});
