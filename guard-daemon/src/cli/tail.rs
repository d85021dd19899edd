//! `guard tail`: read and follow the audit stream (JSON lines, `guard_engine::audit`).

use std::{
    collections::VecDeque,
    fmt::Write as _,
    fs::File,
    io::{self, Read, Seek, SeekFrom, Write},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::Context;
use clap::Args;
use guard_engine::audit::{AuditRecord, Verdict};

/// How often `-f` looks for new lines.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Longest field shown in a one-liner (paths, argv); the rest is elided.
const MAX_FIELD_CHARS: usize = 300;

#[derive(Debug, Args)]
pub struct TailArgs {
    /// Keep reading as records are appended (follows rotation, a moved file until the daemon
    /// reopens its path, and truncation).
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// The audit stream.
    #[arg(long, value_name = "PATH", default_value = super::DEFAULT_AUDIT_PATH)]
    pub file: PathBuf,
    /// Only records of this session.
    #[arg(long, value_name = "NAME")]
    pub session: Option<String>,
    /// Only records with this verdict: allow, deny, kill, hold or audit (repeat or separate
    /// with commas for several).
    #[arg(long, value_name = "V", value_parser = parse_verdict, value_delimiter = ',')]
    pub verdict: Vec<Verdict>,
    /// Print the raw JSON lines instead of one-line summaries.
    #[arg(long)]
    pub json: bool,
    /// Show the last N matching records first (a number, or `all`).
    #[arg(short = 'n', long = "lines", value_name = "N", default_value = "10", value_parser = parse_count)]
    pub lines: Count,
}

/// How many existing records to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    All,
    Last(usize),
}

fn parse_count(text: &str) -> Result<Count, String> {
    if text == "all" {
        return Ok(Count::All);
    }
    text.parse().map(Count::Last).map_err(|_| format!("expected a number or `all`, got {text:?}"))
}

fn parse_verdict(text: &str) -> Result<Verdict, String> {
    Verdict::parse(text.trim())
        .ok_or_else(|| format!("unknown verdict {text:?}: expected one of allow, deny, kill, hold, audit"))
}

/// Which records to show.
#[derive(Clone, Debug, Default)]
struct Filter {
    session: Option<String>,
    verdicts: Vec<Verdict>,
}

impl Filter {
    fn matches(&self, record: &AuditRecord) -> bool {
        if let Some(session) = &self.session
            && record.session.as_deref() != Some(session.as_str())
        {
            return false;
        }
        self.verdicts.is_empty() || record.verdict.is_some_and(|v| self.verdicts.contains(&v))
    }
}

pub fn main(args: TailArgs) -> anyhow::Result<ExitCode> {
    let filter = Filter { session: args.session.clone(), verdicts: args.verdict.clone() };
    let mut out = io::stdout().lock();
    let mut warn = |msg: String| eprintln!("guard tail: {msg}");
    let result = run(&args, &filter, &mut out, &mut warn);
    match result {
        // The reader of our output went away (`guard tail | head`): done, not failed.
        Err(err) if is_broken_pipe(&err) => Ok(ExitCode::SUCCESS),
        Err(err) => Err(err),
        Ok(()) => Ok(ExitCode::SUCCESS),
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| cause.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe))
}

fn run(args: &TailArgs, filter: &Filter, out: &mut dyn Write, warn: &mut dyn FnMut(String)) -> anyhow::Result<()> {
    let mut follower = match Follower::open(&args.file) {
        Ok(follower) => follower,
        Err(err) if err.kind() == io::ErrorKind::NotFound && args.follow => {
            warn(format!("waiting for {} to appear", args.file.display()));
            loop {
                std::thread::sleep(POLL_INTERVAL);
                match Follower::open(&args.file) {
                    Ok(follower) => break follower,
                    Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(err).with_context(|| format!("opening {}", args.file.display())),
                }
            }
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            anyhow::bail!(
                "no audit stream at {} (is the daemon running? --file picks another path)",
                args.file.display()
            )
        }
        Err(err) => return Err(err).with_context(|| format!("opening {}", args.file.display())),
    };

    // The backlog: the last N matching records of what is there now, streamed.
    let keep = match args.lines {
        Count::All => usize::MAX,
        Count::Last(n) => n,
    };
    let mut backlog: VecDeque<(String, AuditRecord)> = VecDeque::new();
    let path = follower.path.clone();
    follower
        .poll(&mut |number, line| {
            if let Some(record) = select(&path, number, line, filter, warn)
                && keep > 0
            {
                if backlog.len() == keep {
                    backlog.pop_front();
                }
                backlog.push_back((line.to_string(), record));
            }
        })
        .with_context(|| format!("reading {}", args.file.display()))?;
    for (line, record) in &backlog {
        emit(out, args.json, line, record)?;
    }
    out.flush()?;
    if !args.follow {
        return Ok(());
    }
    follow(&mut follower, args.json, filter, out, warn, POLL_INTERVAL, &mut |_| false)
}

