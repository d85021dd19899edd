//! `guard exposure`: which credentials a user, or an agent session, can read, and whether the
//! policy protects each one. Needs no running daemon: the policy is read as `guard run` reads
//! it (`--policy FILE`, else the built-in default).
//!
//! Exit status: 0 when everything readable is protected by an enforcing rule, 1 when a
//! readable finding is not (so CI can gate on it), 2 on usage and I/O errors.

use std::{
    io::{self, Write as _},
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context as _, anyhow, bail};
use clap::Args;
use guard_engine::{
    exposure::{EXIT_ERROR, Report, access::Identity, render},
    policy::{CompileContext, default_policy},
};
use uzers::os::unix::UserExt as _;

use crate::{
    cgroup::{self, Cgroup2},
    exposure_scan::{Limits, Scanner},
    sys::RealSys,
};

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  guard exposure\n  sudo guard exposure --user dev --json\n  \
                  sudo guard exposure --session ci-42\n\n\
                  Exit status: 0 when everything readable is protected, 1 when a readable credential is not, \
                  2 on errors. Secret values are never printed, only their kind and a fingerprint.")]
pub struct ExposureArgs {
    /// Judge what this user can read (default: the user running guard). Run as root to scan
    /// files the user can read but you cannot.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Also scan this session's workspace and its processes' environments.
    #[arg(long, short = 's', value_name = "NAME")]
    pub session: Option<String>,
    /// Policy file (YAML), as for `guard run`; default: the built-in policy.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The home directory to scan instead of the user's own (`~/` in the policy means it).
    #[arg(long, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Cgroup under which sessions live (default: <cgroup2 mount>/guard, then the policy's
    /// cgroup roots), as for `guard launch`.
    #[arg(long, value_name = "PATH")]
    pub root: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn main(args: ExposureArgs) -> anyhow::Result<ExitCode> {
    match report(&args) {
        Ok(report) => {
            let mut text = if args.json { render::json(&report) } else { render::human(&report) };
            if !text.ends_with('\n') {
                text.push('\n');
            }
            match io::stdout().lock().write_all(text.as_bytes()) {
                Ok(()) => Ok(ExitCode::from(report.exit_status())),
                Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::from(report.exit_status())),
                Err(err) => {
                    eprintln!("guard exposure: error: writing the report: {err}");
                    Ok(ExitCode::from(EXIT_ERROR))
                }
            }
        }
        Err(err) => {
            eprintln!("guard exposure: error: {err:#}");
            Ok(ExitCode::from(EXIT_ERROR))
        }
    }
}

/// The user judged: name, identity, home.
struct Target {
    name: String,
    identity: Identity,
    home: PathBuf,
}

fn target(args: &ExposureArgs) -> anyhow::Result<Target> {
    let user = match &args.user {
        Some(name) => uzers::get_user_by_name(name).ok_or_else(|| anyhow!("--user {name}: no such user"))?,
        None => {
            let uid = uzers::get_current_uid();
            uzers::get_user_by_uid(uid).ok_or_else(|| anyhow!("the current uid {uid} has no passwd entry"))?
        }
    };
    let name = user.name().to_string_lossy().into_owned();
    let mut gids: Vec<u32> = uzers::get_user_groups(user.name(), user.primary_group_id())
        .map(|groups| groups.iter().map(uzers::Group::gid).collect())
        .unwrap_or_default();
    if !gids.contains(&user.primary_group_id()) {
        gids.push(user.primary_group_id());
    }
    let home = args.home.clone().unwrap_or_else(|| user.home_dir().to_path_buf());
    let home = std::fs::canonicalize(&home).with_context(|| {
        let flag = if args.home.is_some() { "--home" } else { "the user's home directory" };
        format!("{flag} {}", home.display())
    })?;
    if !home.is_dir() {
        bail!("home {} is not a directory", home.display());
    }
    Ok(Target { name, identity: Identity { uid: user.uid(), gids }, home })
}

/// The session cgroup named `name` under `--root`, else under guard's default root and the
/// policy's cgroup roots.
fn session_cgroup(args: &ExposureArgs, name: &str, policy_roots: &[String]) -> anyhow::Result<PathBuf> {
    cgroup::validate_session_name(name).with_context(|| format!("--session {name}"))?;
    let cgroup2 = Cgroup2::discover(&RealSys).context("finding the cgroup2 mount")?;
    let roots: Vec<PathBuf> = match &args.root {
        Some(root) => vec![cgroup2.resolve_root(root).with_context(|| format!("--root {}", root.display()))?],
        None => std::iter::once(Ok(cgroup2.default_root()))
            .chain(policy_roots.iter().map(|root| cgroup2.resolve_root(Path::new(root))))
            .collect::<Result<_, _>>()
            .context("the policy's cgroup roots")?,
    };
    roots
        .iter()
        .map(|root| root.join(name))
        .find(|path| path.is_dir())
        .ok_or_else(|| anyhow!("--session {name}: no such session under {}", display_roots(&roots)))
}

fn display_roots(roots: &[PathBuf]) -> String {
    roots.iter().map(|root| root.display().to_string()).collect::<Vec<_>>().join(", ")
}

fn report(args: &ExposureArgs) -> anyhow::Result<Report> {
    let target = target(args)?;
    let (source, policy) = match &args.policy {
        Some(path) => (path.display().to_string(), crate::policy_load::parse_file(path)?),
        None => ("builtin".to_string(), default_policy()),
    };
    let home_text = target.home.to_string_lossy().into_owned();
    let compiled = policy.compile(&CompileContext::with_homes(vec![home_text.clone()]));
    let mut scanner = Scanner::new(&compiled, target.identity.clone(), Limits::default())?;
    scanner.policy_paths(&compiled)?;
    scanner.home(&target.home);
    let mut workspace = None;
    let mut notes = Vec::new();
    if let Some(name) = &args.session {
        let path = session_cgroup(args, name, &compiled.cgroup_roots)?;
        let pids = cgroup::subtree_processes(&RealSys, &path).with_context(|| format!("session {name}"))?;
        match cgroup::workspace(&RealSys, &path) {
            Some(dir) if dir.is_dir() => {
                scanner.workspace(&dir);
                workspace = Some(dir.display().to_string());
            }
            Some(dir) => notes.push(format!("the session's workspace {} is gone; not scanned", dir.display())),
            None => notes.push("the session records no workspace (launched by an older guard?); not scanned".into()),
        }
        scanner.environments(&pids);
        notes.push(format!("session {name}: {} process(es) at {}", pids.len(), path.display()));
    }
    let (findings, mut scan_notes) = scanner.finish();
    scan_notes.append(&mut notes);
    scan_notes.push(
        "readable means by mode bits and ownership; POSIX ACLs, capabilities other than root's and LSMs are not \
         evaluated"
            .into(),
    );
    scan_notes.push(
        "credential names (such as .env) are matched only in the home and the session's workspace, not across \
         the whole disk"
            .into(),
    );
    Ok(Report::new(
        target.name,
        target.identity.uid,
        home_text,
        args.session.clone(),
        workspace,
        source,
        findings,
        scan_notes,
    ))
}
