//! The formation as Kubernetes objects, one per file, numbered in the order to apply them:
//! the config vars' Secret, the release Job, a Deployment per process type, web's Service.
//! Each container runs hkrun on the image, for one dyno of its type, so PID 1, signals,
//! R14/R15 and the log format are what they are locally (README, "When one machine is not
//! enough").

use std::fmt::Write as _;

use serde_norway::{Mapping, Value};

use super::{Contents, Export, ExportError, ExportedType, File};
use crate::config::name::reads_as_boolean;
use crate::plan::formation::DynoSize;

/// Extra seconds Kubernetes waits past hkrun's own grace before its SIGKILL, so hkrun's
/// R12 line and SIGKILL of the dyno come first.
const KILL_MARGIN_SECS: u64 = 5;

pub(crate) fn render(export: &Export) -> Result<Vec<File>, ExportError> {
    let names = type_names(export)?;
    let mut objects: Vec<(String, Value)> = vec![("00-secret.yaml".into(), secret(export))];
    if let Some(command) = &export.release {
        objects.push(("10-job-release.yaml".into(), release_job(export, command)));
    }
    for (ty, name) in export.types.iter().zip(&names) {
        objects.push((
            format!("20-deployment-{name}.yaml"),
            deployment(export, ty, name),
        ));
    }
    for (ty, name) in export.types.iter().zip(&names) {
        if ty.is_web() {
            objects.push((format!("30-service-{name}.yaml"), service(export, name)));
        }
    }
    objects
        .into_iter()
        .map(|(path, object)| {
            let text = serde_norway::to_string(&object).expect("a mapping of strings serializes");
            let contents = match path.starts_with("00-secret") {
                true => Contents::Secret(text),
                false => Contents::Text(text),
            };
            Ok(File { path, contents })
        })
        .collect()
}

/// Each type's name in Kubernetes names (a DNS label: lowercase, `-` for `_`).
fn type_names(export: &Export) -> Result<Vec<String>, ExportError> {
    let names: Vec<String> = export
        .types
        .iter()
        .map(|t| {
            t.name
                .to_ascii_lowercase()
                .replace('_', "-")
                .trim_matches('-')
                .to_owned()
        })
        .collect();
    for (ty, name) in export.types.iter().zip(&names) {
        if name.is_empty() || name.len() > 63 - export.app.len() - 1 || reads_as_boolean(name) {
            return Err(ExportError::BadTypeName(ty.name.clone()));
        }
    }
    if let Some(key) = export.env.keys().find(|k| reads_as_boolean(k)) {
        return Err(ExportError::BadKey(key.clone()));
    }
    for (i, name) in names.iter().enumerate() {
        if let Some(j) = names[..i].iter().position(|n| n == name) {
            return Err(ExportError::NameClash(
                export.types[j].name.clone(),
                export.types[i].name.clone(),
                "Kubernetes",
            ));
        }
    }
    Ok(names)
}

fn s(text: impl Into<String>) -> Value {
    Value::String(text.into())
}

fn map<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Mapping(pairs.into_iter().map(|(k, v)| (s(k), v)).collect())
}

/// Kubernetes' recommended labels.
fn labels(app: &str, component: &str) -> Value {
    map([
        ("app.kubernetes.io/name", s(app)),
        ("app.kubernetes.io/instance", s(app)),
        ("app.kubernetes.io/component", s(component)),
        ("app.kubernetes.io/part-of", s(app)),
        ("app.kubernetes.io/managed-by", s("hkrun")),
    ])
}

/// What a Deployment and a Service pick their pods by.
fn selector(app: &str, component: &str) -> Value {
    map([
        ("app.kubernetes.io/name", s(app)),
        ("app.kubernetes.io/component", s(component)),
    ])
}

fn metadata(name: String, app: &str, component: &str, annotations: Option<Value>) -> Value {
    let mut meta = Mapping::new();
    meta.insert(s("name"), s(name));
    meta.insert(s("labels"), labels(app, component));
    if let Some(annotations) = annotations {
        meta.insert(s("annotations"), annotations);
    }
    Value::Mapping(meta)
}

/// A memory amount as a Kubernetes quantity, exact: `512Mi`, else `Ki`, else bytes.
fn quantity(bytes: u64) -> String {
    const MI: u64 = 1024 * 1024;
    match bytes {
        b if b % MI == 0 => format!("{}Mi", b / MI),
        b if b % 1024 == 0 => format!("{}Ki", b / 1024),
        b => b.to_string(),
    }
}

/// Requests at the dyno size's quota (where hkrun says R14), limits at twice it (where
/// hkrun's R15 kills).
fn resources(size: DynoSize) -> Value {
    map([
        ("requests", map([("memory", s(quantity(size.bytes)))])),
        (
            "limits",
            map([("memory", s(quantity(size.bytes.saturating_mul(2))))]),
        ),
    ])
}

