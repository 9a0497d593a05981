//! Merges: the records a merge brings into a line, judged again by the policy they enter,
//! and the changes a merge drops.

use super::*;

impl<'r> Auditor<'r> {
    /// What a merge brings into a line: change files as another parent made them, whose
    /// records were judged on that branch by its own policy. They enter this line here, so
    /// they are judged again by the policy of the merge (after `governance` has held the
    /// merge's policy to every parent's): records added without the signatures it
    /// requires, approvals by people outside their role or by the requester, a status the
    /// approvals do not reach, a standard change from a template not in its catalogue. The
    /// line receiving them is each parent whose policy the merge keeps (every parent when
    /// it keeps none), whichever comes first.
    pub(super) fn brought_records(
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
                push_findings(out, facts, &id, &path, &problems);
                let mut entry = facts.plain_entry(seq, id, path, "merge", problems);
                entry.submitted = submitted;
                out.entries.push(entry);
            }
        }
        // What the merge dropped from files it otherwise left alone or deleted.
        for (path, problems) in drops {
            let id = id_of_path(&path).to_owned();
            push_findings(out, facts, &id, &path, &problems);
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
    pub(super) fn merge_drops(
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
}

/// The problems of a change file as a merge brings it into a line (see
/// [`Auditor::brought_records`]), judged by `policy` (and `filing`, its catalogue without
/// history) against the line's own version `before`.
pub(super) fn brought_problems(
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
        if let Some(w) = v.problem(r.signer()) {
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

/// The findings of a merge's `problems` with the change file at `path`.
fn push_findings(
    out: &mut CommitAudit,
    facts: &Facts<'_>,
    id: &str,
    path: &str,
    problems: &[Problem],
) {
    for p in problems {
        out.findings.push(facts.finding(
            p.level,
            &p.rule,
            Some(id.to_owned()),
            Some(path.to_owned()),
            p.message.clone(),
        ));
    }
}
