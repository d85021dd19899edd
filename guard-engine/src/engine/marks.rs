//! What the engine remembers per session: seen (announced), escalated after a credential
//! touch, credentials used by their own tools, the workspace. One owner, bounded: the least
//! recently active session is forgotten first (seeing it again announces it again).

use std::{collections::BTreeSet, num::NonZeroUsize, path::PathBuf};

use lru::LruCache;

/// Sessions remembered at most (a CI host makes many; they are small).
pub const MAX_SESSIONS: usize = 4_096;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionMark {
    /// Touched a credential outside its consumers: escalated.
    pub escalated: bool,
    /// Consumers that read their own credential in this session.
    pub consumers_used: BTreeSet<String>,
    /// The session's workspace (first process's working directory, or what `guard launch`
    /// recorded), when known.
    pub workspace: Option<PathBuf>,
}

pub struct SessionMarks {
    sessions: LruCache<u64, SessionMark>,
}

impl Default for SessionMarks {
    fn default() -> Self {
        Self::with_capacity(MAX_SESSIONS)
    }
}

impl SessionMarks {
    pub fn with_capacity(capacity: usize) -> Self {
        Self { sessions: LruCache::new(NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN)) }
    }

    /// Notes an event of the session; true the first time (the session is to be announced).
    pub fn sight(&mut self, session: u64) -> bool {
        if self.sessions.get(&session).is_some() {
            return false;
        }
        self.sessions.put(session, SessionMark::default());
        true
    }

    fn mark(&mut self, session: u64) -> &mut SessionMark {
        self.sessions.get_or_insert_mut(session, SessionMark::default)
    }

    /// Marks the session escalated; true if it was not yet.
    pub fn escalate(&mut self, session: u64) -> bool {
        !std::mem::replace(&mut self.mark(session).escalated, true)
    }

    pub fn escalated(&self, session: u64) -> bool {
        self.sessions.peek(&session).is_some_and(|mark| mark.escalated)
    }

    pub fn consumer_used(&mut self, session: u64, consumer: &str) {
        let used = &mut self.mark(session).consumers_used;
        if !used.contains(consumer) {
            used.insert(consumer.to_string());
        }
    }

    pub fn set_workspace(&mut self, session: u64, dir: PathBuf) {
        self.mark(session).workspace = Some(dir);
    }

    pub fn get(&self, session: u64) -> Option<&SessionMark> {
        self.sessions.peek(&session)
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// A rough upper bound of the heap this takes, in bytes.
    pub fn memory_estimate(&self) -> usize {
        // LRU node: key, value and two links; a workspace path and consumer names are short.
        let node = std::mem::size_of::<u64>() + std::mem::size_of::<SessionMark>() + 2 * std::mem::size_of::<usize>();
        self.sessions
            .iter()
            .map(|(_, mark)| {
                node + mark.workspace.as_ref().map_or(0, |dir| dir.as_os_str().len())
                    + mark.consumers_used.iter().map(|name| name.len() + 48).sum::<usize>()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sight_once_escalation_once_and_bounded() {
        let mut marks = SessionMarks::with_capacity(2);
        assert!(marks.sight(1));
        assert!(!marks.sight(1));
        assert!(marks.escalate(1));
        assert!(!marks.escalate(1));
        assert!(marks.escalated(1));
        marks.consumer_used(1, "kubectl");
        marks.consumer_used(1, "kubectl");
        assert_eq!(marks.get(1).map(|mark| mark.consumers_used.len()), Some(1));
        assert!(marks.sight(2));
        assert!(marks.sight(3));
        assert_eq!(marks.len(), 2);
        // The least recently active one went: seen again, it is announced again.
        assert!(!marks.escalated(1));
        assert!(marks.sight(1));
    }
}
