//! Input expansion with the default rules and a fake file system: environment variables,
//! config files, script files and ssh, and the bad inputs that must be noted or ignored.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::destructive::{DestructiveEvaluator, Evaluation, ExecContext, HeldFiles, InputError, Source};
use crate::policy::default_policy;

const HOME: &str = "/home/alice";
const REPO: &str = "/home/alice/repo";

fn evaluator() -> &'static DestructiveEvaluator {
    static EVALUATOR: OnceLock<DestructiveEvaluator> = OnceLock::new();
    EVALUATOR.get_or_init(|| DestructiveEvaluator::new(&default_policy()))
}

/// Files by absolute path; an `Err` entry stands for a file that cannot be read.
#[derive(Default)]
struct FakeFiles(HashMap<String, Result<Vec<u8>, InputError>>);

impl FakeFiles {
    fn with(mut self, path: &str, text: &str) -> Self {
        self.0.insert(path.into(), Ok(text.as_bytes().to_vec()));
        self
    }
    fn bytes(mut self, path: &str, bytes: Vec<u8>) -> Self {
        self.0.insert(path.into(), Ok(bytes));
        self
    }
    fn failing(mut self, path: &str, err: InputError) -> Self {
        self.0.insert(path.into(), Err(err));
        self
    }
}

impl HeldFiles for FakeFiles {
    fn read(&self, path: &str, max_len: u64) -> Result<(Vec<u8>, bool), InputError> {
        match self.0.get(path) {
            None => Err(InputError::NotFound),
            Some(Err(err)) => Err(err.clone()),
            Some(Ok(bytes)) => {
                let max = usize::try_from(max_len).unwrap_or(usize::MAX);
                Ok((bytes[..bytes.len().min(max)].to_vec(), bytes.len() > max))
            }
        }
    }
}

fn exec(cwd: &str, env: &[(&str, &str)], argv: &[&str]) -> ExecContext {
    let mut env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    if !env.iter().any(|(k, _)| k == "HOME") {
        env.push(("HOME".into(), HOME.into()));
    }
    ExecContext {
        exe: format!("/usr/bin/{}", argv[0]),
        argv: argv.iter().map(|a| a.to_string()).collect(),
        cwd: cwd.into(),
        env,
    }
}

fn judge(files: &FakeFiles, cwd: &str, env: &[(&str, &str)], argv: &[&str]) -> Evaluation {
    evaluator().judge(&exec(cwd, env, argv), files)
}

/// The best match's rule and source.
#[track_caller]
fn fires(evaluation: &Evaluation, rule: &str) -> Source {
    let best = evaluation.best().unwrap_or_else(|| panic!("no match, expected {rule}: {evaluation:#?}"));
    assert_eq!(best.rule_id, rule, "{evaluation:#?}");
    best.source.clone()
}

#[track_caller]
fn quiet(evaluation: &Evaluation) {
    assert!(evaluation.matches.is_empty(), "expected no match: {evaluation:#?}");
}

fn file(path: &str, line: usize) -> Source {
    Source::file(path, Some(line))
}

// ---- environment variables ------------------------------------------------------------------

#[test]
fn terraform_arguments_from_the_environment() {
    let none = FakeFiles::default();
    let apply = ["terraform", "apply", "-auto-approve"];
    let found = judge(&none, REPO, &[("TF_CLI_ARGS_apply", "-destroy")], &apply);
    assert_eq!(fires(&found, "terraform-destroy"), Source::env("TF_CLI_ARGS_apply"));
    let best = found.best().unwrap();
    assert!(best.reason.contains("environment variable TF_CLI_ARGS_apply"), "{}", best.reason);
    assert!(best.command.contains("-destroy"), "{}", best.command);
    let found = judge(&none, REPO, &[("TF_CLI_ARGS", "-input=false -destroy")], &apply);
    assert_eq!(fires(&found, "terraform-destroy"), Source::env("TF_CLI_ARGS"));
    // Global options before the command; OpenTofu reads the same variables.
    let found = judge(&none, REPO, &[("TF_CLI_ARGS_apply", "-destroy")], &["tofu", "-chdir=infra", "apply"]);
    fires(&found, "terraform-destroy");
    // Another command's variable, or none: nothing.
    quiet(&judge(&none, REPO, &[("TF_CLI_ARGS_plan", "-destroy")], &apply));
    quiet(&judge(&none, REPO, &[], &apply));
    // The argv alone still counts, as argv.
    assert_eq!(fires(&judge(&none, REPO, &[], &["terraform", "destroy"]), "terraform-destroy"), Source::Argv);
}

