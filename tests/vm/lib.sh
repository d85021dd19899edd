#!/bin/sh
# Helpers for the guest tests of `cargo xtask vm-test` (sourced by run.sh and run-one.sh;
# busybox sh). Tests use the shared daemon through GUARD_ROOT, GUARD_AUDIT, GUARD_SOCKET and
# GUARD_PID unless they start their own with `daemon_start NAME [guard run ARGS...]`.

CGROUP2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
VM_DAEMONS=/run/vm-daemons
DAEMON_START_TIMEOUT=${DAEMON_START_TIMEOUT:-240}
RECORD_WAIT=${RECORD_WAIT:-30}

# ---- time ------------------------------------------------------------------------------------

# Uptime in centiseconds.
now_cs() { awk '{ printf "%d\n", $1 * 100 }' /proc/uptime; }
# Seconds (one decimal) since a now_cs value.
secs_since() { awk -v a="$1" '{ printf "%.1f\n", ($1 * 100 - a) / 100 }' /proc/uptime; }

# ---- results ---------------------------------------------------------------------------------

fail() { echo "FAIL: $*"; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }
assert_eq() { [ "$1" = "$2" ] || fail "${3:-assert_eq}: expected '$2', got '$1'"; }
assert_ne() { [ "$1" != "$2" ] || fail "${3:-assert_ne}: got '$1'"; }
assert_contains() {
    case "$1" in *"$2"*) ;; *) fail "${3:-assert_contains}: '$2' not in '$1'" ;; esac
}
assert_not_contains() {
    case "$1" in *"$2"*) fail "${3:-assert_not_contains}: '$2' in '$1'" ;; esac
}

# run CMD...: runs a command, setting OUT (stdout+stderr) and RC (exit status), never failing.
# `run guard-actor open /x` then `assert_eq "$RC" 1; assert_eq "$OUT" EPERM`.
run() {
    OUT=$("$@" 2>/tmp/vm-run-stderr.$$)
    RC=$?
    ERR=$(cat /tmp/vm-run-stderr.$$)
    rm -f /tmp/vm-run-stderr.$$
}

# ---- sessions --------------------------------------------------------------------------------

# launch SESSION CMD...: `guard launch` into the current daemon's root.
launch() {
    session=$1
    shift
    guard launch --root "$GUARD_ROOT" --session "$session" -- "$@"
}

# Killed by SIGKILL (as a shell reports it)?
killed_status() { [ "$1" = 137 ]; }

# ---- the audit stream ------------------------------------------------------------------------

# expect_record WHAT COND...: waits (RECORD_WAIT s) for a record of the current daemon matching
# every COND (KEY=VALUE exact, KEY~TEXT substring; KEY dotted: details.tier, argv.1), sets REC
# to it, or fails the test showing the stream's tail.
expect_record() {
    what=$1
    shift
    if ! REC=$(guard-actor find-record "$GUARD_AUDIT" --wait "$RECORD_WAIT" "$@"); then
        echo "no audit record for $what ($*); the stream's last records:"
        tail -n 25 "$GUARD_AUDIT" | cut -c1-400
        fail "no audit record for $what"
    fi
}

# count_records COND...: how many records match now (no waiting).
count_records() { guard-actor find-record "$GUARD_AUDIT" --count "$@"; }

# field PATH JSON: one field of a record (`field details.tier "$REC"`).
field() { echo "$2" | guard-actor json-get "$1"; }

# settle SESSION: the daemon has handled everything SESSION did so far (a marker exec from it
# came through). Use before asserting that something was NOT recorded.
settle() {
    marker="settle-$$-$(now_cs)"
    launch "$1" /bin/sh -c "exec /bin/true $marker" || fail "settle marker could not run in session $1"
    expect_record "settle marker of $1" event=exec "argv~$marker"
}

status_json() { guard status --json --socket "$GUARD_SOCKET"; }
status_text() { guard status --socket "$GUARD_SOCKET"; }

