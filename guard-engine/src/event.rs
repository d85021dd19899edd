//! Decoding ring-buffer records into owned events.
//!
//! The bytes come from the kernel, but a length or kind we do not expect (a mismatched object,
//! a truncated record) is reported as an error, never trusted.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use guard_common::{
    DevIno, EventHeader, ExecEvent, ExitEvent, ForkEvent, FsEvent, NetEvent, OpenEvent, RefusalEvent, SelfEvent,
    UnixEvent, c_bytes, flags, kind,
};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("ring buffer record of {len} bytes is shorter than an event header ({need} bytes)")]
    TooShort { len: usize, need: usize },
    #[error("ring buffer record of kind {kind} has {len} bytes, expected {need}")]
    WrongSize { kind: u32, len: usize, need: usize },
    #[error("ring buffer record has unknown kind {0}")]
    UnknownKind(u32),
}

/// The common head, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub action: u32,
    pub ktime_ns: u64,
    pub cgroup_id: u64,
    pub session_id: u64,
    pub pid: u32,
    pub tgid: u32,
    pub ppid: u32,
    pub detector: u32,
    pub rule: Option<u32>,
    pub flags: u32,
    pub comm: String,
    /// The process's start time (ns since boot).
    pub start_ns: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    Exec {
        file: DevIno,
        old_pid: u32,
        filename: String,
        argv: Vec<String>,
        argv_truncated: bool,
    },
    /// `consumer`: the daemon's index of the consumer that read its own credential.
    Open {
        file: Option<DevIno>,
        flags: u64,
        dfd: i64,
        ret: i64,
        path: String,
        name: String,
        consumer: Option<u32>,
    },
    Connect {
        addr: IpAddr,
        port: u16,
        sock_type: u32,
        protocol: u32,
        v4_mapped: bool,
    },
    Sendmsg {
        addr: IpAddr,
        port: u16,
        sock_type: u32,
        protocol: u32,
        v4_mapped: bool,
    },
    Fork {
        child_pid: u32,
        child_tgid: u32,
        child_start_ns: u64,
    },
    Exit {
        start_ns: u64,
        counts: guard_common::ProcCounts,
    },
    /// unlink/rmdir/rename/truncate judged by the lsm tier (`guard_common::fsop::*`).
    FsChange {
        file: DevIno,
        op: u32,
        name: String,
    },
    /// A session process went for a held task or the daemon (`guard_common::protect::*`).
    SelfProtect {
        target_tgid: u32,
        what: u32,
        detail: u32,
    },
    /// A syscall refused by a confinement layer (`ret` = -errno), or killed at its entry
    /// (`ret` = 0).
    Refusal {
        nr: u32,
        ret: i32,
        args: [u64; 2],
        path: String,
    },
    /// A unix socket in `scope.unix` was used. `hook` (`guard_common::unix_hook::*`) says
    /// where it was decided: the path hooks give `path` (as the caller wrote it), the inode
    /// hooks `peer` (the socket file).
    Unix {
        hook: u32,
        peer: Option<DevIno>,
        path: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelEvent {
    pub head: Head,
    pub body: Body,
}

fn read<T: Copy>(bytes: &[u8]) -> T {
    // SAFETY: callers check `bytes.len() == size_of::<T>()`; T is a plain #[repr(C)] type of
    // integers and byte arrays, valid for any bit pattern; read_unaligned copes with alignment.
    unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) }
}

fn text(buf: &[u8]) -> String {
    String::from_utf8_lossy(c_bytes(buf)).into_owned()
}

fn sized<T: Copy>(bytes: &[u8], kind: u32) -> Result<T, DecodeError> {
    let need = std::mem::size_of::<T>();
    if bytes.len() != need {
        return Err(DecodeError::WrongSize { kind, len: bytes.len(), need });
    }
    Ok(read(bytes))
}

fn net_addr(ev: &NetEvent) -> (IpAddr, bool) {
    let mapped = ev.header.flags & flags::V4_MAPPED != 0;
    if ev.family == 2 {
        let a = ev.addr;
        (IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])), false)
    } else {
        (IpAddr::V6(Ipv6Addr::from(ev.addr)), mapped)
    }
}

