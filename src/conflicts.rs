//! Scheduling conflicts, as the big ITSM suites detect them: two changes to a common
//! affected system in overlapping windows, a change flagged `maintenance_window` outside
//! every maintenance window, a normal or standard change scheduled into a freeze. The
//! policy's `conflicts:` section decides whether each warns or blocks.
//!
//! Intervals are half-open: a change ending at 04:00 and one starting at 04:00 touch but do
//! not overlap.

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::model::{ChangeModel, ChangeRequest, Schedule, Status, format_timestamp};
use crate::policy::{ConflictLevel, Policy};

/// One conflict of one change's schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    /// `overlap`, `outside-window` or `freeze`.
    pub kind: &'static str,
    /// What the policy says it does.
    pub level: ConflictLevel,
    /// The change.
    pub change: String,
    /// The other change, for an overlap.
    pub other: Option<String>,
    /// The systems both touch, for an overlap.
    pub systems: Vec<String>,
    /// One sentence naming both ids where there are two.
    pub message: String,
}

impl Conflict {
    /// Whether the policy blocks it.
    pub fn blocks(&self) -> bool {
        self.level == ConflictLevel::Block
    }
}

/// Whether a change still takes part in scheduling (not finished, cancelled or rejected).
pub fn active(c: &ChangeRequest) -> bool {
    matches!(
        c.status(),
        Status::Draft | Status::PendingApproval | Status::Approved | Status::Implementing
    )
}

/// Whether `c` can be in another change's way: active and scheduled. Conflict checks and
/// slot searches look at nothing else, so whole-store reads for them keep only these.
pub fn can_conflict(c: &ChangeRequest) -> bool {
    active(c) && c.schedule.is_some()
}

/// Every conflict of `change` if it ran at `schedule`, against the `others` (the change
/// itself among them is skipped).
pub fn conflicts(
    change: &ChangeRequest,
    schedule: &Schedule,
    others: &[&ChangeRequest],
    policy: &Policy,
) -> Vec<Conflict> {
    let id = change.id_text();
    let mut out = Vec::new();
    let (start, end) = (schedule.start, schedule.end);
    if change.model() != ChangeModel::Emergency
        && let Some(f) = policy.freeze_overlapping(start, end)
    {
        out.push(Conflict {
            kind: "freeze",
            level: policy.conflicts.freeze,
            change: id.clone(),
            other: None,
            systems: Vec::new(),
            message: format!(
                "{id} ({} to {}) overlaps the freeze `{}` ({} to {})",
                format_timestamp(start),
                format_timestamp(end),
                f.reason,
                format_timestamp(f.start),
                format_timestamp(f.end)
            ),
        });
    }
    if schedule.maintenance_window && !policy.in_maintenance_window(start, end) {
        out.push(Conflict {
            kind: "outside-window",
            level: policy.conflicts.outside_window,
            change: id.clone(),
            other: None,
            systems: Vec::new(),
            message: format!(
                "{id} is flagged maintenance_window but {} to {} is not inside any maintenance window",
                format_timestamp(start),
                format_timestamp(end)
            ),
        });
    }
    for o in others {
        if o.id == change.id || !active(o) {
            continue;
        }
        let Some(os) = &o.schedule else { continue };
        if !(start < os.end && os.start < end) {
            continue;
        }
        let systems: Vec<String> = change
            .affected_systems
            .iter()
            .filter(|s| o.affected_systems.contains(s))
            .cloned()
            .collect();
        if systems.is_empty() {
            continue;
        }
        let other = o.id_text();
        out.push(Conflict {
            kind: "overlap",
            level: policy.conflicts.overlap,
            change: id.clone(),
            other: Some(other.clone()),
            message: format!(
                "{id} ({} to {}) and {other} ({} to {}) both change {}",
                format_timestamp(start),
                format_timestamp(end),
                format_timestamp(os.start),
                format_timestamp(os.end),
                systems.join(", ")
            ),
            systems,
        });
    }
    out
}

