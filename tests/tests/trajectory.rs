//! Issue "Trajectory, approvals and credential provenance": the incident chain across
//! processes of one session, and a secret followed from the file it was read from to the
//! command that used it (host tier).

use guard_tests::{Guard, Workspace, can_run};

const TOKEN: &str = "rw_9f8e7d6c5b4a39281706f5e4d3c2b1a0";

/// Everything in monitor mode, so only the trajectory (escalation, chains) changes outcomes.
const POLICY: &str = r#"
credentials:
  rules:
    - id: dotenv
      mode: monitor
      severity: critical
      names: [".env"]
scope:
  network:
    mode: monitor
    allow_loopback: false
    allow: ["127.0.0.2/32"]
destructive:
  hold_timeout_secs: 3
  rules:
    - id: http-delete
      mode: monitor
      severity: high
      mitre: T1485
      match:
        programs: [curl]
        all:
          - option_value:
              options: [-X, --request]
              regex: '(?i)^delete$'
"#;

/// A workspace with the token in `.env` and a stand-in curl: the real thing must never reach
/// a production API from a test.
fn workspace() -> Workspace {
    Workspace::new("trajectory", &format!("RAILWAY_TOKEN={TOKEN}\nAWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n"), &["curl"])
}

fn launch(ws: &Workspace, guard: &Guard, args: &[&str]) -> std::process::Output {
    ws.launch_cmd(guard, "incident", args).output().unwrap()
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn incident_chain_across_three_processes_lists_every_seq() {
    if !can_run("incident_chain_across_three_processes_lists_every_seq") {
        return;
    }
    let ws = workspace();
    let guard = Guard::start_with(Some(POLICY), &[]);

    // 1. credential discovery (monitor: the read succeeds, the session is marked).
    let out = launch(&ws, &guard, &["cat", ".env"]);
    assert!(out.status.success());
    let cred = guard.wait_for("credential read", |r| r["detector"] == "credential" && r["verdict"] == "audit");

    // 2. out-of-scope use: the network rule is monitor, but the marked session is denied.
    let out = launch(
        &ws,
        &guard,
        &[
            "python3",
            "-c",
            "import socket\ntry:\n socket.create_connection(('127.0.0.3', 9), timeout=2)\nexcept PermissionError:\n print('EPERM')",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "EPERM", "{out:?}");
    let scope = guard.wait_for("out-of-scope connect", |r| r["detector"] == "scope_network" && r["verdict"] == "deny");

    // 3. destructive action: held for a person (monitor rule, escalated), times out, killed.
    let out = launch(&ws, &guard, &["curl", "-X", "DELETE", "http://127.0.0.3:9/v1/volumes/prod"]);
    assert!(!out.status.success());
    assert!(ws.ran("curl").is_empty(), "the destructive command ran");
    let destructive = guard.wait_for("destructive hold", |r| r["detector"] == "destructive" && r["verdict"] == "hold");

    let pids: Vec<u64> = [&cred, &scope, &destructive].iter().map(|r| r["pid"].as_u64().unwrap()).collect();
    assert!(
        pids[0] != pids[1] && pids[1] != pids[2] && pids[0] != pids[2],
        "stages should come from three processes: {pids:?}"
    );
    let complete =
        guard.wait_for("complete chain record", |r| r["event"] == "chain" && r["details"]["complete"] == true);
    assert_eq!(complete["rule"], "incident");
    assert_eq!(complete["session"], "incident");
    assert_eq!(complete["severity"], "critical");
    let stages = complete["details"]["stages"].as_array().unwrap();
    let seqs: Vec<u64> = stages.iter().map(|s| s["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        vec![cred["seq"].as_u64().unwrap(), scope["seq"].as_u64().unwrap(), destructive["seq"].as_u64().unwrap()]
    );
    let names: Vec<&str> = stages.iter().map(|s| s["stage"].as_str().unwrap()).collect();
    assert_eq!(names, ["credential_discovery", "out_of_scope_use", "destructive_action"]);
    // Each stage was announced as it was reached.
    let partial =
        guard.records().into_iter().filter(|r| r["event"] == "chain" && r["details"]["complete"] == false).count();
    assert_eq!(partial, 2, "one chain record per stage before completion");
    // `guard status` says what the trajectory knows about the session (refreshed each second).
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let status = guard.status();
    let session =
        status["sessions"].as_array().unwrap().iter().find(|s| s["name"] == "incident").expect("session listed");
    let text = session["trajectory"].as_str().unwrap_or_default();
    assert!(text.contains("touched a credential") && text.contains("chain incident completed"), "{session}");
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn provenance_follows_a_token_from_the_file_to_curl_and_redacts_it() {
    if !can_run("provenance_follows_a_token_from_the_file_to_curl_and_redacts_it") {
        return;
    }
    let ws = workspace();
    let guard = Guard::start_with(Some(POLICY), &[]);
    let out = launch(&ws, &guard, &["cat", ".env"]);
    assert!(out.status.success());
    let read = guard.wait_for("credential read", |r| r["detector"] == "credential" && r["verdict"] == "audit");

    let header = format!("Authorization: Bearer {TOKEN}");
    let _ = launch(&ws, &guard, &["curl", "-s", "-X", "DELETE", "-H", &header, "http://127.0.0.3:9/v1/volumes/prod"]);
    let used = guard.wait_for("provenance record", |r| r["event"] == "provenance");
    let origin = &used["details"]["origin"];
    assert!(origin["file"].as_str().unwrap().ends_with("/.env"), "{used}");
    assert_eq!(origin["record_seq"], read["seq"]);
    assert_eq!(origin["reader_pid"], read["pid"]);
    assert_eq!(origin["name"], "RAILWAY_TOKEN");
    // The token's argv slot (a `#!` script's argv starts with its interpreter) holds only the
    // redacted form.
    let slot = used["details"]["where"].as_str().unwrap();
    let index: usize =
        slot.trim_start_matches("argv[").trim_end_matches(']').parse().unwrap_or_else(|_| panic!("{used}"));
    let arg = used["argv"][index].as_str().unwrap();
    assert!(arg.starts_with("Authorization: Bearer [REDACTED"), "{used}");

    guard.settle("incident");
    let text = std::fs::read_to_string(&guard.audit).unwrap();
    assert!(!text.contains(TOKEN), "a secret value reached the audit stream");
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn policy_escalations_hold_every_exec_and_freeze_the_session() {
    if !can_run("policy_escalations_hold_every_exec_and_freeze_the_session") {
        return;
    }
    let ws = workspace();
    let policy = format!("{POLICY}\nescalations:\n  on_credential: [hold_all_exec, freeze_session]\n");
    let guard = Guard::start_with(Some(&policy), &[]);
    // A long-lived session process, running before the credential touch.
    let mut sleeper = ws.launch_cmd(&guard, "incident", &["sleep", "30"]).spawn().unwrap();
    guard.wait_for("sleeper exec", |r| r["event"] == "exec" && r["comm"] == "sleep");
    // Not waited for yet: the freeze may catch the reader itself before it exits (it does
    // under an emulator), and it finishes once thawed.
    let reader = ws
        .launch_cmd(&guard, "incident", &["cat", ".env"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let esc = guard.wait_for("escalation record", |r| r["event"] == "escalation");
    let reason = esc["reason"].as_str().unwrap();
    assert!(reason.contains("every exec now waits") && reason.contains("session frozen"), "{esc}");
    // The session cgroup is frozen: its processes stop.
    let session_dir = guard.root.join("incident");
    let events = std::fs::read_to_string(session_dir.join("cgroup.events")).unwrap();
    assert!(events.lines().any(|l| l == "frozen 1"), "{events}");
    // Thaw it (an operator's decision): even a harmless exec now waits for a person.
    std::fs::write(session_dir.join("cgroup.freeze"), "0").unwrap();
    assert!(reader.wait_with_output().unwrap().status.success(), "the credential reader failed");
    let mut child = ws.launch_cmd(&guard, "incident", &["true"]).spawn().unwrap();
    let held = guard.wait_for("hold of a harmless exec", |r| {
        r["event"] == "exec" && r["verdict"] == "hold" && r["rule"] == "escalation.freeze"
    });
    let id = held["hold_id"].as_u64().unwrap();
    let out = std::process::Command::new(guard_tests::guard_bin())
        .args(["approve", &id.to_string(), "--socket"])
        .arg(&guard.socket)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(child.wait().unwrap().success());
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

/// A chain the policy gains on SIGHUP takes effect: its record appears once its stages happen.
#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn a_chain_added_by_sighup_produces_its_record() {
    if !can_run("a_chain_added_by_sighup_produces_its_record") {
        return;
    }
    const CHAIN: &str = "read-then-connect";
    let ws = workspace();
    let guard = Guard::start_with(Some(POLICY), &[]);
    let connect = "import socket\ntry:\n socket.create_connection(('127.0.0.3', 9), timeout=2)\nexcept PermissionError:\n print('EPERM')";
    let stages = |session: &str| {
        let out = ws.launch_cmd(&guard, session, &["cat", ".env"]).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let out = ws.launch_cmd(&guard, session, &["python3", "-c", connect]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "EPERM", "{out:?}");
        guard.wait_for("out-of-scope connect", |r| {
            r["session"] == session && r["detector"] == "scope_network" && r["verdict"] == "deny"
        })
    };

    // Before the reload the policy has no such chain.
    stages("chain-before");
    guard.settle("chain-before");
    assert!(!guard.records().iter().any(|r| r["event"] == "chain" && r["rule"] == CHAIN), "{}", guard.dump());

    let reloaded = format!(
        "{POLICY}chains:\n  - id: {CHAIN}\n    description: a credential read, then a connection out of scope\n    stages: [credential_discovery, out_of_scope_use]\n    window_secs: 600\n    severity: high\n"
    );
    std::fs::write(guard.policy_path(), reloaded).unwrap();
    // SAFETY: kill(2) on the daemon this test started.
    assert_eq!(unsafe { libc::kill(guard.daemon_pid(), libc::SIGHUP) }, 0);
    guard.wait_for("policy_reload", |r| r["event"] == "policy_reload");

    let scope = stages("chain-after");
    let cred = guard.wait_for("credential read", |r| {
        r["session"] == "chain-after" && r["detector"] == "credential" && r["verdict"] == "audit"
    });
    let chain = guard.wait_for("the reloaded chain's record", |r| {
        r["event"] == "chain" && r["rule"] == CHAIN && r["details"]["complete"] == true
    });
    assert_eq!(chain["session"], "chain-after");
    assert_eq!(chain["severity"], "high");
    let stages = chain["details"]["stages"].as_array().unwrap();
    let got: Vec<(&str, u64)> =
        stages.iter().map(|s| (s["stage"].as_str().unwrap(), s["seq"].as_u64().unwrap())).collect();
    assert_eq!(
        got,
        vec![
            ("credential_discovery", cred["seq"].as_u64().unwrap()),
            ("out_of_scope_use", scope["seq"].as_u64().unwrap())
        ]
    );
}