pub fn decode(bytes: &[u8]) -> Result<KernelEvent, DecodeError> {
    let need = std::mem::size_of::<EventHeader>();
    if bytes.len() < need {
        return Err(DecodeError::TooShort { len: bytes.len(), need });
    }
    let header: EventHeader = read(&bytes[..need]);
    let head = Head {
        action: header.action,
        ktime_ns: header.ktime_ns,
        cgroup_id: header.cgroup_id,
        session_id: header.session_id,
        pid: header.pid,
        tgid: header.tgid,
        ppid: header.ppid,
        detector: header.detector,
        rule: (header.rule != u32::MAX).then_some(header.rule),
        flags: header.flags,
        comm: text(&header.comm),
        start_ns: header.start_ns,
    };
    let body = match header.kind {
        kind::EXEC => {
            let ev: ExecEvent = sized(bytes, header.kind)?;
            let len = (ev.args_len as usize).min(ev.args.len());
            let argv = ev.args[..len]
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Body::Exec {
                file: ev.file,
                old_pid: ev.old_pid,
                filename: text(&ev.filename),
                argv,
                argv_truncated: header.flags & flags::ARGS_TRUNCATED != 0,
            }
        }
        kind::OPEN => {
            let ev: OpenEvent = sized(bytes, header.kind)?;
            let file = (ev.ret >= 0).then_some(ev.file);
            Body::Open {
                file,
                flags: ev.flags,
                dfd: ev.dfd,
                ret: ev.ret,
                path: text(&ev.path),
                name: text(&ev.name),
                consumer: (header.flags & flags::CONSUMER_READ != 0).then_some(ev.consumer),
            }
        }
        kind::CONNECT | kind::SENDMSG => {
            let ev: NetEvent = sized(bytes, header.kind)?;
            let (addr, v4_mapped) = net_addr(&ev);
            let (port, sock_type, protocol) = (ev.port, ev.sock_type, ev.protocol);
            if header.kind == kind::CONNECT {
                Body::Connect { addr, port, sock_type, protocol, v4_mapped }
            } else {
                Body::Sendmsg { addr, port, sock_type, protocol, v4_mapped }
            }
        }
        kind::FORK => {
            let ev: ForkEvent = sized(bytes, header.kind)?;
            Body::Fork { child_pid: ev.child_pid, child_tgid: ev.child_tgid, child_start_ns: ev.child_start_ns }
        }
        kind::EXIT => {
            let ev: ExitEvent = sized(bytes, header.kind)?;
            Body::Exit { start_ns: ev.start_ns, counts: ev.counts }
        }
        kind::FS_CHANGE => {
            let ev: FsEvent = sized(bytes, header.kind)?;
            Body::FsChange { file: ev.file, op: ev.op, name: text(&ev.name) }
        }
        kind::SELF_PROTECT => {
            let ev: SelfEvent = sized(bytes, header.kind)?;
            Body::SelfProtect { target_tgid: ev.target_tgid, what: ev.what, detail: ev.detail }
        }
        kind::REFUSAL => {
            let ev: RefusalEvent = sized(bytes, header.kind)?;
            Body::Refusal { nr: ev.nr, ret: ev.ret, args: ev.args, path: text(&ev.path) }
        }
        kind::UNIX => {
            let ev: UnixEvent = sized(bytes, header.kind)?;
            // A sun_path need not end in NUL: `path_len` bounds it, a NUL inside ends it.
            let len = (ev.path_len as usize).min(ev.path.len());
            let peer = (ev.peer != DevIno::default()).then_some(ev.peer);
            Body::Unix { hook: ev.hook, peer, path: text(&ev.path[..len]) }
        }
        other => return Err(DecodeError::UnknownKind(other)),
    };
    Ok(KernelEvent { head, body })
}

/// Bytes of an event struct, for tests and fakes that play the kernel's part.
pub fn encode<T: Copy>(value: &T) -> Vec<u8> {
    // SAFETY: T is a plain #[repr(C)] type; reading its bytes is fine (padding is explicit).
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), std::mem::size_of::<T>()) }.to_vec()
}

