//! The audit stream: every record goes through here; a refusal or hold is on disk before
//! the daemon goes on; an unwritable file freezes the sessions until it takes writes again;
//! rotations and reopens keep the kernel's protection on the current files.

use std::time::Instant;

use anyhow::Context as _;
use guard_engine::audit::{AuditRecord, Verdict};

use super::{Daemon, now_unix_ns};
use crate::kernel::handle::KernelHandle;

/// Rotated audit files the kernel protects besides the current one (its PROTECTED map is
/// small; the newest matter most).
const PROTECTED_ROTATED_FILES: usize = 16;

/// Which verdicts are on disk before the daemon goes on: what a session was refused, or held.
fn needs_sync(record: &AuditRecord) -> bool {
    matches!(record.verdict, Some(Verdict::Deny | Verdict::Kill | Verdict::Hold))
}

impl<K: KernelHandle> Daemon<K> {
    /// Write a record of the daemon's own (start, reload, signals): redacted first, as every
    /// record is.
    pub fn emit(&mut self, record: &AuditRecord) {
        let record = self.engine.redact(record);
        self.write_record(&record);
    }

    /// Write a record as it is (the engine's actions carry redacted records).
    pub(super) fn write_record(&mut self, record: &AuditRecord) {
        self.audit_records += 1;
        self.metrics.count_record(record);
        for copy in &self.copies {
            copy.send(record);
        }
        if let Some(down) = &mut self.audit_down {
            down.keep(record.clone());
            return;
        }
        if let Err(err) = self.sink.write(record) {
            self.audit_failed(&err);
            if let Some(down) = &mut self.audit_down {
                down.keep(record.clone());
            }
            return;
        }
        // A refusal or a hold is on disk before the daemon acts on anything else, so a crash
        // cannot take the record of what it stopped. (The record was taken: a failure here
        // leaves it queued, and the sessions frozen until it is written.)
        if needs_sync(record)
            && let Err(err) = self.sink.sync()
        {
            self.audit_failed(&err);
        }
        self.follow_audit_file();
    }

    /// Flush the audit stream; a failure freezes the sessions until it takes writes again.
    pub fn flush_audit(&mut self) {
        if self.audit_down.is_some() {
            self.retry_audit();
        } else if let Err(err) = self.sink.flush() {
            self.audit_failed(&err);
        }
        self.follow_audit_file();
    }

    /// Flush when records have waited [`crate::audit_sink::FLUSH_EVERY`]: a long batch of
    /// kernel events must not keep them from readers.
    pub fn flush_audit_if_due(&mut self) {
        if self.sink.flush_due() {
            self.flush_audit();
        }
    }

    /// After a rotation or reopen the audit file is another inode: protect it (and the rotated
    /// ones still kept) from sessions, and forget the ones deleted.
    fn follow_audit_file(&mut self) {
        if self.sink.take_file_changed()
            && let Err(err) = self.protect_audit_files()
        {
            log::error!("{err:#}");
        }
    }

    /// No session may rewrite the audit trail: the kernel refuses their writes to these inodes.
    pub fn protect_audit_files(&mut self) -> anyhow::Result<()> {
        let files = self.sink.files();
        let wanted: Vec<guard_common::DevIno> = files
            .iter()
            .take(1 + PROTECTED_ROTATED_FILES)
            .filter_map(|path| std::fs::metadata(path).ok())
            .map(|meta| crate::scan::identity(&meta))
            .collect();
        let gone: Vec<guard_common::DevIno> =
            self.protected_audit.iter().filter(|id| !wanted.contains(id)).copied().collect();
        self.host
            .kernel
            .set_protected(&wanted)
            .and_then(|()| self.host.kernel.unprotect(&gone))
            .context("protecting the audit files from sessions")?;
        self.protected_audit = wanted;
        Ok(())
    }

    /// SIGUSR1 or `guard reopen`: open the audit path again (an external logrotate moved the
    /// file). The new file's first record says so; the chain goes on from the old file's last.
    /// `Err` says why not, for the caller to pass on (log line, control reply).
    pub fn reopen_audit(&mut self, reason: &str, by: &str) -> Result<String, String> {
        let path = match self.sink.reopen() {
            Ok(Some(path)) => path,
            Ok(None) => return Err("the audit stream goes to stdout: there is no file to reopen".to_string()),
            Err(err) => {
                return Err(format!("reopening the audit file ({by}) failed, records go on into the old one: {err:#}"));
            }
        };
        let message =
            format!("audit file {} reopened ({by}); the chain continues from the previous file", path.display());
        let mut record = self.engine.daemon_record("audit_reopened", now_unix_ns(), message.clone());
        record.details = Some(serde_json::json!({ "path": path.display().to_string(), "reason": reason }));
        self.emit(&record);
        if self.audit_down.is_some() {
            self.retry_audit();
        } else if let Err(err) = self.sink.sync() {
            self.audit_failed(&err);
        }
        self.follow_audit_file();
        Ok(message)
    }

