//! The loop's waiting on a paused clock, channels standing in for the world (the
//! observers, the servers, the signals): no process, socket or signal is involved, and
//! a five-second grace takes no time.

use nix::sys::signal::Signal;

use super::*;
use crate::plan::policy::RestartPolicy;
use crate::supervisor::core::tests::plan;
use crate::supervisor::input::Effect;

/// The signals a test sends.
struct FakeSignals(mpsc::UnboundedReceiver<Caught>);

impl SignalSource for FakeSignals {
    async fn recv(&mut self) -> Caught {
        match self.0.recv().await {
            Some(caught) => caught,
            None => std::future::pending().await,
        }
    }
}

/// The loop's side of the channels, and the world's.
struct World {
    incoming: Incoming,
    signals: FakeSignals,
    reap_tick: tokio::time::Interval,
    inputs: mpsc::UnboundedSender<Input>,
    calls: mpsc::UnboundedSender<Call>,
    caught: mpsc::UnboundedSender<Caught>,
    _rereads: mpsc::UnboundedSender<Reread>,
}

fn world() -> World {
    let (inputs, inputs_rx) = mpsc::unbounded_channel();
    let (calls, calls_rx) = mpsc::unbounded_channel();
    let (rereads, rereads_rx) = mpsc::unbounded_channel();
    let (caught, caught_rx) = mpsc::unbounded_channel();
    World {
        incoming: Incoming {
            inputs: inputs_rx,
            calls: calls_rx,
            rereads: rereads_rx,
        },
        signals: FakeSignals(caught_rx),
        // As the driver makes it.
        reap_tick: tokio::time::interval(REAP_FALLBACK),
        inputs,
        calls,
        caught,
        _rereads: rereads,
    }
}

impl World {
    /// What the loop would handle next before `deadline`, and how many reap ticks came
    /// first.
    async fn next(&mut self, deadline: Option<Instant>) -> (Waited, u32) {
        let mut reaps = 0;
        loop {
            match self
                .incoming
                .next(&mut self.signals, &mut self.reap_tick, deadline)
                .await
            {
                Waited::Reap => reaps += 1,
                other => return (other, reaps),
            }
        }
    }
}

/// Sends `what` after `delay` of the test's clock.
fn later<T: Send + 'static>(delay: Duration, to: mpsc::UnboundedSender<T>, what: T) {
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let _ = to.send(what);
    });
}

#[tokio::test(start_paused = true)]
async fn the_cores_deadline_comes_as_a_tick_at_its_time_reaping_every_second_meanwhile() {
    let mut world = world();
    let real = std::time::Instant::now();
    let start = now();
    let (waited, reaps) = world.next(Some(start + Duration::from_secs(30))).await;
    assert!(matches!(waited, Waited::Deadline));
    assert_eq!(now() - start, Duration::from_secs(30));
    // The first tick at once, then one a second: 30 or 31 by the deadline, which comes
    // at the same instant as the last.
    assert!((30..=31).contains(&reaps), "{reaps} reap ticks");
    assert!(
        real.elapsed() < Duration::from_secs(5),
        "the clock is paused"
    );
}

#[tokio::test(start_paused = true)]
async fn the_world_signals_and_calls_come_before_a_later_deadline_when_they_come() {
    let mut world = world();
    let start = now();
    let deadline = Some(start + Duration::from_secs(30));
    later(Duration::from_secs(5), world.inputs.clone(), Input::Pause);
    let (waited, _) = world.next(deadline).await;
    assert!(matches!(waited, Waited::Input(Input::Pause)));
    assert_eq!(now() - start, Duration::from_secs(5));

    later(
        Duration::from_secs(2),
        world.caught.clone(),
        Caught::Stop(Signal::SIGTERM),
    );
    let (waited, _) = world.next(deadline).await;
    assert!(matches!(
        waited,
        Waited::Caught(Caught::Stop(Signal::SIGTERM))
    ));
    assert_eq!(now() - start, Duration::from_secs(7));

    let (answer, _asked) = oneshot::channel();
    later(
        Duration::from_secs(1),
        world.calls.clone(),
        Call::Ps(answer),
    );
    let (waited, _) = world.next(deadline).await;
    assert!(matches!(waited, Waited::Call(Call::Ps(_))));
    assert_eq!(now() - start, Duration::from_secs(8));

    // Nothing else comes: the deadline does, at its time.
    let (waited, _) = world.next(deadline).await;
    assert!(matches!(waited, Waited::Deadline));
    assert_eq!(now() - start, Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn a_stop_runs_the_cores_grace_out_on_the_loops_clock() {
    let mut world = world();
    let plan = plan(false, RestartPolicy::Always);
    let grace = plan.grace;
    let mut sup = Supervisor::new(plan);
    let t0 = now();
    sup.start(t0);
    let effects = sup.handle(now(), Input::Stop(StopRequest::Signal(Signal::SIGTERM)));
    assert!(effects.contains(&Effect::SignalStragglers(Signal::SIGTERM)));
    // As the driver does: the core's deadlines as ticks, until one of them kills.
    let killed = loop {
        let (waited, _) = world.next(sup.next_deadline()).await;
        assert!(
            matches!(waited, Waited::Deadline),
            "only the core's timers run"
        );
        let effects = sup.handle(now(), Input::Tick);
        if effects.contains(&Effect::SignalStragglers(Signal::SIGKILL)) {
            break effects;
        }
        assert!(now() - t0 < grace, "no SIGKILL at the grace");
    };
    assert_eq!(now() - t0, grace);
    let sigkills = killed
        .iter()
        .filter(|e| {
            matches!(
                e,
                Effect::SignalAll {
                    signal: Signal::SIGKILL,
                    ..
                }
            )
        })
        .count();
    assert_eq!(sigkills, 3, "{killed:?}");
}
