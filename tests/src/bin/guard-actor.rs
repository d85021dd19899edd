//! `guard-actor`: one small static program that performs the operations guard's tests need,
//! for places without python3, git or coreutils (the qemu guest of `cargo xtask vm-test` has
//! only busybox).
//!
//! Every operation happens in this process (no exec of helpers), so a test knows exactly which
//! syscall guard saw and which process it judged.
//!
//! Output and exit status, so a test can tell the outcomes apart:
//! - success: exit 0; `open` prints the first bytes it read, the others print `ok` (or data).
//! - a failed syscall: the errno's name on stdout (`EPERM`), details on stderr, and the errno
//!   value as exit status (EPERM = 1, ENOENT = 2, EACCES = 13, ...).
//! - killed by a signal: the shell reports 128 + signal (137 for SIGKILL); no errno collides.
//! - usage errors: exit 255.
//!
//! Commands (chain several in one process with `--then`, e.g.
//! `guard-actor write-cgroup-procs /sys/fs/cgroup/x --then open /etc/hostname`):
//!
//! ```text
//! open PATH [--write|--rdwr] [--trunc] [--creat] [--append] [--dirfd DIR] [--data TEXT] [--bytes N]
//! connect ADDR PORT [--udp] [--send TEXT]
//! sendto ADDR PORT [--send TEXT]                  UDP datagram without connect()
//! listen ADDR PORT [--accept N] [--timeout SECS] [--udp]
//!                                                 prints `listening PORT` first, then each
//!                                                 connection's data (`recv N: TEXT`)
//! rmtree DIR | unlink PATH | rmdir DIR | mkdir DIR | rename FROM TO | link FROM TO
//! symlink TARGET PATH | write PATH TEXT | read PATH
//! write-cgroup-procs PATH                         writes its own pid (PATH: a cgroup directory
//!                                                 or its cgroup.procs)
//! signal PID SIG                                  SIG: number or name (KILL, TERM, STOP, ...)
//! exec PROG [ARGS...]                             execvp; must be last in a chain
//! pid | sleep SECS
//! find-record FILE [--wait SECS] [--count] KEY=VALUE...
//!                                                 audit stream helper: prints the first JSON
//!                                                 line whose fields match (KEY is a dotted path,
//!                                                 `details.tier`; VALUE compares with a string
//!                                                 field or the JSON text of another value;
//!                                                 KEY~TEXT matches a substring); exit 1 and
//!                                                 `none` when there is none (after --wait)
//! json-get PATH [FILE]                            prints a field of the JSON document, or of
//!                                                 each JSON line, in FILE (default: stdin)
//! ```

