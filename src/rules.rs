//! One home for each policy rule. Every rule is a pure function of a change, the policy and,
//! where it matters, who acts and when; it returns every reason it says no.
//!
//! The life cycle ([`crate::workflow`]) refuses at the first reason, `chg validate` and
//! `chg audit` report them all with their places or commits, and `chg gate` lists them for a
//! pipeline: so the four can never disagree about what a rule means.

use jiff::Timestamp;

use crate::conflicts;
use crate::error::{Refusal, Remedy};
use crate::finding::{Severity, suggest};
use crate::model::{
    Approval, ChangeModel, ChangeRequest, Decision, Outcome, Schedule, Status, format_timestamp,
};
use crate::policy::{Policy, SodCheck};

/// A problem with one field of a change, before it is given a file and a place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The field path (`title`, `approvals[1].by`), used to find the place.
    pub path: String,
    /// The rule broken.
    pub rule: &'static str,
    /// Error or warning.
    pub severity: Severity,
    /// One sentence.
    pub message: String,
}

/// An error-level problem.
pub(crate) fn problem(
    path: impl Into<String>,
    rule: &'static str,
    message: impl Into<String>,
) -> Problem {
    Problem {
        path: path.into(),
        rule,
        severity: Severity::Error,
        message: message.into(),
    }
}

fn id_of(c: &ChangeRequest) -> String {
    c.id.as_ref()
        .map_or_else(|| "the change".to_owned(), ToString::to_string)
}

// ---------------------------------------------------------------------------------------
// Content

