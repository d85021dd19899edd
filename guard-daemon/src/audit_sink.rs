//! Where audit records go: an append-only JSON-lines file, or stdout.
//!
//! Every line is chained to the one before it (`guard_engine::audit::chain`): the sink keeps
//! the chain, continues it from the last complete line of a file it appends to, and carries it
//! across its own rotations and across reopens (an external logrotate, SIGUSR1,
//! `guard reopen`), so `guard audit verify` can check the files one after the other.

use std::{
    ffi::OsString,
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use guard_engine::{
    audit::{AuditRecord, chain::Chain},
    policy::{AuditSettings, MAX_AUDIT_KEEP},
};

/// Sealed lines wait in memory until a flush; past this much, a write flushes first.
const PENDING_LIMIT: usize = 64 * 1024;
/// A rotation that failed (a rename refused, say) is tried again after this long, not at
/// every record.
const ROTATION_RETRY: Duration = Duration::from_secs(30);
/// How far back a read for the last line steps at a time.
const TAIL_CHUNK: u64 = 64 * 1024;
/// Records reach the file at least this often however busy the daemon is.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// When the sink rotates its file, and how many rotated files it keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// `None`: never (an external logrotate may still move the file and ask for a reopen).
    pub max_bytes: Option<u64>,
    pub keep: u32,
}

impl From<AuditSettings> for Rotation {
    fn from(settings: AuditSettings) -> Self {
        Self { max_bytes: settings.max_bytes, keep: settings.keep }
    }
}

enum Out {
    File {
        path: PathBuf,
        file: File,
        /// Bytes in the file once what is pending is written.
        size: u64,
    },
    Stdout(io::Stdout),
}

pub struct AuditSink {
    out: Out,
    chain: Chain,
    /// Sealed lines, newlines included, not yet handed to the kernel. A line enters whole and
    /// only once its record counts as written, so what is here is always written in order:
    /// after a failed write the rest stays (`BufWriter` loses a partly written large line).
    pending: Vec<u8>,
    rotation: Rotation,
    /// After a failed rotation: not before this.
    rotation_retry_at: Option<Instant>,
    /// The file was replaced (rotation, reopen) since the daemon last asked.
    file_changed: bool,
    last_flush: Instant,
    /// Counts the bytes of every line taken (`guard_audit_bytes_total{sink="file"}`).
    bytes: Option<prometheus_client::metrics::counter::Counter>,
}

impl AuditSink {
    /// `-` means stdout (a fresh chain); anything else is opened for append (0600), its
    /// directory made (0750), and the chain continued from its last complete line.
    pub fn open(target: &Path, rotation: Rotation) -> anyhow::Result<Self> {
        let mut sink = Self {
            out: Out::Stdout(io::stdout()),
            chain: Chain::genesis(),
            pending: Vec::new(),
            rotation,
            rotation_retry_at: None,
            file_changed: false,
            last_flush: Instant::now(),
            bytes: None,
        };
        if target == Path::new("-") {
            return Ok(sink);
        }
        let file = open_append(target)?;
        let tail = Tail::read(&file).with_context(|| format!("reading the last line of {}", target.display()))?;
        sink.chain = match &tail.last_line {
            Some(line) => Chain::after_line(line),
            // Nothing complete here: a file rotated away before it (logrotate's `create`
            // while no daemon ran) holds the chain's end.
            None => match previous_file_chain(target) {
                Some((previous, chain)) => {
                    log::info!(
                        "audit file {} is empty: the chain continues from {}",
                        target.display(),
                        previous.display()
                    );
                    chain
                }
                None => Chain::genesis(),
            },
        };
        sink.end_torn_line(target, &tail);
        sink.out = Out::File { path: target.to_path_buf(), file, size: tail.len + sink.pending.len() as u64 };
        Ok(sink)
    }

    /// A record cut short (a crash mid-write) would run into the next one: end it with a
    /// newline. The chain goes on from the last complete line, so the torn one is skipped.
    fn end_torn_line(&mut self, path: &Path, tail: &Tail) {
        if tail.torn_bytes == 0 {
            return;
        }
        log::warn!(
            "audit file {} ends with an incomplete line ({} bytes, cut short by a crash?): ending it with a newline; \
             the chain continues from the last complete line",
            path.display(),
            tail.torn_bytes
        );
        // Before anything waiting, so the torn bytes stay a line of their own.
        self.pending.insert(0, b'\n');
    }

