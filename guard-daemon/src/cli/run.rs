//! `guard run`: the daemon, in the foreground.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::Args;
use guard_common::{Config, stat};
use guard_common::action;
use guard_engine::{
    audit::{AuditRecord, Severity, Verdict},
    destructive::{DestructiveEvaluator, ExecContext},
    policy::Mode,
    control::{Counters, HookStatus, StatusReport},
    event::{Body, KernelEvent, decode},
    records::{ClockBase, Enrichment, Recorder},
};
use tokio::{io::unix::AsyncFd, signal::unix::{SignalKind, signal}};

use crate::{
    audit_sink::AuditSink,
    cgroup::{self, Cgroup2, SessionIndex},
    control::{ControlConfig, ControlHandler, ControlServer},
    hold::{self, Held},
    kernel::{Kernel, btf, tier},
    policy_load::{self, LoadedPolicy},
    sys::RealSys,
};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Policy file (YAML). Without it the built-in default policy applies.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Audit stream: a file (appended to) or `-` for stdout.
    #[arg(long, value_name = "FILE|-", default_value = super::DEFAULT_AUDIT_PATH)]
    pub audit: PathBuf,
    /// The session root: every cgroup directly below it is a session (default `<cgroup2>/guard`).
    #[arg(long, value_name = "PATH")]
    pub root: Option<PathBuf>,
    /// Extra cgroup roots to govern (beside the session root); repeatable.
    #[arg(long = "cgroup", value_name = "PATH")]
    pub cgroups: Vec<PathBuf>,
    /// Control socket for `guard status` and friends.
    #[arg(long, value_name = "PATH", default_value = super::DEFAULT_SOCKET_PATH)]
    pub socket: PathBuf,
}

pub fn main(args: RunArgs) -> anyhow::Result<ExitCode> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("guard run must run as root (it loads BPF programs and manages cgroups)");
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(args))
}

/// How often credential files and allow-list hosts are looked up again.
const RESCAN_EVERY: Duration = Duration::from_secs(30);

/// What `guard status` sees; refreshed by the event loop.
struct Shared {
    report: Mutex<StatusReport>,
}

impl ControlHandler for Shared {
    fn status(&self) -> StatusReport {
        self.report.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

fn now_unix_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

fn clock_base() -> ClockBase {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let monotonic_ns = ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128;
    ClockBase { realtime_ns: now_unix_ns(), monotonic_ns }
}

/// Mount a pseudo filesystem the kernel side needs when it is missing.
fn ensure_mounted(fstype: &str, target: &str) -> anyhow::Result<()> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    if mounts.lines().any(|l| l.split_whitespace().nth(1) == Some(target)) {
        return Ok(());
    }
    let c = |s: &str| std::ffi::CString::new(s).context("mount argument with NUL");
    let (src, tgt, ty) = (c("none")?, c(target)?, c(fstype)?);
    // SAFETY: valid C strings, no data argument.
    let rc = unsafe { libc::mount(src.as_ptr(), tgt.as_ptr(), ty.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("mounting {fstype} at {target}"));
    }
    Ok(())
}

fn read_proc_list(pid: u32, what: &str) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/{what}")).ok()?;
    Some(raw.split(|&b| b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect())
}

fn read_cwd(pid: u32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/cwd")).ok().map(|p| p.display().to_string())
}

struct Daemon {
    kernel: Kernel,
    policy: LoadedPolicy,
    policy_path: Option<PathBuf>,
    evaluator: DestructiveEvaluator,
    /// False when the global kill switch makes every rule monitor-only.
    enforce: bool,
    recorder: Recorder,
    sink: AuditSink,
    sessions: SessionIndex,
    shared: Arc<Shared>,
    started: Instant,
    base: StatusReport,
    audit_records: u64,
    last_dropped: u64,
}

impl Daemon {
    fn emit(&mut self, record: &AuditRecord) {
        self.audit_records += 1;
        if let Err(err) = self.sink.write(record) {
            // Losing the audit trail must be loud; the kernel side keeps enforcing regardless.
            log::error!("writing audit record {}: {err}", record.seq);
        }
    }

