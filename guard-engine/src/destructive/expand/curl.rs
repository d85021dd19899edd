//! curl reads options from config files: each `-K FILE`/`--config FILE`, and the default
//! `.curlrc` (`$CURL_HOME/.curlrc`, `$XDG_CONFIG_HOME/curlrc`, `~/.curlrc`, the first found)
//! unless `-q`/`--disable` comes first. Each line (`request = "DELETE"`, `-X DELETE`,
//! `url: http://...`) is judged as options added to the command line, naming its line.

use super::super::inputs::{Inputs, Source};
use super::super::walk::Invocation;
use super::{Unit, absolute, with_args};

/// Most lines of one config file judged.
const MAX_LINES: usize = 1024;

pub(super) fn expand(invocation: &Invocation, inputs: &mut Inputs) -> Vec<Unit> {
    let args = &invocation.args;
    let mut files = Vec::new();
    let skip_default = args.first().is_some_and(|first| first == "-q" || first == "--disable");
    if !skip_default && let Some(default) = default_config(inputs) {
        files.push(default);
    }
    for (index, arg) in args.iter().enumerate() {
        let named = match arg.as_str() {
            "-K" | "--config" => args.get(index + 1).cloned(),
            _ => arg
                .strip_prefix("--config=")
                .or_else(|| arg.strip_prefix("-K").filter(|rest| !rest.is_empty()))
                .map(str::to_string),
        };
        match named.as_deref() {
            // Standard input: not visible here.
            Some("-") => inputs.note("curl config from standard input not judged".into()),
            Some(path) => {
                if let Some(path) = absolute(path, &invocation.cwd, inputs, "curl config") {
                    files.push(path);
                }
            }
            None => {}
        }
    }
    let mut units = Vec::new();
    for path in files {
        let Some(input) = inputs.read_noting(&path, "curl config") else {
            continue;
        };
        for (number, line) in input.text.lines().enumerate().take(MAX_LINES) {
            let Some(words) = config_line(line) else {
                continue;
            };
            let mut merged = args.clone();
            merged.extend(words);
            let mut unit = with_args(invocation, merged, format!("curl config {path}"));
            unit.source = Source::file(&path, Some(number + 1));
            units.push(Unit::Command(unit));
        }
    }
    units
}

/// The first default config file that exists.
fn default_config(inputs: &mut Inputs) -> Option<String> {
    let mut candidates = Vec::new();
    if let Some(dir) = inputs.var("CURL_HOME").filter(|dir| dir.starts_with('/')) {
        candidates.push(Inputs::below(dir, ".curlrc"));
    }
    if let Some(dir) = inputs.var("XDG_CONFIG_HOME").filter(|dir| dir.starts_with('/')) {
        candidates.push(Inputs::below(dir, "curlrc"));
    }
    if let Some(home) = inputs.home() {
        candidates.push(Inputs::below(home, ".curlrc"));
    }
    candidates.into_iter().find(|path| inputs.read(path).is_ok())
}

/// One config line as command-line words: `name = value` becomes `--name value`; a name
/// with dashes (`-X`) stays as it is. `None` for blank lines and comments.
pub(super) fn config_line(line: &str) -> Option<Vec<String>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c.is_whitespace() || c == '=' || c == ':').unwrap_or(line.len());
    let name = &line[..name_end];
    let option = if name.starts_with('-') { name.to_string() } else { format!("--{name}") };
    let rest = line[name_end..].trim_start();
    let rest = rest.strip_prefix(['=', ':']).unwrap_or(rest).trim_start();
    if rest.is_empty() {
        return Some(vec![option]);
    }
    let value = match rest.strip_prefix('"') {
        Some(quoted) => unquote(quoted),
        None => rest.split_whitespace().next().unwrap_or_default().to_string(),
    };
    Some(vec![option, value])
}

/// A double-quoted value (after its opening quote): up to the closing quote, with curl's
/// escapes; an unterminated one runs to the end of the line.
fn unquote(quoted: &str) -> String {
    let mut value = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => match chars.next() {
                Some('t') => value.push('\t'),
                Some('n') => value.push('\n'),
                Some('r') => value.push('\r'),
                Some('v') => value.push('\u{b}'),
                Some(other) => value.push(other),
                None => {}
            },
            c => value.push(c),
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::config_line;

    fn words(line: &str) -> Option<Vec<String>> {
        config_line(line)
    }

    #[test]
    fn config_lines_become_options() {
        assert_eq!(words("request = \"DELETE\""), Some(vec!["--request".into(), "DELETE".into()]));
        assert_eq!(words("  -X DELETE"), Some(vec!["-X".into(), "DELETE".into()]));
        assert_eq!(words("url: http://x/a b"), Some(vec!["--url".into(), "http://x/a".into()]));
        assert_eq!(words("--request=PUT"), Some(vec!["--request".into(), "PUT".into()]));
        assert_eq!(words("silent"), Some(vec!["--silent".into()]));
        assert_eq!(words("header = \"X: \\\"q\\\"\""), Some(vec!["--header".into(), "X: \"q\"".into()]));
        assert_eq!(words("data = \"unterminated"), Some(vec!["--data".into(), "unterminated".into()]));
        assert_eq!(words("# request = DELETE"), None);
        assert_eq!(words("   "), None);
    }
}
