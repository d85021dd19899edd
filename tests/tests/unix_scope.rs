//! Issue 15, part 2: unix sockets as scope. A stand-in Docker socket at the real path
//! (/run/docker.sock, which the default policy names as /var/run/docker.sock too) in a private
//! mount namespace the daemon and the sessions share: the host's /run is never touched.
//!
//! Each case runs on the host tier (cgroup connect_unix/sendmsg_unix by path, the connect exit
//! by inode) and in the qemu guests on the lsm tier (unix_stream_connect/unix_may_send by inode).

use std::{
    fs,
    os::unix::net::{UnixDatagram, UnixListener},
    path::PathBuf,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use guard_tests::{
    Guard, Tier, Workspace, accept_one, can_run, default_policy_value, ensure_tool, guard_bin, output_text, path_with,
    policy_text, scaled, was_killed,
};
use serde_json::{Value, json};

/// `guard run` in a new mount namespace whose /run is an empty tmpfs.
fn start_in_private_run(policy: Option<&str>) -> Guard {
    let wrapper = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "/bin/sh",
        "-c",
        r#"mount -t tmpfs guard-unix-test /run && exec "$@""#,
        "sh",
    ];
    Guard::start_through(&wrapper, policy, &[], None)
}

/// The default policy with `scope.unix` enforced, plus a datagram stand-in.
fn enforced_policy() -> String {
    let mut policy = default_policy_value();
    let unix = &mut policy["scope"]["unix"];
    assert!(unix.is_object(), "the default policy has no scope.unix: {policy}");
    unix["mode"] = json!("enforce");
    unix["paths"].as_array_mut().expect("scope.unix.paths").push(json!("/run/guard-test-dgram.sock"));
    policy_text(&policy)
}

/// A stand-in server bound inside the daemon's namespace (reached through /proc/PID/root).
struct StandIn {
    listener: UnixListener,
}

impl StandIn {
    fn bind(guard: &Guard, path: &str) -> Self {
        let outside = ns_path(guard, path);
        let listener = UnixListener::bind(&outside)
            .unwrap_or_else(|err| panic!("binding the stand-in {}: {err}", outside.display()));
        StandIn { listener }
    }

    /// What the first client sent (empty: it connected and sent nothing), or `None`: nobody
    /// connected within `limit`.
    fn first_client(&self, limit: Duration) -> Option<Vec<u8>> {
        accept_one(&self.listener, limit)
    }
}

fn ns_path(guard: &Guard, path: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{}/root{path}", guard.daemon_pid()))
}

/// Make the daemon look again now (SIGHUP) rather than at its next 30-second rescan: the
/// stand-ins were bound after it started.
fn rescan_now(guard: &Guard) {
    let before = guard.records().iter().filter(|r| r["event"] == "policy_reload").count();
    let status = Command::new("kill").arg("-HUP").arg(guard.daemon_pid().to_string()).status().expect("kill -HUP");
    assert!(status.success());
    let deadline = Instant::now() + scaled(Duration::from_secs(15));
    while guard.records().iter().filter(|r| r["event"] == "policy_reload").count() == before {
        assert!(Instant::now() < deadline, "no policy_reload after SIGHUP:\n{}", guard.dump());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A python script (on standard input: a script file would be held for judgement) run in
/// `session` inside the daemon's mount namespace, from the workspace; prints what happened.
fn session_python(guard: &Guard, ws: &Workspace, session: &str, script: &str, args: &[&str]) -> Output {
    let file = ws.path().join("client.py");
    guard_tests::write_file(&file, script);
    let mut cmd = Command::new("nsenter");
    // --wd: entering a mount namespace moves the caller to its root directory otherwise.
    let wd = format!("--wd={}", ws.path().display());
    cmd.arg("--target").arg(guard.daemon_pid().to_string()).arg("--mount").arg(&wd).arg("--");
    cmd.arg(guard_bin()).arg("launch").arg("--root").arg(&guard.root).arg("--session").arg(session).arg("--");
    cmd.arg("/usr/bin/python3").arg("-").args(args);
    cmd.current_dir(ws.path()).env("PATH", path_with(&ws.path().join("bin")));
    cmd.stdin(fs::File::open(&file).expect("client.py")).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.output().expect("running the session's client")
}

/// Connect to argv[1] (after an optional symlink or hard link argv[2] -> argv[1], used
/// instead) and send a request.
const CONNECT: &str = r#"
import errno, os, socket, sys
target = sys.argv[1]
if len(sys.argv) > 3:
    how, alias = sys.argv[2], sys.argv[3]
    (os.symlink if how == "symlink" else os.link)(target, alias)
    target = alias
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(target)
    s.sendall(b"GET /containers/json HTTP/1.0\r\n\r\n")
    print("connected", flush=True)
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno), flush=True)
"#;

