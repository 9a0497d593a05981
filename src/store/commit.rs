//! One commit that touches exactly the named files, made so that a failure or a crash at any
//! point leaves the store as it was before or as it is after, never in between.
//!
//! The order: objects first (blob, trees, commit: unreachable until the ref moves), then an
//! intent journal, then the work-tree files (atomic renames), then the branch ref with a
//! compare-and-swap against the HEAD we started from, then the index entries of those files.
//! A failure after the files were written undoes them; a crash is repaired from the journal
//! by the next chg process that takes the store lock. The commit is built from HEAD's tree,
//! not from the index, so whatever else the user has staged stays staged and uncommitted.

pub use crate::git::{atomic_write, blob_at, head_state, shallow_commits};
use std::path::{Path, PathBuf};

use git2::{ErrorCode, ObjectType, Oid, Repository, Signature, Tree};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A file to write or remove, relative to the work tree, with `/` separators.
#[derive(Debug, Clone)]
pub struct FileWrite {
    /// Path in the repository (`changes/2025/01/CHG-2025-001.yaml`).
    pub path: String,
    /// The new content; `None` removes the file.
    pub content: Option<Vec<u8>>,
}

impl FileWrite {
    /// `path` with `content`.
    pub fn write(path: impl Into<String>, content: impl Into<Vec<u8>>) -> FileWrite {
        FileWrite {
            path: path.into(),
            content: Some(content.into()),
        }
    }

    /// `path` removed.
    pub fn remove(path: impl Into<String>) -> FileWrite {
        FileWrite {
            path: path.into(),
            content: None,
        }
    }
}

/// What a half-done step needs to be finished or undone: the branch move and, per file,
/// the blob (and mode) before and after. Field names are kept from the first version.
#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    ref_name: Option<String>,
    old_head: Option<String>,
    new_head: String,
    files: Vec<JournalFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct JournalFile {
    path: String,
    old_blob: Option<String>,
    new_blob: Option<String>,
    #[serde(default = "regular", skip_serializing_if = "is_regular")]
    old_mode: u32,
    #[serde(default = "regular", skip_serializing_if = "is_regular")]
    new_mode: u32,
}

const REGULAR: u32 = 0o100644;
const EXECUTABLE: u32 = 0o100755;
const SYMLINK: u32 = 0o120000;
const GITLINK: u32 = 0o160000;

fn regular() -> u32 {
    REGULAR
}

fn is_regular(m: &u32) -> bool {
    *m == REGULAR
}

/// Fault injection for the crash tests, compiled only with the `failpoints` feature: the
/// process dies at the named point of the commit protocol, as `kill -9` would. The binary
/// arms it from `CHG_TEST_FAILPOINT`; the library never reads the environment.
#[cfg(feature = "failpoints")]
static FAILPOINT: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Arms the crash point `name` for this process (tests only).
#[cfg(feature = "failpoints")]
pub fn arm_failpoint(name: String) {
    let _ = FAILPOINT.set(name);
}

