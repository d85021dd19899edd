//! May a user read a file? Classic permission bits and ownership, as the kernel checks them
//! for an unprivileged process: owner bits if the uid owns it, else group bits if any of the
//! user's groups owns it, else the other bits; every directory on the way needs search (x).
//! uid 0 reads everything (CAP_DAC_OVERRIDE). POSIX ACLs, capabilities other than root's,
//! Landlock and LSMs are not evaluated.

use super::Readable;

/// The user whose access is judged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    /// Primary and supplementary groups.
    pub gids: Vec<u32>,
}

/// What `stat` says of one path component.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Perm {
    /// `st_mode` (only the permission bits are looked at).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

const READ: u32 = 0o4;
const SEARCH: u32 = 0o1;

impl Identity {
    /// The bits of `perm` that apply to this user and why (`owner`, `group 27`, `other`).
    fn class(&self, perm: &Perm) -> (u32, String) {
        if perm.uid == self.uid {
            ((perm.mode >> 6) & 0o7, "owner".into())
        } else if self.gids.contains(&perm.gid) {
            ((perm.mode >> 3) & 0o7, format!("group {}", perm.gid))
        } else {
            (perm.mode & 0o7, "other".into())
        }
    }

    /// Can this user read a file whose directories from `/` down are `directories` (each
    /// with its path, for the reason) and whose own permissions are `file`?
    pub fn can_read(&self, directories: &[(String, Perm)], file: &Perm) -> Readable {
        if self.uid == 0 {
            return Readable { readable: true, why: "root".into() };
        }
        for (path, perm) in directories {
            let (bits, _) = self.class(perm);
            if bits & SEARCH == 0 {
                return Readable { readable: false, why: format!("directory {path} not searchable") };
            }
        }
        let (bits, class) = self.class(file);
        if bits & READ == 0 {
            return Readable { readable: false, why: format!("no read permission ({class})") };
        }
        Readable { readable: true, why: class }
    }
}
