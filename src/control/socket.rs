//! The control socket's file: where it is, claiming it for a new supervisor (refusing a
//! live one, replacing a stale one), connecting to it, and removing it on exit.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::sys::stat::{Mode, umask};

use crate::errors::Error;

/// The socket's name in the app root.
pub const FILE_NAME: &str = ".hkrun.sock";

/// Where the socket is: `--socket`/`HKRUN_SOCKET`, else `.hkrun.sock` in the app root.
pub fn path(flag: Option<&Path>, root: &Path) -> PathBuf {
    flag.map_or_else(|| root.join(FILE_NAME), Path::to_path_buf)
}

/// The app root for messages: absolute when it can be.
pub fn shown_root(root: &Path) -> PathBuf {
    std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf())
}

/// The socket's path for messages: absolute when it can be.
fn shown_path(path: &Path) -> PathBuf {
    match (path.parent(), path.file_name()) {
        (Some(folder), Some(name)) if path.is_relative() => {
            let folder = if folder.as_os_str().is_empty() {
                Path::new(".")
            } else {
                folder
            };
            shown_root(folder).join(name)
        }
        _ => path.to_path_buf(),
    }
}

/// The socket file this supervisor created; removed when dropped, unless another
/// process's socket has since taken its place.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    inode: (u64, u64),
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.inode {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Claims the socket for a new supervisor of the app at `root`.
///
/// Two `hkrun start`s racing for the same socket take turns through a lock on its
/// folder, so one of them always finds the other's live socket.
pub fn claim(path: &Path, root: &Path) -> Result<(UnixListener, SocketFile), Error> {
    let fail = |source: io::Error| Error::Socket {
        path: path.to_path_buf(),
        source,
    };
    check_length(path)?;
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let folder = File::open(folder).map_err(fail)?;
    let _turn = Flock::lock(folder, FlockArg::LockExclusive)
        .map_err(|(_, errno)| fail(io::Error::from(errno)))?;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(fail(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way",
            )));
        }
        Ok(_) => match UnixStream::connect(path) {
            Ok(stream) => {
                let pid = getsockopt(&stream, PeerCredentials).map_or(0, |c| c.pid());
                return Err(Error::AlreadyRunning {
                    root: shown_root(root),
                    pid,
                });
            }
            // Nobody listens: a supervisor was killed before it could clean up.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                let shown = shown_path(path);
                tracing::info!(path = %shown.display(), "replacing a stale control socket");
                std::fs::remove_file(path).map_err(fail)?;
            }
            Err(e) => return Err(fail(e)),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e)),
    }
    // Created 0600: no moment exists where another user could connect. No other thread
    // runs yet, so the process-wide umask is only this socket's.
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    umask(old);
    let listener = bound.map_err(|source| Error::SocketNotCreated {
        path: path.to_path_buf(),
        source,
    })?;
    listener.set_nonblocking(true).map_err(fail)?;
    let meta = std::fs::symlink_metadata(path).map_err(fail)?;
    Ok((
        listener,
        SocketFile {
            path: path.to_path_buf(),
            inode: (meta.dev(), meta.ino()),
        },
    ))
}

/// Connects a client to the supervisor of the app at `root`.
pub fn connect(path: &Path, root: &Path) -> Result<UnixStream, Error> {
    check_length(path)?;
    let shown = shown_path(path);
    UnixStream::connect(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => Error::NotRunning {
            root: shown_root(root),
            why: format!("no socket at {}", shown.display()),
        },
        io::ErrorKind::ConnectionRefused => Error::NotRunning {
            root: shown_root(root),
            why: format!("nothing listens on {}", shown.display()),
        },
        _ => Error::Socket {
            path: path.to_path_buf(),
            source,
        },
    })
}

/// Unix socket paths are limited to 107 bytes on Linux.
fn check_length(path: &Path) -> Result<(), Error> {
    const MAX: usize = 107;
    let len = path.as_os_str().len();
    if len > MAX {
        return Err(Error::SocketPathTooLong {
            path: path.to_path_buf(),
            len,
        });
    }
    Ok(())
}
