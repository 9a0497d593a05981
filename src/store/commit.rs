//! One commit that touches exactly the named files, made so that a failure or a crash at any
//! point leaves the store as it was before or as it is after, never in between.
//!
//! The order: objects first (blob, trees, commit: unreachable until the ref moves), then an
//! intent journal, then the work-tree files (atomic renames), then the branch ref with a
//! compare-and-swap against the HEAD we started from, then the index entries of those files.
//! A failure after the files were written undoes them; a crash is repaired from the journal
//! by the next chg process that takes the store lock. The commit is built from HEAD's tree,
//! not from the index, so whatever else the user has staged stays staged and uncommitted.

use std::path::{Path, PathBuf};

use git2::{ErrorCode, ObjectType, Oid, Repository, Signature, Tree};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A file to write, relative to the work tree, with `/` separators.
#[derive(Debug, Clone)]
pub struct FileWrite {
    /// Path in the repository (`changes/2025/01/CHG-2025-001.yaml`).
    pub path: String,
    /// The new content.
    pub content: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    ref_name: Option<String>,
    old_head: Option<String>,
    new_head: String,
    files: Vec<JournalFile>,
}

#[derive(Debug, Serialize, Deserialize)]
struct JournalFile {
    path: String,
    old_blob: Option<String>,
    new_blob: String,
}

/// Fault injection for crash tests: `CHG_TEST_FAILPOINT=<name>` kills the process at that
/// point of the commit protocol, as `kill -9` would.
fn failpoint(name: &str) {
    if std::env::var("CHG_TEST_FAILPOINT").is_ok_and(|v| v == name) {
        std::process::abort();
    }
}

fn journal_path(repo: &Repository) -> PathBuf {
    repo.commondir().join("chg").join("txn.json")
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

/// `tree` with `path` set to `blob` (or removed), creating folders as needed.
fn replace_path(
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

/// Writes `content` to `path` atomically (a temporary file in the same folder, then rename).
pub fn atomic_write(path: &Path, content: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".chg-")
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

fn restore(repo: &Repository, workdir: &Path, path: &str, blob: Option<&str>) -> Result<()> {
    let abs = workdir.join(path);
    match blob.map(Oid::from_str).transpose()? {
        Some(id) => atomic_write(&abs, repo.find_blob(id)?.content()),
        None => match std::fs::remove_file(&abs) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("cannot remove {}", abs.display()), e)),
        },
    }
}

