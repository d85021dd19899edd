//! `guard status`: what the running daemon enforces, and how.

use std::{
    fmt::Write as _,
    io::{self, Write},
    path::PathBuf,
    process::ExitCode,
};

use anyhow::Context;
use clap::Args;
use guard_engine::control::{Request, StatusReport};

use crate::{
    cgroup::{self, Cgroup2},
    control::{self, NoDaemon},
    sys::{RealSys, Sys},
};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Control socket of the daemon.
    #[arg(long, value_name = "PATH", default_value = super::DEFAULT_SOCKET_PATH)]
    pub socket: PathBuf,
    /// Print the daemon's raw status report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn main(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let reply = match control::request(&args.socket, &Request::Status) {
        Ok(reply) => reply,
        Err(err) if err.downcast_ref::<NoDaemon>().is_some() => {
            eprintln!("guard status: {err} (is `guard run` running?)");
            if !args.json {
                print_out(&local_view(&RealSys))?;
            }
            return Ok(ExitCode::FAILURE);
        }
        Err(err) => return Err(err),
    };
    if !reply.ok {
        let error = reply.error.as_deref().unwrap_or("no reason given");
        anyhow::bail!("the daemon refused: {error}");
    }
    let report = reply.status.context("the daemon's reply has no status report")?;
    let text = if args.json {
        let mut json = serde_json::to_string_pretty(&report).context("encoding the status report")?;
        json.push('\n');
        json
    } else {
        render(&report)
    };
    print_out(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn print_out(text: &str) -> anyhow::Result<()> {
    match io::stdout().lock().write_all(text.as_bytes()) {
        // `guard status | head`: the reader left; not an error.
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}

fn uptime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s:02}s"),
        (0, _, _) => format!("{h}h {m:02}m"),
        _ => format!("{d}d {h:02}h"),
    }
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} B"),
    }
}

/// The human-readable report.
fn render(report: &StatusReport) -> String {
    let mut out = String::new();
    let mode = if report.enforce { "enforce" } else { "monitor only (enforcement switched off)" };
    let _ = writeln!(out, "guard {} (pid {}, up {})", report.version, report.pid, uptime(report.uptime_secs));
    let _ = writeln!(out, "mode:        {mode}");
    let _ = writeln!(out, "policy:      {}", report.policy_source);
    let _ = writeln!(out, "audit:       {}", report.audit_path);
    if let Some(down) = &report.audit_unwritable {
        let _ = writeln!(out, "             UNWRITABLE {down}");
    }
    for sink in &report.audit_sinks {
        let state = sink.failing.as_deref().map_or_else(|| "ok".to_string(), |error| format!("FAILING: {error}"));
        let _ = writeln!(
            out,
            "  copy to:   {} ({} sent, {} errors, {} lost) {state}",
            sink.sink, sink.sent, sink.errors, sink.dropped
        );
    }
    let _ = writeln!(out, "ring buffer: {}", bytes(report.ringbuf_bytes));
    for host in &report.dns_hosts {
        let failing = host.failing.as_deref().map_or_else(String::new, |error| format!(", LOOKUP FAILING: {error}"));
        let _ = writeln!(
            out,
            "allow host:  {} (ttl {} s, next lookup in {} s{failing})",
            host.host, host.ttl_secs, host.next_lookup_in_secs
        );
        for addr in &host.addrs {
            let grace = if addr.retiring { " (gone from DNS, in grace)" } else { "" };
            let _ = writeln!(out, "  {}  expires in {} s{grace}", addr.addr, addr.expires_in_secs);
        }
    }

    let _ = writeln!(out, "\nhooks:");
    if report.hooks.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    let width = report.hooks.iter().map(|h| h.hook.len()).max().unwrap_or(0);
    for hook in &report.hooks {
        let state = if hook.attached { "attached" } else { "NOT attached" };
        let reason = hook.reason.as_deref().map(|r| format!("  {r}")).unwrap_or_default();
        let _ = writeln!(out, "  {:<width$}  {:<4}  {state}{reason}", hook.hook, hook.tier.as_str());
    }

    let _ = writeln!(out, "\nsessions ({}):", report.sessions.len());
    render_sessions(
        &mut out,
        report.sessions.iter().map(|s| (s.name.as_str(), s.processes, s.cgroup_id, s.path.as_str())),
    );
    for session in &report.sessions {
        if let Some(trajectory) = &session.trajectory {
            let _ = writeln!(out, "  {}: {}", super::tail::clean(&session.name), super::tail::clean(trajectory));
        }
        let confinement = match &session.confinement {
            Some(applied) => applied.summary(),
            None => "not confined (not started by `guard launch`)".to_string(),
        };
        let _ = writeln!(out, "  {}: {}", super::tail::clean(&session.name), super::tail::clean(&confinement));
    }

    let c = &report.counters;
    let _ = writeln!(out, "\ncounters:");
    let _ = writeln!(out, "  events {}  dropped {}", c.events, c.dropped);
    let _ = writeln!(
        out,
        "  exec {}  open {}  connect {}  sendmsg {}  fork {}  exit {}",
        c.exec, c.open, c.connect, c.sendmsg, c.fork, c.exit
    );
    let _ =
        writeln!(out, "  denied {}  killed {}  held {}  audit records {}", c.denied, c.killed, c.held, c.audit_records);
    if c.dropped > 0 {
        let _ = writeln!(
            out,
            "  warning: {} events were dropped (ring buffer full): the audit stream is incomplete",
            c.dropped
        );
    }
    out
}

