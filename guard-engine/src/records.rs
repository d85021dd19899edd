//! From kernel events to audit records.
//!
//! The daemon hands over each decoded event with what it learned outside the kernel (session
//! name, argv from /proc); this module names the verdict, the rule and the reason, and keeps the
//! process table that fills `exe` for events that do not carry it.

use guard_common::Detector;
use std::collections::{BTreeMap, HashMap};

use guard_common::{DevIno, action, detector, fsop, protect, unix_hook};

use crate::{
    audit::{AuditRecord, Sequencer, Severity, Verdict, format_ts},
    event::{Body, KernelEvent, open_flag_names},
};

/// What the record says about the rule that matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleInfo {
    pub id: String,
    pub detector: Detector,
    pub severity: Severity,
    pub mitre: Option<String>,
    pub description: String,
}

/// Ties the kernel's monotonic clock to wall-clock time, measured once at start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClockBase {
    pub realtime_ns: i128,
    pub monotonic_ns: i128,
}

impl ClockBase {
    pub fn wall_ns(&self, ktime_ns: u64) -> i128 {
        self.realtime_ns + (ktime_ns as i128 - self.monotonic_ns)
    }
}

/// What the daemon learned about an event outside the kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Enrichment {
    pub session: Option<String>,
    pub argv: Option<Vec<String>>,
    pub cwd: Option<String>,
    /// open: the consumer that read its own credential (named from the daemon's table).
    pub consumer: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct ProcInfo {
    exe: Option<String>,
}

/// Bound on tracked processes: a fork bomb must not grow the daemon without limit.
pub const MAX_TRACKED_PROCESSES: usize = 65_536;

pub struct Recorder {
    rules: Vec<RuleInfo>,
    clock: ClockBase,
    seq: Sequencer,
    processes: HashMap<u32, ProcInfo>,
    /// `scope.unix` socket files by identity: the inode hooks send no path.
    unix_names: BTreeMap<DevIno, String>,
}

/// The detector the kernel named (`None` for no detector or an unknown value).
fn detector_of(code: u32) -> Option<Detector> {
    Detector::from_code(code).filter(|d| *d != Detector::None)
}

fn verdict_of(code: u32) -> Verdict {
    match code {
        action::DENY => Verdict::Deny,
        action::KILL => Verdict::Kill,
        action::HOLD => Verdict::Hold,
        action::AUDIT => Verdict::Audit,
        _ => Verdict::Allow,
    }
}

fn proto_name(sock_type: u32, protocol: u32) -> String {
    match (sock_type, protocol) {
        (_, 6) | (1, 0) => "tcp".into(),
        (_, 17) | (2, 0) => "udp".into(),
        (_, 1) => "icmp".into(),
        (_, 58) => "icmpv6".into(),
        (t, p) => format!("type{t}/proto{p}"),
    }
}

impl Recorder {
    pub fn new(rules: Vec<RuleInfo>, clock: ClockBase) -> Self {
        Self { rules, clock, seq: Sequencer::default(), processes: HashMap::new(), unix_names: BTreeMap::new() }
    }

    pub fn set_rules(&mut self, rules: Vec<RuleInfo>) {
        self.rules = rules;
    }

    /// The daemon's names for the `scope.unix` sockets it found (set at every load and rescan).
    pub fn set_unix_names(&mut self, names: BTreeMap<DevIno, String>) {
        self.unix_names = names;
    }

    pub fn rule(&self, index: u32) -> Option<&RuleInfo> {
        self.rules.get(index as usize)
    }

    pub fn last_seq(&self) -> u64 {
        self.seq.last()
    }

    pub fn tracked_processes(&self) -> usize {
        self.processes.len()
    }

    /// A record about the daemon itself (start, stop, drops, errors), stamped now.
    pub fn daemon_record(&mut self, event: &str, now_unix_ns: i128, reason: String) -> AuditRecord {
        let mut record = AuditRecord {
            ts: format_ts(now_unix_ns),
            event: event.to_string(),
            reason: Some(reason),
            ..Default::default()
        };
        self.seq.stamp(&mut record);
        record
    }

    /// Stamp a record built elsewhere (e.g. the daemon's hold decisions) into the sequence.
    pub fn stamp(&mut self, record: &mut AuditRecord) {
        self.seq.stamp(record);
    }