/// Polls until `stop(records printed so far)` says so (never, from the CLI).
fn follow(
    follower: &mut Follower,
    json: bool,
    filter: &Filter,
    out: &mut dyn Write,
    warn: &mut dyn FnMut(String),
    interval: Duration,
    stop: &mut dyn FnMut(usize) -> bool,
) -> anyhow::Result<()> {
    let mut printed = 0;
    let path = follower.path.clone();
    loop {
        let mut failed = None;
        follower
            .poll(&mut |number, line| {
                if failed.is_none()
                    && let Some(record) = select(&path, number, line, filter, warn)
                {
                    match emit(out, json, line, &record) {
                        Ok(()) => printed += 1,
                        Err(err) => failed = Some(err),
                    }
                }
            })
            .with_context(|| format!("reading {}", path.display()))?;
        if let Some(err) = failed {
            return Err(err.into());
        }
        out.flush()?;
        if stop(printed) {
            return Ok(());
        }
        std::thread::sleep(interval);
    }
}

/// Parses one line; warns about a malformed one; returns the record if it matches.
fn select(path: &Path, number: u64, line: &str, filter: &Filter, warn: &mut dyn FnMut(String)) -> Option<AuditRecord> {
    if line.trim().is_empty() {
        return None;
    }
    match AuditRecord::from_json_line(line) {
        Ok(record) => filter.matches(&record).then_some(record),
        Err(err) => {
            warn(format!("{}:{number}: skipping malformed record: {err}", path.display()));
            None
        }
    }
}

fn emit(out: &mut dyn Write, json: bool, line: &str, record: &AuditRecord) -> io::Result<()> {
    if json { writeln!(out, "{line}") } else { writeln!(out, "{}", format_record(record)) }
}

/// Reads complete lines from a file that grows, is truncated or is replaced (rotation, or a
/// move followed by a reopen).
#[derive(Debug)]
struct Follower {
    path: PathBuf,
    current: Segment,
    /// The file `path` named before it was replaced. Its writer may still append to it: an
    /// external logrotate moves the file and creates the new one before it tells the daemon
    /// to reopen. It is read until the new file has data (guard writes there only once it is
    /// done with the old one), then read to its end one last time and let go.
    draining: Option<Segment>,
}

/// One file being read.
#[derive(Debug)]
struct Segment {
    file: File,
    ident: (u64, u64),
    /// Bytes consumed from `file`.
    pos: u64,
    /// The first and the last bytes consumed (at most `EDGE_CHECK` each), to notice a rewrite
    /// in place: audit records differ at their start (`ts`, `seq`) more than at their end.
    head: Vec<u8>,
    tail: Vec<u8>,
    /// An unfinished last line, kept until its newline arrives.
    partial: Vec<u8>,
    /// Number of the last complete line of this file.
    line_no: u64,
}

/// Bytes re-read at the start of the file and before `pos` on each poll to detect
/// truncate-and-rewrite.
const EDGE_CHECK: usize = 128;
/// Read size; the file is streamed, never loaded whole.
const CHUNK: usize = 64 * 1024;

impl Follower {
    fn open(path: &Path) -> io::Result<Self> {
        Ok(Self { path: path.to_path_buf(), current: Segment::open(path)?, draining: None })
    }

