//! What the daemon does to the kernel side once it runs: map reads and writes. Behind a trait
//! so the daemon's loop (event, engine actions, kernel calls) is tested without root against
//! [`fake::FakeKernel`]. Loading and attaching stay on [`Kernel`] (start-up only).

use std::path::Path;

use guard_common::{Config, ConsumerGrant, DevIno, HeldInfo, RuleRef, SessionState, stat};

use super::Kernel;
use crate::policy_load::PreparedMaps;

pub type Stats = [u64; stat::COUNT as usize];

pub trait KernelHandle {
    fn pin_dir(&self) -> &Path;
    /// Sum of each per-CPU counter.
    fn stats(&self) -> anyhow::Result<Stats>;
    /// Tell the kernel side a daemon is there.
    fn heartbeat(&mut self, stats: &Stats) -> anyhow::Result<()>;
    fn config(&mut self) -> anyhow::Result<Config>;
    fn set_config(&mut self, config: &Config) -> anyhow::Result<()>;
    /// The compiled policy's entries; `remap` carries learned credential inodes over.
    fn write_policy(
        &mut self,
        prepared: &PreparedMaps,
        remap: &dyn Fn(RuleRef) -> Option<RuleRef>,
    ) -> anyhow::Result<()>;
    fn set_seccomp_kill(&mut self, calls: &[String]) -> anyhow::Result<()>;
    fn set_protected(&mut self, files: &[DevIno]) -> anyhow::Result<()>;
    fn unprotect(&mut self, files: &[DevIno]) -> anyhow::Result<()>;
    fn signalled_by_session(&mut self, pid: u32) -> bool;
    /// Tasks held by an earlier run.
    fn held_tasks(&mut self) -> anyhow::Result<Vec<(u32, HeldInfo)>>;
    fn grant_consumer(&mut self, tgid: u32, grant: &ConsumerGrant) -> anyhow::Result<()>;
    /// Forget a held task before it is continued or killed.
    fn unhold(&mut self, tgid: u32) -> anyhow::Result<()>;
    fn session_state(&mut self, session_id: u64) -> anyhow::Result<Option<SessionState>>;
    fn register_workspace(&mut self, session_id: u64, dir: DevIno) -> anyhow::Result<()>;
    fn set_escalation(&mut self, session_id: u64, flags: u32) -> anyhow::Result<()>;
    fn set_session_record(&mut self, session_id: u64, level: Option<guard_common::RecordLevel>) -> anyhow::Result<()>;
}

impl KernelHandle for Kernel {
    fn pin_dir(&self) -> &Path {
        Kernel::pin_dir(self)
    }
    fn stats(&self) -> anyhow::Result<Stats> {
        Kernel::stats(self)
    }
    fn heartbeat(&mut self, stats: &Stats) -> anyhow::Result<()> {
        Kernel::heartbeat(self, stats)
    }
    fn config(&mut self) -> anyhow::Result<Config> {
        Kernel::config(self)
    }
    fn set_config(&mut self, config: &Config) -> anyhow::Result<()> {
        Kernel::set_config(self, config)
    }
    fn write_policy(
        &mut self,
        prepared: &PreparedMaps,
        remap: &dyn Fn(RuleRef) -> Option<RuleRef>,
    ) -> anyhow::Result<()> {
        Kernel::write_policy(self, prepared, remap)
    }
    fn set_seccomp_kill(&mut self, calls: &[String]) -> anyhow::Result<()> {
        Kernel::set_seccomp_kill(self, calls)
    }
    fn set_protected(&mut self, files: &[DevIno]) -> anyhow::Result<()> {
        Kernel::set_protected(self, files)
    }
    fn unprotect(&mut self, files: &[DevIno]) -> anyhow::Result<()> {
        Kernel::unprotect(self, files)
    }
    fn signalled_by_session(&mut self, pid: u32) -> bool {
        Kernel::signalled_by_session(self, pid)
    }
    fn held_tasks(&mut self) -> anyhow::Result<Vec<(u32, HeldInfo)>> {
        Kernel::held_tasks(self)
    }
    fn grant_consumer(&mut self, tgid: u32, grant: &ConsumerGrant) -> anyhow::Result<()> {
        Kernel::grant_consumer(self, tgid, grant)
    }
    fn unhold(&mut self, tgid: u32) -> anyhow::Result<()> {
        Kernel::unhold(self, tgid)
    }
    fn session_state(&mut self, session_id: u64) -> anyhow::Result<Option<SessionState>> {
        Kernel::session_state(self, session_id)
    }
    fn register_workspace(&mut self, session_id: u64, dir: DevIno) -> anyhow::Result<()> {
        Kernel::register_workspace(self, session_id, dir)
    }
    fn set_escalation(&mut self, session_id: u64, flags: u32) -> anyhow::Result<()> {
        Kernel::set_escalation(self, session_id, flags)
    }
    fn set_session_record(&mut self, session_id: u64, level: Option<guard_common::RecordLevel>) -> anyhow::Result<()> {
        Kernel::set_session_record(self, session_id, level)
    }
}

