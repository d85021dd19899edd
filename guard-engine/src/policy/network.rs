//! Network allow-list entries and the longest-prefix-match tables built from them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use guard_common::{PORTS_PER_ENTRY, PortSet};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Serialize;

/// Ports an allow-list entry admits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AllowedPorts {
    Any,
    Listed(BTreeSet<u16>),
}

/// A port set too large for one kernel entry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{count} ports on one entry; the kernel holds at most {PORTS_PER_ENTRY}")]
pub struct TooManyPorts {
    pub count: usize,
}

impl AllowedPorts {
    pub fn allows(&self, port: u16) -> bool {
        match self {
            AllowedPorts::Any => true,
            AllowedPorts::Listed(ports) => ports.contains(&port),
        }
    }

    pub fn union_with(&mut self, other: &AllowedPorts) {
        match (&mut *self, other) {
            (AllowedPorts::Any, _) => {}
            (_, AllowedPorts::Any) => *self = AllowedPorts::Any,
            (AllowedPorts::Listed(mine), AllowedPorts::Listed(theirs)) => mine.extend(theirs.iter().copied()),
        }
    }

    fn count(&self) -> usize {
        match self {
            AllowedPorts::Any => 0,
            AllowedPorts::Listed(ports) => ports.len(),
        }
    }

    /// The kernel value for this entry, tagged with the network rule's index.
    pub fn port_set(&self, rule: u32) -> Result<PortSet, TooManyPorts> {
        let mut set = PortSet { rule, ..PortSet::default() };
        match self {
            AllowedPorts::Any => set.any = 1,
            AllowedPorts::Listed(ports) => {
                if ports.len() > PORTS_PER_ENTRY {
                    return Err(TooManyPorts { count: ports.len() });
                }
                for (slot, port) in set.ports.iter_mut().zip(ports) {
                    *slot = *port;
                }
                set.count = ports.len() as u32;
            }
        }
        Ok(set)
    }
}

/// What an allow entry names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum AllowTarget {
    Net(IpNet),
    /// Resolved by the daemon, not here.
    Host(String),
}

/// One validated `scope.network.allow` entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct AllowEntry {
    pub target: AllowTarget,
    pub ports: AllowedPorts,
    /// As written in the policy.
    pub written: String,
}

/// Parses `CIDR`, `IP`, `CIDR:ports`, `[v6 or v6 CIDR]:ports`, `host:ports`, `host`, where
/// `ports` is `*`, one port or a comma-separated list.
pub fn parse_allow_entry(text: &str) -> Result<AllowEntry, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("empty allow entry".into());
    }
    let (target, ports) = if let Some(rest) = trimmed.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return Err(format!("`{trimmed}`: `[` without a closing `]`"));
        };
        let net = parse_net(inside).ok_or_else(|| format!("`{trimmed}`: `{inside}` is not an IPv6 address or CIDR"))?;
        if !matches!(net, IpNet::V6(_)) {
            return Err(format!("`{trimmed}`: brackets are for IPv6; write IPv4 as `{inside}:port`"));
        }
        let ports = match after {
            "" => AllowedPorts::Any,
            _ => match after.strip_prefix(':') {
                Some(ports) => parse_ports(trimmed, ports)?,
                None => return Err(format!("`{trimmed}`: expected `:port` after `]`")),
            },
        };
        (AllowTarget::Net(net), ports)
    } else if let Some(net) = parse_net(trimmed) {
        (AllowTarget::Net(net), AllowedPorts::Any)
    } else if trimmed.matches(':').count() > 1 {
        return Err(format!("`{trimmed}` is not a valid IPv6 address or CIDR (with a port, write `[addr]:port`)"));
    } else {
        let (host, ports) = match trimmed.split_once(':') {
            Some((host, ports)) => (host, parse_ports(trimmed, ports)?),
            None => (trimmed, AllowedPorts::Any),
        };
        let target = match parse_net(host) {
            Some(net) => AllowTarget::Net(net),
            None if host.contains('/') => {
                return Err(format!("`{trimmed}`: bad CIDR `{host}` (expected ADDRESS/PREFIX, e.g. 10.0.0.0/8)"));
            }
            None => AllowTarget::Host(parse_hostname(trimmed, host)?),
        };
        (target, ports)
    };
    if let AllowTarget::Net(net) = &target
        && net.trunc() != *net
    {
        return Err(format!("`{trimmed}`: `{net}` has host bits set (did you mean `{}`?)", net.trunc()));
    }
    Ok(AllowEntry { target, ports, written: trimmed.to_string() })
}

