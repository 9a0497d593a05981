//! `chg calendar`: scheduled changes, freezes and maintenance-window openings in a range,
//! and their iCalendar (RFC 5545) form for calendar applications.

use jiff::{SignedDuration, Timestamp, ToSpan};
use serde::Serialize;

use crate::model::{ChangeRequest, format_timestamp};
use crate::policy::Policy;

/// One entry of the calendar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// `change`, `freeze` or `maintenance`.
    pub kind: &'static str,
    /// A stable identifier (the change id; `freeze-N`, `maintenance-N-DATE`).
    pub uid: String,
    /// Start.
    pub start: Timestamp,
    /// End.
    pub end: Timestamp,
    /// One line.
    pub summary: String,
    /// More, for a change: status, priority, risk, systems.
    pub description: String,
}

/// Every opening of every maintenance window that overlaps `[from, to)`.
pub fn openings(policy: &Policy, from: Timestamp, to: Timestamp) -> Vec<Event> {
    let mut out = Vec::new();
    for (n, w) in policy.maintenance.iter().enumerate() {
        let first = from.to_zoned(w.timezone.clone()).date();
        let last = to.to_zoned(w.timezone.clone()).date();
        let mut day = first.yesterday().unwrap_or(first);
        while day <= last {
            if let Some((start, end)) = w.opening_on(day)
                && start < to
                && end > from
            {
                out.push(Event {
                    kind: "maintenance",
                    uid: format!("maintenance-{}-{day}", n + 1),
                    start,
                    end,
                    summary: format!("Maintenance window ({})", w.timezone_name),
                    description: format!(
                        "Changes flagged maintenance_window may run from {} to {} {}",
                        w.start, w.end, w.timezone_name
                    ),
                });
            }
            let Ok(next) = day.checked_add(1.day()) else {
                break;
            };
            day = next;
        }
    }
    out.sort_by_key(|e| e.start);
    out
}

/// Scheduled changes (not cancelled or rejected), freezes and window openings overlapping
/// `[from, to)`, by start.
pub fn events(
    changes: &[&ChangeRequest],
    policy: &Policy,
    from: Timestamp,
    to: Timestamp,
) -> Vec<Event> {
    let mut out = Vec::new();
    for c in changes {
        let Some(s) = &c.schedule else { continue };
        if !(s.start < to && s.end > from)
            || matches!(
                c.status(),
                crate::model::Status::Cancelled | crate::model::Status::Rejected
            )
        {
            continue;
        }
        let id = c.id_text();
        out.push(Event {
            kind: "change",
            uid: id.clone(),
            start: s.start,
            end: s.end,
            summary: format!("{id}: {}", c.title.as_deref().unwrap_or("(no title)")),
            description: format!(
                "status {}; {} priority, {} risk; systems: {}{}",
                c.status(),
                c.field_text("priority").unwrap_or_else(|| "-".into()),
                c.field_text("risk_level").unwrap_or_else(|| "-".into()),
                c.affected_systems.join(", "),
                if s.maintenance_window {
                    "; in a maintenance window"
                } else {
                    ""
                }
            ),
        });
    }
    for (n, f) in policy.freezes.iter().enumerate() {
        if f.start < to && f.end > from {
            out.push(Event {
                kind: "freeze",
                uid: format!("freeze-{}", n + 1),
                start: f.start,
                end: f.end,
                summary: format!("Freeze: {}", f.reason),
                description: "No normal or standard change may be implemented".into(),
            });
        }
    }
    out.extend(openings(policy, from, to));
    out.sort_by(|a, b| (a.start, a.kind, &a.uid).cmp(&(b.start, b.kind, &b.uid)));
    out
}

/// RFC 5545 text escaping.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// A content line folded at 75 octets (RFC 5545 3.1), never inside a UTF-8 character.
fn fold(line: &str, out: &mut String) {
    let mut width = 0;
    for ch in line.chars() {
        let n = ch.len_utf8();
        if width + n > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(ch);
        width += n;
    }
    out.push_str("\r\n");
}

fn ics_time(t: Timestamp) -> String {
    t.strftime("%Y%m%dT%H%M%SZ").to_string()
}