    pub fn describe(&self) -> String {
        match &self.out {
            Out::File { path, .. } => path.display().to_string(),
            Out::Stdout(_) => "-".to_string(),
        }
    }

    /// The audit file, and its rotated predecessors that exist (`.1` first); empty for stdout.
    pub fn files(&self) -> Vec<PathBuf> {
        let Out::File { path, .. } = &self.out else { return Vec::new() };
        std::iter::once(path.clone())
            .chain((1..=self.rotation.keep).map(|n| rotated_path(path, n)).take_while(|p| p.exists()))
            .collect()
    }

    /// The hash the next record's `prev_hash` carries.
    #[cfg(test)]
    pub fn last_hash(&self) -> &str {
        self.chain.last_hash()
    }

    /// Count the bytes of the lines taken into `counter`.
    pub fn count_bytes(&mut self, counter: prometheus_client::metrics::counter::Counter) {
        self.bytes = Some(counter);
    }

    pub fn set_rotation(&mut self, rotation: Rotation) {
        if rotation != self.rotation {
            self.rotation = rotation;
            self.rotation_retry_at = None;
        }
    }

    /// True once after the file was replaced (its identity changed: the daemon protects the
    /// new one from sessions).
    pub fn take_file_changed(&mut self) -> bool {
        std::mem::take(&mut self.file_changed)
    }

    /// Chains the record and queues its line. `Err` means the record was not taken (the
    /// queue could not be flushed to make room, or a rotation due could not flush the old
    /// file): keep it and write it again later. `Ok` means it will be written, in order.
    pub fn write(&mut self, record: &AuditRecord) -> io::Result<()> {
        let line = self.chain.line_for(record);
        let line_bytes = line.len() as u64 + 1;
        if self.rotation_due(line_bytes) {
            self.rotate()?;
        }
        if self.pending.len() >= PENDING_LIMIT {
            self.flush()?;
        }
        self.pending.extend_from_slice(line.as_bytes());
        self.pending.push(b'\n');
        self.chain.advance(line.as_bytes());
        if let Some(bytes) = &self.bytes {
            bytes.inc_by(line_bytes);
        }
        if let Out::File { size, .. } = &mut self.out {
            *size += line_bytes;
        }
        Ok(())
    }

