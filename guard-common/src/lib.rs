//! Types shared by guard's kernel programs (`guard-ebpf`) and user space.
//!
//! Everything here is `#[repr(C)]`, `Copy` and free of pointers so it can travel through BPF
//! maps and the ring buffer unchanged. The `user` feature adds `aya::Pod` impls for the daemon.
//! `layout_checks` (below) pins sizes and offsets so the two sides cannot drift apart silently.
#![no_std]

/// Bytes of a path carried in an event (longer paths are truncated, flagged by `PATH_TRUNCATED`).
pub const PATH_LEN: usize = 256;
/// Bytes of a new image's argv carried in an exec event (NUL-separated, as in /proc/PID/cmdline).
pub const ARGS_LEN: usize = 256;
/// Bytes of a final path component used for credential-name matching in the kernel.
pub const NAME_LEN: usize = 64;
/// `TASK_COMM_LEN` in the kernel.
pub const COMM_LEN: usize = 16;
/// How many cgroup levels the kernel walks looking for a registered root.
pub const MAX_CGROUP_DEPTH: u32 = 16;
/// How many parent directories the kernel walks when checking write roots.
pub const MAX_DIR_DEPTH: u32 = 24;
/// `sizeof(((struct sockaddr_un *)0)->sun_path)`: a unix socket path, NUL-padded.
pub const UNIX_PATH_LEN: usize = 108;

/// Map names, used by both sides.
pub mod maps {
    pub const EVENTS: &str = "EVENTS";
    pub const STATS: &str = "STATS";
    pub const CONFIG: &str = "CONFIG";
    pub const ROOTS: &str = "ROOTS";
    pub const CGROUP_SESSION: &str = "CGROUP_SESSION";
    pub const SESSIONS: &str = "SESSIONS";
    pub const OPEN_ARGS: &str = "OPEN_ARGS";
    pub const CRED_INODES: &str = "CRED_INODES";
    pub const CRED_NAMES: &str = "CRED_NAMES";
    pub const CRED_NAME_PREFIX: &str = "CRED_NAME_PREFIX";
    pub const CRED_NAME_SUFFIX: &str = "CRED_NAME_SUFFIX";
    pub const CRED_EXEMPT_DIRS: &str = "CRED_EXEMPT_DIRS";
    pub const WRITE_ROOTS: &str = "WRITE_ROOTS";
    pub const READ_ROOTS: &str = "READ_ROOTS";
    pub const NET_ALLOW4: &str = "NET_ALLOW4";
    pub const NET_ALLOW6: &str = "NET_ALLOW6";
    pub const EXEC_WATCH_INODES: &str = "EXEC_WATCH_INODES";
    pub const EXEC_WATCH_NAMES: &str = "EXEC_WATCH_NAMES";
    pub const EXEC_WATCH_PATHS: &str = "EXEC_WATCH_PATHS";
    pub const PROTECTED: &str = "PROTECTED";
    pub const HELD_ANY: &str = "HELD_ANY";
    pub const HELD: &str = "HELD";
    pub const CONSUMER_FILES: &str = "CONSUMER_FILES";
    pub const TASK_CONSUMER: &str = "TASK_CONSUMER";
    pub const SYSCALL_ARGS: &str = "SYSCALL_ARGS";
    pub const SECCOMP_KILL: &str = "SECCOMP_KILL";
    pub const DAEMON_STATE: &str = "DAEMON_STATE";
    pub const SIGNALERS: &str = "SIGNALERS";
    pub const SESSION_FLAGS: &str = "SESSION_FLAGS";
    pub const SESSION_RECORD: &str = "SESSION_RECORD";
    pub const PROC_COUNTS: &str = "PROC_COUNTS";
    pub const UNIX_PATHS: &str = "UNIX_PATHS";
    pub const UNIX_INODES: &str = "UNIX_INODES";

    /// Every map, pinned by the daemon so enforcement outlives it.
    pub const ALL: &[&str] = &[
        EVENTS,
        STATS,
        CONFIG,
        ROOTS,
        CGROUP_SESSION,
        SESSIONS,
        OPEN_ARGS,
        CRED_INODES,
        CRED_NAMES,
        CRED_NAME_PREFIX,
        CRED_NAME_SUFFIX,
        CRED_EXEMPT_DIRS,
        WRITE_ROOTS,
        READ_ROOTS,
        NET_ALLOW4,
        NET_ALLOW6,
        EXEC_WATCH_INODES,
        EXEC_WATCH_NAMES,
        EXEC_WATCH_PATHS,
        PROTECTED,
        HELD_ANY,
        HELD,
        CONSUMER_FILES,
        TASK_CONSUMER,
        SYSCALL_ARGS,
        SECCOMP_KILL,
        DAEMON_STATE,
        SIGNALERS,
        SESSION_FLAGS,
        SESSION_RECORD,
        PROC_COUNTS,
        UNIX_PATHS,
        UNIX_INODES,
    ];
}

