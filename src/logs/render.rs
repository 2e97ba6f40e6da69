//! What a log line looks like: pure functions, one per format, no I/O.

use std::borrow::Cow;

use super::MAX_LINE;

/// Prefix colours by process type, in Procfile order: cyan, yellow, green, magenta, red,
/// blue, then the bright variants.
const PALETTE: [u8; 12] = [36, 33, 32, 35, 31, 34, 96, 93, 92, 95, 91, 94];

/// The name a line is shown under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    /// `web.1`, or `system` for hkrun's own events about the whole app.
    pub name: String,
    /// The process type's position in the Procfile; `None` leaves the prefix plain.
    pub color: Option<usize>,
    /// `--quiet TYPE`: its output is kept for `hkrun logs`, not shown on stdout; hkrun's
    /// events about it are.
    pub quiet: bool,
}

impl Label {
    pub fn system() -> Self {
        Self {
            name: "system".to_owned(),
            color: None,
            quiet: false,
        }
    }
}

/// Who wrote a line: the app (a dyno's output) or hkrun (Heroku's `heroku[...]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    App,
    Hkrun,
}

/// The line formats of `--log-format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// foreman's `HH:MM:SS web.1  | text`.
    #[default]
    Default,
    /// `heroku logs`: `2026-11-26T17:41:03.123456+00:00 app[web.1]: text`.
    Heroku,
    /// One JSON object per line: `{"ts","source","dyno","line"}`.
    Json,
}

/// The time, taken once per batch of lines, in the forms the formats need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clock {
    /// Local `HH:MM:SS`.
    pub hms: String,
    /// UTC RFC 3339 with microseconds.
    pub rfc3339: String,
}

impl Clock {
    pub fn now() -> Self {
        Self {
            hms: chrono::Local::now().format("%H:%M:%S").to_string(),
            rfc3339: chrono::Utc::now()
                .format("%Y-%m-%dT%H:%M:%S%.6f+00:00")
                .to_string(),
        }
    }
}

/// How lines are rendered, fixed for a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Style {
    pub format: LogFormat,
    pub color: bool,
    pub timestamps: bool,
    /// The width names are padded to in the default format.
    pub width: usize,
    /// `--color never`: the dynos' own ANSI sequences (colours, cursor moves) are removed.
    pub strip_ansi: bool,
}

/// `text` without ANSI escape sequences, and with other control characters as spaces:
/// what is safe to draw on a screen of hkrun's own (`hkrun top`).
pub(crate) fn plain(text: &str) -> String {
    let stripped = ANSI.replace_all(text.as_bytes(), &b""[..]);
    String::from_utf8_lossy(&stripped)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// An ANSI escape sequence: CSI (`ESC [ ... m`), OSC (`ESC ] ... BEL`, to the line's end
/// when unterminated), one with intermediate bytes (`ESC ( B`), a two-byte one (`ESC M`,
/// `ESC 7`, `ESC =`), or a lone ESC.
static ANSI: std::sync::LazyLock<regex::bytes::Regex> = std::sync::LazyLock::new(|| {
    regex::bytes::Regex::new(
        r"(?-u)\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[ -/]+[0-~]|[0-~])?",
    )
    .expect("a valid pattern")
});

/// How far right a cursor move may take the cursor past the line's text: a terminal stops
/// it at its width, and the log has none.
const MOVE_BOUND: usize = 1024;

/// One line (no newline) of a dyno on a terminal, as that terminal shows it: a `\r` (or a
/// backspace, or a move to a column) brings the cursor back and what follows overwrites
/// what was there (`abcdef\rXY` shows `XYcdef`); an erase-line clears; colours (SGR)
/// stay, each cell keeping the colour it was written in; moves to other lines, to a
/// screen position, and the terminal's modes, which a log cannot follow, are left out.
/// A line with none of these is returned as it is, byte for byte.
pub(crate) fn as_terminal_shows(line: &[u8]) -> Cow<'_, [u8]> {
    if memchr::memchr3(b'\r', 0x08, 0x1b, line).is_none() {
        return Cow::Borrowed(line);
    }
    let mut tokens = Tokens { line, at: 0 };
    if !std::iter::from_fn(|| tokens.next()).any(|t| t.moves()) {
        return Cow::Borrowed(line);
    }
    let screen = Screen::drawn(line);
    // Colours changing at every cell, each a long run of SGR, would make the line many
    // times longer than the dyno wrote it: then its text alone.
    let room = 2 * line.len() + MOVE_BOUND;
    Cow::Owned(
        screen
            .shown(Some(room))
            .unwrap_or_else(|| screen.shown(None).unwrap_or_default()),
    )
}

