//! Reading Rust source without a parser: tokens (comments, literals and `#[cfg(test)]` items
//! left out) and the paths a module names, made absolute from the crate root.

use std::collections::BTreeSet;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Tok {
    Ident(String),
    /// `::`
    PathSep,
    Punct(char),
}

#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) line: usize,
}

/// Identifiers and punctuation with their line; comments, string, char and number literals
/// and lifetimes are dropped (a path inside a doc comment or a string is no import).
pub(crate) fn lex(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let next = chars.get(i + 1).copied();
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == Some('/') {
            while chars.get(i).is_some_and(|&c| c != '\n') {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i = skip_block_comment(&chars, i, &mut line);
        } else if c == '"' {
            i = skip_string(&chars, i + 1, &mut line);
        } else if c == '\'' {
            i = skip_quote(&chars, i, &mut line);
        } else if c.is_ascii_digit() {
            while chars.get(i).is_some_and(|&c| c.is_alphanumeric() || c == '_') {
                i += 1;
            }
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while chars.get(i).is_some_and(|&c| c.is_alphanumeric() || c == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            // Literal prefixes: b"..", c"..", b'x', r"..", r#".."#, br"..", cr"..".
            match (word.as_str(), chars.get(i)) {
                ("b" | "c", Some('"')) => {
                    i = skip_string(&chars, i + 1, &mut line);
                    continue;
                }
                ("b", Some('\'')) => {
                    i = skip_quote(&chars, i, &mut line);
                    continue;
                }
                ("r" | "br" | "cr", Some('"' | '#')) => {
                    if let Some(end) = skip_raw_string(&chars, i, &mut line) {
                        i = end;
                        continue;
                    }
                    if word == "r" {
                        // `r#type`: a raw identifier.
                        let start = i + 1;
                        i = start;
                        while chars.get(i).is_some_and(|&c| c.is_alphanumeric() || c == '_') {
                            i += 1;
                        }
                        tokens.push(Token { tok: Tok::Ident(chars[start..i].iter().collect()), line });
                        continue;
                    }
                }
                _ => {}
            }
            tokens.push(Token { tok: Tok::Ident(word), line });
        } else if c == ':' && next == Some(':') {
            tokens.push(Token { tok: Tok::PathSep, line });
            i += 2;
        } else {
            tokens.push(Token { tok: Tok::Punct(c), line });
            i += 1;
        }
    }
    tokens
}

/// From `/*` to past its `*/`, nested comments included.
fn skip_block_comment(chars: &[char], mut i: usize, line: &mut usize) -> usize {
    let mut depth = 0;
    while i < chars.len() {
        match (chars[i], chars.get(i + 1)) {
            ('/', Some('*')) => {
                depth += 1;
                i += 2;
            }
            ('*', Some('/')) => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            (c, _) => {
                if c == '\n' {
                    *line += 1;
                }
                i += 1;
            }
        }
    }
    i
}

/// From just after the opening `"` to past the closing one.
fn skip_string(chars: &[char], mut i: usize, line: &mut usize) -> usize {
    while let Some(&c) = chars.get(i) {
        match c {
            '\\' => {
                if chars.get(i + 1) == Some(&'\n') {
                    *line += 1;
                }
                i += 2;
            }
            '"' => return i + 1,
            _ => {
                if c == '\n' {
                    *line += 1;
                }
                i += 1;
            }
        }
    }
    i
}

/// `#*"..."#*` starting at the first `#` or `"`; `None` when this is no raw string.
fn skip_raw_string(chars: &[char], mut i: usize, line: &mut usize) -> Option<usize> {
    let mut hashes = 0;
    while chars.get(i) == Some(&'#') {
        hashes += 1;
        i += 1;
    }
    if chars.get(i) != Some(&'"') {
        return None;
    }
    i += 1;
    while let Some(&c) = chars.get(i) {
        if c == '"' && (1..=hashes).all(|k| chars.get(i + k) == Some(&'#')) {
            return Some(i + 1 + hashes);
        }
        if c == '\n' {
            *line += 1;
        }
        i += 1;
    }
    Some(i)
}

/// A char literal (`'x'`, `'\n'`, `'\u{1F600}'`), or the quote of a lifetime or label.
fn skip_quote(chars: &[char], i: usize, line: &mut usize) -> usize {
    if chars.get(i + 1) == Some(&'\\') {
        let mut j = i + 3;
        while chars.get(j).is_some_and(|&c| c != '\'') {
            j += 1;
        }
        return j + 1;
    }
    if chars.get(i + 2) == Some(&'\'') {
        if chars.get(i + 1) == Some(&'\n') {
            *line += 1;
        }
        return i + 3;
    }
    // `'a`: the lifetime's name stays an identifier, which no path starts with.
    i + 1
}

pub(crate) fn is(tokens: &[Token], i: usize, tok: &Tok) -> bool {
    tokens.get(i).is_some_and(|token| &token.tok == tok)
}

pub(crate) fn ident(tokens: &[Token], i: usize) -> Option<&str> {
    match tokens.get(i).map(|token| &token.tok) {
        Some(Tok::Ident(word)) => Some(word.as_str()),
        _ => None,
    }
}

/// Index past the bracket that closes the one at `open`.
pub(crate) fn matching(tokens: &[Token], open: usize) -> usize {
    let mut depth = 0usize;
    for (i, token) in tokens.iter().enumerate().skip(open) {
        match token.tok {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    tokens.len()
}

/// An attribute at `i` (`#[..]` or `#![..]`): where it ends, whether it is inner, and whether
/// it is `cfg(test)`.
fn attribute(tokens: &[Token], i: usize) -> Option<(usize, bool, bool)> {
    if !is(tokens, i, &Tok::Punct('#')) {
        return None;
    }
    let inner = is(tokens, i + 1, &Tok::Punct('!'));
    let open = if inner { i + 2 } else { i + 1 };
    if !is(tokens, open, &Tok::Punct('[')) {
        return None;
    }
    let end = matching(tokens, open);
    let body: Vec<&Tok> = tokens[open + 1..end.saturating_sub(1)].iter().map(|token| &token.tok).collect();
    let cfg_test =
        body == [&Tok::Ident("cfg".into()), &Tok::Punct('('), &Tok::Ident("test".into()), &Tok::Punct(')')].as_slice();
    Some((end, inner, cfg_test))
}

/// Past the item starting at `i` (after its attributes): its `;`, its `{ .. }` block, or the
/// end of the enclosing block (a field or an arm).
fn skip_item(tokens: &[Token], mut i: usize) -> usize {
    while let Some((end, _, _)) = attribute(tokens, i) {
        i = end;
    }
    let mut depth = 0usize;
    while let Some(token) = tokens.get(i) {
        match token.tok {
            Tok::Punct(';') if depth == 0 => return i + 1,
            Tok::Punct('{') if depth == 0 => return matching(tokens, i),
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') => {
                if depth == 0 {
                    return i;
                }
                depth -= 1;
            }
            _ => {}
        }
        i += 1;
    }
    i
}

/// The tokens without attributes and without the items marked `#[cfg(test)]`; nothing for a
/// file that is `#![cfg(test)]` as a whole.
pub(crate) fn without_test_items(tokens: &[Token]) -> Vec<Token> {
    let mut kept = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        match attribute(tokens, i) {
            Some((_, true, true)) => return Vec::new(),
            Some((end, _, true)) => i = skip_item(tokens, end),
            Some((end, _, false)) => i = end,
            None => {
                kept.push(tokens[i].clone());
                i += 1;
            }
        }
    }
    kept
}

/// Appends the paths a `use` tree starting at `i` names, each with `prefix` in front; returns
/// where the tree ends (at its `;`, `,` or closing `}`).
fn use_tree(tokens: &[Token], mut i: usize, mut path: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    if is(tokens, i, &Tok::PathSep) {
        // `::name`: an external crate, never this one.
        path.push("::".into());
        i += 1;
    }
    loop {
        if let Some(word) = ident(tokens, i) {
            path.push(word.to_string());
            i += 1;
        } else if is(tokens, i, &Tok::Punct('*')) {
            out.push(path);
            return i + 1;
        } else if is(tokens, i, &Tok::Punct('{')) {
            i += 1;
            while i < tokens.len() && !is(tokens, i, &Tok::Punct('}')) {
                if is(tokens, i, &Tok::Punct(',')) {
                    i += 1;
                    continue;
                }
                let end = use_tree(tokens, i, path.clone(), out);
                // A token the grammar does not expect: step over it rather than loop.
                i = end.max(i + 1);
            }
            return i + 1;
        }
        if is(tokens, i, &Tok::PathSep) {
            i += 1;
        } else {
            break;
        }
    }
    if ident(tokens, i) == Some("as") {
        i += 2;
    }
    if path.last().is_some_and(|last| last == "self") {
        path.pop();
    }
    out.push(path);
    i
}

/// Every path this module's code names (relative ones as written), with its line.
pub(crate) fn paths_named(tokens: &[Token]) -> Vec<(Vec<String>, usize)> {
    let mut found = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let line = tokens[i].line;
        // `use<'a>` after `impl Trait +` captures lifetimes; it declares nothing.
        if ident(tokens, i) == Some("use") && !is(tokens, i + 1, &Tok::Punct('<')) {
            let mut paths = Vec::new();
            let mut end = use_tree(tokens, i + 1, Vec::new(), &mut paths);
            while end < tokens.len() && !is(tokens, end, &Tok::Punct(';')) {
                end += 1;
            }
            found.extend(paths.into_iter().map(|path| (path, line)));
            i = end + 1;
            continue;
        }
        let continues_another = i > 0
            && (is(tokens, i - 1, &Tok::PathSep)
                || is(tokens, i - 1, &Tok::Punct('.'))
                || ident(tokens, i - 1) == Some("in"));
        if let Some(word) = ident(tokens, i)
            && is(tokens, i + 1, &Tok::PathSep)
            && !continues_another
        {
            let mut path = vec![word.to_string()];
            let mut j = i + 1;
            while is(tokens, j, &Tok::PathSep)
                && let Some(segment) = ident(tokens, j + 1)
            {
                path.push(segment.to_string());
                j += 2;
            }
            found.push((path, line));
            i = j;
            continue;
        }
        i += 1;
    }
    found
}

