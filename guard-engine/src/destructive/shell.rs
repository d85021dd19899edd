//! Splitting shell scripts into commands. Only the structure is parsed here (quote-aware
//! separators, heredocs, substitutions); words are split by `shlex`.

use super::wrappers::is_assignment;

/// One simple command of a script.
#[derive(Debug, Default)]
pub(super) struct ScriptCommand {
    pub words: Vec<String>,
    /// From a heredoc or here-string.
    pub stdin: Option<String>,
    /// Its standard input is the previous command's output (`a | b`).
    pub piped: bool,
    /// The script line it starts on (1-based).
    pub line: usize,
}

#[derive(Debug, Default)]
pub(super) struct ParsedScript {
    pub commands: Vec<ScriptCommand>,
    /// Bodies of `$(...)` and backquotes, to evaluate as scripts of their own, with the
    /// script line each starts on.
    pub substitutions: Vec<(String, usize)>,
}

/// Quotes inside substitutions inside quotes... deeper than this are not looked into (the
/// rest of the script is taken as one opaque word), so hostile input cannot exhaust the
/// stack.
const MAX_LEXER_DEPTH: usize = 32;

#[derive(Debug, Default)]
struct Segment {
    text: String,
    heredoc: Option<String>,
    piped: bool,
    /// Index of its first character.
    start: Option<usize>,
}

struct PendingHeredoc {
    delimiter: String,
    strip_tabs: bool,
    segment: usize,
}

pub(super) fn parse(script: &str) -> ParsedScript {
    let (segments, substitutions) = segment(script);
    let newlines: Vec<usize> = script.chars().enumerate().filter(|(_, c)| *c == '\n').map(|(index, _)| index).collect();
    let line_of = |index: usize| newlines.partition_point(|&newline| newline < index) + 1;
    let substitutions = substitutions.into_iter().map(|(body, start)| (body, line_of(start))).collect();
    let commands = segments
        .into_iter()
        .map(|segment| {
            let line = line_of(segment.start.unwrap_or(0));
            let words = shlex::split(&segment.text)
                .unwrap_or_else(|| segment.text.split_whitespace().map(str::to_string).collect());
            let (words, here_string) = strip_redirections(words);
            ScriptCommand {
                words: strip_command_prefix(words),
                stdin: segment.heredoc.or(here_string),
                piped: segment.piped,
                line,
            }
        })
        .collect();
    ParsedScript { commands, substitutions }
}

