//! Risk: the policy's questionnaire (SPEC section 11) against a change's answers and
//! declared level.

use crate::finding::suggest;
use crate::model::{ChangeRequest, Status};
use crate::policy::Policy;

use super::{Problem, problem};

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
