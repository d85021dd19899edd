//! Applying a session's confinement in `guard launch`: a Landlock domain and a seccomp filter,
//! both inherited across fork and exec and impossible to remove from inside the session.
//!
//! Two steps, because the launcher must not generate session events before it has recorded
//! what it applied: [`prepare`] opens the write roots and compiles the filter while the
//! launcher is still outside the session cgroup; [`Prepared::apply`] only makes the
//! restricting system calls (prctl, landlock_restrict_self, seccomp), after the join.

use std::collections::BTreeMap;

use anyhow::Context as _;
use guard_engine::confinement::{AppliedConfinement, AppliedLandlock, Confinement};
use landlock::{
    ABI, Access as _, AccessFs, BitFlags, LandlockStatus, PathBeneath, PathFd, RestrictionStatus, Ruleset,
    RulesetAttr as _, RulesetCreated, RulesetCreatedAttr as _, RulesetStatus, Scope, make_bitflags,
};
use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

/// What files-enforced sessions may do only below the write roots: write, create (every kind
/// of node), remove, move across directories (ABI 2) and truncate (ABI 3). Reads and exec
/// are left unhandled: credentials are the eBPF side's job, and a deny-list cannot be written
/// in Landlock's allow-list terms.
const WRITE_RIGHTS: BitFlags<AccessFs> = make_bitflags!(AccessFs::{
    WriteFile | MakeChar | MakeDir | MakeReg | MakeSock | MakeFifo | MakeBlock | MakeSym
    | RemoveFile | RemoveDir | Refer | Truncate
});

/// When files are not enforced a domain is still created, for two things only a domain gives:
/// signal scoping (ABI 6) and, at every ABI, the refusal to ptrace processes outside it. A
/// domain must handle at least one right, so it handles creating device nodes, granted nowhere:
/// nothing an agent needs, and nothing a root agent should do.
/// Such a domain also handles moving files across directories (REFER), granted beneath `/`:
/// a domain that does not handle it refuses every cross-directory rename or link with EXDEV.
const DEVICE_NODE_RIGHTS: BitFlags<AccessFs> = make_bitflags!(AccessFs::{MakeChar | MakeBlock | Refer});

/// x86_64's x32 ABI numbers its system calls with this bit set; the filter refuses those
/// spellings too (kernels that disable x32 answer ENOSYS anyway).
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: i64 = 0x4000_0000;

/// Everything ready to restrict the launcher; nothing applied yet.
pub struct Prepared {
    source: String,
    landlock: Option<PreparedLandlock>,
    seccomp: Option<(BpfProgram, Vec<String>)>,
    /// Things a person should know (roots skipped, unknown syscall names).
    pub notes: Vec<String>,
}

struct PreparedLandlock {
    ruleset: RulesetCreated,
    requested: BitFlags<AccessFs>,
    write_roots_enforced: bool,
    write_roots: Vec<String>,
}

/// Build the Landlock ruleset (opening each existing write root) and compile the seccomp
/// filter for `plan`. `source` says where the plan came from (for the record).
pub fn prepare(plan: &Confinement, source: &str) -> anyhow::Result<Prepared> {
    let mut notes = Vec::new();
    let landlock = if plan.landlock { Some(prepare_landlock(plan, &mut notes)?) } else { None };
    let seccomp =
        if plan.seccomp_deny.is_empty() { None } else { Some(compile_seccomp(&plan.seccomp_deny, &mut notes)?) };
    Ok(Prepared { source: source.to_string(), landlock, seccomp, notes })
}

fn prepare_landlock(plan: &Confinement, notes: &mut Vec<String>) -> anyhow::Result<PreparedLandlock> {
    let requested = if plan.write_roots.is_some() { WRITE_RIGHTS } else { DEVICE_NODE_RIGHTS };
    // Best effort (the crate's default): rights and scopes the kernel's ABI lacks are dropped,
    // and the status says so.
    let mut ruleset = Ruleset::default()
        .handle_access(requested)
        .and_then(|ruleset| ruleset.scope(Scope::Signal | Scope::AbstractUnixSocket))
        .and_then(|ruleset| ruleset.create())
        .context("creating the Landlock ruleset")?;
    if plan.write_roots.is_none() {
        let fd = PathFd::new("/").context("opening / for the Landlock ruleset")?;
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, make_bitflags!(AccessFs::{Refer})))
            .context("granting cross-directory moves below / in the Landlock ruleset")?;
    }
    let mut granted = Vec::new();
    for root in plan.write_roots.iter().flatten() {
        let fd = match PathFd::new(root) {
            Ok(fd) => fd,
            Err(err) => {
                // A root that does not exist (no ~/.npm for this user) grants nothing.
                if std::fs::symlink_metadata(root).is_ok() {
                    notes.push(format!("write root {root} skipped: {err}"));
                }
                continue;
            }
        };
        // A root may be a single file (cargo's lock files in ~/.cargo): only the rights that
        // apply to a file, or Landlock refuses the rule.
        let rights = if std::fs::metadata(root).is_ok_and(|meta| !meta.is_dir()) {
            requested & AccessFs::from_file(ABI::V5)
        } else {
            requested
        };
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, rights))
            .with_context(|| format!("granting writes below {root} in the Landlock ruleset"))?;
        granted.push(root.clone());
    }
    Ok(PreparedLandlock { ruleset, requested, write_roots_enforced: plan.write_roots.is_some(), write_roots: granted })
}

