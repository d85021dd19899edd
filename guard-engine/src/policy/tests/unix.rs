//! `scope.unix`: parsing, validation errors, `$GUARD_SOCKET`, the rule table.

use super::{assert_single_problem, parse_ok, parse_problems};
use crate::policy::{
    CompileContext, DEFAULT_CONTROL_SOCKET, Detector, Mode, Severity, UNIX_RULE_ID, UnixPath, default_policy,
};

#[test]
fn parses_with_defaults_and_normalises() {
    let yaml = "mode: monitor\nscope:\n  unix:\n    paths: [\"/run//docker.sock\", \"/run/user/*/podman/podman.sock\", $GUARD_SOCKET, /run/docker.sock]\n";
    let policy = parse_ok(yaml);
    let unix = policy.unix().expect("scope.unix");
    assert_eq!(unix.mode, Mode::Monitor);
    assert_eq!(unix.severity, Severity::Critical);
    assert_eq!(unix.mitre, "T1611");
    assert!(unix.description.contains("container runtime"), "{}", unix.description);
    // The duplicate (after normalisation) is dropped.
    assert_eq!(
        unix.paths,
        vec![
            UnixPath::Pattern("/run/docker.sock".into()),
            UnixPath::Pattern("/run/user/*/podman/podman.sock".into()),
            UnixPath::GuardSocket,
        ]
    );
}

#[test]
fn unknown_key_and_missing_paths_are_errors() {
    assert_single_problem("scope:\n  unix:\n    path: [/run/docker.sock]\n", 3, 5, "unknown field `path`");
    let problems = parse_problems("scope:\n  unix:\n    mode: enforce\n");
    assert!(problems[0].message.contains("paths"), "{problems:?}");
    assert_single_problem("scope:\n  unix:\n    paths: []\n", 3, 12, "at least one socket");
}

#[test]
fn bad_entries_name_their_line() {
    let entry = |path: &str| format!("scope:\n  unix:\n    paths:\n      - /run/docker.sock\n      - \"{path}\"\n");
    assert_single_problem(&entry("docker.sock"), 5, 9, "must be an absolute path");
    assert_single_problem(&entry("@abstract"), 5, 9, "must be an absolute path");
    assert_single_problem(&entry("$HOME/x.sock"), 5, 9, "only variable here is `$GUARD_SOCKET`");
    assert_single_problem(&entry("/run/../etc/x.sock"), 5, 9, "`..` is not allowed");
    assert_single_problem(&entry("/run/docker/"), 5, 9, "names a directory");
    assert_single_problem(&entry("/run/**/docker.sock"), 5, 9, "`**` is not supported");
    assert_single_problem(&entry("/run/[docker.sock"), 5, 9, "bad glob");
    let long = format!("/run/{}", "s".repeat(103));
    assert_eq!(long.len(), 108);
    assert_single_problem(&entry(&long), 5, 9, "at most 107");
    // 107 bytes fit.
    parse_ok(&entry(&long[..107]));
}

#[test]
fn the_rule_id_is_reserved() {
    let yaml = "credentials:\n  rules:\n    - id: scope.unix\n      names: [.env]\n";
    assert_single_problem(yaml, 3, 11, "reserved for the scope rules");
}

#[test]
fn default_policy_lists_the_runtime_sockets_and_the_guard_socket() {
    let policy = default_policy();
    let unix = policy.unix().expect("the default policy has scope.unix");
    assert_eq!(unix.mode, Mode::Monitor);
    for socket in [
        "/var/run/docker.sock",
        "/run/docker.sock",
        "/run/user/*/docker.sock",
        "/run/containerd/containerd.sock",
        "/run/podman/podman.sock",
        "/run/user/*/podman/podman.sock",
        "/var/run/crio/crio.sock",
        "/run/crio/crio.sock",
        "/var/run/libvirt/libvirt-sock",
        "/run/libvirt/libvirt-sock",
        "/var/run/libvirt/virtqemud-sock",
    ] {
        assert!(unix.paths.contains(&UnixPath::Pattern(socket.into())), "{socket} missing");
    }
    assert!(unix.paths.contains(&UnixPath::GuardSocket));

    let compiled = policy.compile(&CompileContext::with_homes(Vec::new()));
    let patterns = &compiled.unix.as_ref().expect("compiled scope.unix").patterns;
    assert!(patterns.iter().any(|p| p == DEFAULT_CONTROL_SOCKET), "{patterns:?}");
    let context = CompileContext { homes: Vec::new(), control_socket: Some("/tmp/g//ctl.sock".into()) };
    let compiled = policy.compile(&context);
    let patterns = &compiled.unix.as_ref().expect("compiled scope.unix").patterns;
    assert!(patterns.iter().any(|p| p == "/tmp/g/ctl.sock"), "{patterns:?}");
    assert!(!patterns.iter().any(|p| p == DEFAULT_CONTROL_SOCKET), "{patterns:?}");
}

#[test]
fn a_relative_control_socket_matches_nothing_and_says_so() {
    let policy = parse_ok("scope:\n  unix:\n    paths: [$GUARD_SOCKET]\n");
    let context = CompileContext { homes: Vec::new(), control_socket: Some("ctl.sock".into()) };
    let compiled = policy.compile(&context);
    assert_eq!(compiled.unix.as_ref().map(|unix| unix.patterns.len()), Some(0));
    assert!(compiled.warnings.iter().any(|w| w.contains("`$GUARD_SOCKET` in scope.unix matches nothing")));
}

#[test]
fn rule_table_puts_unix_after_files_before_destructive() {
    let policy = default_policy();
    let compiled = policy.compile(&CompileContext::with_homes(Vec::new()));
    let unix = compiled.unix.as_ref().expect("scope.unix");
    let files = compiled.files.as_ref().expect("scope.files");
    assert_eq!(unix.rule, files.rule + 1);
    assert_eq!(unix.rule + 1, policy.destructive_rule_offset());
    let meta = &compiled.rules[unix.rule as usize];
    assert_eq!(meta.id, UNIX_RULE_ID);
    assert_eq!(meta.detector, Detector::ScopeNetwork);
    assert_eq!(meta.severity, Severity::Critical);
    assert_eq!(meta.mitre, "T1611");
    assert_eq!(unix.rule_ref().rule, unix.rule);
    assert_eq!(unix.rule_ref().mode, guard_common::mode::MONITOR);
}

#[test]
fn a_policy_without_scope_unix_warns() {
    let policy = parse_ok("scope:\n  files:\n    write_roots: [/tmp]\n");
    assert!(policy.unix().is_none());
    assert!(policy.warnings().iter().any(|w| w.contains("no `scope.unix`")));
}
