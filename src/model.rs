//! The change request and its vocabulary: ids, statuses, models, priorities, durations.
//!
//! These are plain data types. Reading them from YAML with places for every problem lives in
//! [`crate::decode`]; the rules that relate them live in [`crate::policy`] and
//! [`crate::workflow`].

use jiff::Timestamp;
use serde::Serializer;

mod change;
mod records;
mod vocabulary;

pub use change::{ALL_FIELDS, CONTENT_FIELDS, ChangeRequest, MATERIAL_FIELDS};
pub use records::{
    Approval, Cancellation, ContentRecord, Deployment, Implementation, Review, Schedule,
};
pub use vocabulary::{
    ChangeId, ChangeModel, Decision, Duration, Outcome, Priority, RiskLevel, Status, Urgency,
    valid_prefix,
};

pub use crate::time::{format_timestamp, parse_timestamp};

/// Serializes a timestamp the way files store it.
pub(crate) fn ser_ts<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_timestamp(*t))
}

fn ser_opt_ts<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => ser_ts(t, s),
        None => s.serialize_none(),
    }
}

/// A complete, valid change pending approval, for unit tests across modules.
#[cfg(test)]
pub(crate) fn sample_change() -> ChangeRequest {
    let ts = |s: &str| s.parse::<Timestamp>().unwrap();
    ChangeRequest {
        id: Some("CHG-2025-001".parse().unwrap()),
        title: Some("t".into()),
        description: Some("d".into()),
        business_justification: Some("j".into()),
        requester: Some("alice@example.com".into()),
        request_date: Some(ts("2025-03-01T09:00:00Z")),
        change_type: Some("feature".into()),
        change_model: Some(ChangeModel::Normal),
        priority: Some(Priority::Low),
        risk_level: Some(RiskLevel::Low),
        affected_systems: vec!["api".into()],
        implementation_plan: Some("p".into()),
        rollback_plan: Some("r".into()),
        status: Some(Status::PendingApproval),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_pad() {
        let id: ChangeId = "CHG-2025-001".parse().unwrap();
        assert_eq!(id.to_string(), "CHG-2025-001");
        assert_eq!(id.number(), 1);
        let big: ChangeId = "CHG-2025-1000".parse().unwrap();
        assert_eq!(big.to_string(), "CHG-2025-1000");
        assert_eq!(
            ChangeId::new("OPS", 2026, 7).unwrap().to_string(),
            "OPS-2026-007"
        );
    }

    #[test]
    fn hostile_or_sloppy_ids_are_refused() {
        for bad in [
            "../../etc/passwd",
            "CHG-2025-01",
            "CHG-2025-0001",
            "CHG-25-001",
            "CHG-2025-001/..",
            "CHG-2025-001.yaml",
            "chg 2025 001",
            "-2025-001",
            "CHG-2025-",
            "",
            "CHG-2025-1234567890",
        ] {
            assert!(bad.parse::<ChangeId>().is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn durations_parse_and_print() {
        assert_eq!("1h".parse::<Duration>().unwrap().as_secs(), 3600);
        assert_eq!("7d".parse::<Duration>().unwrap().as_secs(), 7 * 86400);
        assert_eq!("1h30m".parse::<Duration>().unwrap().as_secs(), 5400);
        assert_eq!(Duration::from_secs(86400).to_string(), "1d");
        assert_eq!(Duration::from_secs(5400).to_string(), "90m");
        for bad in ["", "h", "10", "1x", "1.5h", "99999999999999999999d"] {
            assert!(bad.parse::<Duration>().is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn material_differences_ignore_schedule_and_urgency() {
        let a = ChangeRequest {
            title: Some("A".into()),
            ..Default::default()
        };
        let mut b = a.clone();
        b.urgency = Some(Urgency::High);
        assert!(a.material_differences(&b).is_empty());
        b.title = Some("B".into());
        assert_eq!(a.material_differences(&b), vec!["title"]);
    }
}
