//! Compilation: the default policy, credential names and paths, LPM merging, rule table.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net};

use super::{assert_single_problem, parse_ok};
use crate::policy::{
    AllowedPorts, CompileContext, CompiledPolicy, DEFAULT_POLICY_YAML, Detector, ExecAction, Mode, NetEntry, Severity,
    WatchKind, build_lpm_tables, default_policy, lpm_port_allowed,
};

fn homes() -> CompileContext {
    CompileContext::with_homes(vec!["/home/alice".into(), "/root/".into()])
}

fn compiled_default() -> CompiledPolicy {
    default_policy().compile(&homes())
}

#[test]
fn default_policy_parses_and_compiles() {
    assert!(DEFAULT_POLICY_YAML.contains("rm-recursive-force"));
    let policy = default_policy();
    let compiled = policy.compile(&homes());
    assert_eq!(compiled.mode, Mode::Enforce);
    assert!(compiled.warnings.is_empty(), "{:?}", compiled.warnings);
    assert_eq!(compiled.hold_timeout_secs, 120);
    assert_eq!(compiled.scratch_roots, vec!["/tmp", "/var/tmp"]);
    // Every credential file rule: enforce, critical, T1552.001.
    for rule in compiled.rules.iter().filter(|rule| rule.detector == Detector::Credential) {
        assert_eq!((rule.mode, rule.severity), (Mode::Enforce, Severity::Critical), "{}", rule.id);
        if rule.id != "proc-environ" {
            assert_eq!(rule.mitre, "T1552.001", "{}", rule.id);
        }
    }
    // Every destructive rule: enforce, T1485 or T1490, kill.
    let destructive: Vec<_> = compiled.rules.iter().filter(|rule| rule.detector == Detector::Destructive).collect();
    assert!(destructive.len() >= 25);
    for rule in destructive {
        assert_eq!(rule.mode, Mode::Enforce, "{}", rule.id);
        assert!(rule.mitre == "T1485" || rule.mitre == "T1490", "{}", rule.id);
        assert_eq!(rule.action, Some(ExecAction::Kill));
    }
}

#[test]
fn default_credential_paths_are_expanded_for_every_home() {
    let compiled = compiled_default();
    let globs: Vec<&str> = compiled.credentials.paths.iter().map(|path| path.glob.as_str()).collect();
    for home in ["/home/alice", "/root"] {
        for rest in [
            ".aws/credentials",
            ".aws/config",
            ".ssh/id_*",
            ".kube/config",
            ".docker/config.json",
            ".netrc",
            ".pgpass",
            ".git-credentials",
            ".config/gh/hosts.yml",
            ".config/gcloud/application_default_credentials.json",
            ".config/gcloud/credentials.db",
            ".azure/**",
            ".terraform.d/credentials.tfrc.json",
            ".railway/config.json",
            ".fly/config.yml",
            ".config/heroku/**",
            ".npmrc",
            ".pypirc",
        ] {
            let glob = format!("{home}/{rest}");
            assert!(globs.contains(&glob.as_str()), "missing {glob}");
        }
    }
    let azure = compiled.credentials.paths.iter().find(|path| path.glob == "/home/alice/.azure/**");
    let azure = azure.map(|path| (path.literal, path.scan_root.as_str(), path.max_depth));
    assert_eq!(azure, Some((false, "/home/alice/.azure", None)));
    let ssh = compiled.credentials.paths.iter().find(|path| path.glob == "/root/.ssh/id_*");
    let ssh = ssh.map(|path| (path.literal, path.scan_root.as_str(), path.max_depth));
    assert_eq!(ssh, Some((false, "/root/.ssh", Some(1))));
    let aws = compiled.credentials.paths.iter().find(|path| path.glob == "/home/alice/.aws/credentials");
    assert_eq!(aws.map(|path| (path.literal, path.scan_root.as_str())), Some((true, "/home/alice/.aws")));
}

