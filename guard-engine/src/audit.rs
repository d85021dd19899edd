//! Audit records: one JSON object per line, append-only.
//!
//! The schema is documented in README.md ("Audit stream"). Operators and tools build on it, so
//! fields are only ever added: never renamed, removed or retyped.

use guard_common::Detector;
use serde::{Deserialize, Serialize};

pub mod chain;

/// What happened to the operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Let through; nothing matched.
    Allow,
    /// Refused with EPERM before it happened.
    Deny,
    /// The task was killed before user code ran again.
    Kill,
    /// Stopped before its first instruction, waiting for a decision.
    Hold,
    /// A rule matched in monitor mode: let through and flagged.
    Audit,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::Kill => "kill",
            Verdict::Hold => "hold",
            Verdict::Audit => "audit",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "allow" => Verdict::Allow,
            "deny" => Verdict::Deny,
            "kill" => Verdict::Kill,
            "hold" => Verdict::Hold,
            "audit" => Verdict::Audit,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// How much of what sessions do the audit stream records (policy `audit.record`, overridden by
/// `guard run --record`): one enum with the kernel's value, serialised by name.
pub use guard_common::RecordLevel;

/// One line of the audit stream.
///
/// The core fields are always present (null when unknown); event fields appear when they apply.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// RFC 3339 with nanoseconds, UTC.
    pub ts: String,
    /// Monotonic per daemon run, starting at 1.
    pub seq: u64,
    /// Session name (the session cgroup's directory name); null for daemon records.
    pub session: Option<String>,
    pub cgroup_id: Option<u64>,
    pub pid: Option<u32>,
    pub ppid: Option<u32>,
    pub comm: Option<String>,
    pub exe: Option<String>,
    /// exec, open, connect, sendmsg, fork, exit, or a daemon event (start, stop, drops, ...).
    pub event: String,
    pub verdict: Option<Verdict>,
    pub detector: Option<Detector>,
    pub rule: Option<String>,
    pub severity: Option<Severity>,
    pub mitre: Option<String>,
    pub reason: Option<String>,

    // Event fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ino: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_pid: Option<u32>,
    /// open: the credential's consumer that read it (its own business, recorded once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<String>,
    /// The task a self-protection record is about (held task or daemon).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_pid: Option<u32>,
    /// Id of a held command waiting for a person (`guard approve ID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_id: Option<u64>,
    /// exec: where a destructive rule's match came from: `argv`, `env:NAME` (an environment
    /// variable such as `TF_CLI_ARGS_apply`) or `file:PATH:LINE` (a script or config file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// exit: what the process did over its life, counted in the kernel (the allowed opens a
    /// record level leaves out of the stream are counted here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<ProcessCounts>,
    /// Free-form details for daemon records (counters, tiers, errors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
    /// Hex BLAKE3 of the previous line's exact bytes ([`chain`]); set by [`chain::Chain::seal`]
    /// as the line is written, so always present in the stream. Last, so the fields a reader
    /// looks at come first. Lines written before the chain existed have none.
    #[serde(default)]
    pub prev_hash: Option<String>,
}

/// A process's operations, as its `exit` record carries them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessCounts {
    pub opens: u64,
    /// Opens for write (write access, O_CREAT, O_TRUNC).
    pub writes: u64,
    /// connect and sendmsg calls.
    pub connects: u64,
    /// Operations refused (EPERM) or answered with a kill.
    pub denials: u64,
}

impl AuditRecord {
    /// The JSON line (without the trailing newline).
    pub fn to_json_line(&self) -> String {
        // Serialising a struct of strings, numbers and options cannot fail.
        serde_json::to_string(self).unwrap_or_else(|err| {
            format!(r#"{{"event":"internal_error","reason":"audit serialisation failed: {err}"}}"#)
        })
    }

    /// Parse one line of the audit stream.
    pub fn from_json_line(line: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(line)
    }
}

/// RFC 3339 with nanoseconds in UTC, as used by `ts`.
pub fn format_ts(unix_ns: i128) -> String {
    let secs = unix_ns.div_euclid(1_000_000_000) as i64;
    let nanos = unix_ns.rem_euclid(1_000_000_000) as u32;
    match chrono::DateTime::from_timestamp(secs, nanos) {
        Some(dt) => dt.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        None => String::from("1970-01-01T00:00:00.000000000Z"),
    }
}

/// Assigns `seq` and keeps the stream's order.
#[derive(Debug, Default)]
pub struct Sequencer {
    next: u64,
}

impl Sequencer {
    pub fn stamp(&mut self, record: &mut AuditRecord) {
        self.next += 1;
        record.seq = self.next;
    }

    pub fn last(&self) -> u64 {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_fields_always_serialised_event_fields_only_when_set() {
        let record = AuditRecord {
            ts: format_ts(1_700_000_000_123_456_789),
            seq: 7,
            event: "open".into(),
            verdict: Some(Verdict::Allow),
            path: Some("/etc/hostname".into()),
            ..Default::default()
        };
        let value: serde_json::Value = serde_json::from_str(&record.to_json_line()).unwrap();
        for key in [
            "ts",
            "seq",
            "session",
            "cgroup_id",
            "pid",
            "ppid",
            "comm",
            "exe",
            "event",
            "verdict",
            "detector",
            "rule",
            "severity",
            "mitre",
            "reason",
            "prev_hash",
        ] {
            assert!(value.get(key).is_some(), "missing core field {key}");
        }
        assert_eq!(value["path"], "/etc/hostname");
        assert!(value.get("addr").is_none());
        assert_eq!(value["ts"], "2023-11-14T22:13:20.123456789Z");
        assert_eq!(value["verdict"], "allow");
    }

    #[test]
    fn round_trips() {
        let record = AuditRecord {
            ts: format_ts(0),
            seq: 1,
            event: "connect".into(),
            verdict: Some(Verdict::Deny),
            severity: Some(Severity::High),
            addr: Some("::1".into()),
            port: Some(443),
            ..Default::default()
        };
        let back = AuditRecord::from_json_line(&record.to_json_line()).unwrap();
        assert_eq!(back, record);
    }

    #[test]
    fn record_levels_by_name() {
        for level in RecordLevel::ALL {
            assert_eq!(RecordLevel::parse(level.as_str()), Some(level));
            assert_eq!(serde_json::to_value(level).unwrap(), level.as_str());
        }
        assert_eq!(RecordLevel::parse("everything"), None);
        assert_eq!(RecordLevel::default(), RecordLevel::Decisions);
    }

    #[test]
    fn sequencer_is_monotonic() {
        let mut seq = Sequencer::default();
        let mut a = AuditRecord::default();
        let mut b = AuditRecord::default();
        seq.stamp(&mut a);
        seq.stamp(&mut b);
        assert_eq!((a.seq, b.seq), (1, 2));
    }
}
