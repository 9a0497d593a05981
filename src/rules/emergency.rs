//! Emergency deadlines: when an emergency change's retroactive approvals and its
//! post-implementation review are due, and what is overdue.

use jiff::Timestamp;

use crate::error::Refusal;
use crate::model::{ChangeModel, ChangeRequest, format_timestamp};
use crate::policy::Policy;

use super::{id_of, missing_roles};

/// When an emergency change's approvals are due: `emergency.approve_within` after its
/// implementation started. `None`: not an emergency change, not started, no such rule, or
/// a deadline past the end of time (never due).
pub fn emergency_approval_deadline(change: &ChangeRequest, policy: &Policy) -> Option<Timestamp> {
    if change.model() != ChangeModel::Emergency {
        return None;
    }
    let started = change.implementation.as_ref()?.started_at?;
    started
        .checked_add(policy.emergency_approve_within?.to_signed())
        .ok()
}

/// When an emergency change's post-implementation review is due:
/// `emergency.review_within` after its implementation completed (after it started, while
/// it is still implementing: the review cannot wait for an implementation that never ends).
pub fn emergency_review_deadline(change: &ChangeRequest, policy: &Policy) -> Option<Timestamp> {
    if change.model() != ChangeModel::Emergency {
        return None;
    }
    let imp = change.implementation.as_ref()?;
    imp.completed_at
        .or(imp.started_at)?
        .checked_add(policy.emergency_review_within?.to_signed())
        .ok()
}

/// Rule id: emergency approvals still missing after their deadline.
pub const EMERGENCY_APPROVAL_MISSING: &str = "emergency-approval-missing";
/// Rule id: an emergency post-implementation review still missing after its deadline.
pub const EMERGENCY_REVIEW_MISSING: &str = "emergency-review-missing";
/// Rule id: an emergency approved after its deadline.
pub const EMERGENCY_APPROVAL_LATE: &str = "emergency-approval-late";
/// Rule id: an emergency post-implementation review made after its deadline.
pub const EMERGENCY_REVIEW_LATE: &str = "emergency-review-late";

/// What is overdue on an emergency change at `now`: approvals still missing after their
/// deadline, a review still missing after its deadline.
pub fn emergency_overdue(change: &ChangeRequest, policy: &Policy, now: Timestamp) -> Vec<Refusal> {
    let mut out = Vec::new();
    let id = id_of(change);
    if let Some(deadline) = emergency_approval_deadline(change, policy)
        && now > deadline
    {
        let missing = missing_roles(change, policy);
        if !missing.is_empty() {
            out.push(Refusal::new(
                EMERGENCY_APPROVAL_MISSING,
                format!(
                    "{id} started implementation at {} and still lacks approval by {} (due by {})",
                    change
                        .implementation
                        .as_ref()
                        .and_then(|i| i.started_at)
                        .map(format_timestamp)
                        .unwrap_or_default(),
                    missing.join(", "),
                    format_timestamp(deadline)
                ),
            ));
        }
    }
    if change.review.is_none()
        && let Some(deadline) = emergency_review_deadline(change, policy)
        && now > deadline
    {
        out.push(Refusal::new(
            EMERGENCY_REVIEW_MISSING,
            format!(
                "{id} has no post-implementation review, due by {}",
                format_timestamp(deadline)
            ),
        ));
    }
    out
}

/// Whether an approval given `at` came after the emergency deadline, and the deadline.
pub fn emergency_approval_late(
    change: &ChangeRequest,
    policy: &Policy,
    at: Timestamp,
) -> Option<Timestamp> {
    emergency_approval_deadline(change, policy).filter(|d| at > *d)
}

/// Whether a review given `at` came after the emergency deadline, and the deadline.
pub fn emergency_review_late(
    change: &ChangeRequest,
    policy: &Policy,
    at: Timestamp,
) -> Option<Timestamp> {
    emergency_review_deadline(change, policy).filter(|d| at > *d)
}
