//! `--log-dir DIR`: each dyno's lines, and hkrun's events about it, in `DIR/web.1.log`
//! (hkrun's events about the whole app in `DIR/system.log`), as well as on stdout; each
//! file rotated by size (`web.1.log.1` is the newest before it), keeping `--log-keep`.
//!
//! A follower of the history on a thread of its own: a slow or failing disk makes it
//! miss lines (and say how many, in `system.log`), never slows the log or supervision.
//! A folder it cannot write to is said once, as a warning; the app runs on.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::history::{Chunk, History};
use super::render::{Clock, Label, LogFormat, Origin, Style};

/// Where and how much.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFiles {
    pub dir: PathBuf,
    /// A file is rotated before a write would take it past this many bytes.
    pub max_size: u64,
    /// Rotated files kept beside the current one.
    pub keep: usize,
}

/// Starts writing the log files; the thread ends once the history has ended and every
/// line recorded before is written.
pub fn spawn(files: LogFiles, history: &History) -> io::Result<std::thread::JoinHandle<()>> {
    let (_, follow) = history.since(0, |_| false, true);
    let Some(mut follow) = follow else {
        return Err(io::Error::other("the log has ended"));
    };
    std::thread::Builder::new()
        .name("hkrun-log-files".into())
        .spawn(move || {
            let mut sink = Sink::new(files);
            loop {
                match follow.blocking_recv() {
                    Ok(chunk) => sink.write(&chunk),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => sink.missed += n,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        })
}

struct Sink {
    files: LogFiles,
    style: Style,
    open: HashMap<String, Open>,
    /// Chunks of lines not written, not yet said.
    missed: u64,
    warned: bool,
    buf: Vec<u8>,
}

struct Open {
    file: File,
    size: u64,
    /// When it was last written: the file unwritten longest is closed first.
    used: std::time::Instant,
}

/// Files kept open at once: one-off dynos (`scheduler.N`) get a new name each run, and
/// every open file is a descriptor of hkrun's.
const OPEN_AT_MOST: usize = 64;

impl Sink {
    fn new(files: LogFiles) -> Self {
        Self {
            files,
            // Heroku's form: the time, and who wrote each line (`app[web.1]`, `heroku[web.1]`).
            style: Style {
                format: LogFormat::Heroku,
                color: false,
                timestamps: true,
                width: 0,
                strip_ansi: false,
            },
            open: HashMap::new(),
            missed: 0,
            warned: false,
            buf: Vec::new(),
        }
    }

    fn write(&mut self, chunk: &Chunk) {
        if self.missed > 0 {
            let text = format!(
                "{} chunks of log lines missed in these files: the log folder was too slow",
                std::mem::take(&mut self.missed)
            );
            let system = Chunk::new(
                Arc::new(Clock::now()),
                Origin::Hkrun,
                Arc::new(Label::system()),
                Arc::new(format!("{text}\n").into_bytes()),
                1,
            );
            self.write(&system);
        }
        let name = chunk.label.name.clone();
        if let Err(err) = self.write_lines(&name, chunk) {
            self.open.remove(&name);
            if !self.warned {
                self.warned = true;
                tracing::warn!(
                    "cannot write the log files in {} ({err}); the app runs on, without them",
                    self.files.dir.display()
                );
            }
        }
    }

    /// Appends the chunk's lines to `name`'s file, rotating it between two lines whenever
    /// the next would take it past the size limit.
    fn write_lines(&mut self, name: &str, chunk: &Chunk) -> io::Result<()> {
        let path = self.files.dir.join(format!("{name}.log"));
        if !self.open.contains_key(name) {
            if self.open.len() >= OPEN_AT_MOST {
                let oldest = self
                    .open
                    .iter()
                    .min_by_key(|(_, o)| o.used)
                    .map(|(n, _)| n.clone());
                if let Some(oldest) = oldest {
                    self.open.remove(&oldest);
                }
            }
            fs::create_dir_all(&self.files.dir)?;
            let file = open(&path)?;
            let size = file.metadata()?.len();
            let used = std::time::Instant::now();
            self.open.insert(name.to_owned(), Open { file, size, used });
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let done = (|| {
            for line in chunk.lines() {
                let start = buf.len();
                self.style
                    .render(&chunk.clock, chunk.origin, &chunk.label, line, &mut buf);
                let open = self.open.get_mut(name).expect("opened above");
                let before = open.size + start as u64;
                if before > 0 && before + (buf.len() - start) as u64 > self.files.max_size {
                    open.file.write_all(&buf[..start])?;
                    rotate(&path, self.files.keep)?;
                    *open = Open {
                        file: self::open(&path)?,
                        size: 0,
                        used: open.used,
                    };
                    buf.drain(..start);
                }
            }
            let open = self.open.get_mut(name).expect("opened above");
            open.file.write_all(&buf)?;
            open.size += buf.len() as u64;
            open.used = std::time::Instant::now();
            Ok(())
        })();
        self.buf = buf;
        done
    }
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

/// `web.1.log` becomes `web.1.log.1`, `.1` becomes `.2` …; the one past `keep` is gone.
fn rotate(path: &Path, keep: usize) -> io::Result<()> {
    let numbered = |n: usize| {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    };
    if keep == 0 {
        return fs::remove_file(path);
    }
    for n in (1..keep).rev() {
        match fs::rename(numbered(n), numbered(n + 1)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    fs::rename(path, numbered(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_the_count_given_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.1.log");
        for generation in 0..5 {
            fs::write(&path, format!("{generation}\n")).unwrap();
            rotate(&path, 3).unwrap();
        }
        let read = |n| fs::read_to_string(dir.path().join(format!("web.1.log.{n}"))).unwrap();
        assert_eq!([read(1), read(2), read(3)], ["4\n", "3\n", "2\n"]);
        assert!(!dir.path().join("web.1.log.4").exists());
        assert!(!path.exists());
    }
}
