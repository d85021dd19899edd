//! The engine's policy door, provenance switch, chains and bounds, fed synthetic events.

use guard_common::{DevIno, action, detector};

use super::{
    Action, Engine, EnginePolicy, EngineSettings,
    fake::{FakeMachine, T0_MONO, T0_WALL},
    synth::{self, Task},
};
use crate::{audit::AuditRecord, records::ClockBase, trajectory::TrajectoryLimits};

/// Monitor everything: only the trajectory's view changes between policies.
const BASE: &str = r#"
mode: monitor
credentials:
  rules:
    - id: dotenv
      names: [".env"]
scope:
  network:
    allow: ["10.0.0.0/8"]
"#;

pub fn policy(text: &str) -> EnginePolicy {
    EnginePolicy::parse("<test>", text).unwrap_or_else(|err| panic!("test policy: {err}"))
}

pub fn engine(policy: &EnginePolicy) -> Engine {
    let settings = EngineSettings {
        fingerprint_key: [7; 32],
        clock: ClockBase { realtime_ns: T0_WALL, monotonic_ns: i128::from(T0_MONO) },
        enforce: true,
    };
    Engine::new(settings, policy.as_ref())
}

/// Every record the actions write, as written when everything succeeds.
pub fn records(actions: Vec<Action>) -> Vec<AuditRecord> {
    actions.into_iter().filter_map(Action::into_record).collect()
}

fn chain_records(actions: Vec<Action>, chain: &str) -> Vec<AuditRecord> {
    records(actions).into_iter().filter(|r| r.event == "chain" && r.rule.as_deref() == Some(chain)).collect()
}

const DOTENV: DevIno = DevIno { dev: 8, ino: 77 };

fn credential_read(task: Task) -> Vec<u8> {
    synth::credential_read(task, "/work/.env", DOTENV, action::AUDIT, Some(0))
}

fn out_of_scope(task: Task) -> Vec<u8> {
    synth::connect(task, [203, 0, 113, 9], 443, action::DENY, detector::SCOPE_NET, Some(1))
}

#[test]
fn a_reload_adding_a_chain_takes_effect() {
    let machine = FakeMachine::new();
    machine.session(7, "agent");
    machine.session(8, "agent-2");
    let mut engine = engine(&policy(BASE));
    let before = [
        engine.on_event(&credential_read(Task::new(7, 100)), &machine),
        engine.on_event(&out_of_scope(Task::new(7, 101)), &machine),
    ];
    assert!(before.into_iter().flat_map(|a| chain_records(a, "exfil")).next().is_none());

    let with_chain = format!(
        "{BASE}chains:\n  - id: exfil\n    stages: [credential_discovery, out_of_scope_use]\n    window_secs: 60\n    severity: high\n"
    );
    engine.apply_policy(policy(&with_chain).as_ref());
    let first = engine.on_event(&credential_read(Task::new(8, 200)), &machine);
    let reached = chain_records(first, "exfil");
    assert_eq!(reached.len(), 1, "{reached:?}");
    assert_eq!(reached[0].details.as_ref().map(|d| d["complete"].clone()), Some(false.into()));
    let second = engine.on_event(&out_of_scope(Task::new(8, 201)), &machine);
    let done = chain_records(second, "exfil");
    assert_eq!(done.len(), 1, "{done:?}");
    let details = done[0].details.clone().unwrap_or_default();
    assert_eq!(details["complete"], true);
    assert_eq!(done[0].session.as_deref(), Some("agent-2"));
    let stages: Vec<&str> =
        details["stages"].as_array().into_iter().flatten().filter_map(|s| s["stage"].as_str()).collect();
    assert_eq!(stages, ["credential_discovery", "out_of_scope_use"]);
    // The incident chain was unchanged: session 7's partial match survived the reload.
    let summary = engine.trajectory().session_summary(7).unwrap_or_else(|| panic!("session 7 tracked"));
    assert!(summary.chains.iter().any(|c| c.chain_id == "incident" && c.stages_reached == 2), "{summary:?}");

    // And a reload that drops it: no more exfil records.
    engine.apply_policy(policy(BASE).as_ref());
    let after = [
        engine.on_event(&credential_read(Task::new(9, 300)), &machine),
        engine.on_event(&out_of_scope(Task::new(9, 301)), &machine),
    ];
    assert!(after.into_iter().flat_map(|a| chain_records(a, "exfil")).next().is_none());
}

const TOKEN: &str = "rw_9f8e7d6c5b4a39281706f5e4d3c2b1a0";

fn learn_from(engine: &mut Engine, machine: &FakeMachine, session: u64) -> Vec<AuditRecord> {
    machine.file("/work/.env", DOTENV, &format!("RAILWAY_TOKEN={TOKEN}\n"));
    let mut out = records(engine.on_event(&credential_read(Task::new(session, 400)), machine));
    // A held exec that carries the token in its environment and argv.
    let held = Task::new(session, 401);
    machine.hold(
        401,
        &["curl", "-H", &format!("Authorization: Bearer {TOKEN}"), "https://api"],
        &[("API_TOKEN", "s3cr3t-value-123456")],
    );
    let exec = synth::exec(held, "/usr/bin/curl", &["curl"], DevIno { dev: 8, ino: 5 }, action::HOLD);
    out.extend(records(engine.on_event(&exec, machine)));
    out
}

