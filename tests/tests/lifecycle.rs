//! Issue 14, "Session lifecycle" and "Fleet": ended sessions' cgroups go, adopted ones stay,
//! and a cgroup tree laid out like the kubelet's makes each pod a session named by its UID.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use guard_tests::{
    Guard, can_run, cgroup2_mount, default_policy_value, guard_bin, policy_text, remove_cgroup_tree, scaled,
};
use serde_json::{Value, json};

static N: AtomicU32 = AtomicU32::new(0);

/// A cgroup of the test's own (removed with everything in it on drop).
struct TestCgroup(PathBuf);

impl TestCgroup {
    fn new(tag: &str) -> Self {
        let n = N.fetch_add(1, Ordering::SeqCst);
        let path = cgroup2_mount().join(format!("guard-test-{tag}-{}-{n}", std::process::id()));
        remove_cgroup_tree(&path);
        fs::create_dir(&path).unwrap_or_else(|err| panic!("mkdir {}: {err}", path.display()));
        TestCgroup(path)
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        remove_cgroup_tree(&self.0);
    }
}

/// `guard launch --root ROOT -- ARGS` without `--session`: a fresh session. Returns its name
/// (from launch's `guard: session NAME (...)` line).
fn launch_fresh(guard: &Guard, args: &[&str]) -> String {
    let out = Command::new(guard_bin())
        .arg("launch")
        .arg("--root")
        .arg(&guard.root)
        .arg("--")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("running guard launch");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "guard launch {args:?} failed: {stderr}");
    let line = stderr.lines().find(|l| l.starts_with("guard: session ")).unwrap_or_else(|| panic!("{stderr}"));
    line["guard: session ".len()..].split_whitespace().next().unwrap_or_default().to_string()
}