    /// Hands what is queued to the kernel (after each batch, and at least every
    /// [`FLUSH_EVERY`]) so readers see records promptly. What a failed write left stays queued.
    pub fn flush(&mut self) -> io::Result<()> {
        while !self.pending.is_empty() {
            let written = match &mut self.out {
                Out::File { file, .. } => file.write(&self.pending),
                Out::Stdout(out) => out.lock().write(&self.pending),
            };
            match written {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "the audit stream took no bytes")),
                Ok(count) => {
                    self.pending.drain(..count);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        if let Out::Stdout(out) = &mut self.out {
            out.flush()?;
        }
        self.last_flush = Instant::now();
        Ok(())
    }

    /// Was the last flush [`FLUSH_EVERY`] ago (or more)?
    pub fn flush_due(&self) -> bool {
        !self.pending.is_empty() && self.last_flush.elapsed() >= FLUSH_EVERY
    }

    /// Flush and `fdatasync`: the records are on disk when this returns. (Stdout is only
    /// flushed: what reads it keeps the records.)
    pub fn sync(&mut self) -> io::Result<()> {
        self.flush()?;
        match &self.out {
            Out::File { file, .. } => file.sync_data(),
            Out::Stdout(_) => Ok(()),
        }
    }

    /// Open the audit path again (created if missing), for an external logrotate that moved
    /// the file away. The chain goes on: the new file's first record points at the last one
    /// written to the old. Returns the path, or `None` for stdout (nothing to reopen).
    pub fn reopen(&mut self) -> anyhow::Result<Option<PathBuf>> {
        let Out::File { path, .. } = &self.out else { return Ok(None) };
        let path = path.clone();
        // What is queued belongs to the old file; if it takes nothing, the records go to the
        // new one rather than be lost (still in chain order).
        if let Err(err) = self.flush() {
            log::warn!(
                "the old audit file takes no writes ({err}): {} bytes of records go to the reopened {}",
                self.pending.len(),
                path.display()
            );
        }
        let file = open_append(&path)?;
        let tail = Tail::read(&file).with_context(|| format!("reading the last line of {}", path.display()))?;
        if let Some(line) = &tail.last_line
            && Chain::after_line(line).last_hash() != self.chain.last_hash()
        {
            log::warn!(
                "the reopened {} already holds lines of another chain; the chain goes on from this daemon's last record",
                path.display()
            );
        }
        self.end_torn_line(&path, &tail);
        self.out = Out::File { size: tail.len + self.pending.len() as u64, path: path.clone(), file };
        self.file_changed = true;
        self.rotation_retry_at = None;
        Ok(Some(path))
    }

    fn rotation_due(&self, line_bytes: u64) -> bool {
        let (Out::File { size, .. }, Some(max_bytes)) = (&self.out, self.rotation.max_bytes) else { return false };
        // An empty file takes the record whatever its size: rotating would not make room.
        *size > 0
            && size.saturating_add(line_bytes) > max_bytes
            && self.rotation_retry_at.is_none_or(|at| Instant::now() >= at)
    }

    /// `audit.jsonl` becomes `.1`, `.1` becomes `.2`, ..., those past `keep` are deleted, and
    /// a fresh file takes the next record. `Err` only when the old file could not be flushed
    /// (the record waits); any other failure is logged and the current file goes on taking
    /// records: none is ever dropped for want of a rotation.
    fn rotate(&mut self) -> io::Result<()> {
        self.flush()?;
        let keep = self.rotation.keep;
        let Out::File { path, file, size } = &mut self.out else { return Ok(()) };
        // The rotated file is complete on disk before its name changes.
        if let Err(err) = file.sync_data() {
            log::warn!("syncing {} before rotating it: {err}", path.display());
        }
        match shift_rotated(path, keep).and_then(|()| std::fs::rename(&*path, rotated_path(path, 1))) {
            Ok(()) => {}
            Err(err) => {
                log::error!("rotating the audit file {}: {err}; records go on into it", path.display());
                self.rotation_retry_at = Some(Instant::now() + ROTATION_RETRY);
                return Ok(());
            }
        }
        match open_append(path) {
            Ok(fresh) => {
                *file = fresh;
                *size = file.metadata().map(|meta| meta.len()).unwrap_or(0);
                self.file_changed = true;
                sync_directory(path);
            }
            Err(err) => {
                let rotated = rotated_path(path, 1);
                // Put it back; failing that the open handle still writes into it as `.1`.
                let back = std::fs::rename(&rotated, &*path);
                log::error!(
                    "opening a fresh audit file {}: {err:#}; records go on into {}",
                    path.display(),
                    if back.is_ok() { path.display() } else { rotated.display() }
                );
                self.rotation_retry_at = Some(Instant::now() + ROTATION_RETRY);
            }
        }
        Ok(())
    }
}

/// `audit.jsonl` -> `audit.jsonl.<n>`.
pub fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Makes room for `path.1`: deletes `.keep` and anything older (a lowered `keep` leaves no
/// strays), then moves `.n` to `.n+1` from the oldest down.
fn shift_rotated(path: &Path, keep: u32) -> io::Result<()> {
    let ignore_missing = |result: io::Result<()>| match result {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    };
    for n in keep.max(1)..=MAX_AUDIT_KEEP {
        ignore_missing(std::fs::remove_file(rotated_path(path, n)))?;
    }
    for n in (1..keep).rev() {
        ignore_missing(std::fs::rename(rotated_path(path, n), rotated_path(path, n + 1)))?;
    }
    Ok(())
}

/// Renames are durable only once their directory is synced.
fn sync_directory(path: &Path) {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if let Err(err) = File::open(dir).and_then(|d| d.sync_all()) {
        log::warn!("syncing directory {} after rotating the audit file: {err}", dir.display());
    }
}

fn open_append(target: &Path) -> anyhow::Result<File> {
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .with_context(|| format!("creating audit directory {}", dir.display()))?;
    }
    // Readable too: the last line is read back to continue the chain.
    OpenOptions::new()
        .read(true)
        .create(true)
        .append(true)
        .mode(0o600)
        .open(target)
        .with_context(|| format!("opening audit file {}", target.display()))
}

/// The chain at the end of `path.1`, when it exists and has a complete line.
fn previous_file_chain(path: &Path) -> Option<(PathBuf, Chain)> {
    let previous = rotated_path(path, 1);
    let file = File::open(&previous).ok()?;
    let line = Tail::read(&file).ok()?.last_line?;
    Some((previous, Chain::after_line(&line)))
}

/// The end of an audit file: its last complete line and what follows it without a newline.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tail {
    len: u64,
    /// Without its newline.
    last_line: Option<Vec<u8>>,
    /// Bytes after the last newline (a line cut short).
    torn_bytes: u64,
}

