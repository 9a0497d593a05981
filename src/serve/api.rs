//! The JSON API (SPEC section 12): the seed's paths and fields, errors as
//! `{"error": {"rule", "message"}}` with the SPEC's status codes, and the OpenAPI document
//! generated from this code at `/api/v1/openapi.json`.
//!
//! Every handler authenticates ([`ApiPerson`]), then runs the library's own calls in a
//! blocking task: lists and counts from [`chg::query`], steps through
//! [`Store::transition`] and [`Store::create`], the gate from [`Store::gate`]. Nothing here
//! judges a rule.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chg::Error;
use chg::model::{ChangeId, ChangeRequest, Outcome, Status, format_timestamp};
use chg::policy::Policy;
use chg::store::Store;
use chg::workflow::Step;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::auth::{ApiPerson, Person, now};
use super::{AppState, Shared, blocking, blocking_write};

/// The API's base path.
pub const BASE: &str = "/api/v1/change-management/change-requests";

// ---------------------------------------------------------------------------------------
// Errors

/// An error answer: a status, the rule that said no, one sentence.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The rule id (`approval-role`, `lifecycle`, `authentication`, `body`, …).
    pub rule: String,
    /// One sentence.
    pub message: String,
}

/// The error body.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// The rule that refused (as `chg validate`, `chg audit` and `chg gate` name rules),
    /// or the kind of failure (`authentication`, `body`, `not-found`, `rate-limit`).
    rule: String,
    /// One sentence.
    message: String,
}

impl ApiError {
    /// An error with this status, rule and message.
    pub fn new(status: StatusCode, rule: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            rule: rule.to_owned(),
            message: message.into(),
        }
    }

    /// 400: the request is wrong (`rule` names what: `body`, a field, `id`).
    pub fn bad(rule: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, rule, message)
    }

    /// 500: the server failed, not the client.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

/// The status a library refusal answers with: 403 where the person may not do it, 400
/// where the request lacks what the rule needs, 409 where the life cycle, a window or
/// the state of the store refuses it.
pub fn refusal_status(rule: &str) -> StatusCode {
    match rule {
        chg::rules::APPROVAL_ROLE
        | chg::rules::SEGREGATION
        | chg::rules::EMERGENCY_DECLARATION
        | chg::signing::SIGNATURE
        | "implementer"
        | "authorization" => StatusCode::FORBIDDEN,
        chg::rules::REVIEW_MISSING | chg::rules::RISK | "required" => StatusCode::BAD_REQUEST,
        _ => StatusCode::CONFLICT,
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let status = match &e {
            Error::Refused(r) => refusal_status(r.rule),
            Error::Usage(_) | Error::Ambiguous { .. } | Error::Invalid { .. } => {
                StatusCode::BAD_REQUEST
            }
            Error::Malformed(_) | Error::Findings(_) => StatusCode::CONFLICT,
            Error::UnknownId(_) => StatusCode::NOT_FOUND,
            Error::NoSigningKey(_) => StatusCode::FORBIDDEN,
            Error::Dirty(_) | Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Locked(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::NoStore(_)
            | Error::NoIdentity
            | Error::Git(_)
            | Error::Io { .. }
            | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let rule = match &e {
            Error::Refused(r) => r.rule.to_owned(),
            Error::Invalid { summary, .. } if summary.starts_with("missing required") => {
                "required".into()
            }
            Error::Usage(_) | Error::Invalid { .. } => "invalid".into(),
            Error::Ambiguous { what, .. } => (*what).to_owned(),
            Error::UnknownId(_) => "not-found".into(),
            Error::NoSigningKey(_) => chg::signing::SIGNATURE.into(),
            Error::Dirty(_) | Error::Conflict(_) => "conflict".into(),
            Error::Locked(_) => "locked".into(),
            Error::Malformed(_) | Error::Findings(_) => "malformed".into(),
            _ => "internal".into(),
        };
        let mut message = match &e {
            Error::NoSigningKey(action) => format!(
                "the policy requires `{action}` to be signed: send `signature`, the armored SSHSIG of the statement from GET …/statement (or approve with a passkey on the web page)"
            ),
            Error::Refused(r) => match &r.hint {
                Some(h) => format!("{}; {h}", r.message),
                None => r.message.clone(),
            },
            Error::Invalid { summary, findings } => {
                let mut s = summary.clone();
                for f in findings {
                    s.push_str(&format!(" {};", f.message));
                }
                s.trim_end_matches(';').to_owned()
            }
            Error::Ambiguous {
                message, choices, ..
            } => format!("{message} (one of: {})", choices.join(", ")),
            e => e.to_string(),
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %message, "internal error");
        }
        message = chg::text::one_line(&message).into_owned();
        ApiError {
            status,
            rule,
            message,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(json!({"error": {"rule": self.rule, "message": self.message}})),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED
            && let Ok(v) = "Bearer".parse()
        {
            r.headers_mut()
                .insert(axum::http::header::WWW_AUTHENTICATE, v);
        }
        r
    }
}

/// A JSON body, refused as 400 (malformed, a field of the wrong type, naming it), 413 (too
/// large) or 415 (not `application/json`) in the API's error shape.
pub struct Body<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let value = match Json::<Value>::from_request(req, state).await {
            Ok(Json(v)) => v,
            Err(e) => return Err(json_rejection(e)),
        };
        // A NUL cannot be kept in a change file or a commit: refused as the client's
        // mistake, with where it is (it was a 500, found by an attacker session).
        if let Some(at) = nul_at(&value, "") {
            return Err(ApiError::bad(
                field_of(&at),
                format!("{at}: a text may not contain a NUL character"),
            ));
        }
        // The field a wrong value is in is the rule, as for every other field error.
        serde_path_to_error::deserialize(value)
            .map(Body)
            .map_err(|e| {
                let at = e.path().to_string();
                ApiError::bad(
                    field_of(&at),
                    format!(
                        "Failed to deserialize the JSON body into the target type: {at}: {}",
                        e.inner()
                    ),
                )
            })
    }
}

