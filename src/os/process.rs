//! Spawns dynos into their own process groups, signals them, reaps every child, and marks
//! each run (hkrun's descendants are found in /proc by `os::proc`). Never decides when
//! any of this happens: the core does.
//!
//! Children are started with `std::process::Command`, not `tokio::process`, whose own
//! waiting would steal exit statuses from the reaper here (README, "In production: hkrun
//! as a container's entrypoint").

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{self, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::dyno::Exit;
use crate::plan::Vars;

/// A dyno just started.
pub struct Spawned {
    /// The leader of its process group, so also the group's id.
    pub pid: Pid,
    /// The read end of the pipe its stdout and stderr share.
    pub output: OwnedFd,
}

/// Starts `/bin/sh -c command` in `cwd` as the leader of a new process group, with stdin
/// from `/dev/null` and stdout and stderr into one pipe. `env` is added to hkrun's own
/// environment, less hkrun's settings variables (`without_settings`).
#[expect(
    unsafe_code,
    reason = "pre_exec is unsafe: the hook makes std fork and exec"
)]
pub fn spawn(command: &str, env: &Vars, cwd: &Path) -> io::Result<Spawned> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let write_err = write.try_clone()?;
    let mut sh = Command::new("/bin/sh");
    without_settings(&mut sh);
    sh.arg("-c")
        .arg(exec_form(command))
        .envs(env)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(write)
        .stderr(write_err)
        .process_group(0);
    // A hook, even one that does nothing, makes std fork and exec rather than posix_spawn
    // (a vfork): until exec the child keeps hkrun's signal handlers, so a Ctrl-Z sent to
    // hkrun's group while the child is still in it does not stop it there, with hkrun
    // waiting for its exec for ever.
    // SAFETY: the hook runs between fork and exec and does nothing at all.
    unsafe {
        sh.pre_exec(|| Ok(()));
    }
    let child = sh.spawn()?;
    // The Command and its copies of the write end are gone, so EOF comes when the dyno
    // and its descendants close theirs. hkrun waits for the pid itself (`reap`).
    let pid = Pid::from_raw(i32::try_from(child.id()).map_err(io::Error::other)?);
    Ok(Spawned { pid, output: read })
}

