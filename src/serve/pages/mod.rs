//! The web pages for approvers (SPEC section 12): server-rendered (maud, checked at compile
//! time), no JavaScript, readable at phone width. Every page has a stable link
//! (`/changes/CHG-2026-014`), so a notification can point straight at the decision.
//!
//! Signing in takes a token (`chg token create`) and makes a session cookie (HttpOnly,
//! SameSite=Strict); every form carries the session's CSRF token, and form posts are
//! checked for `Sec-Fetch-Site` and `Origin` ([`super::auth::check_csrf`]).
//!
//! This file holds the routes and what every page shares (the layout, the error page, the
//! table of changes); `session` signs in and out, `lists` shows what waits and the list
//! of changes, `detail` one change, `decision` takes the decision form, `overview` the
//! CAB agenda, the calendar and the report.

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chg::model::ChangeRequest;
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::AppState;
use super::api::ApiError;
use super::auth::PagePerson;

mod decision;
mod detail;
mod lists;
mod overview;
mod session;

use decision::decide;
use detail::change;
use lists::{changes, home};
use overview::{cab, calendar, report};
use session::{signin, signin_page, signout};

/// The pages' routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/signin", get(signin_page).post(signin))
        .route("/signout", post(signout))
        .route("/changes", get(changes))
        .route("/changes/{id}", get(change))
        .route("/changes/{id}/decide", post(decide))
        .route("/cab", get(cab))
        .route("/calendar", get(calendar))
        .route("/report", get(report))
}

const STYLE: &str = "
body{font-family:system-ui,-apple-system,sans-serif;margin:0;color:#1d2126;background:#f7f7f8;line-height:1.45}
header{background:#1d2b3a;color:#fff;padding:.6rem 1rem;display:flex;flex-wrap:wrap;gap:.4rem 1rem;align-items:center}
header a{color:#fff;text-decoration:none}header .who{margin-left:auto;font-size:.9rem;opacity:.85}
main{max-width:60rem;margin:0 auto;padding:1rem}
h1{font-size:1.35rem;margin:.3rem 0 1rem}h2{font-size:1.1rem;margin:1.4rem 0 .5rem}
table{border-collapse:collapse;width:100%;background:#fff}td,th{padding:.4rem .5rem;border-bottom:1px solid #e3e3e6;text-align:left;vertical-align:top}
.scroll{overflow-x:auto}.muted{color:#667}.ok{color:#137333}.bad{color:#b3261e}
.pill{display:inline-block;padding:0 .45rem;border-radius:.6rem;background:#e8eaed;font-size:.85rem}
form.inline{display:inline}input,select,textarea,button{font:inherit;padding:.35rem;max-width:100%;box-sizing:border-box}
textarea{width:100%}button{background:#1d5fbf;color:#fff;border:0;border-radius:.3rem;padding:.45rem .9rem;cursor:pointer}
button.reject{background:#b3261e}.card{background:#fff;border:1px solid #e3e3e6;border-radius:.4rem;padding:.8rem;margin:.6rem 0}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:0}dt{color:#667}dd{margin:0;white-space:pre-wrap;overflow-wrap:anywhere}
.error{background:#fde8e7;border:1px solid #f3b8b4;padding:.6rem;border-radius:.4rem}
.filters{display:flex;flex-wrap:wrap;gap:.4rem;align-items:end;margin-bottom:.8rem}
@media (max-width:40rem){dl{grid-template-columns:1fr}dt{margin-top:.4rem}td,th{padding:.35rem .3rem}.wide{display:none}}
";

/// A whole page.
pub(super) fn page(title: &str, who: Option<&PagePerson>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · chg" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    a href="/" { strong { "chg" } }
                    @if let Some(p) = who {
                        a href="/" { "Waiting for me" }
                        a href="/changes" { "Changes" }
                        a href="/cab" { "CAB" }
                        a href="/calendar" { "Calendar" }
                        a href="/report" { "Report" }
                        a href="/passkeys" { "Passkeys" }
                        span class="who" {
                            (p.person.email) " "
                            form class="inline" method="post" action="/signout" {
                                input type="hidden" name="csrf" value=(p.csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// An error shown as a page.
pub(super) fn error_page(who: Option<&PagePerson>, e: ApiError) -> Response {
    let status = e.status;
    let body = page(
        "Error",
        who,
        html! {
            h1 { "Not done" }
            p class="error" { (e.message) " " span class="muted" { "(" (e.rule) ")" } }
            p { a href="/" { "Back" } }
        },
    );
    (status, body).into_response()
}

fn status_pill(c: &ChangeRequest) -> Markup {
    html! { span class="pill" { (c.status().as_str()) } }
}

fn change_rows(items: &[(ChangeRequest, Vec<String>)]) -> Markup {
    html! {
        div class="scroll" {
            table {
                thead { tr { th { "Change" } th { "Title" } th { "Status" } th class="wide" { "Priority" } th { "Waiting for" } } }
                tbody {
                    @for (c, waiting) in items {
                        tr {
                            td { a href={ "/changes/" (c.id_text()) } { (c.id_text()) } }
                            td { (c.title.as_deref().unwrap_or("(no title)")) }
                            td { (status_pill(c)) }
                            td class="wide" { (c.priority.map(|p| p.as_str()).unwrap_or("")) }
                            td { (waiting.join(", ")) }
                        }
                    }
                }
            }
        }
    }
}
