//! Policy errors: every problem names `FILE:LINE:COLUMN`.

use serde_saphyr::{Location, Spanned};

/// One problem found in a policy file. Lines and columns are 1-based.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub line: u64,
    pub column: u64,
    pub message: String,
}

/// A policy that cannot be used. `Display` prints one `FILE:LINE:COL: problem` per line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.source_name, .problems))]
pub struct PolicyError {
    /// The name given to `parse_policy` (usually the file path).
    pub source_name: String,
    /// Never empty; in file order.
    pub problems: Vec<Problem>,
}

fn render(source_name: &str, problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|problem| format!("{source_name}:{}:{}: {}", problem.line, problem.column, problem.message))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Collects problems while validating, so one run reports all of them.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    list: Vec<Problem>,
}

impl Problems {
    pub(crate) fn at(&mut self, location: Location, message: impl Into<String>) {
        // A location the parser could not attach (line 0) still has to point somewhere.
        let (line, column) = if location.line() == 0 { (1, 1) } else { (location.line(), location.column()) };
        self.list.push(Problem { line, column, message: message.into() });
    }

    pub(crate) fn at_spanned<T>(&mut self, spanned: &Spanned<T>, message: impl Into<String>) {
        self.at(spanned.referenced, message);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub(crate) fn into_error(mut self, source_name: &str) -> PolicyError {
        // Stable: problems at the same place keep the order they were found in.
        self.list.sort_by_key(|problem| (problem.line, problem.column));
        PolicyError { source_name: source_name.to_string(), problems: self.list }
    }
}

/// Turns a YAML/serde error (syntax, unknown key, wrong type, unknown variant) into a problem.
pub(crate) fn from_yaml_error(source_name: &str, error: &serde_saphyr::Error) -> PolicyError {
    let (line, column) = match error.location() {
        Some(location) if location.line() > 0 => (location.line(), location.column()),
        _ => (1, 1),
    };
    // The library appends " at line L, column C"; we print the location in front instead.
    let rendered = error.to_string();
    let suffix = format!(" at line {line}, column {column}");
    let message = rendered.strip_suffix(suffix.as_str()).unwrap_or(rendered.as_str()).to_string();
    PolicyError { source_name: source_name.to_string(), problems: vec![Problem { line, column, message }] }
}
