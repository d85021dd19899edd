//! Git configuration as git reads it for aliases: config files (`[section "sub"] key = value`,
//! quoting, escapes, comments, continuation lines) and the environment's
//! `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_<n>`/`GIT_CONFIG_VALUE_<n>` and `GIT_CONFIG_PARAMETERS`.
//! Keys come out as git names them: section and name lower-cased, the subsection as written.

use super::super::inputs::{Inputs, Source};

/// Most entries of `GIT_CONFIG_COUNT` looked at.
const MAX_ENV_ENTRIES: usize = 256;

/// One `key = value` (a key alone is boolean true: no value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) key: String,
    pub(super) value: Option<String>,
    pub(super) line: usize,
}

/// The entries of a config file, in order; lines that do not parse are skipped (git would
/// refuse the whole file: nothing of it runs then, so skipping is on the safe side only for
/// what could run).
pub(super) fn parse(text: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut section = String::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut index = 0;
    while index < lines.len() {
        let line_number = index + 1;
        // A value may continue on the next line after a trailing backslash.
        let mut logical = lines[index].to_string();
        while logical.ends_with('\\') && !logical.ends_with("\\\\") && index + 1 < lines.len() {
            logical.pop();
            index += 1;
            logical.push_str(lines[index]);
        }
        index += 1;
        let mut rest = logical.trim_start();
        if let Some(header) = rest.strip_prefix('[') {
            let Some((inside, after)) = header.split_once(']') else {
                continue;
            };
            section = section_name(inside);
            rest = after.trim_start();
        }
        if rest.is_empty() || rest.starts_with('#') || rest.starts_with(';') || section.is_empty() {
            continue;
        }
        let name_end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-')).unwrap_or(rest.len());
        let name = &rest[..name_end];
        if name.is_empty() || !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
            continue;
        }
        let after = rest[name_end..].trim_start();
        let value = match after.strip_prefix('=') {
            Some(value) => Some(parse_value(value)),
            None if after.is_empty() || after.starts_with('#') || after.starts_with(';') => None,
            None => continue,
        };
        entries.push(Entry { key: format!("{section}.{}", name.to_ascii_lowercase()), value, line: line_number });
    }
    entries
}

/// `alias`, `remote "origin"` or the old `remote.origin` as a key prefix.
fn section_name(inside: &str) -> String {
    let inside = inside.trim();
    match inside.split_once(char::is_whitespace) {
        Some((section, sub)) => {
            let sub = sub.trim().trim_start_matches('"').trim_end_matches('"');
            let sub = sub.replace("\\\"", "\"").replace("\\\\", "\\");
            format!("{}.{sub}", section.to_ascii_lowercase())
        }
        None => match inside.split_once('.') {
            Some((section, sub)) => format!("{}.{}", section.to_ascii_lowercase(), sub.to_ascii_lowercase()),
            None => inside.to_ascii_lowercase(),
        },
    }
}

/// A value: quotes removed, escapes applied, a comment outside quotes cut, outer spaces
/// trimmed.
fn parse_value(raw: &str) -> String {
    let mut value = String::new();
    let mut quoted = false;
    // Length of `value` up to its last character that is not unquoted trailing space.
    let mut kept = 0;
    let mut chars = raw.trim_start().chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' => match chars.next() {
                Some('n') => value.push('\n'),
                Some('t') => value.push('\t'),
                Some('b') => {
                    value.pop();
                }
                Some(other) => value.push(other),
                None => {}
            },
            '#' | ';' if !quoted => break,
            c => {
                value.push(c);
                if quoted || !c.is_whitespace() {
                    kept = value.len();
                }
                continue;
            }
        }
        kept = value.len();
    }
    value.truncate(kept);
    value
}

