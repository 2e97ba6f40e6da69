//! hkrun.toml's `[[scheduler]]`: Heroku Scheduler's jobs run as one-off dynos
//! `scheduler.N`; `ps` shows each job's next run; a job still running when it is due
//! again is not started twice.

use crate::harness::{App, Hk, client, free_base_port, hkrun, unique_tag};

const WORKER: &str = "worker: exec hkrun-test-child sleep 3600\n";

/// `hkrun start` of a worker with `settings` as hkrun.toml; the app, hkrun, its tag.
fn start_with(settings: &str) -> (App, Hk, String) {
    let app = App::new(WORKER);
    app.write("hkrun.toml", settings);
    let tag = unique_tag();
    let port = free_base_port().to_string();
    let hk = Hk::spawn(hkrun(
        app.path(),
        &["start", "--no-timestamp", "-p", &port],
        &tag,
    ));
    (app, hk, tag)
}

#[test]
fn ps_shows_each_jobs_next_run() {
    let (app, mut hk, _) = start_with(
        "[[scheduler]]\ncommand = \"echo tidy\"\nfrequency = \"daily at 01:30\"\n\n\
         [[scheduler]]\ncommand = \"echo report\"\ncron = \"0 9 * * MON\"\n",
    );
    hk.wait_for("worker.1 | State changed from starting to up");
    let out = client(app.path(), &["ps"]);
    assert!(out.status.success(), "{}", out.stderr);
    let section: Vec<&str> = out
        .stdout
        .lines()
        .skip_while(|l| *l != "=== scheduler")
        .collect();
    assert_eq!(section.len(), 3, "{}", out.stdout);
    assert!(
        section[1].starts_with("daily at 01:30 UTC   next "),
        "{}",
        out.stdout
    );
    assert!(section[1].contains(" 01:30:00 +0000 ") && section[1].ends_with("echo tidy"));
    assert!(section[2].starts_with("cron 0 9 * * MON"), "{}", out.stdout);
    assert!(section[2].contains(" 09:00:00 +0000 ") && section[2].ends_with("echo report"));

    let out = client(app.path(), &["ps", "--json"]);
    let ps: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let next = ps["scheduler"][0]["next_run"].as_str().unwrap();
    let next = chrono::DateTime::parse_from_rfc3339(next)
        .unwrap()
        .with_timezone(&chrono::Utc);
    let now = chrono::Utc::now();
    assert!(
        next > now && next - now <= chrono::Duration::days(1),
        "{next}"
    );
    hk.stop_cleanly();
}

#[test]
fn a_bad_job_is_refused_before_anything_starts() {
    let app = App::new(WORKER);
    for (toml, says) in [
        (
            "[[scheduler]]\ncommand = \"x\"\nfrequency = \"every 5 minutes\"\n",
            "hkrun.toml:1: [[scheduler]] #1: `every 5 minutes` is not one of Scheduler's frequencies",
        ),
        (
            "[[scheduler]]\ncommand = \"x\"\ncron = \"* * * * * *\"\n",
            "hkrun.toml:1: [[scheduler]] #1: cron `* * * * * *`: ",
        ),
        (
            "[[scheduler]]\ncommand = \"x\"\n",
            "hkrun.toml:1: [[scheduler]] #1: give either frequency or cron",
        ),
        (
            "[[scheduler]]\ncommand = \"x\"\nevery = \"hour\"\n",
            "hkrun.toml:3: unknown field `every`",
        ),
    ] {
        app.write("hkrun.toml", toml);
        let out = client(app.path(), &["check"]);
        assert_eq!(out.status.code(), Some(65), "{toml}: {}", out.stderr);
        assert!(
            out.stderr.starts_with(&format!("hkrun: {says}")),
            "{}",
            out.stderr
        );
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    }
}

/// Opt-in (`HKRUN_SCHEDULER_TEST=1`): a job every minute, in cron's form, runs twice
/// within about two minutes, and one that outlasts its minute is not started again.
#[test]
fn jobs_every_minute_run_each_minute_and_never_twice_at_once() {
    if std::env::var_os("HKRUN_SCHEDULER_TEST").is_none() {
        eprintln!("skipped: takes two minutes; HKRUN_SCHEDULER_TEST=1 runs it");
        return;
    }
    let (_app, mut hk, tag) = start_with(
        "[[scheduler]]\ncommand = \"echo tick $DYNO\"\ncron = \"* * * * *\"\n\n\
         [[scheduler]]\ncommand = \"echo long $DYNO; sleep 100\"\ncron = \"* * * * *\"\n",
    );
    let started = std::time::Instant::now();
    let deadline = started + std::time::Duration::from_secs(150);
    let mut ticks = Vec::new();
    let mut skipped = false;
    while ticks.len() < 2 || !skipped {
        let line = hk
            .next_line(deadline)
            .unwrap_or_else(|| panic!("ticks {ticks:?}, skipped {skipped}; saw {:?}", hk.seen));
        if let Some(name) = line.split(" | tick ").nth(1) {
            ticks.push(name.to_owned());
        }
        skipped |= line.contains("scheduler: `echo long $DYNO; sleep 100` is still running as");
    }
    // Each run is a dyno of its own, named as Scheduler names them.
    assert!(
        ticks.iter().all(|t| t.starts_with("scheduler.")),
        "{ticks:?}"
    );
    assert_ne!(ticks[0], ticks[1]);
    let longs = hk.seen.iter().filter(|l| l.contains(" | long ")).count();
    assert_eq!(longs, 1, "{:?}", hk.seen);
    hk.stop_cleanly();
    crate::harness::assert_none_left(&tag);
}
