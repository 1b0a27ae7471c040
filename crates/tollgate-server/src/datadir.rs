//! The data directory: who may read it, and who may use the database in it.
//!
//! ## Private files
//!
//! The data directory and the files in it hold password hashes, token digests and every
//! record: only the user the server runs as may read them. The directory is created `0700`,
//! the SQLite database and its `-wal` and `-shm` files are `0600` (tightened, with a warning,
//! when they already exist with wider modes), and secret files written here are `0600`; so are the lock file and the control socket described next.
//!
//! ## One server per SQLite database, and `tollgate` commands beside it
//!
//! * `serve` on a SQLite database takes an exclusive lock on a file beside it
//!   (`tollgate.lock` for `tollgate.db`) and writes its pid there. A second `serve` on the
//!   same database finds the lock held by a server and exits at once, naming the lock file and
//!   the pid ([`lock_for_server`]).
//! * The server listens on a Unix socket beside the database (`tollgate.sock`, mode 0600).
//!   A command that changes the database while the server runs ([`attach_command`]) connects
//!   to it first, and after each write that changes credentials sends the changes and waits
//!   until the server has applied them to its caches: when the command has exited, the server
//!   refuses what the command revoked. (The server's own writes update its caches directly.)
//! * A command that finds no server takes the lock itself for as long as it runs, so a server
//!   cannot start in the middle of it with caches that miss its changes; a server that starts
//!   meanwhile waits for the command to finish.
//!
//! Why a socket rather than SQLite's `PRAGMA data_version`: data_version only says that some
//! other connection committed something (the server's own pooled connections included), not
//! what, so the server would have to poll it on every request (or on a timer, leaving a window)
//! and then drop every cache. The socket carries exactly the changes, the command knows the
//! server has applied them before it exits, and a server that does not answer is reported.
//!
//! On PostgreSQL several servers are the point: commands join the cluster as clients instead
//! ([`crate::changes::join_as_command`]).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tollgate_store::{Backend, Change, Propagate, Store, StoreError};

use crate::changes::Cluster;
use crate::state::AppState;

/// Create `dir` (and its parents) readable by this user only; an existing directory is left
/// as it is, with a warning when others can read it.
pub fn prepare(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        #[cfg(unix)]
        if let Ok(meta) = std::fs::metadata(dir)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                dir = %dir.display(),
                mode = format_args!("{:o}", meta.permissions().mode() & 0o777),
                "the data directory can be read by other users: chmod 700 it"
            );
        }
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(0o700);
    builder.create(dir)
}

/// The file behind a `sqlite:` URL (none for in-memory databases).
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    if path.is_empty() || path == ":memory:" || url.contains("mode=memory") {
        return None;
    }
    Some(PathBuf::from(path))
}

/// The database file and the journal files SQLite keeps beside it.
fn database_files(db: &Path) -> Vec<PathBuf> {
    let mut files = vec![db.to_path_buf()];
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        files.push(PathBuf::from(name));
    }
    files
}

/// Make the database's files `0600`. `existing`: they were there before this start, so a
/// wider mode is worth a warning (files SQLite has just created are tightened silently).
pub fn secure_database_files(db: &Path, existing: bool) -> std::io::Result<()> {
    #[cfg(unix)]
    for file in database_files(db) {
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            if existing {
                tracing::warn!(
                    file = %file.display(),
                    mode = format_args!("{mode:o}"),
                    "the database file could be read by other users: its mode is now 600"
                );
            }
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    #[cfg(not(unix))]
    let _ = (db, existing);
    Ok(())
}

/// Write `contents` to `dir/name`, readable by this user only, replacing any earlier file.
pub fn write_secret_file(dir: &Path, name: &str, contents: &str) -> std::io::Result<PathBuf> {
    prepare(dir)?;
    let path = dir.join(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(&path)?;
    // An earlier file with a wider mode keeps it through `open`: tighten before writing.
    #[cfg(unix)]
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    Ok(path)
}

// One server per SQLite database (see the module's documentation).

/// How long a command waits for the server's confirmation of one write.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server or command waits for a command that holds the lock to finish.
const COMMAND_WAIT: Duration = Duration::from_secs(60);

/// The lock file and control socket of one SQLite database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalPaths {
    pub lock: PathBuf,
    pub socket: PathBuf,
}

impl LocalPaths {
    /// Beside the database file of a `sqlite:` URL, named after it (`tollgate.db` →
    /// `tollgate.lock`, `tollgate.sock`); `None` for other URLs and in-memory databases.
    pub fn for_url(url: &str) -> Option<LocalPaths> {
        let db = sqlite_path(url)?;
        db.file_name()?;
        Some(LocalPaths {
            lock: db.with_extension("lock"),
            socket: db.with_extension("sock"),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(
        "another Tollgate server (pid {pid}) is serving this database: it holds the lock {}. \
         Stop it first; to run several servers on one database, use PostgreSQL",
        lock.display()
    )]
    AlreadyServed { lock: PathBuf, pid: String },
    #[error(
        "a Tollgate server (pid {pid}) is using this database: it holds the lock {}. \
         Stop the server, then {what}",
        lock.display()
    )]
    InUse {
        lock: PathBuf,
        pid: String,
        what: String,
    },
    #[error(
        "the lock {} is held by `tollgate {what}` (pid {pid}), which did not finish within {} s",
        lock.display(), COMMAND_WAIT.as_secs()
    )]
    Busy {
        lock: PathBuf,
        pid: String,
        what: String,
    },
    #[error(
        "a Tollgate server (pid {pid}) is serving this database but does not answer on {}: {why}",
        socket.display()
    )]
    NoAnswer {
        socket: PathBuf,
        pid: String,
        why: String,
    },
    #[error("cannot use {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> LocalError + '_ {
    move |source| LocalError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Who holds a lock, as its file says.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Holder {
    Server { pid: String },
    Command { pid: String, what: String },
}

