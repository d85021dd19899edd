//! The report for people (one block per finding, exposed ones first) and as JSON.

use std::fmt::Write as _;

use super::{Finding, Location, Report, Status};

/// The report as JSON (pretty-printed, one document).
pub fn json(report: &Report) -> String {
    // A report is plain strings, numbers and lists: serialising it cannot fail.
    serde_json::to_string_pretty(report).unwrap_or_else(|error| format!("{{\"error\": \"{error}\"}}"))
}

fn status_word(finding: &Finding) -> &'static str {
    match (finding.protection.status, finding.readable.readable) {
        (Status::Protected, _) => "protected",
        (Status::Monitored, true) => "MONITORED",
        (Status::Unprotected, true) => "UNPROTECTED",
        (Status::Monitored, false) => "monitored",
        (Status::Unprotected, false) => "unprotected",
    }
}

fn block(out: &mut String, finding: &Finding) {
    let readable = if finding.readable.readable { "readable" } else { "not readable" };
    let _ = writeln!(
        out,
        "{:<12} {}  [{readable}: {}]",
        status_word(finding),
        finding.location.label(),
        finding.readable.why
    );
    let protection = &finding.protection;
    if let Some(rule) = &protection.rule {
        let mode = protection.mode.map_or("", |mode| mode.as_str());
        let matched = protection.matched.as_deref().unwrap_or("");
        let _ = write!(out, "             rule {rule} ({mode}; {matched})");
        if !protection.consumers.is_empty() {
            let _ = write!(out, "; its consumers may read it: {}", protection.consumers.join(", "));
        }
        out.push('\n');
    }
    if let Some(note) = &protection.note {
        let _ = writeln!(out, "             {note}");
    }
    if let Location::Env { pids, commands, .. } = &finding.location {
        let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
        let _ = writeln!(out, "             in pid {} ({})", pids.join(", "), commands.join(", "));
    }
    let found_by: Vec<String> = finding
        .found_by
        .iter()
        .map(|by| serde_json::to_value(by).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default())
        .collect();
    let _ = writeln!(out, "             found by: {}", found_by.join(", "));
    if finding.secrets.is_empty() {
        let _ = writeln!(out, "             secrets: none recognised (a credential rule names the file)");
    }
    for secret in &finding.secrets {
        let kind = serde_json::to_value(secret.kind).ok().and_then(|v| v.as_str().map(str::to_string));
        let name = secret.name.as_deref().map(|name| format!(" {name}")).unwrap_or_default();
        let _ = writeln!(
            out,
            "             secret: {}{name} fingerprint {} ({})",
            kind.unwrap_or_default(),
            secret.fingerprint,
            secret.at
        );
        if !secret.also_in.is_empty() {
            let _ = writeln!(out, "               same secret in: {}", secret.also_in.join(", "));
        }
    }
    if finding.is_exposed()
        && let Some(advice) = &finding.advice
    {
        let _ = writeln!(out, "             advice: {advice}");
    }
}

/// The report as text. Exposed findings come first; secret values never appear, only their
/// kind, key name and fingerprint.
pub fn human(report: &Report) -> String {
    let mut out = String::new();
    let session = report.session.as_deref().map(|name| format!(", session {name}")).unwrap_or_default();
    let _ = writeln!(
        out,
        "guard exposure: user {} (uid {}), home {}{session}, policy {}",
        report.user, report.uid, report.home, report.policy
    );
    if let Some(workspace) = &report.workspace {
        let _ = writeln!(out, "workspace: {workspace}");
    }
    out.push('\n');
    let (exposed, rest): (Vec<&Finding>, Vec<&Finding>) = report.findings.iter().partition(|f| f.is_exposed());
    for finding in exposed.into_iter().chain(rest) {
        block(&mut out, finding);
    }
    let summary = &report.summary;
    let _ = writeln!(
        out,
        "\n{} finding(s): {} protected, {} monitored, {} unprotected; {} readable and not protected (exit {})",
        summary.findings,
        summary.protected,
        summary.monitored,
        summary.unprotected,
        summary.exposed,
        report.exit_status()
    );
    for note in &report.notes {
        let _ = writeln!(out, "note: {note}");
    }
    out
}
