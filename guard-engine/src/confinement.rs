//! Confinement: the boundary `guard launch` puts around a session before it execs the agent,
//! which nothing inside the session can remove (a Landlock domain and a seccomp filter are
//! inherited across fork and exec and only ever get stricter).
//!
//! Pure data here: the policy's `confinement` section ([`ConfinementSettings`]), what the
//! daemon tells a launcher to apply ([`Confinement`], computed by
//! [`CompiledPolicy::session_confinement`](crate::policy::CompiledPolicy::session_confinement)),
//! and what the launcher reports it applied ([`AppliedConfinement`], stored on the session
//! cgroup and read back by the daemon). The syscalls live in the daemon crate.

use serde::{Deserialize, Serialize};

/// A named group of system calls the seccomp filter can refuse (EPERM).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyscallGroup {
    /// Loading BPF programs or touching maps: an agent running as root could unload guard's.
    Bpf,
    /// io_uring performs file and network operations without the syscalls guard traces.
    IoUring,
    /// Kernel and hardware tracing, a side channel and a kernel attack surface.
    PerfEventOpen,
    /// Replacing the running kernel.
    Kexec,
    /// Loading or removing kernel code.
    KernelModules,
    /// A classic primitive for kernel exploits (stalling the kernel on a page fault).
    Userfaultfd,
    /// The file-descriptor mount API (a mount namespace trick away from remounting anything).
    NewMountApi,
}

impl SyscallGroup {
    /// Every group, in the order of the default list.
    pub const ALL: [SyscallGroup; 7] = [
        SyscallGroup::Bpf,
        SyscallGroup::IoUring,
        SyscallGroup::PerfEventOpen,
        SyscallGroup::Kexec,
        SyscallGroup::KernelModules,
        SyscallGroup::Userfaultfd,
        SyscallGroup::NewMountApi,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SyscallGroup::Bpf => "bpf",
            SyscallGroup::IoUring => "io_uring",
            SyscallGroup::PerfEventOpen => "perf_event_open",
            SyscallGroup::Kexec => "kexec",
            SyscallGroup::KernelModules => "kernel_modules",
            SyscallGroup::Userfaultfd => "userfaultfd",
            SyscallGroup::NewMountApi => "new_mount_api",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|group| group.as_str() == name)
    }

    /// The system calls of the group, by their Linux names.
    pub fn syscalls(self) -> &'static [&'static str] {
        match self {
            SyscallGroup::Bpf => &["bpf"],
            SyscallGroup::IoUring => &["io_uring_setup", "io_uring_enter", "io_uring_register"],
            SyscallGroup::PerfEventOpen => &["perf_event_open"],
            SyscallGroup::Kexec => &["kexec_load", "kexec_file_load"],
            SyscallGroup::KernelModules => &["init_module", "finit_module", "delete_module"],
            SyscallGroup::Userfaultfd => &["userfaultfd"],
            SyscallGroup::NewMountApi => {
                &["fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr"]
            }
        }
    }
}

/// The policy's `confinement` section, validated.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct ConfinementSettings {
    /// Apply a Landlock domain (write roots when files are enforced, signal scoping always).
    pub landlock: bool,
    /// Groups of system calls refused with EPERM, in policy order without duplicates.
    pub seccomp_deny: Vec<SyscallGroup>,
}

impl Default for ConfinementSettings {
    fn default() -> Self {
        Self { landlock: true, seccomp_deny: SyscallGroup::ALL.to_vec() }
    }
}

impl ConfinementSettings {
    /// The system call names of every denied group, without duplicates.
    pub fn seccomp_syscalls(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for group in &self.seccomp_deny {
            for name in group.syscalls() {
                if !names.iter().any(|known| known == name) {
                    names.push((*name).to_string());
                }
            }
        }
        names
    }
}

/// What the daemon tells `guard launch` to apply to a new session (the `confinement` control
/// request's answer).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Confinement {
    /// Create a Landlock domain (signal scoping, and the write roots when given).
    pub landlock: bool,
    /// Set when `scope.files` is enforced (and enforcement is not switched off): writes,
    /// creations, removals, renames and truncations are allowed only below these directories.
    /// `None`: files are not confined by Landlock (the eBPF side still records them).
    pub write_roots: Option<Vec<String>>,
    /// System calls the seccomp filter refuses with EPERM (Linux names).
    pub seccomp_deny: Vec<String>,
}

