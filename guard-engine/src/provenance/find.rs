//! Secret-shaped spans in credential files, environment values and argv, and the candidate
//! substrings a later exec is looked up by.

use std::collections::HashSet;
use std::ops::Range;

use super::classify::{Found, character_classes, is_aws_secret_key, is_secret_name};
use super::patterns::{
    ARMOURED_BLOCK, ASSIGNMENT, AUTHORIZATION, BARE_TOKEN_LINE, BEARER, HEADER, JSON_PAIR, LINE_PAIR, NETRC_PASSWORD,
    OPTION_NAME, PEM_BLOCK, PGPASS_LINE, TOKEN_FORMATS, URL_USERINFO,
};
use super::{MAX_SCAN_BYTES, MIN_SECRET_LEN, SecretKind};

/// The byte prefix of `text` that is scanned, cut at a character boundary.
pub(super) fn scanned(text: &str) -> &str {
    if text.len() <= MAX_SCAN_BYTES {
        return text;
    }
    let mut end = MAX_SCAN_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `range` without surrounding whitespace and one pair of matching quotes.
fn unquoted(text: &str, range: Range<usize>) -> Range<usize> {
    let slice = &text[range.clone()];
    let start = range.start + (slice.len() - slice.trim_start().len());
    let end = range.end - (slice.len() - slice.trim_end().len());
    if end >= start + 2 {
        let inner = &text[start..end];
        for quote in ['"', '\'', '`'] {
            if inner.starts_with(quote) && inner.ends_with(quote) {
                return start + 1..end - 1;
            }
        }
    }
    start..end.max(start)
}

fn push_named(found: &mut Vec<Found>, text: &str, name: &str, range: Range<usize>) {
    let range = unquoted(text, range);
    let value = &text[range.clone()];
    let kind = if is_aws_secret_key(Some(name), value) { SecretKind::AwsSecretKey } else { SecretKind::Named };
    if is_secret_name(name) || kind == SecretKind::AwsSecretKey {
        found.push(Found { range, kind, name: Some(name.to_string()) });
    }
}

/// Known formats and PEM blocks anywhere in `text`.
fn find_formats(text: &str, found: &mut Vec<Found>) {
    for (kind, regex) in TOKEN_FORMATS.iter() {
        for hit in regex.find_iter(text) {
            // `sk-` also starts ordinary hyphenated words; real keys mix cases and digits.
            if *kind == SecretKind::AiApiKey && character_classes(hit.as_str()) < 4 {
                continue;
            }
            found.push(Found { range: hit.range(), kind: *kind, name: None });
        }
    }
    for hit in PEM_BLOCK.find_iter(text) {
        found.push(Found { range: hit.range(), kind: SecretKind::PrivateKey, name: None });
    }
}

/// Credential positions and named values that can appear in any text: URLs, headers,
/// `name=value`, `name: value`.
pub(super) fn find_structured(text: &str, found: &mut Vec<Found>) {
    for captures in URL_USERINFO.captures_iter(text) {
        match (captures.get(1), captures.get(2)) {
            (_, Some(password)) if !password.is_empty() => {
                found.push(Found { range: password.range(), kind: SecretKind::UrlPassword, name: None });
            }
            (Some(user), None) if !user.is_empty() => {
                found.push(Found { range: user.range(), kind: SecretKind::UrlUserToken, name: None });
            }
            _ => {}
        }
    }
    for regex in [&*AUTHORIZATION, &*BEARER] {
        for captures in regex.captures_iter(text) {
            if let Some(value) = captures.get(1) {
                let name = Some("Authorization".to_string());
                found.push(Found { range: value.range(), kind: SecretKind::Authorization, name });
            }
        }
    }
    for captures in HEADER.captures_iter(text) {
        if let (Some(name), Some(value)) = (captures.get(1), captures.get(2)) {
            // Authorization values are found above, after their scheme word.
            if !name.as_str().to_ascii_lowercase().ends_with("authorization") {
                push_named(found, text, name.as_str(), value.range());
            }
        }
    }
    for captures in ASSIGNMENT.captures_iter(text) {
        if let (Some(name), Some(value)) = (captures.get(1), captures.get(2)) {
            push_named(found, text, name.as_str(), value.range());
        }
    }
    find_formats(text, found);
}

/// Strips an unquoted value's trailing ` # comment` and `,`/`;` (dotenv, ini, YAML).
fn trim_unquoted_value(text: &str, range: Range<usize>) -> Range<usize> {
    let value = &text[range.clone()];
    if value.starts_with(['"', '\'']) {
        return range;
    }
    let mut end = range.end;
    if let Some(comment) = value.find(" #").or_else(|| value.find("\t#")) {
        end = range.start + comment;
    }
    let trimmed = text[range.start..end].trim_end_matches([',', ';', ' ', '\t']);
    range.start..range.start + trimmed.len()
}

/// Secrets in a credential file's text.
pub(super) fn find_in_file(text: &str) -> Vec<(String, Found)> {
    let text = scanned(text);
    let mut found = Vec::new();
    // Lines of a key or certificate body would each look like a token: the block as a whole
    // is the secret (private keys) or no secret at all (certificates).
    let armoured: Vec<Range<usize>> = ARMOURED_BLOCK.find_iter(text).map(|hit| hit.range()).collect();
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let location = format!("line {}", index + 1);
        let body = line.trim_end_matches(['\n', '\r']);
        let trimmed = body.trim_start();
        let in_block = armoured.iter().any(|block| block.start <= offset && offset < block.end);
        // `//registry.npmjs.org/:_authToken=…` (.npmrc) is no comment: `//` then a host is.
        let slash_comment =
            trimmed.strip_prefix("//").is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_alphanumeric()));
        let comment = trimmed.starts_with('#') || trimmed.starts_with(';') || slash_comment;
        let mut here = Vec::new();
        if !in_block && !comment {
            if let Some(captures) = LINE_PAIR.captures(body)
                && let (Some(name), Some(value)) = (captures.get(1), captures.get(2))
            {
                let range = trim_unquoted_value(body, value.range());
                push_named(&mut here, body, name.as_str(), range);
            }
            for captures in JSON_PAIR.captures_iter(body) {
                if let (Some(name), Some(value)) = (captures.get(1), captures.get(2)) {
                    push_named(&mut here, body, name.as_str(), value.range());
                }
            }
            for captures in NETRC_PASSWORD.captures_iter(body) {
                if let Some(value) = captures.get(1) {
                    here.push(Found { range: value.range(), kind: SecretKind::Named, name: Some("password".into()) });
                }
            }
            if let Some(value) = PGPASS_LINE.captures(body).and_then(|captures| captures.get(1)) {
                here.push(Found { range: value.range(), kind: SecretKind::UrlPassword, name: Some("password".into()) });
            }
            if let Some(value) = BARE_TOKEN_LINE.captures(body).and_then(|captures| captures.get(1)) {
                here.push(Found { range: value.range(), kind: SecretKind::BareToken, name: None });
            }
            find_structured(body, &mut here);
        }
        found.extend(here.into_iter().map(|mut item| {
            item.range = item.range.start + offset..item.range.end + offset;
            (location.clone(), item)
        }));
        offset += line.len();
    }
    // PEM blocks span lines: found on the whole text.
    for hit in PEM_BLOCK.find_iter(text) {
        found.push(("private key".into(), Found { range: hit.range(), kind: SecretKind::PrivateKey, name: None }));
    }
    found
}