#[cfg(feature = "failpoints")]
pub(crate) fn failpoint(name: &str) {
    if FAILPOINT.get().is_some_and(|v| v == name) {
        std::process::abort();
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn failpoint(_: &str) {}

/// The index as it is on disk now. A `Repository` hands out the index it loaded first and
/// never looks at the file again by itself: a `git update-index` since (by this process's
/// own earlier step, or another process) goes unseen by a `Repository` that lives long, as a
/// server's does. `read(false)` reloads it when the file changed, and costs a `stat` when not.
pub fn fresh_index(repo: &Repository) -> Result<git2::Index> {
    let mut index = repo.index()?;
    index.read(false)?;
    Ok(index)
}

/// The crash journal of this work tree: each linked worktree has its own (its own index and
/// files), so a chg in one never "repairs" a step another worktree is in the middle of.
fn journal_path(repo: &Repository) -> PathBuf {
    repo.path().join("chg").join("txn.json")
}

/// `tree` with `path` set to `blob` (or removed), creating folders as needed.
pub(crate) fn replace_path(
    repo: &Repository,
    tree: Option<&Tree<'_>>,
    comps: &[&str],
    blob: Option<Oid>,
) -> Result<Oid> {
    let mut builder = repo.treebuilder(tree)?;
    let name = comps[0];
    if comps.len() == 1 {
        match blob {
            Some(id) => {
                let mode = tree
                    .and_then(|t| t.get_name(name))
                    .map(|e| e.filemode())
                    .filter(|m| *m == 0o100755)
                    .unwrap_or(0o100644);
                builder.insert(name, id, mode)?;
            }
            None => {
                if builder.get(name)?.is_some() {
                    builder.remove(name)?;
                }
            }
        }
    } else {
        let sub = match tree.and_then(|t| t.get_name(name)) {
            Some(e) if e.kind() == Some(ObjectType::Tree) => Some(repo.find_tree(e.id())?),
            _ => None,
        };
        let sub_id = replace_path(repo, sub.as_ref(), &comps[1..], blob)?;
        let empty = repo.find_tree(sub_id)?.is_empty();
        if empty {
            if builder.get(name)?.is_some() {
                builder.remove(name)?;
            }
        } else {
            builder.insert(name, sub_id, 0o040000)?;
        }
    }
    Ok(builder.write()?)
}

/// Puts `path` in the work tree as `blob` with `mode` says (or removes it for `None`).
fn restore(
    repo: &Repository,
    workdir: &Path,
    path: &str,
    blob: Option<&str>,
    mode: u32,
) -> Result<()> {
    let abs = workdir.join(path);
    match blob.map(Oid::from_str).transpose()? {
        Some(_) if mode == GITLINK => Ok(()),
        Some(id) => {
            let blob = repo.find_blob(id)?;
            if mode == SYMLINK {
                return write_symlink(&abs, blob.content());
            }
            atomic_write(&abs, blob.content())?;
            set_executable(&abs, mode == EXECUTABLE)
        }
        None => {
            match std::fs::remove_file(&abs) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("cannot remove {}", abs.display()), e)),
            }
            // As git does: folders left empty go too (never the work tree itself).
            let mut dir = abs.parent();
            while let Some(d) = dir {
                if d == workdir || std::fs::remove_dir(d).is_err() {
                    break;
                }
                dir = d.parent();
            }
            Ok(())
        }
    }
}

#[cfg(unix)]
fn set_executable(path: &Path, exec: bool) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    let mode = meta.permissions().mode();
    let want = if exec {
        mode | ((mode & 0o444) >> 2)
    } else {
        mode & !0o111
    };
    if want != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(want))
            .map_err(|e| Error::io(format!("cannot set the mode of {}", path.display()), e))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn set_executable(_: &Path, _: bool) -> Result<()> {
    Ok(())
}

#[cfg(unix)]
fn write_symlink(path: &Path, target: &[u8]) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let target = std::ffi::OsStr::from_bytes(target);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    }
    let tmp = path.with_extension("chg-link");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
}

#[cfg(not(unix))]
fn write_symlink(path: &Path, target: &[u8]) -> Result<()> {
    atomic_write(path, target)
}