/// What `guard launch` actually applied, as recorded on the session cgroup
/// (`trusted.guard.confinement`) and shown in the `session` record and `guard status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppliedConfinement {
    /// `guard launch --unconfined`: nothing was applied.
    pub unconfined: bool,
    /// Where the rule set came from: `daemon`, or `default policy` when the daemon could not
    /// be asked.
    pub source: String,
    /// `None`: no Landlock domain was requested.
    pub landlock: Option<AppliedLandlock>,
    /// System calls refused with EPERM by the seccomp filter (empty: no filter).
    pub seccomp: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppliedLandlock {
    /// The kernel's Landlock ABI (0: Landlock not available).
    pub abi: u32,
    /// `fully_enforced`, `partially_enforced` (an older ABI lacks some rights or scopes) or
    /// `not_enforced`.
    pub status: String,
    /// The file-system access rights the domain handles (refused outside `write_roots`).
    pub handled: Vec<String>,
    /// Write roots asked for (whether or not the daemon's files scope is enforced).
    pub write_roots_enforced: bool,
    /// The directories writes are allowed below (those that existed at launch).
    pub write_roots: Vec<String>,
    /// Signals to processes outside the session's domain are refused (ABI 6).
    pub signals_scoped: bool,
    /// Connects to abstract unix sockets made outside the session's domain are refused (ABI
    /// 6): they have no file for `scope.unix` to name.
    #[serde(default)]
    pub abstract_unix_scoped: bool,
}

impl AppliedConfinement {
    pub fn unconfined() -> Self {
        Self { unconfined: true, ..Default::default() }
    }

    /// One line for a person: `landlock ABI 7 (write roots enforced: 5 dirs; signals scoped;
    /// abstract unix sockets scoped), seccomp: 15 syscalls`.
    pub fn summary(&self) -> String {
        if self.unconfined {
            return "unconfined (guard launch --unconfined)".into();
        }
        let landlock = match &self.landlock {
            None => "landlock off".to_string(),
            Some(landlock) if landlock.abi == 0 => "landlock not available in this kernel".to_string(),
            Some(landlock) if landlock.status == "not_enforced" => {
                format!("landlock ABI {} (not enforced)", landlock.abi)
            }
            Some(landlock) => {
                let mut parts = Vec::new();
                if landlock.write_roots_enforced {
                    parts.push(format!("write roots enforced: {} dirs", landlock.write_roots.len()));
                } else {
                    parts.push("files not confined".to_string());
                }
                parts.push(if landlock.signals_scoped { "signals scoped" } else { "signals NOT scoped" }.to_string());
                if landlock.abstract_unix_scoped {
                    parts.push("abstract unix sockets scoped".to_string());
                }
                if landlock.status == "partially_enforced" {
                    parts.push("partially enforced".to_string());
                }
                format!("landlock ABI {} ({})", landlock.abi, parts.join("; "))
            }
        };
        let seccomp = if self.seccomp.is_empty() {
            "seccomp off".to_string()
        } else {
            format!("seccomp: {} syscalls", self.seccomp.len())
        };
        let source = if self.source == "daemon" || self.source.is_empty() {
            String::new()
        } else {
            format!(" [{}]", self.source)
        };
        format!("{landlock}, {seccomp}{source}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_round_trip_and_expand() {
        for group in SyscallGroup::ALL {
            assert_eq!(SyscallGroup::parse(group.as_str()), Some(group));
            let json = serde_json::to_string(&group).unwrap();
            assert_eq!(json, format!("\"{}\"", group.as_str()));
        }
        assert_eq!(SyscallGroup::parse("kexec_load"), None);
        let all = ConfinementSettings::default().seccomp_syscalls();
        assert_eq!(all.len(), 18);
        assert!(all.contains(&"io_uring_register".to_string()) && all.contains(&"mount_setattr".to_string()));
        let none = ConfinementSettings { landlock: true, seccomp_deny: Vec::new() };
        assert!(none.seccomp_syscalls().is_empty());
    }

    #[test]
    fn summaries() {
        assert_eq!(AppliedConfinement::unconfined().summary(), "unconfined (guard launch --unconfined)");
        let applied = AppliedConfinement {
            unconfined: false,
            source: "daemon".into(),
            landlock: Some(AppliedLandlock {
                abi: 7,
                status: "fully_enforced".into(),
                handled: vec!["write_file".into()],
                write_roots_enforced: true,
                write_roots: vec!["/tmp".into(), "/work".into()],
                signals_scoped: true,
                abstract_unix_scoped: true,
            }),
            seccomp: vec!["bpf".into(); 18],
        };
        assert_eq!(
            applied.summary(),
            "landlock ABI 7 (write roots enforced: 2 dirs; signals scoped; abstract unix sockets scoped), seccomp: 18 syscalls"
        );
        let json = serde_json::to_string(&applied).unwrap();
        assert_eq!(serde_json::from_str::<AppliedConfinement>(&json).unwrap(), applied);
        let fallback = AppliedConfinement { source: "default policy".into(), ..Default::default() };
        assert_eq!(fallback.summary(), "landlock off, seccomp off [default policy]");
    }
}
