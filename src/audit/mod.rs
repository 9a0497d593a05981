//! `chg audit` (SPEC section 7): the git history of `changes/` and `policy/` checked commit
//! by commit against the life cycle and the policy in force at that commit.
//!
//! Each commit is judged on its own: the version of every change file it touched before
//! (first parent) and after, its trailers, its author and time, and the policy of its first
//! parent. A commit's verdict therefore never changes once its id is known, which is what
//! lets [`index`] cache verdicts by commit and audit only new commits. The few checks that
//! depend on the present (an emergency change whose approvals never came) are made at the
//! end of every run from the change files at HEAD.
//!
//! chg's own commits are *replayed*: the step their trailers name is applied with
//! [`workflow::apply`] to the version before, as the author at the commit's time under the
//! policy in force, and the result must equal the version after. So a status flipped by
//! hand under chg-looking trailers, an approval by someone outside the role or a commit that
//! did more than it says cannot pass.

mod auditor;
mod checks;
pub mod controls;
mod diff;
pub mod export;
mod facts;
pub mod feed;
pub mod governance;
pub mod index;
mod merges;
pub mod reconcile;
mod walk;
pub mod witness;

pub use auditor::Auditor;
use auditor::{Item, step_records};
use checks::{Ctx, recorded_implementer};
use diff::{diff_path, pair_renames};
use facts::Facts;
pub use walk::{Walked, walk};

use std::collections::HashMap;
use std::sync::Arc;

use git2::{Commit, ObjectType, Oid, Repository, Tree};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::decode;
use crate::error::Result;
use crate::layout::id_of_path;
use crate::model::{ChangeModel, ChangeRequest, Decision, Status, format_timestamp};
use crate::policy::{POLICY_PATH, Policy, SodCheck};
use crate::rules;
use crate::trailers::{Action, Trailers};
use crate::validate;
use crate::workflow;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Something the policy or the life cycle does not allow: `chg audit` exits 1.
    Exception,
    /// Normal but worth an auditor's eye (a change created or edited by hand, a policy change).
    Note,
}

impl Level {
    /// `exception` or `note`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Exception => "exception",
            Level::Note => "note",
        }
    }
}

/// What audit found wrong (or noteworthy) with one step.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Problem {
    /// Exception or note.
    pub level: Level,
    /// The rule, such as `approval-role` or `manual-status`.
    pub rule: String,
    /// One sentence.
    pub message: String,
}

impl Problem {
    fn exception(rule: &str, message: impl Into<String>) -> Self {
        Problem {
            level: Level::Exception,
            rule: rule.to_owned(),
            message: message.into(),
        }
    }

    fn note(rule: &str, message: impl Into<String>) -> Self {
        Problem {
            level: Level::Note,
            rule: rule.to_owned(),
            message: message.into(),
        }
    }
}

/// One commit's effect on one change file: a line of `chg log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the audited history (oldest first), for ordering.
    pub seq: u64,
    /// The commit id.
    pub commit: String,
    /// Author time.
    pub when: Timestamp,
    /// Author name.
    pub author: String,
    /// Author email.
    pub email: String,
    /// The change id (from the file name).
    pub id: String,
    /// The file's repository path after the commit (before it, for a deletion).
    pub path: String,
    /// `Chg-Action`; `manual` for a commit without chg trailers for this change, `merge` for
    /// a merge commit's own edit.
    pub action: String,
    /// `Chg-Role`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// `Chg-From`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// `Chg-To`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The commit subject.
    pub subject: String,
    /// Whether the commit carries chg trailers for this change.
    pub by_chg: bool,
    /// What audit found.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
    /// For `chg renumber`: the file (and so the id) the change had before this commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renumbered_from: Option<String>,
    /// The commit created the change or changed its material content (what approvals
    /// vouch for): its author made the content that later approvals approve.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub material: bool,
    /// For a chg approval, and for a commit that recorded an implementer: the segregation
    /// of duties checks the policy at the commit's parent forbade, for [`history_pass`] to
    /// judge on who history shows filed the change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sod: Vec<SodCheck>,
    /// The implementer the commit recorded (by `chg implement` or by hand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub implementer: Option<String>,
    /// For the commit that took the change out of draft (filed it pending, or submitted
    /// it): whether the policy at its parent asked the risk questionnaire. A change
    /// submitted before the policy asked it keeps the rules of its day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted: Option<bool>,
}