# ---- daemons ---------------------------------------------------------------------------------

# daemon_start NAME [guard run ARGS...]: starts `guard run` with its own root ($CGROUP2/guard-NAME),
# audit file, socket and log under /tmp/guard-NAME, exports GUARD_DIR, GUARD_ROOT, GUARD_AUDIT,
# GUARD_SOCKET, GUARD_PID and waits for the start record. Returns 1 (log printed) if it
# exits or does not start in DAEMON_START_TIMEOUT s. The runner kills leftovers after a test.
daemon_start() {
    name=$1
    shift
    GUARD_DIR=/tmp/guard-$name
    GUARD_ROOT=$CGROUP2/guard-$name
    GUARD_AUDIT=$GUARD_DIR/audit.jsonl
    GUARD_SOCKET=$GUARD_DIR/control.sock
    mkdir -p "$GUARD_DIR" "$VM_DAEMONS"
    rm -f "$GUARD_AUDIT" "$GUARD_SOCKET"
    DAEMON_STARTED_AT=$(now_cs)
    guard run --root "$GUARD_ROOT" --audit "$GUARD_AUDIT" --socket "$GUARD_SOCKET" "$@" \
        </dev/null >"$GUARD_DIR/daemon.log" 2>&1 &
    GUARD_PID=$!
    echo "$GUARD_PID" > "$VM_DAEMONS/$name.pid"
    echo "$GUARD_ROOT" > "$VM_DAEMONS/$name.root"
    export GUARD_DIR GUARD_ROOT GUARD_AUDIT GUARD_SOCKET GUARD_PID
    deadline=$(( $(now_cs) + DAEMON_START_TIMEOUT * 100 ))
    while ! guard-actor find-record "$GUARD_AUDIT" event=start >/dev/null; do
        if ! kill -0 "$GUARD_PID" 2>/dev/null; then
            echo "guard run ($name) exited before its start record:"
            daemon_log
            return 1
        fi
        if [ "$(now_cs)" -gt "$deadline" ]; then
            echo "guard run ($name) wrote no start record in $DAEMON_START_TIMEOUT s:"
            daemon_log
            return 1
        fi
        sleep 0.2
    done
}

# daemon_stop [NAME]: SIGTERM, wait for the exit and the stop record, remove its cgroups.
daemon_stop() {
    name=${1:-shared}
    pid=$(cat "$VM_DAEMONS/$name.pid" 2>/dev/null) || { echo "no daemon $name"; return 1; }
    root=$(cat "$VM_DAEMONS/$name.root")
    audit=/tmp/guard-$name/audit.jsonl
    kill -TERM "$pid" 2>/dev/null
    i=0
    while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 600 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    ok=0
    if kill -0 "$pid" 2>/dev/null; then
        echo "guard run ($name) still running 60 s after SIGTERM: killing it"
        kill -9 "$pid" 2>/dev/null
        ok=1
    fi
    wait "$pid" 2>/dev/null
    if ! guard-actor find-record "$audit" event=stop >/dev/null; then
        echo "guard run ($name) wrote no stop record"
        ok=1
    fi
    kill_cgroup_tree "$root"
    rm -f "$VM_DAEMONS/$name.pid" "$VM_DAEMONS/$name.root"
    return $ok
}

daemon_log() { cat "${GUARD_DIR:-/tmp/guard-shared}/daemon.log" 2>/dev/null; }

# kill_cgroup_tree DIR: SIGKILL everything in a cgroup subtree and remove it, deepest first.
kill_cgroup_tree() {
    [ -d "$1" ] || return 0
    echo 1 > "$1/cgroup.kill" 2>/dev/null
    i=0
    while [ -d "$1" ] && [ "$i" -lt 50 ]; do
        find "$1" -depth -type d -exec rmdir {} \; 2>/dev/null
        [ -d "$1" ] && sleep 0.1
        i=$((i + 1))
    done
    [ -d "$1" ] && echo "warning: could not remove cgroup $1"
    return 0
}