#[test]
fn an_environment_variable_with_bad_quoting_is_noted_not_judged() {
    let found =
        judge(&FakeFiles::default(), REPO, &[("TF_CLI_ARGS_apply", "-destroy \"unclosed")], &["terraform", "apply"]);
    quiet(&found);
    assert!(found.notes.iter().any(|n| n.contains("TF_CLI_ARGS_apply") && n.contains("quoting")), "{found:#?}");
}

#[test]
fn git_aliases_from_the_environment_and_the_command_line() {
    let none = FakeFiles::default();
    let env = [("GIT_CONFIG_COUNT", "2"), ("GIT_CONFIG_KEY_0", "user.name"), ("GIT_CONFIG_VALUE_0", "a")];
    let mut env = env.to_vec();
    env.extend([("GIT_CONFIG_KEY_1", "alias.yolo"), ("GIT_CONFIG_VALUE_1", "push --force origin")]);
    assert_eq!(fires(&judge(&none, REPO, &env, &["git", "yolo"]), "git-push-force"), Source::env("GIT_CONFIG_VALUE_1"));
    let parameters = [("GIT_CONFIG_PARAMETERS", "'core.pager'='less' 'alias.yolo'='push -f'")];
    let found = judge(&none, REPO, &parameters, &["git", "yolo"]);
    assert_eq!(fires(&found, "git-push-force"), Source::env("GIT_CONFIG_PARAMETERS"));
    let found = judge(&none, REPO, &[], &["git", "-c", "alias.yolo=push --force", "yolo"]);
    assert_eq!(fires(&found, "git-push-force"), Source::Argv);
    // A missing pair, a count that is no number, bad quoting: noted, nothing judged.
    for env in [
        vec![("GIT_CONFIG_COUNT", "1")],
        vec![("GIT_CONFIG_COUNT", "many")],
        vec![("GIT_CONFIG_PARAMETERS", "'alias.yolo'='push -f")],
    ] {
        let found = judge(&none, REPO, &env, &["git", "yolo"]);
        quiet(&found);
        assert!(!found.notes.is_empty(), "{env:?}: {found:#?}");
    }
}

// ---- config files -----------------------------------------------------------------------------

#[test]
fn curl_config_files_name_their_line() {
    let cfg = "# the API\nurl = \"http://127.0.0.1:9/items/1\"\nrequest = \"DELETE\"\n";
    let files = FakeFiles::default().with(&format!("{REPO}/cfg"), cfg);
    let found = judge(&files, REPO, &[], &["curl", "-K", "cfg"]);
    assert_eq!(fires(&found, "http-delete"), file(&format!("{REPO}/cfg"), 3));
    let reason = &found.best().unwrap().reason;
    assert!(reason.contains("could change after release"), "{reason}");
    for argv in [&["curl", "--config", "cfg"][..], &["curl", "-Kcfg"], &["curl", "-s", "--config=cfg"]] {
        fires(&judge(&files, REPO, &[], argv), "http-delete");
    }
    // The default .curlrc, unless -q comes first; $CURL_HOME first.
    let files = FakeFiles::default().with(&format!("{HOME}/.curlrc"), "-X DELETE\n");
    assert_eq!(
        fires(&judge(&files, REPO, &[], &["curl", "http://x/1"]), "http-delete"),
        file(&format!("{HOME}/.curlrc"), 1)
    );
    quiet(&judge(&files, REPO, &[], &["curl", "-q", "http://x/1"]));
    let files = files.with("/etc/curl/.curlrc", "silent\n");
    quiet(&judge(&files, REPO, &[("CURL_HOME", "/etc/curl")], &["curl", "http://x/1"]));
    // A harmless config: nothing.
    let files = FakeFiles::default().with(&format!("{REPO}/cfg"), "request = GET\nurl = http://x\n");
    quiet(&judge(&files, REPO, &[], &["curl", "-K", "cfg"]));
}

