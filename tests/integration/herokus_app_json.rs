//! Heroku's `app.json`: its formation is the default formation, its `env` entries are
//! defaults below `.env`, `required` ones must be set, `generator: "secret"` ones are made
//! once and kept in `.env`.

use crate::harness::{App, Hk, client, free_base_port, hkrun, unique_tag};

const APP_JSON: &str = r#"{
  "name": "shop",
  "description": "keys hkrun has no use for are left alone",
  "formation": {"web": {"quantity": 2, "size": "standard-2x"}, "worker": {"quantity": 1}},
  "env": {
    "GREETING": "hello there",
    "RAILS_ENV": {"value": "production"},
    "SECRET_KEY_BASE": {"generator": "secret"},
    "OPTIONAL": {"required": false}
  },
  "addons": ["heroku-postgresql"]
}"#;

#[test]
fn the_formation_is_app_jsons_unless_one_is_given() {
    let app = App::new("web: serve\nworker: work\nclock: tick\n");
    app.write("app.json", APP_JSON);
    let out = client(app.path(), &["check", "--no-router", "-p", "5000"]);
    assert!(out.status.success(), "{}", out.stderr);
    let dynos: Vec<&str> = out
        .stdout
        .lines()
        .skip(1)
        // The plan, before the settings app.json's formation brings in.
        .take_while(|l| !l.starts_with("settings"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(dynos, ["web.1", "web.2", "worker.1"], "{}", out.stdout);
    let out = client(app.path(), &["check", "-m", "clock=1", "-p", "5000"]);
    assert!(
        out.stdout.contains("clock.1") && !out.stdout.contains("web.1"),
        "{}",
        out.stdout
    );
    // A type the Procfile lacks is refused, naming app.json.
    app.write("app.json", r#"{"formation": {"db": {"quantity": 1}}}"#);
    let out = client(app.path(), &["check"]);
    assert_eq!(out.status.code(), Some(65));
    assert_eq!(
        out.stderr,
        "hkrun: app.json: formation: unknown process type `db` (the Procfile has web, worker, clock)\n"
    );
}

/// The worker's line, from a start of one worker that prints `$NAME`s and exits.
fn printed(app: &App, vars: &[(&str, &str)]) -> Result<String, String> {
    let port = free_base_port().to_string();
    let args = [
        "start",
        "--no-timestamp",
        "--restart",
        "never",
        "-m",
        "worker=1",
        "-p",
        &port,
    ];
    let mut command = hkrun(app.path(), &args, &unique_tag());
    command.envs(vars.iter().copied());
    let mut hk = Hk::spawn(command);
    let status = hk.wait_exit();
    let stderr = hk.stderr();
    match status.success() {
        true => hk
            .seen
            .iter()
            .find_map(|l| l.strip_prefix("worker.1 | got ").map(str::to_owned))
            .ok_or(format!("{:?}", hk.seen)),
        false => Err(stderr),
    }
}

#[test]
fn env_defaults_sit_below_the_env_files_and_secrets_are_made_once() {
    let app = App::new("worker: echo \"got $GREETING|$RAILS_ENV|$SECRET_KEY_BASE\"\n");
    app.write("app.json", APP_JSON);
    app.write(".env", "# local\nRAILS_ENV=development\n");
    let first = printed(&app, &[]).expect("started");
    let words: Vec<&str> = first.split('|').collect();
    assert_eq!(words[..2], ["hello there", "development"], "{first}");
    let secret = words[2];
    assert!(
        secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_hexdigit()),
        "{first}"
    );
    let dotenv = std::fs::read_to_string(app.file(".env")).expect("read .env");
    assert_eq!(
        dotenv,
        format!("# local\nRAILS_ENV=development\nSECRET_KEY_BASE={secret}\n")
    );
    // The next start keeps it.
    assert_eq!(printed(&app, &[]), Ok(first));
}

#[test]
fn a_required_config_var_set_nowhere_is_refused() {
    let app = App::new("worker: echo \"got $API_KEY\"\n");
    app.write(
        "app.json",
        r#"{"env": {"API_KEY": {"description": "from the provider"}}}"#,
    );
    assert_eq!(
        printed(&app, &[]),
        Err("hkrun: app.json: config var API_KEY is required and set nowhere (set it with `hkrun config:set API_KEY=...`)\n".into())
    );
    assert_eq!(
        printed(&app, &[("API_KEY", "k1")]),
        Ok("k1".into()),
        "from the environment"
    );
    app.write(".env", "API_KEY=k2\n");
    assert_eq!(printed(&app, &[]), Ok("k2".into()), "from .env");
}

#[test]
fn a_restart_after_config_set_keeps_app_jsons_defaults() {
    let app = App::new("worker: echo \"got $GREETING|$EXTRA\"; exec sleep 1000\n");
    app.write("app.json", r#"{"env": {"GREETING": "hello there"}}"#);
    let port = free_base_port().to_string();
    let mut hk = Hk::start(
        app.path(),
        &["start", "--no-timestamp", "-t", "2", "-p", &port],
    );
    hk.wait_for("worker.1 | got hello there|");
    let out = client(app.path(), &["config:set", "EXTRA=1"]);
    assert!(out.status.success(), "{}", out.stderr);
    hk.wait_for("worker.1 | got hello there|1");
    hk.stop_cleanly();
}

/// `hkrun start` of an app whose release, postdeploy and worker each add a line to
/// `order.txt`; hkrun's exit code.
fn start_and_finish(app: &App) -> Option<i32> {
    let port = free_base_port().to_string();
    let args = ["start", "--no-timestamp", "--restart", "never", "-p", &port];
    let mut hk = Hk::spawn(hkrun(app.path(), &args, &unique_tag()));
    hk.wait_exit().code()
}

#[test]
fn postdeploy_runs_once_after_the_first_successful_release() {
    let app = App::new("release: echo release >> order.txt\nworker: echo worker >> order.txt\n");
    app.write(
        "app.json",
        r#"{"scripts": {"postdeploy": "echo postdeploy >> order.txt; exit ${FAIL:-0}"}}"#,
    );
    let order = || std::fs::read_to_string(app.file("order.txt")).unwrap_or_default();
    // A failed postdeploy stops the start as a failed release does, and is not recorded.
    app.write(".env", "FAIL=4\n");
    assert_eq!(start_and_finish(&app), Some(4));
    assert_eq!(order(), "release\npostdeploy\n");
    assert!(!app.file(".hkrun-state.toml").exists());

    app.write(".env", "FAIL=0\n");
    std::fs::remove_file(app.file("order.txt")).unwrap();
    assert_eq!(start_and_finish(&app), Some(0));
    assert_eq!(order(), "release\npostdeploy\nworker\n");
    let state = std::fs::read_to_string(app.file(".hkrun-state.toml")).unwrap();
    assert!(
        state.contains("[postdeploy]\ncommand = \"echo postdeploy >> order.txt; exit ${FAIL:-0}\""),
        "{state}"
    );
    // Never again: the release runs on every start, postdeploy did once.
    assert_eq!(start_and_finish(&app), Some(0));
    assert_eq!(order(), "release\npostdeploy\nworker\nrelease\nworker\n");
    // `--no-release` skips both; deleting the state runs it again.
    std::fs::remove_file(app.file(".hkrun-state.toml")).unwrap();
    let port = free_base_port().to_string();
    let args = ["start", "--no-release", "--restart", "never", "-p", &port];
    let mut hk = Hk::spawn(hkrun(app.path(), &args, &unique_tag()));
    assert!(hk.wait_exit().success());
    assert_eq!(
        order(),
        "release\npostdeploy\nworker\nrelease\nworker\nworker\n"
    );
    assert_eq!(start_and_finish(&app), Some(0));
    assert!(
        order().ends_with("worker\nrelease\npostdeploy\nworker\n"),
        "{}",
        order()
    );
}

/// Runs `hkrun check` and `hkrun start` of `app` and asserts each refuses it with exit
/// 65 and the one stderr line `message`, starting nothing.
#[track_caller]
fn both_refuse(app: &App, message: &str) {
    for command in ["check", "start"] {
        let port = free_base_port().to_string();
        let (status, lines, stderr) =
            crate::harness::run_to_end(app.path(), &[command, "-p", &port]);
        assert_eq!(status.code(), Some(65), "{command}: {stderr}{lines:#?}");
        assert_eq!(stderr, format!("{message}\n"), "{command}");
        assert!(!app.file("started").exists(), "{command} started a dyno");
    }
}

#[test]
fn env_values_exec_could_never_pass_are_refused_naming_app_json_and_the_key() {
    let app = App::new("worker: touch started\n");
    app.write(
        "app.json",
        r#"{"env": {"A": "1", "B": {"value": "x\u0000y"}}}"#,
    );
    both_refuse(
        &app,
        "hkrun: app.json: env `B`: a variable cannot hold a NUL byte (no process can be given it)",
    );
    // Over exec's limit for one string (MAX_ARG_STRLEN), even where .env sets the key.
    let big = "x".repeat(200_000);
    app.write("app.json", &format!(r#"{{"env": {{"BIG": "{big}"}}}}"#));
    both_refuse(
        &app,
        "hkrun: app.json: env `BIG` is too large for exec: `BIG=value` is 200004 bytes, at most 131071 may be passed",
    );
    app.write(".env", "BIG=small\n");
    both_refuse(
        &app,
        "hkrun: app.json: env `BIG` is too large for exec: `BIG=value` is 200004 bytes, at most 131071 may be passed",
    );
}

#[test]
fn an_app_json_not_of_herokus_schema_is_refused_in_one_line() {
    let app = App::new("worker: touch started\n");
    for (json, message) in [
        (
            "[]",
            "hkrun: app.json: the top level is an array, where Heroku's app.json has an object (name, env, formation, scripts...)",
        ),
        (
            "\"shop\"",
            "hkrun: app.json: the top level is a string, where Heroku's app.json has an object (name, env, formation, scripts...)",
        ),
        (
            "{\n  \"env\": {\n    \"A\": 5\n  }\n}",
            "hkrun: app.json: env `A` is a number: expected a string, or an object with description, value, required and generator",
        ),
        (
            r#"{"env": {"A": {"value": []}}}"#,
            "hkrun: app.json: env `A`: value is an array: expected a string",
        ),
        (
            r#"{"env": {"A": {"description": "x", "required": "yes"}}}"#,
            "hkrun: app.json: env `A`: required is a string: expected true or false",
        ),
        (
            r#"{"env": {"A": {"generator": "uuid"}}}"#,
            "hkrun: app.json: env `A`: generator `uuid`: expected \"secret\", the one generator Heroku has",
        ),
    ] {
        app.write("app.json", json);
        both_refuse(&app, message);
    }
}

#[test]
fn one_offs_keep_their_names_under_dyno() {
    let app = App::new("release: echo \"DYNO=$DYNO PS=$PS\"\nworker: echo \"DYNO=$DYNO PS=$PS\"\n");
    app.write(
        "app.json",
        r#"{"scripts": {"postdeploy": "echo \"DYNO=$DYNO PS=$PS\""}}"#,
    );
    let port = free_base_port().to_string();
    let (status, lines, stderr) = crate::harness::run_to_end(
        app.path(),
        &[
            "start",
            "--no-timestamp",
            "--restart",
            "never",
            "-p",
            &port,
            "--dyno",
            "shop-worker-7c9d-q2x",
        ],
    );
    assert_eq!(status.code(), Some(0), "{stderr}");
    // Each dyno's name (its label) and what it printed.
    let said: Vec<(&str, &str)> = lines
        .iter()
        .filter_map(|l| l.split_once(" | "))
        .filter(|(_, text)| text.starts_with("DYNO="))
        .map(|(name, text)| (name.trim_end(), text))
        .collect();
    assert_eq!(
        said,
        [
            ("release.1", "DYNO=release.1 PS=release.1"),
            ("postdeploy.1", "DYNO=postdeploy.1 PS=postdeploy.1"),
            (
                "worker.1",
                "DYNO=shop-worker-7c9d-q2x PS=shop-worker-7c9d-q2x"
            ),
        ],
        "{lines:#?}"
    );
}