#[test]
fn default_credential_names() {
    let compiled = compiled_default();
    let credentials = &compiled.credentials;
    for name in [
        ".env",
        ".env.local",
        ".env.production",
        "server.pem",
        "tls.key",
        "secrets.yml",
        "secrets.yaml",
        ".npmrc",
        ".pypirc",
        ".netrc",
    ] {
        let hit = credentials.match_name(name);
        assert!(
            hit.is_some_and(|rule| rule.exempt == 0 && rule.mode == guard_common::mode::ENFORCE),
            "{name} not protected"
        );
    }
    for name in ["id_rsa.pub", ".env.example", ".env.sample", "README.md", "env", "key", "pem"] {
        assert_eq!(credentials.match_name(name), None, "{name} should not be a credential");
    }
    // Private keys by name; certificates and the CA bundles TLS libraries ship or extract
    // (pip's ensurepip writes /tmp/tmpXXXXcacert.pem) are public.
    for name in
        ["privkey.pem", "privkey1.pem", "server-key.pem", "ca-key.pem", "key.pem", "prod-keypair.pem", "client.p12"]
    {
        assert!(credentials.match_name(name).is_some_and(|rule| rule.exempt == 0), "{name} not protected");
    }
    for name in [
        "cacert.pem",
        "tmpq8w_z1xkcacert.pem",
        "ca-bundle.pem",
        "cert.pem",
        "server-cert.pem",
        "fullchain.pem",
        "chain.pem",
        "ca.pem",
        "docker-ca.pem",
    ] {
        assert_eq!(credentials.match_name(name), None, "{name} is a certificate, not a key");
    }
    assert!(credentials.proc_environ.is_some());
    let proc_rule = credentials.proc_environ.map(|rule| compiled.rules[rule.rule as usize].id.clone());
    assert_eq!(proc_rule.as_deref(), Some("proc-environ"));
}

#[test]
fn suffix_names_are_stored_reversed_and_exemptions_flagged() {
    let compiled = compiled_default();
    let pem = compiled.credentials.suffix_names.iter().find(|name| name.pattern == "*.pem");
    let pem = pem.map(|name| (guard_common::c_bytes(&name.key.name).to_vec(), name.prefix_bits, name.rule.exempt));
    assert_eq!(pem, Some((b"mep.".to_vec(), 32, 0)));
    let public = compiled.credentials.suffix_names.iter().find(|name| name.pattern == "!*.pub");
    assert_eq!(public.map(|name| name.rule.exempt), Some(1));
    let prefix = compiled.credentials.prefix_names.iter().find(|name| name.pattern == ".env.*");
    let prefix = prefix.map(|name| (guard_common::c_bytes(&name.key.name).to_vec(), name.prefix_bits));
    assert_eq!(prefix, Some((b".env.".to_vec(), 40)));
    let exact = compiled.credentials.exact_names.iter().find(|name| name.pattern == "!.env.example");
    assert_eq!(exact.map(|name| name.rule.exempt), Some(1));
}

#[test]
fn pub_keys_are_exempt_from_path_matching() {
    let compiled = compiled_default();
    let matcher = match compiled.credentials.path_matcher() {
        Ok(matcher) => matcher,
        Err(error) => panic!("{error}"),
    };
    let rule_of = |path: &str| matcher.classify(path).map(|rule| compiled.rules[rule.rule as usize].id.clone());
    assert_eq!(rule_of("/home/alice/.ssh/id_ed25519").as_deref(), Some("ssh-private-keys"));
    assert_eq!(rule_of("/home/alice/.ssh/id_ed25519.pub"), None);
    assert_eq!(rule_of("/home/alice/.ssh/known_hosts"), None);
    assert_eq!(rule_of("/root/.azure/msal_token_cache.json").as_deref(), Some("azure-credentials"));
    assert_eq!(rule_of("/root/.azure/sub/dir/file").as_deref(), Some("azure-credentials"));
    assert_eq!(rule_of("/home/alice/.aws/credentials").as_deref(), Some("aws-credentials"));
    // `*` does not cross directories.
    assert_eq!(rule_of("/home/alice/.ssh/id_dir/other"), None);
}

#[test]
fn homes_with_glob_characters_are_escaped() {
    let policy = parse_ok("credentials:\n  rules:\n    - id: c\n      paths: [\"~/.netrc\"]\n");
    let compiled = policy.compile(&CompileContext::with_homes(vec!["/home/we[ir]d".into()]));
    let matcher = match compiled.credentials.path_matcher() {
        Ok(matcher) => matcher,
        Err(error) => panic!("{error}"),
    };
    assert!(matcher.classify("/home/we[ir]d/.netrc").is_some());
    let netrc =
        compiled.credentials.paths.first().map(|path| (path.literal, path.path.as_str(), path.scan_root.as_str()));
    assert_eq!(netrc, Some((true, "/home/we[ir]d/.netrc", "/home/we[ir]d")));
    assert!(matcher.classify("/home/wed/.netrc").is_none());
}

