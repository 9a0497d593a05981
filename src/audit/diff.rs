//! Which change files a commit touched, as git diffs trees (renames paired).

use super::*;

/// Pairs a deletion and an addition of the same file name into one renamed item; with
/// `renumbered` (old id, new id), the old id's file is paired with the new one's.
pub(super) fn pair_renames(
    changed: Vec<(String, Option<Oid>, Option<Oid>)>,
    renumbered: Option<&(String, String)>,
) -> Vec<Item> {
    let mut items: Vec<Item> = Vec::with_capacity(changed.len());
    let mut added: HashMap<String, usize> = HashMap::new();
    let mut deleted = Vec::new();
    for (path, old, new) in changed {
        match (old, new) {
            (None, Some(_)) => {
                added.insert(id_of_path(&path).to_owned(), items.len());
                items.push(Item {
                    path,
                    old_path: None,
                    old,
                    new,
                });
            }
            (Some(_), None) => deleted.push((path, old)),
            _ => items.push(Item {
                path,
                old_path: None,
                old,
                new,
            }),
        }
    }
    for (path, old) in deleted {
        let name = match renumbered {
            Some((from, to)) if id_of_path(&path) == from => to.as_str(),
            _ => id_of_path(&path),
        };
        match added.remove(name) {
            Some(i) => {
                items[i].old_path = Some(path);
                items[i].old = old;
            }
            None => items.push(Item {
                path,
                old_path: None,
                old,
                new: None,
            }),
        }
    }
    items
}

/// Appends to `out` every blob under `path` that differs between two trees, descending only
/// into folders whose ids differ (month folders keep this cheap, SPEC section 1).
pub(super) fn diff_path(
    repo: &Repository,
    a: Option<&Tree<'_>>,
    b: Option<&Tree<'_>>,
    path: &str,
    out: &mut Vec<(String, Option<Oid>, Option<Oid>)>,
) -> Result<()> {
    let sub = |t: Option<&Tree<'_>>| -> Result<Option<(Oid, Option<ObjectType>)>> {
        let Some(t) = t else { return Ok(None) };
        match t.get_path(std::path::Path::new(path)) {
            Ok(e) => Ok(Some((e.id(), e.kind()))),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    };
    let (ea, eb) = (sub(a)?, sub(b)?);
    if ea.map(|e| e.0) == eb.map(|e| e.0) {
        return Ok(());
    }
    let as_tree = |e: Option<(Oid, Option<ObjectType>)>| match e {
        Some((id, Some(ObjectType::Tree))) => Some(id),
        _ => None,
    };
    diff_trees(&repo.odb()?, as_tree(ea), as_tree(eb), path, out)
}

/// Appends every blob that differs between two trees (by id) under `base`.
///
/// It reads the trees' raw bytes and walks them itself instead of through libgit2's
/// parsed trees: at 100,000 changes a month folder holds about 1,700 entries, and parsing
/// both versions into entry arrays (each mode through `strtol`, each name through
/// `strlen`, an allocation per tree) and comparing them entry by entry was a quarter of
/// `chg audit --full`. Two versions of a folder usually differ in one entry: the bytes the
/// two share at their start and at their end are the same entries, skipped unparsed.
pub(super) fn diff_trees(
    odb: &git2::Odb<'_>,
    a: Option<Oid>,
    b: Option<Oid>,
    base: &str,
    out: &mut Vec<(String, Option<Oid>, Option<Oid>)>,
) -> Result<()> {
    let (ra, rb) = (read_tree(odb, a)?, read_tree(odb, b)?);
    let da = ra.as_ref().map_or(&[][..], |o| o.data());
    let db = rb.as_ref().map_or(&[][..], |o| o.data());
    let prefix = shared(da.len().min(db.len()), |i, n| da[i..i + n] == db[i..i + n]);
    let (la, lb) = (da.len(), db.len());
    let suffix = shared(la.min(lb), |i, n| {
        da[la - i - n..la - i] == db[lb - i - n..lb - i]
    });
    let (mut i, mut j) = (0, 0);
    loop {
        // What is left of both is the same bytes, read from an entry's start: no difference.
        if da.len() - i == db.len() - j && da.len() - i <= suffix {
            return Ok(());
        }
        let x = RawEntry::at(da, i, a)?;
        let y = RawEntry::at(db, j, b)?;
        // Inside the shared start both sides are at the same offset, on the same entry.
        if let Some(e) = &x
            && i == j
            && e.end <= prefix
        {
            (i, j) = (e.end, e.end);
            continue;
        }
        let ord = match (&x, &y) {
            (Some(x), Some(y)) => git_order(x.name, x.tree, y.name, y.tree),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => return Ok(()),
        };
        let (x, y) = match ord {
            std::cmp::Ordering::Equal => (x, y),
            std::cmp::Ordering::Less => (x, None),
            std::cmp::Ordering::Greater => (None, y),
        };
        if let Some(e) = &x {
            i = e.end;
        }
        if let Some(e) = &y {
            j = e.end;
        }
        if x.as_ref().map(|e| e.id) == y.as_ref().map(|e| e.id) {
            continue;
        }
        let name = x.as_ref().or(y.as_ref()).map_or(&[][..], |e| e.name);
        let path = format!("{base}/{}", String::from_utf8_lossy(name));
        let tree_of = |e: &Option<RawEntry<'_>>| -> Result<Option<Oid>> {
            match e {
                Some(e) if e.tree => Ok(Some(Oid::from_bytes(e.id)?)),
                _ => Ok(None),
            }
        };
        let blob_of = |e: &Option<RawEntry<'_>>| -> Result<Option<Oid>> {
            match e {
                Some(e) if !e.tree => Ok(Some(Oid::from_bytes(e.id)?)),
                _ => Ok(None),
            }
        };
        let (ta, tb) = (tree_of(&x)?, tree_of(&y)?);
        if ta.is_some() || tb.is_some() {
            diff_trees(odb, ta, tb, &path, out)?;
        }
        let (ba, bb) = (blob_of(&x)?, blob_of(&y)?);
        if ba != bb {
            out.push((path, ba, bb));
        }
    }
}

