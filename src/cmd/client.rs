//! The client commands: `ps`, `scale`, `restart`, `stop` and `logs`, each one request
//! over the socket and its answer printed.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use crate::cli::{
    ConnectArgs, ControlArgs, KillArgs, LogsArgs, MaintenanceArgs, PsArgs, ScaleArgs, TargetArgs,
};
use crate::config;
use crate::control::protocol::{
    self, FromText, Hello, LogSource, Parsed, Reply, Request, encode_request, feature,
};
use crate::control::ps;
use crate::control::socket::{self, SocketError};
use crate::errors::{self, Error};
use crate::logs::{Clock, Label, Origin, Style};
use crate::plan::formation::ScaleChange;
use crate::supervisor::input::Target;

pub(super) struct Client {
    stream: BufReader<UnixStream>,
    path: PathBuf,
}

impl Client {
    pub(super) fn open(args: &ControlArgs) -> Result<Self, Error> {
        let root = crate::config::app_root(args.root.as_deref(), args.procfile.as_deref());
        let path = socket::path(args.socket.as_deref(), &root);
        let pointed = args.root.is_some() || args.procfile.is_some() || args.socket.is_some();
        let stream = socket::connect(&path, &root, !pointed)?;
        Ok(Self {
            stream: BufReader::new(stream),
            path,
        })
    }

    /// The connection again, to shut down from another thread: a reader waiting on this
    /// client then sees its end.
    pub(super) fn closer(&self) -> io::Result<UnixStream> {
        self.stream.get_ref().try_clone()
    }

    pub(super) fn broken(&self, what: impl Into<String>) -> Error {
        Error::BadAnswer {
            path: self.path.clone(),
            what: what.into(),
        }
    }

    pub(super) fn send(&mut self, request: &Request) -> Result<(), Error> {
        let line = encode_request(request);
        match self.stream.get_mut().write_all(line.as_bytes()) {
            Ok(()) => Ok(()),
            // The supervisor may have answered before hanging up (a refused peer).
            Err(e) => match self.next() {
                Ok(Some(refused @ Reply::Error { .. })) => Err(refusal(&refused)),
                _ => Err(self.broken(format!("cannot send the request: {e}"))),
            },
        }
    }

    /// The next line from the supervisor, or `None` once it has closed the connection.
    pub(super) fn next(&mut self) -> Result<Option<Reply>, Error> {
        let mut line = Vec::new();
        match self.stream.read_until(b'\n', &mut line) {
            Ok(0) => Ok(None),
            Ok(_) => serde_json::from_slice(&line)
                .map(Some)
                .map_err(|e| self.broken(format!("unreadable answer: {e}"))),
            Err(e) => Err(self.broken(format!("cannot read the answer: {e}"))),
        }
    }

    /// One answer; a refusal becomes the error.
    pub(super) fn answer(&mut self) -> Result<Reply, Error> {
        match self.next()? {
            Some(refused @ Reply::Error { .. }) => Err(refusal(&refused)),
            Some(reply) => Ok(reply),
            None => Err(self.broken("hkrun closed the connection without answering")),
        }
    }

    /// What the request came to, in words: a change's outcome as this hkrun says it.
    pub(super) fn message(&mut self, request: &Request) -> Result<String, Error> {
        self.send(request)?;
        Ok(self.answer()?.said().unwrap_or_default())
    }
}

/// An error line as the client's error (exit code `REFUSED`): a refused change's outcome
/// as this hkrun says it.
fn refusal(refused: &Reply) -> Error {
    match refused.said() {
        Some(text) if !text.is_empty() => Error::Refused(text),
        _ => Error::Refused("refused".into()),
    }
}

/// Asks a running app to read its env files again and restart its dynos: the answer,
/// or `None` when no hkrun runs the app.
pub(crate) fn reload(control: &ControlArgs) -> Result<Option<String>, Error> {
    let mut client = match Client::open(control) {
        Ok(client) => client,
        Err(Error::Control(SocketError::NotRunning { .. })) => return Ok(None),
        Err(err) => return Err(err),
    };
    client.message(&Request::Reload {}).map(Some)
}

/// `hkrun ps [--json]`.
pub(crate) fn ps(args: &PsArgs) -> Result<i32, Error> {
    let mut client = Client::open(&args.control)?;
    client.send(&Request::Ps { cpu: false })?;
    let Reply::Ps(ps) = client.answer()? else {
        return Err(client.broken("the answer to ps has no dynos"));
    };
    let text = if args.json {
        let mut text = serde_json::to_string_pretty(&ps).unwrap_or_default();
        text.push('\n');
        text
    } else {
        ps::render(&ps)
    };
    errors::print_out(&text)?;
    Ok(0)
}