/// The top-level field a path (`conditions[0]`, `passkey.signature`) is in; `body` for
/// the body as a whole (`.` or empty).
fn field_of(path: &str) -> &str {
    let field = path.split(['.', '[']).next().unwrap_or("");
    if field.is_empty() { "body" } else { field }
}

/// Where in `v` a string (or a key) holds a NUL character, as a path (`title`,
/// `conditions[0]`), if anywhere.
fn nul_at(v: &Value, path: &str) -> Option<String> {
    let here = |p: &str| {
        if p.is_empty() {
            "body".to_owned()
        } else {
            p.to_owned()
        }
    };
    match v {
        Value::String(s) => s.contains('\0').then(|| here(path)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, x)| nul_at(x, &format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, x)| {
            let at = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            if k.contains('\0') {
                return Some(here(path));
            }
            nul_at(x, &at)
        }),
        _ => None,
    }
}

fn json_rejection(e: JsonRejection) -> ApiError {
    match e {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content-type",
            "the body must be JSON, sent with `Content-Type: application/json`",
        ),
        JsonRejection::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body",
                "the body is too large",
            )
        }
        JsonRejection::JsonDataError(d) => ApiError::bad("body", d.body_text()),
        JsonRejection::JsonSyntaxError(d) => ApiError::bad("body", d.body_text()),
        other => {
            let status = other.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(status, "body", "the body is too large")
            } else {
                ApiError::bad("body", other.body_text())
            }
        }
    }
}

/// Query parameters, refused as 400 in the API's error shape.
pub struct Params<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S>
    for Params<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Params(v)),
            Err(e) => Err(query_rejection(e)),
        }
    }
}

fn query_rejection(e: QueryRejection) -> ApiError {
    ApiError::bad("query", e.body_text())
}

/// 404 for any path the server does not have.
pub async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "no such page or endpoint",
    )
}

/// A change id from a path: 400 for anything that is not an id (a path, `..`), before any
/// file is looked at.
pub fn parse_id(text: &str, policy: &Policy) -> Result<ChangeId, ApiError> {
    let id: ChangeId = text.parse().map_err(|e: String| ApiError::bad("id", e))?;
    if id.prefix() != policy.id_prefix {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no change {text} in this store"),
        ));
    }
    Ok(id)
}

// ---------------------------------------------------------------------------------------
// Shapes