#[test]
fn unreadable_missing_binary_and_huge_inputs_are_noted_or_ignored() {
    let cfg = format!("{REPO}/cfg");
    // Missing: curl fails on its own; nothing to judge, nothing to say.
    let found = judge(&FakeFiles::default(), REPO, &[], &["curl", "-K", "cfg"]);
    quiet(&found);
    assert!(found.notes.is_empty(), "{found:#?}");
    let unreadable = FakeFiles::default().failing(&cfg, InputError::Unreadable("permission denied".into()));
    let found = judge(&unreadable, REPO, &[], &["curl", "-K", "cfg"]);
    quiet(&found);
    assert!(found.notes.iter().any(|n| n.contains(&cfg) && n.contains("permission denied")), "{found:#?}");
    let fifo = FakeFiles::default().failing(&cfg, InputError::NotRegular);
    assert!(judge(&fifo, REPO, &[], &["curl", "-K", "cfg"]).notes.iter().any(|n| n.contains("not a regular file")));
    let binary = FakeFiles::default().bytes(&cfg, b"request = DELETE\n\0\x7fELF".to_vec());
    let found = judge(&binary, REPO, &[], &["curl", "-K", "cfg"]);
    quiet(&found);
    assert!(found.notes.iter().any(|n| n.contains("binary")), "{found:#?}");
    // Huge: the first MAX_INPUT_BYTES are judged, and the record says so.
    let mut script = "rm -rf /srv/data\n".to_string();
    script.push_str(&"echo padding\n".repeat(100_000));
    let huge = FakeFiles::default().with(&format!("{REPO}/x.sh"), &script);
    let found = judge(&huge, REPO, &[], &["bash", "x.sh"]);
    assert_eq!(fires(&found, "rm-recursive-force"), file(&format!("{REPO}/x.sh"), 1));
    assert!(found.notes.iter().any(|n| n.contains("first")), "{found:#?}");
    // A relative path without a known working directory.
    let found = judge(&FakeFiles::default(), "", &[], &["curl", "-K", "cfg"]);
    assert!(found.notes.iter().any(|n| n.contains("working directory")), "{found:#?}");
    // Standard input.
    assert!(!judge(&FakeFiles::default(), REPO, &[], &["curl", "-K", "-"]).notes.is_empty());
}

#[test]
fn git_aliases_from_config_files() {
    let repo_config = format!("{REPO}/.git/config");
    let files = FakeFiles::default()
        .with(&repo_config, "[core]\n\tbare = false\n[alias]\n\tst = status\n\tyolo = push --force origin HEAD\n");
    // Found from a subdirectory of the work tree.
    let found = judge(&files, &format!("{REPO}/src/deep"), &[], &["git", "yolo"]);
    assert_eq!(fires(&found, "git-push-force"), file(&repo_config, 5));
    assert!(found.best().unwrap().via.iter().any(|via| via.contains("git alias yolo")), "{found:#?}");
    // With -C from elsewhere; a harmless alias and an unknown command are quiet.
    fires(&judge(&files, "/", &[], &["git", "-C", REPO, "yolo"]), "git-push-force");
    quiet(&judge(&files, REPO, &[], &["git", "st"]));
    quiet(&judge(&files, REPO, &[], &["git", "nosuchalias"]));
    quiet(&judge(&files, "/srv", &[], &["git", "yolo"]));
    // The user's ~/.gitconfig and the XDG file; the repository's wins over both.
    let user = FakeFiles::default().with(&format!("{HOME}/.gitconfig"), "[alias]\n  pf = push -f\n");
    assert_eq!(
        fires(&judge(&user, "/srv", &[], &["git", "pf"]), "git-push-force"),
        file(&format!("{HOME}/.gitconfig"), 2)
    );
    let xdg = FakeFiles::default().with("/cfg/git/config", "[alias]\n  pf = push -f\n");
    fires(&judge(&xdg, "/srv", &[("XDG_CONFIG_HOME", "/cfg")], &["git", "pf"]), "git-push-force");
    let shadowed = user.with(&repo_config, "[alias]\n  pf = pull\n");
    quiet(&judge(&shadowed, REPO, &[], &["git", "pf"]));
    // An alias of an alias, and a shell alias.
    let chain = FakeFiles::default().with(&repo_config, "[alias]\n a = b --force\n b = push\n");
    fires(&judge(&chain, REPO, &[], &["git", "a"]), "git-push-force");
    let shell = FakeFiles::default().with(&repo_config, "[alias]\n\tnuke = \"!git push --force && rm -rf /srv/x\"\n");
    let found = judge(&shell, REPO, &[], &["git", "nuke"]);
    assert!(found.matches.iter().any(|m| m.rule_id == "rm-recursive-force" && m.source == file(&repo_config, 2)));
    // A worktree's .git file points at the common directory's config.
    let worktree = FakeFiles::default()
        .with(&format!("{REPO}/.git"), "gitdir: /home/alice/main/.git/worktrees/repo\n")
        .with("/home/alice/main/.git/worktrees/repo/commondir", "../..\n")
        .with("/home/alice/main/.git/config", "[alias]\n yolo = push -f\n");
    assert_eq!(
        fires(&judge(&worktree, REPO, &[], &["git", "yolo"]), "git-push-force"),
        file("/home/alice/main/.git/config", 2)
    );
}