use std::{
    ffi::{CString, OsString},
    fs,
    io::{self, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::unix::{ffi::OsStrExt as _, process::CommandExt as _},
    path::Path,
    process::ExitCode,
    time::{Duration, Instant},
};

use serde_json::Value;

/// Exit status for usage errors (no errno is this large).
const USAGE: u8 = 255;

enum Failure {
    /// A failed syscall: errno and what was being done.
    Os(i32, String),
    /// Bad arguments.
    Usage(String),
    /// A non-errno failure with its own status (e.g. find-record found nothing).
    Status(u8, String),
}

type Outcome = Result<(), Failure>;

fn os_err(err: io::Error, what: impl Into<String>) -> Failure {
    match err.raw_os_error() {
        Some(errno) => Failure::Os(errno, what.into()),
        None => Failure::Os(libc::EIO, format!("{}: {err}", what.into())),
    }
}

fn last_os_err(what: impl Into<String>) -> Failure {
    os_err(io::Error::last_os_error(), what)
}

fn usage(msg: impl Into<String>) -> Failure {
    Failure::Usage(msg.into())
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.is_empty() || args[0] == "--help" || args[0] == "-h" {
        eprintln!(
            "usage: guard-actor COMMAND [ARGS...] [--then COMMAND ...] (see the source's header for the commands)"
        );
        return ExitCode::from(USAGE);
    }
    // Split on `--then`, except inside an `exec` (its arguments are the program's).
    let mut chain: Vec<Vec<OsString>> = vec![Vec::new()];
    for arg in args {
        let current = chain.last_mut().expect("chain is never empty");
        let in_exec = current.first().is_some_and(|c| c == "exec");
        if arg == "--then" && !in_exec {
            chain.push(Vec::new());
        } else {
            current.push(arg);
        }
    }
    for command in chain {
        if let Err(failure) = run(&command) {
            let _ = io::stdout().flush();
            return match failure {
                Failure::Os(errno, what) => {
                    println!("{}", errno_name(errno));
                    eprintln!("guard-actor: {what}: {}", io::Error::from_raw_os_error(errno));
                    ExitCode::from(u8::try_from(errno).unwrap_or(USAGE - 1))
                }
                Failure::Usage(msg) => {
                    eprintln!("guard-actor: usage: {msg}");
                    ExitCode::from(USAGE)
                }
                Failure::Status(code, msg) => {
                    println!("{msg}");
                    ExitCode::from(code)
                }
            };
        }
        let _ = io::stdout().flush();
    }
    ExitCode::SUCCESS
}

/// Positional arguments and `--flag [value]` options of one command.
struct Args {
    positional: Vec<OsString>,
    flags: Vec<(String, Option<OsString>)>,
}

/// Options that take a value.
const VALUED: &[&str] = &["--dirfd", "--data", "--bytes", "--send", "--accept", "--timeout", "--wait"];

impl Args {
    fn parse(raw: &[OsString]) -> Result<Self, Failure> {
        let mut positional = Vec::new();
        let mut flags = Vec::new();
        let mut it = raw.iter();
        while let Some(arg) = it.next() {
            let text = arg.to_string_lossy();
            if text.starts_with("--") && text.len() > 2 {
                let name = text.to_string();
                if VALUED.contains(&name.as_str()) {
                    let value = it.next().ok_or_else(|| usage(format!("{name} needs a value")))?;
                    flags.push((name, Some(value.clone())));
                } else {
                    flags.push((name, None));
                }
            } else {
                positional.push(arg.clone());
            }
        }
        Ok(Args { positional, flags })
    }

    fn has(&self, name: &str) -> bool {
        self.flags.iter().any(|(n, _)| n == name)
    }

    fn value(&self, name: &str) -> Option<&OsString> {
        self.flags.iter().rev().find(|(n, _)| n == name).and_then(|(_, v)| v.as_ref())
    }

    fn number(&self, name: &str, default: u64) -> Result<u64, Failure> {
        match self.value(name) {
            None => Ok(default),
            Some(v) => v.to_string_lossy().parse().map_err(|_| usage(format!("{name}: not a number: {v:?}"))),
        }
    }

    fn seconds(&self, name: &str, default: f64) -> Result<Duration, Failure> {
        match self.value(name) {
            None => Ok(Duration::from_secs_f64(default)),
            Some(v) => v
                .to_string_lossy()
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| usage(format!("{name}: not a number of seconds: {v:?}"))),
        }
    }

    fn pos(&self, i: usize, what: &str) -> Result<&OsString, Failure> {
        self.positional.get(i).ok_or_else(|| usage(format!("missing {what}")))
    }

    fn pos_str(&self, i: usize, what: &str) -> Result<String, Failure> {
        Ok(self.pos(i, what)?.to_string_lossy().into_owned())
    }
}

fn cstring(s: &OsString) -> Result<CString, Failure> {
    CString::new(s.as_bytes()).map_err(|_| usage(format!("argument with a NUL byte: {s:?}")))
}

