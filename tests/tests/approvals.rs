//! Issue "Trajectory, approvals and credential provenance": holds for a person, escalation
//! after a credential touch, and self-protection of held tasks (host tier).

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use guard_tests::{Guard, Tier, Workspace, can_run, scaled, write_file};
use serde_json::Value;

/// A monitored credential rule and a monitor-mode destructive rule: on its own the command
/// would run; after the credential touch it must wait for a person.
const POLICY: &str = r#"
credentials:
  rules:
    - id: dotenv
      mode: monitor
      severity: critical
      names: [".env"]
destructive:
  hold_timeout_secs: 4
  rules:
    - id: sql-destructive
      mode: monitor
      severity: critical
      mitre: T1485
      match:
        programs: [psql]
        any:
          - script:
              options: [-c]
              matches: '(?i)\b(drop|truncate)\b'
"#;

/// A workspace with `.env` and a stand-in `psql` that leaves a marker when it runs.
fn workspace() -> Workspace {
    Workspace::new("approvals", "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n", &["psql"])
}

fn launch_in(guard: &Guard, ws: &Workspace, session: &str, args: &[&str]) -> Command {
    let mut cmd = ws.launch_cmd(guard, session, args);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    cmd
}

fn pending(guard: &Guard) -> Vec<Value> {
    let out = Command::new(guard_tests::guard_bin())
        .args(["pending", "--json", "--socket"])
        .arg(&guard.socket)
        .output()
        .unwrap();
    assert!(out.status.success(), "guard pending: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<Value>(&out.stdout).unwrap().as_array().unwrap().clone()
}

fn wait_pending(guard: &Guard, what: &str) -> Value {
    let deadline = Instant::now() + scaled(Duration::from_secs(15));
    loop {
        let list = pending(guard);
        if let Some(hold) = list.into_iter().find(|h| {
            h["argv"].as_array().is_some_and(|a| a.iter().any(|v| v.as_str().is_some_and(|s| s.contains(what))))
        }) {
            return hold;
        }
        assert!(Instant::now() < deadline, "no pending hold for {what}; stream:\n{}", guard.dump());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn decide(guard: &Guard, verb: &str, id: u64) -> std::process::Output {
    Command::new(guard_tests::guard_bin())
        .args([verb, &id.to_string(), "--socket"])
        .arg(&guard.socket)
        .output()
        .unwrap()
}

fn touch_credential(guard: &Guard, ws: &Workspace, session: &str) {
    let out = launch_in(guard, ws, session, &["cat", ".env"]).stdout(Stdio::piped()).output().unwrap();
    assert!(out.status.success(), "monitored read must succeed");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n");
    guard.wait_for("monitored .env read", |r| {
        r["event"] == "open" && r["verdict"] == "audit" && r["detector"] == "credential"
    });
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn monitor_rule_runs_before_a_credential_touch_and_is_held_after() {
    if !can_run("monitor_rule_runs_before_a_credential_touch_and_is_held_after") {
        return;
    }
    let ws = workspace();
    let guard = Guard::start_with(Some(POLICY), &[]);

    // Before any credential touch a monitor-mode rule lets the command run, recorded audit.
    let status = launch_in(&guard, &ws, "esc", &["psql", "-c", "DROP TABLE before"]).status().unwrap();
    assert!(status.success());
    assert!(ws.ran("psql").contains("DROP TABLE before"));
    guard.wait_for("monitor verdict", |r| {
        r["event"] == "exec" && r["verdict"] == "audit" && r["rule"] == "sql-destructive"
    });

    touch_credential(&guard, &ws, "esc");

    // After it, the same monitor-mode rule holds for a person; approve lets it run.
    let mut child = launch_in(&guard, &ws, "esc", &["psql", "-c", "DROP TABLE approved"]).spawn().unwrap();
    let hold = wait_pending(&guard, "DROP TABLE approved");
    assert_eq!(hold["session"], "esc");
    assert!(!ws.ran("psql").contains("DROP TABLE approved"), "held command ran before approval");
    let held_rec = guard.wait_for("hold record", |r| r["verdict"] == "hold" && r["hold_id"] == hold["id"]);
    assert!(held_rec["reason"].as_str().unwrap().contains("touched a credential"), "{held_rec}");
    let out = decide(&guard, "approve", hold["id"].as_u64().unwrap());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(child.wait().unwrap().success());
    assert!(ws.ran("psql").contains("DROP TABLE approved"));
    guard.wait_for("approve record", |r| {
        r["event"] == "approve" && r["verdict"] == "allow" && r["hold_id"] == hold["id"]
    });
    assert!(pending(&guard).is_empty());
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn deny_and_timeout_kill_the_held_command() {
    if !can_run("deny_and_timeout_kill_the_held_command") {
        return;
    }
    let ws = workspace();
    let guard = Guard::start_with(Some(POLICY), &[]);
    touch_credential(&guard, &ws, "deny");

    let mut denied = launch_in(&guard, &ws, "deny", &["psql", "-c", "DROP TABLE denied"]).spawn().unwrap();
    let hold = wait_pending(&guard, "DROP TABLE denied");
    let out = decide(&guard, "deny", hold["id"].as_u64().unwrap());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status = denied.wait().unwrap();
    assert!(!status.success());
    assert!(!ws.ran("psql").contains("DROP TABLE denied"), "denied command ran");
    guard.wait_for("deny record", |r| r["event"] == "deny" && r["verdict"] == "kill" && r["hold_id"] == hold["id"]);

    // No decision: the policy's 4 s timeout denies.
    let mut timed = launch_in(&guard, &ws, "deny", &["psql", "-c", "TRUNCATE audit_log"]).spawn().unwrap();
    let hold = wait_pending(&guard, "TRUNCATE audit_log");
    let status = timed.wait().unwrap();
    assert!(!status.success());
    assert!(!ws.ran("psql").contains("TRUNCATE"), "timed-out command ran");
    let rec = guard.wait_for("timeout record", |r| r["event"] == "hold_timeout" && r["hold_id"] == hold["id"]);
    assert_eq!(rec["verdict"], "kill");

    // A decision on a hold that no longer exists is an error and changes nothing.
    let out = decide(&guard, "approve", hold["id"].as_u64().unwrap());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no pending hold"));
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn the_agents_own_sigcont_does_not_release_its_held_child() {
    if !can_run("the_agents_own_sigcont_does_not_release_its_held_child") {
        return;
    }
    let ws = workspace();
    write_file(
        &ws.path().join("agent.sh"),
        // The query comes from a variable, so `sh agent.sh` itself is judged harmless (its
        // content is read while it is held) and only psql's own exec is held.
        "Q='DROP TABLE escape'\npsql -c \"$Q\" &\nP=$!\nsleep 1\nkill -CONT $P || echo refused > refused\nsleep 1\necho sender-survived > sender\n",
    );
    let guard = Guard::start_with(Some(POLICY), &[]);
    touch_credential(&guard, &ws, "cont");

    let status = launch_in(&guard, &ws, "cont", &["sh", "agent.sh"]).status().unwrap();
    // The host tier kills the sender of the SIGCONT; the lsm tier refuses the kill(2) (EPERM).
    // Either is recorded as self-protection.
    match guard.tier() {
        Tier::Host => {
            assert!(!status.success(), "the agent that signalled a held task survived");
            assert!(!ws.path().join("sender").exists());
        }
        Tier::Lsm => assert!(ws.path().join("refused").exists(), "kill -CONT was not refused"),
    }
    let rec = guard
        .wait_for("self-protection record", |r| r["event"] == "self_protection" && r["verdict"] == guard.refusal());
    assert!(rec["reason"].as_str().unwrap().contains("signal 18"), "{rec}");

    // The held task is still held: not run, still pending, still stopped.
    let hold = wait_pending(&guard, "DROP TABLE escape");
    std::thread::sleep(Duration::from_millis(500));
    assert!(!ws.ran("psql").contains("DROP TABLE escape"), "SIGCONT released the held command");
    let pid = hold["pid"].as_u64().unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let state = stat.rsplit(')').next().unwrap().split_whitespace().next().unwrap();
    assert_eq!(state, "T", "held task is not stopped: {stat}");

    // The person's decision still works afterwards.
    let out = decide(&guard, "deny", hold["id"].as_u64().unwrap());
    assert!(out.status.success());
    assert!(!ws.ran("psql").contains("DROP TABLE escape"));
}