    /// Passes each new complete line to `sink`, numbered from 1 in each file, in the order
    /// they were written: an old file's last lines before the new file's first.
    fn poll(&mut self, sink: &mut dyn FnMut(u64, &str)) -> io::Result<()> {
        if self.current.rewritten()? {
            // Truncated in place (copytruncate), maybe already refilled: start over.
            self.current.restart()?;
        }
        self.drain_old(sink)?;
        self.current.read_available(sink)?;
        match std::fs::metadata(&self.path) {
            // Mid-rotation: the old name is gone, the new file not there yet.
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
            Ok(meta) if (meta.dev(), meta.ino()) != self.current.ident => {
                let fresh = match Segment::open(&self.path) {
                    Ok(fresh) => fresh,
                    Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
                    Err(err) => return Err(err),
                };
                let replaced = std::mem::replace(&mut self.current, fresh);
                // Replaced twice since it started draining: the older one is done.
                if let Some(older) = self.draining.replace(replaced) {
                    older.finish(sink);
                }
                self.drain_old(sink)?;
                self.current.read_available(sink)?;
            }
            Ok(_) => {}
        }
        Ok(())
    }

    /// Reads what the replaced file got since; lets it go once the new file has data.
    fn drain_old(&mut self, sink: &mut dyn FnMut(u64, &str)) -> io::Result<()> {
        let Some(old) = &mut self.draining else { return Ok(()) };
        // Looked at before the old file is read: whatever the writer put there before it
        // moved on to the new file is then read below.
        let done = self.current.file.metadata()?.len() > self.current.pos;
        old.read_available(sink)?;
        if done && let Some(old) = self.draining.take() {
            old.finish(sink);
        }
        Ok(())
    }
}

impl Segment {
    fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        Ok(Self {
            file,
            ident: (meta.dev(), meta.ino()),
            pos: 0,
            head: Vec::new(),
            tail: Vec::new(),
            partial: Vec::new(),
            line_no: 0,
        })
    }

    fn restart(&mut self) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(0))?;
        self.pos = 0;
        self.head.clear();
        self.tail.clear();
        self.partial.clear();
        self.line_no = 0;
        Ok(())
    }

    /// Nobody writes here any more: a final line without newline is complete.
    fn finish(mut self, sink: &mut dyn FnMut(u64, &str)) {
        if !self.partial.is_empty() {
            self.line_no += 1;
            let raw = std::mem::take(&mut self.partial);
            sink(self.line_no, &String::from_utf8_lossy(&raw));
        }
    }

    /// True when the bytes before `pos` are no longer what was read: the file shrank, or was
    /// truncated and written again (a size check alone misses a refill to the same size).
    fn rewritten(&self) -> io::Result<bool> {
        use std::os::unix::fs::FileExt;
        if self.pos == 0 {
            return Ok(false);
        }
        if self.file.metadata()?.len() < self.pos {
            return Ok(true);
        }
        let same = |expected: &[u8], offset: u64| -> io::Result<bool> {
            let mut now = vec![0; expected.len()];
            match self.file.read_exact_at(&mut now, offset) {
                Ok(()) => Ok(now == expected),
                Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
                Err(err) => Err(err),
            }
        };
        Ok(!same(&self.head, 0)? || !same(&self.tail, self.pos - self.tail.len() as u64)?)
    }

    fn read_available(&mut self, sink: &mut dyn FnMut(u64, &str)) -> io::Result<()> {
        let mut buf = vec![0; CHUNK];
        loop {
            let read = match (&self.file).read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(read) => read,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            let chunk = &buf[..read];
            self.pos += read as u64;
            if self.head.len() < EDGE_CHECK {
                let take = (EDGE_CHECK - self.head.len()).min(chunk.len());
                self.head.extend_from_slice(&chunk[..take]);
            }
            self.tail.extend_from_slice(chunk);
            if self.tail.len() > EDGE_CHECK {
                self.tail.drain(..self.tail.len() - EDGE_CHECK);
            }
            let mut start = 0;
            for end in chunk.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i) {
                self.partial.extend_from_slice(&chunk[start..end]);
                start = end + 1;
                self.line_no += 1;
                let raw = std::mem::take(&mut self.partial);
                sink(self.line_no, String::from_utf8_lossy(&raw).trim_end_matches('\r'));
            }
            self.partial.extend_from_slice(&chunk[start..]);
        }
    }
}

/// Replaces control characters (a file name may carry terminal escapes) and elides long text.
pub(crate) fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_FIELD_CHARS + 8));
    for (count, ch) in text.chars().enumerate() {
        if count == MAX_FIELD_CHARS {
            out.push('…');
            break;
        }
        if ch.is_control() {
            out.extend(ch.escape_default());
        } else {
            out.push(ch);
        }
    }
    out
}

