//! Approvals: who may decide for which role (membership and segregation of duties, on the
//! file's names and on the identities history proves), withdrawals, who may declare an
//! emergency, and the approvals recorded in a file judged as they stand.

use jiff::Timestamp;

use crate::error::Refusal;
use crate::finding::Severity;
use crate::model::{Approval, ChangeModel, ChangeRequest, Decision};
use crate::policy::{Policy, SodCheck};

use super::duties::same;
use super::{Problem, id_of, problem};

/// Roles the policy requires that have no standing approval yet by a member of the role
/// (one not withdrawn: [`ChangeRequest::standing_approvals`]).
pub fn missing_roles(change: &ChangeRequest, policy: &Policy) -> Vec<String> {
    policy
        .required_role_names(change)
        .into_iter()
        .filter(|role| {
            !change
                .standing_approvals()
                .any(|(_, a)| a.role == *role && policy.is_member(role, &a.by))
        })
        .map(str::to_owned)
        .collect()
}

/// What a change's verified history tells the approval rules, beside what its file says:
/// who made it (segregation of duties on proven identities), whether the risk
/// questionnaire is due ([`Policy::for_intake`]) and when it was submitted (approval
/// deadlines). Read from the audit index by [`crate::standing`]; the default knows nothing
/// beyond the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// Who made the change's first version.
    pub creator: Option<String>,
    /// The author and commit of the last material edit: the content approvals vouch for.
    pub content_author: Option<(String, String)>,
    /// Whether the policy's risk questionnaire is due from the change.
    pub questionnaire_due: bool,
    /// When the change last left draft (filed pending, or submitted).
    pub submitted_at: Option<Timestamp>,
    /// Why its verified history does not vouch for the file's state (a hand-flipped
    /// status, a forged or badly signed record, a shallow clone, no committed history):
    /// nothing is approved on such a file, whatever its status and approvals say.
    pub unverified: Option<Refusal>,
}

impl Default for Provenance {
    /// Nothing known beyond the file: no proven author, the questionnaire due (as for a
    /// change not yet submitted), no submission time.
    fn default() -> Self {
        Provenance {
            creator: None,
            content_author: None,
            questionnaire_due: true,
            submitted_at: None,
            unverified: None,
        }
    }
}

/// Rule id: the change's history holds a step that chg's verified steps did not produce.
pub const UNVERIFIED: &str = "unverified-history";

/// Why `actor` may not approve `change` that history shows they made (segregation of
/// duties on proven identities, when the policy forbids the requester approving).
pub fn proven_author_refusal(
    provenance: &Provenance,
    policy: &Policy,
    actor: &str,
) -> Option<Refusal> {
    if !policy
        .segregation_of_duties
        .forbids(SodCheck::RequesterApproves)
    {
        return None;
    }
    let content = provenance
        .content_author
        .as_ref()
        .map(|(who, commit)| (who.as_str(), commit.as_str()));
    proven_author_approves(actor, provenance.creator.as_deref(), content)
        .map(|why| Refusal::new(SEGREGATION, why))
}

/// Rule id: a withdrawal of an approval that is not the withdrawer's to withdraw.
pub const WITHDRAWAL: &str = "withdrawal";

/// Why `actor` may not withdraw an approval of `change` for `role`: they have no standing
/// approval for it. Only the person who approved may withdraw, and only their own.
pub fn withdrawal_refusal(change: &ChangeRequest, actor: &str, role: &str) -> Option<Refusal> {
    let mine = change
        .standing_approvals()
        .any(|(_, a)| a.role == role && a.by.eq_ignore_ascii_case(actor));
    (!mine).then(|| {
        Refusal::new(
            WITHDRAWAL,
            format!(
                "{actor} has no approval of {} as {role} to withdraw; only the person who approved may withdraw it",
                id_of(change)
            ),
        )
    })
}

/// Rule id: an approval or rejection by someone outside the role.
pub const APPROVAL_ROLE: &str = "approval-role";
/// Rule id: the requester deciding on their own change, or one person in two roles.
pub const SEGREGATION: &str = "segregation-of-duties";

/// Segregation of duties on proven identities: why `approver` may not approve content that
/// history shows they made (they filed the change, or made the material edit that gave it
/// this content; `content` is that edit's author and commit), whatever the file's
/// `requester:` says. Approving what one wrote is self-review.
pub fn proven_author_approves(
    approver: &str,
    creator: Option<&str>,
    content: Option<(&str, &str)>,
) -> Option<String> {
    let same = |who: &str| who.eq_ignore_ascii_case(approver);
    if creator.is_some_and(same) {
        return Some(format!(
            "{approver} filed this change (its first version is their commit) and may not approve it (segregation of duties)"
        ));
    }
    match content {
        Some((who, commit)) if same(who) => Some(format!(
            "{approver} made the content being approved (commit {}) and may not approve it (segregation of duties)",
            &commit[..commit.len().min(8)]
        )),
        _ => None,
    }
}