/// Who made each change's content so far, carried through an index update in history
/// order: the actor of its first version and the author of its last material edit.
#[derive(Debug, Default)]
pub struct HistoryState {
    authors: HashMap<String, Authors>,
}

#[derive(Debug, Default, Clone)]
struct Authors {
    creator: Option<String>,
    content: Option<(String, String)>,
}

impl Authors {
    fn after(&mut self, e: &Entry) {
        if e.material {
            if self.creator.is_none() {
                self.creator = Some(e.email.clone());
            }
            self.content = Some((e.email.clone(), e.commit.clone()));
        }
    }
}

/// Segregation of duties judged on who made what, as history shows it (not on the
/// `requester:` field a file claims): an approval by the change's creator or by the author
/// of the content it approves, and an implementation by its creator, are exceptions where
/// the policy at the commit's parent forbade them.
fn history_pass(
    verdicts: &mut [CommitAudit],
    state: &mut HistoryState,
    earlier: &dyn Fn(&str) -> Result<Option<Vec<Entry>>>,
) -> Result<()> {
    for v in verdicts.iter_mut() {
        let mut found = Vec::new();
        for e in v.entries.iter_mut() {
            if !state.authors.contains_key(&e.id) {
                let mut a = Authors::default();
                for old in earlier(&e.id)?.unwrap_or_default() {
                    a.after(&old);
                }
                state.authors.insert(e.id.clone(), a);
            }
            let a = state.authors.get_mut(&e.id).expect("inserted above");
            let reported = e.problems.iter().any(|p| p.rule == rules::SEGREGATION);
            let forbids = |c| e.sod.contains(&c);
            let why = if reported {
                None
            } else if e.by_chg && e.action == "approve" && forbids(SodCheck::RequesterApproves) {
                let content = a
                    .content
                    .as_ref()
                    .map(|(who, c)| (who.as_str(), c.as_str()));
                rules::proven_author_approves(&e.email, a.creator.as_deref(), content)
            } else if let Some(who) = &e.implementer
                && forbids(SodCheck::RequesterImplements)
            {
                rules::proven_creator_implements(who, a.creator.as_deref())
            } else {
                None
            };
            if let Some(why) = why {
                let p = Problem::exception(rules::SEGREGATION, why);
                found.push(AuditFinding {
                    level: p.level,
                    rule: p.rule.clone(),
                    change: Some(e.id.clone()),
                    path: Some(e.path.clone()),
                    commit: e.commit.clone(),
                    author: e.email.clone(),
                    when: e.when,
                    message: p.message.clone(),
                });
                e.problems.push(p);
            }
            a.after(e);
        }
        v.findings.extend(found);
    }
    Ok(())
}

impl Entry {
    /// `from -> to` as the trailers say, or `(not made by chg)`.
    pub fn status_change(&self) -> String {
        match (&self.from, &self.to) {
            (Some(f), Some(t)) => format!("{f} -> {t}"),
            (None, Some(t)) => format!("-> {t}"),
            _ => "(not made by chg)".into(),
        }
    }