impl Holder {
    fn pid(&self) -> &str {
        match self {
            Holder::Server { pid } | Holder::Command { pid, .. } => pid,
        }
    }
}

fn read_holder(lock: &Path) -> Option<Holder> {
    let mut text = String::new();
    File::open(lock).ok()?.read_to_string(&mut text).ok()?;
    let line = text.lines().next()?;
    let (pid, role) = line.split_once(' ')?;
    let pid = pid.to_owned();
    match role {
        "serve" => Some(Holder::Server { pid }),
        _ => role.strip_prefix("command:").map(|what| Holder::Command {
            pid,
            what: what.to_owned(),
        }),
    }
}

/// Whether process `pid` exists (Linux; elsewhere assumed alive).
fn alive(pid: &str) -> bool {
    let proc = Path::new("/proc");
    !proc.exists() || proc.join(pid).exists()
}

/// An exclusive lock on a database's lock file, held until dropped.
#[derive(Debug)]
pub struct LocalLock {
    _file: File,
    paths: LocalPaths,
}

impl LocalLock {
    pub fn paths(&self) -> &LocalPaths {
        &self.paths
    }
}

/// Take the lock now, recording `role`; `None` if someone holds it.
fn try_take(paths: &LocalPaths, role: &str) -> Result<Option<LocalLock>, LocalError> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(&paths.lock).map_err(io_error(&paths.lock))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Ok(None),
        Err(TryLockError::Error(e)) => return Err(io_error(&paths.lock)(e)),
    }
    // Who holds it, for whoever finds it held.
    let record = format!("{} {role}\n", std::process::id());
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(record.as_bytes()))
        .and_then(|()| file.sync_data())
        .map_err(io_error(&paths.lock))?;
    Ok(Some(LocalLock {
        _file: file,
        paths: paths.clone(),
    }))
}

