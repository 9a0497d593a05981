//! `POST …/implement` and `POST …/complete`: implementation started (scheduled first where
//! the request names another window) and finished with its outcome.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chg::Error;
use chg::model::{ChangeId, ChangeRequest, Outcome, Schedule, format_timestamp};
use chg::store::Store;
use chg::workflow::Step;
use jiff::Timestamp;

use super::{
    ApiError, Body, CompleteRequest, Completed, ErrorBody, ImplementRequest, Implemented, context,
    parse_id, synced, text,
};
use crate::serve::auth::{ApiPerson, now};
use crate::serve::{AppState, blocking_write};

#[utoipa::path(post, path = "/api/v1/change-management/change-requests/{id}/implement", request_body = ImplementRequest,
    params(("id" = String, Path, description = "CHG-2025-001")),
    responses((status = 200, body = Implemented), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn implement(
    State(state): State<AppState>,
    ApiPerson(person): ApiPerson,
    Path(id): Path<String>,
    Body(req): Body<ImplementRequest>,
) -> Result<Json<Implemented>, ApiError> {
    let start = scheduled_start(req.scheduled_time.as_deref())?;
    let out = blocking_write(&state, move |shared, store| {
        synced(shared, store, &context(shared, &person)?)?;
        let policy = store.policy()?;
        let id = parse_id(&id, &policy)?;
        let loaded = store.load(&id)?;
        let c = loaded.change();
        if let Some(plan) = text(&req.implementation_plan)
            && c.implementation_plan.as_deref().map(str::trim) != Some(plan.trim())
        {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "approved-content",
                "implementation_plan differs from the change's plan; a new plan is an edit, which voids approvals: change it before approval",
            ));
        }
        let mut commits = Vec::new();
        let now = now();
        let ctx = context(shared, &person)?;
        if let Some(commit) = schedule_first(store, &ctx, &id, c, &req, start, now)? {
            commits.push(commit);
        }
        let begins = store
            .load(&id)?
            .change()
            .schedule
            .as_ref()
            .map(|s| (s.start, s.end));
        // A window that starts later: scheduled now, implemented then.
        if let Some((s, e)) = begins
            && s > now
        {
            synced(shared, store, &ctx)?;
            return Ok(Implemented {
                change_request_id: id.to_string(),
                status: store.load(&id)?.change().status().to_string(),
                implementation_started: None,
                estimated_completion: Some(format_timestamp(e)),
                commits,
            });
        }
        let o = store.transition(&ctx, &id, Step::Implement)?;
        commits.push(o.commit.to_string());
        synced(shared, store, &ctx)?;
        let imp = o.change.implementation.as_ref();
        Ok(Implemented {
            change_request_id: o.change.id_text(),
            status: o.change.status().to_string(),
            implementation_started: imp.and_then(|i| i.started_at).map(format_timestamp),
            estimated_completion: o.change.schedule.as_ref().map(|s| format_timestamp(s.end)),
            commits,
        })
    })
    .await?;
    Ok(Json(out))
}

/// The start a request names (`scheduled_time`, RFC 3339), if any: 400 when it is not a
/// time or not a whole second.
fn scheduled_start(scheduled_time: Option<&str>) -> Result<Option<Timestamp>, ApiError> {
    let start = scheduled_time
        .map(|t| {
            t.parse::<Timestamp>().map_err(|e| {
                ApiError::bad(
                    "scheduled_time",
                    format!("scheduled_time: `{t}` is not an RFC 3339 time: {e}"),
                )
            })
        })
        .transpose()?;
    if let Some(s) = start
        && s.subsec_nanosecond() != 0
    {
        return Err(ApiError::bad(
            "scheduled_time",
            "scheduled_time: chg records whole seconds",
        ));
    }
    Ok(start)
}

/// Whether the request asks for another window than the change has: another start, or
/// another answer to whether it runs inside a maintenance window.
fn needs_schedule(
    start: Option<Timestamp>,
    schedule: Option<&Schedule>,
    maintenance_window: Option<bool>,
) -> bool {
    match (start, schedule) {
        (Some(s), Some(sch)) => {
            sch.start != s || maintenance_window.is_some_and(|m| m != sch.maintenance_window)
        }
        (Some(_), None) => true,
        (None, Some(sch)) => maintenance_window.is_some_and(|m| m != sch.maintenance_window),
        (None, None) => false,
    }
}

