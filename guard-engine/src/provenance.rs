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
//!   Google API keys, npm, `sk-…` AI API keys, JWTs, and PEM private-key blocks (the
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

use std::collections::HashSet;
use std::fmt;
use std::num::NonZeroUsize;
use std::ops::Range;
use std::sync::LazyLock;

use lru::LruCache;
use regex::Regex;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde::{Serialize, Serializer};

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

// ---- patterns ----------------------------------------------------------------------------

fn pattern(text: &str) -> Regex {
    // The patterns are constants exercised by the tests; a bad one is a build bug.
    Regex::new(text).unwrap_or_else(|error| panic!("provenance pattern {text:?} is invalid: {error}"))
}

/// Known token formats: `(kind, regex)`; the whole match is the secret.
static TOKEN_FORMATS: LazyLock<Vec<(SecretKind, Regex)>> = LazyLock::new(|| {
    [
        (SecretKind::AwsAccessKey, r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b"),
        (SecretKind::GithubToken, r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b"),
        (SecretKind::GitlabToken, r"\bglpat-[A-Za-z0-9_-]{20,}"),
        (SecretKind::SlackToken, r"\bxox[baprs]-[A-Za-z0-9-]{10,}"),
        (SecretKind::StripeKey, r"\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,}\b"),
        (SecretKind::GoogleApiKey, r"\bAIza[0-9A-Za-z_-]{35}\b"),
        (SecretKind::NpmToken, r"\bnpm_[A-Za-z0-9]{36}\b"),
        (SecretKind::AiApiKey, r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{20,}"),
        (SecretKind::Jwt, r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    ]
    .into_iter()
    .map(|(kind, text)| (kind, pattern(text)))
    .collect()
});

/// A PEM private-key block; group 1 is the body.
static PEM_BLOCK: LazyLock<Regex> = LazyLock::new(|| {
    pattern(
        r"(?s)-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(.*?)-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",
    )
});

/// Any armoured block (keys, certificates): its lines are not read one by one.
static ARMOURED_BLOCK: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"(?s)-----BEGIN [A-Z0-9 ]+-----.*?-----END [A-Z0-9 ]+-----"));

/// A run of non-whitespace: a word of free text.
static WORD: LazyLock<Regex> = LazyLock::new(|| pattern(r"\S+"));

/// `scheme://user:password@` (group 2) or `scheme://user@` (group 1 alone).
static URL_USERINFO: LazyLock<Regex> =
    LazyLock::new(|| pattern(r#"\b[A-Za-z][A-Za-z0-9+.-]*://([^\s/?#@:'"]*)(?::([^\s/?#@'"]*))?@"#));

/// `Authorization: [scheme] value` (group 1).
static AUTHORIZATION: LazyLock<Regex> = LazyLock::new(|| {
    pattern(r#"(?i)\b(?:proxy-)?authorization\s*:\s*(?:(?:bearer|basic|token|bot|apikey)\s+)?([^\s'"]+)"#)
});

/// A bare `Bearer value` (group 1), e.g. in `--oauth2-bearer` scripts or reasons.
static BEARER: LazyLock<Regex> = LazyLock::new(|| pattern(r"(?i)\bbearer\s+([A-Za-z0-9._~+/=-]{8,})"));

/// `Name: value` headers and YAML-ish pairs (name group 1, value group 2).
static HEADER: LazyLock<Regex> =
    LazyLock::new(|| pattern(r#"(?:^|[\s'"{,=])([A-Za-z_][A-Za-z0-9_.-]*)"?\s*:\s*"?([^\s'",}]+)"#));

/// `name=value` anywhere (name group 1, value group 2): dotenv, `--token=X`, query strings.
static ASSIGNMENT: LazyLock<Regex> = LazyLock::new(|| {
    pattern(
        r#"(?:^|[\s;,'"{(?&])(?:export\s+)?-{0,2}([A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*("(?:[^"\\]|\\.)*"|'[^']*'|[^\s'";,&]+)"#,
    )
});

/// A whole line `key = value` / `key: value` / `export KEY=value` (ini, dotenv, YAML).
static LINE_PAIR: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*(?:=|:\s)\s*(.*?)\s*$"));

/// `"key": "value"` in JSON (name group 1, value group 2), possibly several per line.
static JSON_PAIR: LazyLock<Regex> = LazyLock::new(|| pattern(r#""([^"\\]+)"\s*:\s*"((?:[^"\\]|\\.)*)""#));

/// netrc `password X` (group 1).
static NETRC_PASSWORD: LazyLock<Regex> = LazyLock::new(|| pattern(r"(?:^|\s)(?:password|passwd)\s+(\S+)"));

/// pgpass `host:port:db:user:password` (group 1).
static PGPASS_LINE: LazyLock<Regex> = LazyLock::new(|| pattern(r"^[^:\s#]+:[^:\s]*:[^:\s]*:[^:\s]+:(\S+)\s*$"));

/// A line that is one token.
static BARE_TOKEN_LINE: LazyLock<Regex> = LazyLock::new(|| pattern(r"^\s*([A-Za-z0-9_+/.~-]+=*)\s*$"));

/// An option alone (`--token`, `-p`), name group 1.
static OPTION_NAME: LazyLock<Regex> = LazyLock::new(|| pattern(r"^--?([A-Za-z][A-Za-z0-9_-]*)$"));

/// `$VAR` / `${VAR}`: a reference the shell did not expand, not a value.
static VARIABLE_REFERENCE: LazyLock<Regex> = LazyLock::new(|| pattern(r"^\$\{?[A-Za-z_][A-Za-z0-9_]*\}?$"));

// ---- classification ----------------------------------------------------------------------

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
fn is_secret_name(name: &str) -> bool {
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

fn character_classes(value: &str) -> usize {
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

fn is_aws_secret_key(name: Option<&str>, value: &str) -> bool {
    name.is_some_and(|name| name.to_ascii_lowercase().contains("secret"))
        && value.len() == 40
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"/+=".contains(&b))
}

/// Worth a fingerprint: the store learns it.
fn is_learnable(found: &Found, value: &str) -> bool {
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
fn is_redactable(found: &Found, value: &str) -> bool {
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

// ---- finding -----------------------------------------------------------------------------

/// A secret-shaped span of some text.
#[derive(Clone, Debug)]
struct Found {
    range: Range<usize>,
    kind: SecretKind,
    name: Option<String>,
}

/// The byte prefix of `text` that is scanned, cut at a character boundary.
fn scanned(text: &str) -> &str {
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
fn find_structured(text: &str, found: &mut Vec<Found>) {
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
fn find_in_file(text: &str) -> Vec<(String, Found)> {
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
        let comment = trimmed.starts_with('#') || trimmed.starts_with(';') || trimmed.starts_with("//");
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
fn find_in_pair(name: &str, value: &str) -> Vec<Found> {
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
fn find_in_argv<S: AsRef<str>>(argv: &[S]) -> Vec<Vec<Found>> {
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
fn find_option_value(option: &str, value: &str, found: &mut Vec<Found>) {
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
fn lookup_candidates(text: &str, found: &[Found]) -> Vec<Range<usize>> {
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
fn canonical(candidate: &str) -> std::borrow::Cow<'_, str> {
    match PEM_BLOCK.captures(candidate).and_then(|captures| captures.get(1)) {
        Some(body) => std::borrow::Cow::Owned(
            body.as_str().replace("\\n", "").replace("\\r", "").chars().filter(|c| !c.is_whitespace()).collect(),
        ),
        None => std::borrow::Cow::Borrowed(candidate),
    }
}

// ---- extractor ---------------------------------------------------------------------------

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

/// The learnable finds, deduplicated by value, at most [`MAX_LEARNED_PER_CALL`].
fn collect_learnable<'a>(finds: impl Iterator<Item = (String, &'a str, Found)>) -> Vec<ExtractedSecret> {
    let mut secrets: Vec<ExtractedSecret> = Vec::new();
    let mut seen: HashSet<blake3::Hash> = HashSet::new();
    for (location, text, found) in finds {
        let Some(value) = text.get(found.range.clone()) else {
            continue;
        };
        if !is_learnable(&found, value) {
            continue;
        }
        // Deduplicate without keeping a second copy of the value around.
        if !seen.insert(blake3::hash(canonical(value).as_bytes())) {
            continue;
        }
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

// ---- store -------------------------------------------------------------------------------

/// Keyed fingerprints of learned secrets and where each came from.
pub struct ProvenanceStore {
    key: SecretBox<[u8; 32]>,
    known: LruCache<Fingerprint, Origin>,
    extractor: SecretExtractor,
}

impl fmt::Debug for ProvenanceStore {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("ProvenanceStore")
            .field("key", &"[REDACTED]")
            .field("fingerprints", &self.known.len())
            .field("capacity", &self.known.cap())
            .finish()
    }
}

impl ProvenanceStore {
    /// A store keyed with `key` (the daemon passes 32 random bytes, new for each run).
    pub fn new(key: [u8; 32]) -> Self {
        Self::with_capacity(key, DEFAULT_CAPACITY)
    }

    /// At most `capacity` fingerprints (at least one).
    pub fn with_capacity(key: [u8; 32], capacity: usize) -> Self {
        Self {
            key: SecretBox::new(Box::new(key)),
            known: LruCache::new(NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN)),
            extractor: SecretExtractor,
        }
    }

    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.known.cap().get()
    }

    /// The keyed fingerprint of a value as the store would learn it.
    pub fn fingerprint(&self, value: &str) -> Fingerprint {
        Fingerprint(*blake3::keyed_hash(self.key.expose_secret(), canonical(value).as_bytes()).as_bytes())
    }

    /// Learns the secrets in a credential file's text; returns how many were new.
    pub fn learn_file(&mut self, text: &str, origin: &Origin) -> usize {
        let secrets = self.extractor.from_text(text);
        self.learn(secrets, origin)
    }

    /// Learns the secrets in environment pairs; returns how many were new.
    pub fn learn_pairs<N: AsRef<str>, V: AsRef<str>>(&mut self, env: &[(N, V)], origin: &Origin) -> usize {
        let secrets = self.extractor.from_pairs(env);
        self.learn(secrets, origin)
    }

    /// Learns the secrets in argv; returns how many were new.
    pub fn learn_argv<S: AsRef<str>>(&mut self, argv: &[S], origin: &Origin) -> usize {
        let secrets = self.extractor.from_argv(argv);
        self.learn(secrets, origin)
    }

    fn learn(&mut self, secrets: Vec<ExtractedSecret>, origin: &Origin) -> usize {
        let mut new = 0;
        for secret in secrets {
            let fingerprint = self.fingerprint(secret.expose_value());
            // Already known: keep the first origin (where it was first seen), refresh its age.
            if self.known.get(&fingerprint).is_some() {
                continue;
            }
            let origin = Origin { name: secret.name.or_else(|| origin.name.clone()), ..origin.clone() };
            self.known.put(fingerprint, origin);
            new += 1;
        }
        new
    }

    /// Where a fingerprint was learned, if it is known (does not refresh its age).
    pub fn origin(&self, fingerprint: &Fingerprint) -> Option<&Origin> {
        self.known.peek(fingerprint)
    }

    /// Known secrets in an exec's argv and environment, one per (place, secret).
    pub fn check_exec<S: AsRef<str>, N: AsRef<str>, V: AsRef<str>>(&mut self, argv: &[S], env: &[(N, V)]) -> Vec<Use> {
        let mut budget = MAX_CANDIDATES_PER_CALL;
        let mut uses = Vec::new();
        let mut seen: HashSet<(String, Fingerprint)> = HashSet::new();
        let mut places: Vec<(String, &str, Vec<Found>)> = argv
            .iter()
            .zip(find_in_argv(argv))
            .enumerate()
            .map(|(index, (element, found))| (format!("argv[{index}]"), scanned(element.as_ref()), found))
            .collect();
        for (name, value) in env {
            let (name, value) = (name.as_ref(), scanned(value.as_ref()));
            places.push((format!("env:{name}"), value, find_in_pair(name, value)));
        }
        for (place, text, found) in places {
            for range in lookup_candidates(text, &found) {
                if budget == 0 {
                    return uses;
                }
                budget -= 1;
                let Some(candidate) = text.get(range) else {
                    continue;
                };
                let fingerprint = self.fingerprint(candidate);
                if let Some(origin) = self.known.get(&fingerprint)
                    && seen.insert((place.clone(), fingerprint))
                {
                    uses.push(Use {
                        origin: origin.clone(),
                        where_: place.clone(),
                        fingerprint_short: fingerprint.short(),
                    });
                }
            }
        }
        uses
    }

    /// argv with every known secret and every value that looks like a token or sits in a
    /// credential position replaced by `[REDACTED:<fingerprint prefix>]`.
    pub fn redact_argv<S: AsRef<str>>(&self, argv: &[S]) -> Vec<String> {
        let mut budget = MAX_CANDIDATES_PER_CALL;
        argv.iter()
            .zip(find_in_argv(argv))
            .map(|(element, found)| self.redact_with(element.as_ref(), &found, &mut budget))
            .collect()
    }

    /// Free text (a reason, a command line) with secrets replaced as in
    /// [`ProvenanceStore::redact_argv`]. Words are also read as argv, so `--token X` is caught.
    pub fn redact_text(&self, text: &str) -> String {
        let mut found = Vec::new();
        find_structured(scanned(text), &mut found);
        // Whitespace-separated words as argv elements, with their offsets in `text`.
        let words: Vec<Range<usize>> = WORD.find_iter(scanned(text)).map(|word| word.range()).collect();
        for pair in words.windows(2) {
            let (option, value) = (&text[pair[0].clone()], pair[1].clone());
            let mut here = Vec::new();
            find_option_value(option.trim_matches(['"', '\'']), &text[value.clone()], &mut here);
            found.extend(here.into_iter().map(|mut item| {
                item.range = item.range.start + value.start..item.range.end + value.start;
                item
            }));
        }
        let mut budget = MAX_CANDIDATES_PER_CALL;
        self.redact_with(text, &found, &mut budget)
    }

    fn redact_with(&self, text: &str, found: &[Found], budget: &mut usize) -> String {
        let text_scanned = scanned(text);
        let mut spans: Vec<Range<usize>> = found
            .iter()
            .filter(|item| text_scanned.get(item.range.clone()).is_some_and(|value| is_redactable(item, value)))
            .map(|item| item.range.clone())
            .collect();
        for range in lookup_candidates(text_scanned, found) {
            if *budget == 0 {
                break;
            }
            *budget -= 1;
            if text_scanned
                .get(range.clone())
                .is_some_and(|candidate| self.known.contains(&self.fingerprint(candidate)))
            {
                spans.push(range);
            }
        }
        if text.len() > text_scanned.len() {
            // Not scanned: not shown either.
            spans.push(text_scanned.len()..text.len());
        }
        replace_spans(text, spans, |span| format!("{REDACTED_PREFIX}{}]", self.fingerprint(span).short()))
    }
}

/// `text` with the union of `spans` replaced, each merged span by `label(span text)`.
fn replace_spans(text: &str, mut spans: Vec<Range<usize>>, label: impl Fn(&str) -> String) -> String {
    spans.retain(|span| !span.is_empty() && text.get(span.clone()).is_some());
    if spans.is_empty() {
        return text.to_string();
    }
    spans.sort_by_key(|span| (span.start, std::cmp::Reverse(span.end)));
    let mut merged: Vec<Range<usize>> = Vec::new();
    for span in spans {
        match merged.last_mut() {
            Some(last) if span.start < last.end => last.end = last.end.max(span.end),
            _ => merged.push(span),
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut position = 0;
    for span in merged {
        out.push_str(&text[position..span.start]);
        out.push_str(&label(&text[span.clone()]));
        position = span.end;
    }
    out.push_str(&text[position..]);
    out
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

    const KEY: [u8; 32] = [7; 32];
    // Test fixtures shaped like real secrets (none is live).
    const API_TOKEN: &str = "rlwy_9fK2mQx7Lp3ZsV8tN4bW1cYe6HdJ0aGu";
    const GITHUB_TOKEN: &str = "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8";
    const AWS_ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
    const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn origin(file: &str, seq: u64) -> Origin {
        Origin { file: file.into(), reader_pid: 4321, record_seq: seq, session: 77, name: None }
    }

    fn no_env() -> &'static [(String, String)] {
        &[]
    }

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|word| word.to_string()).collect()
    }

    fn extracted_values(secrets: &[ExtractedSecret]) -> Vec<&str> {
        secrets.iter().map(ExtractedSecret::expose_value).collect()
    }

    #[test]
    fn dotenv_token_passed_to_curl_is_flagged_and_redacted() {
        let mut store = ProvenanceStore::new(KEY);
        let dotenv = format!("# railway\nexport RAILWAY_TOKEN=\"{API_TOKEN}\"\nPORT=8080\n");
        assert_eq!(store.learn_file(&dotenv, &origin("/work/app/.env", 41)), 1);

        let command = argv(&[
            "curl",
            "-H",
            &format!("Authorization: Bearer {API_TOKEN}"),
            "https://api.example.com/v1/volumes/x",
            "-X",
            "DELETE",
        ]);
        let uses = store.check_exec(&command, no_env());
        assert_eq!(uses.len(), 1, "{uses:?}");
        let used = &uses[0];
        assert_eq!(used.where_, "argv[2]");
        assert_eq!(used.origin.file, "/work/app/.env");
        assert_eq!(used.origin.record_seq, 41);
        assert_eq!(used.origin.reader_pid, 4321);
        assert_eq!(used.origin.name.as_deref(), Some("RAILWAY_TOKEN"));
        assert_eq!(used.fingerprint_short, store.fingerprint(API_TOKEN).short());

        let redacted = store.redact_argv(&command);
        assert_eq!(redacted[2], format!("Authorization: Bearer [REDACTED:{}]", used.fingerprint_short));
        assert_eq!(redacted[3], "https://api.example.com/v1/volumes/x");
        assert_eq!(redacted[5], "DELETE");
        assert!(!redacted.concat().contains(API_TOKEN));

        let text = format!("exec of /usr/bin/curl held: curl -H \"Authorization: Bearer {API_TOKEN}\" -X DELETE");
        let redacted_text = store.redact_text(&text);
        assert!(!redacted_text.contains(API_TOKEN), "{redacted_text}");
        assert!(redacted_text.contains("-X DELETE"));
    }

    #[test]
    fn secret_in_an_environment_variable_is_flagged() {
        let mut store = ProvenanceStore::new(KEY);
        store.learn_file(
            &format!("[default]\naws_access_key_id = {AWS_ACCESS_KEY}\naws_secret_access_key = {AWS_SECRET}\n"),
            &origin("/home/a/.aws/credentials", 9),
        );
        assert_eq!(store.len(), 2);
        let env =
            vec![("PATH".to_string(), "/usr/bin:/bin".to_string()), ("SOME_VAR".to_string(), AWS_SECRET.to_string())];
        let uses = store.check_exec(&argv(&["aws", "s3", "ls"]), &env);
        assert_eq!(uses.len(), 1, "{uses:?}");
        assert_eq!(uses[0].where_, "env:SOME_VAR");
        assert_eq!(uses[0].origin.name.as_deref(), Some("aws_secret_access_key"));
        assert_eq!(uses[0].origin.file, "/home/a/.aws/credentials");
    }

    #[test]
    fn learning_from_env_and_argv_then_finding_the_use() {
        let mut store = ProvenanceStore::new(KEY);
        let env = [("GITHUB_TOKEN", GITHUB_TOKEN), ("HOME", "/home/agent"), ("LANG", "C.UTF-8")];
        assert_eq!(store.learn_pairs(&env, &origin("/proc/12/environ", 3)), 1);
        assert_eq!(store.learn_argv(&["mysql", "--password", "s3cr3t-Passw0rd!"], &origin("argv of 13", 4)), 1);
        let uses = store.check_exec(
            &["git", "clone", &format!("https://x-access-token:{GITHUB_TOKEN}@github.com/o/r.git")],
            no_env(),
        );
        assert_eq!(uses.len(), 1);
        assert_eq!(uses[0].where_, "argv[2]");
        assert_eq!(uses[0].origin.name.as_deref(), Some("GITHUB_TOKEN"));
        let uses = store.check_exec(&["psql", "-c", "select 1", "--password=s3cr3t-Passw0rd!"], no_env());
        assert_eq!(uses.len(), 1);
        assert_eq!(uses[0].origin.record_seq, 4);
    }

    #[test]
    fn non_secrets_are_neither_learned_nor_flagged() {
        let mut store = ProvenanceStore::new(KEY);
        let benign = "\
NAME=alice
PORT=8080
DEBUG=true
LOG_LEVEL=info
HOME_DIR=/home/alice/projects/web
GREETING=hello-world-example-text
API_VERSION=2024-01-15
API_URL=https://api.example.com/v1
KEY_FILE=/etc/ssl/private/server.key
PASSWORD=short
AUTH_MODE=oauth-device-flow
COMMIT=3f2a9c1d7e8b4a6f0c5d2e1b9a8f7c6d5e4b3a21
";
        let learned: Vec<String> = SecretExtractor::new()
            .from_text(benign)
            .iter()
            .map(|secret| format!("{}: {}", secret.location, secret.expose_value()))
            .collect();
        assert!(learned.is_empty(), "{learned:?}");
        assert_eq!(store.learn_file(benign, &origin("/work/.env", 1)), 0);
        assert!(store.is_empty());
        let command = argv(&["deploy", "--region", "us-east-1", "--name", "production-database", "--port=5432"]);
        assert!(store.check_exec(&command, no_env()).is_empty());
        assert_eq!(store.redact_argv(&command), command);
        let message = argv(&["git", "commit", "-m", "fix auth: handle expired tokens gracefully"]);
        assert_eq!(store.redact_argv(&message), message);
    }

    #[test]
    fn keyed_fingerprints_differ_between_keys() {
        let first = ProvenanceStore::new([1; 32]);
        let second = ProvenanceStore::new([2; 32]);
        assert_ne!(first.fingerprint(API_TOKEN), second.fingerprint(API_TOKEN));
        assert_eq!(first.fingerprint(API_TOKEN), ProvenanceStore::new([1; 32]).fingerprint(API_TOKEN));
        assert_ne!(first.fingerprint(API_TOKEN), first.fingerprint(GITHUB_TOKEN));
        // Not a plain hash of the value either.
        assert_ne!(first.fingerprint(API_TOKEN).0, *blake3::hash(API_TOKEN.as_bytes()).as_bytes());
    }

    #[test]
    fn the_store_stays_bounded() {
        let mut store = ProvenanceStore::with_capacity(KEY, 16);
        let mut text = String::new();
        for index in 0..100 {
            text.push_str(&format!("TOKEN_{index}=Zx9{index:04}qWv3Lm8Rt2Yp6Kd1\n"));
        }
        let learned = store.learn_file(&text, &origin("/f", 1));
        assert_eq!(learned, 100);
        assert_eq!(store.len(), 16);
        assert_eq!(store.capacity(), 16);
        // The most recent ones are kept.
        assert!(store.origin(&store.fingerprint("Zx90099qWv3Lm8Rt2Yp6Kd1")).is_some());
        assert!(store.origin(&store.fingerprint("Zx90000qWv3Lm8Rt2Yp6Kd1")).is_none());

        let mut huge = String::new();
        for index in 0..(MAX_LEARNED_PER_CALL + 10) {
            huge.push_str(&format!("SECRET_{index}=Qq7{index:06}Hh2Jj4Kk6Ll8\n"));
        }
        let secrets = SecretExtractor::new().from_text(&huge);
        assert_eq!(secrets.len(), MAX_LEARNED_PER_CALL);
    }

    #[test]
    fn values_never_appear_in_debug_display_or_serde_output() {
        let mut store = ProvenanceStore::new(KEY);
        let text = format!("API_TOKEN={API_TOKEN}\n");
        store.learn_file(&text, &origin("/e/.env", 5));
        let secrets = SecretExtractor::new().from_text(&text);
        assert_eq!(extracted_values(&secrets), vec![API_TOKEN]);
        let uses = store.check_exec(&["x", API_TOKEN], no_env());
        assert_eq!(uses.len(), 1);
        let fingerprint = store.fingerprint(API_TOKEN);
        let outputs = [
            format!("{store:?}"),
            format!("{secrets:?}"),
            format!("{uses:?}"),
            format!("{fingerprint:?} {fingerprint}"),
            serde_json::to_string(&uses).unwrap_or_default(),
            serde_json::to_string(&fingerprint).unwrap_or_default(),
            serde_json::to_string(&secrets[0].kind).unwrap_or_default(),
        ];
        for output in outputs {
            assert!(!output.contains(API_TOKEN), "value leaked: {output}");
            assert!(!output.contains("rlwy_"), "value leaked: {output}");
        }
        assert!(format!("{store:?}").contains("[REDACTED]"));
        assert!(serde_json::to_string(&uses).unwrap_or_default().contains("\"where\":\"argv[1]\""));
    }

    #[test]
    fn file_formats_are_understood() {
        let pem_body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\nVJTUt9Us8cKBwQ2n3k4Qxyz";
        let text = format!(
            "export DB_PASSWORD='c0rrect-h0rse-Battery'\n\
             {{\"client_secret\": \"Gq8Wz3Xv5Nt2Lm9Rp4Ks7Hd1\", \"client_id\": \"12345\"}}\n\
             api_key: Yt5Rd2Fg8Hj3Kl6Mn9Bv4Cx\n\
             machine api.heroku.com login me@example.com password Hk4Lp9Zt2Wq7Xm3Rv8Ns\n\
             db.internal:5432:app:admin:pgP4ss-W0rd-9876\n\
             slack={}\n\
             {GITHUB_TOKEN}\n\
             jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U\n\
             -----BEGIN OPENSSH PRIVATE KEY-----\n{pem_body}\n-----END OPENSSH PRIVATE KEY-----\n",
            "xoxb-123456789012-abcdefABCDEF"
        );
        let secrets = SecretExtractor::new().from_text(&text);
        let values = extracted_values(&secrets);
        for expected in [
            "c0rrect-h0rse-Battery",
            "Gq8Wz3Xv5Nt2Lm9Rp4Ks7Hd1",
            "Yt5Rd2Fg8Hj3Kl6Mn9Bv4Cx",
            "Hk4Lp9Zt2Wq7Xm3Rv8Ns",
            "pgP4ss-W0rd-9876",
            "xoxb-123456789012-abcdefABCDEF",
            GITHUB_TOKEN,
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        ] {
            assert!(values.contains(&expected), "missing {expected} in {values:?}");
        }
        assert!(!values.contains(&"12345"));
        assert!(!values.iter().any(|value| value.contains("me@example.com")));
        let private_key = secrets.iter().find(|secret| secret.kind == SecretKind::PrivateKey);
        assert!(private_key.is_some(), "{secrets:?}");

        // The same key as a JSON string (escaped newlines) fingerprints the same.
        let mut store = ProvenanceStore::new(KEY);
        store.learn_file(&text, &origin("/home/a/.ssh/id_ed25519", 2));
        let escaped = format!(
            "-----BEGIN OPENSSH PRIVATE KEY-----\\n{}\\n-----END OPENSSH PRIVATE KEY-----\\n",
            pem_body.replace('\n', "\\n")
        );
        let uses = store.check_exec(no_env_argv(), &[("DEPLOY_KEY", escaped.as_str())]);
        assert_eq!(uses.len(), 1, "{uses:?}");
        assert_eq!(uses[0].where_, "env:DEPLOY_KEY");
    }

    fn no_env_argv() -> &'static [&'static str] {
        &["ssh-add", "-"]
    }

    #[test]
    fn known_formats_and_credential_positions_are_redacted_even_when_unknown() {
        let store = ProvenanceStore::new(KEY);
        let command = argv(&[
            "tool",
            &format!("--token={API_TOKEN}"),
            "--password",
            "hunter2",
            "-u",
            "admin:letmein99",
            "-H",
            "X-Api-Key: Pz8Lq3Wm6Rt1Yv5Nb2",
            AWS_ACCESS_KEY,
            "https://deploy:Sup3rS3cret@example.com/path?access_token=Mn4Bv7Cx1Zq8Wr5Ty2&page=2",
            "sk-learn-something-long-enough-here",
        ]);
        let redacted = store.redact_argv(&command);
        let joined = redacted.join(" ");
        for secret in [
            API_TOKEN,
            "hunter2",
            "letmein99",
            "Pz8Lq3Wm6Rt1Yv5Nb2",
            AWS_ACCESS_KEY,
            "Sup3rS3cret",
            "Mn4Bv7Cx1Zq8Wr5Ty2",
        ] {
            assert!(!joined.contains(secret), "{secret} not redacted: {joined}");
        }
        assert!(redacted[1].starts_with("--token=[REDACTED:"));
        assert_eq!(redacted[2], "--password");
        assert!(redacted[5].starts_with("admin:[REDACTED:"));
        assert!(redacted[9].starts_with("https://deploy:[REDACTED:"));
        assert!(redacted[9].ends_with("&page=2"));
        assert_eq!(redacted[10], "sk-learn-something-long-enough-here");
        assert_eq!(redacted[0], "tool");
    }

    #[test]
    fn key_and_certificate_bodies_are_not_learned_line_by_line() {
        let text = "\
-----BEGIN CERTIFICATE-----
MIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBaMQswCQYDVQQGEwJJ
RTESMBAGA1UEChMJQmFsdGltb3JlMRMwEQYDVQQLEwpDeWJlclRydXN0MSIwIAYD
-----END CERTIFICATE-----
-----BEGIN RSA PRIVATE KEY-----
MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi0k8bD1X0Nv4HN0oKLFgO5dTxW
Ww9Xn6qH2y0bB1c8jdq3XpZ0tQd1F8s2xN5Y3R6vK8mJ0hG7fL4eC9bA2uP1oI3n
-----END RSA PRIVATE KEY-----
";
        let secrets = SecretExtractor::new().from_text(text);
        let kinds: Vec<SecretKind> = secrets.iter().map(|secret| secret.kind).collect();
        assert_eq!(kinds, vec![SecretKind::PrivateKey]);
    }

    #[test]
    fn headers_json_bodies_and_free_text_are_redacted() {
        let store = ProvenanceStore::new(KEY);
        let command = argv(&[
            "curl",
            "--header=X-Api-Key:Pz8Lq3Wm6Rt1Yv5Nb2",
            "-d",
            "{\"password\":\"Tr0ub4dor&3xyz\",\"user\":\"bob\"}",
        ]);
        let redacted = store.redact_argv(&command);
        assert!(!redacted[1].contains("Pz8Lq3Wm6Rt1Yv5Nb2"), "{redacted:?}");
        assert!(!redacted[3].contains("Tr0ub4dor"), "{redacted:?}");
        assert!(redacted[3].contains("\"user\":\"bob\""), "{redacted:?}");

        let text = format!("ran deploy --token {API_TOKEN} --region eu-west-1 with DB_PASSWORD=hunter2#x");
        let redacted = store.redact_text(&text);
        assert!(!redacted.contains(API_TOKEN) && !redacted.contains("hunter2"), "{redacted}");
        assert!(redacted.starts_with("ran deploy --token [REDACTED:"), "{redacted}");
        assert!(redacted.contains("--region eu-west-1"), "{redacted}");
    }

    #[test]
    fn environ_is_split_into_pairs() {
        let pairs = split_environ(b"A=1\0B=x=y\0broken\0\0");
        assert_eq!(pairs, vec![("A".into(), "1".into()), ("B".into(), "x=y".into())]);
    }

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
