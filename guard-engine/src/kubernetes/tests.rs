use super::*;

fn runtime_name(runtime: Runtime) -> &'static str {
    match runtime {
        Runtime::Containerd => "containerd",
        Runtime::Crio => "crio",
        Runtime::CrioConmon => "crio-conmon",
        Runtime::Docker => "docker",
        Runtime::Unnamed => "unnamed",
    }
}

/// `fixtures.txt`: real kubelet layouts, both drivers, every QoS class, each runtime.
#[test]
fn fixtures_parse_to_their_pod_and_container() {
    let text = include_str!("fixtures.txt");
    let mut checked = 0;
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.starts_with('#') && !l.trim().is_empty()) {
        let (path, expected) = line.split_once('\t').unwrap_or_else(|| panic!("fixture line {}: no tab", n + 1));
        let got = parse(path).map(|pod| {
            let (runtime, id) = match &pod.container {
                Some(c) => (runtime_name(c.runtime), c.id.as_str()),
                None => ("-", "-"),
            };
            format!("{} {} {runtime} {id}", pod.qos.as_str(), pod.uid)
        });
        assert_eq!(got.as_deref().unwrap_or("none"), expected, "fixture line {}: {path}", n + 1);
        checked += 1;
    }
    assert!(checked >= 45, "only {checked} fixtures");
}

#[test]
fn every_qos_class_driver_and_runtime_is_covered_by_the_fixtures() {
    let pods: Vec<PodCgroup> =
        include_str!("fixtures.txt").lines().filter_map(|l| parse(l.split('\t').next()?)).collect();
    for qos in [QosClass::Guaranteed, QosClass::Burstable, QosClass::BestEffort] {
        assert!(pods.iter().any(|p| p.qos == qos), "{qos:?}");
    }
    for runtime in [Runtime::Containerd, Runtime::Crio, Runtime::CrioConmon, Runtime::Docker, Runtime::Unnamed] {
        assert!(pods.iter().any(|p| p.container.as_ref().is_some_and(|c| c.runtime == runtime)), "{runtime:?}");
    }
}

#[test]
fn qos_dirs_follow_the_driver_and_the_root_prefix() {
    let names = |root: &str| qos_dirs(root).map(|(_, dir)| dir);
    assert_eq!(names("kubepods.slice"), ["", "kubepods-burstable.slice", "kubepods-besteffort.slice"]);
    assert_eq!(
        names("kubelet-kubepods.slice"),
        ["", "kubelet-kubepods-burstable.slice", "kubelet-kubepods-besteffort.slice"]
    );
    assert_eq!(names("kubepods"), ["", "burstable", "besteffort"]);
    assert_eq!(Driver::of_root("kubepods.slice"), Driver::Systemd);
    assert_eq!(Driver::of_root("kubepods"), Driver::Cgroupfs);
    // Every QoS dir is what the parser reads as that class.
    for root in ["kubepods.slice", "kubepods"] {
        for (qos, dir) in qos_dirs(root).into_iter().skip(1) {
            assert_eq!(qos_of(&dir), Some(qos), "{root}/{dir}");
        }
    }
}

#[test]
fn session_names_are_the_pod_uid() {
    let uid = "c42f9e07-1a6b-4b3d-8e5f-0d9a2c7b6e81";
    let name = format!("pod-{uid}");
    let want = Some(name.clone());
    assert_eq!(session_name("kubepods-besteffort-podc42f9e07_1a6b_4b3d_8e5f_0d9a2c7b6e81.slice"), want);
    assert_eq!(session_name("kubepods-podc42f9e07_1a6b_4b3d_8e5f_0d9a2c7b6e81.slice"), want);
    assert_eq!(session_name(&format!("pod{uid}")), want);
    assert!(name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    for not_a_pod in ["kubepods-besteffort.slice", "burstable", "pod", "podxyz", "kubepods-pod.slice", "s-123"] {
        assert_eq!(session_name(not_a_pod), None, "{not_a_pod}");
    }
}
