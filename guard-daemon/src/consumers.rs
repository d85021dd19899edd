//! Resolving the policy's credential consumers to the files the kernel will see executed.
//!
//! Names are looked up in the system's binary directories only, never in directories a
//! session could write to (`~/.local/bin`): a program the agent drops there must not become a
//! consumer at the next rescan. Only root-owned files that no group or other user can write
//! count. A `#!` script brings its interpreters (`#!/usr/bin/env node`: every `node` in those
//! directories).

use std::{
    io::Read as _,
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use guard_engine::{
    consumer::{ConsumerFile, ConsumerInfo, ConsumerTable, shebang},
    policy::CompiledConsumer,
};
use object::read::elf::{FileHeader as _, ProgramHeader as _};

use crate::scan::identity;

/// Where consumer names are looked up (root's territory on a normal system).
pub const CONSUMER_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
    "/usr/lib/git-core",
    "/usr/libexec/git-core",
    "/usr/local/libexec/git-core",
    "/usr/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins",
    "/usr/local/lib/docker/cli-plugins",
    "/usr/local/libexec/docker/cli-plugins",
    "/snap/bin",
];

/// Versioned directories (`/usr/lib/postgresql/15/bin`: Debian's `psql` on PATH is a wrapper
/// script that runs the binary from there).
const VERSIONED_DIRS: &[(&str, &str)] = &[("/usr/lib/postgresql", "bin")];

/// Bytes read from a candidate to tell a script from an ELF binary.
const HEAD_BYTES: u64 = 64 * 1024;

/// Resolve every consumer; names that resolve to nothing are reported in `notes`.
pub fn resolve(consumers: &[CompiledConsumer], notes: &mut Vec<String>) -> ConsumerTable {
    let mut table = ConsumerTable::default();
    for consumer in consumers {
        let index = table.add_consumer(ConsumerInfo {
            name: consumer.name.clone(),
            mask: consumer.mask,
            rule_ids: consumer.rule_ids.clone(),
        });
        for candidate in candidates(&consumer.name) {
            match classify(&candidate) {
                Ok(Some(file)) => table.add_file(index, file),
                Ok(None) => {}
                Err(why) => {
                    notes.push(format!("consumer {} at {}: {why}; not a consumer", consumer.name, candidate.display()))
                }
            }
        }
    }
    let unresolved = table.unresolved();
    if !unresolved.is_empty() {
        notes.push(format!("credential consumers not installed (no file found): {}", unresolved.join(", ")));
    }
    table
}

fn candidates(name: &str) -> Vec<PathBuf> {
    if name.starts_with('/') {
        return vec![PathBuf::from(name)];
    }
    let versioned = VERSIONED_DIRS.iter().flat_map(|(parent, below)| {
        std::fs::read_dir(parent)
            .into_iter()
            .flatten()
            .flatten()
            .map(move |entry| entry.path().join(below))
            .collect::<Vec<_>>()
    });
    CONSUMER_DIRS.iter().map(PathBuf::from).chain(versioned).map(|dir| dir.join(name)).collect()
}

/// Root-owned, and no group or other user can write it.
fn trusted(meta: &std::fs::Metadata) -> bool {
    meta.uid() == 0 && meta.permissions().mode() & 0o022 == 0
}

/// What one candidate path is: `Ok(None)` when nothing is there.
fn classify(path: &Path) -> Result<Option<ConsumerFile>, String> {
    let Ok(meta) = std::fs::metadata(path) else { return Ok(None) };
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Ok(None);
    }
    if !trusted(&meta) {
        return Err("not owned by root or writable by others".into());
    }
    let mut head = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(HEAD_BYTES).read_to_end(&mut head))
        .map_err(|err| format!("unreadable ({err})"))?;
    let found = path.display().to_string();
    if let Some(line) = shebang(&head) {
        let interpreters: Vec<_> = match &line.via_env {
            Some(program) => CONSUMER_DIRS
                .iter()
                .filter_map(|dir| std::fs::metadata(Path::new(dir).join(program)).ok())
                .filter(|meta| meta.is_file() && trusted(meta))
                .map(|meta| identity(&meta))
                .collect(),
            None => std::fs::metadata(&line.interpreter)
                .ok()
                .filter(|meta| meta.is_file() && trusted(meta))
                .map(|meta| identity(&meta))
                .into_iter()
                .collect(),
        };
        if interpreters.is_empty() {
            return Err(format!(
                "its interpreter `{}` was not found",
                line.via_env.as_deref().unwrap_or(&line.interpreter)
            ));
        }
        let mut unique = interpreters;
        unique.sort();
        unique.dedup();
        // The interpreter opens the script's real file: its name is what the kernel confirms.
        let real = std::fs::canonicalize(path).map_err(|err| format!("cannot resolve ({err})"))?;
        return Ok(Some(ConsumerFile::Script {
            identity: identity(&meta),
            path: real.display().to_string(),
            interpreters: unique,
        }));
    }
    // Not an ELF64 we can read: assume the loader runs (the stricter environment check).
    let dynamic = elf_is_dynamic(&head).unwrap_or(true);
    Ok(Some(ConsumerFile::Binary { identity: identity(&meta), path: found, dynamic }))
}

/// Does this ELF64 image ask for a program interpreter (the dynamic loader)?
fn elf_is_dynamic(head: &[u8]) -> Option<bool> {
    let header = object::elf::FileHeader64::<object::Endianness>::parse(head).ok()?;
    let endian = header.endian().ok()?;
    let program_headers = header.program_headers(endian, head).ok()?;
    Some(program_headers.iter().any(|ph| ph.p_type(endian) == object::elf::PT_INTERP))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_binaries_resolve_and_dynamic_linking_is_seen() {
        // /bin/sh is on every machine this runs on; it is dynamically linked on Debian.
        let file = classify(Path::new("/bin/sh")).expect("classify /bin/sh").expect("/bin/sh exists");
        match file {
            ConsumerFile::Binary { dynamic, .. } => assert!(dynamic),
            other => panic!("{other:?}"),
        }
        assert_eq!(classify(Path::new("/no/such/program")), Ok(None));
    }

    #[test]
    fn unknown_names_are_reported() {
        let mut notes = Vec::new();
        let consumers =
            vec![CompiledConsumer { name: "no-such-consumer-xyz".into(), mask: 1, rule_ids: vec!["r".into()] }];
        let table = resolve(&consumers, &mut notes);
        assert_eq!(table.unresolved(), vec!["no-such-consumer-xyz"]);
        assert!(notes.iter().any(|n| n.contains("no-such-consumer-xyz")), "{notes:?}");
    }

    #[test]
    fn scripts_bring_their_interpreters() {
        let dir = std::env::temp_dir().join(format!("guard-consumer-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("tool");
        std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let classified = classify(&script);
        let _ = std::fs::remove_dir_all(&dir);
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            // Not root-owned: refused, which is the point of the ownership check.
            assert!(classified.is_err(), "{classified:?}");
            return;
        }
        match classified {
            Ok(Some(ConsumerFile::Script { interpreters, path, .. })) => {
                let sh = identity(&std::fs::metadata("/bin/sh").unwrap());
                assert_eq!(interpreters, vec![sh]);
                assert!(path.ends_with("/tool"), "{path}");
            }
            other => panic!("{other:?}"),
        }
    }
}
