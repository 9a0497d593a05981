//! Edits of a change's content (`chg edit`, `chg set`): what an edit may touch, and the
//! approvals a material edit voids.

use crate::error::{Error, Result};
use crate::model::{ChangeRequest, Status};
use crate::policy::Policy;
use crate::trailers::{Action, Trailers};

use super::{LIFECYCLE, Transition, id_of, refuse, require_complete};

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

pub(super) fn edit(
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