    /// `ok`, or the rules audit found (notes marked `note:`).
    pub fn verdict(&self) -> String {
        if self.problems.is_empty() {
            return "ok".into();
        }
        self.problems
            .iter()
            .map(|p| match p.level {
                Level::Exception => p.rule.clone(),
                Level::Note => format!("note: {}", p.rule),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One finding of `chg audit`: the change, the commit, who, when and the rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AuditFinding {
    /// Exception or note.
    pub level: Level,
    /// The rule.
    pub rule: String,
    /// The change id, when the finding is about one change.
    pub change: Option<String>,
    /// The file, when one is concerned.
    pub path: Option<String>,
    /// The commit id.
    pub commit: String,
    /// The commit author's email.
    pub author: String,
    /// The commit's author time.
    pub when: Timestamp,
    /// One sentence.
    pub message: String,
}

/// An emergency change that entered implementation: its approvals and review are owed by a
/// deadline, which is checked against the present at every run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Emergency {
    /// The change id.
    pub id: String,
    /// Its file at that commit.
    pub path: String,
    /// The commit that started implementation.
    pub commit: String,
    /// That commit's author.
    pub author: String,
    /// That commit's time.
    pub when: Timestamp,
}

/// The verdict on one commit.
#[derive(Debug, Clone, Default)]
pub struct CommitAudit {
    /// One entry per change file the commit touched.
    pub entries: Vec<Entry>,
    /// Every problem, of the entries and of the commit as a whole.
    pub findings: Vec<AuditFinding>,
    /// Emergency changes this commit started implementing.
    pub emergencies: Vec<Emergency>,
}

/// Audits `oids` in parallel (each worker opens the repository at `git_dir`); verdicts come
/// back in the order of `oids`, with `seq` numbers from `seq0`.
///
/// `walked` is a walk made from the commit-graph file: each commit is held to it (see
/// [`walk::Walked::check`]), and the audit stops at the first that disagrees (an error,
/// not a verdict).
pub fn audit_commits(
    git_dir: &std::path::Path,
    prefix: &str,
    oids: &[Oid],
    seq0: u64,
    walked: Option<&walk::Walked>,
) -> Result<Vec<CommitAudit>> {
    use rayon::prelude::*;
    const CHUNK: usize = 512;
    let memo = Arc::new(crate::audit::governance::Memo::default());
    let own = crate::git::own_packs_fit(&Repository::open(git_dir)?, rayon::current_num_threads());
    let chunks: Vec<Vec<CommitAudit>> = oids
        .par_chunks(CHUNK)
        .enumerate()
        .map(|(ci, chunk)| {
            // A repository of its own for each chunk, not one per worker for the whole
            // audit: libgit2's object cache, once full, evicts by scanning its table from
            // the start on every insertion; a pool of long-lived repositories made the
            // audit slower, not faster.
            let repo = Repository::open(git_dir)?;
            if let Some(worker) = rayon::current_thread_index().filter(|_| own) {
                crate::git::own_packs(&repo, worker)?;
            }
            let mut auditor = Auditor::with_memo(&repo, prefix, memo.clone());
            chunk
                .iter()
                .enumerate()
                .map(|(i, oid)| {
                    auditor.commit_of_walk(*oid, seq0 + (ci * CHUNK + i) as u64, walked)
                })
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<_>>()?;
    Ok(chunks.into_iter().flatten().collect())
}

/// The checks that depend on the present: emergency changes whose approvals or review are
/// overdue at `now`. `change` is the version at HEAD.
pub fn overdue(change: &ChangeRequest, policy: &Policy, now: Timestamp) -> Vec<Problem> {
    rules::emergency_overdue(change, policy, now)
        .into_iter()
        .map(|r| Problem::exception(r.rule, r.message))
        .collect()
}

/// The audit engine as the index sees it: walk and judge commits of one store.
struct Judge<'s> {
    repo: &'s Repository,
    commits: CommitJudge<'s>,
}

/// Judges commits of one store; each worker opens the repository itself (a libgit2
/// repository is not shared between threads).
struct CommitJudge<'s> {
    git_dir: &'s std::path::Path,
    prefix: &'s str,
    /// The walk, when the commit-graph file said which commits are parents of which.
    walked: std::sync::OnceLock<walk::Walked>,
}

impl index::Verdicts for CommitJudge<'_> {
    fn verdicts(&self, batch: &[Oid], seq: u64) -> Result<Vec<CommitAudit>> {
        let walked = self.walked.get();
        audit_commits(self.git_dir, self.prefix, batch, seq, walked)
    }
}

impl index::Engine for Judge<'_> {
    fn commits(&self, head: Oid, hide: Option<Oid>) -> Result<Vec<Oid>> {
        let (oids, from_graph) = walk::walk_telling(self.repo, head, hide)?;
        if from_graph {
            let _ = self.commits.walked.set(walk::Walked::of(&oids));
        }
        Ok(oids)
    }

    fn judge(&self) -> &(dyn index::Verdicts + Sync) {
        &self.commits
    }

    fn history(
        &self,
        verdicts: &mut [CommitAudit],
        state: &mut HistoryState,
        earlier: &dyn Fn(&str) -> Result<Option<Vec<Entry>>>,
    ) -> Result<()> {
        history_pass(verdicts, state, earlier)
    }
}

/// Brings the store's audit index up to date, judging what it has not seen.
fn update_index(
    store: &dyn crate::git::Located,
    full: bool,
    now: Timestamp,
) -> Result<(index::Index, index::Update)> {
    crate::git::tune_libgit2();
    let judge = Judge {
        repo: store.repo(),
        commits: CommitJudge {
            git_dir: store.repo().path(),
            prefix: store.prefix(),
            walked: std::sync::OnceLock::new(),
        },
    };
    index::Index::update(store.repo(), store.prefix(), full, now, &judge)
}

/// Brings the index up to date and reads it with `read`; when what `read` needs does not
/// verify (a cache file emptied, garbled or cut short), rebuilds the index from the history
/// once and reads again. A cache is never a source of truth.
fn read_index<T>(
    store: &dyn crate::git::Located,
    full: bool,
    now: Timestamp,
    read: impl Fn(&index::Index) -> Result<Option<T>>,
) -> Result<(index::Index, index::Update, T)> {
    let (idx, update) = update_index(store, full, now)?;
    if let Some(v) = read(&idx)? {
        return Ok((idx, update, v));
    }
    let (idx, mut again) = update_index(store, true, now)?;
    again.repaired = true;
    again.rewrite = update.rewrite.or(again.rewrite);
    match read(&idx)? {
        Some(v) => Ok((idx, again, v)),
        None => Err(crate::error::Error::Internal(
            "the audit index in .git/chg/audit does not verify even after a rebuild".into(),
        )),
    }
}

/// What `chg audit` asks for.
#[derive(Debug, Clone)]
pub struct Options {
    /// Only findings of commits at or after this time.
    pub since: Option<Timestamp>,
    /// Only findings of commits before this time.
    pub until: Option<Timestamp>,
    /// Re-verify every commit, ignoring the index.
    pub full: bool,
    /// The present, for deadlines that may have passed since.
    pub now: Timestamp,
}

/// What `chg audit` found.
#[derive(Debug, Clone)]
pub struct Report {
    /// Every finding in the period, oldest first.
    pub findings: Vec<AuditFinding>,
    /// Commits in the audited history.
    pub commits: u64,
    /// Commits verified by this run (the others came from the index).
    pub audited: u64,
    /// The index was rebuilt.
    pub rebuilt: bool,
    /// The index did not verify and was rebuilt from the history.
    pub repaired: bool,
    /// The commit audited up to.
    pub head: Option<String>,
}

impl Report {
    /// The number of exceptions.
    pub fn exceptions(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.level == Level::Exception)
            .count()
    }
}