impl Tail {
    fn read(file: &File) -> io::Result<Self> {
        let len = file.metadata()?.len();
        let Some(end) = last_newline_before(file, len)? else {
            return Ok(Tail { len, last_line: None, torn_bytes: len });
        };
        let start = last_newline_before(file, end)?.map_or(0, |newline| newline + 1);
        let mut line = vec![0; (end - start) as usize];
        file.read_exact_at(&mut line, start)?;
        Ok(Tail { len, last_line: Some(line), torn_bytes: len - end - 1 })
    }
}

/// Offset of the last `\n` before `before`, read backwards a chunk at a time (lines may be
/// long; files are never read whole).
fn last_newline_before(file: &File, before: u64) -> io::Result<Option<u64>> {
    let mut end = before;
    let mut chunk = Vec::new();
    while end > 0 {
        let start = end.saturating_sub(TAIL_CHUNK);
        chunk.resize((end - start) as usize, 0);
        file.read_exact_at(&mut chunk, start)?;
        if let Some(index) = chunk.iter().rposition(|&byte| byte == b'\n') {
            return Ok(Some(start + index as u64));
        }
        end = start;
    }
    Ok(None)
}

#[cfg(test)]
pub(crate) mod tests {
    use guard_engine::audit::chain::{Note, Start, genesis_hash, line_hash, verify_lines};

    use super::*;

