//! Reads of kernel objects through offsets the loader took from BTF.
//!
//! Decisions rest on these (inode, superblock, dentry name): kernel memory the caller cannot
//! change under us, unlike the user-space strings passed to a syscall.

use aya_ebpf::helpers::{bpf_probe_read_kernel, generated::bpf_get_current_task};
use guard_common::{DevIno, KernelOffsets};

#[inline(always)]
pub fn read_at<T>(base: u64, offset: u32) -> Option<T> {
    if base == 0 {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel tolerates bad addresses and reports an error.
    unsafe { bpf_probe_read_kernel((base + offset as u64) as *const T).ok() }
}

#[inline(always)]
pub fn current_task() -> u64 {
    // SAFETY: plain helper call.
    unsafe { bpf_get_current_task() }
}

/// tgid of the task's real parent.
#[inline(always)]
pub fn parent_tgid(off: &KernelOffsets, task: u64) -> u32 {
    let parent: u64 = read_at(task, off.task_real_parent).unwrap_or(0);
    read_at::<u32>(parent, off.task_tgid).unwrap_or(0)
}

/// Identity of the file behind an inode pointer.
#[inline(always)]
pub fn inode_identity(off: &KernelOffsets, inode: u64) -> DevIno {
    let ino: u64 = read_at(inode, off.inode_i_ino).unwrap_or(0);
    let sb: u64 = read_at(inode, off.inode_i_sb).unwrap_or(0);
    let dev: u32 = read_at(sb, off.sb_s_dev).unwrap_or(0);
    DevIno { dev: dev as u64, ino }
}

/// Identity of an open `struct file`.
#[inline(always)]
pub fn file_identity(off: &KernelOffsets, file: u64) -> DevIno {
    let inode: u64 = read_at(file, off.file_f_inode).unwrap_or(0);
    inode_identity(off, inode)
}

/// The dentry of an open `struct file`.
#[inline(always)]
pub fn file_dentry(off: &KernelOffsets, file: u64) -> u64 {
    read_at(file, off.file_f_path + off.path_dentry).unwrap_or(0)
}

/// Pointer to a dentry's name bytes (`d_name.name`).
#[inline(always)]
pub fn dentry_name_ptr(off: &KernelOffsets, dentry: u64) -> u64 {
    read_at(dentry, off.dentry_d_name + off.qstr_name).unwrap_or(0)
}

/// Identity of a dentry's inode.
#[inline(always)]
pub fn dentry_identity(off: &KernelOffsets, dentry: u64) -> DevIno {
    let inode: u64 = read_at(dentry, off.dentry_d_inode).unwrap_or(0);
    inode_identity(off, inode)
}

/// `current->files->fdt->fd[fd]`, or 0.
#[inline(always)]
pub fn fd_file(off: &KernelOffsets, task: u64, fd: u64) -> u64 {
    let files: u64 = read_at(task, off.task_files).unwrap_or(0);
    let fdt: u64 = read_at(files, off.files_fdt).unwrap_or(0);
    let max_fds: u32 = read_at(fdt, off.fdt_max_fds).unwrap_or(0);
    if fd >= max_fds as u64 {
        return 0;
    }
    let array: u64 = read_at(fdt, off.fdt_fd).unwrap_or(0);
    if array == 0 {
        return 0;
    }
    read_at(array + fd * 8, 0).unwrap_or(0)
}