fn stage(repo: &Repository, paths: &[&str]) -> Result<()> {
    // git's own `update-index` takes a tenth of a second on a 100,000-file index where
    // libgit2's read-and-write takes a quarter (it checksums the 10 MB index twice with its
    // collision-detecting SHA-1): half of `chg new`. Same lock, same stat data. Without a
    // git on PATH, libgit2 does it.
    if let Some(workdir) = repo.workdir() {
        let run = std::process::Command::new("git")
            .arg("update-index")
            .arg("--add")
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
                return Err(Error::Internal(format!(
                    "git update-index failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("cannot run git update-index", e)),
        }
    }
    let mut index = repo.index()?;
    index.read(false)?;
    for p in paths {
        index.add_path(Path::new(p))?;
    }
    index.write()?;
    Ok(())
}

fn worktree_blob(workdir: &Path, path: &str) -> Option<Oid> {
    let bytes = std::fs::read(workdir.join(path)).ok()?;
    Oid::hash_object(ObjectType::Blob, &bytes).ok()
}

/// Makes one commit on the current branch that sets exactly `files`, and brings the work
/// tree and the index in line. `expect_head` is the HEAD the caller read its data from.
pub fn commit_files(
    repo: &Repository,
    files: &[FileWrite],
    message: &str,
    author: &Signature<'_>,
    committer: &Signature<'_>,
    expect_head: Option<Oid>,
) -> Result<Oid> {
    let workdir = repo
        .workdir()
        .ok_or_else(|| Error::Usage("the repository is bare; chg needs a work tree".into()))?
        .to_path_buf();
    let (ref_name, head) = head_state(repo)?;
    if head != expect_head {
        return Err(Error::Internal(
            "HEAD moved while chg was working; nothing was changed, run the command again".into(),
        ));
    }
    let parent = head.map(|h| repo.find_commit(h)).transpose()?;
    let base_tree = parent.as_ref().map(|c| c.tree()).transpose()?;

    let mut journal_files = Vec::new();
    let mut tree_id = base_tree.as_ref().map(|t| t.id());
    for f in files {
        let blob = repo.blob(&f.content)?;
        let old = match &base_tree {
            Some(t) => blob_at(t, &f.path)?,
            None => None,
        };
        let current = tree_id.map(|id| repo.find_tree(id)).transpose()?;
        let comps: Vec<&str> = f.path.split('/').collect();
        tree_id = Some(replace_path(repo, current.as_ref(), &comps, Some(blob))?);
        journal_files.push(JournalFile {
            path: f.path.clone(),
            old_blob: old.map(|o| o.to_string()),
            new_blob: blob.to_string(),
        });
    }
    let tree = repo.find_tree(tree_id.expect("at least one file"))?;
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    let commit = repo.commit(None, author, committer, message, &tree, &parents)?;

    let journal = Journal {
        ref_name: ref_name.clone(),
        old_head: head.map(|h| h.to_string()),
        new_head: commit.to_string(),
        files: journal_files,
    };
    let jpath = journal_path(repo);
    let jtext = serde_json::to_vec(&journal).map_err(|e| Error::Internal(e.to_string()))?;
    atomic_write(&jpath, &jtext)?;
    failpoint("after-journal");

    let undo_files = |upto: usize| {
        for jf in journal.files.iter().take(upto) {
            let _ = restore(repo, &workdir, &jf.path, jf.old_blob.as_deref());
        }
    };
    for (i, f) in files.iter().enumerate() {
        if let Err(e) = atomic_write(&workdir.join(&f.path), &f.content) {
            undo_files(i);
            let _ = std::fs::remove_file(&jpath);
            return Err(e);
        }
    }
    failpoint("after-files");
    let moved = match (&ref_name, head) {
        (Some(name), Some(old)) => repo
            .reference_matching(
                name,
                commit,
                true,
                old,
                message.lines().next().unwrap_or(""),
            )
            .map(|_| ()),
        (Some(name), None) => repo.reference(name, commit, false, "chg").map(|_| ()),
        (None, _) => repo.set_head_detached(commit),
    };
    if let Err(e) = moved {
        undo_files(files.len());
        let _ = std::fs::remove_file(&jpath);
        return Err(e.into());
    }
    failpoint("after-ref");
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    if let Err(e) = stage(repo, &paths) {
        // Put everything back: the ref first (only if it is still ours), then the files.
        let back = match (&ref_name, head) {
            (Some(name), Some(old)) => repo
                .reference_matching(name, old, true, commit, "chg: undo")
                .map(|_| ()),
            (Some(name), None) => repo.find_reference(name).and_then(|mut r| r.delete()),
            (None, Some(old)) => repo.set_head_detached(old),
            (None, None) => Ok(()),
        };
        if back.is_ok() {
            undo_files(files.len());
            let _ = std::fs::remove_file(&jpath);
        }
        return Err(e);
    }
    let _ = std::fs::remove_file(&jpath);
    Ok(commit)
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
    let (_, head) = head_state(repo)?;
    let committed = head.map(|h| h.to_string()).as_deref() == Some(journal.new_head.as_str());
    let mut repaired = Vec::new();
    for f in &journal.files {
        let now = worktree_blob(&workdir, &f.path).map(|o| o.to_string());
        if committed {
            if now.as_deref() != Some(f.new_blob.as_str()) && now == f.old_blob {
                restore(repo, &workdir, &f.path, Some(&f.new_blob))?;
            }
            repaired.push(f.path.as_str());
        } else if now.as_deref() == Some(f.new_blob.as_str()) {
            restore(repo, &workdir, &f.path, f.old_blob.as_deref())?;
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
