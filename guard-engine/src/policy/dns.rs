//! Allow-list hostnames by TTL: when each host is due for re-resolution, which addresses it
//! holds (the current answer plus retired ones within their grace period), and the changes to
//! apply to the kernel's allow map. Pure: times are milliseconds on a caller-chosen clock.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;

/// Bounds on how soon a host is asked again, and how long a vanished address stays allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsTiming {
    pub min_ttl_ms: u64,
    pub max_ttl_ms: u64,
    /// An address missing from a new answer stays allowed this long (connections in flight).
    pub grace_ms: u64,
    /// After a failed lookup, ask again this soon.
    pub retry_ms: u64,
}

impl Default for DnsTiming {
    fn default() -> Self {
        DnsTiming { min_ttl_ms: 5_000, max_ttl_ms: 3_600_000, grace_ms: 60_000, retry_ms: 5_000 }
    }
}

impl DnsTiming {
    pub fn clamp_ttl(&self, ttl_ms: u64) -> u64 {
        ttl_ms.clamp(self.min_ttl_ms, self.max_ttl_ms.max(self.min_ttl_ms))
    }
}

/// What one event did to a host's allowed set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostChange {
    /// Newly allowed.
    pub added: Vec<IpAddr>,
    /// No longer allowed (their grace ran out).
    pub removed: Vec<IpAddr>,
    /// Missing from the answer, allowed until their grace ends.
    pub retiring: Vec<IpAddr>,
}

impl HostChange {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.retiring.is_empty()
    }

    /// The kernel map changes (retiring addresses stay in the map).
    pub fn changes_map(&self) -> bool {
        !self.added.is_empty() || !self.removed.is_empty()
    }
}

/// One host's schedule and address set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostSchedule {
    /// Address → `None` while in the current answer, `Some(t)` when retired, allowed until `t`.
    addrs: BTreeMap<IpAddr, Option<u64>>,
    /// When to ask again (0: now).
    next_due_ms: u64,
    /// The last answer's TTL, clamped.
    ttl_ms: u64,
    /// Set on the first failure of a streak; cleared by an answer.
    failing: Option<String>,
}

/// What a failed lookup means for the audit stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureNote {
    /// First failure since the last good answer: record it.
    StreakStarted,
    /// The streak goes on: already recorded.
    Continuing,
}

impl HostSchedule {
    pub fn due(&self, now_ms: u64) -> bool {
        now_ms >= self.next_due_ms
    }

    pub fn next_due_ms(&self) -> u64 {
        self.next_due_ms
    }

    pub fn ttl_ms(&self) -> u64 {
        self.ttl_ms
    }

    pub fn failing(&self) -> Option<&str> {
        self.failing.as_deref()
    }

    /// The earliest time something must happen: a lookup or a grace expiry.
    pub fn next_event_ms(&self) -> u64 {
        self.addrs.values().flatten().copied().chain([self.next_due_ms]).min().unwrap_or(self.next_due_ms)
    }

    /// Addresses the kernel map must hold now.
    pub fn allowed(&self) -> Vec<IpAddr> {
        self.addrs.keys().copied().collect()
    }

    /// Each allowed address with the time it stops being allowed unless seen again: the next
    /// lookup plus the grace for current ones, the grace end for retired ones.
    pub fn expiries(&self, timing: &DnsTiming) -> Vec<(IpAddr, u64, bool)> {
        self.addrs
            .iter()
            .map(|(addr, retired)| match retired {
                None => (*addr, self.next_due_ms.saturating_add(timing.grace_ms), false),
                Some(until) => (*addr, *until, true),
            })
            .collect()
    }

    /// A good answer: `addrs` with the record set's remaining TTL.
    pub fn answer(&mut self, now_ms: u64, addrs: &[IpAddr], ttl_ms: u64, timing: &DnsTiming) -> HostChange {
        let mut change = self.expire(now_ms);
        let ttl_ms = timing.clamp_ttl(ttl_ms);
        self.ttl_ms = ttl_ms;
        self.next_due_ms = now_ms.saturating_add(ttl_ms);
        self.failing = None;
        for addr in addrs {
            if self.addrs.insert(*addr, None).is_none() {
                change.added.push(*addr);
            }
        }
        for (addr, retired) in self.addrs.iter_mut() {
            if retired.is_none() && !addrs.contains(addr) {
                *retired = Some(now_ms.saturating_add(timing.grace_ms));
                change.retiring.push(*addr);
            }
        }
        // A zero grace removes at once.
        change.removed.extend(self.expire(now_ms).removed);
        change
    }