/// Program names (the function names in guard-ebpf), used by the loader.
pub mod programs {
    pub const SCHED_EXEC: &str = "guard_sched_exec";
    pub const SCHED_FORK: &str = "guard_sched_fork";
    pub const SCHED_EXIT: &str = "guard_sched_exit";
    pub const ENTER_OPENAT: &str = "guard_enter_openat";
    pub const ENTER_OPENAT2: &str = "guard_enter_openat2";
    pub const ENTER_OPEN: &str = "guard_enter_open";
    pub const ENTER_CREAT: &str = "guard_enter_creat";
    pub const EXIT_OPEN: &str = "guard_exit_open";
    pub const CONNECT4: &str = "guard_connect4";
    pub const CONNECT6: &str = "guard_connect6";
    pub const SENDMSG4: &str = "guard_sendmsg4";
    pub const SENDMSG6: &str = "guard_sendmsg6";
    pub const LSM_PROBE: &str = "guard_lsm_probe";
    pub const LSM_FILE_OPEN: &str = "guard_lsm_file_open";
    pub const LSM_BPRM_CHECK: &str = "guard_lsm_bprm_check";
    pub const LSM_INODE_UNLINK: &str = "guard_lsm_inode_unlink";
    pub const LSM_INODE_RMDIR: &str = "guard_lsm_inode_rmdir";
    pub const LSM_INODE_RENAME: &str = "guard_lsm_inode_rename";
    pub const LSM_PATH_TRUNCATE: &str = "guard_lsm_path_truncate";
    pub const LSM_TASK_KILL: &str = "guard_lsm_task_kill";
    pub const LSM_PTRACE: &str = "guard_lsm_ptrace";
    pub const LSM_BPF: &str = "guard_lsm_bpf";
    pub const RAW_SYS_ENTER: &str = "guard_raw_sys_enter";
    pub const SIGNAL_GENERATE: &str = "guard_signal_generate";
    pub const ENTER_PTRACE: &str = "guard_enter_ptrace";
    pub const ENTER_WATCHED: &str = "guard_enter_watched";
    pub const EXIT_WATCHED: &str = "guard_exit_watched";
    /// cgroup connect_unix / sendmsg_unix (6.7+). aya 0.14 knows no such attach type, so they
    /// sit in the object under sections aya parses and the loader loads them itself.
    pub const CONNECT_UNIX: &str = "guard_connect_unix";
    pub const SENDMSG_UNIX: &str = "guard_sendmsg_unix";
    pub const ENTER_CONNECT: &str = "guard_enter_connect";
    pub const EXIT_CONNECT: &str = "guard_exit_connect";
    pub const LSM_UNIX_CONNECT: &str = "guard_lsm_unix_connect";
    pub const LSM_UNIX_SEND: &str = "guard_lsm_unix_send";
}

/// Name of the global holding kernel structure offsets (set by the loader from BTF).
pub const OFFSETS_GLOBAL: &str = "GUARD_OFFSETS";

/// Event kinds (`EventHeader::kind`).
pub mod kind {
    pub const EXEC: u32 = 1;
    pub const OPEN: u32 = 2;
    pub const CONNECT: u32 = 3;
    pub const SENDMSG: u32 = 4;
    pub const FORK: u32 = 5;
    pub const EXIT: u32 = 6;
    /// A session process went for a held task or the daemon (`SelfEvent`).
    pub const SELF_PROTECT: u32 = 7;
    /// unlink/rmdir/rename/truncate refused or flagged by the lsm tier (`FsEvent`).
    pub const FS_CHANGE: u32 = 8;
    /// A system call refused by a confinement layer (Landlock: EACCES, seccomp or Landlock
    /// scoping: EPERM), or killed at entry for want of one (`RefusalEvent`).
    pub const REFUSAL: u32 = 9;
    /// A unix socket in `scope.unix` was used (`UnixEvent`).
    pub const UNIX: u32 = 10;
}

/// What a `SelfEvent` is about.
pub mod protect {
    /// A signal from a session process to a held task: the sender is killed.
    pub const SIGNAL_HELD: u32 = 1;
    /// A signal from a session process to the daemon: the sender is killed.
    pub const SIGNAL_DAEMON: u32 = 2;
    /// ptrace of a held task or the daemon: the tracer is killed.
    pub const PTRACE: u32 = 3;
    /// A held task was continued by someone other than the daemon and is stopped again at
    /// its first system call.
    pub const ESCAPED_HOLD: u32 = 4;
    /// bpf() from a session process (lsm tier: refused).
    pub const BPF: u32 = 5;
}

/// Filesystem changes the lsm tier judges (`FsEvent::op`).
pub mod fsop {
    pub const UNLINK: u32 = 1;
    pub const RMDIR: u32 = 2;
    pub const RENAME: u32 = 3;
    pub const TRUNCATE: u32 = 4;
}

/// What the kernel did (`EventHeader::action`).
pub mod action {
    /// Let through, recorded.
    pub const ALLOW: u32 = 0;
    /// Refused with EPERM before it happened (sock_addr, LSM).
    pub const DENY: u32 = 1;
    /// SIGKILL queued: the task dies before user code runs again.
    pub const KILL: u32 = 2;
    /// SIGSTOP queued: stopped before the new image's first instruction, waiting for the daemon.
    pub const HOLD: u32 = 3;
    /// A rule matched in monitor mode: allowed, flagged.
    pub const AUDIT: u32 = 4;
}

/// Which detector made the kernel's decision (`EventHeader::detector`).
/// Which detector decided: the kernel's value in `EventHeader::detector` and, by its name
/// (`as_str`, serde's snake_case), what the audit records, the policy's chains and the
/// trajectory say. The last three are named by user space only (the kernel never sets them).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(rename_all = "snake_case"))]
pub enum Detector {
    None = 0,
    Credential = 1,
    ScopeNetwork = 2,
    ScopeFile = 3,
    Destructive = 4,
    /// Tampering with guard or escaping the session (cgroupfs, bpffs, guard's own files).
    SelfProtection = 5,
    /// The confinement layers: Landlock write roots and scoping, the seccomp deny list.
    Confinement = 6,
    /// A trajectory chain reached a stage or completed.
    Chain = 7,
    /// A session touched a credential and the policy escalated it.
    Escalation = 8,
    /// A secret read from one place was used in another.
    Provenance = 9,
}

