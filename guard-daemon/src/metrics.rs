//! `guard run --metrics ADDR`: Prometheus metrics on `http://ADDR/metrics`.
//!
//! Two kinds of metrics, one registry ([`prometheus_client`]):
//! - live ones the daemon updates as it goes (verdicts from the audit records it writes,
//!   decision latencies, policy reloads, audit bytes and write errors);
//! - snapshot ones read at scrape time from what `guard status` shows (the kernel's counters,
//!   sessions, hooks and their tier, the audit sinks): the same source of truth, not counted twice.
//!
//! Every label value is bounded: kinds, verdicts, detectors, tiers and sinks are fixed sets, and
//! rule ids come from the policy (past [`MAX_RULE_LABELS`] distinct ones, `_other`). Nothing is
//! labelled by pid, path, session name or anything else a session controls.

use std::{
    collections::HashSet,
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use guard_engine::{
    audit::{AuditRecord, Verdict},
    control::{StatusReport, Tier},
};
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Bytes, header, service::service_fn};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _},
    metrics::{
        MetricType,
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::{ConstGauge, Gauge},
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Registry, Unit},
};

use crate::daemon::Shared;

/// Distinct rule labels kept; past it a verdict counts under `rule="_other"`.
pub const MAX_RULE_LABELS: usize = 1000;
/// Scrapes served at once; more wait for the listener's backlog.
const MAX_CONNECTIONS: usize = 8;
/// A connection (a slow or idle scraper) is dropped after this long.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    pub verdict: String,
    pub detector: String,
    pub rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `released` or `killed`.
    pub outcome: String,
    /// `judged` (decided as the exec arrived) or `pending` (waited for a person or the timeout).
    pub decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub kind: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    pub sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookLabels {
    hook: String,
    tier: String,
    attached: String,
}

/// Event decisions: 1 µs .. ~0.5 s (20 doublings).
fn event_seconds() -> Histogram {
    Histogram::new(exponential_buckets(1e-6, 2.0, 20))
}

/// Holds wait for people: 1 ms .. ~17 min (21 doublings).
fn hold_seconds() -> Histogram {
    Histogram::new(exponential_buckets(1e-3, 2.0, 21))
}

/// What the daemon updates as it goes; cheap to update whether or not anyone scrapes.
#[derive(Debug)]
pub struct Metrics {
    pub verdicts: Family<VerdictLabels, Counter>,
    rules_seen: Mutex<HashSet<String>>,
    pub event_decision: Histogram,
    pub hold_decision: Family<OutcomeLabels, Histogram, fn() -> Histogram>,
    pub reloads: Family<ReloadLabels, Counter>,
    /// Bytes handed to the JSON audit file (or stdout), counted by the sink.
    pub audit_file_bytes: Counter,
    /// Failed writes, flushes or syncs of the JSON audit stream.
    pub audit_file_errors: Counter,
    pub pending_holds: Gauge,
    /// CLOCK_MONOTONIC ns of the last heartbeat written (0: none yet).
    pub last_heartbeat_ns: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            verdicts: Family::default(),
            rules_seen: Mutex::default(),
            event_decision: event_seconds(),
            hold_decision: Family::new_with_constructor(hold_seconds as fn() -> Histogram),
            reloads: Family::default(),
            audit_file_bytes: Counter::default(),
            audit_file_errors: Counter::default(),
            pending_holds: Gauge::default(),
            last_heartbeat_ns: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Count the verdict an audit record carries (records without one count nothing).
    pub fn count_record(&self, record: &AuditRecord) {
        if let Some(labels) = self.verdict_labels(record) {
            self.verdicts.get_or_create(&labels).inc();
        }
    }

    fn verdict_labels(&self, record: &AuditRecord) -> Option<VerdictLabels> {
        let verdict = record.verdict?;
        let rule = record.rule.as_deref().unwrap_or("");
        let rule = match self.rules_seen.lock() {
            Ok(seen) if seen.contains(rule) => rule.to_string(),
            Ok(mut seen) if seen.len() < MAX_RULE_LABELS => {
                seen.insert(rule.to_string());
                rule.to_string()
            }
            _ => "_other".to_string(),
        };
        Some(VerdictLabels {
            verdict: verdict.as_str().to_string(),
            detector: record.detector.map_or("none", |d| d.as_str()).to_string(),
            rule,
        })
    }

