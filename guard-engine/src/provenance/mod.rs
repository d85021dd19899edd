//! Provenance: where a secret came from, and where it went, without keeping it.
//!
//! When a session reads a credential file, the daemon passes the file's text to
//! [`ProvenanceStore::learn_file`]; when it reads a held exec's environment and argv it passes
//! them to [`ProvenanceStore::learn_pairs`] / [`ProvenanceStore::learn_argv`]. The store keeps
//! **keyed fingerprints** (BLAKE3 keyed with a random per-daemon key) of the secret-looking
//! values, never the values. [`ProvenanceStore::check_exec`] then tells which argv elements and
//! environment variables of a later exec carry a known secret, and from which file and record
//! it was learned; [`ProvenanceStore::redact_argv`] and [`ProvenanceStore::redact_text`]
//! replace known secrets and anything that looks like a token before it reaches the audit
//! stream.
//!
//! # What counts as a secret
//!
//! * Known token formats anywhere: AWS access key ids (`AKIA…`, `ASIA…`), GitHub
//!   (`gh[pousr]_…`, `github_pat_…`), GitLab (`glpat-…`), Slack (`xox[baprs]-…`), Stripe,
//!   Google API keys, npm, PyPI (`pypi-AgE…`), `sk-…` AI API keys, JWTs, and PEM private-key blocks (the
//!   fingerprint is of the body without whitespace or `\n` escapes, so the same key read from
//!   a PEM file and from a JSON string matches).
//! * Values in credential positions: URL passwords (`scheme://user:PASS@`), `Authorization:`
//!   header values (`Bearer X`, `Basic X`, `token X`), `curl -u user:PASS`; learned when at
//!   least 8 characters.
//! * Values next to a secret-looking key name (`token`, `secret`, `password`, `passwd`,
//!   `pwd`, `key`, `api`, `auth`, `credential`, `private`, `bearer`, …): dotenv `KEY=VALUE`,
//!   `export KEY=VALUE`, ini `key = value`, YAML `key: value`, JSON `"key": "value"`,
//!   netrc `password X`, pgpass lines, query parameters, `--token=X`, `--token X`, headers
//!   such as `X-Api-Key: X`; an AWS secret key (40 base64 characters under a name mentioning
//!   `secret`) always, others when at least 12 characters and not obviously benign.
//! * In a credential file, a line that is a single high-entropy token of 20+ characters.
//! * Never: strings shorter than the thresholds above, plain words (`production-db`), paths,
//!   numbers, versions and dates, booleans, `$VAR` references, and URLs (unless the key name
//!   says token/secret/password/webhook).
//!
//! Matching a later exec looks at every candidate substring of each argv element and
//! environment value: the whole value, the value after `=`, the structured positions above,
//! and the runs between whitespace, quotes and punctuation. A secret embedded without any
//! delimiter (`abcSECRETdef`) or transformed (base64 of `user:pass`) is not recognised.
//!
//! # Bounds
//!
//! The store keeps at most [`DEFAULT_CAPACITY`] fingerprints, least recently learned or seen
//! evicted first; one `learn_*` call learns at most [`MAX_LEARNED_PER_CALL`] values and
//! every input is scanned up to [`MAX_SCAN_BYTES`], so a huge file cannot flush the store
//! alone or stall the daemon.

mod classify;
mod extractor;
mod find;
mod patterns;
mod store;

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Serialize, Serializer};

pub use self::extractor::SecretExtractor;
pub use self::find::canonical as canonical_secret;
pub use self::store::ProvenanceStore;

/// Fingerprints kept by [`ProvenanceStore::new`].
pub const DEFAULT_CAPACITY: usize = 65_536;
/// Values learned from one `learn_*` call at most.
pub const MAX_LEARNED_PER_CALL: usize = 4_096;
/// Bytes of one text, argv element or environment value that are scanned.
pub const MAX_SCAN_BYTES: usize = 256 * 1024;
/// Candidates fingerprinted by one `check_exec`/`redact_*` call at most.
const MAX_CANDIDATES_PER_CALL: usize = 65_536;
/// Nothing shorter is ever learned, so shorter candidates are not looked up.
const MIN_SECRET_LEN: usize = 8;
/// Learned next to a secret-looking key name from this length.
const MIN_NAMED_SECRET_LEN: usize = 12;
/// Bare high-entropy tokens from this length.
const MIN_TOKEN_LEN: usize = 20;