impl Detector {
    pub const ALL: [Detector; 10] = [
        Detector::None,
        Detector::Credential,
        Detector::ScopeNetwork,
        Detector::ScopeFile,
        Detector::Destructive,
        Detector::SelfProtection,
        Detector::Confinement,
        Detector::Chain,
        Detector::Escalation,
        Detector::Provenance,
    ];

    /// The kernel's value back to the detector (`None` for an unknown value).
    pub const fn from_code(code: u32) -> Option<Detector> {
        Some(match code {
            0 => Detector::None,
            1 => Detector::Credential,
            2 => Detector::ScopeNetwork,
            3 => Detector::ScopeFile,
            4 => Detector::Destructive,
            5 => Detector::SelfProtection,
            6 => Detector::Confinement,
            7 => Detector::Chain,
            8 => Detector::Escalation,
            9 => Detector::Provenance,
            _ => return None,
        })
    }

    /// The user-facing name (as in audit records and policies).
    pub const fn as_str(self) -> &'static str {
        match self {
            Detector::None => "none",
            Detector::Credential => "credential",
            Detector::ScopeNetwork => "scope_network",
            Detector::ScopeFile => "scope_file",
            Detector::Destructive => "destructive",
            Detector::SelfProtection => "self_protection",
            Detector::Confinement => "confinement",
            Detector::Chain => "chain",
            Detector::Escalation => "escalation",
            Detector::Provenance => "provenance",
        }
    }

    pub fn parse(name: &str) -> Option<Detector> {
        Detector::ALL.into_iter().find(|d| d.as_str() == name)
    }
}

/// The kernel's names for [`Detector`] values (constants for `EventHeader::detector`).
pub mod detector {
    use super::Detector;

    pub const NONE: u32 = Detector::None as u32;
    pub const CREDENTIAL: u32 = Detector::Credential as u32;
    pub const SCOPE_NET: u32 = Detector::ScopeNetwork as u32;
    pub const SCOPE_FILE: u32 = Detector::ScopeFile as u32;
    pub const DESTRUCTIVE: u32 = Detector::Destructive as u32;
    pub const SELF_PROTECT: u32 = Detector::SelfProtection as u32;
    pub const CONFINEMENT: u32 = Detector::Confinement as u32;
}

/// Event flag bits (`EventHeader::flags`).
pub mod flags {
    /// The path did not fit in `PATH_LEN` bytes.
    pub const PATH_TRUNCATED: u32 = 1 << 0;
    /// A user-memory read failed; the path field is empty.
    pub const PATH_UNREADABLE: u32 = 1 << 1;
    /// Credential identity came from the inode map (else from a name pattern).
    pub const MATCH_INODE: u32 = 1 << 2;
    /// IPv6 address that is IPv4-mapped (`::ffff:a.b.c.d`), matched as IPv4.
    pub const V4_MAPPED: u32 = 1 << 3;
    /// argv did not fit in `ARGS_LEN` bytes.
    pub const ARGS_TRUNCATED: u32 = 1 << 4;
    /// A credential read by a program the rule names as its consumer (`OpenEvent::consumer`).
    pub const CONSUMER_READ: u32 = 1 << 5;
    /// exec: held only so the daemon can judge whether the program is a credential consumer.
    pub const CONSUMER_HOLD: u32 = 1 << 6;
    /// exec: a session's first, held only until the daemon has registered the session's
    /// workspace (`$CWD` write root), so its first writes are judged against it.
    pub const WORKSPACE_HOLD: u32 = 1 << 7;
}

/// Rule modes as the kernel sees them.
pub mod mode {
    pub const MONITOR: u8 = 0;
    pub const ENFORCE: u8 = 1;
}

/// Indexes into the per-CPU `STATS` array.
pub mod stat {
    pub const EVENTS_SENT: u32 = 0;
    pub const EVENTS_DROPPED: u32 = 1;
    pub const EXEC: u32 = 2;
    pub const OPEN: u32 = 3;
    pub const CONNECT: u32 = 4;
    pub const SENDMSG: u32 = 5;
    pub const FORK: u32 = 6;
    pub const EXIT: u32 = 7;
    pub const DENIED: u32 = 8;
    pub const KILLED: u32 = 9;
    pub const HELD: u32 = 10;
    pub const SELF_PROTECT: u32 = 11;
    /// System calls refused by a confinement layer, or killed at entry for want of one.
    pub const REFUSED: u32 = 12;
    /// Execs that would have been held, killed because no daemon was there to ask.
    pub const KILLED_NO_DAEMON: u32 = 13;
    /// Opens judged and counted but not sent (the session's record level leaves them out).
    pub const OPEN_UNRECORDED: u32 = 14;
    pub const COUNT: u32 = 16;
}

/// What the kernel sends to the daemon for a session (`Config::record_level`, overridden per
/// session in `SESSION_RECORD`). Every level sends every non-allow verdict, exec, connect,
/// sendmsg, fork and exit; they differ only in the allowed opens.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(rename_all = "lowercase"))]
pub enum RecordLevel {
    /// Allowed opens are only counted (the process's `exit` carries the counts).
    #[default]
    Decisions = 0,
    /// Allowed opens for write (write access, O_CREAT, O_TRUNC) are sent too.
    Writes = 1,
    /// Every open is sent (forensics).
    All = 2,
}

impl RecordLevel {
    pub const ALL: [RecordLevel; 3] = [RecordLevel::Decisions, RecordLevel::Writes, RecordLevel::All];