fn run(command: &[OsString]) -> Outcome {
    let Some((name, rest)) = command.split_first() else { return Err(usage("empty command (around --then)")) };
    let name = name.to_string_lossy().into_owned();
    if name == "exec" {
        return exec(rest);
    }
    let args = Args::parse(rest)?;
    match name.as_str() {
        "open" => open(&args),
        "connect" => connect(&args),
        "sendto" => sendto(&args),
        "listen" => listen(&args),
        "rmtree" => {
            let dir = args.pos(0, "DIR")?;
            fs::remove_dir_all(dir).map_err(|e| os_err(e, format!("rmtree {}", dir.to_string_lossy())))?;
            ok()
        }
        "unlink" => {
            let path = args.pos(0, "PATH")?;
            fs::remove_file(path).map_err(|e| os_err(e, format!("unlink {}", path.to_string_lossy())))?;
            ok()
        }
        "rmdir" => {
            let path = args.pos(0, "DIR")?;
            fs::remove_dir(path).map_err(|e| os_err(e, format!("rmdir {}", path.to_string_lossy())))?;
            ok()
        }
        "mkdir" => {
            let path = args.pos(0, "DIR")?;
            fs::create_dir_all(path).map_err(|e| os_err(e, format!("mkdir {}", path.to_string_lossy())))?;
            ok()
        }
        "rename" => {
            let (from, to) = (args.pos(0, "FROM")?, args.pos(1, "TO")?);
            fs::rename(from, to)
                .map_err(|e| os_err(e, format!("rename {} {}", from.to_string_lossy(), to.to_string_lossy())))?;
            ok()
        }
        "link" => {
            let (from, to) = (args.pos(0, "FROM")?, args.pos(1, "TO")?);
            fs::hard_link(from, to)
                .map_err(|e| os_err(e, format!("link {} {}", from.to_string_lossy(), to.to_string_lossy())))?;
            ok()
        }
        "symlink" => {
            let (target, path) = (args.pos(0, "TARGET")?, args.pos(1, "PATH")?);
            std::os::unix::fs::symlink(target, path)
                .map_err(|e| os_err(e, format!("symlink {} {}", target.to_string_lossy(), path.to_string_lossy())))?;
            ok()
        }
        "write" => {
            let (path, text) = (args.pos(0, "PATH")?, args.pos(1, "TEXT")?);
            fs::write(path, text.as_bytes()).map_err(|e| os_err(e, format!("write {}", path.to_string_lossy())))?;
            ok()
        }
        "read" => {
            let path = args.pos(0, "PATH")?;
            let data = fs::read(path).map_err(|e| os_err(e, format!("read {}", path.to_string_lossy())))?;
            io::stdout().write_all(&data).map_err(|e| os_err(e, "writing stdout"))?;
            Ok(())
        }
        "write-cgroup-procs" => {
            let path = args.pos(0, "PATH")?;
            let mut target = Path::new(path).to_path_buf();
            if target.is_dir() {
                target.push("cgroup.procs");
            }
            let pid = std::process::id();
            fs::write(&target, format!("{pid}\n"))
                .map_err(|e| os_err(e, format!("writing {pid} to {}", target.display())))?;
            ok()
        }
        "signal" => signal(&args),
        "pid" => {
            println!("{}", std::process::id());
            Ok(())
        }
        "sleep" => {
            let secs: f64 = args.pos_str(0, "SECS")?.parse().map_err(|_| usage("sleep SECS"))?;
            std::thread::sleep(Duration::from_secs_f64(secs.max(0.0)));
            Ok(())
        }
        "find-record" => find_record(&args),
        "json-get" => json_get(&args),
        other => Err(usage(format!("unknown command {other:?}"))),
    }
}

fn ok() -> Outcome {
    println!("ok");
    Ok(())
}

fn open(args: &Args) -> Outcome {
    let path = args.pos(0, "PATH")?;
    let mut flags = if args.has("--rdwr") {
        libc::O_RDWR
    } else if args.has("--write") {
        libc::O_WRONLY
    } else {
        libc::O_RDONLY
    };
    for (flag, bit) in [("--trunc", libc::O_TRUNC), ("--creat", libc::O_CREAT), ("--append", libc::O_APPEND)] {
        if args.has(flag) {
            flags |= bit;
        }
    }
    flags |= libc::O_CLOEXEC;
    let dirfd = match args.value("--dirfd") {
        None => None,
        Some(dir) => {
            let c = cstring(dir)?;
            // SAFETY: valid C string.
            let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
            if fd < 0 {
                return Err(last_os_err(format!("open dirfd {}", dir.to_string_lossy())));
            }
            Some(fd)
        }
    };
    let c = cstring(path)?;
    // SAFETY: valid C string; mode is used only with O_CREAT.
    let fd = unsafe { libc::openat(dirfd.unwrap_or(libc::AT_FDCWD), c.as_ptr(), flags, 0o644 as libc::c_uint) };
    if fd < 0 {
        return Err(last_os_err(format!("open {}", path.to_string_lossy())));
    }
    // SAFETY: fd is ours and open.
    let mut file = unsafe { <fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    if let Some(data) = args.value("--data") {
        file.write_all(data.as_bytes()).map_err(|e| os_err(e, format!("write {}", path.to_string_lossy())))?;
    }
    if flags & libc::O_ACCMODE == libc::O_WRONLY {
        return ok();
    }
    let limit = args.number("--bytes", 64)?;
    let mut buf = Vec::new();
    (&mut file).take(limit).read_to_end(&mut buf).map_err(|e| os_err(e, format!("read {}", path.to_string_lossy())))?;
    io::stdout().write_all(&buf).map_err(|e| os_err(e, "writing stdout"))?;
    Ok(())
}

fn socket_addr(args: &Args) -> Result<SocketAddr, Failure> {
    let addr = args.pos_str(0, "ADDR")?;
    let port: u16 = args.pos_str(1, "PORT")?.parse().map_err(|_| usage("PORT must be 0-65535"))?;
    let ip = addr.parse().map_err(|_| usage(format!("not an IP address: {addr}")))?;
    Ok(SocketAddr::new(ip, port))
}

fn connect(args: &Args) -> Outcome {
    let addr = socket_addr(args)?;
    let send = args.value("--send").map(|s| s.as_bytes().to_vec());
    if args.has("--udp") {
        let bind: SocketAddr = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("literal address");
        let sock = UdpSocket::bind(bind).map_err(|e| os_err(e, "bind udp"))?;
        sock.connect(addr).map_err(|e| os_err(e, format!("connect udp {addr}")))?;
        if let Some(data) = send {
            sock.send(&data).map_err(|e| os_err(e, format!("send udp {addr}")))?;
        }
        return ok();
    }
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(10)).map_err(|e| os_err(e, format!("connect {addr}")))?;
    if let Some(data) = send {
        stream.write_all(&data).map_err(|e| os_err(e, format!("send {addr}")))?;
    }
    ok()
}

