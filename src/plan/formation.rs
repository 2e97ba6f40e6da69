//! The formation: how many dynos of each type run, and at what size (README, "Using it").
//!
//! Owns `web=2,worker=1`, `all=N`, sizes such as `standard-2x` or `768M`, and resolving a
//! spec against the Procfile's types. It does not assign ports (`ports`) or start anything.

use std::fmt;
use std::str::FromStr;

use super::ports;
use crate::dyno::{RELEASE, is_type_name};

/// A memory quota, named after a Heroku dyno size or given in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DynoSize {
    /// Heroku's display name (`Standard-1X`), or `None` for an explicit amount.
    pub name: Option<&'static str>,
    /// The memory quota in bytes.
    pub bytes: u64,
}

const MB: u64 = 1024 * 1024;
/// The most dynos of one type: foreman's layout gives each type a block of 100 ports, and
/// Heroku allows 100 dynos per type.
pub const MAX_PER_TYPE: u32 = ports::BLOCK as u32;
const NAMED_SIZES: [(&str, &str, u64); 6] = [
    ("eco", "Eco", 512),
    ("basic", "Basic", 512),
    ("standard-1x", "Standard-1X", 512),
    ("standard-2x", "Standard-2X", 1024),
    ("performance-m", "Performance-M", 2560),
    ("performance-l", "Performance-L", 14336),
];

impl Default for DynoSize {
    fn default() -> Self {
        Self {
            name: Some("Standard-1X"),
            bytes: 512 * MB,
        }
    }
}

impl FromStr for DynoSize {
    type Err = FormationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || FormationError::BadSize(s.to_owned());
        let lower = s.trim().to_ascii_lowercase();
        if let Some((_, name, mb)) = NAMED_SIZES.iter().find(|(key, ..)| *key == lower) {
            return Ok(Self {
                name: Some(name),
                bytes: mb * MB,
            });
        }
        let (digits, unit) = match lower.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
            Some((i, _)) => lower.split_at(i),
            None => (lower.as_str(), "m"),
        };
        let unit = match unit {
            "k" | "kb" => 1024,
            "m" | "mb" => MB,
            "g" | "gb" => 1024 * MB,
            _ => return Err(bad()),
        };
        let amount: u64 = digits.parse().map_err(|_| bad())?;
        match amount.checked_mul(unit) {
            Some(bytes) if bytes > 0 => Ok(Self { name: None, bytes }),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for DynoSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name {
            Some(name) => f.write_str(name),
            // The largest unit that gives a whole number, so `1K` is echoed as `1K` and
            // `1024M` as `1G`: never rounded (README).
            None => {
                let (amount, unit) = [(1024 * MB, "G"), (MB, "M"), (1024, "K")]
                    .into_iter()
                    .find(|(unit, _)| self.bytes % unit == 0)
                    .map_or((self.bytes, "B"), |(size, unit)| (self.bytes / size, unit));
                write!(f, "{amount}{unit}")
            }
        }
    }
}

/// Why a formation was refused; each names the value the user gave.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormationError {
    #[error("bad formation entry `{0}` (expected TYPE=COUNT, e.g. web=2 or web=2:standard-2x)")]
    BadEntry(String),
    #[error("bad dyno count in `{0}` (expected a whole number)")]
    BadCount(String),
    #[error(
        "bad dyno size `{0}` (expected eco, basic, standard-1x, standard-2x, performance-m, performance-l or an amount such as 768M)"
    )]
    BadSize(String),
    #[error("unknown process type `{name}` (the Procfile has {known})")]
    UnknownType { name: String, known: String },
    #[error("`release` is the release phase, not a dyno type")]
    Release,
    #[error(
        "{count} {name} dynos is more than the {MAX_PER_TYPE} a type may have (each type has a block of {MAX_PER_TYPE} ports)"
    )]
    TooMany { name: String, count: u32 },
    #[error(
        "bad scale change `{0}` (expected TYPE=COUNT, TYPE+N, TYPE-N or TYPE=COUNT:SIZE, e.g. web=3, clock+1, web=2:standard-2x)"
    )]
    BadScale(String),
}

/// One `TYPE=COUNT[:SIZE]` item as the user wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormationItem {
    /// A process type, or `all`.
    pub name: String,
    pub count: u32,
    pub size: Option<DynoSize>,
}

/// A formation spec as given to `-m`: `web=2,worker=1`, `all=1,worker=0`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FormationSpec {
    pub items: Vec<FormationItem>,
}

