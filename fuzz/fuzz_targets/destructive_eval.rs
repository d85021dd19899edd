//! The destructive evaluator and its shell parser, on the built-in default policy (29 rules).
//!
//! Input, by its first byte (so seeds stay readable text):
//! * `s`: the rest is a script, evaluated as `sh -c SCRIPT` (the shell splitter, quoting,
//!   substitutions, heredocs, `cd`);
//! * `a`: the rest is NUL-separated: the working directory, then argv (wrappers, flags,
//!   operands against the scratch roots);
//! * anything else: a whole exec (exe, argv, cwd, environment) built with `arbitrary`.
//!
//! Besides not panicking or hanging: `evaluate` is the best of `evaluate_all`, and every match
//! serialises (it goes into an audit record).

#![no_main]

use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use guard_engine::destructive::{DestructiveEvaluator, ExecContext};
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

fn exec_of(data: &[u8]) -> Option<ExecContext> {
    let (&mode, rest) = data.split_first()?;
    Some(match mode {
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
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(exec) = exec_of(data) else { return };
    let evaluator = evaluator();
    let all = evaluator.evaluate_all(&exec);
    let best = evaluator.evaluate(&exec);
    assert_eq!(best.is_some(), !all.is_empty(), "evaluate and evaluate_all disagree on {exec:?}");
    if let Some(best) = &best {
        assert!(all.contains(best), "evaluate found a match evaluate_all did not: {best:?}");
    }
    for found in &all {
        serde_json::to_string(found).expect("a destructive match serialises");
    }
});
