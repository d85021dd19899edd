//! `/proc/self/mountinfo` (proc_pid_mountinfo(5)): the one parser of it in the workspace, for
//! the daemon, xtask and the integration tests (guard-daemon's library).
//!
//! A line is `ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE
//! SUPER_OPTIONS`, fields separated by single spaces. The kernel escapes space, tab, newline and
//! backslash in the paths, the type and the source as `\ooo` (octal). The procfs crate's
//! `MountInfo` keeps those escapes in its paths (0.17), so it does not serve here.

use std::{
    ffi::OsStr,
    io,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

pub const SELF_MOUNTINFO: &str = "/proc/self/mountinfo";

#[derive(Debug, thiserror::Error)]
pub enum MountInfoError {
    #[error("cannot read {path}: {source}", path = .path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("mountinfo line {line}: {reason}: {text:?}")]
    Malformed { line: usize, reason: &'static str, text: String },
}

/// One mount, as a mountinfo line describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    pub id: u32,
    pub parent: u32,
    /// `MAJ:MIN` of the file system.
    pub devno: String,
    /// Root of the mount within its file system.
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub options: String,
    /// Tags such as `shared:7`, `master:2`, `unbindable` (zero or more).
    pub optional: Vec<String>,
    pub fstype: String,
    pub source: String,
    pub super_options: String,
}

/// Every mount in `text`, in the kernel's order (older mounts first). Empty lines are skipped;
/// any other line that is not a mount is an error naming it (1-based).
pub fn parse(text: &str) -> Result<Vec<MountEntry>, MountInfoError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.is_empty())
        .map(|(index, line)| {
            parse_line(line).map_err(|reason| MountInfoError::Malformed {
                line: index + 1,
                reason,
                text: line.to_string(),
            })
        })
        .collect()
}

/// The mounts of this process's mount namespace.
pub fn read_self() -> Result<Vec<MountEntry>, MountInfoError> {
    read(Path::new(SELF_MOUNTINFO))
}

pub fn read(path: &Path) -> Result<Vec<MountEntry>, MountInfoError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| MountInfoError::Read { path: path.to_path_buf(), source })?;
    parse(&text)
}

/// The first cgroup2 mount (the kernel lists older mounts first): `/sys/fs/cgroup` on unified
/// hosts, `/sys/fs/cgroup/unified` on hybrid ones.
pub fn cgroup2_mount(entries: &[MountEntry]) -> Option<&Path> {
    entries.iter().find(|entry| entry.fstype == "cgroup2").map(|entry| entry.mount_point.as_path())
}

