//! The life cycle (SPEC section 4) as pure functions: a change, the policy, who acts and when,
//! in; the next version of the change and a description of the transition, out. Nothing
//! here touches files or git, so every rule is testable on its own and a server can call it.

use jiff::Timestamp;

use crate::error::{Error, Refusal, Result};
use crate::finding::suggest;
use crate::model::{
    Approval, Cancellation, ChangeId, ChangeModel, ChangeRequest, Decision, Implementation,
    Outcome, Review, Schedule, Status, format_timestamp,
};
use crate::policy::Policy;
use crate::rules;
pub use crate::rules::Provenance;
pub use crate::rules::{implement_refusals, missing_roles};
use crate::trailers::{Action, Trailers};

/// One step a person asks for.
#[derive(Debug, Clone)]
pub enum Step {
    /// draft → pending_approval.
    Submit,
    /// One approval for one role.
    Approve {
        /// The role; inferred when the actor holds exactly one role still needed.
        role: Option<String>,
        /// Free text.
        comment: Option<String>,
        /// Conditions attached.
        conditions: Vec<String>,
    },
    /// A rejection.
    Reject {
        /// The role; inferred as for approve.
        role: Option<String>,
        /// Why.
        comment: String,
    },
    /// The actor withdraws their own approval (GitHub's "dismiss review"): a `withdrawn`
    /// record is appended, the approval stays in the file as history.
    Withdraw {
        /// The role approved for; inferred when the actor approved for exactly one.
        role: Option<String>,
        /// Why.
        comment: String,
    },
    /// New content (from `set` or `edit`).
    Edit {
        /// The whole new version as the person wants it.
        new: Box<ChangeRequest>,
    },
    /// Set the window.
    Schedule {
        /// Start.
        start: Timestamp,
        /// End.
        end: Timestamp,
        /// Whether it must run in a maintenance window; `None` keeps the current flag.
        maintenance_window: Option<bool>,
    },
    /// approved → implementing.
    Implement,
    /// implementing → closed.
    Close {
        /// How it went.
        outcome: Outcome,
        /// Evidence of testing.
        test_results: Option<String>,
        /// The post-implementation review.
        review: Option<String>,
    },
    /// → cancelled.
    Cancel {
        /// Why.
        reason: String,
    },
    /// A deployment of the change's work, recorded while its gate is open (the status
    /// stays).
    Deploy {
        /// The deployed commit, in full (40 hex digits).
        commit: String,
        /// Where.
        environment: String,
        /// The CI/CD run, a URL.
        run: Option<String>,
    },
}

/// Gives a change a new id (`chg renumber`, or a sync moving a step onto an id that is free
/// on the remote): the content and the approvals stay, the trailer keeps the old id.
pub fn renumber(change: &ChangeRequest, new_id: ChangeId) -> (ChangeRequest, Transition) {
    let old = id_of(change);
    let mut next = change.clone();
    next.id = Some(new_id);
    let status = next.status();
    let mut t = Transition::new(Action::Renumber, status, status);
    t.notes.push(format!(
        "Renumbered from {old}: the id was claimed twice. The content is unchanged and approvals stay valid."
    ));
    t.extra.renumbered_from = Some(old);
    (next, t)
}

/// What a step did, for the commit message and trailers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// What the step did (SPEC section 6).
    pub action: Action,
    /// Status before.
    pub from: Status,
    /// Status after.
    pub to: Status,
    /// The role acted in, for approve and reject.
    pub role: Option<String>,
    /// Lines for the commit body, saying why where the step had consequences.
    pub notes: Vec<String>,
    /// The trailers beyond id, action, actor, role and statuses (`Chg-Fields`,
    /// `Chg-Voided`, `Chg-Outcome`, `Chg-Renumbered-From`).
    pub extra: Trailers,
}

impl Transition {
    /// A step with no role, notes or extra trailers.
    pub fn new(action: Action, from: Status, to: Status) -> Self {
        Transition {
            action,
            from,
            to,
            role: None,
            notes: Vec::new(),
            extra: Trailers::default(),
        }
    }
}