/// What replaces a secret in the audit stream: `[REDACTED:<first 8 hex of fingerprint>]`.
pub const REDACTED_PREFIX: &str = "[REDACTED:";

/// A keyed BLAKE3 fingerprint of a secret value. Shows and serialises as hex; without the
/// daemon's key it tells nothing about the value.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// The first 8 hex digits, as shown in audit records.
    pub fn short(&self) -> String {
        self.0[..4].iter().map(|byte| format!("{byte:02x}")).collect()
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Fingerprint({})", self.short())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.to_hex())
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

/// Why a value was taken for a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretKind {
    AwsAccessKey,
    AwsSecretKey,
    GithubToken,
    GitlabToken,
    SlackToken,
    StripeKey,
    GoogleApiKey,
    NpmToken,
    PypiToken,
    AiApiKey,
    Jwt,
    PrivateKey,
    /// The password of `scheme://user:password@` or `curl -u user:password`.
    UrlPassword,
    /// A token as the user of `scheme://token@`.
    UrlUserToken,
    /// An `Authorization:` header value or a `Bearer` token.
    Authorization,
    /// A value next to a secret-looking key name.
    Named,
    /// A credential file line that is a single high-entropy token.
    BareToken,
}

impl SecretKind {
    /// Recognised by its shape alone: always a secret, always redacted.
    pub fn is_known_format(self) -> bool {
        matches!(
            self,
            SecretKind::AwsAccessKey
                | SecretKind::AwsSecretKey
                | SecretKind::GithubToken
                | SecretKind::GitlabToken
                | SecretKind::SlackToken
                | SecretKind::StripeKey
                | SecretKind::GoogleApiKey
                | SecretKind::NpmToken
                | SecretKind::PypiToken
                | SecretKind::AiApiKey
                | SecretKind::Jwt
                | SecretKind::PrivateKey
        )
    }
}

/// A secret found by [`SecretExtractor`]. The value is kept in a zeroizing box whose `Debug`
/// prints `[REDACTED]`; it has no `Display` and no `Serialize`.
#[derive(Debug)]
pub struct ExtractedSecret {
    /// The key name it was found under (`AWS_SECRET_ACCESS_KEY`, `password`), if any.
    pub name: Option<String>,
    pub kind: SecretKind,
    /// `argv[3]`, `env:NAME` or `line 4`.
    pub location: String,
    value: SecretString,
}

impl ExtractedSecret {
    /// The secret itself. Named loudly so every use is easy to audit.
    pub fn expose_value(&self) -> &str {
        self.value.expose_secret()
    }
}

/// Where a learned secret came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Origin {
    /// The credential file's path (or `/proc/<pid>/environ`, `argv of <pid>`).
    pub file: String,
    pub reader_pid: u32,
    /// `seq` of the audit record of the read.
    pub record_seq: u64,
    /// Session cgroup id.
    pub session: u64,
    /// The key name the value was found under; filled in by the store when learning.
    pub name: Option<String>,
}

/// A known secret found in an exec.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Use {
    pub origin: Origin,
    /// `argv[3]` or `env:NAME`.
    #[serde(rename = "where")]
    pub where_: String,
    /// First 8 hex digits of the fingerprint, as in `[REDACTED:…]`.
    pub fingerprint_short: String,
}

/// `/proc/<pid>/environ` contents as (name, value) pairs (lossy UTF-8; entries without `=`
/// are skipped).
pub fn split_environ(raw: &[u8]) -> Vec<(String, String)> {
    raw.split(|byte| *byte == 0)
        .filter(|entry| !entry.is_empty())
        .filter_map(|entry| {
            let text = String::from_utf8_lossy(entry);
            let (name, value) = text.split_once('=')?;
            Some((name.to_string(), value.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environ_is_split_into_pairs() {
        let pairs = split_environ(b"A=1\0B=x=y\0broken\0\0");
        assert_eq!(pairs, vec![("A".into(), "1".into()), ("B".into(), "x=y".into())]);
    }
}
