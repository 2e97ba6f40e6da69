//! Puts an export in place all at once: its files are written to a new folder beside DIR,
//! which then takes DIR's name (a rename; with `--force`, an exchange with the earlier
//! export, which is then removed). A failure leaves DIR as it was, never half an export.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, symlink};
use std::path::Path;

use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};

use super::{Contents, ExportError, File, Format};

/// The file that marks a folder as an export of hkrun's, which `--force` may replace.
pub const MARK: &str = ".hkrun-export";

/// Whether DIR may be written: absent, empty, or with `force` an earlier export.
pub fn check_target(dir: &Path, force: bool) -> Result<(), ExportError> {
    let mut entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ExportError::Write {
                path: dir.to_owned(),
                source,
            });
        }
    };
    if entries.next().is_none() {
        return Ok(());
    }
    if !force {
        return Err(ExportError::NotEmpty(dir.to_owned()));
    }
    match dir.join(MARK).symlink_metadata() {
        Ok(meta) if meta.is_file() => Ok(()),
        _ => Err(ExportError::NotAnExport(dir.to_owned())),
    }
}

/// Writes `files` as DIR, replacing what `check_target` allowed.
pub fn replace(dir: &Path, format: Format, files: &[File]) -> Result<(), ExportError> {
    let (parent, name) = crate::os::files::folder_and_name(dir, "export");
    let staging = parent.join(crate::os::files::staging_name(&name));
    let failed = |path: &Path| {
        let path = path.to_owned();
        move |source| ExportError::Write { path, source }
    };
    fs::create_dir(&staging).map_err(failed(&staging))?;
    let result = fill(&staging, format, files).and_then(|()| swap_in(&staging, dir));
    if result.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    result
}

fn fill(staging: &Path, format: Format, files: &[File]) -> Result<(), ExportError> {
    let failed = |path: &Path| {
        let path = path.to_owned();
        move |source| ExportError::Write { path, source }
    };
    let mark = format!(
        "Written by `hkrun export {}`; `hkrun export --force` replaces this folder.\n",
        match format {
            Format::Kubernetes => "kubernetes",
            Format::Systemd => "systemd",
        }
    );
    let all = files.iter().map(|f| (f.path.as_str(), &f.contents));
    let mark = Contents::Text(mark);
    for (path, contents) in all.chain([(MARK, &mark)]) {
        let target = staging.join(path);
        if let Some(folder) = target.parent() {
            fs::create_dir_all(folder).map_err(failed(folder))?;
        }
        match contents {
            Contents::Text(text) => write_file(&target, text, 0o644),
            Contents::Secret(text) => write_file(&target, text, 0o600),
            Contents::Link(to) => symlink(to, &target),
        }
        .map_err(failed(&target))?;
    }
    Ok(())
}

fn write_file(path: &Path, text: &str, mode: u32) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// `staging` becomes `dir`: renamed over it when `dir` is absent or empty (one step: an
/// empty folder is replaced by the rename itself), exchanged with it when it holds an
/// earlier export, which is then removed, once its mark is seen again.
fn swap_in(staging: &Path, dir: &Path) -> Result<(), ExportError> {
    let failed = |source: io::Error| ExportError::Write {
        path: dir.to_owned(),
        source,
    };
    match fs::rename(staging, dir) {
        Ok(()) => return sync_parent(dir).map_err(failed),
        Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => {}
        Err(e) => return Err(failed(e)),
    }
    renameat2(
        AT_FDCWD,
        staging,
        AT_FDCWD,
        dir,
        RenameFlags::RENAME_EXCHANGE,
    )
    .map_err(|e| failed(e.into()))?;
    // `staging` now holds what was at DIR: an earlier export, as `check_target` saw, unless
    // something replaced it since. Then it goes back, and nothing is removed.
    if !staging.join(MARK).is_file() {
        let _ = renameat2(
            AT_FDCWD,
            staging,
            AT_FDCWD,
            dir,
            RenameFlags::RENAME_EXCHANGE,
        );
        return Err(ExportError::NotAnExport(dir.to_owned()));
    }
    let _ = fs::remove_dir_all(staging);
    sync_parent(dir).map_err(failed)
}

/// The rename itself, on disk.
fn sync_parent(dir: &Path) -> io::Result<()> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::File::open(parent)?.sync_all()
}
