//! What the engine's actions act on, and what its decisions read: the kernel handle, the
//! processes, the file system and the session cgroups. [`Host::view`] is the engine's
//! [`Machine`]; [`Daemon::carry_out`] does what the engine decided, in order.

use std::{
    cell::RefCell,
    io,
    path::{Path, PathBuf},
};

use guard_common::{DevIno, SessionState, escalation};
use guard_engine::destructive::InputError;
use guard_engine::engine::{Action, Freeze, HeldView, Machine, Now, SessionCgroup, Signal};

use super::{Daemon, monotonic_ns, now_unix_ns};
use crate::{cgroup::SessionIndex, kernel::handle::KernelHandle, procs::Procs, sys::Sys};

pub struct Host<K> {
    pub kernel: K,
    pub procs: Box<dyn Procs>,
    pub sys: Box<dyn Sys>,
    pub sessions: SessionIndex,
}

impl<K: KernelHandle> Host<K> {
    /// The machine as the engine reads it, for one call.
    pub fn view(&mut self) -> HostView<'_, K> {
        HostView(RefCell::new(self))
    }
}

/// [`Machine`] over a borrowed [`Host`]: the engine reads through `&self`, the kernel maps
/// and the session index want `&mut` (lookups cache).
pub struct HostView<'a, K>(RefCell<&'a mut Host<K>>);

impl<K: KernelHandle> HostView<'_, K> {
    fn session(&self, session: u64) -> Option<(String, PathBuf)> {
        let mut host = self.0.borrow_mut();
        let host = &mut **host;
        match host.sessions.resolve(host.sys.as_ref(), session) {
            Ok(found) => found.map(|s| (s.name.clone(), s.path.clone())),
            Err(err) => {
                log::warn!("resolving session {session}: {err}");
                None
            }
        }
    }
}

impl<K: KernelHandle> Machine for HostView<'_, K> {
    fn now(&self) -> Now {
        Now { mono_ns: monotonic_ns(), wall_ns: now_unix_ns() }
    }
    fn session_name(&self, session: u64) -> Option<String> {
        self.session(session).map(|(name, _)| name)
    }
    fn session_cgroup(&self, session: u64) -> Option<SessionCgroup> {
        let (name, path) = self.session(session)?;
        let host = self.0.borrow();
        let sys = host.sys.as_ref();
        Some(SessionCgroup {
            name,
            workspace: crate::cgroup::workspace(sys, &path),
            confinement: crate::cgroup::confinement(sys, &path),
            path,
        })
    }
    fn kernel_session(&self, session: u64) -> Option<SessionState> {
        self.0.borrow_mut().kernel.session_state(session).ok().flatten()
    }
    fn cwd(&self, pid: u32) -> io::Result<PathBuf> {
        self.0.borrow().procs.cwd(pid)
    }
    fn cmdline(&self, pid: u32) -> Option<Vec<String>> {
        self.0.borrow().procs.cmdline(pid)
    }
    fn identity(&self, path: &Path) -> io::Result<DevIno> {
        self.0.borrow().procs.identity(path)
    }
    fn read_identified(&self, path: &Path, file: DevIno, max_len: u64) -> Option<String> {
        self.0.borrow().procs.read_identified(path, file, max_len)
    }
    fn pin_held(&self, pid: u32) -> io::Result<()> {
        self.0.borrow_mut().procs.pin(pid)
    }
    fn held_view(&self, pid: u32) -> io::Result<HeldView> {
        self.0.borrow().procs.view(pid)
    }
    fn process_alive(&self, pid: u32) -> bool {
        self.0.borrow().procs.state(pid).is_some_and(|state| state != 'Z' && state != 'X')
    }
    fn script(&self, pid: u32, argument: &str) -> Option<(DevIno, String)> {
        self.0.borrow().procs.script(pid, argument)
    }
    fn trusted_library_dir(&self, pid: u32, dir: &str) -> bool {
        self.0.borrow().procs.trusted_library_dir(pid, dir)
    }
    fn read_held_file(&self, pid: u32, path: &str, max_len: u64) -> Result<(Vec<u8>, bool), InputError> {
        self.0.borrow().procs.read_held_file(pid, path, max_len)
    }
}

impl<K: KernelHandle> Daemon<K> {
    /// Carry out the engine's actions in order. Returns the outcome of the last hold settled
    /// (`Ok`: its reason; `Err`: the reason when the signal failed), for a control answer.
    pub(super) fn carry_out(&mut self, actions: Vec<Action>) -> Option<Result<String, String>> {
        let mut settled = None;
        for action in actions {
            match action {
                Action::Emit(record) => self.write_record(&record),
                Action::Unhold { pid } => {
                    self.unhold(pid);
                    self.host.procs.unpin(pid);
                }
                Action::GrantConsumer { pid, grant } => {
                    if let Err(err) = self.host.kernel.grant_consumer(pid, &grant) {
                        log::error!("granting the consumer of held pid {pid}: {err:#}");
                    }
                }
                Action::Settle(settle) => {
                    let pid = settle.pid;
                    let granted = settle.grant.as_ref().map(|step| {
                        self.host.kernel.grant_consumer(pid, &step.grant).map_err(|err| format!("{err:#}"))
                    });
                    self.unhold(pid);
                    let signalled = self.host.procs.signal(pid, settle.signal).map_err(|err| err.to_string());
                    if signalled.is_ok()
                        && let Some(since) = settle.held_since_ns
                    {
                        // The kernel stamped the hold with CLOCK_MONOTONIC, as monotonic_ns() reads it.
                        let held_ns = monotonic_ns().saturating_sub(since);
                        let released = settle.signal == Signal::Continue;
                        let pending = settle.record.hold_id.is_some();
                        self.metrics.hold_decided(released, pending, held_ns as f64 / 1e9);
                        // `guard status` shows the judged-at-once round trips.
                        if released && !pending {
                            self.note_hold_release(held_ns / 1000);
                        }
                    }
                    let ok = signalled.is_ok();
                    let record = settle.finish(granted, &signalled);
                    let reason = record.reason.clone().unwrap_or_default();
                    self.write_record(&record);
                    settled = Some(if ok { Ok(reason) } else { Err(reason) });
                }
                // The task stays stopped; its pin stays with the processes until decided.
                Action::Pend { .. } => {}
                Action::Escalate(escalate) => {
                    let held = escalate.hold_all_exec.then(|| {
                        self.host
                            .kernel
                            .set_escalation(escalate.session, escalation::FREEZE)
                            .map_err(|err| format!("{err:#}"))
                    });
                    let frozen = match &escalate.freeze {
                        Freeze::Cgroup(path) => Some(
                            self.host.sys.write_file(&path.join("cgroup.freeze"), b"1").map_err(|err| err.to_string()),
                        ),
                        Freeze::No | Freeze::Unknown => None,
                    };
                    let record = escalate.finish(held, frozen);
                    self.write_record(&record);
                }
                Action::RegisterWorkspace(register) => {
                    let registered = self
                        .host
                        .kernel
                        .register_workspace(register.session, register.identity)
                        .map_err(|err| format!("{err:#}"));
                    let record = register.finish(registered);
                    self.write_record(&record);
                }
            }
        }
        settled
    }
}
