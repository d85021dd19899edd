//! Issue "The boundary an agent cannot remove": enforcement that outlives the daemon, and
//! signals from sessions, on the real kernel (host tier).

use std::{
    fs,
    net::TcpListener,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use guard_tests::{Guard, Tier, Workspace, can_run, default_policy_value, guard_bin, policy_text, scaled, was_killed};
use serde_json::{Value, json};

const SECRET: &str = "OUTLIVE-SECRET-5c2e";

/// The default policy with every destination out of network scope (enforced).
fn policy() -> String {
    let mut policy = default_policy_value();
    policy["scope"]["network"] = json!({ "mode": "enforce", "allow_loopback": false, "allow": [] });
    policy_text(&policy)
}

/// A connect from the session to a local listener: the errno name it got, or `connected`.
/// The script on standard input, not `python3 -c` or `python3 FILE`: those are held for
/// judgement, and without a daemon a hold is a kill (or, until the heartbeat is stale, a stop
/// nobody releases).
fn connect_errno(guard: &Guard, ws: &Workspace, session: &str, port: u16) -> String {
    let script = ws.path().join("connect.py");
    guard_tests::write_file(
        &script,
        &format!(
            "import socket, errno\ns = socket.socket()\ntry:\n    s.connect(('127.0.0.3', {port})); print('connected')\nexcept OSError as e:\n    print(errno.errorcode.get(e.errno, e.errno))\n"
        ),
    );
    let stdin = fs::File::open(&script).expect("opening connect.py");
    let out = ws.launch_cmd(guard, session, &["/usr/bin/python3", "-"]).stdin(stdin).output().expect("python connect");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn wait_for_record(guard: &Guard, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    guard.wait_for(what, pred)
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn enforcement_outlives_a_killed_daemon_and_a_restart_adopts_it() {
    if !can_run("enforcement_outlives_a_killed_daemon_and_a_restart_adopts_it") {
        return;
    }
    let ws = Workspace::new("outlive", &format!("TOKEN={SECRET}\n"), &["rm"]);
    let listener = TcpListener::bind("127.0.0.3:0").expect("listener");
    let port = listener.local_addr().expect("addr").port();
    let mut guard = Guard::start_with(Some(&policy()), &[]);
    let s = "outlive";
    guard.settle(s);
    assert!(guard.pin_dir().join("maps/EVENTS").exists(), "no pinned maps in {}", guard.pin_dir().display());

    // The daemon dies as a crash or the OOM killer would have it.
    guard.kill_hard();
    let died = Instant::now();

    // Credential reads, network scope: still enforced in the kernel.
    let out = ws.launch_cmd(&guard, s, &["cat", ".env"]).output().expect("cat .env");
    assert!(guard.was_refused(&out.status), "cat .env without a daemon: {out:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(SECRET), "the secret leaked without a daemon");
    assert_eq!(connect_errno(&guard, &ws, s, port), "EPERM", "connect out of scope without a daemon");

    // Once the heartbeat is stale, a watched destructive exec is killed before it runs (no
    // one is there to judge it).
    std::thread::sleep(Duration::from_secs(6).saturating_sub(died.elapsed()));
    let out = ws.launch_cmd(&guard, s, &["rm", "-rf", "/srv/outlive-never-there"]).output().expect("rm");
    assert!(was_killed(&out.status), "rm -rf without a daemon: {out:?}");
    assert_eq!(ws.ran("rm"), "", "the held rm ran without a daemon");

    // A new daemon adopts the pins: a gap record with what the kernel did meanwhile.
    guard.restart();
    let gap = wait_for_record(&guard, "the gap record", |r| r["event"] == "gap");
    let details = &gap["details"];
    assert!(details["no_daemon_secs"].as_f64().is_some_and(|secs| secs >= 5.0), "{gap}");
    // The read of .env: killed on the host tier, refused (EPERM) on the lsm tier.
    let (killed, denied) = match guard.tier() {
        Tier::Host => (2, 1),
        Tier::Lsm => (1, 2),
    };
    assert!(details["killed"].as_u64().is_some_and(|n| n >= killed), "{gap}");
    assert!(details["killed_no_daemon"].as_u64().is_some_and(|n| n >= 1), "{gap}");
    assert!(details["denied"].as_u64().is_some_and(|n| n >= denied), "{gap}");
    // What the kernel queued meanwhile reaches the stream too (the ring buffer is pinned).
    wait_for_record(&guard, "the kill of cat .env while no daemon ran", |r| {
        r["session"] == s && r["event"] == "open" && r["verdict"] == guard.refusal() && r["rule"] == "dotenv"
    });
    wait_for_record(&guard, "the refused connect while no daemon ran", |r| {
        r["session"] == s && r["event"] == "connect" && r["verdict"] == "deny" && r["port"] == port
    });
    // The earlier run's programs were replaced, not doubled.
    let links: Vec<String> = fs::read_dir(guard.pin_dir().join("links"))
        .expect("links dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(links.contains(&"gen-1".to_string()) && !links.contains(&"gen-0".to_string()), "{links:?}");

    // The same policy, enforced by the new daemon.
    let out = ws.launch_cmd(&guard, "after", &["cat", ".env"]).output().expect("cat .env");
    assert!(guard.was_refused(&out.status), "cat .env after the restart: {out:?}");
    guard.wait_for("a refusal after the restart", |r| r["session"] == "after" && r["verdict"] == guard.refusal());

    // `guard stop --keep-pins` (an upgrade) leaves everything enforcing; a clean stop removes it.
    let out = Command::new(guard_bin()).args(["stop", "--keep-pins", "--socket"]).arg(&guard.socket).output().unwrap();
    assert!(out.status.success(), "guard stop --keep-pins: {out:?}");
    let deadline = Instant::now() + scaled(Duration::from_secs(20));
    while guard.records().iter().filter(|r| r["event"] == "stop").count() == 0 {
        assert!(Instant::now() < deadline, "no stop record: {}", guard.dump());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(guard.pin_dir().join("maps/EVENTS").exists(), "--keep-pins removed the pins");
    let out = ws.launch_cmd(&guard, "upgrade", &["cat", ".env"]).output().expect("cat .env");
    assert!(guard.was_refused(&out.status), "cat .env during an upgrade: {out:?}");
    guard.restart();
    let deadline = Instant::now() + scaled(Duration::from_secs(20));
    while guard.records().iter().filter(|r| r["event"] == "gap").count() < 2 {
        assert!(Instant::now() < deadline, "no gap record after the upgrade: {}", guard.dump());
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = Command::new(guard_bin()).args(["stop", "--socket"]).arg(&guard.socket).output().unwrap();
    assert!(out.status.success(), "guard stop: {out:?}");
    let deadline = Instant::now() + scaled(Duration::from_secs(20));
    while guard.pin_dir().exists() {
        assert!(Instant::now() < deadline, "a clean stop left {}", guard.pin_dir().display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn signals_from_an_adopted_session_are_ignored_and_recorded() {
    if !can_run("signals_from_an_adopted_session_are_ignored_and_recorded") {
        return;
    }
    let guard = Guard::start_with(Some(&policy()), &[]);
    let daemon = guard.daemon_pid();
    // An adopted session: a cgroup below the root that no `guard launch` made, joined by a
    // shell that then signals the daemon.
    let session = guard.root.join("adopted");
    fs::create_dir_all(&session).expect("creating the adopted session cgroup");
    let procs = session.join("cgroup.procs");
    for signal in ["TERM", "HUP", "INT"] {
        let script = format!("echo $$ > {}; exec /bin/kill -{signal} {daemon}", procs.display());
        let status = Command::new("/bin/sh").args(["-c", &script]).stdin(Stdio::null()).status().expect("sh");
        // The host tier kills the sender for going at the daemon, and the daemon ignores what
        // it sent; the lsm tier refuses the kill(2) itself (EPERM: /bin/kill fails).
        assert!(guard.was_refused(&status), "the sender of SIG{signal} was not stopped: {status:?}\n{}", guard.dump());
        match guard.tier() {
            Tier::Host => guard.wait_for(&format!("SIG{signal} ignored"), |r| {
                r["event"] == "signal_ignored"
                    && r["reason"].as_str().is_some_and(|t| t.contains(&format!("SIG{signal}")))
            }),
            Tier::Lsm => guard.wait_for(&format!("SIG{signal} refused"), |r| {
                r["event"] == "self_protection" && r["verdict"] == "deny" && r["target_pid"] == daemon
            }),
        };
    }
    // Still up and answering; no reload happened.
    let status = guard.status();
    assert_eq!(status["pid"].as_i64(), Some(daemon as i64), "{status}");
    assert!(!guard.records().iter().any(|r| r["event"] == "policy_reload"), "{}", guard.dump());
    assert!(!guard.records().iter().any(|r| r["event"] == "stop"), "{}", guard.dump());
}
