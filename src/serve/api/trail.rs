//! `GET …/history` and `GET …/gate`: what git records of one change (each step with the
//! audit's word on it) and whether it may be deployed now.

use axum::Json;
use axum::extract::{Path, State};
use chg::model::{ChangeId, ChangeRequest, format_timestamp};
use chg::store::Store;

use super::{ApiError, ErrorBody, Gate, History, HistoryItem, Reason, parse_id};
use crate::serve::auth::{ApiPerson, now};
use crate::serve::{AppState, blocking};

/// The seed's word for an action.
pub fn action_word(action: &str) -> &str {
    match action {
        "new" => "created",
        "submit" => "submitted",
        "approve" => "approved",
        "reject" => "rejected",
        "withdraw" => "withdrawn",
        "edit" => "edited",
        "schedule" => "scheduled",
        "implement" => "implemented",
        "close" => "completed",
        "cancel" => "cancelled",
        "renumber" => "renumbered",
        "deploy" => "deployed",
        other => other,
    }
}

/// A change's history from git, as `chg log` reads it.
pub fn history_of(store: &Store, id: &ChangeId) -> Result<History, ApiError> {
    store.find(id)?;
    let entries = chg::audit::change_log(store, id, now())?;
    Ok(History {
        change_id: id.to_string(),
        history: entries
            .iter()
            .map(|e| HistoryItem {
                timestamp: format_timestamp(e.when),
                action: action_word(&e.action).to_owned(),
                user: e.email.clone(),
                details: e.subject.clone(),
                commit: e.commit.clone(),
                audit: e.verdict(),
            })
            .collect(),
    })
}

#[utoipa::path(get, path = "/api/v1/change-management/change-requests/{id}/history",
    params(("id" = String, Path, description = "CHG-2025-001")),
    responses((status = 200, body = History), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn history(
    State(state): State<AppState>,
    ApiPerson(_): ApiPerson,
    Path(id): Path<String>,
) -> Result<Json<History>, ApiError> {
    let out = blocking(&state, move |_, store| {
        let policy = store.policy()?;
        let id = parse_id(&id, &policy)?;
        history_of(store, &id)
    })
    .await?;
    Ok(Json(out))
}

#[utoipa::path(get, path = "/api/v1/change-management/change-requests/{id}/gate",
    params(("id" = String, Path, description = "CHG-2025-001")),
    responses((status = 200, body = Gate), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn gate(
    State(state): State<AppState>,
    ApiPerson(_): ApiPerson,
    Path(id): Path<String>,
) -> Result<Json<Gate>, ApiError> {
    let out = blocking(&state, move |shared, store| {
        let policy = store.policy()?;
        let id = parse_id(&id, &policy)?;
        let now = now();
        let (all, conflicting, times) = shared.conflict_candidates(store)?;
        let others: Vec<&ChangeRequest> = conflicting.iter().map(|i| all[*i].change()).collect();
        let requested_with = |c: &ChangeRequest| -> Vec<&chg::store::Loaded> {
            times
                .get(&c.request_date)
                .into_iter()
                .flatten()
                .map(|i| &*all[*i])
                .collect()
        };
        let reasons = store.gate_among(&id, &policy, now, now, (&requested_with, &others))?;
        Ok(Gate {
            open: reasons.is_empty(),
            reasons: reasons
                .into_iter()
                .map(|r| Reason {
                    rule: r.rule.to_owned(),
                    message: r.message,
                })
                .collect(),
        })
    })
    .await?;
    Ok(Json(out))
}