    pub fn policy_reload(&self, kind: &str, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads.get_or_create(&ReloadLabels { kind: kind.to_string(), result: result.to_string() }).inc();
    }

    pub fn hold_decided(&self, released: bool, pending: bool, seconds: f64) {
        let labels = OutcomeLabels {
            outcome: if released { "released" } else { "killed" }.to_string(),
            decision: if pending { "pending" } else { "judged" }.to_string(),
        };
        self.hold_decision.get_or_create(&labels).observe(seconds);
    }

    /// The deny counter's value for one detector and rule (tests, `guard status`).
    pub fn verdict_count(&self, verdict: Verdict, detector: &str, rule: &str) -> u64 {
        let labels = VerdictLabels {
            verdict: verdict.as_str().to_string(),
            detector: detector.to_string(),
            rule: rule.to_string(),
        };
        self.verdicts.get_or_create(&labels).get()
    }
}

/// One secondary audit sink's counters, shared with the thread that sends to it.
#[derive(Debug, Default)]
pub struct SinkCounters {
    pub sent: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
    /// Records the sink never got: its queue was full, or it was down.
    pub dropped: AtomicU64,
}

/// The registry of everything `/metrics` shows.
pub fn registry(
    metrics: &Arc<Metrics>,
    shared: Arc<Shared>,
    sinks: Vec<(&'static str, Arc<SinkCounters>)>,
) -> Registry {
    let mut registry = Registry::default();
    registry.register(
        "guard_verdicts",
        "Audit records with a verdict, by verdict, detector and policy rule",
        metrics.verdicts.clone(),
    );
    registry.register_with_unit(
        "guard_event_decision",
        "Time the daemon took to decide one kernel event and carry out the actions",
        Unit::Seconds,
        metrics.event_decision.clone(),
    );
    registry.register_with_unit(
        "guard_hold_decision",
        "Time from a hold in the kernel to its release or kill, by outcome and how it was decided",
        Unit::Seconds,
        metrics.hold_decision.clone(),
    );
    registry.register(
        "guard_policy_reloads",
        "Policy reloads (SIGHUP) and rescans, by result",
        metrics.reloads.clone(),
    );
    registry.register("guard_pending_holds", "Held tasks waiting for a decision", metrics.pending_holds.clone());
    registry.register_collector(Box::new(Snapshot { metrics: metrics.clone(), shared, sinks }));
    registry
}

/// Metrics read at scrape time from `guard status`'s snapshot and the sinks' counters.
#[derive(Debug)]
struct Snapshot {
    metrics: Arc<Metrics>,
    shared: Arc<Shared>,
    sinks: Vec<(&'static str, Arc<SinkCounters>)>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Result<(), std::fmt::Error> {
    ConstCounter::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn gauge<V: prometheus_client::encoding::EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: V,
) -> Result<(), std::fmt::Error> {
    ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?)
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let report: StatusReport = self.shared.report.lock().map(|r| r.clone()).unwrap_or_default();
        let c = &report.counters;
        {
            let mut family = encoder.encode_descriptor(
                "guard_events",
                "Kernel events seen by guard's programs, by kind",
                None,
                MetricType::Counter,
            )?;
            for (kind, value) in [
                ("exec", c.exec),
                ("open", c.open),
                ("connect", c.connect),
                ("sendmsg", c.sendmsg),
                ("fork", c.fork),
                ("exit", c.exit),
            ] {
                ConstCounter::new(value).encode(family.encode_family(&KindLabels { kind: kind.to_string() })?)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "guard_kernel_verdicts",
                "Operations the kernel programs refused, killed or held, by verdict",
                None,
                MetricType::Counter,
            )?;
            for (kind, value) in [("deny", c.denied), ("kill", c.killed), ("hold", c.held)] {
                ConstCounter::new(value).encode(family.encode_family(&KindLabels { kind: kind.to_string() })?)?;
            }
        }
        counter(&mut encoder, "guard_ringbuf_events", "Events the kernel queued for the daemon", c.events)?;
        counter(
            &mut encoder,
            "guard_ringbuf_dropped_events",
            "Events lost because the ring buffer was full",
            c.dropped,
        )?;
        gauge(&mut encoder, "guard_sessions", "Sessions guard governs now", None, report.sessions.len() as i64)?;
        gauge(
            &mut encoder,
            "guard_session_processes",
            "Processes in all sessions",
            None,
            report.sessions.iter().map(|s| i64::from(s.processes)).sum::<i64>(),
        )?;
        {
            let mut family = encoder.encode_descriptor(
                "guard_hook_info",
                "The enforcement tier of each kernel hook (value 1)",
                None,
                MetricType::Gauge,
            )?;
            for hook in &report.hooks {
                let labels = HookLabels {
                    hook: hook.hook.clone(),
                    tier: match hook.tier {
                        Tier::Host => "host",
                        Tier::Lsm => "lsm",
                    }
                    .to_string(),
                    attached: hook.attached.to_string(),
                };
                ConstGauge::new(1i64).encode(family.encode_family(&labels)?)?;
            }
        }
        let file = SinkLabels { sink: "file".to_string() };
        let sink_counter = |encoder: &mut DescriptorEncoder,
                            name: &str,
                            help: &str,
                            file_value: u64,
                            pick: &dyn Fn(&SinkCounters) -> u64|
         -> Result<(), std::fmt::Error> {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(file_value).encode(family.encode_family(&file)?)?;
            for (sink, counters) in &self.sinks {
                let labels = SinkLabels { sink: sink.to_string() };
                ConstCounter::new(pick(counters)).encode(family.encode_family(&labels)?)?;
            }
            Ok(())
        };
        sink_counter(&mut encoder, "guard_audit_records", "Audit records written, by sink", c.audit_records, &|s| {
            s.sent.load(Ordering::Relaxed)
        })?;
        sink_counter(
            &mut encoder,
            "guard_audit_bytes",
            "Audit bytes written, by sink",
            self.metrics.audit_file_bytes.get(),
            &|s| s.bytes.load(Ordering::Relaxed),
        )?;
        sink_counter(
            &mut encoder,
            "guard_audit_write_errors",
            "Failed audit writes, by sink",
            self.metrics.audit_file_errors.get(),
            &|s| s.errors.load(Ordering::Relaxed),
        )?;
        {
            let mut family = encoder.encode_descriptor(
                "guard_audit_dropped_records",
                "Records a secondary sink (syslog, journald) never got: queue full or sink down",
                None,
                MetricType::Counter,
            )?;
            for (sink, counters) in &self.sinks {
                let labels = SinkLabels { sink: sink.to_string() };
                ConstCounter::new(counters.dropped.load(Ordering::Relaxed)).encode(family.encode_family(&labels)?)?;
            }
        }
        gauge(
            &mut encoder,
            "guard_audit_unwritable",
            "1 while the JSON audit stream takes no writes (sessions frozen)",
            None,
            i64::from(report.audit_unwritable.is_some()),
        )?;
        let beat = self.metrics.last_heartbeat_ns.load(Ordering::Relaxed);
        let age = if beat == 0 { f64::NAN } else { crate::daemon::monotonic_ns().saturating_sub(beat) as f64 / 1e9 };
        gauge(
            &mut encoder,
            "guard_heartbeat_age",
            "Time since the daemon last wrote its heartbeat for the kernel side",
            Some(&Unit::Seconds),
            age,
        )?;
        gauge(
            &mut encoder,
            "guard_uptime",
            "Time since the daemon started",
            Some(&Unit::Seconds),
            report.uptime_secs as f64,
        )?;
        Ok(())
    }
}

