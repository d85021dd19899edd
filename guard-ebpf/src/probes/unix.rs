//! Unix sockets in `scope.unix` (the Docker socket and its kind: root on the host for whoever
//! can connect).
//!
//! Three layers, one pair of maps:
//! - lsm tier: `unix_stream_connect` and `unix_may_send` see the peer socket before anything
//!   happens and refuse by the socket file's identity (symlinks, hard links, bind mounts and
//!   relative paths all lead to the same inode).
//! - host tier, 6.7+: cgroup `connect_unix` / `sendmsg_unix` refuse by the path in the kernel's
//!   copy of the address (EPERM before the connection); enforce only for connect, the exit
//!   below records.
//! - host tier, every kernel: at the exit of a connect that succeeded, the connected socket's
//!   peer is read from kernel objects; a peer in scope is recorded and, enforced, the caller
//!   is killed before it returns to user space (it never writes a byte; the connection was
//!   made). This also catches what a path cannot name: a symlink to the socket, a relative path.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel, generated::bpf_send_signal},
    macros::{cgroup_sock_addr, lsm, tracepoint},
    programs::{LsmContext, SockAddrContext, TracePointContext},
};
use guard_common::{DevIno, RuleRef, SyscallArgs, UNIX_PATH_LEN, UnixEvent, action, detector, kind, stat, unix_hook};

use super::{Governed, dropped, enforcing, fill_header, governed, lsm::after, lsm_tier, network_escalated, sent};
use crate::{
    kread::{self, read},
    maps,
};

const ALLOW: i32 = 1;
const REFUSE: i32 = 0;
const EPERM: i32 = -1;
const SIGKILL: u32 = 9;
const AF_UNIX: u16 = 1;
/// `sizeof(sa_family_t)`: the path follows it in `struct sockaddr_un`.
const FAMILY_LEN: u32 = 2;

/// Refuse a use of a socket under `rule`: its mode is enforce, or the session touched a
/// credential (a container runtime socket is the way to root).
#[inline(always)]
fn refuses(task: &Governed, rule: &RuleRef) -> bool {
    enforcing(rule.mode) || network_escalated(task.session.session_id)
}

// aya 0.14 has no connect_unix/sendmsg_unix attach type and refuses unknown section names, so
// these two sit under sections it parses (never loaded as such); the loader loads them with
// the unix attach types itself (guard-daemon/src/kernel/unix.rs).

