//! One request, read and checked, answered: the streams by `logs` and `attach`, the rest
//! by the driver, asked through `ask`.

use super::{Client, Context, Flow, Stopping, ask, attach, logs, stopping};
use crate::control::protocol::{Hello, Parsed, Ps, Reply, Request};
use crate::supervisor::api::Call;
use crate::supervisor::input::Control;

/// Answers `request`; says what the connection does next.
pub(super) async fn dispatch(client: &mut Client<'_>, request: Request) -> Flow {
    let context = client.context();
    match request {
        Request::Logs {
            lines,
            tail,
            ps,
            source,
        } => logs::serve(client, lines, tail, logs::Filter { ps, source }).await,
        Request::Connect { dyno, size, framed } => {
            attach::connect(client, dyno, size, framed).await
        }
        Request::Resize { dyno, size } => attach::resize(client, dyno, size).await,
        // The client's own features change nothing this hkrun sends.
        Request::Hello { .. } => client.reply(&Reply::Hello(Hello::ours())).await,
        Request::Ps { cpu } => client.answer(ps(context, cpu), Reply::Ps).await,
        Request::Maintenance { on } => {
            let answer = ask(context, |reply| Call::Maintenance { on, reply });
            client
                .answer(answer, |said| {
                    said.map_or_else(Reply::error, Reply::message)
                })
                .await
        }
        Request::Reload {} => {
            let reload = ask(context, |reply| Call::Reload { reply });
            client.answer(reload, Reply::outcome).await
        }
        Request::Stop {
            target: None,
            targets,
        } if targets.is_empty() => stop_all(client).await,
        Request::Scale { changes } if changes.is_empty() => {
            let nothing = "nothing to scale (give changes such as web=2 worker+1)";
            client.reply(&Reply::error(nothing)).await
        }
        Request::Scale { changes } => change(client, Control::Scale(values(changes))).await,
        Request::Restart { target, targets } => {
            let targets = values(target.into_iter().chain(targets));
            change(client, Control::Restart(targets)).await
        }
        Request::Stop { target, targets } => {
            let targets = values(target.into_iter().chain(targets));
            change(client, Control::Stop(targets)).await
        }
        Request::Kill { targets, .. } if targets.is_empty() => {
            let nobody = Reply::error("name the dynos to signal");
            client.reply(&nobody).await
        }
        Request::Kill { targets, signal } => {
            let targets = values(targets);
            let signal = signal.into_value();
            change(client, Control::Kill { targets, signal }).await
        }
    }
}

/// The values a request's texts were read as.
fn values<T>(parsed: impl IntoIterator<Item = Parsed<T>>) -> Vec<T> {
    parsed.into_iter().map(Parsed::into_value).collect()
}

/// A change the core carries out or refuses: answered with its outcome.
async fn change(client: &mut Client<'_>, request: Control) -> Flow {
    let asked = ask(client.context(), |reply| Call::Change { request, reply });
    client.answer(asked, Reply::outcome).await
}

/// `hkrun stop` with no target: answered at once, then the connection is held open until
/// hkrun exits, which the client waits for.
async fn stop_all(client: &mut Client<'_>) -> Flow {
    let reply = match client.context().calls.send(Call::StopAll) {
        Ok(()) => Reply::message("Stopping all dynos..."),
        Err(_) => stopping(),
    };
    if client.reply(&reply).await == Flow::Close {
        return Flow::Close;
    }
    std::future::pending().await
}

/// `ps`'s view, with each running dyno's CPU time when asked (read from /proc off the
/// async thread).
async fn ps(context: &Context, cpu: bool) -> Result<Ps, Stopping> {
    let ps = crate::control::ps::wire(&ask(context, Call::Ps).await?);
    if !cpu {
        return Ok(ps);
    }
    tokio::task::spawn_blocking(move || crate::control::ps::with_cpu(ps))
        .await
        .map_err(|_| Stopping)
}
