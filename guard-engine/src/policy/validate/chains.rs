//! Validation of the session-level sections: `chains`, `escalations` and `provenance`.

use std::collections::HashMap;

use serde_saphyr::{Location, Spanned};

use super::{id_is_well_formed, validate_mitre};
use crate::audit::Severity;
use crate::policy::error::Problems;
use crate::policy::model::{
    ChainSpec, DEFAULT_CHAIN_WINDOW_SECS, EscalationPolicy, INCIDENT_CHAIN_ID, MAX_CHAIN_WINDOW_SECS,
    ProvenanceSettings, StageKind,
};
use crate::policy::raw::{EscalationAction, RawChain, RawEscalations, RawProvenance};

/// The validated `chains` list: the built-in incident chain when the section is absent, the
/// written chains plus the incident chain (unless redefined) otherwise, nothing for `[]`.
pub(super) fn validate_chains(
    section: Option<&Spanned<Vec<Spanned<RawChain>>>>,
    problems: &mut Problems,
    warnings: &mut Vec<String>,
) -> Vec<ChainSpec> {
    let Some(section) = section else {
        return vec![ChainSpec::incident()];
    };
    if section.value.is_empty() {
        warnings.push(
            "`chains: []` disables trajectory detection, including the built-in `incident` chain \
             (credential discovery -> out-of-scope use -> destructive action)"
                .into(),
        );
        return Vec::new();
    }
    let mut seen: HashMap<&str, Location> = HashMap::new();
    let mut chains = Vec::new();
    for chain in &section.value {
        let raw = &chain.value;
        let id = raw.id.value.as_str();
        let mut ok = true;
        if !id_is_well_formed(id) {
            problems.at_spanned(
                &raw.id,
                format!("bad chain id `{id}`: use 1-64 letters, digits, `-`, `_`, `.` or `:`, starting with a letter or digit"),
            );
            ok = false;
        } else if let Some(first) = seen.get(id) {
            problems.at_spanned(
                &raw.id,
                format!("duplicate chain id `{id}` (first used at line {}, column {})", first.line(), first.column()),
            );
            ok = false;
        } else {
            seen.insert(id, raw.id.referenced);
        }
        let mut stages = Vec::new();
        for stage in &raw.stages.value {
            match StageKind::from_stage_name(&stage.value) {
                Some(kind) => stages.push(kind),
                None => {
                    let known: Vec<&str> = StageKind::ALL.iter().map(|kind| kind.stage_name()).collect();
                    problems.at_spanned(
                        stage,
                        format!("unknown stage `{}`: expected one of {}", stage.value, known.join(", ")),
                    );
                    ok = false;
                }
            }
        }
        if raw.stages.value.len() < 2 {
            problems.at_spanned(&raw.stages, "a chain needs at least two stages");
            ok = false;
        }
        let window_secs = match &raw.window_secs {
            Some(window) if window.value == 0 || window.value > MAX_CHAIN_WINDOW_SECS => {
                problems.at_spanned(window, format!("window_secs must be between 1 and {MAX_CHAIN_WINDOW_SECS}"));
                ok = false;
                DEFAULT_CHAIN_WINDOW_SECS
            }
            Some(window) => window.value,
            None => DEFAULT_CHAIN_WINDOW_SECS,
        };
        // validate_mitre reports a malformed id; the default is unused because it is present.
        let mitre = raw.mitre.as_ref().map(|mitre| validate_mitre(Some(mitre), "", problems));
        if ok {
            chains.push(ChainSpec {
                id: id.to_string(),
                description: raw.description.as_ref().map_or_else(|| id.to_string(), |text| text.value.clone()),
                stages,
                window_secs,
                severity: raw.severity.as_ref().map_or(Severity::Critical, |severity| severity.value),
                mitre,
            });
        }
    }
    // The incident chain is built in: a list that does not redefine it still gets it.
    if !seen.contains_key(INCIDENT_CHAIN_ID) {
        chains.insert(0, ChainSpec::incident());
    }
    chains
}

pub(super) fn validate_escalations(section: Option<&Spanned<RawEscalations>>) -> EscalationPolicy {
    let mut policy = EscalationPolicy::default();
    let actions = section.and_then(|section| section.value.on_credential.as_ref());
    // Listing an action twice is harmless: it is the same flag.
    for action in actions.iter().flat_map(|list| list.value.iter()) {
        match action.value {
            EscalationAction::FreezeSession => policy.freeze_session = true,
            EscalationAction::HoldAllExec => policy.hold_all_exec = true,
        }
    }
    policy
}

pub(super) fn validate_provenance(
    section: Option<&Spanned<RawProvenance>>,
    warnings: &mut Vec<String>,
) -> ProvenanceSettings {
    let enabled = section.and_then(|section| section.value.enabled).unwrap_or(true);
    if !enabled {
        warnings.push(
            "provenance is disabled: secrets read from credential files are not followed into later commands \
             (known token formats are still redacted from the audit stream)"
                .into(),
        );
    }
    ProvenanceSettings { enabled }
}

#[cfg(test)]
mod tests {
    use crate::audit::Severity;
    use crate::policy::model::{ChainSpec, DEFAULT_CHAIN_WINDOW_SECS, EscalationPolicy, Policy, StageKind};
    use crate::policy::{CompileContext, Problem, default_policy, parse_policy};

    fn parse_ok(yaml: &str) -> Policy {
        parse_policy("test.yaml", yaml).unwrap_or_else(|error| panic!("expected the policy to parse:\n{error}"))
    }

    fn problems(yaml: &str) -> Vec<Problem> {
        match parse_policy("test.yaml", yaml) {
            Ok(_) => panic!("expected an error for:\n{yaml}"),
            Err(error) => error.problems,
        }
    }

