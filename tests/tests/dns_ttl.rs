//! Issue 15 deliverable 3, "Hostnames by TTL" (host tier): an allow-list hostname served by a
//! dnsmasq the test starts on 127.0.0.77:53. The daemon runs in a private mount namespace
//! whose /etc/resolv.conf names that server. The record's TTL is 2 s (guard clamps it to its
//! 5 s minimum); the grace for vanished addresses is `--dns-grace 6`.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use guard_tests::{ChildGuard, Guard, TempDir, accept_one, can_run, ensure_tool, guard_bin, policy_text, scaled};
use serde_json::{Value, json};

const HOST: &str = "api.test.guard";
const SERVER: &str = "127.0.0.77";
const ADDR_A: &str = "127.0.0.41";
const ADDR_B: &str = "127.0.0.42";

/// A dnsmasq answering only for the test's hosts file; killed on drop.
struct Dnsmasq {
    server: Option<ChildGuard>,
    hosts: PathBuf,
    pid_file: PathBuf,
}

impl Dnsmasq {
    fn start(dir: &Path, addr: &str) -> Dnsmasq {
        let hosts = dir.join("hosts");
        std::fs::write(&hosts, format!("{addr} {HOST}\n")).unwrap();
        let pid_file = dir.join("dnsmasq.pid");
        let child = Command::new("dnsmasq")
            .args(["--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--bind-interfaces"])
            .arg(format!("--listen-address={SERVER}"))
            .args(["--port=53", "--local-ttl=2", "--auth-ttl=2", "--user=root", "--log-facility=-"])
            .arg(format!("--addn-hosts={}", hosts.display()))
            .arg(format!("--pid-file={}", pid_file.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting dnsmasq");
        let mut server = Dnsmasq { server: Some(ChildGuard(child)), hosts, pid_file };
        // Ready once it wrote its pid file (after binding the port).
        let deadline = Instant::now() + scaled(Duration::from_secs(10));
        while !server.pid_file.exists() {
            if let Some(status) = server.server.as_mut().and_then(ChildGuard::exited) {
                panic!("dnsmasq exited at start: {status}");
            }
            assert!(Instant::now() < deadline, "dnsmasq did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// Serves `addr` from now on (SIGHUP re-reads the hosts file).
    fn change(&self, addr: &str) {
        std::fs::write(&self.hosts, format!("{addr} {HOST}\n")).unwrap();
        let pid = self.server.as_ref().expect("dnsmasq stopped").pid() as i32;
        // SAFETY: signalling our own child.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    }

    fn stop(&mut self) {
        self.server = None;
    }
}

/// A python client: `EPERM 1` and exit 3 when the kernel refuses the connect.
fn connect_script(addr: &str, port: u16) -> String {
    format!(
        "import socket, sys\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n\
         try:\n    s.connect(('{addr}', {port})); s.sendall(b'data')\n\
         except PermissionError as e:\n    print('EPERM', e.errno); sys.exit(3)\n\
         s.close(); print('SENT')\n"
    )
}

fn assert_allowed(guard: &Guard, session: &str, addr: &str) {
    let listener = TcpListener::bind(format!("{addr}:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    let accept = std::thread::spawn(move || accept_one(&listener, scaled(Duration::from_secs(20))));
    let out = guard.launch(session, &["python3", "-c", &connect_script(addr, port)]);
    assert!(out.status.success(), "connect to {addr} refused: {}\n{}", guard_tests::output_text(&out), guard.dump());
    assert_eq!(accept.join().unwrap().as_deref(), Some(&b"data"[..]), "{addr} got no data");
    let rec = guard.wait_for(&format!("connect to {addr}:{port}"), |r| {
        r["session"] == session && r["event"] == "connect" && r["port"] == port
    });
    assert_eq!(rec["verdict"], "allow", "{rec}");
}

fn assert_denied(guard: &Guard, session: &str, addr: &str) {
    let listener = TcpListener::bind(format!("{addr}:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    let out = guard.launch(session, &["python3", "-c", &connect_script(addr, port)]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "connect to {addr} not refused: {}\n{}",
        guard_tests::output_text(&out),
        guard.dump()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "EPERM 1");
    assert!(accept_one(&listener, Duration::from_millis(200)).is_none(), "{addr} received a connection");
    let rec = guard.wait_for(&format!("deny of {addr}:{port}"), |r| {
        r["session"] == session && r["event"] == "connect" && r["port"] == port
    });
    assert_eq!(rec["verdict"], "deny", "{rec}");
    assert_eq!(rec["detector"], "scope_network", "{rec}");
}

fn has(list: &Value, addr: &str) -> bool {
    list.as_array().is_some_and(|items| items.iter().any(|a| a == addr))
}

fn dns_change(guard: &Guard, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    guard.wait_for(what, |r| r["event"] == "dns_change" && r["details"]["host"] == HOST && pred(&r["details"]))
}

/// The status's address set for the host: (address, retiring) pairs.
fn status_addrs(guard: &Guard) -> Vec<(String, bool)> {
    let status = guard.status();
    let hosts = status["dns_hosts"].as_array().cloned().unwrap_or_default();
    let host = hosts.iter().find(|h| h["host"] == HOST).unwrap_or_else(|| panic!("{HOST} not in status: {status}"));
    host["addrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["addr"].as_str().unwrap().to_string(), a["retiring"].as_bool().unwrap()))
        .collect()
}

#[test]
#[ignore = "needs root: loads BPF programs, creates cgroups and a mount namespace, runs dnsmasq"]
fn allow_list_host_follows_its_ttl_with_grace() {
    let case = "allow_list_host_follows_its_ttl_with_grace";
    if !can_run(case)
        || !ensure_tool(case, "unshare", "util-linux")
        || !ensure_tool(case, "dnsmasq", "dnsmasq-base")
        || !ensure_tool(case, "python3", "python3")
    {
        return;
    }
    let dir = TempDir::new("dns");
    let mut dns = Dnsmasq::start(dir.path(), ADDR_A);
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, format!("nameserver {SERVER}\noptions timeout:1 attempts:1\n")).unwrap();
    let resolv = resolv.to_str().unwrap().to_string();
    let wrapper = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        r#"mount --bind "$0" /etc/resolv.conf && exec "$@""#,
        &resolv,
    ];
    let policy = policy_text(&json!({
        "mode": "enforce",
        "scope": { "network": { "mode": "enforce", "allow_loopback": false, "allow": [HOST] } },
    }));
    let guard = Guard::start_through(&wrapper, Some(&policy), &["--dns-grace", "6"], None);
    let session = "dns";

    // The resolver's first answer: A.
    let first = dns_change(&guard, "first answer", |d| has(&d["added"], ADDR_A));
    assert!(first["details"]["ttl"].as_u64().unwrap() <= 5, "ttl not clamped to the minimum: {first}");
    assert_allowed(&guard, session, ADDR_A);

    // The record changes to B: after the TTL guard has B, and A is in its grace.
    dns.change(ADDR_B);
    let moved = dns_change(&guard, "B after the TTL", |d| has(&d["added"], ADDR_B));
    assert!(has(&moved["details"]["retiring"], ADDR_A), "A not in grace: {moved}");
    let addrs = status_addrs(&guard);
    assert!(addrs.contains(&(ADDR_B.to_string(), false)), "status: {addrs:?}");
    assert!(addrs.contains(&(ADDR_A.to_string(), true)), "status: {addrs:?}");
    let out = Command::new(guard_bin()).arg("status").arg("--socket").arg(&guard.socket).output().unwrap();
    let human = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(human.contains(&format!("allow host:  {HOST}")) && human.contains("in grace"), "{human}");
    assert_allowed(&guard, session, ADDR_B);
    assert_allowed(&guard, session, ADDR_A);

    // After the grace A is gone from the kernel map.
    dns_change(&guard, "A removed after the grace", |d| has(&d["removed"], ADDR_A));
    assert_denied(&guard, session, ADDR_A);
    assert_eq!(status_addrs(&guard), vec![(ADDR_B.to_string(), false)]);

    // The server goes away: the lookup fails, is recorded once, and B stays allowed.
    dns.stop();
    let failed = guard.wait_for("failed lookup", |r| r["event"] == "dns_failed" && r["details"]["host"] == HOST);
    assert!(has(&failed["details"]["kept"], ADDR_B), "{failed}");
    assert_allowed(&guard, session, ADDR_B);
    std::thread::sleep(scaled(Duration::from_secs(4)));
    let failures = guard.records().iter().filter(|r| r["event"] == "dns_failed").count();
    assert_eq!(failures, 1, "one record per failure streak:\n{}", guard.dump());
}
