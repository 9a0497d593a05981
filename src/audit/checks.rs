//! The checks of one change file's step in one commit (`Ctx`): chg's own steps replayed,
//! hand edits, signatures, duties, deadlines.

use super::*;

/// Everything one check of one change file at one commit needs.
pub(super) struct Ctx<'a> {
    pub(super) policy: &'a Policy,
    /// The earliest time the history proves this commit was made after, where a signer's
    /// key is limited in time (see [`Auditor::time_floor`]).
    pub(super) floor: Option<Timestamp>,
    pub(super) email: &'a str,
    pub(super) when: Timestamp,
    /// When the step entered this line at the latest: its own time, or its parent's commit
    /// time when it claims an earlier one (a replay of a step made offline). Deadlines
    /// are judged at it: an approval counts from when others could see it.
    pub(super) entered: Timestamp,
    pub(super) item: &'a Item,
    pub(super) before: Option<&'a ChangeRequest>,
    pub(super) after: Option<&'a ChangeRequest>,
}

impl Ctx<'_> {
    /// A commit with chg trailers for this change: the trailers must tell the truth and the
    /// step must be one the life cycle and the policy allowed.
    pub(super) fn check_chg(&self, action: &str, tr: &Trailers) -> Vec<Problem> {
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
        let judged = out.iter().any(|p| p.level == Level::Exception);
        out.extend(self.replay_problems(action, step, before, after, judged));
        out
    }

    /// The step replayed: applied to the version before as the author at the commit's
    /// time, it must give the version after. `judged`: an exception was already found, so
    /// a refusal of the replay says nothing new.
    fn replay_problems(
        &self,
        action: &str,
        step: workflow::Step,
        before: &ChangeRequest,
        after: &ChangeRequest,
        judged: bool,
    ) -> Vec<Problem> {
        let mut out = Vec::new();
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
                if !judged {
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
                    out.push(Problem::exception(
                        "trailer-mismatch",
                        format!(
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
    pub(super) fn content_checks(
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
    pub(super) fn new_record_signatures(
        &self,
        before: &ChangeRequest,
        after: &ChangeRequest,
    ) -> Vec<Problem> {
        // Only a record with a problem is looked for among the old ones: most steps have
        // none, and statement texts were over a quarter of the replay of a step.
        let mut old: Option<Vec<String>> = None;
        crate::rules::signature_verdicts_since(after, self.policy, self.floor)
            .into_iter()
            .filter_map(|(r, v)| v.problem(r.signer()).map(|why| (r, why)))
            .filter(|(r, _)| {
                let old = old.get_or_insert_with(|| {
                    crate::signing::records(before)
                        .into_iter()
                        .map(|r| r.statement.text())
                        .collect()
                });
                !old.contains(&r.statement.text())
            })
            .map(|(r, why)| {
                Problem::exception(
                    crate::signing::SIGNATURE,
                    format!("the {} record by {}: {why}", r.action, r.actor),
                )
            })
            .collect()
    }

    /// `chg renumber`: the old id's file became the new id's, and only the id changed.
    pub(super) fn check_renumber(
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
    pub(super) fn check_risk(&self) -> Vec<Problem> {
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

    pub(super) fn check_new(&self, after: &ChangeRequest) -> Vec<Problem> {
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
    pub(super) fn policy_checks(
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
    pub(super) fn duty_checks(
        &self,
        before: Option<&ChangeRequest>,
        after: &ChangeRequest,
    ) -> Vec<Problem> {
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

    pub(super) fn late_approval(&self, before: &ChangeRequest) -> Option<Problem> {
        let deadline = rules::emergency_approval_late(before, self.policy, self.entered)?;
        Some(Problem::exception(
            rules::EMERGENCY_APPROVAL_LATE,
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

    pub(super) fn late_review(&self, after: &ChangeRequest) -> Option<Problem> {
        let review = after.review.as_ref()?;
        let deadline =
            rules::emergency_review_late(after, self.policy, review.at.max(self.entered))?;
        Some(Problem::exception(
            rules::EMERGENCY_REVIEW_LATE,
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
    pub(super) fn check_digests(&self) -> Vec<Problem> {
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
    pub(super) fn check_manual(&self) -> Vec<Problem> {
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
        out.extend(self.hand_written_records(before, after));
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

    /// The records only chg writes, written, removed or altered by hand: approvals (and by
    /// whom), deployments, the implementation, the review and the cancellation.
    fn hand_written_records(&self, before: &ChangeRequest, after: &ChangeRequest) -> Vec<Problem> {
        let mut out = Vec::new();
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
        out
    }
}

/// The implementer `after` records that `before` did not (a commit that implemented the
/// change, or rewrote who did).
pub(super) fn recorded_implementer(
    before: Option<&ChangeRequest>,
    after: &ChangeRequest,
) -> Option<String> {
    let of = |c: &ChangeRequest| {
        c.implementation
            .as_ref()
            .and_then(|i| i.implementer.clone())
    };
    of(after).filter(|who| before.and_then(of).as_ref() != Some(who))
}

/// `change` with each approval that records no digest given the digest of the content as it
/// is (see the caller).
pub(super) fn with_legacy_digests(change: &ChangeRequest) -> ChangeRequest {
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
pub(super) fn without_legacy_digests(
    mut expected: ChangeRequest,
    after: &ChangeRequest,
) -> ChangeRequest {
    for (e, a) in expected.approvals.iter_mut().zip(&after.approvals) {
        if a.digest.is_none() {
            e.digest = None;
        }
    }
    expected
}

/// The top-level fields whose values differ.
pub(super) fn differing_fields(a: &ChangeRequest, b: &ChangeRequest) -> Vec<String> {
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
