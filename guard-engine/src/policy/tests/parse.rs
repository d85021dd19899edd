//! Parsing and validation errors: each names the right line and column.

use super::{assert_single_problem, parse_ok, parse_problems};
use crate::policy::{AllowTarget, AllowedPorts, ExecAction, Mode, RootPath, Severity, parse_policy};

#[test]
fn unknown_key_is_an_error_at_the_key() {
    let yaml = "mode: enforce\nscope:\n  network:\n    alow: []\n";
    assert_single_problem(yaml, 4, 5, "unknown field `alow`");
}

#[test]
fn unknown_top_level_key_is_an_error() {
    assert_single_problem("mode: enforce\ncredentails: {}\n", 2, 1, "unknown field `credentails`");
}

#[test]
fn bad_cidr_is_an_error_at_the_entry() {
    let yaml = "scope:\n  network:\n    allow:\n      - 10.0.0.0/8\n      - 10.0.0.0/33\n";
    assert_single_problem(yaml, 5, 9, "bad CIDR `10.0.0.0/33`");
}

#[test]
fn cidr_with_host_bits_is_an_error() {
    let yaml = "scope:\n  network:\n    allow: [10.1.2.3/8]\n";
    assert_single_problem(yaml, 3, 13, "did you mean `10.0.0.0/8`");
}

#[test]
fn bad_port_is_an_error() {
    let yaml = "scope:\n  network:\n    allow:\n      - \"10.0.0.0/8:99999\"\n";
    assert_single_problem(yaml, 4, 9, "bad port `99999`");
    let yaml = "scope:\n  network:\n    allow: [\"example.com:0\"]\n";
    assert_single_problem(yaml, 3, 13, "bad port `0`");
    let yaml = "scope:\n  network:\n    allow: [\"[::1]:http\"]\n";
    assert_single_problem(yaml, 3, 13, "bad port `http`");
}

#[test]
fn unbracketed_ipv6_with_port_is_an_error() {
    let yaml = "scope:\n  network:\n    allow: [\"2001:db8::1:443:x\"]\n";
    assert_single_problem(yaml, 3, 13, "[addr]:port");
}

#[test]
fn bad_regex_is_an_error_at_the_regex() {
    let yaml = "\
destructive:
  rules:
    - id: r
      match:
        programs: [x]
        all:
          - arg_regex: '(unclosed'
";
    assert_single_problem(yaml, 7, 24, "bad regex `(unclosed`");
}

#[test]
fn bad_glob_is_an_error() {
    let yaml = "credentials:\n  rules:\n    - id: c\n      paths: [\"~/.ssh/[id\"]\n";
    assert_single_problem(yaml, 4, 15, "bad glob `~/.ssh/[id`");
}

#[test]
fn relative_credential_path_is_an_error() {
    let yaml = "credentials:\n  rules:\n    - id: c\n      paths: [\".ssh/id_rsa\"]\n";
    assert_single_problem(yaml, 4, 15, "must be absolute or start with `~/`");
}

#[test]
fn name_patterns_outside_the_three_shapes_are_errors() {
    for (pattern, needle) in [
        ("*.e*nv", "only exact names"),
        ("id_?", "uses `?`"),
        ("*", "every file"),
        ("a/b", "contains `/`"),
        ("[ab].key", "uses `[`"),
        ("mid*dle", "only exact names"),
    ] {
        let yaml = format!("credentials:\n  rules:\n    - id: c\n      names: [\".env\", \"{pattern}\"]\n");
        assert_single_problem(&yaml, 4, 23, needle);
    }
}

#[test]
fn over_long_name_pattern_is_an_error() {
    let long = "x".repeat(64);
    let yaml = format!("credentials:\n  rules:\n    - id: c\n      names: [\"{long}*\"]\n");
    assert_single_problem(&yaml, 4, 15, "at most 63");
}

#[test]
fn duplicate_rule_id_is_an_error_at_the_second_id() {
    let yaml = "\
credentials:
  rules:
    - id: same
      names: [.env]
destructive:
  rules:
    - id: same
      match: {programs: [rm]}
";
    assert_single_problem(yaml, 7, 11, "duplicate rule id `same` (first used at line 3, column 11)");
}

#[test]
fn reserved_rule_id_is_an_error() {
    let yaml = "destructive:\n  rules:\n    - id: scope.network\n      match: {programs: [rm]}\n";
    assert_single_problem(yaml, 3, 11, "reserved");
}

#[test]
fn bad_mode_is_an_error() {
    assert_single_problem("mode: enforcing\n", 1, 7, "unknown variant `enforcing`");
    let yaml = "scope:\n  files:\n    mode: block\n    write_roots: [/tmp]\n";
    assert_single_problem(yaml, 3, 11, "unknown variant `block`");
}

#[test]
fn bad_severity_is_an_error() {
    let yaml = "credentials:\n  rules:\n    - id: c\n      severity: severe\n      names: [.env]\n";
    assert_single_problem(yaml, 4, 17, "unknown variant `severe`");
}

