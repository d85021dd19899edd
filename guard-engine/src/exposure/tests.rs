use super::access::{Identity, Perm};
use super::protection::Protector;
use super::secrets::{fingerprint, in_environment, in_text, looks_binary};
use super::*;
use crate::policy::{CompileContext, CompiledPolicy, default_policy, parse_policy};

// Synthetic tokens of the real formats (random-looking, never issued).
const GITHUB: &str = "ghp_Zq3vL8mR2tY7wK1nB5xC9dF4gH6jP0sA2eQ8";
const AWS_ID: &str = "AKIAZQ3VL8MR2TY7WK1N";
const AWS_SECRET: &str = "q8Xr2Lm9Tz4Kv7Wb1Nc5Yd3Fg6Hj0Ps2Ea8Ub4Qi";
const GITLAB: &str = "glpat-Zq3vL8mR2tY7wK1nB5xC";
const PYPI: &str = "pypi-AgEIcHlwaS5vcmcCJDQ5ZTk3ZDBhLTY5MzctNGM0Yi1iZmQ3LWRmYzM4MjJkZmJkZgACKlszLCJhYmMiXQ";
const ANTHROPIC: &str = "sk-ant-api03-Zq3vL8mR2tY7wK1nB5xC9dF4gH6jP0sA";

fn compiled(home: &str) -> CompiledPolicy {
    default_policy().compile(&CompileContext::with_homes(vec![home.to_string()]))
}

#[test]
fn fingerprint_is_stable_short_hex_and_tells_values_apart() {
    let first = fingerprint(GITHUB);
    assert_eq!(first, fingerprint(GITHUB));
    assert_eq!(first.len(), 16);
    assert!(first.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(first, fingerprint(GITLAB));
    assert!(!GITHUB.contains(&first));
}

#[test]
fn a_token_exported_in_a_shell_rc_file_is_found_by_format_with_its_name() {
    let hits =
        in_text("# my shell\nalias ll='ls -l'\nexport GITHUB_TOKEN=ghp_Zq3vL8mR2tY7wK1nB5xC9dF4gH6jP0sA2eQ8\n", false);
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].kind, SecretKind::GithubToken);
    assert_eq!(hits[0].name.as_deref(), Some("GITHUB_TOKEN"));
    assert_eq!(hits[0].at, "line 3");
    assert_eq!(hits[0].fingerprint, fingerprint(GITHUB));
}

#[test]
fn aws_credentials_give_the_key_id_and_the_secret_line() {
    let text =
        format!("[default]\naws_access_key_id = {AWS_ID}\naws_secret_access_key = {AWS_SECRET}\nregion = eu-west-1\n");
    let kinds: Vec<SecretKind> = in_text(&text, true).iter().map(|hit| hit.kind).collect();
    assert_eq!(kinds, vec![SecretKind::AwsAccessKey, SecretKind::AwsSecretKey]);
}

#[test]
fn well_known_formats_are_recognised_anywhere() {
    let pem = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----\n";
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
    for (text, kind) in [
        (format!("url = https://x\nnote {GITLAB}\n"), SecretKind::GitlabToken),
        (format!("[pypi]\n  password = {PYPI}\n"), SecretKind::PypiToken),
        (format!("{{\"x\": \"{ANTHROPIC}\"}}\n"), SecretKind::AiApiKey),
        ("hook xoxb-2048392-4739201-Zq3vL8mR2tY7wK1n\n".to_string(), SecretKind::SlackToken),
        ("maps AIzaSyZq3vL8mR2tY7wK1nB5xC9dF4gH6jP0sA2\n".to_string(), SecretKind::GoogleApiKey),
        (
            "//registry.npmjs.org/:_authToken=npm_Zq3vL8mR2tY7wK1nB5xC9dF4gH6jP0sA2eQ8\n".to_string(),
            SecretKind::NpmToken,
        ),
        (pem.to_string(), SecretKind::PrivateKey),
        (format!("session: {jwt}\n"), SecretKind::Jwt),
    ] {
        let hits = in_text(&text, false);
        assert!(hits.iter().any(|hit| hit.kind == kind), "{kind:?} not found in {text:?}: {hits:?}");
    }
}

#[test]
fn a_bare_token_line_counts_only_in_a_file_a_rule_names() {
    let text = "Zq3vL8mR2tY7wK1nB5xC9dF4gH6jP0sA\n";
    assert!(in_text(text, false).is_empty());
    assert_eq!(in_text(text, true).len(), 1);
    // Ordinary dotfile content is no secret.
    assert!(in_text("[user]\n  name = Ada\n  email = ada@example.org\nPATH=/usr/bin:/bin\n", false).is_empty());
}

