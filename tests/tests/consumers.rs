//! Issue "An agent's own tools keep working": credentials bound to the programs that own them,
//! on the real kernel (host tier).
//!
//! The consumers here are the machine's `ssh-keygen` (a dynamically linked binary) and a
//! python script the test installs (a `#!` tool, like the aws CLI), bound to files of the
//! test's own making by an explicit policy.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::Path,
    process::{Command, Output, Stdio},
};

use guard_tests::{Guard, TempDir, Tier, can_run, output_text, policy_text, write_file};
use serde_json::{Value, json};

const MARKER: &str = "CONSUMER-TEST-SECRET-7d1f";

fn run(guard: &Guard, session: &str, args: &[&str], env: &[(&str, &str)]) -> (u32, Output) {
    let mut cmd = guard.launch_cmd(session, args);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (key, value) in env {
        cmd.env(key, value);
    }
    let child = cmd.spawn().expect("spawning guard launch");
    let pid = child.id();
    (pid, child.wait_with_output().expect("waiting for guard launch"))
}

fn records_of(guard: &Guard, session: &str, pid: u32) -> Vec<Value> {
    guard.session_records(session).into_iter().filter(|r| r["pid"] == pid).collect()
}

fn assert_killed_reading(guard: &Guard, session: &str, args: &[&str], env: &[(&str, &str)], rule: &str) {
    let (pid, out) = run(guard, session, args, env);
    assert!(guard.was_refused(&out.status), "{args:?} was not refused: {}\n{}", output_text(&out), guard.dump());
    assert!(!String::from_utf8_lossy(&out.stdout).contains(MARKER), "{args:?} printed the secret");
    let rec = guard.wait_for(&format!("kill of {args:?}"), |r| {
        r["session"] == session && r["pid"] == pid && r["event"] == "open" && r["verdict"] == guard.refusal()
    });
    assert_eq!(rec["detector"], "credential", "{rec}");
    assert_eq!(rec["rule"], rule, "{rec}");
    assert!(rec["consumer"].is_null(), "{rec}");
}

