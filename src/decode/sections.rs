//! The readers of a change's fields and nested sections (schedule, approvals,
//! implementation, review, content signature, deployments, cancellation): each key checked
//! against its section's keys, each required part reported when missing.

use crate::model::{
    ALL_FIELDS, Approval, Cancellation, ChangeId, ChangeRequest, Decision, Deployment,
    Implementation, Review, Schedule,
};
use crate::yaml::{self, Node, Value};

use super::{
    APPROVAL_KEYS, CANCELLATION_KEYS, CONTENT_SIGNATURE_KEYS, DEPLOYMENT_KEYS, Decoder,
    IMPLEMENTATION_KEYS, REVIEW_KEYS, SCHEDULE_KEYS,
};

impl Decoder<'_> {
    pub(super) fn change(&mut self, root: &Node) {
        let mut c = ChangeRequest::default();
        for (key, v) in self.mapping(root, &"", ALL_FIELDS) {
            let before = self.out.findings.len();
            if self.track
                && let Some((k, _)) = root
                    .as_map()
                    .and_then(|m| m.iter().find(|(k, _)| yaml::key_text(k) == key))
            {
                self.out.places.insert(format!("{key}:key"), k.pos);
            }
            match key {
                "id" => c.id = self.parsed::<ChangeId>(v, &key, "id"),
                "title" => c.title = self.text(v, &key),
                "description" => c.description = self.text(v, &key),
                "business_justification" => c.business_justification = self.text(v, &key),
                "requester" => c.requester = self.text(v, &key),
                "request_date" => c.request_date = self.timestamp(v, &key),
                "change_type" => c.change_type = self.text(v, &key),
                "change_model" => c.change_model = self.parsed(v, &key, "enum"),
                "priority" => c.priority = self.parsed(v, &key, "enum"),
                "urgency" => c.urgency = self.parsed(v, &key, "enum"),
                "risk_level" => c.risk_level = self.parsed(v, &key, "enum"),
                "affected_systems" => c.affected_systems = self.list(v, &key),
                "impact_scope" => c.impact_scope = self.text(v, &key),
                "implementation_plan" => c.implementation_plan = self.text(v, &key),
                "rollback_plan" => c.rollback_plan = self.text(v, &key),
                "testing_required" => c.testing_required = self.boolean(v, &key),
                "test_plan" => c.test_plan = self.text(v, &key),
                "test_environment" => c.test_environment = self.text(v, &key),
                "risk_assessment" => c.risk_assessment = self.answers(v, &key),
                "template" => c.template = self.text(v, &key),
                "template_digest" => c.template_digest = self.text(v, &key),
                "proposed_policy" => c.proposed_policy = self.text_map(v, &key),
                "policy_base" => c.policy_base = self.text(v, &key),
                "content_signature" => c.content_signature = self.content_signature(v),
                "schedule" => c.schedule = self.schedule(v),
                "status" => c.status = self.parsed(v, &key, "enum"),
                "approvals" => c.approvals = self.approvals(v),
                "implementation" => c.implementation = self.implementation(v),
                "review" => c.review = self.review(v),
                "cancellation" => c.cancellation = self.cancellation(v),
                "deployments" => c.deployments = self.deployments(v),
                _ => unreachable!("mapping() returns allowed keys only"),
            }
            if self.out.findings.len() > before
                && let Some(name) = ALL_FIELDS.iter().find(|f| **f == key)
            {
                self.out.invalid.push(name);
            }
        }
        self.out.change = c;
    }

    fn schedule(&mut self, node: &Node) -> Option<Schedule> {
        self.place(&"schedule", node);
        if node.value == Value::Null {
            return None;
        }
        let (mut start, mut end, mut mw) = (None, None, false);
        let entries = self.mapping(node, &"schedule", SCHEDULE_KEYS);
        for &(key, v) in &entries {
            let path = format_args!("schedule.{key}");
            match key {
                "start" => start = self.timestamp(v, &path),
                "end" => end = self.timestamp(v, &path),
                _ => mw = self.boolean(v, &path).unwrap_or(false),
            }
        }
        node.as_map()?;
        let start = self.required(start, node, &entries, &"schedule", "start");
        let end = self.required(end, node, &entries, &"schedule", "end");
        Some(Schedule {
            start: start?,
            end: end?,
            maintenance_window: mw,
        })
    }

    fn approvals(&mut self, node: &Node) -> Vec<Approval> {
        let items = self.records(node, "approvals");
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let base = format_args!("approvals[{i}]");
            self.place(&base, item);
            let (mut by, mut role, mut decision, mut at, mut comments, mut conditions) =
                (None, None, None, None, None, Vec::new());
            let (mut digest, mut signature, mut attested_by, mut attested_via) =
                (None, None, None, None);
            let entries = self.mapping(item, &base, APPROVAL_KEYS);
            for &(key, v) in &entries {
                let path = format_args!("approvals[{i}].{key}");
                match key {
                    "by" => by = self.text(v, &path),
                    "role" => role = self.text(v, &path),
                    "decision" => decision = self.parsed::<Decision>(v, &path, "enum"),
                    "at" => at = self.timestamp(v, &path),
                    "comments" => comments = self.text(v, &path),
                    "digest" => digest = self.text(v, &path),
                    "signature" => signature = self.text(v, &path),
                    "attested_by" => attested_by = self.text(v, &path),
                    "attested_via" => attested_via = self.text(v, &path),
                    _ => conditions = self.list(v, &path),
                }
            }
            if item.as_map().is_none() {
                continue;
            }
            let by = self.required(by, item, &entries, &base, "by");
            let role = self.required(role, item, &entries, &base, "role");
            let decision = self.required(decision, item, &entries, &base, "decision");
            let at = self.required(at, item, &entries, &base, "at");
            if let (Some(by), Some(role), Some(decision), Some(at)) = (by, role, decision, at) {
                out.push(Approval {
                    by,
                    role,
                    decision,
                    at,
                    comments,
                    conditions,
                    digest,
                    signature,
                    attested_by,
                    attested_via,
                });
            }
        }
        out
    }

    fn implementation(&mut self, node: &Node) -> Option<Implementation> {
        self.place(&"implementation", node);
        let mut imp = Implementation::default();
        let entries = self.mapping(node, &"implementation", IMPLEMENTATION_KEYS);
        for &(key, v) in &entries {
            let path = format_args!("implementation.{key}");
            match key {
                "implementer" => imp.implementer = self.text(v, &path),
                "started_at" => imp.started_at = self.timestamp(v, &path),
                "completed_at" => imp.completed_at = self.timestamp(v, &path),
                "outcome" => imp.outcome = self.parsed(v, &path, "enum"),
                "signature" => imp.signature = self.text(v, &path),
                "closed_by" => imp.closed_by = self.text(v, &path),
                "close_signature" => imp.close_signature = self.text(v, &path),
                _ => imp.test_results = self.text(v, &path),
            }
        }
        node.as_map().map(|_| imp)
    }

    fn review(&mut self, node: &Node) -> Option<Review> {
        self.place(&"review", node);
        node.as_map()?;
        let (mut by, mut at, mut summary) = (None, None, None);
        let entries = self.mapping(node, &"review", REVIEW_KEYS);
        for &(key, v) in &entries {
            let path = format_args!("review.{key}");
            match key {
                "by" => by = self.text(v, &path),
                "at" => at = self.timestamp(v, &path),
                _ => summary = self.text(v, &path),
            }
        }
        let by = self.required(by, node, &entries, &"review", "by");
        let at = self.required(at, node, &entries, &"review", "at");
        let summary = self.required(summary, node, &entries, &"review", "summary");
        Some(Review {
            by: by?,
            at: at?,
            summary: summary?,
        })
    }

    fn content_signature(&mut self, node: &Node) -> Option<crate::model::ContentRecord> {
        let name = "content_signature";
        self.place(&name, node);
        node.as_map()?;
        let (mut action, mut by, mut at, mut digest, mut signature) =
            (None, None, None, None, None);
        let entries = self.mapping(node, &name, CONTENT_SIGNATURE_KEYS);
        for &(key, v) in &entries {
            let path = format_args!("content_signature.{key}");
            match key {
                "action" => action = self.text(v, &path),
                "by" => by = self.text(v, &path),
                "at" => at = self.timestamp(v, &path),
                "digest" => digest = self.text(v, &path),
                _ => signature = self.text(v, &path),
            }
        }
        let action = self.required(action, node, &entries, &name, "action");
        let by = self.required(by, node, &entries, &name, "by");
        let at = self.required(at, node, &entries, &name, "at");
        let digest = self.required(digest, node, &entries, &name, "digest");
        Some(crate::model::ContentRecord {
            action: action?,
            by: by?,
            at: at?,
            digest: digest?,
            signature,
        })
    }

    fn deployments(&mut self, node: &Node) -> Vec<Deployment> {
        let items = self.records(node, "deployments");
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let base = format_args!("deployments[{i}]");
            self.place(&base, item);
            let (mut commit, mut environment, mut run, mut at, mut by, mut signature) =
                (None, None, None, None, None, None);
            let entries = self.mapping(item, &base, DEPLOYMENT_KEYS);
            for &(key, v) in &entries {
                let path = format_args!("deployments[{i}].{key}");
                match key {
                    "commit" => commit = self.text(v, &path),
                    "environment" => environment = self.text(v, &path),
                    "run" => run = self.text(v, &path),
                    "at" => at = self.timestamp(v, &path),
                    "by" => by = self.text(v, &path),
                    _ => signature = self.text(v, &path),
                }
            }
            if item.as_map().is_none() {
                continue;
            }
            let commit = self.required(commit, item, &entries, &base, "commit");
            let environment = self.required(environment, item, &entries, &base, "environment");
            let at = self.required(at, item, &entries, &base, "at");
            let by = self.required(by, item, &entries, &base, "by");
            if let (Some(commit), Some(environment), Some(at), Some(by)) =
                (commit, environment, at, by)
            {
                let d = Deployment {
                    commit,
                    environment,
                    run,
                    at,
                    by,
                    signature,
                };
                // A record that cannot be reconciled (a short id, a name with spaces) is
                // malformed, as an unknown enum value is.
                for problem in d.problems() {
                    self.error(item.pos, "type", format!("deployments[{i}]: {problem}"));
                }
                out.push(d);
            }
        }
        out
    }

    fn cancellation(&mut self, node: &Node) -> Option<Cancellation> {
        self.place(&"cancellation", node);
        node.as_map()?;
        let (mut by, mut at, mut reason, mut signature) = (None, None, None, None);
        let entries = self.mapping(node, &"cancellation", CANCELLATION_KEYS);
        for &(key, v) in &entries {
            let path = format_args!("cancellation.{key}");
            match key {
                "by" => by = self.text(v, &path),
                "at" => at = self.timestamp(v, &path),
                "signature" => signature = self.text(v, &path),
                _ => reason = self.text(v, &path),
            }
        }
        let by = self.required(by, node, &entries, &"cancellation", "by");
        let at = self.required(at, node, &entries, &"cancellation", "at");
        let reason = self.required(reason, node, &entries, &"cancellation", "reason");
        Some(Cancellation {
            by: by?,
            at: at?,
            reason: reason?,
            signature,
        })
    }
}
