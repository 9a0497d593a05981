//! The judge of policy changes (SPEC section 10), part of the audit: it walks the
//! first-parent line, the policy changes on it oldest first, each judged by the authority
//! left by those before it. An apply counts only as the proposal's own implement step with
//! its history verified, which the audit's own engine replays. Audit, validate, gate and
//! every state-changing command ask here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use git2::{Oid, Repository, Tree};

use crate::error::Result;
use crate::governance::{
    Standing, missing_governance, policy_files, policy_tree, proposal_problem, proposes,
};
use crate::model::ChangeRequest;
use crate::policy::Policy;

/// The judgement of one policy-changing commit.
#[derive(Debug, Clone)]
struct Judged {
    standing: Standing,
    /// The commit whose policy governs what comes after (this one, or the last that counts).
    governing: Oid,
}

/// What judging policy changes has learnt, shared by the audit's parallel workers so that
/// each policy change (and each walk back to one) is judged once per run.
#[derive(Default)]
pub struct Memo {
    judged: Mutex<HashMap<Oid, Judged>>,
    /// `last_change(commit)` answers, for every commit a walk went through.
    last: Mutex<HashMap<Oid, Option<Oid>>>,
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("governance::Memo")
    }
}

/// Judges policy changes; remembers what it judged.
pub struct Governance<'r> {
    repo: &'r Repository,
    prefix: String,
    /// The policies of the commits it judges, each assembled once.
    policies: crate::policy_source::Cache<'r>,
    memo: Arc<Memo>,
}

impl<'r> Governance<'r> {
    /// For the store at `prefix` in `repo`.
    pub fn new(repo: &'r Repository, prefix: &str) -> Self {
        Self::with_memo(repo, prefix, Arc::default())
    }

    /// For the store at `prefix` in `repo`, sharing what others judged.
    pub fn with_memo(repo: &'r Repository, prefix: &str, memo: Arc<Memo>) -> Self {
        Governance {
            repo,
            prefix: prefix.to_owned(),
            policies: crate::policy_source::Cache::new(
                repo,
                prefix,
                crate::policy_source::Cache::head_history(repo, prefix),
            ),
            memo,
        }
    }

    /// Answers of [`Governance::last_change`] learnt earlier (by another run), each for a
    /// commit: what a walk reaching one of them need not walk again.
    pub fn learn_last(&self, answers: impl IntoIterator<Item = (Oid, Option<Oid>)>) {
        if let Ok(mut m) = self.memo.last.lock() {
            m.extend(answers);
        }
    }

    /// A sparse, stable sample of the [`Governance::last_change`] answers this run learnt:
    /// the commits whose id starts with `0x000` (one in 4,096, wherever the walks went),
    /// worth keeping between runs. The answer for a commit never changes (its id fixes its
    /// whole past), so a later walk from anywhere on a line walked before (after a reset,
    /// a checkout, a rebase) stops within a few thousand commits instead of at the root.
    pub fn checkpoints(&self) -> Vec<(Oid, Option<Oid>)> {
        let Ok(m) = self.memo.last.lock() else {
            return Vec::new();
        };
        let mut out: Vec<(Oid, Option<Oid>)> = m
            .iter()
            .filter(|(oid, _)| oid.as_bytes()[0] == 0 && oid.as_bytes()[1] < 0x10)
            .map(|(o, l)| (*o, *l))
            .collect();
        out.sort();
        out
    }

    fn judged(&self, oid: Oid) -> Option<Judged> {
        self.memo.judged.lock().ok()?.get(&oid).cloned()
    }

    fn is_judged(&self, oid: Oid) -> bool {
        self.memo.judged.lock().is_ok_and(|m| m.contains_key(&oid))
    }

    /// The policy folder's tree in `commit`, and in its first parent.
    fn trees(&self, commit: &git2::Commit<'_>) -> Result<(Option<Oid>, Option<Oid>)> {
        let now = policy_tree(&commit.tree()?, &self.prefix)?;
        let before = match commit.parents().next() {
            Some(p) => policy_tree(&p.tree()?, &self.prefix)?,
            None => None,
        };
        Ok((now, before))
    }

    /// Whether `oid` changed the policy folder against its first parent (a root commit
    /// with a policy did).
    pub fn changes_policy(&self, oid: Oid) -> Result<bool> {
        let c = self.repo.find_commit(oid)?;
        let (now, before) = self.trees(&c)?;
        Ok(now != before && (now.is_some() || c.parent_count() > 0)
            || self.merge_differs(&c, now)?)
    }

