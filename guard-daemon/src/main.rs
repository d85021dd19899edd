//! `guard`: keeps AI coding agents from doing irreversible damage, enforced in the kernel.
//!
//! One file per subcommand under `cli/`; the daemon's kernel glue lives beside it.

mod audit_down;
mod audit_fanout;
mod audit_sink;
mod cgroup;
mod cli;
mod confine;
mod consumers;
mod control;
mod daemon;
mod dns;
mod exposure_scan;
mod held_files;
mod hold;
mod kernel;
mod metrics;
mod policy_load;
mod procs;
mod scan;
mod service;
mod sys;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    match cli::dispatch(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("guard: error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
