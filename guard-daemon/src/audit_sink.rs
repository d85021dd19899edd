//! Where audit records go: an append-only JSON-lines file, or stdout.

use std::{
    fs::{File, OpenOptions},
    io::{self, BufWriter, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use guard_engine::audit::AuditRecord;

pub enum AuditSink {
    File { path: PathBuf, out: BufWriter<File> },
    Stdout(io::Stdout),
}

impl AuditSink {
    /// `-` means stdout; anything else is opened for append (0600), its directory made (0750).
    pub fn open(target: &Path) -> anyhow::Result<Self> {
        if target == Path::new("-") {
            return Ok(AuditSink::Stdout(io::stdout()));
        }
        if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(dir)
                .with_context(|| format!("creating audit directory {}", dir.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(target)
            .with_context(|| format!("opening audit file {}", target.display()))?;
        Ok(AuditSink::File { path: target.to_path_buf(), out: BufWriter::new(file) })
    }

    pub fn describe(&self) -> String {
        match self {
            AuditSink::File { path, .. } => path.display().to_string(),
            AuditSink::Stdout(_) => "-".to_string(),
        }
    }

    /// One `write_all` per record, newline included: the buffer is then only ever flushed at
    /// line boundaries, so a reader never sees half a record.
    pub fn write(&mut self, record: &AuditRecord) -> io::Result<()> {
        let mut line = record.to_json_line();
        line.push('\n');
        match self {
            AuditSink::File { out, .. } => out.write_all(line.as_bytes()),
            AuditSink::Stdout(out) => out.lock().write_all(line.as_bytes()),
        }
    }

    /// Called after each batch so operators tailing the file see records promptly.
    pub fn flush(&mut self) -> io::Result<()> {
        match self {
            AuditSink::File { out, .. } => out.flush(),
            AuditSink::Stdout(out) => out.flush(),
        }
    }
}
