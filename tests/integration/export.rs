//! `hkrun export`: Kubernetes objects that the official schemas accept (kubernetes-validate,
//! offline, `--strict`) and that say what the formation says; systemd units that
//! `systemd-analyze verify` accepts; the same bytes every time; and bad input refused with
//! one line, writing nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_norway::Value;

use crate::harness::{App, free_base_port, run_to_end};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/hello/Procfile");

/// Three types, sizes, a release phase and config vars.
fn shop() -> App {
    let app = App::new(
        "release: bin/migrate\nweb: bin/web --port $PORT\nworker: bin/worker\nclock: bin/clock\n",
    );
    app.write(
        ".env",
        "DATABASE_URL=postgres://db/shop\nSECRET='s3 cr$t'\nFORCE_SSL=yes\nPORT=6000\n",
    );
    app
}

const SHOP_FORMATION: &str = "web=3:standard-2x,worker=2:performance-m,clock=1:768M";

/// Runs `hkrun export ARGS` in `dir`; its exit code, stdout and stderr.
fn export(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["export"];
    all.extend_from_slice(args);
    let (status, lines, stderr) = run_to_end(dir, &all);
    (status.code(), lines.join("\n"), stderr)
}

/// Every file under `dir` (links as `-> target`), by path: what was written, byte for byte.
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut found = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).expect("read the export") {
            let path = entry.expect("an entry").path();
            let meta = path.symlink_metadata().expect("stat");
            let relative = path.strip_prefix(dir).expect("under dir").to_owned();
            if meta.is_symlink() {
                let to = std::fs::read_link(&path).expect("readlink");
                found.insert(relative, format!("-> {}", to.display()).into_bytes());
            } else if meta.is_dir() {
                stack.push(path);
            } else {
                found.insert(relative, std::fs::read(&path).expect("read"));
            }
        }
    }
    found
}

fn yaml(dir: &Path, file: &str) -> Value {
    let text = std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn at<'a>(value: &'a Value, path: &str) -> &'a Value {
    path.split('.')
        .fold(value, |v, key| match key.parse::<usize>() {
            Ok(i) => &v[i],
            Err(_) => &v[key],
        })
}

/// kubernetes-validate against the official schemas it ships, offline and strict.
fn validate_kubernetes(dir: &Path) {
    let files: Vec<PathBuf> = contents(dir)
        .into_keys()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| dir.join(p))
        .collect();
    match Command::new("kubernetes-validate")
        .arg("--strict")
        .args(&files)
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "kubernetes-validate refused the export:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("kubernetes-validate is not installed (.ci/run installs it)")
        }
        Err(_) => eprintln!(
            "skipped: kubernetes-validate is not installed (pip install kubernetes-validate)"
        ),
    }
}

