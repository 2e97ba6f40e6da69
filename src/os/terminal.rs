//! Pseudo-terminals for `--tty` dynos: one per run, sized as hkrun's own terminal, and
//! resized with it. The dyno gets the terminal's side as stdin, stdout and stderr; hkrun
//! reads the other side as it reads a pipe.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
pub(crate) use nix::pty::Winsize;

/// What a dyno gets when hkrun itself is on no terminal: a VT100's size.
const DEFAULT: Winsize = Winsize {
    ws_row: 24,
    ws_col: 80,
    ws_xpixel: 0,
    ws_ypixel: 0,
};

/// A new pseudo-terminal: `(hkrun's side, the dyno's side)`. hkrun's side is
/// non-blocking; neither reaches a dyno's exec but as the dyno's stdio.
pub(crate) fn open(size: Winsize) -> io::Result<(OwnedFd, OwnedFd)> {
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
pub(crate) fn size() -> Winsize {
    own_size().unwrap_or(DEFAULT)
}

/// The size of the terminal this process runs on (its stdout, stdin or stderr), if any.
pub(crate) fn own_size() -> Option<Winsize> {
    let (stdout, stdin, stderr) = (io::stdout(), io::stdin(), io::stderr());
    [stdout.as_fd(), stdin.as_fd(), stderr.as_fd()]
        .into_iter()
        .find_map(|fd| get_size(fd).ok())
        .filter(|s| s.ws_row > 0 && s.ws_col > 0)
}

/// `rows` × `cols`.
pub(crate) fn sized(rows: u16, cols: u16) -> Winsize {
    Winsize {
        ws_row: rows,
        ws_col: cols,
        ..DEFAULT
    }
}

fn get_size(fd: BorrowedFd<'_>) -> io::Result<Winsize> {
    let size = rustix::termios::tcgetwinsize(fd)?;
    Ok(Winsize {
        ws_row: size.ws_row,
        ws_col: size.ws_col,
        ws_xpixel: size.ws_xpixel,
        ws_ypixel: size.ws_ypixel,
    })
}

/// Gives a dyno's terminal a new size; the kernel sends its foreground group SIGWINCH.
pub(crate) fn resize(master: BorrowedFd<'_>, size: Winsize) -> io::Result<()> {
    let size = rustix::termios::Winsize {
        ws_row: size.ws_row,
        ws_col: size.ws_col,
        ws_xpixel: size.ws_xpixel,
        ws_ypixel: size.ws_ypixel,
    };
    Ok(rustix::termios::tcsetwinsize(master, size)?)
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
