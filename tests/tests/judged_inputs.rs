//! Issue "Deeper judgement", deliverable 1: inputs that are argv by another name, on the real
//! kernel (host tier). The held exec's environment, config files and script files are read
//! while it is stopped; each destructive one is killed before it runs (the default rules
//! are enforced and no credential was touched, so none is held for a person), and its record
//! names where the destructive part came from (`source`).
//!
//! Shell scripts named `terraform`, `curl`, `git` and `ssh` stand in for the real tools
//! (see `fake_tools`): each writes `<name>.ran` when it runs, so "it never ran" is checked
//! on the file system, not only in the audit stream.

use std::{
    path::Path,
    process::{Output, Stdio},
    time::{Duration, Instant},
};

use guard_tests::{
    Guard, OutsideDir, TempDir, can_run, default_policy_value, fake_tools, path_with, policy_text, ran_marker, scaled,
    was_killed, write_file,
};
use serde_json::Value;

/// A daemon with the default policy, stand-ins for `tools` in a workspace's `bin/`.
struct Setup {
    guard: Guard,
    ws: TempDir,
}

impl Setup {
    fn new(tag: &str, tools: &[&str]) -> Self {
        let ws = TempDir::new(tag);
        std::fs::create_dir_all(ws.path().join("bin")).expect("creating bin/");
        fake_tools(&ws.path().join("bin"), tools);
        let guard = Guard::start_with(Some(&policy_text(&default_policy_value())), &[]);
        Setup { guard, ws }
    }

    fn bin(&self) -> std::path::PathBuf {
        self.ws.path().join("bin")
    }

    fn ran(&self, tool: &str) -> bool {
        ran_marker(&self.bin(), tool).exists()
    }

    /// Runs `args` in `session` from the workspace, the stand-ins first on PATH, with `env`.
    fn run(&self, session: &str, env: &[(&str, &str)], args: &[&str]) -> (u32, Output) {
        let mut cmd = self.guard.launch_cmd(session, args);
        cmd.current_dir(self.ws.path()).env("PATH", path_with(&self.bin()));
        for (key, value) in env {
            cmd.env(key, value);
        }
        let mut child =
            cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("guard launch");
        let pid = child.id();
        let deadline = Instant::now() + scaled(Duration::from_secs(60));
        while child.try_wait().expect("try_wait").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{args:?} did not finish (left held?); stream:\n{}", self.guard.dump());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (pid, child.wait_with_output().expect("collecting output"))
    }

    /// The exec record of `pid` with a verdict other than allow.
    fn judged(&self, session: &str, pid: u32, what: &str) -> Value {
        self.guard.wait_for(what, |r| {
            r["session"] == session && r["event"] == "exec" && r["pid"] == pid && r["verdict"] != "allow"
        })
    }