/// Segregation of duties on proven identities: why `implementer` may not implement a change
/// that history shows they filed (`requester_implements: false`), whatever the file's
/// `requester:` says.
pub fn proven_creator_implements(implementer: &str, creator: Option<&str>) -> Option<String> {
    creator.filter(|c| same(c, implementer)).map(|_| {
        format!(
            "{implementer} filed this change (its first version is their commit) and may not implement it (segregation of duties: requester_implements is false)"
        )
    })
}

/// Rule id: a change filed as an emergency, or relabelled one, by someone the policy does
/// not let declare emergencies.
pub const EMERGENCY_DECLARATION: &str = "emergency-declaration";

/// Why `actor` may not make `after` an emergency change (filed so when `before` is `None`,
/// relabelled from another model otherwise): `emergency.declared_by` names the roles that
/// may, and `actor` holds none of them. The emergency model skips approval before
/// implementation, so declaring one is a decision of its own.
pub fn emergency_declaration_refusal(
    before: Option<&ChangeRequest>,
    after: &ChangeRequest,
    actor: &str,
    policy: &Policy,
) -> Option<Refusal> {
    let declared = after.model() == ChangeModel::Emergency
        && before.is_none_or(|b| b.model() != ChangeModel::Emergency);
    let roles = policy.emergency_declared_by.as_ref()?;
    if !declared || roles.iter().any(|r| policy.is_member(r, actor)) {
        return None;
    }
    Some(Refusal::new(
        EMERGENCY_DECLARATION,
        format!(
            "{actor} may not declare {} an emergency: emergency.declared_by lets only {} do so",
            id_of(after),
            roles.join(", ")
        ),
    ))
}

/// Why `actor` may not decide on `change` at all: they requested it (segregation of duties).
pub fn requester_refusal(
    change: &ChangeRequest,
    policy: &Policy,
    actor: &str,
    verb: &str,
) -> Option<Refusal> {
    (policy
        .segregation_of_duties
        .forbids(SodCheck::RequesterApproves)
        && change
            .requester
            .as_deref()
            .is_some_and(|r| r.eq_ignore_ascii_case(actor)))
    .then(|| {
        Refusal::new(
            SEGREGATION,
            format!(
                "{actor} requested {} and may not {verb} it (segregation of duties)",
                id_of(change)
            ),
        )
    })
}

/// Why someone may not decide on a change for a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decider {
    /// They requested the change (segregation of duties).
    Requester,
    /// They are not a member of the role.
    NotMember,
    /// They already decided on the change in this other role (segregation of duties).
    OtherRole(String),
}

impl Decider {
    /// The rule id.
    pub fn rule(&self) -> &'static str {
        match self {
            Decider::NotMember => APPROVAL_ROLE,
            Decider::Requester | Decider::OtherRole(_) => SEGREGATION,
        }
    }
}

/// Every reason `actor` may not decide on `change` for `role`, whatever the change's
/// status: membership and segregation of duties. The approvals already on `change` are the
/// ones before this decision.
pub fn decider_problems(
    change: &ChangeRequest,
    policy: &Policy,
    actor: &str,
    role: &str,
) -> Vec<Decider> {
    deciders(change, &change.approvals, policy, actor, role)
}

/// [`decider_problems`] with `prior` as the approvals before this decision.
pub(super) fn deciders(
    change: &ChangeRequest,
    prior: &[Approval],
    policy: &Policy,
    actor: &str,
    role: &str,
) -> Vec<Decider> {
    let mut out = Vec::new();
    if requester_refusal(change, policy, actor, "approve").is_some() {
        out.push(Decider::Requester);
    }
    if !policy.is_member(role, actor) {
        out.push(Decider::NotMember);
    }
    if policy
        .segregation_of_duties
        .forbids(SodCheck::OneRolePerPerson)
        && let Some(a) = prior
            .iter()
            .find(|a| a.by.eq_ignore_ascii_case(actor) && a.role != role)
    {
        out.push(Decider::OtherRole(a.role.clone()));
    }
    out
}