const SENDTO: &str = r#"
import errno, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
try:
    s.sendto(b"hello", sys.argv[1]); print("sent", flush=True)
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno), flush=True)
"#;

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn unix_record<'a>(guard: &Guard, session: &str, verdict: &'a str) -> Value {
    guard.wait_for(&format!("a scope.unix {verdict} record of session {session}"), |r| {
        r["session"] == session && r["rule"] == "scope.unix" && r["verdict"] == verdict
    })
}

fn prerequisites(case: &str) -> bool {
    can_run(case) && ensure_tool(case, "unshare", "util-linux") && ensure_tool(case, "nsenter", "util-linux")
}

#[test]
#[ignore = "needs root: loads BPF programs, creates cgroups and a mount namespace"]
fn the_default_policy_records_the_docker_socket_and_guards_own() {
    let case = "the_default_policy_records_the_docker_socket_and_guards_own";
    if !prerequisites(case) {
        return;
    }
    let guard = start_in_private_run(None);
    let docker = StandIn::bind(&guard, "/run/docker.sock");
    rescan_now(&guard);
    let ws = Workspace::new("unix-default", "TOKEN=unix-scope-test\n", &[]);
    let s = "unix-default";

    let out = session_python(&guard, &ws, s, CONNECT, &["/var/run/docker.sock"]);
    assert_eq!(stdout(&out), "connected", "monitor mode must not refuse: {}", output_text(&out));
    let sent = docker.first_client(scaled(Duration::from_secs(5))).expect("the stand-in saw no client");
    assert!(sent.starts_with(b"GET /containers/json"), "the request did not arrive: {sent:?}");
    let record = unix_record(&guard, s, "audit");
    assert_eq!(record["event"], "unix_connect", "{record}");
    assert!(record["path"].as_str().is_some_and(|p| p.ends_with("/docker.sock")), "{record}");
    assert!(record["reason"].as_str().is_some_and(|r| r.contains("monitor")), "{record}");

    // A session that touched a credential loses the socket even in monitor mode (the
    // incident's chain: a found token, then the way to root).
    let s = "unix-escalated";
    let out = ws.launch_cmd(&guard, s, &["cat", ".env"]).output().expect("cat .env");
    assert!(guard.was_refused(&out.status), "cat .env: {}", output_text(&out));
    let out = session_python(&guard, &ws, s, CONNECT, &["/var/run/docker.sock"]);
    assert_eq!(stdout(&out), "EPERM", "after a credential touch: {}", output_text(&out));
    unix_record(&guard, s, "deny");
    assert_eq!(docker.first_client(Duration::from_millis(500)), None, "the escalated connect got through");

    // guard's own control socket ($GUARD_SOCKET in the default policy) is recorded too.
    let socket = guard.socket.display().to_string();
    let out = session_python(&guard, &ws, "unix-default-control", CONNECT, &[socket.as_str()]);
    assert_eq!(stdout(&out), "connected", "{}", output_text(&out));
    let record = unix_record(&guard, "unix-default-control", "audit");
    assert_eq!(record["path"], socket.as_str(), "{record}");
}

