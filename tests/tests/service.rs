//! The systemd unit's daemon, run by hand (PID 1 here is not systemd): the unit's ExecStart
//! under its CapabilityBoundingSet and NoNewPrivileges (setpriv), with a NOTIFY_SOCKET of the
//! test's own. guard must say READY=1 only once it enforces (its `start` record is out and a
//! credential read in a session is refused), and STOPPING=1 on SIGTERM. In between, the
//! package's logrotate snippet rotates the daemon's audit file for real.
//!
//! The unit read is $GUARD_UNIT (`cargo xtask package-check` points it at the installed
//! /usr/lib/systemd/system/guard.service and GUARD_BIN at /usr/bin/guard), else
//! packaging/guard.service as compiled in. Isolation: the test adds its own --root, --audit, --socket (the
//! pins follow the root), so it never touches a production daemon.

use std::{
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use guard_tests::{TempDir, cgroup2_mount, guard_bin, remove_cgroup_tree, scaled, write_file};
use serde_json::Value;

/// The unit and the logrotate snippet as built in (the qemu guests get test binaries only, no
/// source tree); `$GUARD_UNIT` / `$GUARD_LOGROTATE` name installed files to read instead.
const UNIT: &str = include_str!("../../packaging/guard.service");
const LOGROTATE: &str = include_str!("../../packaging/guard.logrotate");
const DEFAULT_POLICY: &str = include_str!("../../guard-engine/src/default-policy.yaml");

fn read_or(var: &str, built_in: &str) -> (String, String) {
    match std::env::var_os(var) {
        Some(path) => {
            let path = PathBuf::from(path);
            let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
            (path.display().to_string(), text)
        }
        None => (format!("packaging/ (built in; {var} unset)"), built_in.to_string()),
    }
}

/// The values of `key=` in the unit's [Service] section (comments and other sections skipped).
fn service_values(unit: &str, key: &str) -> Vec<String> {
    let mut section = "";
    let mut values = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if section == "[Service]"
            && !line.starts_with('#')
            && let Some((k, v)) = line.split_once('=')
            && k.trim() == key
        {
            values.push(v.trim().to_string());
        }
    }
    values
}

/// `CAP_BPF CAP_SYS_ADMIN` -> `-all,+bpf,+sys_admin` (setpriv's --bounding-set).
fn setpriv_caps(bounding: &str) -> String {
    let mut caps = vec!["-all".to_string()];
    for cap in bounding.split_whitespace() {
        caps.push(format!("+{}", cap.trim_start_matches("CAP_").to_ascii_lowercase()));
    }
    caps.join(",")
}

struct Service {
    child: Option<Child>,
    root: PathBuf,
    audit: PathBuf,
    socket: PathBuf,
    notify: UnixDatagram,
    dir: TempDir,
}

