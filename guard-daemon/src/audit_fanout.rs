//! `--audit` targets besides the JSON file: syslog (RFC 5424 over the local socket) and the
//! systemd journal (its native protocol, structured fields).
//!
//! The JSON file (or stdout) stays the source of truth, with its hash chain; these are copies
//! for existing log pipelines. Each secondary sink has its own thread fed by a bounded queue:
//! the daemon never waits on it. A sink that fails (socket gone, receiver stuck) counts its
//! errors and lost records ([`SinkCounters`]: metrics and `guard status`), reconnects at most
//! once a second, and the daemon writes one `audit_sink_failed` record into the JSON stream
//! when it goes down and one `audit_sink_recovered` when it comes back, not one per record.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::Ordering,
        mpsc::{Receiver, SyncSender, TrySendError},
    },
    time::{Duration, Instant},
};

use guard_engine::audit::{AuditRecord, Severity, Verdict};

use crate::metrics::SinkCounters;

/// Records waiting for one secondary sink; past it they are dropped (and counted).
const QUEUE: usize = 4096;
/// A failed sink is reconnected at most this often; records meanwhile are dropped.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);
/// A syslog message longer than this carries the key fields only (`"truncated": true`):
/// syslog daemons cut long datagrams (rsyslog's default limit is 8 KiB), the file has it whole.
pub const MAX_SYSLOG_MESSAGE: usize = 8 * 1024 - 1024;
/// How long a stopping daemon waits for the copies to send what is queued.
const FINISH_WAIT: Duration = Duration::from_secs(2);
/// syslog's default local socket.
pub const DEFAULT_SYSLOG_SOCKET: &str = "/dev/log";
/// The RFC 5424 structured-data id (32473: the enterprise number RFC 5612 reserves for examples).
pub const SD_ID: &str = "guard@32473";

/// RFC 5424 structured data as the `syslog` crate's 5424 formatter takes it (SD-ID -> params).
pub type StructuredData = std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>;

/// One `--audit` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditTarget {
    /// The JSON-lines file (`-`: stdout).
    Json(PathBuf),
    Syslog(PathBuf),
    Journald,
}

/// `FILE`, `-`, `syslog`, `syslog:SOCKET`, `journald`. (A file named `syslog` is `./syslog`.)
pub fn parse_target(text: &str) -> Result<AuditTarget, String> {
    match text.split_once(':') {
        _ if text == "syslog" => Ok(AuditTarget::Syslog(PathBuf::from(DEFAULT_SYSLOG_SOCKET))),
        _ if text == "journald" => Ok(AuditTarget::Journald),
        Some(("syslog", "")) => Err("syslog: an empty socket path (use `syslog` for /dev/log)".to_string()),
        Some(("syslog", socket)) => Ok(AuditTarget::Syslog(PathBuf::from(socket))),
        Some(("journald", _)) => Err(format!(
            "{text:?}: journald takes no socket path (the journal listens on {}); use `journald`",
            libsystemd::logging::SD_JOURNAL_SOCK_PATH
        )),
        _ if text.is_empty() => Err("an empty audit target: expected FILE, -, syslog[:SOCKET] or journald".to_string()),
        _ => Ok(AuditTarget::Json(PathBuf::from(text))),
    }
}

/// The `--audit` list: exactly one JSON stream (the default file when none is named) and any
/// secondary sinks, each at most once.
pub fn split_targets(targets: &[AuditTarget], default_json: &Path) -> Result<(PathBuf, Vec<AuditTarget>), String> {
    let json: Vec<&PathBuf> =
        targets.iter().filter_map(|t| if let AuditTarget::Json(p) = t { Some(p) } else { None }).collect();
    if json.len() > 1 {
        let list: Vec<String> = json.iter().map(|p| p.display().to_string()).collect();
        return Err(format!(
            "--audit names {} JSON streams ({}): exactly one file (or -) is the audit trail; \
             add syslog or journald for copies",
            json.len(),
            list.join(", ")
        ));
    }
    let mut secondary: Vec<AuditTarget> = Vec::new();
    for target in targets.iter().filter(|t| !matches!(t, AuditTarget::Json(_))) {
        if secondary.iter().any(|seen| sink_name(seen) == sink_name(target)) {
            return Err(format!("--audit names {} twice", sink_name(target)));
        }
        secondary.push(target.clone());
    }
    let json = json.first().map_or_else(|| default_json.to_path_buf(), |p| (*p).clone());
    Ok((json, secondary))
}