/// What a line on a terminal holds: its cells, the cursor, the colour in use.
#[derive(Default)]
struct Screen<'a> {
    cells: Vec<Cell<'a>>,
    /// Zero-width sequences (a title, a hyperlink, a character set, a bell) not yet
    /// followed by a character: they go with the next one written.
    pending: Vec<&'a [u8]>,
    /// Each colour in use at some point: an SGR sequence on top of the colour it changed
    /// (0, the terminal's own, is none).
    pens: Vec<(usize, &'a [u8])>,
    pen: usize,
    col: usize,
}

#[derive(Clone, Default)]
struct Cell<'a> {
    /// A character (its bytes, or one byte that is no UTF-8), or nothing once erased.
    text: &'a [u8],
    /// Zero-width sequences written just before it.
    before: Vec<&'a [u8]>,
    /// Its colour, in `Screen::pens`.
    pen: usize,
}

impl<'a> Screen<'a> {
    fn drawn(line: &'a [u8]) -> Self {
        let mut screen = Self {
            pens: vec![(0, &[][..])],
            ..Self::default()
        };
        let mut tokens = Tokens { line, at: 0 };
        while let Some(token) = tokens.next() {
            screen.draw(token);
        }
        screen
    }

    fn draw(&mut self, token: Token<'a>) {
        let bound = self.cells.len().max(MOVE_BOUND);
        match token {
            Token::Text(text) => {
                if self.cells.len() <= self.col {
                    self.cells.resize(self.col + 1, Cell::default());
                }
                // What took no room before the old character stays: it reached the terminal.
                let cell = &mut self.cells[self.col];
                cell.before.append(&mut self.pending);
                cell.text = text;
                cell.pen = self.pen;
                self.col += 1;
            }
            Token::ZeroWidth(bytes) => self.pending.push(bytes),
            Token::Return => self.col = 0,
            Token::Back(n) => self.col = self.col.saturating_sub(n),
            Token::Forward(n) => self.col = self.col.saturating_add(n).min(bound),
            Token::Column(n) => self.col = n.min(bound),
            Token::EraseChars(n) => self.erase(self.col, self.col.saturating_add(n)),
            Token::EraseLine(0) => self.erase(self.col, usize::MAX),
            Token::EraseLine(1) => self.erase(0, self.col.saturating_add(1)),
            Token::EraseLine(_) => self.erase(0, usize::MAX),
            Token::Colour(sgr) => {
                let params = &sgr[2..sgr.len() - 1];
                // `ESC[0;32m` starts from the terminal's colour; `ESC[0m`, `ESC[m` are it.
                let reset = params
                    .split(|&b| b == b';')
                    .next()
                    .is_some_and(|first| first.iter().all(|&b| b == b'0'));
                self.pen = match (reset, params.iter().all(|&b| b == b'0')) {
                    (_, true) => 0,
                    (reset, false) => {
                        let under = if reset { 0 } else { self.pen };
                        self.pens.push((under, sgr));
                        self.pens.len() - 1
                    }
                };
            }
            Token::Dropped => {}
        }
    }

    /// Cells `from..to` (as far as there are any) blank.
    fn erase(&mut self, from: usize, to: usize) {
        let to = to.min(self.cells.len());
        for cell in self.cells.get_mut(from.min(to)..to).unwrap_or_default() {
            cell.text = b"";
            cell.pen = 0;
        }
    }

