//! Applying one step: the rules of each step of the life cycle, on the change as it is,
//! under which policy, by whom, when.

use jiff::Timestamp;

use crate::error::{Error, Result};
use crate::finding::suggest;
use crate::model::{
    Approval, Cancellation, ChangeRequest, Decision, Implementation, Outcome, Review, Schedule,
    Status, format_timestamp,
};
use crate::policy::Policy;
use crate::rules;
use crate::trailers::Action;

use super::edit::edit;
use super::roles::decide_role;
use super::{
    LIFECYCLE, Provenance, Step, Transition, id_of, implement_allowed, missing_roles, refuse,
    require_complete,
};

/// Applies one step. On success, the new version of the change and what happened.
pub fn apply(
    change: &ChangeRequest,
    policy: &Policy,
    actor: &str,
    now: Timestamp,
    step: Step,
) -> Result<(ChangeRequest, Transition)> {
    apply_with(change, policy, actor, now, step, &Provenance::default())
}

/// [`apply`], knowing what verified history says about the change: an approval is then
/// refused to whoever history shows made it, as [`approvable_roles`] says.
///
/// [`approvable_roles`]: super::approvable_roles
pub fn apply_with(
    change: &ChangeRequest,
    policy: &Policy,
    actor: &str,
    now: Timestamp,
    step: Step,
    provenance: &Provenance,
) -> Result<(ChangeRequest, Transition)> {
    let a = Acting {
        change,
        policy,
        actor,
        now,
        provenance,
        id: id_of(change),
        status: change.status(),
    };
    // A step that records the present (in the file, or as its commit's time) must not
    // record it before what the change holds.
    let records_time = matches!(
        step,
        Step::Edit { .. }
            | Step::Approve { .. }
            | Step::Reject { .. }
            | Step::Withdraw { .. }
            | Step::Implement
            | Step::Close { .. }
            | Step::Cancel { .. }
            | Step::Deploy { .. }
    );
    // The step's own refusal says more (a cancelled change is cancelled, whatever the
    // clock), so it is judged first; the time order only stops a step that could be taken.
    let applied = match step {
        Step::Submit => a.submit(),
        Step::Approve {
            role,
            comment,
            conditions,
        } => a.decide(role, Decision::Approved, comment, conditions),
        Step::Reject { role, comment } => {
            if a.status != Status::PendingApproval {
                return a.lifecycle("only a change pending approval can be rejected");
            }
            a.decide(role, Decision::Rejected, Some(comment), Vec::new())
        }
        Step::Withdraw { role, comment } => a.withdraw(role, comment),
        Step::Edit { new } => edit(change, policy, *new),
        Step::Schedule {
            start,
            end,
            maintenance_window,
        } => a.schedule(start, end, maintenance_window),
        Step::Implement => a.implement(),
        Step::Close {
            outcome,
            test_results,
            review,
        } => a.close(outcome, test_results, review),
        Step::Cancel { reason } => a.cancel(reason),
        Step::Deploy {
            commit,
            environment,
            run,
        } => a.deploy(commit, environment, run),
    };
    if applied.is_ok()
        && records_time
        && let Some(r) = crate::rules::time_refusal(change, now)
    {
        return Err(Error::Refused(r));
    }
    applied
}

/// One step being applied: the change as it is, under which policy, by whom, when.
struct Acting<'a> {
    change: &'a ChangeRequest,
    policy: &'a Policy,
    actor: &'a str,
    now: Timestamp,
    provenance: &'a Provenance,
    id: String,
    status: Status,
}

type Applied = Result<(ChangeRequest, Transition)>;

