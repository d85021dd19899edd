//! Secrets in a file's text or an environment, by kind and fingerprint.
//!
//! The finding itself is [`crate::provenance::SecretExtractor`]'s (one list of token formats
//! and secret-looking names for the whole engine); this stage turns each value into a
//! [`SecretHit`] at once and lets the value go.

use crate::provenance::{SecretExtractor, SecretKind, canonical_secret};

use super::SecretHit;

/// Domain-separation context of [`fingerprint`]'s hash.
const FINGERPRINT_CONTEXT: &str = "guard exposure 2026 secret fingerprint v1";
/// Bytes of the hash shown (16 hex digits).
const FINGERPRINT_BYTES: usize = 8;
/// A file is taken for binary when its first this many bytes hold a NUL.
pub const BINARY_SNIFF_BYTES: usize = 8 * 1024;

/// A stable fingerprint of a secret: the first 8 bytes of a BLAKE3 hash (derive-key mode,
/// context [`FINGERPRINT_CONTEXT`]) of the value, as 16 hex digits. The same secret gives the
/// same fingerprint on every run and machine, so reports can be compared; it is not keyed,
/// so a short or guessable secret could be confirmed by hashing candidates (long random
/// tokens cannot). PEM keys are hashed without whitespace, as the provenance store does.
pub fn fingerprint(value: &str) -> String {
    let mut hasher = blake3::Hasher::new_derive_key(FINGERPRINT_CONTEXT);
    hasher.update(canonical_secret(value).as_bytes());
    hasher.finalize().as_bytes()[..FINGERPRINT_BYTES].iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Text that is not worth scanning: a NUL in its first [`BINARY_SNIFF_BYTES`].
pub fn looks_binary(bytes: &[u8]) -> bool {
    bytes[..bytes.len().min(BINARY_SNIFF_BYTES)].contains(&0)
}

/// Secrets in a file's text. In a file the policy names (`credential_file`), a line that is
/// one high-entropy token counts too; elsewhere (every dotfile, a workspace) only known
/// formats and values under secret-looking names do, to keep noise out.
pub fn in_text(text: &str, credential_file: bool) -> Vec<SecretHit> {
    SecretExtractor::new()
        .from_text(text)
        .into_iter()
        .filter(|secret| {
            credential_file
                || counts_outside_credential_files(secret.kind, secret.name.as_deref(), secret.expose_value())
        })
        .map(|secret| SecretHit {
            kind: secret.kind,
            fingerprint: fingerprint(secret.expose_value()),
            name: secret.name.clone(),
            at: secret.location.clone(),
            also_in: Vec::new(),
        })
        .collect()
}

/// Key-name fragments that say "secret" strongly enough outside a credential file.
const STRONG_NAMES: [&str; 9] =
    ["token", "secret", "passw", "apikey", "credential", "privatekey", "accesskey", "authkey", "webhook"];
/// Shortest value of a named secret outside a credential file.
const MIN_LOOSE_NAMED_LEN: usize = 16;

/// Outside the files a rule names (dotfiles, a workspace: scripts and source code) only known
/// formats, URL passwords and values that look like tokens under a name that says secret
/// count; `key = lookup(x)` in a Python file and `token: ${{ secrets.X }}` in a workflow do not.
fn counts_outside_credential_files(kind: SecretKind, name: Option<&str>, value: &str) -> bool {
    match kind {
        kind if kind.is_known_format() => true,
        SecretKind::UrlPassword | SecretKind::Authorization => true,
        SecretKind::Named => {
            let folded: String = name
                .unwrap_or("")
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .map(|c| c.to_ascii_lowercase())
                .collect();
            STRONG_NAMES.iter().any(|marker| folded.contains(marker)) && looks_like_token(value)
        }
        _ => false,
    }
}

/// One run of token characters, long enough, mixing letters and digits (or cases).
fn looks_like_token(value: &str) -> bool {
    let classes = [
        value.bytes().any(|b| b.is_ascii_lowercase()),
        value.bytes().any(|b| b.is_ascii_uppercase()),
        value.bytes().any(|b| b.is_ascii_digit()),
    ];
    value.len() >= MIN_LOOSE_NAMED_LEN
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.+/=~:".contains(&b))
        && !value.starts_with(['/', '.', '~'])
        && classes.iter().filter(|present| **present).count() >= 2
}

/// Secrets in an environment: `(variable, hit)` for every variable whose name says secret
/// (with a value long enough and not obviously benign) or whose value has a known format.
pub fn in_environment(pairs: &[(String, String)]) -> Vec<(String, SecretHit)> {
    SecretExtractor::new()
        .from_pairs(pairs)
        .into_iter()
        .filter_map(|secret| {
            let var = secret.location.strip_prefix("env:")?.to_string();
            let hit = SecretHit {
                kind: secret.kind,
                fingerprint: fingerprint(secret.expose_value()),
                name: secret.name.clone(),
                at: "env".into(),
                also_in: Vec::new(),
            };
            Some((var, hit))
        })
        .collect()
}

/// Shell startup files: read by every shell, so no credential rule can cover them.
pub fn is_shell_startup_file(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    matches!(
        name,
        ".bashrc"
            | ".bash_profile"
            | ".bash_login"
            | ".bash_aliases"
            | ".profile"
            | ".zshrc"
            | ".zshenv"
            | ".zprofile"
            | ".zlogin"
            | ".kshrc"
            | ".mkshrc"
            | "config.fish"
    )
}
