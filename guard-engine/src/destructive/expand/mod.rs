//! Input expansion: what a program will act on besides its argv, as extra units to judge,
//! each naming its [`Source`](super::inputs::Source). One stage per file:
//! * [`terraform`]: `TF_CLI_ARGS` and `TF_CLI_ARGS_<command>`;
//! * [`git`] (with [`gitconfig`]): aliases from `-c`, `GIT_CONFIG_*` and the repository's,
//!   user's and system's config files;
//! * [`curl`]: `-K FILE`/`--config FILE` and the default `.curlrc`;
//! * [`scripts`]: script files handed to a shell or an interpreter, `psql -f FILE`.

mod curl;
mod git;
mod gitconfig;
mod scripts;
mod terraform;

use super::inputs::{InputError, Inputs};
use super::walk::{Invocation, WorkingDir};

/// Something more to judge for one command.
pub(super) enum Unit {
    /// A command, judged like any other (its `source` says where its words came from).
    Command(Invocation),
    /// A shell script judged like `sh -c` in `outer`'s place; `file` is the script file its
    /// lines are numbered in (`None`: commands take `outer`'s source).
    Shell { script: String, outer: Invocation, via: String, file: Option<String> },
    /// A command built from a file's content (`python3 x.py` as `python3 -c CONTENT`); each
    /// match names the line it is complete at. `shown` is the command as the record shows it.
    FileContent { path: String, text: String, shown: String, build: Box<dyn Fn(&str) -> Invocation> },
}

/// The units `invocation` adds, by the first of its names that has a stage.
pub(super) fn expand(invocation: &Invocation, inputs: &mut Inputs) -> Vec<Unit> {
    for name in &invocation.names {
        let units = match name.as_str() {
            "terraform" | "tofu" => terraform::expand(invocation, inputs),
            "git" => git::expand(invocation, inputs),
            "curl" => curl::expand(invocation, inputs),
            "psql" => scripts::expand_psql(invocation, inputs),
            other => match scripts::expand_script(other, invocation, inputs) {
                Some(units) => units,
                None => continue,
            },
        };
        return units;
    }
    Vec::new()
}

/// `path` as an absolute path from the command's working directory, noting when it cannot be.
fn absolute(path: &str, cwd: &WorkingDir, inputs: &mut Inputs, what: &str) -> Option<String> {
    match cwd.resolve(path) {
        WorkingDir::Known(resolved) => Some(resolved),
        WorkingDir::Unknown => {
            inputs.note(format!("{what} {path} not judged: {}", InputError::UnknownDirectory));
            None
        }
    }
}

/// A copy of `invocation` with other arguments, made by an expansion (not expanded again).
fn with_args(invocation: &Invocation, args: Vec<String>, via: String) -> Invocation {
    let mut expanded = invocation.clone();
    expanded.args = args;
    expanded.via.push(via);
    expanded.expanded = true;
    expanded
}

#[cfg(test)]
mod tests;