#[test]
fn recursive_missing_and_builtin_aliases_are_safe() {
    let repo_config = format!("{REPO}/.git/config");
    let looping = FakeFiles::default().with(&repo_config, "[alias]\n a = b\n b = c -f\n c = a\n");
    let found = judge(&looping, REPO, &[], &["git", "a"]);
    quiet(&found);
    assert!(found.notes.iter().any(|n| n.contains("loop")), "{found:#?}");
    let valueless = FakeFiles::default().with(&repo_config, "[alias]\n a\n");
    assert!(judge(&valueless, REPO, &[], &["git", "a"]).notes.iter().any(|n| n.contains("no value")));
    // Git never lets an alias replace its own command.
    let builtin = FakeFiles::default().with(&repo_config, "[alias]\n push = push --force\n");
    quiet(&judge(&builtin, REPO, &[], &["git", "push", "origin"]));
    let quoting = FakeFiles::default().with(&repo_config, "[alias]\n q = push 'unclosed\n");
    assert!(judge(&quoting, REPO, &[], &["git", "q"]).notes.iter().any(|n| n.contains("quoting")));
    let garbage = FakeFiles::default().with(&repo_config, "[[[\n=\n\u{0}");
    quiet(&judge(&garbage, REPO, &[], &["git", "a"]));
}

// ---- script files ----------------------------------------------------------------------------

#[test]
fn shell_script_files_are_judged_like_sh_c_with_their_lines() {
    let script = format!("{REPO}/x.sh");
    let files =
        FakeFiles::default().with(&script, "#!/bin/sh\nset -e\necho cleaning\n\nrm -rf /srv/protected\necho done\n");
    for argv in [&["bash", "x.sh"][..], &["sh", "-e", "x.sh", "arg"], &["bash", "--", "x.sh"], &["dash", "-x", "x.sh"]]
    {
        let found = judge(&files, REPO, &[], argv);
        assert_eq!(fires(&found, "rm-recursive-force"), file(&script, 5), "{argv:?}");
        let reason = &found.best().unwrap().reason;
        assert!(reason.contains(&format!("{script} line 5")) && reason.contains("could change after release"));
    }
    // Absolute path, the script's own cd, substitutions on later lines, a script calling
    // another script.
    let files = FakeFiles::default()
        .with("/opt/s/a.sh", "cd /tmp\nrm -rf build\necho $(\n  true\n  rm -rf /var/lib/db\n)\n")
        .with("/opt/s/b.sh", "echo calling\nbash /opt/s/a.sh\n");
    let found = judge(&files, REPO, &[], &["bash", "/opt/s/a.sh"]);
    assert_eq!(fires(&found, "rm-recursive-force"), file("/opt/s/a.sh", 5));
    assert_eq!(found.matches.len(), 1, "rm -rf build below /tmp is scratch: {found:#?}");
    assert_eq!(fires(&judge(&files, REPO, &[], &["sh", "/opt/s/b.sh"]), "rm-recursive-force"), file("/opt/s/a.sh", 5));
    // Harmless, from standard input, inline: nothing read.
    let harmless = FakeFiles::default().with(&script, "echo hi\nrm -rf /tmp/cache\n");
    quiet(&judge(&harmless, REPO, &[], &["bash", "x.sh"]));
    quiet(&judge(&files, REPO, &[], &["bash", "-s", "/opt/s/a.sh"]));
    quiet(&judge(&files, REPO, &[], &["bash", "-c", "echo", "/opt/s/a.sh"]));
    // A script that runs itself stops at the nesting bound.
    let recursive = FakeFiles::default().with(&script, "bash x.sh\n");
    quiet(&judge(&recursive, REPO, &[], &["bash", "x.sh"]));
}