fn sendto(args: &Args) -> Outcome {
    let addr = socket_addr(args)?;
    let data = args.value("--send").map(|s| s.as_bytes().to_vec()).unwrap_or_else(|| b"ping".to_vec());
    let bind: SocketAddr = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("literal address");
    let sock = UdpSocket::bind(bind).map_err(|e| os_err(e, "bind udp"))?;
    sock.send_to(&data, addr).map_err(|e| os_err(e, format!("sendto {addr}")))?;
    ok()
}

fn listen(args: &Args) -> Outcome {
    let addr = socket_addr(args)?;
    let count = args.number("--accept", 1)?;
    let timeout = args.seconds("--timeout", 30.0)?;
    let deadline = Instant::now() + timeout;
    let mut out = io::stdout();
    if args.has("--udp") {
        let sock = UdpSocket::bind(addr).map_err(|e| os_err(e, format!("bind udp {addr}")))?;
        let port = sock.local_addr().map_err(|e| os_err(e, "local_addr"))?.port();
        let _ = writeln!(out, "listening {port}");
        let _ = out.flush();
        for n in 1..=count {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Failure::Os(libc::ETIMEDOUT, format!("waiting for datagram {n} of {count}")));
            }
            sock.set_read_timeout(Some(left)).map_err(|e| os_err(e, "set_read_timeout"))?;
            let mut buf = [0u8; 2048];
            match sock.recv_from(&mut buf) {
                Ok((len, _)) => {
                    let _ = writeln!(out, "recv {n}: {}", String::from_utf8_lossy(&buf[..len]));
                    let _ = out.flush();
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Err(Failure::Os(libc::ETIMEDOUT, format!("waiting for datagram {n} of {count}")));
                }
                Err(e) => return Err(os_err(e, "recv_from")),
            }
        }
        return Ok(());
    }
    let listener = TcpListener::bind(addr).map_err(|e| os_err(e, format!("bind {addr}")))?;
    let port = listener.local_addr().map_err(|e| os_err(e, "local_addr"))?.port();
    let _ = writeln!(out, "listening {port}");
    let _ = out.flush();
    listener.set_nonblocking(true).map_err(|e| os_err(e, "set_nonblocking"))?;
    let mut n = 0;
    while n < count {
        match listener.accept() {
            Ok((mut stream, _)) => {
                n += 1;
                stream.set_nonblocking(false).map_err(|e| os_err(e, "set_nonblocking"))?;
                stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| os_err(e, "set_read_timeout"))?;
                let mut buf = Vec::new();
                let _ = stream.read_to_end(&mut buf);
                let _ = writeln!(out, "recv {n}: {}", String::from_utf8_lossy(&buf));
                let _ = out.flush();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(Failure::Os(libc::ETIMEDOUT, format!("waiting for connection {} of {count}", n + 1)));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(os_err(e, "accept")),
        }
    }
    Ok(())
}

const SIGNALS: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
];

fn signal(args: &Args) -> Outcome {
    let pid: i32 = args.pos_str(0, "PID")?.parse().map_err(|_| usage("PID must be a number"))?;
    let sig_text = args.pos_str(1, "SIG")?;
    let bare = sig_text.trim_start_matches("SIG").to_ascii_uppercase();
    let sig = match sig_text.parse::<i32>() {
        Ok(n) => n,
        Err(_) => SIGNALS
            .iter()
            .find(|(name, _)| *name == bare)
            .map(|(_, n)| *n)
            .ok_or_else(|| usage(format!("unknown signal {sig_text}")))?,
    };
    // SAFETY: plain kill(2).
    if unsafe { libc::kill(pid, sig) } != 0 {
        return Err(last_os_err(format!("kill {pid} {sig_text}")));
    }
    ok()
}

