//! The file system and `/proc` side of `guard exposure`: walks the user's dotfiles, the
//! policy's credential paths and a session's workspace, reads session environments, and
//! hands every text to the pure stages in [`guard_engine::exposure`].
//!
//! Bounds: [`Limits`] caps depth, file size and entries visited per walk; binary files are
//! skipped (unless a credential rule names them, then they are listed without a scan).
//! Symlinks are never followed into directories; a symlink to a file is judged by the file
//! it reaches and listed with its target.

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use guard_engine::{
    exposure::{
        Finding, FoundBy, Location, Readable,
        access::{Identity, Perm},
        advice,
        protection::Protector,
        secrets,
    },
    policy::CompiledPolicy,
    provenance::split_environ,
};
use walkdir::WalkDir;

use crate::scan;

/// How far the walks go.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Levels below the home (or workspace) a walk descends.
    pub max_depth: usize,
    /// Larger files are not read (a credential rule's file is still listed).
    pub max_file_bytes: u64,
    /// Directory entries visited per walk; past it the walk stops and says so.
    pub max_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_depth: 6, max_file_bytes: 1024 * 1024, max_entries: 50_000 }
    }
}

/// Directories below the home that hold caches and downloads, not credentials: not walked.
/// (`~/.cargo/credentials.toml` is walked; `~/.cargo/registry` is not.)
const HOME_SKIP: &[&str] = &[
    ".cache",
    ".rustup",
    ".cargo/registry",
    ".cargo/git",
    ".npm/_cacache",
    ".npm/_npx",
    ".local/share/Trash",
    ".m2/repository",
    ".gradle/caches",
    ".vscode-server/bin",
    ".vscode-server/extensions",
    // Installed language toolchains and their packages: source code, not credentials.
    ".pyenv/versions",
    ".nvm/versions",
    ".rbenv/versions",
    ".local/lib",
    ".conda/pkgs",
    ".sdkman/candidates",
];
/// Directory names skipped anywhere in a walk (dependencies and build output).
const SKIP_ANYWHERE: &[&str] = &["node_modules", "__pycache__", ".venv", "venv", "target"];

/// Collects findings, one per file (by device and inode) or environment variable.
pub struct Scanner<'a> {
    protector: Protector<'a>,
    identity: Identity,
    limits: Limits,
    files: BTreeMap<(u64, u64), Finding>,
    env: BTreeMap<(String, String), Finding>,
    skipped_large: usize,
    skipped_binary: usize,
    unreadable: Vec<String>,
    notes: Vec<String>,
}

impl<'a> Scanner<'a> {
    pub fn new(compiled: &'a CompiledPolicy, identity: Identity, limits: Limits) -> anyhow::Result<Self> {
        Ok(Scanner {
            protector: Protector::new(compiled)?,
            identity,
            limits,
            files: BTreeMap::new(),
            env: BTreeMap::new(),
            skipped_large: 0,
            skipped_binary: 0,
            unreadable: Vec::new(),
            notes: Vec::new(),
        })
    }

    /// Every file the policy's credential paths name (home-relative ones for the compiled
    /// homes, absolute ones), whether or not a token is recognised in it.
    pub fn policy_paths(&mut self, compiled: &CompiledPolicy) -> anyhow::Result<()> {
        let matcher = compiled.credentials.path_matcher()?;
        let scanned = scan::scan_credentials(&compiled.credentials, &matcher);
        if scanned.truncated {
            self.notes.push(format!(
                "the policy's credential globs matched more than {} entries; listing stopped",
                scan::MAX_VISITED
            ));
        }
        let paths: Vec<String> = scanned.files.into_values().map(|(_, path)| path).collect();
        for path in paths {
            self.file(Path::new(&path), FoundBy::PolicyPath);
        }
        Ok(())
    }

    /// The dotfiles and dot-directories directly in `home`, walked to [`Limits::max_depth`].
    pub fn home(&mut self, home: &Path) {
        let skip: Vec<PathBuf> = HOME_SKIP.iter().map(|dir| home.join(dir)).collect();
        let walk = WalkDir::new(home).min_depth(1).max_depth(self.limits.max_depth).follow_links(false);
        let entries = walk.into_iter().filter_entry(|entry| {
            let dotted = entry.depth() != 1 || entry.file_name().to_string_lossy().starts_with('.');
            dotted && !skip.iter().any(|dir| entry.path() == dir) && !skipped_anywhere(entry)
        });
        self.walk(entries, home, FoundBy::HomeScan);
        self.names_below(home);
        self.notes.push(format!(
            "home scan: dotfiles and dot-directories of {} to depth {} (elsewhere in it, files a credential rule \
             names), not {} nor {}",
            home.display(),
            self.limits.max_depth,
            HOME_SKIP.join(", "),
            SKIP_ANYWHERE.join(", ")
        ));
    }