fn stage(repo: &Repository, paths: &[&str]) -> Result<()> {
    // git's own `update-index` takes a tenth of a second on a 100,000-file index where
    // libgit2's read-and-write takes a quarter (it checksums the 10 MB index twice with its
    // collision-detecting SHA-1): half of `chg new`. Same lock, same stat data. Without a
    // git on PATH, libgit2 does it.
    if let Some(workdir) = repo.workdir() {
        // Another git may hold index.lock for a moment (an editor refreshing `git status`,
        // or the update-index of a chg that was killed, still finishing): git does not wait
        // for that lock, so wait here, up to two seconds, before giving git's reason.
        let mut tries = 0;
        loop {
            let run = std::process::Command::new("git")
                .arg("update-index")
                .arg("--add")
                .arg("--remove")
                .arg("--")
                .args(paths)
                .current_dir(workdir)
                .env("GIT_DIR", repo.path())
                .env("GIT_WORK_TREE", workdir)
                .env("GIT_INDEX_FILE", repo.path().join("index"))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .output();
            match run {
                Ok(o) if o.status.success() => return Ok(()),
                Ok(o) => {
                    let why = String::from_utf8_lossy(&o.stderr);
                    if why.contains("index.lock") && tries < 40 {
                        tries += 1;
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        continue;
                    }
                    return Err(Error::Internal(format!(
                        "git update-index failed: {}",
                        why.trim()
                    )));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => return Err(Error::io("cannot run git update-index", e)),
            }
        }
    }
    let mut index = fresh_index(repo)?;
    for p in paths {
        match repo.workdir().map(|w| w.join(p)) {
            Some(abs) if abs.symlink_metadata().is_err() => index.remove_path(Path::new(p))?,
            _ => index.add_path(Path::new(p))?,
        }
    }
    index.write()?;
    Ok(())
}

/// The blob git would store for `bytes` at `path`, as `git add` makes it: through the clean
/// filters that apply there (the CRLF conversion of `core.autocrlf` and `.gitattributes`).
/// Written to the object database (libgit2 filters only on the way in).
pub fn clean_blob(repo: &Repository, path: &str, bytes: &[u8]) -> Result<Oid> {
    // libgit2's clean filters (CRLF and ident; chg registers none) change only bytes with a
    // CR or an `$Id`, and finding which apply reads the whole index for its attributes
    // (10 MB at 100,000 files, a fifth of an approval). Other bytes are stored as they are,
    // unless `core.safecrlf=true` would refuse them (LF text where CRLF is asked for).
    let plain = !bytes.contains(&b'\r') && memchr::memmem::find(bytes, b"$Id").is_none();
    if plain && !repo.config()?.get_bool("core.safecrlf").unwrap_or(false) {
        return Ok(repo.blob(bytes)?);
    }
    let mut w = repo.blob_writer(Some(Path::new(path)))?;
    std::io::Write::write_all(&mut w, bytes)
        .map_err(|e| Error::io(format!("cannot hash {path}"), e))?;
    Ok(w.commit()?)
}

/// Whether `bytes`, at `path` in the work tree, are what `blob` holds as git compares them:
/// the same bytes, or the same after the clean filters (a CRLF checkout of an LF blob).
pub fn same_content(repo: &Repository, path: &str, bytes: &[u8], blob: Oid) -> Result<bool> {
    if Oid::hash_object(ObjectType::Blob, bytes)? == blob {
        return Ok(true);
    }
    Ok(clean_blob(repo, path, bytes)? == blob)
}

/// Whether the work tree holds `want` at `path` (`None`: nothing there), a symlink's target
/// for a link, compared as git does ([`same_content`]).
fn worktree_is(repo: &Repository, workdir: &Path, path: &str, want: Option<&str>) -> bool {
    let abs = workdir.join(path);
    let Ok(meta) = abs.symlink_metadata() else {
        return want.is_none();
    };
    let Some(want) = want.and_then(|w| Oid::from_str(w).ok()) else {
        return false;
    };
    if meta.file_type().is_symlink() {
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            return std::fs::read_link(&abs).is_ok_and(|t| {
                Oid::hash_object(ObjectType::Blob, t.as_os_str().as_bytes()).ok() == Some(want)
            });
        }
        #[cfg(not(unix))]
        return false;
    }
    std::fs::read(&abs).is_ok_and(|b| same_content(repo, path, &b, want).unwrap_or(false))
}