/// A new change: the seed's fields and the rest of the change's content fields.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// One line.
    pub title: Option<String>,
    /// What changes.
    pub description: Option<String>,
    /// Why.
    pub business_justification: Option<String>,
    /// One of the policy's change types.
    pub change_type: Option<String>,
    /// standard, normal (the default) or emergency.
    pub change_model: Option<String>,
    /// critical, high, medium, low.
    pub priority: Option<String>,
    /// emergency, high, medium, low.
    pub urgency: Option<String>,
    /// low, medium, high, critical.
    pub risk_level: Option<String>,
    /// Systems touched.
    #[serde(default)]
    pub affected_systems: Vec<String>,
    /// Who or what is affected.
    pub impact_scope: Option<String>,
    /// How it will be done.
    pub implementation_plan: Option<String>,
    /// How it will be undone.
    pub rollback_plan: Option<String>,
    /// Whether testing is part of the plan.
    pub testing_required: Option<bool>,
    /// How it will be tested.
    pub test_plan: Option<String>,
    /// Where it will be tested.
    pub test_environment: Option<String>,
    /// Answers to the policy's risk questionnaire, by question id.
    pub risk_assessment: Option<std::collections::BTreeMap<String, bool>>,
    /// File it as a draft (not yet submitted for approval).
    #[serde(default)]
    pub draft: bool,
}

/// The answer to a new change.
#[derive(Debug, Serialize, ToSchema)]
pub struct Created {
    /// The id it was filed under.
    pub change_request_id: String,
    /// pending_approval (or draft).
    pub status: String,
    /// The roles whose approval it still needs.
    pub approvers: Vec<String>,
    /// The policy's approval timeout for its priority (`24h`), if any.
    pub estimated_approval_time: Option<String>,
    /// The commit that filed it.
    pub commit: String,
}

/// A decision: `approved: false` rejects (with `comments` saying why).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    /// true approves, false rejects.
    pub approved: bool,
    /// A comment (required when rejecting).
    pub comments: Option<String>,
    /// Conditions attached to an approval.
    #[serde(default)]
    pub conditions: Vec<String>,
    /// The role decided for; inferred when the person holds exactly one the change needs.
    pub role: Option<String>,
    /// Where the policy requires the decision signed: the armored SSHSIG (namespace
    /// `chg`) of the statement from `GET …/statement`, made with the person's own key.
    pub signature: Option<String>,
    /// The `at` of that statement (RFC 3339): the decision is recorded at this time.
    pub at: Option<String>,
    /// A passkey's answer over the statement's `signed_data` (SPEC 12.1):
    /// `{client_data_json, authenticator_data, signature, credential_id?}`, base64url, as
    /// `navigator.credentials.get()` returns them. `at` may then be left out: the server
    /// knows it from the challenge it handed out (within ten minutes, on this server).
    pub passkey: Option<Value>,
}

/// The answer to a decision.
#[derive(Debug, Serialize, ToSchema)]
pub struct Decided {
    /// The change.
    pub change_request_id: String,
    /// Its status after the decision.
    pub status: String,
    /// The role decided for.
    pub approved_by: String,
    /// Who decided.
    pub approver: String,
    /// approved, rejected.
    pub decision: String,
    /// When.
    pub approved_at: String,
    /// `approval` (roles still needed), `implementation`, or `closed`.
    pub next_step: String,
    /// The roles still needed.
    pub waiting_for: Vec<String>,
    /// The commit.
    pub commit: String,
    /// How the record is proven: `signature` (the person's own: an SSH key or a passkey),
    /// `attested` (the server's key in the person's stead, where signing.server_attests
    /// allows it) or `none`.
    pub proof: String,
}

/// Start implementation.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImplementRequest {
    /// Must be the approved plan, if given (a different plan is an edit, which voids
    /// approvals: make it before approval).
    pub implementation_plan: Option<String>,
    /// When implementation starts (RFC 3339): schedules the change there first when it
    /// has no window starting then (two hours long unless it had one).
    pub scheduled_time: Option<String>,
    /// Whether it must run inside a maintenance window of the policy.
    pub maintenance_window: Option<bool>,
}

/// The answer to implement.
#[derive(Debug, Serialize, ToSchema)]
pub struct Implemented {
    /// The change.
    pub change_request_id: String,
    /// implementing (or approved, when the window starts later).
    pub status: String,
    /// When implementation started (null when only scheduled).
    pub implementation_started: Option<String>,
    /// The end of the window.
    pub estimated_completion: Option<String>,
    /// The commits made (a schedule, then implement).
    pub commits: Vec<String>,
}

