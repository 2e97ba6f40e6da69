//! `hkrun connect`: attaching a client to a `--tty` dyno's terminal (`Call::Attach`), its
//! resizes, and the relay of its bytes both ways until either side ends it.

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::timeout;

use super::{Client, Flow, Stopping, WRITE, ask, send, stopping};
use crate::control::protocol::Reply;
use crate::dyno::Slot;
use crate::logs::pump::Shown;
use crate::supervisor::api::{Attached, Call};

/// The dyno's terminal, relayed until either side ends it; the connection then closes.
pub(super) async fn connect(
    client: &mut Client<'_>,
    dyno: String,
    size: Option<[u16; 2]>,
    framed: bool,
) -> Flow {
    if !client.seat.start_stream() {
        let busy = Reply::error("too many streaming clients at once; try again");
        client.reply(&busy).await;
        return Flow::Close;
    }
    let context = client.context();
    let who = client.who.to_owned();
    let attach = |reply| Call::Attach {
        dyno,
        who,
        size,
        reply,
    };
    match ask(context, attach).await {
        Ok(Ok(attached)) => {
            // However this connection ends, the dyno is free again.
            let _detach = DetachOnDrop {
                calls: context.calls.clone(),
                slot: attached.slot.clone(),
                id: attached.id,
            };
            let text = format!("Connected to {}. Ctrl-] detaches.", attached.slot);
            if client.reply(&Reply::message(text)).await == Flow::Next {
                relay(&mut client.read, &mut client.write, attached, framed).await;
            }
            Flow::Close
        }
        Ok(Err(refusal)) => {
            client.seat.end_stream();
            client.reply(&Reply::error(refusal.to_string())).await
        }
        Err(Stopping) => {
            client.reply(&stopping()).await;
            Flow::Close
        }
    }
}

/// The terminal of a client attached to `dyno` is `[rows, columns]` now: the dyno's too.
/// Only the attached client may say so (the driver checks `who`).
pub(super) async fn resize(client: &mut Client<'_>, dyno: String, size: [u16; 2]) -> Flow {
    let who = client.who.to_owned();
    let resize = |reply| Call::Resize {
        dyno,
        who,
        size,
        reply,
    };
    let reply = match ask(client.context(), resize).await {
        Ok(Ok(())) => Reply::Done,
        Ok(Err(refusal)) => Reply::error(refusal.to_string()),
        Err(Stopping) => stopping(),
    };
    client.reply(&reply).await
}

/// Tells the driver an attachment has ended, when its connection does.
struct DetachOnDrop {
    calls: mpsc::UnboundedSender<Call>,
    slot: Slot,
    id: u64,
}

impl Drop for DetachOnDrop {
    fn drop(&mut self) {
        let _ = self.calls.send(Call::Detach {
            slot: self.slot.clone(),
            id: self.id,
        });
    }
}

/// Carries an attached client's keys to the dyno's terminal and the dyno's output back,
/// until the client hangs up or the dyno's run ends. A dyno that takes no keys for
/// `WRITE` (its terminal's input full) ends the session, so the client can leave.
/// `framed`: each chunk of output after an `output` line, and the run's end as an `exit`
/// line (ARCHITECTURE.md, Control protocol); else raw bytes, for clients from before.
async fn relay(
    read: &mut (impl AsyncBufReadExt + Unpin),
    write: &mut (impl AsyncWrite + Unpin),
    mut attached: Attached,
    framed: bool,
) {
    let mut keys = vec![0; 4096];
    loop {
        tokio::select! {
            typed = read.read(&mut keys) => match typed {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    match timeout(WRITE, attached.input.write_all(&keys[..n])).await {
                        Ok(Ok(())) => {}
                        _ => return,
                    }
                }
            },
            shown = attached.output.recv() => match shown {
                Some(Shown::Output(bytes)) => {
                    let framed = framed.then(|| {
                        let mut frame = Reply::Output(bytes.len()).encode();
                        frame.extend_from_slice(&bytes);
                        frame
                    });
                    if send(write, framed.as_deref().unwrap_or(&bytes)).await.is_err() {
                        return;
                    }
                }
                Some(Shown::Exited(exit)) => {
                    if framed {
                        let _ = send(write, &Reply::Exit(exit.code()).encode()).await;
                    }
                    return;
                }
                None => return,
            },
        }
    }
}
