//! Reading a change file: bytes → YAML tree → [`ChangeRequest`], with a finding (and its
//! place) for every problem rather than stopping at the first.
//!
//! Decoding is independent of the policy: it checks shapes, types and vocabularies. Rules
//! that need the policy (required fields, change types, approvals) are in [`crate::validate`].
//!
//! This file holds the entry points, the keys of each nested section and the [`Decoded`]
//! result; `read` reads a file within chg's bounds, `values` holds the decoder's readers of
//! one value (text, enum, time, list, mapping, each placed and each problem a finding),
//! `sections` the readers of the change's fields and nested sections.

use std::collections::HashMap;

use crate::finding::Finding;
use crate::model::ChangeRequest;
use crate::yaml::{self, Limits, Pos};

mod read;
mod sections;
mod values;

pub use read::{read_bounded, read_limited};

/// Largest change file read. Real ones are a few kilobytes; anything this big is an attack
/// or an accident, and reading it whole would cost memory proportional to the attack.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Keys allowed in each nested mapping.
pub const SCHEDULE_KEYS: &[&str] = &["start", "end", "maintenance_window"];
/// Keys of one approval.
pub const APPROVAL_KEYS: &[&str] = &[
    "by",
    "role",
    "decision",
    "at",
    "comments",
    "conditions",
    "digest",
    "signature",
    "attested_by",
    "attested_via",
];
/// Keys of `implementation`.
pub const IMPLEMENTATION_KEYS: &[&str] = &[
    "implementer",
    "started_at",
    "completed_at",
    "outcome",
    "test_results",
    "signature",
    "closed_by",
    "close_signature",
];
/// Keys of `review`.
pub const REVIEW_KEYS: &[&str] = &["by", "at", "summary"];
/// Keys of `content_signature`.
pub const CONTENT_SIGNATURE_KEYS: &[&str] = &["action", "by", "at", "digest", "signature"];
/// Keys of one deployment.
pub const DEPLOYMENT_KEYS: &[&str] = &["commit", "environment", "run", "at", "by", "signature"];
/// Keys of `cancellation`.
pub const CANCELLATION_KEYS: &[&str] = &["by", "at", "reason", "signature"];

/// A decoded change file.
#[derive(Debug, Clone, Default)]
pub struct Decoded {
    /// What could be read. Fields with problems are left empty.
    pub change: ChangeRequest,
    /// Every problem found.
    pub findings: Vec<Finding>,
    /// Where each value is (`status`, `approvals[0].by`, `schedule.end`, …); keys of the
    /// top-level mapping are under `<name>:key`.
    pub places: HashMap<String, Pos>,
    /// The file was readable YAML (findings, if any, are about content).
    pub parsed: bool,
    /// Top-level fields present with a value that could not be read (already reported),
    /// so that rules do not report them again as missing.
    pub invalid: Vec<&'static str>,
}

impl Decoded {
    /// The place of a path, if known.
    pub fn place(&self, path: &str) -> Option<Pos> {
        self.places.get(path).copied()
    }

    /// Whether any finding is an error.
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(Finding::is_error)
    }
}

/// Decodes the bytes of a change file named `file` (used in findings), recording the place
/// of every value.
pub fn decode_bytes(file: &str, bytes: &[u8]) -> Decoded {
    decode_bytes_with(file, bytes, true)
}

/// Decodes without recording places (faster); findings of the decoder still have places.
/// Re-decode with places when rules found problems that need them.
pub fn decode_bytes_with(file: &str, bytes: &[u8], track: bool) -> Decoded {
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return failed(Finding::error(
            file,
            None,
            "too-large",
            format!(
                "the file is {} bytes; change files are limited to {} bytes",
                bytes.len(),
                MAX_FILE_BYTES
            ),
        ));
    }
    if bytes.contains(&0) {
        return failed(Finding::error(
            file,
            None,
            "encoding",
            "the file contains NUL bytes: it is binary, not a YAML change file",
        ));
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => decode_str_with(file, text, track),
        Err(e) => failed(Finding::error(
            file,
            Some(yaml::pos_of_offset(bytes, e.valid_up_to())),
            "encoding",
            "the file is not valid UTF-8",
        )),
    }
}

