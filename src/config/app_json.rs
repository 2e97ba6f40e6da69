//! Heroku's `app.json` in the app root (README, "app.json"): its `formation` is the
//! default formation, its `env` entries are defaults below the env files and the
//! environment (`required` ones must be set somewhere; `generator: "secret"` ones are
//! generated once and kept in `.env`). Keys hkrun has no use for are left alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::env::Vars;

/// Why `app.json` was refused.
#[derive(Debug, thiserror::Error)]
pub enum AppJsonError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(
        "{}: config var {key} is required and set nowhere (set it with `hkrun config:set {key}=...`)",
        path.display()
    )]
    Required { path: PathBuf, key: String },
    #[error("{}: formation: {message}", path.display())]
    Formation { path: PathBuf, message: String },
    #[error(
        "{}: the top level is {found}, where Heroku's app.json has an object (name, env, formation, scripts...)",
        path.display()
    )]
    NotAnObject { path: PathBuf, found: &'static str },
    /// `why` follows the key: ` is a number: expected ...`, `: value is ...`.
    #[error("{}: env `{}`{why}", path.display(), key.escape_debug())]
    Env {
        path: PathBuf,
        key: String,
        why: String,
    },
}

#[derive(Debug, Default)]
pub struct AppJson {
    formation: BTreeMap<String, Dynos>,
    env: BTreeMap<String, EnvEntry>,
    pub addons: Vec<serde_json::Value>,
    scripts: Scripts,
}

/// `app.json` as read, before each `env` entry is checked on its own (so a malformed one
/// is refused with its key, and what Heroku's schema has there).
#[derive(Debug, Default, Deserialize)]
struct Schema {
    #[serde(default)]
    formation: BTreeMap<String, Dynos>,
    #[serde(default)]
    env: BTreeMap<String, Value>,
    #[serde(default)]
    addons: Vec<serde_json::Value>,
    #[serde(default)]
    scripts: Scripts,
}

/// `scripts`: only `postdeploy` means something to hkrun.
#[derive(Debug, Default, Deserialize)]
struct Scripts {
    postdeploy: Option<Script>,
}

/// A script: its command alone, or Heroku's object with `command` (and a `size` hkrun
/// does not use).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Script {
    Command(String),
    Spec { command: String },
}

#[derive(Debug, Deserialize)]
struct Dynos {
    quantity: Option<u32>,
    size: Option<String>,
}

/// A config var: its value alone, or Heroku's object.
#[derive(Debug)]
enum EnvEntry {
    Value(String),
    Spec {
        value: Option<String>,
        /// Heroku's default: required.
        required: Option<bool>,
        generator: Option<String>,
    },
}

impl EnvEntry {
    /// An entry of Heroku's schema: a string, or an object with `description`, `value`,
    /// `required` and `generator` (`null` stands for a field left out; other fields are
    /// left alone). Else what is wrong, to follow the entry's key in a message.
    fn from_json(json: Value) -> Result<Self, String> {
        let fields = match json {
            Value::String(value) => return Ok(Self::Value(value)),
            Value::Object(fields) => fields,
            other => {
                return Err(format!(
                    " is {}: expected a string, or an object with description, value, required and generator",
                    kind(&other)
                ));
            }
        };
        let string = |name: &str| match fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!(": {name} is {}: expected a string", kind(other))),
        };
        string("description")?;
        let value = string("value")?;
        let generator = string("generator")?;
        if let Some(other) = generator.as_deref().filter(|g| *g != "secret") {
            return Err(format!(
                ": generator `{other}`: expected \"secret\", the one generator Heroku has"
            ));
        }
        let required = match fields.get("required") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(required)) => Some(*required),
            Some(other) => {
                return Err(format!(
                    ": required is {}: expected true or false",
                    kind(other)
                ));
            }
        };
        Ok(Self::Spec {
            value,
            required,
            generator,
        })
    }
}

