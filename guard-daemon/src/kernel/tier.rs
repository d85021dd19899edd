//! Which enforcement tier this kernel gives us, and why.
//!
//! The lsm tier needs BPF LSM active (`lsm=...,bpf` at boot) AND the kernel accepting an `lsm/`
//! program: some kernels list `bpf` yet refuse the load (trampolines blocked), so the daemon
//! loads a probe program before believing the list. Without it the host tier stands:
//! sock_addr programs refuse network for real, tracepoints stop exec and open with signals.

pub const LSM_LIST: &str = "/sys/kernel/security/lsm";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tier {
    Host { reason: String },
    Lsm,
}

/// Decide from the text of /sys/kernel/security/lsm (None: unreadable) and the outcome of
/// loading the probe program (only consulted when the list names bpf).
pub fn decide(list: Option<&str>, probe_load: impl FnOnce() -> Result<(), String>) -> Tier {
    let Some(text) = list else {
        return Tier::Host { reason: format!("{LSM_LIST} unreadable (securityfs not mounted?): BPF LSM unavailable") };
    };
    let active: Vec<&str> = text.trim().split(',').collect();
    if !active.contains(&"bpf") {
        return Tier::Host {
            reason: format!("BPF LSM not active (lsm={}); boot with lsm=...,bpf for the lsm tier", text.trim()),
        };
    }
    match probe_load() {
        Ok(()) => Tier::Lsm,
        Err(err) => {
            Tier::Host { reason: format!("BPF LSM listed active but the kernel refused an lsm program: {err}") }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpf_in_list_and_probe_loads_means_lsm() {
        assert_eq!(decide(Some("lockdown,capability,landlock,bpf\n"), || Ok(())), Tier::Lsm);
    }

    #[test]
    fn listed_but_refused_is_host_with_reason() {
        match decide(Some("capability,bpf"), || Err("Operation not permitted".into())) {
            Tier::Host { reason } => assert!(reason.contains("refused an lsm program: Operation not permitted")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn host_tier_says_why() {
        match decide(Some("lockdown,capability,yama"), || panic!("must not probe")) {
            Tier::Host { reason } => assert!(reason.contains("lsm=lockdown,capability,yama")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(decide(None, || Ok(())), Tier::Host { .. }));
    }
}