/// Starts `/bin/sh -c command` as `spawn` does, but on the terminal whose dyno side is
/// `terminal`: its stdin, stdout and stderr, and its controlling terminal, in a session
/// of its own (so also the leader of its own process group). hkrun reads the other side.
#[expect(
    unsafe_code,
    reason = "pre_exec is unsafe: setsid and TIOCSCTTY run between fork and exec"
)]
pub fn spawn_on_terminal(
    command: &str,
    env: &Vars,
    cwd: &Path,
    terminal: OwnedFd,
) -> io::Result<Pid> {
    let mut sh = Command::new("/bin/sh");
    without_settings(&mut sh);
    sh.arg("-c")
        .arg(exec_form(command))
        .envs(env)
        .current_dir(cwd)
        .stdin(terminal.try_clone()?)
        .stdout(terminal.try_clone()?)
        .stderr(terminal);
    // SAFETY: between fork and exec, only async-signal-safe calls: setsid and ioctl.
    unsafe {
        sh.pre_exec(|| {
            nix::unistd::setsid()?;
            // Stdin is the terminal now: make it the session's controlling terminal.
            if nix::libc::ioctl(0, nix::libc::TIOCSCTTY, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = sh.spawn()?;
    Ok(Pid::from_raw(
        i32::try_from(child.id()).map_err(io::Error::other)?,
    ))
}

/// Leaves hkrun's own settings variables (`hide_from_dynos`, from `cli::settings_variables`: `HKRUN_DRAIN`, with a
/// drain's credentials, among them) out of what `command` inherits: they are hkrun's,
/// not the app's. Set after this (an env file's), they pass. The run mark and every other
/// variable (`HKRUN_LOG`, the tests' `HKRUN_TEST_*`) pass as they are.
pub fn without_settings(command: &mut Command) {
    for name in HIDDEN.get().into_iter().flatten() {
        command.env_remove(name);
    }
}

/// hkrun's settings variables, named once at start (`hide_from_dynos`).
static HIDDEN: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

/// Names the variables `without_settings` keeps from every command hkrun starts:
/// hkrun's own settings (`cli::settings_variables`), given by the command line's layer,
/// which knows them.
pub fn hide_from_dynos(names: Vec<String>) {
    let _ = HIDDEN.set(names);
}

/// The script given to `sh -c`: a simple command is prefixed with `exec`, so the app
/// itself leads the group, gets signals first-hand and its exit status is the dyno's (as
/// bash does on its own; dash, Debian's `sh`, would stay in between and die on SIGTERM
/// before the app has cleaned up). Left to the shell as written: an operator outside
/// quotes (a list, pipe, redirection, subshell or substitution), and a first word `exec`
/// cannot run (a builtin, a reserved word, an assignment, an expansion).
pub fn exec_form(command: &str) -> String {
    // Characters that end a simple command when they stand outside quotes.
    const OPERATORS: &[char] = &[';', '&', '|', '(', ')', '<', '>', '`', '\n'];
    // The reserved words of dash and bash; POSIX's special builtins; its regular builtins
    // with the other builtins of dash and bash.
    const NOT_A_PROGRAM: [&str; 3] = [
        "! { } [[ ]] case coproc do done elif else esac fi for function if in select then \
         time until while",
        ". : break continue eval exec exit export readonly return set shift times trap unset",
        "[ alias bg bind builtin caller cd chdir command compgen complete compopt declare dirs \
         disown echo enable false fc fg getopts hash help history jobs kill let local logout \
         mapfile newgrp popd printf pushd pwd read readarray shopt source suspend test true \
         type typeset ulimit umask unalias wait",
    ];
    // Whether the character at byte `i` is outside quotes and not escaped: the text
    // before it reads as whole words (shlex refuses an open quote or a trailing backslash).
    let outside_quotes = |i: usize| shlex::split(&command[..i]).is_some();
    // shlex reads words as the shell does, and refuses an unclosed quote.
    let words = shlex::split(command).unwrap_or_default();
    let simple = words.first().is_some_and(|first| {
        let assignment = first.split_once('=').is_some_and(|(name, _)| {
            name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        !assignment
            && !NOT_A_PROGRAM
                .iter()
                .any(|words| words.split_whitespace().any(|w| w == first))
            // An expansion may name a builtin, or nothing.
            && !first.contains(['$', '`'])
            && !command
                .char_indices()
                .any(|(i, c)| OPERATORS.contains(&c) && outside_quotes(i))
    });
    if simple {
        format!("exec {command}")
    } else {
        command.to_owned()
    }
}

/// Sends `signal` to a process group; a group already gone is fine.
pub fn signal_group(pgid: Pid, signal: Signal) {
    match signal::killpg(pgid, signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(err) => tracing::warn!(%pgid, ?signal, %err, "killpg failed"),
    }
}

/// Sends `signal` to one process; one already gone is fine.
pub fn signal_process(pid: Pid, signal: Signal) {
    match signal::kill(pid, signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(err) => tracing::warn!(%pid, ?signal, %err, "kill failed"),
    }
}

/// Collects every child that has ended, until none is left to collect. One SIGCHLD can
/// stand for many exits.
pub fn reap() -> Vec<(Pid, Exit)> {
    let mut ended = Vec::new();
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => ended.push((pid, Exit::Code(code))),
            Ok(WaitStatus::Signaled(pid, signal, _)) => ended.push((pid, Exit::Signaled(signal))),
            Ok(WaitStatus::StillAlive) | Err(_) => return ended,
            Ok(_) => {}
        }
    }
}

/// Descriptors hkrun inherited (a parent's leak, a shell's `3>file`) stay open in hkrun
/// but reach no dyno: every open descriptor above stderr gets close-on-exec. Called before
/// hkrun starts a thread, so no number listed can be closed and reused meanwhile.
#[expect(
    unsafe_code,
    reason = "F_SETFD on descriptors listed by number, which no safe API takes"
)]
pub fn close_inherited_on_exec() {
    let Ok(fds) = procfs::process::Process::myself().and_then(|me| me.fd()) else {
        return;
    };
    // Collected first: the listing's own descriptor is closed when the iterator drops.
    let numbers: Vec<i32> = fds
        .flatten()
        .map(|info| info.fd)
        .filter(|&fd| fd > 2)
        .collect();
    for fd in numbers {
        // SAFETY: fcntl(F_SETFD) touches only the descriptor's flags; on a number that is
        // not open (the listing's own) it fails with EBADF and changes nothing.
        unsafe {
            nix::libc::fcntl(fd, nix::libc::F_SETFD, nix::libc::FD_CLOEXEC);
        }
    }
}

/// A mask hkrun was started with (a parent that blocked signals around its exec) would
/// keep hkrun from hearing them, and pass on to every dyno. Called before hkrun starts a
/// thread, so every thread after has the empty mask.
pub fn unblock_signals() -> io::Result<()> {
    signal::SigSet::empty()
        .thread_set_mask()
        .map_err(io::Error::from)
}

/// Signals hkrun was started with ignored (nohup's SIGHUP, a shell's `trap '' ALRM`) that
/// it can safely handle instead. An ignored signal stays ignored across exec, a handled one
/// does not: the driver handles these (doing nothing) so dynos start with the default.
/// Left as they are: SIGPIPE (std ignores it on purpose and restores it in children), the
/// C library's reserved 32 and 33, signals of a fault (a handler that returns would fault
/// again), and SIGTTIN/SIGTTOU, whose handling makes a background write to a terminal
/// with `tostop` retry for ever.
pub fn inherited_ignores() -> Vec<i32> {
    use nix::libc::{SIGBUS, SIGFPE, SIGILL, SIGPIPE, SIGSEGV, SIGSYS, SIGTRAP, SIGTTIN, SIGTTOU};
    const KEEP: [i32; 11] = [
        SIGPIPE, 32, 33, SIGILL, SIGTRAP, SIGBUS, SIGFPE, SIGSEGV, SIGSYS, SIGTTIN, SIGTTOU,
    ];
    let Ok(ignored) = procfs::process::Process::myself()
        .and_then(|me| me.status())
        .map(|status| status.sigign)
    else {
        return Vec::new();
    };
    (1..=64)
        .filter(|&n| ignored & (1 << (n - 1)) != 0)
        .filter(|n| !KEEP.contains(n))
        .collect()
}

/// Makes orphaned descendants come back to hkrun instead of init, so they can be found
/// and stopped (README, "In production: hkrun as a container's entrypoint").
pub fn become_subreaper() -> io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(io::Error::from)
}

/// The variable that marks every process of one run of a dyno (`HKRUN_DYNO_ID`): a
/// process that leaves the dyno's group (a double fork, `setsid`) keeps its environment,
/// so it can still be found and stopped with its dyno (`proc::Snapshot::carries_mark`).
pub const RUN_MARK: &str = "HKRUN_DYNO_ID";

#[cfg(test)]
mod tests {
    use super::exec_form;

    #[test]
    fn only_simple_commands_are_execed() {
        let execed = [
            "bundle exec puma -C config/puma.rb",
            "python3 web.py --port $PORT",
            "node 'a b.js'",
            "python3 -c \"import a; a.b()\"",
            "node -e 'run(); process.exit(1)'",
            "gunicorn --access-logformat '%(h)s %(r)s' app:wsgi",
            "grep 'a|b' x",
            "echo_server \\; x",
            "printf_tool a\\\nb",
            "python3 -c \"print('a > b')\" # a note",
            "./env-check",
        ];
        for command in execed {
            assert_eq!(exec_form(command), format!("exec {command}"), "{command}");
        }
        let kept = [
            "cd app && npm start",
            "FOO=1 node x",
            "_x=1 node x",
            "sleep 1000 & sleep 1000 & wait",
            "bin/worker; echo done",
            "exec node x",
            "exit 3",
            "'exit' 3",
            ": nothing",
            "true",
            "echo hi",
            "trap 'echo bye' TERM; sleep 5",
            "a | b",
            "a 'b'|c",
            "a \"b\";c",
            "cmd > log 2>&1",
            "cmd\nother",
            "node $(cat args)",
            "node `cat args`",
            "$HOME/bin/server",
            "\"$SERVER\" --port 1",
            "{ a; }",
            "! false",
            "[[ -f x ]]",
            "if true; then a; fi",
            "time node x",
            "node 'unclosed",
            "node x\\",
            "# only a comment",
            "",
        ];
        for command in kept {
            assert_eq!(exec_form(command), command, "{command}");
        }
    }
}