/// `--metrics ADDR`: an IP address and a port, e.g. `127.0.0.1:9464` or `[::1]:9464`.
pub fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text.parse().map_err(|_| {
        format!("invalid metrics address {text:?}: expected IP:PORT, e.g. 127.0.0.1:9464 or [::1]:9464")
    })?;
    if addr.port() == 0 {
        return Err(format!("invalid metrics address {text:?}: port 0 (pick a port, e.g. 9464)"));
    }
    Ok(addr)
}

/// Bind the metrics listener (at start, before anything is attached: a taken port is an error
/// that leaves the machine as it was).
pub fn bind(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    use anyhow::Context as _;
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("--metrics {addr}: binding"))?;
    listener.set_nonblocking(true).with_context(|| format!("--metrics {addr}: non-blocking"))?;
    Ok(listener)
}

/// The text a scrape gets: Prometheus text format 0.0.4, or OpenMetrics when asked for.
pub fn render(registry: &Registry, openmetrics: bool) -> Result<(String, &'static str), std::fmt::Error> {
    let mut body = String::new();
    if openmetrics {
        prometheus_client::encoding::text::encode(&mut body, registry)?;
        Ok((body, "application/openmetrics-text; version=1.0.0; charset=utf-8"))
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut body, registry)?;
        Ok((body, prometheus_client::encoding::prometheus_text::CONTENT_TYPE))
    }
}

