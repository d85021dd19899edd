//! Issue "three detectors", file scope: write roots (with `$CWD`) and the optional read
//! allow-list, on the host tier (kill at syscall exit).

use std::process::Command;

use guard_tests::{Guard, TempDir, can_run, write_file};

const POLICY: &str = r#"
scope:
  files:
    mode: enforce
    severity: high
    write_roots: [$CWD, /dev]
    read_allow: [$CWD, /usr, /lib, /lib64, /etc, /proc, /dev, /sys, /root/.rustup]
credentials:
  rules:
    - id: unused
      names: ["never-matches.secret"]
"#;

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn writes_and_reads_outside_the_roots_are_killed_inside_are_not() {
    if !can_run("writes_and_reads_outside_the_roots_are_killed_inside_are_not") {
        return;
    }
    let workspace = TempDir::new("fs-workspace");
    let elsewhere = TempDir::new("fs-elsewhere");
    write_file(&workspace.path().join("notes.txt"), "inside\n");
    let outside_file = elsewhere.path().join("data.txt");
    write_file(&outside_file, "precious\n");
    let guard = Guard::start_with(Some(POLICY), &[]);
    let run = |args: &[&str]| guard.launch_cmd("fs", args).current_dir(workspace.path()).output().unwrap();

    // Inside the workspace: read and write work.
    let out = run(&["sh", "-c", "cat notes.txt && echo more >> notes.txt"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "inside\n");
    assert!(std::fs::read_to_string(workspace.path().join("notes.txt")).unwrap().contains("more"));

    // Writing outside: killed before a single byte is written (appending keeps the content).
    let target = outside_file.display().to_string();
    let out = run(&["sh", "-c", &format!("echo overwritten >> {target}")]);
    assert!(!out.status.success());
    assert_eq!(std::fs::read_to_string(&outside_file).unwrap(), "precious\n");
    let rec = guard.wait_for("write outside scope", |r| {
        r["detector"] == "scope_file" && r["verdict"] == guard.refusal() && r["path"] == target.as_str()
    });
    assert!(rec["flags"].as_array().unwrap().iter().any(|f| f == "O_WRONLY" || f == "O_RDWR"));

    // Reading outside the read allow-list: killed, the data never printed.
    let out = run(&["cat", &target]);
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("precious"));
    guard.wait_for("read outside scope", |r| {
        r["detector"] == "scope_file"
            && r["verdict"] == guard.refusal()
            && r["path"] == target.as_str()
            && r["flags"][0] == "O_RDONLY"
    });

    // Outside every session nothing changes.
    let out = Command::new("cat").arg(&outside_file).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "precious\n");
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn a_session_cannot_move_itself_into_another_cgroup() {
    if !can_run("a_session_cannot_move_itself_into_another_cgroup") {
        return;
    }
    let guard = Guard::start_with(Some(POLICY), &[]);
    let elsewhere = guard_tests::cgroup2_mount().join(format!("guard-test-escape-{}", std::process::id()));
    std::fs::create_dir_all(&elsewhere).unwrap();
    let procs = elsewhere.join("cgroup.procs");
    let script = format!("echo $$ > {} && echo escaped", procs.display());
    let workspace = TempDir::new("escape");
    let out = guard.launch_cmd("escape", &["sh", "-c", &script]).current_dir(workspace.path()).output().unwrap();
    // Killed at the open's exit, before the write: nothing moved, nothing printed.
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("escaped"));
    assert!(std::fs::read_to_string(&procs).unwrap().trim().is_empty(), "a session process escaped");
    let rec = guard.wait_for("escape record", |r| r["detector"] == "self_protection" && r["event"] == "open");
    assert_eq!(rec["verdict"], guard.refusal());
    guard_tests::remove_cgroup_tree(&elsewhere);
}
