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

#[cfg(test)]
mod digest_tests {
    /// The digest is a contract (SPEC section 4): every approval ever recorded names one.
    /// The first value was recorded by chg-bench-gen's approvals; the second by the
    /// implementation before digests were written straight into the hash.
    #[test]
    fn the_material_digest_stays_what_approvals_recorded() {
        let file = "id: CHG-2025-002\ntitle: \"Deploy the WAF ruleset\"\ndescription: |-\n  Change 8001: apply the new configuration across the fleet in two waves,\n  watching error rates between waves.\nbusiness_justification: Keeps the service within its security and availability objectives\nrequester: dev35@example.com\nrequest_date: 2025-01-11T12:00:00Z\nchange_type: bugfix\nchange_model: normal\npriority: critical\nurgency: low\nrisk_level: high\naffected_systems: [edge-proxy]\nimpact_scope: customers of the affected systems\nimplementation_plan: |-\n  Deploy to staging, verify, then production in two waves\nrollback_plan: |-\n  Redeploy the previous release; restore the configuration snapshot\ntesting_required: true\ntest_plan: |-\n  Run the integration suite in staging and a smoke test in production\ntest_environment: staging\nstatus: closed\n";
        let d = crate::decode::decode_bytes_with("c.yaml", file.as_bytes(), false);
        assert!(d.parsed, "{:?}", d.findings);
        assert_eq!(
            d.change.material_digest(),
            "sha256:5f96c0130d911509aeb6ebfa18a2540585fce9a2f51342377e5be7d3caa9fedd"
        );
        let mut c = d.change;
        c.title = Some("Quotes \" back\\slash\ttab é — 😀 \u{1}".into());
        c.affected_systems = vec!["a".into(), "b \"q\"".into()];
        c.template = Some("routine-deploy".into());
        c.template_digest = Some("sha256:00".into());
        c.policy_base = Some("abc".into());
        c.risk_assessment = Some([("customer_facing".to_string(), true)].into());
        c.proposed_policy = Some([("policy/policy.yaml".to_string(), "x: 1\n".to_string())].into());
        assert_eq!(
            c.material_digest(),
            "sha256:51827567d6d1a8f236500cf1b672d5ae07bb1b46635ece25597d3cbd1028a837"
        );
    }
}