    /// A fresh directory removed on drop.
    pub(crate) struct TempDir(pub PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> Self {
            static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let dir = std::env::temp_dir().join(format!("guard-sink-{}-{n}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    pub(crate) fn record(seq: u64) -> AuditRecord {
        AuditRecord {
            ts: guard_engine::audit::format_ts(1_700_000_000_000_000_000 + i128::from(seq)),
            seq,
            event: "exec".into(),
            reason: Some(format!("record {seq} {}", "x".repeat(200))),
            ..Default::default()
        }
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path).unwrap().lines().map(str::to_string).collect()
    }

    fn prev_hash(line: &str) -> String {
        AuditRecord::from_json_line(line).unwrap().prev_hash.unwrap()
    }

    /// Verifies the files oldest first, as `guard audit verify` does; returns the records.
    pub(crate) fn verify_files(files: &[PathBuf]) -> u64 {
        let mut start = Start::Any;
        let mut records = 0;
        for file in files {
            let text = lines(file);
            let verified = verify_lines(text.iter().map(|l| l.as_bytes()), start.clone())
                .unwrap_or_else(|broken| panic!("{}: {broken}", file.display()));
            records += verified.records;
            if let Some(hash) = verified.last_hash {
                start = Start::AfterFile(hash);
            }
        }
        records
    }

    const NO_ROTATION: Rotation = Rotation { max_bytes: None, keep: 5 };

    #[test]
    fn a_fresh_file_starts_from_genesis_and_an_existing_one_continues() {
        let dir = TempDir::new("continue");
        let path = dir.0.join("log/audit.jsonl");
        let mut sink = AuditSink::open(&path, NO_ROTATION).unwrap();
        for seq in 1..=3 {
            sink.write(&record(seq)).unwrap();
        }
        sink.sync().unwrap();
        drop(sink);
        let first = lines(&path);
        assert_eq!(prev_hash(&first[0]), genesis_hash());

        let mut sink = AuditSink::open(&path, NO_ROTATION).unwrap();
        assert_eq!(sink.last_hash(), line_hash(first[2].as_bytes()));
        sink.write(&record(1)).unwrap();
        sink.flush().unwrap();
        let all = lines(&path);
        assert_eq!(prev_hash(&all[3]), line_hash(all[2].as_bytes()));
        assert_eq!(verify_files(&[path]), 4);
    }

    #[test]
    fn a_torn_last_line_is_ended_and_skipped() {
        let dir = TempDir::new("torn");
        let path = dir.0.join("audit.jsonl");
        let mut sink = AuditSink::open(&path, NO_ROTATION).unwrap();
        sink.write(&record(1)).unwrap();
        sink.write(&record(2)).unwrap();
        sink.flush().unwrap();
        drop(sink);
        let complete = lines(&path);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(br#"{"ts":"2026-01-01T00:00:00Z","seq":3,"ev"#).unwrap();

        let mut sink = AuditSink::open(&path, NO_ROTATION).unwrap();
        assert_eq!(sink.last_hash(), line_hash(complete[1].as_bytes()));
        sink.write(&record(3)).unwrap();
        sink.flush().unwrap();
        let all = lines(&path);
        assert_eq!(all.len(), 4);
        assert!(all[2].ends_with(r#""ev"#), "the torn bytes stay a line of their own: {:?}", all[2]);
        assert_eq!(prev_hash(&all[3]), line_hash(complete[1].as_bytes()));
        let verified = verify_lines(all.iter().map(|l| l.as_bytes()), Start::Any).unwrap();
        assert_eq!(verified.notes, vec![Note::TornLine { line: 3 }]);

        // A file holding nothing but a torn line starts a fresh chain.
        let lone = dir.0.join("lone.jsonl");
        std::fs::write(&lone, b"{\"seq\":1").unwrap();
        let mut sink = AuditSink::open(&lone, NO_ROTATION).unwrap();
        assert_eq!(sink.last_hash(), genesis_hash());
        sink.write(&record(1)).unwrap();
        sink.flush().unwrap();
        assert_eq!(lines(&lone).len(), 2);
    }

    #[test]
    fn rotation_keeps_keep_files_and_the_chain_links_across_them() {
        let dir = TempDir::new("rotate");
        let path = dir.0.join("audit.jsonl");
        let rotation = Rotation { max_bytes: Some(4096), keep: 3 };
        let mut sink = AuditSink::open(&path, rotation).unwrap();
        let mut rotations = 0;
        for seq in 1..=120 {
            sink.write(&record(seq)).unwrap();
            rotations += usize::from(sink.take_file_changed());
        }
        sink.flush().unwrap();
        assert!(rotations >= 5, "{rotations} rotations");
        for file in sink.files() {
            let size = std::fs::metadata(&file).unwrap().len();
            assert!(size <= 4096, "{} has {size} bytes", file.display());
        }
        // The current file and three rotated ones; nothing older.
        let files = sink.files();
        assert_eq!(files, vec![path.clone(), rotated_path(&path, 1), rotated_path(&path, 2), rotated_path(&path, 3)]);
        assert!(!rotated_path(&path, 4).exists());
        let oldest_first: Vec<PathBuf> = files.into_iter().rev().collect();
        let kept = verify_files(&oldest_first);
        // The newest records are all there, the last one in the current file.
        let newest = lines(&path);
        assert_eq!(AuditRecord::from_json_line(newest.last().unwrap()).unwrap().seq, 120);
        let first_kept = AuditRecord::from_json_line(&lines(&oldest_first[0])[0]).unwrap().seq;
        assert_eq!(kept, 120 - first_kept + 1);

        // A lower `keep` after a reload leaves no strays at the next rotation.
        sink.set_rotation(Rotation { max_bytes: Some(4096), keep: 1 });
        for seq in 121..=140 {
            sink.write(&record(seq)).unwrap();
        }
        sink.flush().unwrap();
        assert!(rotated_path(&path, 1).exists());
        assert!(!rotated_path(&path, 2).exists() && !rotated_path(&path, 3).exists());
        verify_files(&[rotated_path(&path, 1), path.clone()]);
    }

    #[test]
    fn a_failed_rotation_keeps_writing_the_current_file() {
        let dir = TempDir::new("rotate-fails");
        let path = dir.0.join("audit.jsonl");
        let mut sink = AuditSink::open(&path, Rotation { max_bytes: Some(4096), keep: 2 }).unwrap();
        // A directory where `.2` should go: the shift cannot delete it.
        std::fs::create_dir(rotated_path(&path, 2)).unwrap();
        std::fs::write(rotated_path(&path, 2).join("x"), b"").unwrap();
        for seq in 1..=40 {
            sink.write(&record(seq)).unwrap();
        }
        sink.flush().unwrap();
        assert!(!sink.take_file_changed());
        assert_eq!(lines(&path).len(), 40, "every record is in the file that could not rotate");
        assert_eq!(verify_files(&[path]), 40);
    }

    #[test]
    fn a_reopen_continues_the_chain_into_the_new_file() {
        let dir = TempDir::new("reopen");
        let path = dir.0.join("audit.jsonl");
        let moved = dir.0.join("audit.jsonl.old");
        let mut sink = AuditSink::open(&path, NO_ROTATION).unwrap();
        sink.write(&record(1)).unwrap();
        sink.flush().unwrap();
        // logrotate moves the file; the daemon writes on into it until told.
        std::fs::rename(&path, &moved).unwrap();
        sink.write(&record(2)).unwrap();
        assert_eq!(sink.reopen().unwrap(), Some(path.clone()));
        assert!(sink.take_file_changed());
        sink.write(&record(3)).unwrap();
        sink.flush().unwrap();
        assert_eq!(lines(&moved).len(), 2, "what was queued went to the old file");
        let new = lines(&path);
        assert_eq!(new.len(), 1);
        assert_eq!(prev_hash(&new[0]), line_hash(lines(&moved)[1].as_bytes()));
        assert_eq!(verify_files(&[moved, path.clone()]), 3);

        // Reopening the same file (nothing moved) just goes on.
        sink.reopen().unwrap();
        sink.write(&record(4)).unwrap();
        sink.flush().unwrap();
        assert_eq!(verify_files(&[path]), 2);

        let mut stdout = AuditSink::open(Path::new("-"), NO_ROTATION).unwrap();
        assert_eq!(stdout.reopen().unwrap(), None);
        assert!(stdout.files().is_empty());
    }

    #[test]
    fn an_empty_file_after_a_rotation_continues_the_rotated_chain() {
        let dir = TempDir::new("after-rotated");
        let path = dir.0.join("audit.jsonl");
        let mut sink = AuditSink::open(&path, NO_ROTATION).unwrap();
        sink.write(&record(1)).unwrap();
        sink.sync().unwrap();
        drop(sink);
        // logrotate with `create` while no daemon ran.
        std::fs::rename(&path, rotated_path(&path, 1)).unwrap();
        std::fs::write(&path, b"").unwrap();
        let mut sink = AuditSink::open(&path, NO_ROTATION).unwrap();
        sink.write(&record(1)).unwrap();
        sink.flush().unwrap();
        assert_eq!(verify_files(&[rotated_path(&path, 1), path]), 2);
    }

    #[test]
    fn tail_finds_the_last_complete_line_across_chunks() {
        let dir = TempDir::new("tail");
        let path = dir.0.join("t");
        let long = "y".repeat(TAIL_CHUNK as usize * 2 + 5);
        std::fs::write(&path, format!("a\n{long}\npartial")).unwrap();
        let tail = Tail::read(&File::open(&path).unwrap()).unwrap();
        assert_eq!(tail.last_line.as_deref(), Some(long.as_bytes()));
        assert_eq!(tail.torn_bytes, 7);
        std::fs::write(&path, "only\n").unwrap();
        let tail = Tail::read(&File::open(&path).unwrap()).unwrap();
        assert_eq!((tail.last_line.as_deref(), tail.torn_bytes), (Some(&b"only"[..]), 0));
        std::fs::write(&path, "").unwrap();
        assert_eq!(Tail::read(&File::open(&path).unwrap()).unwrap(), Tail::default());
    }
}