    /// Files below the home's other directories (`~/projects/app/.env`) that a credential
    /// rule names: listed and scanned; other files there are not read.
    fn names_below(&mut self, home: &Path) {
        let walk = WalkDir::new(home).min_depth(1).max_depth(self.limits.max_depth).follow_links(false);
        let entries = walk.into_iter().filter_entry(|entry| {
            let dotted = entry.depth() == 1 && entry.file_name().to_string_lossy().starts_with('.');
            !dotted && !skipped_anywhere(entry) && !is_git_objects(entry.path())
        });
        let mut visited = 0usize;
        for entry in entries.filter_map(Result::ok) {
            visited += 1;
            if visited > self.limits.max_entries {
                self.notes.push(format!(
                    "the search for credential names below {} stopped after {} entries",
                    home.display(),
                    self.limits.max_entries
                ));
                return;
            }
            let kind = entry.file_type();
            if (kind.is_file() || kind.is_symlink()) && self.protector.names(&entry.file_name().to_string_lossy()) {
                self.file(entry.path(), FoundBy::PolicyName);
            }
        }
    }

    /// Every file of a session's workspace.
    pub fn workspace(&mut self, dir: &Path) {
        let walk = WalkDir::new(dir).min_depth(1).max_depth(self.limits.max_depth + 2).follow_links(false);
        let entries = walk.into_iter().filter_entry(|entry| !skipped_anywhere(entry) && !is_git_objects(entry.path()));
        self.walk(entries, dir, FoundBy::WorkspaceScan);
    }

