//! `guard policy`: check a policy file, print the built-in default as a starting point, or
//! merge snippets (the agent recipes) onto a base.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context as _;
use clap::Subcommand;
use guard_engine::{
    policy::{CompileContext, DEFAULT_POLICY_YAML},
    policy_merge::{Layer, merge_policies},
};

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
    /// Merge policy snippets (e.g. recipes/claude-code.yaml) onto a base and print the result
    /// (YAML, validated). Lists are extended, rules with a base rule's id are merged into it,
    /// scalars replaced; nothing is removed.
    Merge {
        /// The base policy; default: the built-in default policy.
        #[arg(long, value_name = "FILE")]
        base: Option<PathBuf>,
        /// The snippets, applied in order.
        #[arg(required = true, value_name = "SNIPPET")]
        snippets: Vec<PathBuf>,
    },
}

pub fn main(cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::Merge { base, snippets } => merge(base.as_deref(), &snippets),
        PolicyCommand::Default => {
            print!("{DEFAULT_POLICY_YAML}");
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Check { file } => match policy_load::parse_file(&file) {
            Ok(policy) => {
                let compiled = policy.compile(&CompileContext::with_homes(scan::home_dirs()));
                for warning in &compiled.warnings {
                    eprintln!("{}: warning: {warning}", file.display());
                }
                println!(
                    "{}: ok ({} rules: {} credential, {} destructive; network scope {}, file scope {}, unix scope {})",
                    file.display(),
                    compiled.rules.len(),
                    policy.credential_rules().len(),
                    policy.destructive().rules.len(),
                    if compiled.network.is_some() { "on" } else { "off" },
                    if compiled.files.is_some() { "on" } else { "off" },
                    match &compiled.unix {
                        Some(unix) => format!("on, {} {} paths", unix.mode.as_str(), unix.patterns.len()),
                        None => "off".to_string(),
                    },
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

fn merge(base: Option<&Path>, snippets: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let read =
        |path: &Path| std::fs::read_to_string(path).with_context(|| format!("reading policy {}", path.display()));
    let base_text = match base {
        Some(path) => read(path)?,
        None => DEFAULT_POLICY_YAML.to_string(),
    };
    let base_name = base.map_or_else(|| "<default policy>".to_string(), |p| p.display().to_string());
    let texts = snippets
        .iter()
        .map(|path| Ok((path.display().to_string(), read(path)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let layers: Vec<Layer<'_>> = texts.iter().map(|(name, text)| Layer { name, text }).collect();
    match merge_policies(&Layer { name: &base_name, text: &base_text }, &layers) {
        Ok(text) => {
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            eprintln!("{err}");
            Ok(ExitCode::from(1))
        }
    }
}
