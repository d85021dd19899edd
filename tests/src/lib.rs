//! Harness for guard's integration tests: a real daemon on the real kernel, in cgroups of the
//! test's own making.
//!
//! Every daemon gets a unique session root (`<cgroup2>/guard-test-<pid>-<n>`), audit file and
//! control socket, so tests never touch a production daemon's sessions, and everything is
//! removed on drop. Tests that need root are `#[ignore = "needs root ..."]` (so `cargo test`
//! lists them as ignored) and, when run anyway without root, print why and return.

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use serde_json::Value;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Returns false (after printing why) when the test cannot run here.
pub fn can_run(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIPPED {test}: needs root (loads BPF programs, creates cgroups)");
        return false;
    }
    true
}

/// The `guard` binary under test: $GUARD_BIN, else the workspace's debug build.
/// A file or directory of the source tree (`recipes/...`, `deploy/...`): below $GUARD_SOURCE_DIR
/// where the tree is not at its build path (the qemu guests get a copy at /guard/src), else
/// next to this crate.
pub fn source_path(relative: &str) -> PathBuf {
    match std::env::var_os("GUARD_SOURCE_DIR") {
        Some(dir) => PathBuf::from(dir).join(relative),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(relative),
    }
}

pub fn guard_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("GUARD_BIN") {
        return PathBuf::from(path);
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = manifest.join("../target/debug/guard");
    assert!(
        path.exists(),
        "guard binary not found at {}: build it (cargo xtask build) or set GUARD_BIN",
        path.display()
    );
    path
}

