//! `guard run`: the daemon, in the foreground.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::Args;
use futures_util::StreamExt as _;
use guard_common::Config;
use guard_engine::{
    audit::RecordLevel,
    control::{HookStatus, StatusReport},
    engine::{Engine, EngineSettings},
};
use signal_hook::{
    consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1},
    iterator::exfiltrator::WithOrigin,
};
use signal_hook_tokio::SignalsInfo;
use tokio::io::unix::AsyncFd;

use crate::{
    audit_sink::{AuditSink, FLUSH_EVERY, Rotation},
    cgroup::{Cgroup2, SessionIndex},
    control::{ControlConfig, ControlServer},
    daemon::{Daemon, Host, RESCAN_EVERY, Shared, clock_base, ensure_mounted, now_unix_ns},
    kernel::{Kernel, btf, pins::Pins, tier},
    procs::RealProcs,
    sys::RealSys,
};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Policy file (YAML). Without it the built-in default policy applies.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Audit stream: a file (appended to, default /var/log/guard/audit.jsonl) or `-` for
    /// stdout; repeatable to add copies: `syslog[:SOCKET]` (RFC 5424, default /dev/log),
    /// `journald` (native protocol). Exactly one file or `-`.
    #[arg(long, value_name = "FILE|-|syslog[:SOCKET]|journald", value_parser = crate::audit_fanout::parse_target)]
    pub audit: Vec<crate::audit_fanout::AuditTarget>,
    /// Serve Prometheus metrics on http://ADDR/metrics (IP:PORT, e.g. 127.0.0.1:9464; off by default).
    #[arg(long, value_name = "ADDR", value_parser = crate::metrics::parse_addr)]
    pub metrics: Option<std::net::SocketAddr>,
    /// The session root: every cgroup directly below it is a session (default `<cgroup2>/guard`).
    #[arg(long, value_name = "PATH")]
    pub root: Option<PathBuf>,
    /// Extra cgroup roots to govern (beside the session root); repeatable.
    #[arg(long = "cgroup", value_name = "PATH")]
    pub cgroups: Vec<PathBuf>,
    /// Control socket for `guard status` and friends.
    #[arg(long, value_name = "PATH", default_value = super::DEFAULT_SOCKET_PATH)]
    pub socket: PathBuf,
    /// Also let this group (numeric gid) use the control socket (approve, deny, status);
    /// otherwise root only.
    #[arg(long, value_name = "GID")]
    pub socket_group: Option<u32>,
    /// Where maps and links are pinned, so enforcement outlives the daemon (default
    /// `/sys/fs/bpf/<session root's name>`). A daemon started on the same directory adopts
    /// what an earlier one left.
    #[arg(long, value_name = "DIR")]
    pub pin_dir: Option<PathBuf>,
    /// How much the audit stream records: decisions, writes or all (overrides the policy's
    /// `audit.record`, across reloads).
    #[arg(long, value_name = "LEVEL", value_parser = parse_record_level)]
    pub record: Option<RecordLevel>,
    /// Seconds an address that vanished from an allow-list host's DNS answer stays allowed
    /// (connections in flight are not cut). Hosts are re-resolved when their TTL runs out
    /// (clamped to 5 s..1 h).
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub dns_grace: u64,
}

pub(crate) fn parse_record_level(text: &str) -> Result<RecordLevel, String> {
    RecordLevel::parse(text).ok_or_else(|| {
        let known: Vec<&str> = RecordLevel::ALL.iter().map(|level| level.as_str()).collect();
        format!("unknown record level {text:?}: expected one of {}", known.join(", "))
    })
}

/// Kernel events handled before the audit stream is flushed and the loop looks at its other
/// inputs (timers, signals, control requests) again.
const MAX_BATCH: usize = 1024;

/// A fresh key per daemon run: fingerprints mean nothing outside it.
fn fingerprint_key() -> anyhow::Result<[u8; 32]> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|err| anyhow::anyhow!("reading random bytes for the fingerprint key: {err}"))?;
    Ok(key)
}

