//! The change request file: its fields, which of them are content and which material, and
//! reading, setting and comparing them.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::Serialize;

use super::{
    Approval, Cancellation, ChangeId, ChangeModel, ContentRecord, Decision, Deployment,
    Implementation, Priority, Review, RiskLevel, Schedule, Status, Urgency, format_timestamp,
    ser_opt_ts,
};

/// One change request file (SPEC section 2). Field order is the file's canonical order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ChangeRequest {
    /// `CHG-2025-001`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<ChangeId>,
    /// One line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// What changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub business_justification: Option<String>,
    /// Git email of whoever filed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requester: Option<String>,
    /// When it was filed; decides the month folder.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_opt_ts")]
    pub request_date: Option<Timestamp>,
    /// One of the policy's change types.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change_type: Option<String>,
    /// standard, normal or emergency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change_model: Option<ChangeModel>,
    /// Selects the approval rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// How soon it is needed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub urgency: Option<Urgency>,
    /// Assessed risk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk_level: Option<RiskLevel>,
    /// Answers to the policy's risk questionnaire, by question id (SPEC section 11).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk_assessment: Option<std::collections::BTreeMap<String, bool>>,
    /// Systems touched.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub affected_systems: Vec<String>,
    /// Who or what is affected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impact_scope: Option<String>,
    /// How it will be done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub implementation_plan: Option<String>,
    /// How it will be undone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_plan: Option<String>,
    /// Whether testing is part of the plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub testing_required: Option<bool>,
    /// How it will be tested.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_plan: Option<String>,
    /// Where it will be tested.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_environment: Option<String>,
    /// For a standard change: the template of the policy's catalogue it was filed from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The digest of that template's file when the change was filed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_digest: Option<String>,
    /// For a policy change (SPEC section 10): the proposed content of every file under
    /// `policy/`, by path relative to the store, as `chg policy propose` captured it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proposed_policy: Option<std::collections::BTreeMap<String, String>>,
    /// For a policy change: the git tree id of `policy/` at HEAD when it was proposed.
    /// Applying it after `policy/` changed is refused, so that a proposal never undoes
    /// another one applied meanwhile (a key revocation, say).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_base: Option<String>,
    /// The signed record of who wrote the content as it is, where the policy requires it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_signature: Option<ContentRecord>,
    /// When it will run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Where it is in the life cycle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// Decisions so far.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<Approval>,
    /// Written by implement and close.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub implementation: Option<Implementation>,
    /// Written by close.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review: Option<Review>,
    /// Written by cancel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancellation: Option<Cancellation>,
    /// Appended by deploy.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deployments: Vec<Deployment>,
}

/// The fields a person writes; everything else is written by `chg` as the change moves.
pub const CONTENT_FIELDS: &[&str] = &[
    "title",
    "description",
    "business_justification",
    "change_type",
    "change_model",
    "priority",
    "urgency",
    "risk_level",
    "affected_systems",
    "impact_scope",
    "implementation_plan",
    "rollback_plan",
    "testing_required",
    "test_plan",
    "test_environment",
];

/// Content whose change after an approval voids the approvals (SPEC section 4).
pub const MATERIAL_FIELDS: &[&str] = &[
    "title",
    "description",
    "business_justification",
    "change_type",
    "change_model",
    "priority",
    "risk_level",
    "affected_systems",
    "implementation_plan",
    "rollback_plan",
    "testing_required",
    "test_plan",
];

/// Every top-level key a change file may have, in canonical order.
pub const ALL_FIELDS: &[&str] = &[
    "id",
    "title",
    "description",
    "business_justification",
    "requester",
    "request_date",
    "change_type",
    "change_model",
    "priority",
    "urgency",
    "risk_level",
    "risk_assessment",
    "affected_systems",
    "impact_scope",
    "implementation_plan",
    "rollback_plan",
    "testing_required",
    "test_plan",
    "test_environment",
    "template",
    "template_digest",
    "proposed_policy",
    "policy_base",
    "content_signature",
    "schedule",
    "status",
    "approvals",
    "implementation",
    "review",
    "cancellation",
    "deployments",
];