/// [`decider_problems`] as refusals of `actor`'s attempt to `verb` (approve, reject).
pub fn decider_refusals(
    change: &ChangeRequest,
    policy: &Policy,
    actor: &str,
    role: &str,
    verb: &str,
) -> Vec<Refusal> {
    let id = id_of(change);
    decider_problems(change, policy, actor, role)
        .into_iter()
        .map(|d| {
            let message = match &d {
                Decider::Requester => {
                    format!("{actor} requested {id} and may not {verb} it (segregation of duties)")
                }
                Decider::NotMember => format!(
                    "{actor} is not a member of the role {role} and may not {verb} for it"
                ),
                Decider::OtherRole(other) => format!(
                    "{actor} already acted on {id} as {other}; one person fills one role per change (segregation of duties)"
                ),
            };
            Refusal::new(d.rule(), message)
        })
        .collect()
}
/// Who approved for which role, judged on the file as it is: members only, never the
/// requester, no role twice, nobody in two roles, no stale digest, no unknown or unneeded
/// role (a warning). Each approval is judged by [`decider_refusals`] against the approvals
/// recorded before it.
pub fn approval_problems(change: &ChangeRequest, policy: &Policy) -> Vec<Problem> {
    let mut out = Vec::new();
    let required = policy.required_roles(change);
    let stale = change.stale_approvals();
    let withdrawals = change.withdrawals();
    // Approval j was withdrawn by a record before i: the role may decide again at i.
    let withdrawn_before =
        |j: usize, i: usize| withdrawals.iter().any(|&(w, a)| a == Some(j) && w < i);
    for (i, a) in change.approvals.iter().enumerate() {
        let base = format!("approvals[{i}]");
        if a.decision == Decision::Withdrawn {
            // A withdrawal is judged by what it withdraws, not as a decision of its own.
            if withdrawals.iter().any(|&(w, x)| w == i && x.is_none()) {
                out.push(problem(
                    format!("{base}.by"),
                    WITHDRAWAL,
                    format!(
                        "{} withdraws an approval as {} that they had not given (or had already withdrawn); only the person who approved may withdraw it",
                        a.by, a.role
                    ),
                ));
            }
            continue;
        }
        if stale.contains(&i) && a.digest.is_none() {
            out.push(problem(
                base.clone(),
                "approval-digest",
                format!(
                    "the approval by {} as {} records no digest of the content it approved, so it does not count; restore its `digest:` line from git history, or have the change approved again with chg",
                    a.by, a.role
                ),
            ));
        } else if stale.contains(&i) {
            out.push(problem(
                format!("{base}.digest"),
                "approval-digest",
                format!(
                    "the approval by {} as {} was given to other content: the title, plan or another material field changed after it (by a merge or by hand); restore the approved content, or edit it with chg so it goes back for approval",
                    a.by, a.role
                ),
            ));
        }
        if let Some(first) = change.approvals[..i].iter().enumerate().position(|(j, b)| {
            b.role == a.role && b.decision != Decision::Withdrawn && !withdrawn_before(j, i)
        }) {
            out.push(problem(
                format!("{base}.role"),
                APPROVAL_ROLE,
                format!(
                    "the role {} decided twice (approvals {} and {})",
                    a.role,
                    first + 1,
                    i + 1
                ),
            ));
        }
        if !policy.roles.contains_key(&a.role) {
            out.push(problem(
                format!("{base}.role"),
                APPROVAL_ROLE,
                format!("approval for unknown role `{}`", a.role),
            ));
            continue;
        }
        if !required.contains(&a.role) {
            out.push(Problem {
                severity: Severity::Warning,
                ..problem(
                    format!("{base}.role"),
                    APPROVAL_ROLE,
                    format!(
                        "the role {} is not required for this change (required: {})",
                        a.role,
                        if required.is_empty() {
                            "none".to_owned()
                        } else {
                            required.join(", ")
                        }
                    ),
                )
            });
        }
        // The audit's rule ids; validate describes a recorded approval rather than refusing
        // an attempt, so its sentences differ.
        for d in deciders(change, &change.approvals[..i], policy, &a.by, &a.role) {
            let (rule, message) = match d {
                Decider::Requester => (
                    SEGREGATION,
                    format!(
                        "{} requested this change and may not approve it (segregation of duties)",
                        a.by
                    ),
                ),
                Decider::NotMember => (
                    APPROVAL_ROLE,
                    format!("{} is not a member of the role {}", a.by, a.role),
                ),
                Decider::OtherRole(other) => (
                    SEGREGATION,
                    format!(
                        "{} fills two roles on this change ({other} and {}); one person fills one role per change",
                        a.by, a.role
                    ),
                ),
            };
            out.push(problem(format!("{base}.by"), rule, message));
        }
    }
    out
}
