#!/bin/sh
# Smoke tests: guard runs in the guest, sessions are recorded, the tier is reported.
# Add tests as functions named t_* (see /vm/run.sh and lib.sh for the helpers).

t_open_counted_not_recorded() {
    # The default record level (decisions): an allowed open is counted in the kernel and
    # carried by the process's exit record, not sent on its own.
    echo "hello from the vm" > "$T_DIR/hello.txt"
    run launch vm /bin/cat "$T_DIR/hello.txt"
    assert_eq "$RC" 0 "guard launch cat (stderr: $ERR)"
    assert_eq "$OUT" "hello from the vm" "cat output"
    expect_record "exit of cat" event=exit session=vm comm=cat
    opens=$(field counts.opens "$REC")
    [ "${opens:-0}" -ge 1 ] || fail "the exit record carries no open count: $REC"
    settle vm
    assert_eq "$(count_records event=open path="$T_DIR/hello.txt")" 0 "open records of an allowed read"
    echo "recorded: $REC" | cut -c1-300
}

t_outsider_not_recorded() {
    echo out > "$T_DIR/outside.txt"
    run guard-actor open "$T_DIR/outside.txt"
    assert_eq "$RC" 0 "open outside every session"
    assert_eq "$OUT" out
    settle outsider-check
    assert_eq "$(count_records path="$T_DIR/outside.txt")" 0 "records of a process outside every session"
}

t_connect_recorded() {
    guard-actor listen 127.0.0.1 0 --accept 1 --timeout 60 > "$T_DIR/listen.out" 2>&1 &
    i=0
    while ! grep -q '^listening' "$T_DIR/listen.out" && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    port=$(sed -n 's/^listening //p' "$T_DIR/listen.out")
    [ -n "$port" ] || fail "the listener did not start: $(cat "$T_DIR/listen.out")"
    run launch vm guard-actor connect 127.0.0.1 "$port" --send hello-vm
    assert_eq "$RC" 0 "connect from the session (stdout: $OUT, stderr: $ERR)"
    wait
    assert_contains "$(cat "$T_DIR/listen.out")" "recv 1: hello-vm"
    expect_record "tcp connect" event=connect port="$port" session=vm
    assert_eq "$(field addr "$REC")" 127.0.0.1
    assert_eq "$(field proto "$REC")" tcp
}

t_tier_reported() {
    lsm=$(cat /sys/kernel/security/lsm)
    expect_record "start record" event=start
    tier=$(field details.tier "$REC")
    reason=$(field details.tier_reason "$REC")
    echo "lsm list: $lsm"
    echo "start record: tier=$tier reason=$reason"
    echo "guard status:"
    status_text | sed 's/^/  /'
    hooks=$(status_json | guard-actor json-get hooks)
    echo "status hooks: $hooks"
    case ",$lsm," in
        *,bpf,*) assert_eq "$tier" lsm "tier with bpf in the active LSM list ($reason)" ;;
        *) fail "the guest kernel was booted with lsm=...,bpf but bpf is not active: $lsm" ;;
    esac
}
