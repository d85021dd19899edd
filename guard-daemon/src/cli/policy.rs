//! `guard policy`: placeholder until the lead's implementation lands (stub by the CLI helper).

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check a policy file.
    Check {
        /// The policy file.
        file: std::path::PathBuf,
    },
}

pub fn main(_cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("guard policy: not yet implemented")
}