/// The number of a system call guard may refuse (the engine's x86_64 table: guard's programs
/// and its syscall tracepoints are x86_64 too).
fn syscall_number(name: &str) -> Option<i64> {
    guard_engine::syscalls::number(name)
        .filter(|_| guard_engine::syscalls::seccomp_listed().any(|n| n == name))
        .map(i64::from)
}

/// Every number the filter must refuse for one system call on this architecture.
fn numbers_of(name: &str) -> Vec<i64> {
    let Some(number) = syscall_number(name) else { return Vec::new() };
    #[cfg(target_arch = "x86_64")]
    {
        let mut numbers = vec![number, number | X32_SYSCALL_BIT];
        // The one listed call with an x32-only entry of its own (512 and up).
        if name == "kexec_load" {
            numbers.push(528 | X32_SYSCALL_BIT);
        }
        numbers
    }
    #[cfg(not(target_arch = "x86_64"))]
    vec![number]
}

fn compile_seccomp(names: &[String], notes: &mut Vec<String>) -> anyhow::Result<(BpfProgram, Vec<String>)> {
    let mut rules = BTreeMap::new();
    let mut refused = Vec::new();
    for name in names {
        let numbers = numbers_of(name);
        if numbers.is_empty() {
            // A newer daemon may name calls this launcher does not know.
            notes.push(format!("seccomp: unknown system call {name} not filtered"));
            continue;
        }
        for number in numbers {
            // An empty rule list matches the call whatever its arguments.
            rules.insert(number, Vec::new());
        }
        refused.push(name.clone());
    }
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|err| anyhow::anyhow!("seccomp filter for {}: {err}", std::env::consts::ARCH))?;
    // Calls of another architecture (i386 through int 0x80, whose numbers differ) do not pass
    // the filter's architecture check: seccompiler kills the process rather than let them by.
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(libc::EPERM as u32), arch)
        .context("building the seccomp filter")?;
    let program: BpfProgram = filter.try_into().context("compiling the seccomp filter")?;
    Ok((program, refused))
}

impl Prepared {
    /// Restrict the calling thread (the launcher, about to exec): Landlock first, then
    /// seccomp (both set no_new_privs). Errors mean the command must not run.
    pub fn apply(self) -> anyhow::Result<AppliedConfinement> {
        let landlock = match self.landlock {
            Some(prepared) => {
                let status = prepared.ruleset.restrict_self().context("applying the Landlock domain")?;
                Some(applied_landlock(&status, prepared.requested, prepared.write_roots_enforced, prepared.write_roots))
            }
            None => None,
        };
        let seccomp = match self.seccomp {
            Some((program, names)) => {
                seccompiler::apply_filter(&program).context("applying the seccomp filter")?;
                names
            }
            None => Vec::new(),
        };
        Ok(AppliedConfinement { unconfined: false, source: self.source, landlock, seccomp })
    }
}

/// What the domain actually is: the ABI the kernel speaks, and the requested rights it knows.
fn applied_landlock(
    status: &RestrictionStatus,
    requested: BitFlags<AccessFs>,
    write_roots_enforced: bool,
    write_roots: Vec<String>,
) -> AppliedLandlock {
    let (abi, effective) = match status.landlock {
        LandlockStatus::Available { effective_abi, kernel_abi } => {
            (kernel_abi.unwrap_or(effective_abi as i32).max(0) as u32, effective_abi)
        }
        _ => (0, ABI::Unsupported),
    };
    let enforced = status.ruleset != RulesetStatus::NotEnforced;
    let handled = if enforced { requested & AccessFs::from_all(effective) } else { BitFlags::EMPTY };
    AppliedLandlock {
        abi,
        status: match status.ruleset {
            RulesetStatus::FullyEnforced => "fully_enforced",
            RulesetStatus::PartiallyEnforced => "partially_enforced",
            RulesetStatus::NotEnforced => "not_enforced",
        }
        .into(),
        handled: handled.iter().map(right_name).map(String::from).collect(),
        write_roots_enforced: write_roots_enforced && enforced,
        write_roots: if enforced { write_roots } else { Vec::new() },
        signals_scoped: enforced && effective >= ABI::V6,
        abstract_unix_scoped: enforced && effective >= ABI::V6,
    }
}

