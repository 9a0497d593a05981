//! The lists: what waits for the person's decision (the home page) and the changes a
//! filter selects, each with the roles it awaits.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chg::model::ChangeRequest;
use chg::store::Store;
use maud::html;

use super::{change_rows, error_page, page};
use crate::serve::api::{self, ApiError, ListParams, Params};
use crate::serve::auth::PagePerson;
use crate::serve::{AppState, Shared, blocking};

/// Changes with the roles each awaits.
type Rows = Vec<(ChangeRequest, Vec<String>)>;

/// The changes a query selects, with the roles each awaits (the library's query).
fn select(
    shared: &Shared,
    store: &Store,
    query: &chg::query::Query,
) -> Result<(Rows, usize), ApiError> {
    let policy = store.policy()?;
    let page = api::run(shared, store, &policy, query)?;
    let rows = page
        .rows
        .into_iter()
        .map(|r| {
            let c = r.item.change().clone();
            let waiting = if r.awaiting.is_empty() {
                chg::rules::missing_roles(&c, &policy)
            } else {
                r.awaiting
            };
            (c, waiting)
        })
        .collect();
    Ok((rows, page.total))
}

pub(super) async fn home(State(state): State<AppState>, who: PagePerson) -> Response {
    let email = who.person.email.clone();
    let r = blocking(&state, move |shared, store| {
        let q = chg::query::Query {
            awaiting: Some(email.clone()),
            limit: Some(200),
            ..Default::default()
        };
        let waiting = select(shared, store, &q)?;
        let mine = chg::query::Query {
            requester: Some(email),
            open_only: true,
            limit: Some(50),
            ..Default::default()
        };
        Ok((waiting, select(shared, store, &mine)?))
    })
    .await;
    match r {
        Ok(((waiting, n), (mine, _))) => page(
            "Waiting for me",
            Some(&who),
            html! {
                h1 { "Waiting for me" }
                @if waiting.is_empty() {
                    p class="muted" { "Nothing waits for your approval." }
                } @else {
                    p { (n) " change(s) wait for your decision." }
                    (change_rows(&waiting))
                }
                h2 { "My open changes" }
                @if mine.is_empty() { p class="muted" { "None." } } @else { (change_rows(&mine)) }
            },
        )
        .into_response(),
        Err(e) => error_page(Some(&who), e),
    }
}

pub(super) async fn changes(
    State(state): State<AppState>,
    who: PagePerson,
    params: Result<Params<ListParams>, ApiError>,
) -> Response {
    let p = match params {
        Ok(Params(p)) => p,
        Err(e) => return error_page(Some(&who), e),
    };
    let person = who.person.clone();
    let shown = (
        p.status.clone().unwrap_or_default(),
        p.change_type.clone().unwrap_or_default(),
        p.priority.clone().unwrap_or_default(),
        p.system.clone().unwrap_or_default(),
    );
    let r = blocking(&state, move |shared, store| {
        let policy = store.policy()?;
        let q = api::list_query(&p, &policy, &person)?;
        Ok((select(shared, store, &q)?, policy.change_types.clone()))
    })
    .await;
    let ((rows, total), types) = match r {
        Ok(x) => x,
        Err(e) => return error_page(Some(&who), e),
    };
    let opt = |v: &str, current: &str| {
        html! { option value=(v) selected[v == current] { (if v.is_empty() { "any" } else { v }) } }
    };
    page(
        "Changes",
        Some(&who),
        html! {
            h1 { "Changes" }
            form method="get" action="/changes" class="filters" {
                label { "Status " select name="status" {
                    @for s in ["", "draft", "pending_approval", "approved", "rejected", "implementing", "closed", "cancelled"] { (opt(s, &shown.0)) }
                } }
                label { "Type " select name="type" {
                    (opt("", &shown.1))
                    @for t in &types { (opt(t, &shown.1)) }
                } }
                label { "Priority " select name="priority" {
                    @for s in ["", "critical", "high", "medium", "low"] { (opt(s, &shown.2)) }
                } }
                label { "System " input type="text" name="system" value=(shown.3) size="12"; }
                button type="submit" { "Filter" }
            }
            p class="muted" { (total) " change(s)" @if total > rows.len() { ", first " (rows.len()) " shown" } }
            (change_rows(&rows))
        },
    )
    .into_response()
}