/// A root-owned directory no one else can write, as consumer files must live in.
fn private_dir(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

fn install(path: &Path, text: &str) {
    write_file(path, text);
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn a_binary_consumer_reads_its_key_and_nothing_else_does() {
    if !can_run("a_binary_consumer_reads_its_key_and_nothing_else_does") {
        return;
    }
    let dir = private_dir("consumer-bin");
    let key = dir.path().join("id_test");
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", MARKER, "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen");
    assert!(keygen.status.success(), "ssh-keygen: {}", output_text(&keygen));
    let copy = dir.path().join("kg");
    fs::copy("/usr/bin/ssh-keygen", &copy).expect("copying ssh-keygen");
    let policy = policy_text(&json!({
        "mode": "enforce",
        "credentials": { "rules": [
            { "id": "test-key", "paths": [key.to_str().unwrap()], "consumers": ["ssh-keygen"] },
        ]},
    }));
    let guard = Guard::start_with(Some(&policy), &[]);
    let s = "binary";
    let key_arg = key.to_str().unwrap();

    // Its own tool: allowed, and recorded once for the process although it reads it twice.
    let (pid, out) = run(&guard, s, &["ssh-keygen", "-y", "-f", key_arg], &[]);
    assert!(out.status.success(), "ssh-keygen -y: {}\n{}", output_text(&out), guard.dump());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ssh-ed25519 "), "{}", output_text(&out));
    let rec = guard.wait_for("the consumer's read", |r| r["pid"] == pid && r["consumer"] == "ssh-keygen");
    assert_eq!((rec["verdict"].as_str(), rec["rule"].as_str()), (Some("audit"), Some("test-key")), "{rec}");
    guard.settle(s);
    let reads: Vec<Value> =
        records_of(&guard, s, pid).into_iter().filter(|r| r["event"] == "open" && r["rule"] == "test-key").collect();
    assert_eq!(reads.len(), 1, "one record per process: {reads:#?}");
    // Its own read marks nothing: no escalation, no credential_discovery chain stage.
    assert!(
        !guard.session_records(s).iter().any(|r| r["event"] == "escalation" || r["event"] == "chain"),
        "a consumer's read escalated the session:\n{}",
        guard.dump()
    );
    assert!(
        !guard.session_records(s).iter().any(|r| r["verdict"] == "kill" || r["verdict"] == "deny"),
        "{}",
        guard.dump()
    );

    // Harvesting: cat, a renamed copy of the consumer, the consumer through the dynamic
    // loader, the consumer with a preloaded library.
    assert_killed_reading(&guard, "cat", &["cat", key_arg], &[], "test-key");
    assert_killed_reading(&guard, "copy", &[copy.to_str().unwrap(), "-y", "-f", key_arg], &[], "test-key");
    assert_killed_reading(
        &guard,
        "loader",
        &["/lib64/ld-linux-x86-64.so.2", "/usr/bin/ssh-keygen", "-y", "-f", key_arg],
        &[],
        "test-key",
    );
    let (pid, out) = run(
        &guard,
        "preload",
        &["ssh-keygen", "-y", "-f", key_arg],
        &[("LD_PRELOAD", "/lib/x86_64-linux-gnu/libc.so.6")],
    );
    assert!(
        guard.was_refused(&out.status),
        "LD_PRELOAD'ed ssh-keygen not refused: {}\n{}",
        output_text(&out),
        guard.dump()
    );
    let exec = guard.wait_for("the refused consumer's exec", |r| r["pid"] == pid && r["event"] == "exec");
    assert!(exec["reason"].as_str().is_some_and(|t| t.contains("LD_PRELOAD")), "{exec}");
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn a_script_consumer_is_its_script_its_threads_but_not_its_children() {
    if !can_run("a_script_consumer_is_its_script_its_threads_but_not_its_children") {
        return;
    }
    let dir = private_dir("consumer-script");
    let secret = dir.path().join("tool.token");
    write_file(&secret, &format!("token={MARKER}\n"));
    let tool = dir.path().join("tool");
    let secret_arg = secret.to_str().unwrap().to_string();
    // Reads the token in a thread, then has a child (another program) try the same.
    install(
        &tool,
        &format!(
            "#!/usr/bin/python3\nimport sys, threading, subprocess\n\
             out = []\n\
             t = threading.Thread(target=lambda: out.append(open({secret_arg:?}).read()))\n\
             t.start(); t.join()\n\
             print('thread read', len(out[0]), 'bytes')\n\
             if sys.argv[1:] == ['child']:\n    \
                 r = subprocess.run(['cat', {secret_arg:?}], capture_output=True)\n    \
                 print('child status', r.returncode, 'leaked' if b'{MARKER}' in r.stdout else 'clean')\n"
        ),
    );
    let policy = policy_text(&json!({
        "mode": "enforce",
        "credentials": { "rules": [
            { "id": "tool-token", "paths": [secret_arg], "consumers": [tool.to_str().unwrap()] },
        ]},
    }));
    let guard = Guard::start_with(Some(&policy), &[]);

    let (pid, out) = run(&guard, "tool", &[tool.to_str().unwrap(), "child"], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "the tool: {}\n{}", output_text(&out), guard.dump());
    assert!(stdout.contains("thread read"), "{stdout}");
    // The child is not the tool: killed (host tier) or its open refused, cat exiting 1 (lsm).
    let child_status = match guard.tier() {
        Tier::Host => "child status -9 clean",
        Tier::Lsm => "child status 1 clean",
    };
    assert!(stdout.contains(child_status), "the child was not refused: {stdout}\n{}", guard.dump());
    let rec =
        guard.wait_for("the tool's read", |r| r["pid"] == pid && r["event"] == "open" && r["rule"] == "tool-token");
    assert_eq!((rec["verdict"].as_str(), rec["consumer"].as_str()), (Some("audit"), tool.to_str()), "{rec}");
    let child = guard.wait_for("the child's kill", |r| {
        r["session"] == "tool" && r["comm"] == "cat" && r["verdict"] == guard.refusal()
    });
    assert_eq!(child["rule"], "tool-token", "{child}");

    // The interpreter with an inline script, or the script's copy, is not the tool.
    assert_killed_reading(
        &guard,
        "inline",
        &["/usr/bin/python3", "-c", &format!("print(open({secret_arg:?}).read())")],
        &[],
        "tool-token",
    );
    let copy = dir.path().join("tool-copy");
    fs::copy(&tool, &copy).expect("copying the tool");
    assert_killed_reading(&guard, "script-copy", &["/usr/bin/python3", copy.to_str().unwrap()], &[], "tool-token");
    // Nor is the tool with its interpreter told to load foreign code.
    assert_killed_reading(&guard, "pythonpath", &[tool.to_str().unwrap()], &[("PYTHONPATH", "/tmp")], "tool-token");

    // Rewriting a consumer's script is tampering: killed before the write.
    let before = fs::read(&tool).expect("reading the tool");
    let (pid, out) = run(&guard, "tamper", &["/bin/sh", "-c", &format!("echo 'import os' >> {}", tool.display())], &[]);
    assert!(!out.status.success(), "{}", output_text(&out));
    guard.wait_for("the tamper kill", |r| {
        r["session"] == "tamper" && r["verdict"] == guard.refusal() && r["detector"] == "self_protection"
    });
    assert_eq!(fs::read(&tool).expect("reading the tool"), before, "the consumer script was modified (pid {pid})");
}
