//! The cgroup `connect_unix` / `sendmsg_unix` programs (Linux 6.7+), loaded around aya.
//!
//! aya 0.14 has no attach type for them (`CgroupSockAddrAttachType` stops at the inet ones) and
//! refuses an object with an unknown section name. So the two programs sit in guard's object
//! under sections aya parses, aya never loads them, and this module does what aya would have:
//! aya-obj parses the same object and relocates the programs against the maps aya created
//! (so they share every map with the other programs), then three bpf(2) commands aya has no
//! public call for: PROG_LOAD with the unix `expected_attach_type`, LINK_CREATE on a cgroup and
//! OBJ_PIN. The layouts are aya-obj's kernel bindings, not ours.

use std::{
    collections::HashSet,
    ffi::CString,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
    path::Path,
};

use anyhow::{Context as _, anyhow};
use aya::{Ebpf, maps::Map};
use aya_obj::generated::{
    bpf_attach_type::{BPF_CGROUP_UNIX_CONNECT, BPF_CGROUP_UNIX_SENDMSG},
    bpf_attr, bpf_cmd,
    bpf_prog_type::BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
};
use guard_common::programs;

/// The two programs and their attach types, in attach order.
pub const PROGRAMS: [(&str, u32); 2] = [
    (programs::CONNECT_UNIX, BPF_CGROUP_UNIX_CONNECT as u32),
    (programs::SENDMSG_UNIX, BPF_CGROUP_UNIX_SENDMSG as u32),
];

/// Loaded programs, ready to attach to each root cgroup.
pub struct UnixPrograms {
    loaded: Vec<(&'static str, u32, OwnedFd)>,
}

impl UnixPrograms {
    /// Load both programs from `object` (the object `ebpf` was loaded from). Err: why this
    /// kernel cannot have them (before 6.7 PROG_LOAD refuses the attach type with EINVAL).
    pub fn load(ebpf: &Ebpf, object: &[u8]) -> anyhow::Result<Self> {
        let mut obj = aya_obj::Object::parse(object).context("parsing guard's eBPF object with aya-obj")?;
        let fds: Vec<(String, RawFd)> = ebpf
            .maps()
            .filter_map(|(name, map)| Some((name.to_string(), map_data(map)?.fd().as_fd().as_raw_fd())))
            .collect();
        let obj_maps = obj.maps.clone();
        let text_sections: HashSet<usize> = obj.functions.keys().map(|(section, _)| *section).collect();
        obj.relocate_maps(
            fds.iter().filter_map(|(name, fd)| Some((name.as_str(), *fd, obj_maps.get(name)?))),
            &text_sections,
        )
        .map_err(|err| anyhow!("relocating the unix programs' maps: {err}"))?;
        obj.relocate_calls(&text_sections).map_err(|err| anyhow!("relocating the unix programs' calls: {err}"))?;
        let license = CString::new(obj.license.as_bytes()).context("the object's license")?;
        let mut loaded = Vec::new();
        for (name, attach_type) in PROGRAMS {
            let prog = obj.programs.get(name).ok_or_else(|| anyhow!("program {name} missing from the eBPF object"))?;
            let function = obj
                .functions
                .get(&prog.function_key())
                .ok_or_else(|| anyhow!("program {name}: no function at its address"))?;
            let fd = prog_load(name, &function.instructions, &license, attach_type)?;
            loaded.push((name, attach_type, fd));
        }
        Ok(Self { loaded })
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.loaded.iter().map(|(name, _, _)| *name)
    }

