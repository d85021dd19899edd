//! The daemon's loop without root: kernel events in, the engine's actions carried out
//! against a fake kernel and fake processes, records read back from the audit file.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Instant,
};

use guard_common::{DevIno, action, escalation};
use guard_engine::lifecycle::Created;
use guard_engine::{
    consumer::ConsumerTable,
    control::{Request, Response, StatusReport},
    destructive::DestructiveEvaluator,
    engine::{
        Engine, EngineSettings, Signal,
        synth::{self, Task},
    },
    policy::{CompileContext, parse_policy},
};
use serde_json::Value;

use super::{ControlCall, Daemon, Host, Shared, clock_base};
use crate::{
    audit_sink::{AuditSink, Rotation},
    cgroup::SessionIndex,
    control::PeerCred,
    kernel::handle::fake::{FakeKernel, KernelCall},
    policy_load::{LoadedPolicy, PreparedMaps},
    procs::fake::FakeProcs,
    sys::{FakeSys, Sys as _},
};

const MOUNT: &str = "/sys/fs/cgroup";
const ROOT: &str = "/sys/fs/cgroup/guard";

const POLICY: &str = r#"
credentials:
  rules:
    - id: dotenv
      mode: enforce
      names: [".env"]
escalations:
  on_credential: [hold_all_exec, freeze_session]
destructive:
  hold_timeout_secs: 30
  rules:
    - id: rm-rf
      mode: enforce
      match:
        programs: [rm]
        all:
          - flag: [-r, -R, --recursive]
          - flag: [-f, --force]
    - id: drop-database
      action: hold
      match:
        programs: [dropdb]
"#;

fn loaded(source: &str, text: &str) -> LoadedPolicy {
    let policy = parse_policy(source, text).unwrap_or_else(|err| panic!("test policy: {err}"));
    let compiled = policy.compile(&CompileContext::with_homes(Vec::new()));
    LoadedPolicy {
        source: source.to_string(),
        evaluator: DestructiveEvaluator::new(&policy),
        compiled,
        policy,
        maps: PreparedMaps::default(),
        consumers: ConsumerTable::default(),
        notes: Vec::new(),
        control_socket: None,
    }
}

struct Rig {
    daemon: Daemon<FakeKernel>,
    procs: FakeProcs,
    session: u64,
    dir: PathBuf,
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rig(policy: LoadedPolicy) -> Rig {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "guard-daemon-loop-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
    let sys = FakeSys::with_cgroup2(MOUNT);
    sys.add_dir(ROOT);
    sys.add_dir(&format!("{ROOT}/agent"));
    sys.add_file(&format!("{ROOT}/agent/cgroup.freeze"), "0");
    let session = sys.stat(Path::new(&format!("{ROOT}/agent"))).unwrap_or_else(|err| panic!("{err}")).ino;
    let mut sessions = SessionIndex::new(vec![PathBuf::from(ROOT)]);
    sessions.rescan(&sys).unwrap_or_else(|err| panic!("{err}"));
    let procs = FakeProcs::default();
    let sink = AuditSink::open(&dir.join("audit.jsonl"), Rotation::from(policy.compiled.audit))
        .unwrap_or_else(|err| panic!("{err:#}"));
    let engine = Engine::new(
        EngineSettings { fingerprint_key: [1; 32], clock: clock_base(), enforce: true },
        policy.engine_policy(),
    );
    let (calls, _) = tokio::sync::mpsc::unbounded_channel();
    let daemon = Daemon {
        engine,
        host: Host { kernel: FakeKernel::new(), procs: Box::new(procs.clone()), sys: Box::new(sys), sessions },
        policy,
        policy_path: None,
        enforce: true,
        sink,
        shared: Arc::new(Shared { report: Mutex::new(StatusReport::default()), calls }),
        started: Instant::now(),
        base: StatusReport::default(),
        audit_records: 0,
        last_dropped: 0,
        stop_requested: None,
        audit_down: None,
        cgroup2_mount: PathBuf::from(MOUNT),
        record_override: None,
        hold_release_us: Default::default(),
        protected_audit: Vec::new(),
        empty_sessions: Default::default(),
        metrics: Default::default(),
        copies: Vec::new(),
    };
    Rig { daemon, procs, session, dir }
}

impl Rig {
    fn records(&mut self) -> Vec<Value> {
        self.daemon.flush_audit();
        let text = std::fs::read_to_string(self.dir.join("audit.jsonl")).unwrap_or_default();
        text.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{line}: {err}"))).collect()
    }

    fn find(&mut self, what: impl Fn(&Value) -> bool) -> Value {
        let records = self.records();
        records.iter().find(|r| what(r)).cloned().unwrap_or_else(|| panic!("no such record in {records:#?}"))
    }

    fn task(&self, pid: u32) -> Task {
        Task::new(self.session, pid)
    }

