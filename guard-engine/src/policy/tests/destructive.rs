//! The destructive-command evaluator with the default rules: every rule fires on positive
//! examples and stays quiet on near misses.

use std::sync::OnceLock;

use super::parse_ok;
use crate::destructive::{DestructiveEvaluator, DestructiveMatch, ExecContext};
use crate::policy::{Mode, Severity, default_policy};

const PROJECT: &str = "/home/alice/project";

fn evaluator() -> &'static DestructiveEvaluator {
    static EVALUATOR: OnceLock<DestructiveEvaluator> = OnceLock::new();
    EVALUATOR.get_or_init(|| DestructiveEvaluator::new(&default_policy()))
}

fn exec_in(cwd: &str, argv: &[&str]) -> ExecContext {
    let program = argv.first().copied().unwrap_or_default();
    ExecContext {
        exe: format!("/usr/bin/{program}"),
        argv: argv.iter().map(|arg| arg.to_string()).collect(),
        cwd: cwd.into(),
        env: Vec::new(),
    }
}

fn evaluate_in(cwd: &str, argv: &[&str]) -> Option<DestructiveMatch> {
    evaluator().evaluate(&exec_in(cwd, argv))
}

#[track_caller]
fn assert_fires_in(cwd: &str, argv: &[&str], rule_id: &str) -> DestructiveMatch {
    match evaluate_in(cwd, argv) {
        Some(found) => {
            assert_eq!(found.rule_id, rule_id, "{argv:?} matched {found:#?}");
            assert_eq!(found.mode, Mode::Enforce);
            found
        }
        None => panic!("{argv:?} (cwd {cwd}) should match {rule_id}"),
    }
}

#[track_caller]
fn assert_fires(argv: &[&str], rule_id: &str) -> DestructiveMatch {
    assert_fires_in(PROJECT, argv, rule_id)
}

#[track_caller]
fn assert_quiet_in(cwd: &str, argv: &[&str]) {
    if let Some(found) = evaluate_in(cwd, argv) {
        panic!("{argv:?} (cwd {cwd}) should not match, got {found:#?}");
    }
}

#[track_caller]
fn assert_quiet(argv: &[&str]) {
    assert_quiet_in(PROJECT, argv)
}

fn sh(script: &str) -> [&str; 3] {
    ["sh", "-c", script]
}

#[test]
fn rm_recursive_force_outside_scratch() {
    let found = assert_fires(&["rm", "-rf", "/srv/data"], "rm-recursive-force");
    assert_eq!(found.reason, "rm -rf outside scratch roots: /srv/data");
    assert_eq!(found.severity, Severity::Critical);
    assert_eq!(found.mitre, "T1485");
    for argv in [
        &["rm", "-fr", "build"][..],
        &["rm", "-Rf", "/srv"],
        &["rm", "-r", "-f", "x"],
        &["rm", "--recursive", "--force", "x"],
        &["rm", "-rfv", "--", "x"],
        &["rm", "-rf", "/tmp"],
        &["rm", "-rf", "/tmp/../srv"],
        &["rm", "-rf", "/tmp/ok", "/srv/not-ok"],
        &["rm", "-rf", "$HOME/x"],
        &["rm", "-rf", "~/x"],
    ] {
        assert_fires(argv, "rm-recursive-force");
    }
    let found = assert_fires(&["rm", "-rf", "data"], "rm-recursive-force");
    assert!(found.reason.ends_with("/home/alice/project/data"), "{}", found.reason);
}

#[test]
fn rm_near_misses() {
    assert_quiet(&["rm", "-r", "dir"]); // decided: recursive without force is not matched
    assert_quiet(&["rm", "-f", "file"]);
    assert_quiet(&["rm", "file"]);
    assert_quiet(&["rm", "-rf", "/tmp/x"]);
    assert_quiet(&["rm", "-rf", "/var/tmp/build", "/tmp/y"]);
    assert_quiet_in("/tmp/work", &["rm", "-rf", "build", "../other"]);
    assert_quiet(&["rm", "-rf"]);
    assert_quiet(&["ls", "-rf", "/srv"]);
}

