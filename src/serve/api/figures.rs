//! `GET …/reports`: the library's report over the summaries the server keeps, in the
//! seed's fields.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::{ApiError, ErrorBody, Params, ReportParams, text};
use crate::serve::auth::ApiPerson;
use crate::serve::{AppState, blocking};

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
pub(super) async fn report(
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
