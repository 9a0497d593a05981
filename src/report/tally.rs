//! The report built from the changes requested in a period: one pass that counts and
//! measures each change ([`Tally`]), then the times and rates against the policy's targets.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp, ToSpan};

use crate::model::{ChangeModel, ChangeRequest, Outcome, Priority, Status};
use crate::policy::Policy;

use super::{Measure, Report, Times, Week};

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
    let mut tally = Tally::default();
    for c in changes {
        tally.add_if_in(c, policy, since, until);
    }
    tally.finish(policy, since, until)
}

impl Tally {
    /// Counts `c` if it was requested in `[since, until)`.
    pub(crate) fn add_if_in(
        &mut self,
        c: &ChangeRequest,
        policy: &Policy,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) {
        if c.request_date
            .is_some_and(|d| since.is_none_or(|s| d >= s) && until.is_none_or(|u| d < u))
        {
            self.total += 1;
            self.add(c, policy);
        }
    }

    /// Adds what `other` counted, after what this one counted (the approval times keep
    /// that order: the chart's list is in the order of the changes).
    pub(crate) fn merge(&mut self, other: Tally) {
        let sum = |a: &mut BTreeMap<String, usize>, b: BTreeMap<String, usize>| {
            for (k, n) in b {
                *a.entry(k).or_insert(0) += n;
            }
        };
        sum(&mut self.by_status, other.by_status);
        sum(&mut self.by_priority, other.by_priority);
        sum(&mut self.by_type, other.by_type);
        sum(&mut self.by_model, other.by_model);
        for (p, v) in other.approval {
            self.approval.entry(p).or_default().extend(v);
        }
        self.implementation.extend(other.implementation);
        for (o, n) in other.outcomes {
            *self.outcomes.entry(o).or_insert(0) += n;
        }
        for (d, w) in other.weekly {
            let mine = self.weekly.entry(d).or_insert([0; 3]);
            for (m, n) in mine.iter_mut().zip(w) {
                *m += n;
            }
        }
        self.submitted += other.submitted;
        self.emergencies += other.emergencies;
        self.total += other.total;
    }

    /// The report of what was counted.
    pub(crate) fn finish(
        self,
        policy: &Policy,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Report {
        let tally = self;
        let t = &policy.targets;
        let approval_hours: Vec<f64> = tally.approval.values().flatten().copied().collect();
        let approval_time = approval_times(&tally.approval, policy);
        let rates = tally.rates(t);
        Report {
            since,
            until,
            total: tally.total,
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
}

/// A policy target's duration in hours.
fn target_hours(d: Option<crate::model::Duration>) -> Option<f64> {
    d.map(|d| d.as_secs() as f64 / 3600.0)
}

/// What the report counts and measures, gathered one change at a time (or in parts, then
/// merged in order).
#[derive(Default)]
pub(crate) struct Tally {
    /// Changes of the period.
    total: usize,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Approval, Decision, Implementation, sample_change};
    use crate::report::{approval_histogram, parse_period};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// Four changes with figures worked out by hand.
    #[test]
    fn figures_match_a_hand_computed_fixture() {
        let policy = Policy::default_policy();
        let approve = |by: &str, role: &str, at: &str| {
            Approval::new(by.into(), role.into(), Decision::Approved, ts(at))
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