#[test]
#[ignore = "needs root: loads BPF programs, creates cgroups and a mount namespace"]
fn an_enforced_docker_socket_is_refused_however_it_is_named() {
    let case = "an_enforced_docker_socket_is_refused_however_it_is_named";
    if !prerequisites(case) {
        return;
    }
    let policy = enforced_policy();
    let guard = start_in_private_run(Some(&policy));
    let docker = StandIn::bind(&guard, "/run/docker.sock");
    rescan_now(&guard);
    let ws = Workspace::new("unix-enforce", "", &[]);

    // By the path the policy names: refused before any connection, on both tiers.
    let s = "unix-path";
    let out = session_python(&guard, &ws, s, CONNECT, &["/var/run/docker.sock"]);
    assert_eq!(stdout(&out), "EPERM", "{}", output_text(&out));
    let record = unix_record(&guard, s, "deny");
    assert_eq!(record["event"], "unix_connect", "{record}");
    assert!(record["reason"].as_str().is_some_and(|r| r.contains("refused")), "{record}");
    assert_eq!(docker.first_client(Duration::from_millis(500)), None, "a refused connect reached the stand-in");

    // The ways around a path: a symlink and a hard link to the socket, both relative. The lsm
    // tier refuses by the socket's inode; the host tier's path check cannot see through them,
    // and its connect exit kills the caller before it writes a byte.
    for (s, how, alias) in [("unix-symlink", "symlink", "d.sock"), ("unix-hardlink", "link", "/run/h.sock")] {
        let _ = fs::remove_file(ws.path().join(alias));
        let out = session_python(&guard, &ws, s, CONNECT, &["/run/docker.sock", how, alias]);
        match guard.tier() {
            Tier::Lsm => {
                assert_eq!(stdout(&out), "EPERM", "{how}: {}", output_text(&out));
                unix_record(&guard, s, "deny");
                assert_eq!(docker.first_client(Duration::from_millis(500)), None, "{how}: reached the stand-in");
            }
            Tier::Host => {
                assert!(was_killed(&out.status), "{how}: not killed: {}", output_text(&out));
                assert_eq!(stdout(&out), "", "{how}: the client went on after connecting");
                let record = unix_record(&guard, s, "kill");
                assert!(record["reason"].as_str().is_some_and(|r| r.contains("nothing was sent")), "{record}");
                // The connection was made; nothing came through it.
                let sent = docker.first_client(scaled(Duration::from_secs(5)));
                assert_eq!(sent, Some(Vec::new()), "{how}: bytes reached the stand-in");
            }
        }
    }

    // A datagram to a socket file: sendmsg_unix (host tier) or unix_may_send (lsm tier).
    let dgram_path = ns_path(&guard, "/run/guard-test-dgram.sock");
    let dgram = UnixDatagram::bind(&dgram_path).expect("binding the datagram stand-in");
    dgram.set_nonblocking(true).expect("nonblocking");
    rescan_now(&guard);
    let s = "unix-dgram";
    let out = session_python(&guard, &ws, s, SENDTO, &["/run/guard-test-dgram.sock"]);
    assert_eq!(stdout(&out), "EPERM", "{}", output_text(&out));
    let record = unix_record(&guard, s, "deny");
    assert_eq!(record["event"], "unix_sendmsg", "{record}");
    let mut buf = [0u8; 16];
    assert!(dgram.recv(&mut buf).is_err(), "a refused datagram arrived");

    // Anything else stays reachable: a socket scope.unix does not name.
    let other = StandIn::bind(&guard, "/run/guard-test-other.sock");
    let out = session_python(&guard, &ws, "unix-other", CONNECT, &["/run/guard-test-other.sock"]);
    assert_eq!(stdout(&out), "connected", "{}", output_text(&out));
    assert!(other.first_client(scaled(Duration::from_secs(5))).is_some_and(|b| !b.is_empty()));
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn a_launched_session_cannot_reach_an_abstract_socket_outside_it() {
    let case = "a_launched_session_cannot_reach_an_abstract_socket_outside_it";
    if !can_run(case) {
        return;
    }
    let guard = Guard::start();
    let ws = Workspace::new("unix-abstract", "", &[]);
    let name = format!("guard-test-abstract-{}", std::process::id());
    let listener = abstract_listener(&name);
    let script = r#"
import errno, socket, sys
def attempt(name):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect("\0" + name); return "connected"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
own = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
own.bind("\0" + sys.argv[1] + "-own"); own.listen(1)
print(attempt(sys.argv[1] + "-own"), attempt(sys.argv[1]), flush=True)
"#;
    let file = ws.path().join("abstract.py");
    guard_tests::write_file(&file, script);
    let out = ws
        .launch_cmd(&guard, "unix-abstract", &["/usr/bin/python3", "-", &name])
        .stdin(fs::File::open(&file).expect("abstract.py"))
        .output()
        .expect("guard launch");
    let record = guard.wait_for("the session record", |r| r["event"] == "session" && r["session"] == "unix-abstract");
    let landlock = &record["details"]["confinement"]["landlock"];
    if landlock["abi"].as_u64() < Some(6) {
        println!("SKIPPED {case}: this kernel's Landlock cannot scope abstract unix sockets (ABI < 6): {record}");
        return;
    }
    assert_eq!(landlock["abstract_unix_scoped"], true, "{record}");
    // Its own abstract socket works; the one made outside the session is refused.
    assert_eq!(stdout(&out), "connected EPERM", "{}", output_text(&out));
    drop(listener);
}

fn abstract_listener(name: &str) -> UnixListener {
    use std::os::linux::net::SocketAddrExt as _;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract address");
    UnixListener::bind_addr(&addr).expect("binding the abstract listener")
}