    /// Whether `commit` is a merge whose policy differs from a parent other than the first
    /// (whichever parent comes first, every line's policy counts).
    fn merge_differs(&self, commit: &git2::Commit<'_>, now: Option<Oid>) -> Result<bool> {
        // (Checked first: skipping the first parent would read it again.)
        if commit.parent_count() < 2 {
            return Ok(false);
        }
        for p in commit.parents().skip(1) {
            if policy_tree(&p.tree()?, &self.prefix)? != now {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The last commit at or before `from` on its first-parent line that changed the
    /// policy folder, if any; stops early at `known` (returned as found).
    pub fn last_change(&self, from: Oid, known: Option<Oid>) -> Result<Option<Oid>> {
        let mut commit = self.repo.find_commit(from)?;
        // Each commit's parent is the next one looked at: its tree is read once.
        let mut now = policy_tree(&commit.tree()?, &self.prefix)?;
        let mut seen = Vec::new();
        let found = loop {
            let oid = commit.id();
            if Some(oid) == known {
                return Ok(Some(oid));
            }
            if self.is_judged(oid) {
                break Some(oid);
            }
            if let Some(answer) = self
                .memo
                .last
                .lock()
                .ok()
                .and_then(|m| m.get(&oid).copied())
            {
                break answer;
            }
            seen.push(oid);
            let Some(parent) = commit.parents().next() else {
                break now.is_some().then_some(oid);
            };
            let before = policy_tree(&parent.tree()?, &self.prefix)?;
            if before != now || self.merge_differs(&commit, now)? {
                break Some(oid);
            }
            (commit, now) = (parent, before);
        };
        if let Ok(mut m) = self.memo.last.lock() {
            if m.len() > 4_000_000 {
                m.clear();
            }
            for oid in seen {
                m.insert(oid, found);
            }
        }
        Ok(found)
    }

    /// How the policy at `commit` stands: the standing of the last policy change at or
    /// before it, with that change (`None` when nothing ever changed it).
    pub fn standing_at(&mut self, commit: Oid) -> Result<Option<(Oid, Standing)>> {
        let Some(last) = self.last_change(commit, None)? else {
            return Ok(None);
        };
        self.judge_chain(last)?;
        Ok(self.judged(last).map(|j| (last, j.standing)))
    }

    /// The standing of `oid`, a commit that changed the policy folder.
    pub fn standing_of(&mut self, oid: Oid) -> Result<Standing> {
        self.judge_chain(oid)?;
        Ok(self
            .judged(oid)
            .map(|j| j.standing)
            .unwrap_or(Standing::Authorized("the first policy".into())))
    }

    /// Judges `top` and every unjudged policy change below it, oldest first.
    fn judge_chain(&mut self, top: Oid) -> Result<()> {
        let mut chain = Vec::new();
        let mut at = Some(top);
        while let Some(oid) = at {
            if self.is_judged(oid) {
                break;
            }
            chain.push(oid);
            let parent = self.repo.find_commit(oid)?.parent_ids().next();
            at = match parent {
                Some(p) => self.last_change(p, None)?,
                None => None,
            };
        }
        for oid in chain.into_iter().rev() {
            let j = self.judge_one(oid)?;
            if let Ok(mut m) = self.memo.judged.lock() {
                m.insert(oid, j);
            }
        }
        Ok(())
    }

    /// Judges one policy change, everything below it judged already.
    fn judge_one(&mut self, oid: Oid) -> Result<Judged> {
        let commit = self.repo.find_commit(oid)?;
        let (tree, _) = self.trees(&commit)?;
        let prev = match commit.parent_ids().next() {
            Some(p) => self.last_change(p, None)?,
            None => None,
        };
        let Some(parent) = commit.parent_ids().next() else {
            return Ok(Judged {
                standing: Standing::Authorized("the first policy".into()),
                governing: oid,
            });
        };
        if commit.parent_count() > 1 {
            return self.judge_merge(&commit, tree);
        }
        // The policy that governs this change: the parent's, unless the parent's policy
        // was slipped in, then the last that counted.
        let governing = match prev.and_then(|p| self.judged(p)) {
            Some(j) => j.governing,
            None => parent,
        };
        let authority = self.policy_at(governing)?;
        let judged = |standing: Standing| Judged {
            governing: if standing.counts() { oid } else { governing },
            standing,
        };
        if authority.governance.is_none() {
            return Ok(judged(Standing::Ungoverned));
        }
        if let Some(why) = self.applied(&commit, &authority)? {
            return Ok(judged(Standing::Authorized(why)));
        }
        // Undoing slipped-in commits: a return to exactly the policy that governs now (the
        // last authorized one). Going back to any older version, even one authorized in
        // its day, would restore what a later approved proposal removed (a revoked key, a
        // retired template), so it takes a proposal.
        let governing_tree = policy_tree(&self.repo.find_commit(governing)?.tree()?, &self.prefix)?;
        // (The line's tree differs from the governing one only after a slipped-in commit.)
        if tree == governing_tree {
            return Ok(judged(Standing::Authorized(format!(
                "it restores the policy that governs ({}), undoing commits that were not authorized",
                short(governing)
            ))));
        }
        Ok(judged(Standing::Unauthorized(format!(
            "{} changed the policy without `chg policy apply` of an approved proposal",
            short(oid)
        ))))
    }

    /// The commit whose policy governs what is made on top of `at`: the last policy change
    /// at or before it that counted (or `at` itself when nothing ever changed the policy).
    fn governing_commit(&mut self, at: Oid) -> Result<Oid> {
        Ok(match self.last_change(at, None)? {
            Some(last) => {
                self.judge_chain(last)?;
                self.judged(last).map_or(at, |j| j.governing)
            }
            None => at,
        })
    }

    /// Judges a merge whose policy differs from one of its parents'. Every parent line is
    /// held to the policy that governs it, whichever parent comes first (a merge names its
    /// parents in any order it likes): the merge may leave a governed line's policy only
    /// for the one that governs it, or for the policy another parent brings when that
    /// policy was authorized after the first line's (a proposal applied on a branch made
    /// from it). A policy from a line that does not descend from the governed one (a new
    /// root, or a branch from before governance) is `policy-unauthorized`.
    fn judge_merge(&mut self, commit: &git2::Commit<'_>, tree: Option<Oid>) -> Result<Judged> {
        let oid = commit.id();
        struct Line {
            parent: Oid,
            tree: Option<Oid>,
            governing: Oid,
            governing_tree: Option<Oid>,
            governed: bool,
        }
        let mut lines = Vec::new();
        for parent in commit.parent_ids() {
            let governing = self.governing_commit(parent)?;
            lines.push(Line {
                parent,
                tree: policy_tree(&self.repo.find_commit(parent)?.tree()?, &self.prefix)?,
                governing,
                governing_tree: policy_tree(
                    &self.repo.find_commit(governing)?.tree()?,
                    &self.prefix,
                )?,
                governed: self.policy_at(governing)?.governance.is_some(),
            });
        }
        let mut governed_any = false;
        for (i, line) in lines.iter().enumerate() {
            if line.tree == tree || !line.governed {
                continue;
            }
            governed_any = true;
            if line.governing_tree == tree {
                continue;
            }
            let mut newer = false;
            for (j, other) in lines.iter().enumerate() {
                if j != i
                    && other.tree == tree
                    && other.governing_tree == tree
                    && (other.governing == line.governing
                        || self
                            .repo
                            .graph_descendant_of(other.governing, line.governing)?)
                {
                    newer = true;
                }
            }
            if !newer {
                return Ok(Judged {
                    standing: Standing::Unauthorized(format!(
                        "{} merges in a policy that does not govern {} (it did not come through `chg policy apply` on that line)",
                        short(oid),
                        short(line.parent)
                    )),
                    governing: line.governing,
                });
            }
        }
        let standing = if governed_any {
            Standing::Authorized(format!(
                "it merges a policy authorized on {}",
                lines
                    .iter()
                    .filter(|l| l.tree == tree)
                    .map(|l| short(l.governing))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        } else {
            Standing::Ungoverned
        };
        Ok(Judged {
            standing,
            governing: oid,
        })
    }

    /// The policy that governs changes made on top of `commit`: its own, unless it was
    /// slipped in, then the last that counted.
    pub fn governing_policy(&mut self, commit: Oid) -> Result<Arc<Policy>> {
        let governing = match self.standing_at(commit)? {
            Some((last, _)) => self.judged(last).map_or(commit, |j| j.governing),
            None => commit,
        };
        self.policy_at(governing)
    }

    /// The policy (signers attached) in `commit`'s tree.
    fn policy_at(&mut self, commit: Oid) -> Result<Arc<Policy>> {
        let tree = self.repo.find_commit(commit)?.tree()?;
        Ok(self.policies.in_tree(&tree)?.policy)
    }

    /// Why `commit` is an authorized `chg policy apply` under `authority`, if it is: the
    /// proposal's own implement step as chg makes it (one parent, its trailers, the step
    /// replaying from the proposal's version at the parent: approved by every role its
    /// priority needs, not rejected, signed where required), every governance role's
    /// approval counting, based on the policy at the parent, with paths under `policy/`
    /// only, and the proposal's history up to the parent verifying. A commit that merely
    /// names a proposal is none of this.
    fn applied(&self, commit: &git2::Commit<'_>, authority: &Policy) -> Result<Option<String>> {
        use crate::trailers::{Action, Trailers};
        let trailers = Trailers::parse(&String::from_utf8_lossy(commit.message_raw_bytes()));
        if commit.parent_count() != 1 || trailers.action() != Some(Action::Implement) {
            return Ok(None);
        }
        let Some(id) = trailers.id.clone() else {
            return Ok(None);
        };
        let (tree, parent) = (commit.tree()?, commit.parent(0)?);
        let parent_tree = parent.tree()?;
        let read = |t: &Tree<'_>| -> Result<Option<(String, ChangeRequest)>> {
            let Some((path, Some(blob))) =
                crate::layout::find_change(self.repo, t, &self.prefix, &id)?
            else {
                return Ok(None);
            };
            let bytes = self.repo.find_blob(blob)?.content().to_vec();
            let decoded = crate::decode::decode_bytes(&path, &bytes);
            Ok(decoded.parsed.then_some((path, decoded.change)))
        };
        let (Some((path, after)), Some((_, before))) = (read(&tree)?, read(&parent_tree)?) else {
            return Ok(None);
        };
        if !proposes(&after, &policy_files(self.repo, &tree, &self.prefix)?)
            || proposal_problem(&after).is_some()
        {
            return Ok(None);
        }
        let base = policy_tree(&parent_tree, &self.prefix)?.map(|t| t.to_string());
        if before.policy_base.is_some() && before.policy_base != base {
            return Ok(None);
        }
        let author = commit.author();
        let email = author.email().unwrap_or("");
        let when = jiff::Timestamp::from_second(author.when().seconds()).unwrap_or_default();
        let Ok((mut expected, _)) = crate::workflow::apply(
            &before,
            authority,
            email,
            when,
            crate::workflow::Step::Implement,
        ) else {
            return Ok(None);
        };
        crate::signing::carry_signature(&after, &mut expected, "implement");
        if expected != after || !missing_governance(&before, authority).is_empty() {
            return Ok(None);
        }
        if !self.history_verifies(&id, &path, parent.id())? {
            return Ok(None);
        }
        Ok(Some(format!(
            "it applies {id}, approved by every governance role"
        )))
    }

    /// Whether every commit up to `upto` that changed the file at `path` (change `id`)
    /// passes the audit with no exception for that change.
    fn history_verifies(&self, id: &str, path: &str, upto: Oid) -> Result<bool> {
        let mut walk = self.repo.revwalk()?;
        walk.push(upto)?;
        let mut auditor =
            crate::audit::Auditor::with_memo(self.repo, &self.prefix, self.memo.clone());
        for oid in walk {
            let c = self.repo.find_commit(oid?)?;
            let now = crate::git::blob_at(&c.tree()?, path)?;
            let before = match c.parents().next() {
                Some(p) => crate::git::blob_at(&p.tree()?, path)?,
                None => None,
            };
            if now == before {
                continue;
            }
            let verdict = auditor.commit(c.id(), 0)?;
            let broken = verdict.entries.iter().filter(|e| e.id == id).any(|e| {
                e.problems
                    .iter()
                    .any(|p| p.level == crate::audit::Level::Exception)
            });
            if broken {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

fn short(oid: Oid) -> String {
    oid.to_string()[..8].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line of `n` commits, the policy added by the first and changed by none after.
    fn line(repo: &Repository, n: usize) -> Vec<Oid> {
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        let blob = repo.blob(crate::policy::DEFAULT_POLICY.as_bytes()).unwrap();
        let mut policy = repo.treebuilder(None).unwrap();
        policy.insert("policy.yaml", blob, 0o100644).unwrap();
        let policy = policy.write().unwrap();
        let mut out: Vec<Oid> = Vec::new();
        for i in 0..n {
            let note = repo.blob(format!("{i}").as_bytes()).unwrap();
            let mut root = repo.treebuilder(None).unwrap();
            root.insert("policy", policy, 0o040000).unwrap();
            root.insert("note", note, 0o100644).unwrap();
            let tree = repo.find_tree(root.write().unwrap()).unwrap();
            let parents: Vec<git2::Commit<'_>> = out
                .last()
                .map(|p| repo.find_commit(*p).unwrap())
                .into_iter()
                .collect();
            let refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
            out.push(repo.commit(None, &sig, &sig, "c", &tree, &refs).unwrap());
        }
        out
    }

    /// A walk stops at an answer learnt from an earlier run (a checkpoint) instead of going
    /// on to the root, and a walk without one finds the real answer.
    #[test]
    fn a_learnt_answer_ends_the_walk_there() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let c = line(&repo, 5);
        assert_eq!(
            Governance::new(&repo, "").last_change(c[4], None).unwrap(),
            Some(c[0])
        );
        // A (made-up) answer for c[2]: the walk from c[4] believes it, so it stopped there.
        let g = Governance::new(&repo, "");
        g.learn_last([(c[2], Some(c[1]))]);
        assert_eq!(g.last_change(c[4], None).unwrap(), Some(c[1]));
        // Every commit the walk went through now has an answer to keep.
        let all = g.memo.last.lock().unwrap().len();
        assert_eq!(all, 3);
    }
}
