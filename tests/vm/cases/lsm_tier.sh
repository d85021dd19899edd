#!/bin/sh
# Issue "The LSM tier, tested in a VM": the incident and the path evasions refused with EPERM
# (verdict deny), and what the host tier cannot prevent: in-process deletion, O_TRUNC, cgroup
# escape, signals to held tasks.

VM_TIMEOUT_t_lsm_incident_and_path_evasions=240

# A policy in the incident's shape, every rule enforced; $T_DIR is the session's workspace.
lsm_policy() {
    cat > "$T_DIR/policy.yaml" <<YAML
credentials:
  rules:
    - id: dotenv
      severity: critical
      names: [".env", ".env.*"]
    - id: vm-keys
      severity: critical
      paths: ["/srv/keys/"]
scope:
  network:
    mode: enforce
    allow_loopback: false
    allow: ["127.0.0.2/32"]
  files:
    mode: enforce
    write_roots: [\$CWD, /tmp, /dev]
destructive:
  rules:
    - id: sql-destructive
      severity: critical
      mitre: T1485
      match:
        programs: [psql]
        any:
          - script:
              options: [-c]
              matches: '(?i)\\bdrop\\b'
YAML
}

# EPERM + a deny record for an open in the session.
expect_open_refused() {
    what=$1
    shift
    run launch agent guard-actor open "$@"
    assert_not_contains "$OUT" vm-secret "$what: the secret reached the session"
    assert_eq "$RC" 1 "$what: status (1 = EPERM, 137 = killed) (stderr: $ERR)"
    assert_eq "$OUT" EPERM "$what"
}

t_lsm_incident_and_path_evasions() {
    mkdir -p /srv/keys "$T_DIR/sub"
    echo "vm-secret-prod-token" > /srv/keys/prod.token
    echo "AWS_SECRET_ACCESS_KEY=vm-secret-aws" > "$T_DIR/.env"
    echo "fn main() {}" > "$T_DIR/main.rs"
    lsm_policy
    daemon_start incident --policy "$T_DIR/policy.yaml" || fail "guard run did not start"

    # 1. credential discovery: refused before the open, recorded critical T1552.001.
    expect_open_refused ".env" .env
    expect_record "the .env refusal" event=open session=agent verdict=deny detector=credential rule=dotenv severity=critical mitre=T1552.001
    # Path evasions of a credential known by inode: symlink, hardlink, relative, dirfd,
    # /proc/self/root.
    ln -s /srv/keys/prod.token "$T_DIR/innocent-link"
    # (same filesystem: /tmp is a separate tmpfs in the guest)
    ln /srv/keys/prod.token /srv/innocent-hardlink
    expect_open_refused "symlink" innocent-link
    expect_open_refused "hardlink" /srv/innocent-hardlink
    (cd /srv && run launch agent guard-actor open keys/prod.token)
    run launch agent guard-actor open prod.token --dirfd /srv/keys
    assert_eq "$OUT" EPERM "dirfd-relative (stderr: $ERR)"
    expect_open_refused "/proc/self/root" /proc/self/root/srv/keys/prod.token
    n=$(count_records event=open session=agent verdict=deny rule=vm-keys)
    [ "$n" -ge 4 ] || fail "expected at least 4 deny records for the key, got $n"

    # 2. out-of-scope use: production refused, staging works.
    guard-actor listen 127.0.0.2 8443 --accept 1 --timeout 20 > "$T_DIR/staging.out" &
    sleep 0.5
    run launch agent guard-actor connect 127.0.0.3 9 --send AKIAIOSFODNN7EXAMPLE
    assert_eq "$OUT" EPERM "connect to production (stderr: $ERR)"
    expect_record "the production refusal" event=connect session=agent verdict=deny addr=127.0.0.3 severity=high
    run launch agent guard-actor connect 127.0.0.2 8443 --send hello
    assert_eq "$RC" 0 "connect to staging (stderr: $ERR)"

    # 3. the destructive command never runs (held: this session touched a credential).
    mkdir -p "$T_DIR/bin"
    printf '#!/bin/sh\necho ran > %s/ran\n' "$T_DIR" > "$T_DIR/bin/psql"
    chmod +x "$T_DIR/bin/psql"
    PATH="$T_DIR/bin:$PATH" launch agent psql -c 'DROP DATABASE prod' &
    held_launch=$!
    expect_record "the hold" event=exec session=agent verdict=hold rule=sql-destructive
    id=$(field hold_id "$REC")
    guard deny "$id" --socket "$GUARD_SOCKET" || fail "guard deny $id failed"
    expect_record "the denial" event=deny verdict=kill hold_id="$id"
    wait "$held_launch"
    [ ! -e "$T_DIR/ran" ] || fail "the destructive command ran"

    # Meanwhile ordinary work is untouched.
    run launch agent guard-actor open main.rs
    assert_eq "$RC" 0 "reading source (stderr: $ERR)"
    run launch agent guard-actor write "$T_DIR/out.txt" built
    assert_eq "$RC" 0 "writing in the workspace (stderr: $ERR)"
    daemon_stop incident
}