    /// The cells as bytes, up to the last one written (erased ones before it are spaces):
    /// with their colours in at most `room` bytes (`None` past it), or without colours.
    fn shown(&self, room: Option<usize>) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let mut worn = 0;
        let mut path = Vec::new();
        // Changes to `pen`'s colour; false when that leaves no room.
        let mut wear = |out: &mut Vec<u8>, pen: usize| -> bool {
            let Some(room) = room.filter(|_| pen != worn) else {
                return true;
            };
            if worn != 0 {
                out.extend_from_slice(b"\x1b[0m");
            }
            path.clear();
            let (mut under, mut len) = (pen, out.len());
            while under != 0 && len <= room {
                let (next, sgr) = self.pens[under];
                path.push(sgr);
                len += sgr.len();
                under = next;
            }
            for sgr in path.iter().rev() {
                out.extend_from_slice(sgr);
            }
            worn = pen;
            len <= room
        };
        let last = self
            .cells
            .iter()
            .rposition(|c| !c.text.is_empty() || !c.before.is_empty());
        for cell in &self.cells[..last.map_or(0, |l| l + 1)] {
            if !wear(&mut out, cell.pen) {
                return None;
            }
            for bytes in &cell.before {
                out.extend_from_slice(bytes);
            }
            match cell.text {
                b"" => out.push(b' '),
                text => out.extend_from_slice(text),
            }
        }
        // The colour in use at the end goes on to the next line, as on the terminal.
        if !wear(&mut out, self.pen) {
            return None;
        }
        for bytes in &self.pending {
            out.extend_from_slice(bytes);
        }
        Some(out)
    }
}

/// One piece of a terminal's line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token<'a> {
    /// A character, or a byte that is no UTF-8: one cell.
    Text(&'a [u8]),
    /// Shown as it is, taking no cell.
    ZeroWidth(&'a [u8]),
    /// `\r`.
    Return,
    /// Backspace, or `ESC[nD`.
    Back(usize),
    /// `ESC[nC`.
    Forward(usize),
    /// `ESC[nG`: to column n (counted from 0 here).
    Column(usize),
    /// `ESC[nX`: n cells from the cursor on erased.
    EraseChars(usize),
    /// `ESC[nK`: 0 from the cursor on, 1 up to it, 2 the whole line.
    EraseLine(u8),
    /// An SGR sequence, `ESC[...m`.
    Colour(&'a [u8]),
    /// A move off the line, or a mode: nothing the log can show.
    Dropped,
}

impl Token<'_> {
    /// Whether it makes the line look other than its bytes in order.
    fn moves(self) -> bool {
        !matches!(
            self,
            Token::Text(_) | Token::ZeroWidth(_) | Token::Colour(_)
        )
    }
}

struct Tokens<'a> {
    line: &'a [u8],
    at: usize,
}

impl<'a> Tokens<'a> {
    fn next(&mut self) -> Option<Token<'a>> {
        let rest = &self.line[self.at..];
        let first = *rest.first()?;
        let (token, len) = match first {
            b'\r' => (Token::Return, 1),
            0x08 => (Token::Back(1), 1),
            0x07 => (Token::ZeroWidth(&rest[..1]), 1),
            0x1b => escape(rest),
            _ => {
                // A character has 4 bytes at most: no need to look further.
                let len = match rest[..rest.len().min(4)].utf8_chunks().next() {
                    Some(chunk) => chunk.valid().chars().next().map_or(1, char::len_utf8),
                    None => 1,
                };
                (Token::Text(&rest[..len]), len)
            }
        };
        self.at += len;
        Some(token)
    }
}

