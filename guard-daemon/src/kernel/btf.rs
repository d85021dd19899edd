//! Kernel structure offsets from the running kernel's BTF.
//!
//! aya-ebpf emits no CO-RE relocations, so the programs read fields at offsets we look up here
//! and pass in as a global. A missing struct or field is an error naming it: guessing an offset
//! would make the kernel side read garbage.

use btf_rs::{Btf, Type};
use guard_common::KernelOffsets;
use thiserror::Error;

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, Error)]
pub enum BtfError {
    #[error("reading kernel BTF from {path}: {source}")]
    Read { path: String, source: btf_rs::Error },
    #[error("kernel BTF has no struct {0}")]
    NoStruct(String),
    #[error("kernel BTF: struct {strukt} has no member {member}")]
    NoMember { strukt: String, member: String },
    #[error("kernel BTF: {strukt}.{member} is a bitfield")]
    Bitfield { strukt: String, member: String },
    #[error("kernel BTF lookup failed: {0}")]
    Lookup(#[from] btf_rs::Error),
}

/// Byte offset of `member` in `struct strukt`, looking through anonymous structs and unions.
pub fn member_offset(btf: &Btf, strukt: &str, member: &str) -> Result<u32, BtfError> {
    let ty = btf
        .resolve_types_by_name(strukt)
        .map_err(|_| BtfError::NoStruct(strukt.to_string()))?
        .into_iter()
        .find(|t| matches!(t, Type::Struct(s) if !s.members.is_empty()))
        .ok_or_else(|| BtfError::NoStruct(strukt.to_string()))?;
    let Type::Struct(st) = ty else { return Err(BtfError::NoStruct(strukt.to_string())) };
    find_in(btf, &st, member, 0)?
        .ok_or_else(|| BtfError::NoMember { strukt: strukt.to_string(), member: member.to_string() })
        .and_then(|(bits, is_bitfield)| {
            if is_bitfield || bits % 8 != 0 {
                Err(BtfError::Bitfield { strukt: strukt.to_string(), member: member.to_string() })
            } else {
                Ok(bits / 8)
            }
        })
}

fn find_in(btf: &Btf, st: &btf_rs::Struct, member: &str, base_bits: u32) -> Result<Option<(u32, bool)>, BtfError> {
    for m in &st.members {
        let name = btf.resolve_name(m).unwrap_or_default();
        let bits = base_bits + m.bit_offset();
        if name == member {
            return Ok(Some((bits, m.bitfield_size().is_some_and(|s| s != 0))));
        }
        if name.is_empty() {
            // Anonymous struct/union: its members belong to the enclosing struct.
            let mut inner = btf.resolve_chained_type(m)?;
            loop {
                match inner {
                    Type::Struct(ref s) | Type::Union(ref s) => {
                        if let Some(found) = find_in(btf, s, member, bits)? {
                            return Ok(Some(found));
                        }
                        break;
                    }
                    Type::Const(ref c) => inner = btf.resolve_chained_type(c)?,
                    Type::Volatile(ref v) => inner = btf.resolve_chained_type(v)?,
                    Type::Typedef(ref t) => inner = btf.resolve_chained_type(t)?,
                    _ => break,
                }
            }
        }
    }
    Ok(None)
}

/// Every offset the programs need.
pub fn kernel_offsets(path: &str) -> Result<KernelOffsets, BtfError> {
    let btf = Btf::from_file(path).map_err(|source| BtfError::Read { path: path.to_string(), source })?;
    let o = |s: &str, m: &str| member_offset(&btf, s, m);
    Ok(KernelOffsets {
        task_pid: o("task_struct", "pid")?,
        task_tgid: o("task_struct", "tgid")?,
        task_real_parent: o("task_struct", "real_parent")?,
        task_start_time: o("task_struct", "start_time")?,
        task_files: o("task_struct", "files")?,
        task_mm: o("task_struct", "mm")?,
        files_fdt: o("files_struct", "fdt")?,
        fdt_max_fds: o("fdtable", "max_fds")?,
        fdt_fd: o("fdtable", "fd")?,
        file_f_inode: o("file", "f_inode")?,
        file_f_path: o("file", "f_path")?,
        file_f_flags: o("file", "f_flags")?,
        path_dentry: o("path", "dentry")?,
        dentry_d_parent: o("dentry", "d_parent")?,
        dentry_d_name: o("dentry", "d_name")?,
        dentry_d_inode: o("dentry", "d_inode")?,
        qstr_name: o("qstr", "name")?,
        inode_i_ino: o("inode", "i_ino")?,
        inode_i_sb: o("inode", "i_sb")?,
        sb_s_dev: o("super_block", "s_dev")?,
        sb_s_magic: o("super_block", "s_magic")?,
        task_group_leader: o("task_struct", "group_leader")?,
        mm_exe_file: o("mm_struct", "exe_file")?,
        mm_arg_start: o("mm_struct", "arg_start")?,
        mm_arg_end: o("mm_struct", "arg_end")?,
        bprm_file: o("linux_binprm", "file")?,
        bprm_filename: o("linux_binprm", "filename")?,
        valid: 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_offsets_from_running_kernel() {
        if !std::path::Path::new(VMLINUX_BTF).exists() {
            eprintln!("skipped: {VMLINUX_BTF} not present on this kernel");
            return;
        }
        let off = kernel_offsets(VMLINUX_BTF).expect("offsets");
        assert_eq!(off.valid, 1);
        // qstr.name follows the 8-byte hash_len union on every 64-bit kernel.
        assert_eq!(off.qstr_name, 8);
        assert_ne!(off.task_tgid, 0);
        assert_ne!(off.mm_arg_end, off.mm_arg_start);
    }

    #[test]
    fn names_missing_struct_and_member() {
        if !std::path::Path::new(VMLINUX_BTF).exists() {
            eprintln!("skipped: {VMLINUX_BTF} not present on this kernel");
            return;
        }
        let btf = Btf::from_file(VMLINUX_BTF).expect("btf");
        let err = member_offset(&btf, "task_struct", "no_such_field").unwrap_err();
        assert_eq!(err.to_string(), "kernel BTF: struct task_struct has no member no_such_field");
        assert!(matches!(member_offset(&btf, "no_such_struct_xyz", "a"), Err(BtfError::NoStruct(_))));
    }
}
