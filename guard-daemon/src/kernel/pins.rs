//! Enforcement that outlives the daemon: maps and links pinned in bpffs.
//!
//! Layout of a pin directory (one per guard instance, `/sys/fs/bpf/<session root name>` by
//! default):
//! - `maps/<NAME>`: every map of the object. A daemon started again reuses them (learned
//!   credential inodes, sessions, held tasks, counters, the ring buffer with whatever the
//!   kernel queued meanwhile).
//! - `links/gen-<N>/<program>-<hook>`: the tracing and lsm links of run N. A later run attaches
//!   its own programs first (generation N+1) and only then unpins the old ones: there is no
//!   moment without a program, only a short one with two.
//! - `links/sock/<cgroup id>-<program>`: the cgroup sock_addr links. A cgroup takes one program
//!   per hook (`CgroupAttachMode::Single`), so a later run keeps these (they read the same
//!   pinned maps) instead of attaching its own.
//!
//! The daemon holds every link's fd as well, so removing a pin while it runs detaches nothing.
//! A clean stop (`guard stop`, SIGTERM from outside a session) unpins everything; a crash, a
//! SIGKILL or `guard stop --keep-pins` leaves it all in place.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use aya::programs::links::{FdLink, PinnedLink};

pub struct Pins {
    pub dir: PathBuf,
    generation: u64,
    /// Link directories of earlier runs, to retire once this run is attached.
    previous: Vec<PathBuf>,
    /// Maps were already pinned here: this run adopts a previous one's state.
    pub adopted: bool,
    links: Vec<PinnedLink>,
    sock_links: Vec<(String, PinnedLink)>,
}

impl Pins {
    /// Open (or create) the pin directory.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let maps = dir.join("maps");
        let adopted = fs::read_dir(&maps).is_ok_and(|mut entries| entries.next().is_some());
        for sub in [maps.clone(), dir.join("links/sock")] {
            fs::create_dir_all(&sub).with_context(|| format!("creating pin directory {}", sub.display()))?;
        }
        let mut previous = Vec::new();
        let mut generation = 0;
        for entry in fs::read_dir(dir.join("links")).with_context(|| format!("reading {}/links", dir.display()))? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(number) = name.to_str().and_then(|n| n.strip_prefix("gen-")).and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            generation = generation.max(number + 1);
            previous.push(entry.path());
        }
        let this_run = dir.join(format!("links/gen-{generation}"));
        fs::create_dir_all(&this_run).with_context(|| format!("creating {}", this_run.display()))?;
        Ok(Self { dir: dir.to_path_buf(), generation, previous, adopted, links: Vec::new(), sock_links: Vec::new() })
    }

    pub fn map_path(&self, name: &str) -> PathBuf {
        self.dir.join("maps").join(name)
    }

    /// Pin one of this run's links (and keep its fd).
    pub fn keep(&mut self, link: FdLink, name: &str) -> anyhow::Result<()> {
        let path = self.dir.join(format!("links/gen-{}/{name}", self.generation));
        let pinned = link.pin(&path).with_context(|| format!("pinning link {}", path.display()))?;
        self.links.push(pinned);
        Ok(())
    }

    fn sock_path(&self, cgroup_id: u64, program: &str) -> PathBuf {
        self.dir.join(format!("links/sock/{cgroup_id}-{program}"))
    }

    /// A sock_addr link an earlier run pinned for this cgroup and program, now kept by this run.
    pub fn adopt_sock_link(&mut self, cgroup_id: u64, program: &str) -> bool {
        let path = self.sock_path(cgroup_id, program);
        match PinnedLink::from_pin(&path) {
            Ok(link) => {
                self.sock_links.push((path.display().to_string(), link));
                true
            }
            Err(_) => false,
        }
    }

    pub fn keep_sock(&mut self, link: FdLink, cgroup_id: u64, program: &str) -> anyhow::Result<()> {
        let path = self.sock_path(cgroup_id, program);
        let pinned = link.pin(&path).with_context(|| format!("pinning link {}", path.display()))?;
        self.sock_links.push((path.display().to_string(), pinned));
        Ok(())
    }

    /// A link aya did not make (the unix sock_addr programs): pinned by hand, then kept as
    /// the others are.
    pub fn keep_raw_sock(&mut self, link: std::os::fd::OwnedFd, cgroup_id: u64, program: &str) -> anyhow::Result<()> {
        use std::os::fd::AsFd as _;
        let path = self.sock_path(cgroup_id, program);
        super::unix::pin(link.as_fd(), &path)?;
        let pinned = PinnedLink::from_pin(&path).with_context(|| format!("opening pinned link {}", path.display()))?;
        self.sock_links.push((path.display().to_string(), pinned));
        Ok(())
    }

    /// Detach the sock_addr links of cgroups that are no longer roots.
    pub fn retire_sock_links(&mut self, current: &[u64]) -> usize {
        let Ok(entries) = fs::read_dir(self.dir.join("links/sock")) else { return 0 };
        let mut retired = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let id = name.split('-').next().and_then(|id| id.parse::<u64>().ok());
            if id.is_some_and(|id| !current.contains(&id)) {
                let path = entry.path();
                self.sock_links.retain(|(kept, _)| *kept != path.display().to_string());
                if let Ok(link) = PinnedLink::from_pin(&path)
                    && link.unpin().is_ok()
                {
                    retired += 1;
                }
            }
        }
        retired
    }

    /// This run is attached: detach the programs of earlier runs.
    pub fn retire_previous(&mut self) -> anyhow::Result<usize> {
        let mut retired = 0;
        for dir in std::mem::take(&mut self.previous) {
            for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?.flatten() {
                let link = PinnedLink::from_pin(entry.path())
                    .with_context(|| format!("opening pinned link {}", entry.path().display()))?;
                // Unpinned and its fd closed: the old program is detached.
                drop(link.unpin().with_context(|| format!("unpinning {}", entry.path().display()))?);
                retired += 1;
            }
            fs::remove_dir(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        Ok(retired)
    }

    /// Clean stop: detach everything and remove the pins.
    pub fn release(mut self) -> anyhow::Result<()> {
        for link in self.links.drain(..) {
            drop(link.unpin().context("unpinning a link")?);
        }
        for (_, link) in self.sock_links.drain(..) {
            drop(link.unpin().context("unpinning a sock_addr link")?);
        }
        // Links of earlier runs that were never retired (a failed start).
        let _ = self.retire_previous();
        let _ = self.retire_sock_links(&[]);
        remove_tree(&self.dir)
    }
}

/// Remove a pin directory: bpffs files are removed with unlink like any other.
fn remove_tree(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("removing pin directory {}", dir.display()))?;
    }
    Ok(())
}
