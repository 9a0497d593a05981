//! One home for each policy rule. Every rule is a pure function of a change, the policy and,
//! where it matters, who acts and when; it returns every reason it says no.
//!
//! The life cycle ([`crate::workflow`]) refuses at the first reason, `chg validate` and
//! `chg audit` report them all with their places or commits, and `chg gate` lists them for a
//! pipeline: so the four can never disagree about what a rule means.

use crate::finding::{Severity, suggest};
use crate::model::ChangeRequest;
use crate::policy::Policy;

mod approval;
mod duties;
mod emergency;
mod implement;
mod review;
mod risk;
mod signatures;
mod time_order;

pub use approval::{
    APPROVAL_ROLE, Decider, EMERGENCY_DECLARATION, Provenance, SEGREGATION, UNVERIFIED, WITHDRAWAL,
    approval_problems, decider_problems, decider_refusals, emergency_declaration_refusal,
    missing_roles, proven_author_approves, proven_author_refusal, proven_creator_implements,
    requester_refusal, withdrawal_refusal,
};
pub use duties::{
    duty_problems, implementer_approves_refusal, implementer_failures, implementer_refusals,
    implementer_reviews_refusal, segregation_failures,
};
pub use emergency::{
    EMERGENCY_APPROVAL_LATE, EMERGENCY_APPROVAL_MISSING, EMERGENCY_REVIEW_LATE,
    EMERGENCY_REVIEW_MISSING, emergency_approval_deadline, emergency_approval_late,
    emergency_overdue, emergency_review_deadline, emergency_review_late,
};
pub use implement::{
    DEPLOY_GATE, LIFECYCLE, UNSCHEDULED, deploy_refusal, gate, implement_refusals, schedule_problem,
};
pub use review::{REVIEW_MISSING, review_refusal};
pub use risk::{RISK, questionnaire_unanswered, risk_problems};
pub use signatures::{
    DUPLICATE_REQUEST, content_record_problem, record_verdict, repeats_request, same_request,
    signature_problems, signature_verdicts, signature_verdicts_since, unsigned_approvals,
};
pub(crate) use time_order::new_times;
pub use time_order::{CLOCK_SKEW, TIME_ORDER, future_problems, time_problems, time_refusal};

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
#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Approval, ChangeModel, Decision, Implementation, Outcome, Status};
    use jiff::Timestamp;

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