/// Where the request asks for another window than `c` has, schedules it there (starting
/// at `start`, else its own start, else now; as long as its window was, else two hours),
/// and returns the commit; refused before committing when implementing now would then be.
fn schedule_first(
    store: &Store,
    ctx: &chg::Context,
    id: &ChangeId,
    c: &ChangeRequest,
    req: &ImplementRequest,
    start: Option<Timestamp>,
    now: Timestamp,
) -> Result<Option<String>, ApiError> {
    let schedule = c.schedule.clone();
    if !needs_schedule(start, schedule.as_ref(), req.maintenance_window) {
        return Ok(None);
    }
    let s = start.or(schedule.as_ref().map(|x| x.start)).unwrap_or(now);
    let length = schedule
        .as_ref()
        .map(|x| x.end.duration_since(x.start))
        .filter(|d| d.as_secs() > 0)
        .unwrap_or(jiff::SignedDuration::from_hours(2));
    let end = s
        .checked_add(length)
        .map_err(|e| ApiError::bad("scheduled_time", format!("scheduled_time: {e}")))?;
    // One request, one outcome: a schedule that implementing now would then refuse
    // (a window already over, a freeze, an approval missing) is refused before it is
    // committed, not left behind (found by an attacker session).
    if s <= now {
        let mut would = c.clone();
        would.schedule = Some(Schedule {
            start: s,
            end,
            maintenance_window: req
                .maintenance_window
                .or(schedule.as_ref().map(|x| x.maintenance_window))
                .unwrap_or(false),
        });
        let policy = store.policy()?;
        if let Some(r) = chg::rules::implement_refusals(&would, &policy, now)
            .into_iter()
            .next()
        {
            return Err(Error::Refused(r).into());
        }
    }
    let o = store.transition(
        ctx,
        id,
        Step::Schedule {
            start: s,
            end,
            maintenance_window: req.maintenance_window,
        },
    )?;
    Ok(Some(o.commit.to_string()))
}

#[utoipa::path(post, path = "/api/v1/change-management/change-requests/{id}/complete", request_body = CompleteRequest,
    params(("id" = String, Path, description = "CHG-2025-001")),
    responses((status = 200, body = Completed), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn complete(
    State(state): State<AppState>,
    ApiPerson(person): ApiPerson,
    Path(id): Path<String>,
    Body(req): Body<CompleteRequest>,
) -> Result<Json<Completed>, ApiError> {
    let outcome = match req.status.as_str() {
        "completed" | "successful" => Outcome::Successful,
        "failed" => Outcome::Failed,
        "rolled_back" => Outcome::RolledBack,
        other => {
            return Err(ApiError::bad(
                "status",
                format!("status: `{other}` is not one of completed, failed, rolled_back"),
            ));
        }
    };
    let out = blocking_write(&state, move |shared, store| {
        synced(shared, store, &context(shared, &person)?)?;
        let policy = store.policy()?;
        let id = parse_id(&id, &policy)?;
        let ctx = context(shared, &person)?;
        let o = store.transition(
            &ctx,
            &id,
            Step::Close {
                outcome,
                test_results: text(&req.test_results).map(str::to_owned),
                review: text(&req.post_implementation_review).map(str::to_owned),
            },
        )?;
        synced(shared, store, &ctx)?;
        let done = o
            .change
            .implementation
            .as_ref()
            .and_then(|i| i.completed_at);
        let next_review = done.and_then(|t| {
            t.to_zoned(jiff::tz::TimeZone::UTC)
                .checked_add(jiff::Span::new().months(1))
                .ok()
                .map(|z| z.date().to_string())
        });
        Ok(Completed {
            change_request_id: o.change.id_text(),
            status: match outcome {
                Outcome::Successful => "completed",
                Outcome::Failed => "failed",
                Outcome::RolledBack => "rolled_back",
            }
            .into(),
            completed_at: done.map(format_timestamp),
            next_review,
            commit: o.commit.to_string(),
        })
    })
    .await?;
    Ok(Json(out))
}