/// How many of `len` bytes two buffers share, by `same(at, n)` (whether `n` bytes from
/// `at` are equal): whole 64-byte blocks compared as slices (memcmp) first, then bytes.
/// A month folder is about 90 KB at 100,000 changes and every commit compares two.
fn shared(len: usize, same: impl Fn(usize, usize) -> bool) -> usize {
    const BLOCK: usize = 64;
    let mut i = 0;
    while i + BLOCK <= len && same(i, BLOCK) {
        i += BLOCK;
    }
    while i < len && same(i, 1) {
        i += 1;
    }
    i
}

/// A tree's raw object, or none for a side that has no tree there.
fn read_tree<'o>(odb: &'o git2::Odb<'_>, id: Option<Oid>) -> Result<Option<git2::OdbObject<'o>>> {
    let Some(id) = id else { return Ok(None) };
    let object = odb.read(id)?;
    if object.kind() != ObjectType::Tree {
        return Err(git2::Error::from_str(&format!("{id} is not a tree")).into());
    }
    Ok(Some(object))
}

/// One entry of a raw tree object (`<mode> <name>\0<20-byte id>`).
struct RawEntry<'a> {
    name: &'a [u8],
    /// A folder (mode 40000); anything else (a file, a link, a submodule) is compared by id.
    tree: bool,
    id: &'a [u8],
    /// Where the next entry starts.
    end: usize,
}

impl<'a> RawEntry<'a> {
    /// The entry starting at `at`, or none at the end of the tree.
    fn at(data: &'a [u8], at: usize, tree: Option<Oid>) -> Result<Option<Self>> {
        let Some(rest) = data.get(at..).filter(|r| !r.is_empty()) else {
            return Ok(None);
        };
        let malformed = || -> crate::error::Error {
            let id = tree.map(|t| t.to_string()).unwrap_or_default();
            git2::Error::from_str(&format!("tree {id} is malformed at byte {at}")).into()
        };
        let space = memchr::memchr(b' ', rest).ok_or_else(malformed)?;
        let nul = memchr::memchr(0, &rest[space + 1..]).ok_or_else(malformed)? + space + 1;
        let id = rest.get(nul + 1..nul + 21).ok_or_else(malformed)?;
        let mode = &rest[..space];
        let mode = &mode[mode.iter().take_while(|&&c| c == b'0').count()..];
        Ok(Some(RawEntry {
            name: &rest[space + 1..nul],
            tree: mode == b"40000",
            id,
            end: at + nul + 21,
        }))
    }
}

