//! The auditor: reads each commit and judges every change file it touched.

use super::*;

/// Audits commits one at a time, remembering the policies it has parsed.
pub struct Auditor<'r> {
    pub(super) repo: &'r Repository,
    pub(super) prefix: String,
    /// The policies of the trees it met, each assembled once (signers, catalogue).
    pub(super) policies: crate::policy_source::Cache<'r>,
    /// Decoded blobs: the version after one commit is the version before the change's next
    /// commit, so each version is read and parsed once.
    pub(super) decoded: HashMap<Oid, Arc<std::result::Result<ChangeRequest, String>>>,
    /// Where a shallow clone's history is cut (sorted).
    pub(super) shallow: Vec<Oid>,
    /// Judges policy changes (SPEC section 10), made when the first one is met.
    pub(super) governance: Option<Box<crate::audit::governance::Governance<'r>>>,
    /// What judging policy changes learnt, shared with the other workers of a run.
    pub(super) memo: Arc<crate::audit::governance::Memo>,
    /// The policies of [`Auditor::policy_of`] without the catalogue's history: what a
    /// change filed on top of that tree could be filed from (keyed by the policy's
    /// address: `policy_of` hands out one value per policy, signers and templates).
    pub(super) filing_policies: HashMap<usize, (Arc<Policy>, Arc<Policy>)>,
    /// Whether HEAD's policy asks the risk questionnaire, once read.
    pub(super) head_risk: Option<bool>,
}

