//! The regular expressions that find secret-shaped text: known token formats, PEM blocks,
//! credential positions and key/value shapes.

use std::sync::LazyLock;

use regex::Regex;

use super::SecretKind;

fn pattern(text: &str) -> Regex {
    // The patterns are constants exercised by the tests; a bad one is a build bug.
    Regex::new(text).unwrap_or_else(|error| panic!("provenance pattern {text:?} is invalid: {error}"))
}

/// Known token formats: `(kind, regex)`; the whole match is the secret.
pub(super) static TOKEN_FORMATS: LazyLock<Vec<(SecretKind, Regex)>> = LazyLock::new(|| {
    [
        (SecretKind::AwsAccessKey, r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b"),
        (SecretKind::GithubToken, r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b"),
        (SecretKind::GitlabToken, r"\bglpat-[A-Za-z0-9_-]{20,}"),
        (SecretKind::SlackToken, r"\bxox[baprs]-[A-Za-z0-9-]{10,}"),
        (SecretKind::StripeKey, r"\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,}\b"),
        (SecretKind::GoogleApiKey, r"\bAIza[0-9A-Za-z_-]{35}\b"),
        (SecretKind::NpmToken, r"\bnpm_[A-Za-z0-9]{36}\b"),
        // PyPI API tokens are macaroons: `pypi-` then base64 that starts with `AgE`.
        (SecretKind::PypiToken, r"\bpypi-AgE[A-Za-z0-9_-]{50,}"),
        (SecretKind::AiApiKey, r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{20,}"),
        (SecretKind::Jwt, r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    ]
    .into_iter()
    .map(|(kind, text)| (kind, pattern(text)))
    .collect()
});

/// A PEM private-key block; group 1 is the body.
pub(super) static PEM_BLOCK: LazyLock<Regex> = LazyLock::new(|| {
    pattern(
        r"(?s)-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(.*?)-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",
    )
});

/// Any armoured block (keys, certificates): its lines are not read one by one.
pub(super) static ARMOURED_BLOCK: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"(?s)-----BEGIN [A-Z0-9 ]+-----.*?-----END [A-Z0-9 ]+-----"));

/// A run of non-whitespace: a word of free text.
pub(super) static WORD: LazyLock<Regex> = LazyLock::new(|| pattern(r"\S+"));

/// `scheme://user:password@` (group 2) or `scheme://user@` (group 1 alone).
pub(super) static URL_USERINFO: LazyLock<Regex> =
    LazyLock::new(|| pattern(r#"\b[A-Za-z][A-Za-z0-9+.-]*://([^\s/?#@:'"]*)(?::([^\s/?#@'"]*))?@"#));

/// `Authorization: [scheme] value` (group 1).
pub(super) static AUTHORIZATION: LazyLock<Regex> = LazyLock::new(|| {
    pattern(r#"(?i)\b(?:proxy-)?authorization\s*:\s*(?:(?:bearer|basic|token|bot|apikey)\s+)?([^\s'"]+)"#)
});

/// A bare `Bearer value` (group 1), e.g. in `--oauth2-bearer` scripts or reasons.
pub(super) static BEARER: LazyLock<Regex> = LazyLock::new(|| pattern(r"(?i)\bbearer\s+([A-Za-z0-9._~+/=-]{8,})"));

/// `Name: value` headers and YAML-ish pairs (name group 1, value group 2).
pub(super) static HEADER: LazyLock<Regex> =
    LazyLock::new(|| pattern(r#"(?:^|[\s'"{,=])([A-Za-z_][A-Za-z0-9_.-]*)"?\s*:\s*"?([^\s'",}]+)"#));

/// `name=value` anywhere (name group 1, value group 2): dotenv, `--token=X`, query strings.
pub(super) static ASSIGNMENT: LazyLock<Regex> = LazyLock::new(|| {
    pattern(
        r#"(?:^|[\s;,'"{(?&])(?:export\s+)?-{0,2}([A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*("(?:[^"\\]|\\.)*"|'[^']*'|[^\s'";,&]+)"#,
    )
});

/// A whole line `key = value` / `key: value` / `export KEY=value` (ini, dotenv, YAML).
pub(super) static LINE_PAIR: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*(?:=|:\s)\s*(.*?)\s*$"));

/// `"key": "value"` in JSON (name group 1, value group 2), possibly several per line.
pub(super) static JSON_PAIR: LazyLock<Regex> = LazyLock::new(|| pattern(r#""([^"\\]+)"\s*:\s*"((?:[^"\\]|\\.)*)""#));

/// netrc `password X` (group 1).
pub(super) static NETRC_PASSWORD: LazyLock<Regex> = LazyLock::new(|| pattern(r"(?:^|\s)(?:password|passwd)\s+(\S+)"));

/// pgpass `host:port:db:user:password` (group 1).
pub(super) static PGPASS_LINE: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"^[^:\s#]+:[^:\s]*:[^:\s]*:[^:\s]+:(\S+)\s*$"));

/// A line that is one token.
pub(super) static BARE_TOKEN_LINE: LazyLock<Regex> = LazyLock::new(|| pattern(r"^\s*([A-Za-z0-9_+/.~-]+=*)\s*$"));

/// An option alone (`--token`, `-p`), name group 1.
pub(super) static OPTION_NAME: LazyLock<Regex> = LazyLock::new(|| pattern(r"^--?([A-Za-z][A-Za-z0-9_-]*)$"));

/// `$VAR` / `${VAR}`: a reference the shell did not expand, not a value.
pub(super) static VARIABLE_REFERENCE: LazyLock<Regex> = LazyLock::new(|| pattern(r"^\$\{?[A-Za-z_][A-Za-z0-9_]*\}?$"));