/// Git's tree order: by name bytes, a folder's name compared as if it ended in `/`.
pub(super) fn git_order(a: &[u8], a_tree: bool, b: &[u8], b_tree: bool) -> std::cmp::Ordering {
    let n = a.len().min(b.len());
    match a[..n].cmp(&b[..n]) {
        std::cmp::Ordering::Equal => {}
        other => return other,
    }
    let next = |s: &[u8], tree: bool| s.get(n).copied().or(tree.then_some(b'/'));
    next(a, a_tree).cmp(&next(b, b_tree))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::git;

    /// The raw walk finds what git's own diff finds, across names that sort differently as
    /// files and as folders (`a`, `a.yaml`, `a/`), additions, deletions, edits, a file
    /// turned into a folder, a folder emptied, and a long shared start and end.
    #[test]
    fn the_raw_tree_diff_agrees_with_git() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        git(dir, &["init", "-q", "-b", "main"]);
        let write = |p: &str, s: &str| {
            let p = dir.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, s).unwrap();
        };
        let mut commits = Vec::new();
        let mut commit = |msg: &str| {
            git(dir, &["add", "-A"]);
            git(dir, &["commit", "-q", "--allow-empty", "-m", msg]);
            commits.push(git(dir, &["rev-parse", "HEAD"]).trim().to_string());
        };
        for i in 0..300 {
            write(
                &format!("changes/2025/01/CHG-2025-{i:03}.yaml"),
                &format!("n: {i}\n"),
            );
        }
        write("changes/a", "file a");
        write("changes/a.yaml", "a yaml");
        commit("start");
        write("changes/2025/01/CHG-2025-150.yaml", "edited\n");
        commit("one edit in the middle");
        std::fs::remove_file(dir.join("changes/a")).unwrap();
        write("changes/a/x.yaml", "now a folder");
        write("changes/2025/02/CHG-2025-301.yaml", "new month\n");
        commit("file to folder, new folder");
        std::fs::remove_file(dir.join("changes/2025/01/CHG-2025-000.yaml")).unwrap();
        std::fs::remove_file(dir.join("changes/2025/01/CHG-2025-299.yaml")).unwrap();
        write("changes/2025/01/CHG-2025-299x.yaml", "renamed\n");
        commit("first and last gone, one added");
        std::fs::remove_dir_all(dir.join("changes/2025/02")).unwrap();
        std::fs::remove_dir_all(dir.join("changes/a")).unwrap();
        write("changes/a", "a file again");
        commit("folder to file, month gone");

        let repo = Repository::open(dir).unwrap();
        for pair in commits
            .windows(2)
            .chain([[commits[0].clone(), commits[4].clone()].as_slice()])
        {
            let tree = |c: &str| {
                repo.find_commit(Oid::from_str(c).unwrap())
                    .unwrap()
                    .tree()
                    .unwrap()
            };
            let (a, b) = (tree(&pair[0]), tree(&pair[1]));
            let mut ours = Vec::new();
            diff_path(&repo, Some(&a), Some(&b), "changes", &mut ours).unwrap();
            let mut ours: Vec<String> = ours
                .into_iter()
                .map(|(p, x, y)| {
                    let s = match (x, y) {
                        (None, Some(_)) => "A",
                        (Some(_), None) => "D",
                        _ => "M",
                    };
                    format!("{s}\t{p}")
                })
                .collect();
            let mut theirs: Vec<String> = git(
                dir,
                &[
                    "diff",
                    "--name-status",
                    "--no-renames",
                    "-r",
                    &pair[0],
                    &pair[1],
                    "--",
                    "changes",
                ],
            )
            .lines()
            .map(str::to_string)
            .collect();
            ours.sort();
            theirs.sort();
            assert_eq!(ours, theirs, "{} .. {}", pair[0], pair[1]);
        }
    }

    /// Differences at the very edge of the bytes two trees share: the last byte of an
    /// entry's id (where the shared start ends), and the first byte of an entry's mode (a
    /// file turned into a folder, where the shared end begins), first, middle and last.
    #[test]
    fn a_difference_of_one_byte_at_an_entry_edge_is_found() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repository::init(tmp.path()).unwrap();
        let odb = repo.odb().unwrap();
        let sub = odb.write(ObjectType::Tree, b"").unwrap();
        // Modes: a file; a folder as git writes it; a folder zero-padded (as old tools wrote
        // it), as long as a file's mode, so that the two versions are as long too.
        let modes: [&[u8]; 3] = [b"100644", b"40000", b"040000"];
        let entry = |name: &str, mode: usize, last: u8| -> Vec<u8> {
            let mut id = [7u8; 20];
            id[19] = last;
            if mode > 0 {
                id.copy_from_slice(sub.as_bytes());
            }
            [modes[mode], b" ", name.as_bytes(), b"\0", &id].concat()
        };
        let names = ["a.yaml", "m.yaml", "z.yaml"];
        let tree = |changed: Option<(usize, usize)>| -> Oid {
            let bytes: Vec<u8> = names
                .iter()
                .enumerate()
                .flat_map(|(i, n)| match changed {
                    Some((c, mode)) if c == i => entry(n, mode, 8),
                    _ => entry(n, 0, 7),
                })
                .collect();
            odb.write(ObjectType::Tree, &bytes).unwrap()
        };
        let base = tree(None);
        for (i, name) in names.iter().enumerate() {
            for mode in 0..modes.len() {
                let mut out = Vec::new();
                let changed = tree(Some((i, mode)));
                diff_trees(&odb, Some(base), Some(changed), "c", &mut out).unwrap();
                let paths: Vec<&str> = out.iter().map(|(p, _, _)| p.as_str()).collect();
                assert_eq!(paths, [format!("c/{name}")], "entry {i}, mode {mode}");
                // A folder is no file: the file's version is gone (its folder is empty).
                assert_eq!(out[0].2.is_none(), mode > 0, "entry {i}, mode {mode}");
            }
        }
    }

    #[test]
    fn a_malformed_tree_is_an_error_not_a_panic() {
        let id = Some(Oid::ZERO_SHA1);
        for bad in [
            &b"100644"[..],
            b"100644 name",
            b"100644 name\0short",
            b"40000 x\0",
        ] {
            assert!(RawEntry::at(bad, 0, id).is_err(), "{bad:?}");
        }
        assert!(RawEntry::at(b"", 0, id).unwrap().is_none());
        let good = [&b"40000 d\0"[..], &[7u8; 20]].concat();
        let e = RawEntry::at(&good, 0, id).unwrap().unwrap();
        assert!(e.tree && e.name == b"d" && e.end == good.len());
    }
}
