use super::*;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn timing() -> DnsTiming {
    DnsTiming { min_ttl_ms: 5_000, max_ttl_ms: 3_600_000, grace_ms: 3_000, retry_ms: 2_000 }
}

#[test]
fn next_lookup_follows_the_clamped_ttl() {
    let t = timing();
    let mut host = HostSchedule::default();
    assert!(host.due(0), "a new host is due at once");
    host.answer(1_000, &[ip("10.0.0.1")], 60_000, &t);
    assert_eq!(host.next_due_ms(), 61_000);
    assert!(!host.due(60_999));
    assert!(host.due(61_000));
    host.answer(61_000, &[ip("10.0.0.1")], 1_000, &t);
    assert_eq!(host.next_due_ms(), 66_000, "TTL below the minimum is raised to it");
    host.answer(66_000, &[ip("10.0.0.1")], 86_400_000, &t);
    assert_eq!(host.next_due_ms(), 66_000 + 3_600_000, "TTL above the maximum is lowered to it");
}

#[test]
fn a_vanished_address_stays_for_the_grace_then_is_removed() {
    let t = timing();
    let mut host = HostSchedule::default();
    let first = host.answer(0, &[ip("10.0.0.1")], 5_000, &t);
    assert_eq!(first.added, vec![ip("10.0.0.1")]);
    assert!(first.changes_map());
    let second = host.answer(5_000, &[ip("10.0.0.2")], 5_000, &t);
    assert_eq!(second.added, vec![ip("10.0.0.2")]);
    assert_eq!(second.retiring, vec![ip("10.0.0.1")]);
    assert!(second.removed.is_empty());
    assert_eq!(host.allowed(), vec![ip("10.0.0.1"), ip("10.0.0.2")]);
    assert_eq!(host.next_event_ms(), 8_000, "the grace end comes before the next lookup");
    assert!(host.expire(7_999).is_empty());
    let gone = host.expire(8_000);
    assert_eq!(gone.removed, vec![ip("10.0.0.1")]);
    assert_eq!(host.allowed(), vec![ip("10.0.0.2")]);
}

#[test]
fn an_address_seen_again_within_grace_is_current_again() {
    let t = timing();
    let mut host = HostSchedule::default();
    host.answer(0, &[ip("10.0.0.1")], 5_000, &t);
    host.answer(5_000, &[ip("10.0.0.2")], 5_000, &t);
    let back = host.answer(6_000, &[ip("10.0.0.1"), ip("10.0.0.2")], 5_000, &t);
    assert!(back.is_empty(), "nothing added: it was still allowed ({back:?})");
    assert!(host.expire(100_000).is_empty(), "no grace is pending");
    assert_eq!(host.allowed().len(), 2);
}

#[test]
fn a_failure_keeps_the_set_and_is_noted_once_per_streak() {
    let t = timing();
    let mut host = HostSchedule::default();
    host.answer(0, &[ip("10.0.0.1")], 5_000, &t);
    assert_eq!(host.failure(5_000, "timed out", &t), FailureNote::StreakStarted);
    assert_eq!(host.next_due_ms(), 7_000, "retried after the retry interval");
    assert_eq!(host.failure(7_000, "timed out", &t), FailureNote::Continuing);
    assert_eq!(host.failing(), Some("timed out"));
    assert!(host.expire(1_000_000).is_empty());
    assert_eq!(host.allowed(), vec![ip("10.0.0.1")], "the last good set stays");
    host.answer(9_000, &[ip("10.0.0.1")], 5_000, &t);
    assert_eq!(host.failing(), None);
    assert_eq!(host.failure(14_000, "refused", &t), FailureNote::StreakStarted, "a new streak is noted again");
}

#[test]
fn zero_grace_removes_at_once() {
    let t = DnsTiming { grace_ms: 0, ..timing() };
    let mut host = HostSchedule::default();
    host.answer(0, &[ip("10.0.0.1")], 5_000, &t);
    let change = host.answer(5_000, &[ip("10.0.0.2")], 5_000, &t);
    assert_eq!(change.removed, vec![ip("10.0.0.1")]);
    assert_eq!(host.allowed(), vec![ip("10.0.0.2")]);
}

#[test]
fn the_table_follows_the_policy_and_reports_expiries() {
    let mut table = DnsTable::new(timing());
    table.set_hosts(["a.test", "b.test"]);
    assert_eq!(table.due(0), vec!["a.test".to_string(), "b.test".to_string()]);
    let t = table.timing;
    table.host_mut("a.test").unwrap().answer(0, &[ip("10.0.0.1")], 10_000, &t);
    table.host_mut("a.test").unwrap().answer(1_000, &[ip("10.0.0.2")], 10_000, &t);
    assert_eq!(table.due(1_000), vec!["b.test".to_string()]);
    let status = table.status(1_000);
    let a = &status[0];
    assert_eq!((a.host.as_str(), a.ttl_secs, a.next_lookup_in_secs), ("a.test", 10, 10));
    assert_eq!(a.addrs[0], AddrStatus { addr: ip("10.0.0.1"), expires_in_secs: 3, retiring: true });
    assert_eq!(a.addrs[1], AddrStatus { addr: ip("10.0.0.2"), expires_in_secs: 13, retiring: false });
    let changed = table.expire(4_000);
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].1.removed, vec![ip("10.0.0.1")]);
    table.set_hosts(["b.test"]);
    assert_eq!(table.resolved(), vec![("b.test".to_string(), vec![])]);
}