/// `hkrun scale web=3 worker=0 clock+1`.
pub(crate) fn scale(args: &ScaleArgs) -> Result<i32, Error> {
    // Malformed changes are refused here, before the socket is even opened.
    let changes = args
        .changes
        .iter()
        .map(|text| Ok(Parsed::from_parts(text.parse::<ScaleChange>()?, text)))
        .collect::<Result<_, Error>>()?;
    let mut client = Client::open(&args.control)?;
    let text = client.message(&Request::Scale { changes })?;
    errors::print_out(&format!("{text}\n"))?;
    Ok(0)
}

/// `texts` read as the supervisor reads them, refused in its words.
fn read_all<T: FromText>(texts: &[String]) -> Result<Vec<Parsed<T>>, Error> {
    texts
        .iter()
        .map(|text| Parsed::read(text.as_str()).map_err(Error::Refused))
        .collect()
}

/// Targets as a request carries them: one as `target` (which every hkrun that speaks
/// protocol 1 reads), several as `targets`.
type Targets = (Option<Parsed<Target>>, Vec<Parsed<Target>>);

/// The targets named, read: one as `target`, several as `targets`.
fn one_or_several(texts: &[String]) -> Result<Targets, Error> {
    let mut targets = read_all(texts)?;
    Ok(match targets.len() {
        1 => (targets.pop(), Vec::new()),
        _ => (None, targets),
    })
}

/// `hkrun kill TARGET... SIGNAL` (or `-s SIGNAL TARGET...`): answered once sent.
pub(crate) fn kill(args: &KillArgs) -> Result<i32, Error> {
    let mut targets = args.args.clone();
    let signal = match &args.signal {
        Some(signal) => signal.clone(),
        None => targets.pop().unwrap_or_default(),
    };
    if targets.is_empty() {
        return Err(Error::BadFlag {
            flag: "kill",
            value: args.args.join(" "),
            reason: "name the dynos, then the signal (hkrun kill web HUP)",
        });
    }
    let mut client = Client::open(&args.control)?;
    let signal = Parsed::read(signal).map_err(Error::Refused)?;
    let targets = read_all(&targets)?;
    let text = client.message(&Request::Kill { targets, signal })?;
    errors::print_out(&format!("{text}\n"))?;
    Ok(0)
}

/// `hkrun restart [TARGET...]`: returns once the new dynos are up.
pub(crate) fn restart(args: &TargetArgs) -> Result<i32, Error> {
    let mut client = Client::open(&args.control)?;
    let (target, targets) = one_or_several(&args.targets)?;
    let text = client.message(&Request::Restart { target, targets })?;
    errors::print_out(&format!("{text}\n"))?;
    Ok(0)
}

/// `hkrun maintenance`, `maintenance:on`, `maintenance:off`.
pub(crate) fn maintenance(args: &MaintenanceArgs, on: Option<bool>) -> Result<i32, Error> {
    let mut client = Client::open(&args.control)?;
    let text = client.message(&Request::Maintenance { on })?;
    errors::print_out(&format!("{text}\n"))?;
    Ok(0)
}

/// `hkrun stop [TARGET]`: with no target, returns once the supervisor has exited.
pub(crate) fn stop(args: &TargetArgs) -> Result<i32, Error> {
    let mut client = Client::open(&args.control)?;
    let (target, targets) = one_or_several(&args.targets)?;
    let text = client.message(&Request::Stop { target, targets })?;
    // Waited for even when nobody reads what is printed: the stop is what was asked.
    let printed = errors::print_out(&format!("{text}\n"));
    if args.targets.is_empty() {
        // The supervisor closes every connection as it exits.
        while client.next()?.is_some() {}
        printed?;
        errors::print_out("hkrun has stopped\n")?;
        return Ok(0);
    }
    printed.map(|()| 0)
}

