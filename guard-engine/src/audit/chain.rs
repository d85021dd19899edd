//! The audit stream's hash chain: every record carries `prev_hash`, the hex BLAKE3 hash of the
//! previous line's exact bytes (without the newline). The first record of a fresh chain carries
//! [`genesis_hash`]. A changed, removed, inserted or reordered line breaks the chain at the
//! line after it; so does a file that does not start where the previous file ended.
//!
//! What a chain cannot show: lines cut off at the end (a truncated tail, or a whole newest
//! file removed) leave a shorter chain that is still intact. Shipping records off the host as
//! they are written is the answer to that, not anything here.
//!
//! Pure: [`Chain`] seals records into lines, [`Verifier`] checks lines fed to it one by one
//! (the caller reads the files), [`verify_lines`] checks lines already in memory.

use serde::Deserialize;

use super::AuditRecord;

/// The bytes whose hash the first record of a fresh chain carries as `prev_hash`.
pub const GENESIS_SEED: &[u8] = b"guard-audit-genesis-v1";

/// Hex BLAKE3 of [`GENESIS_SEED`]: the `prev_hash` of a fresh chain's first record.
pub fn genesis_hash() -> String {
    line_hash(GENESIS_SEED)
}

/// Hex BLAKE3 of one line's exact bytes, without its newline.
pub fn line_hash(line: &[u8]) -> String {
    blake3::hash(line).to_hex().to_string()
}

/// The writer's side: the hash of the last line written, and the sealing of the next record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    last_hash: String,
}

impl Chain {
    /// A fresh chain: the next record is its first.
    pub fn genesis() -> Self {
        Self { last_hash: genesis_hash() }
    }

    /// Continue a chain whose last line hashed to `last_hash` (hex), e.g. the last complete
    /// line of an audit file the daemon appends to.
    pub fn after_hash(last_hash: impl Into<String>) -> Self {
        Self { last_hash: last_hash.into() }
    }

    /// Continue a chain after this line (without its newline).
    pub fn after_line(line: &[u8]) -> Self {
        Self { last_hash: line_hash(line) }
    }

    /// The hash the next record's `prev_hash` will carry.
    pub fn last_hash(&self) -> &str {
        &self.last_hash
    }

    /// The record as its line (without the newline), `prev_hash` set to the last line's hash.
    /// The chain does not move: [`Chain::advance`] once the line is sure to be written (a
    /// line that never reaches the stream would break the chain at the next one).
    pub fn line_for(&self, record: &AuditRecord) -> String {
        let mut chained = record.clone();
        chained.prev_hash = Some(self.last_hash.clone());
        chained.to_json_line()
    }

    /// The line (without its newline) was written: the next record follows it.
    pub fn advance(&mut self, line: &[u8]) {
        self.last_hash = line_hash(line);
    }

    /// [`Chain::line_for`] and [`Chain::advance`] at once.
    pub fn seal(&mut self, record: &AuditRecord) -> String {
        let line = self.line_for(record);
        self.advance(line.as_bytes());
        line
    }
}

/// Where the first record of the lines being verified must point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// Anywhere: a fresh chain (genesis) or a continuation of an earlier file that is not
    /// being checked (the first file given).
    Any,
    /// The last line of the previous file, whose hash this is.
    AfterFile(String),
}

/// Why a line does not follow the chain.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BreakReason {
    #[error("malformed JSON: {0}")]
    Malformed(String),
    #[error("missing prev_hash: the line is not part of a chain")]
    MissingPrevHash,
    #[error(
        "prev_hash {found} does not match the hash of the line before it ({expected}): that line was changed, \
         removed or moved"
    )]
    Mismatch { found: String, expected: String },
    #[error(
        "prev_hash {found} does not match the last line of the previous file ({expected}): the files are not \
         consecutive (give them oldest first), or one between them is missing or changed"
    )]
    NotAfterPreviousFile { found: String, expected: String },
}

/// The first line that does not follow the chain. `line` counts from 1 in its file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line} (seq {}): {reason}", seq.map_or_else(|| "?".to_string(), |seq| seq.to_string()))]
pub struct Break {
    pub line: u64,
    /// The record's `seq`, when the line says.
    pub seq: Option<u64>,
    pub reason: BreakReason,
}

/// Something worth saying about a file that is not a break.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// The first record does not start from genesis: the chain began in an earlier file.
    ContinuesEarlierChain { prev_hash: String },
    /// A line cut short (a crash mid-write) that the daemon ended with a newline when it
    /// appended again; the chain goes on from the line before it.
    TornLine { line: u64 },
    /// The file ends without a newline: a line still being written, or cut short. Not checked.
    IncompleteLastLine { line: u64 },
}

