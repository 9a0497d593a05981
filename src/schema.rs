//! A JSON Schema (draft 2020-12) of a change file, for editors (yaml-language-server) and
//! other tools. It is built from the same field lists and vocabularies the decoder uses, and
//! from the policy (change types, required fields) when there is one, so it cannot drift.

use serde_json::{Value, json};

use crate::decode::{
    APPROVAL_KEYS, CANCELLATION_KEYS, DEPLOYMENT_KEYS, IMPLEMENTATION_KEYS, REVIEW_KEYS,
    SCHEDULE_KEYS,
};
use crate::model::{
    ALL_FIELDS, ChangeModel, Decision, Outcome, Priority, RiskLevel, Status, Urgency,
};
use crate::policy::Policy;

const TIMESTAMP: &str =
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$";

fn text(description: &str) -> Value {
    json!({"type": "string", "minLength": 1, "pattern": "\\S", "description": description})
}

fn timestamp(description: &str) -> Value {
    json!({"type": "string", "pattern": TIMESTAMP, "description": description})
}

fn one_of(names: Vec<&str>, description: &str) -> Value {
    json!({"type": "string", "enum": names, "description": description})
}

fn object(keys: &[&str], required: &[&str], props: Vec<(&str, Value)>) -> Value {
    debug_assert!(props.iter().all(|(k, _)| keys.contains(k)));
    let properties: serde_json::Map<String, Value> =
        props.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": required,
        "properties": properties,
    })
}

/// How the schema describes a person.
const EMAIL: &str = "a git email";

/// The schema for change files under `policy`.
pub fn change_schema(policy: &Policy) -> Value {
    let props: Vec<(&str, Value)> = vec![
        (
            "id",
            json!({"type": "string", "pattern": format!("^{}-[0-9]{{4}}-(00[1-9]|0[1-9][0-9]|[1-9][0-9]{{2,8}})$", policy.id_prefix), "description": "PREFIX-YEAR-NUMBER; the file is named after it"}),
        ),
        ("title", text("One line")),
        ("description", text("What changes")),
        ("business_justification", text("Why it is needed")),
        ("requester", text(EMAIL)),
        (
            "request_date",
            timestamp("When it was filed (RFC 3339, UTC); decides the month folder"),
        ),
        (
            "change_type",
            json!({"type": "string", "enum": policy.change_types, "description": "One of the policy's change types"}),
        ),
        (
            "change_model",
            one_of(ChangeModel::names(), "standard, normal or emergency"),
        ),
        (
            "priority",
            one_of(Priority::names(), "Selects the approval rule"),
        ),
        ("urgency", one_of(Urgency::names(), "How soon it is needed")),
        ("risk_level", one_of(RiskLevel::names(), "Assessed risk")),
        (
            "risk_assessment",
            json!({"type": "object", "additionalProperties": {"type": "boolean"}, "description": "Answers to the policy's risk questionnaire, by question id"}),
        ),
        (
            "affected_systems",
            json!({"type": "array", "items": {"type": "string", "minLength": 1}, "description": "Systems touched"}),
        ),
        ("impact_scope", text("Who or what is affected")),
        ("implementation_plan", text("How it will be done")),
        ("rollback_plan", text("How it will be undone")),
        ("testing_required", json!({"type": "boolean"})),
        ("test_plan", text("How it will be tested")),
        ("test_environment", text("Where it will be tested")),
        (
            "template",
            text("For a standard change: the catalogue template it was filed from"),
        ),
        (
            "template_digest",
            text("The digest of that template when the change was filed"),
        ),
        (
            "proposed_policy",
            json!({"type": "object", "additionalProperties": {"type": "string"}, "description": "A policy change (chg policy propose): the proposed content of every file under policy/, by path"}),
        ),
        (
            "policy_base",
            text("A policy change: the git tree id of policy/ it was proposed against"),
        ),
        ("content_signature", content_signature_schema()),
        ("schedule", schedule_schema()),
        (
            "status",
            one_of(Status::names(), "Where the change is in its life cycle"),
        ),
        ("approvals", approvals_schema(policy)),
        ("implementation", implementation_schema()),
        ("review", review_schema()),
        ("cancellation", cancellation_schema()),
        ("deployments", deployments_schema()),
    ];
    debug_assert_eq!(props.len(), ALL_FIELDS.len());
    let always = ["id", "request_date", "status"];
    let mut schema = object(ALL_FIELDS, &always, props);
    if let Value::Object(map) = &mut schema {
        // A draft may be incomplete; everything else needs the policy's required fields.
        map.insert(
            "if".into(),
            json!({"properties": {"status": {"const": "draft"}}, "required": ["status"]}),
        );
        map.insert("else".into(), json!({"required": policy.required_fields}));
        map.insert(
            "$schema".into(),
            json!("https://json-schema.org/draft/2020-12/schema"),
        );
        map.insert("title".into(), json!("chg change request"));
        map.insert(
            "description".into(),
            json!("One change request file of a chg store (changes/YYYY/MM/ID.yaml). `chg validate` checks more than this schema can express: approvals against roles, status consistency, windows and deadlines."),
        );
    }
    schema
}