fn exec(rest: &[OsString]) -> Outcome {
    let Some((prog, args)) = rest.split_first() else { return Err(usage("exec PROG [ARGS...]")) };
    let err = std::process::Command::new(prog).args(args).exec();
    Err(os_err(err, format!("exec {}", prog.to_string_lossy())))
}

/// A field by dotted path (`details.tier`, `argv.0`).
fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, key| match v {
        Value::Object(map) => map.get(key),
        Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

fn render(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

enum Cond {
    Eq(String, String),
    Contains(String, String),
}

impl Cond {
    fn parse(text: &str) -> Result<Self, Failure> {
        // `~` before `=` wins only when it comes first: `path~=x` is Contains("path", "=x").
        let eq = text.find('=');
        let tilde = text.find('~');
        match (eq, tilde) {
            (_, Some(t)) if eq.is_none_or(|e| t < e) => {
                Ok(Cond::Contains(text[..t].to_string(), text[t + 1..].to_string()))
            }
            (Some(e), _) => Ok(Cond::Eq(text[..e].to_string(), text[e + 1..].to_string())),
            _ => Err(usage(format!("condition must be KEY=VALUE or KEY~TEXT: {text}"))),
        }
    }

    fn matches(&self, record: &Value) -> bool {
        match self {
            Cond::Eq(key, want) => lookup(record, key).is_some_and(|v| render(v) == *want),
            Cond::Contains(key, want) => lookup(record, key).is_some_and(|v| match v {
                Value::Array(items) => items.iter().any(|i| render(i).contains(want.as_str())),
                other => render(other).contains(want.as_str()),
            }),
        }
    }
}

fn find_record(args: &Args) -> Outcome {
    let file = args.pos(0, "FILE")?;
    let conds =
        args.positional[1..].iter().map(|c| Cond::parse(&c.to_string_lossy())).collect::<Result<Vec<_>, _>>()?;
    let wait = args.seconds("--wait", 0.0)?;
    let deadline = Instant::now() + wait;
    loop {
        let text = fs::read_to_string(file).unwrap_or_default();
        let matching: Vec<&str> = text
            .lines()
            .filter(|line| {
                serde_json::from_str::<Value>(line).is_ok_and(|record| conds.iter().all(|c| c.matches(&record)))
            })
            .collect();
        if args.has("--count") {
            // Counting never waits.
            println!("{}", matching.len());
            return Ok(());
        }
        if let Some(first) = matching.first() {
            println!("{first}");
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Failure::Status(1, "none".into()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn json_get(args: &Args) -> Outcome {
    let path = args.pos_str(0, "PATH")?;
    let mut text = String::new();
    match args.positional.get(1) {
        Some(file) => fs::File::open(file)
            .and_then(|mut f| f.read_to_string(&mut text))
            .map_err(|e| os_err(e, format!("read {}", file.to_string_lossy())))?,
        None => io::stdin().read_to_string(&mut text).map_err(|e| os_err(e, "reading stdin"))?,
    };
    // One (pretty-printed) JSON document, else JSON lines.
    let records: Vec<Value> = match serde_json::from_str::<Value>(&text) {
        Ok(doc) => vec![doc],
        Err(_) => text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect(),
    };
    let mut found = false;
    for record in &records {
        if let Some(value) = lookup(record, &path) {
            println!("{}", render(value));
            found = true;
        }
    }
    if found { Ok(()) } else { Err(Failure::Status(1, "none".into())) }
}

fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::ENOEXEC => "ENOEXEC",
        libc::EBADF => "EBADF",
        libc::ECHILD => "ECHILD",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ETXTBSY => "ETXTBSY",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::ESPIPE => "ESPIPE",
        libc::EROFS => "EROFS",
        libc::EMLINK => "EMLINK",
        libc::EPIPE => "EPIPE",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ELOOP => "ELOOP",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::EDESTADDRREQ => "EDESTADDRREQ",
        libc::EMSGSIZE => "EMSGSIZE",
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ENETDOWN => "ENETDOWN",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::ECONNRESET => "ECONNRESET",
        libc::ENOTCONN => "ENOTCONN",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::EALREADY => "EALREADY",
        libc::EINPROGRESS => "EINPROGRESS",
        libc::ECANCELED => "ECANCELED",
        _ => return format!("E{errno}"),
    };
    name.to_string()
}