impl std::fmt::Display for Note {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Note::ContinuesEarlierChain { prev_hash } => {
                write!(formatter, "continues a chain from an earlier file (prev_hash {prev_hash})")
            }
            Note::TornLine { line } => write!(
                formatter,
                "line {line} is a record cut short (a crash mid-write); the chain goes on from the line before it"
            ),
            Note::IncompleteLastLine { line } => {
                write!(formatter, "line {line} has no newline yet (still being written, or cut short): not checked")
            }
        }
    }
}

/// What one file's lines showed when they all followed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// Records that followed the chain (torn and incomplete lines not counted).
    pub records: u64,
    /// Hash of the last complete record line; for a file without any, the hash the chain
    /// started from (`None` when that was [`Start::Any`]).
    pub last_hash: Option<String>,
    pub notes: Vec<Note>,
}

/// The fields the chain needs; everything else in the line is only hashed.
#[derive(Deserialize)]
struct ChainFields {
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    prev_hash: Option<String>,
}

/// A malformed line waiting for the next one to tell whether it is a torn record.
#[derive(Debug)]
struct Suspect {
    line: u64,
    error: String,
}

impl Suspect {
    fn into_break(self) -> Break {
        Break { line: self.line, seq: None, reason: BreakReason::Malformed(self.error) }
    }
}

/// Checks the lines of one file as they are read, in order. Streamed: a file of any size needs
/// only the last line's hash in memory.
#[derive(Debug)]
pub struct Verifier {
    start: Start,
    /// Hash of the last line that followed (the start hash before the first); `None` before
    /// the first record under [`Start::Any`].
    last_hash: Option<String>,
    records: u64,
    notes: Vec<Note>,
    suspect: Option<Suspect>,
}

impl Verifier {
    pub fn new(start: Start) -> Self {
        let last_hash = match &start {
            Start::Any => None,
            Start::AfterFile(hash) => Some(hash.clone()),
        };
        Self { start, last_hash, records: 0, notes: Vec::new(), suspect: None }
    }

    /// The next complete line (without its newline), numbered from 1.
    pub fn line(&mut self, number: u64, line: &[u8]) -> Result<(), Break> {
        let fields = match serde_json::from_slice::<ChainFields>(line) {
            Ok(fields) => fields,
            Err(error) => {
                // Two malformed lines in a row: the first is where the chain broke.
                if let Some(suspect) = self.suspect.take() {
                    return Err(suspect.into_break());
                }
                self.suspect = Some(Suspect { line: number, error: error.to_string() });
                return Ok(());
            }
        };
        let checked = self.check(number, &fields);
        // A malformed line is a torn record only when the daemon chained on past it (from the
        // line before it); otherwise the chain broke at the malformed line itself.
        if let Some(suspect) = self.suspect.take() {
            if checked.is_err() {
                return Err(suspect.into_break());
            }
            self.notes.push(Note::TornLine { line: suspect.line });
        }
        let found = checked?;
        if self.last_hash.is_none() && found != genesis_hash() {
            self.notes.push(Note::ContinuesEarlierChain { prev_hash: found });
        }
        self.last_hash = Some(line_hash(line));
        self.records += 1;
        Ok(())
    }

    /// Does this record follow? Returns its `prev_hash`.
    fn check(&self, number: u64, fields: &ChainFields) -> Result<String, Break> {
        let broken = |reason| Break { line: number, seq: fields.seq, reason };
        let Some(found) = fields.prev_hash.clone() else { return Err(broken(BreakReason::MissingPrevHash)) };
        match &self.last_hash {
            Some(expected) if *expected != found => {
                let expected = expected.clone();
                Err(broken(if self.records == 0 && matches!(self.start, Start::AfterFile(_)) {
                    BreakReason::NotAfterPreviousFile { found, expected }
                } else {
                    BreakReason::Mismatch { found, expected }
                }))
            }
            _ => Ok(found),
        }
    }

    /// The file ended with this line and no newline after it.
    pub fn incomplete_last_line(&mut self, number: u64) {
        self.notes.push(Note::IncompleteLastLine { line: number });
    }

    /// The file ended: a malformed line nothing followed is a break.
    pub fn finish(mut self) -> Result<Verified, Break> {
        if let Some(suspect) = self.suspect.take() {
            return Err(suspect.into_break());
        }
        Ok(Verified { records: self.records, last_hash: self.last_hash, notes: self.notes })
    }
}