#[test]
fn interpreter_and_sql_files_are_judged_like_their_inline_forms() {
    let py = "import os\nimport shutil\n\nshutil.rmtree('/srv/data')\n";
    let files = FakeFiles::default()
        .with(&format!("{REPO}/clean.py"), py)
        .with(&format!("{REPO}/ok.py"), "print('hi')\n")
        .with(&format!("{REPO}/drop.sql"), "SELECT 1;\n-- cleanup\nDROP TABLE users;\n")
        .with("/opt/x.pl", "use File::Path;\nremove_tree('/srv');\n");
    let found = judge(&files, REPO, &[], &["python3", "-u", "clean.py", "--yes"]);
    assert_eq!(fires(&found, "interpreter-recursive-delete"), file(&format!("{REPO}/clean.py"), 4));
    assert_eq!(found.best().unwrap().command, "python3 -u clean.py --yes");
    quiet(&judge(&files, REPO, &[], &["python3", "ok.py"]));
    quiet(&judge(&files, REPO, &[], &["python3", "-m", "clean.py"]));
    assert_eq!(
        fires(&judge(&files, REPO, &[], &["perl", "/opt/x.pl"]), "interpreter-recursive-delete"),
        file("/opt/x.pl", 1)
    );
    for argv in [&["psql", "-f", "drop.sql"][..], &["psql", "-h", "db", "--file=drop.sql"], &["psql", "-fdrop.sql"]] {
        let found = judge(&files, REPO, &[], argv);
        assert_eq!(fires(&found, "sql-destructive"), file(&format!("{REPO}/drop.sql"), 3), "{argv:?}");
    }
}

// ---- ssh ------------------------------------------------------------------------------------

#[test]
fn ssh_remote_commands_are_judged_as_shell_scripts() {
    let none = FakeFiles::default();
    let found = judge(&none, REPO, &[], &["ssh", "stand-in", "rm -rf /srv/x"]);
    assert_eq!(fires(&found, "rm-recursive-force"), Source::Argv);
    assert_eq!(found.best().unwrap().via, vec!["ssh stand-in".to_string()]);
    assert!(found.best().unwrap().reason.ends_with("/srv/x (the remote command of ssh stand-in)"), "{found:#?}");
    let found = judge(
        &none,
        REPO,
        &[],
        &["ssh", "-i", "k", "-p", "22", "-o", "A=b", "me@h", "cd", "/", "&&", "rm", "-rf", "srv"],
    );
    fires(&found, "rm-recursive-force");
    fires(&judge(&none, REPO, &[], &["ssh", "h", "psql -c 'DROP DATABASE prod'"]), "sql-destructive");
    quiet(&judge(&none, REPO, &[], &["ssh", "h", "ls -la /srv"]));
    quiet(&judge(&none, REPO, &[], &["ssh", "h"]));
    // Wrapped in a shell, too.
    fires(&judge(&none, REPO, &[], &["sh", "-c", "ssh h 'rm -rf /srv/x'"]), "rm-recursive-force");
}

#[test]
fn a_hash_bang_script_is_judged_by_its_name_and_its_content() {
    // As the kernel shows `terraform apply` when terraform is a `#!/bin/sh` script.
    let files = FakeFiles::default().with("/opt/bin/terraform", "#!/bin/sh\necho \"$@\"\n");
    let mut context = exec(REPO, &[("TF_CLI_ARGS_apply", "-destroy")], &["/bin/sh", "/opt/bin/terraform", "apply"]);
    context.exe = "/opt/bin/terraform".into();
    let found = evaluator().judge(&context, &files);
    assert_eq!(fires(&found, "terraform-destroy"), Source::env("TF_CLI_ARGS_apply"));
    assert_eq!(found.best().unwrap().command, "/opt/bin/terraform apply -destroy");
    // The script's own content is judged too.
    let files = FakeFiles::default().with("/opt/bin/tool", "#!/bin/sh -e\nrm -rf /srv/data\n");
    let mut context = exec(REPO, &[], &["/bin/sh", "-e", "/opt/bin/tool"]);
    context.exe = "/opt/bin/tool".into();
    assert_eq!(fires(&evaluator().judge(&context, &files), "rm-recursive-force"), file("/opt/bin/tool", 2));
}

#[test]
fn a_script_longer_than_the_command_budget_says_so() {
    let script = "echo x\n".repeat(crate::destructive::MAX_COMMANDS + 10);
    let files = FakeFiles::default().with(&format!("{REPO}/long.sh"), &script);
    let found = judge(&files, REPO, &[], &["bash", "long.sh"]);
    quiet(&found);
    assert!(found.notes.iter().any(|n| n.contains("commands were judged")), "{:?}", found.notes);
}