fn right_name(right: AccessFs) -> &'static str {
    match right {
        AccessFs::Execute => "execute",
        AccessFs::WriteFile => "write_file",
        AccessFs::ReadFile => "read_file",
        AccessFs::ReadDir => "read_dir",
        AccessFs::RemoveDir => "remove_dir",
        AccessFs::RemoveFile => "remove_file",
        AccessFs::MakeChar => "make_char",
        AccessFs::MakeDir => "make_dir",
        AccessFs::MakeReg => "make_reg",
        AccessFs::MakeSock => "make_sock",
        AccessFs::MakeFifo => "make_fifo",
        AccessFs::MakeBlock => "make_block",
        AccessFs::MakeSym => "make_sym",
        AccessFs::Refer => "refer",
        AccessFs::Truncate => "truncate",
        AccessFs::IoctlDev => "ioctl_dev",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_syscall_of_every_group_has_a_number() {
        for group in guard_engine::confinement::SyscallGroup::ALL {
            for name in group.syscalls() {
                assert!(syscall_number(name).is_some(), "{name}");
            }
        }
        assert_eq!(syscall_number("ptrace"), None);
    }

    #[test]
    fn filter_compiles_and_skips_unknown_names() {
        let mut notes = Vec::new();
        let names = vec!["bpf".to_string(), "io_uring_setup".to_string(), "frobnicate".to_string()];
        let (program, refused) = compile_seccomp(&names, &mut notes).unwrap();
        assert!(!program.is_empty());
        assert_eq!(refused, vec!["bpf", "io_uring_setup"]);
        assert_eq!(notes, vec!["seccomp: unknown system call frobnicate not filtered"]);
    }

    #[test]
    fn preparing_applies_nothing() {
        // Building the ruleset and filter must not restrict the test process.
        let plan = Confinement {
            landlock: true,
            write_roots: Some(vec!["/tmp".into(), "/no/such/root".into()]),
            seccomp_deny: vec!["bpf".into()],
        };
        let prepared = prepare(&plan, "daemon").unwrap();
        assert!(prepared.notes.is_empty(), "{:?}", prepared.notes);
        assert_eq!(prepared.landlock.as_ref().map(|l| l.write_roots.clone()), Some(vec!["/tmp".to_string()]));
        drop(prepared);
        std::fs::write(std::env::temp_dir().join(format!("guard-confine-{}", std::process::id())), "x").unwrap();
        let _ = std::fs::remove_file(std::env::temp_dir().join(format!("guard-confine-{}", std::process::id())));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_engine_table_agrees_with_libc() {
        for (name, nr) in [
            ("bpf", libc::SYS_bpf),
            ("io_uring_setup", libc::SYS_io_uring_setup),
            ("io_uring_enter", libc::SYS_io_uring_enter),
            ("io_uring_register", libc::SYS_io_uring_register),
            ("perf_event_open", libc::SYS_perf_event_open),
            ("kexec_load", libc::SYS_kexec_load),
            ("kexec_file_load", libc::SYS_kexec_file_load),
            ("init_module", libc::SYS_init_module),
            ("finit_module", libc::SYS_finit_module),
            ("delete_module", libc::SYS_delete_module),
            ("userfaultfd", libc::SYS_userfaultfd),
            ("fsopen", libc::SYS_fsopen),
            ("fsconfig", libc::SYS_fsconfig),
            ("fsmount", libc::SYS_fsmount),
            ("fspick", libc::SYS_fspick),
            ("move_mount", libc::SYS_move_mount),
            ("open_tree", libc::SYS_open_tree),
            ("mount_setattr", libc::SYS_mount_setattr),
            ("unlinkat", libc::SYS_unlinkat),
            ("renameat2", libc::SYS_renameat2),
            ("tgkill", libc::SYS_tgkill),
            ("ptrace", libc::SYS_ptrace),
        ] {
            assert_eq!(guard_engine::syscalls::number(name).map(i64::from), Some(nr), "{name}");
        }
    }
}
