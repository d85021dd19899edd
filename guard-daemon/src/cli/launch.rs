//! `guard launch`: run a command inside a session cgroup.
//!
//! The launcher creates (or joins) `<root>/<NAME>`, moves itself into it and execs the command,
//! so the command and everything it spawns live in the session from their first instruction,
//! whether or not the daemon is running yet. Exit statuses follow env(1) and timeout(1): the
//! command's own status (exec), 125 when guard itself fails, 126 when the command cannot be
//! run, 127 when it is not found.
//!
//! Before the exec the launcher confines itself (and so the command and all it starts): it asks
//! the daemon for the session's rule set (`confinement` control request; the built-in default
//! policy's when no daemon answers), applies a Landlock domain and a seccomp filter after
//! joining the cgroup, and records what applied on the cgroup (`trusted.guard.confinement`).

use std::{
    ffi::OsString,
    io,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context;
use clap::Args;
use guard_engine::{
    audit::RecordLevel,
    confinement::{AppliedConfinement, Confinement},
    control::Request,
    lifecycle::Created,
    policy::{CompileContext, default_policy},
};

use crate::{
    cgroup::{self, Cgroup2},
    confine, control,
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
    /// Control socket of the daemon, asked for the session's confinement.
    #[arg(long, value_name = "PATH", default_value = super::DEFAULT_SOCKET_PATH)]
    pub socket: PathBuf,
    /// Apply no Landlock domain and no seccomp filter (benchmark baselines, debugging). The
    /// session is recorded as unconfined.
    #[arg(long)]
    pub unconfined: bool,
    /// This session's record level (decisions, writes or all), instead of the policy's: the
    /// daemon sets it in the kernel before the command starts. Root only.
    #[arg(long, value_name = "LEVEL", value_parser = super::run::parse_record_level)]
    pub record: Option<RecordLevel>,
    /// The command to run and its arguments (put `--` before it if it has options).
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

pub fn main(args: LaunchArgs) -> anyhow::Result<ExitCode> {
    Ok(launch(&RealSys, &RealConfiner, &args, &mut io::stderr()))
}

/// How the launcher gets and applies its confinement; faked in the unit tests (applying it
/// for real would confine the test process).
pub trait Confiner {
    /// The daemon's answer to the `confinement` request.
    fn ask(&self, socket: &Path, cwd: Option<&Path>) -> anyhow::Result<Confinement>;
    /// Prepare outside the session (opens the write roots: no session event yet); the returned
    /// closure applies it after the join.
    fn prepare(&self, plan: &Confinement, source: &str) -> anyhow::Result<PreparedConfinement>;
    /// Ask the daemon to record the session cgroup `cgroup` at `level`.
    fn set_record(&self, socket: &Path, cgroup: &Path, level: RecordLevel) -> anyhow::Result<()>;
}

/// A prepared confinement: notes for the person, and the step that applies it.
pub struct PreparedConfinement {
    pub notes: Vec<String>,
    pub apply: Box<dyn FnOnce() -> anyhow::Result<AppliedConfinement>>,
}

pub struct RealConfiner;

impl Confiner for RealConfiner {
    fn ask(&self, socket: &Path, cwd: Option<&Path>) -> anyhow::Result<Confinement> {
        let cwd = cwd.map(|dir| dir.display().to_string());
        let reply = control::request(socket, &Request::Confinement { cwd })?;
        if !reply.ok {
            anyhow::bail!("the daemon refused: {}", reply.error.as_deref().unwrap_or("no reason given"));
        }
        reply.confinement.context("the daemon's reply has no confinement (an older daemon?)")
    }

    fn prepare(&self, plan: &Confinement, source: &str) -> anyhow::Result<PreparedConfinement> {
        let prepared = confine::prepare(plan, source)?;
        let notes = prepared.notes.clone();
        Ok(PreparedConfinement { notes, apply: Box::new(move || prepared.apply()) })
    }

    fn set_record(&self, socket: &Path, cgroup: &Path, level: RecordLevel) -> anyhow::Result<()> {
        let request = Request::Record { cgroup: cgroup.display().to_string(), level };
        let reply = control::request(socket, &request)?;
        if !reply.ok {
            anyhow::bail!("the daemon refused: {}", reply.error.as_deref().unwrap_or("no reason given"));
        }
        Ok(())
    }
}

/// The rule set to apply: the daemon's, else the built-in default policy's (with a warning):
/// a launcher that cannot reach the daemon still confines, it never runs the command bare.
fn plan(
    confiner: &dyn Confiner,
    sys: &dyn Sys,
    args: &LaunchArgs,
    stderr: &mut dyn io::Write,
) -> (Confinement, &'static str) {
    let cwd = sys.current_dir().ok();
    match confiner.ask(&args.socket, cwd.as_deref()) {
        Ok(plan) => (plan, "daemon"),
        Err(err) => {
            let _ = writeln!(
                stderr,
                "guard launch: warning: no confinement from the daemon ({err:#}); applying the built-in default policy's"
            );
            // The default policy monitors files, so no home expansion is needed for its roots.
            let compiled = default_policy().compile(&CompileContext::default());
            let cwd = cwd.map(|dir| dir.display().to_string());
            (compiled.session_confinement(cwd.as_deref(), true), "default policy")
        }
    }
}

/// Where the launcher put itself.
#[derive(Debug, PartialEq, Eq)]
struct Placed {
    name: String,
    path: PathBuf,
    id: u64,
    created: bool,
}

/// The session cgroup, created or found, not joined yet.
struct Target {
    name: String,
    path: PathBuf,
    created: bool,
    /// No `--session`: a fresh `s-<pid>` session, removed once it ends.
    fresh: bool,
}

/// Find cgroup2, create the root and the session, record the workspace: all from outside the
/// session, so none of it is a session event.
fn target(sys: &dyn Sys, args: &LaunchArgs) -> anyhow::Result<Target> {
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
    Ok(Target { name, path, created, fresh: args.session.is_none() })
}

/// Move the launcher into the session.
fn join(sys: &dyn Sys, target: Target) -> anyhow::Result<Placed> {
    let Target { name, path, mut created, fresh } = target;
    let pid = sys.getpid();
    match cgroup::join(sys, &path, pid) {
        // The daemon removed the ended session between finding it and joining: make it anew.
        Err(err) if !created && err.io_kind() == Some(std::io::ErrorKind::NotFound) => {
            sys.mkdir(&path).with_context(|| format!("re-creating session {name}"))?;
            created = true;
            cgroup::join(sys, &path, pid)
        }
        joined => joined,
    }
    .with_context(|| format!("joining session {name}"))?;
    // Marked once populated (by this launcher), so the daemon never takes it for ended before
    // its first process is in. Without the mark the session is only never cleaned up.
    let how = if fresh { Created::Fresh } else { Created::Named };
    if created && let Err(err) = cgroup::mark_created(sys, &path, how, pid) {
        log::warn!("marking session {name} as guard's: {err} (it will not be removed when it ends)");
    }
    let id = cgroup::cgroup_id(sys, &path)?;
    Ok(Placed { name, path, id, created })
}

fn display_command(program: &OsString) -> String {
    Path::new(program).display().to_string()
}

/// Places the process, confines it and execs the command; returns only when that fails.
fn launch(sys: &dyn Sys, confiner: &dyn Confiner, args: &LaunchArgs, stderr: &mut dyn io::Write) -> ExitCode {
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
    let target = match target(sys, args) {
        Ok(target) => target,
        Err(err) => {
            let _ = writeln!(stderr, "guard launch: {err:#}");
            return ExitCode::from(EXIT_GUARD_FAILED);
        }
    };
    // Everything that opens files or sockets happens before the join, so the daemon's first
    // sight of the session already finds the confinement recorded.
    let prepared = if args.unconfined {
        None
    } else {
        let (plan, source) = plan(confiner, sys, args, stderr);
        match confiner.prepare(&plan, source) {
            Ok(prepared) => {
                for note in &prepared.notes {
                    let _ = writeln!(stderr, "guard launch: note: {note}");
                }
                Some(prepared)
            }
            Err(err) => {
                let _ = writeln!(stderr, "guard launch: preparing the confinement: {err:#}");
                return ExitCode::from(EXIT_GUARD_FAILED);
            }
        }
    };
    // Before the join: the daemon refuses this request from a session's process.
    if let Some(level) = args.record
        && let Err(err) = confiner.set_record(&args.socket, &target.path, level)
    {
        let _ = writeln!(stderr, "guard launch: --record {}: {err:#}; not running the command", level.as_str());
        return ExitCode::from(EXIT_GUARD_FAILED);
    }
    let placed = match join(sys, target) {
        Ok(placed) => placed,
        Err(err) => {
            let _ = writeln!(stderr, "guard launch: {err:#}");
            return ExitCode::from(EXIT_GUARD_FAILED);
        }
    };
    let verb = if placed.created { "session" } else { "joined session" };
    let _ = writeln!(stderr, "guard: {verb} {} ({}, cgroup id {})", placed.name, placed.path.display(), placed.id);
    let applied = match prepared {
        None => AppliedConfinement::unconfined(),
        Some(prepared) => match (prepared.apply)() {
            Ok(applied) => applied,
            Err(err) => {
                // Fail closed: the command never runs without the boundary it was promised.
                let _ = writeln!(stderr, "guard launch: {err:#}; not running the command");
                return ExitCode::from(EXIT_GUARD_FAILED);
            }
        },
    };
    // Informational (the kernel enforces whatever this says); best effort like the workspace.
    if let Err(err) = cgroup::record_confinement(sys, &placed.path, &applied) {
        log::debug!("recording the confinement of session {}: {err}", placed.name);
    }
    let _ = writeln!(stderr, "guard: confined: {}", applied.summary());

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

    /// Records what it was asked to apply; never restricts the test process.
    #[derive(Default)]
    struct FakeConfiner {
        daemon: Option<Confinement>,
        plans: std::cell::RefCell<Vec<(Confinement, String)>>,
        fail_apply: bool,
    }

    impl Confiner for FakeConfiner {
        fn ask(&self, socket: &Path, _cwd: Option<&Path>) -> anyhow::Result<Confinement> {
            self.daemon.clone().ok_or_else(|| anyhow::anyhow!("no guard daemon answering on {}", socket.display()))
        }

        fn set_record(&self, _socket: &Path, _cgroup: &Path, _level: RecordLevel) -> anyhow::Result<()> {
            Ok(())
        }

        fn prepare(&self, plan: &Confinement, source: &str) -> anyhow::Result<PreparedConfinement> {
            self.plans.borrow_mut().push((plan.clone(), source.to_string()));
            let fail = self.fail_apply;
            let applied = AppliedConfinement {
                source: source.to_string(),
                seccomp: plan.seccomp_deny.clone(),
                ..Default::default()
            };
            Ok(PreparedConfinement {
                notes: vec![],
                apply: Box::new(
                    move || if fail { anyhow::bail!("landlock_restrict_self: EPERM") } else { Ok(applied) },
                ),
            })
        }
    }

    fn run(sys: &FakeSys, argv: &[&str]) -> (ExitCode, String) {
        run_with(sys, &FakeConfiner::default(), argv)
    }

    fn run_with(sys: &FakeSys, confiner: &FakeConfiner, argv: &[&str]) -> (ExitCode, String) {
        let mut err = Vec::new();
        let code = launch(sys, confiner, &parse(argv), &mut err);
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
    fn confinement_comes_from_the_daemon_else_the_default_policy() {
        let sys = FakeSys::with_cgroup2("/cg");
        sys.set_pid(7);
        let daemon =
            Confinement { landlock: true, write_roots: Some(vec!["/tmp".into()]), seccomp_deny: vec!["bpf".into()] };
        let confiner = FakeConfiner { daemon: Some(daemon.clone()), ..Default::default() };
        let (_, err) = run_with(&sys, &confiner, &["launch", "-s", "a", "--", "true"]);
        assert_eq!(confiner.plans.borrow().as_slice(), &[(daemon, "daemon".to_string())]);
        assert!(err.contains("guard: confined: landlock off, seccomp: 1 syscalls\n"), "{err}");
        assert!(!err.contains("warning"), "{err}");
        let recorded = cgroup::confinement(&sys, Path::new("/cg/guard/a")).unwrap();
        assert_eq!((recorded.source.as_str(), recorded.seccomp.len()), ("daemon", 1));

        // No daemon: the default policy's rule set (signals and seccomp, files not confined).
        let confiner = FakeConfiner::default();
        let (_, err) = run_with(&sys, &confiner, &["launch", "-s", "b", "--socket", "/nowhere.sock", "--", "true"]);
        assert!(
            err.contains("warning: no confinement from the daemon (no guard daemon answering on /nowhere.sock)"),
            "{err}"
        );
        let plans = confiner.plans.borrow();
        assert_eq!(plans[0].1, "default policy");
        assert!(plans[0].0.landlock && plans[0].0.write_roots.is_none() && plans[0].0.seccomp_deny.len() == 18);
        assert!(err.contains("[default policy]"), "{err}");
    }

    #[test]
    fn unconfined_applies_nothing_and_says_so() {
        let sys = FakeSys::with_cgroup2("/cg");
        let confiner = FakeConfiner::default();
        let (_, err) = run_with(&sys, &confiner, &["launch", "-s", "u", "--unconfined", "--", "true"]);
        assert!(confiner.plans.borrow().is_empty());
        assert!(err.contains("guard: confined: unconfined (guard launch --unconfined)"), "{err}");
        assert!(cgroup::confinement(&sys, Path::new("/cg/guard/u")).unwrap().unconfined);
    }

    #[test]
    fn a_confinement_that_cannot_be_applied_runs_nothing() {
        let sys = FakeSys::with_cgroup2("/cg");
        let confiner = FakeConfiner { fail_apply: true, ..Default::default() };
        let (code, err) = run_with(&sys, &confiner, &["launch", "-s", "f", "--", "true"]);
        assert_eq!(code, ExitCode::from(EXIT_GUARD_FAILED));
        assert!(err.contains("landlock_restrict_self: EPERM; not running the command"), "{err}");
        assert!(sys.execs().is_empty());
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