/// A size as `hkrun start --dyno-size` takes it.
fn size_arg(size: DynoSize) -> String {
    match size.name {
        Some(name) => name.to_ascii_lowercase(),
        None => size.to_string(),
    }
}

fn grace_secs(export: &Export) -> u64 {
    export.grace.as_secs() + u64::from(export.grace.subsec_nanos() > 0)
}

fn seconds_arg(export: &Export) -> String {
    export.grace.as_secs_f64().to_string()
}

fn env_from(export: &Export) -> Value {
    Value::Sequence(vec![map([(
        "secretRef",
        map([("name", s(format!("{}-env", export.app)))]),
    )])])
}

fn helm_hook(weight: &str) -> Value {
    map([
        ("helm.sh/hook", s("pre-install,pre-upgrade")),
        ("helm.sh/hook-weight", s(weight)),
        ("helm.sh/hook-delete-policy", s("before-hook-creation")),
    ])
}

fn secret(export: &Export) -> Value {
    use base64::Engine;
    // Base64 (`data`), not `stringData`: a bare `yes` or `1_000` would reach kubectl as a
    // boolean or a number, and base64's alphabet never spells one.
    let vars: Mapping = export
        .env
        .iter()
        .map(|(k, v)| {
            let encoded = base64::engine::general_purpose::STANDARD.encode(v);
            (s(k.as_str()), s(encoded))
        })
        .collect();
    map([
        ("apiVersion", s("v1")),
        ("kind", s("Secret")),
        (
            "metadata",
            metadata(
                format!("{}-env", export.app),
                &export.app,
                "config",
                // The release hook runs before the chart's objects: its config comes first.
                export.helm_hooks.then(|| helm_hook("-10")),
            ),
        ),
        ("type", s("Opaque")),
        ("data", Value::Mapping(vars)),
    ])
}

/// SHA-256 of `parts`, each ended by a NUL, as 64 hex digits: the `checksum/config` that
/// Helm charts put in a pod template (README, "When one machine is not enough").
fn hash<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        context.update(part.as_bytes());
        context.update(&[0]);
    }
    context
        .finish()
        .as_ref()
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

/// The config vars' checksum: a changed Secret changes the pod template, so the pods
/// restart with it, as Heroku restarts an app on `config:set`.
fn config_checksum(export: &Export) -> String {
    hash(
        export
            .env
            .iter()
            .flat_map(|(k, v)| [k.as_str(), v.as_str()]),
    )
}

/// A new Job, so a new release phase, for a new command, image or config (Heroku makes a
/// release of each), and for a changed Job (its template cannot change in place).
fn release_hash(export: &Export, command: &str, image: &str) -> String {
    let checksum = config_checksum(export);
    let size = export.default_size.bytes.to_string();
    let grace = grace_secs(export).to_string();
    hash([
        command,
        image,
        checksum.as_str(),
        size.as_str(),
        grace.as_str(),
    ])[..10]
        .to_owned()
}

fn release_job(export: &Export, command: &str) -> Value {
    let image = export.image.as_deref().unwrap_or_default();
    let name = format!(
        "{}-release-{}",
        export.app,
        release_hash(export, command, image)
    );
    let size = export.default_size;
    let container = map([
        ("name", s("release")),
        ("image", s(image)),
        ("command", Value::Sequence(vec![s("hkrun")])),
        (
            "args",
            Value::Sequence(vec![s("run"), s("-e"), s("/dev/null"), s("release")]),
        ),
        ("envFrom", env_from(export)),
        ("resources", resources(size)),
    ]);
    map([
        ("apiVersion", s("batch/v1")),
        ("kind", s("Job")),
        (
            "metadata",
            metadata(
                name,
                &export.app,
                "release",
                export.helm_hooks.then(|| helm_hook("0")),
            ),
        ),
        (
            "spec",
            map([
                // A failed release stops the rollout, as a failed deploy does.
                ("backoffLimit", Value::from(0u32)),
                (
                    "template",
                    map([
                        (
                            "metadata",
                            map([("labels", labels(&export.app, "release"))]),
                        ),
                        (
                            "spec",
                            map([
                                ("restartPolicy", s("Never")),
                                (
                                    "terminationGracePeriodSeconds",
                                    Value::from(grace_secs(export) + KILL_MARGIN_SECS),
                                ),
                                ("containers", Value::Sequence(vec![container])),
                            ]),
                        ),
                    ]),
                ),
            ]),
        ),
    ])
}

