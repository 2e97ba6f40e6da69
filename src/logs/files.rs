//! `--log-dir DIR`: each dyno's lines, and hkrun's events about it, in `DIR/web.1.log`
//! (hkrun's events about the whole app in `DIR/system.log`), as well as on stdout; each
//! file rotated by size (`web.1.log.1` is the newest before it), keeping `--log-keep`.
//!
//! A follower of the history on a thread of its own, through a queue of its own bounded
//! by bytes (`History::queue`): a slow or failing disk makes it miss lines, never slows
//! the log or supervision. Every line missed is counted and said (on stdout and in
//! `system.log`): when a file stops being written, with the count when it is written
//! again, and when the files fall behind the log. A file only ever holds whole lines.
//!
//! Whoever can write the folder could make hkrun write elsewhere: a folder other users
//! can write to is refused at start (`check_folder`), and a file is opened without
//! following a link, and used only if it is a regular file of hkrun's user with one name.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::history::{Chunk, History, Queued};
use super::render::{Clock, Label, LogFormat, Origin, Style};
use super::writer::LogSender;

/// Where and how much.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFiles {
    pub dir: PathBuf,
    /// A file is rotated before a write would take it past this many bytes.
    pub max_size: u64,
    /// Rotated files kept beside the current one.
    pub keep: usize,
}

/// Bytes of the log the files may be behind before they miss lines: four times what
/// stdout may be behind (`logs::writer`'s budget), so a burst stdout keeps up with lands
/// whole in the files even when their thread is not scheduled for a while.
const BEHIND_AT_MOST: usize = 32 * 1024 * 1024;

/// A file's rendered lines are written once they hold this much (and at the end of each
/// batch the queue gives).
const WRITE_AT: usize = 256 * 1024;

/// Files kept open at once: one-off dynos (`scheduler.N`) get a new name each run, and
/// every open file is a descriptor of hkrun's.
const OPEN_AT_MOST: usize = 64;

/// Why a log folder is refused: another user could plant links or files in it.
#[derive(Debug, thiserror::Error)]
pub enum UnsafeFolder {
    #[error(
        "other users can write to it (mode {mode:04o}); take their write permission away (chmod go-w), or give another folder"
    )]
    Writable { mode: u32 },
    #[error("it belongs to another user (uid {uid}); give a folder of hkrun's user")]
    Owner { uid: u32 },
}

/// Whether `dir` is safe to write the log files in: owned by hkrun's user (or root), and
/// writable by no group or other user, unless its sticky bit is set (as `/tmp`'s is:
/// others may add files, but not remove or rename hkrun's, and the files hkrun opens are
/// checked one by one). A folder that does not exist yet is created by hkrun (mode 0750);
/// one that cannot be looked at is said when the first line is written.
pub(crate) fn check_folder(dir: &Path) -> Result<(), UnsafeFolder> {
    let Ok(meta) = fs::metadata(dir) else {
        return Ok(());
    };
    if !meta.is_dir() {
        return Ok(());
    }
    let uid = meta.uid();
    if uid != nix::unistd::geteuid().as_raw() && uid != 0 {
        return Err(UnsafeFolder::Owner { uid });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Err(UnsafeFolder::Writable { mode });
    }
    Ok(())
}

/// Why one file is not written.
#[derive(Debug, thiserror::Error)]
enum Unwritable {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("it is a symbolic link, which hkrun does not follow")]
    Link,
    #[error("it is not a regular file")]
    NotFile,
    #[error("it belongs to another user (uid {0})")]
    Owner(u32),
    #[error("it has {0} names (hard links), so it may be any file")]
    Links(u64),
    #[error("the folder is refused: {0}")]
    Folder(#[from] UnsafeFolder),
}

/// Starts writing the log files; the thread ends once the history has ended and every
/// line recorded before is written. `log` is where hkrun says what the files miss.
pub(crate) fn spawn(
    files: LogFiles,
    history: &History,
    log: LogSender,
) -> io::Result<std::thread::JoinHandle<()>> {
    let Some(queue) = history.queue(BEHIND_AT_MOST) else {
        return Err(io::Error::other("the log has ended"));
    };
    std::thread::Builder::new()
        .name("hkrun-log-files".into())
        .spawn(move || {
            let mut sink = Sink::new(files, log);
            let mut batch = VecDeque::new();
            while queue.take(&mut batch) {
                for item in batch.drain(..) {
                    match item {
                        Queued::Chunk(chunk) => sink.chunk(&chunk),
                        Queued::Missed(lines) => sink.behind(lines),
                    }
                }
                sink.flush_all();
                // A burst's queue need not stay allocated.
                batch.shrink_to(4096);
            }
            sink.end();
        })
}