impl FromStr for FormationSpec {
    type Err = FormationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut items = Vec::new();
        for part in s
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|p| !p.is_empty())
        {
            let (name, rest) = part
                .split_once('=')
                .filter(|(name, _)| is_type_name(name))
                .ok_or_else(|| FormationError::BadEntry(part.to_owned()))?;
            let (count, size) = match rest.split_once(':') {
                Some((count, size)) => (count, Some(size.parse()?)),
                None => (rest, None),
            };
            let count = count
                .parse()
                .map_err(|_| FormationError::BadCount(part.to_owned()))?;
            items.push(FormationItem {
                name: name.to_owned(),
                count,
                size,
            });
        }
        if items.is_empty() {
            return Err(FormationError::BadEntry(s.to_owned()));
        }
        Ok(Self { items })
    }
}

/// `-m`'s formation as given: of `FormationSpec`'s form, checked when read, and kept as
/// typed for what hkrun says of it (`bad value `worker=0` for --formation: ...`); what it
/// means depends on the Procfile, worked out later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormationText(pub String);

impl FromStr for FormationText {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        s.parse::<FormationSpec>()
            .map(|_| Self(s.to_owned()))
            .map_err(|e| e.to_string())
    }
}

impl fmt::Display for FormationText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FormationSpec {
    /// `hkrun start web=2 worker`: a type alone is one dyno of it, and `TYPE=COUNT[:SIZE]`
    /// means what it does in `-m` (as node-foreman and `heroku local` read them).
    pub fn from_args(args: &[String]) -> Result<Self, FormationError> {
        let mut items = Vec::new();
        for arg in args {
            if arg.contains('=') {
                items.extend(arg.parse::<Self>()?.items);
            } else if is_type_name(arg) {
                items.push(FormationItem {
                    name: arg.clone(),
                    count: 1,
                    size: None,
                });
            } else {
                return Err(FormationError::BadEntry(arg.clone()));
            }
        }
        Ok(Self { items })
    }
}

/// How `hkrun scale` changes one type's count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleOp {
    /// `web=3`
    Set(u32),
    /// `web+1`
    Add(u32),
    /// `web-1`
    Sub(u32),
    /// `web:standard-2x`: the size only.
    Keep,
}

/// One argument of `hkrun scale`, Heroku's syntax: `web=3`, `clock+1`, `web-1`,
/// `web=2:standard-2x`, `web:standard-2x`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScaleChange {
    pub name: String,
    pub op: ScaleOp,
    pub size: Option<DynoSize>,
}

impl FromStr for ScaleChange {
    type Err = FormationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || FormationError::BadScale(s.to_owned());
        let (head, size) = match s.split_once(':') {
            Some((head, size)) => (head, Some(size.parse::<DynoSize>()?)),
            None => (s, None),
        };
        // `=` or `+` ends the name; `-` does only before a number (`web-api-1`).
        let at = head.find(['=', '+']).or_else(|| {
            head.rfind('-')
                .filter(|&j| head[j + 1..].bytes().all(|b| b.is_ascii_digit()))
        });
        let (name, op) = match at {
            Some(i) => {
                let count = &head[i + 1..];
                let count: u32 = count
                    .parse()
                    .map_err(|_| FormationError::BadCount(s.to_owned()))?;
                let op = match head.as_bytes()[i] {
                    b'=' => ScaleOp::Set(count),
                    b'+' => ScaleOp::Add(count),
                    _ => ScaleOp::Sub(count),
                };
                (&head[..i], op)
            }
            None if size.is_some() => (head, ScaleOp::Keep),
            None => return Err(bad()),
        };
        if !is_type_name(name) {
            return Err(bad());
        }
        Ok(Self {
            name: name.to_owned(),
            op,
            size,
        })
    }
}

/// How many dynos of one process type run, and at what size (Heroku's formation object).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quantity {
    pub name: String,
    pub command: String,
    /// Position among the Procfile's dyno types (`release` excluded): ports and colours.
    pub index: usize,
    pub count: u32,
    pub size: DynoSize,
}