/// Writes a commit object (no ref moves), signed when `signer` is given: libgit2 does not
/// sign, so the object's text is built, signed, and written with its `gpgsig` header.
pub fn write_commit(
    repo: &Repository,
    author: &Signature<'_>,
    committer: &Signature<'_>,
    message: &str,
    tree: &Tree<'_>,
    parents: &[&git2::Commit<'_>],
    signer: Option<&dyn crate::context::CommitSigner>,
) -> Result<Oid> {
    let Some(signer) = signer else {
        return Ok(repo.commit(None, author, committer, message, tree, parents)?);
    };
    let buffer = repo.commit_create_buffer(author, committer, message, tree, parents)?;
    let signature = signer.sign(&buffer)?;
    let text = std::str::from_utf8(&buffer)
        .map_err(|_| Error::Internal("the commit text is not UTF-8".into()))?;
    Ok(repo.commit_signed(text, signature.trim_end(), None)?)
}

/// Makes one commit on the current branch that sets exactly `files`, and brings the work
/// tree and the index in line. `expect_head` is the HEAD the caller read its data from.
#[allow(clippy::too_many_arguments)]
pub fn commit_files(
    repo: &Repository,
    files: &[FileWrite],
    message: &str,
    author: &Signature<'_>,
    committer: &Signature<'_>,
    expect_head: Option<Oid>,
    signer: Option<&dyn crate::context::CommitSigner>,
) -> Result<Oid> {
    let workdir = repo
        .workdir()
        .ok_or_else(|| Error::Usage("the repository is bare; chg needs a work tree".into()))?
        .to_path_buf();
    let (ref_name, head) = head_state(repo)?;
    if head != expect_head {
        return Err(Error::Conflict(
            "HEAD moved while chg was working; nothing was changed, run the command again".into(),
        ));
    }
    let parent = head.map(|h| repo.find_commit(h)).transpose()?;
    let base_tree = parent.as_ref().map(|c| c.tree()).transpose()?;

    let mut journal_files = Vec::new();
    let mut tree_id = base_tree.as_ref().map(|t| t.id());
    for f in files {
        let blob = f
            .content
            .as_ref()
            .map(|c| clean_blob(repo, &f.path, c))
            .transpose()?;
        let old = match &base_tree {
            Some(t) => entry_at(t, &f.path)?,
            None => None,
        };
        let current = tree_id.map(|id| repo.find_tree(id)).transpose()?;
        let comps: Vec<&str> = f.path.split('/').collect();
        tree_id = Some(replace_path(repo, current.as_ref(), &comps, blob)?);
        journal_files.push(JournalFile {
            path: f.path.clone(),
            old_blob: old.map(|o| o.0.to_string()),
            new_blob: blob.map(|b| b.to_string()),
            old_mode: old.map_or(REGULAR, |o| o.1),
            new_mode: old.map_or(REGULAR, |o| o.1),
        });
    }
    let tree_id = match tree_id {
        Some(id) => id,
        None => repo.treebuilder(None)?.write()?,
    };
    let tree = repo.find_tree(tree_id)?;
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    let commit = write_commit(repo, author, committer, message, &tree, &parents, signer)?;
    let journal = Journal {
        ref_name,
        old_head: head.map(|h| h.to_string()),
        new_head: commit.to_string(),
        files: journal_files,
    };
    move_branch(
        repo,
        &workdir,
        &journal,
        message.lines().next().unwrap_or("chg"),
    )?;
    Ok(commit)
}

/// Moves the current branch from `expect_head` to `new_head` (a descendant made by the
/// caller, such as a sync) and brings the work tree and the index along, with the same
/// guarantees as a commit: a crash leaves the one or the other. Refuses, changing nothing,
/// when a file it would touch has uncommitted changes.
pub fn advance(repo: &Repository, expect_head: Oid, new_head: Oid, reason: &str) -> Result<()> {
    let workdir = repo
        .workdir()
        .ok_or_else(|| Error::Usage("the repository is bare; chg needs a work tree".into()))?
        .to_path_buf();
    let (ref_name, head) = head_state(repo)?;
    if head != Some(expect_head) {
        return Err(Error::Conflict(
            "HEAD moved while chg was working; nothing was changed, run the command again".into(),
        ));
    }
    let files = changed_files(repo, expect_head, new_head)?;
    refuse_dirty(repo, &workdir, &files)?;
    let journal = Journal {
        ref_name,
        old_head: Some(expect_head.to_string()),
        new_head: new_head.to_string(),
        files,
    };
    move_branch(repo, &workdir, &journal, reason)
}

/// Refuses, with the list, when moving from `from` to `to` would overwrite uncommitted
/// changes in the work tree or the index.
pub fn check_clean(repo: &Repository, from: Oid, to: Oid) -> Result<()> {
    let workdir = repo
        .workdir()
        .ok_or_else(|| Error::Usage("the repository is bare; chg needs a work tree".into()))?;
    refuse_dirty(repo, workdir, &changed_files(repo, from, to)?)
}

fn refuse_dirty(repo: &Repository, workdir: &Path, files: &[JournalFile]) -> Result<()> {
    let dirty = dirty_paths(repo, workdir, files)?;
    if dirty.is_empty() {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "uncommitted changes in {} would be overwritten; commit or stash them first",
        dirty.join(", ")
    )))
}

