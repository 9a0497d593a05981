//! Where a change lives: `changes/YYYY/MM/ID.yaml` (SPEC section 1), in the work tree and
//! in git trees. The layout, the years searched for a change filed late, and the id scan
//! are written here once; the store, validate, audit and sync ask this module.

use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid, Repository, Tree};
use jiff::Timestamp;

use crate::error::Result;
use crate::model::ChangeId;

/// The years a change of `id`'s year may be filed under: its own first, then the years
/// either side (a change filed just across a year end, or with a clock off).
pub fn years(id: &ChangeId) -> [i16; 3] {
    [id.year(), id.year() - 1, id.year() + 1]
}

/// Every place `id`'s file may be, relative to the store, most likely first.
pub fn candidate_paths(id: &ChangeId) -> impl Iterator<Item = PathBuf> + '_ {
    years(id).into_iter().flat_map(move |year| {
        (1..=12).map(move |month| PathBuf::from(format!("changes/{year:04}/{month:02}/{id}.yaml")))
    })
}

/// The path a change file must have, relative to the store: `changes/YYYY/MM/ID.yaml`.
pub fn change_path(id: &ChangeId, request_date: Timestamp) -> PathBuf {
    let d = request_date.to_zoned(jiff::tz::TimeZone::UTC);
    PathBuf::from(format!(
        "changes/{:04}/{:02}/{id}.yaml",
        d.year(),
        d.month()
    ))
}

/// The change id a change file's name gives (`CHG-2025-001` for `…/CHG-2025-001.yaml`).
pub fn id_of_path(path: &str) -> &str {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.strip_suffix(".yaml").unwrap_or(name)
}

/// The number in a file name of `lead` (`CHG-2025-`): `CHG-2025-007.yaml` is 7.
pub fn number_in(name: &str, lead: &str) -> Option<u32> {
    name.strip_prefix(lead)
        .and_then(|r| r.strip_suffix(".yaml"))
        .and_then(|n| n.parse::<u32>().ok())
}

/// Files to validate under `changes/`: every file (any extension), not following links.
pub fn change_files(store: &Path) -> std::io::Result<Vec<PathBuf>> {
    Ok(change_entries(store)?.into_iter().map(|e| e.0).collect())
}

/// Every file under `changes/` (as [`change_files`]) with whether it is a regular file
/// (not a symlink or a special file), known from the directory listing without a `stat`.
pub fn change_entries(store: &Path) -> std::io::Result<Vec<(PathBuf, bool)>> {
    let mut out = Vec::new();
    let mut stack = vec![store.join("changes")];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            if entry.file_name().as_encoded_bytes().starts_with(b".") {
                continue;
            }
            let ft = entry.file_type()?;
            if ft.is_dir() {
                stack.push(entry.path());
            } else {
                out.push((entry.path(), ft.is_file()));
            }
        }
    }
    // Byte order, not Path's component-wise order: the same for these paths, and sorting
    // 100,000 paths component by component showed up in profiles.
    out.sort_unstable_by(|a, b| {
        a.0.as_os_str()
            .as_encoded_bytes()
            .cmp(b.0.as_os_str().as_encoded_bytes())
    });
    Ok(out)
}

/// The month folders of `id`'s year (and the years either side, for late filings).
pub fn month_trees<'r>(
    repo: &'r Repository,
    tree: &Tree<'_>,
    prefix: &str,
    year: i16,
) -> Result<Vec<(String, Tree<'r>)>> {
    let mut out = Vec::new();
    let folder = format!("{prefix}changes/{year:04}");
    let Ok(entry) = tree.get_path(Path::new(&folder)) else {
        return Ok(out);
    };
    let Ok(months) = repo.find_tree(entry.id()) else {
        return Ok(out);
    };
    for m in months.iter() {
        if let Ok(t) = repo.find_tree(m.id()) {
            let name = String::from_utf8_lossy(m.name_bytes()).into_owned();
            out.push((format!("{folder}/{name}"), t));
        }
    }
    Ok(out)
}

/// The path of `id`'s file in `tree`, and its blob (none when something other than a file
/// stands at that name, which still takes the id).
pub fn find_change(
    repo: &Repository,
    tree: &Tree<'_>,
    prefix: &str,
    id: &str,
) -> Result<Option<(String, Option<Oid>)>> {
    let Ok(parsed) = id.parse::<ChangeId>() else {
        return Ok(None);
    };
    let name = format!("{id}.yaml");
    for year in years(&parsed) {
        for (folder, t) in month_trees(repo, tree, prefix, year)? {
            if let Some(entry) = t.get_name(&name) {
                let blob = (entry.kind() == Some(ObjectType::Blob)).then(|| entry.id());
                return Ok(Some((format!("{folder}/{name}"), blob)));
            }
        }
    }
    Ok(None)
}

/// Whether a folder directly under `changes/` is another year's than `id`'s years: it cannot
/// hold one of `id`'s files in its right place, and is not searched.
fn other_year(name: &str, id: &ChangeId) -> bool {
    name.len() == 4 && name.parse::<i16>().is_ok_and(|y| !years(id).contains(&y))
}

/// The highest number of `id`'s prefix and year filed in `tree`: in the year's folders (and
/// those either side, for late filings) and anywhere else under `changes/` that is not
/// another year's folder, so a file filed in the wrong place still holds its id.
pub fn highest(repo: &Repository, tree: &Tree<'_>, prefix: &str, id: &ChangeId) -> Result<u32> {
    let lead = format!("{}-{:04}-", id.prefix(), id.year());
    let Ok(entry) = tree.get_path(Path::new(&format!("{prefix}changes"))) else {
        return Ok(0);
    };
    let Ok(root) = repo.find_tree(entry.id()) else {
        return Ok(0);
    };
    let mut max = 0;
    let mut stack = vec![(root, true)];
    while let Some((t, top)) = stack.pop() {
        for e in t.iter() {
            let name = std::str::from_utf8(e.name_bytes()).unwrap_or("");
            match e.kind() {
                Some(ObjectType::Tree) if !(top && other_year(name, id)) => {
                    stack.push((repo.find_tree(e.id())?, false));
                }
                _ => max = max.max(number_in(name, &lead).unwrap_or(0)),
            }
        }
    }
    Ok(max)
}

/// [`highest`] in the work tree's `changes/` under `root`.
pub fn highest_in_dir(root: &Path, id: &ChangeId) -> u32 {
    let lead = format!("{}-{:04}-", id.prefix(), id.year());
    let mut max = 0;
    let mut stack = vec![(root.join("changes"), true)];
    while let Some((dir, top)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            match e.file_type() {
                Ok(ft) if ft.is_dir() => {
                    if !(top && other_year(&name, id)) {
                        stack.push((e.path(), false));
                    }
                }
                _ => max = max.max(number_in(&name, &lead).unwrap_or(0)),
            }
        }
    }
    max
}