#[test]
fn wrong_type_is_an_error() {
    let yaml = "scope:\n  network:\n    allow: 5\n";
    assert_single_problem(yaml, 3, 12, "expected sequence");
    let yaml = "destructive:\n  hold_timeout_secs: soon\n  rules: []\n";
    assert_single_problem(yaml, 2, 22, "invalid u64");
}

#[test]
fn missing_required_field_is_an_error() {
    let yaml = "scope:\n  network:\n    mode: enforce\n";
    let problems = parse_problems(yaml);
    assert_eq!(problems.len(), 1);
    assert!(problems[0].message.contains("missing field `allow`"), "{problems:?}");
    assert_eq!(problems[0].line, 3);
}

#[test]
fn empty_required_lists_are_errors() {
    let yaml = "scope:\n  files:\n    write_roots: []\n";
    assert_single_problem(yaml, 3, 18, "`write_roots` must list at least one directory");
    let yaml = "destructive:\n  rules:\n    - id: r\n      match: {programs: []}\n";
    assert_single_problem(yaml, 4, 25, "`programs` must name at least one program");
    let yaml = "credentials:\n  rules:\n    - id: c\n      names: []\n      paths: [~/.netrc]\n";
    assert_single_problem(yaml, 4, 14, "`names` is empty");
    let yaml = "destructive:\n  rules:\n    - id: r\n      match:\n        programs: [rm]\n        any: []\n";
    assert_single_problem(yaml, 6, 14, "`any` must hold at least one condition");
}

#[test]
fn rule_protecting_nothing_is_an_error() {
    let yaml = "credentials:\n  rules:\n    - id: c\n";
    assert_single_problem(yaml, 3, 11, "protects nothing");
    let yaml = "credentials:\n  rules:\n    - id: c\n      names: [\"!*.pub\"]\n";
    assert_single_problem(yaml, 3, 11, "only has exemptions");
}

#[test]
fn bad_flag_and_mitre_are_errors() {
    let yaml = "\
destructive:
  rules:
    - id: r
      mitre: T14
      match:
        programs: [rm]
        all:
          - flag: [r]
";
    let problems = parse_problems(yaml);
    let located: Vec<(u64, u64)> = problems.iter().map(|p| (p.line, p.column)).collect();
    assert_eq!(located, vec![(4, 14), (8, 20)], "{problems:#?}");
    assert!(problems[0].message.contains("bad MITRE"));
    assert!(problems[1].message.contains("bad flag `r`"));
}

#[test]
fn program_must_be_an_exact_basename() {
    let yaml = "destructive:\n  rules:\n    - id: r\n      match: {programs: [\"mkfs.*\", /bin/rm]}\n";
    let problems = parse_problems(yaml);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(problems[0].message.contains("exact basenames"));
    assert!(problems[1].message.contains("basename, not a path"));
}