pub use crate::rules::LIFECYCLE;

fn refuse<T>(rule: &'static str, msg: impl Into<String>) -> Result<T> {
    Err(Error::Refused(Refusal::new(rule, msg)))
}

fn id_of(c: &ChangeRequest) -> String {
    IdOf(c).to_string()
}

/// [`id_of`], written only into a message that uses it: the awaiting query asks thousands
/// of changes whether a person may approve them.
struct IdOf<'a>(&'a ChangeRequest);

impl std::fmt::Display for IdOf<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0.id {
            Some(id) => write!(f, "{id}"),
            None => f.write_str("the change"),
        }
    }
}

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

/// The step that took `before` to `after`, as a chg commit's trailers name it (`action`,
/// `role`), with the details (comment, outcome, …) read from the version after. Used to
/// replay a commit: by audit to check it, by sync to bring it onto another history.
pub fn step_between(
    action: Action,
    role: Option<String>,
    before: &ChangeRequest,
    after: &ChangeRequest,
) -> std::result::Result<Step, String> {
    let added = (after.approvals.len() == before.approvals.len() + 1)
        .then(|| after.approvals.last())
        .flatten();
    Ok(match action {
        Action::Submit => Step::Submit,
        Action::Approve => Step::Approve {
            role,
            comment: added.and_then(|a| a.comments.clone()),
            conditions: added.map(|a| a.conditions.clone()).unwrap_or_default(),
        },
        Action::Reject => Step::Reject {
            role,
            comment: added
                .and_then(|a| a.comments.clone())
                .unwrap_or_else(|| "(none)".into()),
        },
        Action::Withdraw => Step::Withdraw {
            role,
            comment: added.and_then(|a| a.comments.clone()).unwrap_or_default(),
        },
        Action::Edit => {
            let mut new = after.clone();
            new.id = before.id.clone();
            new.requester = before.requester.clone();
            new.request_date = before.request_date;
            new.status = before.status;
            new.approvals = before.approvals.clone();
            new.schedule = before.schedule.clone();
            new.implementation = before.implementation.clone();
            new.review = before.review.clone();
            new.cancellation = before.cancellation.clone();
            new.deployments = before.deployments.clone();
            Step::Edit { new: Box::new(new) }
        }
        Action::Schedule => {
            let Some(Schedule {
                start,
                end,
                maintenance_window,
            }) = after.schedule.clone()
            else {
                return Err("chg `schedule` left the change without a schedule".into());
            };
            Step::Schedule {
                start,
                end,
                maintenance_window: Some(maintenance_window),
            }
        }
        Action::Implement => Step::Implement,
        Action::Close => {
            let imp = after.implementation.clone().unwrap_or_default();
            let Some(outcome) = imp.outcome else {
                return Err("chg `close` left the change without an outcome".into());
            };
            let before_results = before
                .implementation
                .as_ref()
                .and_then(|i| i.test_results.clone());
            Step::Close {
                outcome,
                test_results: imp
                    .test_results
                    .filter(|t| Some(t) != before_results.as_ref()),
                review: after.review.as_ref().map(|r| r.summary.clone()),
            }
        }
        Action::Cancel => Step::Cancel {
            reason: after
                .cancellation
                .as_ref()
                .map(|c| c.reason.clone())
                .unwrap_or_default(),
        },
        Action::Deploy => {
            let added = (after.deployments.len() == before.deployments.len() + 1)
                .then(|| after.deployments.last())
                .flatten();
            let Some(d) = added else {
                return Err("chg `deploy` adds exactly one deployment record".into());
            };
            Step::Deploy {
                commit: d.commit.clone(),
                environment: d.environment.clone(),
                run: d.run.clone(),
            }
        }
        other => {
            return Err(format!(
                "`Chg-Action: {other}` is not a step on a change's content"
            ));
        }
    })
}

/// Refuses unless every required field and content rule is satisfied.
fn require_complete(change: &ChangeRequest, policy: &Policy, what: &str) -> Result<()> {
    let problems = rules::content_problems(change, policy);
    if problems.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = problems.iter().map(|p| p.message.clone()).collect();
    refuse("required", format!("{what}: {}", list.join("; ")))
}

