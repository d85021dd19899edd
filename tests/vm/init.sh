#!/bin/sh
# /init of the initramfs that `cargo xtask vm-test` boots under qemu (pid 1, busybox sh).
#
# Mounts what guard needs, runs the guest suite (/vm/run.sh), prints the result marker the
# host parses, and powers off. qemu exits 0 whatever happened here: the host believes only the
# marker line `GUARD-VM-RESULT rc=N` and the summary line after it (`vm: N passed, N failed`).
# Settings come from the kernel command line (the kernel hands unknown NAME=VALUE parameters
# to init as environment variables): guardvm_label, guardvm_only, guardvm_test_timeout.

export PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
export HOME=/root

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
# Without /dev/console in the archive the kernel started us with no stdio: take it now.
[ -e /proc/self/fd/1 ] || exec </dev/console >/dev/console 2>&1

mkdir -p /sys/kernel/security /sys/fs/bpf /sys/kernel/tracing /sys/fs/cgroup /tmp /run /dev/pts /dev/shm
mount -t securityfs securityfs /sys/kernel/security || echo "vm-init: cannot mount securityfs"
mount -t bpf bpf /sys/fs/bpf || echo "vm-init: cannot mount bpffs"
mount -t tracefs tracefs /sys/kernel/tracing || echo "vm-init: cannot mount tracefs"
mount -t cgroup2 cgroup2 /sys/fs/cgroup || echo "vm-init: cannot mount cgroup2"
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t devpts devpts /dev/pts 2>/dev/null
hostname guard-vm
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up

read -r up _ < /proc/uptime
echo "vm-init: ${guardvm_label:-?} kernel $(uname -r), /init at ${up} s (uptime)"
echo "vm-init: lsm=$(cat /sys/kernel/security/lsm 2>/dev/null || echo unreadable)"
if [ -e /sys/kernel/btf/vmlinux ]; then
    echo "vm-init: btf=/sys/kernel/btf/vmlinux present"
else
    echo "vm-init: btf=/sys/kernel/btf/vmlinux MISSING"
fi

/bin/sh /vm/run.sh
rc=$?

echo "GUARD-VM-RESULT rc=$rc"
cat /tmp/vm-summary 2>/dev/null || echo "vm: 0 passed, 1 failed (the runner wrote no summary)"
sync
poweroff -f
# poweroff should not return; if it does, panic=-1 with qemu -no-reboot ends the VM.
exit "$rc"
