//! Closing and reviews: when a close needs a post-implementation review.

use crate::error::{Refusal, Remedy};
use crate::model::{ChangeRequest, Outcome};
use crate::policy::Policy;

use super::id_of;

/// Rule id: a close without the post-implementation review the policy requires.
pub const REVIEW_MISSING: &str = "review-missing";

/// Why closing `change` as `outcome` needs a review it does not have (`has_review`), if it
/// does.
pub fn review_refusal(
    change: &ChangeRequest,
    policy: &Policy,
    outcome: Outcome,
    has_review: bool,
) -> Option<Refusal> {
    if has_review || !policy.review_required(change, outcome) {
        return None;
    }
    let mut why = Vec::new();
    if policy.review_outcomes.contains(&outcome) {
        why.push(format!("outcome {outcome}"));
    }
    if policy.review_models.contains(&change.model()) {
        why.push(format!("{} change", change.model()));
    }
    if let Some(r) = change
        .risk_level
        .filter(|r| policy.review_risks.contains(r))
    {
        why.push(format!("{r} risk"));
    }
    Some(Refusal::new(
        REVIEW_MISSING,
        format!(
            "closing {} as {outcome} needs a post-implementation review (the policy requires one for {})",
            id_of(change),
            why.join(", ")
        ),
    )
    .hint("close it with a post-implementation review")
    .remedy(Remedy::Review))
}
