//! Issue "Three detectors": credential reads, network scope and destructive commands,
//! enforced on the real kernel (host tier).
//!
//! Loopback addresses stand in for remote hosts: with `allow_loopback: false` and
//! `allow: [127.0.0.2/32]`, 127.0.0.2 is "staging" (in scope) and 127.0.0.3 "production".
//! Shell scripts named `psql` and `aws` stand in for the real tools.

use std::{
    net::{TcpListener, UdpSocket},
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use guard_tests::{
    Guard, TempDir, accept_one, argv_has, can_run, default_policy_value, fake_tools, guard_bin, output_text, path_with,
    policy_text, ran_marker, remove_cgroup_tree, run_command, scaled, was_killed, write_file,
};
use serde_json::{Value, json};

const AWS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// How long any one command may take before the test gives up on it (a command left stopped
/// by a hold must fail the test, not hang it).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Wait for a spawned command with a deadline; on timeout kill it and fail with the stream.
fn finish(guard: &Guard, mut child: std::process::Child, what: &str) -> Output {
    let deadline = Instant::now() + scaled(COMMAND_TIMEOUT);
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("collecting output");
        }
        if Instant::now() > deadline {
            let state = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap_or_default();
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish in {COMMAND_TIMEOUT:?} (stat: {state}); stream:\n{}", guard.dump());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Spawn a command in a session (optionally in `cwd`, with extra environment). The launcher
/// execs the command, so the child's pid is the command's.
fn spawn_in(
    guard: &Guard,
    session: &str,
    cwd: Option<&Path>,
    env: &[(&str, &std::ffi::OsStr)],
    args: &[&str],
) -> std::process::Child {
    let mut cmd = guard.launch_cmd(session, args);
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawning guard launch")
}

/// Run a command in a session and wait for it; returns its pid and output.
fn run_in(
    guard: &Guard,
    session: &str,
    cwd: Option<&Path>,
    env: &[(&str, &std::ffi::OsStr)],
    args: &[&str],
) -> (u32, Output) {
    let child = spawn_in(guard, session, cwd, env, args);
    let pid = child.id();
    (pid, finish(guard, child, &format!("{args:?}")))
}

/// The records of one process of one session.
fn records_of(guard: &Guard, session: &str, pid: u32) -> Vec<Value> {
    guard.session_records(session).into_iter().filter(|r| r["pid"] == pid).collect()
}

fn assert_not_blocked(guard: &Guard, session: &str, pid: u32) {
    for rec in records_of(guard, session, pid) {
        assert!(rec["verdict"] != "kill" && rec["verdict"] != "deny", "pid {pid} was blocked: {rec}\n{}", guard.dump());
    }
}

/// The policy for path evasions: one file protected by path (inode), `.env` by name.
fn evasion_policy(secret: &Path) -> String {
    policy_text(&json!({
        "mode": "enforce",
        "credentials": { "rules": [
            { "id": "vault-secret", "severity": "critical", "mitre": "T1552.001", "paths": [secret.to_str().unwrap()] },
            { "id": "dotenv", "names": [".env"] },
        ]},
    }))
}

/// A read of a protected file: the reader is SIGKILLed, nothing of the content comes out, and
/// the kill is recorded against that process.
fn assert_read_killed(
    guard: &Guard,
    session: &str,
    cwd: Option<&Path>,
    args: &[&str],
    rule: &str,
    secret: &str,
) -> Value {
    let (pid, out) = run_in(guard, session, cwd, &[], args);
    assert!(guard.was_refused(&out.status), "{args:?} was not refused: {}\n{}", output_text(&out), guard.dump());
    assert!(!text(&out.stdout).contains(secret), "{args:?} printed the secret: {}", output_text(&out));
    assert!(!text(&out.stderr).contains(secret), "{args:?} printed the secret: {}", output_text(&out));
    let rec = guard.wait_for(&format!("kill of {args:?}"), |r| {
        r["session"] == session && r["event"] == "open" && r["verdict"] == guard.refusal() && r["pid"] == pid
    });
    assert_eq!(rec["detector"], "credential", "{rec}");
    assert_eq!(rec["rule"], rule, "{rec}");
    assert_eq!(rec["severity"], "critical", "{rec}");
    rec
}

/// The state letter of /proc/PID/stat (R, S, T, Z...), None when the process is gone.
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next())
}

/// `guard deny ID --socket ...`.
fn deny(guard: &Guard, id: u64) {
    let out =
        Command::new(guard_bin()).args(["deny", &id.to_string(), "--socket"]).arg(&guard.socket).output().unwrap();
    assert!(out.status.success(), "guard deny {id}: {}", output_text(&out));
}

