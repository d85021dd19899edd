//! Credential name patterns: the three shapes the kernel can match with one hash lookup and
//! two LPM-trie lookups (a prefix trie, and a trie over reversed names for suffixes).

use guard_common::{NAME_LEN, NameKey};
use serde::Serialize;

/// Longest literal part of a name pattern: the kernel keeps names in `NAME_LEN` bytes and we
/// keep one byte for a terminating NUL.
pub const MAX_NAME_PATTERN_BYTES: usize = NAME_LEN - 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NameShape {
    /// `.env`: the whole name.
    Exact,
    /// `.env.*`, `id_*`: the name starts with the literal.
    Prefix,
    /// `*.pem`: the name ends with the literal.
    Suffix,
}

/// A validated entry of a credential rule's `names`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct NamePattern {
    /// The literal part (without `*` and `!`).
    pub literal: String,
    pub shape: NameShape,
    /// Written with a leading `!`: files with such a name are never credentials.
    pub exempt: bool,
}

impl NamePattern {
    /// Parses `.env`, `.env.*`, `*.pem`, `!*.pub`. Anything else is refused with the reason.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (exempt, body) = match text.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if body.is_empty() {
            return Err("empty name pattern".into());
        }
        if body.contains('/') {
            return Err(format!(
                "name pattern `{text}` contains `/`: names match one path component; use `paths` for paths"
            ));
        }
        if body.contains('\0') {
            return Err(format!("name pattern `{text}` contains a NUL byte"));
        }
        if let Some(meta) = body.chars().find(|c| matches!(c, '?' | '[' | ']' | '{' | '}' | '\\')) {
            return Err(format!(
                "name pattern `{text}` uses `{meta}`: only exact names, `prefix*` and `*suffix` are allowed"
            ));
        }
        let stars = body.matches('*').count();
        let (literal, shape) = match stars {
            0 => (body, NameShape::Exact),
            1 if body.len() > 1 && body.ends_with('*') => (&body[..body.len() - 1], NameShape::Prefix),
            1 if body.len() > 1 && body.starts_with('*') => (&body[1..], NameShape::Suffix),
            1 if body.len() == 1 => {
                return Err(format!("name pattern `{text}` would match every file"));
            }
            _ => {
                return Err(format!(
                    "name pattern `{text}`: only exact names, `prefix*` and `*suffix` are allowed (one `*`, at either end)"
                ));
            }
        };
        if literal.len() > MAX_NAME_PATTERN_BYTES {
            return Err(format!(
                "name pattern `{text}` is {} bytes long; the kernel matches at most {MAX_NAME_PATTERN_BYTES}",
                literal.len()
            ));
        }
        Ok(Self { literal: literal.to_string(), shape, exempt })
    }

    pub fn matches(&self, name: &str) -> bool {
        match self.shape {
            NameShape::Exact => name == self.literal,
            NameShape::Prefix => name.starts_with(&self.literal),
            NameShape::Suffix => name.ends_with(&self.literal),
        }
    }

    /// The key the kernel looks up: the literal, reversed for suffixes, NUL padded.
    pub fn kernel_key(&self) -> NameKey {
        match self.shape {
            NameShape::Suffix => name_key(self.literal.bytes().rev()),
            NameShape::Exact | NameShape::Prefix => name_key(self.literal.bytes()),
        }
    }

    /// Significant bits of `kernel_key` for the LPM tries (the whole literal).
    pub fn prefix_bits(&self) -> u32 {
        // The literal is at most NAME_LEN - 1 bytes, so this cannot overflow.
        (self.literal.len() * 8) as u32
    }

    /// The pattern as written in the policy.
    pub fn written(&self) -> String {
        let bang = if self.exempt { "!" } else { "" };
        match self.shape {
            NameShape::Exact => format!("{bang}{}", self.literal),
            NameShape::Prefix => format!("{bang}{}*", self.literal),
            NameShape::Suffix => format!("{bang}*{}", self.literal),
        }
    }
}

/// A NUL-padded `NameKey` (bytes past `NAME_LEN` are dropped, as the kernel would).
pub fn name_key(bytes: impl IntoIterator<Item = u8>) -> NameKey {
    let mut name = [0u8; NAME_LEN];
    for (slot, byte) in name.iter_mut().zip(bytes) {
        *slot = byte;
    }
    NameKey { name }
}
