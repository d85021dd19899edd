//! The control-socket protocol between `guard` clients and the daemon.
//!
//! Newline-delimited JSON over a unix socket: the client writes one [`Request`] per line, the
//! daemon answers each with one [`Response`] line, in order. Pure types: no I/O here.
//!
//! Compatibility: like the audit stream, fields are only ever added. Every field of the reply
//! types has a serde default, so an older client can read a newer daemon's reply and the other
//! way round.

use serde::{Deserialize, Serialize};

use crate::confinement::{AppliedConfinement, Confinement};

/// Longest request line the daemon accepts, newline excluded.
pub const MAX_REQUEST_LINE: usize = 64 * 1024;

/// One request. Tagged by `cmd`: `{"cmd":"status"}`, `{"cmd":"pending"}`,
/// `{"cmd":"approve","id":N}`, `{"cmd":"deny","id":N}`, `{"cmd":"confinement","cwd":"/path"}`,
/// `{"cmd":"reopen"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Tiers, sessions and counters of the running daemon.
    Status,
    /// Commands held for a person's decision.
    Pending,
    /// Let a held command run.
    Approve { id: u64 },
    /// Kill a held command.
    Deny { id: u64 },
    /// The operator's clean stop (root only). `keep_pins`: leave programs and maps pinned
    /// (enforcement goes on) for an upgrade; the next `guard run` adopts them.
    Stop {
        #[serde(default)]
        keep_pins: bool,
    },
    /// Open the audit path again (root only), after an external logrotate moved the file:
    /// the same as SIGUSR1.
    Reopen,
    /// A session's own record level (`guard launch --record LEVEL`), for the session cgroup
    /// `cgroup` (a direct child of a root). Root only, and never from inside a session.
    Record { cgroup: String, level: crate::audit::RecordLevel },
    /// The confinement `guard launch` applies to a new session started in `cwd` (its `$CWD`
    /// write root). Reveals only policy: anyone who may use the socket may ask.
    Confinement {
        #[serde(default)]
        cwd: Option<String>,
    },
}

impl Request {
    /// The request as one line, without the trailing newline.
    pub fn to_line(&self) -> String {
        // A unit-variant enum always serialises.
        serde_json::to_string(self).unwrap_or_else(|_| String::from(r#"{"cmd":"status"}"#))
    }

    /// Parse one request line (a trailing `\r` or `\n` is ignored).
    pub fn parse_line(line: &[u8]) -> Result<Self, ProtocolError> {
        if line.len() > MAX_REQUEST_LINE {
            return Err(ProtocolError::TooLong { len: line.len() });
        }
        let text = std::str::from_utf8(line).map_err(|_| ProtocolError::NotUtf8)?;
        let text = text.trim_end_matches(['\n', '\r']);
        let text = text.trim();
        if text.is_empty() {
            return Err(ProtocolError::Empty);
        }
        // serde also accepts `["status"]` for tagged enums; the protocol is objects only.
        if !text.starts_with('{') {
            return Err(ProtocolError::Malformed(String::from("expected a JSON object")));
        }
        serde_json::from_str(text).map_err(|err| ProtocolError::Malformed(err.to_string()))
    }
}

/// Why a request line was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("request line too long ({len} bytes, at most {MAX_REQUEST_LINE})")]
    TooLong { len: usize },
    #[error("request is not UTF-8")]
    NotUtf8,
    #[error("empty request")]
    Empty,
    #[error("malformed request: {0}")]
    Malformed(String),
}

/// One reply.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Response {
    #[serde(default)]
    pub ok: bool,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub status: Option<StatusReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Vec<PendingHold>>,
    /// What a decision did (approve/deny).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The answer to `confinement`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confinement: Option<Confinement>,
}

/// A command held before its first instruction, waiting for a person.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PendingHold {
    pub id: u64,
    pub session: String,
    pub pid: u32,
    pub exe: String,
    /// Redacted: no secret value leaves the daemon.
    pub argv: Vec<String>,
    pub cwd: String,
    pub rule: String,
    /// Why it is held (the rule's reason, the escalation).
    pub why: String,
    pub age_secs: u64,
    /// Seconds left before the hold times out and the command is killed.
    pub timeout_in_secs: u64,
    /// `seq` of the audit record that announced the hold.
    pub seq: u64,
}

impl Response {
    pub fn status(report: StatusReport) -> Self {
        Self { ok: true, status: Some(report), ..Default::default() }
    }

    pub fn pending(holds: Vec<PendingHold>) -> Self {
        Self { ok: true, pending: Some(holds), ..Default::default() }
    }

    pub fn done(message: impl Into<String>) -> Self {
        Self { ok: true, message: Some(message.into()), ..Default::default() }
    }

    pub fn confinement(confinement: Confinement) -> Self {
        Self { ok: true, confinement: Some(confinement), ..Default::default() }
    }

    pub fn error(message: impl Into<String>) -> Self {
        Self { ok: false, error: Some(message.into()), ..Default::default() }
    }

