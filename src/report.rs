//! `chg report`: the figures a change manager and an auditor look at for a period, each
//! against the policy's targets (SPEC section 3, `targets`).
//!
//! The population is the changes *requested* in the period. Approval time runs from the
//! request to the approval that completed the required set; it is counted for changes that
//! waited for approval (not emergency changes, approved afterwards, nor pre-approved
//! standard changes). Implementation time runs from `started_at` to `completed_at`. Rates of
//! success, failure and rollback are over the closed changes with an outcome; the emergency
//! rate is over all changes in the period that left draft.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp, ToSpan};
use serde::Serialize;

use crate::model::{ChangeModel, ChangeRequest, Outcome, Priority, Status};
use crate::policy::Policy;

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

fn hours(d: SignedDuration) -> f64 {
    d.as_secs_f64() / 3600.0
}

fn times(group: &str, mut v: Vec<f64>, target: Option<f64>) -> Times {
    v.sort_by(f64::total_cmp);
    let count = v.len();
    let average = (count > 0).then(|| v.iter().sum::<f64>() / count as f64);
    let median = (count > 0).then(|| {
        if count % 2 == 1 {
            v[count / 2]
        } else {
            (v[count / 2 - 1] + v[count / 2]) / 2.0
        }
    });
    Times {
        group: group.to_owned(),
        count,
        average_hours: average,
        median_hours: median,
        target_hours: target,
        met: average.zip(target).map(|(a, t)| a <= t),
        timeout_hours: None,
        within_timeout: None,
    }
}

/// When the change got its last required approval, if it has them all.
pub fn approved_at(change: &ChangeRequest, policy: &Policy) -> Option<Timestamp> {
    let required = policy.required_roles(change);
    if required.is_empty() {
        return None;
    }
    if crate::rules::missing_roles(change, policy).is_empty() {
        return change
            .standing_approvals()
            .filter(|(_, a)| required.contains(&a.role))
            .map(|(_, a)| a.at)
            .max();
    }
    // Approved in its day by roles a later policy changed (an approver retired since): its
    // approval time is still its last standing approval's, as the day's policy counted it.
    // (An emergency may run before its approvals: only a normal change's status says so.)
    use crate::model::{ChangeModel, Status};
    (change.model() == ChangeModel::Normal
        && matches!(
            change.status(),
            Status::Approved | Status::Implementing | Status::Closed
        ))
    .then(|| change.standing_approvals().map(|(_, a)| a.at).max())
    .flatten()
}

/// Builds the report over the changes requested in `[since, until)`.
pub fn build(
    changes: &[&ChangeRequest],
    policy: &Policy,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
) -> Report {
    let in_period: Vec<&ChangeRequest> = changes
        .iter()
        .copied()
        .filter(|c| {
            c.request_date
                .is_some_and(|d| since.is_none_or(|s| d >= s) && until.is_none_or(|u| d < u))
        })
        .collect();
    let mut tally = Tally::default();
    for c in &in_period {
        tally.add(c, policy);
    }
    let t = &policy.targets;
    let approval_hours: Vec<f64> = tally.approval.values().flatten().copied().collect();
    let approval_time = approval_times(&tally.approval, policy);
    let rates = tally.rates(t);
    Report {
        since,
        until,
        total: in_period.len(),
        by_status: tally.by_status,
        by_priority: tally.by_priority,
        by_type: tally.by_type,
        by_model: tally.by_model,
        approval_time,
        implementation_time: times(
            "all",
            tally.implementation,
            target_hours(t.implementation_time),
        ),
        rates,
        weekly: tally
            .weekly
            .into_iter()
            .map(|(d, [s, f, r])| Week {
                week: d.to_string(),
                successful: s,
                failed: f,
                rolled_back: r,
            })
            .collect(),
        approval_hours,
    }
}

/// A policy target's duration in hours.
fn target_hours(d: Option<crate::model::Duration>) -> Option<f64> {
    d.map(|d| d.as_secs() as f64 / 3600.0)
}

