//! `hkrun ps`: the view of the core's dynos the server sends, and how the client shows it
//! (Heroku's `=== web (Standard-1X): python web.py (2)` then one line per dyno).

use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};

use super::protocol::{Ps, PsDyno, PsJob, PsType};
use crate::dyno::{POSTDEPLOY, RELEASE};
use crate::supervisor::core::{Dyno, DynoState, Supervisor};

/// Whether `ps` (and `/metrics`) shows `dyno`: the release phase while it runs; a done
/// one-shot dyno stays listed.
pub fn shown(dyno: &Dyno) -> bool {
    ![RELEASE, POSTDEPLOY].contains(&dyno.plan.spec.slot.kind.as_str())
        || dyno.state != DynoState::Down
}

/// A dyno's memory quota; none for the release phase, which is not watched.
pub fn quota(dyno: &Dyno) -> Option<u64> {
    let release = [RELEASE, POSTDEPLOY].contains(&dyno.plan.spec.slot.kind.as_str());
    (!release).then_some(dyno.plan.quota)
}

/// What `ps` shows of the supervisor at `now` (wall clock `wall`), with each
/// `[[scheduler]]` job's next run (from `scheduler`'s clock).
pub fn view(
    sup: &Supervisor,
    now: Instant,
    wall: SystemTime,
    next_runs: &[Option<DateTime<Utc>>],
) -> Ps {
    let mut dynos: Vec<_> = sup.dynos().iter().filter(|d| shown(d)).collect();
    let order = |kind: &str| {
        sup.types()
            .iter()
            .position(|t| t.name == kind)
            .map_or(0, |i| i + 1)
    };
    // A preboot's new generation shows under the old one of the same name.
    dynos.sort_by_key(|d| {
        let slot = &d.plan.spec.slot;
        (order(&slot.kind), slot.index, slot.generation)
    });
    let mut types: Vec<PsType> = Vec::new();
    for dyno in &dynos {
        let kind = &dyno.plan.spec.slot.kind;
        let leaving = dyno.leaving();
        match types.iter_mut().find(|t| &t.name == kind) {
            Some(t) => t.count += usize::from(!leaving),
            None => types.push(PsType {
                name: kind.clone(),
                command: dyno.plan.spec.command.clone(),
                size: sup
                    .types()
                    .iter()
                    .find(|t| &t.name == kind)
                    .map(|t| t.size.to_string()),
                count: usize::from(!leaving),
            }),
        }
    }
    let dynos = dynos
        .into_iter()
        .map(|d| {
            let age = sup.clock(now).saturating_duration_since(d.since);
            let since: DateTime<Utc> = wall.checked_sub(age).unwrap_or(wall).into();

            PsDyno {
                name: d.plan.spec.slot.to_string(),
                kind: d.plan.spec.slot.kind.clone(),
                state: d.state.name().to_owned(),
                since: since.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                age_secs: age.as_secs(),
                pid: d.pid,
                port: d.plan.spec.port,
                memory: d.memory,
                quota: quota(d),
                last_exit: d.last_exit.map(|e| e.code()),
                restarts: d.launches().saturating_sub(1),
            }
        })
        .collect();
    let scheduler = sup
        .scheduler()
        .enumerate()
        .map(|(i, (job, running))| PsJob {
            command: job.command.clone(),
            frequency: job.frequency.to_string(),
            next_run: next_runs
                .get(i)
                .copied()
                .flatten()
                .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
            running: running.map(|s| s.to_string()),
        })
        .collect();
    Ps {
        router: sup.router(),
        types,
        dynos,
        scheduler,
        procfile: sup.types().iter().map(|t| t.name.clone()).collect(),
    }
}

/// The human form.
pub fn render(ps: &Ps) -> String {
    let mut out = render_dynos(ps);
    if !ps.scheduler.is_empty() {
        out.push_str(&render_scheduler(&ps.scheduler));
    }
    out
}

/// `=== scheduler (UTC)`, then each job: how often, its next run, its command.
fn render_scheduler(jobs: &[PsJob]) -> String {
    let when: Vec<String> = jobs.iter().map(|j| j.frequency.clone()).collect();
    let next: Vec<String> = jobs
        .iter()
        .map(|j| {
            j.next_run
                .as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map_or_else(
                    || "never".into(),
                    |t| t.format("%Y/%m/%d %H:%M:%S +0000").to_string(),
                )
        })
        .collect();
    let when_width = when.iter().map(String::len).max().unwrap_or(0);
    let next_width = next.iter().map(String::len).max().unwrap_or(0);
    let mut out = String::from("\n=== scheduler\n");
    for (i, job) in jobs.iter().enumerate() {
        let running = job
            .running
            .as_deref()
            .map(|r| format!("   (running as {r})"))
            .unwrap_or_default();
        out.push_str(&format!(
            "{:<when_width$}   next {:<next_width$}   {}{running}\n",
            when[i], next[i], job.command
        ));
    }
    out
}

