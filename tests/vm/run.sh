#!/bin/sh
# Guest test runner for `cargo xtask vm-test` (busybox sh).
#
# Every shell function named t_* defined at the start of a line in /vm/cases/*.sh is a test
# (`t_name() {`). Each runs in a fresh shell (lib.sh and every case file sourced) under a
# timeout, in its own cgroup (whatever it leaves running is killed afterwards), with a scratch
# directory $T_DIR as its working directory. Status 0 passes, 77 skips, anything else fails.
# A case file may give one test a longer limit with a top-level `VM_TIMEOUT_t_name=SECONDS`.
#
# One daemon with the built-in default policy ("the shared daemon") is started before the
# tests; GUARD_ROOT, GUARD_AUDIT and GUARD_SOCKET name it. After each test every session
# under its root is killed and removed, so tests do not see each other's sessions.
#
# Environment (from the kernel command line): guardvm_only (space- or comma-separated
# substrings: run only tests whose name contains one), guardvm_test_timeout (seconds, default 180).

. /vm/lib.sh
# Only for the VM_TIMEOUT_* settings (the tests themselves run in run-one.sh).
for f in /vm/cases/*.sh; do
    . "$f"
done

TEST_TIMEOUT=${guardvm_test_timeout:-180}
TESTS_CG=$CGROUP2/vm-tests
LOGS=/tmp/vm-logs
mkdir -p "$LOGS" "$TESTS_CG"

all=$(sed -n 's/^\(t_[A-Za-z0-9_]*\)[[:space:]]*()[[:space:]]*[{]*[[:space:]]*$/\1/p' /vm/cases/*.sh)
selected=""
for t in $all; do
    if [ -n "$guardvm_only" ]; then
        hit=no
        for want in $(echo "$guardvm_only" | tr ',' ' '); do
            case "$t" in *"$want"*) hit=yes ;; esac
        done
        [ "$hit" = yes ] || continue
    fi
    selected="$selected $t"
done

passed=0
failed=0
skipped=0
failed_names=""

suite_start=$(now_cs)
echo "vm: starting the shared daemon"
if daemon_start shared; then
    echo "vm-timing: daemon_start=$(secs_since "$DAEMON_STARTED_AT") s"
    start=$(guard-actor find-record "$GUARD_AUDIT" event=start)
    echo "vm-tier: tier=$(echo "$start" | guard-actor json-get details.tier) reason=$(echo "$start" | guard-actor json-get details.tier_reason)"
    daemon_ok=yes
else
    echo "vm: the shared daemon did not start (its log is above)"
    daemon_ok=no
fi
# The runner's own idea of the shared daemon (a test may start others).
SHARED_ROOT=$GUARD_ROOT
SHARED_PID=$GUARD_PID

cleanup_sessions() {
    for cg in "$SHARED_ROOT"/*/; do
        [ -d "$cg" ] && kill_cgroup_tree "${cg%/}"
    done
}

for t in $selected; do
    if [ "$daemon_ok" = no ]; then
        echo "FAIL $t (the shared daemon is not running)"
        failed=$((failed + 1))
        failed_names="$failed_names $t"
        continue
    fi
    eval "limit=\${VM_TIMEOUT_$t:-$TEST_TIMEOUT}"
    echo "---- $t"
    t0=$(now_cs)
    # A subshell in the test cgroup, under the timeout; output streamed, indented.
    (
        /bin/sh -c 'echo $$ > "$1/cgroup.procs"; shift; exec timeout -s KILL "$@"' \
            sh "$TESTS_CG" "$limit" /bin/sh /vm/run-one.sh "$t"
        echo $? > "$LOGS/$t.rc"
        # Whatever the test left behind (it may hold this pipe open): its own processes, its
        # sessions, extra daemons.
        echo 1 > "$TESTS_CG/cgroup.kill" 2>/dev/null
        cleanup_sessions
        for pidfile in /run/vm-daemons/*.pid; do
            [ -e "$pidfile" ] || continue
            case "$pidfile" in */shared.pid) continue ;; esac
            kill -9 "$(cat "$pidfile")" 2>/dev/null
            kill_cgroup_tree "$(cat "${pidfile%.pid}.root" 2>/dev/null)"
            rm -f "$pidfile" "${pidfile%.pid}.root"
        done
    ) 2>&1 | tee "$LOGS/$t.log" | sed 's/^/    /'
    rc=$(cat "$LOGS/$t.rc" 2>/dev/null || echo 1)
    elapsed=$(secs_since "$t0")
    rm -rf "/tmp/t/$t"
    if ! kill -0 "$SHARED_PID" 2>/dev/null; then
        echo "    the shared daemon died during $t:"
        GUARD_DIR=/tmp/guard-shared daemon_log | tail -n 30 | sed 's/^/    /'
        daemon_ok=no
        rc=1
    fi
    case "$rc" in
        0) echo "PASS $t (${elapsed} s)"; passed=$((passed + 1)) ;;
        77) echo "SKIP $t (${elapsed} s)"; skipped=$((skipped + 1)) ;;
        137) if [ "${elapsed%.*}" -ge "$limit" ]; then
                 echo "FAIL $t (TIMED OUT after ${elapsed} s)"
             else
                 echo "FAIL $t (killed, status 137, ${elapsed} s)"
             fi
             failed=$((failed + 1)); failed_names="$failed_names $t" ;;
        *) echo "FAIL $t (status $rc, ${elapsed} s)"; failed=$((failed + 1)); failed_names="$failed_names $t" ;;
    esac
done

if [ "$daemon_ok" = yes ]; then
    t0=$(now_cs)
    GUARD_DIR=/tmp/guard-shared daemon_stop shared || echo "vm: the shared daemon did not stop cleanly"
    echo "vm-timing: daemon_stop=$(secs_since "$t0") s"
fi
echo "vm-timing: suite=$(secs_since "$suite_start") s"

{
    echo "vm: $passed passed, $failed failed"
    [ "$skipped" -gt 0 ] && echo "vm-skipped: $skipped"
    [ -n "$failed_names" ] && echo "vm-failed:$failed_names"
} > /tmp/vm-summary
[ -z "$selected" ] && echo "vm: no test selected (guardvm_only=$guardvm_only)"
[ "$failed" -eq 0 ] && [ -n "$selected" ]
