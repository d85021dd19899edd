//! Issue "An agent's own tools keep working": a corpus of real workloads under the default
//! policy's credential bindings, on the real kernel (host tier).
//!
//! Each test makes a temporary HOME holding every tool's credential file (each with its own
//! marker string), and starts a daemon on the default policy with each credential rule's
//! `paths` extended by that HOME's files: the daemon resolves `~/` from passwd at start, so a
//! temporary HOME has to be named. Sessions run with `HOME=<that home>`, the system's binary
//! directories as PATH and little else in their environment.
//!
//! - Legitimate work (kubectl, docker, aws, npm, pip in a venv, ssh-keygen, git over ssh to an
//!   sshd of the test's own, cargo, git commit, psql, git's credential store, twine) must
//!   succeed with no `kill` or `deny` in its session, and where the tool read its credential
//!   with an `audit` record naming the consumer.
//! - Harvesting the same files (`cat`, `python3 -c`, `node -e`, `cp`, `tar`, a renamed copy of
//!   the tool) must be killed, with nothing of the secret printed or copied, and recorded
//!   against the reader under the file's rule.
//!
//! A tool that is not installed is installed with apt-get; one that still is not there skips
//! its own cases, printing why.

use std::{
    ffi::{OsStr, OsString},
    fs,
    io::Read as _,
    net::{TcpListener, TcpStream},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use guard_tests::{
    Guard, SYSTEM_PATH, TempDir, can_run, default_policy_value, ensure_tool, ensure_with, output_text, policy_text,
    scaled, was_killed, which_in, write_file,
};
use serde_json::{Value, json};

/// How long one command may take (a venv with pip, a cargo build) before the test gives up.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);

static RUNS: AtomicU32 = AtomicU32::new(0);

/// A credential file of the corpus: its name here, the default policy's rule, its place in HOME.
struct Cred {
    name: &'static str,
    rule: &'static str,
    rel: &'static str,
}

const CREDENTIALS: &[Cred] = &[
    Cred { name: "kubeconfig", rule: "kubeconfig", rel: ".kube/config" },
    Cred { name: "docker-config", rule: "docker-config", rel: ".docker/config.json" },
    Cred { name: "aws-config", rule: "aws-credentials", rel: ".aws/config" },
    Cred { name: "aws-credentials", rule: "aws-credentials", rel: ".aws/credentials" },
    Cred { name: "npmrc", rule: "npmrc", rel: ".npmrc" },
    Cred { name: "ssh-key", rule: "ssh-private-keys", rel: ".ssh/id_ed25519" },
    Cred { name: "pgpass", rule: "pgpass", rel: ".pgpass" },
    Cred { name: "pypirc", rule: "pypirc", rel: ".pypirc" },
    Cred { name: "git-credentials", rule: "git-credentials", rel: ".git-credentials" },
];

fn cred(name: &str) -> &'static Cred {
    CREDENTIALS.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no credential {name} in the corpus"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A command run outside any session (fixtures), which must succeed.
fn host(args: &[&str], env: &[(&str, &OsStr)]) -> Output {
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..]).stdin(Stdio::null());
    for (key, value) in env {
        cmd.env(key, value);
    }
    let out = cmd.output().unwrap_or_else(|err| panic!("{args:?}: {err}"));
    assert!(out.status.success(), "{args:?}: {}", output_text(&out));
    out
}

/// Options of one session command beyond its arguments.
#[derive(Default)]
struct Opts<'a> {
    cwd: Option<&'a Path>,
    env: &'a [(&'a str, &'a OsStr)],
    stdin: Option<&'a str>,
}

/// The temporary HOME with every credential file, the session's workspace, and the policy.
struct Fixture {
    home: TempDir,
    ws: TempDir,
    secrets: Vec<(&'static str, String)>,
}

impl Fixture {
    fn new(tag: &str) -> Self {
        let home = TempDir::new(&format!("{tag}-home"));
        let ws = TempDir::new(&format!("{tag}-ws"));
        fs::create_dir_all(ws.path().join(".out")).expect("creating the output directory");
        let mut fx = Fixture { home, ws, secrets: Vec::new() };
        for c in CREDENTIALS {
            let marker = format!("GUARD-SECRET-{}-{}", c.name, std::process::id());
            let path = fx.path(c.name);
            let secret = fx.write_credential(c.name, &path, &marker);
            fx.secrets.push((c.name, secret));
        }
        let gitconfig = format!(
            "[user]\n\tname = Guard Test\n\temail = guard@example.invalid\n[init]\n\tdefaultBranch = main\n\
             [core]\n\tsshCommand = ssh -F {}\n[advice]\n\tdetachedHead = false\n",
            fx.home.path().join(".ssh/config").display()
        );
        write_file(&fx.home.path().join(".gitconfig"), &gitconfig);
        fx
    }

