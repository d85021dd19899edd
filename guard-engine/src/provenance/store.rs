//! [`ProvenanceStore`]: keyed fingerprints of learned secrets, where each came from, and
//! redaction of the audit stream.

use std::collections::HashSet;
use std::fmt;
use std::num::NonZeroUsize;
use std::ops::Range;

use lru::LruCache;
use secrecy::{ExposeSecret, SecretBox};

use super::classify::{Found, is_redactable};
use super::extractor::SecretExtractor;
use super::find::{
    canonical, find_in_argv, find_in_pair, find_option_value, find_structured, lookup_candidates, scanned,
};
use super::patterns::WORD;
use super::{DEFAULT_CAPACITY, ExtractedSecret, Fingerprint, MAX_CANDIDATES_PER_CALL, Origin, REDACTED_PREFIX, Use};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provenance::{MAX_LEARNED_PER_CALL, SecretKind};

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
}