// ---- 1. The incident ------------------------------------------------------------------------

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn incident_replayed_in_one_session() {
    if !can_run("incident_replayed_in_one_session") {
        return;
    }
    // A project: .env with cloud credentials, source, a git repository (made outside the session).
    let ws = TempDir::new("incident");
    let env_file = ws.path().join(".env");
    write_file(&env_file, &format!("AWS_ACCESS_KEY_ID={AWS_KEY_ID}\nAWS_SECRET_ACCESS_KEY={AWS_SECRET}\n"));
    write_file(&ws.path().join("main.rs"), "fn main() { println!(\"hello\"); }\n");
    let git = Command::new("git").args(["init", "-q"]).current_dir(ws.path()).output().expect("git init");
    assert!(git.status.success(), "git init: {}", output_text(&git));
    let bin = TempDir::new("incident-bin");
    fake_tools(bin.path(), &["psql", "aws"]);
    let path = path_with(bin.path());

    // "Production" (out of scope) and "staging" (in scope) endpoints.
    let production = TcpListener::bind("127.0.0.3:0").unwrap();
    let prod_port = production.local_addr().unwrap().port();
    let staging = TcpListener::bind("127.0.0.2:0").unwrap();
    let staging_port = staging.local_addr().unwrap().port();

    // The DEFAULT credential and destructive rules, plus a test network scope.
    let mut policy = default_policy_value();
    policy["scope"]["network"] = json!({
        "mode": "enforce", "severity": "high", "mitre": "T1041",
        "allow_loopback": false, "allow": ["127.0.0.2/32"],
    });
    let guard = Guard::start_with(Some(&policy_text(&policy)), &[]);
    let s = "incident";
    let cwd = Some(ws.path());

    // Ordinary work is untouched (before the credential read, and again after it below).
    let ordinary = || -> Vec<(u32, &'static str)> {
        let (ls_pid, out) = run_in(&guard, s, cwd, &[], &["ls"]);
        assert!(out.status.success(), "ls: {}\n{}", output_text(&out), guard.dump());
        assert!(text(&out.stdout).contains("main.rs"), "ls: {}", output_text(&out));
        let (cat_pid, out) = run_in(&guard, s, cwd, &[], &["cat", "main.rs"]);
        assert!(out.status.success(), "cat main.rs: {}\n{}", output_text(&out), guard.dump());
        assert_eq!(text(&out.stdout), "fn main() { println!(\"hello\"); }\n");
        let (git_pid, out) = run_in(&guard, s, cwd, &[], &["git", "status"]);
        assert!(out.status.success(), "git status: {}\n{}", output_text(&out), guard.dump());
        assert!(text(&out.stdout).contains("main.rs"), "git status: {}", output_text(&out));
        vec![(ls_pid, "ls"), (cat_pid, "cat main.rs"), (git_pid, "git status")]
    };
    let mut untouched = ordinary();

    // 1. The agent reads .env: killed before the bytes reach it.
    let (env_pid, out) = run_in(&guard, s, cwd, &[], &["cat", ".env"]);
    assert!(guard.was_refused(&out.status), "cat .env not refused: {}\n{}", output_text(&out), guard.dump());
    assert!(out.stdout.is_empty(), "cat .env printed: {}", output_text(&out));
    let rec = guard.wait_for("kill of cat .env", |r| {
        r["session"] == s && r["event"] == "open" && r["pid"] == env_pid && r["verdict"] == guard.refusal()
    });
    assert_eq!(rec["detector"], "credential", "{rec}");
    assert_eq!(rec["rule"], "dotenv", "{rec}");
    assert_eq!(rec["severity"], "critical", "{rec}");
    assert_eq!(rec["mitre"], "T1552.001", "{rec}");
    assert!(rec["path"].as_str().is_some_and(|p| p.ends_with(".env")), "{rec}");

    // 2. With credentials in its environment, a client connects to production: EPERM.
    let client = |port: u16, addr: &str, payload: &str| {
        format!(
            "import os, socket, sys\n\
             assert os.environ['AWS_ACCESS_KEY_ID'] == '{AWS_KEY_ID}'\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n\
             try:\n    s.connect(('{addr}', {port}))\n\
             except PermissionError as e:\n    print('EPERM', e.errno); sys.exit(3)\n\
             s.sendall(b'{payload}'); s.close(); print('SENT')\n"
        )
    };
    let creds: [(&str, &std::ffi::OsStr); 2] =
        [("AWS_ACCESS_KEY_ID", AWS_KEY_ID.as_ref()), ("AWS_SECRET_ACCESS_KEY", AWS_SECRET.as_ref())];
    let (_, out) = run_in(&guard, s, cwd, &creds, &["python3", "-c", &client(prod_port, "127.0.0.3", "exfil")]);
    assert_eq!(out.status.code(), Some(3), "production connect: {}\n{}", output_text(&out), guard.dump());
    assert_eq!(text(&out.stdout).trim(), "EPERM 1");
    let rec = guard.wait_for("deny of the production connect", |r| {
        r["session"] == s && r["event"] == "connect" && r["port"] == prod_port
    });
    assert_eq!(rec["verdict"], "deny", "{rec}");
    assert_eq!(rec["detector"], "scope_network", "{rec}");
    assert_eq!(rec["severity"], "high", "{rec}");
    assert_eq!(rec["addr"], "127.0.0.3", "{rec}");
    assert_eq!(rec["proto"], "tcp", "{rec}");
    assert!(accept_one(&production, Duration::from_millis(200)).is_none(), "production received a connection");

    // 3. Staging is in scope: the connection works and is recorded allow.
    let staging_thread = std::thread::spawn(move || accept_one(&staging, scaled(Duration::from_secs(20))));
    let (staging_pid, out) =
        run_in(&guard, s, cwd, &creds, &["python3", "-c", &client(staging_port, "127.0.0.2", "hello staging")]);
    assert!(out.status.success(), "staging connect: {}\n{}", output_text(&out), guard.dump());
    assert_eq!(staging_thread.join().unwrap().as_deref(), Some(&b"hello staging"[..]));
    let rec = guard
        .wait_for("staging connect", |r| r["session"] == s && r["event"] == "connect" && r["port"] == staging_port);
    assert_eq!(rec["verdict"], "allow", "{rec}");
    assert_eq!(rec["addr"], "127.0.0.2", "{rec}");

    // 4. Destructive commands never run. This session touched a credential, so they are held
    //    for a person (whatever the rule's action) rather than killed outright; denied, they die
    //    without having run.
    for (args, rule, tool) in [
        (&["psql", "-c", "DROP DATABASE prod"][..], "sql-destructive", "psql"),
        (&["aws", "ec2", "terminate-instances", "--instance-ids", "i-1"][..], "aws-delete", "aws"),
    ] {
        let child = spawn_in(&guard, s, cwd, &[("PATH", &path)], args);
        let pid = child.id();
        let rec = guard.wait_for(&format!("hold of {args:?}"), |r| {
            r["session"] == s && r["event"] == "exec" && r["pid"] == pid && r["verdict"] != "allow"
        });
        assert_eq!(rec["verdict"], "hold", "{rec}");
        assert_eq!(rec["detector"], "destructive", "{rec}");
        assert_eq!(rec["rule"], rule, "{rec}");
        assert_eq!(rec["severity"], "critical", "{rec}");
        assert_eq!(rec["mitre"], "T1485", "{rec}");
        assert!(argv_has(&rec, args[args.len() - 1]), "{rec}");
        let id = rec["hold_id"].as_u64().unwrap_or_else(|| panic!("no hold_id: {rec}"));
        assert_eq!(process_state(pid), Some('T'), "held {args:?} is not stopped");
        assert!(!ran_marker(bin.path(), tool).exists(), "{args:?} ran while held");
        deny(&guard, id);
        let out = finish(&guard, child, &format!("{args:?}"));
        assert!(was_killed(&out.status), "denied {args:?} not killed: {}\n{}", output_text(&out), guard.dump());
        assert!(!ran_marker(bin.path(), tool).exists(), "{args:?} ran");
        let rec = guard.wait_for(&format!("deny of hold {id}"), |r| r["event"] == "deny" && r["hold_id"] == id);
        assert_eq!(rec["verdict"], "kill", "{rec}");
        assert_eq!(rec["rule"], rule, "{rec}");
        assert_eq!(rec["session"], s, "{rec}");
    }
    // A harmless query runs.
    let (select_pid, out) = run_in(&guard, s, cwd, &[("PATH", &path)], &["psql", "-c", "SELECT 1"]);
    assert!(out.status.success(), "psql SELECT: {}\n{}", output_text(&out), guard.dump());
    assert_eq!(std::fs::read_to_string(ran_marker(bin.path(), "psql")).unwrap(), "-c SELECT 1\n");

    // The ordinary commands' own records: exec allow, nothing blocked.
    untouched.extend(ordinary());
    untouched.extend([(staging_pid, "staging client"), (select_pid, "psql SELECT 1")]);
    guard.settle(s);
    for (pid, what) in untouched {
        let recs = records_of(&guard, s, pid);
        assert!(
            recs.iter().any(|r| r["event"] == "exec" && r["verdict"] == "allow"),
            "no exec allow record for {what} (pid {pid}): {recs:?}"
        );
        assert_not_blocked(&guard, s, pid);
    }
    // And the whole story is in the one session: one read killed, one connect denied, two
    // commands held and denied.
    let recs = guard.records();
    let count = |event: &str, verdict: &str| {
        recs.iter().filter(|r| r["session"] == s && r["event"] == event && r["verdict"] == verdict).count()
    };
    assert_eq!(count("open", guard.refusal()), 1, "{}", guard.dump());
    assert_eq!(count("connect", "deny"), 1, "{}", guard.dump());
    assert_eq!(count("exec", "hold"), 2, "{}", guard.dump());
    assert_eq!(count("deny", "kill"), 2, "{}", guard.dump());
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn destructive_commands_are_killed_before_they_run() {
    if !can_run("destructive_commands_are_killed_before_they_run") {
        return;
    }
    let bin = TempDir::new("destructive-bin");
    fake_tools(bin.path(), &["psql", "aws"]);
    let path = path_with(bin.path());
    // The default policy's destructive rules; no credential was touched in this session.
    let guard = Guard::start_with(Some(&policy_text(&default_policy_value())), &[]);
    let s = "destructive";
    for (args, rule, tool) in [
        (&["psql", "-c", "DROP DATABASE prod"][..], "sql-destructive", "psql"),
        (&["aws", "ec2", "terminate-instances", "--instance-ids", "i-1"][..], "aws-delete", "aws"),
    ] {
        let (pid, out) = run_in(&guard, s, None, &[("PATH", &path)], args);
        assert!(was_killed(&out.status), "{args:?} not killed: {}\n{}", output_text(&out), guard.dump());
        assert!(!ran_marker(bin.path(), tool).exists(), "{args:?} ran");
        let rec = guard.wait_for(&format!("kill of {args:?}"), |r| {
            r["session"] == s && r["event"] == "exec" && r["pid"] == pid && r["verdict"] == "kill"
        });
        assert_eq!(rec["detector"], "destructive", "{rec}");
        assert_eq!(rec["rule"], rule, "{rec}");
        assert_eq!(rec["severity"], "critical", "{rec}");
        assert_eq!(rec["mitre"], "T1485", "{rec}");
        assert!(argv_has(&rec, args[args.len() - 1]), "{rec}");
    }
    // Harmless uses of the same tools run.
    for (args, tool, expect) in [
        (&["psql", "-c", "SELECT 1"][..], "psql", "-c SELECT 1\n"),
        (&["aws", "ec2", "describe-instances"][..], "aws", "ec2 describe-instances\n"),
    ] {
        let (pid, out) = run_in(&guard, s, None, &[("PATH", &path)], args);
        assert!(out.status.success(), "{args:?}: {}\n{}", output_text(&out), guard.dump());
        assert_eq!(std::fs::read_to_string(ran_marker(bin.path(), tool)).unwrap(), expect);
        let rec = guard
            .wait_for(&format!("exec of {args:?}"), |r| r["session"] == s && r["event"] == "exec" && r["pid"] == pid);
        assert_eq!(rec["verdict"], "allow", "{rec}");
    }
}

// ---- 2. Path evasions ----------------------------------------------------------------------

struct Vault {
    dir: TempDir,
    secret: std::path::PathBuf,
    content: &'static str,
}

fn vault() -> Vault {
    let dir = TempDir::new("vault");
    let secret = dir.path().join("vault").join("secret.txt");
    let content = "VAULT-TOKEN-9f8e7d6c5b4a";
    write_file(&secret, &format!("{content}\n"));
    write_file(&dir.path().join("project").join(".env"), &format!("DB_PASSWORD={content}\n"));
    Vault { dir, secret, content }
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn symlink_to_a_protected_file_is_killed() {
    if !can_run("symlink_to_a_protected_file_is_killed") {
        return;
    }
    let v = vault();
    let guard = Guard::start_with(Some(&evasion_policy(&v.secret)), &[]);
    // To a file protected by path (inode).
    let link = v.dir.path().join("notes.txt");
    std::os::unix::fs::symlink(&v.secret, &link).unwrap();
    assert_read_killed(&guard, "symlink", None, &["cat", link.to_str().unwrap()], "vault-secret", v.content);
    // To a file protected by name.
    let link = v.dir.path().join("config.txt");
    std::os::unix::fs::symlink(v.dir.path().join("project/.env"), &link).unwrap();
    assert_read_killed(&guard, "symlink-name", None, &["cat", link.to_str().unwrap()], "dotenv", v.content);
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn hardlink_to_a_protected_file_is_killed() {
    if !can_run("hardlink_to_a_protected_file_is_killed") {
        return;
    }
    let v = vault();
    let guard = Guard::start_with(Some(&evasion_policy(&v.secret)), &[]);
    // Made after the daemon's start-up scan, under an innocent name in another directory.
    let link = v.dir.path().join("project").join("README.txt");
    std::fs::hard_link(&v.secret, &link).unwrap();
    assert_read_killed(&guard, "hardlink", None, &["cat", link.to_str().unwrap()], "vault-secret", v.content);
    // Same through the innocent name, relative to the cwd.
    assert_read_killed(
        &guard,
        "hardlink-rel",
        Some(&v.dir.path().join("project")),
        &["cat", "README.txt"],
        "vault-secret",
        v.content,
    );
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn relative_path_to_a_protected_file_is_killed() {
    if !can_run("relative_path_to_a_protected_file_is_killed") {
        return;
    }
    let v = vault();
    let guard = Guard::start_with(Some(&evasion_policy(&v.secret)), &[]);
    let vault_dir = v.secret.parent().unwrap();
    assert_read_killed(&guard, "relative", Some(vault_dir), &["cat", "secret.txt"], "vault-secret", v.content);
    assert_read_killed(
        &guard,
        "relative-dots",
        Some(&v.dir.path().join("project")),
        &["cat", "../vault/./secret.txt"],
        "vault-secret",
        v.content,
    );
    assert_read_killed(
        &guard,
        "relative-env",
        Some(&v.dir.path().join("project")),
        &["cat", ".env"],
        "dotenv",
        v.content,
    );
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn dirfd_relative_open_of_a_protected_file_is_killed() {
    if !can_run("dirfd_relative_open_of_a_protected_file_is_killed") {
        return;
    }
    let v = vault();
    let guard = Guard::start_with(Some(&evasion_policy(&v.secret)), &[]);
    let script = |dir: &Path, name: &str| {
        format!(
            "import os, sys\n\
             d = os.open('{}', os.O_RDONLY | os.O_DIRECTORY)\n\
             data = os.read(os.open('{name}', os.O_RDONLY, dir_fd=d), 100)\n\
             sys.stdout.buffer.write(data)\n",
            dir.display()
        )
    };
    let vault_dir = v.secret.parent().unwrap();
    assert_read_killed(
        &guard,
        "dirfd",
        None,
        &["python3", "-c", &script(vault_dir, "secret.txt")],
        "vault-secret",
        v.content,
    );
    let project = v.dir.path().join("project");
    assert_read_killed(&guard, "dirfd-env", None, &["python3", "-c", &script(&project, ".env")], "dotenv", v.content);
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn proc_self_root_path_to_a_protected_file_is_killed() {
    if !can_run("proc_self_root_path_to_a_protected_file_is_killed") {
        return;
    }
    let v = vault();
    let guard = Guard::start_with(Some(&evasion_policy(&v.secret)), &[]);
    let via_proc = format!("/proc/self/root{}", v.secret.display());
    assert_read_killed(&guard, "procroot", None, &["cat", &via_proc], "vault-secret", v.content);
    let via_proc = format!("/proc/self/root{}", v.dir.path().join("project/.env").display());
    assert_read_killed(&guard, "procroot-env", None, &["cat", &via_proc], "dotenv", v.content);
    // Unprotected neighbours stay readable, by the same route.
    let plain = v.dir.path().join("vault").join("plain.txt");
    write_file(&plain, "plain\n");
    let (_, out) = run_in(&guard, "procroot", None, &[], &["cat", &format!("/proc/self/root{}", plain.display())]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(out.stdout, b"plain\n");
}

// ---- 3. Another process's environment ------------------------------------------------------

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn another_process_environ_is_killed_own_is_allowed() {
    if !can_run("another_process_environ_is_killed_own_is_allowed") {
        return;
    }
    let policy = policy_text(&json!({
        "credentials": { "rules": [
            { "id": "environ-test", "severity": "critical", "mitre": "T1003.007", "proc_environ": true },
        ]},
    }));
    let guard = Guard::start_with(Some(&policy), &[]);
    let s = "environ";
    let mut sleeper = guard
        .launch_cmd(s, &["sleep", "30"])
        .env("GUARD_TEST_SIBLING_SECRET", "sibling-secret-value")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sleeper_pid = sleeper.id();
    // Wait until the launcher has become sleep.
    let deadline = Instant::now() + scaled(Duration::from_secs(10));
    while std::fs::read_to_string(format!("/proc/{sleeper_pid}/comm")).unwrap_or_default().trim() != "sleep" {
        assert!(Instant::now() < deadline, "sleep did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let sibling = format!("/proc/{sleeper_pid}/environ");
    let rec = assert_read_killed(&guard, s, None, &["cat", &sibling], "environ-test", "sibling-secret-value");
    assert_eq!(rec["mitre"], "T1003.007", "{rec}");
    // The environment of a process outside every session (this test) too.
    let outsider = format!("/proc/{}/environ", std::process::id());
    assert_read_killed(&guard, s, None, &["cat", &outsider], "environ-test", "PATH=");
    // Its own environment is not a secret from itself.
    let (pid, out) =
        run_in(&guard, s, None, &[("GUARD_TEST_OWN", "own-value".as_ref())], &["cat", "/proc/self/environ"]);
    assert!(out.status.success(), "cat /proc/self/environ: {}\n{}", output_text(&out), guard.dump());
    assert!(text(&out.stdout).contains("GUARD_TEST_OWN=own-value"), "{}", output_text(&out));
    guard.settle(s);
    assert_not_blocked(&guard, s, pid);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

// ---- 4. Network scope ------------------------------------------------------------------------

fn network_policy() -> String {
    policy_text(&json!({
        "mode": "enforce",
        "scope": { "network": { "mode": "enforce", "allow_loopback": false, "allow": ["127.0.0.2/32"] } },
    }))
}

/// A python client: prints `EPERM 1` and exits 3 when the kernel refuses, `SENT` otherwise.
fn py_net(family: &str, kind: &str, addr: &str, port: u16, op: &str) -> String {
    let action = match op {
        "connect" => format!("s.connect(('{addr}', {port})); s.sendall(b'data')"),
        _ => format!("s.sendto(b'data', ('{addr}', {port}))"),
    };
    format!(
        "import socket, sys\n\
         s = socket.socket(socket.{family}, socket.{kind})\n\
         try:\n    {action}\n\
         except PermissionError as e:\n    print('EPERM', e.errno); sys.exit(3)\n\
         s.close(); print('SENT')\n"
    )
}

fn assert_net_denied(guard: &Guard, session: &str, script: &str, event: &str, port: u16) -> Value {
    let (pid, out) = run_in(guard, session, None, &[], &["python3", "-c", script]);
    assert_eq!(out.status.code(), Some(3), "not refused: {}\n{}", output_text(&out), guard.dump());
    assert_eq!(text(&out.stdout).trim(), "EPERM 1");
    let rec = guard.wait_for(&format!("{event} deny to port {port}"), |r| {
        r["session"] == session && r["event"] == event && r["port"] == port && r["pid"] == pid
    });
    assert_eq!(rec["verdict"], "deny", "{rec}");
    assert_eq!(rec["detector"], "scope_network", "{rec}");
    assert_eq!(rec["severity"], "high", "{rec}");
    rec
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn ipv6_and_v4_mapped_out_of_scope_are_refused() {
    if !can_run("ipv6_and_v4_mapped_out_of_scope_are_refused") {
        return;
    }
    let guard = Guard::start_with(Some(&network_policy()), &[]);
    let s = "net6";
    // ::1 is loopback, and loopback is not allowed here.
    match TcpListener::bind("[::1]:0") {
        Ok(v6) => {
            let port = v6.local_addr().unwrap().port();
            let rec = assert_net_denied(
                &guard,
                s,
                &py_net("AF_INET6", "SOCK_STREAM", "::1", port, "connect"),
                "connect",
                port,
            );
            assert_eq!(rec["addr"], "::1", "{rec}");
            assert_eq!(rec["family"], "ipv6", "{rec}");
            assert!(accept_one(&v6, Duration::from_millis(200)).is_none(), "::1 received a connection");
        }
        Err(err) => println!("no IPv6 loopback here ({err}); ::1 not tested"),
    }
    // An IPv4-mapped IPv6 address is judged as the IPv4 address: production refused...
    let production = TcpListener::bind("127.0.0.3:0").unwrap();
    let port = production.local_addr().unwrap().port();
    let rec = assert_net_denied(
        &guard,
        s,
        &py_net("AF_INET6", "SOCK_STREAM", "::ffff:127.0.0.3", port, "connect"),
        "connect",
        port,
    );
    assert!(rec["addr"] == "127.0.0.3" || rec["addr"] == "::ffff:127.0.0.3", "{rec}");
    assert!(accept_one(&production, Duration::from_millis(200)).is_none(), "production received a connection");
    // ... and staging reached.
    let staging = TcpListener::bind("127.0.0.2:0").unwrap();
    let port = staging.local_addr().unwrap().port();
    let accept = std::thread::spawn(move || accept_one(&staging, scaled(Duration::from_secs(20))));
    let (_, out) = run_in(
        &guard,
        s,
        None,
        &[],
        &["python3", "-c", &py_net("AF_INET6", "SOCK_STREAM", "::ffff:127.0.0.2", port, "connect")],
    );
    assert!(out.status.success(), "v4-mapped staging: {}\n{}", output_text(&out), guard.dump());
    assert_eq!(accept.join().unwrap().as_deref(), Some(&b"data"[..]));
    let rec = guard
        .wait_for("v4-mapped staging connect", |r| r["session"] == s && r["event"] == "connect" && r["port"] == port);
    assert_eq!(rec["verdict"], "allow", "{rec}");
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn udp_sendto_is_scoped() {
    if !can_run("udp_sendto_is_scoped") {
        return;
    }
    let guard = Guard::start_with(Some(&network_policy()), &[]);
    let s = "udp";
    let production = UdpSocket::bind("127.0.0.3:0").unwrap();
    let prod_port = production.local_addr().unwrap().port();
    let staging = UdpSocket::bind("127.0.0.2:0").unwrap();
    let staging_port = staging.local_addr().unwrap().port();

    let rec = assert_net_denied(
        &guard,
        s,
        &py_net("AF_INET", "SOCK_DGRAM", "127.0.0.3", prod_port, "sendto"),
        "sendmsg",
        prod_port,
    );
    assert_eq!(rec["proto"], "udp", "{rec}");
    assert_eq!(rec["addr"], "127.0.0.3", "{rec}");
    // v4-mapped sendto, too.
    assert_net_denied(
        &guard,
        s,
        &py_net("AF_INET6", "SOCK_DGRAM", "::ffff:127.0.0.3", prod_port, "sendto"),
        "sendmsg",
        prod_port,
    );
    // A connected UDP socket goes through connect.
    assert_net_denied(
        &guard,
        s,
        &py_net("AF_INET", "SOCK_DGRAM", "127.0.0.3", prod_port, "connect"),
        "connect",
        prod_port,
    );
    production.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut buf = [0u8; 16];
    assert!(production.recv_from(&mut buf).is_err(), "production received a datagram");

    let (_, out) = run_in(
        &guard,
        s,
        None,
        &[],
        &["python3", "-c", &py_net("AF_INET", "SOCK_DGRAM", "127.0.0.2", staging_port, "sendto")],
    );
    assert!(out.status.success(), "staging sendto: {}\n{}", output_text(&out), guard.dump());
    staging.set_read_timeout(Some(scaled(Duration::from_secs(10)))).unwrap();
    let (n, _) = staging.recv_from(&mut buf).expect("staging datagram");
    assert_eq!(&buf[..n], b"data");
    let rec =
        guard.wait_for("staging sendto", |r| r["session"] == s && r["event"] == "sendmsg" && r["port"] == staging_port);
    assert_eq!(rec["verdict"], "allow", "{rec}");
    assert_eq!(rec["proto"], "udp", "{rec}");
}

// ---- 5, 6. Monitor mode ----------------------------------------------------------------------

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn credential_rule_in_monitor_mode_reads_and_records_audit() {
    if !can_run("credential_rule_in_monitor_mode_reads_and_records_audit") {
        return;
    }
    let ws = TempDir::new("monitor-cred");
    write_file(&ws.path().join(".env"), "TOKEN=monitored\n");
    let policy = policy_text(&json!({
        "mode": "enforce",
        "credentials": { "rules": [ { "id": "dotenv-watch", "mode": "monitor", "severity": "high", "names": [".env"] } ] },
    }));
    let guard = Guard::start_with(Some(&policy), &[]);
    let (pid, out) = run_in(&guard, "monitor", Some(ws.path()), &[], &["cat", ".env"]);
    assert!(out.status.success(), "{}\n{}", output_text(&out), guard.dump());
    assert_eq!(out.stdout, b"TOKEN=monitored\n");
    let rec = guard.wait_for("audit of cat .env", |r| {
        r["session"] == "monitor" && r["event"] == "open" && r["pid"] == pid && r["detector"] == "credential"
    });
    assert_eq!(rec["verdict"], "audit", "{rec}");
    assert_eq!(rec["rule"], "dotenv-watch", "{rec}");
    assert_eq!(rec["severity"], "high", "{rec}");
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn destructive_rule_in_monitor_mode_runs_and_records_audit() {
    if !can_run("destructive_rule_in_monitor_mode_runs_and_records_audit") {
        return;
    }
    let bin = TempDir::new("monitor-bin");
    fake_tools(bin.path(), &["psql"]);
    let policy = policy_text(&json!({
        "mode": "enforce",
        "destructive": { "rules": [ {
            "id": "sql-drop-watch", "mode": "monitor", "severity": "high",
            "match": { "programs": ["psql"], "all": [ { "script": { "options": ["-c"], "matches": "(?i)\\bdrop\\b" } } ] },
        } ] },
    }));
    let guard = Guard::start_with(Some(&policy), &[]);
    let path = path_with(bin.path());
    let (pid, out) = run_in(&guard, "monitor-exec", None, &[("PATH", &path)], &["psql", "-c", "DROP DATABASE prod"]);
    assert!(out.status.success(), "{}\n{}", output_text(&out), guard.dump());
    assert_eq!(std::fs::read_to_string(ran_marker(bin.path(), "psql")).unwrap(), "-c DROP DATABASE prod\n");
    let rec = guard.wait_for("audit of psql DROP", |r| {
        r["session"] == "monitor-exec" && r["event"] == "exec" && r["pid"] == pid && r["detector"] == "destructive"
    });
    assert_eq!(rec["verdict"], "audit", "{rec}");
    assert_eq!(rec["rule"], "sql-drop-watch", "{rec}");
    assert_eq!(rec["severity"], "high", "{rec}");
}

// ---- 7, 8. Bad policies ----------------------------------------------------------------------

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn bad_policy_on_sighup_keeps_the_running_one() {
    if !can_run("bad_policy_on_sighup_keeps_the_running_one") {
        return;
    }
    let ws = TempDir::new("reload");
    write_file(&ws.path().join(".env"), "TOKEN=reload-secret\n");
    let policy = policy_text(&json!({ "credentials": { "rules": [ { "id": "dotenv", "names": [".env"] } ] } }));
    let guard = Guard::start_with(Some(&policy), &[]);
    let pid = guard.daemon_pid();
    let cwd = Some(ws.path());
    assert_read_killed(&guard, "reload-before", cwd, &["cat", ".env"], "dotenv", "reload-secret");

    // Invalid YAML: refused, the running policy stays.
    std::fs::write(guard.policy_path(), "credentials:\n  rules:\n    - id: dotenv\n      names: [\".env\"\n").unwrap();
    // SAFETY: kill(2) on the daemon this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    // The refusal must reach the audit stream by itself, not only once some later kernel
    // event makes the daemon flush. Checked here, asserted at the end (so the rest runs).
    let deadline = Instant::now() + scaled(Duration::from_secs(5));
    let mut written_promptly = false;
    while Instant::now() < deadline {
        if guard.records().iter().any(|r| r["event"] == "policy_reload_failed") {
            written_promptly = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_read_killed(&guard, "reload-after", cwd, &["cat", ".env"], "dotenv", "reload-secret");
    let rec = guard.wait_for("policy_reload_failed", |r| r["event"] == "policy_reload_failed");
    let reason = rec["reason"].as_str().unwrap_or_default();
    let file = guard.policy_path().display().to_string();
    assert!(reason.contains(&format!("{file}:4:")), "reason does not name FILE:LINE:COLUMN: {rec}");
    assert!(!guard.records().iter().any(|r| r["event"] == "policy_reload"), "the invalid policy was taken");

    // A valid one afterwards is taken (here: the rule in monitor mode).
    let monitor = policy_text(
        &json!({ "credentials": { "rules": [ { "id": "dotenv", "mode": "monitor", "names": [".env"] } ] } }),
    );
    std::fs::write(guard.policy_path(), monitor).unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    // (Any session activity flushes the stream; see the prompt-write check below.)
    let deadline = Instant::now() + scaled(Duration::from_secs(10));
    while !guard.records().iter().any(|r| r["event"] == "policy_reload") {
        assert!(Instant::now() < deadline, "no policy_reload record; stream:\n{}", guard.dump());
        guard.settle("reload-nudge");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A .env never opened before (see the next test for the one that was).
    let fresh = ws.path().join("fresh");
    write_file(&fresh.join(".env"), "TOKEN=reload-secret\n");
    let (pid, out) = run_in(&guard, "reload-valid", Some(&fresh), &[], &["cat", ".env"]);
    assert!(out.status.success(), "{}\n{}", output_text(&out), guard.dump());
    assert_eq!(out.stdout, b"TOKEN=reload-secret\n");
    let rec = guard.wait_for("audit of .env after reload", |r| {
        r["session"] == "reload-valid" && r["event"] == "open" && r["pid"] == pid && r["detector"] == "credential"
    });
    assert_eq!(rec["verdict"], "audit", "{rec}");

    assert!(
        written_promptly,
        "product bug: after SIGHUP with an invalid policy, no policy_reload_failed record was written \
         within 5 s; it appeared only after later session activity (the daemon record is buffered \
         and not flushed)"
    );
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn reload_applies_to_a_file_already_caught() {
    if !can_run("reload_applies_to_a_file_already_caught") {
        return;
    }
    let ws = TempDir::new("reload-caught");
    write_file(&ws.path().join(".env"), "TOKEN=caught\n");
    let policy = policy_text(&json!({ "credentials": { "rules": [ { "id": "dotenv", "names": [".env"] } ] } }));
    let guard = Guard::start_with(Some(&policy), &[]);
    let pid = guard.daemon_pid();
    // Caught once (the daemon may now know the file by inode).
    assert_read_killed(&guard, "caught-before", Some(ws.path()), &["cat", ".env"], "dotenv", "TOKEN=caught");
    // The new policy puts another rule first and .env in monitor mode.
    let reloaded = policy_text(&json!({ "credentials": { "rules": [
        { "id": "other", "names": ["other.txt"] },
        { "id": "dotenv", "mode": "monitor", "names": [".env"] },
    ] } }));
    std::fs::write(guard.policy_path(), reloaded).unwrap();
    // SAFETY: kill(2) on the daemon this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    let deadline = Instant::now() + scaled(Duration::from_secs(10));
    while !guard.records().iter().any(|r| r["event"] == "policy_reload") {
        assert!(Instant::now() < deadline, "no policy_reload record; stream:\n{}", guard.dump());
        guard.settle("caught-nudge");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (pid, out) = run_in(&guard, "caught-after", Some(ws.path()), &[], &["cat", ".env"]);
    let rec = guard.wait_for("record of .env after reload", |r| {
        r["session"] == "caught-after" && r["event"] == "open" && r["pid"] == pid && r["detector"] == "credential"
    });
    assert_eq!(rec["rule"], "dotenv", "the record names a rule that does not match .env: {rec}");
    assert_eq!(rec["verdict"], "audit", "{rec}");
    assert!(out.status.success(), "{}\n{}", output_text(&out), guard.dump());
    assert_eq!(out.stdout, b"TOKEN=caught\n");
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn guard_run_refuses_an_invalid_policy() {
    if !can_run("guard_run_refuses_an_invalid_policy") {
        return;
    }
    let dir = TempDir::new("badrun");
    let policy = dir.path().join("bad.yaml");
    write_file(&policy, "mode: enforce\nscope:\n  network:\n    mode: enforce\n    allow: [10.0.0.1/8]\n");
    write_file(&dir.path().join(".env"), "TOKEN=unguarded\n");
    let root = guard_tests::cgroup2_mount().join(format!("guard-test-{}-badrun", std::process::id()));
    /// Removes the root however the test ends (guard run may create it before it fails).
    struct Cleanup(std::path::PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            remove_cgroup_tree(&self.0);
        }
    }
    let _cleanup = Cleanup(root.clone());
    let audit = dir.path().join("audit.jsonl");
    let socket = dir.path().join("control.sock");
    let started = Instant::now();
    let mut child = run_command(&root, &audit, &socket)
        .arg("--policy")
        .arg(&policy)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > scaled(Duration::from_secs(30)) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("guard run with an invalid policy kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert!(!status.success(), "guard run accepted an invalid policy: {stderr}");
    assert!(stderr.contains(&format!("{}:5:13", policy.display())), "stderr does not name FILE:LINE:COLUMN: {stderr}");
    assert!(stderr.contains("host bits"), "{stderr}");
    assert!(!socket.exists(), "control socket created");
    assert!(!audit.exists() || std::fs::read_to_string(&audit).unwrap().is_empty(), "audit stream written");
    // Nothing in the kernel: a process in that root reads .env freely (the launcher creates
    // the root if guard run did not).
    let out = Command::new(guard_bin())
        .arg("launch")
        .arg("--root")
        .arg(&root)
        .args(["--session", "unguarded", "--", "cat", ".env"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(out.stdout, b"TOKEN=unguarded\n");
}