    /// Attach one of them to a cgroup: the link.
    pub fn attach(&self, name: &str, cgroup: BorrowedFd<'_>) -> anyhow::Result<OwnedFd> {
        let (_, attach_type, fd) =
            self.loaded.iter().find(|(loaded, _, _)| *loaded == name).ok_or_else(|| anyhow!("{name} is not loaded"))?;
        link_create(fd.as_fd(), cgroup, *attach_type)
            .with_context(|| format!("attaching {name} (attach type {attach_type}) with BPF_LINK_CREATE"))
    }
}

/// Every aya map variant carries its `MapData`; aya offers no accessor over the enum.
fn map_data(map: &Map) -> Option<&aya::maps::MapData> {
    use Map::*;
    match map {
        Array(data)
        | ArrayOfMaps(data)
        | BloomFilter(data)
        | CgroupArray(data)
        | CgroupStorage(data)
        | CgrpStorage(data)
        | CpuMap(data)
        | DevMap(data)
        | DevMapHash(data)
        | HashMap(data)
        | HashOfMaps(data)
        | InodeStorage(data)
        | LpmTrie(data)
        | LruHashMap(data)
        | PerCpuArray(data)
        | PerCpuCgroupStorage(data)
        | PerCpuHashMap(data)
        | PerCpuLruHashMap(data)
        | PerfEventArray(data)
        | ProgramArray(data)
        | Queue(data)
        | ReusePortSockArray(data)
        | RingBuf(data)
        | SockHash(data)
        | SockMap(data)
        | SkStorage(data)
        | Stack(data)
        | StackTraceMap(data)
        | Unsupported(data)
        | XskMap(data) => Some(data),
    }
}

fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> std::io::Result<i64> {
    // SAFETY: `attr` is a valid, zero-initialised bpf_attr of the kernel's layout for `cmd`;
    // the kernel reads at most its size.
    let ret = unsafe {
        libc::syscall(libc::SYS_bpf, cmd as libc::c_int, attr as *mut bpf_attr, std::mem::size_of::<bpf_attr>())
    };
    if ret < 0 { Err(std::io::Error::last_os_error()) } else { Ok(ret) }
}

fn zeroed_attr() -> bpf_attr {
    // SAFETY: bpf_attr is a plain C union of integers; all zeroes is the documented default.
    unsafe { std::mem::zeroed() }
}

fn owned(fd: i64) -> OwnedFd {
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

fn prog_load(
    name: &str,
    insns: &[aya_obj::generated::bpf_insn],
    license: &CString,
    attach_type: u32,
) -> anyhow::Result<OwnedFd> {
    let mut log = vec![0u8; 256 * 1024];
    let mut attempt = |with_log: bool| {
        let mut attr = zeroed_attr();
        // SAFETY: writing the PROG_LOAD member of a zeroed union.
        let load = unsafe { &mut attr.__bindgen_anon_3 };
        load.prog_type = BPF_PROG_TYPE_CGROUP_SOCK_ADDR as u32;
        load.expected_attach_type = attach_type;
        load.insns = insns.as_ptr() as u64;
        load.insn_cnt = insns.len() as u32;
        load.license = license.as_ptr() as u64;
        for (slot, byte) in load.prog_name.iter_mut().zip(name.bytes().take(15)) {
            *slot = byte as libc::c_char;
        }
        if with_log {
            load.log_level = 1;
            load.log_buf = log.as_mut_ptr() as u64;
            load.log_size = log.len() as u32;
        }
        bpf(bpf_cmd::BPF_PROG_LOAD, &mut attr)
    };
    match attempt(false) {
        Ok(fd) => Ok(owned(fd)),
        Err(first) => {
            // Again with the verifier's log, to say why.
            let _ = attempt(true);
            let text = String::from_utf8_lossy(guard_common::c_bytes(&log)).into_owned();
            let tail: Vec<&str> = text.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
            Err(anyhow!(
                "loading {name} with attach type {attach_type}: {first}{}",
                if tail.is_empty() { String::new() } else { format!("\n{}", tail.join("\n")) }
            ))
        }
    }
}

fn link_create(prog: BorrowedFd<'_>, cgroup: BorrowedFd<'_>, attach_type: u32) -> anyhow::Result<OwnedFd> {
    let mut attr = zeroed_attr();
    // SAFETY: writing the LINK_CREATE member of a zeroed union.
    let link = unsafe { &mut attr.link_create };
    link.__bindgen_anon_1.prog_fd = prog.as_raw_fd() as u32;
    link.__bindgen_anon_2.target_fd = cgroup.as_raw_fd() as u32;
    link.attach_type = attach_type;
    Ok(owned(bpf(bpf_cmd::BPF_LINK_CREATE, &mut attr)?))
}

/// Pin a link at `path` (so enforcement outlives the daemon, like aya's pinned links).
pub fn pin(fd: BorrowedFd<'_>, path: &Path) -> anyhow::Result<()> {
    let text = CString::new(path.as_os_str().as_encoded_bytes()).context("a pin path with a NUL byte")?;
    let mut attr = zeroed_attr();
    // SAFETY: writing the OBJ_PIN member of a zeroed union.
    let pin = unsafe { &mut attr.__bindgen_anon_4 };
    pin.pathname = text.as_ptr() as u64;
    pin.bpf_fd = fd.as_raw_fd() as u32;
    bpf(bpf_cmd::BPF_OBJ_PIN, &mut attr).with_context(|| format!("pinning {}", path.display()))?;
    Ok(())
}
