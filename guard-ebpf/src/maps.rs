//! Every map and global the programs share. User space fills them from the compiled policy.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use guard_common::{
    Config, ConsumerGrant, DaemonState, DevIno, ExecWatch, HeldInfo, KernelOffsets, NAME_LEN, OpenArgs, PATH_LEN,
    PortSet, ProcCounts, RuleRef, SessionState, SyscallArgs, UNIX_PATH_LEN, WriteRootKey, stat,
};

/// Kernel structure offsets, written by the loader before load (see `KernelOffsets`).
#[unsafe(no_mangle)]
pub static GUARD_OFFSETS: KernelOffsets = KernelOffsets::UNSET;

#[inline(always)]
pub fn offsets() -> KernelOffsets {
    // SAFETY: a read-only global; volatile so the compiler does not fold the zero initialiser.
    unsafe { core::ptr::read_volatile(&GUARD_OFFSETS) }
}

#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(4 * 1024 * 1024, 0);

#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

#[map]
pub static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

/// Registered cgroup roots: cgroup id -> root index.
#[map]
pub static ROOTS: HashMap<u64, u32> = HashMap::with_max_entries(64, 0);

/// Cache: a task's cgroup id -> its session id, or 0 for "not governed". Cleared by the daemon
/// whenever the roots change; cgroup ids are never reused, so entries cannot go stale otherwise.
#[map]
pub static CGROUP_SESSION: LruHashMap<u64, u64> = LruHashMap::with_max_entries(16384, 0);

/// Per-session state the kernel writes (the credential mark). The daemon's flags live in
/// `SESSION_FLAGS`: one writer per map, so neither overwrites the other's update.
#[map]
pub static SESSIONS: HashMap<u64, SessionState> = HashMap::with_max_entries(4096, 0);

/// Per-session flags the daemon writes (`escalation::*`, `SESSION_WORKSPACE_KNOWN`).
#[map]
pub static SESSION_FLAGS: HashMap<u64, u32> = HashMap::with_max_entries(4096, 0);

/// Open arguments from syscall entry, for the matching exit.
#[map]
pub static OPEN_ARGS: LruHashMap<u64, OpenArgs> = LruHashMap::with_max_entries(16384, 0);

/// Credential files by identity (found by the daemon's scan).
#[map]
pub static CRED_INODES: HashMap<DevIno, RuleRef> = HashMap::with_max_entries(65536, 0);

/// Credential names: exact final component, NUL padded.
#[map]
pub static CRED_NAMES: HashMap<[u8; NAME_LEN], RuleRef> = HashMap::with_max_entries(1024, 0);

/// Credential name prefixes (`.env.*`, `id_*`).
#[map]
pub static CRED_NAME_PREFIX: LpmTrie<[u8; NAME_LEN], RuleRef> = LpmTrie::with_max_entries(1024, 0);

/// Credential name suffixes (`*.pem`), stored reversed.
#[map]
pub static CRED_NAME_SUFFIX: LpmTrie<[u8; NAME_LEN], RuleRef> = LpmTrie::with_max_entries(1024, 0);

/// Directories whose files never count as credentials by name (public CA certificates under
/// /etc/ssl/certs are `*.pem` too).
#[map]
pub static CRED_EXEMPT_DIRS: HashMap<DevIno, u32> = HashMap::with_max_entries(256, 0);

/// guard's own files (policy, audit stream): sessions never open them for writing.
#[map]
pub static PROTECTED: HashMap<DevIno, u32> = HashMap::with_max_entries(64, 0);

/// Directories under which sessions may open files for writing.
#[map]
pub static WRITE_ROOTS: HashMap<WriteRootKey, u32> = HashMap::with_max_entries(4096, 0);

/// Directories under which sessions may open files for reading (only with a read allow-list).
#[map]
pub static READ_ROOTS: HashMap<WriteRootKey, u32> = HashMap::with_max_entries(1024, 0);

/// Network allow-list.
#[map]
pub static NET_ALLOW4: LpmTrie<[u8; 4], PortSet> = LpmTrie::with_max_entries(4096, 0);
#[map]
pub static NET_ALLOW6: LpmTrie<[u8; 16], PortSet> = LpmTrie::with_max_entries(4096, 0);

/// Exec watch set, by file identity and by name.
#[map]
pub static EXEC_WATCH_INODES: HashMap<DevIno, ExecWatch> = HashMap::with_max_entries(4096, 0);
#[map]
pub static EXEC_WATCH_NAMES: HashMap<[u8; NAME_LEN], ExecWatch> = HashMap::with_max_entries(1024, 0);
/// Exec watch by the end of the exec'd path (`/<name>`, reversed), for `#!` scripts whose
/// bprm->file is already the interpreter.
#[map]
pub static EXEC_WATCH_PATHS: LpmTrie<[u8; PATH_LEN], ExecWatch> = LpmTrie::with_max_entries(1024, 0);

/// Execs held for the daemon (tgid -> info). The kernel adds; the daemon removes an entry
/// before it continues or kills the task, so a task still listed here and running again was
/// continued by someone else.
#[map]
pub static HELD: HashMap<u32, HeldInfo> = HashMap::with_max_entries(4096, 0);

/// Nonzero while anything may be held: lets the every-syscall check return after one lookup.
#[map]
pub static HELD_ANY: Array<u32> = Array::with_max_entries(1, 0);

/// Consumer binaries, interpreters of consumer scripts, and consumer scripts, by identity
/// (`consumer_file::*` bits). Resolved by the daemon at load and every rescan.
#[map]
pub static CONSUMER_FILES: HashMap<DevIno, u32> = HashMap::with_max_entries(1024, 0);