/// A CIDR, or a bare address as a host prefix (/32 or /128).
fn parse_net(text: &str) -> Option<IpNet> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Some(net);
    }
    text.parse::<IpAddr>().ok().map(IpNet::from)
}

fn parse_ports(entry: &str, text: &str) -> Result<AllowedPorts, String> {
    if text == "*" {
        return Ok(AllowedPorts::Any);
    }
    let mut ports = BTreeSet::new();
    for piece in text.split(',') {
        let piece = piece.trim();
        match piece.parse::<u16>() {
            Ok(port) if port != 0 => {
                ports.insert(port);
            }
            _ => {
                return Err(format!(
                    "`{entry}`: bad port `{piece}` (expected 1-65535, a comma-separated list, or `*`)"
                ));
            }
        }
    }
    if ports.len() > PORTS_PER_ENTRY {
        return Err(format!("`{entry}`: {} ports; one entry holds at most {PORTS_PER_ENTRY}", ports.len()));
    }
    Ok(AllowedPorts::Listed(ports))
}

/// Hostname syntax (RFC 1123 labels). Lowercased: DNS is case-insensitive.
fn parse_hostname(entry: &str, host: &str) -> Result<String, String> {
    if host.contains('*') {
        return Err(format!("`{entry}`: wildcard hostnames are not supported (the daemon resolves each name)"));
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    let labels: Vec<&str> = host.split('.').collect();
    let label_ok = |label: &&str| {
        !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    let last_is_numeric = labels.last().is_some_and(|label| label.bytes().all(|b| b.is_ascii_digit()));
    if host.is_empty() || host.len() > 253 || !labels.iter().all(label_ok) || last_is_numeric {
        return Err(format!("`{entry}`: `{host}` is neither an IP address, a CIDR nor a hostname"));
    }
    Ok(host.to_ascii_lowercase())
}

/// One LPM entry as the daemon writes it: the prefix and the ports its lookup admits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NetEntry<N> {
    pub net: N,
    /// Already merged with every covering entry's ports.
    pub ports: AllowedPorts,
    /// Index of the network rule (`RuleRef.rule`, `PortSet.rule`).
    pub rule: u32,
}

impl<N> NetEntry<N> {
    pub fn port_set(&self) -> Result<PortSet, TooManyPorts> {
        self.ports.port_set(self.rule)
    }
}

/// The IPv4 and IPv6 LPM tables.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LpmTables {
    pub v4: Vec<NetEntry<Ipv4Net>>,
    pub v6: Vec<NetEntry<Ipv6Net>>,
}