/// The files that differ between two commits, as journal entries.
fn changed_files(repo: &Repository, from: Oid, to: Oid) -> Result<Vec<JournalFile>> {
    let (a, b) = (
        repo.find_commit(from)?.tree()?,
        repo.find_commit(to)?.tree()?,
    );
    let diff = repo.diff_tree_to_tree(Some(&a), Some(&b), None)?;
    let mut out = Vec::new();
    for d in diff.deltas() {
        let (o, n) = (d.old_file(), d.new_file());
        let path = n
            .path()
            .or_else(|| o.path())
            .and_then(Path::to_str)
            .ok_or_else(|| Error::Internal("a path that is not UTF-8".into()))?
            .to_owned();
        let side = |f: &git2::DiffFile<'_>| {
            (!f.id().is_zero()).then(|| (f.id().to_string(), u32::from(f.mode())))
        };
        let (old, new) = (side(&o), side(&n));
        out.push(JournalFile {
            path,
            old_mode: old.as_ref().map_or(REGULAR, |x| x.1),
            new_mode: new.as_ref().map_or(REGULAR, |x| x.1),
            old_blob: old.map(|x| x.0),
            new_blob: new.map(|x| x.0),
        });
    }
    Ok(out)
}

/// Of `files`, those whose work-tree or index version is not the old one.
fn dirty_paths(repo: &Repository, workdir: &Path, files: &[JournalFile]) -> Result<Vec<String>> {
    let files: Vec<&JournalFile> = files
        .iter()
        .filter(|f| f.old_mode != GITLINK && f.new_mode != GITLINK)
        .collect();
    let mut out = Vec::new();
    for f in files {
        // One path's entry, not the whole index ([`super::staged`]).
        let staged = super::staged::staged_blob(repo, &f.path)?.map(|id| id.to_string());
        if staged != f.old_blob || !worktree_is(repo, workdir, &f.path, f.old_blob.as_deref()) {
            out.push(f.path.clone());
        }
    }
    Ok(out)
}

/// The protocol both commits and advances follow: journal, files, ref (compare-and-swap),
/// index, journal removed; undone on failure, repaired by [`recover`] after a crash.
fn move_branch(repo: &Repository, workdir: &Path, journal: &Journal, reason: &str) -> Result<()> {
    let jpath = journal_path(repo);
    let jtext = serde_json::to_vec(journal).map_err(|e| Error::Internal(e.to_string()))?;
    atomic_write(&jpath, &jtext)?;
    failpoint("after-journal");
    let old = journal.old_head.as_deref().map(Oid::from_str).transpose()?;
    let new = Oid::from_str(&journal.new_head)?;
    let undo_files = |upto: usize| {
        for f in journal.files.iter().take(upto) {
            let _ = restore(repo, workdir, &f.path, f.old_blob.as_deref(), f.old_mode);
        }
    };
    for (i, f) in journal.files.iter().enumerate() {
        if let Err(e) = restore(repo, workdir, &f.path, f.new_blob.as_deref(), f.new_mode) {
            undo_files(i);
            let _ = std::fs::remove_file(&jpath);
            return Err(e);
        }
    }
    failpoint("after-files");
    let moved = match (&journal.ref_name, old) {
        (Some(name), Some(old)) => repo
            .reference_matching(name, new, true, old, reason)
            .map(|_| ()),
        (Some(name), None) => repo.reference(name, new, false, reason).map(|_| ()),
        (None, _) => repo.set_head_detached(new),
    };
    if let Err(e) = moved {
        undo_files(journal.files.len());
        let _ = std::fs::remove_file(&jpath);
        return Err(e.into());
    }
    failpoint("after-ref");
    let paths: Vec<&str> = journal.files.iter().map(|f| f.path.as_str()).collect();
    if let Err(e) = stage(repo, &paths) {
        // Put everything back: the ref first (only if it is still ours), then the files.
        let back = match (&journal.ref_name, old) {
            (Some(name), Some(old)) => repo
                .reference_matching(name, old, true, new, "chg: undo")
                .map(|_| ()),
            (Some(name), None) => repo.find_reference(name).and_then(|mut r| r.delete()),
            (None, Some(old)) => repo.set_head_detached(old),
            (None, None) => Ok(()),
        };
        if back.is_ok() {
            undo_files(journal.files.len());
            let _ = std::fs::remove_file(&jpath);
        }
        return Err(e);
    }
    let _ = std::fs::remove_file(&jpath);
    Ok(())
}