#[test]
fn renamed_binary_or_symlink_is_caught_by_either_name() {
    // A copy of rm renamed: argv[0] still says rm.
    let renamed = ExecContext {
        exe: "/home/alice/bin/cleanup".into(),
        argv: vec!["rm".into(), "-rf".into(), "/srv".into()],
        cwd: PROJECT.into(),
        env: Vec::new(),
    };
    assert_eq!(evaluator().evaluate(&renamed).map(|m| m.rule_id), Some("rm-recursive-force".into()));
    // A symlink with another name to rm: the resolved exe says rm.
    let symlinked = ExecContext {
        exe: "/usr/bin/rm".into(),
        argv: vec!["nuke".into(), "-rf".into(), "/srv".into()],
        cwd: PROJECT.into(),
        env: Vec::new(),
    };
    assert_eq!(evaluator().evaluate(&symlinked).map(|m| m.rule_id), Some("rm-recursive-force".into()));
}

#[test]
fn find_delete() {
    assert_fires(&["find", "/srv", "-name", "*.log", "-delete"], "find-delete");
    assert_fires(&["find", ".", "-type", "f", "-delete"], "find-delete");
    assert_fires(&["find", "-L", "/srv", "-delete"], "find-delete");
    assert_fires(&["find", "-delete"], "find-delete");
    assert_quiet(&["find", ".", "-name", "*.rs"]);
    assert_quiet(&["find", "/tmp/cache", "-mtime", "+3", "-delete"]);
}

#[test]
fn find_exec_rm_is_looked_through() {
    let found = assert_fires(&["find", "/srv", "-name", "x", "-exec", "rm", "-rf", "{}", "+"], "rm-recursive-force");
    assert_eq!(found.via, vec!["find -exec".to_string()]);
    assert_quiet(&["find", "/tmp/x", "-exec", "rm", "-rf", "{}", ";"]);
}

#[test]
fn shred_dd_mkfs_wipefs() {
    assert_fires(&["shred", "-u", "secrets.txt"], "shred");
    assert_fires(&["dd", "if=/dev/zero", "of=/dev/sda", "bs=1M"], "dd-to-device");
    assert_fires(&["dd", "if=disk.img", "of=/dev/nvme0n1"], "dd-to-device");
    assert_quiet(&["dd", "if=/dev/zero", "of=/dev/null", "count=1"]);
    assert_quiet(&["dd", "if=/dev/urandom", "of=random.bin", "count=1"]);
    assert_fires(&["mkfs.ext4", "/dev/sdb1"], "mkfs");
    assert_fires(&["mkfs", "-t", "xfs", "/dev/sdb"], "mkfs");
    assert_fires(&["mke2fs", "/dev/sdb"], "mkfs");
    assert_fires(&["wipefs", "-a", "/dev/sdb"], "wipefs");
    assert_fires(&["wipefs", "--all", "/dev/sdb"], "wipefs");
    assert_quiet(&["wipefs", "/dev/sdb"]);
    assert_quiet(&["wipefs", "-n", "-a", "/dev/sdb"]);
}

#[test]
fn incident_commands_fire_as_critical() {
    let drop = assert_fires(&["psql", "-c", "DROP DATABASE prod"], "sql-destructive");
    assert_eq!(drop.severity, Severity::Critical);
    assert!(drop.reason.contains("DROP DATABASE prod"), "{}", drop.reason);
    let terminate = assert_fires(&["aws", "ec2", "terminate-instances", "--instance-ids", "i-1"], "aws-delete");
    assert_eq!(terminate.severity, Severity::Critical);
    assert!(terminate.reason.contains("terminate-instances"), "{}", terminate.reason);
}

#[test]
fn sql_through_clients() {
    for argv in [
        &["psql", "-h", "db", "-c", "TRUNCATE users"][..],
        &["psql", "-c", "DELETE FROM users"],
        &["psql", "-c", "select 1; delete from users;"],
        &["psql", "--command=drop table t"],
        &["psql", "-cDROP SCHEMA s CASCADE"],
        &["mysql", "-uroot", "-e", "DROP TABLE t"],
        &["mysql", "--execute=delete from t"],
        &["mariadb", "-e", "drop database x"],
    ] {
        assert_fires(argv, "sql-destructive");
    }
    assert_fires(&["sqlite3", "app.db", "DELETE FROM t"], "sqlite-destructive");
    assert_fires(&["sqlite3", "app.db", "DROP TABLE t"], "sqlite-destructive");
    assert_fires(&["sqlite3", "-cmd", "drop table t", "app.db"], "sqlite-destructive");
    assert_fires(&["mongosh", "prod", "--eval", "db.dropDatabase()"], "mongo-destructive");
    assert_fires(&["mongosh", "--eval", "db.users.drop()"], "mongo-destructive");
    assert_fires(&["mongo", "--eval", "db.users.deleteMany({})"], "mongo-destructive");
    assert_fires(&["redis-cli", "FLUSHALL"], "redis-flush");
    assert_fires(&["redis-cli", "-h", "cache", "-n", "2", "flushdb"], "redis-flush");
}

