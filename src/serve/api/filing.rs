//! `POST …/change-requests`: a new change, built field by field through the library's own
//! parsing and filed with [`Store::create`](chg::store::Store::create).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chg::model::ChangeRequest;

use super::{ApiError, Body, CreateRequest, Created, ErrorBody, context, synced, text};
use crate::serve::auth::ApiPerson;
use crate::serve::{AppState, blocking_write};

/// The change a create request describes, field by field through the library's own
/// parsing (each refusal names the field).
fn new_change(r: CreateRequest) -> Result<ChangeRequest, ApiError> {
    let mut c = ChangeRequest::default();
    let mut set = |field: &str, value: Option<&str>| -> Result<(), ApiError> {
        if let Some(v) = value {
            c.set_field(field, v)
                .map_err(|e| ApiError::bad(field, format!("{field}: {e}")))?;
        }
        Ok(())
    };
    set("title", text(&r.title))?;
    set("description", text(&r.description))?;
    set("business_justification", text(&r.business_justification))?;
    set("change_type", text(&r.change_type))?;
    set(
        "change_model",
        Some(text(&r.change_model).unwrap_or("normal")),
    )?;
    set("priority", text(&r.priority))?;
    set("urgency", text(&r.urgency))?;
    set("risk_level", text(&r.risk_level))?;
    set("impact_scope", text(&r.impact_scope))?;
    set("implementation_plan", text(&r.implementation_plan))?;
    set("rollback_plan", text(&r.rollback_plan))?;
    set("test_plan", text(&r.test_plan))?;
    set("test_environment", text(&r.test_environment))?;
    if let Some(t) = r.testing_required {
        set("testing_required", Some(if t { "true" } else { "false" }))?;
    }
    for s in &r.affected_systems {
        if s.contains(',') || s.trim().is_empty() {
            return Err(ApiError::bad(
                "affected_systems",
                format!("affected_systems: `{s}` is not a system name (empty, or holds a comma)"),
            ));
        }
    }
    c.affected_systems = r
        .affected_systems
        .iter()
        .map(|s| s.trim().to_owned())
        .collect();
    c.risk_assessment = r.risk_assessment;
    Ok(c)
}

#[utoipa::path(post, path = "/api/v1/change-management/change-requests", request_body = CreateRequest,
    responses((status = 201, body = Created), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn create(
    State(state): State<AppState>,
    ApiPerson(person): ApiPerson,
    Body(req): Body<CreateRequest>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let draft = req.draft;
    let change = new_change(req)?;
    if change.model() == chg::model::ChangeModel::Standard {
        return Err(ApiError::bad(
            "change_model",
            "a standard change is filed from a template of the policy (chg new --template NAME)",
        ));
    }
    let out = blocking_write(&state, move |shared, store| {
        let policy = store.policy()?;
        if let Some(q) = &policy.risk
            && !draft
            && change.risk_assessment.is_none()
        {
            return Err(ApiError::bad(
                "risk_assessment",
                format!(
                    "risk_assessment: the policy's risk questionnaire is not answered ({})",
                    q.questions
                        .iter()
                        .map(|x| x.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        let ctx = context(shared, &person)?;
        synced(shared, store, &ctx)?;
        let o = store.create(&ctx, change, draft)?;
        synced(shared, store, &ctx)?;
        let estimated = policy
            .rule_for(&o.change)
            .and_then(|r| r.timeout)
            .map(|d| approval_time(d.to_signed().as_secs()));
        Ok(Created {
            change_request_id: o.change.id_text(),
            status: o.change.status().to_string(),
            approvers: o.waiting_for,
            estimated_approval_time: estimated,
            commit: o.commit.to_string(),
        })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// A timeout as the seed writes it: whole hours (`24h`, `72h`), else minutes.
fn approval_time(secs: i64) -> String {
    if secs % 3600 == 0 {
        format!("{}h", secs / 3600)
    } else {
        format!("{}m", secs / 60)
    }
}
