//! The `guard` command line: one module per subcommand.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod assets;
pub mod audit;
pub mod decide;
pub mod exposure;
pub mod launch;
pub mod pending;
pub mod policy;
pub mod reopen;
pub mod run;
pub mod status;
pub mod stop;
pub mod tail;

/// Default location of the audit stream.
pub const DEFAULT_AUDIT_PATH: &str = "/var/log/guard/audit.jsonl";
/// Default control socket of a running daemon.
pub const DEFAULT_SOCKET_PATH: &str = "/run/guard/control.sock";

#[derive(Debug, Parser)]
#[command(
    name = "guard",
    version,
    about = "Keeps AI coding agents from doing irreversible damage, enforced in the kernel"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground.
    Run(run::RunArgs),
    /// Run a command inside an agent session (a cgroup under guard's root).
    Launch(launch::LaunchArgs),
    /// Show enforcement tiers, sessions and counters of the running daemon.
    Status(status::StatusArgs),
    /// Follow the audit stream.
    Tail(tail::TailArgs),
    /// Work with audit files (verify their hash chain).
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Make the daemon reopen its audit file (after an external logrotate moved it).
    Reopen(reopen::ReopenArgs),
    /// Work with policy files.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// List commands held for a person's decision.
    Pending(pending::PendingArgs),
    /// Let a held command run.
    Approve(decide::DecideArgs),
    /// Kill a held command before it runs.
    Deny(decide::DecideArgs),
    /// Stop the daemon cleanly (root): detach everything, or keep it pinned for an upgrade.
    Stop(stop::StopArgs),
    /// Audit credential exposure: what a user or session can read, and what protects it.
    Exposure(exposure::ExposureArgs),
    /// Write the man pages and shell completions (for packaging: `cargo xtask dist`).
    #[command(hide = true)]
    GenerateAssets(assets::AssetsArgs),
}

pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run::main(args),
        Command::Launch(args) => launch::main(args),
        Command::Status(args) => status::main(args),
        Command::Tail(args) => tail::main(args),
        Command::Audit(cmd) => audit::main(cmd),
        Command::Reopen(args) => reopen::main(args),
        Command::Policy(cmd) => policy::main(cmd),
        Command::Pending(args) => pending::main(args),
        Command::Approve(args) => decide::approve(args),
        Command::Deny(args) => decide::deny(args),
        Command::Stop(args) => stop::main(args),
        Command::Exposure(args) => exposure::main(args),
        Command::GenerateAssets(args) => assets::main(args),
    }
}