#[test]
fn sql_near_misses() {
    assert_quiet(&["psql", "-c", "DELETE FROM t WHERE id=1"]);
    assert_quiet(&["psql", "-c", "delete from t\nwhere id = 1"]);
    assert_quiet(&["psql", "-c", "SELECT * FROM users"]);
    assert_quiet(&["psql", "-d", "prod"]);
    assert_quiet(&["mysql", "-e", "SHOW TABLES"]);
    assert_quiet(&["sqlite3", "app.db", "SELECT 1"]);
    assert_quiet(&["mongosh", "--eval", "db.users.find()"]);
    assert_quiet(&["mongosh", "--eval", "db.users.deleteMany({age: 3})"]);
    assert_quiet(&["redis-cli", "GET", "flush"]);
    assert_quiet(&["redis-cli", "KEYS", "*"]);
}

#[test]
fn infrastructure_tools() {
    assert_fires(&["terraform", "destroy", "-auto-approve"], "terraform-destroy");
    assert_fires(&["terraform", "-chdir=infra", "destroy"], "terraform-destroy");
    assert_fires(&["terraform", "apply", "-destroy"], "terraform-destroy");
    assert_quiet(&["terraform", "plan"]);
    assert_quiet(&["terraform", "apply", "-auto-approve"]);
    assert_fires(&["pulumi", "destroy", "--yes"], "pulumi-destroy");
    assert_quiet(&["pulumi", "up"]);
    assert_fires(&["kubectl", "delete", "pod", "api-1"], "kubectl-delete");
    assert_fires(&["kubectl", "-n", "prod", "delete", "deploy", "api"], "kubectl-delete");
    assert_quiet(&["kubectl", "get", "pods"]);
    assert_quiet(&["kubectl", "apply", "-f", "deploy.yaml"]);
    assert_fires(&["helm", "uninstall", "api"], "helm-uninstall");
    assert_quiet(&["helm", "install", "api", "./chart"]);
}

#[test]
fn cloud_clis() {
    assert_fires(&["aws", "rds", "delete-db-instance", "--db-instance-identifier", "prod"], "aws-delete");
    assert_fires(&["aws", "--profile", "prod", "s3", "rb", "s3://bucket", "--force"], "aws-delete");
    assert_fires(&["aws", "s3", "rm", "s3://bucket", "--recursive"], "aws-delete");
    assert_quiet(&["aws", "s3", "ls"]);
    assert_quiet(&["aws", "ec2", "describe-instances"]);
    assert_quiet(&["aws", "s3", "rb", "s3://bucket"]);
    assert_quiet(&["aws", "s3", "rm", "s3://bucket/key"]);
    assert_fires(&["gcloud", "compute", "instances", "delete", "vm-1"], "gcloud-delete");
    assert_fires(&["gcloud", "sql", "instances", "delete", "prod", "--quiet"], "gcloud-delete");
    assert_quiet(&["gcloud", "compute", "instances", "list"]);
    assert_fires(&["az", "group", "delete", "-n", "rg"], "az-delete");
    assert_quiet(&["az", "group", "list"]);
}

#[test]
fn snapshots_and_volumes_are_t1490() {
    let found = assert_fires(&["fly", "volumes", "destroy", "vol_1"], "fly-destroy");
    assert_eq!(found.mitre, "T1485");
    let all = evaluator().evaluate_all(&exec_in(PROJECT, &["fly", "volumes", "destroy", "vol_1"]));
    assert!(all.iter().any(|found| found.rule_id == "volume-and-snapshot-delete" && found.mitre == "T1490"));
    let volume = assert_fires(&["docker", "volume", "rm", "pgdata"], "container-volume-remove");
    assert_eq!(volume.mitre, "T1490");
}