/// The blob and mode at `path` in `tree`.
fn entry_at(tree: &Tree<'_>, path: &str) -> Result<Option<(Oid, u32)>> {
    match tree.get_path(Path::new(path)) {
        Ok(e) if e.kind() == Some(ObjectType::Blob) => Ok(Some((e.id(), e.filemode() as u32))),
        Ok(_) => Ok(None),
        Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether a chg process died in the middle of a step (a journal is left). Cheap: one stat.
pub fn interrupted(repo: &Repository) -> bool {
    journal_path(repo).exists()
}

/// Removes the lock of the branch ref that the dead process was moving: it holds our new
/// commit, or a prefix of it (killed between creating and writing it). Nobody else can be
/// writing that commit id, but any git process writes an empty lock for a moment, so an
/// empty or partial one must first be older than any live writer would leave it.
fn remove_stale_ref_lock(lock: &Path, new_head: &str) -> Result<()> {
    let ours = |t: &str| new_head.starts_with(t.trim());
    let Ok(text) = std::fs::read_to_string(lock) else {
        return Ok(());
    };
    if !ours(&text) {
        return Ok(());
    }
    if text.trim() != new_head {
        let age = std::fs::metadata(lock)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .unwrap_or_default();
        let settle = std::time::Duration::from_secs(1);
        if age < settle {
            std::thread::sleep(settle - age);
        }
        if !std::fs::read_to_string(lock).is_ok_and(|t| ours(&t)) {
            return Ok(());
        }
    }
    match std::fs::remove_file(lock) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("cannot remove {}", lock.display()), e)),
    }
}

/// Removes the index lock that the dead process's `git update-index` left (a process-group
/// kill takes git down with chg, and git then has no chance to remove it): without this,
/// every later command would fail on it. The lock is the dead step's when it was taken after
/// the step's journal was written and has not moved for a second (a live git holds it for
/// milliseconds); any other lock is left to its owner.
fn remove_stale_index_lock(
    lock: &Path,
    journal_written: Option<std::time::SystemTime>,
) -> Result<()> {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let (Some(taken), Some(journal)) = (modified(lock), journal_written) else {
        return Ok(());
    };
    if taken < journal {
        return Ok(());
    }
    let settle = std::time::Duration::from_secs(1);
    let age = taken.elapsed().unwrap_or_default();
    if age < settle {
        std::thread::sleep(settle - age);
    }
    if modified(lock) != Some(taken) {
        return Ok(());
    }
    match std::fs::remove_file(lock) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("cannot remove {}", lock.display()), e)),
    }
}

