//! Allow-list hostnames by TTL: a tokio task resolves each host with hickory-resolver (the
//! system's resolv.conf and /etc/hosts) when its records expire, and tells the daemon loop
//! when a host's address set changes or a lookup fails. The schedule itself is
//! [`guard_engine::policy::dns`]; the kernel maps are rewritten through the rescan path
//! ([`crate::policy_load::rescan`]), which reads the current sets from [`TABLE`].

use std::net::IpAddr;
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use guard_engine::policy::dns::{DnsTable, DnsTiming, FailureNote, HostAddrStatus};
use hickory_resolver::TokioResolver;
use tokio::sync::mpsc::UnboundedSender;

/// The daemon's one table of allow-list hosts (filled by the resolver task, read by the policy
/// preparation and `guard status`).
static TABLE: LazyLock<Mutex<DnsTable>> = LazyLock::new(|| Mutex::new(DnsTable::default()));
static ORIGIN: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Longest sleep of the resolver task: new hosts from a reload are picked up this soon.
const POLL: Duration = Duration::from_secs(1);

fn table() -> MutexGuard<'static, DnsTable> {
    TABLE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn now_ms() -> u64 {
    ORIGIN.elapsed().as_millis() as u64
}

/// What the daemon loop records (and, for a change, applies to the kernel map).
#[derive(Debug)]
pub enum DnsEvent {
    Changed {
        host: String,
        added: Vec<IpAddr>,
        removed: Vec<IpAddr>,
        retiring: Vec<IpAddr>,
        ttl_secs: u64,
    },
    /// First failure of a streak; the last good set stays.
    Failed {
        host: String,
        error: String,
        kept: Vec<IpAddr>,
    },
}

impl DnsEvent {
    pub fn changes_map(&self) -> bool {
        matches!(self, DnsEvent::Changed { added, removed, .. } if !added.is_empty() || !removed.is_empty())
    }
}

pub fn set_grace(grace: Duration) {
    table().timing.grace_ms = grace.as_millis() as u64;
}

/// Follows the policy's host list; returns each host's current set, or `None` for a host the
/// resolver task has not answered yet (the caller falls back to the libc resolver).
pub fn sync_hosts(hosts: &[&str]) -> Vec<(String, Option<Vec<IpAddr>>)> {
    let mut table = table();
    table.set_hosts(hosts.iter().copied());
    hosts
        .iter()
        .map(|host| {
            let known = table.get(host).filter(|s| s.ttl_ms() > 0 || s.failing().is_some()).map(|s| s.allowed());
            (host.to_string(), known)
        })
        .collect()
}

pub fn status() -> Vec<HostAddrStatus> {
    table().status(now_ms())
}

/// Starts the resolver task on the current tokio runtime.
pub fn spawn(events: UnboundedSender<DnsEvent>) -> anyhow::Result<()> {
    use anyhow::Context;
    let resolver = TokioResolver::builder_tokio().context("reading the system resolver configuration")?.build()?;
    tokio::spawn(run(resolver, events));
    Ok(())
}

async fn run(resolver: TokioResolver, events: UnboundedSender<DnsEvent>) {
    loop {
        let due = table().due(now_ms());
        for host in due {
            // A trailing dot: the allow-list names are absolute, no search domains.
            let answer = resolver.lookup_ip(format!("{host}.")).await;
            let now = now_ms();
            let mut table = table();
            let timing: DnsTiming = table.timing;
            let Some(schedule) = table.host_mut(&host) else { continue };
            let event = match answer {
                Ok(lookup) => {
                    let addrs: Vec<IpAddr> = lookup.iter().collect();
                    let ttl = lookup.valid_until().saturating_duration_since(Instant::now());
                    let change = schedule.answer(now, &addrs, ttl.as_millis() as u64, &timing);
                    (!change.is_empty()).then(|| DnsEvent::Changed {
                        host: host.clone(),
                        added: change.added,
                        removed: change.removed,
                        retiring: change.retiring,
                        ttl_secs: schedule.ttl_ms() / 1000,
                    })
                }
                Err(err) => {
                    let error = err.to_string();
                    match schedule.failure(now, &error, &timing) {
                        FailureNote::StreakStarted => {
                            Some(DnsEvent::Failed { host: host.clone(), error, kept: schedule.allowed() })
                        }
                        FailureNote::Continuing => None,
                    }
                }
            };
            if let Some(event) = event
                && events.send(event).is_err()
            {
                return;
            }
        }
        let (expired, next) = {
            let mut table = table();
            let now = now_ms();
            let expired = table.expire(now);
            let ttl_of = |host: &str| table.get(host).map_or(0, |s| s.ttl_ms() / 1000);
            let expired: Vec<DnsEvent> = expired
                .into_iter()
                .map(|(host, change)| DnsEvent::Changed {
                    ttl_secs: ttl_of(&host),
                    host,
                    added: change.added,
                    removed: change.removed,
                    retiring: change.retiring,
                })
                .collect();
            let next = table.next_event_ms().map_or(POLL, |at| Duration::from_millis(at.saturating_sub(now)));
            (expired, next.min(POLL))
        };
        for event in expired {
            if events.send(event).is_err() {
                return;
            }
        }
        tokio::time::sleep(next.max(Duration::from_millis(50))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names in /etc/hosts are answered by hickory itself (no DNS server needed), in the
    /// absolute form the resolver task asks for. `localhost` is special-cased by hickory, so
    /// the test takes another name from the file.
    #[tokio::test]
    async fn hosts_file_names_resolve_through_hickory() {
        let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        let entry = hosts.lines().filter(|l| !l.trim_start().starts_with('#')).find_map(|line| {
            let mut words = line.split_whitespace();
            let addr: IpAddr = words.next()?.parse().ok()?;
            let name = words.find(|name| !name.starts_with("localhost") && !name.contains("localhost"))?;
            Some((addr, name.to_string()))
        });
        let Some((addr, name)) = entry else {
            println!("SKIPPED hosts_file_names_resolve_through_hickory: no name besides localhost in /etc/hosts");
            return;
        };
        let resolver = TokioResolver::builder_tokio().unwrap().build().unwrap();
        let lookup = resolver.lookup_ip(format!("{name}.")).await.expect("a name from /etc/hosts");
        let addrs: Vec<IpAddr> = lookup.iter().collect();
        assert!(addrs.contains(&addr), "{name}: {addrs:?}, /etc/hosts says {addr}");
        assert!(lookup.valid_until() > Instant::now(), "an expiry in the future");
    }
}
