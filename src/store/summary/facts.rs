//! What a row of the read summary keeps of a change, and the change it gives back.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::model::{
    Approval, ChangeModel, ChangeRequest, Decision, Implementation, Outcome, Priority, RiskLevel,
    Schedule, Status, Urgency,
};

/// A time as seconds and nanoseconds: parsing RFC 3339 text for 100,000 rows showed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(super) struct T(pub(super) i64, pub(super) i32);

impl T {
    pub(super) fn of(t: Timestamp) -> T {
        T(t.as_second(), t.subsec_nanosecond())
    }
    pub(super) fn get(self) -> Timestamp {
        Timestamp::new(self.0, self.1).unwrap_or_default()
    }
}

pub(super) fn of(t: Option<Timestamp>) -> Option<T> {
    t.map(T::of)
}

pub(super) fn get(t: Option<T>) -> Option<Timestamp> {
    t.map(T::get)
}

/// What the queries read of a change: every field but the long texts (description,
/// justification, impact, plans, test environment), the proposed policy's files (only
/// whether there are any: it adds the governance roles) and the deployments. Approvals
/// keep who, which role, what and when. A rule that reads more (a standard change judged
/// against its template's fixed fields) is given the file ([`Store::load_file`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Facts {
    pub(super) id: Option<String>,
    pub(super) title: Option<String>,
    pub(super) requester: Option<String>,
    pub(super) requested: Option<T>,
    pub(super) kind: Option<String>,
    pub(super) model: Option<ChangeModel>,
    pub(super) priority: Option<Priority>,
    pub(super) urgency: Option<Urgency>,
    pub(super) risk: Option<RiskLevel>,
    pub(super) answers: Option<BTreeMap<String, bool>>,
    pub(super) systems: Vec<String>,
    pub(super) testing: Option<bool>,
    pub(super) template: Option<String>,
    pub(super) template_digest: Option<String>,
    pub(super) policy_change: bool,
    pub(super) schedule: Option<(T, T, bool)>,
    pub(super) status: Option<Status>,
    pub(super) approvals: Vec<(String, String, Decision, T)>,
    pub(super) implementation: Option<Done>,
}

/// What the queries read of an implementation: who, and when it started, ended and how.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct Done {
    pub(super) implementer: Option<String>,
    pub(super) started: Option<T>,
    pub(super) completed: Option<T>,
    pub(super) outcome: Option<Outcome>,
    pub(super) closed_by: Option<String>,
}

impl Facts {
    pub(super) fn of(c: &ChangeRequest) -> Facts {
        Facts {
            id: c.id.as_ref().map(ToString::to_string),
            title: c.title.clone(),
            requester: c.requester.clone(),
            requested: of(c.request_date),
            kind: c.change_type.clone(),
            model: c.change_model,
            priority: c.priority,
            urgency: c.urgency,
            risk: c.risk_level,
            answers: c.risk_assessment.clone(),
            systems: c.affected_systems.clone(),
            testing: c.testing_required,
            template: c.template.clone(),
            template_digest: c.template_digest.clone(),
            policy_change: c.proposed_policy.is_some(),
            schedule: c
                .schedule
                .as_ref()
                .map(|s| (T::of(s.start), T::of(s.end), s.maintenance_window)),
            status: c.status,
            approvals: c
                .approvals
                .iter()
                .map(|a| (a.by.clone(), a.role.clone(), a.decision, T::of(a.at)))
                .collect(),
            implementation: c.implementation.as_ref().map(|i| Done {
                implementer: i.implementer.clone(),
                started: of(i.started_at),
                completed: of(i.completed_at),
                outcome: i.outcome,
                closed_by: i.closed_by.clone(),
            }),
        }
    }

    /// The change as far as the summary knows it.
    pub(super) fn into_change(self) -> ChangeRequest {
        ChangeRequest {
            id: self.id.and_then(|i| i.parse().ok()),
            title: self.title,
            requester: self.requester,
            request_date: get(self.requested),
            change_type: self.kind,
            change_model: self.model,
            priority: self.priority,
            urgency: self.urgency,
            risk_level: self.risk,
            risk_assessment: self.answers,
            affected_systems: self.systems,
            testing_required: self.testing,
            template: self.template,
            template_digest: self.template_digest,
            proposed_policy: self.policy_change.then(BTreeMap::new),
            schedule: self.schedule.map(|(start, end, w)| Schedule {
                start: start.get(),
                end: end.get(),
                maintenance_window: w,
            }),
            status: self.status,
            approvals: self
                .approvals
                .into_iter()
                .map(|(by, role, decision, at)| Approval::new(by, role, decision, at.get()))
                .collect(),
            implementation: self.implementation.map(|d| Implementation {
                implementer: d.implementer,
                started_at: get(d.started),
                completed_at: get(d.completed),
                outcome: d.outcome,
                closed_by: d.closed_by,
                ..Implementation::default()
            }),
            ..ChangeRequest::default()
        }
    }
}
