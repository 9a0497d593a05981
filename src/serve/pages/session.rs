//! Signing in with a token (a session cookie and its CSRF token) and out.

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::{error_page, page};
use crate::serve::AppState;
use crate::serve::api::{ApiError, Params};
use crate::serve::auth::{self, PagePerson, check_csrf, now};

#[derive(Deserialize)]
pub(super) struct NextParam {
    next: Option<String>,
}

pub(super) async fn signin_page(Params(p): Params<NextParam>) -> Markup {
    signin_form(p.next.as_deref(), None)
}

fn signin_form(next: Option<&str>, error: Option<&str>) -> Markup {
    page(
        "Sign in",
        None,
        html! {
            h1 { "Sign in" }
            @if let Some(e) = error { p class="error" { (e) } }
            form method="post" action="/signin" class="card" {
                p { label for="token" { "Your token (from " code { "chg token create" } ")" } }
                p { input id="token" type="password" name="token" autocomplete="off" required style="width:100%"; }
                input type="hidden" name="next" value=(auth::safe_next(next));
                button type="submit" { "Sign in" }
            }
        },
    )
}

#[derive(Deserialize)]
pub(super) struct SignInForm {
    token: String,
    next: Option<String>,
}

pub(super) async fn signin(
    State(state): State<AppState>,
    auth::ClientIp(ip): auth::ClientIp,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    if let Err(e) = state.limiter.check(ip) {
        return error_page(None, e);
    }
    if let Err(e) = check_csrf(&state, &headers, None, None) {
        return error_page(None, e);
    }
    let Ok(Form(form)) = form else {
        return error_page(None, ApiError::bad("body", "the form is malformed"));
    };
    let record = match state.tokens.authenticate(&form.token, now()) {
        Ok(Some(r)) => r,
        Ok(None) => {
            state.limiter.fail(ip);
            return (
                StatusCode::UNAUTHORIZED,
                signin_form(
                    form.next.as_deref(),
                    Some("Unknown, revoked or expired token."),
                ),
            )
                .into_response();
        }
        Err(e) => return error_page(None, e.into()),
    };
    let id = match state.sessions.create(&record.id) {
        Ok(id) => id,
        Err(e) => return error_page(None, e),
    };
    let mut r = Redirect::to(&auth::safe_next(form.next.as_deref())).into_response();
    if let Ok(v) = auth::set_cookie(&state, &id).parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    csrf: Option<String>,
}

pub(super) async fn signout(
    State(state): State<AppState>,
    who: PagePerson,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(e) = check_csrf(&state, &headers, form.csrf.as_deref(), Some(&who.csrf)) {
        return error_page(Some(&who), e);
    }
    if let Some(s) = &who.person.session {
        state.sessions.remove(s);
    }
    let mut r = Redirect::to("/signin").into_response();
    if let Ok(v) = auth::clear_cookie().parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}
