//! What a change's file alone decides of a query (every filter but awaiting and overdue),
//! and the cheap necessary condition of those two, so that a reader skips what cannot pass.

use crate::model::{ChangeRequest, Status};
use crate::policy::Policy;

use super::{Query, in_approval};

/// Whether `value` is one of `list`; an empty list lets everything through.
fn one_of<T: PartialEq>(list: &[T], value: &Option<T>) -> bool {
    list.is_empty() || value.as_ref().is_some_and(|v| list.contains(v))
}

impl Query {
    /// Whether `change` passes the filters its file alone decides: all but
    /// [`Query::awaiting`] and [`Query::overdue`], which need its history.
    pub fn matches(&self, c: &ChangeRequest) -> bool {
        one_of(&self.statuses, &c.status)
            && (self.types.is_empty()
                || c.change_type
                    .as_ref()
                    .is_some_and(|t| self.types.contains(t)))
            && one_of(&self.priorities, &c.priority)
            && one_of(&self.risks, &c.risk_level)
            && (self.systems.is_empty()
                || c.affected_systems.iter().any(|s| self.systems.contains(s)))
            && self
                .since
                .is_none_or(|s| c.request_date.is_some_and(|d| d >= s))
            && self
                .until
                .is_none_or(|u| c.request_date.is_some_and(|d| d < u))
            && self.requester.as_deref().is_none_or(|r| {
                c.requester
                    .as_deref()
                    .is_some_and(|x| x.eq_ignore_ascii_case(r))
            })
            && (!self.open_only || !c.status().is_terminal())
    }

    /// Whether a change whose status is `status` (`None`: none given) may pass the
    /// filters: what [`Query::matches`] asks of the status alone.
    pub fn status_may_match(&self, status: Option<Status>) -> bool {
        let c = ChangeRequest {
            status,
            ..ChangeRequest::default()
        };
        one_of(&self.statuses, &c.status) && (!self.open_only || !c.status().is_terminal())
    }

    /// Whether `c` may be in the result: it [matches](Query::matches) and passes the
    /// awaiting and overdue filters' cheap necessary condition. A reader that filters the
    /// changes it hands to [`Query::run_over`] may keep only these.
    pub fn may_select(&self, c: &ChangeRequest, policy: &Policy) -> bool {
        self.matches(c)
            && (self.awaiting.is_none() && !self.overdue || self.may_need_history(c, policy))
    }

    /// Whether the awaiting or overdue filter may let `c` through, so its history is worth
    /// reading: a cheap necessary condition of both.
    pub(super) fn may_need_history(&self, c: &ChangeRequest, policy: &Policy) -> bool {
        (self.awaiting.is_some() || self.overdue)
            && in_approval(c, policy)
            && self.awaiting.as_deref().is_none_or(|person| {
                policy
                    .required_role_names(c)
                    .into_iter()
                    .any(|r| policy.is_member(r, person))
            })
    }
}
