//! [`SecretExtractor`]: the secrets worth learning from a text, an environment or an argv.

use std::collections::HashMap;

use secrecy::SecretString;

use super::classify::{Found, is_learnable};
use super::find::{canonical, find_in_argv, find_in_file, find_in_pair, scanned};
use super::{ExtractedSecret, MAX_LEARNED_PER_CALL};

/// Finds secret-looking values in credential files, environments and argv (see the module
/// documentation for what counts).
#[derive(Clone, Copy, Debug, Default)]
pub struct SecretExtractor;

impl SecretExtractor {
    pub fn new() -> Self {
        Self
    }

    /// Secrets in a credential file's text.
    pub fn from_text(&self, text: &str) -> Vec<ExtractedSecret> {
        let text = scanned(text);
        collect_learnable(find_in_file(text).into_iter().map(|(location, found)| (location, text, found)))
    }

    /// Secrets in environment pairs (`NAME`, `value`).
    pub fn from_pairs<N: AsRef<str>, V: AsRef<str>>(&self, pairs: &[(N, V)]) -> Vec<ExtractedSecret> {
        collect_learnable(pairs.iter().flat_map(|(name, value)| {
            let (name, value) = (name.as_ref(), scanned(value.as_ref()));
            find_in_pair(name, value).into_iter().map(move |found| (format!("env:{name}"), value, found))
        }))
    }

    /// Secrets in argv elements.
    pub fn from_argv<S: AsRef<str>>(&self, argv: &[S]) -> Vec<ExtractedSecret> {
        collect_learnable(argv.iter().zip(find_in_argv(argv)).enumerate().flat_map(|(index, (element, found))| {
            let element = scanned(element.as_ref());
            found.into_iter().map(move |item| (format!("argv[{index}]"), element, item))
        }))
    }
}

/// The learnable finds, deduplicated by value, at most [`MAX_LEARNED_PER_CALL`]. A value found
/// both under a name and by its format (`GITHUB_TOKEN=ghp_…`) keeps the first find's name and
/// takes the format's kind.
fn collect_learnable<'a>(finds: impl Iterator<Item = (String, &'a str, Found)>) -> Vec<ExtractedSecret> {
    let mut secrets: Vec<ExtractedSecret> = Vec::new();
    let mut seen: HashMap<blake3::Hash, usize> = HashMap::new();
    for (location, text, found) in finds {
        let Some(value) = text.get(found.range.clone()) else {
            continue;
        };
        if !is_learnable(&found, value) {
            continue;
        }
        // Deduplicate without keeping a second copy of the value around.
        let hash = blake3::hash(canonical(value).as_bytes());
        if let Some(&index) = seen.get(&hash) {
            if let Some(known) = secrets.get_mut(index)
                && found.kind.is_known_format()
                && !known.kind.is_known_format()
            {
                known.kind = found.kind;
            }
            continue;
        }
        seen.insert(hash, secrets.len());
        secrets.push(ExtractedSecret {
            name: found.name,
            kind: found.kind,
            location,
            value: SecretString::from(value.to_string()),
        });
        if secrets.len() >= MAX_LEARNED_PER_CALL {
            break;
        }
    }
    secrets
}
