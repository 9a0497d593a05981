//! Schedules, windows and implementation: whether a schedule is allowed, whether a change
//! may start implementation now, and its deployment gate.

use jiff::Timestamp;

use crate::conflicts;
use crate::error::{Refusal, Remedy};
use crate::model::{ChangeModel, ChangeRequest, Decision, Schedule, Status, format_timestamp};
use crate::policy::Policy;

use super::duties::implementer_of;
use super::{RISK, id_of, implementer_refusals, missing_roles, risk_problems, unsigned_approvals};

/// Rule id: a normal or standard change with no schedule to be implemented in.
pub const UNSCHEDULED: &str = "unscheduled";

/// Rule id: a step the life cycle does not allow from the change's status.
pub const LIFECYCLE: &str = "lifecycle";

/// Why a schedule is not allowed by the windows, if it is not (freeze, maintenance window),
/// where the policy's `conflicts:` says they block.
pub fn schedule_problem(
    change: &ChangeRequest,
    schedule: &Schedule,
    policy: &Policy,
) -> Option<String> {
    if schedule.end <= schedule.start {
        return Some("the schedule ends before it starts".into());
    }
    let c = conflicts::conflicts(change, schedule, &[], policy)
        .into_iter()
        .find(|c| c.blocks())?;
    Some(match policy.freeze_overlapping(schedule.start, schedule.end) {
        Some(f) if c.kind == "freeze" => format!(
            "it overlaps the freeze `{}` ({} to {}); only emergency changes may run in a freeze",
            f.reason,
            format_timestamp(f.start),
            format_timestamp(f.end)
        ),
        _ => "it is flagged maintenance_window but does not lie inside any maintenance window of the policy".into(),
    })
}

/// Every reason the change may not start implementation at `now` (empty: it may). Rules:
/// `lifecycle`, `implemented-unapproved`, `approval-digest`, `testing-missing`,
/// `unscheduled`, `implemented-outside-schedule`, `implemented-outside-window`, `implemented-in-freeze`.
pub fn implement_refusals(change: &ChangeRequest, policy: &Policy, now: Timestamp) -> Vec<Refusal> {
    let id = id_of(change);
    let status = change.status();
    let model = change.model();
    let mut why = Vec::new();
    // Each refusal as it is made; the unscheduled one with what to do about it.
    let mut push = |rule, message: String| {
        let r = Refusal::new(rule, message);
        why.push(if rule == UNSCHEDULED {
            r.hint("schedule it first")
                .remedy(Remedy::Schedule(id.to_string()))
        } else {
            r
        })
    };
    let approved_enough = match model {
        ChangeModel::Emergency => matches!(status, Status::PendingApproval | Status::Approved),
        _ if policy.is_preapproved(change) => {
            matches!(status, Status::PendingApproval | Status::Approved)
        }
        _ => status == Status::Approved,
    };
    for p in risk_problems(change, policy) {
        push(RISK, format!("{id}: {}", p.message));
    }
    if let Some(why) = policy.template_problem(change) {
        push(
            crate::templates::STANDARD_TEMPLATE,
            format!("{id} is not a conforming standard change: {why}"),
        );
    }
    if status.is_terminal() || status == Status::Implementing {
        // Not a missing approval: the life cycle has ended (or the step was taken).
        push(
            LIFECYCLE,
            format!("{id} is {status} and cannot be implemented"),
        );
    } else if !approved_enough {
        push(
            "implemented-unapproved",
            match status {
                Status::PendingApproval => format!(
                    "{id} is not approved yet (waiting for: {})",
                    missing_roles(change, policy).join(", ")
                ),
                Status::Draft => format!("{id} is a draft; submit it and get it approved first"),
                _ => format!("{id} is {status} and cannot be implemented"),
            },
        );
    }
    for (rule, message) in approval_problems_of(change, policy, &id) {
        push(rule, message);
    }
    let testing = change
        .change_type
        .as_deref()
        .is_some_and(|t| policy.testing_required_for(t))
        || change.testing_required == Some(true);
    if testing && !change.has_field("test_plan") {
        push(
            "testing-missing",
            format!("{id} requires testing but has no test_plan"),
        );
    }
    if model != ChangeModel::Emergency {
        for (rule, message) in timing_problems(change, policy, now, &id) {
            push(rule, message);
        }
    }
    why
}