/// For `serve` on a SQLite database: take its lock. Another server holding it is an error at
/// once; a command holding it is waited for (at most a minute).
pub async fn lock_for_server(paths: &LocalPaths) -> Result<LocalLock, LocalError> {
    let started = Instant::now();
    let mut said = false;
    loop {
        if let Some(lock) = try_take(paths, "serve")? {
            return Ok(lock);
        }
        match read_holder(&paths.lock) {
            Some(Holder::Server { pid }) if alive(&pid) => {
                return Err(LocalError::AlreadyServed {
                    lock: paths.lock.clone(),
                    pid,
                });
            }
            Some(Holder::Command { pid, what }) => {
                if started.elapsed() > COMMAND_WAIT {
                    return Err(LocalError::Busy {
                        lock: paths.lock.clone(),
                        pid,
                        what,
                    });
                }
                if !said {
                    tracing::info!(%pid, command = %what, "waiting for a tollgate command to finish with the database");
                    said = true;
                }
            }
            // Just taken by someone who has not written their name yet, or stale: look again.
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// For a command that needs the SQLite database to itself (`db restore` replaces its file):
/// take its lock as `tollgate {what}` (the lock `serve` takes). A server holding it is an
/// error at once ([`LocalError::InUse`]); another command is waited for (at most a minute).
/// `None` for URLs without a lock file (PostgreSQL, in-memory databases).
pub async fn lock_exclusively(url: &str, what: &str) -> Result<Option<LocalLock>, LocalError> {
    let Some(paths) = LocalPaths::for_url(url) else {
        return Ok(None);
    };
    if let Some(dir) = paths.lock.parent().filter(|d| !d.as_os_str().is_empty()) {
        prepare(dir).map_err(io_error(dir))?;
    }
    let role = format!("command:{what}");
    let started = Instant::now();
    loop {
        if let Some(lock) = try_take(&paths, &role)? {
            return Ok(Some(lock));
        }
        match read_holder(&paths.lock) {
            Some(Holder::Server { pid }) if alive(&pid) => {
                return Err(LocalError::InUse {
                    lock: paths.lock.clone(),
                    pid,
                    what: what.trim_start_matches("db ").to_owned(),
                });
            }
            Some(Holder::Command { pid, what }) if started.elapsed() > COMMAND_WAIT => {
                return Err(LocalError::Busy {
                    lock: paths.lock.clone(),
                    pid,
                    what,
                });
            }
            // A command (waited for), or a holder that has not written its name yet.
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Serve the control socket of `lock`'s database for the life of the process: commands send
/// the changes they committed, the server applies them and confirms.
pub fn serve_control(lock: &LocalLock, state: AppState) -> Result<(), LocalError> {
    let socket = lock.paths.socket.clone();
    // Holding the lock, no other server can be using a socket file there: it is stale.
    match std::fs::remove_file(&socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(&socket)(e)),
    }
    let listener = UnixListener::bind(&socket).map_err(io_error(&socket))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
        .map_err(io_error(&socket))?;
    tracing::info!(socket = %socket.display(), "commands beside this server announce their changes here");
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(control_connection(stream, state.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(())
}

/// One command's connection: `change <change>` lines are applied as they arrive; `sync` (and
/// `ping`) is answered `ok` once everything before it is applied.
async fn control_connection(stream: UnixStream, state: AppState) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let reply: &[u8] = match line.split_once(' ') {
            Some(("change", text)) => {
                match text.parse::<Change>() {
                    Ok(change) => state.apply_change(&change),
                    Err(()) => {
                        tracing::warn!(
                            "a command announced a change this version does not understand: caches dropped"
                        );
                        state.clear_caches();
                    }
                }
                continue;
            }
            None if line == "sync" || line == "ping" => b"ok\n",
            _ => b"error: unknown request\n",
        };
        if write.write_all(reply).await.is_err() {
            return;
        }
    }
}

/// A command's connection to the server on the same SQLite database: its writes wait until
/// the server has applied their changes.
struct ControlClient {
    conn: tokio::sync::Mutex<(
        BufReader<tokio::net::unix::OwnedReadHalf>,
        tokio::net::unix::OwnedWriteHalf,
    )>,
    pid: String,
}

impl ControlClient {
    async fn connect(socket: &Path, pid: String) -> std::io::Result<ControlClient> {
        let stream = tokio::time::timeout(CONFIRM_TIMEOUT, UnixStream::connect(socket))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"))??;
        let (read, write) = stream.into_split();
        let client = ControlClient {
            conn: tokio::sync::Mutex::new((BufReader::new(read), write)),
            pid,
        };
        client.exchange(b"ping\n").await?;
        Ok(client)
    }

    /// Send `request` and wait for `ok`.
    async fn exchange(&self, request: &[u8]) -> std::io::Result<()> {
        let mut conn = self.conn.lock().await;
        let (read, write) = &mut *conn;
        let talk = async {
            write.write_all(request).await?;
            write.flush().await?;
            let mut reply = String::new();
            read.read_line(&mut reply).await?;
            if reply.trim_end() == "ok" {
                Ok(())
            } else if reply.is_empty() {
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                ))
            } else {
                Err(std::io::Error::other(format!(
                    "unexpected answer {:?}",
                    reply.trim_end()
                )))
            }
        };
        tokio::time::timeout(CONFIRM_TIMEOUT, talk)
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))?
    }
}

impl Propagate for ControlClient {
    fn propagate<'a>(
        &'a self,
        changes: &'a [Change],
    ) -> futures_util::future::BoxFuture<'a, tollgate_store::Result<()>> {
        Box::pin(async move {
            let mut request = String::new();
            for change in changes {
                request.push_str(&format!("change {change}\n"));
            }
            request.push_str("sync\n");
            self.exchange(request.as_bytes()).await.map_err(|e| {
                StoreError::Unconfirmed(format!(
                    "the server running on this database (pid {}) did not confirm it had applied it ({e}); \
                     restart that server so that it forgets what it had cached",
                    self.pid
                ))
            })
        })
    }
}

/// What a command is attached to (keep it until the command ends).
pub enum Attachment {
    /// No server runs on this SQLite database: the command holds its lock until it ends.
    Alone(LocalLock),
    /// A server (this pid) runs on it: the command's writes wait for its confirmation.
    Server { pid: String },
    /// PostgreSQL: the command's writes wait for every node.
    Cluster(Arc<Cluster>),
    /// Nothing to coordinate with (an in-memory database).
    Nothing,
}

