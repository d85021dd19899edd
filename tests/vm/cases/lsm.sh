#!/bin/sh
# The lsm tier refuses before the operation happens (EPERM), where the host tier can only kill
# the task afterwards.

# A credential that exists when the daemon starts (found by the inode scan): its own daemon.
t_lsm_credential_open_refused() {
    mkdir -p /root/.ssh
    echo "vm-secret-key" > /root/.ssh/id_ed25519
    daemon_start cred || fail "guard run did not start"
    run launch agent guard-actor open /root/.ssh/id_ed25519
    echo "open of ~/.ssh/id_ed25519 in a session: status $RC, stdout '$OUT'"
    assert_not_contains "$OUT" vm-secret-key "the secret reached the session"
    assert_eq "$RC" 1 "status (1 = EPERM; 137 = killed) (stderr: $ERR)"
    assert_eq "$OUT" EPERM
    expect_record "the refusal" event=open session=agent verdict=deny path~id_ed25519
    echo "refusal recorded: path=$(field path "$REC") rule=$(field rule "$REC") detector=$(field detector "$REC")"
    # Outside every session the file stays readable.
    run guard-actor open /root/.ssh/id_ed25519
    assert_eq "$RC" 0 "open outside every session (stderr: $ERR)"
    assert_eq "$OUT" vm-secret-key
    daemon_stop cred
}
