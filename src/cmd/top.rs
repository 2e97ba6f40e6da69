//! `hkrun top`: the running app in a terminal, for SSH sessions. Every dyno with its
//! state, a memory bar against its quota, restarts and CPU; the log below; keys to
//! restart, stop and scale a dyno's type, and to show only its log lines.
//!
//! A client like the others: `ps` once a second (with each dyno's CPU time, which the
//! supervisor reads from /proc) and a `logs --tail` stream over the control socket,
//! drawn with crossterm. The filter asks
//! the supervisor for the chosen dyno's lines alone (`logs --ps`), so another dyno's
//! flood cannot push them out of what the stream and the pane hold.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crossterm::event::{self, Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use crossterm::style::{Attribute, Print, SetAttribute};
use crossterm::terminal::{self, ClearType};
use crossterm::{cursor, execute, queue};

use super::client::Client;
use crate::cli::TopArgs;
use crate::control::protocol::{Parsed, Ps, PsDyno, Reply, Request, feature};
use crate::errors::Error;

/// Log lines kept for the pane.
const KEPT_LINES: usize = 500;
/// How often `ps` is asked.
const EVERY: Duration = Duration::from_secs(1);

enum Event {
    Ps(Ps),
    /// CPU use of each dyno over the last second, in percent of one core.
    Cpu(HashMap<String, f64>),
    Line {
        /// Which `logs` stream it came on (`Log::id`).
        stream: u64,
        dyno: String,
        text: String,
    },
    Key(KeyEvent),
    /// What an action answered.
    Said(String),
    /// The supervisor has gone.
    Gone,
}

struct Screen {
    ps: Ps,
    cpu: HashMap<String, f64>,
    lines: VecDeque<(String, String)>,
    selected: usize,
    /// Only the selected dyno's lines.
    filtered: bool,
    /// The log stream `lines` come from.
    log: Log,
    said: String,
}

/// A `logs --tail` stream: every dyno's lines, or one dyno's.
#[derive(Default)]
struct Log {
    id: u64,
    /// The dyno whose lines it has; `None`, every dyno's.
    of: Option<String>,
    /// Ends it: its connection, shut down.
    closer: Option<UnixStream>,
}

/// `hkrun top`.
pub(crate) fn top(args: &TopArgs) -> Result<i32, Error> {
    // Fails here, before the terminal changes, when no hkrun runs.
    // A supervisor that does not say it takes `cpu` is not asked: CPU shows `-`.
    let cpu = super::client::hello(&args.control)?.has(feature::CPU);
    let first = ps(&args.control, cpu)?;
    let (tx, events) = mpsc::channel();
    spawn_ps(args.control.clone(), cpu, tx.clone());
    spawn_keys(tx.clone());
    let mut screen = Screen {
        ps: first,
        cpu: HashMap::new(),
        lines: VecDeque::new(),
        selected: 0,
        filtered: false,
        log: Log::default(),
        said: String::new(),
    };
    follow_log(&args.control, &mut screen, None, &tx);
    // SIGTERM, SIGHUP or SIGINT from outside end it as `q` does: the terminal comes back.
    let gone = tx.clone();
    super::client::on_stop_signal(move || {
        let _ = gone.send(Event::Gone);
    });
    let _terminal = RawScreen::enter().map_err(|source| Error::Setup {
        what: "take over the terminal",
        source,
    })?;
    let mut out = io::stdout();
    draw(&mut out, &screen);
    while let Ok(first) = events.recv() {
        // Everything that came meanwhile, then one drawing: a flood of log lines costs
        // one screen, not one each.
        let pending = std::iter::once(first).chain(std::iter::from_fn(|| events.try_recv().ok()));
        let mut go_on = true;
        for event in pending {
            go_on = apply(&args.control, &mut screen, event, &tx);
            if !go_on {
                break;
            }
        }
        if !go_on {
            break;
        }
        screen.selected = screen.selected.min(screen.ps.dynos.len().saturating_sub(1));
        // The filter on, or the chosen dyno changed under it: the stream of its lines.
        let wanted = screen
            .filtered
            .then(|| screen.ps.dynos.get(screen.selected).map(|d| d.name.clone()))
            .flatten();
        if wanted != screen.log.of {
            follow_log(&args.control, &mut screen, wanted, &tx);
        }
        draw(&mut out, &screen);
    }
    Ok(0)
}