impl Acting<'_> {
    /// The life cycle's refusal: `{id} is {status}; {why}`.
    fn lifecycle<T>(&self, why: &str) -> Result<T> {
        refuse(LIFECYCLE, format!("{} is {}; {why}", self.id, self.status))
    }

    /// The change as it is, with `status`, and the transition to it.
    fn to(&self, action: Action, status: Status) -> (ChangeRequest, Transition) {
        let mut next = self.change.clone();
        next.status = Some(status);
        (next, Transition::new(action, self.status, status))
    }

    fn submit(&self) -> Applied {
        if self.status != Status::Draft {
            return self.lifecycle("only a draft can be submitted");
        }
        // Judged as it will be: what a draft may leave open (the questionnaire) is due now.
        let mut submitted = self.change.clone();
        submitted.status = Some(Status::PendingApproval);
        require_complete(
            &submitted,
            self.policy,
            &format!("{} cannot be submitted", self.id),
        )?;
        Ok(self.to(Action::Submit, Status::PendingApproval))
    }

    /// An approval or a rejection, for a role decided by [`decide_role`].
    fn decide(
        &self,
        role: Option<String>,
        decision: Decision,
        comments: Option<String>,
        conditions: Vec<String>,
    ) -> Applied {
        let (action, verb) = match decision {
            Decision::Approved => (Action::Approve, "approve"),
            Decision::Rejected => (Action::Reject, "reject"),
            Decision::Withdrawn => unreachable!("a withdrawal is not a decision"),
        };
        let role = decide_role(
            self.change,
            self.policy,
            self.actor,
            role,
            verb,
            self.provenance,
        )?;
        let mut next = self.change.clone();
        next.approvals.push(Approval {
            by: self.actor.to_owned(),
            role: role.clone(),
            decision,
            at: self.now,
            comments,
            conditions,
            digest: Some(self.change.material_digest()),
            signature: None,
            attested_by: None,
            attested_via: None,
        });
        let to = match decision {
            Decision::Rejected | Decision::Withdrawn => Status::Rejected,
            Decision::Approved
                if self.status == Status::PendingApproval
                    && missing_roles(&next, self.policy).is_empty() =>
            {
                Status::Approved
            }
            Decision::Approved => self.status,
        };
        next.status = Some(to);
        let mut t = Transition::new(action, self.status, to);
        t.role = Some(role);
        Ok((next, t))
    }

    /// The actor's own standing approval, for `role` (inferred when they approved for one
    /// role only), withdrawn before implementation starts. A change that no longer has its
    /// required approvals goes back to pending_approval in the same step.
    fn withdraw(&self, role: Option<String>, comment: String) -> Applied {
        if !matches!(self.status, Status::PendingApproval | Status::Approved) {
            return self.lifecycle(
                "an approval can be withdrawn only while the change is pending approval or approved",
            );
        }
        if comment.trim().is_empty() {
            return Err(Error::Usage(
                "a withdrawal needs a comment saying why".into(),
            ));
        }
        let mine: Vec<&str> = self
            .change
            .standing_approvals()
            .filter(|(_, a)| a.by.eq_ignore_ascii_case(self.actor))
            .map(|(_, a)| a.role.as_str())
            .collect();
        let role = match role {
            Some(r) if !self.policy.roles.contains_key(&r) => {
                let hint = suggest(&r, self.policy.roles.keys().map(String::as_str))
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                return Err(Error::Usage(format!(
                    "`{r}` is not a role in the policy{hint}"
                )));
            }
            Some(r) => r,
            None => match mine.as_slice() {
                [one] => (*one).to_owned(),
                [] => {
                    return refuse(
                        rules::WITHDRAWAL,
                        format!("{} has no approval of {} to withdraw", self.actor, self.id),
                    );
                }
                several => {
                    return Err(Error::Ambiguous {
                        message: format!(
                            "{} approved {} for several roles ({})",
                            self.actor,
                            self.id,
                            several.join(", ")
                        ),
                        what: "role",
                        choices: several.iter().map(|r| (*r).to_owned()).collect(),
                    });
                }
            },
        };
        if let Some(r) = rules::withdrawal_refusal(self.change, self.actor, &role) {
            return Err(r.into());
        }
        let mut next = self.change.clone();
        next.approvals.push(Approval {
            by: self.actor.to_owned(),
            role: role.clone(),
            decision: Decision::Withdrawn,
            at: self.now,
            comments: Some(comment),
            conditions: Vec::new(),
            digest: Some(self.change.material_digest()),
            signature: None,
            attested_by: None,
            attested_via: None,
        });
        let to = if self.status == Status::Approved && !missing_roles(&next, self.policy).is_empty()
        {
            Status::PendingApproval
        } else {
            self.status
        };
        next.status = Some(to);
        let mut t = Transition::new(Action::Withdraw, self.status, to);
        t.role = Some(role);
        Ok((next, t))
    }

    fn schedule(
        &self,
        start: Timestamp,
        end: Timestamp,
        maintenance_window: Option<bool>,
    ) -> Applied {
        let id = &self.id;
        if !matches!(
            self.status,
            Status::Draft | Status::PendingApproval | Status::Approved
        ) {
            return self.lifecycle("only a change that has not started can be scheduled");
        }
        if end <= start {
            return Err(Error::Usage(format!(
                "the schedule must end after it starts ({} is not after {})",
                format_timestamp(end),
                format_timestamp(start)
            )));
        }
        let current = self.change.schedule.as_ref();
        let schedule = Schedule {
            start,
            end,
            maintenance_window: maintenance_window
                .unwrap_or_else(|| current.is_some_and(|s| s.maintenance_window)),
        };
        if let Some(problem) = rules::schedule_problem(self.change, &schedule, self.policy) {
            return refuse(
                "window",
                format!("{id} cannot be scheduled then: {problem}"),
            );
        }
        if current == Some(&schedule) {
            // A commit that changes nothing would be a step audit cannot see.
            return Err(Error::Usage(format!(
                "nothing to change: {id} is already scheduled {schedule}"
            )));
        }
        let (mut next, mut t) = self.to(Action::Schedule, self.status);
        t.notes.push(format!("Scheduled {schedule}."));
        next.schedule = Some(schedule);
        Ok((next, t))
    }

    fn implement(&self) -> Applied {
        implement_allowed(self.change, self.policy, self.now)?;
        // Judged on the file's requester here (a replay knows no more); the store adds the
        // creator history proves.
        if let Some(r) = rules::implementer_refusals(self.change, self.policy, self.actor, None)
            .into_iter()
            .next()
        {
            return Err(r.into());
        }
        let (mut next, t) = self.to(Action::Implement, Status::Implementing);
        let imp = next
            .implementation
            .get_or_insert_with(Implementation::default);
        imp.implementer = Some(self.actor.to_owned());
        imp.started_at = Some(self.now);
        Ok((next, t))
    }

    fn close(
        &self,
        outcome: Outcome,
        test_results: Option<String>,
        review: Option<String>,
    ) -> Applied {
        if self.status != Status::Implementing {
            return self.lifecycle("only a change being implemented can be closed");
        }
        let review = review.filter(|r| !r.trim().is_empty());
        if let Some(r) = rules::review_refusal(self.change, self.policy, outcome, review.is_some())
        {
            return Err(r.into());
        }
        // The review's author is the closer.
        if review.is_some()
            && let Some(r) =
                rules::implementer_reviews_refusal(self.change, self.policy, self.actor)
        {
            return Err(r.into());
        }
        let (mut next, mut t) = self.to(Action::Close, Status::Closed);
        let imp = next
            .implementation
            .get_or_insert_with(Implementation::default);
        imp.completed_at = Some(self.now);
        imp.outcome = Some(outcome);
        if test_results.is_some() {
            imp.test_results = test_results;
        }
        if let Some(summary) = review {
            next.review = Some(Review {
                by: self.actor.to_owned(),
                at: self.now,
                summary,
            });
        }
        t.extra.outcome = Some(outcome.to_string());
        Ok((next, t))
    }

    fn cancel(&self, reason: String) -> Applied {
        if self.status.is_terminal() {
            return self.lifecycle("it can no longer be cancelled");
        }
        if reason.trim().is_empty() {
            return Err(Error::Usage("a cancellation needs a reason".into()));
        }
        let (mut next, t) = self.to(Action::Cancel, Status::Cancelled);
        next.cancellation = Some(Cancellation {
            by: self.actor.to_owned(),
            at: self.now,
            reason,
            signature: None,
        });
        Ok((next, t))
    }
}

impl Acting<'_> {
    /// Appends a deployment, only while the change's gate is open at `now`. The gate's
    /// rules that need only the change and the policy are judged here (so a replay judges
    /// them too); the store judges the whole gate, overlaps and history included, first.
    fn deploy(&self, commit: String, environment: String, run: Option<String>) -> Applied {
        let record = crate::model::Deployment {
            commit,
            environment,
            run,
            at: self.now,
            by: self.actor.to_owned(),
            signature: None,
        };
        if let Some(problem) = record.problems().into_iter().next() {
            return Err(Error::Usage(problem));
        }
        let closed = rules::gate(self.change, self.policy, self.now, &[]);
        if !closed.is_empty() {
            return Err(rules::deploy_refusal(&self.id, self.now, &closed).into());
        }
        let (mut next, mut t) = self.to(Action::Deploy, self.status);
        t.notes.push(format!(
            "Deployed {} to {}{}.",
            record.commit,
            record.environment,
            record
                .run
                .as_deref()
                .map(|r| format!(" (run {r})"))
                .unwrap_or_default()
        ));
        next.deployments.push(record);
        Ok((next, t))
    }
}