#[test]
fn same_name_in_two_rules_keeps_exemption_then_enforce() {
    let yaml = "\
credentials:
  rules:
    - id: watch
      mode: monitor
      names: [\"*.key\", .env]
    - id: block
      mode: enforce
      names: [\".env\", \"!*.key\"]
";
    let compiled = parse_ok(yaml).compile(&homes());
    let env = compiled.credentials.match_name(".env");
    assert_eq!(env.map(|rule| (rule.rule, rule.mode)), Some((1, guard_common::mode::ENFORCE)));
    assert_eq!(compiled.credentials.match_name("tls.key"), None);
    assert_eq!(compiled.credentials.exact_names.len(), 1);
    assert_eq!(compiled.credentials.suffix_names.len(), 1);
}

#[test]
fn rule_table_order_and_indexes() {
    let policy = default_policy();
    let compiled = policy.compile(&homes());
    let detectors: Vec<Detector> = compiled.rules.iter().map(|rule| rule.detector).collect();
    let first_destructive = detectors.iter().position(|d| *d == Detector::Destructive);
    assert_eq!(first_destructive, Some(policy.destructive_rule_offset() as usize));
    let network = compiled.network.as_ref().map(|network| network.rule as usize);
    let files = compiled.files.as_ref().map(|files| files.rule as usize);
    assert_eq!(network.map(|index| compiled.rules[index].id.as_str()), Some("scope.network"));
    assert_eq!(files.map(|index| compiled.rules[index].id.as_str()), Some("scope.files"));
    assert_eq!(network.map(|index| index + 1), files);
    // Each destructive rule's compiled index names the same id.
    for (position, rule) in policy.destructive().rules.iter().enumerate() {
        let index = policy.destructive_rule_offset() as usize + position;
        assert_eq!(compiled.rules[index].id, rule.id);
    }
}

#[test]
fn default_scopes_are_monitor() {
    let compiled = compiled_default();
    let network = compiled.network.as_ref();
    assert_eq!(
        network.map(|n| (n.mode, n.allow_loopback, n.v4.len(), n.v6.len(), n.hosts.len())),
        Some((Mode::Monitor, true, 0, 0, 0))
    );
    let files = compiled.files.as_ref();
    assert_eq!(files.map(|f| (f.mode, f.write_roots_session_cwd)), Some((Mode::Monitor, true)));
    let roots = files.map(|f| f.write_roots.clone()).unwrap_or_default();
    for root in ["/tmp", "/var/tmp", "/dev", "/home/alice/.cache", "/root/.cache"] {
        assert!(roots.iter().any(|r| r == root), "missing write root {root}: {roots:?}");
    }
    let config = compiled.kernel_config(42, true);
    assert_eq!(
        (config.enforce, config.daemon_tgid, config.allow_loopback, config.net_scope, config.write_scope),
        (1, 42, 1, 1, 1)
    );
    assert_eq!((config.net_mode, config.write_mode), (guard_common::mode::MONITOR, guard_common::mode::MONITOR));
    assert_eq!(config.net_rule, network.map_or(u32::MAX, |n| n.rule));
}

#[test]
fn exec_watch_set_lists_rule_programs_and_interpreters() {
    let compiled = compiled_default();
    let kind_of = |name: &str| compiled.exec_watch.iter().find(|watch| watch.name == name).map(|watch| watch.kind);
    for name in [
        "rm",
        "find",
        "shred",
        "dd",
        "mkfs",
        "mkfs.ext4",
        "mkfs.xfs",
        "mkfs.btrfs",
        "mkfs.vfat",
        "mke2fs",
        "wipefs",
        "psql",
        "mysql",
        "sqlite3",
        "mongosh",
        "mongo",
        "redis-cli",
        "terraform",
        "pulumi",
        "kubectl",
        "helm",
        "aws",
        "gcloud",
        "az",
        "railway",
        "flyctl",
        "fly",
        "heroku",
        "git",
        "curl",
        "wget",
        "http",
        "https",
        "xh",
        "docker",
        "podman",
        "busybox",
        "ssh",
    ] {
        assert_eq!(kind_of(name), Some(WatchKind::Always), "{name}");
    }
    for name in ["sh", "bash", "dash", "zsh", "ash", "python", "python3", "perl", "node", "ruby"] {
        assert_eq!(kind_of(name), Some(WatchKind::ScriptFlag), "{name}");
    }
    let bash_flags =
        compiled.exec_watch.iter().find(|watch| watch.name == "bash").map(|watch| watch.script_flags.clone());
    assert_eq!(bash_flags, Some(vec!["-c".to_string()]));
    let perl_flags =
        compiled.exec_watch.iter().find(|watch| watch.name == "perl").map(|watch| watch.script_flags.clone());
    assert_eq!(perl_flags, Some(vec!["-e".to_string(), "-E".to_string()]));
    for watch in &compiled.exec_watch {
        assert!(watch.name.len() < guard_common::NAME_LEN, "{}", watch.name);
        assert_eq!(guard_common::c_bytes(&watch.key().name), watch.name.as_bytes());
    }
    // Sorted and unique, so the daemon can diff map contents.
    let names: Vec<&str> = compiled.exec_watch.iter().map(|watch| watch.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(names, sorted);
}

fn listed(ports: &[u16]) -> AllowedPorts {
    AllowedPorts::Listed(ports.iter().copied().collect())
}

fn net(text: &str) -> IpNet {
    match text.parse() {
        Ok(net) => net,
        Err(error) => panic!("{text}: {error}"),
    }
}

#[test]
fn lpm_entries_inherit_covering_ports() {
    let tables = build_lpm_tables(
        [
            (net("10.0.0.0/8"), listed(&[443])),
            (net("10.1.0.0/16"), listed(&[22])),
            (net("10.1.2.0/24"), AllowedPorts::Any),
            (net("192.168.0.0/16"), listed(&[80])),
            (net("192.168.5.0/24"), listed(&[81])),
        ],
        7,
    );
    let entry =
        |text: &str| tables.v4.iter().find(|entry| entry.net.to_string() == text).map(|entry| entry.ports.clone());
    assert_eq!(entry("10.0.0.0/8"), Some(listed(&[443])));
    assert_eq!(entry("10.1.0.0/16"), Some(listed(&[22, 443])));
    assert_eq!(entry("10.1.2.0/24"), Some(AllowedPorts::Any));
    assert_eq!(entry("192.168.5.0/24"), Some(listed(&[80, 81])));
    assert!(tables.v4.iter().all(|entry| entry.rule == 7));

    let allowed = |addr: [u8; 4], port: u16| lpm_port_allowed(&tables.v4, Ipv4Addr::from(addr), port);
    assert!(allowed([10, 1, 2, 3], 9999), "the /24 allows any port");
    assert!(allowed([10, 1, 5, 5], 22));
    assert!(allowed([10, 1, 5, 5], 443), "inherited from the /8");
    assert!(!allowed([10, 1, 5, 5], 80));
    assert!(allowed([10, 2, 0, 1], 443));
    assert!(!allowed([10, 2, 0, 1], 22));
    assert!(allowed([192, 168, 5, 1], 80));
    assert!(!allowed([11, 0, 0, 1], 443), "no covering entry");
}

#[test]
fn covering_any_port_makes_specific_entries_any() {
    let tables = build_lpm_tables([(net("0.0.0.0/0"), AllowedPorts::Any), (net("10.0.0.0/8"), listed(&[22]))], 0);
    assert!(lpm_port_allowed(&tables.v4, Ipv4Addr::new(10, 9, 9, 9), 8080));
    assert!(tables.v4.iter().all(|entry| entry.ports == AllowedPorts::Any));
}

#[test]
fn lpm_lookup_equals_union_semantics() {
    let entries = [
        (net("10.0.0.0/8"), listed(&[1, 2])),
        (net("10.128.0.0/9"), listed(&[3])),
        (net("10.128.0.0/10"), listed(&[4])),
        (net("10.192.0.0/10"), AllowedPorts::Any),
        (net("10.130.7.0/24"), listed(&[5])),
        (net("10.130.7.128/25"), listed(&[6])),
        (net("172.16.0.0/12"), listed(&[7])),
    ];
    let tables = build_lpm_tables(entries.iter().cloned(), 0);
    let addrs = [
        [10, 0, 0, 1],
        [10, 128, 0, 1],
        [10, 130, 7, 1],
        [10, 130, 7, 200],
        [10, 200, 0, 0],
        [10, 127, 255, 255],
        [172, 20, 0, 1],
        [8, 8, 8, 8],
    ];
    for addr in addrs {
        let addr = Ipv4Addr::from(addr);
        for port in 0..10 {
            let union = entries.iter().any(|(net, ports)| net.contains(&IpAddr::V4(addr)) && ports.allows(port));
            assert_eq!(lpm_port_allowed(&tables.v4, addr, port), union, "{addr}:{port}");
        }
    }
}

#[test]
fn v4_mapped_v6_entries_go_to_the_v4_table() {
    let tables = build_lpm_tables(
        [
            (net("::ffff:10.0.0.0/104"), listed(&[5432])),
            (net("::ffff:192.0.2.1/128"), AllowedPorts::Any),
            (net("2001:db8::/32"), listed(&[443])),
        ],
        0,
    );
    let v4: Vec<String> = tables.v4.iter().map(|entry| entry.net.to_string()).collect();
    assert_eq!(v4, vec!["10.0.0.0/8", "192.0.2.1/32"]);
    assert_eq!(tables.v6.len(), 1);
    assert!(lpm_port_allowed(&tables.v4, Ipv4Addr::new(10, 3, 3, 3), 5432));
    assert!(lpm_port_allowed(&tables.v6, "2001:db8::5".parse::<Ipv6Addr>().unwrap_or(Ipv6Addr::UNSPECIFIED), 443));

    // A v6 prefix covering the whole mapped range covers IPv4 too.
    let everything = build_lpm_tables([(net("::/0"), listed(&[53]))], 0);
    assert_eq!(everything.v4.first().map(|entry| entry.net), Some(Ipv4Net::default()));
    assert!(lpm_port_allowed(&everything.v4, Ipv4Addr::new(1, 1, 1, 1), 53));
}

#[test]
fn compiled_network_keeps_hosts_and_merges_resolved_addresses() {
    let yaml = "\
scope:
  network:
    mode: enforce
    allow: [\"10.0.0.0/8:443\", \"github.com:22\", \"github.com:443\", pypi.org]
";
    let compiled = parse_ok(yaml).compile(&homes());
    let Some(network) = compiled.network.as_ref() else {
        panic!("no network scope");
    };
    let hosts: Vec<(&str, AllowedPorts)> =
        network.hosts.iter().map(|host| (host.host.as_str(), host.ports.clone())).collect();
    assert_eq!(hosts, vec![("github.com", listed(&[22, 443])), ("pypi.org", AllowedPorts::Any)]);
    let tables = network.with_resolved_hosts(&[
        (
            "github.com".into(),
            vec![
                IpAddr::V4(Ipv4Addr::new(10, 1, 1, 1)),
                "2001:db8::1".parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            ],
        ),
        ("unknown.example".into(), vec![IpAddr::V4(Ipv4Addr::new(1, 1, 1, 1))]),
    ]);
    // The host address inside 10/8 gets 22 and 443 (443 inherited).
    assert!(lpm_port_allowed(&tables.v4, Ipv4Addr::new(10, 1, 1, 1), 22));
    assert!(lpm_port_allowed(&tables.v4, Ipv4Addr::new(10, 1, 1, 1), 443));
    assert!(!lpm_port_allowed(&tables.v4, Ipv4Addr::new(10, 1, 1, 2), 22));
    assert!(!lpm_port_allowed(&tables.v4, Ipv4Addr::new(1, 1, 1, 1), 443), "names not in the policy are ignored");
    assert_eq!(tables.v6.len(), 1);
    let kernel: Vec<_> = tables.v4.iter().map(NetEntry::port_set).collect();
    assert!(kernel.iter().all(Result::is_ok));
    let config = compiled.kernel_config(1, true);
    assert_eq!((config.net_scope, config.net_mode), (1, guard_common::mode::ENFORCE));
}

#[test]
fn port_set_matches_the_kernel_layout() {
    let set = listed(&[443, 22]).port_set(3);
    let set = match set {
        Ok(set) => set,
        Err(error) => panic!("{error}"),
    };
    assert_eq!((set.any, set.count, set.rule), (0, 2, 3));
    assert_eq!(&set.ports[..2], &[22, 443]);
    let too_many = AllowedPorts::Listed((1..=17).collect()).port_set(0);
    assert!(too_many.is_err());
}

#[test]
fn merged_port_overflow_is_a_policy_error() {
    let ports_a: Vec<String> = (1..=9).map(|port| port.to_string()).collect();
    let ports_b: Vec<String> = (100..=108).map(|port| port.to_string()).collect();
    let yaml = format!(
        "scope:\n  network:\n    allow:\n      - \"10.0.0.0/8:{}\"\n      - \"10.1.0.0/16:{}\"\n",
        ports_a.join(","),
        ports_b.join(",")
    );
    assert_single_problem(&yaml, 4, 7, "18 ports");
}

#[test]
fn default_bindings_name_each_tool() {
    let compiled = compiled_default();
    let consumers = &compiled.credentials.consumers;
    let owner = |program: &str| -> Vec<String> {
        consumers.iter().find(|c| c.name == program).map(|c| c.rule_ids.clone()).unwrap_or_default()
    };
    for (program, rule) in [
        ("kubectl", "kubeconfig"),
        ("helm", "kubeconfig"),
        ("k9s", "kubeconfig"),
        ("docker", "docker-config"),
        ("docker-buildx", "docker-config"),
        ("aws", "aws-credentials"),
        ("npm", "npmrc"),
        ("npx", "npmrc"),
        ("yarn", "npmrc"),
        ("pnpm", "npmrc"),
        ("twine", "pypirc"),
        ("ssh", "ssh-private-keys"),
        ("scp", "ssh-private-keys"),
        ("sftp", "ssh-private-keys"),
        ("ssh-add", "ssh-private-keys"),
        ("ssh-keygen", "ssh-private-keys"),
        ("git-credential-store", "git-credentials"),
        ("gh", "gh-hosts"),
        ("gcloud", "gcloud-credentials"),
        ("az", "azure-credentials"),
        ("terraform", "terraform-credentials"),
        ("psql", "pgpass"),
        ("pg_dump", "pgpass"),
        ("railway", "railway-credentials"),
        ("flyctl", "fly-credentials"),
        ("heroku", "heroku-credentials"),
    ] {
        let expected = if program == "docker" {
            // The docker CLI before 23.0 reads the kubeconfig too.
            vec!["kubeconfig".to_string(), rule.to_string()]
        } else {
            vec![rule.to_string()]
        };
        assert_eq!(owner(program), expected, "{program}");
    }
    // Every rule's consumers share one slot, and its kernel entries carry it.
    let slot_of = |id: &str| {
        let index = compiled.rules.iter().position(|r| r.id == id).unwrap() as u32;
        let path = compiled.credentials.paths.iter().find(|p| p.rule.rule == index && p.rule.exempt == 0).unwrap();
        path.rule.consumer_slot
    };
    let kube = slot_of("kubeconfig");
    assert_ne!(kube, 0);
    assert_ne!(kube, slot_of("docker-config"));
    let kubectl = consumers.iter().find(|c| c.name == "kubectl").unwrap();
    assert_eq!(kubectl.mask, 1 << (kube - 1));
    // Rules without consumers have no slot: .env and netrc belong to no tool.
    assert_eq!(slot_of("netrc"), 0);
    let dotenv = compiled.credentials.exact_names.iter().find(|n| n.pattern == ".env").unwrap();
    assert_eq!(dotenv.rule.consumer_slot, 0);
}

#[test]
fn consumers_are_validated_with_their_place() {
    let yaml = "credentials:\n  rules:\n    - id: k\n      paths: [\"~/.kube/config\"]\n      consumers: [kubectl, \"../kubectl\"]\n";
    super::assert_single_problem(yaml, 5, 28, "consumer `../kubectl`");
    let yaml = "credentials:\n  rules:\n    - id: k\n      paths: [\"~/.kube/config\"]\n      consumers: []\n";
    super::assert_single_problem(yaml, 5, 18, "`consumers` is empty");
    let policy = super::parse_ok(
        "credentials:\n  rules:\n    - id: k\n      paths: [\"~/.kube/config\"]\n      consumers: [kubectl, /opt/k8s/bin/kubectl, kubectl]\n",
    );
    assert_eq!(policy.credential_rules()[0].consumers, vec!["kubectl".to_string(), "/opt/k8s/bin/kubectl".to_string()]);
}
