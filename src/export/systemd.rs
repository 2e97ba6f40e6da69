//! The formation as systemd units: `APP.target`, a template unit per process type
//! (`APP-web@.service`, instance N is web.N), `APP-release.service` ordered before them,
//! the formation's instances as `APP.target.wants/` links, and the config vars in
//! `APP.env`. systemd restarts, stops and limits each dyno as hkrun would (README, "When
//! one machine is not enough").

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use super::{Contents, Export, ExportError, ExportedType, File};
use crate::os::process::exec_form;

pub(crate) fn render(export: &Export, dir: &Path) -> Result<Vec<File>, ExportError> {
    let app = &export.app;
    // systemd drops an assignment whose name is not a shell variable's.
    if let Some(key) = export
        .env
        .keys()
        .find(|k| !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        return Err(ExportError::SystemdKey(key.clone()));
    }
    let env_file = dir.join(format!("{app}.env"));
    let mut files = vec![
        File {
            path: format!("{app}.env"),
            contents: Contents::Secret(env_text(export)),
        },
        File {
            path: format!("{app}.target"),
            contents: Contents::Text(target(export)),
        },
    ];
    if let Some(command) = &export.release {
        files.push(File {
            path: format!("{app}-release.service"),
            contents: Contents::Text(release(export, command, &env_file)),
        });
    }
    for ty in &export.types {
        files.push(File {
            path: format!("{app}-{}@.service", ty.name),
            contents: Contents::Text(dyno_unit(export, ty, &env_file)),
        });
    }
    for ty in &export.types {
        for n in 1..=ty.count {
            files.push(File {
                path: format!("{app}.target.wants/{app}-{}@{n}.service", ty.name),
                contents: Contents::Link(format!("../{app}-{}@.service", ty.name)),
            });
        }
    }
    Ok(files)
}

/// The config vars as `EnvironmentFile=` reads them: each value double-quoted, with `\`,
/// `"`, `` ` `` and `$` escaped; a newline stays as it is, inside the quotes.
fn env_text(export: &Export) -> String {
    let mut text = format!(
        "# {}'s config vars, from its env files (hkrun export).\n",
        export.app
    );
    for (key, value) in &export.env {
        let mut quoted = String::with_capacity(value.len() + 2);
        for c in value.chars() {
            if matches!(c, '\\' | '"' | '`' | '$') {
                quoted.push('\\');
            }
            quoted.push(c);
        }
        let _ = writeln!(text, "{key}=\"{quoted}\"");
    }
    text
}

/// A command line as one quoted argument of `/bin/sh -c` in `ExecStart=`, after `head`
/// (which is written as systemd reads it): systemd unquotes `\` and `"`, and expands `%`
/// specifiers and `$` variables in the command unless doubled.
fn exec_arg(head: &str, script: &str) -> String {
    let mut out = String::with_capacity(head.len() + script.len() + 2);
    out.push('"');
    out.push_str(head);
    for c in script.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A duration as systemd reads it: whole seconds, else milliseconds; never `0`, which
/// systemd reads as no timeout at all.
fn timespan(d: Duration) -> String {
    match (d.as_millis(), d.subsec_millis()) {
        (0, _) => "1ms".to_owned(),
        (_, 0) => format!("{}s", d.as_secs()),
        (ms, _) => format!("{ms}ms"),
    }
}

/// A path in a unit file: systemd reads `%` as a specifier.
fn unit_path(path: &Path) -> String {
    path.display().to_string().replace('%', "%%")
}

fn target(export: &Export) -> String {
    format!(
        "\
[Unit]
Description={app}: every dyno of its formation (hkrun export)
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target
",
        app = export.app
    )
}

/// What every unit of the app shares: where it runs and its config vars.
fn service_common(export: &Export, env_file: &Path) -> String {
    format!(
        "\
WorkingDirectory={root}
EnvironmentFile={env}
Environment=PYTHONUNBUFFERED=1
",
        root = unit_path(&export.root),
        env = unit_path(env_file),
    )
}

fn release(export: &Export, command: &str, env_file: &Path) -> String {
    format!(
        "\
[Unit]
Description={app}: the release phase, before the dynos start (hkrun export)
PartOf={app}.target
After=network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes
{common}Environment=DYNO=release.1 PS=release.1
ExecStart=/bin/sh -c {exec}
TimeoutStartSec=1h
SyslogIdentifier={app}-release
",
        app = export.app,
        common = service_common(export, env_file),
        exec = exec_arg("", &exec_form(command)),
    )
}

fn dyno_unit(export: &Export, ty: &ExportedType, env_file: &Path) -> String {
    let app = &export.app;
    let name = &ty.name;
    let mut unit = String::new();
    let _ = write!(
        unit,
        "\
[Unit]
Description={app}: {name}.%i dyno (hkrun export)
PartOf={app}.target
After=network-online.target
"
    );
    if export.release.is_some() {
        // A failed release starts no dyno, as a failed deploy.
        let _ = writeln!(unit, "Requires={app}-release.service");
        let _ = writeln!(unit, "After={app}-release.service");
    }
    // Restarted however often it crashes, as hkrun does; its back-off, 1 s doubling up to
    // 5 min, is `RestartSteps=` (systemd 254 and later; earlier ones restart every second
    // and warn of the two keys).
    unit.push_str("StartLimitIntervalSec=0\n\n[Service]\n");
    unit.push_str(&service_common(export, env_file));
    // foreman's ports without a router: the type's block, one port per instance (`%i`,
    // and `$$` for the shell's `$`).
    let head = format!("export PORT=$$(({} + %i - 1)); ", ty.port);
    let _ = write!(
        unit,
        "\
Environment=DYNO={name}.%i PS={name}.%i
ExecStart=/bin/sh -c {exec}
Restart=always
RestartSec=1
RestartSteps=9
RestartMaxDelaySec=5min
KillMode=control-group
TimeoutStopSec={grace}
MemoryHigh={high}
MemoryMax={max}
SyslogIdentifier={app}-{name}.%i

[Install]
WantedBy={app}.target
",
        exec = exec_arg(&head, &exec_form(&ty.command)),
        grace = timespan(export.grace),
        high = ty.size.bytes,
        max = ty.size.bytes.saturating_mul(2),
    );
    unit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_lines_keep_the_command_as_the_shell_would_see_it() {
        assert_eq!(
            exec_arg("", r#"echo "$HOME" 100% \n"#),
            r#""echo \"$$HOME\" 100%% \\n""#
        );
        assert_eq!(
            exec_arg("export PORT=$$((5000 + %i - 1)); ", "exec echo $PORT"),
            r#""export PORT=$$((5000 + %i - 1)); exec echo $$PORT""#
        );
    }

    #[test]
    fn timespans() {
        assert_eq!(timespan(Duration::from_secs(30)), "30s");
        assert_eq!(timespan(Duration::from_millis(2500)), "2500ms");
        assert_eq!(timespan(Duration::ZERO), "1ms");
        assert_eq!(unit_path(Path::new("/srv/50%off")), "/srv/50%%off");
    }
}
