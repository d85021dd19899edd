//! Terraform (and OpenTofu) read extra arguments from `TF_CLI_ARGS` and
//! `TF_CLI_ARGS_<command>` (`TF_CLI_ARGS_apply=-destroy`; a nested command's words joined by
//! `_`, `TF_CLI_ARGS_state_rm`), split like shell words and inserted after the command.

use super::super::inputs::{Inputs, Source};
use super::super::walk::Invocation;
use super::{Unit, with_args};

/// Commands whose first operand is a subcommand of their own (`terraform state rm`).
const NESTED: &[&str] = &["state", "workspace", "providers", "metadata"];

pub(super) fn expand(invocation: &Invocation, inputs: &mut Inputs) -> Vec<Unit> {
    let args = &invocation.args;
    // Global options (`-chdir=DIR`, `-help`) come before the command.
    let Some(command_at) = args.iter().position(|arg| !arg.starts_with('-')) else {
        return Vec::new();
    };
    let command = args[command_at].as_str();
    let mut targets = vec![("TF_CLI_ARGS".to_string(), command_at)];
    targets.push((format!("TF_CLI_ARGS_{}", command.replace('-', "_")), command_at));
    if NESTED.contains(&command)
        && let Some(sub) = args.get(command_at + 1).filter(|sub| !sub.starts_with('-'))
    {
        targets.push((format!("TF_CLI_ARGS_{command}_{}", sub.replace('-', "_")), command_at + 1));
    }
    let mut units = Vec::new();
    for (name, after) in targets {
        let Some(value) = inputs.var(&name) else {
            continue;
        };
        let Some(words) = shlex::split(value) else {
            // Terraform refuses to run with it ("Error parsing extra CLI args").
            inputs.note(format!("environment variable {name} not judged: unbalanced quoting"));
            continue;
        };
        if words.is_empty() {
            continue;
        }
        let mut merged: Vec<String> = args[..=after].to_vec();
        merged.extend(words);
        merged.extend(args[after + 1..].iter().cloned());
        let mut unit = with_args(invocation, merged, format!("env {name}"));
        unit.source = Source::env(&name);
        units.push(Unit::Command(unit));
    }
    units
}
