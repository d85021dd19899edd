//! Ring-buffer records -> the engine (guard-engine/src/engine), as the daemon feeds it each
//! record it reads (`Engine::on_event`): decoding, the audit record, the held-exec judgement
//! (destructive rules, consumers), holds, the trajectory, provenance, session marks; every
//! action's audit record must serialise to one JSON line that parses back.
//!
//! Input: a sequence of records. A record starting with a known kind byte (1..=10) is that
//! kind's struct, its header's `kind` set and its length made exact (the rest of the bytes,
//! zero-padded), so the fuzzer spends its time inside the bodies; any other first byte makes
//! the rest of the input one raw record (short, wrong-sized, unknown kinds).
//!
//! The machine is made up and deterministic ([`FuzzMachine`]): a held process's view (argv,
//! environment) is picked by its pid from a few commands, so held execs reach every verdict.
//!
//! One engine serves [`INPUTS_PER_ENGINE`] inputs, like the daemon's serves every record: a
//! fresh one per input cost more than a millisecond and capped the run at about 800 inputs/s,
//! while one engine for the whole run got slower as its state grew (2,300 inputs/s at the
//! start, 430 after 340,000 inputs): random session ids fill the trajectory's 1,024 sessions,
//! and `tick`, here once per input (once a second in the daemon), walks all of them. A failure
//! that needs earlier inputs' state shows up as an artifact that passes alone.

#![no_main]

use std::cell::RefCell;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use guard_common::{
    DevIno, ExecEvent, ExitEvent, ForkEvent, FsEvent, NetEvent, OpenEvent, RefusalEvent, SelfEvent, SessionState, UnixEvent,
    kind,
};
use guard_engine::audit::AuditRecord;
use guard_engine::consumer::{ConsumerFile, ConsumerInfo, ConsumerTable};
use guard_engine::engine::{Action, Engine, EnginePolicy, EngineSettings, HeldView, Machine, Now, SessionCgroup};
use guard_engine::policy::default_policy;
use guard_engine::records::ClockBase;
use libfuzzer_sys::fuzz_target;

/// At most this many records per input (keeps one input's work bounded).
const MAX_RECORDS: usize = 16;

fn size_of_kind(k: u32) -> Option<usize> {
    use std::mem::size_of;
    Some(match k {
        kind::EXEC => size_of::<ExecEvent>(),
        kind::OPEN => size_of::<OpenEvent>(),
        kind::CONNECT | kind::SENDMSG => size_of::<NetEvent>(),
        kind::FORK => size_of::<ForkEvent>(),
        kind::EXIT => size_of::<ExitEvent>(),
        kind::SELF_PROTECT => size_of::<SelfEvent>(),
        kind::FS_CHANGE => size_of::<FsEvent>(),
        kind::REFUSAL => size_of::<RefusalEvent>(),
        kind::UNIX => size_of::<UnixEvent>(),
        _ => return None,
    })
}

/// Splits the input into records (see the module comment).
fn records(mut data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some((&first, rest)) = data.split_first() {
        if out.len() == MAX_RECORDS {
            break;
        }
        let Some(size) = size_of_kind(u32::from(first)) else {
            out.push(rest.to_vec());
            break;
        };
        let take = size.min(rest.len());
        let mut record = rest[..take].to_vec();
        record.resize(size, 0);
        record[..4].copy_from_slice(&u32::from(first).to_ne_bytes());
        out.push(record);
        data = &rest[take..];
    }
    out
}

/// The default policy, with a binary and a script consumer on small identities the fuzzer
/// can reach (kubectl: 1:1; node: 1:2 running npm's script 1:3).
fn policy() -> &'static EnginePolicy {
    static POLICY: OnceLock<EnginePolicy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let mut policy = EnginePolicy::new(&default_policy(), vec!["/home/agent".into()]);
        let mut consumers = ConsumerTable::default();
        let kubectl =
            consumers.add_consumer(ConsumerInfo { name: "kubectl".into(), mask: 1, rule_ids: vec!["kube".into()] });
        consumers.add_file(
            kubectl,
            ConsumerFile::Binary {
                identity: DevIno { dev: 1, ino: 1 },
                path: "/usr/bin/kubectl".into(),
                dynamic: true,
            },
        );
        let npm = consumers.add_consumer(ConsumerInfo { name: "npm".into(), mask: 2, rule_ids: vec!["npmrc".into()] });
        consumers.add_file(
            npm,
            ConsumerFile::Script {
                identity: DevIno { dev: 1, ino: 3 },
                path: "/usr/lib/node_modules/npm/bin/npm-cli.js".into(),
                interpreters: vec![DevIno { dev: 1, ino: 2 }],
            },
        );
        policy.consumers = consumers;
        // A socket the inode hooks can name (1:4), as the daemon's scan would.
        policy.unix_names.insert(DevIno { dev: 1, ino: 4 }, "/run/docker.sock".into());
        policy
    })
}