/// What the report counts and measures, gathered one change at a time.
#[derive(Default)]
struct Tally {
    by_status: BTreeMap<String, usize>,
    by_priority: BTreeMap<String, usize>,
    by_type: BTreeMap<String, usize>,
    by_model: BTreeMap<String, usize>,
    /// Hours from request to approval of normal changes, by priority.
    approval: BTreeMap<Priority, Vec<f64>>,
    /// Hours from start to completion of closed changes.
    implementation: Vec<f64>,
    outcomes: BTreeMap<Outcome, usize>,
    /// Outcomes (successful, failed, rolled back) by the Monday of their week.
    weekly: BTreeMap<jiff::civil::Date, [usize; 3]>,
    submitted: usize,
    emergencies: usize,
}

impl Tally {
    /// Counts one change of the period.
    fn add(&mut self, c: &ChangeRequest, policy: &Policy) {
        let unset = || "(unset)".to_owned();
        *self.by_status.entry(c.status().to_string()).or_insert(0) += 1;
        *self
            .by_priority
            .entry(c.priority.map_or_else(unset, |p| p.to_string()))
            .or_insert(0) += 1;
        *self
            .by_type
            .entry(c.change_type.clone().unwrap_or_else(unset))
            .or_insert(0) += 1;
        *self.by_model.entry(c.model().to_string()).or_insert(0) += 1;
        if c.status() != Status::Draft {
            self.submitted += 1;
            self.emergencies += usize::from(c.model() == ChangeModel::Emergency);
        }
        // Times out of order (a clock set back, a hand edit) are validate's `time-order`
        // findings; a negative duration is no figure.
        if c.model() == ChangeModel::Normal
            && let (Some(p), Some(req), Some(done)) =
                (c.priority, c.request_date, approved_at(c, policy))
            && done >= req
        {
            self.approval
                .entry(p)
                .or_default()
                .push(hours(done.duration_since(req)));
        }
        if let Some(imp) = &c.implementation
            && c.status() == Status::Closed
        {
            self.add_closed(imp);
        }
    }

    /// Counts a closed change's implementation: its duration, its outcome and the week
    /// that outcome falls in.
    fn add_closed(&mut self, imp: &crate::model::Implementation) {
        if let (Some(s), Some(e)) = (imp.started_at, imp.completed_at)
            && e >= s
        {
            self.implementation.push(hours(e.duration_since(s)));
        }
        if let Some(o) = imp.outcome {
            *self.outcomes.entry(o).or_insert(0) += 1;
            if let Some(done) = imp.completed_at {
                let date = done.to_zoned(jiff::tz::TimeZone::UTC).date();
                let monday = date
                    .checked_sub((date.weekday().to_monday_zero_offset() as i64).days())
                    .unwrap_or(date);
                let slot = match o {
                    Outcome::Successful => 0,
                    Outcome::Failed => 1,
                    Outcome::RolledBack => 2,
                };
                self.weekly.entry(monday).or_insert([0; 3])[slot] += 1;
            }
        }
    }

    /// The outcome rates over closed changes and the emergency rate over submitted ones,
    /// each against its target.
    fn rates(&self, t: &crate::policy::Targets) -> Vec<Measure> {
        let closed: usize = self.outcomes.values().sum();
        let share = |n: usize, d: usize| (d > 0).then(|| n as f64 / d as f64);
        let rate = |name: &str, n: usize, d: usize, target: Option<f64>, bound: &'static str| {
            let value = share(n, d);
            Measure {
                name: name.to_owned(),
                value,
                target,
                bound,
                met: value
                    .zip(target)
                    .map(|(v, t)| if bound == "min" { v >= t } else { v <= t }),
                count: d,
            }
        };
        let n = |o| self.outcomes.get(&o).copied().unwrap_or(0);
        vec![
            rate(
                "success_rate",
                n(Outcome::Successful),
                closed,
                t.success_rate,
                "min",
            ),
            rate(
                "failure_rate",
                n(Outcome::Failed),
                closed,
                t.failure_rate,
                "max",
            ),
            rate(
                "rollback_rate",
                n(Outcome::RolledBack),
                closed,
                t.rollback_rate,
                "max",
            ),
            rate(
                "emergency_rate",
                self.emergencies,
                self.submitted,
                t.emergency_rate,
                "max",
            ),
        ]
    }
}