#[cfg(test)]
pub mod fake {
    //! The kernel side in memory: map writes are remembered as calls.

    use std::{collections::HashMap, path::PathBuf};

    use super::*;

    /// One call the daemon made.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum KernelCall {
        WritePolicy,
        SetConfig(Config),
        SetSeccomp(Vec<String>),
        Protect(Vec<DevIno>),
        Unprotect(Vec<DevIno>),
        Grant(u32),
        Unhold(u32),
        RegisterWorkspace(u64, DevIno),
        SetEscalation(u64, u32),
        SessionRecord(u64, Option<u32>),
    }

    #[derive(Debug, Default)]
    pub struct FakeKernel {
        pub calls: Vec<KernelCall>,
        pub sessions: HashMap<u64, SessionState>,
        pub config: Config,
        pub stats: Stats,
        pub held: Vec<(u32, HeldInfo)>,
        pub signalers: Vec<u32>,
        pub pin_dir: PathBuf,
    }

    impl FakeKernel {
        pub fn new() -> Self {
            Self { pin_dir: PathBuf::from("/sys/fs/bpf/fake"), ..Default::default() }
        }
    }

    impl KernelHandle for FakeKernel {
        fn pin_dir(&self) -> &Path {
            &self.pin_dir
        }
        fn stats(&self) -> anyhow::Result<Stats> {
            Ok(self.stats)
        }
        fn heartbeat(&mut self, _: &Stats) -> anyhow::Result<()> {
            Ok(())
        }
        fn config(&mut self) -> anyhow::Result<Config> {
            Ok(self.config)
        }
        fn set_config(&mut self, config: &Config) -> anyhow::Result<()> {
            self.config = *config;
            self.calls.push(KernelCall::SetConfig(*config));
            Ok(())
        }
        fn write_policy(&mut self, _: &PreparedMaps, _: &dyn Fn(RuleRef) -> Option<RuleRef>) -> anyhow::Result<()> {
            self.calls.push(KernelCall::WritePolicy);
            Ok(())
        }
        fn set_seccomp_kill(&mut self, calls: &[String]) -> anyhow::Result<()> {
            self.calls.push(KernelCall::SetSeccomp(calls.to_vec()));
            Ok(())
        }
        fn set_protected(&mut self, files: &[DevIno]) -> anyhow::Result<()> {
            self.calls.push(KernelCall::Protect(files.to_vec()));
            Ok(())
        }
        fn unprotect(&mut self, files: &[DevIno]) -> anyhow::Result<()> {
            self.calls.push(KernelCall::Unprotect(files.to_vec()));
            Ok(())
        }
        fn signalled_by_session(&mut self, pid: u32) -> bool {
            self.signalers.contains(&pid)
        }
        fn held_tasks(&mut self) -> anyhow::Result<Vec<(u32, HeldInfo)>> {
            Ok(self.held.clone())
        }
        fn grant_consumer(&mut self, tgid: u32, _: &ConsumerGrant) -> anyhow::Result<()> {
            self.calls.push(KernelCall::Grant(tgid));
            Ok(())
        }
        fn unhold(&mut self, tgid: u32) -> anyhow::Result<()> {
            self.held.retain(|(pid, _)| *pid != tgid);
            self.calls.push(KernelCall::Unhold(tgid));
            Ok(())
        }
        fn session_state(&mut self, session_id: u64) -> anyhow::Result<Option<SessionState>> {
            Ok(self.sessions.get(&session_id).copied())
        }
        fn register_workspace(&mut self, session_id: u64, dir: DevIno) -> anyhow::Result<()> {
            self.calls.push(KernelCall::RegisterWorkspace(session_id, dir));
            Ok(())
        }
        fn set_escalation(&mut self, session_id: u64, flags: u32) -> anyhow::Result<()> {
            self.sessions.entry(session_id).or_default().escalation |= flags;
            self.calls.push(KernelCall::SetEscalation(session_id, flags));
            Ok(())
        }
        fn set_session_record(
            &mut self,
            session_id: u64,
            level: Option<guard_common::RecordLevel>,
        ) -> anyhow::Result<()> {
            self.calls.push(KernelCall::SessionRecord(session_id, level.map(|l| l as u32)));
            Ok(())
        }
    }
}