/// Shell-like quoting of one argv element, for reading (not for pasting into a shell).
fn quote(arg: &str) -> String {
    let plain =
        !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%^".contains(c) || !c.is_ascii());
    if plain { arg.to_string() } else { format!("'{}'", arg.replace('\'', r"'\''")) }
}

/// `2026-11-25T09:20:00.123456789Z` -> `2026-11-25T09:20:00.123Z` (milliseconds are enough).
fn short_ts(ts: &str) -> String {
    if let Some(dot) = ts.find('.') {
        let digits = ts[dot + 1..].bytes().take_while(u8::is_ascii_digit).count();
        if digits > 3 {
            // ASCII digits: these are char boundaries.
            return format!("{}{}", &ts[..dot + 4], &ts[dot + 1 + digits..]);
        }
    }
    ts.to_string()
}

/// The field that says what the event was about.
fn key_field(record: &AuditRecord) -> Option<String> {
    let endpoint = || {
        record.addr.as_ref().map(|addr| {
            let host = if addr.contains(':') { format!("[{addr}]") } else { addr.clone() };
            let mut text = match record.port {
                Some(port) => format!("{host}:{port}"),
                None => host,
            };
            if let Some(proto) = &record.proto {
                text.push('/');
                text.push_str(proto);
            }
            text
        })
    };
    let argv = || {
        record
            .argv
            .as_ref()
            .filter(|argv| !argv.is_empty())
            .map(|argv| argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" "))
    };
    let found = match record.event.as_str() {
        "exec" => argv().or_else(|| record.path.clone()).or_else(|| record.exe.clone()),
        "connect" | "sendmsg" => endpoint(),
        "fork" => record.child_pid.map(|pid| format!("child {pid}")),
        "exit" => record.result.map(|code| format!("status {code}")),
        _ => None,
    };
    found.or_else(|| record.path.clone()).or_else(endpoint).or_else(|| record.details.as_ref().map(|d| d.to_string()))
}