/// Content rules: required fields, change type, testing. These decide whether a change can
/// be submitted.
pub fn content_problems(change: &ChangeRequest, policy: &Policy) -> Vec<Problem> {
    let mut out = risk_problems(change, policy);
    // A standard change names a template in force and keeps what it fixes; a closed,
    // rejected or cancelled one keeps the rules of its day.
    if !change.status().is_terminal()
        && let Some(why) = policy.template_problem(change)
    {
        let field = if change.template.is_some() {
            "template"
        } else {
            "change_model"
        };
        out.push(problem(field, crate::templates::STANDARD_TEMPLATE, why));
    }
    for field in &policy.required_fields {
        if !change.has_field(field) {
            out.push(problem(
                field.as_str(),
                "required",
                format!("{field} is required by the policy and is missing or empty"),
            ));
        }
    }
    if let Some(t) = &change.change_type {
        if !policy.change_types.contains(t) {
            let hint = suggest(t, policy.change_types.iter().map(String::as_str))
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            out.push(problem(
                "change_type",
                "enum",
                format!(
                    "change_type `{t}` is not one of the policy's change types ({}){hint}",
                    policy.change_types.join(", ")
                ),
            ));
        } else if policy.testing_required_for(t) {
            if change.testing_required != Some(true) {
                out.push(problem(
                    "testing_required",
                    "testing",
                    format!("{t} changes need testing: set testing_required: true"),
                ));
            }
            if !change.has_field("test_plan") {
                out.push(problem(
                    "test_plan",
                    "testing",
                    format!("{t} changes need a test_plan"),
                ));
            }
        }
    }
    if change.testing_required == Some(true)
        && !change.has_field("test_plan")
        && !out.iter().any(|p| p.path == "test_plan")
    {
        out.push(problem(
            "test_plan",
            "testing",
            "testing_required is true but there is no test_plan",
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------
// Approvals: roles and segregation of duties

/// Roles the policy requires that have no standing approval yet by a member of the role
/// (one not withdrawn: [`ChangeRequest::standing_approvals`]).
pub fn missing_roles(change: &ChangeRequest, policy: &Policy) -> Vec<String> {
    policy
        .required_roles(change)
        .into_iter()
        .filter(|role| {
            !change
                .standing_approvals()
                .any(|(_, a)| &a.role == role && policy.is_member(role, &a.by))
        })
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
        }
    }
}

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
fn deciders(
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

// ---------------------------------------------------------------------------------------
// Segregation of duties beyond approvals: implementation and review

fn same(a: &str, b: &str) -> bool {
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
fn implementer_of(change: &ChangeRequest) -> Option<&str> {
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

// ---------------------------------------------------------------------------------------
// Schedules, windows and implementation

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

// ---------------------------------------------------------------------------------------
// Signatures (SPEC section 9)

/// Rule id: one signed request in two change files.
pub const DUPLICATE_REQUEST: &str = "duplicate-request";

/// Whether change files `a` and `b` hold one signed request: the same requester and
/// request time (what a signature names a change by, so that renumbering keeps it), both
/// signed, and a signature in common or the same material content. The second file would
/// carry decisions it was never given, under a new id; a signature cannot be in two files
/// unless one was copied from the other.
pub fn repeats_request(a: &ChangeRequest, b: &ChangeRequest) -> bool {
    if a.requester != b.requester || a.request_date != b.request_date {
        return false;
    }
    let signatures = |c: &ChangeRequest| -> Vec<String> {
        crate::signing::records(c)
            .into_iter()
            .filter_map(|r| r.signature.map(str::to_owned))
            .collect()
    };
    let (sa, sb) = (signatures(a), signatures(b));
    !sa.is_empty()
        && !sb.is_empty()
        && (sa.iter().any(|s| sb.contains(s)) || a.material_digest() == b.material_digest())
}

/// The verdict on each signable record of `change` that the policy's signing concerns: the
/// records of actions it requires signed, and any record that carries a signature (a
/// signature that is there must be right). `None` verdicts are not judged: no signing
/// policy, or the allowed signers not read.
pub fn signature_verdicts<'c>(
    change: &'c ChangeRequest,
    policy: &Policy,
) -> Vec<(crate::signing::Record<'c>, crate::signing::Verdict)> {
    signature_verdicts_since(change, policy, None)
}

/// [`signature_verdicts`], a key's time limits judged no earlier than `floor`: the time
/// history proves the record was written after (its commit's place in history), so that
/// a record backdated to before its key was retired does not revive the key.
pub fn signature_verdicts_since<'c>(
    change: &'c ChangeRequest,
    policy: &Policy,
    floor: Option<Timestamp>,
) -> Vec<(crate::signing::Record<'c>, crate::signing::Verdict)> {
    let Some(signers) = policy.signers() else {
        return Vec::new();
    };
    crate::signing::records(change)
        .into_iter()
        .filter(|r| r.signature.is_some() || policy.requires_signature(r.action))
        .map(|r| {
            let at = floor.map_or(r.statement.at, |f| f.max(r.statement.at));
            let v = record_verdict(change, &r, policy, signers, at);
            (r, v)
        })
        .collect()
}

/// The verdict on one record of `change` under `policy`, a key's time limits judged at
/// `at`: its signature against the keys listed for its signer and, for a decision the
/// server attested, whether that policy lets the server attest it (SPEC 12.1,
/// `signing.server_attests`: the role, the change's risk level, the server's principal).
/// The one judgement validate, gate, audit, sync and the server all make.
pub fn record_verdict(
    change: &ChangeRequest,
    r: &crate::signing::Record<'_>,
    policy: &Policy,
    signers: &crate::signing::AllowedSigners,
    at: Timestamp,
) -> crate::signing::Verdict {
    use crate::signing::Verdict;
    let v = signers.verify(r.signer(), at, &r.statement.text(), r.signature);
    let Some(by) = r.attested_by else {
        return v;
    };
    let Verdict::Valid {
        fingerprint,
        passkey,
        ..
    } = v
    else {
        return v;
    };
    let role = r.statement.role.as_deref().unwrap_or("");
    let why = match policy.server_may_attest(role, change) {
        Err(why) => why,
        Ok(a) if a.signer != by => {
            format!("signing.server_attests.signer is {}, not {by}", a.signer)
        }
        Ok(_) if passkey || !matches!(r.action, "approve" | "reject") => {
            "only the server's own key attests, and only approvals and rejections".into()
        }
        Ok(_)
            if let Some(other) = signers
                .principals()
                .find(|(p, f)| *f == fingerprint && *p != by)
                .map(|(p, _)| p) =>
        {
            format!(
                "that key is also listed for {}: a person's key, not the server's own",
                crate::text::ascii_escaped(other)
            )
        }
        Ok(_) => {
            return Verdict::Valid {
                fingerprint,
                passkey,
                attested: Some(by.to_owned()),
            };
        }
    };
    Verdict::NotAttestable { fingerprint, why }
}

/// Why the content record a commit by `actor` left on `after` does not vouch for it (SPEC
/// section 9, `new` and `edit` in `signing.required_for`): a record the commit wrote must be
/// `actor`'s, for this action and this content; content filed or materially edited where
/// the policy requires it signed must come with such a record. Its signature is judged with
/// the other records. `before` is `None` for a change the commit created.
pub fn content_record_problem(
    before: Option<&ChangeRequest>,
    after: &ChangeRequest,
    actor: &str,
    policy: &Policy,
) -> Option<String> {
    let action = if before.is_none() { "new" } else { "edit" };
    let digest = after.material_digest();
    let changed = before.is_none_or(|b| b.material_digest() != digest);
    let written = match before {
        None => after.content_signature.is_some(),
        Some(b) => b.content_signature != after.content_signature,
    };
    match (&after.content_signature, written) {
        (Some(r), true) => {
            let requester = after.requester.as_deref().unwrap_or("");
            if !r.by.eq_ignore_ascii_case(actor)
                || r.action != action
                || r.digest != digest
                || action == "new" && !requester.eq_ignore_ascii_case(&r.by)
            {
                return Some(format!(
                    "the content record says {} by {} for {}, but this commit is {action} by {actor} of {}",
                    r.action, r.by, r.digest, digest
                ));
            }
            None
        }
        (None, true) => Some("the content record was removed".into()),
        _ if changed && policy.requires_signature(action) => Some(format!(
            "the content was {} without {actor}'s signed record (signing.required_for has {action})",
            if action == "new" { "filed" } else { "edited" }
        )),
        _ => None,
    }
}

/// The approvals (by index) that do not count because the policy requires approvals to be
/// signed and theirs is missing or does not verify.
/// Withdrawals are judged as approvals are: a withdrawal that is required signed and is not
/// is in the list, so gate and implement name it.
pub fn unsigned_approvals(change: &ChangeRequest, policy: &Policy) -> Vec<usize> {
    if !policy.requires_signature("approve") && !policy.requires_signature("withdraw") {
        return Vec::new();
    }
    signature_verdicts(change, policy)
        .into_iter()
        .filter(|(r, v)| {
            matches!(r.action, "approve" | "withdraw")
                && policy.requires_signature(r.action)
                && !v.is_valid()
        })
        .filter_map(|(r, _)| r.approval)
        .collect()
}

/// Signature problems of the file as it is (rule `signature`, at the record's place): an
/// invalid, foreign or transplanted signature always; a missing one where the policy
/// requires it, on a change that is not yet history (rejected, closed or cancelled changes
/// keep the records of the policy of their day).
pub fn signature_problems(change: &ChangeRequest, policy: &Policy) -> Vec<Problem> {
    let history = change.status().is_terminal();
    signature_verdicts(change, policy)
        .into_iter()
        .filter(|(_, v)| !(v.is_valid() || history && *v == crate::signing::Verdict::Missing))
        .map(|(r, v)| {
            let path = if v == crate::signing::Verdict::Missing {
                r.path
                    .rsplit_once('.')
                    .map_or(r.path.clone(), |(p, _)| p.to_owned())
            } else {
                r.path.clone()
            };
            problem(
                path,
                crate::signing::SIGNATURE,
                format!(
                    "the {} record by {}: {}",
                    r.action,
                    r.actor,
                    v.problem(r.signer()).unwrap_or_default()
                ),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Risk

/// Whether `change` leaves the policy's questionnaire unanswered where it is due: a change
/// out of draft, not closed, rejected or cancelled, not from a template, with no answers,
/// under a policy that asks it (and not for a change submitted before it did).
pub fn questionnaire_unanswered(change: &ChangeRequest, policy: &Policy) -> bool {
    policy.risk.as_ref().is_some_and(|q| !q.waived)
        && change.risk_assessment.is_none()
        && change.template.is_none()
        && change.status() != Status::Draft
        && !change.status().is_terminal()
}

/// Rule id: a risk questionnaire unanswered, or a declared risk level below its score's.
pub const RISK: &str = "risk";

/// The risk questionnaire's verdict (SPEC section 11): with `risk` in the policy, a change
/// not filed from a template answers every question once it leaves draft, and its
/// `risk_level` is never below the level its score gives. A closed, rejected or cancelled
/// change keeps its day's rules, as does one submitted before the policy asked the
/// questionnaire ([`Policy::for_intake`]): its answers are checked only where given.
pub fn risk_problems(change: &ChangeRequest, policy: &Policy) -> Vec<Problem> {
    let Some(q) = &policy.risk else {
        return Vec::new();
    };
    if change.template.is_some() || change.status().is_terminal() {
        return Vec::new();
    }
    let Some(answers) = &change.risk_assessment else {
        if !questionnaire_unanswered(change, policy) {
            return Vec::new();
        }
        let id = change
            .id
            .as_ref()
            .map_or("ID".to_owned(), ToString::to_string);
        return vec![problem("risk_assessment", RISK, q.unanswered_message(&id))];
    };
    let mut out = Vec::new();
    for id in answers.keys() {
        if !q.questions.iter().any(|x| &x.id == id) {
            let hint = suggest(id, q.questions.iter().map(|x| x.id.as_str()))
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            out.push(problem(
                format!("risk_assessment.{id}"),
                RISK,
                format!("`{id}` is not a question of the policy's risk questionnaire{hint}"),
            ));
        }
    }
    let missing: Vec<&str> = q
        .questions
        .iter()
        .filter(|x| !answers.contains_key(&x.id))
        .map(|x| x.id.as_str())
        .collect();
    if !missing.is_empty() {
        out.push(problem(
            "risk_assessment",
            RISK,
            format!("unanswered risk question(s): {}", missing.join(", ")),
        ));
    }
    let score = q.score(answers);
    let level = q.level(score);
    if let Some(declared) = change.risk_level
        && declared < level
    {
        out.push(problem(
            "risk_level",
            RISK,
            format!(
                "risk_level {declared} is below {level}, the level of the risk questionnaire's score ({score}); declare {level} or higher"
            ),
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------
// Time order

/// Rule id: a time recorded on a change earlier than one it follows.
pub const TIME_ORDER: &str = "time-order";

/// The times recorded on `change`, each with its field path, in the order the life cycle
/// records them: request, approvals, implementation start and end, review, cancellation.
fn recorded_times(change: &ChangeRequest) -> Vec<(String, Timestamp)> {
    let mut out = Vec::new();
    if let Some(t) = change.request_date {
        out.push(("request_date".to_owned(), t));
    }
    for (i, a) in change.approvals.iter().enumerate() {
        out.push((format!("approvals[{i}].at"), a.at));
    }
    if let Some(imp) = &change.implementation {
        if let Some(t) = imp.started_at {
            out.push(("implementation.started_at".to_owned(), t));
        }
        if let Some(t) = imp.completed_at {
            out.push(("implementation.completed_at".to_owned(), t));
        }
    }
    if let Some(r) = &change.review {
        out.push(("review.at".to_owned(), r.at));
    }
    if let Some(c) = &change.cancellation {
        out.push(("cancellation.at".to_owned(), c.at));
    }
    for (i, d) in change.deployments.iter().enumerate() {
        out.push((format!("deployments[{i}].at"), d.at));
    }
    out
}

/// The times `after` records that `before` did not (a step's own records; the request
/// date only when `after` is the change's first version).
pub(crate) fn new_times(
    before: Option<&ChangeRequest>,
    after: &ChangeRequest,
) -> Vec<(String, Timestamp)> {
    let old = before.map(recorded_times).unwrap_or_default();
    recorded_times(after)
        .into_iter()
        .filter(|(path, t)| {
            let refiled = path == "request_date" && before.is_some();
            !refiled && !old.contains(&(path.clone(), *t))
        })
        .collect()
}

/// How far ahead of the present a recorded time may be (clocks of different machines).
pub const CLOCK_SKEW: jiff::SignedDuration = jiff::SignedDuration::from_mins(10);

/// Times `change` records that lie in the future at `now` (beyond [`CLOCK_SKEW`]), rule
/// `time-order` at the field. An emergency's implementation dated ahead (`CHG_NOW=2106-…`)
/// would push its approval and review deadlines out of reach: an error. Other times are
/// warnings (a clock ahead, or a check run at an earlier `--at`/`CHG_NOW`).
pub fn future_problems(change: &ChangeRequest, now: Timestamp) -> Vec<Problem> {
    let limit = now.checked_add(CLOCK_SKEW).unwrap_or(now);
    recorded_times(change)
        .into_iter()
        .filter(|(_, t)| *t > limit)
        .map(|(field, t)| {
            let deadlines =
                change.model() == ChangeModel::Emergency && field == "implementation.started_at";
            let p = problem(
                field.clone(),
                TIME_ORDER,
                format!(
                    "{} records {field} {}, in the future (now {}); a step cannot be dated ahead{}",
                    id_of(change),
                    crate::model::format_timestamp(t),
                    crate::model::format_timestamp(now),
                    if deadlines {
                        ", or its emergency deadlines would never come"
                    } else {
                        ""
                    }
                ),
            );
            if deadlines {
                p
            } else {
                Problem {
                    severity: Severity::Warning,
                    ..p
                }
            }
        })
        .collect()
}

/// Why a step at `now` may not be recorded on `change`: it would be earlier than a time
/// already recorded (a clock set back, or `CHG_NOW` in the past), and reports would then
/// show negative durations.
pub fn time_refusal(change: &ChangeRequest, now: Timestamp) -> Option<Refusal> {
    let (field, latest) = recorded_times(change).into_iter().max_by_key(|(_, t)| *t)?;
    (now < latest).then(|| {
        Refusal::new(
            TIME_ORDER,
            format!(
                "{} records {field} {}, later than now ({}); a step cannot be recorded before it, check the clock",
                id_of(change),
                crate::model::format_timestamp(latest),
                crate::model::format_timestamp(now)
            ),
        )
    })
}

/// Times out of order in the file: an approval, an implementation or a cancellation before
/// the request, a completion before the start, a review before the completion.
pub fn time_problems(change: &ChangeRequest) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut check = |path: String, t: Timestamp, before: Option<(&str, Timestamp)>| {
        if let Some((what, b)) = before
            && t < b
        {
            out.push(problem(
                path,
                TIME_ORDER,
                format!(
                    "{} is before the {what} ({}); times on a change never go back",
                    crate::model::format_timestamp(t),
                    crate::model::format_timestamp(b)
                ),
            ));
        }
    };
    let request = change.request_date.map(|t| ("request", t));
    for (i, a) in change.approvals.iter().enumerate() {
        check(format!("approvals[{i}].at"), a.at, request);
    }
    // A withdrawal follows the approval it withdraws.
    for (w, a) in change.withdrawals() {
        if let Some(a) = a {
            check(
                format!("approvals[{w}].at"),
                change.approvals[w].at,
                Some(("approval it withdraws", change.approvals[a].at)),
            );
        }
    }
    let imp = change.implementation.as_ref();
    let started = imp.and_then(|i| i.started_at);
    let completed = imp.and_then(|i| i.completed_at);
    if let Some(t) = started {
        check("implementation.started_at".into(), t, request);
    }
    if let Some(t) = completed {
        let before = started.map(|s| ("implementation start", s)).or(request);
        check("implementation.completed_at".into(), t, before);
    }
    if let Some(r) = &change.review {
        let before = completed
            .map(|c| ("implementation's completion", c))
            .or(request);
        check("review.at".into(), r.at, before);
    }
    if let Some(c) = &change.cancellation {
        check("cancellation.at".into(), c.at, request);
    }
    for (i, d) in change.deployments.iter().enumerate() {
        check(format!("deployments[{i}].at"), d.at, request);
    }
    out
}

// ---------------------------------------------------------------------------------------
// Closing and reviews

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

// ---------------------------------------------------------------------------------------
// Emergency deadlines

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Implementation;

    /// An attested approval of `role` by em, signed by `key` and claiming `attested_by`.
    fn attested(
        key: &ssh_key::PrivateKey,
        role: &str,
        attested_by: &str,
        change: impl FnOnce(&mut ChangeRequest),
    ) -> ChangeRequest {
        let mut c = crate::model::sample_change();
        change(&mut c);
        c.approvals.push(crate::model::Approval {
            by: "em@example.com".into(),
            role: role.into(),
            decision: crate::model::Decision::Approved,
            at: ts("2025-03-02T10:00:00Z"),
            comments: None,
            conditions: vec![],
            digest: Some(c.material_digest()),
            signature: None,
            attested_by: Some(attested_by.into()),
            attested_via: Some("api token=tok_1".into()),
        });
        let text = crate::signing::records(&c)[0].statement.text();
        let sig = key
            .sign(
                crate::signing::NAMESPACE,
                ssh_key::HashAlg::Sha512,
                text.as_bytes(),
            )
            .unwrap()
            .to_pem(ssh_key::LineEnding::LF)
            .unwrap();
        c.approvals[0].signature = Some(sig);
        c
    }

    #[test]
    fn an_attestation_counts_only_where_the_policy_lets_the_servers_own_key_make_it() {
        let key = |seed: u8| {
            ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[seed; 32]))
        };
        let (server, alice) = (key(1), key(2));
        let public = |k: &ssh_key::PrivateKey| k.public_key().to_openssh().unwrap();
        let (policy, _) = Policy::parse(
            "policy.yaml",
            &format!(
                "{}signing:\n  allowed_signers: policy/allowed_signers\n  required_for: [approve]\n  server_attests: {{roles: [engineering-manager], max_risk: low, signer: chg-server@example.com}}\n",
                crate::policy::DEFAULT_POLICY
            ),
        )
        .unwrap();
        let judge = |c: &ChangeRequest, signers: &str| {
            let (signers, f) =
                crate::signing::AllowedSigners::parse("policy/allowed_signers", signers);
            assert!(f.is_empty(), "{f:?}");
            let r = &crate::signing::records(c)[0];
            record_verdict(c, r, &policy, &signers, r.statement.at)
        };
        let listed = format!(
            "chg-server@example.com {}\nalice@example.com {}\n",
            public(&server),
            public(&alice)
        );
        let good = attested(
            &server,
            "engineering-manager",
            "chg-server@example.com",
            |_| {},
        );
        assert!(
            matches!(judge(&good, &listed), crate::signing::Verdict::Valid { attested: Some(ref by), .. } if by == "chg-server@example.com")
        );
        let not = |v: crate::signing::Verdict, why: &str| match v {
            crate::signing::Verdict::NotAttestable { why: w, .. } => {
                assert!(w.contains(why), "{w}")
            }
            other => panic!("{why}: {other:?}"),
        };
        // Another role, a higher risk, a policy proposal: the policy does not allow it.
        not(
            judge(
                &attested(&server, "change-manager", "chg-server@example.com", |_| {}),
                &listed,
            ),
            "does not name the role",
        );
        not(
            judge(
                &attested(
                    &server,
                    "engineering-manager",
                    "chg-server@example.com",
                    |c| c.risk_level = Some(crate::model::RiskLevel::High),
                ),
                &listed,
            ),
            "above",
        );
        not(
            judge(
                &attested(
                    &server,
                    "engineering-manager",
                    "chg-server@example.com",
                    |c| c.proposed_policy = Some(Default::default()),
                ),
                &listed,
            ),
            "policy proposal",
        );
        // alice names herself as the attester: a valid signature of hers, not the server's.
        not(
            judge(
                &attested(&alice, "engineering-manager", "alice@example.com", |_| {}),
                &listed,
            ),
            "signer is chg-server@example.com",
        );
        // alice's key claimed as the server's: foreign.
        assert!(matches!(
            judge(
                &attested(
                    &alice,
                    "engineering-manager",
                    "chg-server@example.com",
                    |_| {}
                ),
                &listed
            ),
            crate::signing::Verdict::Foreign { .. }
        ));
        // The server's key also listed for a person (the policy check refuses such a file;
        // a record judged by it still never counts).
        let shared = format!("{listed}bob@example.com {}\n", public(&server));
        not(judge(&good, &shared), "also listed for bob@example.com");
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn emergency(started: &str, completed: Option<&str>) -> ChangeRequest {
        let mut c = crate::model::sample_change();
        c.change_model = Some(ChangeModel::Emergency);
        c.status = Some(if completed.is_some() {
            Status::Closed
        } else {
            Status::Implementing
        });
        c.implementation = Some(Implementation {
            implementer: Some("bob@example.com".into()),
            started_at: Some(ts(started)),
            completed_at: completed.map(ts),
            outcome: completed.map(|_| Outcome::Successful),
            test_results: None,
            ..Default::default()
        });
        c
    }

    #[test]
    fn the_review_deadline_counts_from_completion_for_validate_and_audit_alike() {
        // Before one home per rule, validate counted 48 h from the start (overdue at 60 h)
        // while audit counted from completion (not overdue): the two disagreed.
        let policy = Policy::default_policy();
        let c = emergency("2025-03-01T00:00:00Z", Some("2025-03-02T16:00:00Z"));
        assert_eq!(
            emergency_review_deadline(&c, &policy),
            Some(ts("2025-03-04T16:00:00Z"))
        );
        let at = ts("2025-03-03T12:00:00Z");
        assert!(
            emergency_overdue(&c, &policy, at)
                .iter()
                .all(|r| r.rule != EMERGENCY_REVIEW_MISSING)
        );
        let from_validate: Vec<&str> = crate::validate::change_problems(&c, &policy, Some(at))
            .iter()
            .filter(|p| p.path == "review")
            .map(|p| p.rule)
            .collect();
        assert!(from_validate.is_empty(), "{from_validate:?}");
        let late = ts("2025-03-05T00:00:00Z");
        assert!(
            emergency_overdue(&c, &policy, late)
                .iter()
                .any(|r| r.rule == EMERGENCY_REVIEW_MISSING)
        );
        assert!(
            crate::validate::change_problems(&c, &policy, Some(late))
                .iter()
                .any(|p| p.path == "review")
        );
    }

    #[test]
    fn deadlines_past_the_end_of_time_are_never_due_instead_of_overflowing() {
        let policy = Policy::default_policy();
        let c = emergency("9999-12-30T20:00:00Z", None);
        assert_eq!(emergency_approval_deadline(&c, &policy), None);
        assert!(
            crate::validate::change_problems(&c, &policy, Some(ts("9999-12-30T21:00:00Z"))).len()
                < 100
        );
    }

    #[test]
    fn a_withdrawal_follows_the_approval_it_withdraws_and_only_the_approver_withdraws() {
        let policy = Policy::default_policy();
        let mut c = crate::model::sample_change();
        let record = |by: &str, decision, at: &str| Approval {
            by: by.into(),
            role: "engineering-manager".into(),
            decision,
            at: ts(at),
            comments: None,
            conditions: vec![],
            digest: Some(c.material_digest()),
            signature: None,
            attested_by: None,
            attested_via: None,
        };
        c.approvals = vec![
            record("em@example.com", Decision::Approved, "2025-03-02T10:00:00Z"),
            record(
                "em@example.com",
                Decision::Withdrawn,
                "2025-03-02T09:00:00Z",
            ),
            record(
                "cm@example.com",
                Decision::Withdrawn,
                "2025-03-02T11:00:00Z",
            ),
        ];
        let found: Vec<(&str, String)> = time_problems(&c)
            .iter()
            .chain(&approval_problems(&c, &policy))
            .filter(|p| p.severity == Severity::Error)
            .map(|p| (p.rule, p.path.clone()))
            .collect();
        assert_eq!(
            found,
            [
                (TIME_ORDER, "approvals[1].at".to_owned()),
                (WITHDRAWAL, "approvals[2].by".to_owned())
            ]
        );
    }

    #[test]
    fn deciders_are_judged_once_for_workflow_validate_and_audit() {
        let policy = Policy::default_policy();
        let c = crate::model::sample_change();
        let requester = c.requester.clone().unwrap();
        let rules = |who: &str, role: &str| -> Vec<&str> {
            decider_refusals(&c, &policy, who, role, "approve")
                .iter()
                .map(|r| r.rule)
                .collect()
        };
        assert_eq!(
            rules("em@example.com", "engineering-manager"),
            Vec::<&str>::new()
        );
        assert_eq!(
            rules("nobody@example.com", "engineering-manager"),
            [APPROVAL_ROLE]
        );
        assert!(rules(&requester, "engineering-manager").contains(&SEGREGATION));
    }
}
