//! Git primitives every layer reads with: where HEAD is, a blob in a tree, a shallow
//! clone's cut, an atomic file write, and where a store lives. Kept below the store, the
//! audit and governance, which all use them, so none of those needs the others for them.

use std::path::Path;

use git2::{ErrorCode, ObjectType, Oid, Repository, Tree};

use crate::error::{Error, Result};

/// Where a store lives: its repository and its folder in it (`""` at the root, else
/// `teams/a/`). The store implements it; the audit and the standing read through it, so
/// they need no store.
pub trait Located {
    /// The repository.
    fn repo(&self) -> &Repository;
    /// The store's folder in the work tree, relative to its root, with a trailing `/`.
    fn prefix(&self) -> &str;
}

/// Where HEAD points: the branch ref (None when detached) and the commit (None when unborn).
pub fn head_state(repo: &Repository) -> Result<(Option<String>, Option<Oid>)> {
    let head = repo.find_reference("HEAD")?;
    match head.symbolic_target()? {
        Some(name) => {
            let name = name.to_owned();
            match repo.refname_to_id(&name) {
                Ok(id) => Ok((Some(name), Some(id))),
                Err(e) if e.code() == ErrorCode::NotFound => Ok((Some(name), None)),
                Err(e) => Err(e.into()),
            }
        }
        None => Ok((None, head.target())),
    }
}

/// The blob id of `path` in `tree`, walking one folder at a time.
pub fn blob_at(tree: &Tree<'_>, path: &str) -> Result<Option<Oid>> {
    match tree.get_path(Path::new(path)) {
        Ok(entry) if entry.kind() == Some(ObjectType::Blob) => Ok(Some(entry.id())),
        Ok(_) => Ok(None),
        Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Writes `content` to `path` atomically (a temporary file in the same folder, then rename).
pub fn atomic_write(path: &Path, content: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".chg-");
    // A new file gets the mode any program's new file gets (0666 less the umask, as git
    // checks files out), not the private 0600 of a temporary file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder
        .tempfile_in(dir)
        .map_err(|e| Error::io(format!("cannot write in {}", dir.display()), e))?;
    tmp.write_all(content)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(tmp.path(), meta.permissions());
    }
    tmp.persist(path)
        .map_err(|e| Error::io(format!("cannot replace {}", path.display()), e.error))?;
    Ok(())
}

/// The commits where a shallow clone's history is cut (git's `shallow` file): their parents
/// are not in the repository, so what they changed cannot be known.
pub fn shallow_commits(repo: &Repository) -> Vec<Oid> {
    let text = std::fs::read_to_string(repo.commondir().join("shallow")).unwrap_or_default();
    let mut out: Vec<Oid> = text
        .lines()
        .filter_map(|l| Oid::from_str(l.trim()).ok())
        .collect();
    out.sort();
    out
}