/// Splits at unquoted separators; collects heredoc bodies and substitutions (with the index
/// each starts at).
fn segment(script: &str) -> (Vec<Segment>, Vec<(String, usize)>) {
    let chars: Vec<char> = script.chars().collect();
    let mut segments: Vec<Segment> = Vec::new();
    let mut substitutions = Vec::new();
    let mut current = Segment::default();
    let mut pending: Vec<PendingHeredoc> = Vec::new();
    let mut index = 0;

    // Ends the current segment; the next one reads the pipe when `piped_next`.
    let finish = |segments: &mut Vec<Segment>, current: &mut Segment, piped_next: bool| {
        segments.push(std::mem::take(current));
        current.piped = piped_next;
    };
    while index < chars.len() {
        let c = chars[index];
        let next = chars.get(index + 1).copied();
        if current.start.is_none() && !c.is_whitespace() {
            current.start = Some(index);
        }
        match c {
            '\\' => {
                if next == Some('\n') {
                    index += 2; // line continuation
                    continue;
                }
                current.text.push(c);
                if let Some(escaped) = next {
                    current.text.push(escaped);
                }
                index += 2;
            }
            '\'' => {
                let end = find_char(&chars, index + 1, '\'').unwrap_or(chars.len());
                current.text.extend(&chars[index..(end + 1).min(chars.len())]);
                index = end + 1;
            }
            '"' => {
                let end = double_quote_end(&chars, index + 1, &mut substitutions, 0);
                current.text.extend(&chars[index..(end + 1).min(chars.len())]);
                index = end + 1;
            }
            '`' => {
                let end = backquote_end(&chars, index + 1);
                substitutions.push((chars[index + 1..end.min(chars.len())].iter().collect(), index));
                current.text.extend(&chars[index..(end + 1).min(chars.len())]);
                index = end + 1;
            }
            '$' if next == Some('(') => {
                let end = matching_paren(&chars, index + 2, 0);
                let body: String = chars[index + 2..end.min(chars.len())].iter().collect();
                // `$((...))` is arithmetic, not a command.
                if !body.starts_with('(') {
                    substitutions.push((body, index));
                }
                current.text.extend(&chars[index..(end + 1).min(chars.len())]);
                index = end + 1;
            }
            '#' if current.text.is_empty() || current.text.ends_with(char::is_whitespace) => {
                while index < chars.len() && chars[index] != '\n' {
                    index += 1;
                }
            }
            '\n' => {
                finish(&mut segments, &mut current, false);
                index += 1;
                for heredoc in pending.drain(..) {
                    let (body, after) = read_heredoc(&chars, index, &heredoc);
                    if let Some(segment) = segments.get_mut(heredoc.segment) {
                        segment.heredoc = Some(body);
                    }
                    index = after;
                }
            }
            ';' | '(' | ')' => {
                finish(&mut segments, &mut current, false);
                index += 1;
            }
            '&' => {
                let redirect = current.text.ends_with('>') || current.text.ends_with('<') || next == Some('>');
                if redirect {
                    current.text.push(c);
                    index += 1;
                } else {
                    finish(&mut segments, &mut current, false);
                    index += if next == Some('&') { 2 } else { 1 };
                }
            }
            '|' => {
                if next == Some('|') {
                    finish(&mut segments, &mut current, false);
                    index += 2;
                } else {
                    finish(&mut segments, &mut current, true);
                    index += if next == Some('&') { 2 } else { 1 };
                }
            }
            '<' if next == Some('<') && chars.get(index + 2) == Some(&'<') => {
                // A here-string: kept as text, its word becomes stdin later.
                current.text.push_str("<<<");
                index += 3;
            }
            '<' if next == Some('<') => {
                let (heredoc, after) = heredoc_operator(&chars, index + 2, segments.len());
                pending.extend(heredoc);
                index = after;
            }
            _ => {
                current.text.push(c);
                index += 1;
            }
        }
    }
    finish(&mut segments, &mut current, false);
    (segments, substitutions)
}

fn find_char(chars: &[char], from: usize, wanted: char) -> Option<usize> {
    chars.iter().skip(from).position(|&c| c == wanted).map(|offset| from + offset)
}

/// Index of the closing `"` (or the end), collecting substitutions inside.
fn double_quote_end(chars: &[char], from: usize, substitutions: &mut Vec<(String, usize)>, nesting: usize) -> usize {
    if nesting > MAX_LEXER_DEPTH {
        return chars.len();
    }
    let mut index = from;
    while index < chars.len() {
        match chars[index] {
            '\\' => index += 2,
            '"' => return index,
            '`' => {
                let end = backquote_end(chars, index + 1);
                substitutions.push((chars[index + 1..end.min(chars.len())].iter().collect(), index));
                index = end + 1;
            }
            '$' if chars.get(index + 1) == Some(&'(') => {
                let end = matching_paren(chars, index + 2, nesting + 1);
                let body: String = chars[index + 2..end.min(chars.len())].iter().collect();
                if !body.starts_with('(') {
                    substitutions.push((body, index));
                }
                index = end + 1;
            }
            _ => index += 1,
        }
    }
    chars.len()
}

fn backquote_end(chars: &[char], from: usize) -> usize {
    let mut index = from;
    while index < chars.len() {
        match chars[index] {
            '\\' => index += 2,
            '`' => return index,
            _ => index += 1,
        }
    }
    chars.len()
}

/// Index of the `)` closing a `$(` whose body starts at `from` (quote-aware).
fn matching_paren(chars: &[char], from: usize, nesting: usize) -> usize {
    if nesting > MAX_LEXER_DEPTH {
        return chars.len();
    }
    let mut depth = 1;
    let mut index = from;
    while index < chars.len() {
        match chars[index] {
            '\\' => index += 1,
            '\'' => index = find_char(chars, index + 1, '\'').unwrap_or(chars.len()),
            '"' => index = double_quote_end(chars, index + 1, &mut Vec::new(), nesting + 1),
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return index;
                }
            }
            _ => {}
        }
        index += 1;
    }
    chars.len()
}

