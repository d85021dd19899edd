//! Is a value a secret? Judgements on key names and values (entropy, shapes of benign values),
//! one bar for learning and a lower one for redaction.

use std::ops::Range;

use super::patterns::VARIABLE_REFERENCE;
use super::{MIN_NAMED_SECRET_LEN, MIN_SECRET_LEN, MIN_TOKEN_LEN, SecretKind};

/// A secret-shaped span of some text.
#[derive(Clone, Debug)]
pub(super) struct Found {
    pub(super) range: Range<usize>,
    pub(super) kind: SecretKind,
    pub(super) name: Option<String>,
}
/// Substrings of a key name that mark it as secret on their own.
const STRONG_NAME_MARKERS: [&str; 8] =
    ["token", "secret", "passw", "apikey", "credential", "privatekey", "accesskey", "webhook"];
/// Whole words of a key name (split at `_ - . ` and case changes) that mark it as secret.
const SECRET_NAME_WORDS: [&str; 14] = [
    "key",
    "api",
    "auth",
    "oauth",
    "authorization",
    "pwd",
    "pass",
    "passphrase",
    "private",
    "bearer",
    "dsn",
    "cookie",
    "creds",
    "cred",
];

fn name_words(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut previous_lower = false;
    for character in name.chars() {
        if !character.is_ascii_alphanumeric() {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            previous_lower = false;
            continue;
        }
        // camelCase boundary: apiKey -> api, key.
        if character.is_ascii_uppercase() && previous_lower && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        previous_lower = character.is_ascii_lowercase() || character.is_ascii_digit();
        current.push(character.to_ascii_lowercase());
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

/// The key name says its value is a secret.
pub(super) fn is_secret_name(name: &str) -> bool {
    has_strong_secret_name(name) || name_words(name).iter().any(|word| SECRET_NAME_WORDS.contains(&word.as_str()))
}

fn has_strong_secret_name(name: &str) -> bool {
    let folded: String = name.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect();
    STRONG_NAME_MARKERS.iter().any(|marker| folded.contains(marker))
}

fn is_path_like(value: &str) -> bool {
    ["/", "~/", "./", "../", "file:"].iter().any(|prefix| value.starts_with(prefix))
}

/// Digits with separators: numbers, versions, dates, times, ports.
fn is_number_like(value: &str) -> bool {
    value.bytes().all(|b| b.is_ascii_digit() || b".-_:+ /TZ".contains(&b))
}

fn is_plain_words(value: &str) -> bool {
    value.bytes().all(|b| b.is_ascii_lowercase() || b" -_.".contains(&b))
}

fn is_url(value: &str) -> bool {
    value.contains("://")
}

fn is_boolean_like(value: &str) -> bool {
    ["true", "false", "yes", "no", "on", "off", "null", "none", "nil"]
        .iter()
        .any(|word| value.eq_ignore_ascii_case(word))
}

/// Values no one means as a secret, whatever their key name.
fn is_obviously_benign(value: &str) -> bool {
    value.is_empty()
        || is_path_like(value)
        || is_number_like(value)
        || is_boolean_like(value)
        || VARIABLE_REFERENCE.is_match(value)
        || value.contains('\n')
}

/// Shannon entropy in bits per byte.
fn entropy(value: &str) -> f64 {
    let mut counts = [0u32; 256];
    for byte in value.bytes() {
        counts[usize::from(byte)] += 1;
    }
    let length = value.len() as f64;
    counts
        .iter()
        .filter(|count| **count > 0)
        .map(|count| {
            let share = f64::from(*count) / length;
            -share * share.log2()
        })
        .sum()
}

pub(super) fn character_classes(value: &str) -> usize {
    let lower = value.bytes().any(|b| b.is_ascii_lowercase());
    let upper = value.bytes().any(|b| b.is_ascii_uppercase());
    let digit = value.bytes().any(|b| b.is_ascii_digit());
    let other = value.bytes().any(|b| !b.is_ascii_alphanumeric());
    [lower, upper, digit, other].into_iter().filter(|present| *present).count()
}

/// A random-looking token with no key name to vouch for it.
fn looks_like_token(value: &str) -> bool {
    value.len() >= MIN_TOKEN_LEN
        && !value.bytes().any(|b| b.is_ascii_whitespace())
        && !is_obviously_benign(value)
        && !is_url(value)
        && character_classes(value) >= 2
        && entropy(value) >= 3.0
}

pub(super) fn is_aws_secret_key(name: Option<&str>, value: &str) -> bool {
    name.is_some_and(|name| name.to_ascii_lowercase().contains("secret"))
        && value.len() == 40
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"/+=".contains(&b))
}

/// Worth a fingerprint: the store learns it.
pub(super) fn is_learnable(found: &Found, value: &str) -> bool {
    match found.kind {
        kind if kind.is_known_format() => true,
        SecretKind::UrlPassword | SecretKind::Authorization => {
            value.len() >= MIN_SECRET_LEN && !is_obviously_benign(value)
        }
        SecretKind::Named => {
            let strong = found.name.as_deref().is_some_and(has_strong_secret_name);
            value.len() >= MIN_NAMED_SECRET_LEN
                && !is_obviously_benign(value)
                && !is_plain_words(value)
                && (!is_url(value) || strong)
        }
        _ => looks_like_token(value),
    }
}

/// Kept out of the audit stream even when unknown: redaction errs towards hiding.
pub(super) fn is_redactable(found: &Found, value: &str) -> bool {
    match found.kind {
        kind if kind.is_known_format() => true,
        SecretKind::UrlPassword | SecretKind::Authorization => !is_obviously_benign(value),
        SecretKind::Named => {
            // A name that says password/token/secret vouches even for a plain word; a weaker
            // one (`key`, `auth`) does not, so prose such as `auth: handle tokens` survives.
            let strong = found.name.as_deref().is_some_and(has_strong_secret_name);
            let plausible = if strong { value.len() >= 4 } else { value.len() >= 8 && !is_plain_words(value) };
            plausible && !is_obviously_benign(value) && (!is_url(value) || strong)
        }
        _ => looks_like_token(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_name_words() {
        for name in [
            "GITHUB_TOKEN",
            "apiKey",
            "DB_PASSWORD",
            "client-secret",
            "X-Api-Key",
            "PGPASSWORD",
            "privateKey",
            "MY_PASS",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in ["GIT_AUTHOR_EMAIL", "MONKEY_NAME", "RAPID_MODE", "KEYBOARD", "PATH", "HOME"] {
            assert!(!is_secret_name(name), "{name}");
        }
    }
}