    /// The name in policies, on the command line and in records.
    pub const fn as_str(self) -> &'static str {
        match self {
            RecordLevel::Decisions => "decisions",
            RecordLevel::Writes => "writes",
            RecordLevel::All => "all",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|level| level.as_str() == text)
    }

    /// Should an allowed open with this access be sent at this level?
    #[inline(always)]
    pub const fn sends_allowed_open(level: u32, writes: bool) -> bool {
        level >= RecordLevel::All as u32 || (writes && level >= RecordLevel::Writes as u32)
    }
}

/// What a process did, counted in the kernel (`PROC_COUNTS`, by tgid) and carried by its exit
/// event: the allowed opens a record level leaves out are still counted here.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcCounts {
    pub opens: u64,
    /// Opens for write (write access, O_CREAT, O_TRUNC).
    pub writes: u64,
    /// connect and sendmsg calls (sock_addr programs).
    pub connects: u64,
    /// Operations refused or answered with a kill.
    pub denials: u64,
}

/// Global switches the daemon writes to `CONFIG[0]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// 0 = every rule is treated as monitor (kill switch); 1 = rule modes apply.
    pub enforce: u32,
    /// tgid of the daemon, never governed (self-protection hooks use it too).
    pub daemon_tgid: u32,
    /// Loopback is in network scope unless the policy says otherwise.
    pub allow_loopback: u32,
    /// Nonzero when a network allow-list is in force (else every destination is allowed).
    pub net_scope: u32,
    /// Nonzero when write roots are in force.
    pub write_scope: u32,
    pub net_mode: u8,
    pub write_mode: u8,
    pub _pad: [u8; 2],
    pub net_rule: u32,
    pub write_rule: u32,
    /// Nonzero when the lsm tier is attached: LSM hooks refuse (EPERM) what the host tier
    /// would kill, and the host-tier programs only report.
    pub lsm: u32,
    /// Nonzero when a read allow-list is in force (`WRITE_SCOPE_SESSION_CWD` bit as for writes).
    pub read_scope: u32,
    pub read_rule: u32,
    /// `RecordLevel` of sessions without their own entry in `SESSION_RECORD`.
    pub record_level: u32,
    pub _pad2: u32,
}

/// One kernel struct member the programs read, as the table below lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelField {
    /// The accessor on `KernelOffsets` (`task_tgid`).
    pub slot: &'static str,
    pub strukt: &'static str,
    pub member: &'static str,
    /// Bytes the programs read there: the size of the table's Rust type. The loader refuses a
    /// kernel whose BTF gives the member another size.
    pub size: usize,
    /// A member older kernels lack (`[optional]` in the table): there the loader sets
    /// [`OFFSET_ABSENT`] and the programs that need it are not loaded.
    pub required: bool,
}

/// The offset of an `[optional]` table field the kernel's BTF does not have.
pub const OFFSET_ABSENT: u32 = u32::MAX;

/// The offset of one table field, typed by what is read there: the accessor that reads it
/// (`kread::read` in guard-ebpf) takes its width from `T`, so no call site can choose another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field<T> {
    offset: u32,
    _value: core::marker::PhantomData<T>,
}

impl<T> Field<T> {
    #[inline(always)]
    const fn at(offset: u32) -> Self {
        Field { offset, _value: core::marker::PhantomData }
    }

    #[inline(always)]
    pub const fn offset(self) -> u32 {
        self.offset
    }

    /// An `[optional]` field this kernel has.
    #[inline(always)]
    pub const fn present(self) -> bool {
        self.offset != OFFSET_ABSENT
    }
}

/// A kernel struct embedded by value in another (`file.f_path` is a `struct path`): never read
/// as a whole, only through its own table fields (`Field::then`). `SIZE` is its BTF size.
pub struct Embedded<const SIZE: usize>([u8; SIZE]);

impl<const SIZE: usize> Field<Embedded<SIZE>> {
    /// `outer.embedded.member`: the member's type, at the two offsets added.
    #[inline(always)]
    pub const fn then<U>(self, member: Field<U>) -> Field<U> {
        Field::at(self.offset + member.offset)
    }
}

/// A kernel pointer, read as an address.
pub type KernelPtr = u64;

/// What a table field may hold to be read from kernel memory: integers and pointers (not
/// `Embedded`).
pub trait KernelValue: Copy + sealed::Sealed {}
impl KernelValue for u16 {}
impl KernelValue for u32 {}
impl KernelValue for u64 {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for u16 {}
    impl Sealed for u32 {}
    impl Sealed for u64 {}
}