/// Finish implementation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    /// completed, failed or rolled_back.
    pub status: String,
    /// Evidence of testing.
    pub test_results: Option<String>,
    /// The post-implementation review (the policy requires one for some changes).
    pub post_implementation_review: Option<String>,
}

/// The answer to complete.
#[derive(Debug, Serialize, ToSchema)]
pub struct Completed {
    /// The change.
    pub change_request_id: String,
    /// completed, failed or rolled_back.
    pub status: String,
    /// When.
    pub completed_at: Option<String>,
    /// When the change is next reviewed (a month after completion), as a date.
    pub next_review: Option<String>,
    /// The commit.
    pub commit: String,
}

/// One step of a change's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryItem {
    /// When.
    pub timestamp: String,
    /// created, submitted, approved, rejected, withdrawn, edited, scheduled, implemented,
    /// completed, cancelled, renumbered, deployed.
    pub action: String,
    /// Who (email).
    pub user: String,
    /// The commit's subject, and the role where there is one.
    pub details: String,
    /// The commit.
    pub commit: String,
    /// What the audit says of the step: `ok` or its problems.
    pub audit: String,
}

/// A change's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct History {
    /// The change.
    pub change_id: String,
    /// Oldest first.
    pub history: Vec<HistoryItem>,
}

/// The gate's verdict.
#[derive(Debug, Serialize, ToSchema)]
pub struct Gate {
    /// Whether the change may be deployed now.
    pub open: bool,
    /// Why not.
    pub reasons: Vec<Reason>,
}

/// One reason.
#[derive(Debug, Serialize, ToSchema)]
pub struct Reason {
    /// The rule.
    pub rule: String,
    /// One sentence.
    pub message: String,
}

/// What to sign.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatementAnswer {
    /// The statement's text: what `ssh-keygen -Y sign -n chg` signs.
    pub statement: String,
    /// The SSHSIG signed-data blob of the statement, base64url (a passkey's challenge).
    pub signed_data: String,
    /// The time the statement records; send it back as `at` with the signature.
    pub at: String,
    /// The role.
    pub role: String,
}

/// Filters of the list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// A status (pending_approval, approved, …; `pending` and `completed` are read as
    /// pending_approval and closed).
    pub status: Option<String>,
    /// A change type.
    #[serde(rename = "type")]
    pub change_type: Option<String>,
    /// A priority.
    pub priority: Option<String>,
    /// An affected system.
    pub system: Option<String>,
    /// `me` or an email: the changes awaiting that person's approval.
    pub awaiting: Option<String>,
    /// Only changes whose approval is overdue.
    pub overdue: Option<bool>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
    /// Skip this many.
    pub offset: Option<usize>,
}

/// The statement asked for.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StatementParams {
    /// approve or reject.
    pub action: String,
    /// The role.
    pub role: Option<String>,
}

/// The report's period.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReportParams {
    /// `2025`, `2025-Q1` or `2025-01`; all time when absent.
    pub period: Option<String>,
}

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