/// The verdict on a commit where a shallow clone's history is cut: its parents are not
/// here, so what it changed (and everything before it) cannot be judged. Judging it as a
/// first commit would call every file in it hand-made; instead the audit says where the
/// history it can see begins, and judges the commits after it against its tree.
pub(super) fn shallow_boundary(facts: &Facts<'_>) -> CommitAudit {
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
pub(super) struct Item {
    pub(super) path: String,
    pub(super) old_path: Option<String>,
    pub(super) old: Option<Oid>,
    pub(super) new: Option<Oid>,
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
            policies: crate::policy_source::Cache::new(
                repo,
                prefix,
                crate::policy_source::Cache::head_history(repo, prefix),
            ),
            decoded: HashMap::new(),
            shallow: crate::git::shallow_commits(repo),
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
    pub(super) fn time_floor(
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
    pub(super) fn governance(&mut self) -> &mut crate::audit::governance::Governance<'r> {
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
    pub(super) fn filing_policy(&mut self, tree: &Tree<'_>) -> Result<Arc<Policy>> {
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
    pub(super) fn filing_problem(
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

    /// The policy in `tree` (the default policy when it has none or it does not parse),
    /// with the allowed signers and catalogue of the same tree attached.
    pub(crate) fn policy_of(&mut self, tree: &Tree<'_>) -> Result<Arc<Policy>> {
        Ok(self.policies.in_tree(tree)?.policy)
    }

    pub(super) fn decode(
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
        self.commit_of_walk(oid, seq, None)
    }

    /// [`commit`](Self::commit), the commit first held to `walked` (a walk the commit-graph
    /// file gave) with the parents it names itself.
    pub fn commit_of_walk(
        &mut self,
        oid: Oid,
        seq: u64,
        walked: Option<&super::Walked>,
    ) -> Result<CommitAudit> {
        let commit = self.repo.find_commit(oid)?;
        if let Some(walked) = walked {
            walked.check(&commit)?;
        }
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
            let written = match new_pol {
                Some(b) => self.policies.parsed(b)?,
                None => None,
            };
            let valid = new_pol.is_none() || written.is_some() || old_pol == new_pol;
            let written = written.unwrap_or_else(|| Arc::new(Policy::default_policy()));
            out.findings.extend(facts.policy_findings(
                &policy_path,
                &files,
                valid,
                written.signing.as_ref(),
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
}

impl<'r> Auditor<'r> {
    /// Whether the commit's chg trailers speak for this store. A repository may hold more
    /// than one store (`teams/a/`, `teams/b/`): a commit that changes another store's files
    /// and nothing under this one is that store's to judge. A commit that changes nothing
    /// at all still is this store's (trailers claiming a step that did nothing).
    pub(super) fn ours(&self, facts: &Facts<'_>) -> bool {
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
    pub(super) fn changed_items(&self, facts: &Facts<'_>) -> Result<Vec<Item>> {
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
    pub(super) fn item(
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
                problems.extend(
                    self.step_problems(facts, policy, &item, mine, before, after, submitted)?,
                );
                if let Some(e) = started_emergency(facts, &item, &id, before, after) {
                    out.emergencies.push(e);
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
        let after = after.as_deref().and_then(|a| a.as_ref().ok());
        out.entries.push(log_entry(
            facts, policy, &item, id, mine, before, after, problems, material, submitted, seq,
        ));
        Ok(())
    }

    /// The problems of one readable step: chg's own replayed or a hand edit judged, the
    /// digests, the risk answers, the times history proves, the questionnaire, who may
    /// declare an emergency, and a standard change's template.
    #[allow(clippy::too_many_arguments)]
    fn step_problems(
        &mut self,
        facts: &Facts<'_>,
        policy: &Policy,
        item: &Item,
        mine: bool,
        before: Option<&ChangeRequest>,
        after: Option<&ChangeRequest>,
        submitted: Option<bool>,
    ) -> Result<Vec<Problem>> {
        let mut problems = Vec::new();
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
            item,
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
            && let Some(r) = rules::emergency_declaration_refusal(before, a, &facts.email, policy)
        {
            problems.push(Problem::exception(r.rule, r.message));
        }
        if let Some(after) = after
            && after.model() == ChangeModel::Standard
            && let Some(why) = self.standard_problem(facts, policy, before, after)?
        {
            problems.push(Problem::exception(
                crate::templates::STANDARD_TEMPLATE,
                format!("not a standard change of the catalogue: {why}"),
            ));
        }
        Ok(problems)
    }

    /// Why a standard change's step does not count as a change of the catalogue: when it
    /// is filed (or its template changes), the templates in force at the parent; after
    /// that, a fixed value edited since, judged by the version it recorded.
    fn standard_problem(
        &mut self,
        facts: &Facts<'_>,
        policy: &Policy,
        before: Option<&ChangeRequest>,
        after: &ChangeRequest,
    ) -> Result<Option<String>> {
        let filing = before.is_none_or(|b| {
            b.template != after.template
                || b.template_digest != after.template_digest
                || b.model() != ChangeModel::Standard
        });
        Ok(if filing {
            self.filing_problem(facts, after)?
        } else if policy.template_problem(before.unwrap_or(after)).is_none() {
            policy.template_problem(after)
        } else {
            None
        })
    }

    /// The times a chg step records that history proves false: dated before the commit it
    /// follows (its parent's commit time, beyond the machines' clock skew), whatever
    /// `CHG_NOW` or `GIT_AUTHOR_DATE` said when it was made (an emergency approval given
    /// days late but dated into its deadline, say). A step `chg sync` replayed keeps the
    /// time it was made offline, so for it the gap is a note an auditor can weigh.
    pub(super) fn backdated(
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
    pub(super) fn brought_late(
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
    pub(super) fn head_asks_questionnaire(&mut self) -> Result<bool> {
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
    pub(super) fn asks_questionnaire(
        &mut self,
        facts: &Facts<'_>,
        policy: &Policy,
    ) -> Result<bool> {
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
pub(super) const MERGE_GAP_SECS: i64 = 24 * 3600;

/// The steps a version of a change records, one line each, to tell whether a later version
/// still has them: decisions (approvals, rejections, withdrawals), implementation start
/// and completion, review and cancellation.
pub(super) fn step_records(c: &ChangeRequest) -> Vec<String> {
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

/// The emergency a step started: an emergency change entering implementation (or closed
/// straight away), whose approvals must follow within the policy's deadline.
fn started_emergency(
    facts: &Facts<'_>,
    item: &Item,
    id: &str,
    before: Option<&ChangeRequest>,
    after: Option<&ChangeRequest>,
) -> Option<Emergency> {
    let started = |c: &ChangeRequest| matches!(c.status(), Status::Implementing | Status::Closed);
    let a = after?;
    (a.model() == ChangeModel::Emergency && started(a) && !before.is_some_and(started)).then(|| {
        Emergency {
            id: id.to_owned(),
            path: item.path.clone(),
            commit: facts.oid.to_string(),
            author: facts.email.clone(),
            when: facts.when,
        }
    })
}

/// The step's entry in its change's log (what `chg log`, the gate and the pack read).
#[allow(clippy::too_many_arguments)]
fn log_entry(
    facts: &Facts<'_>,
    policy: &Policy,
    item: &Item,
    id: String,
    mine: bool,
    before: Option<&ChangeRequest>,
    after: Option<&ChangeRequest>,
    problems: Vec<Problem>,
    material: bool,
    submitted: Option<bool>,
    seq: u64,
) -> Entry {
    let tr = &facts.trailers;
    let renumbered = tr.action() == Some(Action::Renumber) && tr.renumbered_from.is_some();
    let implementer = after.and_then(|a| recorded_implementer(before, a));
    Entry {
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
    }
}
