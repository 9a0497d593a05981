//! `chg report`: figures for a period against the policy's targets.

use std::process::ExitCode;

use chg::Error;
use chg::policy::Policy;
use chg::report::Align::{Left, Right};
use chg::report::{self, APPROVAL_BUCKETS, MarkdownTable, Measure, Report};
use chg::store::Store;
use clap::{Args, ValueEnum};

use super::grid::{Grid, Target};
use super::{CmdResult, ui::Ui};

/// Figures for a period, each against the policy's targets.
///
/// Counts by status, priority, type and model; approval time per priority; implementation
/// time; success, failure, rollback and emergency rates; each against the policy's targets.
/// The population is the changes requested in the period.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A year, quarter or month: 2025, 2025-Q1, 2025-01.
    #[arg(long, conflicts_with_all = ["since", "until"])]
    period: Option<String>,
    /// First instant of the period (RFC 3339, or a date meaning its midnight UTC).
    #[arg(long, value_name = "DATE", allow_hyphen_values = true)]
    since: Option<String>,
    /// First instant after the period.
    #[arg(long, value_name = "DATE", allow_hyphen_values = true)]
    until: Option<String>,
    /// Output format; markdown embeds the charts as inline SVG.
    #[arg(long, value_enum, default_value = "table")]
    format: ReportFormat,
    #[command(flatten)]
    json: super::json::JsonArgs,
}

/// Output formats of `report`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ReportFormat {
    /// Tables for people.
    Table,
    /// One JSON document.
    Json,
    /// One row per figure: section, name, value, target, met.
    Csv,
    /// A document with tables and charts, for a code host or a wiki.
    Markdown,
}

pub fn run(ui: &Ui, store: &Store, policy: &Policy, a: ReportArgs) -> CmdResult {
    let (since, until) = match &a.period {
        Some(p) => {
            let (s, u) = report::parse_period(p).map_err(Error::Usage)?;
            (Some(s), Some(u))
        }
        None => (
            a.since.as_deref().map(|t| ui.parse_bound(t)).transpose()?,
            a.until.as_deref().map(|t| ui.parse_bound(t)).transpose()?,
        ),
    };
    let (r, unreadable) = chg::query::report(store, policy, since, until)?;
    super::warn_unreadable(unreadable, "counted");
    let period = period_label(&a, &r);
    match if ui.json(&a.json) {
        ReportFormat::Json
    } else {
        a.format
    } {
        ReportFormat::Json => {
            let mut v = serde_json::to_value(&r).map_err(|e| Error::Internal(e.to_string()))?;
            v["period"] = serde_json::json!(period);
            v["targets"] = serde_json::to_value(r.targets()).unwrap_or_default();
            ui.out_json(&v)?
        }
        ReportFormat::Csv => ui.out(&csv(&r))?,
        // Cells were made safe as they went into the tables; colour codes must survive.
        ReportFormat::Table => ui.out_unfiltered(&tables(&r, &period, ui.target()))?,
        ReportFormat::Markdown => ui.out(&markdown(&r, &period))?,
    }
    Ok(ExitCode::SUCCESS)
}

fn period_label(a: &ReportArgs, r: &Report) -> String {
    if let Some(p) = &a.period {
        return p.clone();
    }
    let d = |t: Option<jiff::Timestamp>| t.map(chg::model::format_timestamp);
    match (d(r.since), d(r.until)) {
        (None, None) => "all time".into(),
        (s, u) => format!(
            "{} to {}",
            s.unwrap_or_else(|| "the start".into()),
            u.unwrap_or_else(|| "now".into())
        ),
    }
}

fn value(m: &Measure) -> String {
    match m.value {
        None => "-".into(),
        Some(v) if m.name.ends_with("_rate") => format!("{:.1}%", v * 100.0),
        Some(v) => format!("{v:.1}h"),
    }
}

fn target(m: &Measure) -> String {
    let Some(t) = m.target else {
        return "-".into();
    };
    let sign = if m.bound == "min" { ">=" } else { "<=" };
    if m.name.ends_with("_rate") {
        format!("{sign} {:.1}%", t * 100.0)
    } else {
        format!("{sign} {t:.1}h")
    }
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "-",
    }
}

fn hours(h: Option<f64>) -> String {
    h.map_or_else(|| "-".into(), |h| format!("{h:.1}h"))
}

fn counts(r: &Report) -> Vec<(&'static str, &std::collections::BTreeMap<String, usize>)> {
    vec![
        ("status", &r.by_status),
        ("priority", &r.by_priority),
        ("type", &r.by_type),
        ("model", &r.by_model),
    ]
}

