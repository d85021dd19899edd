#!/bin/sh
# /init of the full stage's boot initramfs (busybox sh, pid 1): loads the disk modules the
# kernel has as modules (/modules/order, written by cargo xtask), mounts the Debian root disk
# (vda) at /newroot and the build-tree disk (vdb) at /newroot/guard, and switches to the root
# disk, running /guard/vm/guest-init.sh there. On a failure it prints the result marker the host
# waits for, so the run fails at once with the reason instead of timing out.

export PATH=/bin:/sbin:/usr/bin:/usr/sbin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
[ -e /proc/self/fd/1 ] || exec </dev/console >/dev/console 2>&1

fail() {
    echo "vm-boot: $*"
    echo "GUARD-VM-RESULT rc=98"
    echo "vm: 0 passed, 1 failed (boot: $*)"
    poweroff -f
    exit 1
}

while read -r module; do
    [ -n "$module" ] || continue
    insmod "/modules/$module" || fail "insmod $module failed"
done < /modules/order

n=0
while [ ! -b /dev/vda ] || [ ! -b /dev/vdb ]; do
    n=$((n + 1))
    [ "$n" -le 300 ] || fail "no /dev/vda and /dev/vdb after 30 s ($(ls /dev | tr '\n' ' '))"
    sleep 0.1
done
mount -t ext4 /dev/vda /newroot || fail "cannot mount the root disk /dev/vda"
mount -t ext4 /dev/vdb /newroot/guard || fail "cannot mount the build-tree disk /dev/vdb on /guard"
[ -x /newroot/guard/vm/guest-init.sh ] || fail "the build-tree disk has no vm/guest-init.sh"
mount --move /dev /newroot/dev
umount /sys /proc
exec switch_root /newroot /guard/vm/guest-init.sh
