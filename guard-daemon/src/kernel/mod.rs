//! The kernel side as the daemon sees it: load the object, attach the programs, write maps.
//!
//! Every program checks session membership first, so attaching them is safe for the rest of
//! the machine; the cgroup sock_addr programs are moreover attached only to session roots.

pub mod btf;
pub mod handle;
pub mod pins;
pub mod tier;
pub mod unix;

use std::{fs::File, os::fd::AsFd, path::Path};

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    maps::{
        Array, HashMap, MapData, PerCpuArray, RingBuf,
        lpm_trie::{Key, LpmTrie},
    },
    programs::{BtfTracePoint, CgroupAttachMode, CgroupSockAddr, TracePoint, links::FdLink},
};
use guard_common::{
    Config, ConsumerGrant, DaemonState, DevIno, HeldInfo, KernelOffsets, OFFSETS_GLOBAL, RuleRef, SessionState,
    WriteRootKey, maps, programs, stat,
};

use crate::policy_load::PreparedMaps;
use guard_engine::control::{HookStatus, Tier};

/// The eBPF object built by guard-daemon/build.rs (aya-build).
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/guard-ebpf"));

/// Open-family syscalls: each has its own entry program (argument layouts differ) and shares
/// the exit program.
const OPEN_SYSCALLS: &[(&str, &str)] = &[
    ("sys_enter_openat", programs::ENTER_OPENAT),
    ("sys_enter_openat2", programs::ENTER_OPENAT2),
    ("sys_enter_open", programs::ENTER_OPEN),
    ("sys_enter_creat", programs::ENTER_CREAT),
];
const OPEN_EXITS: &[&str] = &["sys_exit_openat", "sys_exit_openat2", "sys_exit_open", "sys_exit_creat"];

const SCHED_HOOKS: &[(&str, &str)] = &[
    (programs::SCHED_EXEC, "sched_process_exec"),
    (programs::SCHED_FORK, "sched_process_fork"),
    (programs::SCHED_EXIT, "sched_process_exit"),
    (programs::SIGNAL_GENERATE, "signal_generate"),
];

/// Plain tracepoints beside the open family: (category, name, program).
const OTHER_TRACEPOINTS: &[(&str, &str, &str)] = &[
    ("raw_syscalls", "sys_enter", programs::RAW_SYS_ENTER),
    ("syscalls", "sys_enter_ptrace", programs::ENTER_PTRACE),
    // scope.unix on the host tier (probes/unix.rs); they stand aside on the lsm tier.
    ("syscalls", "sys_enter_connect", programs::ENTER_CONNECT),
    ("syscalls", "sys_exit_connect", programs::EXIT_CONNECT),
];

const SOCK_ADDR_PROGRAMS: &[(&str, &str)] = &[
    (programs::CONNECT4, "connect4"),
    (programs::CONNECT6, "connect6"),
    (programs::SENDMSG4, "sendmsg4"),
    (programs::SENDMSG6, "sendmsg6"),
];

/// A load error with the verifier's log cut to its last lines: the full log can run to
/// thousands of lines, and its end says what was refused.
fn load_error(what: &str, err: aya::programs::ProgramError) -> anyhow::Error {
    let text = err.to_string();
    let lines: Vec<&str> = text.lines().collect();
    const KEEP: usize = 25;
    if lines.len() <= KEEP + 1 {
        return anyhow!("{what}: {text}");
    }
    anyhow!(
        "{what}: {}\n  ... ({} verifier lines omitted) ...\n{}",
        lines[0],
        lines.len() - KEEP - 1,
        lines[lines.len() - KEEP..].join("\n")
    )
}

pub struct Kernel {
    ebpf: Ebpf,
    /// Where maps and links are pinned (enforcement outlives the daemon).
    pins: pins::Pins,
    /// Session workspaces (`$CWD` write roots) registered so far; kept across reloads.
    workspaces: Vec<WriteRootKey>,
    hooks: Vec<HookStatus>,
    sock_addr_loaded: bool,
    /// The cgroup unix programs once loaded, or why this kernel has none (`None`: not tried).
    unix: Option<Result<unix::UnixPrograms, String>>,
}