struct Sink {
    files: LogFiles,
    style: Style,
    log: LogSender,
    system: Arc<Label>,
    open: HashMap<String, Open>,
    /// Names whose file cannot be written now: the lines missed since it stopped, and why.
    stopped: HashMap<String, (u64, String)>,
    /// The first stop is a warning on stderr too.
    warned: bool,
    /// One rendered line.
    line: Vec<u8>,
}

struct Open {
    file: File,
    /// Bytes of whole lines in the file.
    size: u64,
    /// Rendered lines not yet written, and where each ends in it (a long line is
    /// rendered in pieces, so newlines do not count lines).
    pending: Vec<u8>,
    ends: Vec<usize>,
    /// When it was last written: the file unwritten longest is closed first.
    used: Instant,
}

/// A file failed: why, and how many lines that were to go in it did not.
type Failed = (Unwritable, u64);

impl Sink {
    fn new(files: LogFiles, log: LogSender) -> Self {
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
            log,
            system: Arc::new(Label::system()),
            open: HashMap::new(),
            stopped: HashMap::new(),
            warned: false,
            line: Vec::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.files.dir.join(format!("{name}.log"))
    }

    /// One of hkrun's lines about the files, on stdout and (through the history) in
    /// `system.log`.
    fn say(&self, text: String) {
        self.log.event(&self.system, text);
    }

    fn chunk(&mut self, chunk: &Chunk) {
        let name = chunk.label.name.as_str();
        if let Err((err, lost)) = self.append(name, chunk) {
            self.stop(name, &err, lost);
        }
    }

    /// The queue was full: the files fell behind the log.
    fn behind(&mut self, lines: u64) {
        self.say(format!(
            "the log files in {} missed {lines} lines: they fell behind the log (a slow disk?)",
            self.files.dir.display()
        ));
    }

    /// Renders the chunk's lines into `name`'s pending lines, writing them out and
    /// rotating the file between two lines whenever the next would take it past the size
    /// limit.
    fn append(&mut self, name: &str, chunk: &Chunk) -> Result<(), Failed> {
        let total = chunk.line_count() as u64;
        if !self.open.contains_key(name) {
            self.open_file(name).map_err(|err| (err, total))?;
        }
        let mut line = std::mem::take(&mut self.line);
        let mut done = 0;
        let result = (|| {
            for text in chunk.lines() {
                line.clear();
                self.style
                    .render(&chunk.clock, chunk.origin, &chunk.label, text, &mut line);
                let file = self.open.get_mut(name).expect("opened above");
                let at = file.size + file.pending.len() as u64;
                if at > 0 && at + line.len() as u64 > self.files.max_size {
                    self.flush(name)
                        .map_err(|(e, lost)| (e, lost + total - done))?;
                    let path = self.path(name);
                    rotate(&path, self.files.keep).map_err(|e| (e.into(), total - done))?;
                    let (file, size) =
                        open(&self.files.dir, &path).map_err(|e| (e, total - done))?;
                    let open = self.open.get_mut(name).expect("opened above");
                    open.file = file;
                    open.size = size;
                }
                let open = self.open.get_mut(name).expect("opened above");
                open.pending.extend_from_slice(&line);
                open.ends.push(open.pending.len());
                done += 1;
                if open.pending.len() >= WRITE_AT {
                    self.flush(name)
                        .map_err(|(e, lost)| (e, lost + total - done))?;
                }
            }
            Ok(())
        })();
        self.line = line;
        if let Some(open) = self.open.get_mut(name) {
            open.used = Instant::now();
        }
        result
    }