    /// The audit file took no write: freeze every governed cgroup, keep records in memory.
    fn audit_failed(&mut self, err: &std::io::Error) {
        self.metrics.audit_file_errors.inc();
        if self.audit_down.is_some() {
            return;
        }
        log::error!("the audit stream takes no writes ({err}): freezing the sessions until it does");
        let mut frozen = Vec::new();
        for root in self.host.sessions.roots() {
            match crate::audit_down::set_frozen(root, true) {
                Ok(()) => frozen.push(root.clone()),
                Err(freeze_err) => log::error!("freezing {}: {freeze_err}", root.display()),
            }
        }
        self.audit_down = Some(crate::audit_down::AuditDown {
            since: Instant::now(),
            since_unix_ns: now_unix_ns(),
            error: err.to_string(),
            frozen,
            backlog: Default::default(),
            lost: 0,
        });
    }

    /// While the audit file is unwritable: try again; once everything kept is written, thaw.
    fn retry_audit(&mut self) {
        let Some(down) = &mut self.audit_down else { return };
        if self.sink.flush().is_err() {
            return;
        }
        while let Some(record) = down.backlog.front() {
            if self.sink.write(record).is_err() || self.sink.flush().is_err() {
                return;
            }
            down.backlog.pop_front();
        }
        // What waited includes refusals: on disk before the sessions move again.
        if self.sink.sync().is_err() {
            return;
        }
        let Some(down) = self.audit_down.take() else { return };
        let mut record = self.engine.daemon_record(
            "audit_unwritable",
            now_unix_ns(),
            format!(
                "the audit stream took no writes for {:.1} s ({}); the sessions were frozen meanwhile and thawed now{}",
                down.since.elapsed().as_secs_f64(),
                down.error,
                if down.lost > 0 {
                    format!("; {} records did not fit in memory and are lost", down.lost)
                } else {
                    String::new()
                }
            ),
        );
        record.details = Some(serde_json::json!({
            "since": guard_engine::audit::format_ts(down.since_unix_ns),
            "secs": down.since.elapsed().as_secs_f64(),
            "error": down.error,
            "lost": down.lost,
            "frozen": down.frozen.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        }));
        self.emit(&record);
        if let Err(err) = self.sink.sync() {
            self.audit_failed(&err);
            return;
        }
        for root in &down.frozen {
            if let Err(err) = crate::audit_down::set_frozen(root, false) {
                log::error!("thawing {}: {err}", root.display());
            }
        }
    }
}

impl<K: KernelHandle> Daemon<K> {
    /// A secondary sink went down or came back: say so in the JSON stream, once each time.
    pub(super) fn note_copy_changes(&mut self) {
        let changes: Vec<(String, crate::audit_fanout::SinkChange)> =
            self.copies.iter_mut().filter_map(|copy| Some((copy.target.clone(), copy.take_change()?))).collect();
        for (target, change) in changes {
            let record = match change {
                crate::audit_fanout::SinkChange::Failed { error } => {
                    let mut record = self.engine.daemon_record(
                        "audit_sink_failed",
                        now_unix_ns(),
                        format!(
                            "audit copy to {target} fails ({error}): records go on into the audit file; \
                             the copy misses them until it works again"
                        ),
                    );
                    record.details = Some(serde_json::json!({ "sink": target, "error": error }));
                    record
                }
                crate::audit_fanout::SinkChange::Recovered => {
                    let lost = self
                        .copies
                        .iter()
                        .find(|c| c.target == target)
                        .map_or(0, |c| c.counters.dropped.load(std::sync::atomic::Ordering::Relaxed));
                    let mut record = self.engine.daemon_record(
                        "audit_sink_recovered",
                        now_unix_ns(),
                        format!("audit copy to {target} works again ({lost} records missed since start)"),
                    );
                    record.details = Some(serde_json::json!({ "sink": target, "missed_total": lost }));
                    record
                }
            };
            self.emit(&record);
        }
    }
}