/// One line per record: time, seq, session, verdict, event, pid/comm, key field, rule, reason.
fn format_record(record: &AuditRecord) -> String {
    let mut out = String::new();
    let session = record.session.as_deref().unwrap_or("-");
    let verdict = record.verdict.map_or("-", Verdict::as_str);
    let _ = write!(
        out,
        "{} {:>6} {} {:<5} {:<7}",
        clean(&short_ts(&record.ts)),
        record.seq,
        clean(session),
        verdict,
        clean(&record.event)
    );
    match (record.pid, &record.comm) {
        (Some(pid), Some(comm)) => {
            let _ = write!(out, " {pid}/{}", clean(comm));
        }
        (Some(pid), None) => {
            let _ = write!(out, " {pid}");
        }
        _ => {}
    }
    if let Some(key) = key_field(record) {
        let _ = write!(out, " {}", clean(&key));
    }
    if let Some(rule) = &record.rule {
        let _ = write!(out, " rule={}", clean(rule));
    }
    if let Some(reason) = &record.reason {
        let _ = write!(out, " ({})", clean(reason));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    const DENY_CONNECT: &str = r#"{"ts":"2026-11-25T09:20:00.123456789Z","seq":7,"session":"s-1","cgroup_id":5,"pid":1234,"ppid":1,"comm":"curl","exe":"/usr/bin/curl","event":"connect","verdict":"deny","detector":"scope_network","rule":"net-scope","severity":"high","mitre":null,"reason":"outside the allow-list","addr":"203.0.113.9","port":443,"proto":"tcp"}"#;
    const KILL_EXEC: &str = r#"{"ts":"2026-11-25T09:20:01.000000000Z","seq":8,"session":"s-2","cgroup_id":6,"pid":99,"ppid":1,"comm":"bash","exe":null,"event":"exec","verdict":"kill","detector":"destructive","rule":"no-rm-rf","severity":"critical","mitre":null,"reason":null,"path":"/usr/bin/rm","argv":["rm","-rf","/home/me/my project"]}"#;
    const ALLOW_OPEN: &str = r#"{"ts":"2026-11-25T09:20:02.5Z","seq":9,"session":"s-1","cgroup_id":5,"pid":1234,"ppid":1,"comm":"cat","exe":null,"event":"open","verdict":"allow","detector":null,"rule":null,"severity":null,"mitre":null,"reason":null,"path":"/etc/host\u001b[2Jname"}"#;
    const DAEMON_START: &str = r#"{"ts":"2026-11-25T09:19:59.000000001Z","seq":1,"session":null,"cgroup_id":null,"pid":null,"ppid":null,"comm":null,"exe":null,"event":"start","verdict":null,"detector":null,"rule":null,"severity":null,"mitre":null,"reason":"daemon started","details":{"tier":"host"}}"#;

    fn rec(line: &str) -> AuditRecord {
        AuditRecord::from_json_line(line).unwrap()
    }

    fn parse(argv: &[&str]) -> TailArgs {
        let cli = Cli::try_parse_from(std::iter::once("guard").chain(argv.iter().copied())).unwrap();
        match cli.command {
            Command::Tail(args) => args,
            other => panic!("parsed as {other:?}"),
        }
    }

    /// A fresh directory removed on drop (no tempfile dependency).
    struct TempDir(PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// `<fresh dir>/audit.jsonl` (not created); keep the guard alive for the test.
    fn temp_file(tag: &str) -> (TempDir, PathBuf) {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "guard-tail-{}-{}-{tag}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("audit.jsonl");
        (TempDir(dir), file)
    }

    fn poll(follower: &mut Follower) -> Vec<(u64, String)> {
        let mut lines = Vec::new();
        follower.poll(&mut |n, line| lines.push((n, line.to_string()))).unwrap();
        lines
    }

    fn append(path: &Path, text: &str) {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
        file.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn one_liners() {
        assert_eq!(
            format_record(&rec(DENY_CONNECT)),
            "2026-11-25T09:20:00.123Z      7 s-1 deny  connect 1234/curl 203.0.113.9:443/tcp rule=net-scope (outside the allow-list)"
        );
        assert_eq!(
            format_record(&rec(KILL_EXEC)),
            "2026-11-25T09:20:01.000Z      8 s-2 kill  exec    99/bash rm -rf '/home/me/my project' rule=no-rm-rf"
        );
        // Terminal escapes in a path are shown, not interpreted; a short fraction stays as is.
        assert_eq!(
            format_record(&rec(ALLOW_OPEN)),
            "2026-11-25T09:20:02.5Z      9 s-1 allow open    1234/cat /etc/host\\u{1b}[2Jname"
        );
        assert_eq!(
            format_record(&rec(DAEMON_START)),
            "2026-11-25T09:19:59.000Z      1 - -     start   {\"tier\":\"host\"} (daemon started)"
        );
        let v6 =
            AuditRecord { event: "sendmsg".into(), addr: Some("::1".into()), port: Some(53), ..Default::default() };
        assert!(format_record(&v6).ends_with(" [::1]:53"), "{}", format_record(&v6));
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(clean(&"x".repeat(400)).chars().count(), MAX_FIELD_CHARS + 1);
    }

    #[test]
    fn filters() {
        let by_session = Filter { session: Some("s-1".into()), verdicts: vec![] };
        assert!(by_session.matches(&rec(DENY_CONNECT)));
        assert!(!by_session.matches(&rec(KILL_EXEC)));
        assert!(!by_session.matches(&rec(DAEMON_START)));
        let severe = Filter { session: None, verdicts: vec![Verdict::Deny, Verdict::Kill] };
        assert!(severe.matches(&rec(DENY_CONNECT)) && severe.matches(&rec(KILL_EXEC)));
        assert!(!severe.matches(&rec(ALLOW_OPEN)) && !severe.matches(&rec(DAEMON_START)));
        assert!(Filter::default().matches(&rec(DAEMON_START)));
    }

    #[test]
    fn arguments() {
        let args = parse(&["tail", "-f", "--verdict", "deny,kill", "--verdict", "hold", "-n", "all"]);
        assert!(args.follow);
        assert_eq!(args.verdict, vec![Verdict::Deny, Verdict::Kill, Verdict::Hold]);
        assert_eq!(args.lines, Count::All);
        assert_eq!(args.file, PathBuf::from(crate::cli::DEFAULT_AUDIT_PATH));
        let err = Cli::try_parse_from(["guard", "tail", "--verdict", "block"]).unwrap_err().to_string();
        assert!(err.contains("unknown verdict \"block\": expected one of allow, deny, kill, hold, audit"), "{err}");
        assert!(Cli::try_parse_from(["guard", "tail", "-n", "ten"]).is_err());
    }

    #[test]
    fn backlog_filters_warns_and_keeps_the_last_n() {
        let (_dir, path) = temp_file("backlog");
        let text = [DAEMON_START, DENY_CONNECT, "{not json", "", KILL_EXEC, ALLOW_OPEN].join("\n") + "\n";
        std::fs::write(&path, text).unwrap();
        let run_with = |argv: &[&str]| {
            let mut argv = argv.to_vec();
            let file = path.to_str().unwrap();
            argv.extend(["--file", file]);
            let args = parse(&argv);
            let filter = Filter { session: args.session.clone(), verdicts: args.verdict.clone() };
            let mut out = Vec::new();
            let mut warnings = Vec::new();
            run(&args, &filter, &mut out, &mut |w| warnings.push(w)).unwrap();
            (String::from_utf8(out).unwrap(), warnings)
        };
        let (out, warnings) = run_with(&["tail", "--json", "-n", "2"]);
        assert_eq!(out, format!("{KILL_EXEC}\n{ALLOW_OPEN}\n"));
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("audit.jsonl:3: skipping malformed record"), "{}", warnings[0]);

        let (out, _) = run_with(&["tail", "--session", "s-1", "--verdict", "deny"]);
        assert_eq!(out.lines().count(), 1);
        assert!(out.contains("deny  connect"), "{out}");
        let (out, _) = run_with(&["tail", "-n", "0"]);
        assert!(out.is_empty());
        let (out, _) = run_with(&["tail", "-n", "all"]);
        assert_eq!(out.lines().count(), 4);

        let missing = parse(&["tail", "--file", "/nonexistent/guard/audit.jsonl"]);
        let err = run(&missing, &Filter::default(), &mut Vec::new(), &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("no audit stream at /nonexistent/guard/audit.jsonl"), "{err}");
    }

    #[test]
    fn follower_handles_partial_lines_truncation_and_rotation() {
        let (_dir, path) = temp_file("rotate");
        let truncate = |path: &Path| {
            std::fs::OpenOptions::new().write(true).truncate(true).open(path).unwrap();
        };
        append(&path, "a\nb");
        let mut follower = Follower::open(&path).unwrap();
        assert_eq!(poll(&mut follower), vec![(1, "a".into())]);
        append(&path, "c\r\n");
        assert_eq!(poll(&mut follower), vec![(2, "bc".into())]);
        assert!(poll(&mut follower).is_empty());

        // Truncated in place and rewritten shorter, to the same size, and longer.
        truncate(&path);
        append(&path, "d\n");
        assert_eq!(poll(&mut follower), vec![(1, "d".into())]);
        truncate(&path);
        append(&path, "x\n");
        assert_eq!(poll(&mut follower), vec![(1, "x".into())]);
        let record = |seq: u32| format!("{{\"seq\":{seq},{}}}\n", "\"pad\":0,".repeat(40));
        truncate(&path);
        append(&path, &record(1));
        assert_eq!(poll(&mut follower).len(), 1);
        truncate(&path);
        append(&path, &record(2));
        assert_eq!(poll(&mut follower), vec![(1, record(2).trim_end().to_string())]);
        truncate(&path);
        append(&path, "y\nz\n");
        assert_eq!(poll(&mut follower), vec![(1, "y".into()), (2, "z".into())]);

        // Rotated: the last lines of the old file come first, then the new file from line 1.
        append(&path, "e\nf");
        std::fs::rename(&path, path.with_extension("1")).unwrap();
        assert_eq!(poll(&mut follower), vec![(3, "e".into())]);
        append(&path, "g\n");
        assert_eq!(poll(&mut follower), vec![(4, "f".into()), (1, "g".into())]);
    }

    #[test]
    fn follower_reads_a_moved_file_until_the_writer_reopens() {
        let (_dir, path) = temp_file("moved");
        let moved = path.with_extension("old");
        append(&path, "a\n");
        let mut follower = Follower::open(&path).unwrap();
        assert_eq!(poll(&mut follower), vec![(1, "a".into())]);
        // logrotate's `create`: move, make an empty file, then tell the daemon.
        std::fs::rename(&path, &moved).unwrap();
        std::fs::write(&path, b"").unwrap();
        append(&moved, "b\n");
        assert_eq!(poll(&mut follower), vec![(2, "b".into())]);
        append(&moved, "c\nd");
        assert_eq!(poll(&mut follower), vec![(3, "c".into())]);
        // The daemon reopened: its last bytes to the old file came before the new file's.
        append(&moved, "\n");
        append(&path, "e\n");
        assert_eq!(poll(&mut follower), vec![(4, "d".into()), (1, "e".into())]);
        append(&moved, "late\n");
        append(&path, "f\n");
        assert_eq!(poll(&mut follower), vec![(2, "f".into())], "the old file was let go");
    }

    #[test]
    fn follower_keeps_up_with_the_sink_across_rotations_and_reopens() {
        use crate::audit_sink::{AuditSink, Rotation, tests::record};

        let (dir, path) = temp_file("sink");
        let mut sink = AuditSink::open(&path, Rotation { max_bytes: Some(4096), keep: 3 }).unwrap();
        sink.write(&record(1)).unwrap();
        sink.flush().unwrap();
        let mut follower = Follower::open(&path).unwrap();
        let mut seen = Vec::new();
        let mut collect = |follower: &mut Follower| {
            follower.poll(&mut |_, line| seen.push(AuditRecord::from_json_line(line).unwrap().seq)).unwrap();
        };
        for seq in 2..=150 {
            sink.write(&record(seq)).unwrap();
            sink.flush().unwrap();
            if seq % 50 == 0 {
                // One replacement between polls (a size rotation may have just happened).
                collect(&mut follower);
                // An external rotation: moved away, the daemon told to reopen.
                std::fs::rename(&path, dir.0.join(format!("moved-{seq}"))).unwrap();
                sink.write(&record(seq * 1000)).unwrap();
                sink.reopen().unwrap();
            }
            // Fewer records between polls than a file holds: no file is skipped.
            if seq % 3 == 0 {
                collect(&mut follower);
            }
        }
        collect(&mut follower);
        let wanted: Vec<u64> =
            (1..=150).flat_map(|seq| if seq % 50 == 0 { vec![seq, seq * 1000] } else { vec![seq] }).collect();
        assert_eq!(seen, wanted);
    }

    #[test]
    fn follower_streams_lines_longer_than_a_chunk() {
        let (_dir, path) = temp_file("chunks");
        let long = "x".repeat(CHUNK * 2 + 17);
        append(&path, &format!("{long}\nshort\n"));
        let mut follower = Follower::open(&path).unwrap();
        let lines = poll(&mut follower);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].1.len(), long.len());
        assert_eq!(lines[1], (2, "short".into()));
        assert!(poll(&mut follower).is_empty(), "no false rewrite after a multi-chunk read");
    }

    #[test]
    fn follow_sees_lines_written_by_another_thread() {
        let (_dir, path) = temp_file("follow");
        append(&path, &format!("{DAEMON_START}\n"));
        let mut follower = Follower::open(&path).unwrap();
        poll(&mut follower);
        let writer_path = path.clone();
        let writer = std::thread::spawn(move || {
            for (i, line) in [DENY_CONNECT, "garbage", ALLOW_OPEN, KILL_EXEC].iter().enumerate() {
                std::thread::sleep(Duration::from_millis(20));
                // Split one record across two writes, as a slow writer might.
                if i == 0 {
                    let (head, tail) = line.split_at(10);
                    append(&writer_path, head);
                    std::thread::sleep(Duration::from_millis(30));
                    append(&writer_path, &format!("{tail}\n"));
                } else {
                    append(&writer_path, &format!("{line}\n"));
                }
            }
        });
        let filter = Filter { session: None, verdicts: vec![Verdict::Deny, Verdict::Kill] };
        let mut out = Vec::new();
        let mut warnings = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        follow(
            &mut follower,
            false,
            &filter,
            &mut out,
            &mut |w| warnings.push(w),
            Duration::from_millis(10),
            &mut |printed| printed >= 2 || std::time::Instant::now() > deadline,
        )
        .unwrap();
        writer.join().unwrap();
        let out = String::from_utf8(out).unwrap();
        let verdicts: Vec<&str> = out.lines().map(|l| l.split_whitespace().nth(3).unwrap_or("")).collect();
        assert_eq!(verdicts, vec!["deny", "kill"], "{out}");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains(":3: skipping malformed record"), "{warnings:?}");
    }
}