/// After `<<`: `[-]` then the delimiter word (quotes removed). Returns the pending
/// heredoc for segment `segment` and where parsing resumes.
fn heredoc_operator(chars: &[char], from: usize, segment: usize) -> (Option<PendingHeredoc>, usize) {
    let mut index = from;
    let strip_tabs = chars.get(index) == Some(&'-');
    if strip_tabs {
        index += 1;
    }
    while chars.get(index).is_some_and(|c| *c == ' ' || *c == '\t') {
        index += 1;
    }
    let mut delimiter = String::new();
    while let Some(&c) = chars.get(index) {
        match c {
            '\'' | '"' => {
                let end = find_char(chars, index + 1, c).unwrap_or(chars.len());
                delimiter.extend(&chars[index + 1..end.min(chars.len())]);
                index = end + 1;
            }
            '\\' => {
                if let Some(&escaped) = chars.get(index + 1) {
                    delimiter.push(escaped);
                }
                index += 2;
            }
            c if c.is_whitespace() || ";&|<>()".contains(c) => break,
            c => {
                delimiter.push(c);
                index += 1;
            }
        }
    }
    let pending = (!delimiter.is_empty()).then_some(PendingHeredoc { delimiter, strip_tabs, segment });
    (pending, index)
}

/// Lines from `from` up to the delimiter line; returns the body and the index after it.
fn read_heredoc(chars: &[char], from: usize, heredoc: &PendingHeredoc) -> (String, usize) {
    let mut body = String::new();
    let mut index = from;
    while index < chars.len() {
        let end = find_char(chars, index, '\n').unwrap_or(chars.len());
        let line: String = chars[index..end].iter().collect();
        index = end + 1;
        let compared = if heredoc.strip_tabs { line.trim_start_matches('\t') } else { line.as_str() };
        if compared == heredoc.delimiter {
            return (body, index);
        }
        body.push_str(&line);
        body.push('\n');
    }
    (body, chars.len())
}

/// Removes redirections (`>out`, `2> err`, `&>/dev/null`, `<in`) and returns the text of
/// a here-string (`<<< text`).
fn strip_redirections(words: Vec<String>) -> (Vec<String>, Option<String>) {
    let mut kept = Vec::new();
    let mut here_string = None;
    let mut iter = words.into_iter();
    while let Some(word) = iter.next() {
        if word == "<<<" {
            here_string = iter.next();
            continue;
        }
        if let Some(text) = word.strip_prefix("<<<") {
            here_string = Some(text.to_string());
            continue;
        }
        match redirection_needs_target(&word) {
            Some(true) => {
                iter.next();
            }
            Some(false) => {}
            None => kept.push(word),
        }
    }
    (kept, here_string)
}

/// `Some(needs_next_word)` when the word is a redirection.
fn redirection_needs_target(word: &str) -> Option<bool> {
    let rest = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let rest = rest.strip_prefix('&').unwrap_or(rest);
    [">>", ">|", ">&", "<&", "<>", ">", "<"].iter().find_map(|operator| rest.strip_prefix(operator)).map(str::is_empty)
}

/// Drops what precedes the program: assignments (`A=1 cmd`) and reserved words
/// (`if`, `then`, `!`, `{`, `exec`, ...). Loop and case headers run no command.
fn strip_command_prefix(mut words: Vec<String>) -> Vec<String> {
    let mut start = 0;
    while let Some(word) = words.get(start) {
        match word.as_str() {
            "if" | "then" | "else" | "elif" | "fi" | "do" | "done" | "while" | "until" | "!" | "{" | "}" | "time"
            | "exec" | "command" | "builtin" | "coproc" | "noglob" | "nocorrect" | "esac" => start += 1,
            "for" | "case" | "select" | "function" | "in" => return Vec::new(),
            _ if is_assignment(word) => start += 1,
            _ => break,
        }
    }
    words.drain(..start);
    words
}