/// The escape sequence `rest` starts with (`rest[0]` is ESC), and its length.
fn escape(rest: &[u8]) -> (Token<'_>, usize) {
    match rest.get(1) {
        // CSI: parameters, intermediates, a final byte.
        Some(b'[') => {
            let params = rest[2..]
                .iter()
                .take_while(|b| (0x30..=0x3f).contains(*b))
                .count();
            let middle = rest[2 + params..]
                .iter()
                .take_while(|b| (0x20..=0x2f).contains(*b))
                .count();
            let end = 2 + params + middle;
            let Some(&last) = rest.get(end).filter(|b| (0x40..=0x7e).contains(*b)) else {
                // Unfinished: shown as it came.
                return (Token::ZeroWidth(&rest[..end]), end);
            };
            let sequence = &rest[..=end];
            let text = &rest[2..2 + params];
            let plain = middle == 0 && text.iter().all(|b| b.is_ascii_digit() || b";:".contains(b));
            let n = || {
                std::str::from_utf8(text)
                    .ok()
                    .and_then(|t| t.parse::<usize>().ok())
                    .unwrap_or(0)
            };
            let token = match last {
                b'm' if plain => Token::Colour(sequence),
                b'K' if plain => Token::EraseLine(u8::try_from(n().min(2)).unwrap_or(2)),
                b'G' | b'`' if plain => Token::Column(n().max(1) - 1),
                b'C' | b'a' if plain => Token::Forward(n().max(1)),
                b'D' if plain => Token::Back(n().max(1)),
                b'X' if plain => Token::EraseChars(n().max(1)),
                _ => Token::Dropped,
            };
            (token, end + 1)
        }
        // OSC (a title, a hyperlink): to BEL or ESC \; unfinished, to the next control
        // byte or the end of the line.
        Some(b']') => {
            let mut end = 2;
            while end < rest.len() {
                match rest[end] {
                    0x07 => {
                        end += 1;
                        break;
                    }
                    0x1b if rest.get(end + 1) == Some(&b'\\') => {
                        end += 2;
                        break;
                    }
                    0..0x20 => break,
                    _ => end += 1,
                }
            }
            (Token::ZeroWidth(&rest[..end]), end)
        }
        // With intermediates (`ESC ( B`, a character set): shown.
        Some(0x20..=0x2f) => {
            let middle = rest[1..]
                .iter()
                .take_while(|b| (0x20..=0x2f).contains(*b))
                .count();
            let end = 1 + middle;
            let end = match rest.get(end) {
                Some(0x30..=0x7e) => end + 1,
                _ => end,
            };
            (Token::ZeroWidth(&rest[..end]), end)
        }
        // Two bytes (`ESC 7`, `ESC 8`, `ESC M`, `ESC =`): the cursor saved or restored,
        // a line up, the keypad's mode.
        Some(0x30..=0x7e) => (Token::Dropped, 2),
        // A lone ESC, or one before a byte no sequence starts with.
        _ => (Token::ZeroWidth(&rest[..1]), 1),
    }
}

#[derive(serde::Serialize)]
struct JsonLine<'a> {
    ts: &'a str,
    source: &'a str,
    dyno: &'a str,
    line: Cow<'a, str>,
}

