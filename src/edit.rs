//! Writing a change back to its file.
//!
//! Change files are often written by hand; a transition must keep the person's comments,
//! key order and formatting. The file is edited in place with `yaml-edit` (a lossless syntax
//! tree): only the fields that differ are touched, new approvals are appended to the existing
//! list, and nested sections are updated key by key. The result is parsed again and must
//! decode to exactly the intended change, or the edit is refused.
//!
//! Files that chg creates itself are written canonically ([`render_new`]).

use serde_json::Value as Json;
use yaml_edit::{Document, Mapping, MappingBuilder, SequenceBuilder};

use crate::decode;
use crate::error::{Error, Result};
use crate::model::{ALL_FIELDS, ChangeRequest};

fn to_json(change: &ChangeRequest) -> Result<serde_json::Map<String, Json>> {
    match serde_json::to_value(change) {
        Ok(Json::Object(map)) => Ok(map),
        Ok(_) => Err(Error::Internal(
            "a change did not serialize to a mapping".into(),
        )),
        Err(e) => Err(Error::Internal(format!("cannot serialize a change: {e}"))),
    }
}

/// The canonical text of a new change file, with a short header for people editing it.
pub fn render_new(change: &ChangeRequest) -> Result<String> {
    let map = to_json(change)?;
    let mut text = build_map(MappingBuilder::new(), &map)
        .build_document()
        .to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    verify(&text, change)?;
    Ok(text)
}

/// Applies the difference between `old` and `new` to `text`, keeping everything else.
pub fn apply(text: &str, old: &ChangeRequest, new: &ChangeRequest) -> Result<String> {
    let doc = lossless(text)?;
    let root = doc
        .as_mapping()
        .ok_or_else(|| Error::Internal("the change file is not a mapping".into()))?;
    let (old_map, new_map) = (to_json(old)?, to_json(new)?);
    for key in ALL_FIELDS {
        let (before, after) = (old_map.get(*key), new_map.get(*key));
        if before == after {
            continue;
        }
        update(&root, key, before, after);
    }
    let out = doc.to_string();
    verify(&out, new)?;
    Ok(out)
}

fn update(map: &Mapping, key: &str, before: Option<&Json>, after: Option<&Json>) {
    match (before, after) {
        (_, None) => {
            map.remove(key);
        }
        // Appending approvals keeps the existing items (and their comments) untouched.
        (Some(Json::Array(old)), Some(Json::Array(new)))
            if new.len() > old.len() && new[..old.len()] == old[..] =>
        {
            if let Some(seq) = map.get_sequence(key).filter(|s| !s.is_flow_style()) {
                for item in &new[old.len()..] {
                    push_item(&seq, item);
                }
            } else {
                set(map, key, after.expect("matched Some"));
            }
        }
        (Some(Json::Object(old)), Some(Json::Object(new))) => {
            if let Some(inner) = map.get_mapping(key).filter(|m| !m.is_flow_style()) {
                let keys: Vec<&String> = new.keys().chain(old.keys()).collect();
                let mut done = Vec::new();
                for k in keys {
                    if done.contains(&k) {
                        continue;
                    }
                    done.push(k);
                    if old.get(k) != new.get(k) {
                        update(&inner, k, old.get(k), new.get(k));
                    }
                }
            } else {
                set(map, key, after.expect("matched Some"));
            }
        }
        (_, Some(value)) => set(map, key, value),
    }
}

fn set(map: &Mapping, key: &str, value: &Json) {
    match value {
        Json::Object(obj) => {
            let doc = build_map(MappingBuilder::new(), obj).build_document();
            if let Some(m) = doc.as_mapping() {
                map.set(key, &m);
            }
        }
        Json::Array(items) => {
            let doc = build_seq(SequenceBuilder::new(), items).build_document();
            if let Some(s) = doc.as_sequence() {
                map.set(key, &s);
            }
        }
        Json::Bool(b) => map.set(key, *b),
        Json::String(s) => map.set(key, s.as_str()),
        Json::Number(n) => map.set(key, n.to_string().as_str()),
        Json::Null => {
            map.remove(key);
        }
    }
}

fn push_item(seq: &yaml_edit::Sequence, item: &Json) {
    match item {
        Json::Object(obj) => {
            let doc = build_map(MappingBuilder::new(), obj).build_document();
            if let Some(m) = doc.as_mapping() {
                seq.push(&m);
            }
        }
        Json::String(s) => seq.push(s.as_str()),
        other => seq.push(other.to_string().as_str()),
    }
}

fn build_map(mut b: MappingBuilder, obj: &serde_json::Map<String, Json>) -> MappingBuilder {
    for (k, v) in obj {
        b = match v {
            Json::Object(inner) => b.insert_mapping(k, build_map(MappingBuilder::new(), inner)),
            Json::Array(items) => b.insert_sequence(k, build_seq(SequenceBuilder::new(), items)),
            Json::Bool(x) => b.pair(k, *x),
            Json::String(s) => b.pair(k, s.as_str()),
            Json::Number(n) => b.pair(k, n.to_string().as_str()),
            Json::Null => b,
        };
    }
    b
}