/// The table: `slot: struct.member: type`. It makes `KernelOffsets` (one u32 offset per
/// entry, an accessor per entry typed by the entry's type) and `KERNEL_FIELDS` (what the loader
/// looks up in BTF and checks the size of).
macro_rules! kernel_fields {
    (@required) => { true };
    (@required optional) => { false };
    ($($(#[doc = $doc:literal])* $slot:ident: $strukt:ident . $member:ident: $ty:ty $([$optional:ident])?,)*) => {
        /// Kernel structure offsets read from BTF by the loader (aya-ebpf has no CO-RE), one
        /// per `KERNEL_FIELDS` entry. Private fields: the programs get them only as `Field`s.
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct KernelOffsets {
            $($slot: u32,)*
            /// Nonzero once the loader filled the struct; programs do nothing until then.
            valid: u32,
        }

        impl KernelOffsets {
            /// What the programs see until the loader fills the global in: nothing valid.
            pub const UNSET: Self = KernelOffsets { $($slot: 0,)* valid: 0 };

            /// Every entry's offset from `offset_of`, in table order: the loader's BTF lookup.
            pub fn resolve<E>(mut offset_of: impl FnMut(&KernelField) -> Result<u32, E>) -> Result<Self, E> {
                Ok(KernelOffsets {
                    $($slot: offset_of(&KernelField {
                        slot: stringify!($slot),
                        strukt: stringify!($strukt),
                        member: stringify!($member),
                        size: core::mem::size_of::<$ty>(),
                        required: kernel_fields!(@required $($optional)?),
                    })?,)*
                    valid: 1,
                })
            }

            #[inline(always)]
            pub const fn is_valid(&self) -> bool {
                self.valid != 0
            }

            $(
                $(#[doc = $doc])*
                #[inline(always)]
                pub const fn $slot(&self) -> Field<$ty> {
                    Field::at(self.$slot)
                }
            )*
        }

        /// Every kernel struct member the programs read, with the size they read.
        pub const KERNEL_FIELDS: &[KernelField] = &[
            $(KernelField {
                slot: stringify!($slot),
                strukt: stringify!($strukt),
                member: stringify!($member),
                size: core::mem::size_of::<$ty>(),
                required: kernel_fields!(@required $($optional)?),
            },)*
        ];
    };
}

kernel_fields! {
    /// `pid_t` (int), compared with the halves of `bpf_get_current_pid_tgid`.
    task_pid: task_struct.pid: u32,
    task_tgid: task_struct.tgid: u32,
    task_real_parent: task_struct.real_parent: KernelPtr,
    task_group_leader: task_struct.group_leader: KernelPtr,
    /// ns since boot.
    task_start_time: task_struct.start_time: u64,
    task_files: task_struct.files: KernelPtr,
    task_mm: task_struct.mm: KernelPtr,
    files_fdt: files_struct.fdt: KernelPtr,
    fdt_max_fds: fdtable.max_fds: u32,
    /// `struct file **`: the fd array.
    fdt_fd: fdtable.fd: KernelPtr,
    file_f_inode: file.f_inode: KernelPtr,
    /// `struct path` (two pointers).
    file_f_path: file.f_path: Embedded<16>,
    file_f_flags: file.f_flags: u32,
    path_dentry: path.dentry: KernelPtr,
    dentry_d_parent: dentry.d_parent: KernelPtr,
    /// `struct qstr` (hash and length, then the name pointer).
    dentry_d_name: dentry.d_name: Embedded<16>,
    dentry_d_inode: dentry.d_inode: KernelPtr,
    qstr_name: qstr.name: KernelPtr,
    /// `unsigned long`.
    inode_i_ino: inode.i_ino: u64,
    inode_i_sb: inode.i_sb: KernelPtr,
    /// `dev_t`: MKDEV(major, minor) = major << 20 | minor.
    sb_s_dev: super_block.s_dev: u32,
    /// `unsigned long`.
    sb_s_magic: super_block.s_magic: u64,
    /// `unsigned long`: the new image's argv in user memory.
    mm_arg_start: mm_struct.arg_start: u64,
    mm_arg_end: mm_struct.arg_end: u64,
    bprm_file: linux_binprm.file: KernelPtr,
    /// `const char *`, a kernel copy of the exec'd path.
    bprm_filename: linux_binprm.filename: KernelPtr,
    /// The sock_addr programs' real context: the kernel's copy of the caller's address.
    sock_addr_uaddr: bpf_sock_addr_kern.uaddr: KernelPtr,
    /// Its length (6.7+, with the unix hooks: a unix path need not end in NUL).
    sock_addr_uaddrlen: bpf_sock_addr_kern.uaddrlen: u32 [optional],
    /// `struct socket *` for a socket file.
    file_private_data: file.private_data: KernelPtr,
    socket_sk: socket.sk: KernelPtr,
    /// `sock_common` opens `struct sock` (the kernel casts between them).
    sk_family: sock_common.skc_family: u16,
    /// `struct unix_sock` opens with its `struct sock`: the peer of a connected socket.
    unix_peer: unix_sock.peer: KernelPtr,
    /// The socket file a bound unix socket was created at (empty for abstract ones).
    unix_path: unix_sock.path: Embedded<16>,
}

/// The identity of a file: the kernel's `s_dev` (MKDEV(major, minor) = major << 20 | minor)
/// and inode number. User space converts `st_dev` to this encoding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DevIno {
    pub dev: u64,
    pub ino: u64,
}

/// Key of `WRITE_ROOTS`: a directory under which writes are in scope, for one session
/// (`session` = its cgroup id) or for all (`session` = 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WriteRootKey {
    pub session: u64,
    pub dir: DevIno,
}

/// What a compiled rule says when its key matches.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleRef {
    /// Index of the rule in the compiled policy (user space maps it back to the rule id).
    pub rule: u32,
    /// `mode::MONITOR` or `mode::ENFORCE`.
    pub mode: u8,
    /// 1 = the match exempts the file (e.g. `*.pub`); the rule is then ignored.
    pub exempt: u8,
    /// 0: the rule names no consumers; else 1 + its bit in `ConsumerGrant::mask`.
    pub consumer_slot: u8,
    pub _pad: u8,
}

/// Most credential rules that can name consumers (bits of `ConsumerGrant::mask`).
pub const MAX_CONSUMER_RULES: usize = 64;

/// `CONSUMER_FILES` value bits: what a file is to the consumer rules.
pub mod consumer_file {
    /// A consumer binary, or the interpreter of a consumer script: its exec is held so the
    /// daemon can judge (environment, argv) whether the new image is the consumer.
    pub const EXEC: u32 = 1 << 0;
    /// A consumer script (npm-cli.js, the aws CLI's entry point).
    pub const SCRIPT: u32 = 1 << 1;
}

