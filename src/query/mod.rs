//! Which changes a reader asks for: the one query layer under `chg list`, `chg cab`,
//! `chg report` and the coming HTTP API, so that they select, sort and page alike.
//!
//! A [`Query`] holds filters (status, type, priority, risk, system, requester, request
//! dates, open only, awaiting a person, overdue approvals), a [`Sort`] and a page (offset,
//! limit). Whom a change awaits is [`workflow::approvable_roles`], the rule `chg approve`
//! obeys: a person is listed exactly when approve would accept them. The present is a
//! parameter; nothing here reads the clock or the environment.
//!
//! This file holds the query's types ([`Query`], [`Row`], [`Page`]), when approval falls
//! due, and a change's JSON; `sort` the order, `filter` what a change's file decides,
//! `select` filtering, sorting and paging over the store's summaries, `agenda` the change
//! advisory board's agenda and `figures` the report's figures for a period.
//!
//! [`workflow::approvable_roles`]: crate::workflow::approvable_roles

use jiff::{SignedDuration, Timestamp};

use crate::error::Result;
use crate::model::{ChangeModel, ChangeRequest, Priority, RiskLevel, Status};
use crate::policy::Policy;
use crate::rules::Provenance;
use crate::store::Loaded;

mod agenda;
mod figures;
mod filter;
mod select;
mod sort;
#[cfg(test)]
mod tests;

pub use agenda::{Agenda, AgendaItem, agenda, agenda_over, agenda_reads};
pub use figures::{report, report_over};
pub use sort::{Sort, SortKey};

/// Anything that holds a change: a [`Loaded`] file, or the change itself.
pub trait AsChange {
    /// The change.
    fn change(&self) -> &ChangeRequest;
}

impl AsChange for ChangeRequest {
    fn change(&self) -> &ChangeRequest {
        self
    }
}

impl AsChange for Loaded {
    fn change(&self) -> &ChangeRequest {
        Loaded::change(self)
    }
}

impl<T: AsChange + ?Sized> AsChange for &T {
    fn change(&self) -> &ChangeRequest {
        (**self).change()
    }
}

/// Which changes, in which order, which page. Empty filters let everything through.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Only these statuses.
    pub statuses: Vec<Status>,
    /// Only these change types.
    pub types: Vec<String>,
    /// Only these priorities.
    pub priorities: Vec<Priority>,
    /// Only these risk levels.
    pub risks: Vec<RiskLevel>,
    /// Only changes affecting one of these systems.
    pub systems: Vec<String>,
    /// Only changes filed by this person (compared without case).
    pub requester: Option<String>,
    /// Only changes requested at or after this time.
    pub since: Option<Timestamp>,
    /// Only changes requested before this time.
    pub until: Option<Timestamp>,
    /// Only changes not closed, rejected or cancelled.
    pub open_only: bool,
    /// Only changes this person may approve now ([`workflow::approvable_roles`]).
    ///
    /// [`workflow::approvable_roles`]: crate::workflow::approvable_roles
    pub awaiting: Option<String>,
    /// Only changes whose approval is overdue ([`overdue_since`]).
    pub overdue: bool,
    /// The order.
    pub sort: Sort,
    /// Rows skipped, after sorting.
    pub offset: usize,
    /// At most this many rows, after the offset.
    pub limit: Option<usize>,
}

/// One change a query found, with what it found out about it.
#[derive(Debug, Clone)]
pub struct Row<T> {
    /// The change (or its file).
    pub item: T,
    /// With [`Query::awaiting`], the roles that person may approve it for now.
    pub awaiting: Vec<String>,
    /// With [`Query::overdue`], when its approval became overdue.
    pub overdue_since: Option<Timestamp>,
}

/// What a query returns: one page of rows and how many matched in all.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The rows of the page, in order.
    pub rows: Vec<Row<T>>,
    /// How many changes matched, before the offset and the limit.
    pub total: usize,
    /// Change files that could not be read, so were not judged (`chg validate` says why).
    pub unreadable: usize,
}

impl<T> Page<T> {
    /// The page with each row's item turned into another.
    pub fn map<U>(self, f: impl Fn(T) -> U) -> Page<U> {
        Page {
            rows: self
                .rows
                .into_iter()
                .map(|r| Row {
                    item: f(r.item),
                    awaiting: r.awaiting,
                    overdue_since: r.overdue_since,
                })
                .collect(),
            total: self.total,
            unreadable: self.unreadable,
        }
    }
}

/// Whether `change` waits for approvals now: pending approval, or an emergency change
/// approved after implementation started; not a pre-approved standard change.
fn in_approval(change: &ChangeRequest, policy: &Policy) -> bool {
    may_be_in_approval(change) && !policy.is_preapproved(change)
}

/// What [`in_approval`] asks of the change alone, whatever the policy: pending approval,
/// or an emergency change in implementation or closed. The awaiting and overdue filters
/// judge only such changes.
pub fn may_be_in_approval(change: &ChangeRequest) -> bool {
    let status = change.status();
    let retroactive = change.model() == ChangeModel::Emergency
        && matches!(status, Status::Implementing | Status::Closed);
    status == Status::PendingApproval || retroactive
}

/// When approval of `change` falls due: its submission (as history knows it, else its
/// request date) plus the policy's `timeout` for its approval rule (SPEC section 13), while
/// it still waits for a required approval. `None` when it waits for none, or the rule has
/// no timeout.
pub fn approval_deadline(
    change: &ChangeRequest,
    policy: &Policy,
    provenance: &Provenance,
) -> Option<Timestamp> {
    if !in_approval(change, policy) || crate::rules::missing_roles(change, policy).is_empty() {
        return None;
    }
    let timeout = policy.rule_for(change)?.timeout?;
    let from = provenance.submitted_at.or(change.request_date)?;
    from.checked_add(SignedDuration::from_secs(timeout.as_secs()))
        .ok()
}

/// When approval of `change` became overdue, if it is at `now` (the deadline passed).
pub fn overdue_since(
    change: &ChangeRequest,
    policy: &Policy,
    provenance: &Provenance,
    now: Timestamp,
) -> Option<Timestamp> {
    approval_deadline(change, policy, provenance).filter(|d| *d < now)
}

/// A change as `chg show --json` writes it and the API answers it: every field, its file,
/// the roles its approval needs and those still missing.
pub fn change_json(
    policy: &Policy,
    rel: &std::path::Path,
    c: &ChangeRequest,
) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(c).map_err(|e| crate::Error::Internal(e.to_string()))?;
    if let serde_json::Value::Object(map) = &mut v {
        map.insert("file".into(), rel.display().to_string().into());
        map.insert(
            "required_roles".into(),
            serde_json::json!(policy.required_roles(c)),
        );
        map.insert(
            "missing_roles".into(),
            serde_json::json!(crate::rules::missing_roles(c, policy)),
        );
        // Each signed or signature-bound record's verdict under this policy: a reader of
        // the JSON sees whether a record counts, not only what the file says of itself.
        let verdicts: Vec<serde_json::Value> = crate::rules::signature_verdicts(c, policy)
            .into_iter()
            .map(|(r, v)| {
                serde_json::json!({
                    "record": r.path,
                    "action": r.action,
                    "by": r.actor,
                    "signer": r.signer(),
                    "valid": v.is_valid(),
                    "verdict": v.mark(),
                    "problem": v.problem(r.signer()),
                })
            })
            .collect();
        if !verdicts.is_empty() {
            map.insert("signatures".into(), verdicts.into());
        }
    }
    Ok(v)
}
