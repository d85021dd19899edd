//! Raw ring-buffer records as the kernel writes them, built by hand: for tests, fakes and
//! benchmarks that feed [`super::Engine::on_event`].

use guard_common::{
    ARGS_LEN, COMM_LEN, DevIno, EventHeader, ExecEvent, ExitEvent, ForkEvent, NAME_LEN, NetEvent, OpenEvent, PATH_LEN,
    ProcCounts, action, detector, flags, kind,
};

use crate::event::encode;

/// Who an event is about and what the kernel decided.
#[derive(Clone, Copy, Debug)]
pub struct Task {
    pub session: u64,
    pub pid: u32,
    pub ppid: u32,
    pub start_ns: u64,
    /// `bpf_ktime_get_ns()` at the event.
    pub ktime_ns: u64,
}

impl Task {
    pub fn new(session: u64, pid: u32) -> Self {
        Self { session, pid, ppid: 1, start_ns: u64::from(pid) * 1_000, ktime_ns: 1_000_000_000 }
    }

    pub fn at(mut self, ktime_ns: u64) -> Self {
        self.ktime_ns = ktime_ns;
        self
    }
}

fn copy(dst: &mut [u8], text: &str) {
    // Keep the final NUL: the kernel's strings are NUL-terminated.
    let len = text.len().min(dst.len().saturating_sub(1));
    dst[..len].copy_from_slice(&text.as_bytes()[..len]);
}

/// The common head: `verdict` is `guard_common::action::*`, `detector` `detector::*`.
pub fn header(event_kind: u32, task: Task, verdict: u32, detector: u32, rule: Option<u32>) -> EventHeader {
    let mut comm = [0u8; COMM_LEN];
    copy(&mut comm, "task");
    EventHeader {
        kind: event_kind,
        action: verdict,
        ktime_ns: task.ktime_ns,
        cgroup_id: task.session,
        session_id: task.session,
        pid: task.pid,
        tgid: task.pid,
        ppid: task.ppid,
        detector,
        rule: rule.unwrap_or(u32::MAX),
        flags: 0,
        comm,
        start_ns: task.start_ns,
    }
}

/// An open of `path` (file identity `file`) with the kernel's verdict.
pub fn open(task: Task, path: &str, file: DevIno, verdict: u32, detector: u32, rule: Option<u32>) -> Vec<u8> {
    let mut path_buf = [0u8; PATH_LEN];
    copy(&mut path_buf, path);
    let mut name = [0u8; NAME_LEN];
    copy(&mut name, path.rsplit('/').next().unwrap_or(path));
    encode(&OpenEvent {
        header: header(kind::OPEN, task, verdict, detector, rule),
        file,
        flags: 0,
        dfd: -100,
        ret: 3,
        path: path_buf,
        name,
        consumer: u32::MAX,
        _pad: 0,
    })
}

/// A credential read the kernel let through (monitor) or killed.
pub fn credential_read(task: Task, path: &str, file: DevIno, verdict: u32, rule: Option<u32>) -> Vec<u8> {
    open(task, path, file, verdict, detector::CREDENTIAL, rule)
}

/// A TCP connect to an IPv4 address.
pub fn connect(task: Task, addr: [u8; 4], port: u16, verdict: u32, detector: u32, rule: Option<u32>) -> Vec<u8> {
    let mut bytes = [0u8; 16];
    bytes[..4].copy_from_slice(&addr);
    encode(&NetEvent {
        header: header(kind::CONNECT, task, verdict, detector, rule),
        family: 2,
        port,
        sock_type: 1,
        protocol: 6,
        _pad: 0,
        addr: bytes,
    })
}

/// An exec of `filename` with `argv`; `verdict` `action::HOLD` is a held exec.
pub fn exec(task: Task, filename: &str, argv: &[&str], file: DevIno, verdict: u32) -> Vec<u8> {
    let mut name = [0u8; PATH_LEN];
    copy(&mut name, filename);
    let mut args = [0u8; ARGS_LEN];
    let mut len = 0;
    for arg in argv {
        let end = (len + arg.len()).min(ARGS_LEN - 1);
        args[len..end].copy_from_slice(&arg.as_bytes()[..end - len]);
        len = (end + 1).min(ARGS_LEN);
    }
    let detector = if verdict == action::HOLD { detector::DESTRUCTIVE } else { detector::NONE };
    let mut head = header(kind::EXEC, task, verdict, detector, None);
    if len >= ARGS_LEN {
        head.flags |= flags::ARGS_TRUNCATED;
    }
    encode(&ExecEvent { header: head, file, old_pid: task.pid, args_len: len as u32, filename: name, args })
}

/// `task` forked `child`.
pub fn fork(task: Task, child: Task) -> Vec<u8> {
    encode(&ForkEvent {
        header: header(kind::FORK, task, action::ALLOW, detector::NONE, None),
        child_pid: child.pid,
        child_tgid: child.pid,
        child_start_ns: child.start_ns,
    })
}

/// `task` exited.
pub fn exit(task: Task) -> Vec<u8> {
    encode(&ExitEvent {
        header: header(kind::EXIT, task, action::ALLOW, detector::NONE, None),
        start_ns: task.start_ns,
        counts: ProcCounts::default(),
    })
}