/// `ConsumerGrant::state`.
pub mod consumer_state {
    /// The process is the consumer: reads of the rules in `mask` are its own.
    pub const GRANTED: u32 = 1;
    /// An interpreter the daemon judged to be starting a consumer script: the first file it
    /// opens named `script_name` decides (the very `script` inode: granted; anything else:
    /// the grant is gone). Until then it is no consumer.
    pub const AWAIT_SCRIPT: u32 = 2;
}

/// `TASK_CONSUMER` value (keyed by tgid): written by the daemon while the exec is held,
/// removed by the kernel at the next exec and at exit, copied to forked children.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsumerGrant {
    /// Bit `consumer_slot - 1` of each rule whose files this process may read.
    pub mask: u64,
    /// Bits already reported (one `audit` record per process and rule).
    pub reported: u64,
    pub script: DevIno,
    /// `consumer_state::*`.
    pub state: u32,
    /// Index of the consumer in the daemon's table (named in the record).
    pub consumer: u32,
    pub script_name: [u8; NAME_LEN],
}

/// Value of the exec watch maps: what to do when a watched binary is exec'd.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecWatch {
    /// `watch::*`.
    pub kind: u8,
    /// `mode::*` of the rule (used by `watch::DENY`).
    pub mode: u8,
    pub _pad: [u8; 2],
    /// Compiled rule index (`u32::MAX` when the hold is only for evaluation).
    pub rule: u32,
}

pub mod watch {
    /// Hold every exec of this binary for the daemon to judge its argv.
    pub const HOLD: u8 = 1;
    /// Hold only when argv carries an inline-script option (`-c`, `-e`, `-lc`, ...).
    pub const HOLD_IF_SCRIPT: u8 = 2;
    /// Never let this file run (enforce) or flag it (monitor): decided by the rule's mode.
    pub const DENY: u8 = 3;
}

/// Kernel-side state of one session (a cgroup directly below a root, or the root itself).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionState {
    /// Set once a session process touched a credential (enforced or monitored).
    pub credential_touched: u32,
    /// Escalation flags written by the daemon (`escalation::*`).
    pub escalation: u32,
}

/// Nonzero in `Config::write_scope` when the policy lists `$CWD`: until the daemon registered
/// a session's workspace, the kernel records its out-of-scope writes instead of killing.
pub const WRITE_SCOPE_SESSION_CWD: u32 = 2;

/// `SessionState::escalation` bit the daemon sets once the session's workspace is registered.
pub const SESSION_WORKSPACE_KNOWN: u32 = 1 << 31;

pub mod escalation {
    /// Out-of-scope network use is denied whatever the rule's mode.
    pub const DENY_NET: u32 = 1 << 0;
    /// Every watched exec is held for approval whatever the rule's mode.
    pub const HOLD_EXEC: u32 = 1 << 1;
    /// Every exec in the session is held.
    pub const FREEZE: u32 = 1 << 2;

    /// A session's escalation in effect: the flags the daemon wrote, and, once the session
    /// touched a credential, out-of-scope network denied and watched execs held. The one
    /// derivation, for the kernel's decisions and the daemon's alike.
    #[inline(always)]
    pub const fn effective(flags: u32, credential_touched: bool) -> u32 {
        if credential_touched { flags | DENY_NET | HOLD_EXEC } else { flags }
    }
}

/// Key data of `EXEC_WATCH_PATHS`: "/" + a program name, reversed, NUL padded.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathSuffixKey {
    pub bytes: [u8; PATH_LEN],
}

impl PathSuffixKey {
    /// The key and its significant bits for a program name.
    pub fn for_program(name: &[u8]) -> (u32, Self) {
        let mut bytes = [0u8; PATH_LEN];
        let mut len = 0;
        for (slot, &b) in bytes.iter_mut().zip(name.iter().rev()) {
            *slot = b;
            len += 1;
        }
        if len < PATH_LEN {
            bytes[len] = b'/';
            len += 1;
        }
        ((len * 8) as u32, PathSuffixKey { bytes })
    }
}

/// LPM key for names (prefix and reversed-suffix tries) and for addresses.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameKey {
    pub name: [u8; NAME_LEN],
}

/// Allowed destination ports for one network allow-list entry; `any != 0` allows all.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortSet {
    pub any: u32,
    pub count: u32,
    pub ports: [u16; PORTS_PER_ENTRY],
    pub rule: u32,
    pub _pad: u32,
}
pub const PORTS_PER_ENTRY: usize = 16;

/// Arguments saved at syscall entry for the matching exit (keyed by pid_tgid).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenArgs {
    pub filename_ptr: u64,
    pub flags: u64,
    pub dfd: i64,
}

