//! `guard policy check` and `guard policy default`: no root needed.
//!
//! Every bad input exits non-zero with `FILE:LINE:COLUMN: problem`.

use std::process::{Command, Output};

use guard_tests::{TempDir, guard_bin, write_file};

fn check(path: &std::path::Path) -> Output {
    Command::new(guard_bin()).args(["policy", "check"]).arg(path).output().expect("running guard policy check")
}

/// Write `text` as a policy, check it, and require a refusal naming `LINE:COLUMN` and every
/// one of `words`.
fn assert_refused(tag: &str, text: &str, line_col: &str, words: &[&str]) -> String {
    let dir = TempDir::new(&format!("policy-{tag}"));
    let path = dir.path().join(format!("{tag}.yaml"));
    write_file(&path, text);
    let out = check(&path);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{tag}: accepted:\n{text}\nstdout: {}", String::from_utf8_lossy(&out.stdout));
    let location = format!("{}:{line_col}:", path.display());
    assert!(stderr.contains(&location), "{tag}: no `{location}` in: {stderr}");
    for word in words {
        assert!(stderr.contains(word), "{tag}: no `{word}` in: {stderr}");
    }
    stderr
}

#[test]
fn unknown_key() {
    assert_refused("unknown-key", "mode: enforce\nfoo: 1\n", "2:1", &["unknown field `foo`"]);
    // A typo deeper down too.
    assert_refused(
        "unknown-nested",
        "scope:\n  network:\n    mode: enforce\n    alow: [10.0.0.0/8]\n",
        "4:5",
        &["unknown field `alow`"],
    );
}

#[test]
fn bad_cidr() {
    assert_refused(
        "cidr-host-bits",
        "scope:\n  network:\n    mode: enforce\n    allow: [10.0.0.1/8]\n",
        "4:13",
        &["10.0.0.1/8", "host bits"],
    );
    assert_refused(
        "cidr-prefix",
        "scope:\n  network:\n    mode: enforce\n    allow: [10.0.0.0/33]\n",
        "4:13",
        &["10.0.0.0/33"],
    );
}

#[test]
fn bad_port() {
    assert_refused(
        "port",
        "scope:\n  network:\n    mode: enforce\n    allow: [\"10.0.0.0/8:99999\"]\n",
        "4:13",
        &["bad port `99999`"],
    );
}

#[test]
fn bad_regex() {
    let text = "destructive:\n  rules:\n    - id: x\n      match:\n        programs: [psql]\n        all:\n          - arg_regex: \"(unclosed\"\n";
    assert_refused("regex", text, "7:24", &["bad regex `(unclosed`"]);
}

#[test]
fn bad_glob_and_name_pattern() {
    assert_refused(
        "glob",
        "credentials:\n  rules:\n    - id: x\n      paths: [\"/etc/[abc\"]\n",
        "4:15",
        &["bad glob `/etc/[abc`"],
    );
    assert_refused(
        "name",
        "credentials:\n  rules:\n    - id: x\n      names: [\"a*b*c\"]\n",
        "4:15",
        &["name pattern `a*b*c`"],
    );
}

#[test]
fn duplicate_rule_id() {
    let text = "credentials:\n  rules:\n    - id: x\n      names: [\".env\"]\n    - id: x\n      names: [\".npmrc\"]\n";
    assert_refused("dup", text, "5:11", &["duplicate rule id `x`", "line 3"]);
}

#[test]
fn unknown_mode() {
    assert_refused("mode", "mode: enforcing\n", "1:7", &["enforcing", "enforce", "monitor"]);
}

#[test]
fn unknown_severity() {
    let text = "credentials:\n  rules:\n    - id: x\n      severity: urgent\n      names: [\".env\"]\n";
    assert_refused("severity", text, "4:17", &["urgent", "critical"]);
}

#[test]
fn wrong_type() {
    // A string where a list is expected.
    assert_refused("type-list", "credentials:\n  rules:\n    - id: x\n      names: .env\n", "4:14", &["sequence"]);
    // A string where a number is expected.
    assert_refused("type-number", "destructive:\n  hold_timeout_secs: abc\n  rules: []\n", "2:22", &["u64"]);
}

#[test]
fn empty_file() {
    assert_refused("empty", "", "1:1", &["empty"]);
    assert_refused("comments-only", "# nothing here\n", "1:1", &["empty"]);
}

#[test]
fn empty_or_missing_required_list() {
    assert_refused("no-allow", "scope:\n  network:\n    mode: enforce\n", "3:5", &["missing field `allow`"]);
    assert_refused(
        "write-roots-empty",
        "scope:\n  files:\n    mode: enforce\n    write_roots: []\n",
        "4:18",
        &["write_roots"],
    );
    assert_refused(
        "names-empty",
        "credentials:\n  rules:\n    - id: x\n      names: []\n",
        "4:14",
        &["`names` is empty"],
    );
}

#[test]
fn missing_file_names_the_path() {
    let dir = TempDir::new("policy-missing");
    let path = dir.path().join("does-not-exist.yaml");
    let out = check(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    assert!(stderr.contains("No such file"), "{stderr}");
}

#[test]
fn valid_file_and_the_default_pass() {
    let dir = TempDir::new("policy-valid");
    let path = dir.path().join("valid.yaml");
    write_file(
        &path,
        "mode: enforce\n\
         credentials:\n  rules:\n    - id: dotenv\n      names: [\".env\"]\n\
         scope:\n  network:\n    mode: enforce\n    allow: [\"10.0.0.0/8\", \"192.168.1.0/24:22,443\"]\n\
         destructive:\n  rules:\n    - id: psql-drop\n      match:\n        programs: [psql]\n        all:\n          - arg_regex: '(?i)drop'\n",
    );
    let out = check(&path);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"), "{out:?}");

    // `guard policy default` prints a policy that checks clean.
    let default = Command::new(guard_bin()).args(["policy", "default"]).output().unwrap();
    assert!(default.status.success());
    assert!(!default.stdout.is_empty());
    let path = dir.path().join("default.yaml");
    std::fs::write(&path, &default.stdout).unwrap();
    let out = check(&path);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Only warnings may go to stderr.
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        assert!(line.contains("warning"), "{line}");
    }
}