/// Resolves a spec against the Procfile's process types (`(name, command)` in order,
/// `release` aside). Without a spec every type runs once; with one, types not named run 0
/// times unless `all=N` says otherwise.
pub fn resolve(
    spec: Option<&FormationSpec>,
    types: &[(&str, &str)],
    default_size: DynoSize,
) -> Result<Vec<Quantity>, FormationError> {
    let mut plans: Vec<Quantity> = types
        .iter()
        .enumerate()
        .map(|(index, (name, command))| Quantity {
            name: (*name).to_owned(),
            command: (*command).to_owned(),
            index,
            count: u32::from(spec.is_none()),
            size: default_size,
        })
        .collect();
    let Some(spec) = spec else {
        return Ok(plans);
    };
    // `all` first, so `all=1,worker=0` and `worker=0,all=1` mean the same.
    let (all, named): (Vec<_>, Vec<_>) = spec.items.iter().partition(|i| i.name == "all");
    for item in all.into_iter().chain(named) {
        if item.name == RELEASE {
            return Err(FormationError::Release);
        }
        let targets: Vec<&mut Quantity> = if item.name == "all" {
            plans.iter_mut().collect()
        } else {
            let known = types
                .iter()
                .map(|(name, _)| *name)
                .collect::<Vec<_>>()
                .join(", ");
            let plan = plans
                .iter_mut()
                .find(|p| p.name == item.name)
                .ok_or_else(|| FormationError::UnknownType {
                    name: item.name.clone(),
                    known,
                })?;
            vec![plan]
        };
        if item.count > MAX_PER_TYPE {
            return Err(FormationError::TooMany {
                name: item.name.clone(),
                count: item.count,
            });
        }
        for plan in targets {
            plan.count = item.count;
            if let Some(size) = item.size {
                plan.size = size;
            }
        }
    }
    Ok(plans)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parsing_never_panics(spec in "\\PC{0,40}", size in "\\PC{0,12}") {
            let _ = spec.parse::<FormationSpec>();
            let _ = size.parse::<DynoSize>();
        }

        #[test]
        fn scale_changes_never_panic(change in "\\PC{0,30}") {
            let _ = change.parse::<ScaleChange>();
        }

        /// Formation-shaped text reaches the grammar: valid items parse to what they
        /// say, and an error names the item or value.
        #[test]
        fn shaped_formations_parse_to_what_they_say(
            items in proptest::collection::vec(
                ("[a-z][a-z0-9_-]{0,6}|all", 0u32..200, proptest::option::of(size_text())),
                1..5,
            ),
            sep in "[, ]{1,2}",
        ) {
            let text = items
                .iter()
                .map(|(name, count, size)| match size {
                    Some(size) => format!("{name}={count}:{size}"),
                    None => format!("{name}={count}"),
                })
                .collect::<Vec<_>>()
                .join(&sep);
            let spec: FormationSpec = text.parse().map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
            prop_assert_eq!(spec.items.len(), items.len());
            for (item, (name, count, size)) in spec.items.iter().zip(&items) {
                prop_assert_eq!(&item.name, name);
                prop_assert_eq!(item.count, *count);
                prop_assert_eq!(item.size.is_some(), size.is_some());
            }
        }

        #[test]
        fn shaped_scale_changes_parse_or_name_the_change(
            name in "[a-z][a-z0-9_-]{0,6}",
            op in "[=+-]|",
            count in "[0-9]{0,3}|x",
            size in proptest::option::of(size_text()),
        ) {
            let text = format!("{name}{op}{count}{}", size.map(|s| format!(":{s}")).unwrap_or_default());
            match text.parse::<ScaleChange>() {
                Ok(change) => prop_assert!(text.starts_with(&change.name)),
                Err(e) => prop_assert!(e.to_string().contains('`'), "{}", e),
            }
        }

        #[test]
        fn counts_round_trip(count in 0u32..100_000) {
            let spec: FormationSpec = format!("web={count}").parse().unwrap();
            prop_assert_eq!(spec.items[0].count, count);
        }
    }

    /// Dyno sizes as users write them, valid and not.
    fn size_text() -> impl Strategy<Value = String> {
        prop_oneof![
            "(eco|basic|standard-1x|Standard-2X|performance-m|performance-l)",
            "[1-9][0-9]{0,4}(k|K|m|M|g|G|kb|MB|gb)?",
        ]
    }

    /// The types of `release: migrate`, `web: serve`, `worker: work`, `clock: tick`.
    const TYPES: [(&str, &str); 3] = [("web", "serve"), ("worker", "work"), ("clock", "tick")];

    fn counts(spec: Option<&str>) -> Result<Vec<(String, u32)>, FormationError> {
        let spec = spec.map(str::parse).transpose()?;
        let plans = resolve(spec.as_ref(), &TYPES, DynoSize::default())?;
        Ok(plans.into_iter().map(|p| (p.name, p.count)).collect())
    }

    fn named(pairs: &[(&str, u32)]) -> Vec<(String, u32)> {
        pairs.iter().map(|(n, c)| ((*n).to_owned(), *c)).collect()
    }

    #[test]
    fn resolves_formations() {
        assert_eq!(
            counts(None).unwrap(),
            named(&[("web", 1), ("worker", 1), ("clock", 1)])
        );
        assert_eq!(
            counts(Some("web=2")).unwrap(),
            named(&[("web", 2), ("worker", 0), ("clock", 0)])
        );
        assert_eq!(
            counts(Some("worker=0, all=3")).unwrap(),
            named(&[("web", 3), ("worker", 0), ("clock", 3)])
        );
    }

    #[test]
    fn refuses_bad_values_by_name() {
        let cases = [
            (
                "web",
                "bad formation entry `web` (expected TYPE=COUNT, e.g. web=2 or web=2:standard-2x)",
            ),
            (
                "web=-1",
                "bad dyno count in `web=-1` (expected a whole number)",
            ),
            (
                "web=two",
                "bad dyno count in `web=two` (expected a whole number)",
            ),
            (
                "cron=1",
                "unknown process type `cron` (the Procfile has web, worker, clock)",
            ),
            (
                "release=1",
                "`release` is the release phase, not a dyno type",
            ),
            (
                "web=101",
                "101 web dynos is more than the 100 a type may have (each type has a block of 100 ports)",
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(
                counts(Some(spec)).unwrap_err().to_string(),
                want,
                "spec {spec:?}"
            );
        }
        assert!(matches!(
            "web=1:huge".parse::<FormationSpec>(),
            Err(FormationError::BadSize(_))
        ));
    }

    #[test]
    fn parses_sizes() {
        let size = |s: &str| s.parse::<DynoSize>().unwrap();
        assert_eq!(size("standard-2x").bytes, 1024 * MB);
        assert_eq!(size("Performance-M").to_string(), "Performance-M");
        assert_eq!(size("768M").bytes, 768 * MB);
        assert_eq!(size("1G").bytes, 1024 * MB);
        assert_eq!(size("512k").bytes, 512 * 1024);
        assert_eq!(size("768M").to_string(), "768M");
        // Echoed as given, or in a larger unit when exactly equal: never rounded.
        for (given, shown) in [
            ("1K", "1K"),
            ("1536k", "1536K"),
            ("1024M", "1G"),
            ("3g", "3G"),
            ("2048kb", "2M"),
        ] {
            assert_eq!(size(given).to_string(), shown, "{given}");
        }
        assert!("0M".parse::<DynoSize>().is_err());
        assert!("99999999999999G".parse::<DynoSize>().is_err());
        let spec: FormationSpec = "web=2:standard-2x,worker=1:256M".parse().unwrap();
        assert_eq!(spec.items[0].size.unwrap().bytes, 1024 * MB);
        assert_eq!(spec.items[1].size.unwrap().bytes, 256 * MB);
    }

    #[test]
    fn start_arguments_are_types_or_formation_items() {
        let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let spec = FormationSpec::from_args(&args(&["web=2", "worker", "clock=1:1G"])).unwrap();
        let got: Vec<_> = spec
            .items
            .iter()
            .map(|i| (i.name.as_str(), i.count))
            .collect();
        assert_eq!(got, [("web", 2), ("worker", 1), ("clock", 1)]);
        assert_eq!(
            FormationSpec::from_args(&args(&["web=two"]))
                .unwrap_err()
                .to_string(),
            "bad dyno count in `web=two` (expected a whole number)"
        );
        assert!(FormationSpec::from_args(&args(&["w b"])).is_err());
    }

    #[test]
    fn parses_scale_changes() {
        let change = |s: &str| s.parse::<ScaleChange>().unwrap();
        assert_eq!(change("web=3").op, ScaleOp::Set(3));
        assert_eq!(change("clock+1").op, ScaleOp::Add(1));
        assert_eq!(change("web-1").op, ScaleOp::Sub(1));
        assert_eq!(change("web-api=2").name, "web-api");
        assert_eq!(change("web-api-1").name, "web-api");
        assert_eq!(change("web-api-1").op, ScaleOp::Sub(1));
        let sized = change("web=2:standard-2x");
        assert_eq!(
            (sized.op, sized.size.unwrap().bytes),
            (ScaleOp::Set(2), 1024 * MB)
        );
        assert_eq!(change("worker:256M").op, ScaleOp::Keep);
        for bad in [
            "web",
            "web=",
            "=2",
            "web=x",
            "web=-1",
            "web=2:huge",
            "w b=1",
            "",
        ] {
            assert!(bad.parse::<ScaleChange>().is_err(), "{bad:?}");
        }
        assert_eq!(
            "web".parse::<ScaleChange>().unwrap_err().to_string(),
            "bad scale change `web` (expected TYPE=COUNT, TYPE+N, TYPE-N or TYPE=COUNT:SIZE, e.g. web=3, clock+1, web=2:standard-2x)"
        );
    }
}