    fn handle_event(&mut self, bytes: &[u8]) {
        let event = match decode(bytes) {
            Ok(ev) => ev,
            Err(err) => {
                let record = self.recorder.daemon_record("decode_error", now_unix_ns(), format!("undecodable kernel event: {err}"));
                self.emit(&record);
                return;
            }
        };
        let extra = self.enrich(&event);
        let mut record = self.recorder.record(&event, extra);
        if event.head.action == action::HOLD {
            if let Body::Exec { filename, argv, .. } = &event.body {
                self.judge_held(event.head.tgid, filename, argv, &mut record);
            }
        }
        self.emit(&record);
    }

    /// Decide a held exec: read what it is about to run, apply the destructive rules, then
    /// release or kill it. The record carries the final verdict.
    fn judge_held(&mut self, pid: u32, filename: &str, kernel_argv: &[String], record: &mut AuditRecord) {
        let started = Instant::now();
        let held = match Held::open(pid) {
            Ok(held) => held,
            Err(err) => {
                record.verdict = Some(Verdict::Allow);
                record.reason = Some(format!("held exec of {filename} vanished before judgement: {err}"));
                return;
            }
        };
        held.wait_stopped(hold::STOP_WAIT);
        let view = match held.view() {
            Ok(view) => view,
            Err(err) => {
                // Cannot see what it would run: fail closed.
                let _ = held.kill();
                record.verdict = Some(Verdict::Kill);
                record.reason = Some(format!("held exec of {filename} could not be inspected ({err}); killed"));
                return;
            }
        };
        let argv = if view.argv.is_empty() { kernel_argv.to_vec() } else { view.argv.clone() };
        let context = ExecContext {
            exe: filename.to_string(),
            argv: argv.clone(),
            cwd: view.cwd.clone().unwrap_or_default(),
            env: view.env.clone(),
        };
        let matched = self.evaluator.evaluate(&context);
        let waited = started.elapsed().as_micros();
        record.argv = Some(argv);
        record.cwd = view.cwd.clone();
        let Some(m) = matched else {
            let outcome = held.release();
            record.verdict = Some(Verdict::Allow);
            record.detector = None;
            record.rule = None;
            record.severity = Some(Severity::Info);
            record.reason = Some(match outcome {
                Ok(()) => format!("exec of {filename} held {waited} µs for judgement: no destructive rule matched"),
                Err(err) => format!("exec of {filename} judged harmless but could not be released: {err}"),
            });
            return;
        };
        record.detector = Some("destructive".to_string());
        record.rule = Some(m.rule_id.clone());
        record.severity = Some(m.severity);
        record.mitre = Some(m.mitre.clone());
        // Until approvals exist, a `hold` rule under enforcement is a kill.
        if m.mode == Mode::Enforce && self.enforce {
            let outcome = held.kill();
            record.verdict = Some(Verdict::Kill);
            record.reason = Some(match outcome {
                Ok(()) => format!("{}: `{}` killed before it ran (held {waited} µs)", m.reason, m.command),
                Err(err) => format!("{}: `{}` could not be killed: {err}", m.reason, m.command),
            });
        } else {
            let outcome = held.release();
            record.verdict = Some(Verdict::Audit);
            record.reason = Some(match outcome {
                Ok(()) => format!("{}: `{}` allowed to run (monitor)", m.reason, m.command),
                Err(err) => format!("{}: `{}` (monitor) could not be released: {err}", m.reason, m.command),
            });
        }
    }

    fn enrich(&mut self, event: &KernelEvent) -> Enrichment {
        let session = match self.sessions.resolve(&RealSys, event.head.session_id) {
            Ok(found) => found.map(|s| s.name.clone()),
            Err(err) => {
                log::warn!("resolving session {}: {err}", event.head.session_id);
                None
            }
        };
        let (argv, cwd) = match &event.body {
            // The kernel's argv copy is complete unless truncated; then /proc has the rest if
            // the process still runs (held execs are read while stopped, race-free). cwd is
            // best effort.
            Body::Exec { argv_truncated: true, .. } => (read_proc_list(event.head.tgid, "cmdline"), read_cwd(event.head.tgid)),
            Body::Exec { .. } => (None, read_cwd(event.head.tgid)),
            _ => (None, None),
        };
        Enrichment { session, argv, cwd }
    }