#[test]
fn paas_clis() {
    assert_fires(&["railway", "down"], "railway-destroy");
    assert_fires(&["railway", "delete"], "railway-destroy");
    assert_fires(&["railway", "volume", "delete"], "railway-destroy");
    assert_quiet(&["railway", "up"]);
    assert_fires(&["flyctl", "destroy", "my-app"], "fly-destroy");
    assert_fires(&["fly", "apps", "destroy", "my-app"], "fly-destroy");
    assert_fires(&["fly", "machine", "delete", "abc"], "fly-destroy");
    assert_quiet(&["fly", "deploy"]);
    assert_fires(&["heroku", "apps:destroy", "--app", "x", "--confirm", "x"], "heroku-destroy");
    assert_fires(&["heroku", "pg:reset", "DATABASE_URL"], "heroku-destroy");
    assert_quiet(&["heroku", "logs", "--tail"]);
}

#[test]
fn git_history_and_worktree() {
    for argv in [
        &["git", "push", "--force"][..],
        &["git", "push", "-f", "origin", "main"],
        &["git", "push", "origin", "main", "--force-with-lease"],
        &["git", "push", "origin", "+main"],
        &["git", "push", "-uf", "origin", "main"],
        &["git", "-C", "repo", "push", "-f"],
    ] {
        assert_fires(argv, "git-push-force");
    }
    assert_quiet(&["git", "push"]);
    assert_quiet(&["git", "push", "origin", "main"]);
    assert_quiet(&["git", "push", "--follow-tags"]);
    assert_fires(&["git", "reset", "--hard", "HEAD~3"], "git-reset-hard");
    assert_quiet(&["git", "reset", "--soft", "HEAD~1"]);
    for argv in [
        &["git", "clean", "-fdx"][..],
        &["git", "clean", "-xf"],
        &["git", "clean", "-fd"],
        &["git", "clean", "-dff"],
        &["git", "clean", "-f", "-d"],
        &["git", "clean", "--force", "-X"],
    ] {
        assert_fires(argv, "git-clean-force");
    }
    assert_quiet(&["git", "clean", "-n", "-d"]);
    assert_quiet(&["git", "clean", "-f"]);
    assert_quiet(&["git", "clean", "-fdn"]);
    assert_quiet(&["git", "status"]);
    assert_quiet(&["git", "commit", "-m", "rm -rf / --force"]);
}

#[test]
fn http_delete() {
    for argv in [
        &["curl", "-X", "DELETE", "https://api/x"][..],
        &["curl", "-XDELETE", "https://api/x"],
        &["curl", "--request", "DELETE", "https://api/x"],
        &["curl", "--request=delete", "https://api/x"],
        &["wget", "--method=DELETE", "https://api/x"],
    ] {
        assert_fires(argv, "http-delete");
    }
    assert_fires(&["http", "DELETE", "https://api/x"], "httpie-delete");
    assert_fires(&["https", "delete", "api.example.com/x"], "httpie-delete");
    assert_fires(&["xh", "DELETE", "api/x"], "httpie-delete");
    assert_quiet(&["curl", "-X", "GET", "https://api/x"]);
    assert_quiet(&["curl", "-X", "POST", "-d", "DELETE", "https://api/x"]);
    assert_quiet(&["curl", "https://api/x"]);
    assert_quiet(&["wget", "https://x"]);
    assert_quiet(&["http", "GET", "api/x"]);
}

#[test]
fn containers() {
    assert_fires(&["docker", "rm", "-f", "web"], "container-force-remove");
    assert_fires(&["docker", "container", "rm", "--force", "web"], "container-force-remove");
    assert_fires(&["podman", "rm", "-f", "web"], "container-force-remove");
    assert_fires(&["docker", "system", "prune", "-af"], "container-volume-remove");
    assert_fires(&["podman", "volume", "prune"], "container-volume-remove");
    assert_quiet(&["docker", "rm", "web"]);
    assert_quiet(&["docker", "ps", "-a"]);
    assert_quiet(&["docker", "volume", "ls"]);
    assert_quiet(&["docker", "run", "--rm", "-f", "x"]);
}

#[test]
fn interpreters_with_inline_scripts() {
    assert_fires(&["python3", "-c", "import shutil; shutil.rmtree('/srv/data')"], "interpreter-recursive-delete");
    assert_fires(&["node", "-e", "require('fs').rmSync('/srv', {recursive: true})"], "interpreter-recursive-delete");
    assert_fires(&["perl", "-e", "use File::Path; remove_tree('/srv')"], "interpreter-recursive-delete");
    assert_fires(&["ruby", "-e", "FileUtils.rm_rf('/srv')"], "interpreter-recursive-delete");
    assert_quiet(&["python3", "-c", "print(1)"]);
    assert_quiet(&["python3", "script.py"]);
}