/// Approval times by priority, each against the policy's target and its approval
/// timeout (the share approved within it).
fn approval_times(approval: &BTreeMap<Priority, Vec<f64>>, policy: &Policy) -> Vec<Times> {
    let t = &policy.targets;
    Priority::ALL
        .iter()
        .map(|p| {
            let target = match p {
                Priority::Critical => t.approval_time_critical,
                Priority::High => t.approval_time_high,
                Priority::Medium => t.approval_time_medium,
                Priority::Low => t.approval_time_low,
            };
            let measured = approval.get(p).cloned().unwrap_or_default();
            let timeout = target_hours(policy.approvals.get(p).and_then(|r| r.timeout));
            let within = timeout.and_then(|limit| {
                let n = measured.iter().filter(|h| **h <= limit).count();
                (!measured.is_empty()).then(|| n as f64 / measured.len() as f64)
            });
            Times {
                timeout_hours: timeout,
                within_timeout: within,
                ..times(p.as_str(), measured, target_hours(target))
            }
        })
        .collect()
}

pub use crate::text::csv_field;

/// CSV as chg writes it (`chg list`, `chg report`, `chg audit`, the evidence pack): RFC 4180
/// by the `csv` crate, `\n` line ends, every field but the header's guarded against
/// spreadsheet formulas as [`csv_field`] guards it.
pub struct Csv(csv::Writer<Vec<u8>>);

impl Csv {
    /// A CSV text with this header line.
    pub fn new(header: &[&str]) -> Csv {
        // Flexible: a row of another length is written as it is, as the hand-made rows
        // were, rather than failing the whole export.
        let mut w = csv::WriterBuilder::new()
            .flexible(true)
            .from_writer(Vec::new());
        // Writing to memory fails only if memory does.
        w.write_record(header).expect("CSV in memory");
        Csv(w)
    }

    /// One row.
    pub fn row<S: AsRef<str>>(&mut self, fields: impl IntoIterator<Item = S>) {
        let guarded: Vec<String> = fields
            .into_iter()
            .map(|f| formula_safe(f.as_ref()).into_owned())
            .collect();
        self.0.write_record(&guarded).expect("CSV in memory");
    }

    /// The text.
    pub fn finish(self) -> String {
        let bytes = self.0.into_inner().unwrap_or_default();
        String::from_utf8(bytes).expect("CSV of UTF-8 fields")
    }
}

/// A value a spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, a tab or
/// a carriage return), prefixed with `'` as OWASP advises, so it is shown as text.
fn formula_safe(s: &str) -> std::borrow::Cow<'_, str> {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{s}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// How a Markdown table's column is aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// `---`
    Left,
    /// `---:` (numbers)
    Right,
}

/// A Markdown table (report, CAB agenda, the evidence pack's pages): a header, its
/// alignment line, then rows. Cells are written as given; [`md_cell`] makes free text one.
pub struct MarkdownTable(String);

impl MarkdownTable {
    /// A table with these columns; a column without a name has a header of one space.
    pub fn new(columns: &[(&str, Align)]) -> MarkdownTable {
        let mut s = String::from("|");
        for (name, _) in columns {
            s.push_str(&if name.is_empty() {
                " |".to_owned()
            } else {
                format!(" {name} |")
            });
        }
        s.push_str("\n|");
        for (_, align) in columns {
            s.push_str(match align {
                Align::Left => " --- |",
                Align::Right => " ---: |",
            });
        }
        s.push('\n');
        MarkdownTable(s)
    }

    /// Left-aligned columns with these names.
    pub fn left(names: &[&str]) -> MarkdownTable {
        let columns: Vec<(&str, Align)> = names.iter().map(|n| (*n, Align::Left)).collect();
        MarkdownTable::new(&columns)
    }

    /// One row.
    pub fn row<S: AsRef<str>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.0.push('|');
        for c in cells {
            self.0.push(' ');
            self.0.push_str(c.as_ref());
            self.0.push_str(" |");
        }
        self.0.push('\n');
    }

    /// The text, ending with a newline.
    pub fn finish(self) -> String {
        self.0
    }
}