/// Audits the history of the store's branch (incrementally, unless `opts.full`).
pub fn run(store: &dyn crate::git::Located, opts: &Options) -> Result<Report> {
    Ok(run_with_index(store, opts, |_| Ok(Some(())))?.0)
}

/// [`run`], also handing back the index it brought up to date and what `extra` read from it
/// (verified, like the findings). A rewrite of the history is an exception in the first
/// audit that sees it, a note after.
pub(crate) fn run_with_index<T>(
    store: &dyn crate::git::Located,
    opts: &Options,
    extra: impl Fn(&index::Index) -> Result<Option<T>>,
) -> Result<(Report, index::Index, T)> {
    let (mut idx, update, (found, more)) = read_index(store, opts.full, opts.now, |idx| {
        let Some(found) = idx.findings()? else {
            return Ok(None);
        };
        Ok(extra(idx)?.map(|more| (found, more)))
    })?;
    let mut findings = Vec::new();
    for r in idx.rewrites() {
        findings.push(AuditFinding {
            level: if r.reported {
                Level::Note
            } else {
                Level::Exception
            },
            rule: "history-rewritten".into(),
            change: None,
            path: None,
            commit: r.old_tip.clone(),
            author: String::new(),
            when: r.detected_at,
            message: format!(
                "the history of {} was rewritten: {} is no longer in it (tip now {}); the audit index was rebuilt",
                r.branch,
                &r.old_tip[..r.old_tip.len().min(12)],
                &r.new_tip[..r.new_tip.len().min(12)]
            ),
        });
    }
    findings.extend(found);
    findings.extend(overdue_findings(store, &idx, None, opts.now)?);
    idx.acknowledge_rewrites()?;
    let in_period =
        |t: Timestamp| opts.since.is_none_or(|s| t >= s) && opts.until.is_none_or(|u| t < u);
    findings.retain(|f| f.rule == "history-rewritten" || in_period(f.when));
    let report = Report {
        findings,
        commits: idx.commits(),
        audited: update.audited,
        rebuilt: update.rebuilt,
        repaired: update.repaired,
        head: idx.tip().map(str::to_owned),
    };
    Ok((report, idx, more))
}

