//! Policy tests: parsing and its errors, compilation, LPM merging, the destructive evaluator.

mod audit;
mod compile;
mod confinement;
mod destructive;
mod kubernetes;
mod parse;
mod unix;

use super::{Policy, Problem, parse_policy};

/// Parses, expecting success.
fn parse_ok(yaml: &str) -> Policy {
    match parse_policy("test.yaml", yaml) {
        Ok(policy) => policy,
        Err(error) => panic!("expected the policy to parse, got:\n{error}"),
    }
}

/// Parses, expecting failure; returns the problems.
fn parse_problems(yaml: &str) -> Vec<Problem> {
    match parse_policy("test.yaml", yaml) {
        Ok(_) => panic!("expected an error for:\n{yaml}"),
        Err(error) => {
            assert!(!error.problems.is_empty());
            error.problems
        }
    }
}

/// Asserts exactly one problem, at `line:column`, whose message contains `needle`.
#[track_caller]
fn assert_single_problem(yaml: &str, line: u64, column: u64, needle: &str) {
    let problems = parse_problems(yaml);
    assert_eq!(problems.len(), 1, "expected one problem, got {problems:#?}");
    let problem = &problems[0];
    assert_eq!((problem.line, problem.column), (line, column), "wrong location for {:?}", problem.message);
    assert!(problem.message.contains(needle), "message {:?} does not contain {needle:?}", problem.message);
}
