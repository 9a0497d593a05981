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

pub mod controls;
pub mod export;
pub mod feed;
pub mod governance;
pub mod index;
pub mod reconcile;
pub mod witness;

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

/// Commits reachable from `head` and not from `hide`, oldest first (by commit time, as
/// `git rev-list --reverse`). Verdicts do not depend on the order; it only orders `chg log`.
/// An unsorted walk streams: a topological sort would hold every commit in memory first
/// (350 MB at 500,000 commits).
pub fn walk(repo: &Repository, head: Oid, hide: Option<Oid>) -> Result<Vec<Oid>> {
    let mut walk = repo.revwalk()?;
    walk.push(head)?;
    if let Some(h) = hide {
        walk.hide(h)?;
    }
    walk.set_sorting(git2::Sort::NONE)?;
    let mut oids = walk.collect::<std::result::Result<Vec<_>, _>>()?;
    oids.reverse();
    Ok(oids)
}

/// Sets libgit2 up for reading a long history, before the first object is read.
pub(crate) fn tune_libgit2() {
    // libgit2 re-hashes every object it reads; git itself (`git log`) does not, and a
    // repository's integrity is `git fsck`'s job. A sixth of audit's time went there.
    git2::opts::strict_hash_verification(false);
    // Each commit's tree is the next commit's parent tree; month folders of a large store
    // are bigger than libgit2's default 4 KiB cache limit for trees, so cache them.
    // SAFETY: process-wide libgit2 settings with valid arguments; libgit2 is initialised
    // by the repository already open.
    // Memory stays bounded on long histories: libgit2's caches and pack windows (mapped
    // pack pages count as resident memory) are capped well under the 500 MB budget.
    unsafe {
        let _ = git2::opts::set_cache_object_limit(git2::ObjectType::Tree, 1 << 20);
        let _ = git2::opts::set_cache_max_size(64 << 20);
        let _ = git2::opts::set_mwindow_size(32 << 20);
        let _ = git2::opts::set_mwindow_mapped_limit(96 << 20);
    }
}

