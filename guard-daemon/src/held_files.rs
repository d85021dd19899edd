//! Files a held process will read (its script, a config file), read as that process sees
//! them: below its root (`/proc/PID/root`, so its mount namespace and chroot), with every
//! symlink resolved inside that root (`openat2` `RESOLVE_IN_ROOT`), never through a magic link
//! (`/proc/PID/fd/N`), never a FIFO or device (opened non-blocking, regular files only), never
//! a procfs or sysfs file (a symlink to `/proc/self/environ` would otherwise be the daemon's),
//! and at most `max_len` bytes.

use std::{
    ffi::CString,
    fs::File,
    io::{self, Read as _},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    os::unix::fs::FileTypeExt as _,
};

use guard_engine::destructive::InputError;

const PROC_SUPER_MAGIC: i64 = 0x9fa0;
const SYSFS_MAGIC: i64 = 0x6265_6572;

/// `path` (absolute, as process `pid` sees it), at most `max_len` bytes; `true` when there
/// was more.
pub fn read(pid: u32, path: &str, max_len: u64) -> Result<(Vec<u8>, bool), InputError> {
    let relative = path.trim_start_matches('/');
    if !path.starts_with('/') || relative.is_empty() {
        return Err(InputError::NotRegular);
    }
    let first = relative.split('/').next().unwrap_or_default();
    if matches!(first, "proc" | "sys" | "dev") {
        return Err(InputError::NotRegular);
    }
    let file = open_in_root(pid, relative).map_err(|err| classify(&err))?;
    let meta = file.metadata().map_err(|err| classify(&err))?;
    let kind = meta.file_type();
    if !kind.is_file() || kind.is_fifo() || kind.is_socket() {
        return Err(InputError::NotRegular);
    }
    // SAFETY: fstatfs on an fd we own into a zeroed struct it fills.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatfs(file.as_raw_fd(), &mut fs) } == 0 {
        #[allow(clippy::unnecessary_cast)]
        let magic = fs.f_type as i64;
        if magic == PROC_SUPER_MAGIC || magic == SYSFS_MAGIC {
            return Err(InputError::NotRegular);
        }
    }
    let mut bytes = Vec::new();
    file.take(max_len.saturating_add(1)).read_to_end(&mut bytes).map_err(|err| classify(&err))?;
    let truncated = bytes.len() as u64 > max_len;
    bytes.truncate(usize::try_from(max_len).unwrap_or(usize::MAX));
    Ok((bytes, truncated))
}

/// `relative` below the process's root, through `openat2(RESOLVE_IN_ROOT |
/// RESOLVE_NO_MAGICLINKS)`; on kernels without openat2 (before 5.6), a plain open below
/// `/proc/PID/root` (absolute symlinks then resolve in the daemon's root).
fn open_in_root(pid: u32, relative: &str) -> io::Result<File> {
    let root = File::open(format!("/proc/{pid}/root"))?;
    let name = CString::new(relative).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY;
    // SAFETY: open_how is plain data; zeroed then filled.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: openat2(2) with a valid dirfd, a NUL-terminated path and a sized open_how.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            name.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd >= 0 {
        // SAFETY: a fresh descriptor nobody else owns.
        return Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd as i32) }));
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::ENOSYS) {
        return Err(err);
    }
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(format!("/proc/{pid}/root/{relative}"))
}

fn classify(err: &io::Error) -> InputError {
    match err.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => InputError::NotFound,
        Some(libc::ENXIO) | Some(libc::EISDIR) => InputError::NotRegular,
        _ => InputError::Unreadable(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own() -> u32 {
        std::process::id()
    }

    #[test]
    fn reads_bounded_regular_files_only() {
        let dir = std::env::temp_dir().join(format!("guard-held-files-{}", own()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("x.sh");
        std::fs::write(&file, "rm -rf /srv/x\n").unwrap();
        let path = file.to_str().unwrap();
        assert_eq!(read(own(), path, 1024), Ok((b"rm -rf /srv/x\n".to_vec(), false)));
        assert_eq!(read(own(), path, 5), Ok((b"rm -r".to_vec(), true)));
        assert_eq!(read(own(), &format!("{}/missing", dir.display()), 1024), Err(InputError::NotFound));
        assert_eq!(read(own(), dir.to_str().unwrap(), 1024), Err(InputError::NotRegular));
        // A FIFO is refused without blocking.
        let fifo = dir.join("fifo");
        let name = CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        assert_eq!(read(own(), fifo.to_str().unwrap(), 1024), Err(InputError::NotRegular));
        // /proc, directly or through a symlink, is not read.
        assert_eq!(read(own(), "/proc/self/environ", 1024), Err(InputError::NotRegular));
        let link = dir.join("env-link");
        std::os::unix::fs::symlink("/proc/self/environ", &link).unwrap();
        assert_eq!(read(own(), link.to_str().unwrap(), 1024), Err(InputError::NotRegular));
        assert_eq!(read(own(), "relative", 1024), Err(InputError::NotRegular));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