/// `path` as written in `module` (which declares `children`), made absolute from the crate
/// root; `None` for paths outside this crate.
pub(crate) fn resolve(path: &[String], module: &[String], children: &BTreeSet<String>) -> Option<Vec<String>> {
    let (first, rest) = path.split_first()?;
    let mut absolute: Vec<String> = match first.as_str() {
        "crate" => Vec::new(),
        "self" => module.to_vec(),
        "super" => module.split_last()?.1.to_vec(),
        name if children.contains(name) => [module, &[name.to_string()]].concat(),
        _ => return None,
    };
    for segment in rest {
        if segment == "super" {
            absolute.pop()?;
        } else if segment != "self" {
            absolute.push(segment.clone());
        }
    }
    Some(absolute)
}

// Tests of the reader itself.

fn absolute_paths(source: &str, module: &[&str], children: &[&str]) -> BTreeSet<String> {
    let module: Vec<String> = module.iter().map(|segment| segment.to_string()).collect();
    let children: BTreeSet<String> = children.iter().map(|child| child.to_string()).collect();
    paths_named(&without_test_items(&lex(source)))
        .into_iter()
        .filter_map(|(path, _)| resolve(&path, &module, &children))
        .map(|path| path.join("::"))
        .collect()
}

#[test]
fn reader_expands_use_groups_and_finds_paths_in_code() {
    let source = r#"
        use std::fmt;
        use ::serde::Serialize;
        pub(crate) use crate::{audit::{self, Severity}, event::Body as B, records::*};
        use super::{raw::RawPolicy, super::syscalls};
        use self::inner::Thing;
        use child::Item;
        fn f(x: u8) -> u8 {
            let y = crate::consumer::shebang(x).0;
            let z = super::names::name_key::<u8>(y);
            x.child::<u8>();
            Vec::<u8>::new();
            pub(in crate::control) fn g() {}
            z
        }
    "#;
    let found = absolute_paths(source, &["policy", "validate"], &["child", "inner"]);
    let expected: BTreeSet<String> = [
        "audit",
        "audit::Severity",
        "event::Body",
        "records",
        "policy::raw::RawPolicy",
        "syscalls",
        "policy::validate::inner::Thing",
        "policy::validate::child::Item",
        "consumer::shebang",
        "policy::names::name_key",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(found, expected);
}

#[test]
fn reader_ignores_comments_strings_and_test_items() {
    let source = r####"
        //! See [`crate::trajectory`].
        /* use crate::audit; /* nested */ crate::event::x */
        const A: &str = "crate::records::x \" crate::control";
        const B: &str = r#"crate::syscalls::y " still inside"#;
        const C: char = '"';
        const D: &[u8] = b"crate::confinement";
        fn lifetime<'a>(x: &'a str) -> impl Iterator<Item = &'a str> + use<'a> { x.split(crate::audit::SEP) }
        #[cfg(test)]
        mod tests {
            use crate::destructive::ExecContext;
        }
        #[cfg(test)]
        #[allow(dead_code)]
        fn helper() { crate::provenance::split_environ(b""); }
        #[cfg(test)]
        use crate::consumer::X;
        #[derive(Clone)]
        struct Kept { field: crate::event::Body }
    "####;
    let found = absolute_paths(source, &["policy", "model"], &[]);
    assert_eq!(found, BTreeSet::from(["audit::SEP".to_string(), "event::Body".to_string()]));
}