    fn open_file(&mut self, name: &str) -> Result<(), Unwritable> {
        if self.open.len() >= OPEN_AT_MOST {
            let oldest = self
                .open
                .iter()
                .min_by_key(|(_, o)| o.used)
                .map(|(n, _)| n.clone());
            if let Some(oldest) = oldest {
                if let Err((err, lost)) = self.flush(&oldest) {
                    self.stop(&oldest, &err, lost);
                }
                self.open.remove(&oldest);
            }
        }
        let (file, size) = open(&self.files.dir, &self.path(name))?;
        self.open.insert(
            name.to_owned(),
            Open {
                file,
                size,
                pending: Vec::new(),
                ends: Vec::new(),
                used: Instant::now(),
            },
        );
        Ok(())
    }

    /// Writes `name`'s pending lines. A write that fails after writing part of them is
    /// cut back to the last whole line it wrote, so no line is ever glued to a later one;
    /// the lines not written are what it gives as missed.
    fn flush(&mut self, name: &str) -> Result<(), Failed> {
        let Some(open) = self.open.get_mut(name) else {
            return Ok(());
        };
        if open.pending.is_empty() {
            return Ok(());
        }
        let mut written = 0;
        let failed = loop {
            match open.file.write(&open.pending[written..]) {
                Ok(0) => break Some(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => written += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => break Some(err),
            }
            if written == open.pending.len() {
                break None;
            }
        };
        // Lines written whole, and the bytes they take.
        let whole = open.ends.partition_point(|&end| end <= written);
        let kept = whole.checked_sub(1).map_or(0, |last| open.ends[last]);
        let lost = (open.ends.len() - whole) as u64;
        open.size += kept as u64;
        open.pending.clear();
        open.ends.clear();
        if let Some(err) = failed {
            // If this fails too, `open` cuts the file back when it is opened again.
            let _ = open.file.set_len(open.size);
            return Err((err.into(), lost));
        }
        if let Some((missed, _)) = self.stopped.remove(name) {
            self.say(format!(
                "{} is written again: {missed} lines were missed while it could not be",
                self.path(name).display()
            ));
        }
        Ok(())
    }

    fn flush_all(&mut self) {
        let names: Vec<String> = self
            .open
            .iter()
            .filter(|(_, o)| !o.pending.is_empty())
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            if let Err((err, lost)) = self.flush(&name) {
                self.stop(&name, &err, lost);
            }
        }
    }

    /// `name`'s file cannot be written: its lines are counted from now on, and each
    /// later line tries it again.
    fn stop(&mut self, name: &str, err: &Unwritable, lost: u64) {
        self.open.remove(name);
        if let Some((missed, _)) = self.stopped.get_mut(name) {
            *missed += lost;
            return;
        }
        self.stopped
            .insert(name.to_owned(), (lost, err.to_string()));
        if !self.warned {
            self.warned = true;
            tracing::warn!(
                "cannot write the log files in {} ({name}.log: {err}); the app runs on, and the lines missed are counted",
                self.files.dir.display()
            );
        }
        self.say(format!(
            "{} stopped being written: {err}; its lines are counted until it can be written again",
            self.path(name).display()
        ));
    }

    /// The log has ended: what is still missed is said in `system.log`, if it can be
    /// written (stdout has had its last line).
    fn end(&mut self) {
        let mut stopped: Vec<_> = self.stopped.drain().collect();
        stopped.sort();
        for (name, (missed, why)) in stopped {
            let text = format!(
                "{missed} lines missed in {}, which could not be written until hkrun stopped: {why}\n",
                self.path(&name).display()
            );
            let chunk = Chunk::new(
                Arc::new(Clock::now()),
                Origin::Hkrun,
                Arc::clone(&self.system),
                Arc::new(text.into_bytes()),
                1,
            );
            let _ = self.append("system", &chunk);
        }
        for name in self.open.keys().cloned().collect::<Vec<_>>() {
            let _ = self.flush(&name);
        }
    }
}

/// Opens `path` in `dir` for appending, refusing a link or a file that is not simply
/// hkrun's; gives the file and the bytes of whole lines in it.
fn open(dir: &Path, path: &Path) -> Result<(File, u64), Unwritable> {
    // Checked again at each open: the folder may have changed since the start.
    check_folder(dir)?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)?;
    let file = OpenOptions::new()
        // Read too: a part of a line at its end is looked for (`whole_lines`).
        .read(true)
        .create(true)
        .append(true)
        .mode(0o640)
        // No link is followed; a FIFO planted there fails at once instead of blocking
        // (a regular file ignores O_NONBLOCK).
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|err| match err.raw_os_error() {
            Some(nix::libc::ELOOP) => Unwritable::Link,
            _ => Unwritable::Io(err),
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(Unwritable::NotFile);
    }
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(Unwritable::Owner(meta.uid()));
    }
    if meta.nlink() != 1 {
        return Err(Unwritable::Links(meta.nlink()));
    }
    let size = whole_lines(&file, meta.len())?;
    Ok((file, size))
}