#[test]
fn kubernetes_objects_pass_the_official_schemas_and_say_what_the_formation_says() {
    // The example app, as the README's export.
    let out = tempfile::tempdir().expect("a temporary folder");
    let dir = out.path().join("k8s");
    let dir_arg = dir.to_str().expect("utf-8");
    let (code, stdout, stderr) = export(
        out.path(),
        &["kubernetes", dir_arg, "-f", EXAMPLE, "--image", "hello:1"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.starts_with("exported hello ("), "{stdout}");
    validate_kubernetes(&dir);

    // Three types with sizes.
    let app = shop();
    let shop_dir = app.path().join("deploy");
    let (code, _, stderr) = export(
        app.path(),
        &[
            "kubernetes",
            "deploy",
            "-m",
            SHOP_FORMATION,
            "--image",
            "ghcr.io/acme/shop:7",
            "--app",
            "shop",
            "-t",
            "20",
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    validate_kubernetes(&shop_dir);

    let names: Vec<String> = contents(&shop_dir)
        .into_keys()
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(
        names,
        [
            ".hkrun-export",
            "00-secret.yaml",
            "10-job-release.yaml",
            "20-deployment-clock.yaml",
            "20-deployment-web.yaml",
            "20-deployment-worker.yaml",
            "30-service-web.yaml",
        ]
    );
    // replicas, memory requests at the quota and limits at twice it, the grace.
    for (ty, replicas, request, limit) in [
        ("web", 3, "1024Mi", "2048Mi"),
        ("worker", 2, "2560Mi", "5120Mi"),
        ("clock", 1, "768Mi", "1536Mi"),
    ] {
        let d = yaml(&shop_dir, &format!("20-deployment-{ty}.yaml"));
        assert_eq!(at(&d, "metadata.name"), &Value::from(format!("shop-{ty}")));
        assert_eq!(at(&d, "spec.replicas"), &Value::from(replicas), "{ty}");
        let pod = at(&d, "spec.template.spec");
        assert_eq!(at(pod, "terminationGracePeriodSeconds"), &Value::from(25));
        let container = at(pod, "containers.0");
        assert_eq!(at(container, "image"), &Value::from("ghcr.io/acme/shop:7"));
        assert_eq!(at(container, "command.0"), &Value::from("hkrun"));
        let args: Vec<&str> = at(container, "args")
            .as_sequence()
            .expect("args")
            .iter()
            .map(|a| a.as_str().expect("a string"))
            .collect();
        assert!(args.contains(&"--no-router") && args.contains(&"$(HKRUN_POD_NAME)"));
        assert_eq!(
            at(container, "resources.requests.memory"),
            &Value::from(request)
        );
        assert_eq!(
            at(container, "resources.limits.memory"),
            &Value::from(limit)
        );
        assert_eq!(
            at(container, "envFrom.0.secretRef.name"),
            &Value::from("shop-env")
        );
        let labels = at(&d, "spec.template.metadata.labels");
        assert_eq!(labels["app.kubernetes.io/component"], Value::from(ty));
        assert_eq!(labels["app.kubernetes.io/managed-by"], Value::from("hkrun"));
    }
    // Web: PORT (foreman's layout from the .env's 6000: web is the first type), hkrun's
    // readiness rule as a probe, and preboot as a rolling update.
    let web = yaml(&shop_dir, "20-deployment-web.yaml");
    let container = at(&web, "spec.template.spec.containers.0");
    assert_eq!(at(container, "ports.0.containerPort"), &Value::from(6000));
    assert_eq!(at(container, "env.0.name"), &Value::from("PORT"));
    assert_eq!(at(container, "env.0.value"), &Value::from("6000"));
    assert_eq!(
        at(container, "readinessProbe.tcpSocket.port"),
        &Value::from(6000)
    );
    assert_eq!(
        at(&web, "spec.strategy.type"),
        &Value::from("RollingUpdate")
    );
    assert_eq!(
        at(&web, "spec.strategy.rollingUpdate.maxSurge"),
        &Value::from("100%")
    );
    assert_eq!(
        at(&web, "spec.strategy.rollingUpdate.maxUnavailable"),
        &Value::from(0)
    );
    let worker = yaml(&shop_dir, "20-deployment-worker.yaml");
    assert_eq!(at(&worker, "spec.strategy.type"), &Value::from("Recreate"));
    assert!(at(&worker, "spec.template.spec.containers.0.readinessProbe").is_null());

    let service = yaml(&shop_dir, "30-service-web.yaml");
    assert_eq!(
        at(&service, "spec.ports.0.targetPort"),
        &Value::from("http")
    );
    assert_eq!(
        at(&service, "spec.selector")["app.kubernetes.io/component"],
        Value::from("web")
    );

    // Config vars from the env files (base64), PORT left to hkrun; readable by its owner
    // only; their checksum in the pod template, so a change restarts the pods.
    let secret = yaml(&shop_dir, "00-secret.yaml");
    assert_eq!(at(&secret, "kind"), &Value::from("Secret"));
    let vars = at(&secret, "data").as_mapping().expect("data");
    assert_eq!(vars.len(), 3);
    let decoded = |key: &str| {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(vars[key].as_str().expect("a string"))
            .expect("base64");
        String::from_utf8(bytes).expect("utf-8")
    };
    assert_eq!(decoded("SECRET"), "s3 cr$t");
    // YAML 1.1 would read a bare `yes` as a boolean: base64 never spells one.
    assert_eq!(decoded("FORCE_SSL"), "yes");
    assert!(
        at(&web, "spec.template.metadata.annotations")["checksum/config"]
            .as_str()
            .is_some_and(|c| c.len() == 64)
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(shop_dir.join("00-secret.yaml"))
        .expect("stat")
        .permissions();
    assert_eq!(mode.mode() & 0o777, 0o600);

    // The release phase: a Job that runs once, named after its command and image.
    let job = yaml(&shop_dir, "10-job-release.yaml");
    let name = at(&job, "metadata.name").as_str().expect("name");
    assert!(name.starts_with("shop-release-") && name.len() == "shop-release-".len() + 10);
    assert_eq!(at(&job, "spec.backoffLimit"), &Value::from(0));
    assert_eq!(
        at(&job, "spec.template.spec.restartPolicy"),
        &Value::from("Never")
    );
    assert_eq!(
        at(&job, "spec.template.spec.containers.0.args"),
        &Value::from(vec!["run", "-e", "/dev/null", "release"])
    );
    assert!(
        at(&job, "metadata.annotations").is_null(),
        "no Helm hook unless asked"
    );
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let app = shop();
    let (code, _, stderr) = export(
        app.path(),
        &[
            "systemd",
            "units",
            "-m",
            SHOP_FORMATION,
            "--app",
            "shop",
            "-t",
            "12.5",
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let dir = app.path().join("units");
    let files = contents(&dir);
    let wants: Vec<String> = files
        .keys()
        .filter(|p| p.starts_with("shop.target.wants"))
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        wants,
        [
            "shop-clock@1.service",
            "shop-web@1.service",
            "shop-web@2.service",
            "shop-web@3.service",
            "shop-worker@1.service",
            "shop-worker@2.service",
        ]
    );
    let web = String::from_utf8(files[Path::new("shop-web@.service")].clone()).expect("utf-8");
    for line in [
        "Environment=DYNO=web.%i PS=web.%i",
        "ExecStart=/bin/sh -c \"export PORT=$$((6000 + %i - 1)); exec bin/web --port $$PORT\"",
        "Restart=always",
        "KillMode=control-group",
        "TimeoutStopSec=12500ms",
        "MemoryHigh=1073741824",
        "MemoryMax=2147483648",
        "Requires=shop-release.service",
    ] {
        assert!(web.lines().any(|l| l == line), "no `{line}` in:\n{web}");
    }
    let env_file = format!("EnvironmentFile={}", dir.join("shop.env").display());
    assert!(web.contains(&env_file), "{web}");
    let release =
        String::from_utf8(files[Path::new("shop-release.service")].clone()).expect("utf-8");
    assert!(
        release.contains("Type=oneshot\nRemainAfterExit=yes\n"),
        "{release}"
    );

    // Every unit, as systemd would load it with the formation's instances.
    let mut units: Vec<PathBuf> = files
        .keys()
        .filter(|p| {
            p.starts_with("shop.target.wants") || p.extension().is_some_and(|e| e == "target")
        })
        .map(|p| dir.join(p))
        .collect();
    units.push(dir.join("shop-release.service"));
    let out = match Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&units)
        .output()
    {
        Ok(out) => out,
        Err(_) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "systemd-analyze is not installed (.ci/run installs it)"
            );
            eprintln!("skipped: systemd-analyze is not installed (Debian's systemd package)");
            return;
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    // systemd before 254 does not know the back-off keys; it warns and restarts every second.
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| {
            !l.contains("Unknown key 'RestartSteps'")
                && !l.contains("Unknown key 'RestartMaxDelaySec'")
        })
        .collect();
    assert!(
        out.status.success() && complaints.is_empty(),
        "systemd-analyze verify:\n{stderr}"
    );
}

#[test]
fn the_same_input_gives_the_same_bytes() {
    let app = shop();
    for format in ["kubernetes", "systemd"] {
        let mut runs = Vec::new();
        for run in ["a", "b"] {
            let dir = format!("{format}-{run}");
            let (code, _, stderr) = export(
                app.path(),
                &[
                    format,
                    &dir,
                    "-m",
                    SHOP_FORMATION,
                    "--image",
                    "shop:1",
                    "--app",
                    "shop",
                ],
            );
            assert_eq!(code, Some(0), "{stderr}");
            let mut files = contents(&app.path().join(&dir));
            // systemd's units name their own folder (EnvironmentFile=): the one difference.
            for bytes in files.values_mut() {
                let text = String::from_utf8_lossy(bytes).replace(&dir, "DIR");
                *bytes = text.into_bytes();
            }
            runs.push(files);
        }
        assert_eq!(runs[0], runs[1], "{format}");
    }
}

#[test]
fn bad_input_is_refused_in_one_line_and_nothing_is_written() {
    let app = shop();
    let taken = app.path().join("taken");
    std::fs::create_dir(&taken).expect("mkdir");
    std::fs::write(taken.join("mine.txt"), "not hkrun's").expect("write");
    app.write("a-file", "");
    let before = contents(app.path());
    let cases: [(&[&str], i32, &str); 7] = [
        (
            &["upstart", "out"],
            65,
            "hkrun: unknown export format `upstart` (expected kubernetes or systemd)",
        ),
        (
            &["kubernetes", "out"],
            65,
            "hkrun: kubernetes needs the image that holds the app and hkrun: give it with --image",
        ),
        (
            &["systemd", "out", "-m", "web=1,db=1"],
            65,
            "hkrun: unknown process type `db`",
        ),
        (
            &["systemd", "taken"],
            65,
            "hkrun: taken: not empty (--force replaces an earlier export)",
        ),
        (
            &["systemd", "taken", "--force"],
            65,
            "hkrun: taken: holds files hkrun did not export; --force replaces only an earlier export",
        ),
        (
            &["systemd", "a-file/out"],
            73,
            "hkrun: a-file/out: cannot write: Not a directory (os error 20)",
        ),
        (
            &["systemd", "out", "--app", "Shop_1"],
            65,
            "hkrun: bad app name `Shop_1`",
        ),
    ];
    for (args, code, message) in cases {
        let (got, stdout, stderr) = export(app.path(), args);
        assert_eq!(got, Some(code), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with(message), "{args:?}: {stderr}");
        assert_eq!(stdout, "", "{args:?}");
        assert_eq!(contents(app.path()), before, "{args:?} wrote something");
    }
}

#[test]
fn force_replaces_an_earlier_export_whole() {
    let app = shop();
    let run = |formation: &str| {
        let (code, _, stderr) = force_units(&app, formation);
        assert_eq!(code, Some(0), "{stderr}");
        contents(&app.path().join("units"))
    };
    let first = run(SHOP_FORMATION);
    assert!(first.contains_key(Path::new("shop.target.wants/shop-web@3.service")));
    let second = run("web=1");
    assert!(second.contains_key(Path::new("shop.target.wants/shop-web@1.service")));
    assert!(
        !second.contains_key(Path::new("shop.target.wants/shop-web@3.service")),
        "a file of the earlier export is left"
    );
    // Nothing beside the folder: no staging folder, no earlier export left over.
    let mut beside: Vec<String> = std::fs::read_dir(app.path())
        .expect("read")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    beside.sort();
    assert_eq!(beside, [".env", "Procfile", "units"]);
}

#[test]
fn a_pods_name_is_its_dynos_name() {
    let app = App::new("web: echo \"DYNO=$DYNO PS=$PS\"\n");
    let port = free_base_port().to_string();
    let (status, lines, stderr) = run_to_end(
        app.path(),
        &[
            "start",
            "-p",
            &port,
            "--no-timestamp",
            "--restart",
            "never",
            "--no-router",
            "--dyno",
            "shop-web-5d9f8-x2x7q",
        ],
    );
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        lines
            .iter()
            .any(|l| l == "web.1  | DYNO=shop-web-5d9f8-x2x7q PS=shop-web-5d9f8-x2x7q"),
        "{lines:#?}"
    );
    // One name for one dyno.
    let (status, _, stderr) = run_to_end(app.path(), &["start", "-m", "web=2", "--dyno", "x"]);
    assert_eq!(status.code(), Some(65));
    assert_eq!(
        stderr,
        "hkrun: bad value `x` for --dyno: it names the one dyno of a formation, and this one runs more\n"
    );
}

/// `hkrun export systemd units -m FORMATION --app shop --force`: its exit code, stdout
/// and stderr.
fn force_units(app: &App, formation: &str) -> (Option<i32>, String, String) {
    export(
        app.path(),
        &[
            "systemd", "units", "-m", formation, "--app", "shop", "--force",
        ],
    )
}

#[test]
fn force_never_removes_a_file_hkrun_did_not_write() {
    let app = shop();
    let run = |formation: &str| force_units(&app, formation);
    let (code, _, stderr) = run(SHOP_FORMATION);
    assert_eq!(code, Some(0), "{stderr}");
    let mark = std::fs::read_to_string(app.path().join("units/.hkrun-export")).expect("mark");
    assert!(mark.contains("\nshop.target\n"), "{mark}");
    // A user's own files beside hkrun's, at the top and in a folder hkrun wrote.
    std::fs::write(app.path().join("units/notes.txt"), "mine\n").expect("write");
    std::fs::write(
        app.path().join("units/shop.target.wants/override.conf"),
        "mine\n",
    )
    .expect("write");
    let before = contents(&app.path().join("units"));
    let (code, stdout, stderr) = run("web=1");
    eprintln!("{}", stderr.trim());
    assert_eq!(code, Some(65), "{stdout} {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("notes.txt") && stderr.contains("shop.target.wants/override.conf"),
        "{stderr}"
    );
    assert_eq!(
        contents(&app.path().join("units")),
        before,
        "the folder changed"
    );
    // Moved away, the earlier export is replaced whole.
    std::fs::remove_file(app.path().join("units/notes.txt")).expect("remove");
    std::fs::remove_file(app.path().join("units/shop.target.wants/override.conf")).expect("remove");
    let (code, _, stderr) = run("web=1");
    assert_eq!(code, Some(0), "{stderr}");
    let mut beside: Vec<String> = std::fs::read_dir(app.path())
        .expect("read")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    beside.sort();
    assert_eq!(beside, [".env", "Procfile", "units"]);
}

#[test]
fn force_replaces_an_export_whose_mark_lists_no_files_as_before() {
    let app = shop();
    let run = |formation: &str| force_units(&app, formation);
    let (code, _, stderr) = run(SHOP_FORMATION);
    assert_eq!(code, Some(0), "{stderr}");
    // A mark as hkrun wrote them before marks listed their files.
    std::fs::write(
        app.path().join("units/.hkrun-export"),
        "Written by `hkrun export systemd`; `hkrun export --force` replaces this folder.\n",
    )
    .expect("write the mark");
    std::fs::write(app.path().join("units/notes.txt"), "mine\n").expect("write");
    let (code, _, stderr) = run("web=1");
    assert_eq!(code, Some(65), "{stderr}");
    assert!(stderr.contains("(notes.txt)"), "{stderr}");
    // Units of dynos scaled away since are hkrun's all the same.
    std::fs::remove_file(app.path().join("units/notes.txt")).expect("remove");
    let (code, _, stderr) = run("web=1");
    assert_eq!(code, Some(0), "{stderr}");
    let after = contents(&app.path().join("units"));
    assert!(!after.contains_key(Path::new("shop.target.wants/shop-web@3.service")));
}
