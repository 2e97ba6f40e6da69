//! The commands around the app: shell completions and the man page from the clap
//! definitions, and `hkrun open`.

use std::process::Command;

use crate::harness::{App, client};

#[test]
fn bash_completes_sc_to_scale() {
    let app = App::new("web: true\n");
    let script = client(app.path(), &["completions", "bash"]);
    assert!(script.status.success(), "{}", script.stderr);
    app.write("hkrun.bash", &script.stdout);
    let complete = |line: &str| {
        let words: Vec<&str> = line.split(' ').collect();
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source hkrun.bash; COMP_WORDS=({line}); COMP_CWORD={}; COMP_LINE='{line}'; \
                 COMP_POINT=${{#COMP_LINE}}; _hkrun hkrun '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                words.len() - 1,
                words[words.len() - 1],
                words[words.len() - 2],
            ))
            .current_dir(app.path())
            .output()
            .expect("run bash");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    assert_eq!(complete("hkrun sc"), "scale\n");
    assert!(
        complete("hkrun export k").contains("kubernetes") || complete("hkrun e").contains("export")
    );
}

#[test]
fn the_man_page_and_every_shells_completions_generate() {
    let app = App::new("web: true\n");
    let man = client(app.path(), &["man"]);
    assert!(man.status.success(), "{}", man.stderr);
    assert!(
        man.stdout.starts_with(".ie \\n(.g .ds Aq") || man.stdout.contains(".TH hkrun 1"),
        "{}",
        &man.stdout[..200.min(man.stdout.len())]
    );
    for sub in ["start", "scale", "export", "config:set"] {
        assert!(man.stdout.contains(sub), "the man page leaves out {sub}");
    }
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = client(app.path(), &["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", out.stderr);
        assert!(out.stdout.contains("scale"), "{shell}");
    }
}

#[test]
fn open_prints_the_apps_url() {
    let app = App::new("worker: true\nweb: true\n");
    app.write(".env", "PORT=6000\n");
    // web is the second type: its block starts at 6100, where the router listens.
    let out = client(app.path(), &["open", "/admin"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout, "http://127.0.0.1:6100/admin\n");
    let no_web = App::new("worker: true\n");
    let out = client(no_web.path(), &["open"]);
    assert_eq!(out.status.code(), Some(65));
    assert_eq!(
        out.stderr,
        "hkrun: unknown process type `web` (the Procfile has worker)\n"
    );
}
