//! Who may approve or reject a change for which role now: the one rule behind the roles
//! approve infers and the changes the query layer lists as awaiting a person.

use crate::error::{Error, Refusal, Result};
use crate::finding::suggest;
use crate::model::{Approval, ChangeModel, ChangeRequest, Status};
use crate::policy::Policy;
use crate::rules;

use super::{IdOf, LIFECYCLE, Provenance, id_of, refuse};

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
    // Exactly the roles [`role_refusal`] finds nothing against, its checks composed so that
    // those that do not depend on the role run once per change, not once per role: a
    // "waiting for me" asks this of thousands of changes.
    if decision_refusal(change, policy, actor, verb, provenance).is_some() {
        return Vec::new();
    }
    let open: Vec<String> = policy
        .required_role_names(change)
        .into_iter()
        .filter(|role| role_holder_refusal(change, policy, actor, role, verb).is_none())
        .map(str::to_owned)
        .collect();
    if open.is_empty() || content_refusal(change, policy, actor, verb, provenance).is_some() {
        return Vec::new();
    }
    open
}

/// Why `actor` may not `verb` `change` in any role: its status, a pre-approved standard
/// change, or their own request.
fn decision_refusal(
    change: &ChangeRequest,
    policy: &Policy,
    actor: &str,
    verb: &str,
    provenance: &Provenance,
) -> Option<Error> {
    let id = IdOf(change);
    let status = change.status();
    let retroactive = change.model() == ChangeModel::Emergency
        && matches!(status, Status::Implementing | Status::Closed);
    if verb == "approve" && status != Status::PendingApproval && !retroactive {
        // A status history does not vouch for is not named as the reason: "already
        // approved" of a hand-flipped file would tell the approver all is well.
        if let Some(r) = &provenance.unverified {
            return Some(Error::Refused(r.clone()));
        }
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
    if let Some(e) = decision_refusal(change, policy, actor, verb, provenance) {
        return Some(e);
    }
    let required = policy.required_role_names(change);
    if !required.contains(&role) {
        return Some(Error::Refused(Refusal::new(
            "role-not-required",
            format!(
                "{id} does not need the role {role} (required: {})",
                required.join(", ")
            ),
        )));
    }
    role_holder_refusal(change, policy, actor, role, verb)
        .or_else(|| content_refusal(change, policy, actor, verb, provenance))
}

/// Why `actor` may not `verb` `change` for `role`, a role it requires: the role is filled
/// already, or the policy's rules on who decides (membership, segregation of duties).
fn role_holder_refusal(
    change: &ChangeRequest,
    policy: &Policy,
    actor: &str,
    role: &str,
    verb: &str,
) -> Option<Error> {
    let id = IdOf(change);
    if let Some(a) = filled(change, role) {
        return Some(Error::Refused(Refusal::new(
            "approval-duplicate",
            format!("the role {role} has already approved {id} (by {})", a.by),
        )));
    }
    rules::decider_refusals(change, policy, actor, role, verb)
        .into_iter()
        .next()
        .map(Into::into)
}

/// Why `actor` may not approve `change` as it is, whatever the role: their own emergency
/// implementation, a risk below what its answers score, or history showing they made it.
fn content_refusal(
    change: &ChangeRequest,
    policy: &Policy,
    actor: &str,
    verb: &str,
    provenance: &Provenance,
) -> Option<Error> {
    if verb != "approve" {
        return None;
    }
    let id = IdOf(change);
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
    if let Some(r) = rules::proven_author_refusal(provenance, policy, actor) {
        return Some(Error::Refused(r));
    }
    // The file's status and approvals are believed only as far as verified history
    // vouches for them (a rejection stays open to anyone who may decide).
    provenance.unverified.clone().map(Error::Refused)
}

/// Which role an approval or rejection is for, after every check of who may act: the one
/// role [`open_roles`] leaves, or the one named.
pub(super) fn decide_role(
    change: &ChangeRequest,
    policy: &Policy,
    actor: &str,
    role: Option<String>,
    verb: &str,
    provenance: &Provenance,
) -> Result<String> {
    let id = id_of(change);
    // Refused before any role is inferred: whatever role, the answer is no.
    if let Some(e) = decision_refusal(change, policy, actor, verb, provenance) {
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
