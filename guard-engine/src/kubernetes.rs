//! Kubernetes pods as sessions: what a kubelet cgroup path says about its pod.
//!
//! The kubelet lays pods out below its cgroup root (`kubepods.slice` with the systemd cgroup
//! driver, `kubepods` with the cgroupfs driver) by QoS class:
//!
//! ```text
//! systemd:   kubepods.slice/kubepods-pod<UID_>.slice/<runtime>-<ID>.scope                  (Guaranteed)
//!            kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<UID_>.slice/...
//!            kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<UID_>.slice/...
//! cgroupfs:  kubepods/pod<UID>/<ID>                                                         (Guaranteed)
//!            kubepods/burstable/pod<UID>/<ID>
//!            kubepods/besteffort/pod<UID>/<ID>
//! ```
//!
//! With the systemd driver the UID's dashes are underscores (systemd reserves `-` for slice
//! nesting) and the container scope is `cri-containerd-<ID>.scope`, `crio-<ID>.scope`
//! (`crio-conmon-<ID>.scope` for CRI-O's monitor) or `docker-<ID>.scope` (cri-dockerd). A
//! kubelet started with `--cgroup-root` (e.g. kind's `/kubelet`) prefixes every slice name
//! (`kubelet-kubepods-burstable-pod<UID_>.slice`); the parser follows the prefix.
//!
//! guard makes each pod a session: the QoS cgroups are roots (the kernel takes the deepest
//! registered root of a task's cgroup), so the cgroup directly below one is the pod's, and
//! the session is named `pod-<UID>` ([`session_name`]). The UID is in the path itself, so the
//! name needs nothing but the cgroup tree; namespace/name would need the API server or the
//! container runtime's state and is left to the log pipeline (which joins on the UID).

/// A pod's QoS class, as the kubelet places it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "guaranteed",
            QosClass::Burstable => "burstable",
            QosClass::BestEffort => "besteffort",
        }
    }
}

/// The kubelet's cgroup driver, told by the root's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// `kubepods.slice`: systemd unit names.
    Systemd,
    /// `kubepods`: plain directories.
    Cgroupfs,
}

impl Driver {
    /// `*.slice` is the systemd driver; anything else cgroupfs.
    pub fn of_root(root_name: &str) -> Self {
        if root_name.ends_with(".slice") { Driver::Systemd } else { Driver::Cgroupfs }
    }
}

/// The container runtime a container cgroup names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    Containerd,
    Crio,
    /// CRI-O's `conmon` monitor of a container.
    CrioConmon,
    Docker,
    /// cgroupfs driver with a bare id (containerd and dockershim write no prefix).
    Unnamed,
}

/// One container cgroup of a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    pub runtime: Runtime,
    pub id: String,
}

/// What a cgroup path below the kubelet root tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodCgroup {
    pub qos: QosClass,
    /// The pod UID with dashes (`metadata.uid`).
    pub uid: String,
    /// `None` for the pod cgroup itself.
    pub container: Option<Container>,
}

/// The cgroups directly below which pods sit, as names relative to the kubelet root
/// `root_name` (the last component of the root): the root itself (Guaranteed pods) and the
/// Burstable and BestEffort cgroups.
pub fn qos_dirs(root_name: &str) -> [(QosClass, String); 3] {
    match Driver::of_root(root_name) {
        Driver::Systemd => {
            let stem = root_name.trim_end_matches(".slice");
            [
                (QosClass::Guaranteed, String::new()),
                (QosClass::Burstable, format!("{stem}-burstable.slice")),
                (QosClass::BestEffort, format!("{stem}-besteffort.slice")),
            ]
        }
        Driver::Cgroupfs => [
            (QosClass::Guaranteed, String::new()),
            (QosClass::Burstable, "burstable".to_string()),
            (QosClass::BestEffort, "besteffort".to_string()),
        ],
    }
}