/// The requester's (or editor's) signed vouching for the material content: `content_signature`.
fn content_signature_schema() -> Value {
    object(
        crate::decode::CONTENT_SIGNATURE_KEYS,
        &["action", "by", "at", "digest"],
        vec![
            (
                "action",
                json!({"enum": ["new", "edit"], "description": "new: filed; edit: a material edit"}),
            ),
            ("by", text(EMAIL)),
            ("at", timestamp("When")),
            (
                "digest",
                text("The material digest of the content vouched for"),
            ),
            (
                "signature",
                signature(
                    "The SSH signature; written by chg new, edit and set where the policy requires it",
                ),
            ),
        ],
    )
}

/// The planned window: `schedule`.
fn schedule_schema() -> Value {
    object(
        SCHEDULE_KEYS,
        &["start", "end"],
        vec![
            ("start", timestamp("Planned start")),
            ("end", timestamp("Planned end")),
            (
                "maintenance_window",
                json!({"type": "boolean", "description": "Must run inside a policy maintenance window"}),
            ),
        ],
    )
}

/// `approvals`: each decision of a role the policy defines, with the digest of the content it was made on.
fn approvals_schema(policy: &Policy) -> Value {
    json!({"type": "array", "items": object(APPROVAL_KEYS, &["by", "role", "decision", "at"], vec![
        ("by", text(EMAIL)),
        ("role", json!({"type": "string", "enum": policy.roles.keys().collect::<Vec<_>>()})),
        ("decision", one_of(Decision::names(), "approved, rejected, or withdrawn (an approval withdrawn by its approver)")),
        ("at", timestamp("When")),
        ("comments", json!({"type": "string"})),
        ("conditions", json!({"type": "array", "items": {"type": "string"}})),
        ("digest", json!({"type": "string", "pattern": "^sha256:[0-9a-f]{64}$", "description": "Digest of the material content approved; written by chg approve"})),
        ("signature", signature("The approver's SSH signature of the record; written by chg approve where the policy requires it (the server's, for an attested decision)")),
        ("attested_by", json!({"type": "string", "description": "The allowed signers principal of the chg serve key that attested this decision in the approver's stead (signing.server_attests); written by chg serve"})),
        ("attested_via", json!({"type": "string", "description": "How chg serve authenticated the approver of an attested decision; written by chg serve"})),
    ])})
}

/// `implementation`: who carried it out, when, how it ended, and who closed it.
fn implementation_schema() -> Value {
    object(
        IMPLEMENTATION_KEYS,
        &[],
        vec![
            ("implementer", text(EMAIL)),
            ("started_at", timestamp("When implementation started")),
            ("completed_at", timestamp("When it finished")),
            ("outcome", one_of(Outcome::names(), "How it ended")),
            ("test_results", json!({"type": "string"})),
            (
                "signature",
                signature(
                    "The implementer's SSH signature; written by chg implement where the policy requires it",
                ),
            ),
            ("closed_by", text(EMAIL)),
            (
                "close_signature",
                signature(
                    "The closer's SSH signature; written by chg close where the policy requires it",
                ),
            ),
        ],
    )
}

/// `review`: the post-implementation review.
fn review_schema() -> Value {
    object(
        REVIEW_KEYS,
        &["by", "at", "summary"],
        vec![
            ("by", text(EMAIL)),
            ("at", timestamp("When")),
            ("summary", text("What was learned")),
        ],
    )
}

/// `cancellation`: who withdrew the change and why.
fn cancellation_schema() -> Value {
    object(
        CANCELLATION_KEYS,
        &["by", "at", "reason"],
        vec![
            ("by", text(EMAIL)),
            ("at", timestamp("When")),
            ("reason", text("Why")),
            (
                "signature",
                signature("The SSH signature; written by chg cancel where the policy requires it"),
            ),
        ],
    )
}

/// `deployments`: what chg deploy recorded while the change's gate was open.
fn deployments_schema() -> Value {
    json!({"type": "array", "description": "Deployments recorded by chg deploy while the change's gate was open", "items": object(DEPLOYMENT_KEYS, &["commit", "environment", "at", "by"], vec![
        ("commit", json!({"type": "string", "pattern": "^[0-9a-f]{40}$", "description": "The deployed commit, in full"})),
        ("environment", json!({"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", "description": "Where it was deployed"})),
        ("run", json!({"type": "string", "pattern": "^https?://\\S+$", "description": "The CI/CD run that deployed it"})),
        ("at", timestamp("When it was recorded")),
        ("by", text(EMAIL)),
        ("signature", signature("The SSH signature; written by chg deploy where the policy requires it")),
    ])})
}

/// An armored SSH signature (SSHSIG) value.
fn signature(description: &str) -> Value {
    json!({"type": "string", "pattern": "^-----BEGIN SSH SIGNATURE-----", "description": description})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_covers_every_field_and_vocabulary() {
        let s = change_schema(&Policy::default_policy());
        let props = s["properties"].as_object().unwrap();
        assert_eq!(props.len(), ALL_FIELDS.len());
        assert_eq!(s["additionalProperties"], json!(false));
        assert_eq!(
            props["priority"]["enum"],
            json!(["critical", "high", "medium", "low"])
        );
        assert_eq!(props["change_type"]["enum"][0], json!("security"));
        assert!(
            s["else"]["required"]
                .as_array()
                .unwrap()
                .contains(&json!("rollback_plan"))
        );
    }
}
