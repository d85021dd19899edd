//! Network: cgroup sock_addr programs on connect and unconnected sendmsg, IPv4 and IPv6.
//!
//! Attached to each registered root cgroup, so only session processes ever run them. They see
//! the kernel's copy of the destination address, decide from the allow-list tries, and refuse
//! with EPERM (return 0) before anything leaves the host.

use aya_ebpf::{macros::cgroup_sock_addr, maps::lpm_trie::Key, programs::SockAddrContext};
use guard_common::{NetEvent, PortSet, action, detector, flags, kind, stat};

use super::{Governed, dropped, enforcing, fill_header, governed, network_escalated, sent};
use crate::maps;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const ALLOW: i32 = 1;
const REFUSE: i32 = 0;

#[cgroup_sock_addr(connect4)]
pub fn guard_connect4(ctx: SockAddrContext) -> i32 {
    handle4(&ctx, kind::CONNECT, stat::CONNECT)
}

#[cgroup_sock_addr(connect6)]
pub fn guard_connect6(ctx: SockAddrContext) -> i32 {
    handle6(&ctx, kind::CONNECT, stat::CONNECT)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn guard_sendmsg4(ctx: SockAddrContext) -> i32 {
    handle4(&ctx, kind::SENDMSG, stat::SENDMSG)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn guard_sendmsg6(ctx: SockAddrContext) -> i32 {
    handle6(&ctx, kind::SENDMSG, stat::SENDMSG)
}

/// The verifier allows each program only its own family's context fields: `user_ip4` in the
/// *4 programs, `user_ip6` in the *6 ones.
#[inline(always)]
fn handle4(ctx: &SockAddrContext, event_kind: u32, kind_stat: u32) -> i32 {
    let Some(task) = governed() else { return ALLOW };
    // SAFETY: the context pointer is valid for the program's duration.
    let sa = unsafe { &*ctx.sock_addr };
    let v4 = sa.user_ip4.to_ne_bytes();
    let mut addr = [0u8; 16];
    addr[..4].copy_from_slice(&v4);
    // user_port holds the port in network byte order in its low 16 bits.
    let port = u16::from_be(sa.user_port as u16);
    let dest = Dest { family: AF_INET, is_v4: true, mapped: false, v4, addr, port };
    finish(&task, sa.type_, sa.protocol, &dest, event_kind, kind_stat)
}

#[inline(always)]
fn handle6(ctx: &SockAddrContext, event_kind: u32, kind_stat: u32) -> i32 {
    let Some(task) = governed() else { return ALLOW };
    // SAFETY: the context pointer is valid for the program's duration.
    let sa = unsafe { &*ctx.sock_addr };
    let w0 = sa.user_ip6[0];
    let w1 = sa.user_ip6[1];
    let w2 = sa.user_ip6[2];
    let w3 = sa.user_ip6[3];
    let mut addr = [0u8; 16];
    addr[0..4].copy_from_slice(&w0.to_ne_bytes());
    addr[4..8].copy_from_slice(&w1.to_ne_bytes());
    addr[8..12].copy_from_slice(&w2.to_ne_bytes());
    addr[12..16].copy_from_slice(&w3.to_ne_bytes());
    // ::ffff:a.b.c.d is IPv4 in disguise: judge it by the IPv4 list.
    let mapped = w0 == 0 && w1 == 0 && u32::from_be(w2) == 0xffff;
    let port = u16::from_be(sa.user_port as u16);
    let dest = Dest { family: AF_INET6, is_v4: mapped, mapped, v4: w3.to_ne_bytes(), addr, port };
    finish(&task, sa.type_, sa.protocol, &dest, event_kind, kind_stat)
}

struct Dest {
    family: u16,
    is_v4: bool,
    mapped: bool,
    v4: [u8; 4],
    addr: [u8; 16],
    port: u16,
}

#[inline(always)]
fn finish(task: &Governed, sock_type: u32, protocol: u32, dest: &Dest, event_kind: u32, kind_stat: u32) -> i32 {
    let (act, rule) = judge(task.session.session_id, dest.is_v4, &dest.v4, &dest.addr, dest.port);
    maps::count(maps::Count::Connect, act == action::DENY);
    if let Some(mut entry) = maps::EVENTS.reserve::<NetEvent>(0) {
        // SAFETY: the reservation is exactly one NetEvent; every field is written below.
        let ev = unsafe { &mut *entry.as_mut_ptr() };
        fill_header(&mut ev.header, event_kind, task);
        ev.family = dest.family;
        ev.port = dest.port;
        ev.sock_type = sock_type;
        ev.protocol = protocol;
        ev._pad = 0;
        ev.addr = dest.addr;
        if dest.mapped {
            ev.header.flags |= flags::V4_MAPPED;
        }
        if act != action::ALLOW {
            ev.header.action = act;
            ev.header.detector = detector::SCOPE_NET;
            ev.header.rule = rule;
        }
        entry.submit(0);
        sent(kind_stat);
    } else {
        dropped();
    }
    if act == action::DENY {
        maps::bump(stat::DENIED);
        REFUSE
    } else {
        ALLOW
    }
}

/// `(action, rule)` for a destination.
#[inline(always)]
fn judge(session_id: u64, is_v4: bool, v4: &[u8; 4], v6: &[u8; 16], port: u16) -> (u32, u32) {
    let Some(cfg) = maps::config() else { return (action::ALLOW, u32::MAX) };
    if cfg.net_scope == 0 {
        return (action::ALLOW, u32::MAX);
    }
    let loopback = if is_v4 { v4[0] == 127 } else { is_v6_loopback(v6) };
    if loopback && cfg.allow_loopback != 0 {
        return (action::ALLOW, u32::MAX);
    }
    let allowed = if is_v4 {
        maps::NET_ALLOW4.get(Key::new(32, *v4)).is_some_and(|ports| port_allowed(ports, port))
    } else {
        maps::NET_ALLOW6.get(Key::new(128, *v6)).is_some_and(|ports| port_allowed(ports, port))
    };
    if allowed {
        return (action::ALLOW, u32::MAX);
    }
    let act = if network_escalated(session_id) || enforcing(cfg.net_mode) { action::DENY } else { action::AUDIT };
    (act, cfg.net_rule)
}

#[inline(always)]
fn is_v6_loopback(a: &[u8; 16]) -> bool {
    let mut i = 0;
    while i < 15 {
        if a[i] != 0 {
            return false;
        }
        i += 1;
    }
    a[15] == 1
}

#[inline(always)]
fn port_allowed(set: &PortSet, port: u16) -> bool {
    if set.any != 0 {
        return true;
    }
    let mut i = 0;
    while i < guard_common::PORTS_PER_ENTRY {
        if (i as u32) < set.count && set.ports[i] == port {
            return true;
        }
        i += 1;
    }
    false
}
