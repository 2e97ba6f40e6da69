//! How a setting's value is read from hkrun.toml and shown by `check`, by its type: a
//! field of `config::settings::args` is a `Field`, found by clap's id (`settings!`), and
//! a setting's type a `Value` (one `Element`, a list of them, an optional one, a switch),
//! read by the parser clap's `value_parser` uses too (`plan::values`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::http::ListenAddress;
use crate::logs::drains::Drain;
use crate::plan::formation::{DynoSize, FormationText};
use crate::plan::policy::{MemoryLimit, PerType, RestartPolicy};
use crate::plan::values::{self, ByteSize, MaxRequests, PositiveSeconds, RotatedFiles, Seconds};

/// Why the file's value for a setting was refused.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Its parser refused it; what it expected.
    Value(String),
    /// Its parser refused one item of a list: the item as hkrun shows it (a drain
    /// masked), and what the parser expected.
    Item { value: String, reason: String },
    /// Not of the setting's kind (a list for a single value, text for a switch).
    Kind(&'static str),
}

/// A setting's value, as hkrun.toml sets it and `check` shows it.
pub(crate) trait Value {
    /// Takes the file's value; a path is relative to the file's `folder`.
    fn set(&mut self, value: toml::Value, folder: &Path) -> Result<(), Refusal>;
    /// As `check` shows it; `None` when unset.
    fn show(&self) -> Option<String>;
}

/// One value of a setting: a setting's whole value, or one of a list.
pub(crate) trait Element: Sized {
    fn read(value: toml::Value, folder: &Path) -> Result<Self, Refusal>;
    fn shown(&self) -> String;
}

/// A field of the settings' structs: a setting (`Value`), or a group of them flattened
/// into `StartArgs` (made by `settings!`).
pub(crate) trait Field {
    /// The setting clap knows as `id`, when it is this field (named `name`) or in it.
    fn find_mut(&mut self, name: &str, id: &str) -> Option<&mut dyn Value>;
    fn find(&self, name: &str, id: &str) -> Option<&dyn Value>;
}

impl<T: Value> Field for T {
    fn find_mut(&mut self, name: &str, id: &str) -> Option<&mut dyn Value> {
        (name == id).then_some(self as &mut dyn Value)
    }

    fn find(&self, name: &str, id: &str) -> Option<&dyn Value> {
        (name == id).then_some(self as &dyn Value)
    }
}

/// A struct of settings, each field a `Field`: the struct as written, and the lookup of
/// its fields by clap's id (a field's name, as clap's derive names it).
macro_rules! settings {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $($(#[$fmeta:meta])* $fvis:vis $field:ident: $ty:ty),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $($(#[$fmeta])* $fvis $field: $ty),*
        }

        impl $crate::config::settings::value::Field for $name {
            fn find_mut(
                &mut self,
                _name: &str,
                id: &str,
            ) -> Option<&mut dyn $crate::config::settings::value::Value> {
                use $crate::config::settings::value::Field;
                $(
                    if let Some(found) = Field::find_mut(&mut self.$field, stringify!($field), id) {
                        return Some(found);
                    }
                )*
                None
            }

            fn find(
                &self,
                _name: &str,
                id: &str,
            ) -> Option<&dyn $crate::config::settings::value::Value> {
                use $crate::config::settings::value::Field;
                $(
                    if let Some(found) = Field::find(&self.$field, stringify!($field), id) {
                        return Some(found);
                    }
                )*
                None
            }
        }
    };
}
pub(crate) use settings;

fn text(value: toml::Value) -> Result<String, Refusal> {
    match value {
        toml::Value::String(s) => Ok(s),
        // A number where text is parsed (`timeout = 5`, `log-max-size = 512`).
        toml::Value::Integer(n) => Ok(n.to_string()),
        toml::Value::Float(x) => Ok(x.to_string()),
        _ => Err(Refusal::Kind("a single value")),
    }
}

impl Element for String {
    fn read(value: toml::Value, _folder: &Path) -> Result<Self, Refusal> {
        match value {
            toml::Value::String(s) => Ok(s),
            _ => Err(Refusal::Kind("a string")),
        }
    }

    fn shown(&self) -> String {
        self.clone()
    }
}

impl Element for PathBuf {
    fn read(value: toml::Value, folder: &Path) -> Result<Self, Refusal> {
        String::read(value, folder).map(|p| folder.join(p))
    }

    fn shown(&self) -> String {
        self.display().to_string()
    }
}

/// Read from text by the parser clap's `value_parser` uses too, and shown by `Display`.
macro_rules! parsed {
    ($($t:ty => $parse:expr),* $(,)?) => {$(
        impl Element for $t {
            fn read(value: toml::Value, _folder: &Path) -> Result<Self, Refusal> {
                let parse: fn(&str) -> Result<$t, String> = $parse;
                parse(&text(value)?).map_err(Refusal::Value)
            }

            fn shown(&self) -> String {
                self.to_string()
            }
        }
    )*};
}

