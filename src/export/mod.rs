//! `hkrun export FORMAT DIR`: the app's formation for a scheduler of its own (README,
//! "When one machine is not enough"). `cmd::export` resolves what the Procfile, the env
//! files and the flags say, as `start` would; `kubernetes` and `systemd` render it as
//! files, the same bytes for the same input; `write` puts them in place all at once.

pub(crate) mod error;
pub(crate) mod kubernetes;
pub(crate) mod systemd;
pub(crate) mod write;

pub(crate) use error::ExportError;

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{self, APP_NAME_MAX, env::Vars};
use crate::plan::formation::DynoSize;

/// The schedulers hkrun writes for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Kubernetes,
    Systemd,
}

impl std::str::FromStr for Format {
    type Err = ExportError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "kubernetes" | "k8s" => Ok(Self::Kubernetes),
            "systemd" => Ok(Self::Systemd),
            _ => Err(ExportError::UnknownFormat(s.to_owned())),
        }
    }
}

/// What is exported, whatever the format.
#[derive(Debug)]
pub(crate) struct Export {
    /// Names every object or unit.
    pub app: String,
    /// Where the dynos run, absolute (systemd's `WorkingDirectory=`).
    pub root: PathBuf,
    pub base_port: u16,
    /// Every process type of the Procfile, in its order, with the formation's count.
    pub types: Vec<ExportedType>,
    /// The release phase's command.
    pub release: Option<String>,
    /// `--dyno-size`: the release phase's.
    pub default_size: DynoSize,
    /// The config vars: the env files merged, PORT left out (each dyno gets its own).
    pub env: Vars,
    /// Between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// (kubernetes) The image.
    pub image: Option<String>,
    /// (kubernetes) Release as a Helm hook.
    pub helm_hooks: bool,
}

#[derive(Debug)]
pub(crate) struct ExportedType {
    pub name: String,
    pub command: String,
    pub count: u32,
    pub size: DynoSize,
    /// The first port of the type's block, `--no-router` layout: dyno N has this + N - 1.
    pub port: u16,
}

impl ExportedType {
    pub(crate) fn is_web(&self) -> bool {
        self.name == config::WEB
    }
}

