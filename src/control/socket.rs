//! The control socket's file: where it is, claiming it for a new supervisor (refusing a
//! live one, replacing a stale one), connecting to it, and removing it on exit.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::sys::stat::{Mode, umask};

/// Why the control socket could not be claimed or reached.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SocketError {
    #[error(
        "hkrun is already running in {}{}",
        root.display(),
        if *pid > 0 { format!(" (pid {pid})") } else { String::new() }
    )]
    AlreadyRunning { root: PathBuf, pid: i32 },
    #[error(
        "no hkrun is running in {} ({why}){}",
        root.display(),
        if *hint { "; run this in the app's folder, or point to it with -d DIR, -f PROCFILE or --socket PATH" } else { "" }
    )]
    NotRunning {
        root: PathBuf,
        why: String,
        /// The user gave no `-d`, `-f` or `--socket`: say how to.
        hint: bool,
    },
    #[error(
        "the hkrun behind {} runs as another user (uid {uid}); run this command as that user, or as root",
        path.display()
    )]
    OtherUser { path: PathBuf, uid: u32 },
    #[error("control socket {}: {source}", path.display())]
    Socket { path: PathBuf, source: io::Error },
    #[error("cannot create the control socket {}: {source}", path.display())]
    NotCreated { path: PathBuf, source: io::Error },
    #[error(
        "control socket path {} is {len} bytes, more than the 107 Unix allows",
        path.display()
    )]
    PathTooLong { path: PathBuf, len: usize },
}

/// The socket's name in the app root.
pub(crate) const FILE_NAME: &str = ".hkrun.sock";

/// Where the socket is: `--socket`/`HKRUN_SOCKET`, else `.hkrun.sock` in the app root.
pub(crate) fn path(flag: Option<&Path>, root: &Path) -> PathBuf {
    flag.map_or_else(|| root.join(FILE_NAME), Path::to_path_buf)
}

/// The app root for messages: absolute when it can be.
pub(crate) fn shown_root(root: &Path) -> PathBuf {
    std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf())
}

/// This supervisor's claim on its app root, held until it exits: one supervisor per app
/// folder, whatever socket each was given.
///
/// A name in Linux's abstract socket namespace, made of the folder's device and inode:
/// it leaves no file behind (even on SIGKILL), needs no writable folder, and the running
/// supervisor answers who it is through the peer's credentials.
#[derive(Debug)]
pub(crate) struct RootClaim {
    _name: Option<UnixListener>,
}

/// Claims the app root at `root` for a new supervisor; refused while another runs it.
pub(crate) fn claim_root(root: &Path) -> Result<RootClaim, SocketError> {
    let Ok(meta) = std::fs::metadata(root) else {
        // The Procfile was read from there, so this is a race with its removal: the
        // start fails further on, with a clearer error than this one could give.
        return Ok(RootClaim { _name: None });
    };
    let name = format!("hkrun/app/{:x}/{}", meta.dev(), meta.ino());
    let Ok(addr) = SocketAddr::from_abstract_name(name.as_bytes()) else {
        return Ok(RootClaim { _name: None });
    };
    match UnixListener::bind_addr(&addr) {
        // Never accepted from: only held.
        Ok(listener) => Ok(RootClaim {
            _name: Some(listener),
        }),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => match holder(name.as_bytes()) {
            // Anyone may take such a name: only the same user's, or root's, counts.
            Some(peer) if peer.uid() != nix::unistd::geteuid().as_raw() && peer.uid() != 0 => {
                tracing::info!(
                    uid = peer.uid(),
                    "the app root's claim is held by another user"
                );
                Ok(RootClaim { _name: None })
            }
            peer => Err(SocketError::AlreadyRunning {
                root: shown_root(root),
                pid: peer.map_or(0, |p| p.pid()),
            }),
        },
        // A sandbox without abstract sockets: the socket file's check still holds for
        // the default socket.
        Err(e) => {
            tracing::info!(err = %e, "cannot claim the app root");
            Ok(RootClaim { _name: None })
        }
    }
}

