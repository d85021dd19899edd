//! Sessions of nested roots (Kubernetes QoS cgroups) and the marks the clean-up reads.

use std::path::{Path, PathBuf};

use super::*;
use crate::sys::FakeSys;

const UID_E: &str = "c42f9e07-1a6b-4b3d-8e5f-0d9a2c7b6e81";
const UID_G: &str = "3e1c7a52-9f0b-4d8e-a6c2-71b5d09e4f13";
const CID: &str = "2397d068a8d1552a4c3f9147ba9c94e086bfd66fb2acb5bbaf47197105127d5f";

fn p(path: &str) -> PathBuf {
    PathBuf::from(path)
}

#[test]
fn pods_below_qos_roots_are_sessions_named_by_uid() {
    let sys = FakeSys::with_cgroup2("/cg");
    let kube = "/cg/kubepods.slice";
    let besteffort = format!("{kube}/kubepods-besteffort.slice");
    let pod_e = format!("{besteffort}/kubepods-besteffort-pod{}.slice", UID_E.replace('-', "_"));
    let pod_g = format!("{kube}/kubepods-pod{}.slice", UID_G.replace('-', "_"));
    for dir in [
        kube,
        &besteffort,
        &pod_e,
        &format!("{pod_e}/cri-containerd-{CID}.scope"),
        &pod_g,
        &format!("{pod_g}/crio-{CID}.scope"),
    ] {
        sys.mkdir(Path::new(dir)).unwrap();
    }
    let roots = vec![p(kube), p(&format!("{kube}/kubepods-burstable.slice")), p(&besteffort)];
    let mut index = SessionIndex::new(roots.clone()).with_kubernetes(roots);
    index.rescan(&sys).unwrap();
    let id = |path: &str| cgroup_id(&sys, Path::new(path)).unwrap();
    let scope_e = index.get(id(&format!("{pod_e}/cri-containerd-{CID}.scope"))).unwrap();
    assert_eq!((scope_e.name.as_str(), scope_e.id), (format!("pod-{UID_E}").as_str(), id(&pod_e)));
    let scope_g = index.get(id(&format!("{pod_g}/crio-{CID}.scope"))).unwrap();
    assert_eq!((scope_g.name.as_str(), scope_g.id), (format!("pod-{UID_G}").as_str(), id(&pod_g)));
    // The QoS cgroup is its own root, not a session of kubepods.slice.
    assert_eq!(index.get(id(&besteffort)).unwrap().name, "kubepods-besteffort.slice");
    let names: Vec<String> = index.list(&sys).unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, vec![format!("pod-{UID_G}"), format!("pod-{UID_E}")]);
    // Without the Kubernetes naming the directory names stay.
    let mut plain = SessionIndex::new(vec![p(&besteffort)]);
    plain.rescan(&sys).unwrap();
    assert!(plain.get(id(&pod_e)).unwrap().name.starts_with("kubepods-besteffort-pod"));
}

#[test]
fn marks_and_emptiness_come_from_the_cgroup() {
    let sys = FakeSys::with_cgroup2("/cg");
    sys.mkdir(Path::new("/cg/guard")).unwrap();
    let (path, _) = create_session(&sys, Path::new("/cg/guard"), "a").unwrap();
    assert_eq!(created_by(&sys, &path), Created::NotByGuard);
    mark_created(&sys, &path, Created::Fresh, 42).unwrap();
    assert_eq!(created_by(&sys, &path), Created::Fresh);
    mark_created(&sys, &path, Created::Named, 42).unwrap();
    assert_eq!(created_by(&sys, &path), Created::Named);
    assert_eq!(populated(&sys, &path), Some(false));
    sys.mkdir(&path.join("inner")).unwrap();
    join(&sys, &path.join("inner"), 7).unwrap();
    assert_eq!(populated(&sys, &path), Some(true), "a nested cgroup's process counts");
    assert_eq!(populated(&sys, Path::new("/cg/guard/gone")), None);
}