    pub fn record(&mut self, ev: &KernelEvent, extra: Enrichment) -> AuditRecord {
        let head = &ev.head;
        self.track(ev);
        let verdict = verdict_of(head.action);
        let mut record = AuditRecord {
            ts: format_ts(self.clock.wall_ns(head.ktime_ns)),
            session: extra.session,
            cgroup_id: Some(head.cgroup_id),
            pid: Some(head.tgid),
            ppid: Some(head.ppid),
            comm: Some(head.comm.clone()),
            exe: self.processes.get(&head.tgid).and_then(|p| p.exe.clone()),
            verdict: Some(verdict),
            detector: detector_of(head.detector),
            argv: extra.argv,
            cwd: extra.cwd,
            ..Default::default()
        };
        if head.pid != head.tgid {
            record.tid = Some(head.pid);
        }
        let rule = head.rule.and_then(|index| self.rules.get(index as usize));
        if let Some(rule) = rule {
            record.rule = Some(rule.id.clone());
            record.severity = Some(rule.severity);
            record.mitre = rule.mitre.clone();
            record.detector = Some(rule.detector);
        } else if head.detector != detector::NONE {
            record.severity = Some(Severity::High);
        } else {
            record.severity = Some(Severity::Info);
        }
        let rule_text = rule.map(|r| format!("{} ({})", r.id, r.description));
        match &ev.body {
            Body::Exec { file, filename, argv, .. } => {
                record.event = "exec".into();
                if record.argv.is_none() && !argv.is_empty() {
                    record.argv = Some(argv.clone());
                }
                record.path = Some(filename.clone());
                record.exe = Some(filename.clone());
                record.dev = Some(format_dev(file.dev));
                record.ino = Some(file.ino);
                record.reason = Some(match verdict {
                    Verdict::Kill => {
                        format!("exec of {filename} killed before it ran: {}", rule_text.unwrap_or_default())
                    }
                    Verdict::Hold => format!(
                        "exec of {filename} held before it ran for judgement{}",
                        rule_text.map(|r| format!(": {r}")).unwrap_or_default()
                    ),
                    Verdict::Audit => format!("exec of {filename} matched {} (monitor)", rule_text.unwrap_or_default()),
                    _ => format!("exec of {filename}"),
                });
            }
            Body::Open { file, flags, ret, path, name, consumer, .. } => {
                record.event = "open".into();
                if consumer.is_some() {
                    record.consumer = Some(extra.consumer.clone().unwrap_or_else(|| "an unnamed consumer".into()));
                }
                record.path = Some(path.clone());
                record.flags = Some(open_flag_names(*flags));
                record.result = Some(*ret);
                if let Some(file) = file {
                    record.dev = Some(format_dev(file.dev));
                    record.ino = Some(file.ino);
                }
                let what = if name.is_empty() || path.ends_with(name.as_str()) {
                    path.clone()
                } else {
                    format!("{path} (file {name})")
                };
                let rule_text = rule_text.or_else(|| {
                    (head.detector == detector::SELF_PROTECT)
                        .then(|| "guard's own files, bpffs or another cgroup (tampering / escape)".to_string())
                });
                let rule_text = if head.detector == detector::CONFINEMENT {
                    Some("the session's Landlock write roots (or file permissions) refused it with EACCES".to_string())
                } else {
                    rule_text
                };
                // A plain allowed open says nothing its path does not: no reason (the
                // bulk of an `all` stream, and every reason is scanned for secrets).
                let plain = verdict == Verdict::Allow && *ret >= 0 && record.consumer.is_none() && what == *path;
                record.reason = (!plain).then(|| match verdict {
                    Verdict::Deny if head.detector == detector::CONFINEMENT => {
                        format!("open of {what} for writing refused with EACCES: {}", rule_text.unwrap_or_default())
                    }
                    _ if record.consumer.is_some() => format!(
                        "open of {what} by {}, a consumer of {}: allowed (recorded once per process)",
                        record.consumer.as_deref().unwrap_or_default(),
                        rule_text.unwrap_or_default()
                    ),
                    Verdict::Kill => format!(
                        "open of {what} killed before the data reached user space: {}",
                        rule_text.unwrap_or_default()
                    ),
                    Verdict::Deny => {
                        format!("open of {what} refused (EPERM) before it happened: {}", rule_text.unwrap_or_default())
                    }
                    Verdict::Audit => format!("open of {what} matched {} (monitor)", rule_text.unwrap_or_default()),
                    // unsigned_abs: `-ret` overflows for i64::MIN, which a record can carry.
                    _ if *ret < 0 => format!("open of {path} failed with errno {}", ret.unsigned_abs()),
                    _ => format!("open of {what}"),
                });
            }
            Body::Connect { addr, port, sock_type, protocol, v4_mapped }
            | Body::Sendmsg { addr, port, sock_type, protocol, v4_mapped } => {
                let is_connect = matches!(ev.body, Body::Connect { .. });
                record.event = if is_connect { "connect" } else { "sendmsg" }.into();
                record.addr = Some(addr.to_string());
                record.port = Some(*port);
                record.proto = Some(proto_name(*sock_type, *protocol));
                record.family = Some(
                    if addr.is_ipv4() {
                        "ipv4"
                    } else if *v4_mapped {
                        "ipv4-mapped-ipv6"
                    } else {
                        "ipv6"
                    }
                    .into(),
                );
                let dest = if addr.is_ipv6() { format!("[{addr}]:{port}") } else { format!("{addr}:{port}") };
                record.reason = Some(match verdict {
                    Verdict::Deny => format!(
                        "{} to {dest} refused (EPERM): outside network scope {}",
                        record.event,
                        rule_text.unwrap_or_default()
                    ),
                    Verdict::Audit => format!(
                        "{} to {dest} outside network scope {} (monitor)",
                        record.event,
                        rule_text.unwrap_or_default()
                    ),
                    _ => format!("{} to {dest}", record.event),
                });
            }
            Body::Unix { hook, peer, path } => {
                record.event = match *hook {
                    unix_hook::SENDMSG | unix_hook::LSM_SEND => "unix_sendmsg",
                    _ => "unix_connect",
                }
                .into();
                if let Some(peer) = peer {
                    record.dev = Some(format_dev(peer.dev));
                    record.ino = Some(peer.ino);
                }
                // The path hooks carry the path as written; the inode hooks only the
                // socket file, named from the daemon's scan when it found it.
                let known = if path.is_empty() {
                    peer.and_then(|peer| self.unix_names.get(&peer).cloned())
                } else {
                    Some(path.clone())
                };
                record.path.clone_from(&known);
                let name = known.unwrap_or_else(|| {
                    peer.map_or_else(|| "?".to_string(), |peer| format!("{}:{}", format_dev(peer.dev), peer.ino))
                });
                let what = if record.event == "unix_sendmsg" { "datagram" } else { "connect" };
                let rule_text = rule_text.unwrap_or_default();
                record.reason = Some(match verdict {
                    Verdict::Deny => {
                        format!("{what} to unix socket {name} refused (EPERM): outside unix scope {rule_text}")
                    }
                    Verdict::Kill if *hook == unix_hook::CONNECTED => format!(
                        "killed as the connect returned: the socket file {name} is in unix scope {rule_text}; the connection was made, nothing was sent"
                    ),
                    Verdict::Kill => {
                        format!("killed at the {what}: the socket file {name} is in unix scope {rule_text}")
                    }
                    Verdict::Audit => format!("{what} to unix socket {name} in unix scope {rule_text} (monitor)"),
                    _ => format!("{what} to unix socket {name}"),
                });
            }
            Body::Fork { child_pid, .. } => {
                record.event = "fork".into();
                record.child_pid = Some(*child_pid);
                record.reason = Some(format!("{} forked {child_pid}", head.tgid));
            }
            Body::Exit { counts, .. } => {
                record.event = "exit".into();
                record.reason = Some(format!("{} exited", head.tgid));
                record.counts = Some(crate::audit::ProcessCounts {
                    opens: counts.opens,
                    writes: counts.writes,
                    connects: counts.connects,
                    denials: counts.denials,
                });
            }
            Body::FsChange { file, op, name } => {
                record.event = match *op {
                    fsop::UNLINK => "unlink",
                    fsop::RMDIR => "rmdir",
                    fsop::RENAME => "rename",
                    fsop::TRUNCATE => "truncate",
                    _ => "fs_change",
                }
                .into();
                record.path = Some(name.clone());
                record.dev = Some(format_dev(file.dev));
                record.ino = Some(file.ino);
                record.reason = Some(match verdict {
                    Verdict::Deny => format!(
                        "{} of {name} refused (EPERM) before it happened: {}",
                        record.event,
                        rule_text.unwrap_or_default()
                    ),
                    _ => format!("{} of {name} matched {} (monitor)", record.event, rule_text.unwrap_or_default()),
                });
            }
            Body::Refusal { nr, ret, args, path } => {
                record.event = "refusal".into();
                record.severity = Some(Severity::High);
                let call = crate::syscalls::name(*nr).map_or_else(|| format!("syscall {nr}"), str::to_string);
                let target = if path.is_empty() { String::new() } else { format!(" of {path}") };
                if !path.is_empty() {
                    record.path = Some(path.clone());
                }
                if crate::syscalls::SIGNALS.contains(&call.as_str()) {
                    let pid = if call == "tgkill" || call == "ptrace" { args[1] } else { args[0] };
                    record.target_pid = u32::try_from(pid).ok();
                }
                // Matched as is: `-ret` overflows for i32::MIN, which a record can carry.
                let errno = match *ret {
                    -1 => "EPERM",
                    -13 => "EACCES",
                    _ => "an error",
                };
                record.reason = Some(match verdict {
                    Verdict::Kill => format!(
                        "{call}() from a session process without guard's seccomp filter (not started by guard launch): killed at entry (the call itself ran; only the lsm tier refuses it)"
                    ),
                    _ if crate::syscalls::FILE_CHANGES.contains(&call.as_str()) => format!(
                        "{call}(){target} refused with {errno}: outside the session's Landlock write roots (or file permissions)"
                    ),
                    _ if crate::syscalls::SIGNALS.contains(&call.as_str()) => format!(
                        "{call}() at pid {} refused with {errno}: outside the session's Landlock domain (or not permitted)",
                        record.target_pid.map_or_else(|| "?".to_string(), |p| p.to_string())
                    ),
                    _ => format!("{call}(){target} refused with {errno} by the session's seccomp filter"),
                });
            }
            Body::SelfProtect { target_tgid, what, detail } => {
                record.event = "self_protection".into();
                record.detector = Some(Detector::SelfProtection);
                record.severity = Some(Severity::Critical);
                record.target_pid = Some(*target_tgid);
                let fate = if verdict == Verdict::Deny { "refused (EPERM)" } else { "sender killed" };
                record.reason = Some(match *what {
                    protect::SIGNAL_HELD => format!(
                        "signal {detail} from {} to held task {target_tgid}: {fate}, the hold stands",
                        head.tgid
                    ),
                    protect::SIGNAL_DAEMON => {
                        format!("signal {detail} from {} to the guard daemon ({target_tgid}): {fate}", head.tgid)
                    }
                    protect::PTRACE => format!(
                        "ptrace request {detail} from {} on protected task {target_tgid}: {}",
                        head.tgid,
                        if verdict == Verdict::Deny { "refused (EPERM)" } else { "tracer killed" }
                    ),
                    protect::ESCAPED_HOLD => format!(
                        "held task {target_tgid} was continued by someone other than guard: stopped again at its first system call"
                    ),
                    protect::BPF => format!("bpf() command {detail} from session process {} refused", head.tgid),
                    other => format!("self-protection event {other} on task {target_tgid}"),
                });
            }
        }
        self.seq.stamp(&mut record);
        record
    }

