//! `guard approve ID` and `guard deny ID`: a person's decision on a held command.

use std::{path::PathBuf, process::ExitCode};

use anyhow::anyhow;
use clap::Args;
use guard_engine::control::Request;

use crate::control;

#[derive(Debug, Args)]
pub struct DecideArgs {
    /// The hold's id, as `guard pending` lists it.
    pub id: u64,
    /// Control socket of the daemon.
    #[arg(long, value_name = "PATH", default_value = super::DEFAULT_SOCKET_PATH)]
    pub socket: PathBuf,
}

pub fn approve(args: DecideArgs) -> anyhow::Result<ExitCode> {
    send(&args.socket, Request::Approve { id: args.id })
}

pub fn deny(args: DecideArgs) -> anyhow::Result<ExitCode> {
    send(&args.socket, Request::Deny { id: args.id })
}

fn send(socket: &std::path::Path, request: Request) -> anyhow::Result<ExitCode> {
    let reply = control::request(socket, &request)?;
    if !reply.ok {
        return Err(anyhow!("{}", reply.error.unwrap_or_else(|| "the daemon refused".into())));
    }
    println!("{}", reply.message.unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}
