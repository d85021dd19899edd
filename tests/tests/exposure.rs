//! `guard exposure`: the credential exposure audit on a prepared home, on another user's view
//! of it, and on a live session's workspace and environment. No daemon is needed: the audit
//! reads the policy as `guard run` would.

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::PermissionsExt as _,
    path::Path,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use guard_tests::{TempDir, can_run, cgroup2_mount, guard_bin, output_text, remove_cgroup_tree, scaled, write_file};
use serde_json::Value;

// Synthetic values in the real formats (never issued by anyone).
const OPENAI_KEY: &str = "sk-proj-Zq3vL8mR2tY7wK1nB5xC9dF4gH6jP0sA";
const AWS_KEY_ID: &str = "AKIAZQ3VL8MR2TY7WK1N";
const AWS_SECRET: &str = "q8Xr2Lm9Tz4Kv7Wb1Nc5Yd3Fg6Hj0Ps2Ea8Ub4Qi";
const GITHUB_TOKEN: &str = "ghp_Zq3vL8mR2tY7wK1nB5xC9dF4gH6jP0sA2eQ8";
const GITLAB_TOKEN: &str = "glpat-Zq3vL8mR2tY7wK1nB5xC";
const SLACK_TOKEN: &str = "xoxb-2048392-4739201-Zq3vL8mR2tY7wK1n";
const ALL_SECRETS: &[&str] = &[OPENAI_KEY, AWS_KEY_ID, AWS_SECRET, GITHUB_TOKEN, GITLAB_TOKEN, SLACK_TOKEN];

fn exposure(args: &[&str]) -> Output {
    Command::new(guard_bin()).arg("exposure").args(args).output().expect("running guard exposure")
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A home with the protected two (`.env`, `~/.aws/credentials`) and, when `exposed`, the
/// unprotected two (a token exported in `.bashrc`, `~/.config/tool/token.json`).
fn prepared_home(tag: &str, exposed: bool) -> TempDir {
    let home = TempDir::new(tag);
    let dir = home.path();
    write_file(&dir.join(".env"), &format!("OPENAI_API_KEY={OPENAI_KEY}\nDEBUG=1\n"));
    write_file(
        &dir.join(".aws/credentials"),
        &format!("[default]\naws_access_key_id = {AWS_KEY_ID}\naws_secret_access_key = {AWS_SECRET}\n"),
    );
    // Dotfiles without secrets and a non-dot directory: not findings.
    write_file(&dir.join(".gitconfig"), "[user]\n  name = Ada\n  email = ada@example.org\n");
    write_file(&dir.join("Documents/notes.txt"), &format!("not a dotfile: {GITHUB_TOKEN}\n"));
    if exposed {
        write_file(&dir.join(".bashrc"), &format!("alias ll='ls -l'\nexport GITHUB_TOKEN={GITHUB_TOKEN}\n"));
        write_file(&dir.join(".config/tool/token.json"), &format!("{{\"token\": \"{GITLAB_TOKEN}\"}}\n"));
    }
    for sub in ["", ".aws", ".config", ".config/tool", "Documents"] {
        if dir.join(sub).is_dir() {
            chmod(&dir.join(sub), 0o755);
        }
    }
    home
}

/// The JSON report, checked to carry no secret value anywhere in stdout or stderr.
fn json_report(out: &Output) -> Value {
    assert_no_secret_values(out);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|err| panic!("--json is no JSON ({err}):\n{}", output_text(out)))
}

fn assert_no_secret_values(out: &Output) {
    let text = output_text(out);
    for secret in ALL_SECRETS {
        // The public kind markers (`ghp_`, `AKIA`) may appear; no value, nor its random part.
        let random = &secret[secret.len() - 12..];
        assert!(!text.contains(secret) && !text.contains(random), "secret value {secret} in the output:\n{text}");
    }
}

