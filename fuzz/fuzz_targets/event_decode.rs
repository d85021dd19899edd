//! Ring-buffer records -> `event::decode` -> what the daemon does with each decoded event
//! (guard-daemon/src/daemon.rs `handle_event`): the audit record, its JSON line, the
//! trajectory, and for execs of a consumer's file the consumer judgement.
//!
//! Input: a sequence of records. A record starting with a known kind byte (1..=9) is that
//! kind's struct, its header's `kind` set and its length made exact (the rest of the bytes,
//! zero-padded), so the fuzzer spends its time inside the bodies; any other first byte makes
//! the rest of the input one raw record (short, wrong-sized, unknown kinds).

#![no_main]

use std::sync::OnceLock;

use guard_common::{
    DevIno, ExecEvent, ExitEvent, ForkEvent, FsEvent, NetEvent, OpenEvent, RefusalEvent, SelfEvent, kind,
};
use guard_engine::audit::AuditRecord;
use guard_engine::consumer::{ConsumerFile, ConsumerInfo, ConsumerTable, ExecFacts, Resolver, shebang};
use guard_engine::event::{Body, decode, open_flag_names};
use guard_engine::policy::{ChainSpec, CompileContext, default_policy};
use guard_engine::records::{ClockBase, Enrichment, Recorder, RuleInfo};
use guard_engine::trajectory::{ProcessKey, Significant, Trajectory, TrajectoryLimits};
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

struct Fixed {
    rules: Vec<RuleInfo>,
    chains: Vec<ChainSpec>,
    consumers: ConsumerTable,
}

/// The default policy's rule table and chains (as the daemon has them), and a consumer table
/// with a binary and a script consumer on small identities the fuzzer can reach.
fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| {
        let compiled = default_policy().compile(&CompileContext { homes: vec!["/home/agent".into()] });
        let rules = compiled
            .rules
            .iter()
            .map(|r| RuleInfo {
                id: r.id.clone(),
                detector: r.detector.as_str(),
                severity: r.severity,
                mitre: (!r.mitre.is_empty()).then(|| r.mitre.clone()),
                description: r.description.clone(),
            })
            .collect();
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
        Fixed { rules, chains: compiled.chains, consumers }
    })
}

/// The held process's view of the machine, made up: a script argument resolves when it
/// names npm's script, `/usr/lib` is the only trusted library directory.
struct Machine;

impl Resolver for Machine {
    fn script(&self, argument: &str) -> Option<(DevIno, String)> {
        argument.ends_with("npm-cli.js").then(|| (DevIno { dev: 1, ino: 3 }, "npm-cli.js".to_string()))
    }

    fn trusted_library_dir(&self, dir: &str) -> bool {
        dir == "/usr/lib"
    }
}

fn check_line(record: &AuditRecord) {
    let line = record.to_json_line();
    assert!(!line.contains('\n'), "an audit line with a newline in it: {line:?}");
    if let Err(err) = AuditRecord::from_json_line(&line) {
        panic!("the audit line {line:?} does not parse back: {err}");
    }
}

fuzz_target!(|data: &[u8]| {
    let fixed = fixed();
    let clock = ClockBase { realtime_ns: 1_780_000_000_000_000_000, monotonic_ns: 12_345_000_000_000 };
    let mut recorder = Recorder::new(fixed.rules.clone(), clock);
    // Small bounds: the default ones preallocate tables for 16,384 processes per input, and
    // small ones make the fuzzer reach eviction.
    let limits = TrajectoryLimits {
        max_sessions: 2,
        max_processes: 4,
        session_history: 4,
        process_history: 2,
        exited_retained: 2,
    };
    let mut trajectory = Trajectory::with_limits(fixed.chains.clone(), limits);
    let _ = shebang(data);
    for bytes in records(data) {
        let event = match decode(&bytes) {
            Ok(event) => event,
            Err(err) => {
                assert!(!err.to_string().is_empty());
                continue;
            }
        };
        let extra = Enrichment { session: Some("fuzz".into()), cwd: Some("/home/agent".into()), ..Default::default() };
        let record = recorder.record(&event, extra);
        check_line(&record);
        let process = ProcessKey { pid: event.head.tgid, start_ns: event.head.start_ns };
        match &event.body {
            Body::Fork { child_tgid, child_start_ns, .. } => {
                trajectory.fork(process, ProcessKey { pid: *child_tgid, start_ns: *child_start_ns });
            }
            Body::Exit { .. } => trajectory.exit(process),
            Body::Exec { file, argv, .. } => {
                let env = [("LD_LIBRARY_PATH".to_string(), "/usr/lib:/tmp".to_string())];
                let env = if event.head.flags & 1 == 0 { &env[..0] } else { &env[..] };
                let _ = fixed.consumers.judge(&ExecFacts { file: *file, argv, env }, &Machine);
            }
            Body::Open { flags, .. } => {
                let _ = open_flag_names(*flags);
            }
            _ => {}
        }
        let ts_ns = clock.wall_ns(event.head.ktime_ns);
        if let Some(significant) = Significant::from_record(&record, event.head.session_id, process, ts_ns) {
            for progress in trajectory.observe(significant) {
                check_line(&progress.to_audit_record());
            }
        }
        trajectory.expire(ts_ns);
    }
});