    #[track_caller]
    fn assert_single_problem(yaml: &str, line: u64, column: u64, needle: &str) {
        let found = problems(yaml);
        assert_eq!(found.len(), 1, "expected one problem, got {found:#?}");
        assert_eq!((found[0].line, found[0].column), (line, column), "wrong location for {:?}", found[0].message);
        assert!(found[0].message.contains(needle), "{:?} does not contain {needle:?}", found[0].message);
    }

    #[test]
    fn default_policy_has_the_incident_chain_and_no_extra_escalation() {
        let policy = default_policy();
        assert_eq!(policy.chains(), &[ChainSpec::incident()]);
        assert_eq!(policy.escalation(), EscalationPolicy::default());
        assert!(policy.provenance().enabled);
        let compiled = policy.compile(&CompileContext::with_homes(vec!["/home/a".into()]));
        assert_eq!(compiled.chains, vec![ChainSpec::incident()]);
        assert!(compiled.provenance.enabled);
    }

    #[test]
    fn the_incident_chain_is_built_in() {
        let policy = parse_ok("mode: monitor\n");
        assert_eq!(policy.chains(), &[ChainSpec::incident()]);
        assert!(!policy.warnings().iter().any(|warning| warning.contains("chains")));
        assert!(policy.provenance().enabled);
        assert_eq!(policy.escalation(), EscalationPolicy::default());
    }

    #[test]
    fn an_empty_chain_list_disables_chains_with_a_warning() {
        let policy = parse_ok("chains: []\n");
        assert!(policy.chains().is_empty());
        assert!(policy.warnings().iter().any(|warning| warning.contains("chains: []") && warning.contains("incident")));
    }

    #[test]
    fn written_chains_keep_the_incident_chain_unless_they_redefine_it() {
        let yaml = "\
chains:
  - id: tamper
    stages: [credential_discovery, self_protection]
    window_secs: 60
    severity: high
";
        let policy = parse_ok(yaml);
        let ids: Vec<&str> = policy.chains().iter().map(|chain| chain.id.as_str()).collect();
        assert_eq!(ids, vec!["incident", "tamper"]);
        let tamper = &policy.chains()[1];
        assert_eq!(tamper.stages, vec![StageKind::CredentialAccess, StageKind::SelfProtection]);
        assert_eq!((tamper.window_secs, tamper.severity, tamper.mitre.as_deref()), (60, Severity::High, None));

        let yaml = "\
chains:
  - id: incident
    stages: [credential_discovery, destructive_action]
";
        let policy = parse_ok(yaml);
        assert_eq!(policy.chains().len(), 1);
        assert_eq!(policy.chains()[0].stages.len(), 2);
        assert_eq!(policy.chains()[0].window_secs, DEFAULT_CHAIN_WINDOW_SECS);
        assert_eq!(policy.chains()[0].severity, Severity::Critical);
    }

    #[test]
    fn chain_problems_are_located() {
        let yaml = "chains:\n  - id: c\n    stages: [credential_discovery, exfiltration]\n";
        assert_single_problem(yaml, 3, 36, "unknown stage `exfiltration`: expected one of credential_discovery");
        let yaml = "chains:\n  - id: c\n    stages: [credential_discovery]\n";
        assert_single_problem(yaml, 3, 13, "at least two stages");
        let yaml = "chains:\n  - id: c\n    stages: [credential_discovery, out_of_scope_use]\n    window_secs: 0\n";
        assert_single_problem(yaml, 4, 18, "window_secs must be between 1 and 86400");
        let yaml = "chains:\n  - id: c\n    stages: [credential_discovery, out_of_scope_use]\n    window_secs: 86401\n";
        assert_single_problem(yaml, 4, 18, "window_secs must be between 1 and 86400");
        let yaml = "\
chains:
  - id: c
    stages: [credential_discovery, out_of_scope_use]
  - id: c
    stages: [credential_discovery, destructive_action]
";
        assert_single_problem(yaml, 4, 9, "duplicate chain id `c` (first used at line 2, column 9)");
        let yaml = "chains:\n  - id: 'bad id'\n    stages: [credential_discovery, out_of_scope_use]\n";
        assert_single_problem(yaml, 2, 9, "bad chain id `bad id`");
        let yaml = "chains:\n  - id: c\n    stages: [credential_discovery, out_of_scope_use]\n    mitre: X1\n";
        assert_single_problem(yaml, 4, 12, "bad MITRE ATT&CK technique `X1`");
        let yaml = "chains:\n  - id: c\n    stages: [credential_discovery, out_of_scope_use]\n    windw_secs: 5\n";
        assert_single_problem(yaml, 4, 5, "unknown field `windw_secs`");
    }

    #[test]
    fn escalations_and_provenance() {
        let policy = parse_ok("escalations:\n  on_credential: [freeze_session, hold_all_exec, freeze_session]\n");
        assert_eq!(policy.escalation(), EscalationPolicy { freeze_session: true, hold_all_exec: true });
        let policy = parse_ok("escalations: {}\n");
        assert_eq!(policy.escalation(), EscalationPolicy::default());
        let yaml = "escalations:\n  on_credential: [freeze_session, reboot]\n";
        let found = problems(yaml);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].line, 2);
        assert!(found[0].message.contains("reboot"), "{:?}", found[0].message);
        assert_single_problem("escalations:\n  on_credentials: []\n", 2, 3, "unknown field `on_credentials`");

        let policy = parse_ok("provenance:\n  enabled: false\n");
        assert!(!policy.provenance().enabled);
        assert!(policy.warnings().iter().any(|warning| warning.contains("provenance is disabled")));
        assert!(parse_ok("provenance: {}\n").provenance().enabled);
        assert_single_problem("provenance:\n  enable: true\n", 2, 3, "unknown field `enable`");
    }
}
