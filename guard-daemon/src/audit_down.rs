//! Audit failure fails closed: while records cannot be written (disk full, I/O error) every
//! governed cgroup is frozen, so no session acts unrecorded. Records meanwhile wait in memory
//! (bounded) and are written, in order, once the file takes writes again; then the cgroups are
//! thawed and an `audit_unwritable` record says how long and why.

use std::{collections::VecDeque, path::PathBuf, time::Instant};

use guard_engine::audit::AuditRecord;

/// Records kept in memory while the audit file takes none. Past it the oldest are counted, not
/// kept, and the `audit_unwritable` record says how many.
pub const MAX_BACKLOG: usize = 200_000;

pub struct AuditDown {
    pub since: Instant,
    pub since_unix_ns: i128,
    pub error: String,
    /// The roots this froze (`cgroup.freeze` = 1), to thaw again.
    pub frozen: Vec<PathBuf>,
    pub backlog: VecDeque<AuditRecord>,
    pub lost: u64,
}

impl AuditDown {
    pub fn keep(&mut self, record: AuditRecord) {
        if self.backlog.len() >= MAX_BACKLOG {
            self.backlog.pop_front();
            self.lost += 1;
        }
        self.backlog.push_back(record);
    }
}

/// Freeze (or thaw) a cgroup subtree; cgroup v2 freezing is hierarchical, so a root covers
/// every session below it, those created later included.
pub fn set_frozen(cgroup: &std::path::Path, frozen: bool) -> std::io::Result<()> {
    std::fs::write(cgroup.join("cgroup.freeze"), if frozen { b"1" } else { b"0" })
}
