//! `guard launch`: run a command inside a session cgroup.
//!
//! The launcher creates (or joins) `<root>/<NAME>`, moves itself into it and execs the command,
//! so the command and everything it spawns live in the session from their first instruction,
//! whether or not the daemon is running yet. Exit statuses follow env(1) and timeout(1): the
//! command's own status (exec), 125 when guard itself fails, 126 when the command cannot be
//! run, 127 when it is not found.

use std::{
    ffi::OsString,
    io,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context;
use clap::Args;

use crate::{
    cgroup::{self, Cgroup2},
    sys::{RealSys, Sys},
};

/// Exit status when guard itself fails before the command runs.
const EXIT_GUARD_FAILED: u8 = 125;
/// The command exists but cannot be executed.
const EXIT_CANNOT_EXEC: u8 = 126;
/// The command was not found (as in a shell).
const EXIT_NOT_FOUND: u8 = 127;

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  guard launch -- claude\n  guard launch --session ci-42 -- npm test\n\n\
                  Exit status: the command's own; 125 if guard failed, 126 if the command could not be run, 127 if it was not found.")]
pub struct LaunchArgs {
    /// Session name: 1-64 characters of A-Z a-z 0-9 . _ - (default: s-<pid>, a new session).
    /// An existing session of that name is joined.
    #[arg(long, short = 's', value_name = "NAME")]
    pub session: Option<String>,
    /// Cgroup under which sessions live (default: <cgroup2 mount>/guard). A relative path is
    /// taken below the cgroup2 mount.
    #[arg(long, value_name = "PATH")]
    pub root: Option<PathBuf>,
    /// The command to run and its arguments (put `--` before it if it has options).
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

pub fn main(args: LaunchArgs) -> anyhow::Result<ExitCode> {
    Ok(launch(&RealSys, &args, &mut io::stderr()))
}

/// Where the launcher put itself.
#[derive(Debug, PartialEq, Eq)]
struct Placed {
    name: String,
    path: PathBuf,
    id: u64,
    created: bool,
}

/// Everything up to the exec: find cgroup2, create the root and session, join it.
fn place(sys: &dyn Sys, args: &LaunchArgs) -> anyhow::Result<Placed> {
    // Validate the name before touching the system.
    if let Some(name) = &args.session {
        cgroup::validate_session_name(name)?;
    }
    let cg = Cgroup2::discover(sys)?;
    let root = match &args.root {
        Some(root) => cg.resolve_root(root)?,
        None => cg.default_root(),
    };
    cg.ensure_root(sys, &root)?;
    let pid = sys.getpid();
    let (name, path, created) = match &args.session {
        Some(name) => {
            let (path, created) = cgroup::create_session(sys, &root, name)?;
            (name.clone(), path, created)
        }
        None => {
            let (name, path) = cgroup::create_fresh_session(sys, &root, &format!("s-{pid}"))?;
            (name, path, true)
        }
    };
    // The workspace first: the daemon may see the session's first event right after the join.
    // Best effort: a cgroupfs without xattr support leaves the daemon to read /proc instead.
    if let Ok(dir) = sys.current_dir()
        && let Err(err) = cgroup::record_workspace(sys, &path, &dir)
    {
        log::debug!("recording the workspace of session {name}: {err}");
    }
    cgroup::join(sys, &path, pid).with_context(|| format!("joining session {name}"))?;
    let id = cgroup::cgroup_id(sys, &path)?;
    Ok(Placed { name, path, id, created })
}

fn display_command(program: &OsString) -> String {
    Path::new(program).display().to_string()
}

/// Places the process and execs the command; returns only when that fails.
fn launch(sys: &dyn Sys, args: &LaunchArgs, stderr: &mut dyn io::Write) -> ExitCode {
    // clap requires a command, but the library path must not trust that.
    let Some((program, rest)) = args.command.split_first() else {
        let _ =
            writeln!(stderr, "guard launch: no command given (usage: guard launch [--session NAME] -- CMD [ARGS...])");
        return ExitCode::from(EXIT_GUARD_FAILED);
    };
    if program.is_empty() {
        let _ = writeln!(stderr, "guard launch: empty command name");
        return ExitCode::from(EXIT_GUARD_FAILED);
    }
    let placed = match place(sys, args) {
        Ok(placed) => placed,
        Err(err) => {
            let _ = writeln!(stderr, "guard launch: {err:#}");
            return ExitCode::from(EXIT_GUARD_FAILED);
        }
    };
    let verb = if placed.created { "session" } else { "joined session" };
    let _ = writeln!(stderr, "guard: {verb} {} ({}, cgroup id {})", placed.name, placed.path.display(), placed.id);

    let err = sys.exec(program, rest);
    let (code, what) = match err.kind() {
        io::ErrorKind::NotFound => (EXIT_NOT_FOUND, String::from("command not found")),
        io::ErrorKind::PermissionDenied => (EXIT_CANNOT_EXEC, format!("{err}")),
        _ => (EXIT_CANNOT_EXEC, format!("cannot execute: {err}")),
    };
    let _ = writeln!(stderr, "guard launch: {}: {what}", display_command(program));
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::{
        cli::{Cli, Command},
        sys::{FakeOp, FakeSys},
    };

    fn parse(argv: &[&str]) -> LaunchArgs {
        let cli = Cli::try_parse_from(std::iter::once("guard").chain(argv.iter().copied())).unwrap();
        match cli.command {
            Command::Launch(args) => args,
            other => panic!("parsed as {other:?}"),
        }
    }

    fn run(sys: &FakeSys, argv: &[&str]) -> (ExitCode, String) {
        let mut err = Vec::new();
        let code = launch(sys, &parse(argv), &mut err);
        (code, String::from_utf8(err).unwrap())
    }

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn parses_commands_with_and_without_double_dash() {
        let args = parse(&["launch", "--session", "x", "--", "ls", "-l", "--session"]);
        assert_eq!(args.session.as_deref(), Some("x"));
        assert_eq!(args.command, os(&["ls", "-l", "--session"]));
        let args = parse(&["launch", "bash", "-c", "true"]);
        assert_eq!(args.command, os(&["bash", "-c", "true"]));
        assert!(Cli::try_parse_from(["guard", "launch"]).is_err());
        assert!(Cli::try_parse_from(["guard", "launch", "--"]).is_err());
    }

    #[test]
    fn default_session_is_fresh_and_named_after_the_pid() {
        let sys = FakeSys::with_cgroup2("/sys/fs/cgroup/unified");
        sys.set_pid(321);
        let (code, err) = run(&sys, &["launch", "--", "agent", "--flag"]);
        assert_eq!(code, ExitCode::from(EXIT_CANNOT_EXEC), "the fake exec fails: {err}");
        assert!(err.contains("guard: session s-321 (/sys/fs/cgroup/unified/guard/s-321, cgroup id "), "{err}");
        assert_eq!(sys.file("/sys/fs/cgroup/unified/guard/s-321/cgroup.procs").as_deref(), Some("321\n"));
        assert_eq!(sys.execs(), vec![(OsString::from("agent"), os(&["--flag"]))]);

        // Same pid again (reuse): a new cgroup, not the old one.
        let (_, err) = run(&sys, &["launch", "--", "agent"]);
        assert!(err.contains("session s-321-1 "), "{err}");
        assert_eq!(sys.file("/sys/fs/cgroup/unified/guard/s-321/cgroup.procs").as_deref(), Some(""));
    }

    #[test]
    fn named_session_is_joined_and_root_may_be_relative() {
        let sys = FakeSys::with_cgroup2("/cg");
        sys.set_pid(5);
        run(&sys, &["launch", "--session", "ci", "--root", "agents/team", "--", "true"]);
        assert_eq!(sys.file("/cg/agents/team/ci/cgroup.procs").as_deref(), Some("5\n"));
        sys.set_pid(6);
        let (_, err) = run(&sys, &["launch", "-s", "ci", "--root", "/cg/agents/team", "--", "true"]);
        assert!(err.contains("guard: joined session ci"), "{err}");
        assert_eq!(sys.file("/cg/agents/team/ci/cgroup.procs").as_deref(), Some("5\n6\n"));
    }

    #[test]
    fn command_not_found_exits_127() {
        let sys = FakeSys::with_cgroup2("/cg");
        sys.set_exec_errno(libc::ENOENT);
        let (code, err) = run(&sys, &["launch", "--", "no-such-cmd"]);
        assert_eq!(code, ExitCode::from(EXIT_NOT_FOUND));
        assert!(err.contains("guard launch: no-such-cmd: command not found"), "{err}");
        sys.set_exec_errno(libc::EACCES);
        let (code, _) = run(&sys, &["launch", "--", "./not-executable"]);
        assert_eq!(code, ExitCode::from(EXIT_CANNOT_EXEC));
    }

    #[test]
    fn failures_before_exec_are_explained_and_nothing_is_executed() {
        // No cgroup2 at all.
        let sys = FakeSys::new();
        sys.set_mountinfo("32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n");
        let (code, err) = run(&sys, &["launch", "--", "true"]);
        assert_eq!(code, ExitCode::from(EXIT_GUARD_FAILED));
        assert_eq!(err.trim(), "guard launch: no cgroup2 mount found in /proc/self/mountinfo");

        // Not root.
        let sys = FakeSys::with_cgroup2("/cg");
        sys.fail(FakeOp::Mkdir, "/cg/guard", libc::EACCES);
        let (code, err) = run(&sys, &["launch", "--", "true"]);
        assert_eq!(code, ExitCode::from(EXIT_GUARD_FAILED));
        assert!(err.contains("run as root"), "{err}");

        // Joining refused (e.g. EPERM from cgroup.procs).
        let sys = FakeSys::with_cgroup2("/cg");
        sys.add_dir("/cg/guard/x");
        sys.add_file("/cg/guard/x/cgroup.procs", "");
        sys.fail(FakeOp::Write, "/cg/guard/x/cgroup.procs", libc::EPERM);
        let (_, err) = run(&sys, &["launch", "-s", "x", "--", "true"]);
        assert!(err.contains("joining session x") && err.contains("run as root"), "{err}");

        // Bad name: refused before anything is created.
        let sys = FakeSys::with_cgroup2("/cg");
        let (code, err) = run(&sys, &["launch", "--session", "../etc", "--", "true"]);
        assert_eq!(code, ExitCode::from(EXIT_GUARD_FAILED));
        assert!(err.contains("invalid session name \"../etc\""), "{err}");
        assert!(!sys.exists("/cg/guard"));

        // Root outside the cgroup2 mount.
        let (_, err) = run(&sys, &["launch", "--root", "/tmp", "--", "true"]);
        assert!(err.contains("not a directory inside the cgroup2 mount /cg"), "{err}");

        // Empty command name.
        let (code, err) = run(&sys, &["launch", "--", ""]);
        assert_eq!(code, ExitCode::from(EXIT_GUARD_FAILED));
        assert!(err.contains("empty command"), "{err}");
        assert!(sys.execs().is_empty());
    }
}
