//! The daemon's control socket: a unix socket speaking `guard_engine::control` (one JSON
//! request per line, one JSON reply per line), and the blocking client the CLI uses.
//!
//! Only root (or members of one configured group) may talk to the daemon: the peer's
//! credentials come from SO_PEERCRED, which the kernel fills in at connect time and the peer
//! cannot forge. The socket's file mode is a second fence, not the only one.

use std::{
    io::{self, BufRead, Read, Write},
    os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use guard_engine::control::{MAX_REQUEST_LINE, Request, Response, StatusReport};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::Semaphore,
    task::JoinSet,
};

/// How long a client waits for the daemon.
pub const DEFAULT_CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection idle this long is closed (each line restarts the clock).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections served at once; further ones wait in the listen backlog.
const MAX_CONNECTIONS: usize = 32;
/// Largest reply the client accepts (a status report with thousands of sessions fits).
const MAX_REPLY_LINE: u64 = 16 << 20;

/// What the daemon answers. Called from the socket's tasks: keep it quick and non-blocking
/// (read a snapshot, do not wait on the event loop).
pub trait ControlHandler: Send + Sync + 'static {
    fn status(&self) -> StatusReport;

    /// Everything but `status`: pending holds and decisions. Runs on a runtime worker and may
    /// block briefly (the daemon answers from its event loop).
    fn handle(&self, request: Request, _peer: &PeerCred) -> Response {
        match request {
            Request::Status => Response::status(self.status()),
            other => Response::error(format!("not supported by this daemon: {other:?}")),
        }
    }
}

/// Credentials of the connected peer (SO_PEERCRED).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCred {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
}

/// Decides whether a peer may use the socket; `Err` carries the message sent back.
pub type PeerCheck = Arc<dyn Fn(&PeerCred) -> Result<(), String> + Send + Sync>;

/// The default policy: uid 0, or primary gid `allowed_gid` when configured.
pub fn default_peer_check(allowed_gid: Option<u32>) -> PeerCheck {
    Arc::new(move |peer: &PeerCred| {
        if peer.uid == 0 || allowed_gid.is_some_and(|gid| gid == peer.gid) {
            Ok(())
        } else {
            Err(format!("permission denied: uid {} may not use the guard control socket (run as root)", peer.uid))
        }
    })
}

#[derive(Clone, Debug)]
pub struct ControlConfig {
    pub path: PathBuf,
    /// Members of this group (as their primary group) may use the socket too; the socket is
    /// then mode 0660 and owned by this group, else 0600.
    pub allowed_gid: Option<u32>,
}

impl ControlConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), allowed_gid: None }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("another guard daemon is already answering on {}", .0.display())]
    AlreadyRunning(PathBuf),
    #[error("{} exists and is not a socket; refusing to replace it", .0.display())]
    NotASocket(PathBuf),
    #[error("{action} {path}: {err}", path = .path.display())]
    Io { action: &'static str, path: PathBuf, err: io::Error },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ControlError + 'a {
    move |err| ControlError::Io { action, path: path.to_path_buf(), err }
}

/// A bound control socket. Dropping it (or the future of [`serve`](Self::serve)) removes the
/// socket file if it is still the one this server created.
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
    ident: (u64, u64),
    check: PeerCheck,
}

impl std::fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlServer").field("path", &self.path).finish_non_exhaustive()
    }
}