impl Style {
    /// The padding for these names: the longest, and at least `system`'s.
    pub fn width_for<'a>(names: impl IntoIterator<Item = &'a str>) -> usize {
        names
            .into_iter()
            .map(str::len)
            .chain([6])
            .max()
            .unwrap_or(6)
    }

    /// Widens the padding for a name longer than any so far (`hkrun scale worker=10`
    /// adds `worker.10`): the lines after it line up again.
    pub fn widen_for(&mut self, name: &str) {
        self.width = self.width.max(name.len());
    }

    /// Appends one line (no newline in `text`), cutting a line longer than `MAX_LINE` into
    /// pieces that are each a full line. Text formats pass the bytes through unchanged;
    /// json replaces invalid UTF-8.
    pub fn render(
        &self,
        clock: &Clock,
        origin: Origin,
        label: &Label,
        text: &[u8],
        out: &mut Vec<u8>,
    ) {
        let stripped;
        let text = match self.strip_ansi && origin == Origin::App && text.contains(&0x1b) {
            true => {
                stripped = ANSI.replace_all(text, &b""[..]);
                &stripped[..]
            }
            false => text,
        };
        let mut pieces = text.chunks(MAX_LINE);
        let first = pieces.next().unwrap_or_default();
        for piece in std::iter::once(first).chain(pieces) {
            match self.format {
                LogFormat::Default => self.foreman(clock, label, piece, out),
                LogFormat::Heroku => self.heroku(clock, origin, label, piece, out),
                LogFormat::Json => json(clock, origin, label, piece, out),
            }
            out.push(b'\n');
        }
    }

    fn color_code(&self, label: &Label) -> Option<u8> {
        label
            .color
            .filter(|_| self.color)
            .map(|i| PALETTE[i % PALETTE.len()])
    }

    fn start_color(out: &mut Vec<u8>, code: Option<u8>) {
        if let Some(code) = code {
            out.extend_from_slice(format!("\x1b[{code}m").as_bytes());
        }
    }

    fn end_color(out: &mut Vec<u8>, code: Option<u8>) {
        if code.is_some() {
            out.extend_from_slice(b"\x1b[0m");
        }
    }

    /// `HH:MM:SS web.1  | text`.
    fn foreman(&self, clock: &Clock, label: &Label, text: &[u8], out: &mut Vec<u8>) {
        let color = self.color_code(label);
        Self::start_color(out, color);
        if self.timestamps {
            out.extend_from_slice(clock.hms.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(label.name.as_bytes());
        let pad = self.width.saturating_sub(label.name.len());
        out.resize(out.len() + pad, b' ');
        out.extend_from_slice(b" |");
        Self::end_color(out, color);
        out.push(b' ');
        out.extend_from_slice(text);
    }

    /// `2026-11-26T17:41:03.123456+00:00 app[web.1]: text`.
    fn heroku(&self, clock: &Clock, origin: Origin, label: &Label, text: &[u8], out: &mut Vec<u8>) {
        let color = self.color_code(label);
        out.extend_from_slice(clock.rfc3339.as_bytes());
        out.push(b' ');
        Self::start_color(out, color);
        out.extend_from_slice(source_name(origin).as_bytes());
        out.push(b'[');
        out.extend_from_slice(label.name.as_bytes());
        out.extend_from_slice(b"]:");
        Self::end_color(out, color);
        out.push(b' ');
        out.extend_from_slice(text);
    }
}

fn source_name(origin: Origin) -> &'static str {
    match origin {
        Origin::App => "app",
        Origin::Hkrun => "heroku",
    }
}