/// The roles `person` may approve `change` for now: each role the change still needs for
/// which `chg approve` would accept them (empty: the change does not await them). The one
/// rule for "who is awaited": approve infers its role from it, and the query layer
/// ([`crate::query`]) lists by it, so the two cannot disagree. `provenance` is what verified
/// history says about the change ([`Provenance::default`] when unknown).
pub fn approvable_roles(
    change: &ChangeRequest,
    policy: &Policy,
    person: &str,
    provenance: &Provenance,
) -> Vec<String> {
    let policy = policy.for_intake(provenance.questionnaire_due);
    open_roles(change, policy, person, "approve", provenance)
}

/// The required roles for which `actor` may `verb` (approve, reject) `change` now.
fn open_roles(
    change: &ChangeRequest,
    policy: &Policy,
    actor: &str,
    verb: &str,
    provenance: &Provenance,
) -> Vec<String> {
    policy
        .required_roles(change)
        .into_iter()
        .filter(|role| role_refusal(change, policy, actor, role, verb, provenance).is_none())
        .collect()
}

/// Why `actor` may not `verb` `change` in any role: its status, a pre-approved standard
/// change, or their own request.
fn decision_refusal(
    change: &ChangeRequest,
    policy: &Policy,
    actor: &str,
    verb: &str,
) -> Option<Error> {
    let id = IdOf(change);
    let status = change.status();
    let retroactive = change.model() == ChangeModel::Emergency
        && matches!(status, Status::Implementing | Status::Closed);
    if verb == "approve" && status != Status::PendingApproval && !retroactive {
        return Some(Error::Refused(Refusal::new(
            LIFECYCLE,
            match status {
                Status::Draft => format!("{id} is a draft; submit it before approving"),
                Status::Approved => format!("{id} is already approved by every required role"),
                _ => format!("{id} is {status} and can no longer be approved"),
            },
        )));
    }
    if policy.is_preapproved(change) {
        return Some(Error::Refused(Refusal::new(
            "preapproved",
            format!(
                "{id} is a standard change, pre-approved by the policy; there is nothing to {verb}"
            ),
        )));
    }
    rules::requester_refusal(change, policy, actor, verb).map(Error::Refused)
}

/// The standing approval that fills `role` (a withdrawn one leaves the role open, to anyone
/// and to the same person again).
fn filled<'c>(change: &'c ChangeRequest, role: &str) -> Option<&'c Approval> {
    change
        .standing_approvals()
        .map(|(_, a)| a)
        .find(|a| a.role == role)
}

/// The first reason `actor` may not `verb` `change` for `role`, in the order approve says
/// them: the decision at all, the role, who fills it, then (to approve) the content's risk
/// and who history shows made it.
fn role_refusal(
    change: &ChangeRequest,
    policy: &Policy,
    actor: &str,
    role: &str,
    verb: &str,
    provenance: &Provenance,
) -> Option<Error> {
    let id = IdOf(change);
    if let Some(e) = decision_refusal(change, policy, actor, verb) {
        return Some(e);
    }
    let required = policy.required_roles(change);
    if !required.iter().any(|r| r == role) {
        return Some(Error::Refused(Refusal::new(
            "role-not-required",
            format!(
                "{id} does not need the role {role} (required: {})",
                required.join(", ")
            ),
        )));
    }
    if let Some(a) = filled(change, role) {
        return Some(Error::Refused(Refusal::new(
            "approval-duplicate",
            format!("the role {role} has already approved {id} (by {})", a.by),
        )));
    }
    if let Some(r) = rules::decider_refusals(change, policy, actor, role, verb)
        .into_iter()
        .next()
    {
        return Some(r.into());
    }
    if verb != "approve" {
        return None;
    }
    // An emergency change is approved after implementation: not by its implementer.
    if let Some(r) = rules::implementer_approves_refusal(change, policy, actor) {
        return Some(r.into());
    }
    // An approval vouches for the risk the change declares: not for one below what its
    // own answers to the questionnaire score.
    if let Some(p) = rules::risk_problems(change, policy).first() {
        return Some(Error::Refused(Refusal::new(
            rules::RISK,
            format!("{id} cannot be approved as it is: {}", p.message),
        )));
    }
    rules::proven_author_refusal(provenance, policy, actor).map(Error::Refused)
}

