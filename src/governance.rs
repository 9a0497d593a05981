//! A governed policy (SPEC section 10): whether the content of `policy/` in a commit was
//! authorized. It was when it was the first policy, when the policy governing it had no
//! `governance` (an existing store adopting it), when `chg policy apply` committed a
//! proposal every governance role approved, or when it restores content that was
//! authorized before (`git revert`). Anything else is `policy-unauthorized`, and the policy
//! that governs what follows stays the last authorized one, so that whoever slipped a
//! policy edit in cannot use it to approve their own way out.
//!
//! This module holds the rules a proposal and the policy folder obey; the judge of history
//! that walks the first-parent line is the audit's (`audit::governance`), since judging an
//! apply replays the proposal's history as the audit does.

use std::collections::BTreeMap;

use git2::{Oid, Repository, Tree};

use crate::error::Result;
use crate::model::ChangeRequest;
use crate::policy::Policy;

/// Rule id of a policy change made outside `chg policy apply`.
pub const UNAUTHORIZED: &str = "policy-unauthorized";

/// Rule id of a policy proposal applied before every governance role approved it.
pub const GOVERNANCE: &str = "governance";

/// Rule id of a policy proposal applied after `policy/` changed since it was proposed.
pub const STALE: &str = "proposal-stale";

/// The folder governed with the policy, relative to the store.
pub const POLICY_DIR: &str = "policy";

/// How one policy change stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// The policy in force had no `governance`: a change like any other (a note).
    Ungoverned,
    /// Authorized, and why.
    Authorized(String),
    /// Not authorized, and why.
    Unauthorized(String),
}

impl Standing {
    /// Whether the content counts as authorized (ungoverned changes do).
    pub fn counts(&self) -> bool {
        !matches!(self, Standing::Unauthorized(_))
    }
}

/// The files under `policy/` in `tree`, by path relative to the store, as text.
pub fn policy_files(
    repo: &Repository,
    tree: &Tree<'_>,
    prefix: &str,
) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let Some(id) = policy_tree(tree, prefix)? else {
        return Ok(out);
    };
    let root = repo.find_tree(id)?;
    let mut failed = None;
    root.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
        if entry.kind() == Some(git2::ObjectType::Blob) {
            let path = format!("{POLICY_DIR}/{dir}{}", entry.name().unwrap_or(""));
            match repo.find_blob(entry.id()) {
                Ok(b) => {
                    out.insert(path, String::from_utf8_lossy(b.content()).into_owned());
                }
                Err(e) => {
                    failed = Some(e);
                    return git2::TreeWalkResult::Abort;
                }
            }
        }
        git2::TreeWalkResult::Ok
    })?;
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(out),
    }
}

/// Why `path` (relative to the store) may not be part of a policy proposal: only plain
/// paths of files under `policy/` may (no `..`, `.`, empty or absolute parts, no
/// backslashes or control characters), so applying one never writes anywhere else.
pub fn path_problem(path: &str) -> Option<String> {
    let parts: Vec<&str> = path.split('/').collect();
    let plain = parts.len() >= 2
        && parts[0] == POLICY_DIR
        && parts
            .iter()
            .all(|p| !p.is_empty() && *p != "." && *p != ".." && *p != ".git")
        && !path.chars().any(|c| c == '\\' || c.is_control());
    (!plain).then(|| {
        format!(
            "{:?} is not a file under {POLICY_DIR}/: a policy proposal may hold only files under {POLICY_DIR}/ (no `..`, no links)",
            path
        )
    })
}

/// Why `change`'s proposal could not be applied as it is, if it could not: a path outside
/// `policy/`.
pub fn proposal_problem(change: &ChangeRequest) -> Option<String> {
    change
        .proposed_policy
        .as_ref()?
        .keys()
        .find_map(|p| path_problem(p))
}

/// The tree id of the store's `policy/` folder in `tree`.
pub fn policy_tree(tree: &Tree<'_>, prefix: &str) -> Result<Option<Oid>> {
    let path = format!("{prefix}{POLICY_DIR}");
    match tree.get_path(std::path::Path::new(&path)) {
        Ok(e) if e.kind() == Some(git2::ObjectType::Tree) => Ok(Some(e.id())),
        Ok(_) => Ok(None),
        Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A unified diff from `from` (the policy in force) to `to` (a proposal), file by file.
pub fn diff(from: &BTreeMap<String, String>, to: &BTreeMap<String, String>) -> Result<String> {
    let mut out = String::new();
    let paths: std::collections::BTreeSet<&String> = from.keys().chain(to.keys()).collect();
    for path in paths {
        let (a, b) = (from.get(path), to.get(path));
        if a == b {
            continue;
        }
        let name = std::path::Path::new(path.as_str());
        let mut patch = git2::Patch::from_buffers(
            a.map_or(&[][..], |t| t.as_bytes()),
            a.map(|_| name),
            b.map_or(&[][..], |t| t.as_bytes()),
            b.map(|_| name),
            None,
        )?;
        let buf = patch.to_buf()?;
        out.push_str(&String::from_utf8_lossy(&buf));
    }
    Ok(out)
}

/// Whether `change` proposes exactly `files` (the whole `policy/` folder).
pub fn proposes(change: &ChangeRequest, files: &BTreeMap<String, String>) -> bool {
    change.proposed_policy.as_ref() == Some(files)
}

/// The governance roles that have not given `change` an approval that counts: by a member,
/// for the content as it is, validly signed where the policy requires it.
pub fn missing_governance(change: &ChangeRequest, policy: &Policy) -> Vec<String> {
    let stale = change.stale_approvals();
    let unsigned = crate::rules::unsigned_approvals(change, policy);
    policy
        .governance
        .iter()
        .flatten()
        .filter(|role| {
            !change.standing_approvals().any(|(i, a)| {
                &a.role == *role
                    && policy.is_member(role, &a.by)
                    && !stale.contains(&i)
                    && !unsigned.contains(&i)
            })
        })
        .cloned()
        .collect()
}
