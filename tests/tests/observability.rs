//! Issue "Ship it", deliverables 2 and 3: Prometheus metrics (`guard run --metrics`) and audit
//! copies into existing log pipelines (`--audit syslog[:SOCKET]`, `--audit journald`), on the
//! real kernel (host tier), with a real rsyslogd and `promtool`.

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use guard_tests::{
    ChildGuard, Guard, TempDir, can_run, default_policy_value, ensure_tool, fake_tools, guard_bin, path_with,
    policy_text, ran_marker, scaled, was_killed,
};
use serde_json::Value;

/// A port nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("binding a probe port").local_addr().expect("probe port").port()
}

/// `GET path` over HTTP/1.1: status code and body.
fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting to the metrics port");
    stream.set_read_timeout(Some(scaled(Duration::from_secs(10)))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("reading the HTTP response");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    (status, body.to_string())
}

/// The value of the sample `series` (name and labels exactly as exposed), if present.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `psql -c "DROP DATABASE prod"` in `session` (a fake psql): the default policy's
/// `sql-destructive` rule stops it before it runs. Returns the record of that verdict.
fn destructive_command(guard: &Guard, session: &str) -> Value {
    let bin = TempDir::new("obs-bin");
    fake_tools(bin.path(), &["psql"]);
    let out = guard
        .launch_cmd(session, &["psql", "-c", "DROP DATABASE prod"])
        .env("PATH", path_with(bin.path()))
        .stdin(Stdio::null())
        .output()
        .expect("running guard launch");
    assert!(was_killed(&out.status) || !out.status.success(), "psql DROP DATABASE ran: {out:?}\n{}", guard.dump());
    assert!(!ran_marker(bin.path(), "psql").exists(), "psql ran");
    guard.wait_for("the verdict on DROP DATABASE", |r| {
        r["session"] == session
            && r["event"] == "exec"
            && r["rule"] == "sql-destructive"
            && (r["verdict"] == "kill" || r["verdict"] == "deny")
    })
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn metrics_count_a_denial_and_pass_promtool() {
    if !can_run("metrics_count_a_denial_and_pass_promtool") {
        return;
    }
    // A bad address is refused by the command line, naming the option.
    let out = Command::new(guard_bin()).args(["run", "--metrics", "localhost"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("--metrics") && stderr.contains("invalid metrics address"),
        "{stderr}"
    );

    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let guard = Guard::start_with(Some(&policy_text(&default_policy_value())), &["--metrics", &addr]);
    let (status, before) = http_get(port, "/metrics");
    assert_eq!(status, 200, "{before}");
    assert_eq!(http_get(port, "/other").0, 404);

    let record = destructive_command(&guard, "metrics");
    let verdict = record["verdict"].as_str().unwrap().to_string();
    let series =
        format!(r#"guard_verdicts_total{{verdict="{verdict}",detector="destructive",rule="sql-destructive"}}"#);
    let was = sample(&before, &series).unwrap_or(0.0);
    // The status snapshot (kernel counters) refreshes once a second.
    let deadline = Instant::now() + scaled(Duration::from_secs(10));
    let after = loop {
        let (_, after) = http_get(port, "/metrics");
        if sample(&after, r#"guard_events_total{kind="exec"}"#).unwrap_or(0.0) >= 1.0 || Instant::now() > deadline {
            break after;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(sample(&after, &series), Some(was + 1.0), "{series} before {was}; scrape:\n{after}");
    assert!(sample(&after, r#"guard_events_total{kind="exec"}"#).is_some_and(|n| n >= 1.0), "{after}");
    assert!(sample(&after, "guard_event_decision_seconds_count").is_some_and(|n| n >= 1.0), "{after}");
    // The exec was held in the kernel and judged at once: one hold decision, killed (host tier).
    if verdict == "kill" {
        let held = r#"guard_hold_decision_seconds_count{outcome="killed",decision="judged"}"#;
        assert_eq!(sample(&after, held), Some(1.0), "{after}");
    }
    assert!(after.contains(r#"guard_hook_info{hook="exec",tier=""#), "{after}");
    assert!(sample(&after, "guard_heartbeat_age_seconds").is_some_and(|age| age < 10.0), "{after}");
    assert!(sample(&after, r#"guard_audit_bytes_total{sink="file"}"#).is_some_and(|n| n > 0.0), "{after}");
    assert_eq!(sample(&after, "guard_pending_holds"), Some(0.0), "{after}");
    assert!(sample(&after, "guard_sessions").is_some(), "{after}");

    if !ensure_tool("metrics_count_a_denial_and_pass_promtool", "promtool", "prometheus") {
        return;
    }
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running promtool");
    promtool.stdin.take().unwrap().write_all(after.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    println!("scrape after the denial:\n{after}");
    assert!(
        checked.status.success() && checked.stdout.is_empty() && checked.stderr.is_empty(),
        "promtool check metrics: {checked:?}\n{after}"
    );
}

/// A test-private rsyslogd: imuxsock on its own socket, an omfile of its own, killed on drop.
struct Rsyslog {
    server: Option<ChildGuard>,
    socket: PathBuf,
    out: PathBuf,
    _dir: TempDir,
}

impl Rsyslog {
    fn start() -> Self {
        let dir = TempDir::new("rsyslog");
        let socket = dir.path().join("log.sock");
        let out = dir.path().join("messages");
        let conf = dir.path().join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                r#"global(workDirectory="{dir}" maxMessageSize="64k")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{socket}" UseSpecialParser="off" ParseHostname="on" RateLimit.Interval="0")
*.* action(type="omfile" file="{out}" template="RSYSLOG_SyslogProtocol23Format")
"#,
                dir = dir.path().display(),
                socket = socket.display(),
                out = out.display()
            ),
        )
        .unwrap();
        let child = Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(dir.path().join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("rsyslogd.stderr")).unwrap())
            .spawn()
            .expect("starting rsyslogd");
        let mut rsyslog = Rsyslog { server: Some(ChildGuard(child)), socket, out, _dir: dir };
        let deadline = Instant::now() + scaled(Duration::from_secs(20));
        while !rsyslog.socket.exists() {
            if let Some(status) = rsyslog.server.as_mut().and_then(ChildGuard::exited) {
                panic!("rsyslogd exited ({status}): {}", rsyslog.stderr());
            }
            assert!(Instant::now() < deadline, "rsyslogd made no socket: {}", rsyslog.stderr());
            std::thread::sleep(Duration::from_millis(50));
        }
        rsyslog
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("rsyslogd.stderr")).unwrap_or_default()
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out).unwrap_or_default().lines().map(str::to_string).collect()
    }

    fn stop(&mut self) {
        self.server = None;
    }
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn a_real_rsyslog_receives_the_deny_record() {
    let case = "a_real_rsyslog_receives_the_deny_record";
    if !can_run(case) || !ensure_tool(case, "rsyslogd", "rsyslog") {
        return;
    }
    let mut rsyslog = Rsyslog::start();
    let copy = format!("syslog:{}", rsyslog.socket.display());
    let policy = policy_text(&default_policy_value());
    // Two JSON files: refused, naming both.
    let dir = TempDir::new("two-files");
    let out = guard_tests::run_command(Path::new("/nonexistent"), &dir.path().join("a.jsonl"), &dir.path().join("s"))
        .arg("--audit")
        .arg(dir.path().join("b.jsonl"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("2 JSON streams"), "{stderr}");

    let guard = Guard::start_with(Some(&policy), &["--audit", &copy]);
    let record = destructive_command(&guard, "syslog");
    let seq = record["seq"].as_u64().unwrap();
    let deadline = Instant::now() + scaled(Duration::from_secs(15));
    let line = loop {
        let found = rsyslog.lines().into_iter().find(|l| l.contains(r#"rule="sql-destructive""#));
        if let Some(line) = found {
            break line;
        }
        assert!(
            Instant::now() < deadline,
            "rsyslog got no deny record; it has:\n{:?}\n{}",
            rsyslog.lines(),
            rsyslog.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("rsyslog wrote: {line}");
    // RFC 5424 as rsyslog parsed it: <PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] MSG.
    let fields: Vec<&str> = line.splitn(7, ' ').collect();
    assert!(fields[0].starts_with('<') && fields[0].ends_with(">1"), "{line}");
    assert_eq!(fields[3], "guard", "APP-NAME: {line}");
    assert_eq!(fields[4], guard.daemon_pid().to_string(), "PROCID: {line}");
    assert_eq!(fields[5], seq.to_string(), "MSGID is the record's seq: {line}");
    let verdict = record["verdict"].as_str().unwrap();
    for param in [
        format!(r#"verdict="{verdict}""#),
        r#"detector="destructive""#.to_string(),
        r#"session="syslog""#.to_string(),
        format!(r#"seq="{seq}""#),
    ] {
        assert!(fields[6].starts_with("[guard@32473 ") && fields[6].contains(&param), "{param} in {line}");
    }
    let json = &fields[6][fields[6].find("] ").expect("MSG after the structured data") + 2..];
    let copied: Value =
        serde_json::from_str(json.trim()).unwrap_or_else(|err| panic!("MSG is not JSON ({err}): {line}"));
    assert_eq!(copied["seq"], record["seq"]);
    assert_eq!(copied["rule"], "sql-destructive");
    assert!(copied.get("prev_hash").is_none(), "the chain stays in the JSON file: {copied}");

    // rsyslog goes away: the daemon goes on, the JSON stream keeps every record and says once
    // that the copy fails; status and metrics count it.
    rsyslog.stop();
    let again = destructive_command(&guard, "syslog-gone");
    guard.wait_for("audit_sink_failed", |r| r["event"] == "audit_sink_failed");
    let _ = destructive_command(&guard, "syslog-gone-2");
    std::thread::sleep(Duration::from_millis(1500));
    let records = guard.records();
    let failed: Vec<&Value> = records.iter().filter(|r| r["event"] == "audit_sink_failed").collect();
    assert_eq!(failed.len(), 1, "one failure record, not one per record: {failed:?}");
    assert!(failed[0]["details"]["sink"].as_str().unwrap().starts_with("syslog:"), "{}", failed[0]);
    assert!(records.iter().any(|r| r["seq"] == again["seq"] && r["rule"] == "sql-destructive"));
    let status = guard.status();
    let sink = &status["audit_sinks"][0];
    assert!(sink["errors"].as_u64().unwrap() >= 1 && sink["failing"].is_string(), "{status}");
}

/// One native-protocol journal entry: `KEY=value\n`, or `KEY\n<u64 LE length>value\n`.
fn journal_entry(datagram: &[u8]) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    let mut rest = datagram;
    while !rest.is_empty() {
        let end = rest.iter().position(|&b| b == b'\n' || b == b'=').expect("field name ends");
        let name = String::from_utf8_lossy(&rest[..end]).to_string();
        if rest[end] == b'=' {
            let value_end = rest[end..].iter().position(|&b| b == b'\n').map_or(rest.len(), |n| end + n);
            fields.push((name, String::from_utf8_lossy(&rest[end + 1..value_end]).to_string()));
            rest = &rest[(value_end + 1).min(rest.len())..];
        } else {
            let len = u64::from_le_bytes(rest[end + 1..end + 9].try_into().unwrap()) as usize;
            let value = &rest[end + 9..end + 9 + len];
            fields.push((name, String::from_utf8_lossy(value).to_string()));
            rest = &rest[(end + 10 + len).min(rest.len())..];
        }
    }
    fields
}

#[test]
#[ignore = "needs root: loads BPF programs, creates cgroups and a mount namespace"]
fn journald_copies_carry_structured_fields() {
    let case = "journald_copies_carry_structured_fields";
    if !can_run(case) || !ensure_tool(case, "unshare", "util-linux") {
        return;
    }
    // The journal's socket is fixed (/run/systemd/journal/socket): the daemon runs in a private
    // mount namespace where /run/systemd is this directory, and the test is the journal. A host
    // without systemd (the qemu guests) has no /run/systemd to mount over: it gets an empty one
    // (sd_booted looks for /run/systemd/system, which this does not create).
    let run_systemd = TempDir::new("run-systemd");
    std::fs::create_dir(run_systemd.path().join("journal")).unwrap();
    let journal = UnixDatagram::bind(run_systemd.path().join("journal/socket")).expect("binding the journal socket");
    journal.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let dir = run_systemd.path().to_str().unwrap().to_string();
    let wrapper = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        r#"mkdir -p /run/systemd && mount --bind "$0" /run/systemd && exec "$@""#,
        &dir,
    ];
    let guard =
        Guard::start_through(&wrapper, Some(&policy_text(&default_policy_value())), &["--audit", "journald"], None);
    let record = destructive_command(&guard, "journald");
    let seq = record["seq"].as_u64().unwrap().to_string();
    let deadline = Instant::now() + scaled(Duration::from_secs(15));
    let mut buf = vec![0u8; 1 << 20];
    let entry = loop {
        assert!(Instant::now() < deadline, "no journal entry for seq {seq}");
        let Ok(n) = journal.recv(&mut buf) else { continue };
        let entry = journal_entry(&buf[..n]);
        if entry.iter().any(|(k, v)| k == "SEQ" && *v == seq) {
            break entry;
        }
    };
    println!("journal entry: {entry:?}");
    let get = |name: &str| entry.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(get("VERDICT").as_deref(), record["verdict"].as_str(), "{entry:?}");
    assert_eq!(get("DETECTOR").as_deref(), Some("destructive"), "{entry:?}");
    assert_eq!(get("RULE").as_deref(), Some("sql-destructive"), "{entry:?}");
    assert_eq!(get("SESSION").as_deref(), Some("journald"), "{entry:?}");
    assert_eq!(get("PID"), record["pid"].as_u64().map(|p| p.to_string()), "{entry:?}");
    assert_eq!(get("SYSLOG_IDENTIFIER").as_deref(), Some("guard"), "{entry:?}");
    assert!(get("PRIORITY").is_some_and(|p| p.parse::<u8>().is_ok_and(|p| p <= 4)), "{entry:?}");
    assert!(get("MESSAGE").is_some_and(|m| !m.is_empty()), "{entry:?}");
    let copied: Value = serde_json::from_str(&get("GUARD_RECORD").unwrap()).unwrap();
    assert_eq!(copied["seq"], record["seq"]);
}
