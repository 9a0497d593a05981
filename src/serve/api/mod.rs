//! The JSON API (SPEC section 12): the seed's paths and fields, errors as
//! `{"error": {"rule", "message"}}` with the SPEC's status codes, and the OpenAPI document
//! generated from this code at `/api/v1/openapi.json`.
//!
//! Every handler authenticates ([`ApiPerson`](super::auth::ApiPerson)), then runs the
//! library's own calls in a blocking task: lists and counts from [`chg::query`], steps
//! through [`Store::transition`] and [`Store::create`], the gate from [`Store::gate`].
//! Nothing here judges a rule.
//!
//! This file holds the routes, the OpenAPI document and what every handler shares (the
//! context of a step, the sync with `--remote`); the handlers are grouped by what they do:
//! [`errors`] and [`extract`] (the error shape and the extractors that answer in it),
//! [`shapes`] (bodies and answers), [`filing`], [`listing`], [`decisions`],
//! [`implementation`], [`trail`] (history and gate) and [`figures`] (the report).

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jiff::Timestamp;
use utoipa::OpenApi;

use super::auth::{Person, now};
use super::{AppState, Shared};
use chg::store::Store;

mod decisions;
mod errors;
mod extract;
mod figures;
mod filing;
mod implementation;
mod listing;
mod shapes;
mod trail;

pub use decisions::{decide, statement_for};
pub use errors::{ApiError, ErrorBody, ErrorDetail, not_found, parse_id};
pub use extract::{Body, Params};
pub use figures::report_json;
pub use listing::{list_query, run, run_now};
pub use shapes::{
    ApproveRequest, CompleteRequest, Completed, CreateRequest, Created, Decided, Gate, History,
    HistoryItem, ImplementRequest, Implemented, ListParams, Reason, ReportParams, StatementAnswer,
    StatementParams,
};
pub use trail::history_of;

// The handlers by name, with the structs `#[utoipa::path]` made for them: utoipa tags a
// handler given with a module path (`filing::create`) by that module, which would change
// the OpenAPI document.
use decisions::{__path_approve, __path_statement, approve, statement};
use figures::{__path_report, report};
use filing::{__path_create, create};
use implementation::{__path_complete, __path_implement, complete, implement};
use listing::{__path_list, __path_show, list, show};
use trail::{__path_gate, __path_history, gate, history};

/// The API's base path.
pub const BASE: &str = "/api/v1/change-management/change-requests";

// ---------------------------------------------------------------------------------------
// Routes

/// The API's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(BASE, post(create).get(list))
        .route(&format!("{BASE}/{{id}}"), get(show))
        .route(&format!("{BASE}/{{id}}/approve"), post(approve))
        .route(&format!("{BASE}/{{id}}/implement"), post(implement))
        .route(&format!("{BASE}/{{id}}/complete"), post(complete))
        .route(&format!("{BASE}/{{id}}/history"), get(history))
        .route(&format!("{BASE}/{{id}}/gate"), get(gate))
        .route(&format!("{BASE}/{{id}}/statement"), get(statement))
        .route("/api/v1/change-management/reports", get(report))
        .route("/api/v1/openapi.json", get(openapi))
}

/// The OpenAPI document of the API, generated from this code.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "chg",
        description = "Change management in git: every state change is one commit authored by the person the request authenticated."
    ),
    paths(create, list, show, approve, implement, complete, history, gate, statement, report),
    components(schemas(
        CreateRequest,
        Created,
        ApproveRequest,
        Decided,
        ImplementRequest,
        Implemented,
        CompleteRequest,
        Completed,
        History,
        HistoryItem,
        Gate,
        Reason,
        StatementAnswer,
        ErrorBody,
        ErrorDetail
    )),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

async fn openapi() -> Response {
    Json(ApiDoc::openapi()).into_response()
}

/// The context of a step taken for `person` now, recording the token in the commit.
pub fn context(shared: &Shared, person: &Person) -> Result<chg::Context, ApiError> {
    context_at(shared, person, now())
}

/// [`context`] at `at`.
pub fn context_at(
    shared: &Shared,
    person: &Person,
    at: Timestamp,
) -> Result<chg::Context, ApiError> {
    let identity = chg::Identity::new(&person.name, &person.email)?;
    Ok(chg::Context::new(identity, at)
        .waiting(shared.lock_timeout)
        .via(person.via()))
}

/// With `--remote`: syncs with it (fetch, replay, push) under the store lock, as `chg
/// sync` does. Called before a state change (so that it judges what the other servers and
/// CLI users recorded) and after it (so that the answer is given only once the remote has
/// the step).
pub fn synced(shared: &Shared, store: &Store, ctx: &chg::Context) -> Result<(), ApiError> {
    if let Some(remote) = &shared.remote {
        chg::sync::sync(
            store,
            ctx,
            &chg::sync::Options {
                remote: Some(remote.clone()),
                drop_stale: false,
                attempts: 5,
            },
        )
        .map_err(|e| {
            let e = ApiError::from(e);
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "sync",
                format!("cannot sync with `{remote}`: {} ({})", e.message, e.rule),
            )
        })?;
    }
    Ok(())
}

/// The text of an optional field, `None` when absent or blank.
fn text(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.trim().is_empty())
}