/// For a `tollgate` command about to change `store`'s database: make its writes take effect
/// in any server using the same database before they return (call before the first write,
/// keep the result until the command ends). `what` names the command in the lock file
/// (`user add`).
pub async fn attach_command(store: &Store, what: &str) -> Result<Attachment, LocalError> {
    if store.backend() == Backend::Postgres {
        let cluster = crate::changes::join_as_command(store, Duration::from_secs(5)).await;
        return Ok(Attachment::Cluster(cluster));
    }
    let Some(paths) = LocalPaths::for_url(store.url()) else {
        return Ok(Attachment::Nothing);
    };
    let role = format!("command:{what}");
    let started = Instant::now();
    let mut said = false;
    loop {
        if let Some(lock) = try_take(&paths, &role)? {
            return Ok(Attachment::Alone(lock));
        }
        match read_holder(&paths.lock) {
            Some(Holder::Server { pid }) => {
                match ControlClient::connect(&paths.socket, pid.clone()).await {
                    Ok(client) => {
                        store.set_propagation(Arc::new(client));
                        return Ok(Attachment::Server { pid });
                    }
                    // A server that is starting has the lock before its socket.
                    Err(e) if alive(&pid) && started.elapsed() > Duration::from_secs(10) => {
                        return Err(LocalError::NoAnswer {
                            socket: paths.socket.clone(),
                            pid,
                            why: e.to_string(),
                        });
                    }
                    Err(_) => {}
                }
            }
            Some(holder @ Holder::Command { .. }) => {
                if started.elapsed() > COMMAND_WAIT {
                    let Holder::Command { pid, what } = holder else {
                        unreachable!()
                    };
                    return Err(LocalError::Busy {
                        lock: paths.lock.clone(),
                        pid,
                        what,
                    });
                }
                if !said {
                    tracing::info!(pid = %holder.pid(), "waiting for another tollgate command to finish with the database");
                    said = true;
                }
            }
            None => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn directories_and_files_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/data");
        prepare(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let db = dir.join("tollgate.db");
        std::fs::write(&db, b"x").unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        let wal = dir.join("tollgate.db-wal");
        std::fs::write(&wal, b"x").unwrap();
        std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o666)).unwrap();
        secure_database_files(&db, true).unwrap();
        assert_eq!((mode(&db), mode(&wal)), (0o600, 0o600));

        let old = dir.join("secret");
        std::fs::write(&old, b"old").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        let p = write_secret_file(&dir, "secret", "new").unwrap();
        assert_eq!(mode(&p), 0o600);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
    }

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_path("sqlite://./data/tollgate.db?mode=rwc"),
            Some(PathBuf::from("./data/tollgate.db"))
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://x/y"), None);
    }

    #[test]
    fn paths_sit_beside_the_database_file() {
        assert_eq!(
            LocalPaths::for_url("sqlite:///srv/data/tollgate.db?mode=rwc"),
            Some(LocalPaths {
                lock: "/srv/data/tollgate.lock".into(),
                socket: "/srv/data/tollgate.sock".into(),
            })
        );
        assert_eq!(
            LocalPaths::for_url("sqlite://./data/x.db").unwrap().lock,
            PathBuf::from("./data/x.lock")
        );
        assert_eq!(LocalPaths::for_url("sqlite::memory:"), None);
        assert_eq!(LocalPaths::for_url("postgres://h/db"), None);
    }

    #[test]
    fn holders_are_read_from_the_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("x.lock");
        std::fs::write(&lock, "42 serve\n").unwrap();
        assert_eq!(
            read_holder(&lock),
            Some(Holder::Server { pid: "42".into() })
        );
        std::fs::write(&lock, "7 command:user add\n").unwrap();
        assert_eq!(
            read_holder(&lock),
            Some(Holder::Command {
                pid: "7".into(),
                what: "user add".into()
            })
        );
        std::fs::write(&lock, "").unwrap();
        assert_eq!(read_holder(&lock), None);
    }

    #[test]
    fn the_lock_is_private_and_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("tollgate.db").display());
        let paths = LocalPaths::for_url(&url).unwrap();
        let held = try_take(&paths, "serve")
            .unwrap()
            .expect("nobody holds it yet");
        assert_eq!(mode(&paths.lock), 0o600);
        assert_eq!(
            read_holder(&paths.lock),
            Some(Holder::Server {
                pid: std::process::id().to_string()
            })
        );
        assert!(try_take(&paths, "command:x").unwrap().is_none());
        drop(held);
        assert!(try_take(&paths, "command:x").unwrap().is_some());
    }
}
