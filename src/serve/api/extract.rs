//! The extractors of JSON bodies and query parameters, which refuse in the API's error
//! shape (naming the field) instead of axum's plain-text rejections.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, Query, Request};
use axum::http::StatusCode;
use serde_json::Value;

use super::ApiError;

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
