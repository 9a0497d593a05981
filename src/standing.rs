//! A change's standing from verified history, not from what its file says about itself.
//!
//! A `status: approved` line, an approval record or a `requester:` field are claims: anyone
//! with push access can write them with plain git. What chg believes is what its own
//! verified steps produced: the change file's history, replayed commit by commit by the
//! audit (each step judged by the policy and signers in force at its parent), has no
//! exception. `chg gate`, `chg implement`, `chg policy apply` and `chg validate` ask here;
//! the answers come from the audit index, so a warm clone pays only for new commits.

use jiff::Timestamp;

use crate::audit::{Entry, Level};
use crate::error::{Refusal, Result};
use crate::git::Located;
use crate::model::ChangeId;

/// Rule id: the change's history holds a step that chg's verified steps did not produce.
pub const UNVERIFIED: &str = crate::rules::UNVERIFIED;

/// The exceptions about when legitimate steps came (an emergency approved or reviewed
/// late, a review never made), not about what the file says: they stop the gate, but
/// not an approval (a late approval of an emergency is still to be recorded).
const TIMING: &[&str] = &[
    crate::rules::EMERGENCY_APPROVAL_LATE,
    crate::rules::EMERGENCY_APPROVAL_MISSING,
    crate::rules::EMERGENCY_REVIEW_LATE,
    crate::rules::EMERGENCY_REVIEW_MISSING,
    crate::rules::REVIEW_MISSING,
];

/// One place where a change's history does not verify.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Break {
    /// The audit's rule (`manual-status`, `signature`, `segregation-of-duties`, …).
    pub rule: String,
    /// The commit that introduced it.
    pub commit: String,
    /// The audit's sentence.
    pub message: String,
}

impl Break {
    /// The refusal gate and implement give for it.
    pub fn refusal(&self, id: &str) -> Refusal {
        Refusal::new(UNVERIFIED, self.sentence(id)).hint(
            "revert the commits that did not verify (`git revert`), so that the file is back at the last version a chg step wrote, or cancel the change and file it again",
        )
    }

    /// `ID's history does not verify: commit abcd1234 (rule): message`.
    pub fn sentence(&self, id: &str) -> String {
        format!(
            "{id}'s history does not verify: commit {} ({}): {}",
            &self.commit[..self.commit.len().min(8)],
            self.rule,
            self.message
        )
    }
}

/// What verified history says about one change.
#[derive(Debug, Clone, Default)]
pub struct Standing {
    /// Its history, oldest first (renumberings followed).
    pub entries: Vec<Entry>,
    /// The exception the file as it is still stands on: the first one not undone, that is,
    /// unless a later commit returned the file to exactly the version before it.
    pub open: Option<Break>,
    /// The clone is shallow: the history before its cut cannot be verified.
    pub shallow: bool,
    /// As `open`, of the exceptions about the file's state only (not [`TIMING`]): what an
    /// approval must not be built on.
    pub state_break: Option<Break>,
}

impl Standing {
    /// The first reason not to believe the change's file, if any.
    pub fn refusal(&self, id: &str) -> Option<Refusal> {
        match &self.open {
            Some(b) => Some(b.refusal(id)),
            None => self.unprovable(id),
        }
    }

    /// Why the history cannot vouch for the file whatever it holds: a shallow clone, or
    /// no committed history.
    fn unprovable(&self, id: &str) -> Option<Refusal> {
        if self.shallow {
            return Some(
                Refusal::new(
                    UNVERIFIED,
                    format!("{id}'s history cannot be verified in a shallow clone"),
                )
                .hint("fetch the whole history (`git fetch --unshallow`, or a fetch depth of 0 in CI)"),
            );
        }
        if self.entries.is_empty() {
            return Some(Refusal::new(
                UNVERIFIED,
                format!("{id} has no committed history: commit it first"),
            ));
        }
        None
    }

