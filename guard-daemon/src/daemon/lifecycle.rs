//! Ended sessions go: the cgroups `guard launch` created are removed once the kernel says
//! nothing is left in them and their records are written ([`guard_engine::lifecycle`] decides).
//!
//! Looked at once a second (the event loop's tick): each root's children that carry guard's
//! marker ([`cgroup::CREATED_XATTR`]) and their `cgroup.events`; when each was first seen
//! empty is kept in [`Daemon::empty_sessions`]. Roots, cgroups without the
//! marker and the Kubernetes QoS roots' pods are never touched.

use std::{collections::HashMap, io, path::PathBuf, time::Instant};

use guard_engine::lifecycle::{Created, Decision, Observation, decide};

use super::{Daemon, now, now_unix_ns};
use crate::{cgroup, kernel::handle::KernelHandle};

impl<K: KernelHandle> Daemon<K> {
    /// One look at the sessions guard created: remove those that ended (records first).
    pub fn reap_sessions(&mut self) {
        let roots: Vec<PathBuf> = self.host.sessions.roots().to_vec();
        let kube = self.host.sessions.kube_roots().to_vec();
        let sys = self.host.sys.as_ref();
        // The sessions guard created that read empty: most looks find none and stop here.
        let mut candidates = Vec::new();
        for root in roots.iter().filter(|root| !kube.contains(root)) {
            let Ok(children) = cgroup::child_cgroups(sys, root) else { continue };
            for child in children.into_iter().filter(|child| !roots.contains(child)) {
                let created = cgroup::created_by(sys, &child);
                if created == Created::NotByGuard {
                    continue;
                }
                let populated = cgroup::populated(sys, &child);
                if populated == Some(false)
                    && let Ok(id) = cgroup::cgroup_id(sys, &child)
                {
                    candidates.push((child, root.clone(), id, created));
                }
            }
        }
        if candidates.is_empty() {
            self.empty_sessions.clear();
            return;
        }
        let pending: Vec<String> = self.engine.pending_holds(now()).into_iter().map(|hold| hold.session).collect();
        let held: Vec<u64> = match self.host.kernel.held_tasks() {
            Ok(held) => held.into_iter().map(|(_, info)| info.session_id).collect(),
            Err(err) => {
                // Not knowing what is held means not removing anything.
                log::warn!("reading held tasks for the session clean-up: {err:#}");
                return;
            }
        };
        let audit_writable = self.audit_down.is_none();
        let now_at = Instant::now();
        let mut empty = HashMap::new();
        let mut ended = Vec::new();
        for (child, root, id, created) in candidates {
            let name = cgroup::dir_name(&child);
            let seen = Observation {
                is_root: false,
                created,
                populated: Some(false),
                outstanding_holds: pending.iter().filter(|session| **session == name).count()
                    + held.iter().filter(|session| **session == id).count(),
                audit_writable,
                empty_for: self.empty_sessions.get(&id).map(|since| now_at.duration_since(*since)),
            };
            let decision = decide(&seen);
            if decision.seen_empty() {
                empty.insert(id, self.empty_sessions.get(&id).copied().unwrap_or(now_at));
            }
            if decision == Decision::Remove {
                ended.push((name, id, child, root));
            }
        }
        self.empty_sessions = empty;
        if ended.is_empty() {
            return;
        }
        // Every record of the ended sessions is out before their cgroups go.
        self.flush_audit();
        if self.audit_down.is_some() {
            return;
        }
        for (name, id, path, root) in ended {
            self.empty_sessions.remove(&id);
            match cgroup::remove_session(self.host.sys.as_ref(), &path) {
                Ok(()) => {}
                // A process joined since the look: the session lives on.
                Err(err) if err.io_kind() == Some(io::ErrorKind::ResourceBusy) => continue,
                Err(err) => {
                    log::warn!("removing ended session {name}: {err}");
                    continue;
                }
            }
            let mut record = self.engine.daemon_record(
                "session_end",
                now_unix_ns(),
                format!("session {name} ended: no process left; its cgroup {} was removed", path.display()),
            );
            record.session = Some(name);
            record.details = Some(serde_json::json!({
                "cgroup_id": id,
                "path": path.display().to_string(),
                "root": root.display().to_string(),
            }));
            self.emit(&record);
        }
        self.flush_audit();
    }
}
