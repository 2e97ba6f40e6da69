//! `--drain`: every line reaches a real syslog receiver (Debian's rsyslog, an imtcp
//! listener on 127.0.0.1, installed by `.ci/run`) in order and intact; a receiver that is
//! down for 10 s slows neither the app's output nor grows hkrun past a bound, and the
//! lines dropped meanwhile are counted in the log.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::harness::{
    App, Hk, PATIENCE, free_base_port, free_port, hkrun, own_memory_kib, unique_tag,
};

/// rsyslogd in the foreground, writing `PROCID MSG` lines to `out`; killed when dropped.
struct Receiver {
    child: Child,
    out: PathBuf,
}

impl Receiver {
    /// `None`, saying so, where rsyslogd is not installed (a failure under `CI`).
    fn start(dir: &Path, port: u16) -> Option<Self> {
        let out = dir.join("received.log");
        let work = dir.join("rsyslog");
        std::fs::create_dir_all(&work).expect("rsyslog's folder");
        let conf = dir.join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                "global(workDirectory=\"{work}\")\n\
                 module(load=\"imtcp\")\n\
                 input(type=\"imtcp\" port=\"{port}\" address=\"127.0.0.1\")\n\
                 template(name=\"raw\" type=\"string\" string=\"%procid% %msg%\\n\")\n\
                 *.* action(type=\"omfile\" file=\"{out}\" template=\"raw\")\n",
                work = work.display(),
                out = out.display()
            ),
        )
        .expect("write rsyslog.conf");
        let child = match Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(dir.join(format!("rsyslog-{port}.pid")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(_) if std::env::var_os("CI").is_some() => {
                panic!("rsyslogd is not installed (.ci/run installs it)")
            }
            Err(_) => {
                eprintln!("skipped: rsyslogd is not installed (apt-get install rsyslog)");
                return None;
            }
        };
        // Listening once a connection is taken.
        let deadline = Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "rsyslogd never listened on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Self { child, out })
    }

    fn received(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// rsyslog on a free port, and `hkrun start` of `app` draining to it: the receiver, its
/// port, the drain's URL, hkrun's tag and hkrun; `None` where rsyslogd is missing.
fn start_with_a_drain(app: &App) -> Option<(Receiver, u16, String, String, Hk)> {
    let port = free_port();
    let receiver = Receiver::start(app.path(), port)?;
    let drain = format!("syslog+tcp://127.0.0.1:{port}");
    let tag = unique_tag();
    let hk = Hk::spawn(hkrun(
        app.path(),
        &[
            "start",
            "--no-timestamp",
            "--drain",
            &drain,
            "-p",
            &free_base_port().to_string(),
        ],
        &tag,
    ));
    Some((receiver, port, drain, tag, hk))
}

#[test]
fn a_hundred_thousand_lines_reach_rsyslog_in_order_and_intact() {
    let app = App::new(
        "flood: awk 'BEGIN { for (i = 1; i <= 100000; i++) { printf \"line %08d xxxxxxxxxxxxxxxxxxxxxxxx\\n\", i; if (i % 2000 == 0) { fflush(); system(\"sleep 0.02\") } } }'; echo flood done; exec sleep 1000\n",
    );
    let Some((receiver, _, _, _, mut hk)) = start_with_a_drain(&app) else {
        return;
    };
    hk.wait_for("flood.1 | flood done");
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let text = receiver.received();
        if text.contains("flood.1 flood done") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "not all arrived: {} bytes",
            text.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let numbers: Vec<u32> = text
        .lines()
        .filter_map(|l| l.strip_prefix("flood.1 line "))
        .map(|rest| {
            let (n, xs) = rest.split_once(' ').expect("intact");
            assert_eq!(xs, "xxxxxxxxxxxxxxxxxxxxxxxx", "not intact: {rest:?}");
            n.parse().expect("a number")
        })
        .collect();
    assert_eq!(numbers.len(), 100_000);
    assert!(
        numbers.iter().enumerate().all(|(i, &n)| n == i as u32 + 1),
        "out of order"
    );
    // hkrun's own lines go too, under `heroku`'s name as Heroku's drains send them.
    assert!(
        text.contains("flood.1 Starting process with command"),
        "{}",
        &text[..200]
    );
    hk.signal(Signal::SIGTERM);
    assert!(hk.wait_exit().success());
}

#[test]
fn a_drain_down_for_ten_seconds_slows_nothing_and_its_drops_are_counted() {
    // 10,000 lines a second: more than the drain's queue holds in 10 s.
    let app = App::new("chatty: exec python3 -u chatty.py\n");
    app.write(
        "chatty.py",
        "import time\ni = 0\nwhile True:\n    for _ in range(100):\n        i += 1\n        print('line %d' % i)\n    time.sleep(0.01)\n",
    );
    let Some((receiver, port, drain, tag, mut hk)) = start_with_a_drain(&app) else {
        return;
    };
    hk.wait_for("chatty.1 | line 1000");
    // Lines shown per second on stdout, over `span`.
    let rate = |hk: &mut Hk, span: Duration| {
        let end = Instant::now() + span;
        let mut count = 0u32;
        while hk.next_line(end).is_some() {
            count += 1;
        }
        f64::from(count) / span.as_secs_f64()
    };
    let before = rate(&mut hk, Duration::from_secs(2));
    drop(receiver);
    let during = rate(&mut hk, Duration::from_secs(10));
    let memory_kib = own_memory_kib(hk.child.id());
    let back = Receiver::start(app.path(), port).expect("rsyslogd again");
    let said = hk.wait_for("lines dropped: the drain");
    eprintln!(
        "stdout: {before:.0} lines/s before, {during:.0} while the drain was down; \
         hkrun {memory_kib} KiB anonymous memory; {said}"
    );
    assert!(
        during > before * 0.5,
        "{during:.0} lines/s against {before:.0}"
    );
    assert!(memory_kib < 64 * 1024, "{memory_kib} KiB");
    assert!(
        hk.seen.iter().any(|l| {
            l.contains(&format!("drain {drain} is unreachable"))
                || l.contains(&format!("drain {drain} failed"))
        }),
        "{:?}",
        &hk.seen[hk.seen.len().saturating_sub(20)..]
    );
    // The drain has lines again, newer than the ones dropped.
    let deadline = Instant::now() + PATIENCE;
    while !back.received().contains("chatty.1 line") {
        assert!(Instant::now() < deadline, "nothing reached the drain again");
        std::thread::sleep(Duration::from_millis(100));
    }
    hk.signal(Signal::SIGTERM);
    assert!(hk.wait_exit().success());
    crate::harness::assert_none_left(&tag);
}
