//! Credential exposure: which credentials a user (or an agent session) can reach, and whether
//! the policy protects each one. The pure half of `guard exposure`; the daemon crate walks the
//! file system and `/proc` and hands what it read to the stages here:
//!
//! * [`secrets`]: well-known token formats and secret assignments in a text or an
//!   environment, each reported by kind and [`secrets::fingerprint`], never by value;
//! * [`access`]: may a uid with these groups read a file, by mode bits and ownership;
//! * [`protection`]: which credential rule of the compiled policy covers a path, if any;
//! * [`render`]: the report as text for people and as JSON for machines.
//!
//! A [`Report`]'s [`Report::exit_status`] is 1 when something the user can read is not
//! protected by an enforcing rule, so CI can gate on it.

pub mod access;
pub mod protection;
pub mod render;
pub mod secrets;

#[cfg(test)]
mod tests;

use serde::Serialize;

use crate::policy::Mode;
use crate::provenance::SecretKind;

/// Exit status when a readable finding is unprotected.
pub const EXIT_EXPOSED: u8 = 1;
/// Exit status for usage and I/O errors (unknown user, unreadable policy, no such session).
pub const EXIT_ERROR: u8 = 2;

/// One secret inside a finding: what kind it is and a fingerprint to recognise it by.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SecretHit {
    pub kind: SecretKind,
    /// [`secrets::fingerprint`] of the value: 16 hex digits, the same on every run and host.
    pub fingerprint: String,
    /// The key name it was found under (`GITHUB_TOKEN`, `aws_secret_access_key`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `line 4`, `private key`, or `env` for environment variables.
    pub at: String,
    /// Other findings holding the same secret (same fingerprint), by [`Location::label`]:
    /// where a session's environment variable came from, or copies of one token.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also_in: Vec<String>,
}

/// Where a finding is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Location {
    File {
        path: String,
        /// The file a symlink at `path` leads to (what an open of `path` reads).
        #[serde(skip_serializing_if = "Option::is_none")]
        link_target: Option<String>,
    },
    /// A variable in the environment of one or more session processes.
    Env { var: String, pids: Vec<u32>, commands: Vec<String> },
}

impl Location {
    /// The file path, or `env NAME` for environment findings (for sorting and text).
    pub fn label(&self) -> String {
        match self {
            Location::File { path, link_target: Some(target) } => format!("{path} -> {target}"),
            Location::File { path, link_target: None } => path.clone(),
            Location::Env { var, .. } => format!("env {var}"),
        }
    }
}

/// How a finding was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FoundBy {
    /// A path the policy's credential rules name.
    PolicyPath,
    /// A file the home scan met whose name a credential rule names.
    PolicyName,
    /// Token formats in a dotfile of the home.
    HomeScan,
    /// Token formats in a file of the session's workspace.
    WorkspaceScan,
    /// A secret in the environment of a session process.
    SessionEnv,
}

/// What the policy does about a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// An enforcing credential rule denies reads (except by the rule's consumers).
    Protected,
    /// A monitoring rule records reads but lets them happen.
    Monitored,
    /// No rule covers it.
    Unprotected,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Protection {
    pub status: Status,
    /// The rule's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// What of the rule matched: `path ~/.aws/credentials`, `name .env`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched: Option<String>,
    /// Programs the rule lets read the file anyway.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<String>,
    /// Anything else a person should know (why an environment cannot be protected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Protection {
    pub fn unprotected(note: Option<String>) -> Self {
        Protection { status: Status::Unprotected, rule: None, mode: None, matched: None, consumers: Vec::new(), note }
    }
}

/// Can the user read it?
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Readable {
    pub readable: bool,
    /// `root`, `owner`, `group 27`, `other`, `not searchable: /srv`, `session's own environment`.
    pub why: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub location: Location,
    pub found_by: Vec<FoundBy>,
    pub readable: Readable,
    pub protection: Protection,
    /// The secrets recognised in it (a file a rule names may hold none we recognise).
    pub secrets: Vec<SecretHit>,
    /// What to do about an exposed finding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
}

impl Finding {
    /// Readable and not protected by an enforcing rule: what makes the exit status 1.
    pub fn is_exposed(&self) -> bool {
        self.readable.readable && self.protection.status != Status::Protected
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub findings: usize,
    pub protected: usize,
    pub monitored: usize,
    pub unprotected: usize,
    /// Readable by the user and not protected by an enforcing rule.
    pub exposed: usize,
}

/// The whole answer of `guard exposure`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    pub user: String,
    pub uid: u32,
    pub home: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    /// A policy file, or `builtin`.
    pub policy: String,
    pub findings: Vec<Finding>,
    pub summary: Summary,
    /// Limits met during the scan (skipped files, truncated walks, what is not evaluated).
    pub notes: Vec<String>,
}

impl Report {
    /// Sorts the findings (files by path, then environment variables) and counts them.
    #[allow(clippy::too_many_arguments, reason = "a plain constructor of the report's fields")]
    pub fn new(
        user: String,
        uid: u32,
        home: String,
        session: Option<String>,
        workspace: Option<String>,
        policy: String,
        mut findings: Vec<Finding>,
        notes: Vec<String>,
    ) -> Self {
        findings.sort_by(|a, b| {
            let env = |f: &Finding| matches!(f.location, Location::Env { .. });
            (env(a), a.location.label()).cmp(&(env(b), b.location.label()))
        });
        link_copies(&mut findings);
        let count = |status| findings.iter().filter(|f| f.protection.status == status).count();
        let summary = Summary {
            findings: findings.len(),
            protected: count(Status::Protected),
            monitored: count(Status::Monitored),
            unprotected: count(Status::Unprotected),
            exposed: findings.iter().filter(|f| f.is_exposed()).count(),
        };
        Report { user, uid, home, session, workspace, policy, findings, summary, notes }
    }

    /// 1 when a readable finding is not protected by an enforcing rule, else 0.
    pub fn exit_status(&self) -> u8 {
        if self.summary.exposed > 0 { EXIT_EXPOSED } else { 0 }
    }
}

/// Fills each secret's `also_in` with the other findings that hold the same fingerprint.
fn link_copies(findings: &mut [Finding]) {
    let mut holders: std::collections::BTreeMap<String, Vec<String>> = std::collections::BTreeMap::new();
    for finding in findings.iter() {
        let label = finding.location.label();
        for secret in &finding.secrets {
            let labels = holders.entry(secret.fingerprint.clone()).or_default();
            if !labels.contains(&label) {
                labels.push(label.clone());
            }
        }
    }
    for finding in findings.iter_mut() {
        let label = finding.location.label();
        for secret in &mut finding.secrets {
            secret.also_in = holders
                .get(&secret.fingerprint)
                .into_iter()
                .flatten()
                .filter(|other| **other != label)
                .cloned()
                .collect();
        }
    }
}

/// What to tell a person about an exposed finding.
pub fn advice(location: &Location, status: Status) -> Option<String> {
    if status == Status::Protected {
        return None;
    }
    let text = match location {
        Location::Env { .. } => {
            "the session's processes hold it in their own environment; no file rule can take it back: \
             start the agent without it (or with a narrower credential)"
        }
        Location::File { path, .. } if secrets::is_shell_startup_file(path) => {
            "every shell reads this file, the agent's shells too, so no rule can protect it without breaking \
             them: move the token to a file a credential rule names (or a credential helper)"
        }
        Location::File { .. } if status == Status::Monitored => {
            "the rule only records reads: set `mode: enforce` on it to deny them"
        }
        Location::File { .. } => "add the path to a credential rule (paths or names), or move the secret out",
    };
    Some(text.to_string())
}