#[test]
fn environment_secrets_are_found_by_name_and_by_format_never_for_plain_variables() {
    let pairs: Vec<(String, String)> = [
        ("PATH", "/usr/local/bin:/usr/bin"),
        ("SSH_AUTH_SOCK", "/tmp/ssh-XXXX/agent.1"),
        ("HOME", "/root"),
        ("AWS_SECRET_ACCESS_KEY", AWS_SECRET),
        ("NOTES", GITHUB),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value.to_string()))
    .collect();
    let found = in_environment(&pairs);
    let vars: Vec<&str> = found.iter().map(|(var, _)| var.as_str()).collect();
    assert_eq!(vars, vec!["AWS_SECRET_ACCESS_KEY", "NOTES"]);
    assert_eq!(found[0].1.kind, SecretKind::AwsSecretKey);
    assert_eq!(found[1].1.kind, SecretKind::GithubToken);
}

#[test]
fn binary_files_are_recognised_by_a_nul() {
    assert!(looks_binary(b"\x7fELF\0\0\x01"));
    assert!(!looks_binary(b"export A=1\n"));
}

#[test]
fn access_follows_owner_group_other_and_directory_search() {
    let user = Identity { uid: 1000, gids: vec![1000, 27] };
    let dir = |mode| ("/home/u".to_string(), Perm { mode, uid: 1000, gid: 1000 });
    let root_dir = ("/".to_string(), Perm { mode: 0o755, uid: 0, gid: 0 });
    let mine = Perm { mode: 0o600, uid: 1000, gid: 1000 };
    assert_eq!(user.can_read(&[root_dir.clone(), dir(0o700)], &mine), Readable { readable: true, why: "owner".into() });
    let group = Perm { mode: 0o640, uid: 0, gid: 27 };
    assert_eq!(user.can_read(std::slice::from_ref(&root_dir), &group).why, "group 27");
    let others_only = Perm { mode: 0o604, uid: 0, gid: 5 };
    assert!(user.can_read(std::slice::from_ref(&root_dir), &others_only).readable);
    // Owner bits apply to the owner even when the other bits would allow more.
    let owner_denied = Perm { mode: 0o044, uid: 1000, gid: 5 };
    assert!(!user.can_read(std::slice::from_ref(&root_dir), &owner_denied).readable);
    let closed_dir = ("/srv".to_string(), Perm { mode: 0o750, uid: 0, gid: 0 });
    let inside = user.can_read(&[root_dir, closed_dir], &Perm { mode: 0o644, uid: 0, gid: 0 });
    assert_eq!(inside, Readable { readable: false, why: "directory /srv not searchable".into() });
    let root = Identity { uid: 0, gids: vec![0] };
    assert!(root.can_read(&[], &Perm { mode: 0o000, uid: 1000, gid: 1000 }).readable);
}

#[test]
fn default_policy_protection_of_home_files() {
    let compiled = compiled("/home/u");
    let protector = Protector::new(&compiled).expect("protector");
    let env = protector.file("/home/u/.env", None);
    assert_eq!((env.status, env.rule.as_deref()), (Status::Protected, Some("dotenv")));
    assert_eq!(env.matched.as_deref(), Some("name .env"));
    let aws = protector.file("/home/u/.aws/credentials", None);
    assert_eq!((aws.status, aws.rule.as_deref()), (Status::Protected, Some("aws-credentials")));
    assert_eq!(aws.consumers, vec!["aws".to_string()]);
    for unprotected in ["/home/u/.config/tool/token.json", "/home/u/.bashrc", "/home/u/.ssh/id_ed25519.pub"] {
        assert_eq!(protector.file(unprotected, None).status, Status::Unprotected, "{unprotected}");
    }
    assert_eq!(protector.file("/home/u/.ssh/id_ed25519", None).rule.as_deref(), Some("ssh-private-keys"));
    // A symlink is judged by the file an open reaches, and by its own path.
    let link = protector.file("/home/u/notes/creds", Some("/home/u/.aws/credentials"));
    assert_eq!(link.rule.as_deref(), Some("aws-credentials"));
    // Names below an exempted directory are no credentials.
    assert_eq!(protector.file("/etc/ssl/certs/server.key", None).status, Status::Unprotected);
    assert_eq!(protector.file("/srv/tls/server.key", None).rule.as_deref(), Some("keys-and-secret-files"));
    assert!(protector.names(".env") && protector.names("id_rsa") && !protector.names("id_rsa.pub"));
    assert!(!protector.names("notes.txt"));
}

