//! `hkrun export FORMAT DIR`: what the Procfile, the env files and the flags say, resolved
//! as `start` resolves them (`resolve`), rendered by `export` and written all at once.

use std::path::{Path, PathBuf};

use crate::cli::ExportArgs;
use crate::config::{self, App};
use crate::errors::Error;
use crate::export::{
    Export, ExportError, ExportedType, Format, kubernetes, systemd, valid_app_name, write,
};
use crate::plan::ports;

/// `hkrun export`.
pub(crate) fn export(args: &ExportArgs) -> Result<i32, Error> {
    let format: Format = args.format.parse()?;
    if format == Format::Kubernetes && args.image.is_none() {
        return Err(ExportError::NoImage.into());
    }
    let export = resolve(args)?;
    // Checked before anything is rendered or written.
    let files = match format {
        Format::Kubernetes => kubernetes::render(&export)?,
        Format::Systemd => systemd::render(&export, &canonical_target(&args.dir)?)?,
    };
    write::check_target(&args.dir, args.force, &files)?;
    write::replace(&args.dir, format, &files)?;
    let text = format!(
        "exported {} ({} files) to {}\n",
        export.app,
        files.len(),
        args.dir.display()
    );
    crate::errors::print_out(&text)?;
    Ok(0)
}

/// What `args` export, as `start` would resolve them.
fn resolve(args: &ExportArgs) -> Result<Export, Error> {
    let app = App::load(&args.files, false)?;
    for warning in &app.warnings {
        crate::errors::warn(warning);
    }
    let plans = config::plans(&app, &args.formation, &[])?;
    let grace = args.timeout.0;
    // Resolved: systemd refuses a path with `..` in it.
    let root = std::fs::canonicalize(&app.root).or_else(|_| absolute(&app.root))?;
    let name = match &args.app {
        Some(name) if valid_app_name(name) => name.clone(),
        Some(name) => return Err(ExportError::BadAppName(name.clone()).into()),
        None => config::app_name(&root),
    };
    let mut types = Vec::new();
    for plan in &plans {
        let port = ports::dyno_port(app.base_port, plan.index, 1, false, &plan.name)?;
        // The last dyno's port must exist too.
        if plan.count > 1 {
            ports::dyno_port(
                app.base_port,
                plan.index,
                plan.count,
                false,
                &format!("{}.{}", plan.name, plan.count),
            )?;
        }
        types.push(ExportedType {
            name: plan.name.clone(),
            command: plan.command.clone(),
            count: plan.count,
            size: plan.size,
            port,
        });
    }
    let mut env = app.env.clone();
    env.remove("PORT");
    Ok(Export {
        app: name,
        root,
        base_port: app.base_port,
        types,
        release: app.procfile().release().map(|e| e.command.clone()),
        default_size: args.formation.dyno_size,
        env,
        grace,
        image: args.image.clone(),
        helm_hooks: args.helm_hooks,
    })
}

/// DIR as it will be once written, without `.` or `..` (systemd refuses such paths):
/// its parent resolved, its own name kept.
fn canonical_target(dir: &Path) -> Result<PathBuf, Error> {
    let dir = absolute(dir)?;
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return Ok(dir);
    };
    match std::fs::canonicalize(parent) {
        Ok(parent) => Ok(parent.join(name)),
        Err(source) => Err(ExportError::Write {
            path: parent.to_owned(),
            source,
        }
        .into()),
    }
}

fn absolute(path: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(path).map_err(|source| Error::Setup {
        what: "find the current directory",
        source,
    })
}
