//! Issue "An audit stream operators can keep": the hash chain across the daemon's own rotations
//! and across an external move followed by SIGUSR1 or `guard reopen`, checked by
//! `guard audit verify`; a flipped byte is named by the line after it.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use guard_tests::{Guard, TempDir, can_run, default_policy_value, guard_bin, output_text, policy_text, scaled};
use serde_json::{Value, json};

/// `guard audit verify FILES...`.
fn verify(files: &[PathBuf]) -> Output {
    Command::new(guard_bin()).args(["audit", "verify"]).args(files).output().expect("running guard audit verify")
}

/// `audit.jsonl.N` ... `audit.jsonl.1`, `audit.jsonl`: the files that exist, oldest first.
fn files_oldest_first(audit: &Path) -> Vec<PathBuf> {
    let rotated = |n: u32| PathBuf::from(format!("{}.{n}", audit.display()));
    let mut files: Vec<PathBuf> = (1..=100).map(rotated).take_while(|path| path.exists()).collect();
    files.reverse();
    files.push(audit.to_path_buf());
    files
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path).expect("reading an audit file").lines().map(str::to_string).collect()
}

fn wait_until(what: &str, guard: &Guard, done: impl Fn() -> bool) {
    let deadline = Instant::now() + scaled(Duration::from_secs(15));
    while !done() {
        assert!(Instant::now() < deadline, "{what} did not happen; stream:\n{}", guard.dump());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn rotated_files_verify_in_order_and_a_flipped_byte_is_named() {
    if !can_run("rotated_files_verify_in_order_and_a_flipped_byte_is_named") {
        return;
    }
    let mut policy = default_policy_value();
    // Small files, and room for every one of them: the whole run stays on disk.
    const MAX_BYTES: u64 = 64 * 1024;
    policy["audit"] = json!({ "max_bytes": MAX_BYTES, "keep": 100 });
    // Every open recorded: enough volume for several files.
    let mut guard = Guard::start_with(Some(&policy_text(&policy)), &["--record", "all"]);
    for round in 0..2 {
        let script =
            format!("for i in 1 2 3; do /bin/true rotate-{round}-$i; done; exec /bin/true rotate-done-{round}");
        let out = guard.launch("rotate", &["/bin/sh", "-c", &script]);
        assert!(out.status.success(), "{}", output_text(&out));
    }
    // `guard.settle` looks in the current file only; the marker may be rotated away by now.
    let audit = guard.audit.clone();
    wait_until("the last command's exec record", &guard, || {
        files_oldest_first(&audit).iter().any(|file| {
            fs::read_to_string(file).is_ok_and(|text| text.lines().any(|line| line.contains("rotate-done-1")))
        })
    });
    // Stopped, so nothing rotates while the files are read.
    guard.stop();

    let files = files_oldest_first(&guard.audit);
    assert!(files.len() >= 2, "no rotation: {files:?}");
    for file in &files {
        let size = fs::metadata(file).expect("audit file").len();
        // Only a single record larger than the limit may take a file past it.
        assert!(size <= MAX_BYTES || lines(file).len() == 1, "{} has {size} bytes", file.display());
    }
    let out = verify(&files);
    assert!(out.status.success(), "{}", output_text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!(" in {} files, last hash ", files.len())), "{stdout}");
    // Every record of the run is in the files, in one sequence.
    let seqs: Vec<u64> = files
        .iter()
        .flat_map(|file| lines(file))
        .map(|line| serde_json::from_str::<Value>(&line).expect("JSON")["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs.first(), Some(&1), "the oldest file starts the run (keep is large enough)");
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "seq not contiguous across files: {seqs:?}");

    // A copy with one digit of a middle record's `ts` flipped: still JSON, only the chain tells.
    let copies = TempDir::new("audit-copy");
    let copied: Vec<PathBuf> = files
        .iter()
        .map(|file| {
            let copy = copies.path().join(file.file_name().expect("file name"));
            fs::copy(file, &copy).expect("copying an audit file");
            copy
        })
        .collect();
    let victim = copied.iter().find(|file| lines(file).len() >= 3).expect("a file with three records");
    let mut text = lines(victim);
    let digit = text[1].find("\"ts\":\"").expect("ts") + 6;
    let mut bytes = text[1].clone().into_bytes();
    bytes[digit] ^= 1;
    text[1] = String::from_utf8(bytes).expect("a digit flipped is still text");
    fs::write(victim, text.join("\n") + "\n").expect("writing the tampered copy");
    let seq_after: u64 = serde_json::from_str::<Value>(&text[2]).expect("JSON")["seq"].as_u64().expect("seq");

    let out = verify(&copied);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let name = victim.file_name().expect("file name").to_string_lossy().to_string();
    assert!(stderr.contains(&format!("{name}:3 (seq {seq_after}): chain broken: prev_hash ")), "{stderr}");
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn a_moved_file_and_sigusr1_or_guard_reopen_continue_the_chain() {
    if !can_run("a_moved_file_and_sigusr1_or_guard_reopen_continue_the_chain") {
        return;
    }
    let mut guard = Guard::start();
    let pid = guard.daemon_pid();
    guard.settle("before");
    let dir = guard.dir.path().to_path_buf();
    let first = dir.join("audit.jsonl.first");
    let second = dir.join("audit.jsonl.second");

    // logrotate moved the file; SIGUSR1 tells the daemon.
    fs::rename(&guard.audit, &first).expect("moving the audit file");
    // SAFETY: plain kill(2) on the daemon this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGUSR1) }, 0);
    let audit = guard.audit.clone();
    wait_until("a reopened file", &guard, || audit.exists() && !guard.records().is_empty());
    let opening = &guard.records()[0];
    assert_eq!(opening["event"], "audit_reopened", "{opening}");
    assert_eq!(opening["details"]["reason"], "signal", "{opening}");
    assert_eq!(opening["details"]["path"], guard.audit.display().to_string(), "{opening}");
    guard.settle("between");

    // Again, with `guard reopen` on the control socket.
    fs::rename(&guard.audit, &second).expect("moving the audit file");
    let out = Command::new(guard_bin()).arg("reopen").arg("--socket").arg(&guard.socket).output().expect("reopen");
    assert!(out.status.success(), "{}", output_text(&out));
    let opening = &guard.records()[0];
    assert_eq!(opening["event"], "audit_reopened", "{opening}");
    assert_eq!(opening["details"]["reason"], "request", "{opening}");
    guard.settle("after");
    guard.stop();

    let out = verify(&[first.clone(), second.clone(), guard.audit.clone()]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(" in 3 files, last hash "), "{}", output_text(&out));
    // The files only link in their order.
    let out = verify(&[second, first]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
}
