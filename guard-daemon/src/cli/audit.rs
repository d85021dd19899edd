//! `guard audit`: work with audit files. `verify` checks their hash chain
//! (`guard_engine::audit::chain`): within each file, and from each file to the next.

use std::{
    fs::File,
    io::{self, BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context as _;
use clap::Subcommand;
use guard_engine::audit::chain::{Break, Start, Verified, Verifier};

/// Exit status of `verify` when the chain is broken (2: the files could not be checked).
const BROKEN: u8 = 1;
const NOT_CHECKED: u8 = 2;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain of audit files. Several files are checked in the order given,
    /// oldest first (e.g. `audit.jsonl.2 audit.jsonl.1 audit.jsonl`), each one's first record
    /// against the previous one's last. Exits 0 when intact, 1 at the first record that does
    /// not follow, 2 when a file cannot be read.
    Verify {
        /// Audit files, oldest first.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

pub fn main(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify { files } => {
            let mut out = io::stdout().lock();
            let mut err = io::stderr().lock();
            Ok(verify(&files, &mut out, &mut err))
        }
    }
}

/// A file's chain broke: where, and why.
#[derive(Debug)]
struct Broken {
    file: PathBuf,
    at: Break,
}

/// Checks the files in order; reports on `out` (notes, summary) and `err` (break, trouble).
fn verify(files: &[PathBuf], out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    // Every file must be there before any is read: a typo is not a break.
    for file in files {
        if let Err(error) = std::fs::metadata(file) {
            let _ = writeln!(err, "guard audit verify: {}: {error}", file.display());
            return ExitCode::from(NOT_CHECKED);
        }
    }
    let mut start = Start::Any;
    let mut records = 0;
    let mut last_hash = None;
    for file in files {
        let verified = match verify_file(file, start.clone()) {
            Ok(Ok(verified)) => verified,
            Ok(Err(broken)) => {
                let at = &broken.at;
                let seq = at.seq.map_or_else(|| "?".to_string(), |seq| seq.to_string());
                let _ = writeln!(
                    err,
                    "guard audit verify: {}:{} (seq {seq}): chain broken: {}",
                    broken.file.display(),
                    at.line,
                    at.reason
                );
                return ExitCode::from(BROKEN);
            }
            Err(error) => {
                let _ = writeln!(err, "guard audit verify: {error:#}");
                return ExitCode::from(NOT_CHECKED);
            }
        };
        for note in &verified.notes {
            let _ = writeln!(out, "{}: {note}", file.display());
        }
        records += verified.records;
        if let Some(hash) = verified.last_hash {
            start = Start::AfterFile(hash.clone());
            last_hash = Some(hash);
        }
    }
    let files_text = if files.len() == 1 { "1 file".to_string() } else { format!("{} files", files.len()) };
    let _ = writeln!(
        out,
        "audit chain intact: {records} records in {files_text}, last hash {}",
        last_hash.as_deref().unwrap_or("(none: no records)")
    );
    ExitCode::SUCCESS
}

/// Streams one file's lines through a [`Verifier`]. The outer `Err` is trouble reading it.
fn verify_file(path: &Path, start: Start) -> anyhow::Result<Result<Verified, Broken>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = BufReader::new(file);
    let mut verifier = Verifier::new(start);
    let mut line = Vec::new();
    let mut number = 0;
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line).with_context(|| format!("reading {}", path.display()))?;
        if read == 0 {
            break;
        }
        number += 1;
        let Some(complete) = line.strip_suffix(b"\n") else {
            verifier.incomplete_last_line(number);
            break;
        };
        if let Err(at) = verifier.line(number, complete) {
            return Ok(Err(Broken { file: path.to_path_buf(), at }));
        }
    }
    Ok(verifier.finish().map_err(|at| Broken { file: path.to_path_buf(), at }))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::audit_sink::{AuditSink, Rotation, rotated_path, tests::TempDir, tests::record};
    use crate::cli::{Cli, Command};

    fn run(files: &[PathBuf]) -> (ExitCode, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = verify(files, &mut out, &mut err);
        (code, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
    }

    /// Three rotated files and the current one, written by the sink.
    fn rotated_stream(dir: &TempDir) -> Vec<PathBuf> {
        let path = dir.0.join("audit.jsonl");
        let mut sink = AuditSink::open(&path, Rotation { max_bytes: Some(4096), keep: 3 }).unwrap();
        for seq in 1..=70 {
            sink.write(&record(seq)).unwrap();
        }
        sink.flush().unwrap();
        vec![rotated_path(&path, 3), rotated_path(&path, 2), rotated_path(&path, 1), path]
    }

    #[test]
    fn files_in_order_verify_and_the_summary_says_what_was_checked() {
        let dir = TempDir::new("verify");
        let files = rotated_stream(&dir);
        let (code, out, err) = run(&files);
        assert_eq!(code, ExitCode::SUCCESS, "{err}");
        // The oldest file kept continues a chain whose start was rotated away.
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].contains("audit.jsonl.3: continues a chain from an earlier file (prev_hash "), "{out}");
        assert!(lines[1].starts_with("audit chain intact: "), "{out}");
        assert!(lines[1].contains(" records in 4 files, last hash "), "{out}");

        // Out of order: the link between the files breaks at the first record of the second.
        let swapped = vec![files[1].clone(), files[0].clone()];
        let (code, _, err) = run(&swapped);
        assert_eq!(code, ExitCode::from(BROKEN));
        assert!(err.contains("audit.jsonl.3:1 (seq "), "{err}");
        assert!(err.contains("does not match the last line of the previous file"), "{err}");
    }

    #[test]
    fn a_tampered_line_is_named_by_the_line_after_it() {
        let dir = TempDir::new("tampered");
        let files = rotated_stream(&dir);
        let current = files.last().unwrap();
        let mut text = std::fs::read_to_string(current).unwrap();
        let second_line_start = text.find('\n').unwrap() + 1;
        // Within a string value: still JSON, only the hash tells.
        let digit = second_line_start + text[second_line_start..].find("\"ts\":\"").unwrap() + 7;
        let flipped = (text.as_bytes()[digit] ^ 1) as char;
        text.replace_range(digit..digit + 1, &flipped.to_string());
        std::fs::write(current, &text).unwrap();
        let seq_of_third = guard_engine::audit::AuditRecord::from_json_line(text.lines().nth(2).unwrap()).unwrap().seq;
        let (code, out, err) = run(&files);
        assert_eq!(code, ExitCode::from(BROKEN), "{out}");
        assert!(err.contains(&format!("audit.jsonl:3 (seq {seq_of_third}): chain broken")), "{err}");
        assert!(err.contains("was changed, removed or moved"), "{err}");
    }

    #[test]
    fn missing_and_unchained_files_are_reported() {
        let dir = TempDir::new("bad-args");
        let missing = dir.0.join("nope.jsonl");
        let (code, _, err) = run(&[missing]);
        assert_eq!(code, ExitCode::from(NOT_CHECKED));
        assert!(err.contains("nope.jsonl: No such file"), "{err}");

        let old = dir.0.join("old.jsonl");
        std::fs::write(&old, "{\"seq\":1,\"event\":\"start\"}\n").unwrap();
        let (code, _, err) = run(&[old]);
        assert_eq!(code, ExitCode::from(BROKEN));
        assert!(err.contains("old.jsonl:1 (seq 1): chain broken: missing prev_hash"), "{err}");

        assert!(Cli::try_parse_from(["guard", "audit", "verify"]).is_err(), "at least one file");
        let cli = Cli::try_parse_from(["guard", "audit", "verify", "a", "b"]).unwrap();
        assert!(matches!(cli.command, Command::Audit(AuditCommand::Verify { files }) if files.len() == 2));
    }
}
