//! `guard pending`: commands held before their first instruction, waiting for a person.

use std::{path::PathBuf, process::ExitCode};

use anyhow::anyhow;
use clap::Args;
use guard_engine::control::Request;

use crate::control;

#[derive(Debug, Args)]
pub struct PendingArgs {
    /// Control socket of the daemon.
    #[arg(long, value_name = "PATH", default_value = super::DEFAULT_SOCKET_PATH)]
    pub socket: PathBuf,
    /// Print the raw JSON list.
    #[arg(long)]
    pub json: bool,
}

pub fn main(args: PendingArgs) -> anyhow::Result<ExitCode> {
    let reply = control::request(&args.socket, &Request::Pending)?;
    if !reply.ok {
        return Err(anyhow!("{}", reply.error.unwrap_or_else(|| "the daemon refused".into())));
    }
    let holds = reply.pending.unwrap_or_default();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&holds)?);
        return Ok(ExitCode::SUCCESS);
    }
    if holds.is_empty() {
        println!("no held commands");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:>4}  {:<16} {:>7}  {:>5}  {:>7}  COMMAND", "ID", "SESSION", "PID", "AGE", "TIMEOUT");
    for h in &holds {
        println!(
            "{:>4}  {:<16} {:>7}  {:>4}s  {:>6}s  {}",
            h.id,
            h.session,
            h.pid,
            h.age_secs,
            h.timeout_in_secs,
            super::tail::clean(&h.argv.join(" "))
        );
        println!("      cwd: {}", super::tail::clean(&h.cwd));
        println!("      why: {} [{}]", super::tail::clean(&h.why), h.rule);
    }
    Ok(ExitCode::SUCCESS)
}