    /// Write one credential file; returns the string that must never come out of a harvester.
    fn write_credential(&self, name: &str, path: &Path, marker: &str) -> String {
        let mut secret = marker.to_string();
        match name {
            "kubeconfig" => write_file(
                path,
                &format!(
                    "apiVersion: v1\nkind: Config\nclusters:\n- name: guard-cluster\n  cluster:\n    \
                     server: https://127.0.0.1:6443\ncontexts:\n- name: guard-ctx\n  context:\n    \
                     cluster: guard-cluster\n    user: guard-user\ncurrent-context: guard-ctx\nusers:\n\
                     - name: guard-user\n  user:\n    token: {marker}\n"
                ),
            ),
            // "auth" is base64 of "guard:registry-password".
            "docker-config" => write_file(
                path,
                &format!(
                    "{{\"auths\": {{\"registry.example.invalid\":\n  \
                     {{\"auth\": \"Z3VhcmQ6cmVnaXN0cnktcGFzc3dvcmQ=\"}}}},\n \
                     \"HttpHeaders\": {{\"X-Guard-Marker\": \"{marker}\"}}}}\n"
                ),
            ),
            "aws-config" => write_file(path, &format!("[default]\nregion = eu-west-1\noutput = json\n# {marker}\n")),
            "aws-credentials" => write_file(
                path,
                &format!("[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = {marker}\n"),
            ),
            // Registry settings only; nothing listens on port 9, so npm cannot fetch by mistake.
            "npmrc" => write_file(path, &format!("registry=http://127.0.0.1:9/\n; {marker}\n")),
            "ssh-key" => {
                fs::create_dir_all(path.parent().unwrap()).expect("creating ~/.ssh");
                chmod(path.parent().unwrap(), 0o700);
                if which_in("ssh-keygen", SYSTEM_PATH).is_some() {
                    host(
                        &["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", marker, "-f", path.to_str().unwrap()],
                        &[],
                    );
                    // The comment is inside the key's base64 body: its second line is the secret.
                    let key = fs::read_to_string(path).expect("reading the generated key");
                    secret = key.lines().nth(1).expect("a key body").to_string();
                    let public = fs::read_to_string(path.with_extension("pub")).expect("reading the public key");
                    write_file(&path.parent().unwrap().join("authorized_keys"), &public);
                } else {
                    write_file(
                        path,
                        &format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{marker}\n-----END OPENSSH PRIVATE KEY-----\n"),
                    );
                }
            }
            "pgpass" => write_file(path, &format!("127.0.0.1:*:*:guard:{marker}\n")),
            "pypirc" => write_file(
                path,
                &format!(
                    "[distutils]\nindex-servers = guard\n\n[guard]\nrepository = http://127.0.0.1:9/\n\
                     username = guard\npassword = {marker}\n"
                ),
            ),
            "git-credentials" => write_file(path, &format!("https://guard:{marker}@git.example.invalid\n")),
            other => panic!("no content for {other}"),
        }
        chmod(path, 0o600);
        secret
    }

    fn home(&self) -> &Path {
        self.home.path()
    }

    fn ws(&self) -> &Path {
        self.ws.path()
    }

    /// Where a credential of the corpus lives in the temporary HOME.
    fn path(&self, name: &str) -> PathBuf {
        self.home().join(cred(name).rel)
    }

    fn path_str(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_string()
    }

    fn secret(&self, name: &str) -> &str {
        &self.secrets.iter().find(|(n, _)| *n == name).unwrap().1
    }

    /// The default policy, each credential rule's paths extended by this HOME's files (rule
    /// ids and consumers as they are).
    fn policy(&self) -> String {
        let mut policy = default_policy_value();
        let rules = policy["credentials"]["rules"].as_array_mut().expect("credentials.rules in the default policy");
        for c in CREDENTIALS {
            let rule = rules
                .iter_mut()
                .find(|r| r["id"] == c.rule)
                .unwrap_or_else(|| panic!("the default policy has no credential rule {:?}", c.rule));
            if !rule["paths"].is_array() {
                rule["paths"] = json!([]);
            }
            rule["paths"].as_array_mut().unwrap().push(json!(self.path_str(c.name)));
        }
        policy_text(&policy)
    }

    /// A daemon on [`Fixture::policy`]: the files must exist before (paths resolve at start).
    fn start(&self) -> Guard {
        Guard::start_with(Some(&self.policy()), &[])
    }

    /// A copy of a system binary under another name in the workspace (made outside a session).
    fn renamed_copy(&self, binary: &str, new_name: &str) -> Option<String> {
        let original = which_in(binary, SYSTEM_PATH)?;
        let copy = self.ws().join(new_name);
        fs::copy(&original, &copy).unwrap_or_else(|err| panic!("copying {}: {err}", original.display()));
        chmod(&copy, 0o755);
        Some(copy.to_str().unwrap().to_string())
    }

    /// Run a command in a session, from the workspace, with the temporary HOME; returns its pid
    /// (the launcher execs it) and output.
    fn run(&self, guard: &Guard, session: &str, args: &[&str]) -> (u32, Output) {
        self.run_with(guard, session, args, &Opts::default())
    }