#[test]
fn shell_scripts_are_split_and_followed() {
    let found = assert_fires(&sh("cd /srv && rm -rf data"), "rm-recursive-force");
    assert_eq!(found.reason, "rm -rf outside scratch roots: /srv/data");
    assert_eq!(found.via, vec!["sh -c".to_string()]);
    assert_eq!(found.command, "rm -rf data");
    assert_quiet(&sh("cd /tmp && rm -rf data"));
    assert_quiet(&sh("cd /tmp/build; rm -rf ./out"));
    assert_fires(&sh("cd /tmp; cd /srv; rm -rf data"), "rm-recursive-force");
    assert_fires(&sh("cd; rm -rf data"), "rm-recursive-force");
    assert_fires(&["bash", "-lc", "ls && rm -rf /srv"], "rm-recursive-force");
    assert_fires(&["bash", "-o", "pipefail", "-c", "true|rm -rf /srv"], "rm-recursive-force");
    assert_fires(&["zsh", "-c", "if true; then rm -fr /srv; fi"], "rm-recursive-force");
    assert_fires(&sh("ls||git push --force"), "git-push-force");
    assert_fires(&sh("make clean &>/dev/null&&rm -rf /srv 2>&1"), "rm-recursive-force");
    assert_fires(&sh("(cd /srv && rm -rf data)"), "rm-recursive-force");
    assert_fires(&sh("X=1 rm -rf /srv"), "rm-recursive-force");
    assert_fires(&sh("echo start\n  rm -rf /srv # cleanup\n"), "rm-recursive-force");
    assert_fires(&sh("echo $(rm -rf /srv)"), "rm-recursive-force");
    assert_fires(&sh("echo \"`rm -rf /srv`\""), "rm-recursive-force");
    assert_fires(&sh("sh -c 'bash -c \"rm -rf /srv\"'"), "rm-recursive-force");
    assert_fires(&sh("/bin/rm -rf /srv"), "rm-recursive-force");
    assert_fires(&sh("for d in a b; do rm -rf $d; done"), "rm-recursive-force");
    // Quoted text is not a command.
    assert_quiet(&sh("echo 'rm -rf /srv; git push --force'"));
    assert_quiet(&sh("git commit -m \"drop: rm -rf / && psql -c 'DROP DATABASE x'\""));
    assert_quiet(&sh("ls -la # rm -rf /srv"));
    assert_quiet(&sh("echo $((1+2)) && ls"));
    assert_quiet(&["bash", "script.sh"]);
    assert_quiet(&["bash", "-x", "script.sh", "-c"]);
}

#[test]
fn sql_through_shell_stdin() {
    assert_fires(&["bash", "-c", "echo 'DROP DATABASE prod' | psql -h db"], "sql-destructive");
    assert_fires(
        &["bash", "-c", "psql -h db <<EOF\nSELECT 1;\nDROP DATABASE prod;\nEOF\necho done"],
        "sql-destructive",
    );
    assert_fires(&["bash", "-c", "psql <<-'SQL'\n\tdelete from users;\n\tSQL"], "sql-destructive");
    assert_fires(&["bash", "-c", "cat <<EOF | mysql\nTRUNCATE t;\nEOF"], "sql-destructive");
    assert_fires(&["bash", "-c", "redis-cli <<< FLUSHALL"], "redis-flush");
    assert_fires(&["bash", "-c", "printf 'db.dropDatabase()' | mongosh prod"], "mongo-destructive");
    assert_quiet(&["bash", "-c", "psql <<EOF\nSELECT * FROM users;\nEOF\nrm -rf /tmp/x"]);
    assert_quiet(&["bash", "-c", "echo 'DROP DATABASE prod' > notes.txt"]);
}

