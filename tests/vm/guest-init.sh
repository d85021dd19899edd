#!/bin/bash
# pid 1 of the full stage's guest, on the Debian root disk (boot-init.sh switched here). The
# build-tree disk is mounted at /guard: bin/ (static guard, guard-actor), tests/ (guard-tests'
# integration-test binaries), vm/settings (what to do, written by cargo xtask), out/ (what the
# host reads back). Mounts what guard needs, then either runs the integration suite (suite
# mode: per-test lines from libtest, summary `vm: N passed, N failed`) or the vm-run command
# (run mode: its stdout, stderr and exit status into /guard/out). Ends with the marker line
# `GUARD-VM-RESULT rc=N` the host waits for, and powers off.

export PATH=/guard/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 TERM=dumb

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /sys/kernel/security /sys/fs/bpf /sys/kernel/tracing /sys/fs/cgroup /dev/pts /dev/shm
mount -t securityfs securityfs /sys/kernel/security || echo "vm-init: cannot mount securityfs"
mount -t bpf bpf /sys/fs/bpf || echo "vm-init: cannot mount bpffs"
mount -t tracefs tracefs /sys/kernel/tracing || echo "vm-init: cannot mount tracefs"
mount -t cgroup2 cgroup2 /sys/fs/cgroup || echo "vm-init: cannot mount cgroup2"
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t devpts devpts /dev/pts 2>/dev/null
mount -t tmpfs tmpfs /dev/shm
mkdir -p /run/lock /var/log/guard
# What udev would make: without these, `> /dev/stdout` creates a plain file in devtmpfs.
ln -sfn /proc/self/fd /dev/fd
ln -sfn /proc/self/fd/0 /dev/stdin
ln -sfn /proc/self/fd/1 /dev/stdout
ln -sfn /proc/self/fd/2 /dev/stderr
hostname guard-vm
ip link set lo up

finish() {
    echo "GUARD-VM-RESULT rc=$1"
    cat /tmp/vm-summary 2>/dev/null || echo "vm: 0 passed, 1 failed (guest-init wrote no summary)"
    sync
    busybox poweroff -f
    exit "$1"
}

read -r up _ < /proc/uptime
echo "vm-init: ${guardvm_label:-?} kernel $(uname -r), /init at ${up} s (uptime), Debian $(cat /etc/debian_version)"
echo "vm-init: lsm=$(cat /sys/kernel/security/lsm 2>/dev/null || echo unreadable)"
[ -e /sys/kernel/btf/vmlinux ] || echo "vm-init: btf=/sys/kernel/btf/vmlinux MISSING"

# shellcheck source=/dev/null
. /guard/vm/settings || finish 97

uptime_s() { read -r t _ < /proc/uptime; echo "${t%.*}"; }

run_suite() {
    local passed=0 failed=0 name log rc start p f
    # Timeouts in guard-tests' harness scale by this: everything is slower under TCG.
    export GUARD_BIN=/guard/bin/guard GUARD_SOURCE_DIR=/guard/src GUARD_TEST_TIME_SCALE=6 RUST_BACKTRACE=1
    local filter=()
    [ -n "$GUARDVM_FILTER" ] && filter=("$GUARDVM_FILTER")
    local started
    started=$(uptime_s)
    for name in $GUARDVM_TESTS; do
        echo "vm-rust: begin $name"
        log="/tmp/rust-$name.log"
        start=$(uptime_s)
        (cd /tmp && timeout -k 10 1200 "/guard/tests/$name" --include-ignored --show-output \
            --test-threads="$GUARDVM_THREADS" "${filter[@]}") </dev/null 2>&1 | tee "$log"
        rc=${PIPESTATUS[0]}
        echo "vm-rust: end $name rc=$rc secs=$(( $(uptime_s) - start ))"
        p=$(grep -c '^test .* \.\.\. ok$' "$log")
        f=$(grep -c '^test .* \.\.\. FAILED$' "$log")
        passed=$((passed + p))
        failed=$((failed + f))
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then failed=$((failed + 1)); fi
        # What a crashed test left behind must not reach the next binary.
        for cg in /sys/fs/cgroup/guard-test-*; do
            [ -d "$cg" ] || continue
            echo 1 > "$cg/cgroup.kill" 2>/dev/null
            find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
        done
        rm -rf /sys/fs/bpf/guard-test-* 2>/dev/null
    done
    echo "vm-timing: suite=$(( $(uptime_s) - started )) s"
    echo "vm: $passed passed, $failed failed" > /tmp/vm-summary
    [ "$failed" -eq 0 ]
}

run_command() {
    mkdir -p /guard/out/files "$GUARDVM_SHARE_PATH" /guard/share
    mount --bind /guard/share "$GUARDVM_SHARE_PATH" || { echo "vm-run: cannot bind the share"; return 1; }
    export GUARD_VM_OUT=/guard/out/files GUARD_VM_SHARE="$GUARDVM_SHARE_PATH"
    echo "vm-run: running $(head -c 300 /guard/vm/cmd.sh) in $GUARDVM_SHARE_PATH"
    (cd "$GUARDVM_SHARE_PATH" && bash /guard/vm/cmd.sh) </dev/null >/guard/out/stdout 2>/guard/out/stderr
    echo "$?" > /guard/out/rc
    echo "vm-run: exit status $(cat /guard/out/rc)"
    echo "vm: 1 passed, 0 failed (vm-run)" > /tmp/vm-summary
}

case "$GUARDVM_MODE" in
    suite) run_suite; finish $? ;;
    run) run_command; finish $? ;;
    *) echo "vm-init: unknown GUARDVM_MODE '$GUARDVM_MODE'"; finish 96 ;;
esac
