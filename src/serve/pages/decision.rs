//! The decision form posted from a change's page: checked as the API's bodies are, then
//! taken through the API's own decide.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::error_page;
use crate::serve::api::{self, ApiError, ApproveRequest};
use crate::serve::auth::{PagePerson, check_csrf};
use crate::serve::{AppState, blocking_write};

#[derive(Deserialize)]
pub(super) struct DecideForm {
    csrf: Option<String>,
    decision: String,
    role: Option<String>,
    comments: Option<String>,
    conditions: Option<String>,
    // A passkey approval (filled by the passkey button's script; empty otherwise).
    at: Option<String>,
    client_data_json: Option<String>,
    authenticator_data: Option<String>,
    signature: Option<String>,
    credential_id: Option<String>,
}

pub(super) async fn decide(
    State(state): State<AppState>,
    who: PagePerson,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<DecideForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return error_page(Some(&who), ApiError::bad("body", "the form is malformed"));
    };
    if let Err(e) = check_csrf(&state, &headers, form.csrf.as_deref(), Some(&who.csrf)) {
        return error_page(Some(&who), e);
    }
    // As the API's bodies: a NUL cannot be kept in a change file or a commit.
    if [&form.comments, &form.conditions]
        .into_iter()
        .flatten()
        .any(|t| t.contains('\0'))
    {
        return error_page(
            Some(&who),
            ApiError::bad("body", "a text may not contain a NUL character"),
        );
    }
    let approved = match form.decision.as_str() {
        "approve" => true,
        "reject" => false,
        _ => {
            return error_page(
                Some(&who),
                ApiError::bad("decision", "decision: approve or reject"),
            );
        }
    };
    let req = ApproveRequest {
        approved,
        comments: form.comments,
        conditions: form
            .conditions
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        role: form.role,
        passkey: crate::serve::passkey::from_form(
            form.client_data_json.as_deref(),
            form.authenticator_data.as_deref(),
            form.signature.as_deref(),
            form.credential_id.as_deref(),
        ),
        at: form.at.filter(|a| !a.is_empty()),
        ..Default::default()
    };
    let person = who.person.clone();
    let r = blocking_write(&state, move |shared, store| {
        api::decide(shared, store, &person, &id, req)
    })
    .await;
    match r {
        // Post, redirect, get: reloading the page does not send the decision again.
        Ok(d) => Redirect::to(&format!(
            "/changes/{}?decided={}",
            d.change_request_id,
            d.commit.get(..8).unwrap_or(&d.commit)
        ))
        .into_response(),
        Err(e) => error_page(Some(&who), e),
    }
}