#[test]
fn wrappers_are_looked_through() {
    let found = assert_fires(&["sudo", "rm", "-rf", "/srv"], "rm-recursive-force");
    assert_eq!(found.via, vec!["sudo".to_string()]);
    assert_fires(&["sudo", "-u", "postgres", "psql", "-c", "DROP DATABASE prod"], "sql-destructive");
    assert_fires(&["sudo", "-E", "FOO=1", "bash", "-c", "rm -rf /srv"], "rm-recursive-force");
    assert_fires(&["env", "FOO=1", "rm", "-rf", "/srv"], "rm-recursive-force");
    assert_fires(&["env", "-i", "-u", "HOME", "rm", "-rf", "/srv"], "rm-recursive-force");
    assert_fires(&["env", "-S", "rm -rf /srv"], "rm-recursive-force");
    assert_fires(&["env", "-C", "/srv", "rm", "-rf", "data"], "rm-recursive-force");
    assert_quiet(&["env", "-C", "/tmp", "rm", "-rf", "data"]);
    assert_fires(&["nohup", "rm", "-rf", "/srv"], "rm-recursive-force");
    assert_fires(&["timeout", "10", "rm", "-rf", "/srv"], "rm-recursive-force");
    assert_fires(&["timeout", "-s", "KILL", "10s", "git", "push", "-f"], "git-push-force");
    assert_fires(&["nice", "-n", "10", "rm", "-rf", "/srv"], "rm-recursive-force");
    assert_fires(&["busybox", "rm", "-rf", "/srv"], "rm-recursive-force");
    assert_fires(&["busybox", "sh", "-c", "rm -rf /srv"], "rm-recursive-force");
    let via = assert_fires(&["sudo", "bash", "-c", "cd /srv; rm -rf data"], "rm-recursive-force").via;
    assert_eq!(via, vec!["sudo".to_string(), "bash -c".to_string()]);
    assert_quiet(&["sudo", "ls", "-la"]);
    assert_quiet(&["timeout", "5", "curl", "https://x"]);
}

#[test]
fn xargs_operands_are_unknown() {
    let found = assert_fires(&["xargs", "rm", "-rf"], "rm-recursive-force");
    assert!(found.reason.contains("standard input"), "{}", found.reason);
    assert_fires(&sh("find . -name '*.o' | xargs -0 rm -rf"), "rm-recursive-force");
    assert_quiet(&["xargs", "rm", "-f"]);
}

#[test]
fn nesting_is_bounded() {
    let mut script = String::from("rm -rf /srv");
    for _ in 0..20 {
        script = format!("sh -c {}", shlex::try_quote(&script).map(|quoted| quoted.into_owned()).unwrap_or_default());
    }
    // Deeper than MAX_NESTING: evaluation stops without overflowing the stack.
    let _ = evaluate_in(PROJECT, &["sh", "-c", &script]);
    let huge = "true;".repeat(100_000);
    assert_quiet(&["sh", "-c", &huge]);
}

#[test]
fn deeply_nested_quotes_do_not_exhaust_the_stack() {
    // Deeply nested quotes and substitutions do not exhaust the lexer's stack.
    let deep = "\"$(".repeat(50_000);
    assert_quiet(&["sh", "-c", &deep]);
}

#[test]
fn deeply_nested_substitutions_do_not_exhaust_the_stack() {
    let deep = "$(".repeat(50_000);
    let _ = evaluate_in(PROJECT, &["sh", "-c", &deep]);
}

#[test]
fn most_serious_match_wins() {
    let policy = parse_ok(
        "\
destructive:
  rules:
    - id: watch-git
      mode: monitor
      severity: critical
      match: {programs: [git]}
    - id: low-git
      severity: low
      match: {programs: [git]}
    - id: high-git
      severity: high
      match: {programs: [git]}
",
    );
    let found = DestructiveEvaluator::new(&policy).evaluate(&exec_in(PROJECT, &["git", "status"]));
    assert_eq!(found.map(|found| found.rule_id), Some("high-git".to_string()));
}

#[test]
fn match_rule_index_is_the_compiled_index() {
    let policy = default_policy();
    let compiled = policy.compile(&crate::policy::CompileContext::default());
    let found = DestructiveEvaluator::new(&policy).evaluate(&exec_in(PROJECT, &["git", "reset", "--hard"]));
    let index = found.as_ref().map(|found| found.rule as usize);
    assert_eq!(index.map(|index| compiled.rules[index].id.as_str()), Some("git-reset-hard"));
}

#[test]
fn relative_or_empty_cwd_is_unknown() {
    assert_fires_in("", &["rm", "-rf", "data"], "rm-recursive-force");
    assert_fires_in("relative", &["rm", "-rf", "data"], "rm-recursive-force");
    assert_quiet_in("", &["rm", "-rf", "/tmp/data"]);
}