/// Screens a new schedule: refuses it, naming both changes, when an overlap the policy
/// blocks exists; otherwise returns the conflicts that only warn. (Blocking freezes and
/// windows are refused by the schedule step itself, `rules::schedule_problem`.)
pub fn screen(
    change: &ChangeRequest,
    schedule: &Schedule,
    others: &[&ChangeRequest],
    policy: &Policy,
) -> crate::Result<Vec<Conflict>> {
    if schedule.end <= schedule.start {
        return Ok(Vec::new());
    }
    let (blocking, warnings): (Vec<Conflict>, Vec<Conflict>) =
        conflicts(change, schedule, others, policy)
            .into_iter()
            .partition(Conflict::blocks);
    let overlaps: Vec<&str> = blocking
        .iter()
        .filter(|c| c.kind == "overlap")
        .map(|c| c.message.as_str())
        .collect();
    if !overlaps.is_empty() {
        return Err(crate::Error::refused(
            "conflict",
            format!(
                "{} cannot be scheduled then: {}",
                change.id_text(),
                overlaps.join("; ")
            ),
        ));
    }
    Ok(warnings)
}

/// The earliest window of `duration` starting at or after `from` (rounded up to the next
/// quarter hour) that has no blocking or warning conflict: outside freezes (unless
/// emergency), inside a maintenance window when `maintenance_window`, and clear of every
/// active change to a common system. Searches a year ahead.
pub fn next_slot(
    change: &ChangeRequest,
    duration: SignedDuration,
    maintenance_window: bool,
    from: Timestamp,
    others: &[&ChangeRequest],
    policy: &Policy,
) -> Option<Schedule> {
    let quarter = 15 * 60;
    let first =
        Timestamp::from_second((from.as_second() + quarter - 1).div_euclid(quarter) * quarter)
            .ok()?;
    let horizon = first
        .checked_add(SignedDuration::from_hours(24 * 366))
        .ok()?;
    // Candidate starts: the first instant, the end of everything that can be in the way,
    // and every opening of a maintenance window.
    let mut candidates = vec![first];
    candidates.extend(policy.freezes.iter().map(|f| f.end));
    for o in others {
        if let Some(s) = &o.schedule
            && active(o)
        {
            candidates.push(s.end);
        }
    }
    if maintenance_window {
        candidates.extend(
            crate::calendar::openings(policy, first, horizon)
                .into_iter()
                .map(|w| w.start),
        );
    }
    candidates.retain(|t| *t >= first && *t < horizon);
    candidates.sort();
    candidates.dedup();
    candidates.into_iter().find_map(|start| {
        let schedule = Schedule {
            start,
            end: start.checked_add(duration).ok()?,
            maintenance_window,
        };
        conflicts(change, &schedule, others, policy)
            .is_empty()
            .then_some(schedule)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::sample_change;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn scheduled(id: &str, systems: &[&str], start: &str, end: &str) -> ChangeRequest {
        let mut c = sample_change();
        c.id = Some(id.parse().unwrap());
        c.affected_systems = systems.iter().map(|s| (*s).to_owned()).collect();
        c.schedule = Some(Schedule {
            start: ts(start),
            end: ts(end),
            maintenance_window: false,
        });
        c
    }

    #[test]
    fn overlaps_need_a_common_system_and_a_real_overlap() {
        let p = Policy::default_policy();
        let a = scheduled(
            "CHG-2025-001",
            &["api", "db"],
            "2025-03-10T02:00:00Z",
            "2025-03-10T04:00:00Z",
        );
        let b = scheduled(
            "CHG-2025-002",
            &["db", "cache"],
            "2025-03-10T03:00:00Z",
            "2025-03-10T05:00:00Z",
        );
        let touching = scheduled(
            "CHG-2025-003",
            &["api"],
            "2025-03-10T04:00:00Z",
            "2025-03-10T05:00:00Z",
        );
        let elsewhere = scheduled(
            "CHG-2025-004",
            &["web"],
            "2025-03-10T02:00:00Z",
            "2025-03-10T04:00:00Z",
        );
        let mut cancelled = scheduled(
            "CHG-2025-005",
            &["api"],
            "2025-03-10T02:00:00Z",
            "2025-03-10T04:00:00Z",
        );
        cancelled.status = Some(Status::Cancelled);
        let others = [&a, &b, &touching, &elsewhere, &cancelled];
        let found = conflicts(&a, a.schedule.as_ref().unwrap(), &others, &p);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].other.as_deref(), Some("CHG-2025-002"));
        assert_eq!(found[0].systems, ["db"]);
        assert_eq!(found[0].level, ConflictLevel::Warn);
        assert!(
            found[0].message.contains("CHG-2025-001") && found[0].message.contains("CHG-2025-002")
        );
    }

    #[test]
    fn freezes_spanning_a_year_end_and_windows_block_by_default() {
        let p = Policy::default_policy();
        let mut c = scheduled(
            "CHG-2025-001",
            &["api"],
            "2026-01-03T23:00:00Z",
            "2026-01-04T01:00:00Z",
        );
        let found = conflicts(&c, c.schedule.as_ref().unwrap(), &[], &p);
        assert_eq!(found.iter().map(|c| c.kind).collect::<Vec<_>>(), ["freeze"]);
        assert!(found[0].blocks());
        // Touching the freeze's end is fine; emergencies ignore freezes.
        let after = Schedule {
            start: ts("2026-01-04T00:00:00Z"),
            end: ts("2026-01-04T01:00:00Z"),
            maintenance_window: false,
        };
        assert!(conflicts(&c, &after, &[], &p).is_empty());
        c.change_model = Some(ChangeModel::Emergency);
        assert!(conflicts(&c, c.schedule.as_ref().unwrap(), &[], &p).is_empty());
        // Saturday 02:00-06:00 UTC is a window; Friday is not.
        let flagged = |start: &str, end: &str| Schedule {
            start: ts(start),
            end: ts(end),
            maintenance_window: true,
        };
        assert!(
            conflicts(
                &c,
                &flagged("2025-03-08T02:00:00Z", "2025-03-08T06:00:00Z"),
                &[],
                &p
            )
            .is_empty()
        );
        let out = conflicts(
            &c,
            &flagged("2025-03-07T02:00:00Z", "2025-03-07T03:00:00Z"),
            &[],
            &p,
        );
        assert_eq!(out[0].kind, "outside-window");
    }

    #[test]
    fn the_next_slot_skips_freezes_conflicts_and_waits_for_a_window() {
        let p = Policy::default_policy();
        let c = scheduled(
            "CHG-2025-001",
            &["api"],
            "2025-03-10T02:00:00Z",
            "2025-03-10T04:00:00Z",
        );
        let busy = scheduled(
            "CHG-2025-002",
            &["api"],
            "2025-12-19T20:00:00Z",
            "2025-12-19T23:00:00Z",
        );
        let two = SignedDuration::from_hours(2);
        // From 21:07 on 2025-12-19: busy until 23:00, then the holiday freeze until 2026-01-04.
        let slot = next_slot(&c, two, false, ts("2025-12-19T21:07:00Z"), &[&busy], &p).unwrap();
        assert_eq!(slot.start, ts("2026-01-04T00:00:00Z"));
        let slot = next_slot(&c, two, false, ts("2025-03-10T10:07:00Z"), &[&busy], &p).unwrap();
        assert_eq!(slot.start, ts("2025-03-10T10:15:00Z"));
        // Flagged: the next weekend window opening, Saturday 2025-03-15 02:00 UTC.
        let slot = next_slot(&c, two, true, ts("2025-03-10T10:07:00Z"), &[], &p).unwrap();
        assert_eq!(slot.start, ts("2025-03-15T02:00:00Z"));
    }
}