fn deployment(export: &Export, ty: &ExportedType, name: &str) -> Value {
    let image = export.image.as_deref().unwrap_or_default();
    let args = [
        "start".to_owned(),
        "--no-release".to_owned(),
        "--no-router".to_owned(),
        "-m".to_owned(),
        format!("{}=1:{}", ty.name, size_arg(ty.size)),
        "-p".to_owned(),
        export.base_port.to_string(),
        "-t".to_owned(),
        seconds_arg(export),
        // The pod's name is the dyno's name (`DYNO`), as Heroku's dynos are named.
        "--dyno".to_owned(),
        "$(HKRUN_POD_NAME)".to_owned(),
    ];
    let mut container = Mapping::new();
    container.insert(s("name"), s(name));
    container.insert(s("image"), s(image));
    container.insert(s("command"), Value::Sequence(vec![s("hkrun")]));
    container.insert(s("args"), Value::Sequence(args.map(s).to_vec()));
    container.insert(
        s("env"),
        Value::Sequence(vec![
            // What hkrun gives the dyno (`-p` is the base of foreman's layout), shown
            // where Kubernetes shows a container's environment.
            map([("name", s("PORT")), ("value", s(ty.port.to_string()))]),
            map([
                ("name", s("HKRUN_POD_NAME")),
                (
                    "valueFrom",
                    map([("fieldRef", map([("fieldPath", s("metadata.name"))]))]),
                ),
            ]),
        ]),
    );
    container.insert(s("envFrom"), env_from(export));
    if ty.is_web() {
        container.insert(
            s("ports"),
            Value::Sequence(vec![map([
                ("name", s("http")),
                ("containerPort", Value::from(ty.port)),
                ("protocol", s("TCP")),
            ])]),
        );
        // hkrun's own rule: up once something listens on PORT.
        container.insert(
            s("readinessProbe"),
            map([
                ("tcpSocket", map([("port", Value::from(ty.port))])),
                ("periodSeconds", Value::from(1u32)),
                ("failureThreshold", Value::from(3u32)),
            ]),
        );
    }
    container.insert(s("resources"), resources(ty.size));
    // Web: new pods first, old ones stopped once the new are ready (preboot). Others:
    // stopped, then started, as Heroku restarts them (a clock never runs twice).
    let strategy = match ty.is_web() {
        true => map([
            ("type", s("RollingUpdate")),
            (
                "rollingUpdate",
                map([
                    ("maxSurge", s("100%")),
                    ("maxUnavailable", Value::from(0u32)),
                ]),
            ),
        ]),
        false => map([("type", s("Recreate"))]),
    };
    map([
        ("apiVersion", s("apps/v1")),
        ("kind", s("Deployment")),
        (
            "metadata",
            metadata(format!("{}-{name}", export.app), &export.app, name, None),
        ),
        (
            "spec",
            map([
                ("replicas", Value::from(ty.count)),
                (
                    "selector",
                    map([("matchLabels", selector(&export.app, name))]),
                ),
                ("strategy", strategy),
                (
                    "template",
                    map([
                        (
                            "metadata",
                            map([
                                ("labels", labels(&export.app, name)),
                                (
                                    "annotations",
                                    map([("checksum/config", s(config_checksum(export)))]),
                                ),
                            ]),
                        ),
                        (
                            "spec",
                            map([
                                (
                                    "terminationGracePeriodSeconds",
                                    Value::from(grace_secs(export) + KILL_MARGIN_SECS),
                                ),
                                (
                                    "containers",
                                    Value::Sequence(vec![Value::Mapping(container)]),
                                ),
                            ]),
                        ),
                    ]),
                ),
            ]),
        ),
    ])
}

fn service(export: &Export, name: &str) -> Value {
    map([
        ("apiVersion", s("v1")),
        ("kind", s("Service")),
        (
            "metadata",
            metadata(format!("{}-{name}", export.app), &export.app, name, None),
        ),
        (
            "spec",
            map([
                ("type", s("ClusterIP")),
                ("selector", selector(&export.app, name)),
                (
                    "ports",
                    Value::Sequence(vec![map([
                        ("name", s("http")),
                        ("port", Value::from(80u32)),
                        ("targetPort", s("http")),
                        ("protocol", s("TCP")),
                    ])]),
                ),
            ]),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_exact() {
        assert_eq!(quantity(512 << 20), "512Mi");
        assert_eq!(quantity(1536 << 10), "1536Ki");
        assert_eq!(quantity(1000), "1000");
    }

    #[test]
    fn the_release_hash_follows_command_image_and_config() {
        let mut export = crate::export::tests::shop();
        let a = release_hash(&export, "rake db:migrate", "app:1");
        assert_eq!(a.len(), 10);
        assert_eq!(a, release_hash(&export, "rake db:migrate", "app:1"));
        assert_ne!(a, release_hash(&export, "rake db:migrate", "app:2"));
        assert_ne!(a, release_hash(&export, "rake db:migrate ", "app:1"));
        export.env.insert("NEW".into(), "1".into());
        assert_ne!(a, release_hash(&export, "rake db:migrate", "app:1"));
    }
}