/// The history of one change (from the index, brought up to date first), each step with
/// what audit found wrong with it.
pub fn change_log(
    store: &dyn crate::git::Located,
    id: &crate::model::ChangeId,
    now: Timestamp,
) -> Result<Vec<Entry>> {
    let id = id.to_string();
    let (idx, _, mut entries) = read_index(store, false, now, |idx| history(idx, &id))?;
    for f in overdue_findings(store, &idx, Some(&id), now)? {
        if let Some(e) = entries.iter_mut().rev().find(|e| e.commit == f.commit) {
            e.problems.push(Problem {
                level: f.level,
                rule: f.rule,
                message: f.message,
            });
        }
    }
    Ok(entries)
}

/// The history of `id` in the index, following renumberings back to the first file;
/// `None` when a file it needs does not verify.
fn history(idx: &index::Index, id: &str) -> Result<Option<Vec<Entry>>> {
    let Some(entries) = idx.log(id)? else {
        return Ok(None);
    };
    Ok(history_from(idx, id, entries)?.map(|(e, _)| e))
}

/// [`history`] from `id`'s own entries, with the ids whose logs it was read from (`id`,
/// then the ids it was renumbered from).
fn history_from(
    idx: &index::Index,
    id: &str,
    mut entries: Vec<Entry>,
) -> Result<Option<(Vec<Entry>, Vec<String>)>> {
    // A renumbered change's history starts in its old file, under its old id.
    let mut seen = Vec::new();
    let mut from = vec![id.to_owned()];
    while let Some(old) = entries
        .iter()
        .filter_map(|e| e.renumbered_from.clone())
        .find(|o| !seen.contains(o))
    {
        let cut = entries
            .iter()
            .find(|e| e.renumbered_from.as_deref() == Some(old.as_str()))
            .map_or(u64::MAX, |e| e.seq);
        let old_id = id_of_path(&old);
        let Some(before) = idx.log(old_id)? else {
            return Ok(None);
        };
        from.push(old_id.to_owned());
        let mut earlier: Vec<Entry> = before
            .into_iter()
            .filter(|e| e.seq < cut && e.path == old)
            .collect();
        earlier.append(&mut entries);
        entries = earlier;
        seen.push(old);
    }
    Ok(Some((entries, from)))
}

/// Overdue emergency approvals and reviews, judged on the change files at HEAD under the
/// policy in force when the emergency began (at the parent of the commit that started its
/// implementation): a later policy that retired an approver does not undo her approval.
fn overdue_findings(
    store: &dyn crate::git::Located,
    idx: &index::Index,
    only: Option<&str>,
    now: Timestamp,
) -> Result<Vec<AuditFinding>> {
    let repo = store.repo();
    let Some(tip) = idx.tip().and_then(|t| Oid::from_str(t).ok()) else {
        return Ok(Vec::new());
    };
    let tree = repo.find_commit(tip)?.tree()?;
    let mut latest: HashMap<&str, &Emergency> = HashMap::new();
    for e in idx.emergencies() {
        if only.is_none_or(|o| o == e.id) {
            latest.insert(&e.id, e);
        }
    }
    if latest.is_empty() {
        return Ok(Vec::new());
    }
    let mut auditor = Auditor::new(repo, store.prefix());
    let head_policy = auditor.policy_of(&tree)?;
    let mut by_folder: HashMap<Option<Oid>, Arc<Policy>> = HashMap::new();
    let mut list: Vec<&Emergency> = latest.into_values().collect();
    list.sort_by(|a, b| (a.when, &a.id).cmp(&(b.when, &b.id)));
    let mut out = Vec::new();
    let limit = now.checked_add(rules::CLOCK_SKEW).unwrap_or(now);
    for e in list.iter().filter(|e| e.when > limit) {
        // Dated ahead, its deadlines would never come: reported against the present.
        out.push(AuditFinding {
            level: Level::Exception,
            rule: rules::TIME_ORDER.into(),
            change: Some(e.id.clone()),
            path: Some(e.path.clone()),
            commit: e.commit.clone(),
            author: e.author.clone(),
            when: e.when,
            message: format!(
                "the emergency implementation is dated {}, in the future (now {}): its approval and review deadlines would never come",
                format_timestamp(e.when),
                format_timestamp(now)
            ),
        });
    }
    for e in list {
        let Some(blob) = crate::git::blob_at(&tree, &e.path)? else {
            continue;
        };
        let decoded = auditor.decode(blob, &e.path)?;
        let Ok(change) = decoded.as_ref() else {
            continue;
        };
        let started = Oid::from_str(&e.commit)
            .ok()
            .and_then(|oid| repo.find_commit(oid).ok())
            .and_then(|c| c.parents().next())
            .map(|p| p.tree())
            .transpose()?;
        // Most emergencies began under one of a few policies: read each once, by the
        // policy folder's tree.
        let policy = match started {
            Some(t) => {
                let key = crate::governance::policy_tree(&t, store.prefix())?;
                match by_folder.get(&key) {
                    Some(p) => p.clone(),
                    None => {
                        let p = auditor.policy_of(&t)?;
                        by_folder.insert(key, p.clone());
                        p
                    }
                }
            }
            None => head_policy.clone(),
        };
        for p in overdue(change, &policy, now) {
            out.push(AuditFinding {
                level: p.level,
                rule: p.rule,
                change: Some(e.id.clone()),
                path: Some(e.path.clone()),
                commit: e.commit.clone(),
                author: e.author.clone(),
                when: e.when,
                message: p.message,
            });
        }
    }
    Ok(out)
}