/// Open flags as names (O_WRONLY, O_CREAT, ...), for the audit record.
pub fn open_flag_names(flags: u64) -> Vec<String> {
    let mut names = Vec::new();
    names.push(
        match flags & 0o3 {
            0 => "O_RDONLY",
            1 => "O_WRONLY",
            2 => "O_RDWR",
            _ => "O_ACCMODE",
        }
        .to_string(),
    );
    const NAMED: &[(u64, &str)] = &[
        (0o100, "O_CREAT"),
        (0o200, "O_EXCL"),
        (0o1000, "O_TRUNC"),
        (0o2000, "O_APPEND"),
        (0o4000, "O_NONBLOCK"),
        (0o200000, "O_DIRECTORY"),
        (0o400000, "O_NOFOLLOW"),
        (0o2000000, "O_CLOEXEC"),
        (0o10000000, "O_PATH"),
        (0o20200000, "O_TMPFILE"),
    ];
    for &(bit, name) in NAMED {
        if flags & bit == bit {
            names.push(name.to_string());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use guard_common::{COMM_LEN, NAME_LEN, PATH_LEN, action, detector};

    fn header(kind: u32) -> EventHeader {
        let mut comm = [0u8; COMM_LEN];
        comm[..3].copy_from_slice(b"cat");
        EventHeader {
            kind,
            action: action::ALLOW,
            ktime_ns: 5,
            cgroup_id: 10,
            session_id: 9,
            pid: 100,
            tgid: 100,
            ppid: 1,
            detector: detector::NONE,
            rule: u32::MAX,
            flags: 0,
            comm,
            start_ns: 7,
        }
    }

    #[test]
    fn decodes_open() {
        let mut path = [0u8; PATH_LEN];
        path[..13].copy_from_slice(b"/etc/hostname");
        let mut name = [0u8; NAME_LEN];
        name[..8].copy_from_slice(b"hostname");
        let ev = OpenEvent {
            header: header(kind::OPEN),
            file: DevIno { dev: 0x80_0001, ino: 42 },
            flags: 0o2000000,
            dfd: -100,
            ret: 3,
            path,
            name,
            consumer: u32::MAX,
            _pad: 0,
        };
        let decoded = decode(&encode(&ev)).unwrap();
        assert_eq!(decoded.head.comm, "cat");
        assert_eq!(decoded.head.rule, None);
        match decoded.body {
            Body::Open { file, path, name, ret, .. } => {
                assert_eq!(file, Some(DevIno { dev: 0x80_0001, ino: 42 }));
                assert_eq!(path, "/etc/hostname");
                assert_eq!(name, "hostname");
                assert_eq!(ret, 3);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn decodes_v4_mapped_connect() {
        let mut addr = [0u8; 16];
        addr[10] = 0xff;
        addr[11] = 0xff;
        addr[12..].copy_from_slice(&[127, 0, 0, 1]);
        let mut h = header(kind::CONNECT);
        h.flags = flags::V4_MAPPED;
        let ev = NetEvent { header: h, family: 10, port: 8080, sock_type: 1, protocol: 6, _pad: 0, addr };
        let decoded = decode(&encode(&ev)).unwrap();
        assert!(matches!(decoded.body, Body::Connect { v4_mapped: true, port: 8080, .. }));
    }

    #[test]
    fn decodes_unix_path_and_inode_events() {
        let mut path = [0u8; guard_common::UNIX_PATH_LEN];
        path[..16].copy_from_slice(b"/run/docker.sock");
        let ev = UnixEvent {
            header: header(kind::UNIX),
            peer: DevIno::default(),
            hook: guard_common::unix_hook::CONNECT,
            path_len: 16,
            path,
            _pad: [0; 4],
        };
        let decoded = decode(&encode(&ev)).unwrap();
        assert_eq!(
            decoded.body,
            Body::Unix { hook: guard_common::unix_hook::CONNECT, peer: None, path: "/run/docker.sock".into() }
        );
        // A length past the buffer is clamped; one shorter than the text cuts it.
        let long = UnixEvent { path_len: 4096, ..ev };
        assert!(matches!(decode(&encode(&long)).unwrap().body, Body::Unix { path, .. } if path == "/run/docker.sock"));
        let short = UnixEvent { path_len: 4, ..ev };
        assert!(matches!(decode(&encode(&short)).unwrap().body, Body::Unix { path, .. } if path == "/run"));

        let peer = DevIno { dev: 25, ino: 981 };
        let inode = UnixEvent {
            peer,
            hook: guard_common::unix_hook::LSM_CONNECT,
            path_len: 0,
            path: [0; guard_common::UNIX_PATH_LEN],
            ..ev
        };
        let decoded = decode(&encode(&inode)).unwrap();
        assert_eq!(
            decoded.body,
            Body::Unix { hook: guard_common::unix_hook::LSM_CONNECT, peer: Some(peer), path: String::new() }
        );
        let mut truncated = encode(&inode);
        truncated.pop();
        assert!(matches!(decode(&truncated), Err(DecodeError::WrongSize { kind: kind::UNIX, .. })));
    }

    #[test]
    fn rejects_short_wrong_size_and_unknown() {
        assert!(matches!(decode(&[0u8; 10]), Err(DecodeError::TooShort { .. })));
        let mut bytes = encode(&header(kind::OPEN));
        assert!(matches!(decode(&bytes), Err(DecodeError::WrongSize { kind: 2, .. })));
        bytes[0] = 99;
        assert_eq!(decode(&bytes), Err(DecodeError::UnknownKind(99)));
    }

    #[test]
    fn names_open_flags() {
        assert_eq!(open_flag_names(0o1101), vec!["O_WRONLY", "O_CREAT", "O_TRUNC"]);
        assert_eq!(open_flag_names(0), vec!["O_RDONLY"]);
    }
}