/// Cuts a file that ends in part of a line (a write that failed before hkrun could cut it
/// back, a crash) back to its last whole line; gives its length then.
fn whole_lines(file: &File, len: u64) -> io::Result<u64> {
    let mut end = len;
    let mut block = vec![0; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let part = &mut block[..(end - start) as usize];
        file.read_exact_at(part, start)?;
        if let Some(at) = memchr::memrchr(b'\n', part) {
            end = start + at as u64 + 1;
            break;
        }
        end = start;
    }
    if end != len {
        file.set_len(end)?;
    }
    Ok(end)
}

/// `web.1.log` becomes `web.1.log.1`, `.1` becomes `.2` …; the one past `keep` is gone.
/// Renames and removals act on links themselves, never on what they point to.
fn rotate(path: &Path, keep: usize) -> io::Result<()> {
    let numbered = |n: usize| {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    };
    if keep == 0 {
        return fs::remove_file(path);
    }
    // Only the rotated files there are move, `.1` up to the first missing one: a large
    // `--log-keep` costs nothing until that many files exist.
    let mut there = 0;
    while there < keep && fs::symlink_metadata(numbered(there + 1)).is_ok() {
        there += 1;
    }
    // The one at `keep` is replaced by the one before it.
    for n in (1..=there.min(keep - 1)).rev() {
        fs::rename(numbered(n), numbered(n + 1))?;
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

    #[test]
    fn rotation_with_a_huge_keep_moves_only_the_files_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.1.log");
        let started = Instant::now();
        for generation in 0..3 {
            fs::write(&path, format!("{generation}\n")).unwrap();
            rotate(&path, usize::MAX).unwrap();
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let read = |n| fs::read_to_string(dir.path().join(format!("web.1.log.{n}"))).unwrap();
        assert_eq!([read(1), read(2), read(3)], ["2\n", "1\n", "0\n"]);
    }

    #[test]
    fn a_part_of_a_line_at_the_end_is_cut_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.1.log");
        let long = "y".repeat(100_000);
        for (text, kept) in [
            ("one\ntwo\nthr", "one\ntwo\n"),
            ("one\n", "one\n"),
            ("no newline", ""),
            ("", ""),
        ]
        .iter()
        .map(|(t, k)| (t.to_string(), k.to_string()))
        .chain([(format!("a\n{long}"), "a\n".to_string())])
        {
            fs::write(&path, &text).unwrap();
            let (_, size) = open(dir.path(), &path).unwrap();
            assert_eq!(fs::read_to_string(&path).unwrap(), kept);
            assert_eq!(size, kept.len() as u64);
        }
    }

    #[test]
    fn a_link_or_a_second_name_is_not_opened() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "mine\n").unwrap();
        let link = dir.path().join("web.1.log");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(matches!(open(dir.path(), &link), Err(Unwritable::Link)));
        let hard = dir.path().join("web.2.log");
        fs::hard_link(&victim, &hard).unwrap();
        assert!(matches!(open(dir.path(), &hard), Err(Unwritable::Links(2))));
        assert_eq!(fs::read_to_string(&victim).unwrap(), "mine\n");
    }

    #[test]
    fn a_folder_others_can_write_to_is_refused_unless_sticky() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let set = |mode| fs::set_permissions(dir.path(), fs::Permissions::from_mode(mode)).unwrap();
        set(0o750);
        assert!(check_folder(dir.path()).is_ok());
        set(0o777);
        assert!(matches!(
            check_folder(dir.path()),
            Err(UnsafeFolder::Writable { mode: 0o777 })
        ));
        set(0o770);
        assert!(check_folder(dir.path()).is_err());
        set(0o1777);
        assert!(check_folder(dir.path()).is_ok());
        assert!(check_folder(&dir.path().join("not-yet")).is_ok());
    }
}