impl Kernel {
    /// Load the object with the kernel's structure offsets baked in. Nothing is attached yet.
    pub fn load(offsets: &KernelOffsets, pins: pins::Pins) -> anyhow::Result<Self> {
        if EBPF_OBJECT.is_empty() {
            return Err(anyhow!(
                "this guard binary was built without its eBPF object (AYA_BUILD_SKIP); rebuild with `cargo xtask build`"
            ));
        }
        let mut loader = EbpfLoader::new();
        loader.override_global(OFFSETS_GLOBAL, offsets, true);
        let paths: Vec<(&str, std::path::PathBuf)> =
            maps::ALL.iter().map(|name| (*name, pins.map_path(name))).collect();
        for (name, path) in &paths {
            loader.map_pin_path(name, path.as_path());
        }
        let ebpf = loader.load(EBPF_OBJECT).with_context(|| {
            format!(
                "loading guard's eBPF object (maps pinned under {}{})",
                pins.dir.display(),
                if pins.adopted {
                    ", left by an earlier guard: if it was another version, remove that directory"
                } else {
                    ""
                }
            )
        })?;
        Ok(Self { ebpf, pins, workspaces: Vec::new(), hooks: Vec::new(), sock_addr_loaded: false, unix: None })
    }

    /// Try to load (never attach) the BPF LSM probe program: Err says why the lsm tier is out.
    pub fn probe_lsm(&mut self) -> Result<(), String> {
        let btf = aya::Btf::from_sys_fs().map_err(|err| format!("reading kernel BTF: {err}"))?;
        let prog: &mut aya::programs::Lsm = self.program(programs::LSM_PROBE).map_err(|err| format!("{err:#}"))?;
        let result = prog.load("file_open", &btf).map_err(|err| {
            // An empty verifier log says nothing: keep the syscall's own answer.
            let text = err.to_string();
            const LOG: &str = ". Verifier output";
            match text.find(LOG) {
                Some(at) if text[at + LOG.len()..].trim_matches(|c: char| c == ':' || c.is_whitespace()).is_empty() => {
                    text[..at].to_string()
                }
                _ => text,
            }
        });
        // Loaded or not, the probe has done its job; unload it so it holds no kernel memory.
        let _ = prog.unload();
        result
    }