fn text(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.trim().is_empty())
}

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
async fn create(
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

fn parse_status(s: &str) -> Result<Status, ApiError> {
    let s = match s {
        "pending" => "pending_approval",
        "completed" => "closed",
        s => s,
    };
    s.parse()
        .map_err(|e: String| ApiError::bad("status", format!("status: {e}")))
}

#[utoipa::path(get, path = "/api/v1/change-management/change-requests", params(ListParams),
    responses((status = 200, description = "the changes, as `chg show --json` writes each; `X-Total-Count` says how many matched"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    ApiPerson(person): ApiPerson,
    Params(p): Params<ListParams>,
) -> Result<Response, ApiError> {
    let (items, total) = blocking(&state, move |shared, store| {
        let policy = store.policy()?;
        let query = list_query(&p, &policy, &person)?;
        let page = run(shared, store, &policy, &query)?;
        let items: Vec<Value> = page
            .rows
            .iter()
            .map(|r| {
                let whole = store.load_file(&r.item.rel)?;
                chg::query::change_json(&policy, &r.item.rel, whole.change())
            })
            .collect::<Result<_, Error>>()?;
        Ok((items, page.total))
    })
    .await?;
    let mut r = Json(items).into_response();
    if let Ok(v) = total.to_string().parse() {
        r.headers_mut().insert("x-total-count", v);
    }
    Ok(r)
}

/// Runs `query` (the library's [`chg::query::Query::run`]) over the summaries kept in memory.
/// A query judged by history ("waiting for me", overdue) is remembered as asked, so the
/// server computes it again in the background while its asker may ask again
/// ([`super::renew_asked`]).
pub fn run(
    shared: &Shared,
    store: &Store,
    policy: &Policy,
    query: &chg::query::Query,
) -> Result<chg::query::Page<chg::store::Loaded>, ApiError> {
    if query.awaiting.is_some() || query.overdue {
        let mut asked = shared.asked.lock().unwrap_or_else(|e| e.into_inner());
        asked.retain(|_, (_, at)| at.elapsed() < super::ASKED_FOR);
        if asked.len() < super::MAX_ASKED {
            asked.insert(
                format!("{query:?}"),
                (query.clone(), std::time::Instant::now()),
            );
        }
    }
    run_now(shared, store, policy, query)
}

/// [`run`], without remembering the query as asked.
pub fn run_now(
    shared: &Shared,
    store: &Store,
    policy: &Policy,
    query: &chg::query::Query,
) -> Result<chg::query::Page<chg::store::Loaded>, ApiError> {
    let head = store.repo().head().ok().and_then(|h| h.target());
    let key = format!("{query:?}");
    let remembered = || {
        let head = head?;
        let memo = shared.memo.lock().unwrap_or_else(|e| e.into_inner());
        memo.get(&key)
            .filter(|m| m.head == head && m.at.elapsed() < super::MEMO_FOR)
            .map(|m| m.page.clone())
    };
    if let Some(page) = remembered() {
        return Ok(page);
    }
    // Borrowed from memory: only the page's rows are copied.
    let all = shared.summaries(store)?;
    let page = if query.awaiting.is_some() || query.overdue {
        // Judged by history: the provenances kept from earlier requests serve where the
        // audit index still holds the log files they were read from.
        let mut kept = shared.kept.lock().unwrap_or_else(|e| e.into_inner());
        // Computed once: the requests that waited for the lock while another computed the
        // same query take its answer (8 readers of one page at once each computed it).
        if let Some(page) = remembered() {
            return Ok(page);
        }
        query.run_over_borrowed(store, policy, now(), all.iter().map(|l| &**l), &mut kept)?
    } else {
        let mut none = chg::standing::KeptProvenances::default();
        query.run_over_borrowed(store, policy, now(), all.iter().map(|l| &**l), &mut none)?
    };
    if let Some(head) = head {
        let mut memo = shared.memo.lock().unwrap_or_else(|e| e.into_inner());
        memo.retain(|_, m| m.head == head && m.at.elapsed() < super::MEMO_FOR);
        if memo.len() < 1000 {
            memo.insert(
                key,
                super::Memo {
                    head,
                    at: std::time::Instant::now(),
                    page: page.clone(),
                },
            );
        }
    }
    Ok(page)
}

/// The library's query for the list's parameters.
pub fn list_query(
    p: &ListParams,
    policy: &Policy,
    person: &Person,
) -> Result<chg::query::Query, ApiError> {
    let mut q = chg::query::Query::default();
    if let Some(s) = text(&p.status) {
        q.statuses = vec![parse_status(s)?];
    }
    if let Some(t) = text(&p.change_type) {
        if !policy.change_types.iter().any(|x| x == t) {
            return Err(ApiError::bad(
                "type",
                format!(
                    "type: `{t}` is not one of the policy's change types ({})",
                    policy.change_types.join(", ")
                ),
            ));
        }
        q.types = vec![t.to_owned()];
    }
    if let Some(pr) = text(&p.priority) {
        q.priorities = vec![
            pr.parse()
                .map_err(|e: String| ApiError::bad("priority", format!("priority: {e}")))?,
        ];
    }
    if let Some(s) = text(&p.system) {
        q.systems = vec![s.to_owned()];
    }
    q.awaiting = match text(&p.awaiting) {
        Some("me") => Some(person.email.clone()),
        Some(e) => Some(e.to_owned()),
        None => None,
    };
    q.overdue = p.overdue.unwrap_or(false);
    let limit = p.limit.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::bad("limit", "limit: between 1 and 1000"));
    }
    q.limit = Some(limit);
    q.offset = p.offset.unwrap_or(0);
    Ok(q)
}

