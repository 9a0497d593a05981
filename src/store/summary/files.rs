//! The work tree's change files with their `lstat`, and the summary's lock (whose mtime
//! is the filesystem's clock at the start of a run).

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use rayon::prelude::*;

use crate::error::{Error, Result};

/// A file's `lstat` as far as it tells whether the file was rewritten: size, mtime, ctime
/// (seconds and nanoseconds) and inode.
pub(super) type Stat = [i64; 6];

#[cfg(unix)]
pub(super) fn stat_of(m: &fs::Metadata) -> Stat {
    use std::os::unix::fs::MetadataExt;
    [
        m.size() as i64,
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
        m.ino() as i64,
    ]
}

#[cfg(not(unix))]
pub(super) fn stat_of(m: &fs::Metadata) -> Stat {
    let t = |t: std::io::Result<SystemTime>| {
        t.ok()
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or((0, 0), |d| (d.as_secs() as i64, d.subsec_nanos() as i64))
    };
    let (ms, mn) = t(m.modified());
    let (cs, cn) = t(m.created());
    [m.len() as i64, ms, mn, cs, cn, 0]
}

/// Every regular `.yaml` file under the store's `changes/` (as
/// [`crate::layout::change_entries`] lists them), by store path in byte order, with its
/// `lstat`. The month folders are read in parallel and each file is stat'ed relative to its
/// folder (no walk of the whole path per file): at 100,000 files this is most of a warm
/// `chg list`.
pub(super) fn listed_with_stats(root: &Path) -> std::io::Result<Vec<(String, Stat)>> {
    listed_under(root, "changes")
}

/// Whether `rel` (a store path) is a folder whose change files are listed: `changes/` or
/// a folder under it whose name, and whose folders' names, do not start with a dot.
pub(super) fn listed_folder(rel: &str) -> bool {
    let mut parts = rel.split('/');
    parts.next() == Some("changes") && parts.all(|p| !p.is_empty() && !p.starts_with('.'))
}

/// Whether `rel` (a store path) is where a listed change file would be.
pub(super) fn listed_file(rel: &str) -> bool {
    rel.rsplit_once('/').is_some_and(|(folder, name)| {
        listed_folder(folder) && !name.starts_with('.') && name.ends_with(".yaml")
    })
}

/// [`listed_with_stats`] for the folder `rel` (a store path under `changes/`) alone.
pub(super) fn listed_under(root: &Path, rel: &str) -> std::io::Result<Vec<(String, Stat)>> {
    let mut dirs = vec![(root.join(rel), rel.to_owned())];
    // Years, then months: the folders are few, their files many.
    let mut folders = Vec::new();
    while let Some((dir, rel)) = dirs.pop() {
        folders.push((dir.clone(), rel.clone()));
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') {
                continue;
            }
            if entry.file_type()?.is_dir() {
                dirs.push((entry.path(), format!("{rel}/{name}")));
            }
        }
    }
    let found: Vec<std::io::Result<Vec<(String, Stat)>>> = folders
        .into_par_iter()
        .map(|(dir, rel)| {
            let mut out = Vec::new();
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if name.starts_with('.') || !name.ends_with(".yaml") {
                    continue;
                }
                if !entry.file_type()?.is_file() {
                    continue;
                }
                // Gone since it was listed: as reading it would, skip it.
                if let Ok(meta) = entry.metadata()
                    && meta.is_file()
                {
                    out.push((format!("{rel}/{name}"), stat_of(&meta)));
                }
            }
            Ok(out)
        })
        .collect();
    let mut out: Vec<(String, Stat)> =
        Vec::with_capacity(found.iter().flatten().map(Vec::len).sum());
    for f in found {
        out.extend(f?);
    }
    out.par_sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Locks the summary folder `dir` and reads the filesystem's clock at the start of the run
/// (the lock file's mtime, just written): stats from before it are safe to record.
pub(super) fn lock_summary(dir: &Path) -> Result<(File, (i64, i64))> {
    let io = |what: &str| {
        let what = what.to_owned();
        move |e| Error::io(what, e)
    };
    let mut lock = File::create(dir.join("lock")).map_err(io("opening the summary lock"))?;
    lock.lock().map_err(io("locking the summary"))?;
    // The filesystem's clock at the start of the run: stats from before it are safe.
    lock.write_all(b"\n")
        .map_err(io("writing the summary lock"))?;
    let start = lock
        .metadata()
        .and_then(|m| m.modified())
        .map_err(io("reading the summary lock"))?;
    let start = start
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or((0, 0), |d| {
            (d.as_secs() as i64, i64::from(d.subsec_nanos()))
        });
    Ok((lock, start))
}