/// What a JSON value is, for messages.
fn kind(json: &Value) -> &'static str {
    match json {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl AppJson {
    /// `scripts.postdeploy`'s command, if any.
    pub fn postdeploy(&self) -> Option<&str> {
        match self.scripts.postdeploy.as_ref()? {
            Script::Command(c) | Script::Spec { command: c } => {
                Some(c.as_str()).filter(|c| !c.trim().is_empty())
            }
        }
    }

    /// `app.json` in `root`, or `None` when there is none.
    pub fn find(root: &Path) -> Result<Option<(PathBuf, Self)>, AppJsonError> {
        let path = match root == Path::new(".") {
            true => PathBuf::from("app.json"),
            false => root.join("app.json"),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(AppJsonError::Read { path, source }),
        };
        let app = Self::parse(&path, &text)?;
        Ok(Some((path, app)))
    }

    /// `text`, read from `path`.
    fn parse(path: &Path, text: &str) -> Result<Self, AppJsonError> {
        let invalid = |e: serde_json::Error| AppJsonError::Invalid {
            line: e.line(),
            message: super::text::without_position(&e),
            path: path.to_owned(),
        };
        // An array would be read as the object's fields in order, and `[]` as no fields.
        let json: Value = serde_json::from_str(text).map_err(invalid)?;
        if !json.is_object() {
            return Err(AppJsonError::NotAnObject {
                path: path.to_owned(),
                found: kind(&json),
            });
        }
        // From the text again, for the line of a field of the wrong type.
        let schema: Schema = serde_json::from_str(text).map_err(invalid)?;
        let env = schema
            .env
            .into_iter()
            .map(|(key, json)| match EnvEntry::from_json(json) {
                Ok(entry) => Ok((key, entry)),
                Err(why) => Err(AppJsonError::Env {
                    path: path.to_owned(),
                    key,
                    why,
                }),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            formation: schema.formation,
            env,
            addons: schema.addons,
            scripts: schema.scripts,
        })
    }

    /// Each config var with a value, as app.json gives it.
    pub fn values(&self) -> impl Iterator<Item = (&str, &str)> {
        self.env.iter().filter_map(|(key, entry)| match entry {
            EnvEntry::Value(value)
            | EnvEntry::Spec {
                value: Some(value), ..
            } => Some((key.as_str(), value.as_str())),
            EnvEntry::Spec { value: None, .. } => None,
        })
    }

    /// The formation as `-m` takes it (`web=2:standard-2x,worker=1`), when it names any.
    pub fn formation(&self) -> Option<String> {
        let items: Vec<String> = self
            .formation
            .iter()
            .map(|(name, dynos)| {
                let size = dynos
                    .size
                    .as_ref()
                    .map(|s| format!(":{s}"))
                    .unwrap_or_default();
                format!("{name}={}{size}", dynos.quantity.unwrap_or(1))
            })
            .collect();
        (!items.is_empty()).then(|| items.join(","))
    }

    /// Adds the defaults to `env` where neither it nor `inherited` sets a key; refuses a
    /// required key set nowhere. Keys a generator makes are left to `to_generate`.
    pub fn fill(&self, path: &Path, env: &mut Vars, inherited: &Vars) -> Result<(), AppJsonError> {
        for (key, entry) in &self.env {
            if env.contains_key(key) || inherited.contains_key(key) {
                continue;
            }
            match entry {
                EnvEntry::Value(value)
                | EnvEntry::Spec {
                    value: Some(value), ..
                } => {
                    env.insert(key.clone(), value.clone());
                }
                EnvEntry::Spec {
                    generator: Some(_), ..
                } => {}
                EnvEntry::Spec { required, .. } => {
                    if required.unwrap_or(true) {
                        return Err(AppJsonError::Required {
                            path: path.to_owned(),
                            key: key.clone(),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// The keys with `generator: "secret"` that `env` and `inherited` leave unset.
    pub fn to_generate(&self, env: &Vars, inherited: &Vars) -> Vec<String> {
        self.env
            .iter()
            .filter(|(key, entry)| {
                matches!(entry, EnvEntry::Spec { value: None, generator: Some(g), .. } if g == "secret")
                    && !env.contains_key(*key)
                    && !inherited.contains_key(*key)
            })
            .map(|(key, _)| key.clone())
            .collect()
    }
}

/// A secret as Heroku's `generator: "secret"` makes one: 64 hex digits from the
/// kernel's random source.
pub(crate) fn secret() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(json: &str) -> AppJson {
        AppJson::parse(Path::new("app.json"), json).unwrap()
    }

    #[test]
    fn formation_env_defaults_required_and_generators() {
        let a = app(
            r#"{"name":"shop","formation":{"web":{"quantity":2,"size":"standard-2x"},"worker":{"quantity":1}},
                "env":{"LANG":"en_US.UTF-8","RAILS_ENV":{"value":"production"},"SECRET":{"generator":"secret"},
                       "OPTIONAL":{"required":false},"API_KEY":{"description":"needed"}},
                "addons":["heroku-postgresql"],"buildpacks":[]}"#,
        );
        assert_eq!(a.formation().as_deref(), Some("web=2:standard-2x,worker=1"));
        let path = Path::new("app.json");
        let mut env = Vars::from([("RAILS_ENV".to_owned(), "development".to_owned())]);
        let err = a.fill(path, &mut env.clone(), &Vars::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "app.json: config var API_KEY is required and set nowhere (set it with `hkrun config:set API_KEY=...`)"
        );
        let inherited = Vars::from([("API_KEY".to_owned(), "k".to_owned())]);
        a.fill(path, &mut env, &inherited).unwrap();
        assert_eq!(env["LANG"], "en_US.UTF-8");
        assert_eq!(env["RAILS_ENV"], "development", "the env files win");
        assert!(!env.contains_key("OPTIONAL") && !env.contains_key("API_KEY"));
        assert_eq!(a.to_generate(&env, &inherited), ["SECRET"]);
        let s = secret().unwrap();
        assert!(
            s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()),
            "{s}"
        );
        assert_ne!(s, secret().unwrap());
    }
}