#[cgroup_sock_addr(connect4)]
pub fn guard_connect_unix(ctx: SockAddrContext) -> i32 {
    by_path(&ctx, unix_hook::CONNECT)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn guard_sendmsg_unix(ctx: SockAddrContext) -> i32 {
    by_path(&ctx, unix_hook::SENDMSG)
}

#[inline(always)]
fn by_path(ctx: &SockAddrContext, hook: u32) -> i32 {
    let Some(task) = governed() else { return ALLOW };
    // The lsm tier decides these itself, by inode.
    if lsm_tier() {
        return ALLOW;
    }
    let off = &task.off;
    // The context is really a `struct bpf_sock_addr_kern`: its address and length are the
    // kernel's copy of the caller's, which the caller cannot change any more.
    let kern = ctx.sock_addr as u64;
    let Some(uaddr) = read(kern, off.sock_addr_uaddr()) else { return ALLOW };
    if !off.sock_addr_uaddrlen().present() {
        return ALLOW;
    }
    let addr_len = read(kern, off.sock_addr_uaddrlen()).unwrap_or(0);
    if addr_len <= FAMILY_LEN {
        return ALLOW;
    }
    let path_len = (addr_len - FAMILY_LEN).min(UNIX_PATH_LEN as u32);
    // The whole of sun_path (the kernel's copy lives in a sockaddr_storage, so all 108 bytes
    // are readable), then cut at the address length and at the first NUL, as the kernel
    // resolves it (`unix_mkname_bsd`): bytes past either are not part of the name.
    // SAFETY: a fixed-size kernel read; failure means no name.
    let Ok(mut key) = (unsafe { bpf_probe_read_kernel((uaddr + FAMILY_LEN as u64) as *const [u8; UNIX_PATH_LEN]) })
    else {
        return ALLOW;
    };
    let mut ended = false;
    let mut i = 0;
    while i < UNIX_PATH_LEN {
        if ended || i as u32 >= path_len || key[i] == 0 {
            ended = true;
            key[i] = 0;
        }
        i += 1;
    }
    // Abstract sockets (a leading NUL) have no file: Landlock scoping covers launched sessions.
    if key[0] == 0 {
        return ALLOW;
    }
    // SAFETY: a copy of a plain value.
    let Some(rule) = (unsafe { maps::UNIX_PATHS.get(&key) }).copied() else { return ALLOW };
    let deny = refuses(&task, &rule);
    // A monitored connect is recorded at its exit, by the socket file (once, not twice).
    if hook == unix_hook::CONNECT && !deny {
        return ALLOW;
    }
    let act = if deny { action::DENY } else { action::AUDIT };
    emit(&task, hook, act, &rule, DevIno::default(), Some((&key, path_len)));
    if deny { REFUSE } else { ALLOW }
}

/// `unix_stream_connect(struct socket *sock, struct sock *other, struct sock *newsk)`.
#[lsm(hook = "unix_stream_connect")]
pub fn guard_lsm_unix_connect(ctx: LsmContext) -> i32 {
    after(ctx.arg(3), |task| by_socket(task, ctx.arg(1), unix_hook::LSM_CONNECT))
}

/// `unix_may_send(struct socket *sock, struct socket *other)`: a datagram to a bound socket.
#[lsm(hook = "unix_may_send")]
pub fn guard_lsm_unix_send(ctx: LsmContext) -> i32 {
    after(ctx.arg(2), |task| by_socket(task, read(ctx.arg(1), task.off.socket_sk()).unwrap_or(0), unix_hook::LSM_SEND))
}

#[inline(always)]
fn by_socket(task: &Governed, sk: u64, hook: u32) -> i32 {
    let Some((identity, rule)) = peer_rule(task, sk) else { return 0 };
    let deny = refuses(task, &rule);
    emit(task, hook, if deny { action::DENY } else { action::AUDIT }, &rule, identity, None);
    if deny { EPERM } else { 0 }
}

/// The rule for the socket file a unix `struct sock` was bound at, if `scope.unix` names it.
#[inline(always)]
fn peer_rule(task: &Governed, sk: u64) -> Option<(DevIno, RuleRef)> {
    let off = &task.off;
    if sk == 0 || read(sk, off.sk_family()) != Some(AF_UNIX) {
        return None;
    }
    let dentry = read(sk, off.unix_path().then(off.path_dentry())).unwrap_or(0);
    if dentry == 0 {
        return None; // abstract or unbound
    }
    let identity = kread::dentry_identity(off, dentry);
    // SAFETY: a copy of a plain value.
    let rule = unsafe { maps::UNIX_INODES.get(&identity) }.copied()?;
    Some((identity, rule))
}

// Syscall tracepoint layout: the first argument at 16 on entry, `ret` at 16 on exit.
const ARG0: usize = 16;
const RET: usize = 16;

#[tracepoint(category = "syscalls", name = "sys_enter_connect")]
pub fn guard_enter_connect(ctx: TracePointContext) -> u32 {
    if governed().is_none() || lsm_tier() {
        return 0;
    }
    // SAFETY: fixed tracepoint layout; a failed read gives fd 0, judged like any other.
    let fd = unsafe { ctx.read_at::<u64>(ARG0) }.unwrap_or(0);
    let _ = maps::SYSCALL_ARGS.insert(&bpf_get_current_pid_tgid(), &SyscallArgs { args: [fd, 0] }, 0);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_connect")]
pub fn guard_exit_connect(ctx: TracePointContext) -> u32 {
    let Some(task) = governed() else { return 0 };
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out before the entry is removed.
    let Some(saved) = (unsafe { maps::SYSCALL_ARGS.get(&pid_tgid) }).copied() else { return 0 };
    let _ = maps::SYSCALL_ARGS.remove(&pid_tgid);
    // SAFETY: as above.
    if unsafe { ctx.read_at::<i64>(RET) }.unwrap_or(-1) != 0 {
        return 0;
    }
    let off = &task.off;
    let file = kread::fd_file(off, kread::current_task(), saved.args[0]);
    let socket = read(file, off.file_private_data()).unwrap_or(0);
    let sk = read(socket, off.socket_sk()).unwrap_or(0);
    if read(sk, off.sk_family()) != Some(AF_UNIX) {
        return 0;
    }
    let peer = read(sk, off.unix_peer()).unwrap_or(0);
    let Some((identity, rule)) = peer_rule(&task, peer) else { return 0 };
    let kill = refuses(&task, &rule);
    if kill {
        // SAFETY: plain helper call; the task dies on its way back to user space.
        unsafe { bpf_send_signal(SIGKILL) };
        maps::bump(stat::KILLED);
    }
    emit(&task, unix_hook::CONNECTED, if kill { action::KILL } else { action::AUDIT }, &rule, identity, None);
    0
}

#[inline(always)]
fn emit(task: &Governed, hook: u32, act: u32, rule: &RuleRef, peer: DevIno, path: Option<(&[u8; UNIX_PATH_LEN], u32)>) {
    maps::count(maps::Count::Connect, act != action::AUDIT);
    if act == action::DENY {
        maps::bump(stat::DENIED);
    }
    let Some(mut entry) = maps::EVENTS.reserve::<UnixEvent>(0) else {
        dropped();
        return;
    };
    // SAFETY: the reservation is exactly one UnixEvent; every field is written below.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.header, kind::UNIX, task);
    ev.header.action = act;
    ev.header.detector = detector::SCOPE_NET;
    ev.header.rule = rule.rule;
    ev.peer = peer;
    ev.hook = hook;
    ev._pad = [0; 4];
    match path {
        Some((bytes, len)) => {
            ev.path = *bytes;
            ev.path_len = len;
        }
        None => {
            ev.path = [0; UNIX_PATH_LEN];
            ev.path_len = 0;
        }
    }
    entry.submit(0);
    sent(stat::CONNECT);
}