fn tables(r: &Report, period: &str, to: Target) -> String {
    let mut s = format!(
        "Changes requested in {}: {}\n\n",
        chg::text::terminal_safe(period),
        r.total
    );
    let mut t = Grid::new(&["BY", "VALUE", "CHANGES"]);
    for (by, map) in counts(r) {
        for (k, n) in map {
            t.push(vec![by.to_owned(), k.clone(), n.to_string()]);
        }
    }
    s.push_str(&t.render(to));
    s.push('\n');
    let mut t = Grid::new(&[
        "APPROVAL TIME",
        "CHANGES",
        "AVERAGE",
        "MEDIAN",
        "TARGET",
        "",
        "WITHIN TIMEOUT",
    ]);
    for a in r
        .approval_time
        .iter()
        .chain(std::iter::once(&r.implementation_time))
    {
        let name = if a.group == "all" {
            "implementation (all)".to_owned()
        } else {
            a.group.clone()
        };
        t.push(vec![
            name,
            a.count.to_string(),
            hours(a.average_hours),
            hours(a.median_hours),
            a.target_hours
                .map_or_else(|| "-".into(), |h| format!("<= {h:.1}h")),
            verdict(a.met).to_owned(),
            within(a),
        ]);
    }
    s.push_str(&t.render(to));
    s.push('\n');
    let mut t = Grid::new(&["RATE", "VALUE", "OF", "TARGET", ""]);
    for m in &r.rates {
        t.push(vec![
            m.name.clone(),
            value(m),
            m.count.to_string(),
            target(m),
            verdict(m.met).to_owned(),
        ]);
    }
    s.push_str(&t.render(to));
    s
}

fn csv(r: &Report) -> String {
    let mut s = report::Csv::new(&["section", "name", "value", "target", "met"]);
    s.row(["count", "total", &r.total.to_string(), "", ""]);
    for (by, map) in counts(r) {
        for (k, n) in map {
            s.row([by, k, &n.to_string(), "", ""]);
        }
    }
    for m in r.targets() {
        let section = if m.name.ends_with("_rate") {
            "rate"
        } else {
            "hours"
        };
        s.row([
            section.to_owned(),
            m.name.to_string(),
            m.value.map(|v| format!("{v:.4}")).unwrap_or_default(),
            m.target.map(|v| format!("{v:.4}")).unwrap_or_default(),
            m.met.map(|b| b.to_string()).unwrap_or_default(),
        ]);
    }
    s.finish()
}

fn markdown(r: &Report, period: &str) -> String {
    let mut s = format!(
        "# Change report: {period}\n\n{} changes requested.\n\n",
        r.total
    );
    let mut t = MarkdownTable::new(&[
        ("Figure", Left),
        ("Value", Right),
        ("Target", Right),
        ("", Left),
    ]);
    for m in r.targets() {
        t.row([
            m.name.to_string(),
            value(&m),
            target(&m),
            match (m.met, m.target) {
                (Some(true), _) => "met",
                (Some(false), _) => "**missed**",
                (None, None) => "no target",
                (None, Some(_)) => "no data",
            }
            .to_owned(),
        ]);
    }
    s.push_str("## Against the policy's targets\n\n");
    s.push_str(&t.finish());
    let mut t = MarkdownTable::new(&[("By", Left), ("Value", Left), ("Changes", Right)]);
    for (by, map) in counts(r) {
        for (k, n) in map {
            t.row([by, k, &n.to_string()]);
        }
    }
    s.push_str("\n## Counts\n\n");
    s.push_str(&t.finish());
    let mut t = MarkdownTable::new(&[
        ("Priority", Left),
        ("Changes", Right),
        ("Average", Right),
        ("Median", Right),
        ("Within timeout", Right),
    ]);
    for a in &r.approval_time {
        t.row([
            a.group.to_string(),
            a.count.to_string(),
            hours(a.average_hours),
            hours(a.median_hours),
            within(a),
        ]);
    }
    s.push_str("\n## Approval time by priority\n\n");
    s.push_str(&t.finish());
    s.push_str("\n## Closed changes per week by outcome\n\n");
    let labels: Vec<String> = r.weekly.iter().map(|w| w.week.clone()).collect();
    let series = [
        (
            "successful",
            "#2e7d32",
            r.weekly.iter().map(|w| w.successful).collect(),
        ),
        (
            "failed",
            "#c62828",
            r.weekly.iter().map(|w| w.failed).collect(),
        ),
        (
            "rolled back",
            "#ef6c00",
            r.weekly.iter().map(|w| w.rolled_back).collect(),
        ),
    ];
    s.push_str(&report::svg_bars(
        "Closed changes per week by outcome",
        &labels,
        &series,
    ));
    s.push_str("\n\n## Approval-time distribution\n\n");
    let labels: Vec<String> = APPROVAL_BUCKETS.iter().map(|b| b.0.to_owned()).collect();
    s.push_str(&report::svg_bars(
        "Time from request to approval",
        &labels,
        &[(
            "changes",
            "#1565c0",
            report::approval_histogram(&r.approval_hours),
        )],
    ));
    s.push('\n');
    s
}

/// The share of approvals within the policy's timeout, with the timeout: `100% of 24h`.
fn within(a: &report::Times) -> String {
    match (a.within_timeout, a.timeout_hours) {
        (Some(share), Some(h)) => format!("{:.0}% of {h:.0}h", share * 100.0),
        (None, Some(h)) => format!("- of {h:.0}h"),
        _ => "-".into(),
    }
}
