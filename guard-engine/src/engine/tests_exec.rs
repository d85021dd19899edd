//! Held-exec judgement and the pending holds: release, kill, hold, escalated hold, frozen
//! session, unreadable /proc, vanished task, approval, timeout.

use guard_common::{DevIno, SessionState, action, escalation};

use super::{
    Action, Engine, ExecVerdict, Signal,
    fake::FakeMachine,
    synth::{self, Task},
    tests::{engine, policy, records},
};
use crate::{
    audit::{AuditRecord, Verdict},
    event::{KernelEvent, decode},
};

const POLICY: &str = r#"
credentials:
  rules:
    - id: dotenv
      mode: monitor
      names: [".env"]
destructive:
  hold_timeout_secs: 5
  rules:
    - id: rm-rf
      mode: enforce
      match:
        programs: [rm]
        all:
          - flag: [-r, -R, --recursive]
          - flag: [-f, --force]
    - id: http-delete
      mode: monitor
      match:
        programs: [curl]
        all:
          - option_value:
              options: [-X, --request]
              regex: '(?i)^delete$'
    - id: drop-database
      action: hold
      match:
        programs: [dropdb]
"#;

const SESSION: u64 = 42;
const BIN: DevIno = DevIno { dev: 8, ino: 9 };

fn held(machine: &FakeMachine, pid: u32, argv: &[&str]) -> KernelEvent {
    machine.hold(pid, argv, &[]);
    let bytes = synth::exec(Task::new(SESSION, pid), &format!("/usr/bin/{}", argv[0]), argv, BIN, action::HOLD);
    decode(&bytes).unwrap_or_else(|err| panic!("{err}"))
}

fn judge(engine: &mut Engine, machine: &FakeMachine, event: &KernelEvent) -> (ExecVerdict, AuditRecord) {
    let mut record = AuditRecord::default();
    let judged = engine.judge_exec(event, &mut record, machine);
    (judged.verdict, record)
}

fn setup() -> (Engine, FakeMachine) {
    let machine = FakeMachine::new();
    machine.session(SESSION, "agent");
    (engine(&policy(POLICY)), machine)
}

#[test]
fn harmless_exec_is_released_and_its_round_trip_measured() {
    let (mut engine, machine) = setup();
    let event = held(&machine, 10, &["ls", "-l"]);
    let (verdict, record) = judge(&mut engine, &machine, &event);
    assert_eq!(verdict, ExecVerdict::Release);
    assert_eq!(record.verdict, Some(Verdict::Allow));
    let actions = engine.on_kernel_event(&held(&machine, 11, &["ls"]), &machine);
    let settle = actions.iter().find_map(|a| match a {
        Action::Settle(settle) => Some(settle.clone()),
        _ => None,
    });
    let settle = settle.unwrap_or_else(|| panic!("no settle: {actions:?}"));
    assert_eq!(settle.signal, Signal::Continue);
    assert!(settle.held_since_ns.is_some());
    let failed = settle.finish(None, &Err("ESRCH".into()));
    assert_eq!(failed.reason.as_deref(), Some("exec of /usr/bin/ls judged harmless but could not be released: ESRCH"));
}

#[test]
fn enforced_rule_kills_monitor_rule_releases() {
    let (mut engine, machine) = setup();
    let (verdict, record) = judge(&mut engine, &machine, &held(&machine, 20, &["rm", "-rf", "/srv/data"]));
    assert_eq!(verdict, ExecVerdict::Kill);
    assert_eq!(record.rule.as_deref(), Some("rm-rf"));
    assert_eq!(record.verdict, Some(Verdict::Kill));
    let (verdict, record) = judge(&mut engine, &machine, &held(&machine, 21, &["curl", "-X", "DELETE", "http://x/v1"]));
    assert_eq!(verdict, ExecVerdict::Release);
    assert_eq!(record.verdict, Some(Verdict::Audit));
}

