//! `hkrun logs`: the last lines from the log's history, then with `--tail` the live
//! stream, filtered by `--ps` and `--source`; served here, without the driver.

use tokio::io::AsyncReadExt;
use tokio::sync::broadcast;

use super::{Client, Flow};
use crate::control::protocol::{LogLine, LogSource, Reply};
use crate::logs::Origin;
use crate::logs::history::{self, Chunk, Follow};

/// Bytes of log answer gathered before each write.
const SEND_BATCH: usize = 64 * 1024;
/// Chunks of log lines sent to a `--tail` client in one write, at most.
const TAIL_BATCH: usize = 64;

/// The last `lines` lines `filter` keeps, then with `tail` the live stream.
pub(super) async fn serve(
    client: &mut Client<'_>,
    lines: usize,
    tail: bool,
    filter: Filter,
) -> Flow {
    let context = client.context();
    if let Some(name) = &filter.ps {
        if let Err(text) = known_ps(&context.types, name) {
            return client.reply(&Reply::error(text)).await;
        }
    }
    if !client.seat.start_stream() {
        let busy = Reply::error("too many logs clients at once; try again");
        client.reply(&busy).await;
        return Flow::Close;
    }
    let lines = lines.min(history::KEEP);
    let (chunks, follow) = context.history.since(lines, |c| filter.keeps(c), tail);
    let mut out = Reply::Logs(context.header.clone()).encode();
    // In batches, each awaited: a client that does not read holds only one.
    for (chunk, line) in history::last_lines(&chunks, lines) {
        out.extend(line_reply(chunk, line));
        if out.len() >= SEND_BATCH {
            if client.send(&out).await.is_err() {
                return Flow::Close;
            }
            out.clear();
        }
    }
    drop(chunks);
    if follow.is_none() {
        out.extend(Reply::End.encode());
    }
    match (client.send(&out).await, follow) {
        (Ok(()), Some(follow)) => {
            tail_log(client, follow, &filter).await;
            Flow::Close
        }
        (sent, _) => {
            client.seat.end_stream();
            sent.into()
        }
    }
}

/// Checks that `logs --ps` names a process type of the Procfile, one of its dynos (`web.3`,
/// running or not: its lines may be in the history, or still to come), `release` or
/// `system` (hkrun's own lines).
fn known_ps(types: &[String], ps: &str) -> Result<(), String> {
    let kind = match ps.rsplit_once('.') {
        Some((kind, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => kind,
        Some(_) => "",
        None => ps,
    };
    let known = types.iter().any(|t| t == kind)
        || crate::dyno::is_one_off(kind)
        || ps == crate::logs::Label::system().name;
    if known {
        return Ok(());
    }
    Err(format!(
        "unknown process type or dyno `{ps}` for --ps (the Procfile has {})",
        types.join(", ")
    ))
}

/// `--ps` and `--source`.
pub(super) struct Filter {
    pub(super) ps: Option<String>,
    pub(super) source: Option<LogSource>,
}

impl Filter {
    fn keeps(&self, chunk: &Chunk) -> bool {
        let name = chunk.label.name.as_str();
        let ps_ok = self.ps.as_deref().is_none_or(|ps| {
            name == ps
                || name
                    .strip_prefix(ps)
                    .is_some_and(|rest| rest.starts_with('.'))
        });
        ps_ok && self.source.is_none_or(|s| s == source(chunk.origin))
    }
}

fn source(origin: Origin) -> LogSource {
    match origin {
        Origin::App => LogSource::App,
        Origin::Hkrun => LogSource::Heroku,
    }
}

/// One line of a chunk, as its answer line.
fn line_reply(chunk: &Chunk, line: &[u8]) -> Vec<u8> {
    Reply::Line(LogLine {
        ts: chunk.clock.rfc3339.clone(),
        hms: chunk.clock.hms.clone(),
        source: source(chunk.origin),
        dyno: chunk.label.name.clone(),
        color: chunk.label.color,
        line: String::from_utf8_lossy(line).into_owned(),
    })
    .encode()
}

/// Streams new lines until the client leaves or stops reading, or the log ends (hkrun is
/// exiting): then the last lines and the end.
async fn tail_log(client: &mut Client<'_>, mut follow: Follow, filter: &Filter) {
    let mut scratch = [0u8; 256];
    loop {
        let first = tokio::select! {
            got = follow.recv() => got,
            // Anything but more bytes means the client has gone.
            n = client.read.read(&mut scratch) => match n {
                Ok(n) if n > 0 => continue,
                _ => return,
            },
        };
        let mut out = Vec::new();
        let mut next = Some(first);
        let mut taken = 0;
        let mut ended = false;
        while let Some(got) = next.take() {
            match got {
                Ok(chunk) if filter.keeps(&chunk) => {
                    for line in chunk.lines() {
                        out.extend(line_reply(&chunk, line));
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    out.extend(Reply::Skipped(n).encode());
                }
                Err(broadcast::error::RecvError::Closed) => {
                    out.extend(Reply::End.encode());
                    ended = true;
                    break;
                }
            }
            taken += 1;
            if taken < TAIL_BATCH {
                next = follow.ready();
            }
        }
        let failed = !out.is_empty() && client.send(&out).await.is_err();
        if failed || ended {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_names_a_type_of_the_procfile_one_of_its_dynos_a_one_off_or_hkrun() {
        let types = ["web".to_owned(), "worker".to_owned()];
        for known in ["web", "worker", "web.3", "release", "release.1", "system"] {
            assert_eq!(known_ps(&types, known), Ok(()), "{known}");
        }
        for unknown in ["clock", "web.", "web.x", "web.1.2", "we"] {
            assert_eq!(
                known_ps(&types, unknown),
                Err(format!(
                    "unknown process type or dyno `{unknown}` for --ps (the Procfile has web, worker)"
                )),
            );
        }
    }
}