impl ChangeRequest {
    /// The id as text, empty when the change has none yet.
    pub fn id_text(&self) -> String {
        self.id
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    /// The status, with a file that forgot it treated as a draft.
    pub fn status(&self) -> Status {
        self.status.unwrap_or(Status::Draft)
    }

    /// The change model, `normal` when unset.
    pub fn model(&self) -> ChangeModel {
        self.change_model.unwrap_or(ChangeModel::Normal)
    }

    /// The value of a content field as text, for comparisons and `show`.
    pub fn field_text(&self, field: &str) -> Option<String> {
        self.field_str(field).map(Cow::into_owned)
    }

    /// [`field_text`](Self::field_text), borrowed where the field is text already: the
    /// material digest reads every field of every version an audit replays.
    pub fn field_str(&self, field: &str) -> Option<Cow<'_, str>> {
        fn s<T: fmt::Display>(v: &Option<T>) -> Option<Cow<'static, str>> {
            v.as_ref().map(|v| Cow::Owned(v.to_string()))
        }
        fn b(v: &Option<String>) -> Option<Cow<'_, str>> {
            v.as_deref().map(Cow::Borrowed)
        }
        match field {
            "id" => s(&self.id),
            "title" => b(&self.title),
            "description" => b(&self.description),
            "business_justification" => b(&self.business_justification),
            "requester" => b(&self.requester),
            "request_date" => self.request_date.map(|t| Cow::Owned(format_timestamp(t))),
            "change_type" => b(&self.change_type),
            "change_model" => s(&self.change_model),
            "priority" => s(&self.priority),
            "urgency" => s(&self.urgency),
            "risk_level" => s(&self.risk_level),
            "affected_systems" => (!self.affected_systems.is_empty())
                .then(|| Cow::Owned(self.affected_systems.join(", "))),
            "impact_scope" => b(&self.impact_scope),
            "implementation_plan" => b(&self.implementation_plan),
            "rollback_plan" => b(&self.rollback_plan),
            "testing_required" => s(&self.testing_required),
            "test_plan" => b(&self.test_plan),
            "test_environment" => b(&self.test_environment),
            "template" => b(&self.template),
            "status" => s(&self.status),
            _ => None,
        }
    }

    /// Whether a required field counts as filled in (blank text counts as missing).
    pub fn has_field(&self, field: &str) -> bool {
        match field {
            "affected_systems" => self.affected_systems.iter().any(|s| !s.trim().is_empty()),
            "schedule" => self.schedule.is_some(),
            _ => self
                .field_text(field)
                .is_some_and(|text| !text.trim().is_empty()),
        }
    }

    /// Sets a content field from text, as `chg set FIELD=VALUE` and prompts give it. An
    /// empty value clears the field; `affected_systems` takes a comma-separated list.
    pub fn set_field(&mut self, field: &str, value: &str) -> Result<(), String> {
        let v = value.trim();
        let text = || (!v.is_empty()).then(|| v.to_owned());
        fn parse<T: FromStr<Err = String>>(v: &str) -> Result<Option<T>, String> {
            if v.is_empty() {
                Ok(None)
            } else {
                v.parse().map(Some)
            }
        }
        match field {
            "title" => self.title = text(),
            "description" => self.description = text(),
            "business_justification" => self.business_justification = text(),
            "change_type" => self.change_type = text(),
            "change_model" => self.change_model = parse(v)?,
            "priority" => self.priority = parse(v)?,
            "urgency" => self.urgency = parse(v)?,
            "risk_level" => self.risk_level = parse(v)?,
            "affected_systems" => {
                self.affected_systems = v
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
            "impact_scope" => self.impact_scope = text(),
            "implementation_plan" => self.implementation_plan = text(),
            "rollback_plan" => self.rollback_plan = text(),
            "testing_required" => {
                self.testing_required = match v {
                    "" => None,
                    "true" | "yes" => Some(true),
                    "false" | "no" => Some(false),
                    _ => return Err(format!("testing_required must be true or false, not `{v}`")),
                }
            }
            "test_plan" => self.test_plan = text(),
            "test_environment" => self.test_environment = text(),
            _ => {
                let hint = crate::finding::suggest(field, CONTENT_FIELDS.iter().copied())
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                return Err(
                    if field == "risk_assessment" || field.starts_with("risk_assessment.") {
                        "the risk questionnaire is answered with `--answer ID=yes|no` (repeatable)"
                            .into()
                    } else if ALL_FIELDS.contains(&field) {
                        format!(
                            "`{field}` is written by chg transitions and cannot be set directly"
                        )
                    } else {
                        format!("`{field}` is not a change field{hint}")
                    },
                );
            }
        }
        Ok(())
    }

    /// A digest of the material content (SPEC section 4): `sha256:` and the hex SHA-256 of
    /// one line per field of [`MATERIAL_FIELDS`], in that order, `field=<JSON value>`, with
    /// `null` for an absent field and a JSON array of strings for `affected_systems`. The id,
    /// status, schedule and approvals are not part of it: renumbering or scheduling an
    /// approved change keeps its approvals valid.
    pub fn material_digest(&self) -> String {
        use sha2::{Digest, Sha256};
        /// The JSON of each value goes straight into the hash, never into a string first.
        struct Hashing(Sha256);
        impl std::io::Write for Hashing {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.update(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        fn line<T: Serialize + ?Sized>(h: &mut Hashing, key: &str, value: &T) {
            h.0.update(key.as_bytes());
            h.0.update(b"=");
            serde_json::to_writer(&mut *h, value).expect("writing to a hash cannot fail");
            h.0.update(b"\n");
        }
        let mut h = Hashing(Sha256::new());
        for f in MATERIAL_FIELDS {
            if *f == "affected_systems" {
                line(&mut h, f, &self.affected_systems);
            } else {
                line(&mut h, f, &self.field_str(f));
            }
        }
        // Added only when present, so that the digests of every other change stay as they
        // were before policy proposals existed.
        for (key, value) in [
            ("template", &self.template),
            ("template_digest", &self.template_digest),
            ("policy_base", &self.policy_base),
        ] {
            if let Some(v) = value {
                line(&mut h, key, v);
            }
        }
        if let Some(answers) = &self.risk_assessment {
            line(&mut h, "risk_assessment", answers);
        }
        if let Some(files) = &self.proposed_policy {
            line(&mut h, "proposed_policy", files);
        }
        let Hashing(h) = h;
        format!("sha256:{}", crate::text::hex(&h.finalize()))
    }

    /// The approvals (by index) that do not vouch for this version's material content: their
    /// digest names other content, or they have none. An approval without a digest proves
    /// nothing about what was approved (deleting the line must not revive a stale approval),
    /// so it counts only as history: on a rejected, closed or cancelled change.
    pub fn stale_approvals(&self) -> Vec<usize> {
        let mut now = None;
        let history = self.status().is_terminal();
        // A withdrawn approval vouches for nothing, stale or not.
        self.standing_approvals()
            .map(|(i, _)| i)
            .filter(|&i| {
                let a = &self.approvals[i];
                match &a.digest {
                    Some(d) => *d != *now.get_or_insert_with(|| self.material_digest()),
                    None => !history,
                }
            })
            .collect()
    }

    /// Each withdrawal record (by index) with the approval it withdraws: the latest approval
    /// before it by the same person (emails compare without case) for the same role that
    /// is not already withdrawn; `None` when there is none (a record chg never writes).
    /// The one reading of withdrawals: every count of approvals goes through
    /// [`ChangeRequest::standing_approvals`], which is built on it.
    pub fn withdrawals(&self) -> Vec<(usize, Option<usize>)> {
        let mut standing: Vec<usize> = Vec::new();
        let mut out = Vec::new();
        for (i, a) in self.approvals.iter().enumerate() {
            match a.decision {
                Decision::Approved => standing.push(i),
                Decision::Rejected => {}
                Decision::Withdrawn => {
                    let found = standing.iter().rposition(|&j| {
                        let b = &self.approvals[j];
                        b.role == a.role && b.by.eq_ignore_ascii_case(&a.by)
                    });
                    out.push((i, found.map(|k| standing.remove(k))));
                }
            }
        }
        out
    }

    /// The approvals (by index) that stand: decision approved, and not withdrawn by a later
    /// record of the same person for the same role. Whether they count for a role (member,
    /// digest, signature) is the rules' to judge.
    pub fn standing_approvals(&self) -> impl Iterator<Item = (usize, &Approval)> {
        let withdrawn: Vec<usize> = self
            .withdrawals()
            .into_iter()
            .filter_map(|(_, a)| a)
            .collect();
        self.approvals
            .iter()
            .enumerate()
            .filter(move |(i, a)| a.decision == Decision::Approved && !withdrawn.contains(i))
    }

    /// Sets one content field (of [`CONTENT_FIELDS`]) to `from`'s value, as it is.
    pub fn copy_field(&mut self, from: &ChangeRequest, field: &str) {
        match field {
            "title" => self.title = from.title.clone(),
            "description" => self.description = from.description.clone(),
            "business_justification" => {
                self.business_justification = from.business_justification.clone();
            }
            "change_type" => self.change_type = from.change_type.clone(),
            "change_model" => self.change_model = from.change_model,
            "priority" => self.priority = from.priority,
            "urgency" => self.urgency = from.urgency,
            "risk_level" => self.risk_level = from.risk_level,
            "affected_systems" => self.affected_systems = from.affected_systems.clone(),
            "impact_scope" => self.impact_scope = from.impact_scope.clone(),
            "implementation_plan" => self.implementation_plan = from.implementation_plan.clone(),
            "rollback_plan" => self.rollback_plan = from.rollback_plan.clone(),
            "testing_required" => self.testing_required = from.testing_required,
            "test_plan" => self.test_plan = from.test_plan.clone(),
            "test_environment" => self.test_environment = from.test_environment.clone(),
            "risk_assessment" => self.risk_assessment = from.risk_assessment.clone(),
            _ => {}
        }
    }

    /// The content fields (of [`CONTENT_FIELDS`]) whose values differ.
    pub fn content_differences(&self, other: &ChangeRequest) -> Vec<&'static str> {
        let mut out = self.differences(CONTENT_FIELDS, other);
        if self.risk_assessment != other.risk_assessment {
            out.push("risk_assessment");
        }
        out
    }

    /// The material fields whose values differ between two versions of a change (the risk
    /// answers included: they are material, SPEC section 11, though kept out of
    /// [`MATERIAL_FIELDS`], whose order the digest follows).
    pub fn material_differences(&self, other: &ChangeRequest) -> Vec<&'static str> {
        let mut out = self.differences(MATERIAL_FIELDS, other);
        if self.risk_assessment != other.risk_assessment {
            out.push("risk_assessment");
        }
        out
    }

    fn differences(&self, fields: &[&'static str], other: &ChangeRequest) -> Vec<&'static str> {
        fields
            .iter()
            .copied()
            .filter(|f| {
                if *f == "affected_systems" {
                    self.affected_systems != other.affected_systems
                } else {
                    self.field_text(f) != other.field_text(f)
                }
            })
            .collect()
    }
}