fn sink_name(target: &AuditTarget) -> &'static str {
    match target {
        AuditTarget::Json(_) => "file",
        AuditTarget::Syslog(_) => "syslog",
        AuditTarget::Journald => "journald",
    }
}

/// Syslog severity for a record: its own severity, or its verdict's weight.
fn syslog_severity(record: &AuditRecord) -> syslog::Severity {
    use syslog::Severity as S;
    match (record.severity, record.verdict) {
        (Some(Severity::Critical), _) => S::LOG_CRIT,
        (Some(Severity::High), _) => S::LOG_ERR,
        (Some(Severity::Medium), _) | (None, Some(Verdict::Deny | Verdict::Kill)) => S::LOG_WARNING,
        (Some(Severity::Low), _) | (None, Some(Verdict::Hold | Verdict::Audit)) => S::LOG_NOTICE,
        _ => S::LOG_INFO,
    }
}

/// The journal's PRIORITY, the same scale as syslog's.
fn journal_priority(record: &AuditRecord) -> libsystemd::logging::Priority {
    use libsystemd::logging::Priority as P;
    use syslog::Severity as S;
    match syslog_severity(record) {
        S::LOG_CRIT => P::Critical,
        S::LOG_ERR => P::Error,
        S::LOG_WARNING => P::Warning,
        S::LOG_NOTICE => P::Notice,
        _ => P::Info,
    }
}

/// The record's key fields, by name (journald upper-cases them, syslog's structured data
/// keeps them lower case).
fn key_fields(record: &AuditRecord) -> Vec<(&'static str, String)> {
    let mut fields = vec![("event", record.event.clone()), ("seq", record.seq.to_string())];
    let mut opt = |name: &'static str, value: Option<String>| {
        if let Some(value) = value {
            fields.push((name, value));
        }
    };
    opt("verdict", record.verdict.map(|v| v.as_str().to_string()));
    opt("detector", record.detector.map(|d| d.as_str().to_string()));
    opt("rule", record.rule.clone());
    opt("severity", record.severity.map(|s| s.as_str().to_string()));
    opt("session", record.session.clone());
    opt("cgroup_id", record.cgroup_id.map(|v| v.to_string()));
    opt("pid", record.pid.map(|v| v.to_string()));
    opt("ppid", record.ppid.map(|v| v.to_string()));
    opt("comm", record.comm.clone());
    opt("exe", record.exe.clone());
    opt("path", record.path.clone());
    opt("addr", record.addr.clone());
    opt("port", record.port.map(|v| v.to_string()));
    opt("hold_id", record.hold_id.map(|v| v.to_string()));
    opt("mitre", record.mitre.clone());
    fields
}

/// The record as JSON for a copy: without `prev_hash` (the chain lives in the JSON file; a copy
/// is not part of it).
fn record_json(record: &AuditRecord) -> String {
    let mut value = serde_json::to_value(record).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.remove("prev_hash");
    }
    value.to_string()
}

fn summary(record: &AuditRecord) -> String {
    record.reason.clone().unwrap_or_else(|| record.event.clone())
}

/// The journal entry for a record: upper-case field names (`VERDICT=deny`, `RULE=...`,
/// `SESSION=...`, `PID=...`), the whole record as JSON in `GUARD_RECORD`, and
/// `SYSLOG_IDENTIFIER=guard`. MESSAGE and PRIORITY are given apart.
pub fn journal_fields(record: &AuditRecord) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> =
        key_fields(record).into_iter().map(|(k, v)| (k.to_ascii_uppercase(), v)).collect();
    if let Some(argv) = &record.argv {
        fields.push(("ARGV".into(), argv.join(" ")));
    }
    fields.push(("GUARD_RECORD".into(), record_json(record)));
    fields.push(("SYSLOG_IDENTIFIER".into(), "guard".into()));
    fields
}

/// RFC 5424 structured data (`[guard@32473 event="exec" verdict="deny" ...]`) and the message
/// (the record as JSON, for collectors that parse it).
pub fn syslog_parts(record: &AuditRecord) -> (StructuredData, String) {
    let fields = key_fields(record);
    let mut message = record_json(record);
    if message.len() > MAX_SYSLOG_MESSAGE {
        let mut short: serde_json::Map<String, serde_json::Value> =
            fields.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(v.as_str()))).collect();
        short.insert("truncated".into(), true.into());
        short.insert("bytes".into(), message.len().into());
        message = serde_json::Value::Object(short).to_string();
    }
    let params = fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    let mut data = StructuredData::new();
    data.insert(SD_ID.to_string(), params);
    (data, message)
}

/// What the daemon writes into the JSON stream about a secondary sink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkChange {
    Failed { error: String },
    Recovered,
}