fn render_sessions<'a>(out: &mut String, sessions: impl Iterator<Item = (&'a str, u32, u64, &'a str)>) {
    let mut rows: Vec<_> = sessions.collect();
    // Live sessions first, then the ended ones not cleaned up yet (or not guard's to remove).
    rows.sort_by_key(|row| row.1 == 0);
    if rows.is_empty() {
        let _ = writeln!(out, "  (none)");
        return;
    }
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(4);
    let _ = writeln!(out, "  {:<width$}  {:>5}  {:>10}  PATH", "NAME", "PROCS", "CGROUP ID");
    for (name, procs, id, path) in rows {
        let _ = writeln!(out, "  {name:<width$}  {procs:>5}  {id:>10}  {path}");
    }
}

/// What can be seen without the daemon: the cgroup2 mount and the sessions under the default
/// root.
fn local_view(sys: &dyn Sys) -> String {
    let mut out = String::from("\nlocal view (without the daemon):\n");
    let cg = match Cgroup2::discover(sys) {
        Ok(cg) => cg,
        Err(err) => {
            let _ = writeln!(out, "  cgroup2: {err}");
            return out;
        }
    };
    let root = cg.default_root();
    let _ = writeln!(out, "  cgroup2: {}", cg.mount.display());
    let exists = sys.stat(&root).is_ok();
    let note = if exists { "" } else { " (not created yet: `guard launch` creates it)" };
    let _ = writeln!(out, "  root:    {}{note}", root.display());
    if !exists {
        return out;
    }
    match cgroup::list_sessions(sys, std::slice::from_ref(&root)) {
        Ok(sessions) => {
            let _ = writeln!(out, "\nsessions ({}):", sessions.len());
            render_sessions(
                &mut out,
                sessions.iter().map(|s| (s.name.as_str(), s.processes, s.id, s.path.to_str().unwrap_or("?"))),
            );
        }
        Err(err) => {
            let _ = writeln!(out, "  sessions: {err}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use guard_engine::control::{Counters, HookStatus, SessionStatus, Tier};

    use super::*;
    use crate::sys::FakeSys;

    #[test]
    fn live_sessions_come_first() {
        let mut out = String::new();
        let rows = [("ended-a", 0, 1, "/cg/guard/ended-a"), ("live", 2, 2, "/cg/guard/live"), ("ended-b", 0, 3, "/x")];
        render_sessions(&mut out, rows.into_iter());
        let order: Vec<&str> = out.lines().skip(1).filter_map(|l| l.split_whitespace().next()).collect();
        assert_eq!(order, ["live", "ended-a", "ended-b"], "{out}");
    }

    #[test]
    fn renders_tiers_sessions_and_counters() {
        let report = StatusReport {
            version: "0.1.0".into(),
            pid: 99,
            uptime_secs: 3725,
            policy_source: "/etc/guard/policy.yaml".into(),
            enforce: true,
            hooks: vec![
                HookStatus { hook: "exec".into(), tier: Tier::Host, attached: true, reason: Some("no BPF LSM".into()) },
                HookStatus { hook: "connect4".into(), tier: Tier::Lsm, attached: false, reason: None },
            ],
            sessions: vec![SessionStatus {
                name: "s-12".into(),
                path: "/cg/guard/s-12".into(),
                cgroup_id: 4711,
                processes: 3,
                trajectory: Some("touched a credential: escalated; chain incident at 2/3".into()),
                confinement: Some(guard_engine::confinement::AppliedConfinement::unconfined()),
            }],
            counters: Counters { events: 100, dropped: 2, exec: 5, denied: 1, ..Default::default() },
            ringbuf_bytes: 1 << 20,
            audit_path: "/var/log/guard/audit.jsonl".into(),
            audit_unwritable: None,
            audit_sinks: vec![guard_engine::control::AuditSinkStatus {
                sink: "syslog:/dev/log".into(),
                sent: 5,
                errors: 1,
                dropped: 2,
                failing: Some("connecting: No such file".into()),
            }],
            dns_hosts: vec![guard_engine::policy::dns::HostAddrStatus {
                host: "api.example.com".into(),
                ttl_secs: 30,
                next_lookup_in_secs: 12,
                addrs: vec![guard_engine::policy::dns::AddrStatus {
                    addr: "192.0.2.7".parse().unwrap(),
                    expires_in_secs: 4,
                    retiring: true,
                }],
                failing: None,
            }],
        };
        let text = render(&report);
        assert!(
            text.contains("  copy to:   syslog:/dev/log (5 sent, 1 errors, 2 lost) FAILING: connecting: No such file"),
            "{text}"
        );
        assert!(text.contains("allow host:  api.example.com (ttl 30 s, next lookup in 12 s)"), "{text}");
        assert!(text.contains("  192.0.2.7  expires in 4 s (gone from DNS, in grace)"), "{text}");
        assert!(text.contains("guard 0.1.0 (pid 99, up 1h 02m)"), "{text}");
        assert!(text.contains("mode:        enforce"), "{text}");
        assert!(text.contains("ring buffer: 1 MiB"), "{text}");
        assert!(text.contains("  exec      host  attached  no BPF LSM"), "{text}");
        assert!(text.contains("  connect4  lsm   NOT attached"), "{text}");
        assert!(text.contains("  s-12      3        4711  /cg/guard/s-12"), "{text}");
        assert!(text.contains("  s-12: unconfined (guard launch --unconfined)"), "{text}");
        assert!(text.contains("events 100  dropped 2"), "{text}");
        assert!(text.contains("warning: 2 events were dropped"), "{text}");
        let quiet = render(&StatusReport::default());
        assert!(quiet.contains("monitor only"), "{quiet}");
        assert!(!quiet.contains("warning"), "{quiet}");
    }

    #[test]
    fn local_view_lists_sessions() {
        let sys = FakeSys::with_cgroup2("/cg");
        assert!(local_view(&sys).contains("not created yet"));
        sys.mkdir(Path::new("/cg/guard")).unwrap();
        sys.mkdir(Path::new("/cg/guard/s-1")).unwrap();
        cgroup::join(&sys, Path::new("/cg/guard/s-1"), 10).unwrap();
        let text = local_view(&sys);
        assert!(text.contains("cgroup2: /cg\n"), "{text}");
        assert!(text.contains("sessions (1):"), "{text}");
        assert!(text.contains("  s-1       1"), "{text}");
        let sys = FakeSys::new();
        assert!(local_view(&sys).contains("no cgroup2 mount found"));
    }

    #[test]
    fn uptime_and_sizes() {
        assert_eq!(uptime(5), "5s");
        assert_eq!(uptime(65), "1m 05s");
        assert_eq!(uptime(90_061), "1d 01h");
        assert_eq!(bytes(256 * 1024), "256 KiB");
        assert_eq!(bytes(1000), "1000 B");
    }
}