/// `hkrun logs [-n N] [--tail] [--ps TYPE|DYNO] [--source app|heroku]`.
pub(crate) fn logs(args: &LogsArgs) -> Result<i32, Error> {
    let mut client = Client::open(&args.control)?;
    client.send(&Request::Logs {
        lines: args.num,
        tail: args.tail,
        ps: args.ps.clone(),
        source: args.source.map(Into::into),
    })?;
    let Reply::Logs(header) = client.answer()? else {
        return Err(client.broken("the answer to logs has no header"));
    };
    let mut style = Style {
        strip_ansi: false,
        format: header.format,
        color: config::color_for(args.color),
        timestamps: header.timestamps,
        width: header.width,
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut buf = Vec::new();
    while let Some(reply) = client.next()? {
        if let Reply::Line(line) = reply {
            let origin = match line.source {
                LogSource::App => Origin::App,
                LogSource::Heroku => Origin::Hkrun,
            };
            let clock = Clock {
                hms: line.hms,
                rfc3339: line.ts,
            };
            let label = Label {
                quiet: false,
                name: line.dyno,
                color: line.color,
            };
            buf.clear();
            style.widen_for(&label.name);
            style.render(&clock, origin, &label, line.line.as_bytes(), &mut buf);
            if out.write_all(&buf).is_err() {
                // Nobody reads any more (`hkrun logs | head`): done.
                return Ok(0);
            }
        } else if let Reply::Skipped(n) = reply {
            let _ = out.flush();
            errors::warn(format_args!(
                "lines were skipped here ({n} batches; this client read too slowly)"
            ));
        } else if reply == Reply::End {
            break;
        } else if let Reply::Error { error, .. } = reply {
            return Err(Error::Refused(error));
        }
        // Show what has come as soon as nothing more is waiting.
        if client.stream.buffer().is_empty() && out.flush().is_err() {
            return Ok(0);
        }
    }
    let _ = out.flush();
    Ok(0)
}

/// What the supervisor speaks, as its answer to `hello` says. One from before `hello`
/// refuses it: it speaks none of the features. Asked on a connection of its own, so the
/// one that attaches starts clean whatever an older supervisor made of the question.
pub(crate) fn hello(control: &ControlArgs) -> Result<Hello, Error> {
    let mut client = Client::open(control)?;
    client.send(&Request::Hello {
        features: feature::ALL.map(String::from).to_vec(),
    })?;
    match client.answer() {
        Ok(Reply::Hello(hello)) => Ok(hello),
        Ok(_) | Err(Error::Refused(_)) => Ok(Hello {
            version: protocol::VERSION,
            features: Vec::new(),
        }),
        Err(err) => Err(err),
    }
}

/// Ctrl-], which detaches `hkrun connect` (as it leaves telnet).
const DETACH: u8 = 0x1d;

/// How an attached `hkrun connect` ended.
enum Ended {
    /// Ctrl-], the end of stdin, or a signal: the dyno runs on.
    Detached,
    /// The dyno's run ended: its exit status, when the supervisor said it.
    Run(Option<i32>),
}

/// `hkrun connect DYNO`: the dyno's terminal here, raw, until Ctrl-] (or the end of stdin)
/// detaches (exit 0), or the dyno's run ends (its exit status, as `heroku run` exits). The
/// dyno keeps running either way.
pub(crate) fn connect(args: &ConnectArgs) -> Result<i32, Error> {
    // Before the size is read: a resize from now on is queued, none falls in between.
    let resizes = signal_hook::iterator::Signals::new([signal_hook::consts::SIGWINCH]);
    let hello = hello(&args.control)?;
    // The dyno takes this terminal's size while attached, and its changes (below), when
    // the supervisor takes sizes.
    let size = crate::os::terminal::own_size()
        .map(|s| [s.ws_row, s.ws_col])
        .filter(|_| hello.has(feature::SIZE));
    // A supervisor from before exit statuses were sent: raw bytes, and no status.
    let framed = hello.has(feature::FRAMED);
    let mut client = Client::open(&args.control)?;
    client.send(&Request::Connect {
        dyno: args.dyno.clone(),
        size,
        framed,
    })?;
    let answer = client.answer()?;
    errors::print_err(&format!("{}\n", answer.said().unwrap_or_default()));
    let stream = client.stream.get_ref();
    let mut keys_to = stream
        .try_clone()
        .map_err(|e| client.broken(format!("cannot write to the connection: {e}")))?;
    let (events, event) = std::sync::mpsc::channel();
    let ended = events.clone();
    // Output comes on its own thread: neither direction waits for the other.
    std::thread::spawn(move || {
        let mut out = Flushed(io::stdout());
        let exit = match framed {
            true => show_frames(client, &mut out),
            false => {
                let mut shown = client.stream;
                let _ = io::copy(&mut shown, &mut out);
                None
            }
        };
        let _ = ended.send(Ended::Run(exit));
    });
    let _raw = RawTerminal::enter();
    // SIGTERM, SIGHUP or SIGINT from outside detach as Ctrl-] does: the terminal comes back.
    let detached = events.clone();
    on_stop_signal(move || {
        let _ = detached.send(Ended::Detached);
    });
    // A resized window resizes the dyno's terminal, asked on a connection of its own
    // (this one carries the terminal's bytes), of a supervisor that takes sizes.
    if let (Ok(resizes), true) = (resizes, hello.has(feature::SIZE)) {
        let (control, dyno) = (args.control.clone(), args.dyno.clone());
        std::thread::spawn(move || pass_resizes(resizes, &control, &dyno));
    }
    std::thread::spawn(move || pass_keys(&mut keys_to, &events));
    let ended = event.recv().unwrap_or(Ended::Run(None));
    drop(_raw);
    let (text, code) = match ended {
        Ended::Detached => (
            format!("\nDetached from {}; it keeps running.\n", args.dyno),
            0,
        ),
        Ended::Run(Some(code)) => (
            format!(
                "\nThe connection to {} ended: Process exited with status {code}\n",
                args.dyno
            ),
            code,
        ),
        // From a supervisor that does not say, or one that went away.
        Ended::Run(None) => (format!("\nThe connection to {} ended.\n", args.dyno), 0),
    };
    errors::print_err(&text);
    Ok(code)
}

/// Each new size of this terminal to the dyno's, until the process ends.
fn pass_resizes(mut resizes: signal_hook::iterator::Signals, control: &ControlArgs, dyno: &str) {
    for _ in resizes.forever() {
        let Some(size) = crate::os::terminal::own_size() else {
            continue;
        };
        if let Ok(mut client) = Client::open(control) {
            let resize = Request::Resize {
                dyno: dyno.to_owned(),
                size: [size.ws_row, size.ws_col],
            };
            if client.send(&resize).is_ok() {
                let _ = client.answer();
            }
        }
    }
}

/// What is typed, to the dyno's terminal, until Ctrl-] or the end of stdin: then this side
/// of the connection closes.
fn pass_keys(keys_to: &mut UnixStream, events: &std::sync::mpsc::Sender<Ended>) {
    let mut stdin = io::stdin().lock();
    let mut keys = [0u8; 1024];
    loop {
        let n = match io::Read::read(&mut stdin, &mut keys) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let (typed, detach) = match keys[..n].iter().position(|&b| b == DETACH) {
            Some(at) => (&keys[..at], true),
            None => (&keys[..n], false),
        };
        if keys_to.write_all(typed).is_err() || detach {
            break;
        }
    }
    // Said first: the server closes the connection once it sees this side close.
    let _ = events.send(Ended::Detached);
    let _ = keys_to.shutdown(std::net::Shutdown::Write);
}

/// A framed connection's output (ARCHITECTURE.md, Control protocol) to `out`, until its
/// `exit` line (the status), or until it ends without one.
fn show_frames(mut client: Client, out: &mut impl Write) -> Option<i32> {
    let mut bytes = Vec::new();
    loop {
        match client.next().ok()?? {
            Reply::Output(n) => {
                bytes.resize(n, 0);
                io::Read::read_exact(&mut client.stream, &mut bytes).ok()?;
                // Shown or not (stdout closed), the dyno's output is read on to its end.
                let _ = out.write_all(&bytes);
            }
            Reply::Exit(code) => return Some(code),
            Reply::Error { .. } => return None,
            _ => {}
        }
    }
}

/// Calls `then` on a thread of its own at the first SIGTERM, SIGHUP or SIGINT, which a
/// client on a raw terminal (`connect`, `top`) takes as its user's way out, so that it
/// can give the terminal back.
pub(super) fn on_stop_signal(then: impl FnOnce() + Send + 'static) {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    if let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGTERM, SIGHUP, SIGINT]) {
        std::thread::spawn(move || {
            if signals.forever().next().is_some() {
                then();
            }
        });
    }
}

/// Writes each chunk through at once: a prompt has no newline.
struct Flushed<W: Write>(W);

impl<W: Write> Write for Flushed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.0.write(buf)?;
        self.0.flush()?;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Stdin as a raw terminal (each key as typed, no echo: the dyno's terminal echoes),
/// restored when dropped; nothing when stdin is not a terminal.
struct RawTerminal(Option<nix::sys::termios::Termios>);

impl RawTerminal {
    fn enter() -> Self {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = io::stdin();
        let Ok(saved) = tcgetattr(&stdin) else {
            return Self(None);
        };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        match tcsetattr(&stdin, SetArg::TCSANOW, &raw) {
            Ok(()) => Self(Some(saved)),
            Err(_) => Self(None),
        }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                saved,
            );
        }
    }
}