/// One secondary sink as the daemon holds it.
pub struct Secondary {
    pub name: &'static str,
    pub target: String,
    queue: SyncSender<AuditRecord>,
    pub counters: Arc<SinkCounters>,
    /// The last error while failing; `None` once a record went through again.
    failing: Arc<Mutex<Option<String>>>,
    thread: std::thread::JoinHandle<()>,
    /// What the JSON stream was last told (true: it was told the sink failed).
    reported_down: bool,
}

impl Secondary {
    /// Start the sink's thread. Nothing is connected yet: a missing socket is a failure the
    /// JSON stream records, not a reason to refuse to start.
    pub fn start(target: &AuditTarget) -> anyhow::Result<Self> {
        let (queue, records) = std::sync::mpsc::sync_channel(QUEUE);
        let counters = Arc::new(SinkCounters::default());
        let failing = Arc::new(Mutex::new(None));
        let (name, describe, sender): (&'static str, String, Box<dyn Sender>) = match target {
            AuditTarget::Syslog(socket) => {
                ("syslog", format!("syslog:{}", socket.display()), Box::new(SyslogSender::new(socket.clone())))
            }
            AuditTarget::Journald => ("journald", "journald".to_string(), Box::new(JournalSender)),
            AuditTarget::Json(path) => anyhow::bail!("{} is the JSON stream, not a secondary sink", path.display()),
        };
        let (thread_counters, thread_failing) = (counters.clone(), failing.clone());
        let thread = std::thread::Builder::new()
            .name(format!("audit-{name}"))
            .spawn(move || run_sink(sender, records, &thread_counters, &thread_failing))
            .map_err(|err| anyhow::anyhow!("starting the {name} audit thread: {err}"))?;
        Ok(Self { name, target: describe, queue, counters, failing, thread, reported_down: false })
    }

