//! Policy text -> parse and validate -> compile -> the pure half of the daemon's load
//! (guard-daemon/src/policy_load.rs): what `guard run --policy` and `guard policy check` do
//! with a file, minus the file system and DNS.
//!
//! A policy that fails validation must say why (the error renders); one that passes must
//! compile and build every matcher without error, since the daemon treats a failure after
//! validation as a load error the operator was not told about at `policy check`.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use guard_engine::destructive::{DestructiveEvaluator, ExecContext};
use guard_engine::policy::{CompileContext, lpm_port_allowed, parse_policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The daemon reads the file with read_to_string: non-UTF-8 never reaches the parser.
    let Ok(text) = std::str::from_utf8(data) else { return };
    let policy = match parse_policy("fuzz.yaml", text) {
        Ok(policy) => policy,
        Err(err) => {
            let shown = err.to_string();
            assert!(!shown.is_empty(), "an empty policy error");
            return;
        }
    };
    // `~/` expands to every home; one with glob characters checks the escaping.
    let homes = vec!["/home/agent".to_string(), "/root".to_string(), "/home/we[i]rd*{x}".to_string()];
    let compiled = policy.compile(&CompileContext::with_homes(homes));

    let matcher = compiled.credentials.path_matcher().expect("a validated policy's credential globs build");
    for path in ["/home/agent/.ssh/id_ed25519", "/root/.aws/credentials", "/etc/hostname", "/srv/app/.env"] {
        let _ = matcher.classify(path);
        let _ = compiled.credentials.match_name(path.rsplit('/').next().unwrap_or(path));
    }

    if let Some(network) = &compiled.network {
        for entry in &network.v4 {
            entry.port_set().expect("validation bounds the ports of each merged IPv4 entry");
        }
        for entry in &network.v6 {
            entry.port_set().expect("validation bounds the ports of each merged IPv6 entry");
        }
        let _ = lpm_port_allowed(&network.v4, Ipv4Addr::new(10, 1, 2, 3), 443);
        let _ = lpm_port_allowed(&network.v6, Ipv6Addr::LOCALHOST, 22);
        // The daemon resolves hostnames; merged with them, too many ports is its (reported)
        // error, not a panic.
        let resolved: Vec<(String, Vec<IpAddr>)> = network
            .hosts
            .iter()
            .map(|host| {
                (host.host.clone(), vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), IpAddr::V6(Ipv6Addr::LOCALHOST)])
            })
            .collect();
        let tables = network.with_resolved_hosts(&resolved);
        for entry in &tables.v4 {
            let _ = entry.port_set();
        }
        for entry in &tables.v6 {
            let _ = entry.port_set();
        }
    }

    let _ = compiled.kernel_config(4242, true);
    let _ = compiled.session_confinement(Some("/home/agent/project/../work"), true);
    let _ = compiled.session_confinement(None, false);
    for (index, _) in compiled.rules.iter().enumerate() {
        assert!(compiled.rule(index as u32).is_some());
    }
    for watch in &compiled.exec_watch {
        let _ = watch.key();
    }

    // The evaluator the daemon builds from the same policy, on a couple of commands.
    let evaluator = DestructiveEvaluator::new(&policy);
    for argv in [&["rm", "-rf", "/srv/data"][..], &["sh", "-c", "cd /tmp && git push --force origin main"]] {
        let exec = ExecContext {
            exe: format!("/usr/bin/{}", argv[0]),
            argv: argv.iter().map(|a| a.to_string()).collect(),
            cwd: "/home/agent/project".into(),
            env: Vec::new(),
        };
        let _ = evaluator.evaluate(&exec);
    }
});