#[test]
fn records_name_where_the_destructive_part_came_from() {
    let (mut engine, machine) = setup();
    let (_, record) = judge(&mut engine, &machine, &held(&machine, 22, &["rm", "-rf", "/srv/data"]));
    assert_eq!(record.source.as_deref(), Some("argv"));
    // A script file the held shell will run: read through the machine, line named.
    machine.held_files.borrow_mut().insert("/work/x.sh".into(), b"echo hi\nrm -rf /srv/data\n".to_vec());
    let (verdict, record) = judge(&mut engine, &machine, &held(&machine, 23, &["bash", "x.sh"]));
    assert_eq!(verdict, ExecVerdict::Kill);
    assert_eq!(record.rule.as_deref(), Some("rm-rf"));
    assert_eq!(record.source.as_deref(), Some("file:/work/x.sh:2"));
    let reason = record.reason.unwrap_or_default();
    assert!(reason.contains("/work/x.sh line 2") && reason.contains("could change after release"), "{reason}");
    // A config file curl is told to read (the rule is in monitor mode here: released).
    machine.held_files.borrow_mut().insert("/work/cfg".into(), b"request = DELETE\n".to_vec());
    let (verdict, record) = judge(&mut engine, &machine, &held(&machine, 24, &["curl", "-K", "cfg", "http://x"]));
    assert_eq!((verdict, record.verdict), (ExecVerdict::Release, Some(Verdict::Audit)));
    assert_eq!(record.source.as_deref(), Some("file:/work/cfg:1"));
    // What could not be judged is said in the release's reason.
    machine.held_files.borrow_mut().insert("/work/bin.sh".into(), b"\x7fELF\0\0".to_vec());
    let (verdict, record) = judge(&mut engine, &machine, &held(&machine, 25, &["sh", "bin.sh"]));
    assert_eq!(verdict, ExecVerdict::Release);
    assert_eq!(record.source, None);
    let reason = record.reason.unwrap_or_default();
    assert!(reason.contains("not judged: sh script /work/bin.sh not judged: binary content"), "{reason}");
}

#[test]
fn hold_rule_waits_for_a_person_and_approval_releases_it() {
    let (mut engine, machine) = setup();
    let (verdict, record) = judge(&mut engine, &machine, &held(&machine, 30, &["dropdb", "prod"]));
    let ExecVerdict::Hold { id } = verdict else { panic!("{verdict:?}") };
    assert_eq!(record.hold_id, Some(id));
    let pending = engine.pending_holds(machine.now.get());
    assert_eq!(pending.len(), 1);
    assert_eq!((pending[0].pid, pending[0].rule.as_str(), pending[0].timeout_in_secs), (30, "drop-database", 5));
    let actions = engine.decide(id, true, "uid 0 (pid 1)", machine.now.get()).unwrap_or_else(|err| panic!("{err}"));
    let [Action::Settle(settle)] = actions.as_slice() else { panic!("{actions:?}") };
    assert_eq!(settle.signal, Signal::Continue);
    let done = settle.clone().finish(None, &Ok(()));
    assert_eq!(done.event, "approve");
    assert!(done.reason.as_deref().unwrap_or_default().contains("approved by uid 0 (pid 1)"), "{done:?}");
    let failed = settle.clone().finish(None, &Err("ESRCH".into()));
    assert!(failed.reason.as_deref().unwrap_or_default().ends_with("could not be continued: ESRCH"), "{failed:?}");
    assert!(engine.pending_holds(machine.now.get()).is_empty());
    assert!(engine.decide(id, false, "uid 0", machine.now.get()).is_err(), "decided twice");
}

#[test]
fn an_escalated_session_holds_what_would_have_run_or_been_killed() {
    // The kernel's mark (a credential touch the daemon may not have seen yet).
    let (mut engine, machine) = setup();
    machine.kernel.borrow_mut().insert(SESSION, SessionState { credential_touched: 1, escalation: 0 });
    let (verdict, record) = judge(&mut engine, &machine, &held(&machine, 40, &["curl", "-X", "DELETE", "http://x"]));
    assert!(matches!(verdict, ExecVerdict::Hold { .. }), "{verdict:?}");
    assert!(record.reason.as_deref().unwrap_or_default().contains("because this session touched a credential"));
    let (verdict, _) = judge(&mut engine, &machine, &held(&machine, 41, &["rm", "-rf", "/srv"]));
    assert!(matches!(verdict, ExecVerdict::Hold { .. }), "{verdict:?}");

    // The engine's own mark, from the credential read it followed.
    let (mut engine, machine) = setup();
    let read =
        synth::credential_read(Task::new(SESSION, 49), "/work/.env", DevIno { dev: 1, ino: 3 }, action::AUDIT, Some(0));
    let out = records(engine.on_event(&read, &machine));
    assert!(out.iter().any(|r| r.event == "escalation"), "{out:?}");
    assert!(engine.session_escalated(SESSION));
    let (verdict, _) = judge(&mut engine, &machine, &held(&machine, 42, &["curl", "-X", "DELETE", "http://x"]));
    assert!(matches!(verdict, ExecVerdict::Hold { .. }), "{verdict:?}");
    // A harmless exec still runs (no hold_all_exec).
    let (verdict, _) = judge(&mut engine, &machine, &held(&machine, 43, &["ls"]));
    assert_eq!(verdict, ExecVerdict::Release);
}