fn respond(registry: &Registry, request: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let plain = |status: StatusCode, text: &str| {
        let mut response = Response::new(Full::new(Bytes::from(text.to_string())));
        *response.status_mut() = status;
        response
    };
    if request.uri().path() != "/metrics" {
        return plain(StatusCode::NOT_FOUND, "guard serves /metrics only\n");
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n");
    }
    let openmetrics = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    match render(registry, openmetrics) {
        Ok((body, content_type)) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
            response
        }
        Err(_) => plain(StatusCode::INTERNAL_SERVER_ERROR, "encoding the metrics failed\n"),
    }
}

/// Serve `/metrics` on the daemon's runtime until the future is dropped.
pub async fn serve(listener: std::net::TcpListener, registry: Registry) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(err) => {
            log::error!("metrics listener: {err}");
            return;
        }
    };
    let registry = Arc::new(registry);
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                log::warn!("metrics listener: accept: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let response = respond(&registry, &request);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use guard_common::Detector;
    use guard_engine::control::{Counters, HookStatus};

    use super::*;

    fn shared(report: StatusReport) -> Arc<Shared> {
        let (calls, _) = tokio::sync::mpsc::unbounded_channel();
        Arc::new(Shared { report: Mutex::new(report), calls })
    }

    fn deny(rule: &str) -> AuditRecord {
        AuditRecord {
            verdict: Some(Verdict::Deny),
            detector: Some(Detector::Credential),
            rule: Some(rule.to_string()),
            pid: Some(4242),
            session: Some("agent-1".into()),
            path: Some("/home/u/.ssh/id_rsa".into()),
            ..Default::default()
        }
    }

    fn scrape(metrics: &Arc<Metrics>, report: StatusReport, sinks: Vec<(&'static str, Arc<SinkCounters>)>) -> String {
        render(&registry(metrics, shared(report), sinks), false).unwrap().0
    }

    /// The sample line for `name{labels}`, parsed.
    fn sample(text: &str, prefix: &str) -> Option<f64> {
        text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    #[test]
    fn names_types_and_labels_follow_prometheus_conventions() {
        let metrics = Arc::new(Metrics::default());
        metrics.count_record(&deny("ssh-keys"));
        metrics.count_record(&deny("ssh-keys"));
        metrics.count_record(&AuditRecord { event: "exec".into(), ..Default::default() });
        metrics.event_decision.observe(0.00002);
        metrics.hold_decided(true, true, 1.5);
        metrics.policy_reload("reload", true);
        metrics.policy_reload("reload", false);
        metrics.audit_file_bytes.inc_by(321);
        metrics.last_heartbeat_ns.store(crate::daemon::monotonic_ns(), Ordering::Relaxed);
        let report = StatusReport {
            hooks: vec![HookStatus { hook: "exec".into(), tier: Tier::Lsm, attached: true, reason: None }],
            counters: Counters { exec: 7, dropped: 3, denied: 2, audit_records: 9, ..Default::default() },
            ..Default::default()
        };
        let syslog = Arc::new(SinkCounters::default());
        syslog.errors.fetch_add(4, Ordering::Relaxed);
        let text = scrape(&metrics, report, vec![("syslog", syslog)]);
        let has = |line: &str| text.lines().any(|l| l == line);
        assert!(has("# TYPE guard_verdicts_total counter"), "{text}");
        assert_eq!(
            sample(&text, r#"guard_verdicts_total{verdict="deny",detector="credential",rule="ssh-keys"}"#),
            Some(2.0)
        );
        assert!(has("# TYPE guard_event_decision_seconds histogram"), "{text}");
        assert_eq!(sample(&text, "guard_event_decision_seconds_count"), Some(1.0));
        assert_eq!(
            sample(&text, r#"guard_hold_decision_seconds_count{outcome="released",decision="pending"}"#),
            Some(1.0)
        );
        assert_eq!(sample(&text, r#"guard_policy_reloads_total{kind="reload",result="failed"}"#), Some(1.0));
        assert_eq!(sample(&text, r#"guard_events_total{kind="exec"}"#), Some(7.0));
        assert_eq!(sample(&text, "guard_ringbuf_dropped_events_total"), Some(3.0));
        assert_eq!(sample(&text, r#"guard_kernel_verdicts_total{kind="deny"}"#), Some(2.0));
        assert_eq!(sample(&text, r#"guard_hook_info{hook="exec",tier="lsm",attached="true"}"#), Some(1.0));
        assert_eq!(sample(&text, r#"guard_audit_bytes_total{sink="file"}"#), Some(321.0));
        assert_eq!(sample(&text, r#"guard_audit_records_total{sink="file"}"#), Some(9.0));
        assert_eq!(sample(&text, r#"guard_audit_write_errors_total{sink="syslog"}"#), Some(4.0));
        assert_eq!(sample(&text, "guard_sessions"), Some(0.0));
        assert!(sample(&text, "guard_heartbeat_age_seconds").is_some_and(|age| (0.0..5.0).contains(&age)), "{text}");
        // Every sample is guard_-prefixed; nothing a session controls is a label.
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            assert!(line.starts_with("guard_"), "{line}");
            assert!(!line.contains("4242") && !line.contains("agent-1") && !line.contains(".ssh"), "{line}");
        }
        // OpenMetrics when asked for: same families, `# EOF` at the end.
        let (open, content_type) = render(&registry(&metrics, shared(StatusReport::default()), vec![]), true).unwrap();
        assert!(content_type.starts_with("application/openmetrics-text"));
        assert!(open.ends_with("# EOF\n"), "{open}");
    }

    #[test]
    fn rule_labels_are_bounded() {
        let metrics = Metrics::default();
        for n in 0..MAX_RULE_LABELS + 50 {
            metrics.count_record(&deny(&format!("rule-{n}")));
        }
        assert_eq!(metrics.verdict_count(Verdict::Deny, "credential", "rule-0"), 1);
        assert_eq!(metrics.verdict_count(Verdict::Deny, "credential", "_other"), 50);
        // A rule seen before the cap keeps counting under its own name.
        metrics.count_record(&deny("rule-1"));
        assert_eq!(metrics.verdict_count(Verdict::Deny, "credential", "rule-1"), 2);
    }

    #[test]
    fn metrics_addresses() {
        assert_eq!(parse_addr("127.0.0.1:9464").unwrap().to_string(), "127.0.0.1:9464");
        assert_eq!(parse_addr("[::1]:9464").unwrap().port(), 9464);
        for bad in ["9464", "localhost:9464", "127.0.0.1", "127.0.0.1:99999", "", "127.0.0.1:0"] {
            let err = parse_addr(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }
}
