//! Segregation of duties beyond approvals: implementation and review.

use crate::error::Refusal;
use crate::model::{ChangeRequest, Decision};
use crate::policy::{Policy, SodCheck};

use super::approval::deciders;
use super::{Decider, Problem, SEGREGATION, id_of, problem};

pub(super) fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Why `implementer` may not implement `change` under the policy's segregation of duties:
/// they hold a standing approval of it (`approver_implements: false`), or they requested
/// it (`requester_implements: false`). The requester is both the one the file names and
/// `creator`, whoever history shows filed it (when known): either implementing their own
/// request is what the check forbids, and the file's field alone is a claim.
pub fn implementer_failures(
    change: &ChangeRequest,
    policy: &Policy,
    implementer: &str,
    creator: Option<&str>,
) -> Vec<(SodCheck, String)> {
    let sod = &policy.segregation_of_duties;
    let id = id_of(change);
    let mut out = Vec::new();
    if sod.forbids(SodCheck::ApproverImplements)
        && let Some((_, a)) = change
            .standing_approvals()
            .find(|(_, a)| same(&a.by, implementer))
    {
        out.push((
            SodCheck::ApproverImplements,
            format!(
                "{implementer} approved {id} as {} and may not implement it (segregation of duties: approver_implements is false)",
                a.role
            ),
        ));
    }
    if sod.forbids(SodCheck::RequesterImplements) {
        let requested = change
            .requester
            .as_deref()
            .is_some_and(|r| same(r, implementer));
        let filed = creator.is_some_and(|c| same(c, implementer));
        if requested || filed {
            let how = if requested {
                "requested"
            } else {
                "filed (its first version is their commit)"
            };
            out.push((
                SodCheck::RequesterImplements,
                format!(
                    "{implementer} {how} {id} and may not implement it (segregation of duties: requester_implements is false)"
                ),
            ));
        }
    }
    out
}

/// [`implementer_failures`] as refusals of `chg implement` by `implementer`.
pub fn implementer_refusals(
    change: &ChangeRequest,
    policy: &Policy,
    implementer: &str,
    creator: Option<&str>,
) -> Vec<Refusal> {
    implementer_failures(change, policy, implementer, creator)
        .into_iter()
        .map(|(_, why)| Refusal::new(SEGREGATION, why))
        .collect()
}

/// The implementer named in `change`'s implementation record, if any.
pub(super) fn implementer_of(change: &ChangeRequest) -> Option<&str> {
    change
        .implementation
        .as_ref()
        .and_then(|i| i.implementer.as_deref())
}

/// Why `approver` may not approve `change` that they implemented (an emergency change,
/// approved after implementation starts): the same pair of duties as
/// `approver_implements`, in the other order.
pub fn implementer_approves_refusal(
    change: &ChangeRequest,
    policy: &Policy,
    approver: &str,
) -> Option<Refusal> {
    let forbidden = policy
        .segregation_of_duties
        .forbids(SodCheck::ApproverImplements);
    (forbidden && implementer_of(change).is_some_and(|i| same(i, approver))).then(|| {
        Refusal::new(
            SEGREGATION,
            format!(
                "{approver} implemented {} and may not approve it (segregation of duties: approver_implements is false)",
                id_of(change)
            ),
        )
    })
}

/// Why `reviewer` may not write the post-implementation review of `change`
/// (`implementer_reviews: false`): they implemented it. Reviewing one's own work is no
/// review.
pub fn implementer_reviews_refusal(
    change: &ChangeRequest,
    policy: &Policy,
    reviewer: &str,
) -> Option<Refusal> {
    let forbidden = policy
        .segregation_of_duties
        .forbids(SodCheck::ImplementerReviews);
    (forbidden && implementer_of(change).is_some_and(|i| same(i, reviewer))).then(|| {
        Refusal::new(
            SEGREGATION,
            format!(
                "{reviewer} implemented {} and may not write its post-implementation review (segregation of duties: implementer_reviews is false)",
                id_of(change)
            ),
        )
    })
}

/// The implementation and review checks on the file as it is (for `chg validate`), at the
/// field that names the person: `implementation.implementer`, `review.by`.
pub fn duty_problems(change: &ChangeRequest, policy: &Policy) -> Vec<Problem> {
    let mut out = Vec::new();
    if let Some(who) = implementer_of(change) {
        for (_, why) in implementer_failures(change, policy, who, None) {
            out.push(problem("implementation.implementer", SEGREGATION, why));
        }
    }
    if let Some(r) = &change.review
        && let Some(x) = implementer_reviews_refusal(change, policy, &r.by)
    {
        out.push(problem("review.by", SEGREGATION, x.message));
    }
    out
}

/// Every segregation-of-duties failure of `change` as it is, by check (for the evidence
/// pack): the approvals judged as [`approval_problems`] judges them, plus an approval by
/// `creator` (whoever history shows filed it), the implementer and the reviewer.
///
/// [`approval_problems`]: super::approval_problems
pub fn segregation_failures(
    change: &ChangeRequest,
    policy: &Policy,
    creator: Option<&str>,
) -> Vec<(SodCheck, String)> {
    let mut out = Vec::new();
    let sod = &policy.segregation_of_duties;
    for (i, a) in change.approvals.iter().enumerate() {
        if a.decision == Decision::Withdrawn {
            continue;
        }
        for d in deciders(change, &change.approvals[..i], policy, &a.by, &a.role) {
            match d {
                Decider::Requester => out.push((
                    SodCheck::RequesterApproves,
                    format!("{} requested it and approved as {}", a.by, a.role),
                )),
                Decider::OtherRole(other) => out.push((
                    SodCheck::OneRolePerPerson,
                    format!("{} acted as {other} and as {}", a.by, a.role),
                )),
                Decider::NotMember => {}
            }
        }
        let requested = change.requester.as_deref().is_some_and(|r| same(r, &a.by));
        if sod.forbids(SodCheck::RequesterApproves)
            && !requested
            && creator.is_some_and(|c| same(c, &a.by))
        {
            out.push((
                SodCheck::RequesterApproves,
                format!("{} filed it and approved as {}", a.by, a.role),
            ));
        }
    }
    if let Some(who) = implementer_of(change) {
        out.extend(implementer_failures(change, policy, who, creator));
    }
    if let Some(r) = &change.review
        && let Some(x) = implementer_reviews_refusal(change, policy, &r.by)
    {
        out.push((SodCheck::ImplementerReviews, x.message));
    }
    out
}
