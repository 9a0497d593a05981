//! `chg report`: the figures a change manager and an auditor look at for a period, each
//! against the policy's targets (SPEC section 3, `targets`).
//!
//! The population is the changes *requested* in the period. Approval time runs from the
//! request to the approval that completed the required set; it is counted for changes that
//! waited for approval (not emergency changes, approved afterwards, nor pre-approved
//! standard changes). Implementation time runs from `started_at` to `completed_at`. Rates of
//! success, failure and rollback are over the closed changes with an outcome; the emergency
//! rate is over all changes in the period that left draft.
//!
//! This file holds the period and the report's types; `tally` builds the report from the
//! changes, `tables` writes CSV and Markdown tables (for every command that exports),
//! `chart` draws the SVG bar charts.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;

mod chart;
mod tables;
mod tally;

pub use chart::{APPROVAL_BUCKETS, approval_histogram, svg_bars};
pub use tables::{Align, Csv, MarkdownTable, csv_field, md_cell};
pub(crate) use tally::Tally;
pub use tally::{approved_at, build};

/// A period: `2025`, `2025-Q1` or `2025-01`, as `[since, until)` in UTC.
pub fn parse_period(text: &str) -> Result<(Timestamp, Timestamp), String> {
    let bad = || format!("`{text}` is not a period (like 2025, 2025-Q1 or 2025-01)");
    let utc = |y: i16, m: i8| {
        jiff::civil::date(y, m, 1)
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp())
            .map_err(|_| bad())
    };
    let (year, rest) = text.split_once('-').unwrap_or((text, ""));
    let year: i16 = year
        .parse()
        .ok()
        .filter(|y| (1970..=9998).contains(y))
        .ok_or_else(bad)?;
    let (first, months) = if rest.is_empty() {
        (1, 12)
    } else if let Some(q) = rest.strip_prefix(['Q', 'q']) {
        let q: i8 = q
            .parse()
            .ok()
            .filter(|q| (1..=4).contains(q))
            .ok_or_else(bad)?;
        ((q - 1) * 3 + 1, 3)
    } else {
        let m: i8 = (rest.len() == 2)
            .then(|| rest.parse().ok())
            .flatten()
            .filter(|m| (1..=12).contains(m))
            .ok_or_else(bad)?;
        (m, 1)
    };
    let start = utc(year, first)?;
    let last = first + months;
    let end = if last > 12 {
        utc(year + 1, last - 12)?
    } else {
        utc(year, last)?
    };
    Ok((start, end))
}

/// A figure compared with its target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measure {
    /// What it is (`success_rate`, `approval_time_high`, …): the policy's target name.
    pub name: String,
    /// The value: a share (0..1) for rates, hours for times; `None` without data.
    pub value: Option<f64>,
    /// The target from the policy.
    pub target: Option<f64>,
    /// `min` (the value must reach the target) or `max` (must not exceed it).
    pub bound: &'static str,
    /// Met, missed, or `None` when there is no target or no data.
    pub met: Option<bool>,
    /// How many changes the figure is computed from.
    pub count: usize,
}

/// Times in hours for one group of changes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Times {
    /// The group (a priority, or `all`).
    pub group: String,
    /// Changes measured.
    pub count: usize,
    /// Mean, hours.
    pub average_hours: Option<f64>,
    /// Median, hours.
    pub median_hours: Option<f64>,
    /// The policy's target for the average, hours.
    pub target_hours: Option<f64>,
    /// Whether the average is within the target.
    pub met: Option<bool>,
    /// Approval times: the policy's approval timeout for the priority (SPEC section 13), hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_hours: Option<f64>,
    /// Approval times: the share of the changes measured that were approved within it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within_timeout: Option<f64>,
}

/// Closed changes of one week by outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Week {
    /// The Monday the week starts on.
    pub week: String,
    /// Successful.
    pub successful: usize,
    /// Failed.
    pub failed: usize,
    /// Rolled back.
    pub rolled_back: usize,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// First instant of the period, if bounded.
    pub since: Option<Timestamp>,
    /// First instant after the period, if bounded.
    pub until: Option<Timestamp>,
    /// Changes requested in the period.
    pub total: usize,
    /// Counts by status.
    pub by_status: BTreeMap<String, usize>,
    /// Counts by priority.
    pub by_priority: BTreeMap<String, usize>,
    /// Counts by change type.
    pub by_type: BTreeMap<String, usize>,
    /// Counts by change model.
    pub by_model: BTreeMap<String, usize>,
    /// Approval time per priority.
    pub approval_time: Vec<Times>,
    /// Implementation time of closed changes.
    pub implementation_time: Times,
    /// Success, failure, rollback and emergency rates.
    pub rates: Vec<Measure>,
    /// Closed changes per week by outcome (week of completion).
    pub weekly: Vec<Week>,
    /// Approval times in hours, for the distribution chart.
    pub approval_hours: Vec<f64>,
}

impl Report {
    /// Every target compared: the rates, approval times and implementation time.
    pub fn targets(&self) -> Vec<Measure> {
        let mut out = self.rates.clone();
        for t in self
            .approval_time
            .iter()
            .chain(std::iter::once(&self.implementation_time))
        {
            let name = if t.group == "all" {
                "implementation_time".to_owned()
            } else {
                format!("approval_time_{}", t.group)
            };
            out.push(Measure {
                name,
                value: t.average_hours,
                target: t.target_hours,
                bound: "max",
                met: t.met,
                count: t.count,
            });
        }
        out
    }

    /// Whether any target was missed.
    pub fn missed(&self) -> bool {
        self.targets().iter().any(|m| m.met == Some(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods() {
        let p = |t| parse_period(t).map(|(a, b)| (a.to_string(), b.to_string()));
        assert_eq!(
            p("2025").unwrap(),
            ("2025-01-01T00:00:00Z".into(), "2026-01-01T00:00:00Z".into())
        );
        assert_eq!(
            p("2025-Q4").unwrap(),
            ("2025-10-01T00:00:00Z".into(), "2026-01-01T00:00:00Z".into())
        );
        assert_eq!(
            p("2025-02").unwrap(),
            ("2025-02-01T00:00:00Z".into(), "2025-03-01T00:00:00Z".into())
        );
        for bad in ["2025-13", "2025-Q5", "25", "2025-1", "soon", ""] {
            assert!(p(bad).is_err(), "{bad}");
        }
    }
}