#[test]
fn all_semantic_problems_are_collected() {
    let yaml = "\
credentials:
  rules:
    - id: a
      names: [\"*.e*nv\"]
    - id: a
      paths: [relative]
scope:
  network:
    allow: [\"300.1.1.1\", \"10.0.0.0/8:70000\"]
";
    let problems = parse_problems(yaml);
    let lines: Vec<u64> = problems.iter().map(|p| p.line).collect();
    assert_eq!(lines, vec![4, 5, 6, 9, 9], "{problems:#?}");
}

#[test]
fn display_is_file_line_column_problem_per_line() {
    let error = match parse_policy(
        "/etc/guard/policy.yaml",
        "mode: enforce\nscope:\n  network:\n    allow: [10.0.0.0/33, \"x:0\"]\n",
    ) {
        Ok(_) => panic!("expected an error"),
        Err(error) => error,
    };
    let text = error.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("/etc/guard/policy.yaml:4:13: "), "{text}");
    assert!(lines[1].starts_with("/etc/guard/policy.yaml:4:26: "), "{text}");
}

#[test]
fn yaml_syntax_error_has_a_location() {
    let error = match parse_policy("p.yaml", "scope:\n  network:\n    allow: [10.0.0.0/8\n") {
        Ok(_) => panic!("expected an error"),
        Err(error) => error,
    };
    assert_eq!(error.problems.len(), 1);
    assert!(error.problems[0].line >= 3, "{error}");
    assert!(error.to_string().starts_with("p.yaml:"));
}

#[test]
fn duplicate_yaml_key_is_an_error() {
    let problems = parse_problems("mode: enforce\nmode: monitor\n");
    assert_eq!(problems[0].line, 2);
}

#[test]
fn empty_policy_is_an_error() {
    assert_single_problem("", 1, 1, "empty");
    assert_single_problem("# only a comment\n", 1, 1, "empty");
}

#[test]
fn minimal_policy_warns_about_every_missing_section() {
    let policy = parse_ok("mode: monitor\n");
    assert_eq!(policy.mode(), Mode::Monitor);
    let warnings = policy.warnings().join("\n");
    for needle in ["credentials", "scope.network", "scope.files", "destructive", "proc_environ"] {
        assert!(warnings.contains(needle), "no warning about {needle}: {warnings}");
    }
    assert!(policy.network().is_none());
    assert!(policy.files().is_none());
}

#[test]
fn defaults_fill_in_omitted_fields() {
    let yaml = "\
mode: monitor
credentials:
  rules:
    - id: c
      names: [.env]
scope:
  network:
    allow: []
destructive:
  rules:
    - id: d
      action: hold
      match: {programs: [rm]}
";
    let policy = parse_ok(yaml);
    let credential = &policy.credential_rules()[0];
    assert_eq!(credential.mode, Mode::Monitor, "rule mode defaults to the global mode");
    assert_eq!(credential.severity, Severity::Critical);
    assert_eq!(credential.mitre, "T1552.001");
    let network = policy.network().map(|n| (n.allow_loopback, n.allow.len()));
    assert_eq!(network, Some((true, 0)), "explicit empty allow list with loopback");
    let rule = &policy.destructive().rules[0];
    assert_eq!(rule.action, ExecAction::Hold);
    assert_eq!(rule.mitre, "T1485");
    assert_eq!(policy.destructive().hold_timeout_secs, 120);
}

#[test]
fn allow_entry_forms() {
    let yaml = "\
scope:
  network:
    allow:
      - 10.0.0.0/8
      - \"192.168.1.0/24:22,443\"
      - 1.2.3.4
      - \"[2001:db8::/32]:443\"
      - \"[::1]:8080\"
      - 2001:db8::/48
      - \"GitHub.com:443\"
      - pypi.org
      - \"example.com:*\"
";
    let policy = parse_ok(yaml);
    let allow = policy.network().map(|n| n.allow.clone()).unwrap_or_default();
    let shown: Vec<(String, AllowedPorts)> = allow
        .iter()
        .map(|entry| {
            let target = match &entry.target {
                AllowTarget::Net(net) => net.to_string(),
                AllowTarget::Host(host) => format!("host {host}"),
            };
            (target, entry.ports.clone())
        })
        .collect();
    let listed = |ports: &[u16]| AllowedPorts::Listed(ports.iter().copied().collect());
    assert_eq!(
        shown,
        vec![
            ("10.0.0.0/8".into(), AllowedPorts::Any),
            ("192.168.1.0/24".into(), listed(&[22, 443])),
            ("1.2.3.4/32".into(), AllowedPorts::Any),
            ("2001:db8::/32".into(), listed(&[443])),
            ("::1/128".into(), listed(&[8080])),
            ("2001:db8::/48".into(), AllowedPorts::Any),
            ("host github.com".into(), listed(&[443])),
            ("host pypi.org".into(), AllowedPorts::Any),
            ("host example.com".into(), AllowedPorts::Any),
        ]
    );
}

#[test]
fn write_roots_forms() {
    let yaml = "scope:\n  files:\n    write_roots: [$CWD, /tmp/, \"~/.cache\", /var//tmp/./x/..]\n";
    let policy = parse_ok(yaml);
    let roots = policy.files().map(|f| f.write_roots.clone()).unwrap_or_default();
    assert_eq!(
        roots,
        vec![
            RootPath::SessionCwd,
            RootPath::Absolute("/tmp".into()),
            RootPath::Home(".cache".into()),
            RootPath::Absolute("/var/tmp".into()),
        ]
    );
    assert_single_problem("scope:\n  files:\n    write_roots: [tmp]\n", 3, 19, "absolute path");
    assert_single_problem("scope:\n  files:\n    write_roots: [\"/tmp/*\"]\n", 3, 19, "not globs");
}

#[test]
fn scratch_root_cannot_be_slash_or_relative() {
    let yaml = "destructive:\n  scratch_roots: [/, tmp]\n  rules: []\n";
    let problems = parse_problems(yaml);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert_eq!((problems[0].line, problems[0].column), (2, 19));
    assert_eq!((problems[1].line, problems[1].column), (2, 22));
}

#[test]
fn hold_timeout_range_is_checked() {
    assert_single_problem("destructive:\n  hold_timeout_secs: 0\n  rules: []\n", 2, 22, "between 1 and");
}

#[test]
fn only_one_proc_environ_rule() {
    let yaml = "\
credentials:
  rules:
    - id: a
      proc_environ: true
    - id: b
      proc_environ: true
";
    let problems = parse_problems(yaml);
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].line, 5);
    assert!(problems[0].message.contains("proc_environ"));
}

#[test]
fn script_condition_needs_a_source_of_text() {
    let yaml = "\
destructive:
  rules:
    - id: r
      match:
        programs: [psql]
        all:
          - script: {matches: drop}
";
    assert_single_problem(yaml, 7, 21, "reads no text");
}
