#!/bin/sh
# guard-tests' Rust integration-test binaries, when `cargo xtask vm-test --rust-tests NAMES`
# put them in the image (/vm/rust/<name>); skipped otherwise. Each test starts its own daemon.
# Tests that need python3 or git fail here: the guest has only busybox.

VM_TIMEOUT_t_rust_integration=1400

t_rust_integration() {
    [ -n "$(ls /vm/rust 2>/dev/null)" ] || skip "no Rust test binaries in the image (use --rust-tests NAMES)"
    status=0
    for bin in /vm/rust/*; do
        echo "== $(basename "$bin")${guardvm_rust_filter:+ (filter: $guardvm_rust_filter)}"
        # shellcheck disable=SC2086 # the filter is one word or nothing
        GUARD_BIN=/usr/local/bin/guard "$bin" --include-ignored --test-threads=1 $guardvm_rust_filter || status=1
    done
    return $status
}