/// One event; false to quit.
fn apply(
    control: &crate::cli::ControlArgs,
    screen: &mut Screen,
    event: Event,
    tx: &mpsc::Sender<Event>,
) -> bool {
    match event {
        Event::Ps(ps) => screen.ps = ps,
        Event::Cpu(cpu) => screen.cpu = cpu,
        // What came on a stream since ended is not shown.
        Event::Line { stream, .. } if stream != screen.log.id => {}
        Event::Line { dyno, text, .. } => {
            screen
                .lines
                .push_back((dyno, crate::logs::render::plain(&text)));
            if screen.lines.len() > KEPT_LINES {
                screen.lines.pop_front();
            }
        }
        Event::Said(text) => screen.said = text,
        Event::Gone => return false,
        Event::Key(key) => return act(control, screen, key, tx),
    }
    true
}

/// What a key does; false to quit.
fn act(
    control: &crate::cli::ControlArgs,
    screen: &mut Screen,
    key: KeyEvent,
    tx: &mpsc::Sender<Event>,
) -> bool {
    let selected = screen.ps.dynos.get(screen.selected).cloned();
    let ask = |request: Result<Request, String>, doing: String| {
        let control = control.clone();
        let tx = tx.clone();
        let _ = tx.send(Event::Said(doing));
        std::thread::spawn(move || {
            let asked = request
                .map_err(Error::Refused)
                .and_then(|request| Client::open(&control).and_then(|mut c| c.message(&request)));
            let said = match asked {
                Ok(text) => text,
                Err(err) => err.to_string(),
            };
            let _ = tx.send(Event::Said(said));
        });
    };
    match (key.code, selected) {
        (KeyCode::Char('q') | KeyCode::Esc, _) => return false,
        (KeyCode::Char('c'), _) if key.modifiers.contains(KeyModifiers::CONTROL) => return false,
        (KeyCode::Up | KeyCode::Char('k'), _) => {
            screen.selected = screen.selected.saturating_sub(1);
        }
        (KeyCode::Down | KeyCode::Char('j'), _) => screen.selected += 1,
        (KeyCode::Char('/') | KeyCode::Char('f'), _) => screen.filtered = !screen.filtered,
        (KeyCode::Char('r'), Some(d)) => ask(
            Parsed::read(d.name.as_str()).map(|target| Request::Restart {
                target: Some(target),
                targets: Vec::new(),
            }),
            format!("Restarting {}...", d.name),
        ),
        (KeyCode::Char('s'), Some(d)) => ask(
            Parsed::read(d.name.as_str()).map(|target| Request::Stop {
                target: Some(target),
                targets: Vec::new(),
            }),
            format!("Stopping {}...", d.name),
        ),
        (KeyCode::Char(sign @ ('+' | '-')), Some(d)) => ask(
            Parsed::read(format!("{}{sign}1", d.kind)).map(|change| Request::Scale {
                changes: vec![change],
            }),
            format!("Scaling {}...", d.kind),
        ),
        _ => {}
    }
    true
}

