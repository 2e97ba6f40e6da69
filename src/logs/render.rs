//! What a log line looks like: pure functions, no I/O.

use super::MAX_LINE;

/// Prefix colours by process type, in Procfile order: cyan, yellow, green, magenta, red,
/// blue, then the bright variants.
const PALETTE: [u8; 12] = [36, 33, 32, 35, 31, 34, 96, 93, 92, 95, 91, 94];

/// The name a line is shown under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    /// `web.1`, or `system` for hkrun's own events.
    pub name: String,
    /// The process type's position in the Procfile; `None` leaves the prefix plain.
    pub color: Option<usize>,
}

impl Label {
    pub fn system() -> Self {
        Self {
            name: "system".to_owned(),
            color: None,
        }
    }
}

/// How lines are rendered, fixed for a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
    pub timestamps: bool,
    /// The width names are padded to.
    pub width: usize,
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

    /// Appends one line in foreman's format, `HH:MM:SS web.1  | text`, cutting a line
    /// longer than `MAX_LINE` into pieces that are each a full line. `clock` is the
    /// `HH:MM:SS` of now; `text` has no newline and its bytes pass through unchanged.
    pub fn render(&self, clock: &str, label: &Label, text: &[u8], out: &mut Vec<u8>) {
        let mut pieces = text.chunks(MAX_LINE);
        let first = pieces.next().unwrap_or_default();
        for piece in std::iter::once(first).chain(pieces) {
            let color = label
                .color
                .filter(|_| self.color)
                .map(|i| PALETTE[i % PALETTE.len()]);
            if let Some(code) = color {
                out.extend_from_slice(b"\x1b[");
                out.extend_from_slice(code.to_string().as_bytes());
                out.push(b'm');
            }
            if self.timestamps {
                out.extend_from_slice(clock.as_bytes());
                out.push(b' ');
            }
            out.extend_from_slice(label.name.as_bytes());
            let pad = self.width.saturating_sub(label.name.len());
            out.resize(out.len() + pad, b' ');
            out.extend_from_slice(b" |");
            if color.is_some() {
                out.extend_from_slice(b"\x1b[0m");
            }
            out.push(b' ');
            out.extend_from_slice(piece);
            out.push(b'\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(style: &Style, label: &Label, text: &[u8]) -> String {
        let mut out = Vec::new();
        style.render("17:41:03", label, text, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    fn web() -> Label {
        Label {
            name: "web.1".into(),
            color: Some(0),
        }
    }

    #[test]
    fn foreman_format() {
        let plain = Style {
            color: false,
            timestamps: true,
            width: 8,
        };
        assert_eq!(
            render(&plain, &web(), b"hello"),
            "17:41:03 web.1    | hello\n"
        );
        let bare = Style {
            timestamps: false,
            ..plain
        };
        assert_eq!(render(&bare, &Label::system(), b"x"), "system   | x\n");
        assert_eq!(render(&bare, &web(), b""), "web.1    | \n");
    }

    #[test]
    fn colours_the_prefix_by_type() {
        let style = Style {
            color: true,
            timestamps: false,
            width: 6,
        };
        assert_eq!(
            render(&style, &web(), b"hi"),
            "\x1b[36mweb.1  |\x1b[0m hi\n"
        );
        let worker = Label {
            name: "worker.1".into(),
            color: Some(1),
        };
        assert_eq!(
            render(&style, &worker, b"hi"),
            "\x1b[33mworker.1 |\x1b[0m hi\n"
        );
        assert_eq!(
            render(&style, &Label::system(), b"hi"),
            "system |\x1b[0m hi\n".replace("\x1b[0m", "")
        );
    }

    #[test]
    fn passes_bytes_through_and_cuts_long_lines() {
        let style = Style {
            color: false,
            timestamps: false,
            width: 6,
        };
        let mut out = Vec::new();
        style.render("", &web(), b"caf\xe9", &mut out);
        assert_eq!(out, b"web.1  | caf\xe9\n");
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        let text = render(&style, &web(), &long);
        let lengths: Vec<usize> = text.lines().map(|l| l.len() - "web.1  | ".len()).collect();
        assert_eq!(lengths, [MAX_LINE, MAX_LINE, 10]);
    }

    #[test]
    fn width_is_the_longest_name_and_at_least_six() {
        assert_eq!(Style::width_for(["web.1"]), 6);
        assert_eq!(Style::width_for(["web.1", "worker.10"]), 9);
    }
}