impl ControlServer {
    /// Creates the parent directory (0755) if needed, removes a stale socket, binds and sets
    /// the socket's mode. Refuses if a daemon answers on the path. Needs a tokio runtime.
    pub fn bind(config: &ControlConfig) -> Result<Self, ControlError> {
        let path = config.path.clone();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .map_err(io_err("create directory", parent))?;
        }
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if !meta.file_type().is_socket() => return Err(ControlError::NotASocket(path)),
            Ok(_) => match std::os::unix::net::UnixStream::connect(&path) {
                Ok(_) => return Err(ControlError::AlreadyRunning(path)),
                // Nobody listens: a socket left by a daemon that died.
                Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(&path).map_err(io_err("remove stale socket", &path))?;
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(ControlError::Io { action: "probe existing socket", path, err }),
            },
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(ControlError::Io { action: "stat", path, err }),
        }
        let listener = UnixListener::bind(&path).map_err(io_err("bind", &path))?;
        // Between bind and chmod the mode comes from the umask; the peer check covers that gap.
        let mode = if config.allowed_gid.is_some() { 0o660 } else { 0o600 };
        if let Some(gid) = config.allowed_gid {
            std::os::unix::fs::chown(&path, None, Some(gid)).map_err(io_err("chown", &path))?;
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(io_err("chmod", &path))?;
        let meta = std::fs::symlink_metadata(&path).map_err(io_err("stat", &path))?;
        Ok(Self { listener, ident: (meta.dev(), meta.ino()), check: default_peer_check(config.allowed_gid), path })
    }

    /// Replaces the peer check (tests; or a richer policy, e.g. supplementary groups).
    #[cfg_attr(not(test), allow(dead_code, reason = "tests inject a check; the daemon uses the default"))]
    pub fn with_peer_check(mut self, check: PeerCheck) -> Self {
        self.check = check;
        self
    }

    #[allow(dead_code, reason = "API for the daemon (logging)")]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves connections until the future is dropped; connection tasks end with it.
    pub async fn serve<H: ControlHandler>(self, handler: Arc<H>) {
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut tasks = JoinSet::new();
        loop {
            // Reap finished connection tasks so the set does not grow without bound.
            while tasks.try_join_next().is_some() {}
            let Ok(permit) = permits.clone().acquire_owned().await else { return };
            match self.listener.accept().await {
                Ok((stream, _)) => {
                    let handler = handler.clone();
                    let check = self.check.clone();
                    tasks.spawn(async move {
                        serve_connection(stream, &*handler, &*check).await;
                        drop(permit);
                    });
                }
                Err(err) => {
                    // EMFILE and friends: back off instead of spinning.
                    log::warn!("control socket {}: accept: {err}", self.path.display());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        // Remove only our own socket: a newer daemon may have replaced it meanwhile.
        if let Ok(meta) = std::fs::symlink_metadata(&self.path)
            && (meta.dev(), meta.ino()) == self.ident
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn dispatch<H: ControlHandler + ?Sized>(handler: &H, request: Request, peer: &PeerCred) -> Response {
    match request {
        Request::Status => Response::status(handler.status()),
        other => handler.handle(other, peer),
    }
}

async fn write_reply(writer: &mut (impl AsyncWriteExt + Unpin), reply: &Response) -> io::Result<()> {
    let mut line = reply.to_line();
    line.push('\n');
    writer.write_all(line.as_bytes()).await
}

async fn serve_connection<H: ControlHandler + ?Sized>(
    stream: UnixStream,
    handler: &H,
    check: &(dyn Fn(&PeerCred) -> Result<(), String> + Send + Sync),
) {
    let cred = stream.peer_cred().map(|c| PeerCred { uid: c.uid(), gid: c.gid(), pid: c.pid() });
    let (reader, mut writer) = stream.into_split();
    let peer = match cred {
        Ok(cred) => match check(&cred) {
            Ok(()) => cred,
            Err(message) => {
                log::warn!("control socket: refused uid {} gid {} pid {:?}", cred.uid, cred.gid, cred.pid);
                let _ = write_reply(&mut writer, &Response::error(message)).await;
                return;
            }
        },
        Err(err) => {
            let _ = write_reply(&mut writer, &Response::error(format!("cannot read peer credentials: {err}"))).await;
            return;
        }
    };
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        // +1 for the newline: a line of exactly MAX_REQUEST_LINE bytes is accepted.
        let limit = (MAX_REQUEST_LINE + 1) as u64;
        let read = tokio::time::timeout(IDLE_TIMEOUT, (&mut reader).take(limit).read_until(b'\n', &mut line)).await;
        match read {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => return,
            Ok(Ok(_)) => {}
        }
        if line.last() != Some(&b'\n') && line.len() > MAX_REQUEST_LINE {
            // No way to find the next request boundary cheaply: answer and hang up.
            let message = format!("request line too long (more than {MAX_REQUEST_LINE} bytes)");
            let _ = write_reply(&mut writer, &Response::error(message)).await;
            return;
        }
        let reply = match Request::parse_line(&line) {
            Ok(request) => dispatch(handler, request, &peer),
            Err(err) => Response::error(err.to_string()),
        };
        if write_reply(&mut writer, &reply).await.is_err() {
            return;
        }
    }
}

/// The daemon is not there (no socket, or nobody listening on it).
#[derive(Debug, thiserror::Error)]
#[error("no guard daemon answering on {path}: {err}", path = .path.display())]
pub struct NoDaemon {
    pub path: PathBuf,
    pub err: io::Error,
}

/// Sends one request and waits for its reply, with [`DEFAULT_CLIENT_TIMEOUT`].
/// A missing daemon is reported as a [`NoDaemon`] error (downcast to tell it apart).
pub fn request(socket_path: &Path, req: &Request) -> anyhow::Result<Response> {
    request_with_timeout(socket_path, req, DEFAULT_CLIENT_TIMEOUT)
}

pub fn request_with_timeout(socket_path: &Path, req: &Request, timeout: Duration) -> anyhow::Result<Response> {
    let stream = match std::os::unix::net::UnixStream::connect(socket_path) {
        Ok(stream) => stream,
        Err(err) if matches!(err.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused) => {
            return Err(NoDaemon { path: socket_path.to_path_buf(), err }.into());
        }
        Err(err) if err.kind() == io::ErrorKind::PermissionDenied => {
            return Err(err).with_context(|| format!("connecting to {}: run as root", socket_path.display()));
        }
        Err(err) => return Err(err).with_context(|| format!("connecting to {}", socket_path.display())),
    };
    stream.set_read_timeout(Some(timeout)).context("setting the socket timeout")?;
    stream.set_write_timeout(Some(timeout)).context("setting the socket timeout")?;
    let mut line = req.to_line();
    line.push('\n');
    (&stream).write_all(line.as_bytes()).with_context(|| format!("sending to {}", socket_path.display()))?;
    let mut reply = String::new();
    let read = io::BufReader::new(&stream).take(MAX_REPLY_LINE).read_line(&mut reply);
    match read {
        Err(err) if matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
            anyhow::bail!("the daemon on {} did not answer within {}s", socket_path.display(), timeout.as_secs_f32())
        }
        Err(err) => return Err(err).with_context(|| format!("reading from {}", socket_path.display())),
        Ok(0) => anyhow::bail!("the daemon on {} closed the connection without answering", socket_path.display()),
        Ok(_) => {}
    }
    Response::parse_line(&reply).with_context(|| format!("malformed reply from {}", socket_path.display()))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    struct Fake {
        calls: AtomicUsize,
    }

    impl ControlHandler for Fake {
        fn status(&self) -> StatusReport {
            self.calls.fetch_add(1, Ordering::SeqCst);
            StatusReport { version: "test".into(), pid: 77, enforce: true, ..Default::default() }
        }
    }

    fn fake() -> Arc<Fake> {
        Arc::new(Fake { calls: AtomicUsize::new(0) })
    }

    /// A fresh directory for one test's socket, removed on drop (no tempfile dependency).
    struct TempDir(PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    impl std::ops::Deref for TempDir {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    fn temp_dir(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "guard-control-{}-{}-{tag}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        TempDir(dir)
    }

    async fn start(server: ControlServer, handler: Arc<Fake>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(server.serve(handler))
    }

    /// Raw exchange: send `input`, read until EOF or `replies` lines.
    async fn exchange(path: &Path, input: &[u8], replies: usize) -> Vec<String> {
        let stream = UnixStream::connect(path).await.unwrap();
        let (reader, mut writer) = stream.into_split();
        writer.write_all(input).await.unwrap();
        let mut lines = BufReader::new(reader).lines();
        let mut out = Vec::new();
        while out.len() < replies {
            match tokio::time::timeout(Duration::from_secs(5), lines.next_line()).await.unwrap() {
                Ok(Some(line)) => out.push(line),
                _ => break,
            }
        }
        out
    }

    #[tokio::test]
    async fn status_round_trip_and_socket_mode() {
        let dir = temp_dir("status");
        let path = dir.join("run/control.sock");
        let server = ControlServer::bind(&ControlConfig::new(&path)).unwrap();
        let handler = fake();
        let task = start(server, handler.clone()).await;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o755);

        let client_path = path.clone();
        let reply =
            tokio::task::spawn_blocking(move || request(&client_path, &Request::Status)).await.unwrap().unwrap();
        assert!(reply.ok);
        assert_eq!(reply.status.unwrap().pid, 77);
        assert_eq!(handler.calls.load(Ordering::SeqCst), 1);

        // Dropping the server removes its socket.
        task.abort();
        let _ = task.await;
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn malformed_lines_get_an_error_and_the_connection_goes_on() {
        let dir = temp_dir("malformed");
        let path = dir.join("control.sock");
        let server = ControlServer::bind(&ControlConfig::new(&path)).unwrap();
        let task = start(server, fake()).await;
        let replies = exchange(&path, b"not json\n{\"cmd\":\"nope\"}\n\n[\"status\"]\n{\"cmd\":\"status\"}\n", 5).await;
        assert_eq!(replies.len(), 5);
        for reply in &replies[..4] {
            let reply = Response::parse_line(reply).unwrap();
            assert!(!reply.ok && reply.error.is_some(), "{reply:?}");
        }
        assert!(Response::parse_line(&replies[4]).unwrap().ok);

        // An over-long line: one error, then the server hangs up.
        let mut long = vec![b'x'; MAX_REQUEST_LINE + 10];
        long.extend_from_slice(b"\n{\"cmd\":\"status\"}\n");
        let replies = exchange(&path, &long, 2).await;
        assert_eq!(replies.len(), 1, "{replies:?}");
        assert!(replies[0].contains("too long"), "{}", replies[0]);

        // A request without a trailing newline before EOF is still answered.
        let stream = UnixStream::connect(&path).await.unwrap();
        let (reader, mut writer) = stream.into_split();
        writer.write_all(b"{\"cmd\":\"status\"}").await.unwrap();
        writer.shutdown().await.unwrap();
        let mut text = String::new();
        BufReader::new(reader).read_to_string(&mut text).await.unwrap();
        assert!(Response::parse_line(&text).unwrap().ok);
        task.abort();
    }

    #[tokio::test]
    async fn refused_peers_get_an_error_and_nothing_runs() {
        let dir = temp_dir("refused");
        let path = dir.join("control.sock");
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen_in_check = seen.clone();
        // This test runs as root, so pretend the peer is someone else.
        let check: PeerCheck = Arc::new(move |peer: &PeerCred| {
            seen_in_check.lock().unwrap().push(*peer);
            let pretend = PeerCred { uid: 1000, gid: 1000, ..*peer };
            default_peer_check(Some(50))(&pretend)
        });
        let server = ControlServer::bind(&ControlConfig::new(&path)).unwrap().with_peer_check(check);
        let handler = fake();
        let task = start(server, handler.clone()).await;
        let replies = exchange(&path, b"{\"cmd\":\"status\"}\n{\"cmd\":\"status\"}\n", 2).await;
        assert_eq!(replies.len(), 1, "one error, then closed: {replies:?}");
        let reply = Response::parse_line(&replies[0]).unwrap();
        assert!(!reply.ok);
        assert!(reply.error.unwrap().contains("uid 1000"));
        assert_eq!(handler.calls.load(Ordering::SeqCst), 0);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].pid, Some(std::process::id() as i32));
        task.abort();
    }

    #[test]
    fn default_peer_check_policy() {
        let peer = |uid, gid| PeerCred { uid, gid, pid: None };
        assert!(default_peer_check(None)(&peer(0, 0)).is_ok());
        assert!(default_peer_check(None)(&peer(0, 1234)).is_ok());
        assert!(default_peer_check(None)(&peer(1000, 0)).is_err());
        assert!(default_peer_check(None)(&peer(1000, 1000)).is_err());
        assert!(default_peer_check(Some(1000))(&peer(1000, 1000)).is_ok());
        assert!(default_peer_check(Some(1000))(&peer(1001, 1001)).is_err());
    }

    #[tokio::test]
    async fn stale_sockets_are_replaced_live_ones_and_other_files_are_not() {
        let dir = temp_dir("stale");
        std::fs::create_dir_all(&*dir).unwrap();
        let path = dir.join("control.sock");
        // A socket nobody listens on (its listener is gone).
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let server = ControlServer::bind(&ControlConfig::new(&path)).unwrap();
        let task = start(server, fake()).await;

        // A live daemon: refuse, and leave its socket alone.
        let err = ControlServer::bind(&ControlConfig::new(&path)).unwrap_err();
        assert!(matches!(err, ControlError::AlreadyRunning(_)), "{err}");
        assert!(err.to_string().contains("already answering"));
        let client_path = path.clone();
        let reply = tokio::task::spawn_blocking(move || request(&client_path, &Request::Status)).await.unwrap();
        assert!(reply.unwrap().ok);
        task.abort();
        let _ = task.await;

        let file = dir.join("not-a-socket");
        std::fs::write(&file, "data").unwrap();
        let err = ControlServer::bind(&ControlConfig::new(&file)).unwrap_err();
        assert!(matches!(err, ControlError::NotASocket(_)), "{err}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "data");
    }

    #[test]
    fn client_reports_a_missing_daemon() {
        let dir = temp_dir("missing");
        let err = request(&dir.join("control.sock"), &Request::Status).unwrap_err();
        assert!(err.downcast_ref::<NoDaemon>().is_some(), "{err:#}");
        assert!(err.to_string().contains("no guard daemon answering"), "{err}");
    }

    #[test]
    fn client_times_out_on_a_silent_peer() {
        let dir = temp_dir("silent");
        std::fs::create_dir_all(&*dir).unwrap();
        let path = dir.join("control.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let err = request_with_timeout(&path, &Request::Status, Duration::from_millis(200)).unwrap_err();
        assert!(err.to_string().contains("did not answer"), "{err:#}");
    }

    #[tokio::test]
    async fn group_mode_socket() {
        let dir = temp_dir("group");
        let path = dir.join("control.sock");
        let config = ControlConfig { path: path.clone(), allowed_gid: Some(0) };
        let server = ControlServer::bind(&config).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        assert_eq!(meta.gid(), 0);
        drop(server);
        assert!(!path.exists());
    }
}
