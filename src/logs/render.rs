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
pub fn plain(text: &str) -> String {
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

    #[test]
    fn width_is_the_longest_name_and_at_least_six() {
        assert_eq!(Style::width_for(["web.1"]), 6);
        assert_eq!(Style::width_for(["web.1", "worker.10"]), 9);
    }
}