/// Who holds the abstract `name`. Its queue is never accepted from, so the connect must
/// not wait: a full queue only leaves the holder unknown.
fn holder(name: &[u8]) -> Option<nix::sys::socket::UnixCredentials> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .ok()?;
    connect(fd.as_raw_fd(), &UnixAddr::new_abstract(name).ok()?).ok()?;
    getsockopt(&fd, PeerCredentials).ok()
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
pub(crate) struct SocketFile {
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
pub(crate) fn claim(path: &Path, root: &Path) -> Result<(UnixListener, SocketFile), SocketError> {
    let fail = |source: io::Error| SocketError::Socket {
        path: path.to_path_buf(),
        source,
    };
    let folder = File::open(folder_of(path)).map_err(fail)?;
    let turn = Flock::lock(folder, FlockArg::LockExclusive)
        .map_err(|(_, errno)| fail(io::Error::from(errno)))?;
    // Reached through the open folder when the whole path is too long to bind.
    let reach = reachable(path, &turn)?;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(fail(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way",
            )));
        }
        Ok(_) => match UnixStream::connect(&reach) {
            Ok(stream) => {
                let pid = getsockopt(&stream, PeerCredentials).map_or(0, |c| c.pid());
                return Err(SocketError::AlreadyRunning {
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
    let bound = UnixListener::bind(&reach);
    umask(old);
    let listener = bound.map_err(|source| SocketError::NotCreated {
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

/// Connects a client to the supervisor of the app at `root`. `hint` says how to point
/// at an app, for a user who gave no `-d`, `-f` or `--socket`.
pub(crate) fn connect(path: &Path, root: &Path, hint: bool) -> Result<UnixStream, SocketError> {
    let fail = |source: io::Error| SocketError::Socket {
        path: path.to_path_buf(),
        source,
    };
    let shown = shown_path(path);
    let folder = match File::open(folder_of(path)) {
        Ok(folder) => Some(folder),
        // No such folder: said below, as for a missing socket.
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Err(another_user(path, &shown, e));
        }
        Err(e) => return Err(fail(e)),
    };
    let reach = match &folder {
        Some(folder) => reachable(path, folder)?,
        None => path.to_path_buf(),
    };
    UnixStream::connect(&reach).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => SocketError::NotRunning {
            root: shown_root(root),
            why: format!("no socket at {}", shown.display()),
            hint,
        },
        io::ErrorKind::ConnectionRefused => SocketError::NotRunning {
            root: shown_root(root),
            why: format!("nothing listens on {}", shown.display()),
            hint,
        },
        io::ErrorKind::PermissionDenied => another_user(path, &shown, source),
        _ => fail(source),
    })
}

/// A socket refused for its owner (or its folder's): the supervisor runs as another user.
fn another_user(path: &Path, shown: &Path, source: io::Error) -> SocketError {
    let me = nix::unistd::geteuid().as_raw();
    let owner = std::fs::metadata(path)
        .or_else(|_| std::fs::metadata(folder_of(path)))
        .map(|m| m.uid());
    match owner {
        Ok(uid) if uid != me => SocketError::OtherUser {
            path: shown.to_path_buf(),
            uid,
        },
        _ => SocketError::Socket {
            path: path.to_path_buf(),
            source,
        },
    }
}

/// The folder a socket path is in.
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Unix socket paths are limited to 107 bytes on Linux. A longer one is reached through
/// its open folder, `/proc/self/fd/N/NAME`; only a name too long for that is refused.
fn reachable(path: &Path, folder: &File) -> Result<PathBuf, SocketError> {
    const MAX: usize = 107;
    let len = path.as_os_str().len();
    if len <= MAX {
        return Ok(path.to_path_buf());
    }
    let short = match path.file_name() {
        Some(name) => Path::new("/proc/self/fd")
            .join(folder.as_raw_fd().to_string())
            .join(name),
        None => PathBuf::new(),
    };
    if short.as_os_str().is_empty() || short.as_os_str().len() > MAX {
        return Err(SocketError::PathTooLong {
            path: path.to_path_buf(),
            len,
        });
    }
    Ok(short)
}