    /// SIGHUP: re-read the policy. An invalid one is refused and the running one stays in
    /// force, untouched. `rescan_only` re-resolves the current policy (new credential files,
    /// re-resolved hosts) without re-reading it.
    fn reload(&mut self, rescan_only: bool) {
        let path = if rescan_only { None } else { Some(self.policy_path.clone()) };
        let loaded = match path {
            None => policy_load::rescan(&self.policy),
            Some(path) => policy_load::load(path.as_deref()),
        };
        let what = if rescan_only { "rescan" } else { "reload" };
        let policy = match loaded {
            Ok(policy) => policy,
            Err(err) => {
                let record = self.recorder.daemon_record(
                    &format!("policy_{what}_failed"),
                    now_unix_ns(),
                    format!("policy {what} refused, the running policy stays in force: {err:#}"),
                );
                self.emit(&record);
                return;
            }
        };
        let mut config = policy.kernel_config(std::process::id());
        config.enforce = u32::from(self.enforce);
        let applied = self.kernel.write_policy(&policy.maps).and_then(|()| self.kernel.set_config(&config));
        if let Err(err) = applied {
            let record = self.recorder.daemon_record(
                &format!("policy_{what}_failed"),
                now_unix_ns(),
                format!("writing the {what}ed policy into the kernel failed: {err:#}"),
            );
            self.emit(&record);
            return;
        }
        if !rescan_only {
            let mut record = self.recorder.daemon_record(
                "policy_reload",
                now_unix_ns(),
                format!("policy {} reloaded ({} rules, {} credential files)", policy.source, policy.compiled.rules.len(), policy.maps.cred_inodes.len()),
            );
            record.details = Some(serde_json::json!({ "notes": policy.notes }));
            self.emit(&record);
        }
        self.recorder.set_rules(policy.rule_infos());
        self.evaluator = policy.evaluator.clone();
        self.base.policy_source = policy.source.clone();
        self.policy = policy;
    }