    /// Who made the change's first version: the actor of its `new` step (or the author of
    /// the commit that created its file by hand).
    pub fn creator(&self) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| e.material)
            .map(|e| e.email.as_str())
    }

    /// The author and commit of the last material edit (the content approvals vouch for).
    pub fn content_author(&self) -> Option<(&str, &str)> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.material)
            .map(|e| (e.email.as_str(), e.commit.as_str()))
    }

    /// Whether the policy's risk questionnaire is due from the change: it is unless its
    /// history shows it submitted (filed pending, or taken out of draft) under a policy
    /// that did not ask it. A change not yet submitted is judged by today's policy.
    pub fn questionnaire_due(&self) -> bool {
        questionnaire_due(&self.entries)
    }

    /// What the approval rules need from this history ([`crate::rules::Provenance`]) of
    /// change `id`, with why it does not vouch for the file's state, if it does not.
    pub fn provenance(&self, id: &str) -> crate::rules::Provenance {
        let unverified = match &self.state_break {
            Some(b) => Some(b.refusal(id)),
            // No exception about the file's state open (a timing one may be).
            None => self.unprovable(id),
        };
        crate::rules::Provenance {
            unverified,
            ..provenance(&self.entries)
        }
    }
}

/// [`Standing::provenance`] of a history.
fn provenance(entries: &[Entry]) -> crate::rules::Provenance {
    let material = || entries.iter().filter(|e| e.material);
    crate::rules::Provenance {
        creator: material().next().map(|e| e.email.clone()),
        content_author: material()
            .next_back()
            .map(|e| (e.email.clone(), e.commit.clone())),
        questionnaire_due: questionnaire_due(entries),
        // The last step that took the change out of draft.
        submitted_at: entries
            .iter()
            .rev()
            .find(|e| e.submitted.is_some())
            .map(|e| e.when),
        unverified: None,
    }
}

/// The [`crate::rules::Provenance`] of each of the changes `ids`, by id: the audit index
/// read once for all of them.
pub fn provenances(
    store: &dyn Located,
    ids: &[String],
    now: Timestamp,
) -> Result<std::collections::HashMap<String, crate::rules::Provenance>> {
    provenances_kept(store, ids, now, &mut KeptProvenances::default())
}

/// Provenances kept between calls (by a server), each with what its history was read
/// from ([`crate::audit::index::HistoryKey`]): one is used again only while the audit index
/// holds the same log files it was read from, so a change whose history grew (a step,
/// through any front end), a rewritten history or a rebuilt index is read afresh.
#[derive(Debug, Default)]
pub struct KeptProvenances {
    by_id: std::collections::HashMap<
        String,
        (crate::audit::index::HistoryKey, crate::rules::Provenance),
    >,
}

/// Past this many changes the kept provenances are dropped and read again.
const MAX_KEPT: usize = 500_000;

/// [`provenances`], using and refreshing what `kept` holds.
pub fn provenances_kept(
    store: &dyn Located,
    ids: &[String],
    now: Timestamp,
    kept: &mut KeptProvenances,
) -> Result<std::collections::HashMap<String, crate::rules::Provenance>> {
    if kept.by_id.len() + ids.len() > MAX_KEPT {
        kept.by_id.clear();
    }
    let read =
        crate::audit::histories_unless(store, ids, now, |id| kept.by_id.get(id).map(|(k, _)| k))?;
    let shallow = !crate::git::shallow_commits(store.repo()).is_empty();
    let mut out = std::collections::HashMap::with_capacity(read.len());
    for (id, key, entries) in read {
        let p = match entries {
            // As approve judges it: with whether the history vouches for the file.
            Some(entries) => from_history(store, entries, shallow)?.provenance(&id),
            // Not read again: `known` found it kept.
            None => kept.by_id.get(&id).map(|(_, p)| p.clone()).ok_or_else(|| {
                crate::error::Error::Internal(format!("{id}: no kept provenance"))
            })?,
        };
        kept.by_id.insert(id.clone(), (key, p.clone()));
        out.insert(id, p);
    }
    Ok(out)
}

/// [`Standing::questionnaire_due`] of a history: the last submission decides (a merge that
/// brings a change submitted on a branch submits it again into the receiving line).
fn questionnaire_due(entries: &[Entry]) -> bool {
    entries
        .iter()
        .rev()
        .find_map(|e| e.submitted)
        .unwrap_or(true)
}