/// The history of change `id` as the audit index holds it (brought up to date with HEAD
/// first): every commit that touched its file, oldest first, renumberings followed, each
/// with what the audit found. The present's checks (overdue deadlines) are not in it.
pub fn verified_history(
    store: &dyn crate::git::Located,
    id: &str,
    now: Timestamp,
) -> Result<Vec<Entry>> {
    Ok(read_index(store, false, now, |idx| history(idx, id))?.2)
}

/// The histories of the changes `ids` (the index brought up to date with HEAD first, and
/// read once).
pub fn histories(
    store: &dyn crate::git::Located,
    ids: &[String],
    now: Timestamp,
) -> Result<Vec<(String, Vec<Entry>)>> {
    Ok(histories_unless(store, ids, now, |_| None)?
        .into_iter()
        .map(|(id, _, entries)| (id, entries.unwrap_or_default()))
        .collect())
}

/// A change id, what its history was read from, and the history (`None`: not read again).
pub type KeyedHistory = (String, index::HistoryKey, Option<Vec<Entry>>);

/// [`histories`], each with what it was read from, except that a change whose `known`
/// key the index still [holds](index::Index::holds) is not read again: its entries are
/// `None` (the caller still has what it derived from them).
pub fn histories_unless<'k>(
    store: &dyn crate::git::Located,
    ids: &[String],
    now: Timestamp,
    known: impl Fn(&str) -> Option<&'k index::HistoryKey>,
) -> Result<Vec<KeyedHistory>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(read_index(store, false, now, |idx| {
        let mut out = Vec::with_capacity(ids.len());
        let mut read = Vec::new();
        for id in ids {
            match known(id).filter(|k| idx.holds(k)) {
                Some(k) => out.push((id.clone(), k.clone(), None)),
                None => read.push(id.as_str()),
            }
        }
        let Some(mut logs) = idx.logs(&read)? else {
            return Ok(None);
        };
        for id in read {
            let first = logs.remove(id).unwrap_or_default();
            let Some((entries, from)) = history_from(idx, id, first)? else {
                return Ok(None);
            };
            out.push((
                id.to_owned(),
                idx.key_of(from.iter().map(String::as_str)),
                Some(entries),
            ));
        }
        Ok(Some(out))
    })?
    .2)
}

/// The history of every change that an exception of the audited history concerns, by id
/// (the index brought up to date with HEAD first, and read once).
pub fn histories_with_exceptions(
    store: &dyn crate::git::Located,
    now: Timestamp,
) -> Result<Vec<(String, Vec<Entry>)>> {
    Ok(read_index(store, false, now, |idx| {
        let Some(found) = idx.findings()? else {
            return Ok(None);
        };
        let mut ids: Vec<String> = found
            .into_iter()
            .filter(|f| f.level == Level::Exception)
            .filter_map(|f| f.change)
            .collect();
        ids.sort();
        ids.dedup();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(entries) = history(idx, &id)? else {
                return Ok(None);
            };
            out.push((id, entries));
        }
        Ok(Some(out))
    })?
    .2)
}