/// Which role an approval or rejection is for, after every check of who may act: the one
/// role [`open_roles`] leaves, or the one named.
fn decide_role(
    change: &ChangeRequest,
    policy: &Policy,
    actor: &str,
    role: Option<String>,
    verb: &str,
    provenance: &Provenance,
) -> Result<String> {
    let id = id_of(change);
    // Refused before any role is inferred: whatever role, the answer is no.
    if let Some(e) = decision_refusal(change, policy, actor, verb) {
        return Err(e);
    }
    let role = match role {
        Some(role) => {
            if !policy.roles.contains_key(&role) {
                let hint = suggest(&role, policy.roles.keys().map(String::as_str))
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                return Err(Error::Usage(format!(
                    "`{role}` is not a role in the policy{hint}"
                )));
            }
            role
        }
        None => {
            let open = open_roles(change, policy, actor, verb, provenance);
            match open.as_slice() {
                [one] => one.clone(),
                [] => {
                    // Nothing is open to them: the role whose refusal says why, the one
                    // they hold that is not filled yet, else the first they hold.
                    let required = policy.required_roles(change);
                    let held: Vec<&String> = required
                        .iter()
                        .filter(|r| policy.is_member(r, actor))
                        .collect();
                    let Some(first) = held.first() else {
                        return refuse(
                            rules::APPROVAL_ROLE,
                            format!(
                                "{actor} holds none of the roles that must {verb} {id} ({})",
                                required.join(", ")
                            ),
                        );
                    };
                    (*held
                        .iter()
                        .find(|r| filled(change, r).is_none())
                        .unwrap_or(first))
                    .clone()
                }
                _ => {
                    return Err(Error::Ambiguous {
                        message: format!(
                            "{actor} holds several roles that must {verb} {id} ({})",
                            open.join(", ")
                        ),
                        what: "role",
                        choices: open,
                    });
                }
            }
        }
    };
    match role_refusal(change, policy, actor, &role, verb, provenance) {
        Some(e) => Err(e),
        None => Ok(role),
    }
}

/// Refuses unless the change may start implementation at `now`: the first of
/// [`rules::implement_refusals`].
pub fn implement_allowed(change: &ChangeRequest, policy: &Policy, now: Timestamp) -> Result<()> {
    implement_refusals(change, policy, now)
        .into_iter()
        .next()
        .map_or(Ok(()), |r| Err(r.into()))
}

/// Fields an edit may not touch: they are written by transitions.
const MANAGED: &[&str] = &[
    "id",
    "requester",
    "request_date",
    "status",
    "approvals",
    "implementation",
    "review",
    "cancellation",
    "schedule",
    "deployments",
];

fn managed_differences(a: &ChangeRequest, b: &ChangeRequest) -> Vec<&'static str> {
    MANAGED
        .iter()
        .copied()
        .filter(|f| match *f {
            "approvals" => a.approvals != b.approvals,
            "implementation" => a.implementation != b.implementation,
            "review" => a.review != b.review,
            "cancellation" => a.cancellation != b.cancellation,
            "schedule" => a.schedule != b.schedule,
            "deployments" => a.deployments != b.deployments,
            other => a.field_text(other) != b.field_text(other),
        })
        .collect()
}

