//! The life cycle (SPEC section 4) as pure functions: a change, the policy, who acts and when,
//! in; the next version of the change and a description of the transition, out. Nothing
//! here touches files or git, so every rule is testable on its own and a server can call it.

use jiff::Timestamp;

use crate::error::{Error, Refusal, Result};
use crate::model::{ChangeId, ChangeRequest, Outcome, Status};
use crate::policy::Policy;
use crate::rules;
pub use crate::rules::Provenance;
pub use crate::rules::{implement_refusals, missing_roles};
use crate::trailers::{Action, Trailers};

mod apply;
mod edit;
mod replay;
mod roles;

pub use apply::{apply, apply_with};
pub use replay::step_between;
pub use roles::approvable_roles;

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

/// Refuses unless every required field and content rule is satisfied.
fn require_complete(change: &ChangeRequest, policy: &Policy, what: &str) -> Result<()> {
    let problems = rules::content_problems(change, policy);
    if problems.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = problems.iter().map(|p| p.message.clone()).collect();
    refuse("required", format!("{what}: {}", list.join("; ")))
}

/// Refuses unless the change may start implementation at `now`: the first of
/// [`rules::implement_refusals`].
pub fn implement_allowed(change: &ChangeRequest, policy: &Policy, now: Timestamp) -> Result<()> {
    implement_refusals(change, policy, now)
        .into_iter()
        .next()
        .map_or(Ok(()), |r| Err(r.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChangeModel, Priority, Schedule};

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