    /// On stop: send the last record, and give what is queued a moment to go out (a stuck
    /// receiver does not keep the daemon from exiting).
    pub fn finish(copies: Vec<Self>, last: &AuditRecord) {
        let threads: Vec<_> = copies
            .into_iter()
            .map(|copy| {
                copy.send(last);
                copy.thread
            })
            .collect();
        let deadline = Instant::now() + FINISH_WAIT;
        while threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Queue a copy; a full queue drops it (counted): the daemon never waits for a sink.
    pub fn send(&self, record: &AuditRecord) {
        match self.queue.try_send(record.clone()) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A change the JSON stream has not been told of yet (once per failure, once per recovery).
    pub fn take_change(&mut self) -> Option<SinkChange> {
        let error = self.failing.lock().ok()?.clone();
        match (error, self.reported_down) {
            (Some(error), false) => {
                self.reported_down = true;
                Some(SinkChange::Failed { error })
            }
            (None, true) => {
                self.reported_down = false;
                Some(SinkChange::Recovered)
            }
            _ => None,
        }
    }

    /// For `guard status`.
    pub fn status(&self) -> guard_engine::control::AuditSinkStatus {
        guard_engine::control::AuditSinkStatus {
            sink: self.target.clone(),
            sent: self.counters.sent.load(Ordering::Relaxed),
            errors: self.counters.errors.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            failing: self.failing.lock().ok().and_then(|f| f.clone()),
        }
    }
}

/// How one kind of sink delivers a record (on its own thread).
trait Sender: Send {
    fn connect(&mut self) -> Result<(), String>;
    /// Bytes sent, or why not (then the connection is dropped and made again later).
    fn send(&mut self, record: &AuditRecord) -> Result<usize, String>;
    fn disconnect(&mut self);
}

fn run_sink(
    mut sender: Box<dyn Sender>,
    records: Receiver<AuditRecord>,
    counters: &SinkCounters,
    failing: &Mutex<Option<String>>,
) {
    let mut connected = false;
    let mut last_attempt: Option<Instant> = None;
    let set_failing = |error: Option<String>| {
        if let Ok(mut f) = failing.lock() {
            *f = error;
        }
    };
    // Ends when the daemon drops its side.
    for record in records {
        if !connected {
            if last_attempt.is_some_and(|at| at.elapsed() < RECONNECT_EVERY) {
                counters.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            last_attempt = Some(Instant::now());
            if let Err(error) = sender.connect() {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                counters.dropped.fetch_add(1, Ordering::Relaxed);
                set_failing(Some(error));
                continue;
            }
            connected = true;
        }
        match sender.send(&record) {
            Ok(bytes) => {
                counters.sent.fetch_add(1, Ordering::Relaxed);
                counters.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                set_failing(None);
            }
            Err(error) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                counters.dropped.fetch_add(1, Ordering::Relaxed);
                set_failing(Some(error));
                sender.disconnect();
                connected = false;
                last_attempt = Some(Instant::now());
            }
        }
    }
}

struct SyslogSender {
    socket: PathBuf,
    logger: Option<syslog::Logger<syslog::LoggerBackend, syslog::Formatter5424>>,
}

impl SyslogSender {
    fn new(socket: PathBuf) -> Self {
        Self { socket, logger: None }
    }
}

impl Sender for SyslogSender {
    fn connect(&mut self) -> Result<(), String> {
        let formatter = syslog::Formatter5424 {
            facility: syslog::Facility::LOG_AUTH,
            process: "guard".to_string(),
            ..Default::default()
        };
        let logger = syslog::unix_custom(formatter, &self.socket)
            .map_err(|err| format!("connecting to syslog at {}: {err}", self.socket.display()))?;
        self.logger = Some(logger);
        Ok(())
    }

    fn send(&mut self, record: &AuditRecord) -> Result<usize, String> {
        let Some(logger) = self.logger.as_mut() else { return Err("not connected".to_string()) };
        let (data, message) = syslog_parts(record);
        let bytes = message.len();
        // MSGID: the record's sequence number (the crate takes a number there).
        let line = (record.seq as u32, data, message);
        let sent = match syslog_severity(record) {
            syslog::Severity::LOG_CRIT => logger.crit(line),
            syslog::Severity::LOG_ERR => logger.err(line),
            syslog::Severity::LOG_WARNING => logger.warning(line),
            syslog::Severity::LOG_NOTICE => logger.notice(line),
            _ => logger.info(line),
        };
        sent.map(|()| bytes).map_err(|err| format!("sending to syslog at {}: {err}", self.socket.display()))
    }

    fn disconnect(&mut self) {
        self.logger = None;
    }
}

/// The journal's native protocol via `libsystemd` (its socket is fixed; nothing to connect).
struct JournalSender;

impl Sender for JournalSender {
    fn connect(&mut self) -> Result<(), String> {
        Ok(())
    }

    fn send(&mut self, record: &AuditRecord) -> Result<usize, String> {
        let fields = journal_fields(record);
        let message = summary(record);
        let bytes = message.len() + fields.iter().map(|(k, v)| k.len() + v.len() + 2).sum::<usize>();
        libsystemd::logging::journal_send(journal_priority(record), &message, fields.into_iter())
            .map(|()| bytes)
            .map_err(|err| format!("sending to the journal: {err}"))
    }

    fn disconnect(&mut self) {}
}

#[cfg(test)]
mod tests {
    use guard_common::Detector;

    use super::*;

    fn deny() -> AuditRecord {
        AuditRecord {
            seq: 17,
            event: "open".into(),
            verdict: Some(Verdict::Deny),
            detector: Some(Detector::Credential),
            rule: Some("ssh-keys".into()),
            session: Some("agent-1".into()),
            pid: Some(4242),
            path: Some("/home/u/.ssh/id_rsa".into()),
            reason: Some("read of a credential".into()),
            ..Default::default()
        }
    }

    #[test]
    fn audit_targets_parse() {
        assert_eq!(parse_target("syslog"), Ok(AuditTarget::Syslog("/dev/log".into())));
        assert_eq!(parse_target("syslog:/tmp/x.sock"), Ok(AuditTarget::Syslog("/tmp/x.sock".into())));
        assert_eq!(parse_target("journald"), Ok(AuditTarget::Journald));
        assert_eq!(parse_target("-"), Ok(AuditTarget::Json("-".into())));
        assert_eq!(parse_target("./syslog"), Ok(AuditTarget::Json("./syslog".into())));
        assert_eq!(parse_target("/var/log/a:b.jsonl"), Ok(AuditTarget::Json("/var/log/a:b.jsonl".into())));
        assert!(parse_target("journald:/x").unwrap_err().contains("journald takes no socket path"));
        assert!(parse_target("syslog:").is_err() && parse_target("").is_err());
    }

    #[test]
    fn exactly_one_json_stream() {
        let default = Path::new("/var/log/guard/audit.jsonl");
        let targets = |list: &[&str]| list.iter().map(|t| parse_target(t).unwrap()).collect::<Vec<_>>();
        let (json, secondary) = split_targets(&targets(&["syslog", "a.jsonl", "journald"]), default).unwrap();
        assert_eq!(json, PathBuf::from("a.jsonl"));
        assert_eq!(secondary, vec![AuditTarget::Syslog("/dev/log".into()), AuditTarget::Journald]);
        // Only copies named: the default file stays the trail.
        assert_eq!(split_targets(&targets(&["syslog"]), default).unwrap().0, default);
        let err = split_targets(&targets(&["a.jsonl", "-"]), default).unwrap_err();
        assert!(err.contains("2 JSON streams (a.jsonl, -)") && err.contains("exactly one"), "{err}");
        let err = split_targets(&targets(&["syslog", "syslog:/x"]), default).unwrap_err();
        assert!(err.contains("syslog twice"), "{err}");
    }

    #[test]
    fn journal_fields_are_upper_case_and_carry_the_record() {
        let fields = journal_fields(&deny());
        let get = |k: &str| fields.iter().find(|(name, _)| name == k).map(|(_, v)| v.as_str());
        assert_eq!(get("VERDICT"), Some("deny"));
        assert_eq!(get("DETECTOR"), Some("credential"));
        assert_eq!(get("RULE"), Some("ssh-keys"));
        assert_eq!(get("SESSION"), Some("agent-1"));
        assert_eq!(get("PID"), Some("4242"));
        assert_eq!(get("EVENT"), Some("open"));
        assert_eq!(get("SYSLOG_IDENTIFIER"), Some("guard"));
        let record = AuditRecord::from_json_line(get("GUARD_RECORD").unwrap()).unwrap();
        assert_eq!(record, deny());
        // Valid journal field names: upper case, digits, underscore, not starting with `_`.
        for (name, _) in &fields {
            assert!(!name.starts_with('_'), "{name}");
            assert!(name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'), "{name}");
        }
        assert!(matches!(journal_priority(&deny()), libsystemd::logging::Priority::Warning));
        assert!(get("ARGV").is_none(), "absent fields are left out");
    }

    #[test]
    fn syslog_structured_data_and_message() {
        let (data, message) = syslog_parts(&deny());
        let params = &data[SD_ID];
        assert_eq!(params["verdict"], "deny");
        assert_eq!(params["rule"], "ssh-keys");
        assert_eq!(params["pid"], "4242");
        assert_eq!(AuditRecord::from_json_line(&message).unwrap(), deny());
        assert!(matches!(syslog_severity(&deny()), syslog::Severity::LOG_WARNING));
        // A long record: key fields only, still JSON, said to be cut.
        let mut long = deny();
        long.argv = Some(vec!["x".repeat(MAX_SYSLOG_MESSAGE)]);
        let (data, message) = syslog_parts(&long);
        assert!(message.len() <= MAX_SYSLOG_MESSAGE, "{}", message.len());
        let short: serde_json::Value = serde_json::from_str(&message).unwrap();
        assert_eq!((short["truncated"].as_bool(), short["rule"].as_str()), (Some(true), Some("ssh-keys")));
        assert_eq!(data[SD_ID]["verdict"], "deny");
    }

    #[test]
    fn a_failed_sink_counts_and_reports_once() {
        let dir = crate::audit_sink::tests::TempDir::new("fanout");
        let socket = dir.0.join("log.sock");
        let mut sink = Secondary::start(&AuditTarget::Syslog(socket.clone())).unwrap();
        // No one listens: the first record fails, the next ones are dropped until a reconnect.
        for _ in 0..5 {
            sink.send(&deny());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while sink.counters.dropped.load(Ordering::Relaxed) < 5 {
            assert!(Instant::now() < deadline, "records not accounted for: {:?}", sink.status());
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(sink.counters.errors.load(Ordering::Relaxed), 1);
        assert!(matches!(sink.take_change(), Some(SinkChange::Failed { error }) if error.contains("log.sock")));
        assert_eq!(sink.take_change(), None, "reported once");
        // A receiver appears: after the reconnect delay, records flow and the sink recovers.
        let receiver = std::os::unix::net::UnixDatagram::bind(&socket).unwrap();
        receiver.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        std::thread::sleep(RECONNECT_EVERY + Duration::from_millis(100));
        sink.send(&deny());
        let mut buf = vec![0; 65536];
        let n = receiver.recv(&mut buf).unwrap();
        let line = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(line.starts_with("<36>1 "), "LOG_AUTH|warning, RFC 5424 version 1: {line}");
        assert!(line.contains(r#"[guard@32473 "#) && line.contains(r#"verdict="deny""#), "{line}");
        while sink.counters.sent.load(Ordering::Relaxed) < 1 {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(sink.take_change(), Some(SinkChange::Recovered));
        assert_eq!(sink.take_change(), None);
    }
}