/// Builds LPM tables whose single longest-prefix lookup gives the union semantics of the
/// allow list: an address/port is allowed when ANY entry covering the address allows the
/// port. A longest-prefix lookup only sees the most specific entry, so each entry carries the
/// ports of every entry that covers it (and `Any` if one of those allows any port).
///
/// IPv4-mapped IPv6 prefixes (`::ffff:a.b.c.d/p`, p >= 96) become IPv4 entries because the
/// kernel matches mapped addresses as IPv4. A shorter IPv6 prefix that covers the whole
/// mapped range (`::/0`, `::/64`, ...) also yields `0.0.0.0/0`.
pub fn build_lpm_tables(entries: impl IntoIterator<Item = (IpNet, AllowedPorts)>, rule: u32) -> LpmTables {
    let mut v4: BTreeMap<Ipv4Net, AllowedPorts> = BTreeMap::new();
    let mut v6: BTreeMap<Ipv6Net, AllowedPorts> = BTreeMap::new();
    let mut add_v4 = |net: Ipv4Net, ports: &AllowedPorts| {
        v4.entry(net).and_modify(|existing| existing.union_with(ports)).or_insert_with(|| ports.clone());
    };
    for (net, ports) in entries {
        match net {
            IpNet::V4(net) => add_v4(net.trunc(), &ports),
            IpNet::V6(net) => {
                let net = net.trunc();
                if net.prefix_len() >= 96 && V4_MAPPED_RANGE.contains(&net.network()) {
                    if let Some(v4_net) = mapped_to_v4(net) {
                        add_v4(v4_net, &ports);
                    }
                    continue;
                }
                if net.contains(&V4_MAPPED_RANGE) {
                    add_v4(Ipv4Net::default(), &ports);
                }
                v6.entry(net).and_modify(|existing| existing.union_with(&ports)).or_insert(ports);
            }
        }
    }
    LpmTables { v4: merge_covering(&v4, rule), v6: merge_covering(&v6, rule) }
}

/// `::ffff:0:0/96`, where IPv4-mapped IPv6 addresses live.
const V4_MAPPED_RANGE: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96);

fn mapped_to_v4(net: Ipv6Net) -> Option<Ipv4Net> {
    let v4_addr = net.network().to_ipv4_mapped()?;
    Ipv4Net::new(v4_addr, net.prefix_len() - 96).ok()
}

/// Each entry's ports become the union of its own and all covering entries' ports.
fn merge_covering<N: LpmPrefix>(entries: &BTreeMap<N, AllowedPorts>, rule: u32) -> Vec<NetEntry<N>> {
    entries
        .keys()
        .map(|net| {
            let mut ports = AllowedPorts::Listed(BTreeSet::new());
            for (other, other_ports) in entries {
                if other.covers(net) {
                    ports.union_with(other_ports);
                }
            }
            NetEntry { net: *net, ports, rule }
        })
        .collect()
}

/// The largest merged port list any entry would get, for validation.
pub(crate) fn largest_merged_port_count(tables: &LpmTables) -> usize {
    let v4 = tables.v4.iter().map(|entry| entry.ports.count());
    let v6 = tables.v6.iter().map(|entry| entry.ports.count());
    v4.chain(v6).max().unwrap_or(0)
}

/// What the LPM helpers need from `Ipv4Net` / `Ipv6Net`.
pub trait LpmPrefix: Copy + Ord {
    type Addr;
    fn covers(&self, other: &Self) -> bool;
    fn contains_addr(&self, addr: &Self::Addr) -> bool;
    fn prefix_bits(&self) -> u8;
}

impl LpmPrefix for Ipv4Net {
    type Addr = Ipv4Addr;
    fn covers(&self, other: &Self) -> bool {
        self.contains(other)
    }
    fn contains_addr(&self, addr: &Ipv4Addr) -> bool {
        self.contains(addr)
    }
    fn prefix_bits(&self) -> u8 {
        self.prefix_len()
    }
}

impl LpmPrefix for Ipv6Net {
    type Addr = Ipv6Addr;
    fn covers(&self, other: &Self) -> bool {
        self.contains(other)
    }
    fn contains_addr(&self, addr: &Ipv6Addr) -> bool {
        self.contains(addr)
    }
    fn prefix_bits(&self) -> u8 {
        self.prefix_len()
    }
}

/// What the kernel does: take the longest prefix containing `addr`, then check its ports.
/// No entry means not allowed (loopback is handled by its own flag, not by these tables).
pub fn lpm_port_allowed<N: LpmPrefix>(entries: &[NetEntry<N>], addr: N::Addr, port: u16) -> bool {
    entries
        .iter()
        .filter(|entry| entry.net.contains_addr(&addr))
        .max_by_key(|entry| entry.net.prefix_bits())
        .is_some_and(|entry| entry.ports.allows(port))
}