fn json(clock: &Clock, origin: Origin, label: &Label, text: &[u8], out: &mut Vec<u8>) {
    let line = JsonLine {
        ts: &clock.rfc3339,
        source: source_name(origin),
        dyno: &label.name,
        line: String::from_utf8_lossy(text),
    };
    // Serializing plain strings into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &line);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock() -> Clock {
        Clock {
            hms: "17:41:03".into(),
            rfc3339: "2026-11-26T17:41:03.123456+00:00".into(),
        }
    }

    fn style(format: LogFormat, color: bool, timestamps: bool, width: usize) -> Style {
        Style {
            strip_ansi: false,
            format,
            color,
            timestamps,
            width,
        }
    }

    fn render(style: &Style, origin: Origin, label: &Label, text: &[u8]) -> String {
        let mut out = Vec::new();
        style.render(&clock(), origin, label, text, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    fn web() -> Label {
        Label {
            quiet: false,
            name: "web.1".into(),
            color: Some(0),
        }
    }

    #[test]
    fn color_never_removes_the_apps_escape_sequences_and_nothing_else() {
        let style = Style {
            strip_ansi: true,
            ..style(LogFormat::Default, false, false, 5)
        };
        let text = b"\x1b[1;31mred\x1b[0m \x1b]0;title\x07x \x1b7y\x1b8 \x1b(Bz \x1b]2;open \x1b";
        assert_eq!(
            render(&style, Origin::App, &web(), text),
            "web.1 | red x y z \n"
        );
        // hkrun's own lines are hkrun's to colour; none has escapes anyway.
        assert_eq!(
            render(&style, Origin::App, &web(), b"50% [==>  ]"),
            "web.1 | 50% [==>  ]\n"
        );
    }

    #[test]
    fn foreman_format() {
        let plain = style(LogFormat::Default, false, true, 8);
        assert_eq!(
            render(&plain, Origin::App, &web(), b"hello"),
            "17:41:03 web.1    | hello\n"
        );
        let bare = style(LogFormat::Default, false, false, 8);
        assert_eq!(
            render(&bare, Origin::Hkrun, &Label::system(), b"x"),
            "system   | x\n"
        );
        assert_eq!(render(&bare, Origin::App, &web(), b""), "web.1    | \n");
    }

    #[test]
    fn colours_the_prefix_by_type() {
        let s = style(LogFormat::Default, true, false, 6);
        assert_eq!(
            render(&s, Origin::App, &web(), b"hi"),
            "\x1b[36mweb.1  |\x1b[0m hi\n"
        );
        let worker = Label {
            quiet: false,
            name: "worker.1".into(),
            color: Some(1),
        };
        assert_eq!(
            render(&s, Origin::App, &worker, b"hi"),
            "\x1b[33mworker.1 |\x1b[0m hi\n"
        );
        assert_eq!(
            render(&s, Origin::Hkrun, &Label::system(), b"hi"),
            "system | hi\n"
        );
    }

    #[test]
    fn heroku_format() {
        let s = style(LogFormat::Heroku, false, true, 6);
        assert_eq!(
            render(&s, Origin::App, &web(), b"GET /"),
            "2026-11-26T17:41:03.123456+00:00 app[web.1]: GET /\n"
        );
        assert_eq!(
            render(
                &s,
                Origin::Hkrun,
                &web(),
                b"State changed from starting to up"
            ),
            "2026-11-26T17:41:03.123456+00:00 heroku[web.1]: State changed from starting to up\n"
        );
    }

    #[test]
    fn json_format_escapes_and_replaces_invalid_utf8() {
        let s = style(LogFormat::Json, true, true, 6);
        assert_eq!(
            render(&s, Origin::App, &web(), b"say \"hi\"\t\xff"),
            "{\"ts\":\"2026-11-26T17:41:03.123456+00:00\",\"source\":\"app\",\"dyno\":\"web.1\",\"line\":\"say \\\"hi\\\"\\t\u{fffd}\"}\n"
        );
    }

    #[test]
    fn passes_bytes_through_and_cuts_long_lines() {
        let s = style(LogFormat::Default, false, false, 6);
        let mut out = Vec::new();
        s.render(&clock(), Origin::App, &web(), b"caf\xe9", &mut out);
        assert_eq!(out, b"web.1  | caf\xe9\n");
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        let text = render(&s, Origin::App, &web(), &long);
        let lengths: Vec<usize> = text.lines().map(|l| l.len() - "web.1  | ".len()).collect();
        assert_eq!(lengths, [MAX_LINE, MAX_LINE, 10]);
    }

    fn shows(line: &[u8]) -> String {
        String::from_utf8_lossy(&as_terminal_shows(line)).into_owned()
    }

    #[test]
    fn a_carriage_return_overwrites_as_on_a_terminal() {
        assert_eq!(shows(b"a 10%\rb 20%\rc 30%"), "c 30%");
        assert_eq!(shows(b"abcdef\rXY"), "XYcdef");
        assert_eq!(shows(b"done\r"), "done");
        assert_eq!(shows(b"\rnew"), "new");
        // A backspace, and moves to a column or along the line.
        assert_eq!(shows(b"spin |\x08/\x08-"), "spin -");
        assert_eq!(shows(b"x 1/3\x1b[Gx 2/3\x1b[1Gx 3/3"), "x 3/3");
        assert_eq!(shows(b"ab\x1b[3Cc\x1b[2Dd"), "ab  dc");
        // UTF-8 characters take one cell each; bytes that are no UTF-8 too.
        assert_eq!(shows(b"\xc3\xa9t\xc3\xa9\xff\rE"), "Et\u{e9}\u{fffd}");
    }

    #[test]
    fn erasing_leaves_blanks_inside_the_line_and_nothing_at_its_end() {
        assert_eq!(shows(b"wait\x1b[2K\rdone"), "done");
        assert_eq!(shows(b"abcdef\rXY\x1b[K"), "XY");
        assert_eq!(shows(b"abcdef\x1b[4D\x1b[1K"), "   def");
        assert_eq!(shows(b"abcdef\x1b[G\x1b[2X"), "  cdef");
        assert_eq!(shows(b"abc\r\x1b[K"), "");
    }

    #[test]
    fn colours_stay_with_the_cells_written_in_them() {
        let green = b"\x1b[32mgreen\x1b[0m";
        // No move: byte for byte.
        assert!(matches!(as_terminal_shows(green), Cow::Borrowed(_)));
        assert_eq!(
            shows(b"wait\x1b[2K\rdone \x1b[32mok\x1b[0m\x1b[1A"),
            "done \x1b[32mok\x1b[0m"
        );
        // Written over in another colour: each cell keeps its own.
        assert_eq!(
            shows(b"\x1b[31mabcdef\x1b[0m\r\x1b[32mXY\x1b[0m"),
            "\x1b[32mXY\x1b[0m\x1b[31mcdef\x1b[0m"
        );
        // A colour still on at the end goes on, as it would on the terminal.
        assert_eq!(shows(b"old\r\x1b[1m\x1b[33mnew"), "\x1b[1m\x1b[33mnew");
        // A title and a bell take no cell and stay.
        assert_eq!(shows(b"\x1b]0;job\x07ab\rA"), "\x1b]0;job\x07Ab");
    }

    #[test]
    fn moves_off_the_line_and_modes_are_left_out() {
        assert_eq!(
            shows(b"\x1b[?25lone\x1b[1A\x1b[2B\x1b[5;1H\x1b7\x1b8\x1b[J\x1b[?25h"),
            "one"
        );
        // Unfinished or lone escapes are shown as they came.
        assert_eq!(shows(b"a\rb\x1b[12"), "b\x1b[12");
    }

    #[test]
    fn a_move_far_right_is_bounded_and_a_line_never_grows_much() {
        let far = shows(b"a\x1b[999999999Cb");
        assert_eq!(far.len(), 1 + MOVE_BOUND);
        // A colour change at every cell, each a long run of SGR, written over and over.
        let mut line = b"\r".to_vec();
        for _ in 0..MAX_LINE / 5 {
            line.extend_from_slice(b"\x1b[1mx");
        }
        let shown = as_terminal_shows(&line);
        assert_eq!(shown, "x".repeat(MAX_LINE / 5).as_bytes());
        let mut deep = b"\r".to_vec();
        for _ in 0..MAX_LINE / 4 {
            deep.extend_from_slice(b"\x1b[1m");
        }
        deep.push(b'x');
        assert_eq!(as_terminal_shows(&deep), &deep[1..]);
    }

    proptest::proptest! {
        #[test]
        fn rendering_a_terminal_line_never_panics(
            line in proptest::collection::vec(
                proptest::sample::select(b"ab\r\x08\x1b[]0123;?mKGCDXAH\x07\xc3\xa9\xff".to_vec()),
                0..64,
            )
        ) {
            let shown = as_terminal_shows(&line);
            proptest::prop_assert!(!shown.contains(&b'\r'));
        }
    }

    #[test]
    fn width_is_the_longest_name_and_at_least_six() {
        assert_eq!(Style::width_for(["web.1"]), 6);
        assert_eq!(Style::width_for(["web.1", "worker.10"]), 9);
    }
}
