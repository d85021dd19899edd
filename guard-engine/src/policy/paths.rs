//! Path spellings used by the policy: absolute, `~/...` (every user's home) and `$CWD`.

use serde::Serialize;

/// Characters that make a path a glob for `globset`.
pub(crate) const GLOB_META: &[char] = &['*', '?', '[', ']', '{', '}'];

/// A directory root (write roots, read allow, scratch roots).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RootPath {
    /// Normalised absolute path without a trailing slash.
    Absolute(String),
    /// `~/rest`: `rest` below each user's home (normalised, no leading or trailing slash).
    Home(String),
    /// `$CWD`: the working directory of each session when it registers.
    SessionCwd,
}

impl RootPath {
    /// Parses a root. `allow_session_cwd` is false where `$CWD` has no meaning.
    pub(crate) fn parse(text: &str, allow_session_cwd: bool) -> Result<Self, String> {
        if text == "$CWD" {
            return if allow_session_cwd {
                Ok(RootPath::SessionCwd)
            } else {
                Err("`$CWD` is only allowed in scope.files".into())
            };
        }
        if text.contains(GLOB_META) {
            return Err(format!("`{text}`: roots are plain directories, not globs"));
        }
        if let Some(rest) = text.strip_prefix("~/") {
            let rest = normalize_relative(rest)?;
            if rest.is_empty() {
                return Err(format!("`{text}`: a whole home directory is not a root; name a directory below it"));
            }
            return Ok(RootPath::Home(rest));
        }
        if text.starts_with('/') {
            return Ok(RootPath::Absolute(normalize_absolute(text)));
        }
        Err(format!(
            "`{text}`: a root must be an absolute path, `~/...`{}",
            if allow_session_cwd { " or `$CWD`" } else { "" }
        ))
    }

    /// The directories this root stands for on a machine with these home directories.
    /// `SessionCwd` expands to nothing here: the daemon adds each session's directory.
    pub fn expand(&self, homes: &[String]) -> Vec<String> {
        match self {
            RootPath::Absolute(path) => vec![path.clone()],
            RootPath::Home(rest) => homes.iter().map(|home| join_below(&normalize_absolute(home), rest)).collect(),
            RootPath::SessionCwd => Vec::new(),
        }
    }
}

/// Lexical normalisation of an absolute path: collapses `//` and `.`, resolves `..` (never
/// above `/`), drops a trailing slash. Symlinks are not resolved (no I/O here).
pub fn normalize_absolute(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Normalises the part after `~/`; `..` is refused because it would leave the home.
pub(crate) fn normalize_relative(path: &str) -> Result<String, String> {
    let mut parts: Vec<&str> = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err(format!("`~/{path}`: `..` is not allowed in home paths")),
            other => parts.push(other),
        }
    }
    Ok(parts.join("/"))
}

/// `base` + `/` + `rest`, with `base` already normalised.
pub(crate) fn join_below(base: &str, rest: &str) -> String {
    if base == "/" { format!("/{rest}") } else { format!("{base}/{rest}") }
}

/// True when `path` is strictly below `root` (both normalised absolute paths).
pub fn is_strictly_below(path: &str, root: &str) -> bool {
    if root == "/" {
        return path != "/";
    }
    path.strip_prefix(root).is_some_and(|rest| rest.starts_with('/') && rest.len() > 1)
}