#[test]
fn provenance_disabled_learns_nothing() {
    let machine = FakeMachine::new();
    machine.session(3, "agent");
    let disabled = policy(&format!("{BASE}provenance:\n  enabled: false\n"));
    let mut engine = engine(&disabled);
    let out = learn_from(&mut engine, &machine, 3);
    assert_eq!(engine.provenance().len(), 0, "provenance disabled, yet secrets were learned");
    assert!(!out.iter().any(|r| r.event == "provenance"), "{out:?}");
    // Redaction of token formats and credential positions stays on.
    let text = serde_json::to_string(&out).unwrap_or_default();
    assert!(!text.contains(TOKEN), "{text}");

    // The same events with provenance on: the file is learned and its use found.
    let mut engine = super::tests::engine(&policy(BASE));
    let out = learn_from(&mut engine, &machine, 3);
    assert!(!engine.provenance().is_empty());
    let used: Vec<&AuditRecord> = out.iter().filter(|r| r.event == "provenance").collect();
    assert_eq!(used.len(), 1, "{out:?}");
    assert!(used[0].reason.as_deref().unwrap_or_default().contains("/work/.env"), "{used:?}");

    // A reload that turns it off stops the learning from then on.
    let learned = engine.provenance().len();
    engine.apply_policy(disabled.as_ref());
    machine.file("/work/.env", DOTENV, "OTHER_TOKEN=ghp_abcdefghijklmnopqrstuvwxyz0123456789\n");
    records(engine.on_event(&credential_read(Task::new(3, 402)), &machine));
    assert_eq!(engine.provenance().len(), learned);
}

#[test]
fn trajectory_state_stays_bounded_over_a_million_processes() {
    let machine = FakeMachine::new();
    let mut engine = engine(&policy(BASE));
    let limits = TrajectoryLimits::default();
    let mut peak = 0;
    const PROCESSES: u32 = 1_000_000;
    for n in 0..PROCESSES {
        let session = u64::from(n % 64) + 1;
        let parent = Task::new(session, 1);
        let child = Task::new(session, 2 + n).at(T0_MONO + u64::from(n) * 1_000);
        engine.on_event(&synth::fork(parent, child), &machine);
        // One in eight never exits (as far as guard hears): the tables' caps must hold them.
        if n % 8 != 0 {
            engine.on_event(&synth::exit(child), &machine);
        }
        if n % 8_192 == 0 {
            machine.advance_secs(1);
            engine.tick(&machine);
            let footprint = engine.footprint();
            assert!(footprint.trajectory_processes <= limits.max_processes, "{footprint:?}");
            assert!(footprint.recorder_processes <= crate::records::MAX_TRACKED_PROCESSES, "{footprint:?}");
            peak = peak.max(footprint.bytes);
        }
    }
    let footprint = engine.footprint();
    assert!(footprint.trajectory_processes <= limits.max_processes, "{footprint:?}");
    assert!(footprint.trajectory_sessions <= limits.max_sessions, "{footprint:?}");
    assert!(footprint.sessions <= 64, "{footprint:?}");
    // 125,000 processes never exited: the bounded tables keep a fraction.
    assert!(footprint.recorder_processes <= crate::records::MAX_TRACKED_PROCESSES, "{footprint:?}");
    assert!(peak.max(footprint.bytes) < 32 << 20, "engine state {} bytes: {footprint:?}", peak.max(footprint.bytes));
    assert!(footprint.bytes > 0);
}

#[test]
fn an_undecodable_record_is_said_so() {
    let machine = FakeMachine::new();
    let mut engine = engine(&policy(BASE));
    let out = records(engine.on_event(&[1, 2, 3], &machine));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].event, "decode_error");
    assert!(out[0].reason.as_deref().unwrap_or_default().contains("shorter than an event header"));
}

#[test]
fn a_session_is_announced_once_and_its_workspace_registered() {
    let machine = FakeMachine::new();
    machine.session(5, "agent");
    let text = "scope:\n  files:\n    mode: enforce\n    write_roots: [$CWD, /tmp]\n";
    let mut engine = engine(&policy(text));
    let actions = engine.on_event(&synth::fork(Task::new(5, 10), Task::new(5, 11)), &machine);
    let Some(Action::RegisterWorkspace(register)) = actions.first().cloned() else {
        panic!("first action should register the workspace: {actions:?}");
    };
    assert_eq!(register.session, 5);
    assert_eq!(register.dir, std::path::PathBuf::from("/work"));
    let ok = register.clone().finish(Ok(()));
    assert_eq!(ok.event, "session");
    assert!(
        ok.reason
            .as_deref()
            .unwrap_or_default()
            .contains("workspace /work is a write root for it; no confinement recorded"),
        "{ok:?}"
    );
    let failed = register.finish(Err("EPERM".into()));
    assert!(
        failed.reason.as_deref().unwrap_or_default().contains("registering workspace /work failed: EPERM"),
        "{failed:?}"
    );
    assert_eq!(failed.cwd, None);
    let again = engine.on_event(&synth::fork(Task::new(5, 11), Task::new(5, 12)), &machine);
    assert!(!again.iter().any(|a| matches!(a, Action::RegisterWorkspace(_))));
    assert!(!records(again).iter().any(|r| r.event == "session"));
}
