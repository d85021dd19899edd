//! Issue "The boundary an agent cannot remove": with the audit file's disk full, sessions are
//! frozen until records can be written again; nothing runs unrecorded.

use std::{
    fs,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use guard_tests::{Guard, TempDir, can_run, scaled};

/// A small tmpfs of the test's own, unmounted on drop.
struct SmallFs(TempDir);

impl SmallFs {
    fn mount(kib: u32) -> Self {
        let dir = TempDir::new("audit-fs");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "guard-audit-test"])
            .arg(dir.path())
            .status()
            .expect("mount");
        assert!(status.success(), "mounting a tmpfs for the audit file");
        SmallFs(dir)
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

fn frozen(cgroup: &std::path::Path) -> bool {
    fs::read_to_string(cgroup.join("cgroup.events")).is_ok_and(|text| text.lines().any(|l| l == "frozen 1"))
}

#[test]
#[ignore = "needs root: loads BPF programs, creates cgroups and mounts a tmpfs"]
fn a_full_audit_disk_freezes_the_sessions_until_records_can_be_written() {
    if !can_run("a_full_audit_disk_freezes_the_sessions_until_records_can_be_written") {
        return;
    }
    // Room for the daemon's start and a few sessions' records; then a filler takes the rest.
    let fs_dir = SmallFs::mount(8 * 1024);
    let audit = fs_dir.0.path().join("audit.jsonl");
    // Every open recorded: the session's 50 reads are what must not be lost.
    let guard = Guard::start_writing(None, &["--record", "all"], Some(&audit));
    guard.settle("work");

    // Fill the disk.
    let filler = fs_dir.0.path().join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", &format!("of={}", filler.display()), "bs=4k"])
        .stderr(Stdio::null())
        .status();
    let before = guard.records().len();

    // A session keeps working: its records cannot be written, so it must stop.
    let mut child = guard
        .launch_cmd(
            "work",
            &["/bin/sh", "-c", "for i in $(seq 1 50); do cat /etc/hostname > /dev/null; done; echo done"],
        )
        .env_remove("LD_LIBRARY_PATH")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("launch");
    let session = guard.root.join("work");
    let deadline = Instant::now() + scaled(Duration::from_secs(20));
    while !frozen(&guard.root) {
        assert!(
            Instant::now() < deadline,
            "the sessions were not frozen with the audit disk full:\n{}",
            guard.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(frozen(&session), "the session below the frozen root is not frozen");
    // `guard status` says so (its report is refreshed every second).
    let deadline = Instant::now() + scaled(Duration::from_secs(5));
    loop {
        let status = guard.status();
        if status["audit_unwritable"].as_str().is_some_and(|t| t.contains("frozen")) {
            break;
        }
        assert!(Instant::now() < deadline, "guard status does not say the audit stream is down: {status}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Frozen: it makes no progress.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the session finished while its records could not be written"
    );

    // Space again: the records kept meanwhile are written in order, the sessions thaw.
    let freed = fs::metadata(&filler).map_or(0, |meta| meta.len());
    assert!(freed > 64 * 1024, "the filler took only {freed} bytes: the audit file itself filled the disk");
    fs::remove_file(&filler).expect("freeing the disk");
    let out = {
        let deadline = Instant::now() + scaled(Duration::from_secs(30));
        loop {
            if child.try_wait().expect("try_wait").is_some() {
                break child.wait_with_output().expect("output");
            }
            assert!(
                Instant::now() < deadline,
                "the session did not resume after the disk was freed:\n{}",
                guard.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("done"), "{out:?}");
    let down = guard.wait_for("the audit_unwritable record", |r| r["event"] == "audit_unwritable");
    assert_eq!(down["details"]["lost"], 0, "{down}");
    let deadline = Instant::now() + scaled(Duration::from_secs(5));
    while frozen(&guard.root) {
        assert!(Instant::now() < deadline, "the root stayed frozen");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Nothing the session did went unrecorded: its exec and its 50 reads are in the file.
    guard.settle("work");
    let records = guard.records();
    assert!(records.len() > before, "no records after the freeze");
    let reads = records
        .iter()
        .filter(|r| r["session"] == "work" && r["event"] == "open" && r["path"] == "/etc/hostname")
        .count();
    assert!(reads >= 50, "only {reads} of the session's 50 reads were recorded");
}