    /// A program of the object, as its concrete type.
    fn program<'a, T>(&'a mut self, name: &str) -> anyhow::Result<&'a mut T>
    where
        &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
    {
        let prog = self.ebpf.program_mut(name).ok_or_else(|| anyhow!("program {name} missing from the eBPF object"))?;
        Ok(prog.try_into()?)
    }

    pub fn hooks(&self) -> &[HookStatus] {
        &self.hooks
    }

    fn host_hook(&mut self, hook: &str, reason: &str) {
        self.hooks.push(HookStatus {
            hook: hook.to_string(),
            tier: Tier::Host,
            attached: true,
            reason: Some(reason.to_string()),
        });
    }

    /// Attach the tracing programs (exec, fork, exit, open). They run machine-wide and return
    /// at once for tasks outside a session.
    pub fn attach_tracing(&mut self, lsm_reason: &str) -> anyhow::Result<()> {
        let btf = aya::Btf::from_sys_fs().context("reading kernel BTF for tp_btf programs")?;
        for &(prog_name, tracepoint) in SCHED_HOOKS {
            let prog: &mut BtfTracePoint = self.program(prog_name)?;
            prog.load(tracepoint, &btf).map_err(|err| load_error(&format!("loading {prog_name}"), err))?;
            let id = prog.attach().with_context(|| format!("attaching {prog_name} to tp_btf/{tracepoint}"))?;
            let link = FdLink::from(prog.take_link(id)?);
            self.pins.keep(link, &format!("{prog_name}-{tracepoint}"))?;
        }
        self.host_hook(
            "exec",
            &format!("tp_btf/sched_process_exec: SIGKILL/SIGSTOP before the new image runs ({lsm_reason})"),
        );
        self.host_hook("fork/exit", "tp_btf/sched_process_fork, sched_process_exit (lineage)");
        for &(category, name, prog_name) in OTHER_TRACEPOINTS {
            let prog: &mut TracePoint = self.program(prog_name)?;
            prog.load().map_err(|err| load_error(&format!("loading {prog_name}"), err))?;
            let id =
                prog.attach(category, name).with_context(|| format!("attaching {prog_name} to {category}/{name}"))?;
            self.keep_tracepoint(prog_name, name, id)?;
        }
        self.host_hook(
            "self-protection",
            &format!("tp_btf/signal_generate and sys_enter_ptrace kill a session sender targeting a held task or the daemon; raw_syscalls/sys_enter stops a held task continued by anyone else ({lsm_reason})"),
        );

        for &(tracepoint, prog_name) in OPEN_SYSCALLS {
            let prog: &mut TracePoint = self.program(prog_name)?;
            prog.load().map_err(|err| load_error(&format!("loading {prog_name}"), err))?;
            match prog.attach("syscalls", tracepoint) {
                Ok(id) => self.keep_tracepoint(prog_name, tracepoint, id)?,
                // `open`/`creat` do not exist on every architecture.
                Err(err) if matches!(tracepoint, "sys_enter_open" | "sys_enter_creat") => {
                    log::warn!("not attaching {tracepoint}: {err}");
                }
                Err(err) => return Err(err).with_context(|| format!("attaching {prog_name} to syscalls/{tracepoint}")),
            }
        }
        let exit: &mut TracePoint = self.program(programs::EXIT_OPEN)?;
        exit.load().map_err(|err| load_error("loading the open exit program", err))?;
        for &tracepoint in OPEN_EXITS {
            let exit: &mut TracePoint = self.program(programs::EXIT_OPEN)?;
            match exit.attach("syscalls", tracepoint) {
                Ok(id) => self.keep_tracepoint(programs::EXIT_OPEN, tracepoint, id)?,
                Err(err) if matches!(tracepoint, "sys_exit_open" | "sys_exit_creat") => {
                    log::warn!("not attaching {tracepoint}: {err}");
                }
                Err(err) => {
                    return Err(err)
                        .with_context(|| format!("attaching the open exit program to syscalls/{tracepoint}"));
                }
            }
        }
        self.attach_watched_syscalls()?;
        self.host_hook(
            "open",
            &format!("syscall tracepoints: SIGKILL at syscall exit, before data reaches user space; O_CREAT/O_TRUNC already happened ({lsm_reason})"),
        );
        Ok(())
    }

    /// The syscalls whose refusal by a confinement layer is recorded, and at whose entry a
    /// session process without guard's seccomp filter is killed (see probes/refusal.rs).
    fn attach_watched_syscalls(&mut self) -> anyhow::Result<()> {
        use guard_engine::syscalls::{FILE_CHANGES, SIGNALS, seccomp_listed};
        let mut missing = Vec::new();
        for (prog_name, phase) in [(programs::ENTER_WATCHED, "enter"), (programs::EXIT_WATCHED, "exit")] {
            let prog: &mut TracePoint = self.program(prog_name)?;
            prog.load().map_err(|err| load_error(&format!("loading {prog_name}"), err))?;
            for call in FILE_CHANGES.iter().copied().chain(SIGNALS.iter().copied()).chain(seccomp_listed()) {
                let tracepoint = format!("sys_{phase}_{call}");
                let prog: &mut TracePoint = self.program(prog_name)?;
                match prog.attach("syscalls", &tracepoint) {
                    Ok(id) => self.keep_tracepoint(prog_name, &tracepoint, id)?,
                    // kexec and module loading are compiled out of some kernels.
                    Err(_) if phase == "exit" => missing.push(call),
                    Err(_) => {}
                }
            }
        }
        let reason = if missing.is_empty() {
            "syscall tracepoints record EACCES/EPERM from Landlock and seccomp; a session process without guard's seccomp filter is killed at the entry of a denied call".to_string()
        } else {
            format!(
                "syscall tracepoints record EACCES/EPERM from Landlock and seccomp; not in this kernel: {}",
                missing.join(", ")
            )
        };
        self.host_hook("confinement", &reason);
        Ok(())
    }

    /// Syscalls a session process must not reach unfiltered (the policy's seccomp list).
    pub fn set_seccomp_kill(&mut self, calls: &[String]) -> anyhow::Result<()> {
        let numbers: Vec<(u32, u32)> =
            calls.iter().filter_map(|call| guard_engine::syscalls::number(call)).map(|nr| (nr, 1)).collect();
        let mut map: HashMap<_, u32, u32> = HashMap::try_from(self.map(maps::SECCOMP_KILL)?)?;
        for (nr, value) in &numbers {
            map.insert(nr, value, 0).context("writing SECCOMP_KILL")?;
        }
        let stale: Vec<u32> =
            map.keys().filter_map(Result::ok).filter(|k| !numbers.iter().any(|(nr, _)| nr == k)).collect();
        for key in stale {
            let _ = map.remove(&key);
        }
        Ok(())
    }

    /// Attach the lsm tier (only after `probe_lsm` succeeded): hooks that refuse with EPERM.
    pub fn attach_lsm(&mut self) -> anyhow::Result<()> {
        const LSM_HOOKS: &[(&str, &str)] = &[
            (programs::LSM_FILE_OPEN, "file_open"),
            (programs::LSM_BPRM_CHECK, "bprm_check_security"),
            (programs::LSM_INODE_UNLINK, "inode_unlink"),
            (programs::LSM_INODE_RMDIR, "inode_rmdir"),
            (programs::LSM_INODE_RENAME, "inode_rename"),
            (programs::LSM_PATH_TRUNCATE, "path_truncate"),
            (programs::LSM_TASK_KILL, "task_kill"),
            (programs::LSM_PTRACE, "ptrace_access_check"),
            (programs::LSM_BPF, "bpf"),
            (programs::LSM_UNIX_CONNECT, "unix_stream_connect"),
            (programs::LSM_UNIX_SEND, "unix_may_send"),
        ];
        let btf = aya::Btf::from_sys_fs().context("reading kernel BTF for lsm programs")?;
        for &(prog_name, hook) in LSM_HOOKS {
            let prog: &mut aya::programs::Lsm = self.program(prog_name)?;
            prog.load(hook, &btf).map_err(|err| load_error(&format!("loading {prog_name}"), err))?;
            let id = prog.attach().with_context(|| format!("attaching {prog_name} to lsm/{hook}"))?;
            let link = FdLink::from(prog.take_link(id)?);
            self.pins.keep(link, &format!("{prog_name}-{hook}"))?;
        }
        for (hook, reason) in [
            (
                "open",
                "lsm/file_open: credential, write-scope and tampering opens refused with EPERM before they happen",
            ),
            ("exec", "lsm/bprm_check_security refuses by file identity; the exec hold (tp_btf) judges argv"),
            (
                "unlink/rmdir/rename/truncate",
                "lsm/inode_unlink, inode_rmdir, inode_rename, path_truncate: refused on credentials and outside write roots",
            ),
            ("self-protection", "lsm/task_kill, ptrace_access_check, bpf: refused for session tasks"),
            (
                "unix",
                "lsm/unix_stream_connect, unix_may_send: scope.unix sockets refused (EPERM) by the socket file's inode",
            ),
        ] {
            self.hooks.retain(|h| h.hook != hook);
            self.hooks.push(HookStatus {
                hook: hook.to_string(),
                tier: Tier::Lsm,
                attached: true,
                reason: Some(reason.to_string()),
            });
        }
        Ok(())
    }

    /// guard's own files (policy, audit stream): no session opens them for writing.
    pub fn set_protected(&mut self, files: &[DevIno]) -> anyhow::Result<()> {
        let mut map: HashMap<_, DevIno, u32> = HashMap::try_from(self.map(maps::PROTECTED)?)?;
        for id in files {
            map.insert(id, 1, 0).context("writing PROTECTED")?;
        }
        Ok(())
    }

    /// Files that are no longer guard's (an audit file rotation deleted).
    pub fn unprotect(&mut self, files: &[DevIno]) -> anyhow::Result<()> {
        let mut map: HashMap<_, DevIno, u32> = HashMap::try_from(self.map(maps::PROTECTED)?)?;
        for id in files {
            // ENOENT (not there) is as good as removed.
            let _ = map.remove(id);
        }
        Ok(())
    }

    /// Attach the sock_addr programs to one root cgroup (its whole subtree inherits them).
    pub fn attach_cgroup(&mut self, root: &Path, cgroup_id: u64) -> anyhow::Result<()> {
        let cgroup = File::open(root).with_context(|| format!("opening cgroup {}", root.display()))?;
        for &(prog_name, hook) in SOCK_ADDR_PROGRAMS {
            let loaded = self.sock_addr_loaded;
            let prog: &mut CgroupSockAddr = self.program(prog_name)?;
            if !loaded {
                prog.load().map_err(|err| load_error(&format!("loading {prog_name}"), err))?;
            }
            // A cgroup takes one program per hook: an earlier run's, reading the same pinned
            // maps, stays (replacing it would mean a moment without one).
            if self.pins.adopt_sock_link(cgroup_id, prog_name) {
                continue;
            }
            let prog: &mut CgroupSockAddr = self.program(prog_name)?;
            // AllowMultiple is refused through aya 0.14's link path on these kernels; Single
            // also keeps a session from attaching its own program below ours.
            let id = prog
                .attach(cgroup.as_fd(), CgroupAttachMode::Single)
                .with_context(|| format!("attaching {prog_name} ({hook}) to {}", root.display()))?;
            let link = FdLink::try_from(prog.take_link(id)?).context("a sock_addr link that is no bpf link")?;
            self.pins.keep_sock(link, cgroup_id, prog_name)?;
        }
        if !self.sock_addr_loaded {
            self.host_hook(
                "connect/sendmsg",
                "cgroup sock_addr connect4/6, sendmsg4/6: EPERM before the packet leaves (same on both tiers)",
            );
        }
        self.sock_addr_loaded = true;
        self.attach_unix_cgroup(&cgroup, cgroup_id)
    }

    /// The cgroup unix programs on one root, where the kernel has them (6.7+).
    fn attach_unix_cgroup(&mut self, cgroup: &File, cgroup_id: u64) -> anyhow::Result<()> {
        if self.unix.is_none() {
            let loaded = unix::UnixPrograms::load(&self.ebpf, EBPF_OBJECT).map_err(|err| format!("{err:#}"));
            let reason = match &loaded {
                Ok(_) => "cgroup connect_unix/sendmsg_unix refuse scope.unix paths (EPERM); the connect exit kills what a path cannot name (a symlink, a relative path) by the socket's inode".to_string(),
                Err(err) => {
                    log::info!("cgroup unix programs not loaded: {err}");
                    "no cgroup connect_unix in this kernel (6.7+): a connect to a scope.unix socket is killed as it returns, by the socket's inode; datagrams to a path are not seen".to_string()
                }
            };
            self.host_hook("unix", &reason);
            self.unix = Some(loaded);
        }
        let Some(Ok(programs)) = &self.unix else { return Ok(()) };
        let names: Vec<&'static str> = programs.names().collect();
        for name in names {
            if self.pins.adopt_sock_link(cgroup_id, name) {
                continue;
            }
            let Some(Ok(programs)) = &self.unix else { return Ok(()) };
            let link = programs.attach(name, cgroup.as_fd())?;
            self.pins.keep_raw_sock(link, cgroup_id, name)?;
        }
        Ok(())
    }

    /// Pin a plain tracepoint's link.
    fn keep_tracepoint(
        &mut self,
        prog_name: &str,
        tracepoint: &str,
        id: aya::programs::trace_point::TracePointLinkId,
    ) -> anyhow::Result<()> {
        let prog: &mut TracePoint = self.program(prog_name)?;
        let link = FdLink::try_from(prog.take_link(id)?).with_context(|| {
            format!("{prog_name} on {tracepoint}: the kernel gave a perf event, not a bpf link, so it cannot be pinned")
        })?;
        self.pins.keep(link, &format!("{prog_name}-{tracepoint}"))
    }

    /// Everything of this run is attached: detach the earlier runs' programs, and the sock_addr
    /// programs of cgroups that are no longer roots. Returns how many links were retired.
    pub fn retire_previous(&mut self, roots: &[u64]) -> anyhow::Result<usize> {
        let sock = self.pins.retire_sock_links(roots);
        Ok(self.pins.retire_previous()? + sock)
    }

    /// Did this run find the maps of an earlier one?
    pub fn adopted(&self) -> bool {
        self.pins.adopted
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pins.dir
    }

    /// Clean stop: detach every program and remove the pins.
    pub fn release(self) -> anyhow::Result<()> {
        let Kernel { ebpf, pins, .. } = self;
        drop(ebpf);
        pins.release()
    }

    /// The daemon's state as the previous run left it (its last heartbeat, its counters).
    pub fn daemon_state(&self) -> anyhow::Result<DaemonState> {
        let map = self.ebpf.map(maps::DAEMON_STATE).ok_or_else(|| anyhow!("map {} missing", maps::DAEMON_STATE))?;
        let array: Array<_, DaemonState> = Array::try_from(map)?;
        array.get(&0, 0).context("reading DAEMON_STATE")
    }

    /// Tell the kernel side a daemon is there, and leave the counters for a successor.
    pub fn heartbeat(&mut self, stats: &[u64; stat::COUNT as usize]) -> anyhow::Result<()> {
        let state = DaemonState {
            heartbeat_ns: crate::daemon::monotonic_ns(),
            pid: std::process::id(),
            exited: 0,
            stats: *stats,
        };
        let mut array: Array<_, DaemonState> = Array::try_from(self.map(maps::DAEMON_STATE)?)?;
        array.set(0, state, 0).context("writing DAEMON_STATE")
    }

    /// Did a session process signal the daemon (the kernel noted it before the signal left)?
    pub fn signalled_by_session(&mut self, pid: u32) -> bool {
        let Ok(map) = self.map(maps::SIGNALERS) else { return false };
        let Ok(signalers) = HashMap::<_, u32, u64>::try_from(map) else { return false };
        signalers.get(&pid, 0).is_ok()
    }

    /// Tasks an earlier run left held: the daemon that held them is gone.
    pub fn held_tasks(&mut self) -> anyhow::Result<Vec<(u32, HeldInfo)>> {
        let held: HashMap<_, u32, HeldInfo> = HashMap::try_from(self.map(maps::HELD)?)?;
        Ok(held.iter().filter_map(Result::ok).collect())
    }

    pub fn set_config(&mut self, config: &Config) -> anyhow::Result<()> {
        let mut map: Array<_, Config> = Array::try_from(self.map(maps::CONFIG)?)?;
        map.set(0, config, 0).context("writing CONFIG")?;
        Ok(())
    }

    /// What `CONFIG[0]` holds now (a reload keeps the tier chosen at start).
    pub fn config(&mut self) -> anyhow::Result<Config> {
        let map: Array<_, Config> = Array::try_from(self.map(maps::CONFIG)?)?;
        map.get(&0, 0).context("reading CONFIG")
    }

    /// Replace the registered roots and forget every cached cgroup verdict.
    pub fn set_roots(&mut self, ids: &[u64]) -> anyhow::Result<()> {
        {
            let mut roots: HashMap<_, u64, u32> = HashMap::try_from(self.map(maps::ROOTS)?)?;
            let stale: Vec<u64> = roots.keys().filter_map(Result::ok).filter(|k| !ids.contains(k)).collect();
            for key in stale {
                roots.remove(&key).context("removing a stale root")?;
            }
            for (index, id) in ids.iter().enumerate() {
                roots.insert(id, index as u32, 0).context("writing ROOTS")?;
            }
        }
        let mut cache: HashMap<_, u64, u64> = HashMap::try_from(self.map(maps::CGROUP_SESSION)?)?;
        let keys: Vec<u64> = cache.keys().filter_map(Result::ok).collect();
        for key in keys {
            // An entry evicted meanwhile is fine: it is gone either way.
            let _ = cache.remove(&key);
        }
        Ok(())
    }

    /// Write the compiled policy's entries. New entries go in first and stale ones come out
    /// after, so a reload never opens a window where the old protection is gone and the new
    /// one not yet there.
    /// `remap` carries over the inodes the kernel learned (hardlinks of name-matched files)
    /// to the new rule table: a rule that still exists keeps them (with its new index and
    /// mode), a rule that is gone drops them.
    pub fn write_policy(
        &mut self,
        prepared: &PreparedMaps,
        remap: impl Fn(RuleRef) -> Option<RuleRef>,
    ) -> anyhow::Result<()> {
        fn refill<K: aya::Pod + PartialEq, V: aya::Pod>(
            kernel: &mut Kernel,
            name: &str,
            entries: &[(K, V)],
        ) -> anyhow::Result<()> {
            let mut map: HashMap<_, K, V> = HashMap::try_from(kernel.map(name)?)?;
            for (key, value) in entries {
                map.insert(key, value, 0).with_context(|| format!("writing {name} ({} entries)", entries.len()))?;
            }
            let stale: Vec<K> =
                map.keys().filter_map(Result::ok).filter(|k| !entries.iter().any(|(e, _)| e == k)).collect();
            for key in stale {
                let _ = map.remove(&key);
            }
            Ok(())
        }
        fn refill_lpm<K: aya::Pod + PartialEq, V: aya::Pod>(
            kernel: &mut Kernel,
            name: &str,
            entries: &[(u32, K, V)],
        ) -> anyhow::Result<()> {
            let mut map: LpmTrie<_, K, V> = LpmTrie::try_from(kernel.map(name)?)?;
            for (bits, data, value) in entries {
                map.insert(&Key::new(*bits, *data), value, 0)
                    .with_context(|| format!("writing {name} ({} entries)", entries.len()))?;
            }
            let stale: Vec<Key<K>> = map
                .keys()
                .filter_map(Result::ok)
                .filter(|k| !entries.iter().any(|(bits, data, _)| *bits == k.prefix_len() && *data == k.data()))
                .collect();
            for key in stale {
                let _ = map.remove(&key);
            }
            Ok(())
        }
        // Inodes the kernel learned (hardlinks of name-matched files) stay credentials under
        // the rule that still claims them.
        let mut cred_inodes = prepared.cred_inodes.clone();
        {
            let learned: HashMap<_, DevIno, RuleRef> = HashMap::try_from(self.map(maps::CRED_INODES)?)?;
            for (key, value) in learned.iter().filter_map(Result::ok) {
                if !cred_inodes.iter().any(|(k, _)| *k == key)
                    && let Some(rule) = remap(value)
                {
                    cred_inodes.push((key, rule));
                }
            }
        }
        refill(self, maps::CRED_INODES, &cred_inodes)?;
        refill(self, maps::CRED_NAMES, &prepared.cred_names)?;
        refill_lpm(self, maps::CRED_NAME_PREFIX, &prepared.cred_prefixes)?;
        refill_lpm(self, maps::CRED_NAME_SUFFIX, &prepared.cred_suffixes)?;
        refill(self, maps::CRED_EXEMPT_DIRS, &prepared.cred_exempt_dirs)?;
        // Global roots from the policy, plus the session workspaces registered so far.
        let mut roots: Vec<(WriteRootKey, u32)> =
            prepared.write_roots.iter().map(|(dir, _)| (WriteRootKey { session: 0, dir: *dir }, 1)).collect();
        roots.extend(self.workspaces.iter().map(|key| (*key, 1)));
        refill(self, maps::WRITE_ROOTS, &roots)?;
        let mut read_roots: Vec<(WriteRootKey, u32)> =
            prepared.read_roots.iter().map(|(dir, _)| (WriteRootKey { session: 0, dir: *dir }, 1)).collect();
        read_roots.extend(self.workspaces.iter().map(|key| (*key, 1)));
        refill(self, maps::READ_ROOTS, &read_roots)?;
        refill_lpm(self, maps::NET_ALLOW4, &prepared.net4)?;
        refill_lpm(self, maps::NET_ALLOW6, &prepared.net6)?;
        refill(self, maps::EXEC_WATCH_NAMES, &prepared.exec_names)?;
        refill_lpm(self, maps::EXEC_WATCH_PATHS, &prepared.exec_paths)?;
        refill(self, maps::EXEC_WATCH_INODES, &prepared.exec_inodes)?;
        refill(self, maps::CONSUMER_FILES, &prepared.consumer_files)?;
        refill(self, maps::UNIX_PATHS, &prepared.unix_paths)?;
        refill(self, maps::UNIX_INODES, &prepared.unix_inodes)?;
        Ok(())
    }

    /// The held process `tgid` is a credential consumer (written before it is released).
    pub fn grant_consumer(&mut self, tgid: u32, grant: &ConsumerGrant) -> anyhow::Result<()> {
        let mut map: HashMap<_, u32, ConsumerGrant> = HashMap::try_from(self.map(maps::TASK_CONSUMER)?)?;
        map.insert(tgid, grant, 0).context("writing TASK_CONSUMER")
    }

    /// Forget a held task before continuing or killing it (so the kernel does not stop it
    /// again), and lower the fast-path flag once nothing is held.
    pub fn unhold(&mut self, tgid: u32) -> anyhow::Result<()> {
        {
            let mut held: HashMap<_, u32, HeldInfo> = HashMap::try_from(self.map(maps::HELD)?)?;
            match held.remove(&tgid) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                // Already gone (aya reports a missing key on delete as the syscall's ENOENT).
                Err(aya::maps::MapError::SyscallError(err)) if err.io_error.raw_os_error() == Some(libc::ENOENT) => {}
                Err(err) => return Err(err).context("removing a held task"),
            }
        }
        self.lower_held_flag()
    }

    /// Clear HELD_ANY when HELD is empty. Cleared first and re-checked after, so a hold the
    /// kernel adds meanwhile (it lists, then flags) is never left unflagged.
    fn lower_held_flag(&mut self) -> anyhow::Result<()> {
        let mut flag: Array<_, u32> = Array::try_from(self.map(maps::HELD_ANY)?)?;
        flag.set(0, 0, 0).context("clearing HELD_ANY")?;
        let held: HashMap<_, u32, HeldInfo> = HashMap::try_from(self.map(maps::HELD)?)?;
        let any = held.keys().next().is_some();
        if any {
            let mut flag: Array<_, u32> = Array::try_from(self.map(maps::HELD_ANY)?)?;
            flag.set(0, 1, 0).context("setting HELD_ANY")?;
        }
        Ok(())
    }

    /// Sessions' kernel state (credential mark, escalations).
    pub fn session_state(&mut self, session_id: u64) -> anyhow::Result<Option<SessionState>> {
        let map: HashMap<_, u64, SessionState> = HashMap::try_from(self.map(maps::SESSIONS)?)?;
        let kernel = match map.get(&session_id, 0) {
            Ok(state) => Some(state),
            Err(aya::maps::MapError::KeyNotFound) => None,
            Err(err) => return Err(err).context("reading SESSIONS"),
        };
        let flags = self.session_flags(session_id)?;
        Ok(match (kernel, flags) {
            (None, None) => None,
            (kernel, flags) => Some(SessionState {
                credential_touched: kernel.map_or(0, |state| state.credential_touched),
                escalation: flags.unwrap_or(0),
            }),
        })
    }

    fn session_flags(&mut self, session_id: u64) -> anyhow::Result<Option<u32>> {
        let map: HashMap<_, u64, u32> = HashMap::try_from(self.map(maps::SESSION_FLAGS)?)?;
        match map.get(&session_id, 0) {
            Ok(flags) => Ok(Some(flags)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(err) => Err(err).context("reading SESSION_FLAGS"),
        }
    }

    /// Make `dir` a write root of one session, and tell the kernel the workspace is known.
    pub fn register_workspace(&mut self, session_id: u64, dir: DevIno) -> anyhow::Result<()> {
        let key = WriteRootKey { session: session_id, dir };
        for name in [maps::WRITE_ROOTS, maps::READ_ROOTS] {
            let mut map: HashMap<_, WriteRootKey, u32> = HashMap::try_from(self.map(name)?)?;
            map.insert(key, 1, 0).with_context(|| format!("writing {name}"))?;
        }
        if !self.workspaces.contains(&key) {
            self.workspaces.push(key);
        }
        self.set_escalation(session_id, guard_common::SESSION_WORKSPACE_KNOWN)
    }

    /// Add daemon flags to a session. The daemon is the only writer of SESSION_FLAGS (the
    /// kernel's credential mark is in SESSIONS), so this read-modify-write loses nothing.
    pub fn set_escalation(&mut self, session_id: u64, flags: u32) -> anyhow::Result<()> {
        let current = self.session_flags(session_id)?.unwrap_or(0);
        let mut map: HashMap<_, u64, u32> = HashMap::try_from(self.map(maps::SESSION_FLAGS)?)?;
        map.insert(session_id, current | flags, 0).context("writing SESSION_FLAGS")?;
        Ok(())
    }

    /// A session's own record level (`None`: the policy's, from `CONFIG`).
    pub fn set_session_record(
        &mut self,
        session_id: u64,
        level: Option<guard_common::RecordLevel>,
    ) -> anyhow::Result<()> {
        let mut map: HashMap<_, u64, u32> = HashMap::try_from(self.map(maps::SESSION_RECORD)?)?;
        match level {
            Some(level) => map.insert(session_id, level as u32, 0).context("writing SESSION_RECORD")?,
            None => match map.remove(&session_id) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(err) => return Err(err).context("clearing SESSION_RECORD"),
            },
        }
        Ok(())
    }

    /// Sum of each per-CPU counter.
    pub fn stats(&self) -> anyhow::Result<[u64; stat::COUNT as usize]> {
        let map = self.ebpf.map(maps::STATS).ok_or_else(|| anyhow!("map {} missing", maps::STATS))?;
        let stats: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
        let mut out = [0u64; stat::COUNT as usize];
        for (index, slot) in out.iter_mut().enumerate() {
            let values = stats.get(&(index as u32), 0).context("reading STATS")?;
            *slot = values.iter().sum();
        }
        Ok(out)
    }

    pub fn take_ring_buffer(&mut self) -> anyhow::Result<RingBuf<MapData>> {
        let map = self.ebpf.take_map(maps::EVENTS).ok_or_else(|| anyhow!("map {} missing", maps::EVENTS))?;
        Ok(RingBuf::try_from(map)?)
    }

    pub fn map(&mut self, name: &str) -> anyhow::Result<&mut aya::maps::Map> {
        self.ebpf.map_mut(name).ok_or_else(|| anyhow!("map {name} missing from the eBPF object"))
    }
}
