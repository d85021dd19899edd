//! When an ended session's cgroup goes: the pure decision behind the daemon's clean-up.
//!
//! `guard launch` marks the session cgroups it creates (an xattr the daemon reads). Once such
//! a cgroup's subtree has no process left (the kernel's `populated 0` in `cgroup.events`),
//! nothing is held or waiting for a person in it, and the audit stream takes writes, the
//! daemon flushes the stream, removes the cgroup and records `session_end`. Emptiness must be
//! seen on two consecutive looks (a second apart): the exit events of the last processes
//! leave the kernel before the cgroup reads empty, and the second look lets the daemon write
//! them, under the session's name, before the name's cgroup goes. A *named* session
//! (`guard launch --session NAME`) is there to be joined again and keeps what the daemon
//! knows of it (escalations, trajectory, record level: all keyed by the cgroup's id), so it
//! goes only after [`NAMED_LINGER`] without a process. Roots, cgroups guard did not create
//! (adopted roots' units, systemd scopes, pods) are never removed.

use std::time::Duration;

/// How long a named session stays empty before it is removed.
pub const NAMED_LINGER: Duration = Duration::from_secs(600);

/// How `guard launch` made the session (the marker's value says it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Created {
    /// Not by guard (no marker).
    #[default]
    NotByGuard,
    /// A fresh session (`s-<pid>`, no `--session`): it ends with its last process.
    Fresh,
    /// `--session NAME`: lingers for [`NAMED_LINGER`].
    Named,
}

impl Created {
    /// The marker value `guard launch` writes: `fresh <pid>` or `named <pid>`.
    pub fn marker(self, pid: u32) -> String {
        match self {
            Created::Fresh => format!("fresh {pid}"),
            Created::Named | Created::NotByGuard => format!("named {pid}"),
        }
    }

    /// Reads a marker: anything but `fresh ...` is named (the cautious reading).
    pub fn of_marker(value: Option<&[u8]>) -> Self {
        match value {
            None => Created::NotByGuard,
            Some(value) if value.starts_with(b"fresh") => Created::Fresh,
            Some(_) => Created::Named,
        }
    }
}

/// What the daemon sees of one session cgroup on one look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Observation {
    /// The cgroup is a root itself (the session root, `--cgroup`, a policy root, a QoS root).
    pub is_root: bool,
    /// How `guard launch` created it (its marker xattr), if it did.
    pub created: Created,
    /// `cgroup.events` `populated`: `None` when it could not be read.
    pub populated: Option<bool>,
    /// Commands of the session held in the kernel or waiting for approval.
    pub outstanding_holds: usize,
    /// The audit stream takes writes (records can be written and flushed first).
    pub audit_writable: bool,
    /// How long ago a previous look first found it empty (`None`: this is the first).
    pub empty_for: Option<Duration>,
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
    let linger = match seen.created {
        Created::NotByGuard => return Decision::Keep(Keep::NotCreatedByGuard),
        Created::Fresh => Duration::ZERO,
        Created::Named => NAMED_LINGER,
    };
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
    match seen.empty_for {
        Some(empty_for) if empty_for >= linger => Decision::Remove,
        _ => Decision::Wait,
    }
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
            created: Created::Fresh,
            populated: Some(false),
            outstanding_holds: 0,
            audit_writable: true,
            empty_for: Some(Duration::from_secs(1)),
        }
    }

    #[test]
    fn an_ended_fresh_session_is_removed_on_the_second_empty_look() {
        assert_eq!(decide(&Observation { empty_for: None, ..ended() }), Decision::Wait);
        assert!(decide(&Observation { empty_for: None, ..ended() }).seen_empty());
        assert_eq!(decide(&ended()), Decision::Remove);
        assert_eq!(decide(&Observation { empty_for: Some(Duration::ZERO), ..ended() }), Decision::Remove);
    }

    #[test]
    fn a_named_session_lingers_before_it_goes() {
        let named =
            |secs| Observation { created: Created::Named, empty_for: Some(Duration::from_secs(secs)), ..ended() };
        assert_eq!(decide(&Observation { empty_for: None, ..named(0) }), Decision::Wait);
        assert_eq!(decide(&named(1)), Decision::Wait);
        assert_eq!(decide(&named(NAMED_LINGER.as_secs() - 1)), Decision::Wait);
        assert_eq!(decide(&named(NAMED_LINGER.as_secs())), Decision::Remove);
    }

    #[test]
    fn markers_say_how_the_session_was_made() {
        assert_eq!(Created::of_marker(None), Created::NotByGuard);
        assert_eq!(Created::of_marker(Some(Created::Fresh.marker(7).as_bytes())), Created::Fresh);
        assert_eq!(Created::of_marker(Some(Created::Named.marker(7).as_bytes())), Created::Named);
        // An older or unknown marker: guard's, but treated with the longer linger.
        assert_eq!(Created::of_marker(Some(b"1234")), Created::Named);
    }

    #[test]
    fn roots_and_cgroups_guard_did_not_create_stay_whatever_else_holds() {
        assert_eq!(decide(&Observation { is_root: true, ..ended() }), Decision::Keep(Keep::Root));
        assert_eq!(
            decide(&Observation { is_root: true, created: Created::NotByGuard, ..ended() }),
            Decision::Keep(Keep::Root)
        );
        let foreign = Observation { created: Created::NotByGuard, empty_for: Some(NAMED_LINGER * 10), ..ended() };
        assert_eq!(decide(&foreign), Decision::Keep(Keep::NotCreatedByGuard));
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