t_lsm_rmtree_and_trunc_leave_protected_files_intact() {
    mkdir -p /srv/protected/sub
    echo keep > /srv/protected/a.txt
    echo keep > /srv/protected/sub/b.txt
    echo "AWS_SECRET_ACCESS_KEY=vm-secret-trunc" > "$T_DIR/.env"
    lsm_policy
    daemon_start protect --policy "$T_DIR/policy.yaml" || fail "guard run did not start"
    # In-process recursive delete (no exec of rm): every unlink refused.
    run launch agent guard-actor rmtree /srv/protected
    assert_eq "$OUT" EPERM "rmtree of a protected directory (stderr: $ERR)"
    if ! [ -f /srv/protected/a.txt ] || ! [ -f /srv/protected/sub/b.txt ]; then
        echo "the stream's last records:"; tail -n 25 "$GUARD_AUDIT" | cut -c1-400
        fail "files were deleted"
    fi
    expect_record "the unlink refusal" event=unlink session=agent verdict=deny detector=scope_file
    # O_TRUNC on a credential: refused before the truncation.
    run launch agent guard-actor open .env --write --trunc
    assert_eq "$OUT" EPERM "O_TRUNC open of .env (stderr: $ERR)"
    assert_eq "$(cat "$T_DIR/.env")" "AWS_SECRET_ACCESS_KEY=vm-secret-trunc" ".env content"
    # Rename away: refused too.
    run launch agent guard-actor rename /srv/protected/a.txt /srv/stolen.txt
    assert_eq "$OUT" EPERM "rename out of a protected directory (stderr: $ERR)"
    [ -f /srv/protected/a.txt ] || fail "a.txt was moved"
    daemon_stop protect
}

t_lsm_no_cgroup_escape() {
    mkdir -p "$CGROUP2/elsewhere"
    run launch agent guard-actor write-cgroup-procs "$CGROUP2/elsewhere" --then pid
    assert_eq "$OUT" EPERM "writing its pid to another cgroup's cgroup.procs (stderr: $ERR)"
    [ -z "$(cat "$CGROUP2/elsewhere/cgroup.procs")" ] || fail "a session process escaped"
    expect_record "the escape refusal" event=open session=agent verdict=deny detector=self_protection
    rmdir "$CGROUP2/elsewhere"
}

t_lsm_signals_to_held_task_refused() {
    lsm_policy
    echo "AWS_SECRET_ACCESS_KEY=vm-secret-sig" > "$T_DIR/.env"
    mkdir -p "$T_DIR/bin"
    printf '#!/bin/sh\necho ran > %s/ran\n' "$T_DIR" > "$T_DIR/bin/psql"
    chmod +x "$T_DIR/bin/psql"
    daemon_start signals --policy "$T_DIR/policy.yaml" || fail "guard run did not start"
    run launch agent guard-actor open .env
    PATH="$T_DIR/bin:$PATH" launch agent psql -c 'DROP TABLE t' &
    held_launch=$!
    expect_record "the hold" event=exec session=agent verdict=hold
    held=$(field pid "$REC")
    id=$(field hold_id "$REC")
    run launch agent guard-actor signal "$held" CONT
    assert_eq "$OUT" EPERM "SIGCONT to the held task (stderr: $ERR)"
    # The BPF LSM's task_kill (a self_protection record) or, with Landlock signal scoping
    # (ABI 6: the 6.12 guest), Landlock's EPERM first (a refusal record): either way refused.
    expect_record "the refusal" verdict=deny target_pid="$held"
    sleep 1
    [ ! -e "$T_DIR/ran" ] || fail "the held command ran"
    guard deny "$id" --socket "$GUARD_SOCKET" || fail "guard deny failed"
    wait "$held_launch"
    daemon_stop signals
}