    fn run_with(&self, guard: &Guard, session: &str, args: &[&str], opts: &Opts) -> (u32, Output) {
        let n = RUNS.fetch_add(1, Ordering::SeqCst);
        let out_dir = self.ws().join(".out");
        let (stdout_path, stderr_path) = (out_dir.join(format!("{n}.stdout")), out_dir.join(format!("{n}.stderr")));
        let mut cmd = guard.launch_cmd(session, args);
        cmd.env_clear()
            .env("HOME", self.home())
            .env("PATH", SYSTEM_PATH)
            .env("LANG", "C.UTF-8")
            .env("USER", "root")
            .env("LOGNAME", "root")
            .env("GIT_CONFIG_GLOBAL", self.home().join(".gitconfig"))
            .current_dir(opts.cwd.unwrap_or(self.ws()))
            .stdout(fs::File::create(&stdout_path).expect("stdout file"))
            .stderr(fs::File::create(&stderr_path).expect("stderr file"));
        for (key, value) in opts.env {
            cmd.env(key, value);
        }
        match opts.stdin {
            Some(input) => {
                let stdin_path = out_dir.join(format!("{n}.stdin"));
                write_file(&stdin_path, input);
                cmd.stdin(fs::File::open(&stdin_path).expect("stdin file"));
            }
            None => {
                cmd.stdin(Stdio::null());
            }
        }
        let child = cmd.spawn().expect("spawning guard launch");
        let pid = child.id();
        let status = finish(guard, child, &format!("{args:?}"));
        let out = Output {
            status,
            stdout: fs::read(&stdout_path).unwrap_or_default(),
            stderr: fs::read(&stderr_path).unwrap_or_default(),
        };
        (pid, out)
    }
}

/// Wait for a command with a deadline; on timeout kill it and fail with the stream.
fn finish(guard: &Guard, mut child: Child, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + scaled(COMMAND_TIMEOUT);
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish in {COMMAND_TIMEOUT:?}; stream:\n{}", guard.dump());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---- Assertions -----------------------------------------------------------------------------

fn assert_success(guard: &Guard, what: &str, out: &Output) {
    assert!(out.status.success(), "{what} failed: {}\n{}", output_text(out), guard.dump());
}

/// After the daemon drained the session's events: no kill and no deny in it.
fn assert_no_block(guard: &Guard, session: &str) {
    guard.settle(session);
    let blocked: Vec<Value> = guard
        .session_records(session)
        .into_iter()
        .filter(|r| r["verdict"] == "kill" || r["verdict"] == "deny")
        .collect();
    assert!(blocked.is_empty(), "session {session} was blocked: {blocked:#?}\n{}", guard.dump());
}

/// The session read `cred` through its consumer `consumer`: an `audit` record (after
/// [`assert_no_block`], so the stream is drained).
fn assert_consumer_read(guard: &Guard, session: &str, cred_name: &str, consumer: &str) -> Value {
    let rule = cred(cred_name).rule;
    let reads: Vec<Value> = guard
        .session_records(session)
        .into_iter()
        .filter(|r| r["event"] == "open" && r["detector"] == "credential" && r["rule"] == rule)
        .collect();
    let Some(read) = reads.iter().find(|r| r["verdict"] == "audit") else {
        panic!(
            "session {session}: no audit record of {consumer} reading {cred_name} (rule {rule}): {reads:#?}\n{}",
            guard.dump()
        );
    };
    assert!(!read["consumer"].is_null(), "{read}");
    assert_eq!(read["consumer"], consumer, "{read}");
    read.clone()
}

/// Legitimate work: it succeeded, nothing was blocked, and (when `reads` names a credential)
/// its consumer's read was recorded.
fn assert_legit(guard: &Guard, session: &str, what: &str, out: &Output, reads: Option<(&str, &str)>) {
    assert_success(guard, what, out);
    assert_no_block(guard, session);
    if let Some((cred_name, consumer)) = reads {
        assert_consumer_read(guard, session, cred_name, consumer);
    }
}

/// A harvester of `cred_name`: SIGKILLed, nothing of the secret in its output or in the files
/// it was writing (`leftovers`), and the kill recorded against it under the file's rule.
fn assert_harvest_killed(
    guard: &Guard,
    fx: &Fixture,
    session: &str,
    args: &[&str],
    cred_name: &str,
    leftovers: &[PathBuf],
) {
    let secret = fx.secret(cred_name);
    let (pid, out) = fx.run(guard, session, args);
    assert!(guard.was_refused(&out.status), "{args:?} was not refused: {}\n{}", output_text(&out), guard.dump());
    assert!(!text(&out.stdout).contains(secret), "{args:?} printed the secret: {}", output_text(&out));
    assert!(!text(&out.stderr).contains(secret), "{args:?} printed the secret: {}", output_text(&out));
    for file in leftovers {
        let copied = fs::read(file).unwrap_or_default();
        assert!(!text(&copied).contains(secret), "{args:?} copied the secret into {}", file.display());
    }
    let rec = guard.wait_for(&format!("kill of {args:?}"), |r| {
        r["session"] == session && r["event"] == "open" && r["verdict"] == guard.refusal() && r["pid"] == pid
    });
    assert_eq!(rec["detector"], "credential", "{rec}");
    assert_eq!(rec["rule"], cred(cred_name).rule, "{rec}");
    assert!(rec["consumer"].is_null(), "a harvester counted as a consumer: {rec}");
}

/// `cat`, `python3 -c`, `node -e`, `cp` and `tar` of one credential file, each in its own
/// session: all killed.
fn assert_readers_killed(case: &str, guard: &Guard, fx: &Fixture, cred_name: &str) {
    let file = fx.path_str(cred_name);
    let copy = fx.ws().join(format!("{cred_name}.copy"));
    let tar = fx.ws().join(format!("{cred_name}.tar"));
    let python = format!("print(open({file:?}).read())");
    let node = format!("console.log(require('fs').readFileSync({file:?}, 'utf8'))");
    let readers: [(&str, Vec<&str>, Vec<PathBuf>); 5] = [
        ("cat", vec!["cat", &file], vec![]),
        ("python", vec!["/usr/bin/python3", "-c", &python], vec![]),
        ("node", vec!["node", "-e", &node], vec![]),
        ("cp", vec!["cp", &file, copy.to_str().unwrap()], vec![copy.clone()]),
        ("tar", vec!["tar", "cf", tar.to_str().unwrap(), &file], vec![tar.clone()]),
    ];
    for (reader, args, leftovers) in &readers {
        if *reader == "node" && !ensure_tool(&format!("{case} (node -e)"), "node", "nodejs") {
            continue;
        }
        assert_harvest_killed(guard, fx, &format!("{cred_name}-{reader}"), args, cred_name, leftovers);
    }
}

// ---- Fixtures: an sshd, a wheel -------------------------------------------------------------

/// An sshd on a loopback port, outside every session, letting root in with the temporary
/// HOME's key; `guard-sshd` in that HOME's `.ssh/config` reaches it.
struct Sshd {
    child: Child,
    dir: TempDir,
}

impl Sshd {
    fn start(fx: &Fixture) -> Sshd {
        let dir = TempDir::new("sshd");
        let host_key = dir.path().join("ssh_host_ed25519_key");
        host(&["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key.to_str().unwrap()], &[]);
        // Privilege separation needs it; the package's service would create it.
        fs::create_dir_all("/run/sshd").expect("creating /run/sshd");
        let port = TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().unwrap().port();
        let config = dir.path().join("sshd_config");
        write_file(
            &config,
            &format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\n\
                 StrictModes no\nPubkeyAuthentication yes\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nUsePAM no\n\
                 PrintMotd no\nLogLevel VERBOSE\n",
                host_key.display(),
                dir.path().join("sshd.pid").display(),
                fx.home().join(".ssh/authorized_keys").display(),
            ),
        );
        let log = dir.path().join("sshd.log");
        let child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("sshd log"))
            .spawn()
            .expect("spawning sshd");
        let mut sshd = Sshd { child, dir };
        sshd.wait_banner(port);
        write_file(
            &fx.home().join(".ssh/config"),
            &format!(
                "Host guard-sshd\n  HostName 127.0.0.1\n  Port {port}\n  User root\n  IdentityFile {}\n  \
                 IdentitiesOnly yes\n  IdentityAgent none\n  UserKnownHostsFile {}\n  \
                 GlobalKnownHostsFile /dev/null\n  \
                 StrictHostKeyChecking accept-new\n  BatchMode yes\n  LogLevel ERROR\n",
                fx.path_str("ssh-key"),
                fx.home().join(".ssh/known_hosts").display(),
            ),
        );
        sshd
    }

    fn wait_banner(&mut self, port: u16) {
        let deadline = Instant::now() + scaled(Duration::from_secs(15));
        loop {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
                stream.set_read_timeout(Some(scaled(Duration::from_secs(5)))).unwrap();
                let mut banner = [0u8; 8];
                if stream.read_exact(&mut banner).is_ok() && banner.starts_with(b"SSH-") {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("sshd exited ({status}): {}", self.log());
            }
            assert!(Instant::now() < deadline, "sshd did not answer on port {port}: {}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal pure-python wheel (`guardpkg`, printing `guard-wheel-ok`), written by hand.
fn write_wheel(dir: &Path) -> PathBuf {
    let wheel = dir.join("guardpkg-0.1-py3-none-any.whl");
    let script = r#"
import base64, hashlib, sys, zipfile
files = {
    "guardpkg/__init__.py": "VALUE = 'guard-wheel-ok'\n",
    "guardpkg-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: guardpkg\nVersion: 0.1\n",
    "guardpkg-0.1.dist-info/WHEEL":
        "Wheel-Version: 1.0\nGenerator: guard-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = []
with zipfile.ZipFile(sys.argv[1], "w") as z:
    for name, body in files.items():
        data = body.encode()
        z.writestr(name, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("guardpkg-0.1.dist-info/RECORD,,")
    z.writestr("guardpkg-0.1.dist-info/RECORD", "\n".join(record) + "\n")
"#;
    host(&["/usr/bin/python3", "-c", script, wheel.to_str().unwrap()], &[]);
    wheel
}

// ---- Legitimate work ------------------------------------------------------------------------

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn kubectl_reads_its_kubeconfig() {
    let case = "kubectl_reads_its_kubeconfig";
    if !can_run(case) || !ensure_tool(case, "kubectl", "kubernetes-client") {
        return;
    }
    let fx = Fixture::new("kubectl");
    let guard = fx.start();
    let (_, out) = fx.run(&guard, "kubectl", &["kubectl", "config", "current-context"]);
    assert_legit(&guard, "kubectl", "kubectl config current-context", &out, Some(("kubeconfig", "kubectl")));
    assert_eq!(text(&out.stdout).trim(), "guard-ctx", "{}", output_text(&out));
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn docker_client_reads_its_config() {
    let case = "docker_client_reads_its_config";
    if !can_run(case) || !ensure_tool(case, "docker", "docker.io") {
        return;
    }
    let fx = Fixture::new("docker");
    let guard = fx.start();
    // No docker daemon runs: the client prints its part, then fails to reach the server.
    let (_, out) = fx.run(&guard, "docker", &["docker", "version"]);
    assert!(!was_killed(&out.status), "docker version was killed: {}\n{}", output_text(&out), guard.dump());
    assert!(text(&out.stdout).contains("Client"), "docker version printed no client part: {}", output_text(&out));
    assert_no_block(&guard, "docker");
    assert_consumer_read(&guard, "docker", "docker-config", "docker");
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn aws_cli_reads_its_config() {
    let case = "aws_cli_reads_its_config";
    if !can_run(case) || !ensure_tool(case, "aws", "awscli") {
        return;
    }
    let fx = Fixture::new("aws");
    let guard = fx.start();
    let (_, out) = fx.run(&guard, "aws", &["aws", "configure", "get", "region"]);
    assert_legit(&guard, "aws", "aws configure get region", &out, Some(("aws-config", "aws")));
    assert_eq!(text(&out.stdout).trim(), "eu-west-1", "{}", output_text(&out));
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn npm_installs_offline_and_reads_its_npmrc() {
    let case = "npm_installs_offline_and_reads_its_npmrc";
    if !can_run(case) || !ensure_tool(case, "node", "nodejs") || !ensure_tool(case, "npm", "npm") {
        return;
    }
    let fx = Fixture::new("npm");
    let dep = fx.ws().join("dep");
    write_file(&dep.join("package.json"), r#"{"name": "guard-dep", "version": "1.0.0", "main": "index.js"}"#);
    write_file(&dep.join("index.js"), "module.exports = 'guard-dep-ok';\n");
    let app = fx.ws().join("app");
    write_file(
        &app.join("package.json"),
        r#"{"name": "guard-app", "version": "1.0.0", "private": true, "dependencies": {"guard-dep": "file:../dep"}}"#,
    );
    let guard = fx.start();

    let opts = Opts { cwd: Some(&app), ..Opts::default() };
    let install = ["npm", "install", "--offline", "--no-audit", "--no-fund", "--no-update-notifier"];
    let (_, out) = fx.run_with(&guard, "npm-install", &install, &opts);
    assert_legit(&guard, "npm-install", "npm install", &out, Some(("npmrc", "npm")));
    assert!(app.join("node_modules/guard-dep/package.json").exists(), "npm installed nothing: {}", output_text(&out));
    let (_, out) = fx.run_with(
        &guard,
        "npm-install",
        &["node", "-e", "console.log(require('guard-dep'))"],
        &Opts { cwd: Some(&app), ..Opts::default() },
    );
    assert_success(&guard, "node requiring the installed package", &out);
    assert_eq!(text(&out.stdout).trim(), "guard-dep-ok");

    // npm reads ~/.npmrc; node with an inline script reading it is no npm.
    let (_, out) = fx.run(&guard, "npm-config", &["npm", "config", "get", "registry", "--no-update-notifier"]);
    assert_legit(&guard, "npm-config", "npm config get registry", &out, Some(("npmrc", "npm")));
    assert_eq!(text(&out.stdout).trim(), "http://127.0.0.1:9/", "{}", output_text(&out));
    let npmrc = fx.path_str("npmrc");
    let script = format!("console.log(require('fs').readFileSync({npmrc:?}, 'utf8'))");
    assert_harvest_killed(&guard, &fx, "npmrc-node-e", &["node", "-e", &script], "npmrc", &[]);
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn pip_installs_a_local_wheel_into_a_venv() {
    let case = "pip_installs_a_local_wheel_into_a_venv";
    let venv_works = || {
        Command::new("/usr/bin/python3")
            .args(["-c", "import ensurepip, venv"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !can_run(case) || !ensure_with(case, "python3 -m venv", "python3-venv", venv_works) {
        return;
    }
    let fx = Fixture::new("pip");
    let wheel = write_wheel(fx.ws());
    let venv = fx.ws().join("v");
    let guard = fx.start();
    let s = "pip";
    let (_, out) = fx.run(&guard, s, &["/usr/bin/python3", "-m", "venv", venv.to_str().unwrap()]);
    assert_success(&guard, "python3 -m venv", &out);
    let pip = venv.join("bin/pip");
    let (_, out) = fx.run(
        &guard,
        s,
        &[
            pip.to_str().unwrap(),
            "install",
            "--no-index",
            "--no-cache-dir",
            "--disable-pip-version-check",
            wheel.to_str().unwrap(),
        ],
    );
    assert_success(&guard, "pip install --no-index", &out);
    let python = venv.join("bin/python");
    let (_, out) = fx.run(&guard, s, &[python.to_str().unwrap(), "-c", "import guardpkg; print(guardpkg.VALUE)"]);
    assert_legit(&guard, s, "importing the installed wheel", &out, None);
    assert_eq!(text(&out.stdout).trim(), "guard-wheel-ok");
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn ssh_keygen_reads_its_key() {
    let case = "ssh_keygen_reads_its_key";
    if !can_run(case) || !ensure_tool(case, "ssh-keygen", "openssh-client") {
        return;
    }
    let fx = Fixture::new("keygen");
    let guard = fx.start();
    let (_, out) = fx.run(&guard, "ssh-keygen", &["ssh-keygen", "-y", "-f", &fx.path_str("ssh-key")]);
    assert_legit(&guard, "ssh-keygen", "ssh-keygen -y", &out, Some(("ssh-key", "ssh-keygen")));
    let public = fs::read_to_string(fx.path("ssh-key").with_extension("pub")).unwrap();
    assert!(public.starts_with(text(&out.stdout).trim()), "{} is not {public}", output_text(&out));
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn git_clones_and_pushes_over_ssh() {
    let case = "git_clones_and_pushes_over_ssh";
    if !can_run(case)
        || !ensure_tool(case, "git", "git")
        || !ensure_tool(case, "ssh", "openssh-client")
        || !ensure_tool(case, "sshd", "openssh-server")
    {
        return;
    }
    let fx = Fixture::new("git-ssh");
    let sshd = Sshd::start(&fx);
    // The server's repository, with one commit, made outside any session.
    let bare = sshd.dir.path().join("repo.git");
    let seed = sshd.dir.path().join("seed");
    let gitconfig = fx.home().join(".gitconfig");
    let env: [(&str, &OsStr); 2] = [("HOME", fx.home().as_os_str()), ("GIT_CONFIG_GLOBAL", gitconfig.as_os_str())];
    host(&["git", "init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()], &env);
    host(&["git", "init", "-q", "-b", "main", seed.to_str().unwrap()], &env);
    write_file(&seed.join("README"), "seed\n");
    host(&["git", "-C", seed.to_str().unwrap(), "add", "README"], &env);
    host(&["git", "-C", seed.to_str().unwrap(), "commit", "-q", "-m", "seed"], &env);
    host(&["git", "-C", seed.to_str().unwrap(), "push", "-q", bare.to_str().unwrap(), "main"], &env);
    let guard = fx.start();
    let s = "git-ssh";

    let remote = format!("guard-sshd:{}", bare.display());
    let clone = fx.ws().join("clone");
    let (_, out) = fx.run(&guard, s, &["git", "clone", "-q", &remote, clone.to_str().unwrap()]);
    assert_success(&guard, "git clone over ssh", &out);
    assert!(clone.join("README").exists(), "the clone has no README: {}\nsshd: {}", output_text(&out), sshd.log());
    write_file(&clone.join("CHANGE"), "from the session\n");
    let c = clone.to_str().unwrap();
    for args in
        [vec!["git", "-C", c, "add", "CHANGE"], vec!["git", "-C", c, "commit", "-q", "-m", "guard workload push"]]
    {
        let (_, out) = fx.run(&guard, s, &args);
        assert_success(&guard, &format!("{args:?}"), &out);
    }
    let (_, out) = fx.run(&guard, s, &["git", "-C", c, "push", "-q", "origin", "main"]);
    assert_success(&guard, "git push over ssh", &out);
    let log = host(&["git", "--git-dir", bare.to_str().unwrap(), "log", "--oneline", "main"], &env);
    assert!(text(&log.stdout).contains("guard workload push"), "the push did not arrive: {}", text(&log.stdout));
    assert_no_block(&guard, s);
    assert_consumer_read(&guard, s, "ssh-key", "ssh");
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn cargo_builds_a_crate() {
    let case = "cargo_builds_a_crate";
    if !can_run(case) {
        return;
    }
    // The toolchain's own cargo (what `cargo test` runs): rustup's proxies look for their
    // toolchains under $HOME, which is the temporary one here.
    let Some(cargo) = std::env::var_os("CARGO").map(PathBuf::from).filter(|p| p.is_file()) else {
        println!("SKIPPED {case}: cargo not available (no $CARGO)");
        return;
    };
    let toolchain_bin = cargo.parent().unwrap().to_path_buf();
    let fx = Fixture::new("cargo");
    let krate = fx.ws().join("hello");
    write_file(&krate.join("Cargo.toml"), "[package]\nname = \"hello\"\nversion = \"0.1.0\"\nedition = \"2021\"\n");
    write_file(&krate.join("src/main.rs"), "fn main() {\n    println!(\"hello from guard\");\n}\n");
    let cargo_home = fx.ws().join("cargo-home");
    let path: OsString = format!("{}:{SYSTEM_PATH}", toolchain_bin.display()).into();
    let guard = fx.start();
    let env: [(&str, &OsStr); 2] = [("PATH", &path), ("CARGO_HOME", cargo_home.as_os_str())];
    let opts = Opts { cwd: Some(&krate), env: &env, ..Opts::default() };
    let (_, out) = fx.run_with(&guard, "cargo", &["cargo", "build", "--offline"], &opts);
    assert_success(&guard, "cargo build", &out);
    let (_, out) = fx.run_with(&guard, "cargo", &["target/debug/hello"], &opts);
    assert_legit(&guard, "cargo", "the built program", &out, None);
    assert_eq!(text(&out.stdout).trim(), "hello from guard");
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn git_commits_in_a_fresh_repo() {
    let case = "git_commits_in_a_fresh_repo";
    if !can_run(case) || !ensure_tool(case, "git", "git") {
        return;
    }
    let fx = Fixture::new("git-commit");
    let guard = fx.start();
    let s = "git-commit";
    let repo = fx.ws().join("repo");
    let r = repo.to_str().unwrap();
    let (_, out) = fx.run(&guard, s, &["git", "init", "-q", r]);
    assert_success(&guard, "git init", &out);
    write_file(&repo.join("main.txt"), "work\n");
    for args in [vec!["git", "-C", r, "add", "main.txt"], vec!["git", "-C", r, "commit", "-q", "-m", "first"]] {
        let (_, out) = fx.run(&guard, s, &args);
        assert_success(&guard, &format!("{args:?}"), &out);
    }
    let (_, out) = fx.run(&guard, s, &["git", "-C", r, "log", "--format=%s"]);
    assert_legit(&guard, s, "git log", &out, None);
    assert_eq!(text(&out.stdout).trim(), "first");
}

/// psql reads ~/.pgpass before it connects (to a closed port here: no server is needed).
#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn psql_reads_its_pgpass() {
    let case = "psql_reads_its_pgpass";
    if !can_run(case) || !ensure_tool(case, "psql", "postgresql-client") {
        return;
    }
    let fx = Fixture::new("psql");
    let guard = fx.start();
    let s = "psql";
    let (_, out) = fx.run(
        &guard,
        s,
        &["psql", "-h", "127.0.0.1", "-p", "9", "-U", "guard", "-d", "guard", "-w", "-c", "select 1"],
    );
    assert!(!was_killed(&out.status), "psql was killed: {}\n{}", output_text(&out), guard.dump());
    assert!(text(&out.stderr).contains("Connection refused"), "{}", output_text(&out));
    assert_no_block(&guard, s);
    assert_consumer_read(&guard, s, "pgpass", "psql");
}

/// git's credential helper `store` (git-credential-store) reads ~/.git-credentials. Debian's
/// git: its helpers live in /usr/lib/git-core, where the daemon looks for consumers.
#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn git_credential_store_reads_its_file() {
    let case = "git_credential_store_reads_its_file";
    if !can_run(case) || !ensure_tool(case, "/usr/lib/git-core/git-credential-store", "git") {
        return;
    }
    let fx = Fixture::new("git-cred");
    let guard = fx.start();
    let s = "git-credential";
    let (_, out) = fx.run_with(
        &guard,
        s,
        &["/usr/bin/git", "-c", "credential.helper=store", "credential", "fill"],
        &Opts { stdin: Some("protocol=https\nhost=git.example.invalid\n\n"), ..Opts::default() },
    );
    assert_legit(&guard, s, "git credential fill", &out, Some(("git-credentials", "git-credential-store")));
    assert!(text(&out.stdout).contains(&format!("password={}", fx.secret("git-credentials"))), "{}", output_text(&out));
}

/// twine reads ~/.pypirc for an upload (to a closed port here: nothing is sent anywhere).
#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn twine_reads_its_pypirc() {
    let case = "twine_reads_its_pypirc";
    if !can_run(case) || !ensure_tool(case, "twine", "twine") {
        return;
    }
    let fx = Fixture::new("twine");
    let wheel = write_wheel(fx.ws());
    let guard = fx.start();
    let s = "twine";
    let (_, out) = fx.run(
        &guard,
        s,
        &[
            "twine",
            "upload",
            "--repository",
            "guard",
            "--non-interactive",
            "--disable-progress-bar",
            wheel.to_str().unwrap(),
        ],
    );
    assert!(!was_killed(&out.status), "twine was killed: {}\n{}", output_text(&out), guard.dump());
    assert!(!out.status.success(), "twine uploaded to a closed port?: {}", output_text(&out));
    assert_no_block(&guard, s);
    assert_consumer_read(&guard, s, "pypirc", "twine");
}

// ---- Harvesting -----------------------------------------------------------------------------

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn harvesting_the_kubeconfig_is_stopped() {
    let case = "harvesting_the_kubeconfig_is_stopped";
    if !can_run(case) {
        return;
    }
    let fx = Fixture::new("harvest-kube");
    let copy =
        ensure_tool(case, "kubectl", "kubernetes-client").then(|| fx.renamed_copy("kubectl", "kube-ctl")).flatten();
    let guard = fx.start();
    assert_readers_killed(case, &guard, &fx, "kubeconfig");
    if let Some(copy) = copy {
        assert_harvest_killed(
            &guard,
            &fx,
            "kubeconfig-renamed",
            &[&copy, "config", "view", "--raw"],
            "kubeconfig",
            &[],
        );
    }
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn harvesting_the_docker_config_is_stopped() {
    let case = "harvesting_the_docker_config_is_stopped";
    if !can_run(case) {
        return;
    }
    let fx = Fixture::new("harvest-docker");
    let copy = ensure_tool(case, "docker", "docker.io").then(|| fx.renamed_copy("docker", "dock-er")).flatten();
    let guard = fx.start();
    assert_readers_killed(case, &guard, &fx, "docker-config");
    if let Some(copy) = copy {
        assert_harvest_killed(&guard, &fx, "docker-renamed", &[&copy, "version"], "docker-config", &[]);
    }
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn harvesting_the_aws_files_is_stopped() {
    let case = "harvesting_the_aws_files_is_stopped";
    if !can_run(case) {
        return;
    }
    let fx = Fixture::new("harvest-aws");
    // The aws CLI is a python script: its copy, run by the same interpreter, is not the CLI.
    let copy = ensure_tool(case, "aws", "awscli").then(|| fx.renamed_copy("aws", "aws-cli")).flatten();
    let guard = fx.start();
    assert_readers_killed(case, &guard, &fx, "aws-config");
    assert_readers_killed(case, &guard, &fx, "aws-credentials");
    if let Some(copy) = copy {
        assert_harvest_killed(
            &guard,
            &fx,
            "aws-renamed",
            &["/usr/bin/python3", &copy, "configure", "get", "region"],
            "aws-config",
            &[],
        );
    }
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn harvesting_the_npmrc_is_stopped() {
    let case = "harvesting_the_npmrc_is_stopped";
    if !can_run(case) {
        return;
    }
    let fx = Fixture::new("harvest-npmrc");
    let guard = fx.start();
    assert_readers_killed(case, &guard, &fx, "npmrc");
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn harvesting_the_ssh_key_is_stopped() {
    let case = "harvesting_the_ssh_key_is_stopped";
    if !can_run(case) {
        return;
    }
    let fx = Fixture::new("harvest-ssh");
    let copy = ensure_tool(case, "ssh-keygen", "openssh-client").then(|| fx.renamed_copy("ssh-keygen", "kg")).flatten();
    let guard = fx.start();
    assert_readers_killed(case, &guard, &fx, "ssh-key");
    if let Some(copy) = copy {
        assert_harvest_killed(
            &guard,
            &fx,
            "ssh-key-renamed",
            &[&copy, "-y", "-f", &fx.path_str("ssh-key")],
            "ssh-key",
            &[],
        );
    }
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn harvesting_the_pgpass_is_stopped() {
    let case = "harvesting_the_pgpass_is_stopped";
    if !can_run(case) {
        return;
    }
    let fx = Fixture::new("harvest-pgpass");
    // /usr/bin/psql is Debian's wrapper script; the client itself lives in the version's bin.
    let copy = ensure_tool(case, "psql", "postgresql-client")
        .then(|| {
            let versions = fs::read_dir("/usr/lib/postgresql").ok()?;
            let real = versions.flatten().map(|v| v.path().join("bin/psql")).find(|p| p.is_file())?;
            fx.renamed_copy(real.to_str().unwrap(), "pg-sql")
        })
        .flatten();
    let guard = fx.start();
    assert_readers_killed(case, &guard, &fx, "pgpass");
    if let Some(copy) = copy {
        let args = [copy.as_str(), "-h", "127.0.0.1", "-p", "9", "-U", "guard", "-d", "guard", "-w", "-c", "select 1"];
        assert_harvest_killed(&guard, &fx, "pgpass-renamed", &args, "pgpass", &[]);
    }
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn harvesting_the_pypirc_is_stopped() {
    let case = "harvesting_the_pypirc_is_stopped";
    if !can_run(case) {
        return;
    }
    let fx = Fixture::new("harvest-pypirc");
    let guard = fx.start();
    assert_readers_killed(case, &guard, &fx, "pypirc");
}

#[test]
#[ignore = "needs root: loads BPF programs and creates cgroups"]
fn harvesting_the_git_credentials_is_stopped() {
    let case = "harvesting_the_git_credentials_is_stopped";
    if !can_run(case) {
        return;
    }
    let fx = Fixture::new("harvest-git-cred");
    let guard = fx.start();
    assert_readers_killed(case, &guard, &fx, "git-credentials");
}