fn failed(f: Finding) -> Decoded {
    Decoded {
        findings: vec![f],
        ..Default::default()
    }
}

/// Decodes the text of a change file, recording places.
pub fn decode_str(file: &str, text: &str) -> Decoded {
    decode_str_with(file, text, true)
}

fn decode_str_with(file: &str, text: &str, track: bool) -> Decoded {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let root = match yaml::parse(text, Limits::default()) {
        Ok(Some(root)) => root,
        Ok(None) => {
            return failed(Finding::error(
                file,
                None,
                "empty",
                "the file is empty: a change file is a YAML mapping of fields",
            ));
        }
        Err(e) => return failed(Finding::error(file, e.pos, "yaml", e.message)),
    };
    let mut d = Decoder {
        file,
        out: Decoded {
            parsed: true,
            ..Default::default()
        },
        track,
    };
    d.change(&root);
    d.out
}

struct Decoder<'f> {
    file: &'f str,
    out: Decoded,
    /// Record the place of every value (costly; needed only to place findings).
    track: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Priority, Status};

    #[test]
    fn a_tricky_but_good_file_decodes_cleanly() {
        let text = "# hand-written\r\nrisk_level: low\r\nid: CHG-2025-001\r\ntitle: \"Ünïcödé: title\"\r\npriority: high # inline\r\naffected_systems: [a, b]\r\ndescription: |\r\n  line one\r\n  line two\r\ntesting_required: true\r\nstatus: pending_approval\r\n";
        let d = decode_str("f.yaml", text);
        assert!(d.findings.is_empty(), "{:?}", d.findings);
        assert_eq!(d.change.priority, Some(Priority::High));
        assert_eq!(d.change.status, Some(Status::PendingApproval));
        assert_eq!(d.change.title.as_deref(), Some("Ünïcödé: title"));
        assert_eq!(
            d.change.description.as_deref(),
            Some("line one\nline two\n")
        );
        assert_eq!(d.change.affected_systems, ["a", "b"]);
    }

    #[test]
    fn every_problem_is_reported_with_its_place() {
        let text = "id: CHG-2025-001\nrollback_paln: x\npriority: urgent\ntesting_required: \"yes\"\nrequest_date: 2025-01-27\naffected_systems: one\n";
        let d = decode_str("f.yaml", text);
        let got: Vec<_> = d
            .findings
            .iter()
            .map(|f| (f.rule, f.pos.unwrap().line, f.pos.unwrap().column))
            .collect();
        assert_eq!(
            got,
            [
                ("unknown-key", 2, 1),
                ("enum", 3, 11),
                ("type", 4, 19),
                ("timestamp", 5, 15),
                ("type", 6, 19)
            ]
        );
        assert!(
            d.findings[0]
                .message
                .contains("did you mean `rollback_plan`")
        );
        assert!(
            d.findings[1]
                .message
                .contains("critical, high, medium, low")
        );
    }

    #[test]
    fn nested_sections_check_their_keys_and_required_parts() {
        let text = "approvals:\n  - by: a@x\n    role: r\n    decison: approved\n    at: 2025-01-01T00:00:00Z\nschedule:\n  start: 2025-01-01T00:00:00Z\n";
        let d = decode_str("f.yaml", text);
        let rules: Vec<_> = d.findings.iter().map(|f| f.rule).collect();
        assert_eq!(
            rules,
            ["unknown-key", "required", "required"],
            "{:?}",
            d.findings
        );
        assert!(d.findings[0].message.contains("did you mean `decision`"));
    }

    #[test]
    fn hostile_bytes_are_findings_not_crashes() {
        assert_eq!(
            decode_bytes("f", b"title: \xff\xfe").findings[0].rule,
            "encoding"
        );
        assert_eq!(
            decode_bytes("f", b"\x00\x01\x02").findings[0].rule,
            "encoding"
        );
        assert_eq!(decode_bytes("f", b"").findings[0].rule, "empty");
        assert_eq!(decode_bytes("f", b"- a\n- b\n").findings[0].rule, "type");
        assert_eq!(decode_bytes("f", b"a: [\n").findings[0].rule, "yaml");
        let big = vec![b'#'; (MAX_FILE_BYTES + 1) as usize];
        assert_eq!(decode_bytes("f", &big).findings[0].rule, "too-large");
    }
}