    /// Keep the per-process table that names `exe` (bounded; lineage through fork and exec).
    fn track(&mut self, ev: &KernelEvent) {
        match &ev.body {
            Body::Exec { filename, .. } => {
                self.insert(ev.head.tgid, ProcInfo { exe: Some(filename.clone()) });
            }
            Body::Fork { child_tgid, .. } => {
                let inherited = self.processes.get(&ev.head.tgid).cloned().unwrap_or(ProcInfo { exe: None });
                self.insert(*child_tgid, inherited);
            }
            Body::Exit { .. } => {
                self.processes.remove(&ev.head.tgid);
            }
            _ => {}
        }
    }

    fn insert(&mut self, pid: u32, info: ProcInfo) {
        if self.processes.len() >= MAX_TRACKED_PROCESSES && !self.processes.contains_key(&pid) {
            // Forget an arbitrary entry rather than grow: only `exe` enrichment is lost.
            if let Some(&victim) = self.processes.keys().next() {
                self.processes.remove(&victim);
            }
        }
        self.processes.insert(pid, info);
    }
}

/// `major:minor` of the kernel's dev_t encoding (MKDEV: major << 20 | minor).
pub fn format_dev(dev: u64) -> String {
    format!("{}:{}", dev >> 20, dev & 0xfffff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Head, KernelEvent};
    use guard_common::DevIno;

    fn head(action: u32, detector: u32, rule: Option<u32>) -> Head {
        Head {
            action,
            ktime_ns: 2_000,
            cgroup_id: 77,
            session_id: 70,
            pid: 10,
            tgid: 10,
            ppid: 1,
            detector,
            rule,
            flags: 0,
            comm: "cat".into(),
            start_ns: 1,
        }
    }

    fn rules() -> Vec<RuleInfo> {
        vec![RuleInfo {
            id: "cred-dotenv".into(),
            detector: Detector::Credential,
            severity: Severity::Critical,
            mitre: Some("T1552.001".into()),
            description: ".env files".into(),
        }]
    }

    #[test]
    fn killed_credential_open_names_rule_severity_and_mitre() {
        let mut rec = Recorder::new(rules(), ClockBase { realtime_ns: 1_000_000_000, monotonic_ns: 1_000 });
        let ev = KernelEvent {
            head: head(action::KILL, detector::CREDENTIAL, Some(0)),
            body: Body::Open {
                file: Some(DevIno { dev: (8 << 20) | 1, ino: 5 }),
                flags: 0,
                dfd: -100,
                ret: 3,
                path: ".env".into(),
                name: ".env".into(),
                consumer: None,
            },
        };
        let r = rec.record(&ev, Enrichment { session: Some("demo".into()), ..Default::default() });
        assert_eq!(r.verdict, Some(Verdict::Kill));
        assert_eq!(r.rule.as_deref(), Some("cred-dotenv"));
        assert_eq!(r.severity, Some(Severity::Critical));
        assert_eq!(r.mitre.as_deref(), Some("T1552.001"));
        assert_eq!(r.dev.as_deref(), Some("8:1"));
        assert_eq!(r.session.as_deref(), Some("demo"));
        assert_eq!(r.ts, "1970-01-01T00:00:01.000001000Z");
        assert_eq!(r.seq, 1);
    }

    #[test]
    fn exe_follows_exec_and_fork_lineage() {
        let mut rec = Recorder::new(vec![], ClockBase::default());
        let exec = KernelEvent {
            head: head(action::ALLOW, detector::NONE, None),
            body: Body::Exec {
                file: DevIno::default(),
                old_pid: 10,
                filename: "/usr/bin/bash".into(),
                argv: vec!["bash".into()],
                argv_truncated: false,
            },
        };
        rec.record(&exec, Enrichment::default());
        let fork = KernelEvent {
            head: head(action::ALLOW, detector::NONE, None),
            body: Body::Fork { child_pid: 11, child_tgid: 11, child_start_ns: 3 },
        };
        rec.record(&fork, Enrichment::default());
        let mut child = head(action::ALLOW, detector::NONE, None);
        child.tgid = 11;
        child.pid = 11;
        let open = KernelEvent {
            head: child,
            body: Body::Open {
                file: None,
                flags: 0,
                dfd: -100,
                ret: -2,
                path: "x".into(),
                name: String::new(),
                consumer: None,
            },
        };
        let r = rec.record(&open, Enrichment::default());
        assert_eq!(r.exe.as_deref(), Some("/usr/bin/bash"));
        assert_eq!(r.seq, 3);
        assert!(r.reason.unwrap().contains("errno 2"));
    }

    // Found by fuzzing (event_decode): negating the smallest errno value overflowed, a panic in
    // builds with overflow checks.
    #[test]
    fn the_most_negative_results_are_reported_not_negated() {
        let mut rec = Recorder::new(rules(), ClockBase::default());
        let refusal = KernelEvent {
            head: head(action::DENY, detector::CONFINEMENT, None),
            body: Body::Refusal { nr: 321, ret: i32::MIN, args: [0, 0], path: String::new() },
        };
        let reason = rec.record(&refusal, Enrichment::default()).reason.unwrap();
        assert!(reason.contains("refused with an error"), "{reason}");
        let eperm =
            KernelEvent { body: Body::Refusal { nr: 321, ret: -1, args: [0, 0], path: String::new() }, ..refusal };
        assert!(rec.record(&eperm, Enrichment::default()).reason.unwrap().contains("refused with EPERM"));

        let open = KernelEvent {
            head: head(action::ALLOW, detector::NONE, None),
            body: Body::Open {
                file: None,
                flags: 0,
                dfd: -100,
                ret: i64::MIN,
                path: "x".into(),
                name: String::new(),
                consumer: None,
            },
        };
        let reason = rec.record(&open, Enrichment::default()).reason.unwrap();
        assert!(reason.contains("errno 9223372036854775808"), "{reason}");
    }

    fn unix_rules() -> Vec<RuleInfo> {
        vec![RuleInfo {
            id: "scope.unix".into(),
            detector: Detector::ScopeNetwork,
            severity: Severity::Critical,
            mitre: Some("T1611".into()),
            description: "a container runtime or other privileged unix socket".into(),
        }]
    }

    fn unix_event(action: u32, hook: u32, peer: Option<DevIno>, path: &str) -> KernelEvent {
        KernelEvent {
            head: head(action, detector::SCOPE_NET, Some(0)),
            body: Body::Unix { hook, peer, path: path.into() },
        }
    }

    #[test]
    fn unix_records_name_the_socket_and_the_verdict() {
        let mut rec = Recorder::new(unix_rules(), ClockBase::default());
        let deny =
            rec.record(&unix_event(action::DENY, unix_hook::CONNECT, None, "/run/docker.sock"), Enrichment::default());
        assert_eq!(deny.event, "unix_connect");
        assert_eq!(deny.verdict, Some(Verdict::Deny));
        assert_eq!(deny.detector, Some(Detector::ScopeNetwork));
        assert_eq!(deny.rule.as_deref(), Some("scope.unix"));
        assert_eq!(deny.mitre.as_deref(), Some("T1611"));
        assert_eq!(deny.path.as_deref(), Some("/run/docker.sock"));
        assert_eq!((deny.dev.as_deref(), deny.ino), (None, None));
        let reason = deny.reason.unwrap_or_default();
        assert!(
            reason.starts_with(
                "connect to unix socket /run/docker.sock refused (EPERM): outside unix scope scope.unix ("
            ),
            "{reason}"
        );

        let peer = DevIno { dev: (0 << 20) | 25, ino: 981 };
        rec.set_unix_names([(peer, "/run/containerd/containerd.sock".to_string())].into_iter().collect());
        let kill = rec.record(&unix_event(action::KILL, unix_hook::CONNECTED, Some(peer), ""), Enrichment::default());
        assert_eq!(kill.event, "unix_connect");
        assert_eq!(kill.path.as_deref(), Some("/run/containerd/containerd.sock"));
        assert_eq!((kill.dev.as_deref(), kill.ino), (Some("0:25"), Some(981)));
        let reason = kill.reason.unwrap_or_default();
        assert!(
            reason.starts_with("killed as the connect returned: the socket file /run/containerd/containerd.sock is in unix scope scope.unix (")
                && reason.ends_with("; the connection was made, nothing was sent"),
            "{reason}"
        );

        let audit = rec.record(
            &unix_event(action::AUDIT, unix_hook::SENDMSG, None, "/run/podman/podman.sock"),
            Enrichment::default(),
        );
        assert_eq!(audit.event, "unix_sendmsg");
        let reason = audit.reason.unwrap_or_default();
        assert!(reason.contains("/run/podman/podman.sock") && reason.ends_with("(monitor)"), "{reason}");

        // An inode the daemon's scan does not know: named by its identity, no path.
        let stranger = DevIno { dev: (8 << 20) | 1, ino: 7 };
        let lsm =
            rec.record(&unix_event(action::AUDIT, unix_hook::LSM_SEND, Some(stranger), ""), Enrichment::default());
        assert_eq!(lsm.event, "unix_sendmsg");
        assert_eq!(lsm.path, None);
        assert!(lsm.reason.unwrap_or_default().contains("unix socket 8:1:7 in unix scope"));
    }
}