fn draw(out: &mut impl Write, screen: &Screen) {
    let (cols, rows) = terminal::size().unwrap_or((80, 24));
    let (cols, rows) = (usize::from(cols), usize::from(rows));
    let mut text: Vec<(String, bool)> = Vec::new();
    let router = screen
        .ps
        .router
        .map(|p| format!("   router :{p}"))
        .unwrap_or_default();
    text.push((
        format!(
            "hkrun top{router}   q quit  ↑↓ select  r restart  s stop  +/- scale  / filter log"
        ),
        true,
    ));
    text.push((
        format!(
            "{:<12} {:<9} {:>8} {:>6} {:>8}  {}",
            "DYNO", "STATE", "PID", "CPU%", "RESTARTS", "MEMORY"
        ),
        true,
    ));
    for (i, d) in screen.ps.dynos.iter().enumerate() {
        let cpu = screen
            .cpu
            .get(&d.name)
            .map_or_else(|| "-".to_owned(), |c| format!("{c:.0}"));
        let marker = if i == screen.selected { ">" } else { " " };
        let row = format!(
            "{marker}{:<11} {:<9} {:>8} {:>6} {:>8}  {}",
            d.name,
            d.state,
            d.pid.map_or_else(|| "-".to_owned(), |p| p.to_string()),
            cpu,
            d.restarts,
            memory_bar(d)
        );
        text.push((row, i == screen.selected));
    }
    text.push((screen.said.clone(), false));
    let title = match &screen.log.of {
        Some(name) => format!("── log of {name} (/ shows every dyno's)"),
        None => "── log".to_owned(),
    };
    text.push((title, true));
    let room = rows.saturating_sub(text.len());
    for (dyno, line) in screen
        .lines
        .iter()
        .skip(screen.lines.len().saturating_sub(room))
    {
        text.push((format!("{dyno:<10} | {line}"), false));
    }
    let _ = queue!(out, cursor::MoveTo(0, 0));
    for (i, (line, bold)) in text.iter().take(rows).enumerate() {
        let clipped: String = line.chars().take(cols).collect();
        let _ = queue!(
            out,
            cursor::MoveTo(0, u16::try_from(i).unwrap_or(u16::MAX)),
            terminal::Clear(ClearType::CurrentLine),
        );
        if *bold {
            let _ = queue!(out, SetAttribute(Attribute::Bold));
        }
        let _ = queue!(out, Print(clipped), SetAttribute(Attribute::Reset));
    }
    let _ = queue!(out, terminal::Clear(ClearType::FromCursorDown));
    let _ = out.flush();
}

/// `[#####     ] 123M / 512M`: memory against the quota; past it, `!`.
fn memory_bar(d: &PsDyno) -> String {
    const WIDTH: usize = 10;
    let mb = |b: u64| format!("{}M", b.div_ceil(1 << 20));
    match (d.memory, d.quota) {
        (Some(used), Some(quota)) if quota > 0 => {
            let filled = (used.saturating_mul(WIDTH as u64) / quota).min(WIDTH as u64) as usize;
            let over = if used > quota { "!" } else { " " };
            format!(
                "[{}{}]{over}{} / {}",
                "#".repeat(filled),
                " ".repeat(WIDTH - filled),
                mb(used),
                mb(quota)
            )
        }
        (Some(used), _) => mb(used),
        _ => "-".to_owned(),
    }
}

/// `ps`, with each running dyno's CPU time when `cpu` (the supervisor's hello says it
/// takes it).
fn ps(control: &crate::cli::ControlArgs, cpu: bool) -> Result<Ps, Error> {
    let mut client = Client::open(control)?;
    client.send(&Request::Ps { cpu })?;
    match client.answer()? {
        Reply::Ps(ps) => Ok(ps),
        _ => Err(client.broken("the answer to ps has no dynos")),
    }
}

fn spawn_ps(control: crate::cli::ControlArgs, cpu: bool, tx: mpsc::Sender<Event>) {
    std::thread::spawn(move || {
        let mut last: Option<(Instant, HashMap<String, u64>)> = None;
        loop {
            std::thread::sleep(EVERY);
            let Ok(ps) = ps(&control, cpu) else {
                let _ = tx.send(Event::Gone);
                return;
            };
            let used = cpu_used(&ps);
            let now = Instant::now();
            if let Some((then, before)) = &last {
                let _ = tx.send(Event::Cpu(percents(&used, before, now - *then)));
            }
            last = Some((now, used));
            if tx.send(Event::Ps(ps)).is_err() {
                return;
            }
        }
    });
}

/// Each running dyno's CPU time so far, in milliseconds, as the supervisor said it.
fn cpu_used(ps: &Ps) -> HashMap<String, u64> {
    ps.dynos
        .iter()
        .filter_map(|d| Some((d.name.clone(), d.cpu_ms?)))
        .collect()
}

/// CPU use of each dyno over `elapsed`, in percent of one core: from its time `before`
/// to its time `now`. A dyno whose time went down (a new run, or a process that left its
/// group) has no figure this time.
fn percents(
    now: &HashMap<String, u64>,
    before: &HashMap<String, u64>,
    elapsed: Duration,
) -> HashMap<String, f64> {
    let seconds = elapsed.as_secs_f64();
    if seconds <= 0.0 {
        return HashMap::new();
    }
    now.iter()
        .filter_map(|(name, ms)| {
            let used = ms.checked_sub(*before.get(name)?)? as f64 / 1000.0;
            Some((name.clone(), 100.0 * used / seconds))
        })
        .collect()
}

