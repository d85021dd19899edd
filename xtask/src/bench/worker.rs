//! `cargo xtask bench-worker <op> --iters N`: one timed loop, reported as a JSON line
//! `{"op":..,"iters":..,"ns_per_op":..,"cgroup":..}` on stdout.

use std::{
    ffi::CString,
    io::Write as _,
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    os::{fd::AsRawFd, unix::ffi::OsStrExt},
    path::PathBuf,
    time::Instant,
};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Op {
    /// openat(O_RDONLY) + close of a small temporary file.
    Open,
    /// fork + execv("/bin/true") + waitpid.
    Exec,
    /// TCP connect to a 127.0.0.1 listener + close (RST).
    Connect,
    /// connect to a unix stream listener in the temp directory + close.
    UnixConnect,
    /// getppid(2): the cheapest system call, so the cost of the seccomp filter shows.
    Getppid,
    /// openat + close at a paced rate (`--rate`, per second, over `--threads`) for
    /// `--seconds`: the end-to-end flood.
    Flood,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Open => "open",
            Op::Exec => "exec",
            Op::Connect => "connect",
            Op::UnixConnect => "unix-connect",
            Op::Getppid => "getppid",
            Op::Flood => "flood",
        }
    }
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[arg(value_enum)]
    pub op: Op,
    /// Timed iterations.
    #[arg(long)]
    pub iters: u64,
    /// Untimed iterations first (default: iters/10, at least 1).
    #[arg(long)]
    pub warmup: Option<u64>,
    /// Program for `exec`.
    #[arg(long, default_value = "/bin/true")]
    pub program: PathBuf,
    /// An argument for the `exec` program (repeatable; e.g. `guard launch ... -- /bin/true`).
    #[arg(long = "arg", allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// `flood`: opens per second over all threads (0: as fast as they go).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// `flood`: how long.
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// `flood`: opening threads.
    #[arg(long, default_value_t = 2)]
    pub threads: u64,
}

pub fn main(args: &WorkerArgs) -> Result<()> {
    if args.iters == 0 {
        bail!("--iters must be at least 1");
    }
    let warmup = args.warmup.unwrap_or((args.iters / 10).max(1));
    let ns_per_op = match args.op {
        // Its own report: a rate, not a time per operation.
        Op::Flood => return flood(args),
        Op::Open => bench_open(warmup, args.iters)?,
        Op::Exec => bench_exec(&args.program, &args.args, warmup, args.iters)?,
        Op::Connect => bench_connect(warmup, args.iters)?,
        Op::UnixConnect => bench_unix_connect(warmup, args.iters)?,
        Op::Getppid => timed(warmup, args.iters, || {
            // SAFETY: getppid has no arguments and cannot fail.
            std::hint::black_box(unsafe { libc::syscall(libc::SYS_getppid) });
            Ok(())
        })?,
    };
    let line = serde_json::json!({
        "op": args.op.name(),
        "iters": args.iters,
        "ns_per_op": ns_per_op,
        "cgroup": crate::cgroup::own_cgroup(),
    });
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").context("cannot write the result")?;
    Ok(())
}

/// Runs `op` `warmup` times, then times `iters` runs; returns ns per run.
fn timed(warmup: u64, iters: u64, mut op: impl FnMut() -> Result<()>) -> Result<f64> {
    for _ in 0..warmup {
        op()?;
    }
    let start = Instant::now();
    for _ in 0..iters {
        op()?;
    }
    Ok(start.elapsed().as_nanos() as f64 / iters as f64)
}