/// Secrets in one environment value.
pub(super) fn find_in_pair(name: &str, value: &str) -> Vec<Found> {
    let value = scanned(value);
    let mut found = Vec::new();
    if is_secret_name(name) {
        push_named(&mut found, value, name, 0..value.len());
    }
    find_structured(value, &mut found);
    found
}

/// Secrets in argv, one list per element: the element's own structure plus values of
/// secret-named options given as the next element (`--token X`, `-u user:pass`).
pub(super) fn find_in_argv<S: AsRef<str>>(argv: &[S]) -> Vec<Vec<Found>> {
    argv.iter()
        .enumerate()
        .map(|(index, element)| {
            let element = scanned(element.as_ref());
            let mut here = Vec::new();
            find_structured(element, &mut here);
            if let Some(previous) = index.checked_sub(1).and_then(|previous| argv.get(previous)) {
                find_option_value(previous.as_ref(), element, &mut here);
            }
            here
        })
        .collect()
}

/// The value of `option` given as a separate argument.
pub(super) fn find_option_value(option: &str, value: &str, found: &mut Vec<Found>) {
    let Some(name) = OPTION_NAME.captures(option).and_then(|captures| captures.get(1)) else {
        return;
    };
    let name = name.as_str();
    if matches!(name, "u" | "user" | "proxy-user") {
        // curl -u user:password
        if let Some(colon) = value.find(':') {
            found.push(Found { range: colon + 1..value.len(), kind: SecretKind::UrlPassword, name: Some(name.into()) });
        }
    } else if name.len() > 1 && !value.starts_with("--") {
        push_named(found, value, name, 0..value.len());
    }
}

/// Every substring of `text` worth looking up: the whole text, what follows `=`, what the
/// finders mark, and the runs between whitespace/quotes and between punctuation.
pub(super) fn lookup_candidates(text: &str, found: &[Found]) -> Vec<Range<usize>> {
    let mut ranges: Vec<Range<usize>> = Vec::new();
    let mut seen: HashSet<Range<usize>> = HashSet::new();
    let mut add = |range: Range<usize>| {
        let range = unquoted(text, range);
        if range.len() >= MIN_SECRET_LEN && seen.insert(range.clone()) {
            ranges.push(range);
        }
    };
    add(0..text.len());
    if let Some(equals) = text.find('=') {
        add(equals + 1..text.len());
    }
    for item in found {
        add(item.range.clone());
    }
    let coarse = |c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`');
    let fine = |c: char| {
        coarse(c)
            || matches!(
                c,
                ':' | '@' | ',' | ';' | '&' | '?' | '<' | '>' | '(' | ')' | '{' | '}' | '[' | ']' | '|' | '\\'
            )
    };
    let finest = |c: char| fine(c) || matches!(c, '/' | '=' | '#');
    for split in [&coarse as &dyn Fn(char) -> bool, &fine, &finest] {
        let mut start = None;
        for (position, character) in text.char_indices().chain(std::iter::once((text.len(), ' '))) {
            match (split(character), start) {
                (true, Some(begin)) => {
                    add(begin..position);
                    start = None;
                }
                (false, None) => start = Some(position),
                _ => {}
            }
        }
    }
    ranges
}

/// The bytes fingerprinted for a candidate: a PEM block's body without whitespace or `\n`
/// escapes, anything else as is.
pub fn canonical(candidate: &str) -> std::borrow::Cow<'_, str> {
    match PEM_BLOCK.captures(candidate).and_then(|captures| captures.get(1)) {
        Some(body) => std::borrow::Cow::Owned(
            body.as_str().replace("\\n", "").replace("\\r", "").chars().filter(|c| !c.is_whitespace()).collect(),
        ),
        None => std::borrow::Cow::Borrowed(candidate),
    }
}
