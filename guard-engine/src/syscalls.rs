//! The system calls guard watches, by number (x86_64) and name.

/// `(number, name)` on x86_64.
pub const X86_64: &[(u32, &str)] = &[
    (2, "open"),
    (62, "kill"),
    (76, "truncate"),
    (77, "ftruncate"),
    (82, "rename"),
    (83, "mkdir"),
    (84, "rmdir"),
    (85, "creat"),
    (86, "link"),
    (87, "unlink"),
    (88, "symlink"),
    (101, "ptrace"),
    (133, "mknod"),
    (175, "init_module"),
    (176, "delete_module"),
    (200, "tkill"),
    (234, "tgkill"),
    (246, "kexec_load"),
    (257, "openat"),
    (258, "mkdirat"),
    (259, "mknodat"),
    (263, "unlinkat"),
    (264, "renameat"),
    (265, "linkat"),
    (266, "symlinkat"),
    (298, "perf_event_open"),
    (313, "finit_module"),
    (316, "renameat2"),
    (320, "kexec_file_load"),
    (321, "bpf"),
    (323, "userfaultfd"),
    (425, "io_uring_setup"),
    (426, "io_uring_enter"),
    (427, "io_uring_register"),
    (428, "open_tree"),
    (429, "move_mount"),
    (430, "fsopen"),
    (431, "fsconfig"),
    (432, "fsmount"),
    (433, "fspick"),
    (437, "openat2"),
    (442, "mount_setattr"),
];

/// File-system changes whose refusal (EACCES from Landlock's write roots) is recorded.
pub const FILE_CHANGES: &[&str] = &[
    "unlinkat",
    "unlink",
    "rmdir",
    "renameat",
    "renameat2",
    "rename",
    "linkat",
    "link",
    "symlinkat",
    "symlink",
    "mkdirat",
    "mkdir",
    "mknodat",
    "mknod",
    "truncate",
    "ftruncate",
];

/// Signals and ptrace, refused (EPERM) outside a session's Landlock domain.
pub const SIGNALS: &[&str] = &["kill", "tkill", "tgkill", "ptrace"];

/// Every call a seccomp group can refuse (`crate::confinement::SyscallGroup`): their exits
/// are watched, and their entries too (a session process reaching one has no filter).
pub fn seccomp_listed() -> impl Iterator<Item = &'static str> {
    crate::confinement::SyscallGroup::ALL.into_iter().flat_map(|group| group.syscalls().iter().copied())
}

pub fn name(nr: u32) -> Option<&'static str> {
    X86_64.iter().find(|(n, _)| *n == nr).map(|(_, name)| *name)
}

pub fn number(name: &str) -> Option<u32> {
    X86_64.iter().find(|(_, n)| *n == name).map(|(nr, _)| *nr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_watched_call_has_a_number() {
        for call in FILE_CHANGES.iter().copied().chain(SIGNALS.iter().copied()).chain(seccomp_listed()) {
            assert!(number(call).is_some(), "{call}");
        }
        assert_eq!(name(321), Some("bpf"));
        assert_eq!(number("io_uring_setup"), Some(425));
    }
}