/// The cgroup2 mount point, from /proc/self/mountinfo.
pub fn cgroup2_mount() -> PathBuf {
    let entries = guard_daemon::mountinfo::read_self().expect("reading /proc/self/mountinfo");
    guard_daemon::mountinfo::cgroup2_mount(&entries).expect("no cgroup2 mount in /proc/self/mountinfo").to_path_buf()
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("guard-test-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("creating temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `guard run --root ROOT --audit AUDIT --socket SOCKET`, not started yet.
pub fn run_command(root: &Path, audit: &Path, socket: &Path) -> Command {
    let mut cmd = Command::new(guard_bin());
    cmd.arg("run").arg("--root").arg(root).arg("--audit").arg(audit).arg("--socket").arg(socket);
    cmd
}

/// A running `guard run` with its own root, audit file and socket.
pub struct Guard {
    child: Option<Child>,
    pub root: PathBuf,
    pub audit: PathBuf,
    pub socket: PathBuf,
    pub dir: TempDir,
    stderr_path: PathBuf,
    /// `guard run`'s extra arguments (with `--policy FILE` when there is one), for restarts.
    args: Vec<std::ffi::OsString>,
    /// The enforcement tier the daemon chose (its `start` record's `details.tier`).
    tier: Tier,
    /// A command `guard run ...` is started through (`unshare ...`), if any.
    wrapper: Vec<std::ffi::OsString>,
}

/// The enforcement tier a daemon runs on: how a refused open or exec ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// No BPF LSM: the task is killed (SIGKILL) at the syscall's exit; records say `kill`.
    Host,
    /// BPF LSM: the syscall fails with EPERM before it happens; records say `deny`.
    Lsm,
}

/// Multiplies a test's waiting limits: `GUARD_TEST_TIME_SCALE` (the qemu guests set it; TCG
/// is several times slower than the host), default 1.
pub fn scaled(limit: Duration) -> Duration {
    let scale = std::env::var("GUARD_TEST_TIME_SCALE").ok().and_then(|s| s.parse::<u32>().ok()).unwrap_or(1);
    limit * scale.max(1)
}

impl Guard {
    /// Start with the built-in default policy.
    pub fn start() -> Self {
        Self::start_with(None, &[])
    }

    /// Start with a policy text (written to a file) and extra `guard run` arguments.
    pub fn start_with(policy: Option<&str>, extra: &[&str]) -> Self {
        Self::start_writing(policy, extra, None)
    }

    /// As [`Guard::start_with`], with the audit stream in `audit` (default: the daemon's
    /// scratch directory).
    pub fn start_writing(policy: Option<&str>, extra: &[&str], audit: Option<&Path>) -> Self {
        Self::start_through(&[], policy, extra, audit)
    }

    /// As [`Guard::start_writing`], with `guard run ...` started as the last arguments of
    /// `wrapper` (which must exec it, so the daemon keeps the child's pid).
    pub fn start_through(wrapper: &[&str], policy: Option<&str>, extra: &[&str], audit: Option<&Path>) -> Self {
        let dir = TempDir::new("daemon");
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let root = cgroup2_mount().join(format!("guard-test-{}-{n}", std::process::id()));
        let audit = audit.map_or_else(|| dir.path().join("audit.jsonl"), Path::to_path_buf);
        let socket = dir.path().join("control.sock");
        let stderr_path = dir.path().join("daemon.stderr");
        let mut args: Vec<std::ffi::OsString> = extra.iter().map(Into::into).collect();
        if let Some(text) = policy {
            let path = dir.path().join("policy.yaml");
            fs::write(&path, text).expect("writing policy");
            args.push("--policy".into());
            args.push(path.into());
        }
        let wrapper = wrapper.iter().map(Into::into).collect();
        let mut guard = Guard { child: None, root, audit, socket, dir, stderr_path, args, tier: Tier::Host, wrapper };
        guard.spawn();
        guard.wait_ready();
        guard
    }

    fn spawn(&mut self) {
        let mut cmd = run_command(&self.root, &self.audit, &self.socket);
        if let Some((program, rest)) = self.wrapper.split_first() {
            let run = cmd;
            cmd = Command::new(program);
            cmd.args(rest).arg(run.get_program()).args(run.get_args());
        }
        let stderr =
            fs::OpenOptions::new().create(true).append(true).open(&self.stderr_path).expect("daemon stderr file");
        cmd.args(&self.args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
        self.child = Some(cmd.spawn().expect("spawning guard run"));
    }

    /// SIGKILL the daemon, as a crash or the OOM killer would: its pins stay.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start `guard run` again on the same root, pins, audit file, socket and policy; wait
    /// until its `start` record (the n-th) is out.
    pub fn restart(&mut self) {
        let starts = self.records().iter().filter(|r| r["event"] == "start").count();
        let _ = fs::remove_file(&self.socket);
        self.spawn();
        let deadline = Instant::now() + scaled(Duration::from_secs(60));
        while self.records().iter().filter(|r| r["event"] == "start").count() <= starts {
            assert!(Instant::now() < deadline, "guard run did not restart in 60 s: {}", self.stderr());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The pin directory `guard run` uses for this root by default.
    pub fn pin_dir(&self) -> PathBuf {
        PathBuf::from("/sys/fs/bpf").join(self.root.file_name().expect("root has a name"))
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + scaled(Duration::from_secs(60));
        loop {
            if let Some(start) = self.records().iter().find(|r| r["event"] == "start") {
                self.tier = if start["details"]["tier"] == "lsm" { Tier::Lsm } else { Tier::Host };
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("guard run exited early ({status}): {}", self.stderr());
            }
            assert!(Instant::now() < deadline, "guard run did not start in 60 s: {}", self.stderr());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn tier(&self) -> Tier {
        self.tier
    }

    /// The verdict of a kernel refusal of an open, exec or unlink on this tier.
    pub fn refusal(&self) -> &'static str {
        match self.tier {
            Tier::Host => "kill",
            Tier::Lsm => "deny",
        }
    }

    /// Did the kernel refuse what this process tried, as this tier does: killed on the host
    /// tier; on the lsm tier the call failed with EPERM, so the process ended with a failure
    /// of its own (not by a signal).
    pub fn was_refused(&self, status: &std::process::ExitStatus) -> bool {
        match self.tier {
            Tier::Host => was_killed(status),
            Tier::Lsm => !status.success() && !was_killed(status),
        }
    }

    /// Every record written so far (malformed lines fail the test: the stream must be clean).
    pub fn records(&self) -> Vec<Value> {
        let Ok(text) = fs::read_to_string(&self.audit) else { return Vec::new() };
        // A last line without its newline is still being written.
        let complete = match text.rfind('\n') {
            Some(end) => &text[..=end],
            None => "",
        };
        complete
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|err| panic!("malformed audit line {l:?}: {err}")))
            .collect()
    }

    /// Wait until a record matches (the daemon writes asynchronously), or fail with the stream.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + scaled(Duration::from_secs(15));
        loop {
            if let Some(found) = self.records().into_iter().find(|r| pred(r)) {
                return found;
            }
            if Instant::now() > deadline {
                panic!("no audit record for {what}; stream:\n{}", self.dump());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Let the daemon drain the ring buffer: wait for a marker exec from a session.
    pub fn settle(&self, session: &str) {
        let marker = format!("settle-{}", COUNTER.fetch_add(1, Ordering::SeqCst));
        let out = self.launch(session, &["/bin/sh", "-c", &format!("exec /bin/true {marker}")]);
        assert!(out.status.success(), "settle marker failed: {out:?}");
        self.wait_for("settle marker", |r| {
            r["event"] == "exec" && r["argv"].as_array().is_some_and(|a| a.iter().any(|v| v == marker.as_str()))
        });
    }

    pub fn dump(&self) -> String {
        let text = fs::read_to_string(&self.audit).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(60)..];
        format!("{}\n--- daemon stderr ---\n{}", tail.join("\n"), self.stderr())
    }

    /// `guard launch --root ROOT --session NAME -- ARGS...`, waited for.
    pub fn launch(&self, session: &str, args: &[&str]) -> Output {
        self.launch_cmd(session, args).output().expect("running guard launch")
    }

    pub fn launch_cmd(&self, session: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(guard_bin());
        cmd.arg("launch").arg("--root").arg(&self.root).arg("--session").arg(session).arg("--").args(args);
        cmd
    }

    /// `guard status --socket ... --json`.
    pub fn status(&self) -> Value {
        let out = Command::new(guard_bin())
            .args(["status", "--json", "--socket"])
            .arg(&self.socket)
            .output()
            .expect("running guard status");
        assert!(out.status.success(), "guard status failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("guard status --json output")
    }

    /// Records of one session.
    pub fn session_records(&self, session: &str) -> Vec<Value> {
        self.records().into_iter().filter(|r| r["session"] == session).collect()
    }

    /// Stop the daemon with SIGTERM and wait; returns the records.
    pub fn stop(&mut self) -> Vec<Value> {
        if let Some(mut child) = self.child.take() {
            // SAFETY: plain kill(2) on our child's pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + scaled(Duration::from_secs(20));
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        remove_cgroup_tree(&self.root);
        // A daemon that could not stop cleanly (or was killed) leaves its pins: remove them.
        let pins = self.pin_dir();
        if pins.exists() {
            let _ = fs::remove_dir_all(&pins);
        }
        self.records()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Kill whatever is left in a cgroup subtree and remove it, deepest first.
pub fn remove_cgroup_tree(path: &Path) {
    if !path.exists() {
        return;
    }
    if let Ok(entries) = fs::read_dir(path) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&entry.path());
            }
        }
    }
    for _ in 0..50 {
        if let Ok(procs) = fs::read_to_string(path.join("cgroup.procs")) {
            for pid in procs.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
                // SAFETY: plain kill(2); the pid is in our own test cgroup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if fs::remove_dir(path).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("warning: could not remove test cgroup {}", path.display());
}

/// Write a file, creating parents.
pub fn write_file(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("creating parent dir");
    }
    let mut f = fs::File::create(path).expect("creating file");
    f.write_all(text.as_bytes()).expect("writing file");
}

/// Does a record's argv contain this argument?
pub fn argv_has(record: &Value, arg: &str) -> bool {
    record["argv"].as_array().is_some_and(|a| a.iter().any(|v| v == arg))
}

// ---- Helpers for the detector tests ---------------------------------------------------------

/// Was the process ended by SIGKILL (directly, or as a shell's exit status 137)?
pub fn was_killed(status: &std::process::ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt as _;
    status.signal() == Some(libc::SIGKILL) || status.code() == Some(128 + libc::SIGKILL)
}

/// The built-in default policy (`guard policy default`) as a JSON value, for a test to adjust
/// and write back with [`policy_text`].
pub fn default_policy_value() -> Value {
    let out = Command::new(guard_bin()).args(["policy", "default"]).output().expect("running guard policy default");
    assert!(out.status.success(), "guard policy default failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("default policy is UTF-8");
    serde_saphyr::from_str::<Value>(&text).expect("parsing the default policy")
}

/// Policy text for a JSON value (JSON is YAML).
pub fn policy_text(policy: &Value) -> String {
    serde_json::to_string_pretty(policy).expect("serialising a policy")
}

/// Stand-in programs: executable shell scripts `DIR/<name>` that record their arguments in
/// `DIR/<name>.ran` and exit 0. See [`ran_marker`] and [`path_with`].
pub fn fake_tools(dir: &Path, names: &[&str]) {
    use std::os::unix::fs::PermissionsExt as _;
    for name in names {
        let path = dir.join(name);
        let marker = ran_marker(dir, name);
        write_file(&path, &format!("#!/bin/sh\necho \"$@\" > '{}'\n", marker.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod stand-in");
    }
}

/// The file a [`fake_tools`] stand-in writes when it runs.
pub fn ran_marker(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.ran"))
}

/// `$PATH` with `dir` first.
pub fn path_with(dir: &Path) -> std::ffi::OsString {
    let mut path = std::ffi::OsString::from(dir.as_os_str());
    if let Some(old) = std::env::var_os("PATH") {
        path.push(":");
        path.push(old);
    }
    path
}

/// A listener [`accept_one`] takes a connection from: TCP or unix stream.
pub trait Listener {
    type Stream: std::io::Read;
    fn set_nonblocking(&self, nonblocking: bool) -> std::io::Result<()>;
    fn accept_stream(&self) -> std::io::Result<Self::Stream>;
    /// Blocking again, reads given up after `timeout`.
    fn settle(stream: &Self::Stream, timeout: Duration) -> std::io::Result<()>;
}

macro_rules! listener {
    ($listener:ty, $stream:ty) => {
        impl Listener for $listener {
            type Stream = $stream;
            fn set_nonblocking(&self, nonblocking: bool) -> std::io::Result<()> {
                <$listener>::set_nonblocking(self, nonblocking)
            }
            fn accept_stream(&self) -> std::io::Result<$stream> {
                self.accept().map(|(stream, _)| stream)
            }
            fn settle(stream: &$stream, timeout: Duration) -> std::io::Result<()> {
                stream.set_nonblocking(false)?;
                stream.set_read_timeout(Some(timeout))
            }
        }
    };
}
listener!(std::net::TcpListener, std::net::TcpStream);
listener!(std::os::unix::net::UnixListener, std::os::unix::net::UnixStream);

/// Accept one connection and read it to the end (empty: the client sent nothing), giving up
/// after `timeout` (None: nobody connected).
pub fn accept_one<L: Listener>(listener: &L, timeout: Duration) -> Option<Vec<u8>> {
    use std::io::Read as _;
    listener.set_nonblocking(true).expect("nonblocking listener");
    let deadline = Instant::now() + timeout;
    loop {
        match listener.accept_stream() {
            Ok(mut stream) => {
                L::settle(&stream, scaled(Duration::from_secs(10))).expect("blocking stream with a read timeout");
                let mut buf = Vec::new();
                let _ = stream.read_to_end(&mut buf);
                return Some(buf);
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(err) => panic!("accept: {err}"),
        }
    }
}

impl Guard {
    /// The policy file given to `guard run` by [`Guard::start_with`].
    pub fn policy_path(&self) -> PathBuf {
        self.dir.path().join("policy.yaml")
    }

    /// The daemon's pid, from its `start` record.
    pub fn daemon_pid(&self) -> i32 {
        let start = self.wait_for("start record", |r| r["event"] == "start");
        start["details"]["pid"].as_i64().unwrap_or_else(|| panic!("no details.pid in {start}")) as i32
    }
}

/// An agent's workspace for a test: a scratch directory holding `.env` and stand-in commands
/// in `bin/` (see [`fake_tools`]), used as the session's working directory with `bin/` first
/// on its PATH.
pub struct Workspace {
    pub dir: TempDir,
}

impl Workspace {
    pub fn new(tag: &str, dotenv: &str, tools: &[&str]) -> Self {
        let dir = TempDir::new(tag);
        write_file(&dir.path().join(".env"), dotenv);
        fs::create_dir_all(dir.path().join("bin")).expect("creating the stand-ins' directory");
        fake_tools(&dir.path().join("bin"), tools);
        Workspace { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The arguments of a stand-in's last run (empty: it never ran).
    pub fn ran(&self, tool: &str) -> String {
        fs::read_to_string(ran_marker(&self.path().join("bin"), tool)).unwrap_or_default()
    }

    /// `guard launch` into `session` from this workspace, with the stand-ins first on PATH.
    pub fn launch_cmd(&self, guard: &Guard, session: &str, args: &[&str]) -> Command {
        let mut cmd = guard.launch_cmd(session, args);
        cmd.current_dir(self.path()).env("PATH", path_with(&self.path().join("bin"))).stdin(Stdio::null());
        cmd
    }
}

// ---- Helpers for the workload tests ---------------------------------------------------------

/// The PATH of a session running the machine's own tools: the system's binary directories
/// only. A user's shims (`~/.pyenv/shims`, `~/.cargo/bin`) would resolve a tool to another file
/// than the one the daemon binds as its credential's consumer, and break once HOME changes.
pub const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where `binary` is on `path` (a name with a `/` is taken as it is), if it is an executable
/// file there.
pub fn which_in(binary: &str, path: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let executable = |p: &Path| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if binary.contains('/') {
        let p = PathBuf::from(binary);
        return executable(&p).then_some(p);
    }
    path.split(':').filter(|d| !d.is_empty()).map(|d| Path::new(d).join(binary)).find(|p| executable(p))
}

/// Serialises apt-get runs; true once `apt-get update` has run in this process.
static APT_UPDATED: std::sync::Mutex<bool> = std::sync::Mutex::new(false);

/// Make sure something a test case needs is installed: when `present()` says it is not,
/// `apt-get install` the Debian `package` (running `apt-get update` once first should the
/// install fail, for want of package lists). Returns false, after printing
/// `SKIPPED <case>: <what> not available (<why>)`, when it still is not there.
pub fn ensure_with(case: &str, what: &str, package: &str, present: impl Fn() -> bool) -> bool {
    if present() {
        return true;
    }
    let why = match apt_install(package) {
        Ok(()) if present() => return true,
        Ok(()) => format!("apt-get installed {package}, still missing"),
        Err(why) => why,
    };
    println!("SKIPPED {case}: {what} not available ({why})");
    false
}

/// [`ensure_with`] for a program: found on [`SYSTEM_PATH`] (the PATH the workload sessions
/// run with), else installed from `package`.
pub fn ensure_tool(case: &str, binary: &str, package: &str) -> bool {
    ensure_with(case, binary, package, || which_in(binary, SYSTEM_PATH).is_some())
}

fn apt_install(package: &str) -> Result<(), String> {
    let mut updated = APT_UPDATED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let apt = |args: &[&str]| -> Result<(), String> {
        let out = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .map_err(|err| format!("apt-get: {err}"))?;
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output").trim().to_string();
        Err(format!("apt-get {}: {} ({last})", args.join(" "), out.status))
    };
    let install = ["install", "-y", "-q", "--no-install-recommends", package];
    println!("installing {package} (apt-get install)");
    match apt(&install) {
        Ok(()) => Ok(()),
        Err(_) if !*updated => {
            *updated = true;
            apt(&["update", "-q"])?;
            apt(&install)
        }
        Err(why) => Err(why),
    }
}

// ---- Helpers for the confinement tests ------------------------------------------------------

impl Guard {
    /// `guard launch --socket <this daemon's socket> [EXTRA...] --root ROOT --session NAME --
    /// ARGS...`: the launcher asks this daemon (not the default socket) for the confinement.
    pub fn confined_cmd(&self, session: &str, extra: &[&str], args: &[&str]) -> Command {
        let mut cmd = Command::new(guard_bin());
        cmd.arg("launch").arg("--socket").arg(&self.socket).args(extra);
        cmd.arg("--root").arg(&self.root).arg("--session").arg(session).arg("--").args(args);
        cmd.stdin(Stdio::null());
        cmd
    }
}

/// A populated directory outside every default write root (under /var/lib, not /tmp, which
/// is one), removed on drop.
pub struct OutsideDir(pub PathBuf);

impl OutsideDir {
    /// Files `keep-0` .. `keep-2` and `nested/deep/keep`.
    pub fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = PathBuf::from(format!("/var/lib/guard-test-{}-{n}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        let dir = OutsideDir(path);
        for file in dir.files() {
            write_file(&file, "precious\n");
        }
        dir
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = (0..3).map(|i| self.0.join(format!("keep-{i}"))).collect();
        files.push(self.0.join("nested/deep/keep"));
        files
    }

    /// Every file is still there with its content.
    pub fn intact(&self) -> bool {
        self.files().iter().all(|file| fs::read_to_string(file).is_ok_and(|text| text == "precious\n"))
    }
}

impl Drop for OutsideDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// stdout and stderr of a finished command, for messages.
pub fn output_text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A test's server process (dnsmasq, rsyslogd): killed and reaped when dropped.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// Its exit status if it has already ended (a server that failed to start).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.0.try_wait().ok().flatten()
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