/// Free text as one Markdown table cell: `|` escaped, line breaks as spaces.
pub fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Approval-time buckets of the distribution chart: (label, upper bound in hours).
pub const APPROVAL_BUCKETS: &[(&str, f64)] = &[
    ("< 1h", 1.0),
    ("1-4h", 4.0),
    ("4-24h", 24.0),
    ("1-3d", 72.0),
    ("3-7d", 168.0),
    ("> 7d", f64::INFINITY),
];

/// How many approval times fall in each of [`APPROVAL_BUCKETS`].
pub fn approval_histogram(hours: &[f64]) -> Vec<usize> {
    let mut out = vec![0; APPROVAL_BUCKETS.len()];
    for h in hours {
        let i = APPROVAL_BUCKETS
            .iter()
            .position(|(_, max)| h < max)
            .unwrap_or(APPROVAL_BUCKETS.len() - 1);
        out[i] += 1;
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A bar chart as SVG: one group per label, stacked series with a legend.
pub fn svg_bars(title: &str, labels: &[String], series: &[(&str, &str, Vec<usize>)]) -> String {
    let (w, h, left, bottom, top) = (640.0, 240.0, 40.0, 40.0, 30.0);
    let max = (0..labels.len())
        .map(|i| series.iter().map(|s| s.2[i]).sum::<usize>())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let plot_h = h - bottom - top;
    let slot = (w - left - 10.0) / labels.len().max(1) as f64;
    let bar = (slot * 0.7).max(1.0);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"11\">\n<title>{}</title>\n<text x=\"{left}\" y=\"16\" font-size=\"13\">{}</text>\n",
        escape(title),
        escape(title)
    );
    s.push_str(&format!(
        "<line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#888\"/>\n<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{max}</text>\n<text x=\"{}\" y=\"{}\" text-anchor=\"end\">0</text>\n",
        h - bottom,
        w - 10.0,
        h - bottom,
        left - 4.0,
        top + 4.0,
        left - 4.0,
        h - bottom
    ));
    let every = (labels.len() / 12).max(1);
    for (i, label) in labels.iter().enumerate() {
        let x = left + i as f64 * slot + (slot - bar) / 2.0;
        let mut y = h - bottom;
        for (name, colour, values) in series {
            let v = values[i];
            if v == 0 {
                continue;
            }
            let bh = v as f64 / max * plot_h;
            y -= bh;
            s.push_str(&format!(
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar:.1}\" height=\"{bh:.1}\" fill=\"{colour}\"><title>{}: {v} {name}</title></rect>\n",
                escape(label)
            ));
        }
        if i % every == 0 {
            s.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
                x + bar / 2.0,
                h - bottom + 14.0,
                escape(label)
            ));
        }
    }
    let mut lx = left;
    for (name, colour, _) in series {
        s.push_str(&format!(
            "<rect x=\"{lx}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{colour}\"/><text x=\"{}\" y=\"{}\">{}</text>\n",
            h - 14.0,
            lx + 14.0,
            h - 5.0,
            escape(name)
        ));
        lx += 110.0;
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    /// The csv crate writes what the hand-made fields wrote: the pack's bytes do not move.
    #[test]
    fn csv_rows_are_the_hand_quoted_fields_they_replaced() {
        let fields = [
            "plain",
            "a,b",
            "say \"hi\"",
            "two\nlines",
            "cr\r",
            "=1+1",
            "-1",
            "@x",
            "\tx",
            "",
            "é ünïcode",
            " spaced ",
        ];
        let mut c = super::Csv::new(&["h1", "h2"]);
        c.row(fields);
        let want: Vec<String> = fields.iter().map(|f| super::csv_field(f)).collect();
        assert_eq!(c.finish(), format!("h1,h2\n{}\n", want.join(",")));
    }

    use super::*;
    use crate::model::{Approval, Decision, Implementation, sample_change};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

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

    /// Four changes with figures worked out by hand.
    #[test]
    fn figures_match_a_hand_computed_fixture() {
        let policy = Policy::default_policy();
        let approve = |by: &str, role: &str, at: &str| Approval {
            by: by.into(),
            role: role.into(),
            decision: Decision::Approved,
            at: ts(at),
            comments: None,
            conditions: Vec::new(),
            digest: None,
            signature: None,
            attested_by: None,
            attested_via: None,
        };
        let closed = |c: &mut ChangeRequest, start: &str, end: &str, o: Outcome| {
            c.status = Some(Status::Closed);
            c.implementation = Some(Implementation {
                implementer: Some("bob@example.com".into()),
                started_at: Some(ts(start)),
                completed_at: Some(ts(end)),
                outcome: Some(o),
                test_results: None,
                ..Default::default()
            });
        };
        // Low priority (change-manager), requested 03-01 09:00, approved 10 h later,
        // implemented in 2 h, successful.
        let mut a = sample_change();
        a.approvals = vec![approve(
            "cm@example.com",
            "change-manager",
            "2025-03-01T19:00:00Z",
        )];
        closed(
            &mut a,
            "2025-03-03T10:00:00Z",
            "2025-03-03T12:00:00Z",
            Outcome::Successful,
        );
        // Low, approved after 30 h, implemented in 4 h, rolled back.
        let mut b = sample_change();
        b.approvals = vec![approve(
            "cm@example.com",
            "change-manager",
            "2025-03-02T15:00:00Z",
        )];
        closed(
            &mut b,
            "2025-03-10T10:00:00Z",
            "2025-03-10T14:00:00Z",
            Outcome::RolledBack,
        );
        // Emergency, implemented in 6 h, failed; its approval time is not counted.
        let mut c = sample_change();
        c.change_model = Some(ChangeModel::Emergency);
        c.priority = Some(Priority::Critical);
        closed(
            &mut c,
            "2025-03-04T00:00:00Z",
            "2025-03-04T06:00:00Z",
            Outcome::Failed,
        );
        // Pending, and one outside the period.
        let d = sample_change();
        let mut e = sample_change();
        e.request_date = Some(ts("2025-04-01T00:00:00Z"));
        let all = [&a, &b, &c, &d, &e];
        let (since, until) = parse_period("2025-03").unwrap();
        let r = build(&all, &policy, Some(since), Some(until));
        assert_eq!(r.total, 4);
        assert_eq!(r.by_status["closed"], 3);
        assert_eq!(r.by_status["pending_approval"], 1);
        assert_eq!(r.by_model["emergency"], 1);
        assert_eq!(r.by_priority["low"], 3);
        let low = r.approval_time.iter().find(|t| t.group == "low").unwrap();
        assert_eq!(
            (low.count, low.average_hours, low.median_hours),
            (2, Some(20.0), Some(20.0))
        );
        // Implementation: 2, 4, 6 hours; the target is 4 h.
        let imp = &r.implementation_time;
        assert_eq!(
            (imp.count, imp.average_hours, imp.median_hours, imp.met),
            (3, Some(4.0), Some(4.0), Some(true))
        );
        let rate = |n: &str| r.rates.iter().find(|m| m.name == n).unwrap().clone();
        assert_eq!(rate("success_rate").value, Some(1.0 / 3.0));
        assert_eq!(rate("success_rate").met, Some(false));
        assert_eq!(rate("rollback_rate").value, Some(1.0 / 3.0));
        assert_eq!(rate("emergency_rate").value, Some(0.25));
        assert_eq!(rate("emergency_rate").met, Some(false));
        assert_eq!(rate("failure_rate").met, None);
        assert_eq!(
            r.weekly,
            [
                Week {
                    week: "2025-03-03".into(),
                    successful: 1,
                    failed: 1,
                    rolled_back: 0
                },
                Week {
                    week: "2025-03-10".into(),
                    successful: 0,
                    failed: 0,
                    rolled_back: 1
                },
            ]
        );
        assert_eq!(approval_histogram(&r.approval_hours), [0, 0, 1, 1, 0, 0]);
        assert!(r.missed());
    }
}
