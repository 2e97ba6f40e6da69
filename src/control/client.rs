//! The client commands: `ps`, `scale`, `restart`, `stop` and `logs`, each one request
//! over the socket and its answer printed.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use super::protocol::{LogSource, Request, Response, encode_request};
use super::{ps, socket};
use crate::cli::{ControlArgs, LogsArgs, PsArgs, ScaleArgs, TargetArgs};
use crate::config;
use crate::errors::{self, Error};
use crate::logs::{Clock, Label, Origin, Style};
use crate::plan::formation::ScaleChange;

struct Client {
    stream: BufReader<UnixStream>,
    path: PathBuf,
}

impl Client {
    fn open(args: &ControlArgs) -> Result<Self, Error> {
        let root = crate::config::app_root(args.root.as_deref(), args.procfile.as_deref());
        let path = socket::path(args.socket.as_deref(), &root);
        let pointed = args.root.is_some() || args.procfile.is_some() || args.socket.is_some();
        let stream = socket::connect(&path, &root, !pointed)?;
        Ok(Self {
            stream: BufReader::new(stream),
            path,
        })
    }

    fn broken(&self, what: impl Into<String>) -> Error {
        Error::BadAnswer {
            path: self.path.clone(),
            what: what.into(),
        }
    }

    fn send(&mut self, request: &Request) -> Result<(), Error> {
        let line = encode_request(request);
        match self.stream.get_mut().write_all(line.as_bytes()) {
            Ok(()) => Ok(()),
            // The supervisor may have answered before hanging up (a refused peer).
            Err(e) => match self.next() {
                Ok(Some(response)) if !response.ok => Err(Error::Refused(
                    response.error.unwrap_or_else(|| "refused".into()),
                )),
                _ => Err(self.broken(format!("cannot send the request: {e}"))),
            },
        }
    }

    /// The next line from the supervisor, or `None` once it has closed the connection.
    fn next(&mut self) -> Result<Option<Response>, Error> {
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
    fn answer(&mut self) -> Result<Response, Error> {
        match self.next()? {
            Some(response) if response.ok => Ok(response),
            Some(response) => Err(Error::Refused(
                response.error.unwrap_or_else(|| "refused".into()),
            )),
            None => Err(self.broken("hkrun closed the connection without answering")),
        }
    }

    fn message(&mut self, request: &Request) -> Result<String, Error> {
        self.send(request)?;
        let response = self.answer()?;
        Ok(response.message.unwrap_or_default())
    }
}

/// Asks a running app to read its env files again and restart its dynos: the answer,
/// or `None` when no hkrun runs the app.
pub fn reload(control: &ControlArgs) -> Result<Option<String>, Error> {
    let mut client = match Client::open(control) {
        Ok(client) => client,
        Err(Error::NotRunning { .. }) => return Ok(None),
        Err(err) => return Err(err),
    };
    client.message(&Request::Reload {}).map(Some)
}

/// `hkrun ps [--json]`.
pub fn ps(args: &PsArgs) -> Result<i32, Error> {
    let mut client = Client::open(&args.control)?;
    client.send(&Request::Ps {})?;
    let response = client.answer()?;
    let ps = response
        .ps
        .ok_or_else(|| client.broken("the answer to ps has no dynos"))?;
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
pub fn scale(args: &ScaleArgs) -> Result<i32, Error> {
    // Malformed changes are refused here, before the socket is even opened.
    for change in &args.changes {
        change.parse::<ScaleChange>()?;
    }
    let mut client = Client::open(&args.control)?;
    let text = client.message(&Request::Scale {
        changes: args.changes.clone(),
    })?;
    errors::print_out(&format!("{text}\n"))?;
    Ok(0)
}

/// `hkrun restart [TARGET]`: returns once the new dynos are up.
pub fn restart(args: &TargetArgs) -> Result<i32, Error> {
    let mut client = Client::open(&args.control)?;
    let text = client.message(&Request::Restart {
        target: args.target.clone(),
    })?;
    errors::print_out(&format!("{text}\n"))?;
    Ok(0)
}

/// `hkrun stop [TARGET]`: with no target, returns once the supervisor has exited.
pub fn stop(args: &TargetArgs) -> Result<i32, Error> {
    let mut client = Client::open(&args.control)?;
    let text = client.message(&Request::Stop {
        target: args.target.clone(),
    })?;
    // Waited for even when nobody reads what is printed: the stop is what was asked.
    let printed = errors::print_out(&format!("{text}\n"));
    if args.target.is_none() {
        // The supervisor closes every connection as it exits.
        while client.next()?.is_some() {}
        printed?;
        errors::print_out("hkrun has stopped\n")?;
        return Ok(0);
    }
    printed.map(|()| 0)
}

/// `hkrun logs [-n N] [--tail] [--ps TYPE|DYNO] [--source app|heroku]`.
pub fn logs(args: &LogsArgs) -> Result<i32, Error> {
    let mut client = Client::open(&args.control)?;
    client.send(&Request::Logs {
        lines: args.num,
        tail: args.tail,
        ps: args.ps.clone(),
        source: args.source.map(Into::into),
    })?;
    let header = client
        .answer()?
        .logs
        .ok_or_else(|| client.broken("the answer to logs has no header"))?;
    let mut style = Style {
        format: header.format,
        color: config::color_for(args.color),
        timestamps: header.timestamps,
        width: header.width,
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut buf = Vec::new();
    while let Some(response) = client.next()? {
        if let Some(line) = response.line {
            let origin = match line.source {
                LogSource::App => Origin::App,
                LogSource::Heroku => Origin::Hkrun,
            };
            let clock = Clock {
                hms: line.hms,
                rfc3339: line.ts,
            };
            let label = Label {
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
        } else if let Some(n) = response.skipped {
            let _ = out.flush();
            errors::warn(format_args!(
                "lines were skipped here ({n} batches; this client read too slowly)"
            ));
        } else if response.end {
            break;
        } else if !response.ok {
            return Err(Error::Refused(response.error.unwrap_or_default()));
        }
        // Show what has come as soon as nothing more is waiting.
        if client.stream.buffer().is_empty() && out.flush().is_err() {
            return Ok(0);
        }
    }
    let _ = out.flush();
    Ok(0)
}