/// Audits `oids` in parallel (each worker opens the repository at `git_dir`); verdicts come
/// back in the order of `oids`, with `seq` numbers from `seq0`.
pub fn audit_commits(
    git_dir: &std::path::Path,
    prefix: &str,
    oids: &[Oid],
    seq0: u64,
) -> Result<Vec<CommitAudit>> {
    use rayon::prelude::*;
    const CHUNK: usize = 512;
    let memo = Arc::new(crate::audit::governance::Memo::default());
    let chunks: Vec<Vec<CommitAudit>> = oids
        .par_chunks(CHUNK)
        .enumerate()
        .map(|(ci, chunk)| {
            let repo = Repository::open(git_dir)?;
            let mut auditor = Auditor::with_memo(&repo, prefix, memo.clone());
            chunk
                .iter()
                .enumerate()
                .map(|(i, oid)| auditor.commit(*oid, seq0 + (ci * CHUNK + i) as u64))
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<_>>()?;
    Ok(chunks.into_iter().flatten().collect())
}

/// What a policy with its attachments is known by: (policy blob, allowed signers blob,
/// templates tree).
type PolicyKey = (Option<Oid>, Option<Oid>, Option<Oid>);

/// Audits commits one at a time, remembering the policies it has parsed.
pub struct Auditor<'r> {
    repo: &'r Repository,
    prefix: String,
    policies: HashMap<Oid, Arc<Policy>>,
    default_policy: Arc<Policy>,
    /// Decoded blobs: the version after one commit is the version before the change's next
    /// commit, so each version is read and parsed once.
    decoded: HashMap<Oid, Arc<std::result::Result<ChangeRequest, String>>>,
    /// Where a shallow clone's history is cut (sorted).
    shallow: Vec<Oid>,
    /// Policies with their allowed signers, by (policy blob, allowed signers blob).
    signed_policies: HashMap<PolicyKey, Arc<Policy>>,
    /// Judges policy changes (SPEC section 10), made when the first one is met.
    governance: Option<Box<crate::audit::governance::Governance<'r>>>,
    /// What judging policy changes learnt, shared with the other workers of a run.
    memo: Arc<crate::audit::governance::Memo>,
    /// The policies of [`Auditor::policy_of`] without the catalogue's history: what a
    /// change filed on top of that tree could be filed from (keyed by the policy's
    /// address: `policy_of` hands out one value per policy, signers and templates).
    filing_policies: HashMap<usize, (Arc<Policy>, Arc<Policy>)>,
    /// Whether HEAD's policy asks the risk questionnaire, once read.
    head_risk: Option<bool>,
}

/// The verdict on a commit where a shallow clone's history is cut: its parents are not
/// here, so what it changed (and everything before it) cannot be judged. Judging it as a
/// first commit would call every file in it hand-made; instead the audit says where the
/// history it can see begins, and judges the commits after it against its tree.
fn shallow_boundary(facts: &Facts<'_>) -> CommitAudit {
    let mut out = CommitAudit::default();
    out.findings.push(AuditFinding {
        level: Level::Note,
        rule: "shallow-boundary".into(),
        change: None,
        path: None,
        commit: facts.oid.to_string(),
        author: facts.email.clone(),
        when: facts.when,
        message: "the history in this clone begins here (a shallow clone): this commit and those before it are not audited; fetch the whole history (`git fetch --unshallow`, or a fetch depth of 0 in CI) for a complete audit".into(),
    });
    out
}

/// One change file a commit touched. A file moved to another folder under the same name is
/// one item (a rename), not a deletion and a creation.
struct Item {
    path: String,
    old_path: Option<String>,
    old: Option<Oid>,
    new: Option<Oid>,
}

impl<'r> Auditor<'r> {
    /// An auditor for the store at `prefix` (`""` or `sub/`) in `repo`.
    pub fn new(repo: &'r Repository, prefix: &str) -> Self {
        Self::with_memo(repo, prefix, Arc::default())
    }

    /// An auditor sharing what judging policy changes learnt with others.
    pub fn with_memo(
        repo: &'r Repository,
        prefix: &str,
        memo: Arc<crate::audit::governance::Memo>,
    ) -> Self {
        Auditor {
            memo,
            repo,
            prefix: prefix.to_owned(),
            policies: HashMap::new(),
            default_policy: Arc::new(Policy::default_policy()),
            decoded: HashMap::new(),
            shallow: crate::git::shallow_commits(repo),
            signed_policies: HashMap::new(),
            governance: None,
            filing_policies: HashMap::new(),
            head_risk: None,
        }
    }

    /// The earliest time a record written by this commit can have been made, as history
    /// proves it: not before its parent's commit time, nor before the commit that put the
    /// policy at the parent in place (the one that retired a key, say; authorized, or the
    /// audit reports it). Only worked out when a signer of `change` has a key limited in
    /// time, the one case where the time matters.
    fn time_floor(
        &mut self,
        facts: &Facts<'_>,
        policy: &Policy,
        change: &ChangeRequest,
    ) -> Result<Option<Timestamp>> {
        let Some(signers) = policy.signers() else {
            return Ok(None);
        };
        let limited = crate::signing::records(change)
            .iter()
            .any(|r| r.signature.is_some() && signers.has_time_limits(&r.actor));
        if !limited {
            return Ok(None);
        }
        let Some((parent, parent_time)) = facts.parent else {
            return Ok(None);
        };
        let mut floor = parent_time;
        let governance = self.governance();
        if let Some(last) = governance.last_change(parent, None)? {
            let c = self.repo.find_commit(last)?;
            if let Ok(t) = Timestamp::from_second(c.committer().when().seconds()) {
                floor = floor.max(t);
            }
        }
        Ok(Some(floor))
    }

    /// The judge of policy changes, made when first needed, sharing this run's memo.
    fn governance(&mut self) -> &mut crate::audit::governance::Governance<'r> {
        let (repo, prefix, memo) = (self.repo, &self.prefix, &self.memo);
        self.governance.get_or_insert_with(|| {
            Box::new(crate::audit::governance::Governance::with_memo(
                repo,
                prefix,
                memo.clone(),
            ))
        })
    }

    /// The policy a standard change filed on top of `tree` is judged by: its templates in
    /// force there and no earlier version (SPEC section 11).
    fn filing_policy(&mut self, tree: &Tree<'_>) -> Result<Arc<Policy>> {
        let full = self.policy_of(tree)?;
        let key = Arc::as_ptr(&full) as usize;
        if let Some((_, p)) = self.filing_policies.get(&key) {
            return Ok(p.clone());
        }
        let mut p = (*full).clone();
        p.template_history = None;
        let p = Arc::new(p);
        // The full policy is kept beside it, so that its address is not reused.
        self.filing_policies.insert(key, (full, p.clone()));
        Ok(p)
    }

    /// Why the template a standard change was filed from at this commit does not count:
    /// not in force at the parent, or in force only through a policy commit that was not
    /// authorized (a version slipped in and reverted, say). `None` when it counts.
    fn filing_problem(
        &mut self,
        facts: &Facts<'_>,
        after: &ChangeRequest,
    ) -> Result<Option<String>> {
        let parent = facts.parents.first().unwrap_or(&facts.tree).clone();
        let policy = self.filing_policy(&parent)?;
        if let Some(why) = policy.template_problem(after) {
            return Ok(Some(why));
        }
        if after.template.is_none() || policy.governance.is_none() {
            return Ok(None);
        }
        let Some(parent_commit) = self.repo.find_commit(facts.oid)?.parent_ids().next() else {
            return Ok(None);
        };
        let governance = self.governance();
        Ok(match governance.standing_at(parent_commit)? {
            Some((at, crate::governance::Standing::Unauthorized(_))) => Some(format!(
                "it was filed from a template in force only through {}, a policy commit that was not authorized",
                &at.to_string()[..8]
            )),
            _ => None,
        })
    }

    fn policy(&mut self, blob: Option<Oid>) -> Result<(Arc<Policy>, bool)> {
        let Some(blob) = blob else {
            return Ok((self.default_policy.clone(), true));
        };
        if let Some(p) = self.policies.get(&blob) {
            return Ok((p.clone(), true));
        }
        let text = String::from_utf8_lossy(self.repo.find_blob(blob)?.content()).into_owned();
        let (p, ok) = match Policy::parse(POLICY_PATH, &text) {
            Ok((p, _)) => (Arc::new(p), true),
            Err(_) => (self.default_policy.clone(), false),
        };
        if ok {
            self.policies.insert(blob, p.clone());
        }
        Ok((p, ok))
    }

    /// The policy in `tree` (the default policy when it has none or it does not parse),
    /// with the allowed signers of the same tree attached.
    pub(crate) fn policy_of(&mut self, tree: &Tree<'_>) -> Result<Arc<Policy>> {
        let blob = crate::git::blob_at(tree, &format!("{}{POLICY_PATH}", self.prefix))?;
        let (policy, _) = self.policy(blob)?;
        let signers = match &policy.signing {
            Some(signing) => {
                let path = format!("{}{}", self.prefix, signing.allowed_signers);
                crate::git::blob_at(tree, &path)?
            }
            None => None,
        };
        let (templates, files) = crate::templates::files_in_tree(self.repo, tree, &self.prefix)?;
        let key = (blob, signers, templates);
        if let Some(p) = self.signed_policies.get(&key) {
            return Ok(p.clone());
        }
        let bytes = match signers {
            Some(b) => Some(self.repo.find_blob(b)?.content().to_vec()),
            None => None,
        };
        let mut p = (*policy).clone();
        if p.signing.is_some() {
            p.attach_signers(|_| {
                bytes
                    .clone()
                    .ok_or_else(|| std::io::ErrorKind::NotFound.into())
            });
        }
        p.attach_templates(files);
        p.legacy_standard_changes = templates.is_none();
        if let Ok(head) = self.repo.head().and_then(|h| h.peel_to_commit()) {
            p.template_history = Some(Arc::new(crate::templates::history_from(
                self.repo.path().to_path_buf(),
                self.prefix.clone(),
                head.id(),
            )));
        }
        let p = Arc::new(p);
        self.signed_policies.insert(key, p.clone());
        Ok(p)
    }

    fn decode(
        &mut self,
        blob: Oid,
        path: &str,
    ) -> Result<Arc<std::result::Result<ChangeRequest, String>>> {
        if let Some(d) = self.decoded.get(&blob) {
            return Ok(d.clone());
        }
        if self.decoded.len() > 20_000 {
            self.decoded.clear();
        }
        let b = self.repo.find_blob(blob)?;
        let d = decode::decode_bytes_with(path, b.content(), false);
        // A file chg cannot read as a change (an unknown key in an approval, a value of
        // the wrong type) stops the gate for that change: whoever committed it is named.
        let broken = d.findings.iter().find(|f| {
            f.is_error() && matches!(f.rule, "unknown-key" | "type" | "yaml" | "encoding")
        });
        let d = Arc::new(match broken {
            None if d.parsed => Ok(d.change),
            found => Err(found
                .or(d.findings.first())
                .map(|f| f.to_string())
                .unwrap_or_else(|| "unreadable".into())),
        });
        self.decoded.insert(blob, d.clone());
        Ok(d)
    }

    /// The verdict on one commit: its policy change, its trailers against what it changed,
    /// and each change file it touched.
    pub fn commit(&mut self, oid: Oid, seq: u64) -> Result<CommitAudit> {
        let commit = self.repo.find_commit(oid)?;
        let facts = Facts::read(&commit)?;
        if self.shallow.binary_search(&oid).is_ok() {
            return Ok(shallow_boundary(&facts));
        }
        let items = self.changed_items(&facts)?;
        let policy_path = format!("{}{POLICY_PATH}", self.prefix);
        let old_pol = match &facts.parents.first() {
            Some(t) => crate::git::blob_at(t, &policy_path)?,
            None => None,
        };
        let new_pol = crate::git::blob_at(&facts.tree, &policy_path)?;
        // Judged by the policy (and allowed signers) in force at the parent.
        let policy = match (facts.parents.first(), old_pol) {
            (Some(parent), Some(_)) => self.policy_of(parent)?,
            _ => self.policy_of(&facts.tree.clone())?,
        };

        let mut out = CommitAudit::default();
        // Anything under policy/ (the policy, the allowed signers, the templates).
        let dir = format!("{}{}", self.prefix, crate::governance::POLICY_DIR);
        let new_tree = crate::governance::policy_tree(&facts.tree, &self.prefix)?;
        let policy_changed = match facts.parents.first() {
            Some(parent) => crate::governance::policy_tree(parent, &self.prefix)? != new_tree,
            None => false,
        };
        let mut brought = false;
        // A merge is judged against every parent (see `governance`): its own note only
        // where it differs from the first.
        let mut merge_differs = false;
        for other in facts.parents.iter().skip(1) {
            let t = crate::governance::policy_tree(other, &self.prefix)?;
            brought |= t == new_tree;
            merge_differs |= t != new_tree;
        }
        if (policy_changed || old_pol != new_pol) && !brought {
            let mut files = Vec::new();
            diff_path(
                self.repo,
                facts.parents.first(),
                Some(&facts.tree),
                &dir,
                &mut files,
            )?;
            let files: Vec<String> = files.into_iter().map(|f| f.0).collect();
            let (written, valid) = self.policy(new_pol)?;
            let valid = valid || old_pol == new_pol;
            out.findings.extend(facts.policy_findings(
                &policy_path,
                &files,
                valid,
                written.signing.as_ref().map(|s| s.required_for.as_slice()),
            ));
        }
        // Anything under policy/ changed outside `chg policy apply` under a governed policy.
        if policy_changed || merge_differs {
            let governance = self.governance();
            if let crate::governance::Standing::Unauthorized(why) = governance.standing_of(oid)? {
                out.findings.push(facts.finding(
                    Level::Exception,
                    crate::governance::UNAUTHORIZED,
                    None,
                    Some(format!("{dir}/")),
                    format!(
                        "{why}; revert it, or propose it with `chg policy propose` and apply it once approved"
                    ),
                ));
            }
        }
        if self.ours(&facts) {
            out.findings
                .extend(facts.trailer_findings(&items, old_pol == new_pol));
        }
        if facts.merge {
            self.brought_records(&facts, &items, seq, &mut out)?;
        }
        // A policy commit that names a change without touching its file (a forged apply)
        // shows in that change's log, so that `chg log` of a proposal tells all.
        let named = facts.trailers.id.clone().filter(|id| {
            policy_changed && !items.iter().any(|i| id_of_path(&i.path) == id.as_str())
        });
        for item in items {
            self.item(&facts, &policy, item, seq, &mut out)?;
        }
        if let Some(id) = named
            && let Some((path, _)) =
                crate::layout::find_change(self.repo, &facts.tree, &self.prefix, &id)?
        {
            out.entries.push(facts.plain_entry(
                seq,
                id,
                path,
                "policy",
                vec![Problem::note(
                    "policy-change",
                    format!(
                        "this commit names the change in its trailers and changed {dir}/ without changing the change's file"
                    ),
                )],
            ));
        }
        Ok(out)
    }

    /// What a merge brings into a line: change files as another parent made them, whose
    /// records were judged on that branch by its own policy. They enter this line here, so
    /// they are judged again by the policy of the merge (after `governance` has held the
    /// merge's policy to every parent's): records added without the signatures it
    /// requires, approvals by people outside their role or by the requester, a status the
    /// approvals do not reach, a standard change from a template not in its catalogue. The
    /// line receiving them is each parent whose policy the merge keeps (every parent when
    /// it keeps none), whichever comes first.
    fn brought_records(
        &mut self,
        facts: &Facts<'_>,
        items: &[Item],
        seq: u64,
        out: &mut CommitAudit,
    ) -> Result<()> {
        let new_tree = crate::governance::policy_tree(&facts.tree, &self.prefix)?;
        let mut receiving = Vec::new();
        for p in &facts.parents {
            if crate::governance::policy_tree(p, &self.prefix)? == new_tree {
                receiving.push(p.clone());
            }
        }
        if receiving.is_empty() {
            receiving = facts.parents.clone();
        }
        let policy = self.policy_of(&facts.tree.clone())?;
        let filing = self.filing_policy(&facts.tree.clone())?;
        let dir = format!("{}changes", self.prefix);
        let own: Vec<&str> = items.iter().map(|i| i.path.as_str()).collect();
        let mut drops = self.merge_drops(facts, &own)?;
        let mut seen: Vec<String> = items.iter().map(|i| i.path.clone()).collect();
        for parent in &receiving {
            let mut changed = Vec::new();
            diff_path(
                self.repo,
                Some(parent),
                Some(&facts.tree),
                &dir,
                &mut changed,
            )?;
            for (path, old, new) in changed {
                let Some(new) = new.filter(|_| path.ends_with(".yaml")) else {
                    continue;
                };
                if seen.contains(&path) {
                    continue;
                }
                seen.push(path.clone());
                let before = match old {
                    Some(b) => self.decode(b, &path)?,
                    None => Arc::new(Err(String::new())),
                };
                let before = before.as_ref().as_ref().ok();
                let after = self.decode(new, &path)?;
                let Ok(after) = after.as_ref() else { continue };
                let mut problems = brought_problems(before, after, &policy, &filing);
                problems.extend(self.brought_late(parent, facts, before, after)?);
                problems.extend(drops.remove(&path).unwrap_or_default());
                // A change the merge brings in submitted is submitted into this line here,
                // under its policy: a branch made before the questionnaire does not carry
                // the older rules in (`Standing::questionnaire_due` reads the last one).
                let submitted = (policy.risk.is_some()
                    && after.status() != Status::Draft
                    && before.is_none_or(|b| b.status() == Status::Draft))
                .then_some(true);
                if problems.is_empty() && submitted.is_none() {
                    continue;
                }
                let id = id_of_path(&path).to_owned();
                for p in &problems {
                    out.findings.push(facts.finding(
                        p.level,
                        &p.rule,
                        Some(id.clone()),
                        Some(path.clone()),
                        p.message.clone(),
                    ));
                }
                let mut entry = facts.plain_entry(seq, id, path, "merge", problems);
                entry.submitted = submitted;
                out.entries.push(entry);
            }
        }
        // What the merge dropped from files it otherwise left alone or deleted.
        for (path, problems) in drops {
            let id = id_of_path(&path).to_owned();
            for p in &problems {
                out.findings.push(facts.finding(
                    p.level,
                    &p.rule,
                    Some(id.clone()),
                    Some(path.clone()),
                    p.message.clone(),
                ));
            }
            out.entries
                .push(facts.plain_entry(seq, id, path, "merge", problems));
        }
        Ok(())
    }

    /// What a merge drops, by change file: records a parent's line added since the merge
    /// base (decisions, implementation, completion, review, cancellation), or a whole file
    /// it added, that the merge's result no longer has. Each line's steps were audited on
    /// it; a merge that takes an older version (`git checkout side -- changes`, `-s ours`)
    /// or deletes the file would undo them without a step of its own.
    /// `own` are the merge's own edits, judged against the first parent as any commit's;
    /// for them only the other parents' lines are compared here.
    fn merge_drops(
        &mut self,
        facts: &Facts<'_>,
        own: &[&str],
    ) -> Result<std::collections::BTreeMap<String, Vec<Problem>>> {
        let commit = self.repo.find_commit(facts.oid)?;
        let parents: Vec<Oid> = commit.parent_ids().collect();
        let base = match self.repo.merge_base_many(&parents) {
            Ok(b) => Some(self.repo.find_commit(b)?.tree()?),
            Err(_) => None,
        };
        let dir = format!("{}changes", self.prefix);
        let mut paths: Vec<String> = Vec::new();
        for p in &facts.parents {
            let mut changed = Vec::new();
            diff_path(self.repo, Some(p), Some(&facts.tree), &dir, &mut changed)?;
            paths.extend(changed.into_iter().map(|c| c.0));
        }
        paths.retain(|p| p.ends_with(".yaml"));
        paths.sort();
        paths.dedup();
        let mut out: std::collections::BTreeMap<String, Vec<Problem>> =
            std::collections::BTreeMap::new();
        for path in paths {
            let result = crate::git::blob_at(&facts.tree, &path)?;
            let result_version = match result {
                Some(b) => Some(self.decode(b, &path)?),
                None => None,
            };
            let base_version = match &base {
                Some(t) => match crate::git::blob_at(t, &path)? {
                    Some(b) => Some(self.decode(b, &path)?),
                    None => None,
                },
                None => None,
            };
            let base_records = base_version
                .as_deref()
                .and_then(|v| v.as_ref().ok())
                .map(step_records)
                .unwrap_or_default();
            for (n, parent) in facts.parents.iter().enumerate() {
                if n == 0 && own.contains(&path.as_str()) {
                    continue;
                }
                let Some(blob) = crate::git::blob_at(parent, &path)? else {
                    continue;
                };
                if Some(blob) == result {
                    continue;
                }
                let version = self.decode(blob, &path)?;
                let Ok(version) = version.as_ref() else {
                    continue;
                };
                let added: Vec<String> = step_records(version)
                    .into_iter()
                    .filter(|r| !base_records.contains(r))
                    .collect();
                let line = if n == 0 {
                    "the first parent's line".to_owned()
                } else {
                    format!("the line of parent {}", n + 1)
                };
                match result_version.as_deref().map(|v| v.as_ref().ok()) {
                    None if base_version.is_none() || !added.is_empty() => {
                        out.entry(path.clone())
                            .or_default()
                            .push(Problem::exception(
                                "manual-delete",
                                format!("the merge deleted {path}, which {line} had"),
                            ));
                    }
                    Some(Some(r)) => {
                        let kept = step_records(r);
                        let lost: Vec<&String> =
                            added.iter().filter(|x| !kept.contains(*x)).collect();
                        if !lost.is_empty() {
                            out.entry(path.clone())
                                .or_default()
                                .push(Problem::exception(
                                    "manual-status",
                                    format!(
                                        "the merge dropped what {line} recorded: {}",
                                        lost.iter()
                                            .map(|s| s.as_str())
                                            .collect::<Vec<_>>()
                                            .join("; ")
                                    ),
                                ));
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(out)
    }

    /// Whether the commit's chg trailers speak for this store. A repository may hold more
    /// than one store (`teams/a/`, `teams/b/`): a commit that changes another store's files
    /// and nothing under this one is that store's to judge. A commit that changes nothing
    /// at all still is this store's (trailers claiming a step that did nothing).
    fn ours(&self, facts: &Facts<'_>) -> bool {
        let dir = self.prefix.trim_end_matches('/');
        let Some(parent) = facts.parents.first() else {
            return true;
        };
        if dir.is_empty() || parent.id() == facts.tree.id() {
            return true;
        }
        let at = |t: &Tree<'_>| t.get_path(std::path::Path::new(dir)).ok().map(|e| e.id());
        at(parent) != at(&facts.tree)
    }

    /// The change files a commit changed, paired into renames, less what a merge brought
    /// from another parent (audited on that branch; only the merge's own edits are new).
    fn changed_items(&self, facts: &Facts<'_>) -> Result<Vec<Item>> {
        let mut changed = Vec::new();
        let dir = format!("{}changes", self.prefix);
        diff_path(
            self.repo,
            facts.parents.first(),
            Some(&facts.tree),
            &dir,
            &mut changed,
        )?;
        changed.retain(|(p, _, _)| p.ends_with(".yaml"));
        let mut kept = Vec::with_capacity(changed.len());
        for c in changed {
            if !facts.brought(&c.0, c.2)? {
                kept.push(c);
            }
        }
        let tr = &facts.trailers;
        let renumbered = match (facts.by_chg, tr.action(), tr.renumbered_from.clone()) {
            (true, Some(Action::Renumber), Some(old)) => tr.id.clone().map(|new| (old, new)),
            _ => None,
        };
        Ok(pair_renames(kept, renumbered.as_ref()))
    }

    /// The verdict on one change file of the commit: its problems, its log entry, and the
    /// emergency it started, if it did.
    fn item(
        &mut self,
        facts: &Facts<'_>,
        policy: &Policy,
        item: Item,
        seq: u64,
        out: &mut CommitAudit,
    ) -> Result<()> {
        let id = id_of_path(&item.path).to_owned();
        let mine = facts.by_chg && facts.trailers.id.as_deref() == Some(id.as_str());
        let before = match item.old {
            Some(b) => Some(self.decode(b, item.old_path.as_deref().unwrap_or(&item.path))?),
            None => None,
        };
        let before = before.as_deref().and_then(|b| b.as_ref().ok());
        let after = match item.new {
            Some(b) => Some(self.decode(b, &item.path)?),
            None => None,
        };
        let mut problems = Vec::new();
        // The commit that took the change out of draft: whether the questionnaire was due.
        let submitted = match after.as_deref() {
            Some(Ok(a))
                if a.status() != Status::Draft
                    && before.is_none_or(|b| b.status() == Status::Draft) =>
            {
                Some(self.asks_questionnaire(facts, policy)?)
            }
            _ => None,
        };
        let material = match (before, after.as_deref()) {
            (None, Some(Ok(_))) => true,
            (Some(b), Some(Ok(a))) => {
                !b.material_differences(a).is_empty()
                    || b.template != a.template
                    || b.template_digest != a.template_digest
                    || b.risk_assessment != a.risk_assessment
                    || b.proposed_policy != a.proposed_policy
            }
            _ => false,
        };
        match after.as_deref() {
            Some(Err(why)) => problems.push(Problem::exception(
                "malformed-file",
                format!("the commit left the change file unreadable: {why}"),
            )),
            _ => {
                let after = after.as_deref().and_then(|a| a.as_ref().ok());
                let floor = match after {
                    Some(a) if facts.by_chg => self.time_floor(facts, policy, a)?,
                    _ => None,
                };
                let parent_time = facts.parent.map(|(_, t)| t);
                let ctx = Ctx {
                    policy,
                    floor,
                    email: &facts.email,
                    when: facts.when,
                    entered: parent_time.map_or(facts.when, |p| p.max(facts.when)),
                    item: &item,
                    before,
                    after,
                };
                if mine {
                    let action = facts.trailers.action.as_deref().unwrap_or("");
                    problems.extend(ctx.check_chg(action, &facts.trailers));
                } else {
                    problems.extend(ctx.check_manual());
                }
                problems.extend(ctx.check_digests());
                problems.extend(ctx.check_risk());
                if mine && let Some(a) = after {
                    problems.extend(self.backdated(facts, before, a)?);
                }
                if submitted == Some(true)
                    && policy.risk.is_none()
                    && after.is_some_and(|a| a.risk_assessment.is_none() && a.template.is_none())
                {
                    problems.push(Problem::exception(
                        rules::RISK,
                        "submitted without answering the risk questionnaire of the policy that governs here (the policy in force at the parent was not authorized, so it cannot exempt it)",
                    ));
                }
                if let Some(a) = after
                    && let Some(r) =
                        rules::emergency_declaration_refusal(before, a, &facts.email, policy)
                {
                    problems.push(Problem::exception(r.rule, r.message));
                }
                if let Some(after) = after
                    && after.model() == ChangeModel::Standard
                {
                    let filing = before.is_none_or(|b| {
                        b.template != after.template
                            || b.template_digest != after.template_digest
                            || b.model() != ChangeModel::Standard
                    });
                    let why = if filing {
                        self.filing_problem(facts, after)?
                    } else if policy.template_problem(before.unwrap_or(after)).is_none() {
                        // A fixed value edited since: judged by the version it recorded.
                        policy.template_problem(after)
                    } else {
                        None
                    };
                    if let Some(why) = why {
                        problems.push(Problem::exception(
                            crate::templates::STANDARD_TEMPLATE,
                            format!("not a standard change of the catalogue: {why}"),
                        ));
                    }
                }
                let started =
                    |c: &ChangeRequest| matches!(c.status(), Status::Implementing | Status::Closed);
                if let Some(a) = after
                    && a.model() == ChangeModel::Emergency
                    && started(a)
                    && !before.is_some_and(started)
                {
                    out.emergencies.push(Emergency {
                        id: id.clone(),
                        path: item.path.clone(),
                        commit: facts.oid.to_string(),
                        author: facts.email.clone(),
                        when: facts.when,
                    });
                }
            }
        }
        for p in &problems {
            out.findings.push(facts.finding(
                p.level,
                &p.rule,
                Some(id.clone()),
                Some(item.path.clone()),
                p.message.clone(),
            ));
        }
        let tr = &facts.trailers;
        let renumbered = tr.action() == Some(Action::Renumber) && tr.renumbered_from.is_some();
        let implementer = match after.as_deref() {
            Some(Ok(a)) => recorded_implementer(before, a),
            _ => None,
        };
        out.entries.push(Entry {
            seq,
            commit: facts.oid.to_string(),
            when: facts.when,
            author: facts.author.clone(),
            email: facts.email.clone(),
            id,
            path: item.path.clone(),
            action: if mine {
                tr.action.clone().unwrap_or_default()
            } else if facts.merge {
                "merge".into()
            } else {
                "manual".into()
            },
            role: if mine { tr.role.clone() } else { None },
            from: if mine { tr.from.clone() } else { None },
            to: if mine { tr.to.clone() } else { None },
            subject: facts.subject.clone(),
            by_chg: mine,
            problems,
            renumbered_from: item.old_path.clone().filter(|_| mine && renumbered),
            material,
            sod: if (mine && tr.action() == Some(Action::Approve)) || implementer.is_some() {
                policy.segregation_of_duties.forbidden()
            } else {
                Vec::new()
            },
            implementer,
            submitted,
        });
        Ok(())
    }

    /// The times a chg step records that history proves false: dated before the commit it
    /// follows (its parent's commit time, beyond the machines' clock skew), whatever
    /// `CHG_NOW` or `GIT_AUTHOR_DATE` said when it was made (an emergency approval given
    /// days late but dated into its deadline, say). A step `chg sync` replayed keeps the
    /// time it was made offline, so for it the gap is a note an auditor can weigh.
    fn backdated(
        &self,
        facts: &Facts<'_>,
        before: Option<&ChangeRequest>,
        after: &ChangeRequest,
    ) -> Result<Vec<Problem>> {
        let Some((parent, floor)) = facts.parent else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (path, t) in rules::new_times(before, after) {
            if t.checked_add(rules::CLOCK_SKEW).unwrap_or(t) >= floor {
                continue;
            }
            let gap = floor.as_second() - t.as_second();
            let said = format!(
                "{path} is dated {}, {} before the commit it follows ({}, {})",
                format_timestamp(t),
                crate::text::duration_words(gap),
                &parent.to_string()[..8],
                format_timestamp(floor)
            );
            // A replay names the local commit it replaced, which the line does not hold;
            // naming one it holds (or none) is a claim with nothing behind it.
            let replayed = facts.trailers.synced_from.as_deref().is_some_and(|c| {
                Oid::from_str(c).is_ok_and(|c| {
                    c != parent
                        && (self.repo.find_commit(c).is_err()
                            || !self.repo.graph_descendant_of(parent, c).unwrap_or(true))
                })
            });
            // A replay's deadlines are judged from when it entered the line (see
            // `Ctx::entered`), so its gap hides nothing: a note.
            out.push(if replayed {
                Problem::note(
                    "sync-replay",
                    format!("{said}: a step made offline and replayed by chg sync keeps its time"),
                )
            } else {
                Problem::exception(
                    rules::TIME_ORDER,
                    format!("{said}: a step cannot be made before the history it follows"),
                )
            });
        }
        Ok(out)
    }

    /// Records a merge brings into a line that claim a time long before the line's tip:
    /// made on a branch from an old commit (so its own parent proves nothing) and dated into
    /// a deadline, they entered history only now.
    fn brought_late(
        &self,
        receiving: &Tree<'_>,
        facts: &Facts<'_>,
        before: Option<&ChangeRequest>,
        after: &ChangeRequest,
    ) -> Result<Vec<Problem>> {
        let commit = self.repo.find_commit(facts.oid)?;
        let tip = commit
            .parents()
            .find(|p| p.tree_id() == receiving.id())
            .or_else(|| commit.parents().next());
        let Some(tip) = tip else {
            return Ok(Vec::new());
        };
        let floor = tip.committer().when().seconds();
        // A file a branch created is filed when it was; only its steps are judged here.
        Ok(rules::new_times(before, after)
            .into_iter()
            .filter(|(path, _)| path != "request_date")
            .filter(|(_, t)| floor - t.as_second() > MERGE_GAP_SECS)
            .map(|(path, t)| {
                Problem::exception(
                    rules::TIME_ORDER,
                    format!(
                        "{path} is dated {}, {} before the line's last commit ({}), but entered the line only with this merge: a record made on a branch is as late as the merge that brings it",
                        format_timestamp(t),
                        crate::text::duration_words(floor - t.as_second()),
                        &tip.id().to_string()[..8]
                    ),
                )
            })
            .collect())
    }

    /// Whether the policy at HEAD asks the risk questionnaire (read once).
    fn head_asks_questionnaire(&mut self) -> Result<bool> {
        if let Some(asks) = self.head_risk {
            return Ok(asks);
        }
        let asks = match self.repo.head().and_then(|h| h.peel_to_tree()) {
            Ok(tree) => self.policy_of(&tree)?.risk.is_some(),
            Err(_) => false,
        };
        self.head_risk = Some(asks);
        Ok(asks)
    }

    /// Whether the policy that governs at the commit's parent asks the risk questionnaire:
    /// the policy in force there, or, where that one was slipped in (not authorized), the
    /// last authorized one, so that a policy slipped in and reverted cannot exempt the
    /// changes submitted under it.
    fn asks_questionnaire(&mut self, facts: &Facts<'_>, policy: &Policy) -> Result<bool> {
        if policy.risk.is_some() {
            return Ok(true);
        }
        // Only a store whose policy asks the questionnaire now can have had one slipped out
        // from under a submission that matters to today's readers; the walk is spared the
        // others (every submission of a store without one).
        if !self.head_asks_questionnaire()? {
            return Ok(false);
        }
        let Some((parent, _)) = facts.parent else {
            return Ok(false);
        };
        let governance = self.governance();
        Ok(match governance.standing_at(parent)? {
            Some((_, crate::governance::Standing::Unauthorized(_))) => {
                governance.governing_policy(parent)?.risk.is_some()
            }
            _ => false,
        })
    }
}

/// How much older than the receiving line's tip a record a merge brings may claim to be:
/// work done on a branch for up to a day. (A `chg sync` replay is judged from when it
/// entered the line instead; see `Ctx::entered`.)
const MERGE_GAP_SECS: i64 = 24 * 3600;

/// The steps a version of a change records, one line each, to tell whether a later version
/// still has them: decisions (approvals, rejections, withdrawals), implementation start
/// and completion, review and cancellation.
fn step_records(c: &ChangeRequest) -> Vec<String> {
    let mut out: Vec<String> = c
        .approvals
        .iter()
        .map(|a| {
            format!(
                "{} for {} by {} at {}",
                a.decision,
                a.role,
                a.by,
                format_timestamp(a.at)
            )
        })
        .collect();
    if let Some(i) = &c.implementation {
        if let Some(t) = i.started_at {
            out.push(format!(
                "implement by {} at {}",
                i.implementer.as_deref().unwrap_or("?"),
                format_timestamp(t)
            ));
        }
        if let Some(t) = i.completed_at {
            out.push(format!("close at {}", format_timestamp(t)));
        }
    }
    if let Some(r) = &c.review {
        out.push(format!("review by {} at {}", r.by, format_timestamp(r.at)));
    }
    if let Some(x) = &c.cancellation {
        out.push(format!("cancel by {} at {}", x.by, format_timestamp(x.at)));
    }
    out
}

/// What one commit says about itself: who, when, its trailers, its trees.
struct Facts<'r> {
    oid: Oid,
    tree: Tree<'r>,
    /// The parents' trees, first parent first.
    parents: Vec<Tree<'r>>,
    email: String,
    author: String,
    when: Timestamp,
    subject: String,
    trailers: Trailers,
    merge: bool,
    /// A chg commit (chg trailers, one parent).
    by_chg: bool,
    /// The first parent and its commit time: where this commit entered its line.
    parent: Option<(Oid, Timestamp)>,
}

impl<'r> Facts<'r> {
    fn read(commit: &Commit<'r>) -> Result<Facts<'r>> {
        let sig = commit.author();
        let message = String::from_utf8_lossy(commit.message_raw_bytes()).into_owned();
        let trailers = Trailers::parse(&message);
        let parents = commit
            .parents()
            .map(|p| p.tree())
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let merge = parents.len() > 1;
        let parent = commit.parents().next().map(|p| {
            (
                p.id(),
                Timestamp::from_second(p.committer().when().seconds()).unwrap_or_default(),
            )
        });
        Ok(Facts {
            parent,
            oid: commit.id(),
            tree: commit.tree()?,
            email: sig.email().unwrap_or("").to_owned(),
            author: sig.name().unwrap_or("").to_owned(),
            when: Timestamp::from_second(sig.when().seconds()).unwrap_or_default(),
            subject: message.lines().next().unwrap_or("").to_owned(),
            by_chg: trailers.action.is_some() && !merge,
            trailers,
            merge,
            parents,
        })
    }

    /// Whether a parent other than the first already had `blob` at `path`: a merge brought it.
    fn brought(&self, path: &str, blob: Option<Oid>) -> Result<bool> {
        for t in self.parents.iter().skip(1) {
            if crate::git::blob_at(t, path)? == blob {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A log entry for a change this commit concerns without a chg step of its own (a
    /// merge bringing it, a policy commit naming it).
    fn plain_entry(
        &self,
        seq: u64,
        id: String,
        path: String,
        action: &str,
        problems: Vec<Problem>,
    ) -> Entry {
        Entry {
            seq,
            commit: self.oid.to_string(),
            when: self.when,
            author: self.author.clone(),
            email: self.email.clone(),
            id,
            path,
            action: action.into(),
            role: None,
            from: None,
            to: None,
            subject: self.subject.clone(),
            by_chg: false,
            problems,
            renumbered_from: None,
            material: false,
            sod: Vec::new(),
            implementer: None,
            submitted: None,
        }
    }

    fn finding(
        &self,
        level: Level,
        rule: &str,
        change: Option<String>,
        path: Option<String>,
        message: String,
    ) -> AuditFinding {
        AuditFinding {
            level,
            rule: rule.to_owned(),
            change,
            path,
            commit: self.oid.to_string(),
            author: self.email.clone(),
            when: self.when,
            message,
        }
    }

    /// A note for a change of the policy, and an exception when the new one is not usable.
    fn policy_findings(
        &self,
        policy_path: &str,
        files: &[String],
        valid: bool,
        signing: Option<&[String]>,
    ) -> Vec<AuditFinding> {
        // Which records carry proof of who made them from here on: an auditor reads the
        // periods signing was in force from these notes.
        let signed = match signing {
            Some(actions) if !actions.is_empty() => {
                format!("; signatures required for {}", actions.join(", "))
            }
            _ => "; it requires no signatures, so records from here on name people without proving who made them".to_owned(),
        };
        let how = match (&self.trailers.action, self.by_chg) {
            (Some(a), true) => format!("by chg {a}"),
            _ => "by a commit without chg trailers".to_owned(),
        };
        let what = match files {
            [one] if one == policy_path => String::new(),
            [] => String::new(),
            many => format!(" ({})", many.join(", ")),
        };
        let mut out = vec![self.finding(
            Level::Note,
            "policy-change",
            None,
            Some(match files {
                [one] => one.clone(),
                _ => policy_path.to_owned(),
            }),
            format!("the policy was changed {how}{what}; later commits are judged by it{signed}"),
        )];
        if !valid {
            out.push(self.finding(
                Level::Exception,
                "policy-invalid",
                None,
                Some(policy_path.to_owned()),
                "the policy this commit wrote does not pass chg's checks; later commits are judged by the default policy".into(),
            ));
        }
        out
    }

    /// A chg commit changes exactly the one change file its trailers name (`init` and
    /// policy commits excepted).
    fn trailer_findings(&self, items: &[Item], same_policy: bool) -> Vec<AuditFinding> {
        let mut out = Vec::new();
        if !self.by_chg {
            return out;
        }
        let id = self.trailers.id.clone().unwrap_or_default();
        let a = self.trailers.action.clone().unwrap_or_default();
        if items.len() > 1 {
            out.push(self.finding(
                Level::Exception,
                "multiple-files",
                Some(id.clone()),
                None,
                format!(
                    "the commit says it is chg `{a}` of {id} but changes {} change files; a chg transition changes exactly one",
                    items.len()
                ),
            ));
        }
        let touches_its_file = items.iter().any(|i| id_of_path(&i.path) == id);
        if !touches_its_file && a != "init" && same_policy {
            out.push(self.finding(
                Level::Exception,
                "trailer-mismatch",
                (!id.is_empty()).then_some(id.clone()),
                None,
                format!(
                    "the commit says it is chg `{a}` of {id} but does not change that change's file"
                ),
            ));
        }
        out
    }
}

/// Pairs a deletion and an addition of the same file name into one renamed item; with
/// `renumbered` (old id, new id), the old id's file is paired with the new one's.
fn pair_renames(
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
fn diff_path(
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

fn diff_trees(
    repo: &Repository,
    a: Option<&Tree<'_>>,
    b: Option<&Tree<'_>>,
    base: &str,
    out: &mut Vec<(String, Option<Oid>, Option<Oid>)>,
) -> Result<()> {
    // Both trees are in git's order; a merge join over borrowed entries finds what differs
    // in one pass without copying a name (a month folder has thousands).
    let (la, lb) = (a.map_or(0, Tree::len), b.map_or(0, Tree::len));
    fn entry<'t>(t: Option<&'t Tree<'_>>, i: usize) -> Option<(git2::TreeEntry<'t>, bool)> {
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
fn git_order(a: &[u8], a_tree: bool, b: &[u8], b_tree: bool) -> std::cmp::Ordering {
    let n = a.len().min(b.len());
    match a[..n].cmp(&b[..n]) {
        std::cmp::Ordering::Equal => {}
        other => return other,
    }
    let next = |s: &[u8], tree: bool| s.get(n).copied().or(tree.then_some(b'/'));
    next(a, a_tree).cmp(&next(b, b_tree))
}

/// Everything one check of one change file at one commit needs.
struct Ctx<'a> {
    policy: &'a Policy,
    /// The earliest time the history proves this commit was made after, where a signer's
    /// key is limited in time (see [`Auditor::time_floor`]).
    floor: Option<Timestamp>,
    email: &'a str,
    when: Timestamp,
    /// When the step entered this line at the latest: its own time, or its parent's commit
    /// time when it claims an earlier one (a replay of a step made offline). Deadlines
    /// are judged at it: an approval counts from when others could see it.
    entered: Timestamp,
    item: &'a Item,
    before: Option<&'a ChangeRequest>,
    after: Option<&'a ChangeRequest>,
}

impl Ctx<'_> {
    /// A commit with chg trailers for this change: the trailers must tell the truth and the
    /// step must be one the life cycle and the policy allowed.
    fn check_chg(&self, action: &str, tr: &Trailers) -> Vec<Problem> {
        let mut out = Vec::new();
        let mismatch = |m: String| Problem::exception("trailer-mismatch", m);
        let Some(typed) = action
            .parse::<Action>()
            .ok()
            .filter(|a| a.is_change_action())
        else {
            out.push(mismatch(format!(
                "`Chg-Action: {action}` is not a chg action for a change file"
            )));
            return out;
        };
        if let Some(actor) = &tr.actor
            && !actor.eq_ignore_ascii_case(self.email)
        {
            out.push(mismatch(format!(
                "Chg-Actor says {actor} but the commit was authored by {}",
                self.email
            )));
        }
        let Some(after) = self.after else {
            out.push(mismatch(format!(
                "chg `{action}` never deletes a change file, but this commit deleted {}",
                self.item.old_path.as_deref().unwrap_or(&self.item.path)
            )));
            return out;
        };
        if let Some(to) = &tr.to
            && to != after.status().as_str()
        {
            out.push(mismatch(format!(
                "Chg-To says {to} but the file's status is {}",
                after.status()
            )));
        }
        if action == "new" {
            out.extend(self.check_new(after));
            out.extend(self.content_checks(None, after));
            return out;
        }
        let Some(before) = self.before else {
            out.push(mismatch(format!(
                "chg `{action}` of a change file that did not exist before this commit"
            )));
            return out;
        };
        if let Some(from) = &tr.from
            && from != before.status().as_str()
        {
            out.push(mismatch(format!(
                "Chg-From says {from} but the status before the commit was {}",
                before.status()
            )));
        }
        if action == "renumber" {
            out.extend(self.check_renumber(tr.renumbered_from.clone(), before, after));
            return out;
        }
        // An approval without a digest was written by a chg before digests, or by a hand
        // edit that this audit reports at its own commit (`manual-approval`); a step after
        // it is judged as if the digest were there, so neither is reported twice.
        let legacy = with_legacy_digests(before);
        let before = &legacy;
        let role = tr.role.clone();
        out.extend(self.policy_checks(action, role.as_deref(), before, after));
        out.extend(self.duty_checks(Some(before), after));
        let step = match workflow::step_between(typed, role, before, after) {
            Ok(s) => s,
            Err(m) => {
                out.push(mismatch(m));
                return out;
            }
        };
        out.extend(self.new_record_signatures(before, after));
        if action == "edit" {
            out.extend(self.content_checks(Some(before), after));
        }
        // A replay cannot sign: the new record's signature is taken from the commit (and
        // judged on its own above); any other difference, older signatures included, is one.
        // An unanswered questionnaire is `check_risk`'s to report, once, where it began; a
        // change submitted before the policy asked it keeps the rules of its day.
        let policy = self.policy.for_intake(before.risk_assessment.is_some());
        let replayed =
            workflow::apply(before, policy, self.email, self.when, step).map(|(expected, t)| {
                let mut expected = without_legacy_digests(expected, after);
                crate::signing::carry_signature(after, &mut expected, action);
                (expected, t)
            });
        match replayed {
            Err(e) => {
                if !out.iter().any(|p| p.level == Level::Exception) {
                    out.push(Problem::exception(
                        "lifecycle",
                        format!("chg `{action}` was not allowed here: {e}"),
                    ));
                }
            }
            Ok((expected, _)) if &expected != after => {
                let survived = action == "edit"
                    && !before.material_differences(after).is_empty()
                    && after.approvals.iter().any(|a| before.approvals.contains(a));
                if survived {
                    out.push(Problem::exception(
                        "approval-survived-edit",
                        format!(
                            "approvals survived an edit of approved content ({})",
                            before.material_differences(after).join(", ")
                        ),
                    ));
                } else {
                    out.push(mismatch(format!(
                        "the commit says chg `{action}` but changed more or other than that step writes ({})",
                        differing_fields(&expected, after).join(", ")
                    )));
                }
            }
            Ok(_) => {}
        }
        out
    }

    /// Who vouches for the content (SPEC section 9, `new` and `edit`): a content record the
    /// commit wrote must be the author's, for this content, validly signed; content filed or
    /// edited where the policy requires it signed must come with one.
    fn content_checks(
        &self,
        before: Option<&ChangeRequest>,
        after: &ChangeRequest,
    ) -> Vec<Problem> {
        let mut out = Vec::new();
        if let Some(why) = rules::content_record_problem(before, after, self.email, self.policy) {
            out.push(Problem::exception(crate::signing::SIGNATURE, why));
            return out;
        }
        let written = before.is_none_or(|b| b.content_signature != after.content_signature);
        if written && after.content_signature.is_some() {
            // (for a new file, any record at all is written by this commit)
            let empty = ChangeRequest::default();
            out.extend(
                self.new_record_signatures(before.unwrap_or(&empty), after)
                    .into_iter()
                    .filter(|p| {
                        p.message.starts_with("the new record")
                            || p.message.starts_with("the edit record")
                    }),
            );
        }
        out
    }

    /// The signatures of the records this commit added, judged by the allowed signers in
    /// force at its parent: missing where the policy required one, or not valid.
    fn new_record_signatures(&self, before: &ChangeRequest, after: &ChangeRequest) -> Vec<Problem> {
        let old: Vec<String> = crate::signing::records(before)
            .into_iter()
            .map(|r| r.statement.text())
            .collect();
        crate::rules::signature_verdicts_since(after, self.policy, self.floor)
            .into_iter()
            .filter(|(r, _)| !old.contains(&r.statement.text()))
            .filter_map(|(r, v)| {
                v.problem(&r.actor).map(|why| {
                    Problem::exception(
                        crate::signing::SIGNATURE,
                        format!("the {} record by {}: {why}", r.action, r.actor),
                    )
                })
            })
            .collect()
    }

    /// `chg renumber`: the old id's file became the new id's, and only the id changed.
    fn check_renumber(
        &self,
        from: Option<String>,
        before: &ChangeRequest,
        after: &ChangeRequest,
    ) -> Vec<Problem> {
        let mismatch = |m: String| vec![Problem::exception("trailer-mismatch", m)];
        let old = before.id_text();
        if from.as_deref() != Some(old.as_str()) || self.item.old_path.is_none() {
            return mismatch(format!(
                "chg `renumber` must move the file of the id in Chg-Renumbered-From ({}); this commit moved {old}",
                from.as_deref().unwrap_or("missing")
            ));
        }
        let mut same = before.clone();
        same.id = after.id.clone();
        if &same != after {
            return mismatch(format!(
                "chg `renumber` changes only the id, but this commit also changed {}",
                differing_fields(&same, after).join(", ")
            ));
        }
        Vec::new()
    }

    /// A version whose risk level is below its questionnaire's score (or that leaves the
    /// questionnaire unanswered), where the version before was sound.
    fn check_risk(&self) -> Vec<Problem> {
        let Some(after) = self.after else {
            return Vec::new();
        };
        let now = rules::risk_problems(after, self.policy);
        if now.is_empty()
            || self
                .before
                .is_some_and(|b| !rules::risk_problems(b, self.policy).is_empty())
        {
            return Vec::new();
        }
        now.into_iter()
            .map(|p| Problem::exception(rules::RISK, p.message))
            .collect()
    }

    fn check_new(&self, after: &ChangeRequest) -> Vec<Problem> {
        let mut out = Vec::new();
        let mismatch = |m: String| Problem::exception("trailer-mismatch", m);
        if let Some(before) = self.before {
            out.push(mismatch(format!(
                "chg `new` over an existing change file (it was {})",
                before.status()
            )));
        }
        if after.requester.as_deref().map(str::to_ascii_lowercase)
            != Some(self.email.to_ascii_lowercase())
        {
            out.push(mismatch(format!(
                "the requester is {} but the commit was authored by {}",
                after.requester.as_deref().unwrap_or("nobody"),
                self.email
            )));
        }
        if !matches!(after.status(), Status::Draft | Status::PendingApproval)
            || !after.approvals.is_empty()
            || after.implementation.is_some()
            || after.review.is_some()
            || after.cancellation.is_some()
        {
            out.push(Problem::exception(
                "lifecycle",
                format!(
                    "a new change starts as draft or pending_approval with no approvals, but this one is {}{}",
                    after.status(),
                    if after.approvals.is_empty() {
                        ""
                    } else {
                        " with approvals"
                    }
                ),
            ));
        } else if after.status() == Status::PendingApproval {
            let missing: Vec<rules::Problem> = validate::content_problems(after, self.policy)
                .into_iter()
                .filter(|p| p.rule != rules::RISK)
                .collect();
            if !missing.is_empty() {
                out.push(Problem::exception(
                    "lifecycle",
                    format!(
                        "submitted without what the policy requires: {}",
                        missing
                            .iter()
                            .map(|p| p.message.as_str())
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                ));
            }
        }
        out
    }

    /// The rules with their own names (approvals, implementation, close), checked before the
    /// replay so the report says which rule broke rather than only that the step was refused.
    fn policy_checks(
        &self,
        action: &str,
        role: Option<&str>,
        before: &ChangeRequest,
        after: &ChangeRequest,
    ) -> Vec<Problem> {
        let mut out = Vec::new();
        let p = self.policy;
        let actor = self.email;
        let id = before.id_text();
        match action {
            "approve" | "reject" => {
                let Some(role) = role else {
                    return vec![Problem::exception(
                        "trailer-mismatch",
                        format!("chg `{action}` without a Chg-Role trailer"),
                    )];
                };
                for r in rules::decider_refusals(before, p, actor, role, action) {
                    out.push(Problem::exception(
                        r.rule,
                        format!("{action} of {id} as {role}: {}", r.message),
                    ));
                }
                if action == "approve" {
                    out.extend(self.late_approval(before));
                }
            }
            // Only the approver withdraws, only their own approval for that role; when the
            // change may still be withdrawn from is the replay's (life cycle) to say.
            "withdraw" => {
                let Some(role) = role else {
                    return vec![Problem::exception(
                        "trailer-mismatch",
                        "chg `withdraw` without a Chg-Role trailer",
                    )];
                };
                if let Some(r) = rules::withdrawal_refusal(before, actor, role) {
                    out.push(Problem::exception(
                        r.rule,
                        format!("withdraw of {id} as {role}: {}", r.message),
                    ));
                }
            }
            "implement" => {
                // An unanswered questionnaire is reported where it began (`check_risk`, at
                // the submission the policy asked it of); here only the answers given.
                let p = p.for_intake(before.risk_assessment.is_some());
                for r in rules::risk_problems(before, p) {
                    out.push(Problem::exception(
                        rules::RISK,
                        format!("implement of {id}: {}", r.message),
                    ));
                }
                for r in rules::implement_refusals(before, p, self.when) {
                    out.push(Problem::exception(
                        r.rule,
                        format!("implemented although {}", r.message),
                    ));
                }
            }
            // The gate as the policy at the parent judged it at the commit's time: the rules
            // of the change and the policy (overlaps with other changes are the gate's at
            // the time, not replayed here).
            "deploy" => {
                let waived = p.for_intake(before.risk_assessment.is_some());
                for r in rules::gate(before, waived, self.when, &[]) {
                    out.push(Problem::exception(
                        rules::DEPLOY_GATE,
                        format!(
                            "{id} deployed at {} while its gate was closed: {}: {}",
                            format_timestamp(self.when),
                            r.rule,
                            r.message
                        ),
                    ));
                }
            }
            "close" => {
                if let Some(outcome) = after.implementation.as_ref().and_then(|i| i.outcome)
                    && let Some(r) =
                        rules::review_refusal(before, p, outcome, after.review.is_some())
                {
                    out.push(Problem::exception(
                        r.rule,
                        format!("{id} was closed without its review: {}", r.message),
                    ));
                }
                out.extend(self.late_review(after));
            }
            _ => {}
        }
        out
    }

    /// Segregation of duties beyond approvals, for chg's steps and hand-made commits alike:
    /// an implementer the commit recorded who approved or requested the change, an
    /// approval it added by the change's implementer, a review it wrote by the implementer.
    /// The creator history proves is [`history_pass`]'s to judge.
    fn duty_checks(&self, before: Option<&ChangeRequest>, after: &ChangeRequest) -> Vec<Problem> {
        let p = self.policy;
        let mut out: Vec<Problem> = Vec::new();
        if let Some(who) = recorded_implementer(before, after) {
            out.extend(
                rules::implementer_failures(after, p, &who, None)
                    .into_iter()
                    .map(|(_, why)| Problem::exception(rules::SEGREGATION, why)),
            );
        } else if let Some(before) = before {
            out.extend(
                after
                    .approvals
                    .iter()
                    .filter(|a| a.decision == Decision::Approved && !before.approvals.contains(a))
                    .filter_map(|a| rules::implementer_approves_refusal(before, p, &a.by))
                    .map(|r| Problem::exception(r.rule, r.message)),
            );
        }
        if let Some(r) = &after.review
            && before.and_then(|b| b.review.as_ref()) != Some(r)
            && let Some(x) = rules::implementer_reviews_refusal(after, p, &r.by)
        {
            out.push(Problem::exception(x.rule, x.message));
        }
        out
    }

    fn late_approval(&self, before: &ChangeRequest) -> Option<Problem> {
        let deadline = rules::emergency_approval_late(before, self.policy, self.entered)?;
        Some(Problem::exception(
            "emergency-approval-late",
            format!(
                "approved at {}{}, after the emergency deadline {}",
                format_timestamp(self.when),
                if self.entered > self.when {
                    format!(" (in history from {})", format_timestamp(self.entered))
                } else {
                    String::new()
                },
                format_timestamp(deadline),
            ),
        ))
    }

    fn late_review(&self, after: &ChangeRequest) -> Option<Problem> {
        let review = after.review.as_ref()?;
        let deadline =
            rules::emergency_review_late(after, self.policy, review.at.max(self.entered))?;
        Some(Problem::exception(
            "emergency-review-late",
            format!(
                "the post-implementation review came at {}, after the emergency deadline {}",
                format_timestamp(review.at),
                format_timestamp(deadline)
            ),
        ))
    }

    /// Approvals that this commit left standing on content other than the one approved (their
    /// digest no longer matches): however the content changed (a merge, a hand edit), the
    /// approved plan is not the plan in the file. Reported at the commit that broke them.
    fn check_digests(&self) -> Vec<Problem> {
        let Some(after) = self.after else {
            return Vec::new();
        };
        let now = after.material_digest();
        let before_digest = self.before.map(ChangeRequest::material_digest);
        let stale: Vec<_> = after
            .standing_approvals()
            .map(|(_, a)| a)
            .filter(|a| a.digest.as_ref().is_some_and(|d| *d != now))
            .filter(|a| {
                // Already stale before this commit: reported where it happened.
                !(self.before.is_some_and(|b| b.approvals.contains(a))
                    && before_digest.as_ref() != a.digest.as_ref())
            })
            .collect();
        if stale.is_empty() {
            return Vec::new();
        }
        let changed = match self.before {
            Some(b) if stale.iter().all(|a| a.digest == before_digest) => {
                format!(" ({} changed)", b.material_differences(after).join(", "))
            }
            _ => String::new(),
        };
        let who: Vec<String> = stale
            .iter()
            .map(|a| format!("{} as {}", a.by, a.role))
            .collect();
        vec![Problem::exception(
            "approval-digest",
            format!(
                "the approval(s) by {} were given to other content than the file now holds{changed}",
                who.join(", ")
            ),
        )]
    }

    /// A commit without chg trailers for this change: creating and editing drafts by hand is
    /// normal (a note); deciding, implementing, closing, cancelling or deleting is not.
    fn check_manual(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let Some(after) = self.after else {
            out.push(Problem::exception(
                "manual-delete",
                format!(
                    "{} was deleted by a commit without chg trailers",
                    self.item.path
                ),
            ));
            return out;
        };
        out.extend(self.content_checks(self.before, after));
        out.extend(self.duty_checks(self.before, after));
        let empty = ChangeRequest::default();
        let created = self.before.is_none();
        let before = self.before.unwrap_or(&empty);
        let (bs, as_) = (before.status(), after.status());
        if created {
            if !matches!(as_, Status::Draft | Status::PendingApproval) {
                out.push(Problem::exception(
                    "manual-status",
                    format!("created by hand with status {as_}; only draft or pending_approval may be written by hand"),
                ));
            }
        } else if bs != as_ {
            out.push(Problem::exception(
                "manual-status",
                format!("status changed from {bs} to {as_} without chg"),
            ));
        }
        if before.approvals != after.approvals {
            let added: Vec<String> = after
                .approvals
                .iter()
                .filter(|a| !before.approvals.contains(a))
                .map(|a| {
                    let outsider = if self.policy.is_member(&a.role, &a.by) {
                        ""
                    } else {
                        ", not a member of that role"
                    };
                    let verb = match a.decision {
                        Decision::Approved => "approval",
                        Decision::Rejected => "rejection",
                        Decision::Withdrawn => "withdrawal",
                    };
                    format!("{verb} by {} as {}{outsider}", a.by, a.role)
                })
                .collect();
            out.push(Problem::exception(
                "manual-approval",
                if added.is_empty() {
                    "approvals removed or altered without chg".to_owned()
                } else {
                    format!("written without chg: {}", added.join("; "))
                },
            ));
        }
        // A deployment record is evidence that the gate was open: only `chg deploy`, which
        // checks it, writes one.
        if before.deployments != after.deployments {
            let added: Vec<String> = after
                .deployments
                .iter()
                .filter(|d| !before.deployments.contains(d))
                .map(|d| format!("{} to {} by {}", d.commit, d.environment, d.by))
                .collect();
            out.push(Problem::exception(
                "manual-deployment",
                if added.is_empty() {
                    "deployment records removed or altered without chg".to_owned()
                } else {
                    format!("deployment written without chg: {}", added.join("; "))
                },
            ));
        }
        // (had it before, has it after): a revert removes what a step wrote.
        let how = |had: bool, has: bool| match (had, has) {
            (true, false) => "removed",
            (false, true) => "written",
            _ => "altered",
        };
        for (rule, differs, what, verb) in [
            (
                "manual-implementation",
                before.implementation != after.implementation,
                "implementation",
                how(
                    before.implementation.is_some(),
                    after.implementation.is_some(),
                ),
            ),
            (
                "manual-review",
                before.review != after.review,
                "review",
                how(before.review.is_some(), after.review.is_some()),
            ),
            (
                "manual-cancellation",
                before.cancellation != after.cancellation,
                "cancellation",
                how(before.cancellation.is_some(), after.cancellation.is_some()),
            ),
        ] {
            if differs {
                out.push(Problem::exception(
                    rule,
                    format!("the {what} record was {verb} without chg"),
                ));
            }
        }
        if created {
            if out.is_empty() {
                out.push(Problem::note(
                    "manual-create",
                    format!("created by hand as {as_}"),
                ));
            }
            return out;
        }
        let material = before.material_differences(after);
        let was_approved = before.standing_approvals().next().is_some();
        if !material.is_empty() && was_approved {
            out.push(Problem::exception(
                "manual-edit-approved",
                format!(
                    "approved content changed without chg ({}){}",
                    material.join(", "),
                    if after.approvals.is_empty() {
                        ""
                    } else {
                        " and the approvals stayed"
                    }
                ),
            ));
        } else if out.is_empty() {
            let fields = differing_fields(before, after);
            if !fields.is_empty() {
                out.push(Problem::note(
                    "manual-edit",
                    format!("edited by hand ({})", fields.join(", ")),
                ));
            }
        }
        if let Some(old) = &self.item.old_path
            && out.is_empty()
        {
            out.push(Problem::note("manual-rename", format!("moved from {old}")));
        }
        out
    }
}

/// The implementer `after` records that `before` did not (a commit that implemented the
/// change, or rewrote who did).
fn recorded_implementer(before: Option<&ChangeRequest>, after: &ChangeRequest) -> Option<String> {
    let of = |c: &ChangeRequest| {
        c.implementation
            .as_ref()
            .and_then(|i| i.implementer.clone())
    };
    of(after).filter(|who| before.and_then(of).as_ref() != Some(who))
}

/// The problems of a change file as a merge brings it into a line (see
/// [`Auditor::brought_records`]), judged by `policy` (and `filing`, its catalogue without
/// history) against the line's own version `before`.
fn brought_problems(
    before: Option<&ChangeRequest>,
    after: &ChangeRequest,
    policy: &Policy,
    filing: &Policy,
) -> Vec<Problem> {
    let mut out = Vec::new();
    let why = |m: String| format!("brought by a merge: {m}, under the policy it was merged into");
    let empty = ChangeRequest::default();
    let old: Vec<String> = crate::signing::records(before.unwrap_or(&empty))
        .into_iter()
        .map(|r| r.statement.text())
        .collect();
    for (r, v) in rules::signature_verdicts(after, policy) {
        if old.contains(&r.statement.text()) {
            continue;
        }
        if let Some(w) = v.problem(&r.actor) {
            out.push(Problem::exception(
                crate::signing::SIGNATURE,
                why(format!("the {} record by {}: {w}", r.action, r.actor)),
            ));
        }
    }
    let had = |a: &crate::model::Approval| before.is_some_and(|b| b.approvals.contains(a));
    // A withdrawal is no decision: who may withdraw is the life cycle's (and validate's).
    for a in after
        .approvals
        .iter()
        .filter(|a| !had(a) && a.decision != Decision::Withdrawn)
    {
        if !policy.is_member(&a.role, &a.by) {
            out.push(Problem::exception(
                rules::APPROVAL_ROLE,
                why(format!(
                    "{} decided as {} without being a member",
                    a.by, a.role
                )),
            ));
        }
        let requester = after.requester.as_deref().unwrap_or("");
        if policy
            .segregation_of_duties
            .forbids(SodCheck::RequesterApproves)
            && a.by.eq_ignore_ascii_case(requester)
        {
            out.push(Problem::exception(
                rules::SEGREGATION,
                why(format!("{} decided on their own change", a.by)),
            ));
        }
    }
    // An implementation or review the merge brings is judged by the line's duties too
    // (one made on a branch whose policy was loosened for the purpose, say).
    let brought_duty = before.is_none_or(|b| {
        b.implementation.as_ref().map(|i| &i.implementer)
            != after.implementation.as_ref().map(|i| &i.implementer)
            || b.review != after.review
    });
    if brought_duty {
        for p in rules::duty_problems(after, policy) {
            out.push(Problem::exception(rules::SEGREGATION, why(p.message)));
        }
    }
    let decided = |c: &ChangeRequest| {
        matches!(
            c.status(),
            Status::Approved | Status::Implementing | Status::Closed
        )
    };
    if decided(after)
        && !before.is_some_and(decided)
        && after.model() == ChangeModel::Normal
        && !rules::missing_roles(after, policy).is_empty()
    {
        out.push(Problem::exception(
            "implemented-unapproved",
            why(format!(
                "it is {} but still needs approval by {}",
                after.status(),
                rules::missing_roles(after, policy).join(", ")
            )),
        ));
    }
    let filed = before.is_none_or(|b| {
        b.template != after.template
            || b.template_digest != after.template_digest
            || b.model() != ChangeModel::Standard
    });
    if after.model() == ChangeModel::Standard
        && filed
        && let Some(w) = filing.template_problem(after)
    {
        out.push(Problem::exception(
            crate::templates::STANDARD_TEMPLATE,
            why(format!("not a standard change of the catalogue: {w}")),
        ));
    }
    out
}

/// `change` with each approval that records no digest given the digest of the content as it
/// is (see the caller).
fn with_legacy_digests(change: &ChangeRequest) -> ChangeRequest {
    let mut c = change.clone();
    if c.approvals.iter().any(|a| a.digest.is_none()) {
        let digest = change.material_digest();
        for a in c.approvals.iter_mut().filter(|a| a.digest.is_none()) {
            a.digest = Some(digest.clone());
        }
    }
    c
}

/// `expected` with the approval digests cleared where the recorded approval has none: chg
/// versions before digests wrote none, and their commits are not wrong for it.
fn without_legacy_digests(mut expected: ChangeRequest, after: &ChangeRequest) -> ChangeRequest {
    for (e, a) in expected.approvals.iter_mut().zip(&after.approvals) {
        if a.digest.is_none() {
            e.digest = None;
        }
    }
    expected
}

/// The top-level fields whose values differ.
fn differing_fields(a: &ChangeRequest, b: &ChangeRequest) -> Vec<String> {
    let (Ok(serde_json::Value::Object(x)), Ok(serde_json::Value::Object(y))) =
        (serde_json::to_value(a), serde_json::to_value(b))
    else {
        return Vec::new();
    };
    crate::model::ALL_FIELDS
        .iter()
        .filter(|f| x.get(**f) != y.get(**f))
        .map(|f| (*f).to_owned())
        .collect()
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
    prefix: &'s str,
}

impl index::Engine for Judge<'_> {
    fn commits(&self, head: Oid, hide: Option<Oid>) -> Result<Vec<Oid>> {
        walk(self.repo, head, hide)
    }

    fn verdicts(&self, batch: &[Oid], seq: u64) -> Result<Vec<CommitAudit>> {
        audit_commits(self.repo.path(), self.prefix, batch, seq)
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
    tune_libgit2();
    let judge = Judge {
        repo: store.repo(),
        prefix: store.prefix(),
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
    let Some(mut entries) = idx.log(id)? else {
        return Ok(None);
    };
    // A renumbered change's history starts in its old file, under its old id.
    let mut seen = Vec::new();
    while let Some(old) = entries
        .iter()
        .filter_map(|e| e.renumbered_from.clone())
        .find(|o| !seen.contains(o))
    {
        let cut = entries
            .iter()
            .find(|e| e.renumbered_from.as_deref() == Some(old.as_str()))
            .map_or(u64::MAX, |e| e.seq);
        let Some(before) = idx.log(id_of_path(&old))? else {
            return Ok(None);
        };
        let mut earlier: Vec<Entry> = before
            .into_iter()
            .filter(|e| e.seq < cut && e.path == old)
            .collect();
        earlier.append(&mut entries);
        entries = earlier;
        seen.push(old);
    }
    Ok(Some(entries))
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
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(read_index(store, false, now, |idx| {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(entries) = history(idx, id)? else {
                return Ok(None);
            };
            out.push((id.clone(), entries));
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
