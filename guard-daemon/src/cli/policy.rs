//! `guard policy`: check a policy file, or print the built-in default as a starting point.

use std::{path::PathBuf, process::ExitCode};

use clap::Subcommand;
use guard_engine::policy::{CompileContext, DEFAULT_POLICY_YAML};

use crate::{policy_load, scan};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file; exits non-zero with FILE:LINE:COLUMN errors.
    Check {
        /// The policy file.
        file: PathBuf,
    },
    /// Print the built-in default policy (YAML).
    Default,
}

pub fn main(cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::Default => {
            print!("{DEFAULT_POLICY_YAML}");
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Check { file } => match policy_load::parse_file(&file) {
            Ok(policy) => {
                let compiled = policy.compile(&CompileContext { homes: scan::home_dirs() });
                for warning in &compiled.warnings {
                    eprintln!("{}: warning: {warning}", file.display());
                }
                println!(
                    "{}: ok ({} rules: {} credential, {} destructive; network scope {}, file scope {})",
                    file.display(),
                    compiled.rules.len(),
                    policy.credential_rules().len(),
                    policy.destructive().rules.len(),
                    if compiled.network.is_some() { "on" } else { "off" },
                    if compiled.files.is_some() { "on" } else { "off" },
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(err) => {
                eprintln!("{err:#}");
                Ok(ExitCode::from(1))
            }
        },
    }
}
