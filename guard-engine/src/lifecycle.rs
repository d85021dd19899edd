//! When an ended session's cgroup goes: the pure decision behind the daemon's clean-up.
//!
//! `guard launch` marks the session cgroups it creates (an xattr the daemon reads). Once such
//! a cgroup's subtree has no process left (the kernel's `populated 0` in `cgroup.events`),
//! nothing is held or waiting for a person in it, and the audit stream takes writes, the
//! daemon flushes the stream, removes the cgroup and records `session_end`. Emptiness must be
//! seen on two consecutive looks (a second apart): the exit events of the last processes
//! leave the kernel before the cgroup reads empty, and the second look lets the daemon write
//! them, under the session's name, before the name's cgroup goes. Roots, cgroups guard did
//! not create (adopted roots' units, systemd scopes, pods) are never removed.

/// What the daemon sees of one session cgroup on one look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Observation {
    /// The cgroup is a root itself (the session root, `--cgroup`, a policy root, a QoS root).
    pub is_root: bool,
    /// `guard launch` created it (its marker xattr is there).
    pub created_by_guard: bool,
    /// `cgroup.events` `populated`: `None` when it could not be read.
    pub populated: Option<bool>,
    /// Commands of the session held in the kernel or waiting for approval.
    pub outstanding_holds: usize,
    /// The audit stream takes writes (records can be written and flushed first).
    pub audit_writable: bool,
    /// The previous look found it empty too.
    pub empty_before: bool,
}

/// Why a session cgroup stays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    Root,
    NotCreatedByGuard,
    Populated,
    /// `cgroup.events` unreadable: nothing is known, nothing is removed.
    Unknown,
    Holds,
    AuditDown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Keep(Keep),
    /// Empty for the first time: look again next round.
    Wait,
    /// Flush the audit stream, remove the cgroup, record `session_end`.
    Remove,
}

impl Decision {
    /// Should the daemon remember the cgroup as seen empty for the next look?
    pub fn seen_empty(self) -> bool {
        matches!(self, Decision::Wait | Decision::Keep(Keep::Holds | Keep::AuditDown))
    }
}

/// The decision for one look.
pub fn decide(seen: &Observation) -> Decision {
    if seen.is_root {
        return Decision::Keep(Keep::Root);
    }
    if !seen.created_by_guard {
        return Decision::Keep(Keep::NotCreatedByGuard);
    }
    match seen.populated {
        None => return Decision::Keep(Keep::Unknown),
        Some(true) => return Decision::Keep(Keep::Populated),
        Some(false) => {}
    }
    if seen.outstanding_holds > 0 {
        return Decision::Keep(Keep::Holds);
    }
    if !seen.audit_writable {
        return Decision::Keep(Keep::AuditDown);
    }
    if seen.empty_before { Decision::Remove } else { Decision::Wait }
}

/// `populated` from the text of a `cgroup.events` file (`populated 0|1`, `frozen 0|1`).
pub fn populated(events: &str) -> Option<bool> {
    events.lines().find_map(|line| match line.split_whitespace().collect::<Vec<_>>()[..] {
        ["populated", "0"] => Some(false),
        ["populated", "1"] => Some(true),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended() -> Observation {
        Observation {
            is_root: false,
            created_by_guard: true,
            populated: Some(false),
            outstanding_holds: 0,
            audit_writable: true,
            empty_before: true,
        }
    }

    #[test]
    fn an_ended_guard_session_is_removed_on_the_second_empty_look() {
        assert_eq!(decide(&Observation { empty_before: false, ..ended() }), Decision::Wait);
        assert!(decide(&Observation { empty_before: false, ..ended() }).seen_empty());
        assert_eq!(decide(&ended()), Decision::Remove);
    }

    #[test]
    fn roots_and_cgroups_guard_did_not_create_stay_whatever_else_holds() {
        assert_eq!(decide(&Observation { is_root: true, ..ended() }), Decision::Keep(Keep::Root));
        assert_eq!(
            decide(&Observation { is_root: true, created_by_guard: false, ..ended() }),
            Decision::Keep(Keep::Root)
        );
        assert_eq!(
            decide(&Observation { created_by_guard: false, ..ended() }),
            Decision::Keep(Keep::NotCreatedByGuard)
        );
    }

    #[test]
    fn live_unknown_held_or_unrecordable_sessions_stay() {
        let populated = Observation { populated: Some(true), ..ended() };
        assert_eq!(decide(&populated), Decision::Keep(Keep::Populated));
        assert!(!decide(&populated).seen_empty(), "a process came back: the count starts again");
        assert_eq!(decide(&Observation { populated: None, ..ended() }), Decision::Keep(Keep::Unknown));
        assert_eq!(decide(&Observation { outstanding_holds: 1, ..ended() }), Decision::Keep(Keep::Holds));
        assert_eq!(decide(&Observation { audit_writable: false, ..ended() }), Decision::Keep(Keep::AuditDown));
        // Once the hold is settled or the stream is back, the earlier empty look counts.
        assert!(decide(&Observation { outstanding_holds: 1, ..ended() }).seen_empty());
    }

    #[test]
    fn cgroup_events_text() {
        assert_eq!(populated("populated 0\nfrozen 0\n"), Some(false));
        assert_eq!(populated("populated 1\nfrozen 0\n"), Some(true));
        assert_eq!(populated("frozen 1\npopulated 1\n"), Some(true));
        assert_eq!(populated(""), None);
        assert_eq!(populated("populated yes\n"), None);
    }
}