#[test]
fn a_monitoring_rule_is_reported_as_monitored_and_the_environment_as_unprotected() {
    let text = "credentials:\n  rules:\n    - id: tool-token\n      mode: monitor\n      paths: [\"~/.config/tool/token.json\"]\n";
    let policy = parse_policy("test.yaml", text).expect("policy");
    let compiled = policy.compile(&CompileContext::with_homes(vec!["/home/u".into()]));
    let protector = Protector::new(&compiled).expect("protector");
    let token = protector.file("/home/u/.config/tool/token.json", None);
    assert_eq!(
        (token.status, token.rule.as_deref(), token.mode),
        (Status::Monitored, Some("tool-token"), Some(Mode::Monitor))
    );
    let environment = protector.environment();
    assert_eq!(environment.status, Status::Unprotected);
    assert!(environment.note.as_deref().is_some_and(|note| note.contains("no rule guards")), "{environment:?}");
    let default = compiled_environment_note();
    assert!(default.contains("proc-environ"), "{default}");
}

fn compiled_environment_note() -> String {
    let compiled = compiled("/home/u");
    Protector::new(&compiled).expect("protector").environment().note.unwrap_or_default()
}

fn finding(path: &str, readable: bool, status: Status) -> Finding {
    let location = Location::File { path: path.into(), link_target: None };
    let protection = Protection { status, ..Protection::unprotected(None) };
    Finding {
        advice: advice(&location, status),
        location,
        found_by: vec![FoundBy::HomeScan],
        readable: Readable { readable, why: "test".into() },
        protection,
        secrets: vec![SecretHit {
            kind: SecretKind::GithubToken,
            fingerprint: fingerprint(GITHUB),
            name: None,
            at: "line 1".into(),
            also_in: Vec::new(),
        }],
    }
}

fn report(findings: Vec<Finding>) -> Report {
    Report::new("u".into(), 1000, "/home/u".into(), None, None, "builtin".into(), findings, vec!["a note".into()])
}

#[test]
fn exit_status_is_one_only_for_a_readable_finding_without_an_enforcing_rule() {
    assert_eq!(report(vec![finding("/a", true, Status::Protected)]).exit_status(), 0);
    assert_eq!(report(vec![finding("/a", false, Status::Unprotected)]).exit_status(), 0);
    assert_eq!(report(vec![finding("/a", true, Status::Monitored)]).exit_status(), EXIT_EXPOSED);
    let mixed = report(vec![finding("/b", true, Status::Protected), finding("/a", true, Status::Unprotected)]);
    assert_eq!(mixed.exit_status(), EXIT_EXPOSED);
    assert_eq!((mixed.summary.findings, mixed.summary.protected, mixed.summary.exposed), (2, 1, 1));
    assert_eq!(mixed.findings[0].location.label(), "/a", "sorted by path");
}

#[test]
fn renderings_name_the_file_kind_and_fingerprint_but_never_the_value() {
    let report = report(vec![finding("/home/u/.bashrc", true, Status::Unprotected)]);
    let text = render::human(&report);
    assert!(text.contains("UNPROTECTED  /home/u/.bashrc"), "{text}");
    assert!(text.contains(&format!("github_token fingerprint {}", fingerprint(GITHUB))), "{text}");
    assert!(text.contains("advice: every shell reads this file"), "{text}");
    assert!(text.contains("(exit 1)") && text.contains("note: a note"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&render::json(&report)).expect("json");
    assert_eq!(json["findings"][0]["location"]["path"], "/home/u/.bashrc");
    assert_eq!(json["findings"][0]["protection"]["status"], "unprotected");
    assert_eq!(json["findings"][0]["secrets"][0]["kind"], "github_token");
    assert_eq!(json["summary"]["exposed"], 1);
    for output in [text, render::json(&report)] {
        assert!(!output.contains(GITHUB) && !output.contains("Zq3vL8mR2tY7"), "value leaked: {output}");
    }
}

#[test]
fn source_code_and_workflow_references_are_no_secrets_outside_credential_files() {
    let python = "def add(key):\n    key = lookup(item)\n    ac_pwd = '/usr/src/build'\n";
    let workflow =
        "steps:\n  - with:\n      token: ${{ secrets.GITHUB_TOKEN }}\n      private-key: ${{ secrets.APP_KEY }}\n";
    assert!(in_text(python, false).is_empty(), "{:?}", in_text(python, false));
    assert!(in_text(workflow, false).is_empty(), "{:?}", in_text(workflow, false));
    // A token of no known format under a name that says token still counts.
    let rc = "export DEPLOY_TOKEN=Qm9vdHN0cmFwOnZhbGlkYXRlZDE3\n";
    let hits = in_text(rc, false);
    assert_eq!((hits.len(), hits[0].kind, hits[0].name.as_deref()), (1, SecretKind::Named, Some("DEPLOY_TOKEN")));
}

#[test]
fn a_secret_held_in_two_places_names_the_other() {
    let report = report(vec![finding("/a", true, Status::Unprotected), finding("/b", true, Status::Protected)]);
    assert_eq!(report.findings[0].secrets[0].also_in, vec!["/b".to_string()]);
    assert_eq!(report.findings[1].secrets[0].also_in, vec!["/a".to_string()]);
    assert!(render::human(&report).contains("same secret in: /b"));
}