#[test]
fn a_frozen_session_holds_every_exec() {
    let (mut engine, machine) = setup();
    machine.kernel.borrow_mut().insert(SESSION, SessionState { credential_touched: 1, escalation: escalation::FREEZE });
    let (verdict, record) = judge(&mut engine, &machine, &held(&machine, 50, &["true"]));
    assert!(matches!(verdict, ExecVerdict::Hold { .. }), "{verdict:?}");
    assert_eq!(record.rule.as_deref(), Some("escalation.freeze"));
}

#[test]
fn unreadable_proc_fails_closed_and_a_vanished_task_is_only_unheld() {
    let (mut engine, machine) = setup();
    let event = held(&machine, 60, &["ls"]);
    machine.held.borrow_mut().insert(60, Err("permission denied".into()));
    let (verdict, record) = judge(&mut engine, &machine, &event);
    assert_eq!(verdict, ExecVerdict::Kill);
    assert!(
        record.reason.as_deref().unwrap_or_default().contains("could not be inspected (permission denied); killed")
    );
    machine.held.borrow_mut().insert(60, Err("permission denied".into()));
    let actions = engine.on_kernel_event(&event, &machine);
    let settle = actions.iter().find_map(|a| if let Action::Settle(s) = a { Some(s.clone()) } else { None });
    let settle = settle.unwrap_or_else(|| panic!("{actions:?}"));
    assert_eq!((settle.signal, settle.if_failed.is_none()), (Signal::Kill, true));

    let event = held(&machine, 61, &["ls"]);
    machine.held.borrow_mut().remove(&61);
    let (verdict, record) = judge(&mut engine, &machine, &event);
    assert_eq!(verdict, ExecVerdict::Vanished);
    assert_eq!(record.verdict, Some(Verdict::Allow));
    let actions = engine.on_kernel_event(&event, &machine);
    assert!(matches!(actions.first(), Some(Action::Unhold { pid: 61 })), "{actions:?}");
    assert!(!actions.iter().any(|a| matches!(a, Action::Settle(_))));
}

#[test]
fn holds_time_out_end_when_their_task_goes_and_are_killed_on_shutdown() {
    let (mut engine, machine) = setup();
    let hold = |engine: &mut Engine, pid: u32| match judge(engine, &machine, &held(&machine, pid, &["dropdb", "x"])).0 {
        ExecVerdict::Hold { id } => id,
        other => panic!("{other:?}"),
    };
    let first = hold(&mut engine, 70);
    hold(&mut engine, 71);
    machine.advance_secs(2);
    let last = hold(&mut engine, 72);
    machine.gone.borrow_mut().insert(71);
    let actions = engine.tick(&machine);
    assert!(
        matches!(actions.as_slice(), [Action::Unhold { pid: 71 }, Action::Emit(r)] if r.event == "hold_ended"),
        "{actions:?}"
    );
    machine.advance_secs(2);
    assert!(engine.tick(&machine).is_empty(), "not yet timed out");
    machine.advance_secs(1);
    let actions = engine.tick(&machine);
    let [Action::Settle(settle)] = actions.as_slice() else { panic!("{actions:?}") };
    assert_eq!((settle.pid, settle.signal, settle.record.hold_id), (70, Signal::Kill, Some(first)));
    assert_eq!(settle.record.event, "hold_timeout");
    let failed = settle.clone().finish(None, &Err("EPERM".into()));
    assert_eq!(failed.reason, Some(format!("hold {first} timed out but could not be killed: EPERM")));
    let abandoned = engine.abandon_holds(machine.now.get());
    let [Action::Settle(settle)] = abandoned.as_slice() else { panic!("{abandoned:?}") };
    assert_eq!((settle.pid, settle.signal, settle.record.hold_id), (72, Signal::Kill, Some(last)));
    assert_eq!(settle.record.event, "hold_abandoned");
    assert!(engine.pending_holds(machine.now.get()).is_empty());
}
