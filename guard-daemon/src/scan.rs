//! Finding the credential files that exist now, by identity (dev, inode).
//!
//! The kernel matches opens by the inode actually opened, so every way to reach a protected
//! file (symlink, hardlink, relative or dirfd-relative path, `/proc/self/root/...`) lands on
//! the same key. Files created later are caught by the name maps until the next rescan.

use std::{collections::BTreeMap, os::unix::fs::MetadataExt as _, path::Path};

use guard_common::{DevIno, RuleRef};
use guard_engine::policy::{CompiledCredentials, CredentialPathMatcher};
use uzers::os::unix::UserExt as _;
use walkdir::WalkDir;

/// Upper bound on directory entries visited per scan: a policy glob over a huge tree must not
/// stall start-up. Past it the scan stops and says so.
pub const MAX_VISITED: usize = 200_000;

/// `st_dev` (user-space encoding) to the kernel's `s_dev` (MKDEV: major << 20 | minor).
pub fn kernel_dev(st_dev: u64) -> u64 {
    let major = libc::major(st_dev) as u64;
    let minor = libc::minor(st_dev) as u64;
    (major << 20) | minor
}

pub fn identity(meta: &std::fs::Metadata) -> DevIno {
    DevIno { dev: kernel_dev(meta.dev()), ino: meta.ino() }
}

#[derive(Debug, Default)]
pub struct ScanResult {
    /// Identity -> rule, plus one path that reached it (for messages).
    pub files: BTreeMap<DevIno, (RuleRef, String)>,
    pub visited: usize,
    pub truncated: bool,
}

/// Resolve the policy's credential paths to the files that exist now.
pub fn scan_credentials(creds: &CompiledCredentials, matcher: &CredentialPathMatcher) -> ScanResult {
    let mut result = ScanResult::default();
    for path in &creds.paths {
        if path.rule.exempt != 0 {
            continue;
        }
        if path.literal {
            // stat follows symlinks: what an open would reach.
            if let Ok(meta) = std::fs::metadata(&path.path)
                && meta.is_file()
                && matcher.classify(&path.path).is_some()
            {
                result.files.entry(identity(&meta)).or_insert((path.rule, path.path.clone()));
            }
            continue;
        }
        let root = Path::new(&path.scan_root);
        if !root.exists() {
            continue;
        }
        let mut walk = WalkDir::new(root).follow_links(false);
        if let Some(depth) = path.max_depth {
            walk = walk.max_depth(depth);
        }
        for entry in walk.into_iter().filter_map(Result::ok) {
            result.visited += 1;
            if result.visited > MAX_VISITED {
                result.truncated = true;
                return result;
            }
            let Some(text) = entry.path().to_str() else { continue };
            let Some(rule) = matcher.classify(text) else { continue };
            // Follow a symlink found by the walk to the file an open would reach.
            let Ok(meta) = std::fs::metadata(entry.path()) else { continue };
            if meta.is_file() {
                result.files.entry(identity(&meta)).or_insert((rule, text.to_string()));
            }
        }
    }
    result
}

/// Home directories of the machine's users (for `~/` in the policy): every passwd entry with
/// an existing home directory, plus root's.
pub fn home_dirs() -> Vec<String> {
    let mut homes: Vec<String> = Vec::new();
    // SAFETY: uzers iterates getpwent(3); no other thread of ours uses it concurrently at
    // start-up or reload.
    for user in unsafe { uzers::all_users() } {
        let home = user.home_dir();
        if home.is_dir()
            && let Some(text) = home.to_str()
            && text != "/"
            && !homes.iter().any(|h| h == text)
        {
            homes.push(text.to_string());
        }
    }
    if Path::new("/root").is_dir() && !homes.iter().any(|h| h == "/root") {
        homes.push("/root".to_string());
    }
    homes.sort();
    homes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_dev_encoding() {
        // makedev(254, 1) in user space is 0xfe01; the kernel keeps 254 << 20 | 1.
        assert_eq!(kernel_dev(libc::makedev(254, 1)), (254 << 20) | 1);
        assert_eq!(kernel_dev(libc::makedev(8, 17)), (8 << 20) | 17);
    }
}
