//! `guard reopen`: the daemon opens its audit path again, for an external logrotate that moved
//! the file away (the same as SIGUSR1). The chain goes on into the new file.

use std::{path::PathBuf, process::ExitCode};

use anyhow::anyhow;
use clap::Args;
use guard_engine::control::Request;

use crate::control;

#[derive(Debug, Args)]
pub struct ReopenArgs {
    /// Control socket of the daemon.
    #[arg(long, value_name = "PATH", default_value = super::DEFAULT_SOCKET_PATH)]
    pub socket: PathBuf,
}

pub fn main(args: ReopenArgs) -> anyhow::Result<ExitCode> {
    let reply = control::request(&args.socket, &Request::Reopen)?;
    if !reply.ok {
        return Err(anyhow!("{}", reply.error.unwrap_or_else(|| "the daemon refused".into())));
    }
    println!("{}", reply.message.unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}
