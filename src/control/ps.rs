//! `hkrun ps`: the supervisor's `View` as the server sends it, and how the client shows
//! it (Heroku's `=== web (Standard-1X): python web.py (2)` then one line per dyno).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::protocol::{Ps, PsDyno, PsJob, PsType};
use crate::supervisor::view::View;

/// UTC, RFC 3339, to the second.
const STAMP: &str = "%Y-%m-%dT%H:%M:%SZ";

/// `view` as `ps` sends it (`hkrun ps --json`).
pub(crate) fn wire(view: &View) -> Ps {
    Ps {
        router: view.router,
        types: view
            .types
            .iter()
            .map(|t| PsType {
                name: t.name.clone(),
                command: t.command.clone(),
                size: t.size.map(|s| s.to_string()),
                count: t.count,
            })
            .collect(),
        dynos: view
            .dynos
            .iter()
            .map(|d| PsDyno {
                name: d.name.clone(),
                kind: d.kind().to_owned(),
                state: d.state.as_str().to_owned(),
                since: DateTime::<Utc>::from(d.since).format(STAMP).to_string(),
                age_secs: d.age.as_secs(),
                pid: d.pid,
                port: d.port,
                memory: d.memory,
                quota: d.quota,
                last_exit: d.last_exit,
                restarts: d.restarts,
                cpu_ms: None,
            })
            .collect(),
        scheduler: view
            .scheduler
            .iter()
            .map(|j| PsJob {
                command: j.command.clone(),
                frequency: j.frequency.to_string(),
                next_run: j.next_run.map(|t| t.format(STAMP).to_string()),
                running: j.running.as_ref().map(ToString::to_string),
            })
            .collect(),
        procfile: view.procfile.clone(),
    }
}

/// `ps` with each running dyno's CPU time, from one read of /proc (blocking).
pub(crate) fn with_cpu(mut ps: Ps) -> Ps {
    let snapshot = crate::os::proc::Snapshot::read();
    for d in &mut ps.dynos {
        d.cpu_ms = d.pid.map(|pid| {
            let used = snapshot.cpu_time(nix::unistd::Pid::from_raw(pid));
            u64::try_from(used.as_millis()).unwrap_or(u64::MAX)
        });
    }
    ps
}

/// The human form.
pub(crate) fn render(ps: &Ps) -> String {
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
    use std::time::SystemTime;

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
            cpu_ms: None,
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
    fn the_wire_form_says_each_field_as_ps_json_prints_it() {
        use crate::dyno::Slot;
        use crate::plan::formation::DynoSize;
        use crate::supervisor::core::Errors;
        use crate::supervisor::event::Shown;
        use crate::supervisor::view::{DynoView, JobView, TypeView};

        let since = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_801_263);
        let view = View {
            router: Some(8080),
            types: vec![TypeView {
                name: "web".into(),
                command: "python web.py".into(),
                size: Some(DynoSize::default()),
                count: 1,
            }],
            dynos: vec![DynoView {
                slot: Slot::new("web", 1),
                name: "web.1".into(),
                state: Shown::Up,
                since,
                age: Duration::from_millis(5900),
                pid: Some(4242),
                port: Some(5000),
                memory: Some(23 << 20),
                quota: Some(512 << 20),
                last_exit: Some(137),
                restarts: 2,
                crashes: 3,
                errors: Errors::default(),
            }],
            scheduler: vec![JobView {
                command: "report".into(),
                frequency: "every 10 minutes".parse().unwrap(),
                next_run: Some(since.into()),
                running: Some(Slot::new("scheduler", 3)),
            }],
            procfile: vec!["web".into(), "worker".into()],
        };
        let ps = wire(&view);
        assert_eq!(ps.procfile, ["web", "worker"]);
        assert_eq!(
            serde_json::to_string(&ps).unwrap(),
            r#"{"router":8080,"types":[{"name":"web","command":"python web.py","size":"Standard-1X","count":1}],"dynos":[{"name":"web.1","type":"web","state":"up","since":"2026-11-27T17:41:03Z","age_secs":5,"pid":4242,"port":5000,"memory":24117248,"quota":536870912,"last_exit":137,"restarts":2}],"scheduler":[{"command":"report","frequency":"every 10 minutes","next_run":"2026-11-27T17:41:03Z","running":"scheduler.3"}]}"#
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