    /// The reply as one line, without the trailing newline.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|err| {
            // Only a non-string map key could fail here; still answer something parseable.
            format!(r#"{{"ok":false,"error":"reply serialisation failed: {}"}}"#, escape(&err.to_string()))
        })
    }

    pub fn parse_line(line: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(line.trim_end_matches(['\n', '\r']))
    }
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Enforcement tier of a hook.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Syscall tracepoints and cgroup sock_addr programs: works on any kernel guard supports.
    #[default]
    Host,
    /// BPF LSM: refuses before the operation happens.
    Lsm,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Host => "host",
            Tier::Lsm => "lsm",
        }
    }
}

/// What the daemon reports about itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusReport {
    /// The daemon's version (`CARGO_PKG_VERSION`).
    pub version: String,
    pub pid: u32,
    pub uptime_secs: u64,
    /// Where the policy came from: a file path, or `builtin`.
    pub policy_source: String,
    /// False when the kill switch treats every rule as monitor-only.
    pub enforce: bool,
    pub hooks: Vec<HookStatus>,
    pub sessions: Vec<SessionStatus>,
    pub counters: Counters,
    /// Size of the kernel-to-daemon ring buffer.
    pub ringbuf_bytes: u64,
    pub audit_path: String,
    /// Set while the audit file takes no writes: since when, why (sessions are frozen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_unwritable: Option<String>,
    /// Secondary audit sinks (`--audit syslog`, `--audit journald`): copies of the records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audit_sinks: Vec<AuditSinkStatus>,
    /// Allow-list hostnames: their current address sets and when each expires.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_hosts: Vec<crate::policy::dns::HostAddrStatus>,
}

/// One secondary audit sink: what it delivered and lost, and its error while it fails.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditSinkStatus {
    /// `syslog:/dev/log`, `journald`.
    pub sink: String,
    pub sent: u64,
    pub errors: u64,
    /// Records it never got (queue full, or down).
    pub dropped: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing: Option<String>,
}

/// One kernel hook (e.g. `exec`, `open`, `connect4`) and how it is enforced.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HookStatus {
    pub hook: String,
    pub tier: Tier,
    pub attached: bool,
    /// Why this tier (e.g. "BPF LSM not enabled: lsm= lacks bpf"), or why not attached.
    pub reason: Option<String>,
}

/// One session: a cgroup directly below a root, or the root itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionStatus {
    pub name: String,
    pub path: String,
    pub cgroup_id: u64,
    /// Processes in the session's whole subtree.
    pub processes: u32,
    /// What the trajectory knows (credential touched and escalated, chains in progress).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trajectory: Option<String>,
    /// What the session's latest `guard launch` applied (`None`: not launched by guard, e.g.
    /// an adopted cgroup, or launched by an older guard).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confinement: Option<AppliedConfinement>,
}

/// Event counters since the daemon started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counters {
    /// Events the kernel sent over the ring buffer.
    pub events: u64,
    /// Events lost because the ring buffer was full.
    pub dropped: u64,
    pub exec: u64,
    pub open: u64,
    pub connect: u64,
    pub sendmsg: u64,
    pub fork: u64,
    pub exit: u64,
    pub denied: u64,
    pub killed: u64,
    pub held: u64,
    pub audit_records: u64,
    /// Opens judged and counted in the kernel but not sent (below the session's record level).
    #[serde(default)]
    pub open_unrecorded: u64,
    /// Held execs judged harmless and released: microseconds from the kernel's hold to the
    /// release (the last 4096).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_release_us: Option<LatencySummary>,
}

/// Percentiles of a latency sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

