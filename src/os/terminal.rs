//! Pseudo-terminals for `--tty` dynos: one per run, sized as hkrun's own terminal, and
//! resized with it. The dyno gets the terminal's side as stdin, stdout and stderr; hkrun
//! reads the other side as it reads a pipe.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
pub use nix::pty::Winsize;

/// What a dyno gets when hkrun itself is on no terminal: a VT100's size.
const DEFAULT: Winsize = Winsize {
    ws_row: 24,
    ws_col: 80,
    ws_xpixel: 0,
    ws_ypixel: 0,
};

/// A new pseudo-terminal: `(hkrun's side, the dyno's side)`. hkrun's side is
/// non-blocking; neither reaches a dyno's exec but as the dyno's stdio.
pub fn open(size: Winsize) -> io::Result<(OwnedFd, OwnedFd)> {
    let pty = nix::pty::openpty(Some(&size), None)?;
    for fd in [pty.master.as_fd(), pty.slave.as_fd()] {
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    }
    let flags = OFlag::from_bits_truncate(fcntl(pty.master.as_fd(), FcntlArg::F_GETFL)?);
    fcntl(
        pty.master.as_fd(),
        FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK),
    )?;
    Ok((pty.master, pty.slave))
}

/// The size of the terminal hkrun runs on (its stdout, stdin or stderr), or 80×24.
pub fn size() -> Winsize {
    own_size().unwrap_or(DEFAULT)
}

/// The size of the terminal this process runs on (its stdout, stdin or stderr), if any.
#[allow(unsafe_code)]
pub fn own_size() -> Option<Winsize> {
    [1, 0, 2]
        .into_iter()
        .find_map(|fd| {
            // SAFETY: fds 0 to 2 stay open for hkrun's life (a closed one makes the
            // ioctl fail, nothing more).
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            get_size(fd).ok()
        })
        .filter(|s| s.ws_row > 0 && s.ws_col > 0)
}

/// `rows` × `cols`.
pub fn sized(rows: u16, cols: u16) -> Winsize {
    Winsize {
        ws_row: rows,
        ws_col: cols,
        ..DEFAULT
    }
}

#[allow(unsafe_code)]
fn get_size(fd: BorrowedFd<'_>) -> io::Result<Winsize> {
    let mut size = DEFAULT;
    // SAFETY: TIOCGWINSZ writes one `winsize` to the pointer, which is valid for it.
    let done = unsafe { nix::libc::ioctl(fd.as_raw_fd(), nix::libc::TIOCGWINSZ, &mut size) };
    match done {
        0 => Ok(size),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Gives a dyno's terminal a new size; the kernel sends its foreground group SIGWINCH.
#[allow(unsafe_code)]
pub fn resize(master: BorrowedFd<'_>, size: Winsize) -> io::Result<()> {
    // SAFETY: TIOCSWINSZ reads one `winsize` from the pointer, which is valid for it.
    let done = unsafe { nix::libc::ioctl(master.as_raw_fd(), nix::libc::TIOCSWINSZ, &size) };
    match done {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_has_the_size_it_was_given_and_takes_a_new_one() {
        let size = Winsize {
            ws_row: 33,
            ws_col: 101,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let (master, slave) = open(size).expect("a pseudo-terminal");
        let got = get_size(slave.as_fd()).unwrap();
        assert_eq!((got.ws_row, got.ws_col), (33, 101));
        resize(master.as_fd(), DEFAULT).unwrap();
        let got = get_size(slave.as_fd()).unwrap();
        assert_eq!((got.ws_row, got.ws_col), (24, 80));
    }
}
