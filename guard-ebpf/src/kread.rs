//! Reads of kernel objects through offsets the loader took from BTF.
//!
//! Decisions rest on these (inode, superblock, dentry name): kernel memory the caller cannot
//! change under us, unlike the user-space strings passed to a syscall. Every struct member is
//! read through `read` with a `Field` of guard-common's table, so its width is the table's,
//! which the loader checked against the kernel's BTF.

use aya_ebpf::helpers::{bpf_probe_read_kernel, generated::bpf_get_current_task};
use guard_common::{DevIno, Field, KernelOffsets, KernelPtr, KernelValue};

/// The field of the object at `base`, as wide as the table says; `None` for a null base or a
/// failed read.
#[inline(always)]
pub fn read<T: KernelValue>(base: u64, field: Field<T>) -> Option<T> {
    read_raw(base, field.offset())
}

#[inline(always)]
fn read_raw<T>(base: u64, offset: u32) -> Option<T> {
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
    let parent = read(task, off.task_real_parent()).unwrap_or(0);
    read(parent, off.task_tgid()).unwrap_or(0)
}

/// Identity of the file behind an inode pointer.
#[inline(always)]
pub fn inode_identity(off: &KernelOffsets, inode: u64) -> DevIno {
    let ino = read(inode, off.inode_i_ino()).unwrap_or(0);
    let sb = read(inode, off.inode_i_sb()).unwrap_or(0);
    let dev = read(sb, off.sb_s_dev()).unwrap_or(0);
    DevIno { dev: dev as u64, ino }
}

/// Identity of an open `struct file`.
#[inline(always)]
pub fn file_identity(off: &KernelOffsets, file: u64) -> DevIno {
    let inode = read(file, off.file_f_inode()).unwrap_or(0);
    inode_identity(off, inode)
}

/// The dentry of an open `struct file`.
#[inline(always)]
pub fn file_dentry(off: &KernelOffsets, file: u64) -> u64 {
    read(file, off.file_f_path().then(off.path_dentry())).unwrap_or(0)
}

/// Pointer to a dentry's name bytes (`d_name.name`).
#[inline(always)]
pub fn dentry_name_ptr(off: &KernelOffsets, dentry: u64) -> u64 {
    read(dentry, off.dentry_d_name().then(off.qstr_name())).unwrap_or(0)
}

/// Identity of a dentry's inode.
#[inline(always)]
pub fn dentry_identity(off: &KernelOffsets, dentry: u64) -> DevIno {
    let inode = read(dentry, off.dentry_d_inode()).unwrap_or(0);
    inode_identity(off, inode)
}

/// `current->files->fdt->fd[fd]`, or 0.
#[inline(always)]
pub fn fd_file(off: &KernelOffsets, task: u64, fd: u64) -> u64 {
    let files = read(task, off.task_files()).unwrap_or(0);
    let fdt = read(files, off.files_fdt()).unwrap_or(0);
    let max_fds = read(fdt, off.fdt_max_fds()).unwrap_or(0);
    if fd >= max_fds as u64 {
        return 0;
    }
    let array = read(fdt, off.fdt_fd()).unwrap_or(0);
    if array == 0 {
        return 0;
    }
    // An element of the `struct file *` array, not a struct member: pointer-sized.
    read_raw::<KernelPtr>(array + fd * 8, 0).unwrap_or(0)
}