impl Service {
    fn records(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.audit).unwrap_or_default();
        text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
    }

    /// The next notification datagram, or None within `limit`.
    fn notification(&self, limit: Duration) -> Option<String> {
        self.notify.set_read_timeout(Some(limit)).expect("setting the notify socket timeout");
        let mut buf = [0u8; 4096];
        let n = self.notify.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.stderr")).unwrap_or_default()
    }

    fn wait_record(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + scaled(Duration::from_secs(15));
        loop {
            if let Some(found) = self.records().into_iter().find(|r| pred(r)) {
                return found;
            }
            assert!(Instant::now() < deadline, "no {what} record; stderr:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        remove_cgroup_tree(&self.root);
        if let Some(name) = self.root.file_name() {
            let _ = std::fs::remove_dir_all(Path::new("/sys/fs/bpf").join(name));
        }
    }
}

#[test]
#[ignore = "needs root (loads BPF programs, creates cgroups)"]
fn the_units_exec_start_notifies_ready_once_enforcing_and_stopping_on_sigterm() {
    if !guard_tests::can_run("service") {
        return;
    }
    if guard_tests::which_in("setpriv", "/usr/bin:/bin").is_none() {
        println!("SKIPPED service: setpriv (util-linux) is missing");
        return;
    }
    let (unit_file, unit) = read_or("GUARD_UNIT", UNIT);
    let exec = service_values(&unit, "ExecStart");
    assert_eq!(exec.len(), 1, "one active ExecStart in {unit_file}: {exec:?}");
    let mut words = exec[0].split_whitespace();
    assert_eq!(words.next(), Some("/usr/bin/guard"), "{}", exec[0]);
    let mut args: Vec<String> = words.map(str::to_string).collect();
    assert_eq!(&args[..1], ["run"], "{}", exec[0]);
    let bounding = service_values(&unit, "CapabilityBoundingSet");
    assert_eq!(bounding.len(), 1, "{bounding:?}");
    assert_eq!(service_values(&unit, "NoNewPrivileges"), ["yes"]);
    assert_eq!(service_values(&unit, "Type"), ["notify"]);

    let dir = TempDir::new("service");
    // Not installed (a plain `cargo xtask test`, the guests): the same default policy, built in.
    if let Some(i) = args.iter().position(|a| a == "--policy")
        && !Path::new(&args[i + 1]).exists()
    {
        let copy = dir.path().join("policy.yaml");
        write_file(&copy, DEFAULT_POLICY);
        args[i + 1] = copy.display().to_string();
    }
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("binding the notify socket");
    let root = cgroup2_mount().join(format!("guard-test-service-{}", std::process::id()));
    let audit = dir.path().join("audit.jsonl");
    let socket = dir.path().join("control.sock");
    let stderr = std::fs::File::create(dir.path().join("daemon.stderr")).expect("daemon stderr file");
    let mut cmd = Command::new("setpriv");
    cmd.arg("--no-new-privs")
        .arg(format!("--bounding-set={}", setpriv_caps(&bounding[0])))
        .arg("--")
        .arg(guard_bin())
        .args(&args)
        .arg("--root")
        .arg(&root)
        .arg("--audit")
        .arg(&audit)
        .arg("--socket")
        .arg(&socket)
        .env("NOTIFY_SOCKET", &notify_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    let child = cmd.spawn().expect("spawning setpriv guard run");
    let mut service = Service { child: Some(child), root, audit, socket, notify, dir };

    let ready = service.notification(scaled(Duration::from_secs(60)));
    let ready = ready.unwrap_or_else(|| panic!("no READY=1 within 60 s; stderr:\n{}", service.stderr()));
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(ready.lines().any(|l| l.starts_with("STATUS=enforcing policy ")), "{ready:?}");
    // READY=1 comes after the start record: it is already in the file.
    let start = service.records().into_iter().find(|r| r["event"] == "start");
    let start = start.unwrap_or_else(|| panic!("READY=1 before the start record; stderr:\n{}", service.stderr()));
    let policy = args.iter().position(|a| a == "--policy").map(|i| args[i + 1].clone());
    assert_eq!(start["details"]["policy"].as_str(), policy.as_deref(), "{start}");
    // With only the unit's capabilities, the tier is what the kernel offers (lsm in the guests).
    println!("service: tier {} ({})", start["details"]["tier"], start["details"]["tier_reason"]);

    // Enforcing with only the unit's capabilities: a session's read of a .env is refused.
    let work = TempDir::new("service-work");
    let env_file = work.path().join(".env");
    write_file(&env_file, "AWS_SECRET_ACCESS_KEY=not-a-real-one\n");
    let out = Command::new(guard_bin())
        .args(["launch", "--root"])
        .arg(&service.root)
        .args(["--socket"])
        .arg(&service.socket)
        .args(["--session", "unit", "--", "cat"])
        .arg(&env_file)
        .output()
        .expect("running guard launch");
    assert!(!out.status.success(), "cat .env succeeded: {out:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("not-a-real-one"), "the secret reached the session");
    let refused = service.wait_record("credential refusal", |r| {
        r["session"] == "unit" && r["detector"] == "credential" && (r["verdict"] == "kill" || r["verdict"] == "deny")
    });
    assert_eq!(refused["rule"], "dotenv", "{refused}");
    if let Some(i) = args.iter().position(|a| a == "--metrics") {
        scrape_counts_the_refusal(&args[i + 1]);
    }

    logrotate_keeps_the_chain(&service);

    // SIGTERM, as systemd stops it: STOPPING=1, then a clean exit with the stop record.
    let pid = service.child.as_ref().map(Child::id).expect("daemon child");
    // SAFETY: plain kill(2) on our own child (setpriv exec'd guard, same pid).
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let stopping = service.notification(scaled(Duration::from_secs(20)));
    let stopping = stopping.unwrap_or_else(|| panic!("no STOPPING=1 after SIGTERM; stderr:\n{}", service.stderr()));
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    let mut child = service.child.take().expect("daemon child");
    let deadline = Instant::now() + scaled(Duration::from_secs(20));
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for guard") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("guard did not exit within 20 s of SIGTERM; stderr:\n{}", service.stderr());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "guard exited with {status}; stderr:\n{}", service.stderr());
    service.wait_record("stop", |r| r["event"] == "stop");
}

/// The package's logrotate snippet ($GUARD_LOGROTATE, else packaging/guard.logrotate), with
/// this daemon's audit path and socket put in, run for real (`logrotate -f`): the file moves
/// to .1, `guard reopen` makes the daemon start the new file with `audit_reopened`, and the
/// chain verifies across both.
fn logrotate_keeps_the_chain(service: &Service) {
    if !guard_tests::ensure_tool("service", "logrotate", "logrotate") {
        return;
    }
    let (snippet_path, snippet) = read_or("GUARD_LOGROTATE", LOGROTATE);
    for needed in ["/var/log/guard/audit.jsonl {", "/usr/bin/guard reopen", "/run/guard/control.sock"] {
        assert!(snippet.contains(needed), "{snippet_path} lacks {needed:?}");
    }
    let socket = service.socket.display().to_string();
    let ours = snippet
        .replace("/var/log/guard/audit.jsonl", &service.audit.display().to_string())
        .replace("/usr/bin/guard reopen", &format!("{} reopen --socket {socket}", guard_bin().display()))
        .replace("/run/guard/control.sock", &socket);
    let conf = service.dir.path().join("logrotate.conf");
    write_file(&conf, &ours);
    let out = Command::new("logrotate")
        .arg("-f")
        .arg("-s")
        .arg(service.dir.path().join("logrotate.state"))
        .arg(&conf)
        .output()
        .expect("running logrotate");
    assert!(out.status.success(), "logrotate -f: {out:?}");
    let rotated = PathBuf::from(format!("{}.1", service.audit.display()));
    assert!(rotated.exists(), "logrotate did not move {}", service.audit.display());
    service.wait_record("audit_reopened", |r| r["event"] == "audit_reopened");
    let verify = Command::new(guard_bin())
        .args(["audit", "verify"])
        .arg(&rotated)
        .arg(&service.audit)
        .output()
        .expect("running guard audit verify");
    assert!(verify.status.success(), "the chain breaks across logrotate: {verify:?}");
}

#[test]
fn unit_parsing_reads_the_service_section_only() {
    let unit = "[Unit]\nDescription=x\n[Service]\n# ExecStart=/commented\nExecStart=/usr/bin/guard run\nType = notify\n[Install]\nType=other\n";
    assert_eq!(service_values(unit, "ExecStart"), ["/usr/bin/guard run"]);
    assert_eq!(service_values(unit, "Type"), ["notify"]);
    assert!(service_values(unit, "Description").is_empty());
    assert_eq!(setpriv_caps("CAP_BPF CAP_SYS_ADMIN"), "-all,+bpf,+sys_admin");
}

/// The unit's `--metrics` address serves Prometheus text with the refusal counted.
fn scrape_counts_the_refusal(addr: &str) {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connecting to the unit's metrics {addr}: {e}"));
    stream.set_read_timeout(Some(scaled(Duration::from_secs(10)))).expect("read timeout");
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("sending the scrape");
    let mut body = String::new();
    stream.read_to_string(&mut body).expect("reading the scrape");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    let counted = body.lines().any(|l| {
        l.starts_with("guard_verdicts_total{") && l.contains("detector=\"credential\"") && l.contains("rule=\"dotenv\"")
    });
    assert!(counted, "the dotenv refusal is not in the scrape:\n{body}");
}