/// Findings by file path relative to `home` (env findings as `env NAME`).
fn findings(report: &Value, home: &Path) -> BTreeMap<String, Value> {
    let home = fs::canonicalize(home).expect("canonical home");
    report["findings"]
        .as_array()
        .expect("findings array")
        .iter()
        .map(|finding| {
            let location = &finding["location"];
            let key = match location["type"].as_str() {
                Some("file") => {
                    let path = location["path"].as_str().expect("path");
                    Path::new(path).strip_prefix(&home).map_or(path.to_string(), |rel| rel.display().to_string())
                }
                _ => format!("env {}", location["var"].as_str().expect("var")),
            };
            (key, finding.clone())
        })
        .collect()
}

fn assert_fingerprints(finding: &Value) {
    let secrets = finding["secrets"].as_array().expect("secrets");
    assert!(!secrets.is_empty(), "no secret recognised in {finding}");
    for secret in secrets {
        let fingerprint = secret["fingerprint"].as_str().expect("fingerprint");
        assert!(fingerprint.len() == 16 && fingerprint.bytes().all(|b| b.is_ascii_hexdigit()), "{secret}");
    }
}

#[test]
fn a_prepared_home_lists_all_four_marks_the_unprotected_and_exits_1() {
    let home = prepared_home("exposure-home", true);
    let dir = home.path().to_str().expect("utf-8 temp dir");

    let text = exposure(&["--home", dir]);
    assert_eq!(text.status.code(), Some(1), "{}", output_text(&text));
    assert_no_secret_values(&text);
    let stdout = String::from_utf8_lossy(&text.stdout);
    let canonical = fs::canonicalize(home.path()).expect("canonical");
    for exposed in [".config/tool/token.json", ".bashrc"] {
        let line = format!("UNPROTECTED  {}", canonical.join(exposed).display());
        assert!(stdout.contains(&line), "no `{line}` in:\n{stdout}");
    }
    assert!(stdout.contains("rule aws-credentials (enforce"), "{stdout}");
    assert!(stdout.contains("rule dotenv (enforce; name .env)"), "{stdout}");

    let out = exposure(&["--home", dir, "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let report = json_report(&out);
    let found = findings(&report, home.path());
    let paths: Vec<&str> = found.keys().map(String::as_str).collect();
    assert_eq!(paths, vec![".aws/credentials", ".bashrc", ".config/tool/token.json", ".env"], "{report:#}");
    let status = |path: &str| found[path]["protection"]["status"].as_str().unwrap_or_default().to_string();
    let rule = |path: &str| found[path]["protection"]["rule"].as_str().unwrap_or_default().to_string();
    assert_eq!((status(".env"), rule(".env")), ("protected".into(), "dotenv".into()));
    assert_eq!((status(".aws/credentials"), rule(".aws/credentials")), ("protected".into(), "aws-credentials".into()));
    // The default policy has no rule for shell startup files (every shell, the agent's too,
    // reads them): a token there is as exposed as the one in the tool's own file.
    assert_eq!(status(".bashrc"), "unprotected");
    assert_eq!(status(".config/tool/token.json"), "unprotected");
    for finding in found.values() {
        assert_eq!(finding["readable"]["readable"], true, "{finding}");
        assert_fingerprints(finding);
    }
    let kinds = |path: &str| -> Vec<String> {
        found[path]["secrets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["kind"].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(kinds(".bashrc"), vec!["github_token"]);
    assert_eq!(kinds(".config/tool/token.json"), vec!["gitlab_token"]);
    assert_eq!(kinds(".aws/credentials"), vec!["aws_access_key", "aws_secret_key"]);
    assert_eq!(found[".bashrc"]["secrets"][0]["name"], "GITHUB_TOKEN");
    assert_eq!(report["summary"]["exposed"], 2, "{report:#}");
}

#[test]
fn a_home_holding_only_protected_credentials_exits_0() {
    let home = prepared_home("exposure-protected", false);
    let out = exposure(&["--home", home.path().to_str().expect("utf-8"), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let report = json_report(&out);
    let found = findings(&report, home.path());
    assert_eq!(found.keys().map(String::as_str).collect::<Vec<_>>(), vec![".aws/credentials", ".env"], "{report:#}");
    assert_eq!(report["summary"]["exposed"], 0);
}

#[test]
fn another_users_view_counts_only_what_that_user_can_read() {
    if uzers_nobody().is_none() {
        println!("SKIPPED another_users_view: no user `nobody` on this machine");
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 65534 {
        println!("SKIPPED another_users_view: running as nobody");
        return;
    }
    let home = prepared_home("exposure-nobody", true);
    let dir = home.path().to_str().expect("utf-8");
    chmod(&home.path().join(".bashrc"), 0o600);
    chmod(&home.path().join(".config/tool/token.json"), 0o600);
    let out = exposure(&["--home", dir, "--user", "nobody", "--json"]);
    assert_eq!(out.status.code(), Some(0), "unreadable findings must not fail the gate: {}", output_text(&out));
    let report = json_report(&out);
    assert_eq!(report["user"], "nobody");
    let found = findings(&report, home.path());
    assert_eq!(found.len(), 4, "{report:#}");
    for path in [".bashrc", ".config/tool/token.json"] {
        assert_eq!(found[path]["readable"]["readable"], false, "{}", found[path]);
        assert_eq!(found[path]["readable"]["why"], "no read permission (other)");
    }
    // One of them readable again: exposed.
    chmod(&home.path().join(".config/tool/token.json"), 0o644);
    let out = exposure(&["--home", dir, "--user", "nobody", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let found = findings(&json_report(&out), home.path());
    assert_eq!(found[".config/tool/token.json"]["readable"]["why"], "other");
}

fn uzers_nobody() -> Option<String> {
    fs::read_to_string("/etc/passwd").ok()?.lines().find(|line| line.starts_with("nobody:")).map(str::to_string)
}

#[test]
fn bad_input_exits_2_with_the_reason() {
    let home = prepared_home("exposure-bad", true);
    let dir = home.path().to_str().expect("utf-8");
    let missing_policy = home.path().join("no-such-policy.yaml");
    let bad_root = cgroup2_mount().join(format!("guard-test-exposure-none-{}", std::process::id()));
    for (args, reason) in [
        (vec!["--user", "no-such-user-guard-test"], "no such user"),
        (vec!["--home", "/nonexistent/guard-test-home"], "--home /nonexistent/guard-test-home"),
        (vec!["--home", dir, "--policy", missing_policy.to_str().expect("utf-8")], "reading policy"),
        (vec!["--home", dir, "--session", "no-such", "--root", bad_root.to_str().expect("utf-8")], "no such session"),
        (vec!["--home", dir, "--session", "../x"], "--session ../x"),
        (vec!["--no-such-flag"], "unexpected argument"),
    ] {
        let out = exposure(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", output_text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(reason), "{args:?}: no `{reason}` in {stderr}");
    }
}

/// A `guard launch`ed session under a test root of its own; killed and removed on drop.
struct Session {
    child: Child,
    root: std::path::PathBuf,
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        remove_cgroup_tree(&self.root);
    }
}

#[test]
#[ignore = "needs root (creates a session cgroup)"]
fn a_session_process_environment_is_listed_by_variable_name_and_its_workspace_scanned() {
    if !can_run("a_session_process_environment_is_listed") {
        return;
    }
    let home = prepared_home("exposure-session-home", false);
    let workspace = TempDir::new("exposure-workspace");
    write_file(&workspace.path().join("deploy/config.yml"), &format!("slack:\n  webhook_token: {SLACK_TOKEN}\n"));
    write_file(&workspace.path().join("src/main.py"), "def main():\n    key = lookup()\n");
    let root = cgroup2_mount().join(format!("guard-test-exposure-{}", std::process::id()));
    let name = "exposure-env";
    let child = Command::new(guard_bin())
        .args(["launch", "--root"])
        .arg(&root)
        .args(["--session", name, "--socket"])
        .arg(workspace.path().join("no-daemon.sock"))
        .args(["--", "sleep", "120"])
        .current_dir(workspace.path())
        .env("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
        .env("HARMLESS_SETTING", "verbose")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning guard launch");
    let session = Session { child, root: root.clone() };
    let procs = root.join(name).join("cgroup.procs");
    let deadline = Instant::now() + scaled(Duration::from_secs(10));
    let pid = loop {
        let sleeping = fs::read_to_string(&procs).unwrap_or_default().split_whitespace().find_map(|pid| {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            (comm.trim() == "sleep").then(|| pid.parse::<u64>().ok()).flatten()
        });
        if let Some(pid) = sleeping {
            break pid;
        }
        assert!(Instant::now() < deadline, "the launched sleep never appeared in {}", procs.display());
        std::thread::sleep(Duration::from_millis(50));
    };

    let args =
        ["--home", home.path().to_str().expect("utf-8"), "--root", root.to_str().expect("utf-8"), "--session", name];
    let out = exposure(&[&args[..], &["--json"]].concat());
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let report = json_report(&out);
    let found = findings(&report, home.path());
    let env = &found.get("env AWS_SECRET_ACCESS_KEY").unwrap_or_else(|| panic!("no env finding: {report:#}"));
    assert!(env["location"]["pids"].as_array().is_some_and(|pids| pids.contains(&Value::from(pid))), "{env}");
    assert_eq!(env["protection"]["status"], "unprotected");
    assert_eq!(env["secrets"][0]["kind"], "aws_secret_key");
    assert_fingerprints(env);
    assert!(!found.contains_key("env HARMLESS_SETTING"), "{report:#}");
    // The same key sits in the home's AWS credentials: the report says so, by fingerprint.
    let aws_file = fs::canonicalize(home.path()).expect("canonical home").join(".aws/credentials");
    assert_eq!(env["secrets"][0]["also_in"], serde_json::json!([aws_file.display().to_string()]), "{env}");
    let workspace_path = fs::canonicalize(workspace.path()).expect("canonical workspace");
    assert_eq!(report["workspace"], workspace_path.display().to_string());
    let config = workspace_path.join("deploy/config.yml").display().to_string();
    let in_workspace: Vec<&str> =
        found.keys().map(String::as_str).filter(|key| key.starts_with(&*workspace_path.to_string_lossy())).collect();
    assert_eq!(in_workspace, vec![config.as_str()], "{report:#}");
    assert_eq!(found[&config]["secrets"][0]["kind"], "slack_token");

    let text = exposure(&args);
    assert_eq!(text.status.code(), Some(1), "{}", output_text(&text));
    assert_no_secret_values(&text);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains("UNPROTECTED  env AWS_SECRET_ACCESS_KEY"), "{stdout}");
    assert!(stdout.contains(&format!("in pid {pid}")), "{stdout}");
    drop(session);
}

#[test]
fn a_credential_name_below_a_plain_directory_is_found_and_copies_are_linked() {
    let home = prepared_home("exposure-project", false);
    // Outside the dot-directories only files a credential rule names are read.
    write_file(&home.path().join("projects/app/.env"), &format!("AWS_SECRET_ACCESS_KEY={AWS_SECRET}\n"));
    write_file(&home.path().join("projects/app/README.md"), &format!("token {GITHUB_TOKEN}\n"));
    let out = exposure(&["--home", home.path().to_str().expect("utf-8"), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let report = json_report(&out);
    let found = findings(&report, home.path());
    let paths: Vec<&str> = found.keys().map(String::as_str).collect();
    assert_eq!(paths, vec![".aws/credentials", ".env", "projects/app/.env"], "{report:#}");
    let project = &found["projects/app/.env"];
    assert_eq!(project["protection"]["rule"], "dotenv");
    assert_eq!(project["found_by"], serde_json::json!(["policy_name"]));
    // The same AWS secret as in ~/.aws/credentials: each names the other.
    let aws_file = fs::canonicalize(home.path()).expect("canonical").join(".aws/credentials");
    assert_eq!(project["secrets"][0]["also_in"], serde_json::json!([aws_file.display().to_string()]), "{project}");
}
