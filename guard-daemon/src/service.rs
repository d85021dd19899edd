//! The service manager's side of the daemon: `guard.service` is `Type=notify`, so systemd
//! counts guard as started only when it says READY=1, which `guard run` does once every
//! program is attached and the policy is in the maps (the `start` record is written). Outside
//! systemd (no NOTIFY_SOCKET) these do nothing.

use sd_notify::NotifyState;

/// READY=1 with a one-line STATUS= for `systemctl status`.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// STOPPING=1: the daemon is detaching and writing its `stop` record.
pub fn stopping(why: &str) {
    let status = format!("stopping on {why}");
    send(&[NotifyState::Stopping, NotifyState::Status(&status)]);
}

fn send(states: &[NotifyState]) {
    // A service manager that cannot be told is no reason to stop enforcing: systemd then
    // times the start out itself, which the journal shows next to this line.
    if let Err(err) = sd_notify::notify(states) {
        log::warn!("cannot notify the service manager (NOTIFY_SOCKET): {err}");
    }
}
