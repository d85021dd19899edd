//! Issue "three detectors", file scope: write roots (with `$CWD`) and the optional read
//! allow-list, on the host tier (kill at syscall exit).

use std::process::Command;

use guard_tests::{Guard, TempDir, Tier, can_run, write_file};

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

/// What only the lsm tier can refuse: a system call's own body. Python deletes, renames and
/// truncates outside the write roots in-process (no `rm` to hold), and truncates a credential
/// with `O_WRONLY|O_TRUNC` (a write-only open, no read). The session is plain `guard launch`
/// with `--unconfined`: no Landlock, so only eBPF stands between.
#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn in_process_deletes_and_truncation_are_refused_on_the_lsm_tier_and_a_documented_limit_on_the_host_tier() {
    if !can_run("in_process_deletes_and_truncation_are_refused_on_the_lsm_tier_and_a_documented_limit_on_the_host_tier")
    {
        return;
    }
    let workspace = TempDir::new("fs-inproc-ws");
    let elsewhere = TempDir::new("fs-inproc-elsewhere");
    for name in ["victim.txt", "moved.txt", "cut.txt"] {
        write_file(&elsewhere.path().join(name), "precious\n");
    }
    write_file(&workspace.path().join(".env"), "TOKEN=in-process-secret\n");
    let policy = format!(
        "{POLICY}    - id: dotenv-here\n      names: [\".env\"]\n      mode: enforce\n      severity: critical\n"
    );
    let guard = Guard::start_with(Some(&policy), &[]);
    let dir = elsewhere.path().display().to_string();
    let script = format!(
        "import os\n\
         def attempt(what, call):\n    \
             try:\n        call()\n        print(what, 'done')\n    \
             except OSError as err:\n        print(what, err.strerror)\n\
         attempt('unlink', lambda: os.remove('{dir}/victim.txt'))\n\
         attempt('rename', lambda: os.rename('{dir}/moved.txt', '{dir}/moved2.txt'))\n\
         attempt('truncate', lambda: os.truncate('{dir}/cut.txt', 0))\n\
         attempt('trunc-open', lambda: os.close(os.open('.env', os.O_WRONLY | os.O_TRUNC)))\n"
    );
    write_file(&workspace.path().join("inproc.py"), &script);
    let out = Command::new(guard_tests::guard_bin())
        .args(["launch", "--unconfined", "--root"])
        .arg(&guard.root)
        .args(["--session", "inproc", "--", "/usr/bin/python3", "inproc.py"])
        .current_dir(workspace.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("in-process changes on the {:?} tier: {stdout}", guard.tier());
    let intact = |name: &str| std::fs::read_to_string(elsewhere.path().join(name)).is_ok_and(|t| t == "precious\n");
    let env_intact = std::fs::read_to_string(workspace.path().join(".env")).is_ok_and(|t| t.contains("in-process"));
    match guard.tier() {
        Tier::Lsm => {
            assert!(out.status.success(), "{out:?}");
            for what in ["unlink", "rename", "truncate", "trunc-open"] {
                assert!(stdout.contains(&format!("{what} Operation not permitted")), "{what}: {stdout}");
            }
            assert!(intact("victim.txt") && intact("moved.txt") && intact("cut.txt"), "a file outside changed");
            assert!(env_intact, "the credential was truncated");
            for event in ["unlink", "rename", "truncate"] {
                guard.wait_for(&format!("the {event} refusal"), |r| {
                    r["session"] == "inproc" && r["event"] == event && r["verdict"] == "deny"
                });
            }
            guard.wait_for("the truncating open's refusal", |r| {
                r["session"] == "inproc" && r["event"] == "open" && r["verdict"] == "deny" && r["rule"] == "dotenv-here"
            });
        }
        Tier::Host => {
            // The documented limit (README, "What the host tier cannot prevent"): a syscall
            // body runs; only command-level rules see `rm`, `mv`, `truncate`, at exec. The
            // credential's write-only truncating open is not a read, and is not stopped.
            assert!(out.status.success(), "{out:?}");
            assert!(stdout.contains("unlink done") && stdout.contains("rename done"), "{stdout}");
            assert!(stdout.contains("truncate done") && stdout.contains("trunc-open done"), "{stdout}");
            assert!(!intact("victim.txt") && !intact("cut.txt"), "the host tier prevented an in-process change?");
            assert!(!env_intact, "the host tier prevented the truncation?");
        }
    }
}

/// A write root may be one file (cargo's lock files directly in ~/.cargo): writing it is in
/// scope, writing its sibling in the same directory is not. Monitor mode: recorded, not killed.
#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn a_single_file_can_be_a_write_root_without_its_directory() {
    if !can_run("a_single_file_can_be_a_write_root_without_its_directory") {
        return;
    }
    let workspace = TempDir::new("fs-file-root-ws");
    let home = TempDir::new("fs-file-root");
    let lock = home.path().join(".package-cache");
    let sibling = home.path().join("config.toml");
    write_file(&lock, "");
    write_file(&sibling, "");
    let policy = format!(
        "scope:\n  files:\n    mode: monitor\n    write_roots: [$CWD, /dev, {:?}]\n\
         credentials:\n  rules:\n    - id: unused\n      names: [\"never-matches.secret\"]\n",
        lock.display().to_string()
    );
    let guard = Guard::start_with(Some(&policy), &[]);
    let script = format!("echo locked >> {}; echo runner >> {}", lock.display(), sibling.display());
    let out = guard.launch_cmd("file-root", &["sh", "-c", &script]).current_dir(workspace.path()).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    guard.settle("file-root");
    let out_of_scope: Vec<String> = guard
        .session_records("file-root")
        .iter()
        .filter(|r| r["detector"] == "scope_file")
        .filter_map(|r| r["path"].as_str().map(str::to_string))
        .collect();
    assert_eq!(out_of_scope, vec![sibling.display().to_string()], "{}", guard.dump());
}