    fn refresh_status(&mut self) {
        let stats = match self.kernel.stats() {
            Ok(s) => s,
            Err(err) => {
                log::warn!("reading kernel counters: {err:#}");
                return;
            }
        };
        let dropped = stats[stat::EVENTS_DROPPED as usize];
        if dropped > self.last_dropped {
            let mut record = self.recorder.daemon_record(
                "drops",
                now_unix_ns(),
                format!("{} kernel events lost (ring buffer full); {dropped} since start", dropped - self.last_dropped),
            );
            record.details = Some(serde_json::json!({ "dropped_total": dropped, "dropped_new": dropped - self.last_dropped }));
            self.emit(&record);
            self.last_dropped = dropped;
        }
        let sessions = cgroup::list_sessions(&RealSys, self.sessions.roots())
            .map(|list| list.iter().map(|s| s.to_status()).collect())
            .unwrap_or_default();
        let mut report = self.base.clone();
        report.uptime_secs = self.started.elapsed().as_secs();
        report.sessions = sessions;
        report.counters = Counters {
            events: stats[stat::EVENTS_SENT as usize],
            dropped,
            exec: stats[stat::EXEC as usize],
            open: stats[stat::OPEN as usize],
            connect: stats[stat::CONNECT as usize],
            sendmsg: stats[stat::SENDMSG as usize],
            fork: stats[stat::FORK as usize],
            exit: stats[stat::EXIT as usize],
            denied: stats[stat::DENIED as usize],
            killed: stats[stat::KILLED as usize],
            held: stats[stat::HELD as usize],
            audit_records: self.audit_records,
        };
        if let Ok(mut shared) = self.shared.report.lock() {
            *shared = report;
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    ensure_mounted("tracefs", "/sys/kernel/tracing")?;
    // securityfs only serves the tier probe; its absence just means "no lsm tier".
    if let Err(err) = ensure_mounted("securityfs", "/sys/kernel/security") {
        log::warn!("{err:#}");
    }
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

    let policy = crate::policy_load::load(args.policy.as_deref())?;
    for root in &policy.compiled.cgroup_roots {
        let root = cgroup2.resolve_root(Path::new(root)).with_context(|| format!("policy cgroup root {root}"))?;
        if !roots.contains(&root) {
            roots.push(root);
        }
    }

    let offsets = btf::kernel_offsets(btf::VMLINUX_BTF).context("reading kernel structure offsets")?;
    let mut kernel = Kernel::load(&offsets)?;
    let lsm_list = std::fs::read_to_string(tier::LSM_LIST).ok();
    let tier = tier::decide(lsm_list.as_deref(), || kernel.probe_lsm());
    let tier_reason = match &tier {
        tier::Tier::Host { reason } => reason.clone(),
        tier::Tier::Lsm => "BPF LSM available, but this build enforces through the host tier".to_string(),
    };

    let mut sessions = SessionIndex::new(roots.clone());
    sessions.rescan(&RealSys).context("scanning session cgroups")?;
    let root_ids: Vec<u64> = sessions.root_ids().iter().map(|(_, id)| *id).collect();

    let config: Config = policy.kernel_config(std::process::id());
    kernel.set_config(&config)?;
    kernel.set_roots(&root_ids)?;
    kernel.write_policy(&policy.maps)?;
    for root in &roots {
        kernel.attach_cgroup(root)?;
    }
    kernel.attach_tracing(&tier_reason)?;
    let ring = kernel.take_ring_buffer()?;
    // SAFETY: the AsyncFd owns the RingBuf, which owns the fd: it stays open while registered.
    let mut ring = unsafe { AsyncFd::register(ring) }
        .map_err(std::io::Error::from)
        .context("registering the ring buffer with the event loop")?;

    let sink = AuditSink::open(&args.audit)?;
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
    let shared = Arc::new(Shared { report: Mutex::new(base.clone()) });
    let server = ControlServer::bind(&ControlConfig::new(&args.socket))?;
    let server_task = tokio::spawn(server.serve(shared.clone()));

    let mut daemon = Daemon {
        kernel,
        policy_path: args.policy.clone(),
        evaluator: policy.evaluator.clone(),
        enforce: config.enforce != 0,
        recorder: Recorder::new(policy.rule_infos(), clock_base()),
        sink,
        sessions,
        shared,
        started: Instant::now(),
        base,
        audit_records: 0,
        last_dropped: 0,
        policy,
    };
    let mut start = daemon.recorder.daemon_record(
        "start",
        now_unix_ns(),
        format!("guard {} watching {} root(s) with policy {}", env!("CARGO_PKG_VERSION"), roots.len(), daemon.policy.source),
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
    }));
    daemon.emit(&start);
    daemon.sink.flush().context("writing the audit stream")?;
    daemon.refresh_status();

    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut rescan = tokio::time::interval(RESCAN_EVERY);
    rescan.tick().await;
    let why = loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.context("waiting on the ring buffer")?;
                let ring = guard.get_inner_mut();
                let mut batch = Vec::new();
                while let Some(item) = ring.next() {
                    batch.push(item.to_vec());
                }
                guard.clear_ready();
                for bytes in batch {
                    daemon.handle_event(&bytes);
                }
                if let Err(err) = daemon.sink.flush() {
                    log::error!("flushing the audit stream: {err}");
                }
            }
            _ = tick.tick() => daemon.refresh_status(),
            _ = rescan.tick() => daemon.reload(true),
            _ = sighup.recv() => daemon.reload(false),
            _ = sigterm.recv() => break "SIGTERM",
            _ = sigint.recv() => break "SIGINT",
        }
    };

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
    let Daemon { kernel, mut recorder, mut sink, .. } = daemon;
    drop(ring);
    drop(kernel);
    let stop = recorder.daemon_record("stop", now_unix_ns(), format!("guard stopped on {why}; programs detached"));
    sink.write(&stop).context("writing the stop record")?;
    sink.flush().context("flushing the audit stream")?;
    Ok(ExitCode::SUCCESS)
}