pub fn main(args: RunArgs) -> anyhow::Result<ExitCode> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("guard run must run as root (it loads BPF programs and manages cgroups)");
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    crate::dns::set_grace(Duration::from_secs(args.dns_grace));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(args))
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    // Handlers first: a SIGHUP or SIGTERM arriving during start-up must not take the default
    // action (terminate) once anything is attached, or after the `start` record is out. The
    // sender is kept: a session process's signals are ignored (and recorded).
    let mut signals =
        SignalsInfo::<WithOrigin>::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1]).context("installing signal handlers")?;
    ensure_mounted("tracefs", "/sys/kernel/tracing")?;
    ensure_mounted("bpf", "/sys/fs/bpf")?;
    // securityfs only serves the tier probe; its absence just means "no lsm tier".
    if let Err(err) = ensure_mounted("securityfs", "/sys/kernel/security") {
        log::warn!("{err:#}");
    }
    // The policy first: an invalid one must leave the machine exactly as it was.
    let policy = crate::policy_load::load(args.policy.as_deref(), Some(&args.socket))?;
    // So are a bad --audit list and a taken metrics port.
    let (audit_path, copy_targets) =
        crate::audit_fanout::split_targets(&args.audit, Path::new(super::DEFAULT_AUDIT_PATH))
            .map_err(anyhow::Error::msg)?;
    let metrics_listener = args.metrics.map(crate::metrics::bind).transpose()?;
    let cgroup2 = Cgroup2::discover(&RealSys).context("finding the cgroup2 mount")?;
    let default_root = match &args.root {
        Some(root) => cgroup2.resolve_root(root).with_context(|| format!("--root {}", root.display()))?,
        None => cgroup2.default_root(),
    };
    cgroup2.ensure_root(&RealSys, &default_root).context("creating the session root")?;
    let mut roots = vec![default_root];
    for extra in &args.cgroups {
        let root = cgroup2.resolve_root(extra).with_context(|| format!("--cgroup {}", extra.display()))?;
        if !roots.contains(&root) {
            roots.push(root);
        }
    }

    for root in &policy.compiled.cgroup_roots {
        let root = cgroup2.resolve_root(Path::new(root)).with_context(|| format!("policy cgroup root {root}"))?;
        if !roots.contains(&root) {
            roots.push(root);
        }
    }

    // Pods as sessions: the kubelet root and its QoS cgroups are roots (see kubernetes_roots).
    let kube_roots = kubernetes_roots(&cgroup2, &policy.compiled)?;
    for root in &kube_roots {
        if !roots.contains(root) {
            roots.push(root.clone());
        }
    }

    let offsets = btf::kernel_offsets(btf::VMLINUX_BTF).context("reading kernel structure offsets")?;
    let pin_dir = match &args.pin_dir {
        Some(dir) => dir.clone(),
        None => {
            PathBuf::from("/sys/fs/bpf").join(roots[0].file_name().unwrap_or_else(|| std::ffi::OsStr::new("guard")))
        }
    };
    let pins = Pins::open(&pin_dir)?;
    let mut kernel = Kernel::load(&offsets, pins)?;
    // What an earlier daemon left in the pinned maps, before this one writes over it.
    let previous = if kernel.adopted() { Some(kernel.daemon_state()?) } else { None };
    if let Some(state) = &previous
        && state.pid != std::process::id()
        && state.exited == 0
        && heartbeat_age_ns(state.heartbeat_ns) < guard_common::HEARTBEAT_STALE_NS
        && std::path::Path::new(&format!("/proc/{}", state.pid)).exists()
    {
        bail!(
            "another guard daemon (pid {}) is running with the pins in {}; stop it first (`guard stop`)",
            state.pid,
            pin_dir.display()
        );
    }
    // A daemon is there from now on: held execs are judged, not killed.
    kernel.heartbeat(&kernel.stats()?)?;
    let lsm_list = std::fs::read_to_string(tier::LSM_LIST).ok();
    let tier = tier::decide(lsm_list.as_deref(), || kernel.probe_lsm());
    let tier_reason = match &tier {
        tier::Tier::Host { reason } => reason.clone(),
        tier::Tier::Lsm => "BPF LSM active and accepting programs: refusals happen before the operation".to_string(),
    };

    let mut sessions = SessionIndex::new(roots.clone()).with_kubernetes(kube_roots);
    sessions.rescan(&RealSys).context("scanning session cgroups")?;
    let root_paths: Vec<(PathBuf, u64)> = sessions.root_ids().iter().map(|(path, id)| (path.clone(), *id)).collect();
    let root_ids: Vec<u64> = root_paths.iter().map(|(_, id)| *id).collect();

    let mut config: Config = policy.kernel_config(std::process::id());
    config.lsm = u32::from(tier == tier::Tier::Lsm);
    config.record_level = guard_common::RecordLevel::from(args.record.unwrap_or(policy.compiled.audit.record)) as u32;
    kernel.set_config(&config)?;
    kernel.set_roots(&root_ids)?;
    kernel.write_policy(&policy.maps, Some)?;
    kernel.set_seccomp_kill(&policy.compiled.confinement.seccomp_syscalls())?;
    // A cgroup program attached to a root covers the roots nested in it (and a nested one
    // could not take its own).
    for (root, id) in &root_paths {
        if !root_paths.iter().any(|(other, _)| other != root && root.starts_with(other)) {
            kernel.attach_cgroup(root, *id)?;
        }
    }
    kernel.attach_tracing(&tier_reason)?;
    if tier == tier::Tier::Lsm {
        kernel.attach_lsm()?;
    }
    // Everything of this run is in place: only now do the programs of an earlier run go.
    let retired = kernel.retire_previous(&root_ids)?;
    // Loading parsed the kernel's BTF and the object file (tens of MB, freed by now): hand
    // that heap back, or it stays in the daemon's resident memory for its whole life.
    // SAFETY: malloc_trim only returns free memory to the kernel.
    unsafe { libc::malloc_trim(0) };
    let ring = kernel.take_ring_buffer()?;
    // SAFETY: the AsyncFd owns the RingBuf, which owns the fd: it stays open while registered.
    let mut ring = unsafe { AsyncFd::register(ring) }
        .map_err(std::io::Error::from)
        .context("registering the ring buffer with the event loop")?;

    let mut sink = AuditSink::open(&audit_path, Rotation::from(policy.compiled.audit))?;
    let metrics = Arc::new(crate::metrics::Metrics::default());
    sink.count_bytes(metrics.audit_file_bytes.clone());
    let copies = copy_targets.iter().map(crate::audit_fanout::Secondary::start).collect::<anyhow::Result<Vec<_>>>()?;
    // No session may rewrite the policy or the audit trail (the audit files follow rotations:
    // `Daemon::protect_audit_files`).
    let own_files: Vec<_> = args
        .policy
        .iter()
        .filter_map(|path| std::fs::metadata(path).ok())
        .map(|meta| crate::scan::identity(&meta))
        .collect();
    kernel.set_protected(&own_files)?;
    let hooks: Vec<HookStatus> = kernel.hooks().to_vec();
    let base = StatusReport {
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        policy_source: policy.source.clone(),
        enforce: config.enforce != 0,
        hooks: hooks.clone(),
        ringbuf_bytes: 4 * 1024 * 1024,
        audit_path: sink.describe(),
        ..Default::default()
    };
    let (calls_tx, mut calls) = tokio::sync::mpsc::unbounded_channel();
    let shared = Arc::new(Shared { report: Mutex::new(base.clone()), calls: calls_tx });
    let mut control = ControlConfig::new(&args.socket);
    control.allowed_gid = args.socket_group;
    let server = ControlServer::bind(&control)?;
    let server_task = tokio::spawn(server.serve(shared.clone()));
    let metrics_task = metrics_listener.map(|listener| {
        let sinks = copies.iter().map(|copy| (copy.name, copy.counters.clone())).collect();
        tokio::spawn(crate::metrics::serve(listener, crate::metrics::registry(&metrics, shared.clone(), sinks)))
    });

    // Loading and attaching can take longer than the heartbeat stays fresh (seconds under an
    // emulator): beat again, or the first held exec after the start record fails closed.
    kernel.heartbeat(&kernel.stats()?)?;
    let engine = Engine::new(
        EngineSettings { fingerprint_key: fingerprint_key()?, clock: clock_base(), enforce: config.enforce != 0 },
        policy.engine_policy(),
    );
    let mut daemon = Daemon {
        engine,
        host: Host { kernel, procs: Box::new(RealProcs::default()), sys: Box::new(RealSys), sessions },
        policy_path: args.policy.clone(),
        enforce: config.enforce != 0,
        sink,
        shared,
        started: Instant::now(),
        base,
        audit_records: 0,
        last_dropped: 0,
        stop_requested: None,
        audit_down: None,
        cgroup2_mount: cgroup2.mount.clone(),
        record_override: args.record,
        hold_release_us: Default::default(),
        protected_audit: Vec::new(),
        empty_sessions: Default::default(),
        metrics,
        copies,
        policy,
    };
    daemon.protect_audit_files()?;
    let mut start = daemon.engine.daemon_record(
        "start",
        now_unix_ns(),
        format!(
            "guard {} watching {} root(s) with policy {}",
            env!("CARGO_PKG_VERSION"),
            roots.len(),
            daemon.policy.source
        ),
    );
    start.details = Some(serde_json::json!({
        "roots": roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>(),
        "policy": daemon.policy.source,
        "rules": daemon.policy.compiled.rules.len(),
        "credential_files": daemon.policy.maps.cred_inodes.len(),
        "notes": daemon.policy.notes,
        "tier": match &tier { tier::Tier::Host { .. } => "host", tier::Tier::Lsm => "lsm" },
        "tier_reason": tier_reason,
        "hooks": hooks,
        "pid": std::process::id(),
        "audit": daemon.policy.compiled.audit,
        "record": daemon.record_level(),
    }));
    daemon.emit(&start);
    if let Some(previous) = &previous {
        daemon.adopt(previous, heartbeat_age_ns(previous.heartbeat_ns), retired);
    }
    daemon.sink.flush().context("writing the audit stream")?;
    daemon.refresh_status();
    crate::service::ready(&format!("enforcing policy {} on {} root(s)", daemon.policy.source, roots.len()));

    let (dns_tx, mut dns_events) = tokio::sync::mpsc::unbounded_channel();
    if let Err(err) = crate::dns::spawn(dns_tx) {
        log::error!("allow-list hosts are not re-resolved: {err:#}");
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut rescan = tokio::time::interval(RESCAN_EVERY);
    rescan.tick().await;
    // Records reach readers at least this often, whatever else the loop is doing.
    let mut flush_every = tokio::time::interval(FLUSH_EVERY);
    flush_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let why = loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.context("waiting on the ring buffer")?;
                let ring = guard.get_inner_mut();
                let mut batch = Vec::new();
                while batch.len() < MAX_BATCH {
                    let Some(item) = ring.next() else { break };
                    batch.push(item.to_vec());
                }
                // A full batch may leave events queued: stay ready, the next turn reads them.
                if batch.len() < MAX_BATCH {
                    guard.clear_ready();
                }
                for bytes in batch {
                    daemon.handle_event(&bytes);
                    daemon.flush_audit_if_due();
                }
                daemon.flush_audit();
            }
            _ = tick.tick() => {
                daemon.tick();
                daemon.reap_sessions();
                daemon.refresh_status();
            }
                        Some(call) = calls.recv() => {
                daemon.control(call);
                daemon.flush_audit();
                if daemon.stop_requested.is_some() {
                    break "guard stop";
                }
            }
            _ = rescan.tick() => daemon.reload(true),
            Some(event) = dns_events.recv() => {
                daemon.dns_event(event);
                daemon.flush_audit();
            }
            _ = flush_every.tick() => daemon.flush_audit(),
            Some(origin) = signals.next() => {
                let sender = origin.process.map(|process| process.pid as u32);
                match sender {
                    // A session cannot stop or reload guard.
                    Some(pid) if daemon.sent_by_session(pid) => daemon.signal_ignored(origin.signal, pid),
                    _ => match origin.signal {
                        SIGHUP => daemon.reload(false),
                        SIGUSR1 => {
                            let by = match sender {
                                Some(pid) => format!("SIGUSR1 from pid {pid}"),
                                None => "SIGUSR1".to_string(),
                            };
                            if let Err(why) = daemon.reopen_audit("signal", &by) {
                                log::error!("{why}");
                            }
                        }
                        SIGINT => break "SIGINT",
                        _ => break "SIGTERM",
                    },
                }
            }
        }
        // Whatever the step wrote (holds timing out, reload results) reaches readers now.
        daemon.flush_audit();
    };
    crate::service::stopping(why);

    // Drain what the kernel already queued, then detach everything by dropping the kernel side.
    {
        let ring = ring.get_mut();
        let mut batch = Vec::new();
        while let Some(item) = ring.next() {
            batch.push(item.to_vec());
        }
        for bytes in batch {
            daemon.handle_event(&bytes);
        }
    }
    server_task.abort();
    if let Some(task) = metrics_task {
        task.abort();
    }
    daemon.abandon_holds();
    // Stopping with the audit file still unwritable: what is kept in memory is lost (said on
    // stderr), and the sessions must not stay frozen without a daemon to thaw them.
    if let Some(down) = daemon.audit_down.take() {
        log::error!("stopping with {} audit records unwritten ({})", down.backlog.len(), down.error);
        for root in &down.frozen {
            let _ = crate::audit_down::set_frozen(root, false);
        }
    }
    let keep_pins = daemon.stop_requested == Some(true);
    let Daemon { host: Host { kernel, .. }, mut engine, mut sink, copies, .. } = daemon;
    drop(ring);
    let pin_dir = kernel.pin_dir().to_path_buf();
    let outcome = if keep_pins {
        // The pins keep everything attached; the heartbeat goes stale and held execs are
        // killed until a daemon adopts them.
        drop(kernel);
        format!("programs and maps stay pinned in {} and keep enforcing", pin_dir.display())
    } else {
        match kernel.release() {
            Ok(()) => "programs detached".to_string(),
            Err(err) => format!("detaching failed ({err:#}); pins may remain in {}", pin_dir.display()),
        }
    };
    let stop = engine.daemon_record("stop", now_unix_ns(), format!("guard stopped on {why}; {outcome}"));
    sink.write(&stop).context("writing the stop record")?;
    sink.sync().context("flushing the audit stream")?;
    crate::audit_fanout::Secondary::finish(copies, &stop);
    Ok(ExitCode::SUCCESS)
}