#[utoipa::path(get, path = "/api/v1/change-management/change-requests/{id}", params(("id" = String, Path, description = "CHG-2025-001")),
    responses((status = 200, description = "the change, as `chg show --json` writes it"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    ApiPerson(_): ApiPerson,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let v = blocking(&state, move |_, store| {
        let policy = store.policy()?;
        let id = parse_id(&id, &policy)?;
        let loaded = store.load(&id)?;
        Ok(chg::query::change_json(
            &policy,
            &loaded.rel,
            loaded.change(),
        )?)
    })
    .await?;
    Ok(Json(v))
}

/// The role `req` decides for, or the library's own inference (exactly one held role).
fn decision_step(req: &ApproveRequest) -> Result<Step, ApiError> {
    let role = req.role.clone().filter(|r| !r.trim().is_empty());
    if req.approved {
        Ok(Step::Approve {
            role,
            comment: req.comments.clone().filter(|c| !c.trim().is_empty()),
            conditions: req
                .conditions
                .iter()
                .filter(|c| !c.trim().is_empty())
                .cloned()
                .collect(),
        })
    } else {
        let comment = req
            .comments
            .clone()
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| {
                ApiError::bad(
                    "comments",
                    "comments: a rejection needs comments saying why",
                )
            })?;
        Ok(Step::Reject { role, comment })
    }
}

/// A signature an API client made with its own key, given to the library as the record
/// signer: the library checks that the allowed signers list its key for the person and
/// that it verifies over the statement, or writes nothing.
pub struct GivenSignature {
    key: String,
    armored: String,
}

impl GivenSignature {
    /// The signature as sent (armored SSHSIG); 400 when it is not one.
    pub fn parse(armored: &str) -> Result<GivenSignature, ApiError> {
        let sig = ssh_key::SshSig::from_pem(armored.trim()).map_err(|e| {
            ApiError::bad(
                "signature",
                format!("signature: not an armored SSH signature ({e})"),
            )
        })?;
        let key = ssh_key::PublicKey::from(sig.public_key().clone())
            .to_openssh()
            .map_err(|e| ApiError::bad("signature", format!("signature: {e}")))?;
        Ok(GivenSignature {
            key,
            armored: armored.trim().to_owned() + "\n",
        })
    }
}

impl chg::signing::RecordSigner for GivenSignature {
    fn public_key(&self) -> chg::Result<String> {
        Ok(self.key.clone())
    }
    fn sign(&self, _statement: &[u8]) -> chg::Result<String> {
        Ok(self.armored.clone())
    }
}

/// The time a signed decision records: the `at` its statement said, within the last ten
/// minutes (a statement is handed out to be signed at once).
fn signed_at(at: Option<&str>) -> Result<Timestamp, ApiError> {
    let Some(at) = at else {
        return Err(ApiError::bad(
            "at",
            "at: a signed decision sends the `at` of its statement",
        ));
    };
    let t: Timestamp = at
        .parse()
        .map_err(|e| ApiError::bad("at", format!("at: `{at}` is not an RFC 3339 time: {e}")))?;
    let now = now();
    if t > now || now.duration_since(t).as_secs() > 600 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "statement-expired",
            "the statement's time is not within the last ten minutes; fetch the statement again and sign it",
        ));
    }
    Ok(t)
}

