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
    let as_tree = |e: Option<(Oid, Option<ObjectType>)>| -> Result<Option<Tree<'_>>> {
        match e {
            Some((id, Some(ObjectType::Tree))) => Ok(Some(repo.find_tree(id)?)),
            _ => Ok(None),
        }
    };
    diff_trees(
        repo,
        as_tree(ea)?.as_ref(),
        as_tree(eb)?.as_ref(),
        path,
        out,
    )
}

pub(super) fn diff_trees(
    repo: &Repository,
    a: Option<&Tree<'_>>,
    b: Option<&Tree<'_>>,
    base: &str,
    out: &mut Vec<(String, Option<Oid>, Option<Oid>)>,
) -> Result<()> {
    // Both trees are in git's order; a merge join over borrowed entries finds what differs
    // in one pass without copying a name (a month folder has thousands).
    let (la, lb) = (a.map_or(0, Tree::len), b.map_or(0, Tree::len));
    pub(super) fn entry<'t>(
        t: Option<&'t Tree<'_>>,
        i: usize,
    ) -> Option<(git2::TreeEntry<'t>, bool)> {
        let e = t?.get(i)?;
        let is_tree = e.kind() == Some(ObjectType::Tree);
        Some((e, is_tree))
    }
    let (mut i, mut j) = (0, 0);
    while i < la || j < lb {
        let x = if i < la { entry(a, i) } else { None };
        let y = if j < lb { entry(b, j) } else { None };
        let ord = match (&x, &y) {
            (Some(x), Some(y)) => git_order(x.0.name_bytes(), x.1, y.0.name_bytes(), y.1),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        let (x, y) = match ord {
            std::cmp::Ordering::Equal => {
                i += 1;
                j += 1;
                (x, y)
            }
            std::cmp::Ordering::Less => {
                i += 1;
                (x, None)
            }
            std::cmp::Ordering::Greater => {
                j += 1;
                (None, y)
            }
        };
        let (xid, yid) = (x.as_ref().map(|v| v.0.id()), y.as_ref().map(|v| v.0.id()));
        if xid == yid {
            continue;
        }
        let name = x
            .as_ref()
            .or(y.as_ref())
            .map(|v| v.0.name_bytes())
            .unwrap_or_default();
        let path = format!("{base}/{}", String::from_utf8_lossy(name));
        let tree_of = |v: &Option<(git2::TreeEntry<'_>, bool)>| -> Result<Option<Tree<'_>>> {
            match v {
                Some((e, true)) => Ok(Some(repo.find_tree(e.id())?)),
                _ => Ok(None),
            }
        };
        let blob_of =
            |v: &Option<(git2::TreeEntry<'_>, bool)>| v.as_ref().filter(|v| !v.1).map(|v| v.0.id());
        if x.as_ref().is_some_and(|v| v.1) || y.as_ref().is_some_and(|v| v.1) {
            diff_trees(
                repo,
                tree_of(&x)?.as_ref(),
                tree_of(&y)?.as_ref(),
                &path,
                out,
            )?;
        }
        if blob_of(&x) != blob_of(&y) {
            out.push((path, blob_of(&x), blob_of(&y)));
        }
    }
    Ok(())
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