fn build_seq(mut b: SequenceBuilder, items: &[Json]) -> SequenceBuilder {
    for v in items {
        b = match v {
            // Built as a document first: inserted builders render as `-\n  key:`.
            Json::Object(inner) => {
                let doc = build_map(MappingBuilder::new(), inner).build_document();
                match doc.as_mapping() {
                    Some(m) => b.item(&m),
                    None => b,
                }
            }
            Json::Array(inner) => b.insert_sequence(build_seq(SequenceBuilder::new(), inner)),
            Json::Bool(x) => b.item(*x),
            Json::String(s) => b.item(s.as_str()),
            Json::Number(n) => b.item(n.to_string().as_str()),
            Json::Null => b,
        };
    }
    b
}

/// The re-parse check: the written text must mean exactly the intended change.
fn verify(text: &str, intended: &ChangeRequest) -> Result<()> {
    let back = decode::decode_str("(edited)", text);
    if let Some(f) = back.findings.iter().find(|f| f.is_error()) {
        return Err(Error::Internal(format!(
            "editing the file in place produced invalid YAML ({f}); nothing was changed"
        )));
    }
    if &back.change != intended {
        return Err(Error::Internal(
            "editing the file in place did not produce the intended content; nothing was changed"
                .into(),
        ));
    }
    Ok(())
}

fn lossless(text: &str) -> Result<Document> {
    use std::str::FromStr;
    Document::from_str(text)
        .map_err(|e| Error::Internal(format!("cannot edit the file losslessly: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Approval, Decision, Implementation, Status};

    const HAND: &str = "# MFA rollout, written by hand\nid: CHG-2025-001\ntitle: \"Implement MFA\"   # keep quoted\nstatus: pending_approval # state\n\naffected_systems: [auth, admin-ui]\ndescription: |\n  multi\n  line\napprovals:\n  # first approval\n  - by: sec1@example.com\n    role: security-team\n    decision: approved\n    at: 2025-01-27T10:30:00Z\n# trailing comment\n";

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn transitions_keep_comments_order_and_quoting() {
        let old = decode::decode_str("f", HAND).change;
        let mut new = old.clone();
        new.status = Some(Status::Approved);
        new.approvals.push(Approval {
            by: "em@example.com".into(),
            role: "engineering-manager".into(),
            decision: Decision::Approved,
            at: ts("2025-01-27T11:00:00Z"),
            comments: Some("yes: with a colon".into()),
            conditions: vec!["true".into()],
            digest: None,
            signature: None,
            attested_by: None,
            attested_via: None,
        });
        let out = apply(HAND, &old, &new).unwrap();
        for kept in [
            "# MFA rollout, written by hand\n",
            "title: \"Implement MFA\"   # keep quoted\n",
            "status: approved # state\n",
            "affected_systems: [auth, admin-ui]\n",
            "  # first approval\n",
            "# trailing comment\n",
        ] {
            assert!(out.contains(kept), "lost {kept:?} in:\n{out}");
        }
        assert_eq!(decode::decode_str("f", &out).change, new);
    }

    #[test]
    fn nested_sections_are_updated_key_by_key() {
        let text = "id: CHG-2025-001\nstatus: implementing\nimplementation:\n  implementer: bob@example.com # on call\n  started_at: 2025-01-28T02:00:00Z\n";
        let old = decode::decode_str("f", text).change;
        let mut new = old.clone();
        new.status = Some(Status::Closed);
        let imp = new
            .implementation
            .get_or_insert_with(Implementation::default);
        imp.completed_at = Some(ts("2025-01-28T03:00:00Z"));
        imp.test_results = Some("line one\nline two".into());
        let out = apply(text, &old, &new).unwrap();
        assert!(
            out.contains("implementer: bob@example.com # on call"),
            "{out}"
        );
        assert_eq!(decode::decode_str("f", &out).change, new);
    }

    #[test]
    fn crlf_files_stay_crlf() {
        let text = "id: CHG-2025-001\r\nstatus: draft\r\n";
        let old = decode::decode_str("f", text).change;
        let mut new = old.clone();
        new.status = Some(Status::PendingApproval);
        let out = apply(text, &old, &new).unwrap();
        assert_eq!(out, "id: CHG-2025-001\r\nstatus: pending_approval\r\n");
    }

    #[test]
    fn new_files_round_trip() {
        let c = ChangeRequest {
            id: Some("CHG-2025-002".parse().unwrap()),
            title: Some("yes".into()),
            description: Some("two\nlines".into()),
            affected_systems: vec!["123".into(), "a: b".into()],
            testing_required: Some(true),
            status: Some(Status::Draft),
            ..Default::default()
        };
        let text = render_new(&c).unwrap();
        assert_eq!(decode::decode_str("f", &text).change, c, "{text}");
    }

    #[test]
    fn a_first_approval_is_written_as_a_readable_list() {
        let text = "id: CHG-2025-001\nstatus: pending_approval\n";
        let old = decode::decode_str("f", text).change;
        let mut new = old.clone();
        new.approvals.push(Approval::new(
            "em@example.com".into(),
            "engineering-manager".into(),
            Decision::Approved,
            ts("2025-01-27T11:00:00Z"),
        ));
        let out = apply(text, &old, &new).unwrap();
        assert!(
            out.contains("approvals:\n- by: em@example.com\n  role: engineering-manager\n"),
            "{out}"
        );
    }
}