/// Why the change's approvals do not count for implementing: given to other content, or
/// not validly signed where the policy requires signatures.
fn approval_problems_of(
    change: &ChangeRequest,
    policy: &Policy,
    id: &str,
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let stale = change.stale_approvals();
    if !stale.is_empty() {
        let who: Vec<String> = stale
            .iter()
            .map(|&i| format!("{} as {}", change.approvals[i].by, change.approvals[i].role))
            .collect();
        out.push((
            "approval-digest",
            format!(
                "the approval(s) of {id} by {} were given to other content than it now has; it needs approval again",
                who.join(", ")
            ),
        ));
    }
    let unsigned = unsigned_approvals(change, policy);
    if !unsigned.is_empty() {
        let who: Vec<String> = unsigned
            .iter()
            .map(|&i| {
                let a = &change.approvals[i];
                let what = if a.decision == Decision::Withdrawn {
                    " (a withdrawal)"
                } else {
                    ""
                };
                format!("{} as {}{what}", a.by, a.role)
            })
            .collect();
        out.push((
            crate::signing::SIGNATURE,
            format!(
                "the approval(s) of {id} by {} are not validly signed and do not count (the policy requires signed approvals)",
                who.join(", ")
            ),
        ));
    }
    out
}

/// Why `now` is not a time to implement a normal or standard change: no schedule, outside
/// it or outside every maintenance window it needs, or inside a freeze.
fn timing_problems(
    change: &ChangeRequest,
    policy: &Policy,
    now: Timestamp,
    id: &str,
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let mut push = |rule: &'static str, message: String| out.push((rule, message));
    match &change.schedule {
        None => push(UNSCHEDULED, format!("{id} has no schedule")),
        Some(s) if now < s.start || now > s.end => push(
            "implemented-outside-schedule",
            format!(
                "{} is outside the schedule of {id} ({} to {})",
                format_timestamp(now),
                format_timestamp(s.start),
                format_timestamp(s.end)
            ),
        ),
        Some(s) if s.maintenance_window && !policy.in_maintenance_window(now, now) => push(
            "implemented-outside-window",
            format!(
                "{id} must run in a maintenance window and {} is outside every one",
                format_timestamp(now)
            ),
        ),
        Some(_) => {}
    }
    if let Some(f) = policy.freeze_at(now) {
        push(
            "implemented-in-freeze",
            format!(
                "{} is inside the freeze `{}` ({} to {}); only emergency changes may be implemented",
                format_timestamp(now),
                f.reason,
                format_timestamp(f.start),
                format_timestamp(f.end)
            ),
        );
    }
    out
}

/// Every reason the change may not be implemented at `at` (empty: the gate is open): the
/// implement rules, the implementer's segregation of duties once there is an implementer,
/// plus blocking overlaps with `others`. A change already implementing is
/// judged as if approved, so a pipeline can check it again mid-deploy.
pub fn gate(
    change: &ChangeRequest,
    policy: &Policy,
    at: Timestamp,
    others: &[&ChangeRequest],
) -> Vec<Refusal> {
    let mut c = change.clone();
    if c.status() == Status::Implementing {
        c.status = Some(Status::Approved);
    }
    let mut why = implement_refusals(&c, policy, at);
    // Who will run `chg implement` is unknown until they do (implement judges them then);
    // once someone has, the gate judges them too, mid-deploy.
    if let Some(who) = implementer_of(change) {
        why.extend(implementer_refusals(change, policy, who, None));
    }
    if let Some(s) = &change.schedule {
        for k in conflicts::conflicts(change, s, others, policy) {
            if k.blocks() && k.kind == "overlap" {
                why.push(Refusal::new("conflict", k.message));
            }
        }
    }
    why
}

/// Rule id: a deployment recorded while the change's gate was closed.
pub const DEPLOY_GATE: &str = "deployment-gate";

/// The refusal of a deployment of `id` at `at` while the gate gives `reasons`: every reason,
/// each with its own rule, as `chg gate` lists them.
pub fn deploy_refusal(id: &str, at: Timestamp, reasons: &[Refusal]) -> Refusal {
    let why: Vec<String> = reasons
        .iter()
        .map(|r| format!("{}: {}", r.rule, r.message))
        .collect();
    Refusal::new(
        DEPLOY_GATE,
        format!(
            "{id} is not cleared to deploy at {} (its gate is closed), so no deployment is recorded: {}",
            crate::model::format_timestamp(at),
            why.join("; ")
        ),
    )
}
