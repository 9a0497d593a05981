//! Time order: the times a change records never go back, and are not dated ahead.

use jiff::Timestamp;

use crate::error::Refusal;
use crate::finding::Severity;
use crate::model::{ChangeModel, ChangeRequest};

use super::{Problem, id_of, problem};

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