    fn held(&mut self, pid: u32, argv: &[&str]) {
        self.procs.hold(pid, argv);
        let bytes = synth::exec(
            self.task(pid),
            &format!("/usr/bin/{}", argv[0]),
            argv,
            DevIno { dev: 8, ino: 1 },
            action::HOLD,
        );
        self.daemon.handle_event(&bytes);
    }

    fn control(&mut self, request: Request) -> Response {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let peer = PeerCred { uid: 0, gid: 0, pid: Some(1) };
        self.daemon.control(ControlCall { request, peer, reply });
        answer.recv().unwrap_or_else(|err| panic!("no answer: {err}"))
    }
}

#[test]
fn a_credential_read_is_recorded_and_escalates_the_session_in_the_kernel() {
    let mut rig = rig(loaded("test", POLICY));
    let read = synth::credential_read(rig.task(100), "/work/.env", DevIno { dev: 8, ino: 2 }, action::KILL, Some(0));
    rig.daemon.handle_event(&read);
    let calls = &rig.daemon.host.kernel.calls;
    assert!(calls.contains(&KernelCall::SetEscalation(rig.session, escalation::FREEZE)), "{calls:?}");
    assert_eq!(
        rig.daemon.host.sys.read_to_string(Path::new(&format!("{ROOT}/agent/cgroup.freeze"))).ok().as_deref(),
        Some("1")
    );
    let open = rig.find(|r| r["event"] == "open");
    assert_eq!(
        (open["verdict"].as_str(), open["detector"].as_str(), open["rule"].as_str()),
        (Some("kill"), Some("credential"), Some("dotenv"))
    );
    assert_eq!(open["session"], "agent");
    let escalation = rig.find(|r| r["event"] == "escalation");
    let reason = escalation["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("every exec now waits for a person") && reason.contains("session frozen"), "{reason}");
    // The session was announced first, once.
    let records = rig.records();
    assert_eq!(records.iter().filter(|r| r["event"] == "session").count(), 1);
    assert!(records.iter().position(|r| r["event"] == "session") < records.iter().position(|r| r["event"] == "open"));

    // Now every exec of the session waits for a person, harmless or not.
    rig.held(101, &["ls"]);
    let held = rig.find(|r| r["event"] == "exec" && r["pid"] == 101);
    assert_eq!((held["verdict"].as_str(), held["rule"].as_str()), (Some("hold"), Some("escalation.freeze")));
    assert!(rig.procs.lock().signals.is_empty());
}

#[test]
fn a_held_destructive_exec_is_unheld_and_killed() {
    let mut rig = rig(loaded("test", POLICY));
    rig.held(200, &["rm", "-rf", "/srv/data"]);
    assert_eq!(rig.procs.lock().signals, vec![(200, Signal::Kill)]);
    assert!(rig.daemon.host.kernel.calls.contains(&KernelCall::Unhold(200)));
    let exec = rig.find(|r| r["event"] == "exec" && r["pid"] == 200);
    assert_eq!((exec["verdict"].as_str(), exec["rule"].as_str()), (Some("kill"), Some("rm-rf")));
    assert!(exec["reason"].as_str().unwrap_or_default().contains("killed before it ran"));

    // A harmless one is continued, and the round trip counted.
    rig.held(201, &["ls", "-l"]);
    assert_eq!(rig.procs.lock().signals.last(), Some(&(201, Signal::Continue)));
    assert_eq!(rig.daemon.hold_release_us.len(), 1);
    // One that vanished before judgement is only unheld.
    rig.daemon.handle_event(&synth::exec(
        rig.task(202),
        "/usr/bin/ls",
        &["ls"],
        DevIno { dev: 8, ino: 1 },
        action::HOLD,
    ));
    assert!(rig.daemon.host.kernel.calls.contains(&KernelCall::Unhold(202)));
    assert!(!rig.procs.lock().signals.iter().any(|(pid, _)| *pid == 202));
}

#[test]
fn a_hold_waits_for_approval_over_the_control_socket() {
    let mut rig = rig(loaded("test", POLICY));
    rig.held(300, &["dropdb", "prod"]);
    assert!(rig.procs.lock().signals.is_empty());
    assert!(rig.procs.lock().pinned.contains(&300), "the held task keeps its pin");
    let pending = rig.control(Request::Pending);
    let holds = pending.pending.unwrap_or_default();
    assert_eq!(holds.len(), 1);
    let id = holds[0].id;
    let answer = rig.control(Request::Approve { id });
    assert!(answer.ok, "{answer:?}");
    assert_eq!(rig.procs.lock().signals, vec![(300, Signal::Continue)]);
    assert!(rig.daemon.host.kernel.calls.contains(&KernelCall::Unhold(300)));
    let approve = rig.find(|r| r["event"] == "approve");
    assert_eq!(approve["hold_id"], id);
    let again = rig.control(Request::Approve { id });
    assert!(!again.ok);

    // A task killed from outside while held: the decision says so, and fails.
    rig.held(301, &["dropdb", "staging"]);
    let id = rig.control(Request::Pending).pending.unwrap_or_default()[0].id;
    rig.procs.lock().held.remove(&301);
    let answer = rig.control(Request::Deny { id });
    assert!(!answer.ok, "{answer:?}");
    let deny = rig.find(|r| r["event"] == "deny");
    assert!(deny["reason"].as_str().unwrap_or_default().contains("could not be killed"), "{deny}");
}

#[test]
fn a_sighup_reload_that_adds_a_chain_produces_its_record() {
    let mut rig = rig(loaded("test", POLICY));
    let path = rig.dir.join("policy.yaml");
    let with_chain = format!(
        "{POLICY}chains:\n  - id: read-then-destroy\n    stages: [credential_discovery, destructive_action]\n    window_secs: 60\n"
    );
    std::fs::write(&path, with_chain).unwrap_or_else(|err| panic!("{err}"));
    rig.daemon.policy_path = Some(path);
    rig.daemon.reload(false);
    assert!(rig.daemon.host.kernel.calls.contains(&KernelCall::WritePolicy));
    rig.find(|r| r["event"] == "policy_reload");
    let read = synth::credential_read(rig.task(400), "/work/.env", DevIno { dev: 8, ino: 2 }, action::KILL, Some(0));
    rig.daemon.handle_event(&read);
    // Escalated: the destructive command is held, which is the chain's second stage.
    rig.held(401, &["rm", "-rf", "/srv"]);
    let chain =
        rig.find(|r| r["event"] == "chain" && r["rule"] == "read-then-destroy" && r["details"]["complete"] == true);
    let stages: Vec<&str> =
        chain["details"]["stages"].as_array().into_iter().flatten().filter_map(|s| s["stage"].as_str()).collect();
    assert_eq!(stages, ["credential_discovery", "destructive_action"]);
}

#[test]
fn ended_sessions_guard_created_are_removed_after_a_second_empty_look_and_recorded() {
    let mut rig = rig(loaded("test", POLICY));
    let sys = &rig.daemon.host.sys;
    for name in ["ended", "busy", "foreign"] {
        sys.mkdir(&Path::new(ROOT).join(name)).unwrap_or_else(|err| panic!("{err}"));
    }
    for name in ["ended", "busy"] {
        crate::cgroup::mark_created(sys.as_ref(), &Path::new(ROOT).join(name), Created::Fresh, 1)
            .unwrap_or_else(|err| panic!("{err}"));
    }
    sys.write_file(&Path::new(ROOT).join("busy/cgroup.procs"), b"77").unwrap_or_else(|err| panic!("{err}"));
    let exists = |rig: &Rig, name: &str| rig.daemon.host.sys.stat(&Path::new(ROOT).join(name)).is_ok();
    rig.daemon.reap_sessions();
    assert!(exists(&rig, "ended"), "one empty look is not enough: its last records may be in flight");
    rig.daemon.reap_sessions();
    assert!(!exists(&rig, "ended"));
    assert!(exists(&rig, "busy") && exists(&rig, "foreign") && exists(&rig, "agent"));
    let end = rig.find(|r| r["event"] == "session_end");
    assert_eq!(end["session"], "ended");
    assert_eq!(end["details"]["path"], format!("{ROOT}/ended"));
    // The busy session's process leaves: it goes two looks later; the unmarked one stays.
    rig.daemon
        .host
        .sys
        .write_file(Path::new(&format!("{ROOT}/foreign/cgroup.procs")), b"77")
        .unwrap_or_else(|err| panic!("{err}"));
    rig.daemon.reap_sessions();
    rig.daemon.reap_sessions();
    assert!(!exists(&rig, "busy"), "its process moved out: it ended");
    assert!(exists(&rig, "foreign"), "not guard's: never removed");
}

#[test]
fn a_session_with_a_held_exec_is_not_removed() {
    let mut rig = rig(loaded("test", POLICY));
    let agent = Path::new(ROOT).join("agent");
    crate::cgroup::mark_created(rig.daemon.host.sys.as_ref(), &agent, Created::Fresh, 1)
        .unwrap_or_else(|err| panic!("{err}"));
    // Held in the kernel (and pending approval) while its cgroup reads empty (e.g. killed
    // from outside before the daemon noticed).
    rig.daemon.host.kernel.held.push((900, guard_common::HeldInfo { session_id: rig.session, since_ns: 1 }));
    for _ in 0..3 {
        rig.daemon.reap_sessions();
    }
    assert!(rig.daemon.host.sys.stat(&agent).is_ok());
    rig.daemon.host.kernel.held.clear();
    rig.daemon.reap_sessions();
    assert!(rig.daemon.host.sys.stat(&agent).is_err(), "removed once nothing is held (it was empty before)");
}
