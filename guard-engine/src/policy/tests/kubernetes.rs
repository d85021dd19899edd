//! The `kubernetes` section: off by default, the kubelet root checked where written, carried
//! into the compiled policy.

use super::{assert_single_problem, parse_ok};
use crate::policy::{CompileContext, DEFAULT_KUBERNETES_ROOT, KubernetesSettings, default_policy};

const MINIMAL: &str = "destructive:\n  rules: []\n";

fn kube(yaml: &str) -> Option<KubernetesSettings> {
    parse_ok(&format!("{MINIMAL}{yaml}")).kubernetes().cloned()
}

#[test]
fn off_unless_enabled() {
    assert_eq!(default_policy().kubernetes(), None);
    assert_eq!(kube(""), None);
    assert_eq!(kube("kubernetes: {}\n"), None);
    assert_eq!(kube("kubernetes:\n  enabled: false\n  root: kubepods\n"), None);
}

#[test]
fn roots_default_normalise_and_reach_the_compiled_policy() {
    let root = |text: &str| kube(&format!("kubernetes:\n  enabled: true\n{text}")).map(|k| k.root);
    assert_eq!(root("").as_deref(), Some(DEFAULT_KUBERNETES_ROOT));
    assert_eq!(root("  root: kubepods\n").as_deref(), Some("kubepods"));
    assert_eq!(
        root("  root: ./kubelet.slice//kubelet-kubepods.slice/\n").as_deref(),
        Some("kubelet.slice/kubelet-kubepods.slice")
    );
    assert_eq!(root("  root: /sys/fs/cgroup/kubepods.slice\n").as_deref(), Some("/sys/fs/cgroup/kubepods.slice"));
    let policy = parse_ok(&format!("{MINIMAL}kubernetes:\n  enabled: true\n"));
    assert_eq!(
        policy.compile(&CompileContext::default()).kubernetes,
        Some(KubernetesSettings { root: "kubepods.slice".into() })
    );
}

#[test]
fn bad_roots_and_keys_are_errors_at_the_place() {
    let at = |root: &str, needle: &str| {
        assert_single_problem(&format!("{MINIMAL}kubernetes:\n  enabled: true\n  root: {root}\n"), 5, 9, needle)
    };
    at("system.slice", "kubelet's cgroup root");
    at("\"\"", "must not be empty");
    at("\"kubepods*\"", "not a glob");
    at("../kubepods", "`..`");
    assert_single_problem(&format!("{MINIMAL}kubernetes:\n  enable: true\n"), 4, 3, "unknown field `enable`");
    assert_single_problem(&format!("{MINIMAL}kubernetes:\n  enabled: yes please\n"), 4, 12, "");
}
