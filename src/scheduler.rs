//! Heroku Scheduler's clock: sleeps until a `[[scheduler]]` job is due, reports
//! `Input::Scheduled`, and keeps each job's next run for `ps`. It only tells the time:
//! the core decides whether a run starts (not while the job's last run is going).

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch};

use crate::plan::schedule::Job;
use crate::supervisor::input::Input;

/// The longest sleep between looks at the wall clock: a laptop that slept, or a clock set
/// forward, is noticed within it.
const LOOK_AGAIN: Duration = Duration::from_secs(20);

/// Each job's next run (`None`: it never runs again).
pub(crate) type NextRuns = watch::Receiver<Vec<Option<DateTime<Utc>>>>;

/// Starts the clock for `jobs` on the current runtime; none for no jobs.
pub(crate) fn spawn(jobs: &[Job], inputs: mpsc::UnboundedSender<Input>) -> NextRuns {
    let now = Utc::now();
    let next: Vec<Option<DateTime<Utc>>> =
        jobs.iter().map(|j| j.frequency.next_after(now)).collect();
    let (tx, rx) = watch::channel(next);
    if !jobs.is_empty() {
        tokio::spawn(run(jobs.to_vec(), inputs, tx));
    }
    rx
}

async fn run(
    jobs: Vec<Job>,
    inputs: mpsc::UnboundedSender<Input>,
    next: watch::Sender<Vec<Option<DateTime<Utc>>>>,
) {
    loop {
        let now = Utc::now();
        let mut runs = next.borrow().clone();
        for (job, run) in runs.iter_mut().enumerate() {
            if run.is_some_and(|at| at <= now) {
                if inputs.send(Input::Scheduled { job }).is_err() {
                    return;
                }
                // From now, not from the run missed: a laptop that slept through three runs
                // makes one, as cron does.
                *run = jobs[job].frequency.next_after(now);
            }
        }
        let earliest = runs.iter().flatten().min().copied();
        next.send_replace(runs);
        let wait = earliest
            .and_then(|at| (at - now).to_std().ok())
            .map_or(LOOK_AGAIN, |d| d.min(LOOK_AGAIN));
        tokio::select! {
            () = tokio::time::sleep(wait.max(Duration::from_millis(10))) => {}
            () = inputs.closed() => return,
        }
    }
}