    /// A failed lookup: the set stays as it is; ask again after the retry interval.
    pub fn failure(&mut self, now_ms: u64, error: &str, timing: &DnsTiming) -> FailureNote {
        self.next_due_ms = now_ms.saturating_add(timing.retry_ms);
        // The last good set is kept: push the grace of current addresses no further, but do
        // not retire them either.
        if self.failing.is_some() {
            FailureNote::Continuing
        } else {
            self.failing = Some(error.to_string());
            FailureNote::StreakStarted
        }
    }

    /// Drops retired addresses whose grace has ended.
    pub fn expire(&mut self, now_ms: u64) -> HostChange {
        let mut change = HostChange::default();
        self.addrs.retain(|addr, retired| match retired {
            Some(until) if *until <= now_ms => {
                change.removed.push(*addr);
                false
            }
            _ => true,
        });
        change
    }
}

/// The schedules of all allow-list hosts.
#[derive(Clone, Debug, Default)]
pub struct DnsTable {
    pub timing: DnsTiming,
    hosts: BTreeMap<String, HostSchedule>,
}

/// One host's state for `guard status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct HostAddrStatus {
    pub host: String,
    pub ttl_secs: u64,
    /// Seconds until the next lookup.
    pub next_lookup_in_secs: u64,
    pub addrs: Vec<AddrStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AddrStatus {
    pub addr: IpAddr,
    /// Seconds until it is dropped unless a lookup returns it again.
    pub expires_in_secs: u64,
    /// Missing from the last answer: allowed for the rest of its grace.
    pub retiring: bool,
}

impl DnsTable {
    pub fn new(timing: DnsTiming) -> Self {
        DnsTable { timing, hosts: BTreeMap::new() }
    }

    /// Follows the policy's host list: new hosts are due now, gone ones are dropped.
    pub fn set_hosts<'a>(&mut self, hosts: impl IntoIterator<Item = &'a str>) {
        let wanted: Vec<&str> = hosts.into_iter().collect();
        self.hosts.retain(|host, _| wanted.contains(&host.as_str()));
        for host in wanted {
            self.hosts.entry(host.to_string()).or_default();
        }
    }

    pub fn host_mut(&mut self, host: &str) -> Option<&mut HostSchedule> {
        self.hosts.get_mut(host)
    }

    pub fn get(&self, host: &str) -> Option<&HostSchedule> {
        self.hosts.get(host)
    }

    /// Hosts due for a lookup now.
    pub fn due(&self, now_ms: u64) -> Vec<String> {
        self.hosts.iter().filter(|(_, s)| s.due(now_ms)).map(|(h, _)| h.clone()).collect()
    }

    /// When the next lookup or expiry is due (None: no hosts).
    pub fn next_event_ms(&self) -> Option<u64> {
        self.hosts.values().map(HostSchedule::next_event_ms).min()
    }

    /// Expires grace periods everywhere; returns the hosts whose set changed.
    pub fn expire(&mut self, now_ms: u64) -> Vec<(String, HostChange)> {
        self.hosts
            .iter_mut()
            .map(|(host, s)| (host.clone(), s.expire(now_ms)))
            .filter(|(_, change)| !change.is_empty())
            .collect()
    }

    /// The addresses each host allows now, for the kernel map.
    pub fn resolved(&self) -> Vec<(String, Vec<IpAddr>)> {
        self.hosts.iter().map(|(host, s)| (host.clone(), s.allowed())).collect()
    }

    pub fn status(&self, now_ms: u64) -> Vec<HostAddrStatus> {
        let secs = |at: u64| at.saturating_sub(now_ms).div_ceil(1000);
        self.hosts
            .iter()
            .map(|(host, s)| HostAddrStatus {
                host: host.clone(),
                ttl_secs: s.ttl_ms / 1000,
                next_lookup_in_secs: secs(s.next_due_ms),
                addrs: s
                    .expiries(&self.timing)
                    .into_iter()
                    .map(|(addr, until, retiring)| AddrStatus { addr, expires_in_secs: secs(until), retiring })
                    .collect(),
                failing: s.failing.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "dns_tests.rs"]
mod tests;