/// The Kubernetes roots of `kubernetes.enabled`: the kubelet's root (Guaranteed pods sit
/// directly below it) and its Burstable and BestEffort cgroups, which the kubelet creates at
/// its start. The kernel takes the deepest root, so each pod cgroup is a session.
fn kubernetes_roots(cgroup2: &Cgroup2, policy: &guard_engine::policy::CompiledPolicy) -> anyhow::Result<Vec<PathBuf>> {
    let Some(kube) = &policy.kubernetes else { return Ok(Vec::new()) };
    let root = cgroup2.resolve_root(Path::new(&kube.root)).with_context(|| format!("kubernetes.root {}", kube.root))?;
    let name = root.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let roots = guard_engine::kubernetes::qos_dirs(&name)
        .into_iter()
        .map(|(_, dir)| if dir.is_empty() { root.clone() } else { root.join(dir) })
        .collect();
    Ok(roots)
}

/// How long ago a heartbeat was written (CLOCK_MONOTONIC, as the kernel side reads it).
fn heartbeat_age_ns(heartbeat_ns: u64) -> u64 {
    crate::daemon::monotonic_ns().saturating_sub(heartbeat_ns)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    /// The clap error for `args`, as the user sees it.
    fn refused(args: &[&str]) -> String {
        match Cli::try_parse_from(std::iter::once("guard").chain(args.iter().copied())) {
            Ok(_) => panic!("{args:?} was accepted"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn record_levels_on_the_command_line() {
        for (args, level) in [
            (&["run", "--record", "decisions"][..], "decisions"),
            (&["run", "--record", "writes"][..], "writes"),
            (&["launch", "--record", "all", "--", "/bin/true"][..], "all"),
        ] {
            let cli = Cli::try_parse_from(std::iter::once("guard").chain(args.iter().copied())).unwrap();
            let parsed = match cli.command {
                Command::Run(run) => run.record,
                Command::Launch(launch) => launch.record,
                other => panic!("{other:?}"),
            };
            assert_eq!(parsed.map(|l| l.as_str()), Some(level));
        }
        // Unknown, differently cased, empty or missing: refused, naming the option, the value
        // and the levels there are.
        for bad in ["everything", "ALL", ""] {
            for command in ["run", "launch"] {
                let tail: &[&str] = if command == "launch" { &["--", "/bin/true"] } else { &[] };
                let err = refused(&[&[command, "--record", bad][..], tail].concat());
                assert!(err.contains("--record"), "{err}");
                assert!(err.contains(&format!("unknown record level {bad:?}")), "{err}");
                assert!(err.contains("decisions, writes, all"), "{err}");
            }
        }
        assert!(refused(&["run", "--record"]).contains("--record"));
    }
}