/// A pod UID: 36 characters, 8-4-4-4-12 hex digits (RFC 4122 text form).
fn is_uid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A container id as runtimes write it: 64 lowercase hex digits.
fn is_container_id(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The pod UID of a pod cgroup's directory name, either driver.
pub fn pod_uid(dir: &str) -> Option<String> {
    if let Some(unit) = dir.strip_suffix(".slice") {
        // `<prefix>-pod<UID_>`: the last `-pod` (the UID itself has no dash here).
        let at = unit.rfind("-pod")?;
        let uid = unit[at + 4..].replace('_', "-");
        return is_uid(&uid).then_some(uid);
    }
    let uid = dir.strip_prefix("pod")?;
    is_uid(uid).then(|| uid.to_string())
}

/// The container of a container cgroup's directory name, either driver.
pub fn container(dir: &str) -> Option<Container> {
    let (runtime, id) = if let Some(unit) = dir.strip_suffix(".scope") {
        let prefixes = [
            ("cri-containerd-", Runtime::Containerd),
            ("crio-conmon-", Runtime::CrioConmon),
            ("crio-", Runtime::Crio),
            ("docker-", Runtime::Docker),
        ];
        prefixes.iter().find_map(|(prefix, runtime)| Some((*runtime, unit.strip_prefix(prefix)?)))?
    } else if let Some(id) = dir.strip_prefix("crio-conmon-") {
        (Runtime::CrioConmon, id)
    } else if let Some(id) = dir.strip_prefix("crio-") {
        (Runtime::Crio, id)
    } else {
        (Runtime::Unnamed, dir)
    };
    is_container_id(id).then(|| Container { runtime, id: id.to_string() })
}

/// The QoS cgroup a directory name is, if any (`kubepods-burstable.slice`, `burstable`).
fn qos_of(dir: &str) -> Option<QosClass> {
    let name = dir.strip_suffix(".slice").unwrap_or(dir);
    if name == "burstable" || name.ends_with("kubepods-burstable") {
        Some(QosClass::Burstable)
    } else if name == "besteffort" || name.ends_with("kubepods-besteffort") {
        Some(QosClass::BestEffort)
    } else {
        None
    }
}

/// Parses a cgroup path (absolute in the cgroup2 hierarchy, as /proc/PID/cgroup shows it, or
/// any path containing the kubelet root) into its pod and container. `None` for paths that
/// are not a pod's: the kubelet root or a QoS cgroup themselves, system slices, anything
/// that does not follow the kubelet's layout.
pub fn parse(path: &str) -> Option<PodCgroup> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    // The kubelet root: the last component named kubepods (cgroupfs) or *kubepods.slice.
    let root = parts.iter().rposition(|p| *p == "kubepods" || p.ends_with("kubepods.slice"))?;
    let mut rest = parts[root + 1..].iter();
    let mut next = rest.next()?;
    let qos = match qos_of(next) {
        Some(qos) => {
            next = rest.next()?;
            qos
        }
        None => QosClass::Guaranteed,
    };
    let uid = pod_uid(next)?;
    // The slice must say the same QoS class it sits in (systemd names carry it).
    if next.ends_with(".slice") {
        let unit = next.trim_end_matches(".slice");
        let named = qos_of(&unit[..unit.rfind("-pod")?]).unwrap_or(QosClass::Guaranteed);
        if named != qos {
            return None;
        }
    }
    let container = match rest.next() {
        None => None,
        Some(dir) => Some(container(dir)?),
    };
    // Containers do not nest further cgroups the kubelet knows of; deeper paths (a
    // container's own sub-cgroups) still belong to the same pod and container.
    Some(PodCgroup { qos, uid, container })
}

/// The session name of a pod cgroup directory (`pod-<UID>`), or `None` when `dir` is no
/// pod's. 40 bytes of `[a-z0-9-]`: a valid session name.
pub fn session_name(dir: &str) -> Option<String> {
    pod_uid(dir).map(|uid| format!("pod-{uid}"))
}

#[cfg(test)]
mod tests;
