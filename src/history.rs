//! Reading a change's history back from git: chg's own commits through their trailers, and
//! any other commit that touched the file (a hand edit, a merge) through the trees.

use git2::{Oid, Repository, Sort};
use jiff::Timestamp;
use serde::Serialize;

use crate::error::Result;
use crate::model::ChangeId;

/// One step in a change's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The commit id.
    pub commit: String,
    /// Author time.
    #[serde(serialize_with = "crate::model::ser_ts")]
    pub when: Timestamp,
    /// Author name.
    pub author: String,
    /// Author email.
    pub email: String,
    /// `Chg-Action`, or `manual` for a commit without chg trailers.
    pub action: String,
    /// `Chg-Role`.
    pub role: Option<String>,
    /// `Chg-From`.
    pub from: Option<String>,
    /// `Chg-To`.
    pub to: Option<String>,
    /// The commit subject.
    pub subject: String,
    /// Whether the commit carries chg trailers for this change.
    pub by_chg: bool,
}

/// The trailers of a commit message, in order.
pub fn trailers(message: &str) -> Vec<(String, String)> {
    match git2::message_trailers_strs(message) {
        Ok(t) => t
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The history of the change `id` whose file is at `path` (repository path), oldest first.
pub fn change_log(repo: &Repository, id: &ChangeId, path: &str) -> Result<Vec<Entry>> {
    let id_text = id.to_string();
    let mut walk = repo.revwalk()?;
    if walk.push_head().is_err() {
        return Ok(Vec::new());
    }
    walk.set_sorting(Sort::TOPOLOGICAL | Sort::TIME | Sort::REVERSE)?;
    let mut out = Vec::new();
    for oid in walk {
        let oid: Oid = oid?;
        let commit = repo.find_commit(oid)?;
        let message = commit.message().unwrap_or("");
        let tr = trailers(message);
        let get = |k: &str| {
            tr.iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        let mine = get("Chg-Id").as_deref() == Some(id_text.as_str());
        let touched = !mine && touches(&commit, path)?;
        if !mine && !touched {
            continue;
        }
        let author = commit.author();
        out.push(Entry {
            commit: oid.to_string(),
            when: Timestamp::from_second(author.when().seconds()).unwrap_or_default(),
            author: author.name().unwrap_or("").to_owned(),
            email: author.email().unwrap_or("").to_owned(),
            action: if mine {
                get("Chg-Action").unwrap_or_else(|| "?".into())
            } else {
                "manual".into()
            },
            role: if mine { get("Chg-Role") } else { None },
            from: if mine { get("Chg-From") } else { None },
            to: if mine { get("Chg-To") } else { None },
            subject: commit.summary().ok().flatten().unwrap_or("").to_owned(),
            by_chg: mine,
        });
    }
    Ok(out)
}

/// Whether the commit changed the blob at `path` compared with its first parent. Merges are
/// judged against the first parent too, so a merge that brings an edit in shows up.
fn touches(commit: &git2::Commit<'_>, path: &str) -> Result<bool> {
    let tree = commit.tree()?;
    let mine = crate::store::commit::blob_at(&tree, path)?;
    let theirs = match commit.parent(0) {
        Ok(p) => crate::store::commit::blob_at(&p.tree()?, path)?,
        Err(_) => None,
    };
    Ok(mine != theirs)
}
