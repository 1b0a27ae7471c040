//! Changes the `tollgate` command commits to an SQLite database while a server uses it.
//!
//! On PostgreSQL every commit that can change whether a credential is accepted notifies every
//! node (see `tollgate_store::notify`), whoever made it. SQLite has no such channel, and the
//! server on it answers from its caches. So a server on SQLite also listens on a Unix socket
//! beside the database file ([`socket_path`]: `tollgate.db.changes.sock`, mode 0600 in the
//! data directory), and the commands that end credentials (`tollgate user passwd|disable`,
//! `tollgate tokens deactivate|delete`) send it, after their commit, the changes they made and
//! wait for its answer. When such a command returns, the running server has dropped whatever it
//! had cached about them: the very next request with the token or session is checked against
//! the database and refused, as after the same change through the API.
//!
//! The protocol is one [`Change`] per line in its `Display` form, then an empty line; the
//! server applies each to its caches and answers `ok N`. A change can only make a cache forget
//! something, never accept anything, so whoever can reach the socket can at most make the
//! server read the database again. A connection is bounded (lines, bytes and time).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tollgate_store::Change;

use crate::state::AppState;

/// How long a command waits for the server's answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// The most changes one connection may carry.
pub const MAX_CHANGES: usize = 100_000;
/// The longest line accepted (a change is well under 200 bytes).
const MAX_LINE: usize = 1024;

/// The socket of the server using the SQLite database `db_file`.
pub fn socket_path(db_file: &Path) -> PathBuf {
    let name = db_file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "tollgate.db".to_owned());
    db_file.with_file_name(format!("{name}.changes.sock"))
}

/// Listen at `path` for changes and apply them to `state`'s caches, until the process ends.
/// A socket file left behind by a server that stopped is replaced.
pub fn listen(path: &Path, state: AppState) -> std::io::Result<()> {
    if path.exists() {
        std::fs::remove_file(path)?;
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    let shown = path.display().to_string();
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let state = state.clone();
                    tokio::spawn(async move {
                        match tokio::time::timeout(ANSWER_TIMEOUT, receive(stream, &state)).await {
                            Ok(Ok(n)) => {
                                tracing::info!(
                                    changes = n,
                                    "applied changes made by the tollgate command"
                                )
                            }
                            Ok(Err(e)) => {
                                tracing::warn!(error = %e, "refused a change notice from the local socket")
                            }
                            Err(_) => {
                                tracing::warn!("a change notice on the local socket timed out")
                            }
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, socket = %shown, "local change socket failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(())
}

async fn receive(stream: tokio::net::UnixStream, state: &AppState) -> std::io::Result<usize> {
    use tokio::io::AsyncReadExt;
    let (read, mut write) = stream.into_split();
    let limit = (MAX_CHANGES * MAX_LINE) as u64;
    let mut lines = tokio::io::BufReader::new(read.take(limit)).lines();
    let mut applied = 0;
    loop {
        let Some(line) = lines.next_line().await? else {
            return Err(invalid("the notice ended without its empty line"));
        };
        if line.is_empty() {
            break;
        }
        if line.len() > MAX_LINE || applied >= MAX_CHANGES {
            return Err(invalid("the notice is too long"));
        }
        let change: Change = line
            .parse()
            .map_err(|_| invalid("a line is not a change"))?;
        state.apply_change(&change);
        applied += 1;
    }
    write
        .write_all(format!("ok {applied}\n").as_bytes())
        .await?;
    write.flush().await?;
    Ok(applied)
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

/// What became of the changes a command sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Nothing to send.
    Nothing,
    /// No server is listening on this database: nothing is cached anywhere.
    NoServer,
    /// The running server applied this many changes to its caches.
    Applied(usize),
}

/// Send `changes` to the server using the SQLite database `db_file`, if one runs, and wait for
/// it to apply them.
pub fn forward(db_file: &Path, changes: &[Change]) -> std::io::Result<Delivery> {
    if changes.is_empty() {
        return Ok(Delivery::Nothing);
    }
    let path = socket_path(db_file);
    let stream = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(Delivery::NoServer);
        }
        Err(e) => return Err(e),
    };
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    stream.set_write_timeout(Some(ANSWER_TIMEOUT))?;
    let mut out = std::io::BufWriter::new(&stream);
    for change in changes {
        writeln!(out, "{change}")?;
    }
    writeln!(out)?;
    out.flush()?;
    drop(out);
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer)?;
    match answer.trim().strip_prefix("ok ").map(str::parse::<usize>) {
        Some(Ok(n)) if n == changes.len() => Ok(Delivery::Applied(n)),
        _ => Err(invalid("the server did not confirm the changes")),
    }
}
