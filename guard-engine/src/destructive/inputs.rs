//! What a held exec will act on besides its argv: its environment and the files it will read
//! (config files, script files). [`Source`] says where a judged command's words came from;
//! [`HeldFiles`] is how the daemon lets the evaluator read a file as the held process would
//! see it; [`Inputs`] bounds and caches those reads for one evaluation.

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;

use crate::policy::paths::normalize_absolute;

/// Largest file read for one judgement (a longer one is judged by its first this many bytes).
pub const MAX_INPUT_BYTES: u64 = 1 << 20;
/// Most distinct files read for one exec (scripts calling scripts, config files).
pub const MAX_INPUT_FILES: usize = 24;
/// Most paths tried for one exec (missing ones included: git looks upward for `.git`).
const MAX_ATTEMPTS: usize = 256;
/// A file with a NUL byte in its first this many bytes is binary and not judged.
const BINARY_PROBE: usize = 8192;
/// Most notes kept about inputs that could not be judged.
const MAX_NOTES: usize = 8;

/// Where the destructive part of a command came from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// The exec's own argument vector (including scripts given inline, `sh -c`, `ssh HOST CMD`).
    #[default]
    Argv,
    /// An environment variable of the held process (`TF_CLI_ARGS_apply`, `GIT_CONFIG_VALUE_0`).
    Env { name: String },
    /// A file the program will read (a script, a config file), with the line when known.
    File { path: String, line: Option<usize> },
}

impl Source {
    pub fn file(path: &str, line: Option<usize>) -> Self {
        Source::File { path: path.to_string(), line }
    }

    pub fn env(name: &str) -> Self {
        Source::Env { name: name.to_string() }
    }

    /// What a reason says about this source (empty for argv).
    pub fn reason_note(&self) -> String {
        match self {
            Source::Argv => String::new(),
            Source::Env { name } => format!(" (from environment variable {name})"),
            Source::File { path, line } => {
                let at = line.map(|line| format!(" line {line}")).unwrap_or_default();
                format!(
                    " (from {path}{at}; judged from the file's content while held, which could change after release)"
                )
            }
        }
    }
}

/// `argv`, `env:NAME`, `file:PATH:LINE` (or `file:PATH`): the audit record's `source`.
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Argv => f.write_str("argv"),
            Source::Env { name } => write!(f, "env:{name}"),
            Source::File { path, line: Some(line) } => write!(f, "file:{path}:{line}"),
            Source::File { path, line: None } => write!(f, "file:{path}"),
        }
    }
}

/// Why a file could not be judged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("not found")]
    NotFound,
    #[error("not a regular file")]
    NotRegular,
    #[error("unreadable: {0}")]
    Unreadable(String),
    #[error("binary content")]
    Binary,
    #[error("no files can be read here")]
    Unavailable,
    #[error("more than {MAX_INPUT_FILES} files to read for one exec")]
    TooMany,
    #[error("relative path with an unknown working directory")]
    UnknownDirectory,
}

/// Reads files as a held process would see them: `path` is absolute in the process's mount
/// namespace and root. Implementations return at most `max_len` bytes (a longer file's first
/// `max_len`, with `true`: truncated), refuse what is not a regular file and never block.
pub trait HeldFiles {
    fn read(&self, path: &str, max_len: u64) -> Result<(Vec<u8>, bool), InputError>;
}

/// No file is readable (argv and environment are still judged).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoFiles;

impl HeldFiles for NoFiles {
    fn read(&self, _: &str, _: u64) -> Result<(Vec<u8>, bool), InputError> {
        Err(InputError::Unavailable)
    }
}

/// A file's text as judged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct InputText {
    pub(super) text: String,
    pub(super) truncated: bool,
}

/// The held process's inputs for one evaluation: its environment and a bounded, cached view
/// of its files, with notes on what could not be judged.
pub(super) struct Inputs<'a> {
    env: &'a [(String, String)],
    files: &'a dyn HeldFiles,
    cache: HashMap<String, Result<InputText, InputError>>,
    /// Files read (not the ones missing).
    loaded: usize,
    pub(super) notes: Vec<String>,
}

impl<'a> Inputs<'a> {
    pub(super) fn new(env: &'a [(String, String)], files: &'a dyn HeldFiles) -> Self {
        Self { env, files, cache: HashMap::new(), loaded: 0, notes: Vec::new() }
    }

    /// The value of `name` as getenv(3) finds it (the first, should it appear twice).
    pub(super) fn var(&self, name: &str) -> Option<&'a str> {
        self.env.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// `$HOME`, when absolute.
    pub(super) fn home(&self) -> Option<&'a str> {
        self.var("HOME").filter(|home| home.starts_with('/'))
    }

    /// `rest` below the directory named by `dir` (absolute), normalised.
    pub(super) fn below(dir: &str, rest: &str) -> String {
        normalize_absolute(&format!("{dir}/{rest}"))
    }

    /// The text of `path` (absolute), read once per evaluation.
    pub(super) fn read(&mut self, path: &str) -> Result<InputText, InputError> {
        if let Some(known) = self.cache.get(path) {
            return known.clone();
        }
        let result = if self.loaded >= MAX_INPUT_FILES || self.cache.len() >= MAX_ATTEMPTS {
            Err(InputError::TooMany)
        } else {
            self.files.read(path, MAX_INPUT_BYTES).and_then(|(bytes, truncated)| {
                if bytes[..bytes.len().min(BINARY_PROBE)].contains(&0) {
                    return Err(InputError::Binary);
                }
                Ok(InputText { text: String::from_utf8_lossy(&bytes).into_owned(), truncated })
            })
        };
        if result.as_ref().is_ok_and(|input| input.truncated) {
            self.note(format!("{path}: only its first {MAX_INPUT_BYTES} bytes were judged"));
        }
        if result != Err(InputError::TooMany) {
            self.loaded += usize::from(result.is_ok());
            self.cache.insert(path.to_string(), result.clone());
        }
        result
    }

    /// Like [`Inputs::read`], noting why a file that exists could not be judged (a missing
    /// optional file, `~/.curlrc`, is no news).
    pub(super) fn read_noting(&mut self, path: &str, what: &str) -> Option<InputText> {
        match self.read(path) {
            Ok(input) => Some(input),
            Err(InputError::NotFound) | Err(InputError::Unavailable) => None,
            Err(err) => {
                self.note(format!("{what} {path} not judged: {err}"));
                None
            }
        }
    }

    pub(super) fn note(&mut self, note: String) {
        if self.notes.len() < MAX_NOTES && !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }
}