/// Held processes' views, picked by pid.
const VIEWS: &[(&[&str], &[(&str, &str)])] = &[
    (&["rm", "-rf", "/srv/data"], &[]),
    (&["sh", "-c", "cd /tmp && rm -rf build; git push --force origin main"], &[]),
    (&["kubectl", "get", "pods"], &[]),
    (&["kubectl", "delete", "ns", "prod"], &[("LD_PRELOAD", "/tmp/x.so")]),
    (&["node", "/usr/lib/node_modules/npm/bin/npm-cli.js", "install"], &[("NODE_OPTIONS", "-r /tmp/evil.js")]),
    (&["node", "/usr/lib/node_modules/npm/bin/npm-cli.js", "publish"], &[("LD_LIBRARY_PATH", "/usr/lib")]),
    (&["curl", "-H", "Authorization: Bearer ghp_0123456789abcdefghijklmnopqrstuvwxyzAB", "https://example.com"], &[]),
];

/// A made-up machine: one session, a fixed clock, views of held processes by pid (pids
/// divisible by 8 cannot be read: the engine fails closed).
struct FuzzMachine;

impl Machine for FuzzMachine {
    fn now(&self) -> Now {
        Now { mono_ns: 60_000_000_000, wall_ns: 1_780_000_060_000_000_000 }
    }
    fn session_name(&self, session: u64) -> Option<String> {
        (session % 2 == 0).then(|| format!("fuzz-{session}"))
    }
    fn session_cgroup(&self, session: u64) -> Option<SessionCgroup> {
        Some(SessionCgroup {
            name: format!("fuzz-{session}"),
            path: PathBuf::from(format!("/sys/fs/cgroup/guard/fuzz-{session}")),
            workspace: Some(PathBuf::from("/home/agent/project")),
            confinement: None,
        })
    }
    fn kernel_session(&self, _: u64) -> Option<SessionState> {
        None
    }
    fn cwd(&self, _: u32) -> io::Result<PathBuf> {
        Ok(PathBuf::from("/home/agent/project"))
    }
    fn cmdline(&self, pid: u32) -> Option<Vec<String>> {
        self.held_view(pid).ok().map(|view| view.argv)
    }
    fn identity(&self, _: &Path) -> io::Result<DevIno> {
        Err(io::Error::new(io::ErrorKind::NotFound, "fuzz: no files"))
    }
    fn read_identified(&self, _: &Path, _: DevIno, _: u64) -> Option<String> {
        Some("token = ghp_0123456789abcdefghijklmnopqrstuvwxyzAB\n".into())
    }
    fn pin_held(&self, _: u32) -> io::Result<()> {
        Ok(())
    }
    fn held_view(&self, pid: u32) -> io::Result<HeldView> {
        if pid % 8 == 0 {
            return Err(io::Error::new(io::ErrorKind::NotFound, "fuzz: gone"));
        }
        let (argv, env) = VIEWS[pid as usize % VIEWS.len()];
        Ok(HeldView {
            argv: argv.iter().map(|a| a.to_string()).collect(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            cwd: Some("/home/agent/project".into()),
            exe: Some(format!("/usr/bin/{}", argv[0])),
        })
    }
    fn process_alive(&self, pid: u32) -> bool {
        pid % 3 != 0
    }
    fn script(&self, _: u32, argument: &str) -> Option<(DevIno, String)> {
        argument.ends_with("npm-cli.js").then(|| (DevIno { dev: 1, ino: 3 }, "npm-cli.js".to_string()))
    }
    fn trusted_library_dir(&self, _: u32, dir: &str) -> bool {
        dir == "/usr/lib"
    }
}

fn check(actions: Vec<Action>) {
    for record in actions.into_iter().filter_map(Action::into_record) {
        let line = record.to_json_line();
        assert!(!line.contains('\n'), "an audit line with a newline in it: {line:?}");
        if let Err(err) = AuditRecord::from_json_line(&line) {
            panic!("the audit line {line:?} does not parse back: {err}");
        }
    }
}

fn settings() -> EngineSettings {
    EngineSettings {
        fingerprint_key: [7; 32],
        clock: ClockBase { realtime_ns: 1_780_000_000_000_000_000, monotonic_ns: 12_345_000_000_000 },
        enforce: true,
    }
}

/// Inputs one engine serves before a fresh one takes over.
const INPUTS_PER_ENGINE: u32 = 1024;

thread_local! {
    static ENGINE: RefCell<(Engine, u32)> = RefCell::new((Engine::new(settings(), policy().as_ref()), 0));
}

fuzz_target!(|data: &[u8]| {
    let machine = FuzzMachine;
    ENGINE.with_borrow_mut(|(engine, served)| {
        *served += 1;
        if *served > INPUTS_PER_ENGINE {
            *engine = Engine::new(settings(), policy().as_ref());
            *served = 1;
        }
        for bytes in records(data) {
            check(engine.on_event(&bytes, &machine));
        }
        check(engine.tick(&machine));
    });
});