    fn walk(&mut self, entries: impl Iterator<Item = walkdir::Result<walkdir::DirEntry>>, top: &Path, by: FoundBy) {
        let mut visited = 0usize;
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(err) => {
                    self.unreadable.push(err.path().map_or_else(|| err.to_string(), |path| path.display().to_string()));
                    continue;
                }
            };
            visited += 1;
            if visited > self.limits.max_entries {
                self.notes.push(format!(
                    "walk of {} stopped after {} entries; the rest was not scanned",
                    top.display(),
                    self.limits.max_entries
                ));
                return;
            }
            let kind = entry.file_type();
            if kind.is_file() || kind.is_symlink() {
                self.file(entry.path(), by);
            }
        }
    }

    /// Judges one path (a file, or a symlink to one); files without a recognised secret that
    /// no credential rule names are left out.
    pub fn file(&mut self, path: &Path, by: FoundBy) {
        let Ok(link) = fs::symlink_metadata(path) else { return };
        let target = if link.file_type().is_symlink() {
            match fs::canonicalize(path) {
                Ok(target) => Some(target),
                Err(_) => return, // dangling
            }
        } else {
            None
        };
        let Ok(meta) = fs::metadata(path) else { return };
        if !meta.is_file() {
            return;
        }
        let path_text = path.to_string_lossy().into_owned();
        let target_text = target.as_ref().map(|target| target.to_string_lossy().into_owned());
        let protection = self.protector.file(&path_text, target_text.as_deref());
        let named = protection.rule.is_some() || by == FoundBy::PolicyPath;
        let hits = if meta.len() > self.limits.max_file_bytes {
            self.skipped_large += 1;
            Vec::new()
        } else {
            match fs::read(path) {
                Ok(bytes) if secrets::looks_binary(&bytes) => {
                    self.skipped_binary += 1;
                    Vec::new()
                }
                Ok(bytes) => secrets::in_text(&String::from_utf8_lossy(&bytes), named),
                Err(_) => {
                    self.unreadable.push(path_text.clone());
                    Vec::new()
                }
            }
        };
        if hits.is_empty() && !named {
            return;
        }
        let mut found_by = vec![by];
        match protection.matched.as_deref() {
            Some(matched) if matched.starts_with("name ") => found_by.push(FoundBy::PolicyName),
            Some(matched) if matched.starts_with("path ") => found_by.push(FoundBy::PolicyPath),
            _ => {}
        }
        found_by.sort();
        found_by.dedup();
        let opened = target.clone().unwrap_or_else(|| path.to_path_buf());
        let mut directories = ancestors(&opened);
        if target.is_some() {
            directories.extend(ancestors(path));
        }
        let readable = self.identity.can_read(&directories, &perm(&meta));
        let location = Location::File { path: path_text, link_target: target_text };
        let finding = Finding {
            advice: advice(&location, protection.status),
            location,
            found_by,
            readable,
            protection,
            secrets: hits,
        };
        match self.files.entry((meta.dev(), meta.ino())) {
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(finding);
            }
            std::collections::btree_map::Entry::Occupied(mut slot) => {
                let known = slot.get_mut();
                known.found_by.extend(finding.found_by);
                known.found_by.sort();
                known.found_by.dedup();
                // The file under its own name rather than through a link.
                if matches!(known.location, Location::File { link_target: Some(_), .. })
                    && matches!(finding.location, Location::File { link_target: None, .. })
                {
                    known.location = finding.location;
                }
            }
        }
    }

    /// The environments of `pids` (a session's processes): one finding per variable and value.
    pub fn environments(&mut self, pids: &[u32]) {
        let protection = self.protector.environment();
        let mut gone = 0usize;
        for &pid in pids {
            let Ok(raw) = fs::read(format!("/proc/{pid}/environ")) else {
                gone += 1;
                continue;
            };
            let command = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string();
            for (var, hit) in secrets::in_environment(&split_environ(&raw)) {
                let finding = self.env.entry((var.clone(), hit.fingerprint.clone())).or_insert_with(|| {
                    let location = Location::Env { var, pids: Vec::new(), commands: Vec::new() };
                    Finding {
                        advice: advice(&location, protection.status),
                        location,
                        found_by: vec![FoundBy::SessionEnv],
                        readable: Readable { readable: true, why: "the session's own environment".into() },
                        protection: protection.clone(),
                        secrets: vec![hit],
                    }
                });
                if let Location::Env { pids, commands, .. } = &mut finding.location {
                    pids.push(pid);
                    if !commands.contains(&command) {
                        commands.push(command.clone());
                    }
                }
            }
        }
        if gone > 0 {
            self.notes.push(format!("{gone} session process(es) exited or hid their environment during the scan"));
        }
    }

    /// The findings and the scan's notes.
    pub fn finish(mut self) -> (Vec<Finding>, Vec<String>) {
        if self.skipped_large > 0 {
            self.notes.push(format!(
                "{} file(s) over {} bytes not read (listed only if a credential rule names them)",
                self.skipped_large, self.limits.max_file_bytes
            ));
        }
        if self.skipped_binary > 0 {
            self.notes.push(format!("{} binary file(s) not scanned for tokens", self.skipped_binary));
        }
        if !self.unreadable.is_empty() {
            let shown: Vec<&str> = self.unreadable.iter().take(5).map(String::as_str).collect();
            self.notes.push(format!(
                "{} path(s) this process could not read, so not scanned: {}{}",
                self.unreadable.len(),
                shown.join(", "),
                if self.unreadable.len() > shown.len() { ", ..." } else { "" }
            ));
        }
        let findings = self.files.into_values().chain(self.env.into_values()).collect();
        (findings, self.notes)
    }
}

fn skipped_anywhere(entry: &walkdir::DirEntry) -> bool {
    entry.file_type().is_dir() && SKIP_ANYWHERE.iter().any(|name| entry.file_name() == *name)
}

fn is_git_objects(path: &Path) -> bool {
    path.ends_with(".git/objects")
}

fn perm(meta: &fs::Metadata) -> Perm {
    Perm { mode: meta.permissions().mode(), uid: meta.uid(), gid: meta.gid() }
}

/// `/`, `/a`, `/a/b` for `/a/b/file`, with what stat says of each (unstattable ones left out:
/// the file's own stat succeeded, so they exist).
fn ancestors(path: &Path) -> Vec<(String, Perm)> {
    let mut out: Vec<(String, Perm)> = path
        .ancestors()
        .skip(1)
        .filter_map(|dir| fs::metadata(dir).ok().map(|meta| (dir.display().to_string(), perm(&meta))))
        .collect();
    out.reverse();
    out
}
