//! The API's error answer: a status, the rule that said no and one sentence, and how each
//! library error maps to it (SPEC section 12's status codes).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chg::Error;
use chg::model::ChangeId;
use chg::policy::Policy;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

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
