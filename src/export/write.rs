//! Puts an export in place all at once: its files are written to a new folder beside DIR,
//! which then takes DIR's name (a rename; with `--force`, an exchange with the earlier
//! export, which is then removed). A failure leaves DIR as it was, never half an export.
//! The mark lists the files hkrun wrote; `--force` refuses a folder holding anything
//! else (a file a user added), so it never removes what it did not write.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, symlink};
use std::path::Path;

use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};

use super::{Contents, ExportError, File, Format};

/// The file that marks a folder as an export of hkrun's, which `--force` may replace.
pub(crate) const MARK: &str = ".hkrun-export";
/// The mark's line before the files it lists.
const LISTED: &str = "Files it wrote (`--force` refuses a folder holding any other):";

/// Whether DIR may be written: absent, empty, or with `force` an earlier export that holds
/// only what hkrun wrote (`files`, the new export, stand for that list in a mark written
/// before marks listed their files).
pub(crate) fn check_target(dir: &Path, force: bool, files: &[File]) -> Result<(), ExportError> {
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
        Ok(meta) if meta.is_file() => only_hkruns(dir, files),
        _ => Err(ExportError::NotAnExport(dir.to_owned())),
    }
}

/// `Ok` when the export at `dir` holds nothing but the files its mark lists (or, for a
/// mark that lists none, the files of the new export).
fn only_hkruns(dir: &Path, files: &[File]) -> Result<(), ExportError> {
    let failed = |source| ExportError::Write {
        path: dir.to_owned(),
        source,
    };
    let mark = fs::read_to_string(dir.join(MARK)).map_err(failed)?;
    let (written, listed): (HashSet<String>, bool) = match mark.split_once(&format!("{LISTED}\n")) {
        Some((_, list)) => (list.lines().map(str::to_owned).collect(), true),
        None => (files.iter().map(|f| f.path.clone()).collect(), false),
    };
    // A mark from before marks listed their files: what hkrun writes is known by its
    // kind (a file ending as one of the new export's does, in a folder it writes), so a
    // unit of a type scaled away since is hkrun's, and a user's `notes.txt` is not.
    let kinds: HashSet<(String, String)> = match listed {
        true => HashSet::new(),
        false => files.iter().map(|f| kind(&f.path)).collect(),
    };
    let hkruns = |path: &str| written.contains(path) || kinds.contains(&kind(path));
    let mut foreign = Vec::new();
    walk(dir, "", &written, &hkruns, &mut foreign).map_err(failed)?;
    match foreign.is_empty() {
        true => Ok(()),
        false => {
            foreign.sort();
            Err(ExportError::Foreign {
                dir: dir.to_owned(),
                files: foreign,
            })
        }
    }
}

/// A path's folder and the end of its name after its last `.` (`("x.target.wants",
/// "service")`).
fn kind(path: &str) -> (String, String) {
    let (folder, name) = path.rsplit_once('/').unwrap_or(("", path));
    let ending = name.rsplit_once('.').map_or("", |(_, ending)| ending);
    (folder.to_owned(), ending.to_owned())
}

/// Adds to `foreign` every entry under `folder` (`prefix` its path in the export) that is
/// neither hkrun's nor a folder of what was written. Links are not followed.
fn walk(
    folder: &Path,
    prefix: &str,
    written: &HashSet<String>,
    hkruns: &dyn Fn(&str) -> bool,
    foreign: &mut Vec<String>,
) -> io::Result<()> {
    for entry in fs::read_dir(folder)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = format!("{prefix}{name}");
        let is_dir = entry.file_type()?.is_dir();
        if path == MARK || (!is_dir && hkruns(&path)) {
            continue;
        }
        let holds_written = written.iter().any(|w| w.starts_with(&format!("{path}/")));
        if is_dir && holds_written {
            walk(&entry.path(), &format!("{path}/"), written, hkruns, foreign)?;
        } else {
            foreign.push(path);
        }
    }
    Ok(())
}

/// Writes `files` as DIR, replacing what `check_target` allowed (and only if that still
/// holds once it is exchanged).
pub(crate) fn replace(dir: &Path, format: Format, files: &[File]) -> Result<(), ExportError> {
    let (parent, name) = crate::os::files::folder_and_name(dir, "export");
    let staging = parent.join(crate::os::files::staging_name(&name));
    let failed = |path: &Path| {
        let path = path.to_owned();
        move |source| ExportError::Write { path, source }
    };
    fs::create_dir(&staging).map_err(failed(&staging))?;
    if let Err(err) = fill(&staging, format, files) {
        let _ = fs::remove_dir_all(&staging);
        return Err(err);
    }
    swap_in(&staging, dir, files)
}

fn fill(staging: &Path, format: Format, files: &[File]) -> Result<(), ExportError> {
    let failed = |path: &Path| {
        let path = path.to_owned();
        move |source| ExportError::Write { path, source }
    };
    let mut mark = format!(
        "Written by `hkrun export {}`; `hkrun export --force` replaces this folder.\n{LISTED}\n",
        match format {
            Format::Kubernetes => "kubernetes",
            Format::Systemd => "systemd",
        }
    );
    for file in files {
        mark.push_str(&file.path);
        mark.push('\n');
    }
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
fn swap_in(staging: &Path, dir: &Path, files: &[File]) -> Result<(), ExportError> {
    let failed = |source: io::Error| ExportError::Write {
        path: dir.to_owned(),
        source,
    };
    // Until the exchange, `staging` holds only the new export: removed on failure.
    let not_exchanged = |err| {
        let _ = fs::remove_dir_all(staging);
        err
    };
    match fs::rename(staging, dir) {
        Ok(()) => return sync_parent(dir).map_err(failed),
        Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => {}
        Err(e) => return Err(not_exchanged(failed(e))),
    }
    renameat2(
        AT_FDCWD,
        staging,
        AT_FDCWD,
        dir,
        RenameFlags::RENAME_EXCHANGE,
    )
    .map_err(|e| not_exchanged(failed(e.into())))?;
    // `staging` now holds what was at DIR: an earlier export with only hkrun's files, as
    // `check_target` saw, unless something changed it since. Then it goes back, and
    // nothing is removed.
    let unchanged = match staging.join(MARK).is_file() {
        true => only_hkruns(staging, files).map_err(|err| match err {
            ExportError::Foreign { files, .. } => ExportError::Foreign {
                dir: dir.to_owned(),
                files,
            },
            err => err,
        }),
        false => Err(ExportError::NotAnExport(dir.to_owned())),
    };
    if let Err(err) = unchanged {
        // Only once what was at DIR is back there is `staging` the new export again.
        if renameat2(
            AT_FDCWD,
            staging,
            AT_FDCWD,
            dir,
            RenameFlags::RENAME_EXCHANGE,
        )
        .is_ok()
        {
            let _ = fs::remove_dir_all(staging);
        }
        return Err(err);
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