/// Opens at `--rate` per second for `--seconds`; prints
/// `{"op":"flood","opens":N,"seconds":S,"rate":N/S,"cgroup":..}`. Each thread paces itself
/// every 64 opens, so the rate holds over the run, not only on average.
fn flood(args: &WorkerArgs) -> Result<()> {
    if !(args.seconds > 0.0 && args.seconds.is_finite()) {
        bail!("--seconds must be a positive number");
    }
    if args.threads == 0 {
        bail!("--threads must be at least 1");
    }
    let path = std::env::temp_dir().join(format!("guard-bench-flood-{}", std::process::id()));
    std::fs::write(&path, b"guard bench\n").with_context(|| format!("cannot create {}", path.display()))?;
    let c_path = CString::new(path.as_os_str().as_bytes()).context("temp path contains NUL")?;
    let duration = std::time::Duration::from_secs_f64(args.seconds);
    let per_thread = args.rate as f64 / args.threads as f64;
    let start = Instant::now();
    let counts = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..args.threads)
            .map(|_| {
                let c_path = &c_path;
                scope.spawn(move || -> Result<u64> {
                    let mut done = 0u64;
                    while start.elapsed() < duration {
                        for _ in 0..64 {
                            // SAFETY: a valid NUL-terminated path; the fd is closed right away.
                            let fd = unsafe {
                                libc::openat(libc::AT_FDCWD, c_path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC)
                            };
                            if fd < 0 {
                                return Err(std::io::Error::last_os_error()).context("openat failed");
                            }
                            // SAFETY: fd was just opened by us.
                            unsafe { libc::close(fd) };
                        }
                        done += 64;
                        if per_thread > 0.0 {
                            let due = std::time::Duration::from_secs_f64(done as f64 / per_thread);
                            if let Some(ahead) = due.checked_sub(start.elapsed()) {
                                std::thread::sleep(ahead);
                            }
                        }
                    }
                    Ok(done)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow::anyhow!("a flood thread panicked"))?)
            .collect::<Result<Vec<u64>>>()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    let opens: u64 = counts?.iter().sum();
    let line = serde_json::json!({
        "op": "flood",
        "opens": opens,
        "seconds": elapsed,
        "rate": opens as f64 / elapsed,
        "cgroup": crate::cgroup::own_cgroup(),
    });
    writeln!(std::io::stdout().lock(), "{line}").context("cannot write the result")?;
    Ok(())
}

fn bench_open(warmup: u64, iters: u64) -> Result<f64> {
    let path = std::env::temp_dir().join(format!("guard-bench-open-{}", std::process::id()));
    std::fs::write(&path, b"guard bench\n").with_context(|| format!("cannot create {}", path.display()))?;
    let result = (|| {
        let c_path = CString::new(path.as_os_str().as_bytes()).context("temp path contains NUL")?;
        timed(warmup, iters, || {
            // SAFETY: c_path is a valid NUL-terminated string; the fd is closed right away.
            let fd = unsafe { libc::openat(libc::AT_FDCWD, c_path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
            if fd < 0 {
                return Err(std::io::Error::last_os_error()).context("openat failed");
            }
            // SAFETY: fd was just opened by us.
            unsafe { libc::close(fd) };
            Ok(())
        })
    })();
    let _ = std::fs::remove_file(&path);
    result
}

fn bench_exec(program: &std::path::Path, args: &[String], warmup: u64, iters: u64) -> Result<f64> {
    let prog = CString::new(program.as_os_str().as_bytes()).context("program path contains NUL")?;
    let args = args
        .iter()
        .map(|arg| CString::new(arg.as_str()))
        .collect::<Result<Vec<_>, _>>()
        .context("argument contains NUL")?;
    let argv: Vec<*const libc::c_char> = std::iter::once(prog.as_ptr())
        .chain(args.iter().map(|arg| arg.as_ptr()))
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    timed(warmup, iters, || {
        // SAFETY: single-threaded process; the child only calls execv and _exit, which are
        // async-signal-safe, on memory prepared before the fork.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(std::io::Error::last_os_error()).context("fork failed");
        }
        if pid == 0 {
            unsafe {
                libc::execv(prog.as_ptr(), argv.as_ptr());
                libc::_exit(127);
            }
        }
        let mut status = 0;
        loop {
            // SAFETY: pid is our child; status is a valid out pointer.
            let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
            if rc == pid {
                break;
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err).context("waitpid failed");
            }
        }
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            bail!("{} did not exit 0 (wait status {status:#x})", program.display());
        }
        Ok(())
    })
}

/// A socket `scope.unix` does not name: the cost every unix connect of a session pays (the
/// cgroup connect_unix program's path lookup, the connect exit's peer lookup).
fn bench_unix_connect(warmup: u64, iters: u64) -> Result<f64> {
    use std::os::unix::net::{UnixListener, UnixStream};
    let path = std::env::temp_dir().join(format!("guard-bench-unix-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).with_context(|| format!("cannot listen on {}", path.display()))?;
    // Accept and drop connections so the backlog never fills; dies with the process.
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            drop(conn);
        }
    });
    let result = timed(warmup, iters, || {
        drop(UnixStream::connect(&path).with_context(|| format!("connect to {} failed", path.display()))?);
        Ok(())
    });
    let _ = std::fs::remove_file(&path);
    result
}

fn bench_connect(warmup: u64, iters: u64) -> Result<f64> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot listen on 127.0.0.1")?;
    let addr: SocketAddr = listener.local_addr().context("listener has no address")?;
    // A deep accept queue: if it fills while the accept thread is descheduled, SYNs are
    // dropped and connect() waits a full second for the retransmit.
    // SAFETY: listen on our own listening socket just resizes its backlog.
    if unsafe { libc::listen(listener.as_raw_fd(), 4096) } != 0 {
        return Err(std::io::Error::last_os_error()).context("listen(127.0.0.1) failed");
    }
    // Accept and drop connections so the backlog never fills; dies with the process.
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            drop(conn);
        }
    });
    timed(warmup, iters, || {
        let stream = TcpStream::connect(addr).with_context(|| format!("connect to {addr} failed"))?;
        // Close with RST (SO_LINGER 0): no TIME_WAIT, so hundreds of thousands of connects do
        // not exhaust the ephemeral ports (the port search would then dominate the timing).
        let linger = libc::linger { l_onoff: 1, l_linger: 0 };
        // SAFETY: a valid socket fd and a correctly sized option value.
        let rc = unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&raw const linger).cast(),
                size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("setsockopt(SO_LINGER) failed");
        }
        drop(stream);
        Ok(())
    })
}