/// Ends the log stream shown, and shows `of`'s instead (a dyno's lines, or every dyno's):
/// its last 100 lines, then the live ones. The supervisor picks them, from its whole
/// history and every new line, so a flood of another dyno's hides none of them.
fn follow_log(
    control: &crate::cli::ControlArgs,
    screen: &mut Screen,
    of: Option<String>,
    tx: &mpsc::Sender<Event>,
) {
    if let Some(closer) = screen.log.closer.take() {
        let _ = closer.shutdown(std::net::Shutdown::Both);
    }
    screen.lines.clear();
    let id = screen.log.id + 1;
    screen.log = Log {
        id,
        of: of.clone(),
        closer: None,
    };
    let mut client = match Client::open(control) {
        Ok(client) => client,
        Err(err) => {
            screen.said = err.to_string();
            return;
        }
    };
    let request = Request::Logs {
        lines: 100,
        tail: true,
        ps: of,
        source: None,
    };
    if let Err(err) = client.send(&request) {
        screen.said = err.to_string();
        return;
    }
    screen.log.closer = client.closer().ok();
    let tx = tx.clone();
    std::thread::spawn(move || {
        while let Ok(Some(reply)) = client.next() {
            let event = match reply {
                Reply::Line(line) => Event::Line {
                    stream: id,
                    dyno: line.dyno,
                    text: line.line,
                },
                Reply::Error { error, .. } => Event::Said(error),
                _ => continue,
            };
            if tx.send(event).is_err() {
                return;
            }
        }
    });
}

fn spawn_keys(tx: mpsc::Sender<Event>) {
    std::thread::spawn(move || {
        while let Ok(event) = event::read() {
            if let TermEvent::Key(key) = event {
                if tx.send(Event::Key(key)).is_err() {
                    return;
                }
            }
        }
    });
}

/// The terminal in raw mode on the alternate screen, given back when dropped.
struct RawScreen;

impl RawScreen {
    fn enter() -> io::Result<Self> {
        terminal::enable_raw_mode()?;
        // From here on, dropping it gives the terminal back, whatever fails next.
        let screen = Self;
        execute!(io::stdout(), terminal::EnterAlternateScreen, cursor::Hide)?;
        // A panic's message is shown once the terminal is back, not lost with the screen.
        let shown = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            shown(info);
        }));
        Ok(screen)
    }
}

impl Drop for RawScreen {
    fn drop(&mut self) {
        restore();
    }
}

fn restore() {
    let _ = execute!(io::stdout(), cursor::Show, terminal::LeaveAlternateScreen);
    let _ = terminal::disable_raw_mode();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_the_time_used_since_the_last_answer_per_second() {
        let map = |pairs: &[(&str, u64)]| -> HashMap<String, u64> {
            pairs.iter().map(|(n, ms)| ((*n).to_owned(), *ms)).collect()
        };
        let before = map(&[("web.1", 1000), ("worker.1", 5000), ("gone.1", 1)]);
        let now = map(&[("web.1", 1500), ("worker.1", 40), ("new.1", 300)]);
        let cpu = percents(&now, &before, Duration::from_millis(500));
        // 0.5 s of CPU in 0.5 s: one whole core. A time that went down (a new run) and a
        // dyno not seen before have no figure yet.
        assert_eq!(cpu.len(), 1);
        assert!((cpu["web.1"] - 100.0).abs() < 1e-9, "{cpu:?}");
        assert!(percents(&now, &before, Duration::ZERO).is_empty());
    }

    #[test]
    fn the_memory_bar_fills_to_the_quota_and_marks_what_is_past_it() {
        let dyno = |memory: Option<u64>| PsDyno {
            name: "web.1".into(),
            kind: "web".into(),
            state: "up".into(),
            since: String::new(),
            age_secs: 0,
            pid: Some(1),
            port: None,
            memory,
            quota: Some(512 << 20),
            last_exit: None,
            restarts: 0,
            cpu_ms: None,
        };
        assert_eq!(
            memory_bar(&dyno(Some(256 << 20))),
            "[#####     ] 256M / 512M"
        );
        assert_eq!(
            memory_bar(&dyno(Some(700 << 20))),
            "[##########]!700M / 512M"
        );
        assert_eq!(memory_bar(&dyno(None)), "-");
    }
}