fn exceptions(e: &Entry) -> impl Iterator<Item = Break> + '_ {
    e.problems
        .iter()
        .filter(|p| p.level == Level::Exception)
        .map(|p| Break {
            rule: p.rule.clone(),
            commit: e.commit.clone(),
            message: p.message.clone(),
        })
}

/// The standing of change `id` at HEAD, from the audit index (brought up to date first).
///
/// The file is believed when every commit in its history verified, or when the file went
/// back to exactly the version before the first commit that did not (a `git revert` of the
/// commits that did not verify). Going back to any older version (a revert of a verified
/// cancellation, say) is itself a commit that does not verify: it resurrects what a
/// verified step ended.
pub fn of(store: &dyn Located, id: &ChangeId, now: Timestamp) -> Result<Standing> {
    let entries = crate::audit::verified_history(store, &id.to_string(), now)?;
    let shallow = !crate::git::shallow_commits(store.repo()).is_empty();
    from_history(store, entries, shallow)
}

/// The standing that `entries` (a change's history from the audit index) give, in a
/// clone that is `shallow` or not.
fn from_history(store: &dyn Located, entries: Vec<Entry>, shallow: bool) -> Result<Standing> {
    let repo = store.repo();
    // The file's blob in the entry's commit, or in its first parent (the line it was made
    // on, for a merge).
    let blob = |e: &Entry, parent: bool| -> Result<Option<git2::Oid>> {
        let Ok(oid) = git2::Oid::from_str(&e.commit) else {
            return Ok(None);
        };
        let mut commit = repo.find_commit(oid)?;
        if parent {
            match commit.parents().next() {
                Some(p) => commit = p,
                None => return Ok(None),
            }
        }
        crate::git::blob_at(&commit.tree()?, &e.path)
    };
    // The open break of the exceptions `counts` keeps, and the version before it that
    // undoing it returns to.
    let open_of = |counts: &dyn Fn(&Break) -> bool| -> Result<Option<Break>> {
        let mut open: Option<(Break, Option<git2::Oid>)> = None;
        for e in &entries {
            match &open {
                Some((_, before)) => {
                    if blob(e, false)? == *before {
                        open = None;
                    }
                }
                None => {
                    if let Some(first) = exceptions(e).find(|b| counts(b)) {
                        open = Some((first, blob(e, true)?));
                    }
                }
            }
        }
        Ok(open.map(|o| o.0))
    };
    let open = open_of(&|_| true)?;
    let state_break = match &open {
        Some(b) if TIMING.contains(&b.rule.as_str()) => {
            open_of(&|b| !TIMING.contains(&b.rule.as_str()))?
        }
        other => other.clone(),
    };
    Ok(Standing {
        open,
        shallow,
        state_break,
        entries,
    })
}

/// Of the changes `ids`, those submitted before the policy asked its risk questionnaire
/// (see [`Standing::questionnaire_due`]): the audit index read once for all of them.
pub fn questionnaire_waived(
    store: &dyn Located,
    ids: &[String],
    now: Timestamp,
) -> Result<std::collections::BTreeSet<String>> {
    Ok(crate::audit::histories(store, ids, now)?
        .into_iter()
        .filter(|(_, entries)| !questionnaire_due(entries))
        .map(|(id, _)| id)
        .collect())
}

/// Of the changes `ids`, those from which the questionnaire is due: all but those
/// submitted before the policy asked it ([`questionnaire_waived`]).
pub fn questionnaire_due_among(
    store: &dyn Located,
    ids: &[String],
    now: Timestamp,
) -> Result<std::collections::BTreeSet<String>> {
    let waived = questionnaire_waived(store, ids, now)?;
    Ok(ids
        .iter()
        .filter(|id| !waived.contains(*id))
        .cloned()
        .collect())
}

/// The changes whose history holds an exception still open, with it (for `chg validate`):
/// the audit index read once for all of them.
pub fn open_breaks(store: &dyn Located, now: Timestamp) -> Result<Vec<(String, Break)>> {
    let mut out = Vec::new();
    for (id, entries) in crate::audit::histories_with_exceptions(store, now)? {
        if let Some(b) = from_history(store, entries, false)?.open {
            out.push((id, b));
        }
    }
    Ok(out)
}