/// Checks lines in memory (each without its newline; an unterminated last line is the
/// caller's to leave out).
pub fn verify_lines<'a>(lines: impl IntoIterator<Item = &'a [u8]>, start: Start) -> Result<Verified, Break> {
    let mut verifier = Verifier::new(start);
    for (index, line) in lines.into_iter().enumerate() {
        verifier.line(index as u64 + 1, line)?;
    }
    verifier.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `count` records sealed into one chain, as the daemon writes them.
    fn stream(chain: &mut Chain, first_seq: u64, count: u64) -> Vec<String> {
        (first_seq..first_seq + count)
            .map(|seq| {
                let record = AuditRecord {
                    ts: super::super::format_ts(1_700_000_000_000_000_000 + i128::from(seq)),
                    seq,
                    event: "exec".into(),
                    reason: Some(format!("record {seq}")),
                    ..Default::default()
                };
                chain.seal(&record)
            })
            .collect()
    }

    fn verify(lines: &[String], start: Start) -> Result<Verified, Break> {
        verify_lines(lines.iter().map(|line| line.as_bytes()), start)
    }

    fn prev_hash(line: &str) -> String {
        let record = AuditRecord::from_json_line(line).unwrap();
        record.prev_hash.unwrap()
    }

    #[test]
    fn genesis_is_the_hash_of_the_seed() {
        assert_eq!(genesis_hash(), blake3::hash(b"guard-audit-genesis-v1").to_hex().to_string());
        // As README ("Audit stream") spells it out for verifiers of other make.
        assert_eq!(genesis_hash(), "ab63e7c83e2ae3de47022befc2ce0fb95a46579a43621922829d0027b7d6be12");
        assert_eq!(genesis_hash().len(), 64);
        assert_eq!(Chain::genesis().last_hash(), genesis_hash());
    }

    #[test]
    fn each_record_carries_the_hash_of_the_line_before() {
        let mut chain = Chain::genesis();
        let lines = stream(&mut chain, 1, 3);
        assert_eq!(prev_hash(&lines[0]), genesis_hash());
        assert_eq!(prev_hash(&lines[1]), line_hash(lines[0].as_bytes()));
        assert_eq!(prev_hash(&lines[2]), line_hash(lines[1].as_bytes()));
        assert_eq!(chain.last_hash(), line_hash(lines[2].as_bytes()));
        assert!(lines[0].ends_with(&format!(r#","prev_hash":"{}"}}"#, genesis_hash())), "{}", lines[0]);

        let verified = verify(&lines, Start::Any).unwrap();
        assert_eq!(verified.records, 3);
        assert_eq!(verified.last_hash.as_deref(), Some(chain.last_hash()));
        assert!(verified.notes.is_empty(), "a chain from genesis needs no note: {:?}", verified.notes);
    }

    #[test]
    fn a_changed_line_breaks_the_chain_at_the_next_one() {
        let lines = stream(&mut Chain::genesis(), 1, 5);
        let mut tampered = lines.clone();
        tampered[2] = tampered[2].replace("record 3", "record 9");
        let broken = verify(&tampered, Start::Any).unwrap_err();
        assert_eq!((broken.line, broken.seq), (4, Some(4)));
        assert!(matches!(broken.reason, BreakReason::Mismatch { .. }), "{broken}");
        assert!(broken.to_string().starts_with("line 4 (seq 4): prev_hash "), "{broken}");
    }

    #[test]
    fn a_deleted_line_breaks_the_chain() {
        let mut lines = stream(&mut Chain::genesis(), 1, 5);
        lines.remove(1);
        let broken = verify(&lines, Start::Any).unwrap_err();
        assert_eq!((broken.line, broken.seq), (2, Some(3)));
        // Deleting the first line is seen too: the new first line no longer starts from genesis.
        let mut headless = stream(&mut Chain::genesis(), 1, 3);
        headless.remove(0);
        let verified = verify(&headless, Start::Any).unwrap();
        assert_eq!(verified.notes, vec![Note::ContinuesEarlierChain { prev_hash: prev_hash(&headless[0]) }]);
    }

    #[test]
    fn reordered_lines_break_the_chain() {
        let mut lines = stream(&mut Chain::genesis(), 1, 4);
        lines.swap(1, 2);
        let broken = verify(&lines, Start::Any).unwrap_err();
        assert_eq!((broken.line, broken.seq), (2, Some(3)));
    }

    #[test]
    fn malformed_and_unchained_lines_are_named() {
        let mut lines = stream(&mut Chain::genesis(), 1, 3);
        lines[1] = "{not json".into();
        let broken = verify(&lines, Start::Any).unwrap_err();
        assert_eq!((broken.line, broken.seq), (2, None));
        assert!(matches!(broken.reason, BreakReason::Malformed(_)), "{broken}");
        assert!(broken.to_string().starts_with("line 2 (seq ?): malformed JSON: "), "{broken}");

        // A malformed last line is a break too (a torn line always has a successor).
        let mut lines = stream(&mut Chain::genesis(), 1, 2);
        lines.push("{\"seq\":3,".into());
        assert_eq!(verify(&lines, Start::Any).unwrap_err().line, 3);

        let unchained = AuditRecord { seq: 7, event: "start".into(), ..Default::default() }.to_json_line();
        let broken = verify(&[unchained], Start::Any).unwrap_err();
        assert_eq!((broken.line, broken.seq, broken.reason), (1, Some(7), BreakReason::MissingPrevHash));
    }

    #[test]
    fn a_torn_line_the_daemon_chained_past_is_a_note() {
        // A crash cut record 3 short; the daemon appended again from the last complete line.
        let mut chain = Chain::genesis();
        let mut lines = stream(&mut chain, 1, 2);
        let torn = stream(&mut chain.clone(), 3, 1).remove(0);
        lines.push(torn[..torn.len() / 2].to_string());
        lines.extend(stream(&mut chain, 3, 2));
        let verified = verify(&lines, Start::Any).unwrap();
        assert_eq!(verified.records, 4);
        assert_eq!(verified.notes, vec![Note::TornLine { line: 3 }]);

        // A line replaced by garbage is no torn line: the next one points at what was there.
        let mut lines = stream(&mut Chain::genesis(), 1, 4);
        lines[1] = "garbage".into();
        let broken = verify(&lines, Start::Any).unwrap_err();
        assert_eq!(broken.line, 2);
        assert!(matches!(broken.reason, BreakReason::Malformed(_)), "{broken}");
    }

    #[test]
    fn files_link_from_the_last_line_of_the_one_before() {
        let mut chain = Chain::genesis();
        let older = stream(&mut chain, 1, 3);
        let newer = stream(&mut chain, 4, 2);
        let first = verify(&older, Start::Any).unwrap();
        let last_hash = first.last_hash.unwrap();
        let second = verify(&newer, Start::AfterFile(last_hash.clone())).unwrap();
        assert_eq!(second.records, 2);
        assert!(second.notes.is_empty());
        // Alone, the newer file is a continuation, not an error.
        let alone = verify(&newer, Start::Any).unwrap();
        assert_eq!(alone.notes, vec![Note::ContinuesEarlierChain { prev_hash: last_hash.clone() }]);

        // In the wrong order, or with a file missing between them, the link breaks.
        let wrong = verify(&older, Start::AfterFile(verify(&newer, Start::Any).unwrap().last_hash.unwrap()));
        let broken = wrong.unwrap_err();
        assert_eq!((broken.line, broken.seq), (1, Some(1)));
        assert!(matches!(broken.reason, BreakReason::NotAfterPreviousFile { .. }), "{broken}");
        // A fresh chain where a continuation was due breaks it as well.
        let fresh = stream(&mut Chain::genesis(), 1, 1);
        assert!(verify(&fresh, Start::AfterFile(last_hash.clone())).is_err());
        // An empty file passes the link on.
        assert_eq!(verify(&[], Start::AfterFile(last_hash.clone())).unwrap().last_hash, Some(last_hash));
    }

    #[test]
    fn a_chain_continues_after_a_given_line_or_hash() {
        let mut chain = Chain::genesis();
        let lines = stream(&mut chain, 1, 2);
        let mut resumed = Chain::after_line(lines[1].as_bytes());
        assert_eq!(resumed, chain);
        // A line that is not written leaves the chain where it was.
        let unwritten = resumed.line_for(&AuditRecord::default());
        assert_eq!(resumed, chain);
        assert_eq!(prev_hash(&unwritten), chain.last_hash());
        assert_eq!(Chain::after_hash(chain.last_hash()), chain);
        let more = stream(&mut resumed, 3, 1);
        let all: Vec<String> = lines.into_iter().chain(more).collect();
        assert_eq!(verify(&all, Start::Any).unwrap().records, 3);
    }

    #[test]
    fn an_incomplete_last_line_is_noted_not_checked() {
        let lines = stream(&mut Chain::genesis(), 1, 2);
        let mut verifier = Verifier::new(Start::Any);
        for (index, line) in lines.iter().enumerate() {
            verifier.line(index as u64 + 1, line.as_bytes()).unwrap();
        }
        verifier.incomplete_last_line(3);
        let verified = verifier.finish().unwrap();
        assert_eq!(verified.records, 2);
        assert_eq!(verified.notes, vec![Note::IncompleteLastLine { line: 3 }]);
        assert_eq!(verified.last_hash, Some(line_hash(lines[1].as_bytes())));
    }
}