    /// `args` was killed before it ran: the exit status, the stand-in's marker, the record
    /// (rule, source, and the reason saying where the file content came from when it did).
    #[track_caller]
    fn assert_killed(&self, session: &str, env: &[(&str, &str)], args: &[&str], tool: &str, rule: &str) -> Value {
        let (pid, out) = self.run(session, env, args);
        let describe = format!(
            "status {:?}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(was_killed(&out.status), "{args:?} not killed: {describe}\n{}", self.guard.dump());
        assert!(!self.ran(tool), "{args:?}: the stand-in {tool} ran");
        let rec = self.judged(session, pid, &format!("kill of {args:?}"));
        assert_eq!(rec["verdict"], "kill", "{rec}");
        assert_eq!(rec["detector"], "destructive", "{rec}");
        assert_eq!(rec["rule"], rule, "{rec}");
        rec
    }

    /// `args` ran (its marker exists) and its exec record is an allow without a source.
    #[track_caller]
    fn assert_runs(&self, session: &str, env: &[(&str, &str)], args: &[&str], tool: &str) {
        let _ = std::fs::remove_file(ran_marker(&self.bin(), tool));
        let (pid, out) = self.run(session, env, args);
        assert!(out.status.success(), "{args:?} failed: {out:?}\n{}", self.guard.dump());
        assert!(self.ran(tool), "{args:?}: the stand-in {tool} did not run");
        let rec = self.guard.wait_for(&format!("exec of {args:?}"), |r| {
            r["session"] == session && r["event"] == "exec" && r["pid"] == pid
        });
        assert_eq!(rec["verdict"], "allow", "{rec}");
        assert!(rec.get("source").is_none(), "{rec}");
    }
}

fn reason(rec: &Value) -> &str {
    rec["reason"].as_str().unwrap_or_default()
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn terraform_destroy_from_tf_cli_args_is_killed() {
    if !can_run("terraform_destroy_from_tf_cli_args_is_killed") {
        return;
    }
    let setup = Setup::new("tf-cli-args", &["terraform"]);
    let s = "tf-env";
    let env = [("TF_CLI_ARGS_apply", "-destroy")];
    let rec = setup.assert_killed(s, &env, &["terraform", "apply", "-auto-approve"], "terraform", "terraform-destroy");
    assert_eq!(rec["source"], "env:TF_CLI_ARGS_apply", "{rec}");
    assert!(reason(&rec).contains("from environment variable TF_CLI_ARGS_apply"), "{rec}");
    // The same apply without the variable, or with another command's, runs.
    setup.assert_runs(s, &[], &["terraform", "apply", "-auto-approve"], "terraform");
    setup.assert_runs(s, &[("TF_CLI_ARGS_plan", "-destroy")], &["terraform", "apply", "-auto-approve"], "terraform");
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn curl_config_file_with_a_delete_is_killed() {
    if !can_run("curl_config_file_with_a_delete_is_killed") {
        return;
    }
    let setup = Setup::new("curl-config", &["curl"]);
    let s = "curl-cfg";
    let cfg = setup.ws.path().join("cfg");
    write_file(&cfg, "# the items API\nurl = \"http://127.0.0.1:9/items/1\"\nrequest = \"DELETE\"\n");
    let rec = setup.assert_killed(s, &[], &["curl", "-K", "cfg"], "curl", "http-delete");
    assert_eq!(rec["source"], format!("file:{}:3", display(&cfg)), "{rec}");
    assert!(reason(&rec).contains("could change after release"), "{rec}");
    // A config that only reads runs.
    write_file(&setup.ws.path().join("get.cfg"), "url = \"http://127.0.0.1:9/items/1\"\nsilent\n");
    setup.assert_runs(s, &[], &["curl", "-K", "get.cfg"], "curl");
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn git_alias_from_the_repository_config_that_force_pushes_is_killed() {
    if !can_run("git_alias_from_the_repository_config_that_force_pushes_is_killed") {
        return;
    }
    let setup = Setup::new("git-alias", &["git"]);
    let s = "git-alias";
    let config = setup.ws.path().join("repo/.git/config");
    write_file(
        &config,
        "[core]\n\trepositoryformatversion = 0\n[alias]\n\tst = status --short\n\tyolo = push --force origin HEAD\n",
    );
    std::fs::create_dir_all(setup.ws.path().join("repo/src")).expect("creating repo/src");
    // From the work tree (found upward from src/) and through -C.
    let rec = setup.assert_killed(s, &[], &["git", "-C", "repo/src", "yolo"], "git", "git-push-force");
    assert_eq!(rec["source"], format!("file:{}:5", display(&config)), "{rec}");
    assert!(reason(&rec).contains("could change after release"), "{rec}");
    // A harmless alias runs.
    setup.assert_runs(s, &[], &["git", "-C", "repo", "st"], "git");
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn bash_script_file_deleting_a_protected_tree_is_killed_before_its_first_line() {
    if !can_run("bash_script_file_deleting_a_protected_tree_is_killed_before_its_first_line") {
        return;
    }
    let setup = Setup::new("bash-script", &[]);
    let s = "bash-file";
    let precious = OutsideDir::new("bash-script");
    let started = setup.ws.path().join("script-started");
    let script = setup.ws.path().join("x.sh");
    // The first line would leave a trace: the script must not start at all.
    write_file(
        &script,
        &format!("touch '{}'\necho cleaning up\nrm -rf '{}'\n", display(&started), display(precious.path())),
    );
    let (pid, out) = setup.run(s, &[], &["bash", "x.sh"]);
    assert!(was_killed(&out.status), "bash x.sh not killed: {out:?}\n{}", setup.guard.dump());
    assert!(!started.exists(), "the script started");
    assert!(precious.intact(), "the protected tree was touched");
    let rec = setup.judged(s, pid, "kill of bash x.sh");
    assert_eq!(rec["verdict"], "kill", "{rec}");
    assert_eq!(rec["rule"], "rm-recursive-force", "{rec}");
    assert_eq!(rec["source"], format!("file:{}:3", display(&script)), "{rec}");
    assert!(reason(&rec).contains(&display(precious.path())), "{rec}");
    assert!(reason(&rec).contains("could change after release"), "{rec}");
    // A harmless script runs to its end.
    let done = setup.ws.path().join("harmless-done");
    write_file(
        &setup.ws.path().join("ok.sh"),
        &format!("rm -rf /tmp/guard-judged-scratch\ntouch '{}'\n", display(&done)),
    );
    let (pid, out) = setup.run(s, &[], &["sh", "ok.sh"]);
    assert!(out.status.success(), "sh ok.sh: {out:?}\n{}", setup.guard.dump());
    assert!(done.exists(), "the harmless script did not run");
    let rec =
        setup.guard.wait_for("exec of sh ok.sh", |r| r["session"] == s && r["event"] == "exec" && r["pid"] == pid);
    assert_eq!(rec["verdict"], "allow", "{rec}");
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn ssh_remote_command_deleting_a_tree_is_killed() {
    if !can_run("ssh_remote_command_deleting_a_tree_is_killed") {
        return;
    }
    let setup = Setup::new("ssh-remote", &["ssh"]);
    let s = "ssh-remote";
    let rec = setup.assert_killed(
        s,
        &[],
        &["ssh", "-o", "BatchMode=yes", "-p", "2222", "stand-in", "rm -rf /srv/x"],
        "ssh",
        "rm-recursive-force",
    );
    assert_eq!(rec["source"], "argv", "{rec}");
    assert!(reason(&rec).contains("/srv/x (the remote command of ssh stand-in)"), "{rec}");
    // A harmless remote command runs.
    setup.assert_runs(s, &[], &["ssh", "stand-in", "ls -la /srv"], "ssh");
}