fn render_dynos(ps: &Ps) -> String {
    if ps.dynos.is_empty() {
        return "No dynos are running (start some with `hkrun scale TYPE=N`).\n".into();
    }
    // Heroku's part first, then columns aligned across every line.
    let heads: Vec<String> = ps
        .dynos
        .iter()
        .map(|d| {
            let since = DateTime::parse_from_rfc3339(&d.since)
                .map(|t| t.format("%Y/%m/%d %H:%M:%S +0000").to_string())
                .unwrap_or_else(|_| d.since.clone());
            format!(
                "{}: {} {since} (~ {} ago)",
                d.name,
                d.state,
                ago(Duration::from_secs(d.age_secs))
            )
        })
        .collect();
    let head_width = heads.iter().map(String::len).max().unwrap_or(0);
    let pids: Vec<String> = ps
        .dynos
        .iter()
        .map(|d| d.pid.map_or_else(|| "-".into(), |p| p.to_string()))
        .collect();
    let pid_width = pids.iter().map(String::len).max().unwrap_or(1);
    let ports: Vec<String> = ps
        .dynos
        .iter()
        .map(|d| d.port.map_or_else(|| "-".into(), |p| p.to_string()))
        .collect();
    let port_width = ports.iter().map(String::len).max().unwrap_or(1);

    let mut out = String::new();
    if let Some(port) = ps.router {
        out.push_str(&format!(
            "=== router: port {port}, to the web dynos that are up\n\n"
        ));
    }
    for t in &ps.types {
        let size = t
            .size
            .as_deref()
            .map(|s| format!(" ({s})"))
            .unwrap_or_default();
        out.push_str(&format!(
            "=== {}{size}: {} ({})\n",
            t.name, t.command, t.count
        ));
        for (i, d) in ps
            .dynos
            .iter()
            .enumerate()
            .filter(|(_, d)| d.kind == t.name)
        {
            let memory = match (d.memory, d.quota) {
                (Some(used), Some(quota)) => format!(
                    "mem {} / {} ({:.1}%)",
                    megabytes(used),
                    quota_text(quota),
                    used as f64 * 100.0 / quota as f64
                ),
                (None, Some(quota)) => format!("mem - / {}", quota_text(quota)),
                (Some(used), None) => format!("mem {}", megabytes(used)),
                (None, None) => String::new(),
            };
            let line = format!(
                "{:<head_width$}   pid {:>pid_width$}   port {:>port_width$}   {memory}",
                heads[i], pids[i], ports[i]
            );
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out.push('\n');
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

fn megabytes(bytes: u64) -> String {
    format!("{}M", bytes.div_ceil(1024 * 1024))
}

/// A quota as the user gave it (`-m clock=1:1K` shows `1K`, not a rounded `1M`).
fn quota_text(bytes: u64) -> String {
    crate::plan::formation::DynoSize { name: None, bytes }.to_string()
}

/// Heroku's `~ 5s`, `~ 3m`, `~ 2h`, `~ 4d`.
fn ago(age: Duration) -> String {
    let s = age.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dyno(name: &str, state: &str, pid: Option<i32>, memory: Option<u64>) -> PsDyno {
        PsDyno {
            name: name.into(),
            kind: name.split('.').next().unwrap().into(),
            state: state.into(),
            since: "2026-11-26T17:41:03Z".into(),
            age_secs: 5,
            pid,
            port: Some(5000),
            memory,
            quota: Some(512 * 1024 * 1024),
            last_exit: None,
            restarts: 0,
        }
    }

    #[test]
    fn renders_like_heroku_with_columns() {
        let ps = Ps {
            router: None,
            types: vec![PsType {
                name: "web".into(),
                command: "python web.py".into(),
                size: Some("Standard-1X".into()),
                count: 2,
            }],
            dynos: vec![
                dyno("web.1", "up", Some(4242), Some(23 * 1024 * 1024)),
                dyno("web.2", "starting", None, None),
            ],
            scheduler: Vec::new(),
            procfile: vec!["web".into()],
        };
        assert_eq!(
            render(&ps),
            "=== web (Standard-1X): python web.py (2)\n\
             web.1: up 2026/11/26 17:41:03 +0000 (~ 5s ago)         pid 4242   port 5000   mem 23M / 512M (4.5%)\n\
             web.2: starting 2026/11/26 17:41:03 +0000 (~ 5s ago)   pid    -   port 5000   mem - / 512M\n"
        );
    }

    #[test]
    fn ages_read_like_heroku() {
        assert_eq!(ago(Duration::from_secs(5)), "5s");
        assert_eq!(ago(Duration::from_secs(180)), "3m");
        assert_eq!(ago(Duration::from_secs(7300)), "2h");
        assert_eq!(ago(Duration::from_secs(90000)), "1d");
    }

    #[test]
    fn a_quota_shows_as_given() {
        assert_eq!(quota_text(512 * 1024 * 1024), "512M");
        assert_eq!(quota_text(1024), "1K");
        assert_eq!(quota_text(1536 * 1024), "1536K");
    }
}