parsed! {
    // The one setting of this type is the base port (`--port`).
    u16 => values::port,
    IpAddr => |s| s.parse().map_err(|_| "expected an IP address such as 0.0.0.0".to_owned()),
    Seconds => str::parse,
    PositiveSeconds => str::parse,
    ByteSize => str::parse,
    RotatedFiles => str::parse,
    MaxRequests => str::parse,
    ListenAddress => str::parse,
    FormationText => str::parse,
    PerType<RestartPolicy> => values::restart,
    PerType<MemoryLimit> => values::memory_limit,
}

impl Element for DynoSize {
    fn read(value: toml::Value, _folder: &Path) -> Result<Self, Refusal> {
        values::dyno_size(&text(value)?).map_err(Refusal::Value)
    }

    /// A Heroku size as its flag names it (`standard-1x`), an amount as `DynoSize` shows it.
    fn shown(&self) -> String {
        match self.name {
            Some(name) => name.to_ascii_lowercase(),
            None => self.to_string(),
        }
    }
}

impl Element for Drain {
    fn read(value: toml::Value, folder: &Path) -> Result<Self, Refusal> {
        let url = String::read(value, folder)?;
        url.parse().map_err(|reason| Refusal::Item {
            value: crate::logs::drains::masked(&url),
            reason,
        })
    }

    /// Masked: a drain's credentials are never shown (README, "Log drains").
    fn shown(&self) -> String {
        self.url.clone()
    }
}

/// clap's value enums: one of their names.
macro_rules! named {
    ($($t:ty),*) => {$(
        impl $crate::config::settings::value::Element for $t {
            fn read(
                value: toml::Value,
                _folder: &std::path::Path,
            ) -> Result<Self, $crate::config::settings::value::Refusal> {
                $crate::config::settings::value::value_enum(value)
            }

            fn shown(&self) -> String {
                clap::ValueEnum::to_possible_value(self)
                    .map(|v| v.get_name().to_owned())
                    .unwrap_or_default()
            }
        }
    )*};
}

pub(crate) use named;

/// One of a clap value enum's names, or what they are.
pub(crate) fn value_enum<T: clap::ValueEnum>(value: toml::Value) -> Result<T, Refusal> {
    let name = text(value)?;
    T::from_str(&name, false).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| Some(v.to_possible_value()?.get_name().to_owned()))
            .collect();
        Refusal::Value(format!("expected {}", words(&names)))
    })
}

/// `a, b or c`.
fn words(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

impl<T: Element> Value for T {
    fn set(&mut self, value: toml::Value, folder: &Path) -> Result<(), Refusal> {
        *self = T::read(value, folder)?;
        Ok(())
    }

    fn show(&self) -> Option<String> {
        Some(self.shown())
    }
}

impl<T: Element> Value for Option<T> {
    fn set(&mut self, value: toml::Value, folder: &Path) -> Result<(), Refusal> {
        *self = Some(T::read(value, folder)?);
        Ok(())
    }

    fn show(&self) -> Option<String> {
        self.as_ref().map(Element::shown)
    }
}

fn list<T: Element>(value: toml::Value, folder: &Path) -> Result<Vec<T>, Refusal> {
    match value {
        toml::Value::Array(items) => items
            .into_iter()
            .map(|item| {
                let shown = match &item {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                T::read(item, folder).map_err(|refusal| match refusal {
                    Refusal::Value(reason) => Refusal::Item {
                        value: shown,
                        reason,
                    },
                    other => other,
                })
            })
            .collect(),
        _ => Err(Refusal::Kind("a list, such as [\"a\", \"b\"]")),
    }
}

fn joined<T: Element>(items: &[T]) -> Option<String> {
    let text = items.iter().map(T::shown).collect::<Vec<_>>().join(",");
    (!text.is_empty()).then_some(text)
}

impl<T: Element> Value for Vec<T> {
    fn set(&mut self, value: toml::Value, folder: &Path) -> Result<(), Refusal> {
        *self = list(value, folder)?;
        Ok(())
    }

    fn show(&self) -> Option<String> {
        joined(self)
    }
}

/// `--tty`: unset, every type (`--tty` alone), or these.
impl<T: Element> Value for Option<Vec<T>> {
    fn set(&mut self, value: toml::Value, folder: &Path) -> Result<(), Refusal> {
        *self = Some(list(value, folder)?);
        Ok(())
    }

    fn show(&self) -> Option<String> {
        self.as_deref().and_then(joined)
    }
}

impl Value for bool {
    fn set(&mut self, value: toml::Value, _folder: &Path) -> Result<(), Refusal> {
        match value {
            toml::Value::Boolean(b) => {
                *self = b;
                Ok(())
            }
            _ => Err(Refusal::Kind("true or false")),
        }
    }

    fn show(&self) -> Option<String> {
        Some(self.to_string())
    }
}