/// A `key=value` given on the command line or in the environment, with the key normalised:
/// section and name lower-cased, a subsection (`url.<base>.insteadOf`) kept as written.
pub(super) fn split_assignment(assignment: &str) -> (String, Option<String>) {
    let (key, value) = match assignment.split_once('=') {
        Some((key, value)) => (key, Some(value.to_string())),
        None => (assignment, None),
    };
    (normalise_key(key), value)
}

pub(super) fn normalise_key(key: &str) -> String {
    match (key.find('.'), key.rfind('.')) {
        (Some(first), Some(last)) if first != last => {
            format!("{}{}{}", key[..first].to_ascii_lowercase(), &key[first..last], key[last..].to_ascii_lowercase())
        }
        _ => key.to_ascii_lowercase(),
    }
}

/// Config from the environment: `GIT_CONFIG_PARAMETERS` (what `git -c` passes to child
/// processes: `'key'='value'` words), then `GIT_CONFIG_COUNT` pairs, as git applies them.
pub(super) fn from_env(inputs: &mut Inputs) -> Vec<(String, Option<String>, Source)> {
    let mut entries = Vec::new();
    if let Some(parameters) = inputs.var("GIT_CONFIG_PARAMETERS") {
        match shlex::split(parameters) {
            Some(words) => {
                for word in words {
                    let (key, value) = split_assignment(&word);
                    entries.push((key, value, Source::env("GIT_CONFIG_PARAMETERS")));
                }
            }
            None => inputs.note("environment variable GIT_CONFIG_PARAMETERS not judged: unbalanced quoting".into()),
        }
    }
    if let Some(count) = inputs.var("GIT_CONFIG_COUNT") {
        match count.trim().parse::<usize>() {
            Ok(count) => {
                for n in 0..count.min(MAX_ENV_ENTRIES) {
                    let key_name = format!("GIT_CONFIG_KEY_{n}");
                    let value_name = format!("GIT_CONFIG_VALUE_{n}");
                    // Git refuses to run when a pair is missing; nothing to judge then.
                    let (Some(key), Some(value)) = (inputs.var(&key_name), inputs.var(&value_name)) else {
                        inputs.note(format!("environment variable {key_name} or {value_name} missing"));
                        break;
                    };
                    entries.push((normalise_key(key), Some(value.to_string()), Source::env(&value_name)));
                }
            }
            Err(_) => inputs.note(format!("environment variable GIT_CONFIG_COUNT not judged: {count:?} is no count")),
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_parse_sections_quotes_comments_and_continuations() {
        let text = "# top\n[core]\n\tbare = false\n[alias]\n\tyolo = push --force # rewrite\n\
                    st = \"status  -s\" ; short\n  lg = log \\\n --oneline\n\tquoted = \"a \\\"b\\\" \\\\ c\"\n\
                    [Remote \"Origin\"]\n\turl = x\n[alias]flag\n[broken\nnot a line\n";
        let entries = parse(text);
        let get = |key: &str| entries.iter().find(|e| e.key == key).map(|e| (e.value.clone(), e.line));
        assert_eq!(get("alias.yolo"), Some((Some("push --force".into()), 5)));
        assert_eq!(get("alias.st"), Some((Some("status  -s".into()), 6)));
        assert_eq!(get("alias.lg"), Some((Some("log  --oneline".into()), 7)));
        assert_eq!(get("alias.quoted"), Some((Some("a \"b\" \\ c".into()), 9)));
        assert_eq!(get("remote.Origin.url"), Some((Some("x".into()), 11)));
        assert_eq!(get("alias.flag"), Some((None, 12)));
        assert_eq!(get("core.bare"), Some((Some("false".into()), 3)));
    }

    #[test]
    fn keys_are_normalised_like_git() {
        assert_eq!(split_assignment("Alias.YOLO=push -f"), ("alias.yolo".into(), Some("push -f".into())));
        assert_eq!(split_assignment("url.HTTPS://x.insteadOf=y").0, "url.HTTPS://x.insteadof");
        assert_eq!(split_assignment("core.bare"), ("core.bare".into(), None));
    }
}