/// A name Kubernetes takes in every object name (a DNS label) and systemd in a unit's.
pub(crate) fn valid_app_name(name: &str) -> bool {
    !config::name::reads_as_boolean(name)
        && name.len() <= APP_NAME_MAX
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A file of an export: its path under DIR and what it holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct File {
    pub path: String,
    pub contents: Contents,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Contents {
    Text(String),
    /// Only readable by its owner: it holds the config vars.
    Secret(String),
    /// A symbolic link to this target.
    Link(String),
}

#[cfg(test)]
pub(super) mod tests {
    use std::path::Path;

    use super::*;

    /// The example app as `hkrun export` reads it, its folder given a fixed place.
    fn example_app() -> Export {
        let procfile = std::fs::read("examples/hello/Procfile").unwrap();
        let procfile = crate::config::procfile::Procfile::parse(&procfile).unwrap();
        let size: DynoSize = "standard-1x".parse().unwrap();
        let types = procfile
            .types()
            .enumerate()
            .map(|(i, e)| ExportedType {
                name: e.name.clone(),
                command: e.command.clone(),
                count: 1,
                size,
                port: 5000 + 100 * u16::try_from(i).unwrap(),
            })
            .collect();
        Export {
            app: "hello".into(),
            root: "/srv/hello".into(),
            base_port: 5000,
            types,
            release: procfile.release().map(|e| e.command.clone()),
            default_size: size,
            env: Vars::new(),
            grace: Duration::from_secs(30),
            image: Some("registry.example.com/hello:1.0".into()),
            helm_hooks: false,
        }
    }

    /// Three types with sizes, config vars that need quoting, a fractional grace.
    pub(crate) fn shop() -> Export {
        let ty = |name: &str, command: &str, count, size: &str, port| ExportedType {
            name: name.into(),
            command: command.into(),
            count,
            size: size.parse().unwrap(),
            port,
        };
        Export {
            app: "shop".into(),
            root: "/srv/shop".into(),
            base_port: 6000,
            types: vec![
                ty(
                    "web",
                    "bundle exec puma -p $PORT -C config/puma.rb",
                    3,
                    "standard-2x",
                    6000,
                ),
                ty(
                    "worker",
                    "bundle exec sidekiq -c 5 && echo done",
                    2,
                    "performance-m",
                    6100,
                ),
                ty("clock", "bin/clock --every 10%", 1, "768M", 6200),
            ],
            release: Some("bin/rails db:migrate".into()),
            default_size: "standard-1x".parse().unwrap(),
            env: [
                ("DATABASE_URL", "postgres://u:p@db/shop"),
                ("GREETING", "it's \"$HOME\" \\ `x`\nsecond line"),
                ("RAILS_ENV", "production"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            grace: Duration::from_millis(12_500),
            image: Some("ghcr.io/acme/shop@sha256:0123abcd".into()),
            helm_hooks: true,
        }
    }

    /// Every file of an export as one text, for a snapshot.
    fn shown(files: &[File]) -> String {
        let mut text = String::new();
        for file in files {
            let (kind, body) = match &file.contents {
                Contents::Text(t) => ("", t.as_str()),
                Contents::Secret(t) => (" (0600)", t.as_str()),
                Contents::Link(to) => (" -> ", to.as_str()),
            };
            match &file.contents {
                Contents::Link(_) => text.push_str(&format!("=== {}{kind}{body}\n", file.path)),
                _ => text.push_str(&format!("=== {}{kind}\n{body}", file.path)),
            }
        }
        text
    }

    #[test]
    fn kubernetes_snapshots() {
        insta::assert_snapshot!(
            "kubernetes_example_app",
            shown(&kubernetes::render(&example_app()).unwrap())
        );
        insta::assert_snapshot!(
            "kubernetes_shop",
            shown(&kubernetes::render(&shop()).unwrap())
        );
    }

    #[test]
    fn systemd_snapshots() {
        let dir = Path::new("/etc/hkrun");
        insta::assert_snapshot!(
            "systemd_example_app",
            shown(&systemd::render(&example_app(), &dir.join("hello")).unwrap())
        );
        insta::assert_snapshot!(
            "systemd_shop",
            shown(&systemd::render(&shop(), &dir.join("shop")).unwrap())
        );
    }

    #[test]
    fn types_whose_names_clash_in_kubernetes_are_refused() {
        let mut export = shop();
        export.types[1].name = "Web".into();
        let err = kubernetes::render(&export).unwrap_err();
        assert_eq!(
            err.to_string(),
            "process types `web` and `Web` would get the same name in Kubernetes"
        );
    }

    #[test]
    fn app_names_from_folders_are_valid() {
        for (folder, name) in [
            ("/src/shop", "shop"),
            ("/src/My_Shop.v2", "my-shop-v2"),
            ("/src/2fa", "app-2fa"),
            ("/src/___", "app"),
            ("/", "app"),
            (
                "/src/a-very-long-folder-name-for-an-app-indeed",
                "a-very-long-folder-name-for-an",
            ),
        ] {
            let got = config::app_name(Path::new(folder));
            assert_eq!(got, name, "{folder}");
            assert!(valid_app_name(&got), "{got}");
        }
        for bad in ["", "Shop", "2fa", "shop-", "sh_op", &"a".repeat(31)] {
            assert!(!valid_app_name(bad), "{bad}");
        }
    }

    #[test]
    fn formats_are_named() {
        assert_eq!("kubernetes".parse::<Format>().unwrap(), Format::Kubernetes);
        assert_eq!("systemd".parse::<Format>().unwrap(), Format::Systemd);
        let err = "upstart".parse::<Format>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown export format `upstart` (expected kubernetes or systemd)"
        );
    }
}