#[utoipa::path(post, path = "/api/v1/change-management/change-requests/{id}/approve", request_body = ApproveRequest,
    params(("id" = String, Path, description = "CHG-2025-001")),
    responses((status = 200, body = Decided), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn approve(
    State(state): State<AppState>,
    ApiPerson(person): ApiPerson,
    Path(id): Path<String>,
    Body(req): Body<ApproveRequest>,
) -> Result<Json<Decided>, ApiError> {
    let out = blocking_write(&state, move |shared, store| {
        decide(shared, store, &person, &id, req)
    })
    .await?;
    Ok(Json(out))
}

/// Takes a decision for `person` on change `id` (the API and the pages share it).
pub fn decide(
    shared: &Shared,
    store: &Store,
    person: &Person,
    id: &str,
    req: ApproveRequest,
) -> Result<Decided, ApiError> {
    synced(shared, store, &context(shared, person)?)?;
    let policy = store.policy()?;
    let id = parse_id(id, &policy)?;
    let step = decision_step(&req)?;
    let mut counter = None;
    // A passkey's counter is checked before its step and recorded after it: one passkey
    // step at a time in this server, so two answers with one counter cannot both pass.
    static PASSKEY_STEPS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = req
        .passkey
        .is_some()
        .then(|| PASSKEY_STEPS.lock().unwrap_or_else(|e| e.into_inner()));
    let ctx = match (&req.passkey, &req.signature) {
        // A passkey's answer (SPEC 12.1): signed through the library, checked there.
        (Some(passkey), _) => {
            // A client that does not send `at` back is understood from its challenge.
            let at = req
                .at
                .clone()
                .or_else(|| super::passkey::issued_at(passkey));
            let at = signed_at(at.as_deref())?;
            let (ctx, seen) = super::passkey::signing_context(shared, store, person, at, passkey)?;
            counter = seen;
            ctx
        }
        (None, Some(sig)) => {
            let at = signed_at(req.at.as_deref())?;
            context_at(shared, person, at)?.signing_records(Arc::new(GivenSignature::parse(sig)?))
        }
        // No signature of the person's: the server attests it where it holds a key and
        // the policy allows it for this role and risk (the library decides, and refuses
        // where the policy requires a signature it may not attest).
        (None, None) => {
            let ctx = context(shared, person)?;
            match &shared.attester {
                Some(signer) => ctx.attested_by(chg::context::Attester {
                    signer: signer.clone(),
                    via: person.via(),
                }),
                None => ctx,
            }
        }
    };
    let o = store.transition(&ctx, &id, step)?;
    if let Some((fingerprint, n)) = counter {
        // Committed: from now on this key must count above n.
        super::passkey::Counters::of(store).saw(&fingerprint, n)?;
    }
    synced(shared, store, &ctx)?;
    let status = o.change.status();
    let next_step = match status {
        Status::PendingApproval => "approval",
        Status::Approved => "implementation",
        Status::Rejected => "closed",
        _ => "none",
    };
    Ok(Decided {
        change_request_id: o.change.id_text(),
        status: status.to_string(),
        approved_by: o.transition.role.clone().unwrap_or_default(),
        approver: person.email.clone(),
        decision: if req.approved { "approved" } else { "rejected" }.into(),
        approved_at: format_timestamp(ctx.now),
        next_step: next_step.into(),
        proof: match o.change.approvals.last() {
            Some(a) if a.attested_by.is_some() => "attested",
            Some(a) if a.signature.is_some() => "signature",
            _ => "none",
        }
        .into(),
        waiting_for: o.waiting_for,
        commit: o.commit.to_string(),
    })
}

#[utoipa::path(post, path = "/api/v1/change-management/change-requests/{id}/implement", request_body = ImplementRequest,
    params(("id" = String, Path, description = "CHG-2025-001")),
    responses((status = 200, body = Implemented), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn implement(
    State(state): State<AppState>,
    ApiPerson(person): ApiPerson,
    Path(id): Path<String>,
    Body(req): Body<ImplementRequest>,
) -> Result<Json<Implemented>, ApiError> {
    let start = req
        .scheduled_time
        .as_deref()
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
        let schedule = c.schedule.clone();
        let needs_schedule = match (start, &schedule) {
            (Some(s), Some(sch)) => {
                sch.start != s
                    || req
                        .maintenance_window
                        .is_some_and(|m| m != sch.maintenance_window)
            }
            (Some(_), None) => true,
            (None, Some(sch)) => req
                .maintenance_window
                .is_some_and(|m| m != sch.maintenance_window),
            (None, None) => false,
        };
        if needs_schedule {
            let s = start
                .or(schedule.as_ref().map(|x| x.start))
                .unwrap_or(now);
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
                would.schedule = Some(chg::model::Schedule {
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
                &ctx,
                &id,
                Step::Schedule {
                    start: s,
                    end,
                    maintenance_window: req.maintenance_window,
                },
            )?;
            commits.push(o.commit.to_string());
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

#[utoipa::path(post, path = "/api/v1/change-management/change-requests/{id}/complete", request_body = CompleteRequest,
    params(("id" = String, Path, description = "CHG-2025-001")),
    responses((status = 200, body = Completed), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn complete(
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
async fn history(
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
async fn gate(
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

/// The SSHSIG signed-data blob of `statement` (PROTOCOL.sshsig: `SSHSIG`, the namespace,
/// an empty reserved string, the hash algorithm, the SHA-512 of the message), base64url.
pub fn signed_data(statement: &str) -> String {
    chg::webauthn::challenge(statement.as_bytes())
}

/// The statement `person` signs to take `action` (approve, reject) for `role` on the change
/// as it is now: the library's own statement of the record the step would write.
pub fn statement_for(
    store: &Store,
    person: &Person,
    id: &ChangeId,
    action: &str,
    role: Option<String>,
    at: Timestamp,
) -> Result<StatementAnswer, ApiError> {
    let policy = store.policy()?;
    let loaded = store.load(id)?;
    let step = match action {
        "approve" => Step::Approve {
            role,
            comment: None,
            conditions: Vec::new(),
        },
        "reject" => Step::Reject {
            role,
            comment: "(statement)".into(),
        },
        other => {
            return Err(ApiError::bad(
                "action",
                format!("action: `{other}` is not approve or reject"),
            ));
        }
    };
    // The step as the library would take it (refusing as it would), without committing:
    // its record's statement is what the signature must cover.
    let provenance = chg::standing::of(store, id, at)?.provenance();
    let (next, transition) = chg::workflow::apply_with(
        loaded.change(),
        policy.for_intake(true),
        &person.email,
        at,
        step,
        &provenance,
    )?;
    let record = chg::signing::new_record(&next, transition.action.as_str())
        .ok_or_else(|| ApiError::internal("the step wrote no record"))?;
    let text = record.statement.text();
    Ok(StatementAnswer {
        signed_data: signed_data(&text),
        statement: text,
        at: format_timestamp(at),
        role: transition.role.unwrap_or_default(),
    })
}

#[utoipa::path(get, path = "/api/v1/change-management/change-requests/{id}/statement",
    params(("id" = String, Path, description = "CHG-2025-001"), StatementParams),
    responses((status = 200, body = StatementAnswer), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn statement(
    State(state): State<AppState>,
    ApiPerson(person): ApiPerson,
    Path(id): Path<String>,
    Params(p): Params<StatementParams>,
) -> Result<Json<StatementAnswer>, ApiError> {
    let out = blocking(&state, move |_, store| {
        let policy = store.policy()?;
        let id = parse_id(&id, &policy)?;
        statement_for(store, &person, &id, &p.action, p.role, now())
    })
    .await?;
    super::passkey::remember(&out);
    Ok(Json(out))
}

/// Hours as the seed writes them (`18h`, `1.5h`).
fn hours(h: Option<f64>) -> Option<String> {
    h.map(|h| {
        let r = (h * 10.0).round() / 10.0;
        if r.fract() == 0.0 {
            format!("{r:.0}h")
        } else {
            format!("{r:.1}h")
        }
    })
}

#[utoipa::path(get, path = "/api/v1/change-management/reports", params(ReportParams),
    responses((status = 200, description = "the seed's report fields: report_period, total_changes, by_status, by_priority, by_type, average_approval_time, average_implementation_time"), (status = 400, body = ErrorBody)))]
async fn report(
    State(state): State<AppState>,
    ApiPerson(_): ApiPerson,
    Params(p): Params<ReportParams>,
) -> Result<Json<Value>, ApiError> {
    let (since, until) = match text(&p.period) {
        Some(t) => {
            let (s, u) = chg::report::parse_period(t)
                .map_err(|e| ApiError::bad("period", format!("period: {e}")))?;
            (Some(s), Some(u))
        }
        None => (None, None),
    };
    let period = p.period.clone();
    let out = blocking(&state, move |shared, store| {
        let policy = store.policy()?;
        let (r, _) = chg::query::report_over(&policy, since, until, &shared.summaries(store)?);
        Ok(report_json(&r, period.as_deref()))
    })
    .await?;
    Ok(Json(out))
}

/// The seed's report fields, from the library's report.
pub fn report_json(r: &chg::report::Report, period: Option<&str>) -> Value {
    let approvals: Vec<&chg::report::Times> =
        r.approval_time.iter().filter(|t| t.count > 0).collect();
    let n: usize = approvals.iter().map(|t| t.count).sum();
    let avg = (n > 0).then(|| {
        approvals
            .iter()
            .map(|t| t.average_hours.unwrap_or(0.0) * t.count as f64)
            .sum::<f64>()
            / n as f64
    });
    json!({
        "report_period": period,
        "total_changes": r.total,
        "by_status": r.by_status,
        "by_priority": r.by_priority,
        "by_type": r.by_type,
        "by_model": r.by_model,
        "average_approval_time": hours(avg),
        "average_implementation_time": hours(r.implementation_time.average_hours),
    })
}
