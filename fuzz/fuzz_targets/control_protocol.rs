//! The control-socket protocol: request lines as the daemon reads them from a client, reply
//! lines as a client reads them from the daemon.
//!
//! Input, by its first byte (so seeds stay readable text):
//! * `q`: the rest is a request line (`Request::parse_line`, the daemon's side);
//! * `r`: the rest is a reply line (`Response::parse_line`, the client's side);
//! * anything else: a request or a reply built with `arbitrary`, written as a line and read
//!   back.
//!
//! Whatever parses must survive the round trip unchanged: what one side writes, the other
//! reads as it was meant.

#![no_main]

use arbitrary::{Arbitrary, Result, Unstructured};
use guard_engine::audit::RecordLevel;
use guard_engine::confinement::{AppliedConfinement, AppliedLandlock, Confinement};
use guard_engine::control::{
    Counters, HookStatus, LatencySummary, PendingHold, Request, Response, SessionStatus, StatusReport, Tier,
};
use libfuzzer_sys::fuzz_target;

fn request(u: &mut Unstructured<'_>) -> Result<Request> {
    Ok(match u.int_in_range(0..=7)? {
        0 => Request::Status,
        1 => Request::Pending,
        2 => Request::Approve { id: u.arbitrary()? },
        3 => Request::Deny { id: u.arbitrary()? },
        4 => Request::Stop { keep_pins: u.arbitrary()? },
        5 => Request::Reopen,
        6 => Request::Record {
            cgroup: u.arbitrary()?,
            level: *u.choose(&[RecordLevel::Decisions, RecordLevel::Writes, RecordLevel::All])?,
        },
        _ => Request::Confinement { cwd: u.arbitrary()? },
    })
}

fn pending_hold(u: &mut Unstructured<'_>) -> Result<PendingHold> {
    Ok(PendingHold {
        id: u.arbitrary()?,
        session: u.arbitrary()?,
        pid: u.arbitrary()?,
        exe: u.arbitrary()?,
        argv: u.arbitrary()?,
        cwd: u.arbitrary()?,
        rule: u.arbitrary()?,
        why: u.arbitrary()?,
        age_secs: u.arbitrary()?,
        timeout_in_secs: u.arbitrary()?,
        seq: u.arbitrary()?,
    })
}

fn applied(u: &mut Unstructured<'_>) -> Result<AppliedConfinement> {
    let landlock = if u.arbitrary()? {
        Some(AppliedLandlock {
            abi: u.arbitrary()?,
            status: u.arbitrary()?,
            handled: u.arbitrary()?,
            write_roots_enforced: u.arbitrary()?,
            write_roots: u.arbitrary()?,
            signals_scoped: u.arbitrary()?,
            abstract_unix_scoped: u.arbitrary()?,
        })
    } else {
        None
    };
    Ok(AppliedConfinement { unconfined: u.arbitrary()?, source: u.arbitrary()?, landlock, seccomp: u.arbitrary()? })
}

fn status(u: &mut Unstructured<'_>) -> Result<StatusReport> {
    let mut hooks = Vec::new();
    for _ in 0..u.int_in_range(0..=4)? {
        hooks.push(HookStatus {
            hook: u.arbitrary()?,
            tier: *u.choose(&[Tier::Host, Tier::Lsm])?,
            attached: u.arbitrary()?,
            reason: u.arbitrary()?,
        });
    }
    let mut sessions = Vec::new();
    for _ in 0..u.int_in_range(0..=3)? {
        sessions.push(SessionStatus {
            name: u.arbitrary()?,
            path: u.arbitrary()?,
            cgroup_id: u.arbitrary()?,
            processes: u.arbitrary()?,
            trajectory: u.arbitrary()?,
            confinement: if u.arbitrary()? { Some(applied(u)?) } else { None },
        });
    }
    let hold_release_us = if u.arbitrary()? {
        Some(LatencySummary { count: u.arbitrary()?, p50: u.arbitrary()?, p99: u.arbitrary()?, max: u.arbitrary()? })
    } else {
        None
    };
    Ok(StatusReport {
        version: u.arbitrary()?,
        pid: u.arbitrary()?,
        uptime_secs: u.arbitrary()?,
        policy_source: u.arbitrary()?,
        enforce: u.arbitrary()?,
        hooks,
        sessions,
        counters: Counters {
            events: u.arbitrary()?,
            dropped: u.arbitrary()?,
            held: u.arbitrary()?,
            open_unrecorded: u.arbitrary()?,
            hold_release_us,
            ..Counters::default()
        },
        ringbuf_bytes: u.arbitrary()?,
        audit_path: u.arbitrary()?,
        audit_unwritable: u.arbitrary()?,
        // audit_sinks, dns_hosts: plain serde data like the fields above; left empty here.
        ..StatusReport::default()
    })
}

fn response(u: &mut Unstructured<'_>) -> Result<Response> {
    Ok(match u.int_in_range(0..=4)? {
        0 => Response::error(String::arbitrary(u)?),
        1 => Response::done(String::arbitrary(u)?),
        2 => {
            let holds = (0..u.int_in_range(0..=3)?).map(|_| pending_hold(u)).collect::<Result<Vec<_>>>()?;
            Response::pending(holds)
        }
        3 => Response::confinement(Confinement {
            landlock: u.arbitrary()?,
            write_roots: u.arbitrary()?,
            seccomp_deny: u.arbitrary()?,
        }),
        _ => Response::status(status(u)?),
    })
}

fn request_round_trip(request: &Request) {
    let line = request.to_line();
    assert!(!line.contains('\n'), "a request line with a newline in it: {line:?}");
    assert_eq!(Request::parse_line(line.as_bytes()).as_ref(), Ok(request), "request line {line:?}");
}

fn response_round_trip(response: &Response) {
    let line = response.to_line();
    assert!(!line.contains('\n'), "a reply line with a newline in it: {line:?}");
    match Response::parse_line(&line) {
        Ok(back) => assert_eq!(&back, response, "reply line {line:?}"),
        Err(err) => panic!("the reply line {line:?} does not parse back: {err}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode {
        b'q' => match Request::parse_line(rest) {
            Ok(request) => request_round_trip(&request),
            Err(err) => assert!(!err.to_string().is_empty()),
        },
        b'r' => {
            let Ok(text) = std::str::from_utf8(rest) else { return };
            if let Ok(response) = Response::parse_line(text) {
                response_round_trip(&response);
            }
        }
        _ => {
            let mut u = Unstructured::new(rest);
            if mode & 1 == 0 {
                if let Ok(request) = request(&mut u) {
                    request_round_trip(&request);
                }
            } else if let Ok(response) = response(&mut u) {
                response_round_trip(&response);
            }
        }
    }
});