fn parse_line(line: &str) -> Result<MountEntry, &'static str> {
    let mut fields = line.split(' ');
    let mut next = |what: &'static str| fields.next().ok_or(what);
    let id = next("no mount id")?.parse().map_err(|_| "the mount id is not a number")?;
    let parent = next("no parent id")?.parse().map_err(|_| "the parent id is not a number")?;
    let devno = next("no MAJ:MIN")?;
    if !devno.split_once(':').is_some_and(|(major, minor)| is_number(major) && is_number(minor)) {
        return Err("MAJ:MIN is not two numbers");
    }
    let root = next("no root")?;
    let mount_point = next("no mount point")?;
    let options = next("no mount options")?;
    let mut optional = Vec::new();
    loop {
        match next("no \"-\" after the optional fields")? {
            "-" => break,
            tag => optional.push(tag.to_string()),
        }
    }
    let fstype = next("no file system type")?;
    let source = next("no mount source")?;
    let super_options = next("no super options")?;
    if fields.next().is_some() {
        return Err("fields after the super options");
    }
    if fstype.is_empty() {
        return Err("empty file system type");
    }
    Ok(MountEntry {
        id,
        parent,
        devno: devno.to_string(),
        root: PathBuf::from(OsStr::from_bytes(&unescape(root))),
        mount_point: PathBuf::from(OsStr::from_bytes(&unescape(mount_point))),
        options: options.to_string(),
        optional,
        fstype: String::from_utf8_lossy(&unescape(fstype)).into_owned(),
        source: String::from_utf8_lossy(&unescape(source)).into_owned(),
        super_options: super_options.to_string(),
    })
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `\ooo` (three octal digits, at most 0o377) back to its byte; anything else stays as it is
/// (the kernel escapes every backslash, so a lone one is only seen in hand-written text).
fn unescape(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(digits) = bytes.get(i + 1..i + 4)
            && digits.iter().all(|b| (b'0'..=b'7').contains(b))
            && let Ok(byte) = u8::try_from(digits.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0')))
        {
            out.push(byte);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(path: &str) -> PathBuf {
        PathBuf::from(path)
    }

    const HYBRID: &str = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
40 25 0:37 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
41 40 0:38 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
42 40 0:39 / /sys/fs/cgroup/systemd rw shared:11 - cgroup cgroup rw,xattr,name=systemd
";

    #[test]
    fn every_field_of_a_line() {
        let entries = parse(HYBRID).expect("parses");
        assert_eq!(entries.len(), 4);
        assert_eq!(
            entries[2],
            MountEntry {
                id: 41,
                parent: 40,
                devno: "0:38".into(),
                root: p("/"),
                mount_point: p("/sys/fs/cgroup/unified"),
                options: "rw,nosuid,nodev,noexec,relatime".into(),
                optional: vec!["shared:10".into()],
                fstype: "cgroup2".into(),
                source: "cgroup2".into(),
                super_options: "rw,nsdelegate".into(),
            }
        );
        assert_eq!(cgroup2_mount(&entries), Some(Path::new("/sys/fs/cgroup/unified")));
    }

    #[test]
    fn optional_fields_none_or_several() {
        let text = "1 0 0:1 / /a rw - ext4 /dev/sda1 rw\n\
                    2 1 8:2 /sub /b rw shared:1 master:2 propagate_from:3 unbindable - ext4 /dev/sda2 rw\n";
        let entries = parse(text).expect("parses");
        assert!(entries[0].optional.is_empty());
        assert_eq!(entries[1].optional, ["shared:1", "master:2", "propagate_from:3", "unbindable"]);
        assert_eq!(entries[1].root, p("/sub"));
        assert_eq!(entries[1].fstype, "ext4");
        assert_eq!(entries[1].source, "/dev/sda2");
        assert_eq!(cgroup2_mount(&entries), None);
    }

    #[test]
    fn octal_escapes() {
        // Space, tab, newline and backslash, as the kernel writes them, in root, mount point
        // and source.
        let text = "30 1 0:26 /r\\040o\\011o\\012t /mnt/my\\040cg\\134x rw - cgroup2 a\\040b rw\n";
        let entries = parse(text).expect("parses");
        assert_eq!(entries[0].root, p("/r o\to\nt"));
        assert_eq!(entries[0].mount_point, p("/mnt/my cg\\x"));
        assert_eq!(entries[0].source, "a b");
        assert_eq!(cgroup2_mount(&entries), Some(Path::new("/mnt/my cg\\x")));
        // Not an escape (too short, not octal, past a byte): kept as written.
        assert_eq!(unescape("/x\\04"), b"/x\\04");
        assert_eq!(unescape("/x\\089"), b"/x\\089");
        assert_eq!(unescape("/x\\777"), b"/x\\777");
        assert_eq!(unescape("\\"), b"\\");
        // A byte that is not UTF-8 is kept in the path.
        assert_eq!(unescape("/\\377").as_slice(), b"/\xff");
    }

    #[test]
    fn a_malformed_line_is_named() {
        let text = "1 0 0:1 / /a rw - ext4 /dev/sda1 rw\n\n3 0 0:3 / /no-separator rw cgroup2 x rw\n";
        let err = parse(text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "mountinfo line 3: no \"-\" after the optional fields: \"3 0 0:3 / /no-separator rw cgroup2 x rw\""
        );
        for (line, reason) in [
            ("garbage", "the mount id is not a number"),
            ("1 2 3", "MAJ:MIN is not two numbers"),
            ("1 2 0:1 / /a", "no mount options"),
            ("1 2 0:1 / /a rw - cgroup2", "no mount source"),
            ("1 2 0:1 / /a rw - cgroup2 none", "no super options"),
            ("1 2 0:1 / /a rw - cgroup2 none rw extra", "fields after the super options"),
        ] {
            match parse(line) {
                Err(MountInfoError::Malformed { line: 1, reason: got, .. }) => assert_eq!(got, reason, "{line}"),
                other => panic!("{line}: {other:?}"),
            }
        }
    }

    #[test]
    fn reads_this_process_mounts() {
        // Whatever this host mounts, the kernel's own text parses.
        let entries = read_self().expect("/proc/self/mountinfo parses");
        assert!(!entries.is_empty());
        let err = read(Path::new("/nonexistent/mountinfo")).unwrap_err();
        assert!(err.to_string().starts_with("cannot read /nonexistent/mountinfo: "), "{err}");
    }
}
