//! The `audit` section: defaults, limits with located errors, unknown keys, the record level.

use super::{assert_single_problem, parse_ok};
use crate::policy::{AuditSettings, CompileContext, DEFAULT_AUDIT_KEEP, RecordLevel, default_policy};

const MINIMAL: &str = "destructive:\n  rules: []\n";

#[test]
fn missing_section_and_keys_mean_the_defaults() {
    let defaults = AuditSettings { max_bytes: None, keep: DEFAULT_AUDIT_KEEP, record: RecordLevel::Decisions };
    assert_eq!(parse_ok(MINIMAL).audit(), defaults);
    assert_eq!(parse_ok(&format!("{MINIMAL}audit: {{}}\n")).audit(), defaults);
    assert_eq!(default_policy().audit(), defaults);
}

#[test]
fn values_are_taken_and_reach_the_compiled_policy() {
    let policy = parse_ok(&format!("{MINIMAL}audit:\n  max_bytes: 4096\n  keep: 100\n  record: writes\n"));
    let wanted = AuditSettings { max_bytes: Some(4096), keep: 100, record: RecordLevel::Writes };
    assert_eq!(policy.audit(), wanted);
    assert_eq!(policy.compile(&CompileContext::default()).audit, wanted);
    assert_eq!(parse_ok(&format!("{MINIMAL}audit:\n  keep: 1\n  record: all\n")).audit().record, RecordLevel::All);
}

#[test]
fn limits_are_checked_where_written() {
    assert_single_problem(&format!("{MINIMAL}audit:\n  max_bytes: 4095\n"), 4, 14, "at least 4096");
    assert_single_problem(&format!("{MINIMAL}audit:\n  keep: 0\n"), 4, 9, "between 1 and 100");
    assert_single_problem(&format!("{MINIMAL}audit:\n  keep: 101\n"), 4, 9, "between 1 and 100");
    assert_single_problem(&format!("{MINIMAL}audit:\n  keep: 99999999999\n"), 4, 9, "between 1 and 100");
}

#[test]
fn unknown_keys_and_levels_are_errors_at_the_place() {
    assert_single_problem(&format!("{MINIMAL}audit:\n  max_size: 8192\n"), 4, 3, "unknown field `max_size`");
    assert_single_problem(&format!("{MINIMAL}audit:\n  record: everything\n"), 4, 11, "everything");
    assert_single_problem(&format!("{MINIMAL}audit:\n  max_bytes: -1\n"), 4, 14, "");
}