/// Finishes or undoes a transition that a crashed chg process left half done. Called with
/// the store lock held. Returns a sentence for the user when something was repaired.
pub fn recover(repo: &Repository) -> Result<Option<String>> {
    let jpath = journal_path(repo);
    let text = match std::fs::read(&jpath) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("cannot read {}", jpath.display()), e)),
    };
    let Ok(journal) = serde_json::from_slice::<Journal>(&text) else {
        // A journal torn before it was complete means nothing after it happened.
        let _ = std::fs::remove_file(&jpath);
        return Ok(None);
    };
    let Some(workdir) = repo.workdir().map(Path::to_path_buf) else {
        return Ok(None);
    };
    let journal_written = std::fs::metadata(&jpath).and_then(|m| m.modified()).ok();
    remove_stale_index_lock(&repo.path().join("index.lock"), journal_written)?;
    // A ref lock holding our new commit was taken by the dead process (nobody else knows
    // that commit): libgit2 died between writing and renaming it. It is stale; without
    // removing it every later commit would fail.
    if let Some(name) = &journal.ref_name {
        remove_stale_ref_lock(
            &repo.commondir().join(format!("{name}.lock")),
            &journal.new_head,
        )?;
    }
    // Temporary files of an atomic write the process died in (we hold the store lock: no
    // other chg is writing one now).
    let folders: std::collections::BTreeSet<PathBuf> = journal
        .files
        .iter()
        .filter_map(|f| workdir.join(&f.path).parent().map(Path::to_path_buf))
        .collect();
    for dir in folders {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with(".chg-") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let (_, head) = head_state(repo)?;
    let committed = head.map(|h| h.to_string()).as_deref() == Some(journal.new_head.as_str());
    let mut repaired = Vec::new();
    for f in &journal.files {
        let is = |blob: &Option<String>| worktree_is(repo, &workdir, &f.path, blob.as_deref());
        let (is_new, is_old) = (is(&f.new_blob), is(&f.old_blob));
        if committed {
            if !is_new && is_old {
                restore(repo, &workdir, &f.path, f.new_blob.as_deref(), f.new_mode)?;
            }
            repaired.push(f.path.as_str());
        } else if is_new && !is_old {
            restore(repo, &workdir, &f.path, f.old_blob.as_deref(), f.old_mode)?;
            repaired.push(f.path.as_str());
        }
    }
    if committed {
        let paths: Vec<&str> = journal.files.iter().map(|f| f.path.as_str()).collect();
        stage(repo, &paths)?;
    }
    std::fs::remove_file(&jpath)
        .map_err(|e| Error::io(format!("cannot remove {}", jpath.display()), e))?;
    Ok((!repaired.is_empty()).then(|| {
        format!(
            "chg: repaired an interrupted transition ({}: {})",
            if committed { "completed" } else { "undone" },
            repaired.join(", ")
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The blob libgit2's filters make of `bytes` at `path` (the way taken before the
    /// shortcut for plain bytes).
    fn filtered(repo: &Repository, path: &str, bytes: &[u8]) -> Result<Oid> {
        let mut w = repo.blob_writer(Some(Path::new(path)))?;
        std::io::Write::write_all(&mut w, bytes).unwrap();
        Ok(w.commit()?)
    }

    #[test]
    fn plain_bytes_are_stored_as_the_clean_filters_would_store_them() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        std::fs::write(
            dir.path().join(".gitattributes"),
            "*.yaml text eol=crlf ident\n*.txt text=auto\n",
        )
        .unwrap();
        let texts: [&[u8]; 4] = [b"a: 1\nb: 2\n", b"a: 1\r\nb: 2\r\n", b"id: $Id$\n", b""];
        for autocrlf in ["false", "true", "input"] {
            repo.config()
                .unwrap()
                .set_str("core.autocrlf", autocrlf)
                .unwrap();
            for path in ["changes/x.yaml", "notes.txt", "other"] {
                for bytes in texts {
                    assert_eq!(
                        clean_blob(&repo, path, bytes).unwrap(),
                        filtered(&repo, path, bytes).unwrap(),
                        "{path} {autocrlf} {bytes:?}"
                    );
                }
            }
        }
        // Where libgit2 refuses LF text that would be checked out with CRLF, so does chg.
        repo.config()
            .unwrap()
            .set_bool("core.safecrlf", true)
            .unwrap();
        repo.config()
            .unwrap()
            .set_str("core.autocrlf", "true")
            .unwrap();
        assert!(filtered(&repo, "changes/x.yaml", texts[0]).is_err());
        assert!(clean_blob(&repo, "changes/x.yaml", texts[0]).is_err());
    }
}