/// Processes (tgid) the daemon judged to be a credential consumer. Gone at the next exec.
#[map]
pub static TASK_CONSUMER: LruHashMap<u32, ConsumerGrant> = LruHashMap::with_max_entries(8192, 0);

/// Arguments of a watched syscall, from its entry to its exit (keyed by pid_tgid).
#[map]
pub static SYSCALL_ARGS: LruHashMap<u64, SyscallArgs> = LruHashMap::with_max_entries(16384, 0);

/// Syscalls the policy's seccomp list refuses in launched sessions: a session process that
/// reaches their entry tracepoint has no such filter (an adopted cgroup) and is killed there.
#[map]
pub static SECCOMP_KILL: HashMap<u32, u32> = HashMap::with_max_entries(64, 0);

/// The daemon's heartbeat (see `DaemonState`).
#[map]
pub static DAEMON_STATE: Array<DaemonState> = Array::with_max_entries(1, 0);

/// Session processes that signalled the daemon (tgid -> when), so it can ignore what they
/// sent: the sender is killed, but a signal generated is a signal delivered.
#[map]
pub static SIGNALERS: LruHashMap<u32, u64> = LruHashMap::with_max_entries(1024, 0);

/// A session's own record level (`guard_common::RecordLevel`), else `Config::record_level`.
#[map]
pub static SESSION_RECORD: HashMap<u64, u32> = HashMap::with_max_entries(4096, 0);

/// `scope.unix` by the path a caller passes to connect/sendto (NUL-padded), for the cgroup
/// unix programs.
#[map]
pub static UNIX_PATHS: HashMap<[u8; UNIX_PATH_LEN], RuleRef> = HashMap::with_max_entries(512, 0);

/// `scope.unix` by the socket file's identity, for the LSM hooks and the connect exit.
#[map]
pub static UNIX_INODES: HashMap<DevIno, RuleRef> = HashMap::with_max_entries(512, 0);

/// What each session process did (tgid -> counts), carried by its exit event and removed.
#[map]
pub static PROC_COUNTS: LruHashMap<u32, ProcCounts> = LruHashMap::with_max_entries(16384, 0);

/// An open's judgement between the decision and the record (`file::guard_exit_open`). In map
/// memory, not registers: the verifier does not track its values, so the many ways through
/// the judgement meet again in one state (the 6.1 verifier's budget).
#[repr(C)]
pub struct OpenJudgement {
    pub identity: DevIno,
    pub name_ptr: u64,
    pub action: u32,
    pub detector: u32,
    pub rule: u32,
    pub flags: u32,
    pub consumer: u32,
    pub writes: u32,
}

/// Scratch space too large for the 512-byte BPF stack.
#[repr(C)]
pub struct Scratch {
    pub open: OpenJudgement,
    pub name: [u8; NAME_LEN],
    pub key: aya_ebpf::maps::lpm_trie::Key<[u8; NAME_LEN]>,
    pub path_key: aya_ebpf::maps::lpm_trie::Key<[u8; PATH_LEN]>,
}

#[map]
pub static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
pub fn bump(index: u32) {
    if let Some(counter) = STATS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU while we run.
        unsafe { *counter += 1 };
    }
}

/// Which of a process's counters an operation adds to.
#[derive(Clone, Copy)]
pub enum Count {
    Open { writes: bool },
    Connect,
}

/// Counts one operation of the current process, and a denial when `denied`.
#[inline(always)]
pub fn count(what: Count, denied: bool) {
    let tgid = (aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32;
    let ptr = match PROC_COUNTS.get_ptr_mut(&tgid) {
        Some(ptr) => ptr,
        None => {
            let _ = PROC_COUNTS.insert(&tgid, &ProcCounts::default(), 0);
            match PROC_COUNTS.get_ptr_mut(&tgid) {
                Some(ptr) => ptr,
                None => return,
            }
        }
    };
    let add = |field: *mut u64| {
        // SAFETY: an aligned u64 in map memory. Not atomic (the bpfel core has no 64-bit
        // fetch_add): two threads of one process counting at once may lose one increment.
        unsafe { *field += 1 };
    };
    // SAFETY (field addresses): `ptr` points at a live map value.
    unsafe {
        match what {
            Count::Open { writes } => {
                add(&raw mut (*ptr).opens);
                if writes {
                    add(&raw mut (*ptr).writes);
                }
            }
            Count::Connect => add(&raw mut (*ptr).connects),
        }
        if denied {
            add(&raw mut (*ptr).denials);
        }
    }
}

/// The record level of a session.
#[inline(always)]
pub fn record_level(session_id: u64) -> u32 {
    // SAFETY: copy of a plain u32.
    match unsafe { SESSION_RECORD.get(&session_id) } {
        Some(level) => *level,
        None => config().map_or(guard_common::RecordLevel::Decisions as u32, |cfg| cfg.record_level),
    }
}

#[inline(always)]
pub fn config() -> Option<&'static Config> {
    CONFIG.get(0)
}

/// Is a daemon there to judge held execs (its heartbeat is fresh)?
#[inline(always)]
pub fn daemon_alive() -> bool {
    let Some(state) = DAEMON_STATE.get(0) else { return false };
    // SAFETY: plain helper call.
    let now = unsafe { aya_ebpf::helpers::generated::bpf_ktime_get_ns() };
    state.exited == 0
        && state.heartbeat_ns != 0
        && now.saturating_sub(state.heartbeat_ns) < guard_common::HEARTBEAT_STALE_NS
}