fn edit(
    change: &ChangeRequest,
    policy: &Policy,
    new: ChangeRequest,
) -> Result<(ChangeRequest, Transition)> {
    let id = id_of(change);
    let status = change.status();
    if !matches!(
        status,
        Status::Draft | Status::PendingApproval | Status::Approved
    ) {
        return refuse(
            LIFECYCLE,
            format!("{id} is {status}; its content can no longer be edited"),
        );
    }
    let managed = managed_differences(change, &new);
    if !managed.is_empty() {
        return Err(Error::Usage(format!(
            "an edit may change content only; {} {} written by chg transitions (use chg schedule, approve, implement, …)",
            managed.join(", "),
            if managed.len() == 1 { "is" } else { "are" }
        )));
    }
    let changed = change.content_differences(&new);
    if changed.is_empty() {
        return Err(Error::Usage(format!(
            "nothing to change: {id} already has these values"
        )));
    }
    if status != Status::Draft {
        require_complete(&new, policy, &format!("{id} cannot be edited this way"))?;
    }
    let material = change.material_differences(&new);
    let mut next = new;
    let mut to = status;
    let mut t_notes = vec![format!("Changed: {}.", changed.join(", "))];
    let mut extra = Trailers {
        fields: Some(changed.join(", ")),
        ..Trailers::default()
    };
    // Only standing approvals are voided; withdrawn ones already count for nothing and stay
    // as the history of who withdrew and why.
    let voided: Vec<String> = change
        .standing_approvals()
        .map(|(_, a)| format!("{} ({})", a.role, a.by))
        .collect();
    if !material.is_empty() && !voided.is_empty() {
        t_notes.push(format!(
            "Material content changed after approval ({}): approvals voided: {}. The change needs approval again.",
            material.join(", "),
            voided.join(", ")
        ));
        extra.voided = Some(voided.join(", "));
        let standing: Vec<usize> = change.standing_approvals().map(|(i, _)| i).collect();
        next.approvals = change
            .approvals
            .iter()
            .enumerate()
            .filter(|(i, _)| !standing.contains(i))
            .map(|(_, a)| a.clone())
            .collect();
        to = Status::PendingApproval;
    }
    next.status = Some(to);
    let mut t = Transition::new(Action::Edit, status, to);
    t.notes = t_notes;
    t.extra = extra;
    Ok((next, t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChangeModel, Priority};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// The shared sample, at medium priority (engineering manager and change manager).
    fn pending() -> ChangeRequest {
        ChangeRequest {
            priority: Some(Priority::Medium),
            ..crate::model::sample_change()
        }
    }

    const NOW: &str = "2025-03-02T10:00:00Z";

    fn step(c: &ChangeRequest, who: &str, s: Step) -> Result<(ChangeRequest, Transition)> {
        apply(c, &Policy::default_policy(), who, ts(NOW), s)
    }

    fn approve(
        c: &ChangeRequest,
        who: &str,
        role: Option<&str>,
    ) -> Result<(ChangeRequest, Transition)> {
        step(
            c,
            who,
            Step::Approve {
                role: role.map(str::to_owned),
                comment: None,
                conditions: vec![],
            },
        )
    }

    fn refused<T: std::fmt::Debug>(r: Result<T>, says: &str) {
        match r {
            Err(Error::Refused(m)) => assert!(m.message.contains(says), "{m}"),
            other => panic!("expected a refusal saying {says:?}, got {other:?}"),
        }
    }

    #[test]
    fn a_refused_step_says_why_before_the_clock_does() {
        // Cancelled a second "after" now (a clock a little behind, a replayed step): the
        // approval is refused because the change is cancelled, not for the time order.
        let mut c = pending();
        c.status = Some(Status::Cancelled);
        c.cancellation = Some(crate::model::Cancellation {
            by: "alice@example.com".into(),
            at: ts("2025-03-02T10:00:01Z"),
            reason: "not needed".into(),
            signature: None,
        });
        refused(approve(&c, "em@example.com", None), "cancelled");
        // A step that could be taken is still stopped by the time order.
        let mut p = pending();
        p.request_date = Some(ts("2025-03-02T10:00:01Z"));
        match approve(&p, "em@example.com", None) {
            Err(Error::Refused(r)) => assert_eq!(r.rule, crate::rules::TIME_ORDER),
            other => panic!("expected a time-order refusal, got {other:?}"),
        }
    }

    #[test]
    fn approval_infers_the_role_and_completes_with_the_last_one() {
        let (c, t) = approve(&pending(), "em@example.com", None).unwrap();
        assert_eq!(t.role.as_deref(), Some("engineering-manager"));
        assert_eq!(
            (t.from, t.to),
            (Status::PendingApproval, Status::PendingApproval)
        );
        let (c, t) = approve(&c, "cm@example.com", None).unwrap();
        assert_eq!(t.to, Status::Approved);
        assert_eq!(c.approvals.len(), 2);
        assert_eq!(c.approvals[1].at, ts(NOW));
    }

    #[test]
    fn who_may_approve_is_checked() {
        refused(
            approve(&pending(), "alice@example.com", None),
            "segregation of duties",
        );
        refused(
            approve(&pending(), "nobody@example.com", None),
            "holds none of the roles",
        );
        refused(
            approve(&pending(), "em@example.com", Some("change-manager")),
            "not a member",
        );
        refused(
            approve(&pending(), "sec1@example.com", Some("security-team")),
            "does not need the role",
        );
        let (c, _) = approve(&pending(), "em@example.com", None).unwrap();
        refused(
            approve(&c, "em@example.com", Some("engineering-manager")),
            "already approved",
        );
        assert!(matches!(
            approve(&pending(), "em@example.com", Some("cab")),
            Err(Error::Usage(_))
        ));
    }

    #[test]
    fn a_withdrawn_approval_stops_counting_for_every_reader_and_may_be_given_again() {
        let withdraw = |c: &ChangeRequest, who: &str, role: Option<&str>| {
            step(
                c,
                who,
                Step::Withdraw {
                    role: role.map(str::to_owned),
                    comment: "not rehearsed".into(),
                },
            )
        };
        let (c, _) = approve(&pending(), "em@example.com", None).unwrap();
        let (c, _) = approve(&c, "cm@example.com", None).unwrap();
        refused(
            withdraw(&c, "em@example.com", Some("change-manager")),
            "no approval",
        );
        refused(withdraw(&c, "sec1@example.com", None), "no approval");
        let (w, t) = withdraw(&c, "CM@example.com", None).unwrap();
        assert_eq!((t.from, t.to), (Status::Approved, Status::PendingApproval));
        assert_eq!(t.role.as_deref(), Some("change-manager"));
        assert_eq!(w.approvals.len(), 3, "the approval stays as history");
        assert_eq!(
            missing_roles(&w, &Policy::default_policy()),
            ["change-manager"]
        );
        refused(withdraw(&w, "cm@example.com", None), "no approval");
        // A material edit voids the standing approval and keeps the withdrawn history.
        let mut material = w.clone();
        material.rollback_plan = Some("restore".into());
        let (edited, t) = step(
            &w,
            "alice@example.com",
            Step::Edit {
                new: Box::new(material),
            },
        )
        .unwrap();
        assert_eq!(
            t.extra.voided.as_deref(),
            Some("engineering-manager (em@example.com)")
        );
        assert_eq!(edited.approvals.len(), 2);
        assert_eq!(edited.standing_approvals().count(), 0);
        // Given again: not approving twice for the role.
        let (again, t) = approve(&w, "cm@example.com", None).unwrap();
        assert_eq!(t.to, Status::Approved);
        assert!(rules::approval_problems(&again, &Policy::default_policy()).is_empty());
        let mut started = again.clone();
        started.status = Some(Status::Implementing);
        refused(withdraw(&started, "cm@example.com", None), "implementing");
    }

    #[test]
    fn standard_changes_need_no_approval_and_emergencies_approve_late() {
        let mut policy = Policy::default_policy();
        let template = b"rollback_plan: Reload the previous certificate\nvariable: [title, description, business_justification, change_type, priority, urgency, risk_level, affected_systems, impact_scope, implementation_plan, testing_required, test_plan, test_environment]\n";
        let problems = policy.attach_templates(vec![(
            "policy/templates/tls.yaml".into(),
            template.to_vec(),
        )]);
        assert!(problems.is_empty(), "{problems:?}");
        let mut c = pending();
        c.change_model = Some(ChangeModel::Standard);
        let approve_as_cm = |c: &ChangeRequest| {
            apply(
                c,
                &policy,
                "cm@example.com",
                ts(NOW),
                Step::Approve {
                    role: None,
                    comment: None,
                    conditions: vec![],
                },
            )
        };
        // Self-declared: not pre-approved, and it cannot be implemented.
        assert!(!policy.is_preapproved(&c));
        refused(
            apply(&c, &policy, "bob@example.com", ts(NOW), Step::Implement),
            "template",
        );
        c.rollback_plan = Some("Reload the previous certificate".into());
        c.template = Some("tls".into());
        c.template_digest = Some(crate::templates::digest(template));
        refused(approve_as_cm(&c), "pre-approved");
        // A fixed field changed: no longer pre-approved.
        let mut tampered = c.clone();
        tampered.rollback_plan = Some("Hope".into());
        assert!(!policy.is_preapproved(&tampered));
        let mut e = pending();
        e.change_model = Some(ChangeModel::Emergency);
        let (e, t) = step(&e, "bob@example.com", Step::Implement).unwrap();
        assert_eq!(t.to, Status::Implementing);
        let (e, t) = approve(&e, "sec-lead@example.com", None).unwrap();
        assert_eq!((t.from, t.to), (Status::Implementing, Status::Implementing));
        assert_eq!(e.approvals.len(), 1);
    }

    #[test]
    fn a_material_edit_voids_approvals_and_a_cosmetic_one_does_not() {
        let (c, _) = approve(&pending(), "em@example.com", None).unwrap();
        let (c, _) = approve(&c, "cm@example.com", None).unwrap();
        let mut cosmetic = c.clone();
        cosmetic.test_environment = Some("staging".into());
        let (kept, t) = step(
            &c,
            "alice@example.com",
            Step::Edit {
                new: Box::new(cosmetic),
            },
        )
        .unwrap();
        assert_eq!(t.to, Status::Approved);
        assert_eq!(kept.approvals.len(), 2);
        let mut material = c.clone();
        material.rollback_plan = Some("restore".into());
        let (voided, t) = step(
            &c,
            "alice@example.com",
            Step::Edit {
                new: Box::new(material),
            },
        )
        .unwrap();
        assert_eq!((t.from, t.to), (Status::Approved, Status::PendingApproval));
        assert!(voided.approvals.is_empty());
        assert!(
            t.extra
                .voided
                .as_deref()
                .is_some_and(|v| v.contains("engineering-manager"))
        );
        let mut managed = c.clone();
        managed.status = Some(Status::Closed);
        assert!(matches!(
            step(
                &c,
                "alice@example.com",
                Step::Edit {
                    new: Box::new(managed)
                }
            ),
            Err(Error::Usage(_))
        ));
    }

    #[test]
    fn segregation_keeps_approver_requester_implementer_and_reviewer_apart_where_asked() {
        use crate::policy::SodCheck;
        let mut p = Policy::default_policy();
        let (c, _) = approve(&pending(), "em@example.com", None).unwrap();
        let (mut c, _) = approve(&c, "cm@example.com", None).unwrap();
        c.schedule = Some(Schedule {
            start: ts("2025-03-02T09:00:00Z"),
            end: ts("2025-03-02T11:00:00Z"),
            maintenance_window: false,
        });
        let run = |p: &Policy, c: &ChangeRequest, who: &str, s: Step| apply(c, p, who, ts(NOW), s);
        let requester = c.requester.clone().unwrap();
        // `true` (the default) forbids none of these.
        assert!(run(&p, &c, "em@example.com", Step::Implement).is_ok());
        assert!(run(&p, &c, &requester, Step::Implement).is_ok());
        for check in [
            SodCheck::ApproverImplements,
            SodCheck::RequesterImplements,
            SodCheck::ImplementerReviews,
        ] {
            p.segregation_of_duties.forbid(check, true);
        }
        for who in ["EM@example.com", requester.as_str()] {
            let r = run(&p, &c, who, Step::Implement).unwrap_err();
            assert_eq!(r.rule(), Some(rules::SEGREGATION), "{who}: {r}");
        }
        let (c, _) = run(&p, &c, "bob@example.com", Step::Implement).unwrap();
        let close = |review: Option<&str>| Step::Close {
            outcome: Outcome::Successful,
            test_results: None,
            review: review.map(str::to_owned),
        };
        let r = run(&p, &c, "bob@example.com", close(Some("fine"))).unwrap_err();
        assert_eq!(r.rule(), Some(rules::SEGREGATION), "{r}");
        assert!(run(&p, &c, "bob@example.com", close(None)).is_ok());
        assert!(run(&p, &c, "cm@example.com", close(Some("fine"))).is_ok());
    }

    #[test]
    fn implement_needs_approval_schedule_no_freeze_and_a_test_plan() {
        let p = Policy::default_policy();
        let mut c = pending();
        let why = implement_refusals(&c, &p, ts(NOW));
        let rules: Vec<&str> = why.iter().map(|w| w.rule).collect();
        assert_eq!(rules, ["implemented-unapproved", "unscheduled"], "{why:?}");
        assert!(why[0].message.contains("not approved yet"), "{why:?}");
        assert!(why[1].message.contains("no schedule"), "{why:?}");
        c.status = Some(Status::Approved);
        c.schedule = Some(Schedule {
            start: ts("2025-12-22T00:00:00Z"),
            end: ts("2025-12-23T00:00:00Z"),
            maintenance_window: false,
        });
        let why = implement_refusals(&c, &p, ts("2025-12-22T01:00:00Z"));
        assert_eq!(why.len(), 1, "{why:?}");
        assert_eq!(why[0].rule, "implemented-in-freeze");
        assert!(why[0].message.contains("freeze"));
        c.change_type = Some("security".into());
        let why = implement_refusals(&c, &p, ts("2025-12-24T01:00:00Z"));
        let rules: Vec<&str> = why.iter().map(|w| w.rule).collect();
        assert_eq!(
            rules,
            [
                "testing-missing",
                "implemented-outside-schedule",
                "implemented-in-freeze"
            ],
            "{why:?}"
        );
    }

    #[test]
    fn scheduling_respects_freezes_except_for_emergencies() {
        let freeze = Step::Schedule {
            start: ts("2025-12-24T10:00:00Z"),
            end: ts("2025-12-24T11:00:00Z"),
            maintenance_window: None,
        };
        refused(
            step(&pending(), "alice@example.com", freeze.clone()),
            "freeze",
        );
        let mut e = pending();
        e.change_model = Some(ChangeModel::Emergency);
        assert!(step(&e, "alice@example.com", freeze).is_ok());
        let backwards = Step::Schedule {
            start: ts("2025-03-05T10:00:00Z"),
            end: ts("2025-03-05T09:00:00Z"),
            maintenance_window: None,
        };
        assert!(matches!(
            step(&pending(), "a@x", backwards),
            Err(Error::Usage(_))
        ));
    }

    #[test]
    fn close_demands_a_review_where_the_policy_says_and_terminal_states_stay() {
        let mut c = pending();
        c.status = Some(Status::Implementing);
        let close = |outcome, review: Option<&str>| Step::Close {
            outcome,
            test_results: None,
            review: review.map(str::to_owned),
        };
        refused(
            step(&c, "bob@example.com", close(Outcome::RolledBack, None)),
            "review",
        );
        let (closed, _) = step(&c, "bob@example.com", close(Outcome::Successful, None)).unwrap();
        assert_eq!(
            closed.implementation.unwrap().outcome,
            Some(Outcome::Successful)
        );
        let (closed, _) = step(
            &c,
            "bob@example.com",
            close(Outcome::Failed, Some("post-mortem")),
        )
        .unwrap();
        assert_eq!(closed.review.as_ref().unwrap().summary, "post-mortem");
        refused(
            step(
                &closed,
                "bob@example.com",
                Step::Cancel { reason: "x".into() },
            ),
            "no longer be cancelled",
        );
        refused(
            step(&closed, "bob@example.com", Step::Submit),
            "only a draft",
        );
    }
}