/// Common head of every event.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventHeader {
    pub kind: u32,
    /// `action::*`.
    pub action: u32,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC).
    pub ktime_ns: u64,
    /// The task's own cgroup id.
    pub cgroup_id: u64,
    /// The session cgroup id (the ancestor directly below a registered root, or the root).
    pub session_id: u64,
    pub pid: u32,
    pub tgid: u32,
    /// tgid of the real parent.
    pub ppid: u32,
    pub detector: u32,
    /// Compiled rule index (`u32::MAX` when none).
    pub rule: u32,
    pub flags: u32,
    pub comm: [u8; COMM_LEN],
    /// The process's start time (ns since boot): with `tgid`, a key pid reuse cannot confuse.
    pub start_ns: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecEvent {
    pub header: EventHeader,
    /// Identity of the executed file (bprm->file).
    pub file: DevIno,
    /// pid before exec (differs when a non-leader thread exec'd).
    pub old_pid: u32,
    /// Bytes of `args` filled.
    pub args_len: u32,
    /// `bprm->filename`, a kernel copy.
    pub filename: [u8; PATH_LEN],
    /// The new image's argv, read before its first instruction (so it cannot have changed).
    pub args: [u8; ARGS_LEN],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenEvent {
    pub header: EventHeader,
    /// Identity of the file actually opened (from the new fd), zero when the open failed.
    pub file: DevIno,
    pub flags: u64,
    pub dfd: i64,
    /// Syscall result: fd or -errno.
    pub ret: i64,
    /// The path as the caller gave it (user memory, informative only).
    pub path: [u8; PATH_LEN],
    /// Final component of the opened file's dentry (kernel object).
    pub name: [u8; NAME_LEN],
    /// `ConsumerGrant::consumer` when `flags::CONSUMER_READ` is set.
    pub consumer: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetEvent {
    pub header: EventHeader,
    /// AF_INET or AF_INET6.
    pub family: u16,
    /// Host byte order.
    pub port: u16,
    /// SOCK_STREAM, SOCK_DGRAM, ...
    pub sock_type: u32,
    pub protocol: u32,
    pub _pad: u32,
    /// IPv4 in the first 4 bytes, or the IPv6 address; network byte order.
    pub addr: [u8; 16],
}

/// A held exec, as the kernel records it (`HELD`, keyed by tgid).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeldInfo {
    pub session_id: u64,
    pub since_ns: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SelfEvent {
    pub header: EventHeader,
    /// The task that was targeted (tgid).
    pub target_tgid: u32,
    /// `protect::*`.
    pub what: u32,
    /// The signal number, or the ptrace request.
    pub detail: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsEvent {
    pub header: EventHeader,
    /// The file or directory acted on.
    pub file: DevIno,
    /// `fsop::*`.
    pub op: u32,
    pub _pad: u32,
    /// Its name (final component).
    pub name: [u8; NAME_LEN],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForkEvent {
    pub header: EventHeader,
    pub child_pid: u32,
    pub child_tgid: u32,
    /// Child's start time (ns since boot): with the pid, a key that survives pid reuse.
    pub child_start_ns: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitEvent {
    pub header: EventHeader,
    /// `task->exit_code` is not read here; the status arrives through procfs when needed.
    pub start_ns: u64,
    /// What the process did over its life (zero when the counters were evicted).
    pub counts: ProcCounts,
}

/// A system call a confinement layer refused, or one killed at entry (`kind::REFUSAL`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefusalEvent {
    pub header: EventHeader,
    /// The syscall number (x86_64).
    pub nr: u32,
    /// -errno returned (0 when killed at entry).
    pub ret: i32,
    /// The first two arguments as given (a pid, an fd, a pointer).
    pub args: [u64; 2],
    /// The path argument (user memory, for the record only; empty when there is none).
    pub path: [u8; PATH_LEN],
}

/// How long the daemon's heartbeat stays fresh. Past it the kernel side assumes no daemon:
/// execs that would wait for its judgement are killed instead (fail closed).
pub const HEARTBEAT_STALE_NS: u64 = 5_000_000_000;

/// `DAEMON_STATE[0]`: the daemon's heartbeat (written every second) and, for the next daemon
/// to compare, the counters as they were at that beat.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DaemonState {
    /// `bpf_ktime_get_ns()` clock (CLOCK_MONOTONIC) of the last beat; 0: never.
    pub heartbeat_ns: u64,
    pub pid: u32,
    /// Set by the kernel when the daemon's process exits (killed, crashed): no need to wait
    /// for the heartbeat to go stale.
    pub exited: u32,
    pub stats: [u64; stat::COUNT as usize],
}

/// Where a `UnixEvent` was decided.
pub mod unix_hook {
    /// cgroup connect_unix: the path of the kernel's copy of the address.
    pub const CONNECT: u32 = 1;
    /// cgroup sendmsg_unix (a datagram to a path).
    pub const SENDMSG: u32 = 2;
    /// The exit of a connect that succeeded: the peer socket's inode (kernel objects).
    pub const CONNECTED: u32 = 3;
    /// lsm/unix_stream_connect: the peer socket's inode, before the connection.
    pub const LSM_CONNECT: u32 = 4;
    /// lsm/unix_may_send: the peer socket's inode, before the datagram.
    pub const LSM_SEND: u32 = 5;
}

/// A use of a unix socket `scope.unix` names.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnixEvent {
    pub header: EventHeader,
    /// The socket file's identity (zero for the path hooks: nothing is resolved yet there).
    pub peer: DevIno,
    /// `unix_hook::*`.
    pub hook: u32,
    /// Bytes of `path` that hold the address (zero for the inode hooks).
    pub path_len: u32,
    /// The address as the kernel copied it (path hooks only), NUL-padded.
    pub path: [u8; UNIX_PATH_LEN],
    pub _pad: [u8; 4],
}

/// Arguments saved at a watched syscall's entry for its exit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallArgs {
    pub args: [u64; 2],
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: every type is #[repr(C)], Copy, and made only of integers and byte arrays, so any
    // bit pattern is valid and there is no padding the compiler could leave uninitialised that
    // we read (explicit `_pad` fields fill the gaps).
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for KernelOffsets {}
    unsafe impl aya::Pod for DevIno {}
    unsafe impl aya::Pod for WriteRootKey {}
    unsafe impl aya::Pod for RuleRef {}
    unsafe impl aya::Pod for ExecWatch {}
    unsafe impl aya::Pod for SessionState {}
    unsafe impl aya::Pod for NameKey {}
    unsafe impl aya::Pod for PathSuffixKey {}
    unsafe impl aya::Pod for PortSet {}
    unsafe impl aya::Pod for OpenArgs {}
    unsafe impl aya::Pod for EventHeader {}
    unsafe impl aya::Pod for ExecEvent {}
    unsafe impl aya::Pod for OpenEvent {}
    unsafe impl aya::Pod for NetEvent {}
    unsafe impl aya::Pod for ForkEvent {}
    unsafe impl aya::Pod for FsEvent {}
    unsafe impl aya::Pod for HeldInfo {}
    unsafe impl aya::Pod for SelfEvent {}
    unsafe impl aya::Pod for ExitEvent {}
    unsafe impl aya::Pod for ProcCounts {}
    unsafe impl aya::Pod for ConsumerGrant {}
    unsafe impl aya::Pod for RefusalEvent {}
    unsafe impl aya::Pod for SyscallArgs {}
    unsafe impl aya::Pod for DaemonState {}
    unsafe impl aya::Pod for UnixEvent {}
}

/// Layout pinned at compile time on both sides (the eBPF build and the host build compile this
/// crate separately; a drift in either fails that build).
#[allow(dead_code)]
mod layout_checks {
    use super::*;
    use core::mem::{offset_of, size_of};

    const _: () = assert!(size_of::<EventHeader>() == 80);
    const _: () = assert!(offset_of!(EventHeader, session_id) == 24);
    const _: () = assert!(offset_of!(EventHeader, comm) == 56);
    const _: () = assert!(size_of::<ExecEvent>() == 80 + 16 + 8 + PATH_LEN + ARGS_LEN);
    const _: () = assert!(size_of::<OpenEvent>() == 80 + 16 + 24 + PATH_LEN + NAME_LEN + 8);
    const _: () = assert!(size_of::<ConsumerGrant>() == 16 + 16 + 8 + NAME_LEN);
    const _: () = assert!(size_of::<RefusalEvent>() == 80 + 8 + 16 + PATH_LEN);
    const _: () = assert!(size_of::<NetEvent>() == 80 + 16 + 16);
    const _: () = assert!(size_of::<ForkEvent>() == 80 + 16);
    const _: () = assert!(size_of::<UnixEvent>() == 80 + 16 + 8 + UNIX_PATH_LEN + 4);
    const _: () = assert!(size_of::<FsEvent>() == 80 + 16 + 8 + NAME_LEN);
    const _: () = assert!(size_of::<SelfEvent>() == 80 + 16);
    const _: () = assert!(size_of::<HeldInfo>() == 16);
    const _: () = assert!(size_of::<ExitEvent>() == 80 + 8 + 32);
    const _: () = assert!(size_of::<ProcCounts>() == 32);
    const _: () = assert!(size_of::<Config>() == 52);
    const _: () = assert!(size_of::<KernelOffsets>() == (KERNEL_FIELDS.len() + 1) * 4);
    const _: () = assert!(size_of::<DevIno>() == 16);
    const _: () = assert!(size_of::<RuleRef>() == 8);
    const _: () = assert!(size_of::<ExecWatch>() == 8);
    const _: () = assert!(size_of::<SessionState>() == 8);
    const _: () = assert!(size_of::<PortSet>() == 8 + 2 * PORTS_PER_ENTRY + 8);
    const _: () = assert!(size_of::<OpenArgs>() == 24);
}

/// Extract the NUL-terminated prefix of a fixed byte buffer.
pub fn c_bytes(buf: &[u8]) -> &[u8] {
    match buf.iter().position(|&b| b == 0) {
        Some(end) => &buf[..end],
        None => buf,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detector_values_and_names_round_trip() {
        for (i, d) in Detector::ALL.iter().enumerate() {
            assert_eq!(*d as u32, i as u32);
            assert_eq!(Detector::from_code(*d as u32), Some(*d));
            assert_eq!(Detector::parse(d.as_str()), Some(*d));
        }
        assert_eq!(Detector::from_code(Detector::ALL.len() as u32), None);
        assert_eq!(Detector::parse("scope_net"), None, "a typo is no detector");
    }

    #[test]
    fn a_touched_session_denies_network_and_holds_execs() {
        assert_eq!(escalation::effective(0, false), 0);
        assert_eq!(escalation::effective(escalation::FREEZE, false), escalation::FREEZE);
        let touched = escalation::effective(0, true);
        assert_eq!(touched, escalation::DENY_NET | escalation::HOLD_EXEC);
        assert_eq!(escalation::effective(escalation::FREEZE, true), touched | escalation::FREEZE);
    }

    #[test]
    fn table_slots_are_unique_and_resolved_in_order() {
        for (i, a) in KERNEL_FIELDS.iter().enumerate() {
            assert!(KERNEL_FIELDS[i + 1..].iter().all(|b| b.slot != a.slot), "{} twice", a.slot);
        }
        let mut next = 0;
        let off = KernelOffsets::resolve(|field| {
            assert_eq!(*field, KERNEL_FIELDS[next as usize]);
            next += 1;
            Ok::<u32, ()>(next * 8)
        })
        .unwrap();
        assert!(off.is_valid() && !KernelOffsets::UNSET.is_valid());
        assert_eq!(off.task_pid().offset(), 8);
        assert_eq!(next as usize, KERNEL_FIELDS.len());
    }

    #[test]
    fn widths_come_from_the_table() {
        let width = |slot: &str| KERNEL_FIELDS.iter().find(|f| f.slot == slot).map(|f| f.size);
        assert_eq!(width("sb_s_dev"), Some(4));
        assert_eq!(width("inode_i_ino"), Some(8));
        assert_eq!(width("file_f_path"), Some(16));
        let off = KernelOffsets::resolve(|f| Ok::<u32, ()>(if f.slot == "file_f_path" { 64 } else { 8 })).unwrap();
        assert_eq!(off.file_f_path().then(off.path_dentry()).offset(), 72);
    }
}
