//! The step a commit made, read back from the versions before and after it: what audit
//! checks and sync brings onto another history.

use crate::model::{ChangeRequest, Schedule};
use crate::trailers::Action;

use super::Step;

/// The step that took `before` to `after`, as a chg commit's trailers name it (`action`,
/// `role`), with the details (comment, outcome, …) read from the version after. Used to
/// replay a commit: by audit to check it, by sync to bring it onto another history.
pub fn step_between(
    action: Action,
    role: Option<String>,
    before: &ChangeRequest,
    after: &ChangeRequest,
) -> std::result::Result<Step, String> {
    let added = (after.approvals.len() == before.approvals.len() + 1)
        .then(|| after.approvals.last())
        .flatten();
    Ok(match action {
        Action::Submit => Step::Submit,
        Action::Approve => Step::Approve {
            role,
            comment: added.and_then(|a| a.comments.clone()),
            conditions: added.map(|a| a.conditions.clone()).unwrap_or_default(),
        },
        Action::Reject => Step::Reject {
            role,
            comment: added
                .and_then(|a| a.comments.clone())
                .unwrap_or_else(|| "(none)".into()),
        },
        Action::Withdraw => Step::Withdraw {
            role,
            comment: added.and_then(|a| a.comments.clone()).unwrap_or_default(),
        },
        Action::Edit => {
            let mut new = after.clone();
            new.id = before.id.clone();
            new.requester = before.requester.clone();
            new.request_date = before.request_date;
            new.status = before.status;
            new.approvals = before.approvals.clone();
            new.schedule = before.schedule.clone();
            new.implementation = before.implementation.clone();
            new.review = before.review.clone();
            new.cancellation = before.cancellation.clone();
            new.deployments = before.deployments.clone();
            Step::Edit { new: Box::new(new) }
        }
        Action::Schedule => {
            let Some(Schedule {
                start,
                end,
                maintenance_window,
            }) = after.schedule.clone()
            else {
                return Err("chg `schedule` left the change without a schedule".into());
            };
            Step::Schedule {
                start,
                end,
                maintenance_window: Some(maintenance_window),
            }
        }
        Action::Implement => Step::Implement,
        Action::Close => {
            let imp = after.implementation.clone().unwrap_or_default();
            let Some(outcome) = imp.outcome else {
                return Err("chg `close` left the change without an outcome".into());
            };
            let before_results = before
                .implementation
                .as_ref()
                .and_then(|i| i.test_results.clone());
            Step::Close {
                outcome,
                test_results: imp
                    .test_results
                    .filter(|t| Some(t) != before_results.as_ref()),
                review: after.review.as_ref().map(|r| r.summary.clone()),
            }
        }
        Action::Cancel => Step::Cancel {
            reason: after
                .cancellation
                .as_ref()
                .map(|c| c.reason.clone())
                .unwrap_or_default(),
        },
        Action::Deploy => {
            let added = (after.deployments.len() == before.deployments.len() + 1)
                .then(|| after.deployments.last())
                .flatten();
            let Some(d) = added else {
                return Err("chg `deploy` adds exactly one deployment record".into());
            };
            Step::Deploy {
                commit: d.commit.clone(),
                environment: d.environment.clone(),
                run: d.run.clone(),
            }
        }
        other => {
            return Err(format!(
                "`Chg-Action: {other}` is not a step on a change's content"
            ));
        }
    })
}