/// The events as an iCalendar file; `domain` makes the UIDs globally unique.
pub fn to_ics(events: &[Event], now: Timestamp, domain: &str) -> String {
    let mut s = String::new();
    for line in [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//chg//change calendar//EN",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        "X-WR-CALNAME:Changes",
    ] {
        fold(line, &mut s);
    }
    for e in events {
        fold("BEGIN:VEVENT", &mut s);
        fold(
            &format!("UID:{}@{}", escape(&e.uid), escape(domain)),
            &mut s,
        );
        fold(&format!("DTSTAMP:{}", ics_time(now)), &mut s);
        fold(&format!("DTSTART:{}", ics_time(e.start)), &mut s);
        fold(&format!("DTEND:{}", ics_time(e.end)), &mut s);
        fold(&format!("SUMMARY:{}", escape(&e.summary)), &mut s);
        fold(&format!("DESCRIPTION:{}", escape(&e.description)), &mut s);
        fold(&format!("CATEGORIES:{}", e.kind.to_uppercase()), &mut s);
        fold("TRANSP:OPAQUE", &mut s);
        fold("END:VEVENT", &mut s);
    }
    fold("END:VCALENDAR", &mut s);
    s
}

/// A time for a person: in `tz` (their local zone unless `--utc`), with the zone's name.
pub fn local(t: Timestamp, tz: &jiff::tz::TimeZone) -> String {
    // A machine whose local zone is UTC reads the same RFC 3339 times as files hold.
    if tz == &jiff::tz::TimeZone::UTC
        || matches!(
            tz.iana_name(),
            Some("UTC" | "Etc/UTC" | "Etc/Universal" | "Zulu")
        )
    {
        return format_timestamp(t);
    }
    t.to_zoned(tz.clone())
        .strftime("%Y-%m-%d %H:%M %Z")
        .to_string()
}

/// The default range of `chg calendar`: now to 30 days ahead.
pub fn default_range(now: Timestamp) -> (Timestamp, Timestamp) {
    (now, now + SignedDuration::from_hours(24 * 30))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn berlin_policy() -> Policy {
        let text = crate::policy::DEFAULT_POLICY.replace(
            "{days: [sat, sun], start: \"02:00\", end: \"06:00\", timezone: UTC}",
            "{days: [sun], start: \"02:00\", end: \"04:00\", timezone: Europe/Berlin}",
        );
        Policy::parse("policy.yaml", &text).unwrap().0
    }

    #[test]
    fn a_berlin_window_stays_at_two_local_across_daylight_saving() {
        let p = berlin_policy();
        // Sundays around the switch to summer time (2025-03-30, 02:00 -> 03:00 local).
        let o = openings(&p, ts("2025-03-22T00:00:00Z"), ts("2025-04-07T00:00:00Z"));
        let starts: Vec<String> = o.iter().map(|e| format_timestamp(e.start)).collect();
        // 02:00 CET is 01:00Z; on the switch day 02:00 does not exist and becomes 03:00 CEST
        // (01:00Z); 02:00 CEST is 00:00Z.
        assert_eq!(
            starts,
            [
                "2025-03-23T01:00:00Z",
                "2025-03-30T01:00:00Z",
                "2025-04-06T00:00:00Z"
            ]
        );
        let ends: Vec<String> = o.iter().map(|e| format_timestamp(e.end)).collect();
        assert_eq!(
            ends,
            [
                "2025-03-23T03:00:00Z",
                "2025-03-30T02:00:00Z",
                "2025-04-06T02:00:00Z"
            ]
        );
        // The policy's containment check agrees with the openings.
        assert!(p.in_maintenance_window(ts("2025-04-06T00:00:00Z"), ts("2025-04-06T02:00:00Z")));
        assert!(!p.in_maintenance_window(ts("2025-03-23T00:30:00Z"), ts("2025-03-23T01:30:00Z")));
    }

    #[test]
    fn ics_lines_are_escaped_folded_and_crlf() {
        let e = Event {
            kind: "change",
            uid: "CHG-2025-001".into(),
            start: ts("2025-03-10T02:00:00Z"),
            end: ts("2025-03-10T04:00:00Z"),
            summary: "CHG-2025-001: a, b; c\\d".into(),
            description: "é".repeat(60),
        };
        let text = to_ics(&[e], ts("2025-03-01T00:00:00Z"), "example.com");
        assert!(text.contains("SUMMARY:CHG-2025-001: a\\, b\\; c\\\\d\r\n"));
        assert!(text.contains("DTSTART:20250310T020000Z\r\n"));
        for line in text.split("\r\n") {
            assert!(line.len() <= 75, "{line}");
        }
        assert!(!text.replace("\r\n", "").contains('\n'));
    }
}
