//! The pages across changes: the CAB agenda, the calendar and the report.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chg::model::{ChangeRequest, format_timestamp};
use maud::{PreEscaped, html};
use serde::Deserialize;

use super::{change_rows, error_page, page};
use crate::serve::api::{self, ApiError, Params};
use crate::serve::auth::{PagePerson, now};
use crate::serve::{AppState, blocking};

pub(super) async fn cab(State(state): State<AppState>, who: PagePerson) -> Response {
    let r = blocking(&state, move |shared, store| {
        let policy = store.policy()?;
        let until = now()
            .checked_add(jiff::SignedDuration::from_hours(24 * 7))
            .unwrap_or(now());
        let all = shared.summaries_where(store, chg::query::agenda_reads)?;
        Ok(chg::query::agenda_over(store, &policy, until, all)?)
    })
    .await;
    let agenda = match r {
        Ok(a) => a,
        Err(e) => return error_page(Some(&who), e),
    };
    page(
        "CAB agenda",
        Some(&who),
        html! {
            h1 { "Change advisory board agenda" }
            @if agenda.groups.is_empty() { p class="muted" { "Nothing awaits approval." } }
            @for (priority, items) in &agenda.groups {
                h2 { (priority.as_str()) " (" (items.len()) ")" }
                @let rows: Vec<(ChangeRequest, Vec<String>)> = items.iter().map(|i| (i.change.clone(), i.awaiting.clone())).collect();
                (change_rows(&rows))
                @for i in items {
                    @for c in &i.conflicts {
                        p class="bad" { (i.change.id_text()) ": " (c.kind) ": " (c.message) }
                    }
                }
            }
            @if agenda.preapproved > 0 { p class="muted" { (agenda.preapproved) " pre-approved standard change(s) pending." } }
        },
    )
    .into_response()
}

pub(super) async fn calendar(State(state): State<AppState>, who: PagePerson) -> Response {
    let r = blocking(&state, move |_, store| {
        let policy = store.policy()?;
        let from = now();
        let to = chg::calendar::default_range(from).1;
        let all = store.load_where(|c| c.schedule.is_some())?;
        let changes: Vec<&ChangeRequest> = all
            .iter()
            .filter(|l| l.decoded.parsed)
            .map(|l| l.change())
            .collect();
        Ok(chg::calendar::events(&changes, &policy, from, to)
            .into_iter()
            .map(|e| (e.kind, e.uid, e.start, e.end, e.summary))
            .collect::<Vec<_>>())
    })
    .await;
    let events = match r {
        Ok(e) => e,
        Err(e) => return error_page(Some(&who), e),
    };
    page(
        "Calendar",
        Some(&who),
        html! {
            h1 { "Calendar" }
            @if events.is_empty() { p class="muted" { "Nothing scheduled." } }
            div class="scroll" { table {
                thead { tr { th { "When" } th { "What" } } }
                tbody {
                    @for (kind, uid, start, end, summary) in &events {
                        tr {
                            td { (format_timestamp(*start)) br; span class="muted" { "to " (format_timestamp(*end)) } }
                            td {
                                @if *kind == "change" { a href={ "/changes/" (uid) } { (summary) } }
                                @else { span class="muted" { (kind) ": " } (summary) }
                            }
                        }
                    }
                }
            } }
        },
    )
    .into_response()
}

#[derive(Deserialize, Default)]
pub(super) struct ReportParam {
    period: Option<String>,
}

pub(super) async fn report(
    State(state): State<AppState>,
    who: PagePerson,
    params: Result<Params<ReportParam>, ApiError>,
) -> Response {
    let period = match params {
        Ok(Params(p)) => p.period.filter(|p| !p.trim().is_empty()),
        Err(e) => return error_page(Some(&who), e),
    };
    let bounds = match period.as_deref().map(chg::report::parse_period).transpose() {
        Ok(b) => b,
        Err(e) => return error_page(Some(&who), ApiError::bad("period", format!("period: {e}"))),
    };
    let r = blocking(&state, move |shared, store| {
        let policy = store.policy()?;
        let (r, _) = chg::query::report_over(
            &policy,
            bounds.map(|b| b.0),
            bounds.map(|b| b.1),
            &shared.summaries(store)?,
        );
        Ok(r)
    })
    .await;
    let r = match r {
        Ok(r) => r,
        Err(e) => return error_page(Some(&who), e),
    };
    let seed = api::report_json(&r, period.as_deref());
    let bars = |title: &str, m: &std::collections::BTreeMap<String, usize>| {
        let labels: Vec<String> = m.keys().cloned().collect();
        let values: Vec<usize> = m.values().copied().collect();
        chg::report::svg_bars(title, &labels, &[("changes", "#1d5fbf", values)])
    };
    let weeks: Vec<String> = r.weekly.iter().map(|w| w.week.clone()).collect();
    let outcomes = chg::report::svg_bars(
        "Outcomes by week",
        &weeks,
        &[
            (
                "successful",
                "#137333",
                r.weekly.iter().map(|w| w.successful).collect(),
            ),
            (
                "failed",
                "#b3261e",
                r.weekly.iter().map(|w| w.failed).collect(),
            ),
            (
                "rolled back",
                "#e37400",
                r.weekly.iter().map(|w| w.rolled_back).collect(),
            ),
        ],
    );
    page(
        "Report",
        Some(&who),
        html! {
            h1 { "Report" @if let Some(p) = &period { " " (p) } }
            form method="get" action="/report" class="filters" {
                label { "Period " input type="text" name="period" value=(period.clone().unwrap_or_default()) placeholder="2025-01, 2025-Q1, 2025" size="12"; }
                button type="submit" { "Show" }
            }
            div class="card" { dl {
                dt { "total changes" } dd { (r.total) }
                dt { "average approval time" } dd { (seed["average_approval_time"].as_str().unwrap_or("–")) }
                dt { "average implementation time" } dd { (seed["average_implementation_time"].as_str().unwrap_or("–")) }
                @for m in &r.rates {
                    dt { (m.name.replace('_', " ")) }
                    dd { (m.value.map(|v| format!("{:.0}%", v * 100.0)).unwrap_or_else(|| "–".into()))
                        @if let Some(t) = m.target { span class="muted" { " (target " (m.bound) " " (format!("{:.0}%", t * 100.0)) ")" } }
                        @match m.met { Some(true) => span class="ok" { " met" }, Some(false) => span class="bad" { " missed" }, None => {} }
                    }
                }
            } }
            div class="card scroll" { (PreEscaped(bars("By status", &r.by_status))) }
            div class="card scroll" { (PreEscaped(bars("By priority", &r.by_priority))) }
            div class="card scroll" { (PreEscaped(bars("By type", &r.by_type))) }
            div class="card scroll" { (PreEscaped(outcomes)) }
        },
    )
    .into_response()
}
