//! Every OS signal hkrun handles, installed in one place and read as one stream of what
//! each asks for (`Caught`), so the loop has a single branch for them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::sys::signal::Signal;
use tokio::signal::unix::{self, SignalKind};

use super::SetupError;
use crate::os::process;

/// What a signal hkrun caught asks of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Caught {
    /// SIGTERM, SIGINT, SIGHUP: the app stops.
    Stop(Signal),
    /// SIGUSR1, SIGQUIT, SIGWINCH: passed on to every dyno, as tini and dumb-init do
    /// (SIGWINCH resizes the dynos' terminals too).
    Forward(Signal),
    /// SIGTSTP or SIGCONT, whichever came last asked to pause (Ctrl-Z).
    Pause,
    /// SIGTSTP or SIGCONT, whichever came last asked to go on.
    Resume,
    /// SIGUSR2, Heroku's preboot trigger: every dyno restarted, web preboot-style.
    Restart,
    /// SIGCHLD: children to reap.
    Child,
}

/// What the last of SIGTSTP and SIGCONT asks for. The kernel drops a pending SIGTSTP
/// when SIGCONT comes and the reverse, so the handlers run in the order sent.
const JOB_RUNNING: usize = 0;
const JOB_PAUSED: usize = 1;

/// The handlers' streams, one per signal.
pub(super) struct Signals {
    term: unix::Signal,
    int: unix::Signal,
    hup: unix::Signal,
    usr1: unix::Signal,
    winch: unix::Signal,
    quit: unix::Signal,
    usr2: unix::Signal,
    tstp: unix::Signal,
    cont: unix::Signal,
    chld: unix::Signal,
    /// Which of SIGTSTP and SIGCONT came last: their streams only wake the loop, and only
    /// the handlers see their order.
    job: Arc<AtomicUsize>,
}

fn setup(what: &'static str) -> impl FnOnce(std::io::Error) -> SetupError {
    move |source| SetupError { what, source }
}

fn handle(kind: SignalKind, what: &'static str) -> Result<unix::Signal, SetupError> {
    unix::signal(kind).map_err(setup(what))
}

impl Signals {
    /// Installs every handler (in a tokio runtime). Until it is dropped, what the signals
    /// ask comes out of `recv`; the handlers stay installed after, and do nothing.
    pub(super) fn install() -> Result<Self, SetupError> {
        let job = Arc::new(AtomicUsize::new(JOB_RUNNING));
        signal_hook::flag::register_usize(nix::libc::SIGTSTP, Arc::clone(&job), JOB_PAUSED)
            .map_err(setup("handle SIGTSTP"))?;
        signal_hook::flag::register_usize(nix::libc::SIGCONT, Arc::clone(&job), JOB_RUNNING)
            .map_err(setup("handle SIGCONT"))?;
        let signals = Self {
            term: handle(SignalKind::terminate(), "handle SIGTERM")?,
            int: handle(SignalKind::interrupt(), "handle SIGINT")?,
            hup: handle(SignalKind::hangup(), "handle SIGHUP")?,
            chld: handle(SignalKind::child(), "handle SIGCHLD")?,
            usr1: handle(SignalKind::user_defined1(), "handle SIGUSR1")?,
            winch: handle(SignalKind::window_change(), "handle SIGWINCH")?,
            quit: handle(SignalKind::quit(), "handle SIGQUIT")?,
            usr2: handle(SignalKind::user_defined2(), "handle SIGUSR2")?,
            tstp: handle(SignalKind::from_raw(nix::libc::SIGTSTP), "handle SIGTSTP")?,
            cont: handle(SignalKind::from_raw(nix::libc::SIGCONT), "handle SIGCONT")?,
            job,
        };
        // Inherited ignores would pass on to every dyno; handled signals reset at exec.
        // The handler stays installed once its stream is dropped, and does nothing.
        for raw in process::inherited_ignores() {
            let _ = unix::signal(SignalKind::from_raw(raw));
        }
        Ok(signals)
    }

    /// The next signal caught, as what it asks. Cancel-safe: a signal caught while the
    /// caller waited on something else comes out at the next call.
    pub(super) async fn recv(&mut self) -> Caught {
        tokio::select! {
            _ = self.term.recv() => Caught::Stop(Signal::SIGTERM),
            _ = self.int.recv() => Caught::Stop(Signal::SIGINT),
            _ = self.hup.recv() => Caught::Stop(Signal::SIGHUP),
            _ = self.usr1.recv() => Caught::Forward(Signal::SIGUSR1),
            _ = self.winch.recv() => Caught::Forward(Signal::SIGWINCH),
            _ = self.quit.recv() => Caught::Forward(Signal::SIGQUIT),
            _ = self.tstp.recv() => self.job(),
            _ = self.cont.recv() => self.job(),
            _ = self.usr2.recv() => Caught::Restart,
            _ = self.chld.recv() => Caught::Child,
        }
    }

    /// Whether the last of SIGTSTP and SIGCONT asked to pause.
    pub(super) fn paused(&self) -> bool {
        self.job.load(Ordering::SeqCst) == JOB_PAUSED
    }

    fn job(&self) -> Caught {
        match self.paused() {
            true => Caught::Pause,
            false => Caught::Resume,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::time::Duration;

    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    use super::*;

    /// Set in the process that runs the test itself.
    const CHILD: &str = "HKRUN_SIGNALS_TEST_CHILD";

    #[test]
    fn each_signal_raised_at_the_process_comes_out_as_what_it_asks() {
        // The handlers stay installed for good: Ctrl-C must still end the test run, so
        // the test runs in a process of its own.
        if std::env::var_os(CHILD).is_none() {
            let name = "supervisor::runtime::signals::tests::\
                        each_signal_raised_at_the_process_comes_out_as_what_it_asks";
            let out = Command::new(std::env::current_exe().expect("the test binary"))
                .args([name, "--exact", "--test-threads=1", "--nocapture"])
                .env(CHILD, "1")
                .output()
                .expect("run the test in a process of its own");
            let shown = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{shown}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(shown.contains("1 passed"), "{shown}");
            return;
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let mut signals = Signals::install().expect("the handlers");
            let cases = [
                (Signal::SIGTERM, Caught::Stop(Signal::SIGTERM)),
                (Signal::SIGINT, Caught::Stop(Signal::SIGINT)),
                (Signal::SIGHUP, Caught::Stop(Signal::SIGHUP)),
                (Signal::SIGUSR1, Caught::Forward(Signal::SIGUSR1)),
                (Signal::SIGQUIT, Caught::Forward(Signal::SIGQUIT)),
                (Signal::SIGWINCH, Caught::Forward(Signal::SIGWINCH)),
                (Signal::SIGUSR2, Caught::Restart),
                (Signal::SIGTSTP, Caught::Pause),
                (Signal::SIGCONT, Caught::Resume),
                (Signal::SIGCHLD, Caught::Child),
            ];
            for (signal, asks) in cases {
                kill(Pid::this(), signal).expect("raise");
                let caught = tokio::time::timeout(Duration::from_secs(10), signals.recv())
                    .await
                    .unwrap_or_else(|_| panic!("{signal} never came out"));
                assert_eq!(caught, asks, "{signal}");
            }
            assert!(!signals.paused());
        });
    }
}
