//! The `confinement` section: defaults, relaxing, located errors, and the rule set the daemon
//! hands `guard launch` (write roots only when files are enforced and the kill switch is on).

use super::{assert_single_problem, parse_ok};
use crate::confinement::{ConfinementSettings, SyscallGroup};
use crate::policy::{CompileContext, default_policy};

const MINIMAL: &str = "destructive:\n  rules: []\n";

#[test]
fn missing_section_and_keys_mean_the_defaults() {
    let policy = parse_ok(MINIMAL);
    assert_eq!(policy.confinement(), &ConfinementSettings::default());
    assert!(policy.confinement().landlock);
    assert_eq!(policy.confinement().seccomp_deny, SyscallGroup::ALL.to_vec());
    for yaml in ["confinement: {}\n", "confinement:\n  seccomp: {}\n", "confinement:\n  landlock: true\n"] {
        let policy = parse_ok(&format!("{MINIMAL}{yaml}"));
        assert_eq!(policy.confinement(), &ConfinementSettings::default(), "{yaml}");
        assert!(!policy.warnings().iter().any(|w| w.contains("confinement")), "{yaml}: {:?}", policy.warnings());
    }
    // The default policy spells the defaults out.
    assert_eq!(default_policy().confinement(), &ConfinementSettings::default());
}

#[test]
fn relaxing_is_explicit_and_warned_about() {
    let policy = parse_ok(&format!("{MINIMAL}confinement:\n  seccomp:\n    deny: [io_uring, bpf, io_uring]\n"));
    assert_eq!(policy.confinement().seccomp_deny, vec![SyscallGroup::IoUring, SyscallGroup::Bpf]);
    assert_eq!(
        policy.confinement().seccomp_syscalls(),
        ["io_uring_setup", "io_uring_enter", "io_uring_register", "bpf"].map(String::from).to_vec()
    );

    let policy = parse_ok(&format!("{MINIMAL}confinement:\n  landlock: false\n  seccomp:\n    deny: []\n"));
    assert!(!policy.confinement().landlock);
    assert!(policy.confinement().seccomp_deny.is_empty());
    let warnings = policy.warnings().join("\n");
    assert!(warnings.contains("confinement.seccomp.deny is empty"), "{warnings}");
    assert!(warnings.contains("confinement.landlock is false"), "{warnings}");
}

#[test]
fn unknown_groups_and_keys_are_located_errors() {
    let yaml = format!("{MINIMAL}confinement:\n  seccomp:\n    deny: [bpf, ptrace]\n");
    assert_single_problem(&yaml, 5, 17, "unknown syscall group `ptrace` (known: bpf, io_uring,");
    let yaml = format!("{MINIMAL}confinement:\n  seccomp:\n    deny:\n      - kexec_load\n");
    assert_single_problem(&yaml, 6, 9, "unknown syscall group `kexec_load`");
    let yaml = format!("{MINIMAL}confinement:\n  landlok: true\n");
    assert_single_problem(&yaml, 4, 3, "unknown field `landlok`");
    let yaml = format!("{MINIMAL}confinement:\n  seccomp:\n    allow: [bpf]\n");
    assert_single_problem(&yaml, 5, 5, "unknown field `allow`");
    let yaml = format!("{MINIMAL}confinement:\n  landlock: yes please\n");
    let problems = super::parse_problems(&yaml);
    assert_eq!(problems[0].line, 4, "{problems:#?}");
}

fn files_policy(mode: &str, roots: &str) -> crate::policy::CompiledPolicy {
    let yaml = format!("{MINIMAL}scope:\n  files:\n    mode: {mode}\n    write_roots: {roots}\n");
    parse_ok(&yaml).compile(&CompileContext::with_homes(vec!["/home/alice".into(), "/root".into()]))
}

#[test]
fn write_roots_only_when_files_are_enforced() {
    let compiled = files_policy("enforce", "[$CWD, /tmp, \"~/.cache\"]");
    let confinement = compiled.session_confinement(Some("/work/repo/./sub/.."), true);
    assert!(confinement.landlock);
    assert_eq!(
        confinement.write_roots.as_deref(),
        Some(&["/tmp", "/home/alice/.cache", "/root/.cache", "/work/repo"].map(String::from)[..])
    );
    assert_eq!(confinement.seccomp_deny.len(), 18);
    // A cwd already listed is not repeated; a missing or relative one adds nothing.
    let confinement = compiled.session_confinement(Some("/tmp"), true);
    assert_eq!(confinement.write_roots.as_ref().map(Vec::len), Some(3));
    assert_eq!(compiled.session_confinement(None, true).write_roots.as_ref().map(Vec::len), Some(3));
    assert_eq!(compiled.session_confinement(Some("rel"), true).write_roots.as_ref().map(Vec::len), Some(3));

    // The kill switch (monitor only): no write roots, the rest stays.
    let off = compiled.session_confinement(Some("/work"), false);
    assert_eq!((off.landlock, off.write_roots.clone(), off.seccomp_deny.len()), (true, None, 18));

    // Without $CWD the cwd is not a root.
    let compiled = files_policy("enforce", "[/tmp]");
    assert_eq!(compiled.session_confinement(Some("/work"), true).write_roots, Some(vec!["/tmp".to_string()]));

    // Monitored files, or no files scope at all: no write roots.
    assert_eq!(files_policy("monitor", "[$CWD, /tmp]").session_confinement(Some("/w"), true).write_roots, None);
    let compiled = parse_ok(MINIMAL).compile(&CompileContext::default());
    assert_eq!(compiled.session_confinement(Some("/w"), true).write_roots, None);
}

#[test]
fn landlock_off_means_no_write_roots_and_default_policy_confines_signals_only() {
    let yaml = format!(
        "{MINIMAL}scope:\n  files:\n    mode: enforce\n    write_roots: [/tmp]\nconfinement:\n  landlock: false\n"
    );
    let compiled = parse_ok(&yaml).compile(&CompileContext::default());
    let confinement = compiled.session_confinement(Some("/w"), true);
    assert!(!confinement.landlock);
    assert_eq!(confinement.write_roots, None);

    // The built-in default monitors files: Landlock for signal scoping, plus seccomp.
    let compiled = default_policy().compile(&CompileContext::default());
    let confinement = compiled.session_confinement(Some("/w"), true);
    assert!(confinement.landlock);
    assert_eq!(confinement.write_roots, None);
    assert!(confinement.seccomp_deny.contains(&"bpf".to_string()));
}
