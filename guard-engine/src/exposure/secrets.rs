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
        .filter(|secret| credential_file || secret.kind != SecretKind::BareToken)
        .map(|secret| SecretHit {
            kind: secret.kind,
            fingerprint: fingerprint(secret.expose_value()),
            name: secret.name.clone(),
            at: secret.location.clone(),
        })
        .collect()
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
