//! `GET …/change-requests` and `GET …/change-requests/{id}`: the list through the library's
//! query over the summaries the server keeps (answers remembered per HEAD), and one change.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use chg::Error;
use chg::model::Status;
use chg::policy::Policy;
use chg::store::Store;
use serde_json::Value;

use super::{ApiError, ErrorBody, ListParams, Params, parse_id, text};
use crate::serve::auth::{ApiPerson, Person, now};
use crate::serve::{AppState, Shared, blocking};

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
pub(super) async fn list(
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
/// ([`crate::serve::renew_asked`]).
pub fn run(
    shared: &Shared,
    store: &Store,
    policy: &Policy,
    query: &chg::query::Query,
) -> Result<chg::query::Page<chg::store::Loaded>, ApiError> {
    if query.awaiting.is_some() || query.overdue {
        let mut asked = shared.asked.lock().unwrap_or_else(|e| e.into_inner());
        asked.retain(|_, (_, at)| at.elapsed() < crate::serve::ASKED_FOR);
        if asked.len() < crate::serve::MAX_ASKED {
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
            .filter(|m| m.head == head && m.at.elapsed() < crate::serve::MEMO_FOR)
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
        memo.retain(|_, m| m.head == head && m.at.elapsed() < crate::serve::MEMO_FOR);
        if memo.len() < 1000 {
            memo.insert(
                key,
                crate::serve::Memo {
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
pub(super) async fn show(
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