/// Wait until `path` is gone, or fail with the audit stream.
fn wait_gone(guard: &Guard, path: &Path, what: &str) {
    let deadline = Instant::now() + scaled(Duration::from_secs(20));
    while path.exists() {
        assert!(Instant::now() < deadline, "{what} ({}) was not removed in 20 s:\n{}", path.display(), guard.dump());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn exec_with(records: &[Value], marker: &str) -> Option<Value> {
    records
        .iter()
        .find(|r| r["event"] == "exec" && r["argv"].as_array().is_some_and(|a| a.iter().any(|v| v == marker)))
        .cloned()
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn ended_sessions_are_removed_after_their_records_are_written() {
    if !can_run("ended_sessions_are_removed_after_their_records_are_written") {
        return;
    }
    let guard = Guard::start();
    let mut sessions = Vec::new();
    for n in 0..3 {
        let marker = format!("lifecycle-marker-{n}");
        let name = launch_fresh(&guard, &["/bin/sh", "-c", &format!("exec /bin/true {marker}")]);
        sessions.push((name, marker));
    }
    for (name, marker) in &sessions {
        wait_gone(&guard, &guard.root.join(name), &format!("session {name}"));
        let records = guard.records();
        let exec =
            exec_with(&records, marker).unwrap_or_else(|| panic!("no exec record of {marker}:\n{}", guard.dump()));
        assert_eq!(exec["session"], name.as_str(), "{exec}");
        let end = records
            .iter()
            .find(|r| r["event"] == "session_end" && r["session"] == name.as_str())
            .unwrap_or_else(|| panic!("no session_end for {name}:\n{}", guard.dump()));
        assert!(end["seq"].as_u64() > exec["seq"].as_u64(), "the end comes after the session's records: {end}");
        assert_eq!(end["details"]["path"], guard.root.join(name).display().to_string());
    }
    // The daemon's status no longer lists them.
    let status = guard.status();
    let listed: Vec<&str> =
        status["sessions"].as_array().into_iter().flatten().filter_map(|s| s["name"].as_str()).collect();
    for (name, _) in &sessions {
        assert!(!listed.contains(&name.as_str()), "{name} still in status: {listed:?}");
    }
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn adopted_roots_and_cgroups_guard_did_not_create_stay() {
    if !can_run("adopted_roots_and_cgroups_guard_did_not_create_stay") {
        return;
    }
    let adopted = TestCgroup::new("adopted");
    let unit = adopted.0.join("agent.scope");
    fs::create_dir(&unit).expect("mkdir unit");
    let root = adopted.0.display().to_string();
    let guard = Guard::start_with(None, &["--cgroup", &root]);
    // A session cgroup made by hand below guard's own root: not guard's to remove either.
    let manual = guard.root.join("by-hand");
    fs::create_dir(&manual).expect("mkdir by-hand");
    for cgroup in [&unit, &manual] {
        let procs = cgroup.join("cgroup.procs");
        let script = format!("echo $$ > {} && exec /bin/true adopted-marker", procs.display());
        let status = Command::new("/bin/sh").args(["-c", &script]).status().expect("sh");
        assert!(status.success());
    }
    // A fresh session launched after both ended: once it is gone, the clean-up has looked
    // at the others at least twice since they went empty.
    let name = launch_fresh(&guard, &["/bin/true"]);
    wait_gone(&guard, &guard.root.join(&name), "the fresh session");
    assert!(adopted.0.exists() && unit.exists(), "the adopted root or its unit was removed");
    assert!(manual.exists(), "a cgroup guard did not create was removed");
    let records = guard.records();
    assert!(records.iter().filter(|r| r["event"] == "session_end").all(|r| r["session"] == name.as_str()));
    assert!(exec_with(&records, "adopted-marker").is_some(), "the adopted unit is governed:\n{}", guard.dump());
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn a_background_child_keeps_its_session_until_it_exits() {
    if !can_run("a_background_child_keeps_its_session_until_it_exits") {
        return;
    }
    let guard = Guard::start();
    let flag = guard.dir.path().join("let-go");
    // The launched shell exits at once; its background child waits for the flag.
    // Its output goes nowhere: launch's pipes must close when the shell exits.
    let script = format!(
        "(while [ ! -e {} ]; do sleep 0.2; done; exec /bin/true bg-done) </dev/null >/dev/null 2>&1 &",
        flag.display()
    );
    let name = launch_fresh(&guard, &["/bin/sh", "-c", &script]);
    let path = guard.root.join(&name);
    // Another short session is removed meanwhile (the clean-up runs), this one stays.
    let other = launch_fresh(&guard, &["/bin/true"]);
    wait_gone(&guard, &guard.root.join(&other), "the short session");
    std::thread::sleep(Duration::from_secs(2));
    assert!(path.exists(), "session {name} was removed while its background child ran:\n{}", guard.dump());
    let live = guard.status();
    let listed: Vec<(&str, u64)> = live["sessions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| Some((s["name"].as_str()?, s["processes"].as_u64()?)))
        .collect();
    assert!(listed.iter().any(|(n, procs)| *n == name && *procs >= 1), "{listed:?}");
    assert!(listed.windows(2).all(|w| w[0].1 > 0 || w[1].1 == 0), "live sessions first: {listed:?}");
    fs::write(&flag, "").expect("flag");
    wait_gone(&guard, &path, "the session after its background child exited");
    let records = guard.records();
    let done = exec_with(&records, "bg-done").unwrap_or_else(|| panic!("no bg-done exec:\n{}", guard.dump()));
    assert_eq!(done["session"], name.as_str());
}

const POD_UID: &str = "c42f9e07-1a6b-4b3d-8e5f-0d9a2c7b6e81";
const GUARANTEED_UID: &str = "3e1c7a52-9f0b-4d8e-a6c2-71b5d09e4f13";
const CONTAINER: &str = "2397d068a8d1552a4c3f9147ba9c94e086bfd66fb2acb5bbaf47197105127d5f";

/// Run `/bin/true MARKER` inside `cgroup` (the shell moves itself in, then execs).
fn run_in(cgroup: &Path, marker: &str) {
    let script = format!("echo $$ > {} && exec /bin/true {marker}", cgroup.join("cgroup.procs").display());
    let status = Command::new("/bin/sh").args(["-c", &script]).status().expect("sh");
    assert!(status.success(), "running in {}", cgroup.display());
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn a_process_in_a_pod_cgroup_is_recorded_under_the_pods_session() {
    if !can_run("a_process_in_a_pod_cgroup_is_recorded_under_the_pods_session") {
        return;
    }
    // The kubelet's systemd-driver layout, below this test's own cgroup only.
    let top = TestCgroup::new("kube");
    let kubepods = top.0.join("kubepods.slice");
    let besteffort = kubepods.join("kubepods-besteffort.slice");
    let burstable = kubepods.join("kubepods-burstable.slice");
    let pod = besteffort.join(format!("kubepods-besteffort-pod{}.slice", POD_UID.replace('-', "_")));
    let container = pod.join(format!("cri-containerd-{CONTAINER}.scope"));
    let guaranteed = kubepods.join(format!("kubepods-pod{}.slice", GUARANTEED_UID.replace('-', "_")));
    let guaranteed_container = guaranteed.join(format!("crio-{CONTAINER}.scope"));
    for dir in [&kubepods, &besteffort, &burstable, &pod, &container, &guaranteed, &guaranteed_container] {
        fs::create_dir(dir).unwrap_or_else(|err| panic!("mkdir {}: {err}", dir.display()));
    }
    let mut policy = default_policy_value();
    policy["kubernetes"] = json!({ "enabled": true, "root": kubepods.display().to_string() });
    let guard = Guard::start_with(Some(&policy_text(&policy)), &[]);
    let start = guard.wait_for("start", |r| r["event"] == "start");
    let roots: Vec<&str> =
        start["details"]["roots"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    assert!(roots.contains(&besteffort.to_str().unwrap_or_default()), "{roots:?}");

    run_in(&container, "pod-marker-besteffort");
    run_in(&guaranteed_container, "pod-marker-guaranteed");
    for (marker, uid) in [("pod-marker-besteffort", POD_UID), ("pod-marker-guaranteed", GUARANTEED_UID)] {
        let exec = guard.wait_for(marker, |r| {
            r["event"] == "exec" && r["argv"].as_array().is_some_and(|a| a.iter().any(|v| v == marker))
        });
        assert_eq!(exec["session"], format!("pod-{uid}"), "{exec}");
    }
    // Pods are the kubelet's: ended, they stay (a fresh guard session going shows the
    // clean-up ran meanwhile).
    let name = launch_fresh(&guard, &["/bin/true"]);
    wait_gone(&guard, &guard.root.join(&name), "the fresh session");
    assert!(pod.exists() && container.exists() && guaranteed.exists(), "a pod cgroup was removed");
    let status = guard.status();
    let listed: Vec<&str> =
        status["sessions"].as_array().into_iter().flatten().filter_map(|s| s["name"].as_str()).collect();
    assert!(listed.contains(&format!("pod-{POD_UID}").as_str()), "{listed:?}");
}
