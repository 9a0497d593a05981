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

/// How much of the packs libgit2 keeps mapped at once, process-wide ([`tune_libgit2`]).
const MAPPED_LIMIT: usize = 96 << 20;

/// Whether `workers` threads reading `repo` each through packs of their own
/// ([`own_packs`]) can all map every pack within libgit2's mapping limit. Past it, each
/// handle's windows push the other's out: on a fresh clone of 100,000 changes (a 657 MB
/// pack) the audit spent its time mapping and unmapping windows, 45 s became 98 s. A
/// repository that borrows objects (`objects/info/alternates`) keeps the shared packs.
pub fn own_packs_fit(repo: &git2::Repository, workers: usize) -> bool {
    let objects = repo.commondir().join("objects");
    if objects.join("info/alternates").exists() {
        return false;
    }
    let Ok(dir) = std::fs::read_dir(objects.join("pack")) else {
        return false;
    };
    let bytes: u64 = dir
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    bytes.saturating_mul(workers as u64) <= MAPPED_LIMIT as u64
}

/// Gives `repo` packs of its own for worker `worker` of a parallel read.
///
/// libgit2 keeps one open pack per pack path for the whole process, shared by every
/// repository, and each lookup in a pack's index holds that pack's mutex: two threads
/// reading one repository's history spent a tenth of their time waiting on it. The
/// cache is keyed by the path as written, so each worker reaches the same objects
/// folder by a path of its own (`.git/./objects`, `.git/././objects`): the same files,
/// opened once per worker, when they fit ([`own_packs_fit`]). Worker 0, and a path that
/// is not UTF-8 or not a folder, keep the shared packs, which are only slower.
pub fn own_packs(repo: &git2::Repository, worker: usize) -> std::result::Result<(), git2::Error> {
    let Some(common) = repo.commondir().to_str() else {
        return Ok(());
    };
    let path = format!(
        "{}/{}objects",
        common.trim_end_matches('/'),
        "./".repeat(worker)
    );
    if worker == 0 || !std::path::Path::new(&path).is_dir() {
        return Ok(());
    }
    let odb = git2::Odb::new()?;
    odb.add_disk_alternate(&path)?;
    repo.set_odb(&odb)
}

/// Sets libgit2 up for reading a long history, once per process. It must run before the
/// first object is read: a pack window mapped before it keeps libgit2's default size (the
/// whole pack, up to 1 GiB) and every page an audit touches stays resident; `chg log` and
/// `chg gate` on a fresh clone of 100,000 changes (they read a change before building the
/// audit index) peaked at 930 MB, half of it the mapped pack. The `chg` binary calls it
/// first thing, before any thread exists (libgit2's options are unsynchronised globals);
/// the audit calls it again for other users of the library, where it is a no-op after the
/// first time.
pub fn tune_libgit2() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // libgit2 re-hashes every object it reads; git itself (`git log`) does not, and a
        // repository's integrity is `git fsck`'s job. A sixth of audit's time went there.
        git2::opts::strict_hash_verification(false);
        // Each commit's tree is the next commit's parent tree; month folders of a large
        // store are bigger than libgit2's default 4 KiB cache limit for trees, so cache
        // them. Memory stays bounded on long histories: libgit2's caches and pack windows
        // (mapped pack pages count as resident memory) are capped well under 500 MB.
        // SAFETY: process-wide libgit2 settings with valid arguments, set once (see above).
        unsafe {
            let _ = git2::opts::set_cache_object_limit(git2::ObjectType::Tree, 1 << 20);
            let _ = git2::opts::set_cache_max_size(64 << 20);
            let _ = git2::opts::set_mwindow_size(32 << 20);
            let _ = git2::opts::set_mwindow_mapped_limit(MAPPED_LIMIT);
        }
    });
}

#[cfg(test)]
mod tests {
    use crate::testing::git;

    /// Own packs are taken while every worker can map all of them, never for a
    /// repository that borrows objects from another.
    #[test]
    fn own_packs_fit_only_within_the_mapping_limit_and_without_alternates() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir(&a).unwrap();
        git(&a, &["init", "-q", "-b", "main"]);
        std::fs::write(a.join("f"), "packed").unwrap();
        git(&a, &["add", "f"]);
        git(&a, &["commit", "-q", "-m", "one"]);
        git(&a, &["gc", "-q"]);
        git(tmp.path(), &["clone", "-q", "--shared", "a", "b"]);
        let a = git2::Repository::open(&a).unwrap();
        assert!(super::own_packs_fit(&a, 2));
        // A pack this small times this many workers is past the limit.
        assert!(!super::own_packs_fit(&a, super::MAPPED_LIMIT));
        assert!(!super::own_packs_fit(
            &git2::Repository::open(&b).unwrap(),
            2
        ));
    }

    /// A worker's own packs read every object the repository's do: packed, loose, and
    /// borrowed from another repository through `objects/info/alternates`.
    #[test]
    fn a_workers_own_packs_read_what_the_repository_reads() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir(&a).unwrap();
        git(&a, &["init", "-q", "-b", "main"]);
        std::fs::write(a.join("f"), "packed").unwrap();
        git(&a, &["add", "f"]);
        git(&a, &["commit", "-q", "-m", "one"]);
        git(&a, &["gc", "-q"]);
        git(tmp.path(), &["clone", "-q", "--shared", "a", "b"]);
        std::fs::write(b.join("f"), "loose").unwrap();
        git(&b, &["commit", "-q", "-am", "two"]);
        for dir in [&a, &b] {
            let repo = git2::Repository::open(dir).unwrap();
            let head = repo.head().unwrap().peel_to_commit().unwrap();
            let ids: Vec<git2::Oid> = std::iter::successors(Some(head), |c| c.parent(0).ok())
                .flat_map(|c| [c.id(), c.tree_id()])
                .collect();
            for worker in 1..4 {
                let own = git2::Repository::open(dir).unwrap();
                super::own_packs(&own, worker).unwrap();
                for id in &ids {
                    own.find_object(*id, None).unwrap();
                }
            }
        }
    }
}