impl LatencySummary {
    /// Nearest-rank percentiles of `samples` (`None` when empty).
    pub fn of(samples: impl IntoIterator<Item = u64>) -> Option<Self> {
        let mut sorted: Vec<u64> = samples.into_iter().collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_unstable();
        let rank = |p: usize| sorted[(sorted.len() * p).div_ceil(100).max(1) - 1];
        Some(Self { count: sorted.len() as u64, p50: rank(50), p99: rank(99), max: sorted[sorted.len() - 1] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_percentiles() {
        assert_eq!(LatencySummary::of([]), None);
        let s = LatencySummary::of((1..=100).rev()).unwrap();
        assert_eq!((s.count, s.p50, s.p99, s.max), (100, 50, 99, 100));
        assert_eq!(LatencySummary::of([7]).unwrap().p99, 7);
    }

    fn sample() -> StatusReport {
        StatusReport {
            version: "0.1.0".into(),
            pid: 42,
            uptime_secs: 3600,
            policy_source: "/etc/guard/policy.toml".into(),
            enforce: true,
            hooks: vec![
                HookStatus { hook: "exec".into(), tier: Tier::Host, attached: true, reason: Some("no BPF LSM".into()) },
                HookStatus { hook: "connect4".into(), tier: Tier::Lsm, attached: false, reason: None },
            ],
            sessions: vec![SessionStatus {
                name: "s-1".into(),
                path: "/sys/fs/cgroup/guard/s-1".into(),
                cgroup_id: 1234,
                processes: 3,
                trajectory: None,
                confinement: Some(AppliedConfinement::unconfined()),
            }],
            counters: Counters { events: 10, dropped: 1, exec: 2, ..Default::default() },
            ringbuf_bytes: 1 << 20,
            audit_path: "/var/log/guard/audit.jsonl".into(),
            audit_unwritable: None,
            audit_sinks: Vec::new(),
            dns_hosts: Vec::new(),
        }
    }

    #[test]
    fn request_wire_format() {
        assert_eq!(Request::Status.to_line(), r#"{"cmd":"status"}"#);
        assert_eq!(Request::parse_line(b"{\"cmd\":\"status\"}\n").unwrap(), Request::Status);
        assert_eq!(Request::parse_line(b" { \"cmd\" : \"status\" }\r\n").unwrap(), Request::Status);
    }

    #[test]
    fn reopen_request_wire_format() {
        assert_eq!(Request::Reopen.to_line(), r#"{"cmd":"reopen"}"#);
        let record = Request::Record { cgroup: "/sys/fs/cgroup/guard/s".into(), level: crate::audit::RecordLevel::All };
        assert_eq!(record.to_line(), r#"{"cmd":"record","cgroup":"/sys/fs/cgroup/guard/s","level":"all"}"#);
        assert_eq!(Request::parse_line(record.to_line().as_bytes()).unwrap(), record);
        assert!(Request::parse_line(br#"{"cmd":"record","cgroup":"/x","level":"everything"}"#).is_err());
        assert_eq!(Request::parse_line(br#"{"cmd":"reopen"}"#).unwrap(), Request::Reopen);
    }

    #[test]
    fn confinement_request_and_reply() {
        let request = Request::Confinement { cwd: Some("/work/repo".into()) };
        assert_eq!(request.to_line(), r#"{"cmd":"confinement","cwd":"/work/repo"}"#);
        assert_eq!(Request::parse_line(request.to_line().as_bytes()).unwrap(), request);
        assert_eq!(Request::parse_line(br#"{"cmd":"confinement"}"#).unwrap(), Request::Confinement { cwd: None });
        let reply = Response::confinement(Confinement {
            landlock: true,
            write_roots: Some(vec!["/tmp".into()]),
            seccomp_deny: vec!["bpf".into()],
        });
        let line = reply.to_line();
        assert_eq!(Response::parse_line(&line).unwrap(), reply);
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["confinement"]["write_roots"][0], "/tmp");
        // Not confined by files: write_roots is null, the rest still there.
        let reply = Response::parse_line(r#"{"ok":true,"confinement":{"landlock":true,"seccomp_deny":[]}}"#).unwrap();
        assert_eq!(reply.confinement.unwrap().write_roots, None);
    }

    #[test]
    fn malformed_requests_are_refused_with_a_reason() {
        for (line, want) in [
            (&b""[..], "empty"),
            (b"\n", "empty"),
            (b"not json", "malformed"),
            (b"{}", "malformed"),
            (b"{\"cmd\":\"reboot\"}", "malformed"),
            (b"[\"status\"]", "malformed"),
            (b"{\"cmd\":\"st\xffatus\"}", "UTF-8"),
        ] {
            let err = Request::parse_line(line).unwrap_err().to_string();
            assert!(err.contains(want), "{line:?}: {err}");
        }
        // Unknown fields are ignored: a newer client may add options.
        assert_eq!(Request::parse_line(br#"{"cmd":"status","verbose":true}"#).unwrap(), Request::Status);
        let long = vec![b' '; MAX_REQUEST_LINE + 1];
        assert!(matches!(Request::parse_line(&long), Err(ProtocolError::TooLong { .. })));
    }

    #[test]
    fn response_round_trips() {
        let reply = Response::status(sample());
        let line = reply.to_line();
        assert!(!line.contains('\n'));
        assert_eq!(Response::parse_line(&line).unwrap(), reply);
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["status"]["hooks"][0]["tier"], "host");
        assert_eq!(value["status"]["hooks"][1]["tier"], "lsm");
        assert_eq!(value["status"]["counters"]["dropped"], 1);

        let err = Response::error("permission denied");
        assert_eq!(Response::parse_line(&err.to_line()).unwrap(), err);
        assert_eq!(err.to_line(), r#"{"ok":false,"error":"permission denied","status":null}"#);
    }

    #[test]
    fn replies_tolerate_missing_and_unknown_fields() {
        // An older or newer daemon: fields missing or added must not break the client.
        let reply = Response::parse_line(r#"{"ok":true,"status":{"pid":7,"future":1},"later":[]}"#).unwrap();
        let status = reply.status.unwrap();
        assert_eq!(status.pid, 7);
        assert_eq!(status.counters, Counters::default());
    }
}
