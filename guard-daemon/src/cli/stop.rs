//! `guard stop`: the operator's clean stop.

use std::{path::PathBuf, process::ExitCode};

use anyhow::anyhow;
use clap::Args;
use guard_engine::control::Request;

use crate::control;

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Leave the programs and maps pinned: enforcement goes on without a daemon (held execs
    /// are killed instead of judged) until the next `guard run` adopts them. For upgrades.
    #[arg(long)]
    pub keep_pins: bool,
    /// Control socket of the daemon.
    #[arg(long, value_name = "PATH", default_value = super::DEFAULT_SOCKET_PATH)]
    pub socket: PathBuf,
}

pub fn main(args: StopArgs) -> anyhow::Result<ExitCode> {
    let reply = control::request(&args.socket, &Request::Stop { keep_pins: args.keep_pins })?;
    if !reply.ok {
        return Err(anyhow!("{}", reply.error.unwrap_or_else(|| "the daemon refused".into())));
    }
    println!("{}", reply.message.unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}
