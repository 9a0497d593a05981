//! Which changes a reader asks for: the one query layer under `chg list`, `chg cab`,
//! `chg report` and the coming HTTP API, so that they select, sort and page alike.
//!
//! A [`Query`] holds filters (status, type, priority, risk, system, requester, request
//! dates, open only, awaiting a person, overdue approvals), a [`Sort`] and a page (offset,
//! limit). Whom a change awaits is [`workflow::approvable_roles`], the rule `chg approve`
//! obeys: a person is listed exactly when approve would accept them. The present is a
//! parameter; nothing here reads the clock or the environment.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use jiff::{SignedDuration, Timestamp};

use crate::conflicts::{self, Conflict};
use crate::error::Result;
use crate::model::{ChangeModel, ChangeRequest, Priority, RiskLevel, Status};
use crate::policy::Policy;
use crate::report::Report;
use crate::rules::Provenance;
use crate::standing::KeptProvenances;
use crate::store::{Loaded, Store};
use crate::workflow;

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

/// A change file a query holds: borrowed from a server's memory, or read by the query.
/// Small, so that thousands move cheaply through a filter and a sort.
enum Held<'a> {
    Borrowed(&'a Loaded),
    Owned(Box<Loaded>),
}

impl Held<'_> {
    fn get(&self) -> &Loaded {
        match self {
            Held::Borrowed(l) => l,
            Held::Owned(l) => l,
        }
    }

    fn into_owned(self) -> Loaded {
        match self {
            Held::Borrowed(l) => l.clone(),
            Held::Owned(l) => *l,
        }
    }
}

impl AsChange for Held<'_> {
    fn change(&self) -> &ChangeRequest {
        self.get().change()
    }
}

impl<T: AsChange + ?Sized> AsChange for &T {
    fn change(&self) -> &ChangeRequest {
        (**self).change()
    }
}

/// What rows are ordered by; ties go by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    /// The change id.
    #[default]
    Id,
    /// The request date.
    Requested,
    /// The priority, most severe first.
    Priority,
    /// The risk level, most severe first.
    Risk,
    /// The status, by its spelling.
    Status,
    /// The title.
    Title,
}

impl SortKey {
    /// Every key, as `--sort` spells them.
    pub const NAMES: &'static [&'static str] =
        &["id", "requested", "priority", "risk", "status", "title"];
    const ALL: &'static [SortKey] = &[
        SortKey::Id,
        SortKey::Requested,
        SortKey::Priority,
        SortKey::Risk,
        SortKey::Status,
        SortKey::Title,
    ];
}

impl FromStr for SortKey {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match SortKey::NAMES.iter().position(|n| *n == s) {
            Some(i) => Ok(SortKey::ALL[i]),
            None => Err(format!(
                "`{s}` is not one of: {}{}",
                SortKey::NAMES.join(", "),
                crate::finding::suggest(s, SortKey::NAMES.iter().copied())
                    .map(|m| format!("; did you mean `{m}`?"))
                    .unwrap_or_default()
            )),
        }
    }
}

/// A sort: a key, and whether the whole order (ties included) is reversed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sort {
    /// The key.
    pub key: SortKey,
    /// Reversed.
    pub descending: bool,
}

impl FromStr for Sort {
    type Err = String;
    /// `title`, or `-requested` for the reverse order.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(Sort {
            descending: s.starts_with('-'),
            key: s.trim_start_matches('-').parse()?,
        })
    }
}

/// How severe a priority or a risk is, 0 the most (critical): both sorts put the most
/// severe first; a change without one comes last.
fn severity(c: &ChangeRequest, key: SortKey) -> usize {
    let rank = match key {
        SortKey::Priority => c.priority.map(|p| p as usize),
        // Risk levels are declared least severe first.
        _ => c.risk_level.map(|r| RiskLevel::ALL.len() - 1 - r as usize),
    };
    rank.unwrap_or(usize::MAX)
}

impl Sort {
    /// The order of two changes under this sort.
    pub fn cmp(&self, x: &ChangeRequest, y: &ChangeRequest) -> std::cmp::Ordering {
        let order = match self.key {
            SortKey::Id => std::cmp::Ordering::Equal,
            SortKey::Requested => x.request_date.cmp(&y.request_date),
            SortKey::Priority | SortKey::Risk => severity(x, self.key).cmp(&severity(y, self.key)),
            SortKey::Status => x
                .status
                .map(|s| s.as_str())
                .cmp(&y.status.map(|s| s.as_str())),
            SortKey::Title => x.title.cmp(&y.title),
        }
        .then(x.id.cmp(&y.id));
        if self.descending {
            order.reverse()
        } else {
            order
        }
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
    fn may_need_history(&self, c: &ChangeRequest, policy: &Policy) -> bool {
        (self.awaiting.is_some() || self.overdue)
            && in_approval(c, policy)
            && self.awaiting.as_deref().is_none_or(|person| {
                policy
                    .required_role_names(c)
                    .into_iter()
                    .any(|r| policy.is_member(r, person))
            })
    }

    /// Filters, sorts and pages `items`. `provenance` says what history knows of a change
    /// (asked only for the awaiting and overdue filters); `now` is the present.
    pub fn select<T: AsChange>(
        &self,
        items: Vec<T>,
        policy: &Policy,
        now: Timestamp,
        provenance: impl Fn(&ChangeRequest) -> Provenance,
    ) -> Page<T> {
        let rows: Vec<Row<T>> = items
            .into_iter()
            .filter(|item| self.matches(item.change()))
            .filter_map(|item| {
                let c = item.change();
                let known = (self.awaiting.is_some() || self.overdue).then(|| provenance(c));
                let awaiting = match (&self.awaiting, &known) {
                    (Some(person), Some(p)) => {
                        let roles = workflow::approvable_roles(c, policy, person, p);
                        if roles.is_empty() {
                            return None;
                        }
                        roles
                    }
                    _ => Vec::new(),
                };
                let overdue_since = match (self.overdue, &known) {
                    (true, Some(p)) => Some(overdue_since(c, policy, p, now)?),
                    _ => None,
                };
                Some(Row {
                    item,
                    awaiting,
                    overdue_since,
                })
            })
            .collect();
        // Positions are sorted, not rows: a row holds a whole change, and moving thousands
        // of them through a sort was most of a "waiting for me" at 100,000 changes.
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by(|x, y| {
            self.sort
                .cmp(rows[*x].item.change(), rows[*y].item.change())
        });
        let total = rows.len();
        let mut slots: Vec<Option<Row<T>>> = rows.into_iter().map(Some).collect();
        let rows = order
            .into_iter()
            .skip(self.offset)
            .take(self.limit.unwrap_or(usize::MAX))
            .filter_map(|i| slots[i].take())
            .collect();
        Page {
            rows,
            total,
            unreadable: 0,
        }
    }

    /// [`Query::select`] over the store's change files: only the files the filters keep
    /// stay in memory, and the audit index is read (once) only for the changes the
    /// awaiting and overdue filters judge by their history.
    ///
    /// The changes come from the read summary ([`crate::store::summary`]): each row holds
    /// its change as far as the summary goes (no long texts, no deployments); a reader
    /// that shows more reads the file ([`Store::load_file`]). The changes the awaiting and
    /// overdue filters judge are read whole, as the rules may read any field.
    pub fn run(&self, store: &Store, policy: &Policy, now: Timestamp) -> Result<Page<Loaded>> {
        // The statuses that may pass, found once (each answer builds a change).
        let passing: Vec<Option<Status>> = std::iter::once(None)
            .chain(Status::ALL.iter().copied().map(Some))
            .filter(|s| self.status_may_match(*s))
            .collect();
        let all = store
            .load_summaries_with_status(|s| passing.contains(&s), |c| self.may_select(c, policy))?;
        self.run_over(store, policy, now, all)
    }

    /// [`Query::run`] over summaries read already (those [`Query::matches`] keeps, and the
    /// undecodable ones): a server keeps the store's summaries in memory between requests.
    pub fn run_over(
        &self,
        store: &Store,
        policy: &Policy,
        now: Timestamp,
        all: Vec<Loaded>,
    ) -> Result<Page<Loaded>> {
        self.run_over_kept(store, policy, now, all, &mut KeptProvenances::default())
    }

    /// [`Query::run_over`], with the provenances a server keeps between requests
    /// ([`KeptProvenances`]). A file given whole (with its text) is not read again.
    pub fn run_over_kept(
        &self,
        store: &Store,
        policy: &Policy,
        now: Timestamp,
        all: Vec<Loaded>,
        kept: &mut KeptProvenances,
    ) -> Result<Page<Loaded>> {
        let all = all.into_iter().map(|l| Held::Owned(Box::new(l))).collect();
        let page = self.run_over_cows(store, policy, now, all, kept)?;
        Ok(page.map(Held::into_owned))
    }

    /// [`Query::run_over_kept`] over summaries a server keeps in memory, borrowed: only
    /// the rows of the page are copied (a "waiting for me" at 100,000 changes judges
    /// thousands of changes and shows a few), and a summary is read whole only when the
    /// awaiting or overdue filter judges it and it is not whole already.
    pub fn run_over_borrowed<'a>(
        &self,
        store: &Store,
        policy: &Policy,
        now: Timestamp,
        all: impl Iterator<Item = &'a Loaded>,
        kept: &mut KeptProvenances,
    ) -> Result<Page<Loaded>> {
        let all = all
            .filter(|l| !l.decoded.parsed || self.may_select(l.change(), policy))
            .map(Held::Borrowed)
            .collect();
        let page = self.run_over_cows(store, policy, now, all, kept)?;
        Ok(page.map(Held::into_owned))
    }

    fn run_over_cows<'a>(
        &self,
        store: &Store,
        policy: &Policy,
        now: Timestamp,
        all: Vec<Held<'a>>,
        kept: &mut KeptProvenances,
    ) -> Result<Page<Held<'a>>> {
        let unreadable = all.iter().filter(|l| !l.get().decoded.parsed).count();
        let mut readable: Vec<Held<'a>> =
            all.into_iter().filter(|l| l.get().decoded.parsed).collect();
        let mut ids: Vec<String> = Vec::new();
        for l in readable.iter_mut() {
            if !self.may_need_history(l.change(), policy) {
                continue;
            }
            if l.get().text.is_empty()
                && let Ok(whole) = store.load_file(&l.get().rel)
                && whole.decoded.parsed
            {
                *l = Held::Owned(Box::new(whole));
                // Judged again on the whole file (a summary has not every field).
                if !self.may_need_history(l.change(), policy) {
                    continue;
                }
            }
            ids.push(l.change().id_text());
        }
        let known = if ids.is_empty() {
            HashMap::new()
        } else {
            crate::standing::provenances_kept(store, &ids, now, kept)?
        };
        let mut page = self.select(readable, policy, now, |c| {
            known.get(&c.id_text()).cloned().unwrap_or_default()
        });
        page.unreadable = unreadable;
        Ok(page)
    }
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

/// One change on the change advisory board's agenda.
#[derive(Debug, Clone)]
pub struct AgendaItem {
    /// The change.
    pub change: ChangeRequest,
    /// Its schedule's conflicts with freezes, windows and the other changes.
    pub conflicts: Vec<Conflict>,
    /// The roles still to approve it.
    pub awaiting: Vec<String>,
}

/// The change advisory board's agenda (`chg cab`).
#[derive(Debug, Clone, Default)]
pub struct Agenda {
    /// The changes awaiting approval, by priority (most severe first), each by id.
    pub groups: Vec<(Priority, Vec<AgendaItem>)>,
    /// Pre-approved standard changes pending: they await nobody, so are only counted.
    pub preapproved: usize,
    /// Change files that could not be read.
    pub unreadable: usize,
}

/// The agenda of a meeting: the changes pending approval requested before `until` (those
/// without a request date too), with a priority, by priority; their conflicts are judged
/// against every change that can conflict.
pub fn agenda(store: &Store, policy: &Policy, until: Timestamp) -> Result<Agenda> {
    let all = store.load_summaries_where(agenda_reads)?;
    agenda_over(store, policy, until, all)
}

/// The summaries the agenda reads: the changes pending approval, and whatever they can
/// conflict with.
pub fn agenda_reads(c: &ChangeRequest) -> bool {
    let pending = Query {
        statuses: vec![Status::PendingApproval],
        ..Query::default()
    };
    pending.matches(c) || conflicts::can_conflict(c)
}

/// [`agenda`] over summaries read already (those [`agenda_reads`] keeps, and the
/// undecodable ones).
pub fn agenda_over(
    store: &Store,
    policy: &Policy,
    until: Timestamp,
    mut all: Vec<Loaded>,
) -> Result<Agenda> {
    let pending = Query {
        statuses: vec![Status::PendingApproval],
        ..Query::default()
    };
    // The agenda, and whatever its changes can conflict with (conflicts read no more than
    // the summary holds).
    let unreadable = all.iter().filter(|l| !l.decoded.parsed).count();
    // A standard change is judged against its template's fixed fields, any of which the
    // summary may leave out: those on the agenda are read whole.
    for l in all.iter_mut() {
        if l.decoded.parsed
            && pending.matches(l.change())
            && l.change().model() == ChangeModel::Standard
            && let Ok(whole) = store.load_file(&l.rel)
            && whole.decoded.parsed
        {
            *l = whole;
        }
    }
    let everyone: Vec<&ChangeRequest> = all
        .iter()
        .filter(|l| l.decoded.parsed)
        .map(Loaded::change)
        .collect();
    let listed: Vec<&ChangeRequest> = pending
        .select(everyone.clone(), policy, until, |_| Provenance::default())
        .rows
        .into_iter()
        .map(|r| r.item)
        .filter(|c| c.request_date.is_none_or(|d| d < until) && c.priority.is_some())
        .collect();
    let mut groups: BTreeMap<Priority, Vec<AgendaItem>> = BTreeMap::new();
    let mut preapproved = 0;
    for c in listed {
        let awaiting = crate::rules::missing_roles(c, policy);
        // A pre-approved standard change awaits nobody: it is not the board's to approve.
        if policy.is_preapproved(c) && awaiting.is_empty() {
            preapproved += 1;
            continue;
        }
        let conflicts = c
            .schedule
            .as_ref()
            .map(|s| conflicts::conflicts(c, s, &everyone, policy))
            .unwrap_or_default();
        if let Some(p) = c.priority {
            groups.entry(p).or_default().push(AgendaItem {
                change: c.clone(),
                conflicts,
                awaiting,
            });
        }
    }
    Ok(Agenda {
        groups: groups.into_iter().collect(),
        preapproved,
        unreadable,
    })
}

/// The figures of `chg report` for the changes requested in `[since, until)`
/// ([`crate::report::build`]), and how many change files could not be read.
pub fn report(
    store: &Store,
    policy: &Policy,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
) -> Result<(Report, usize)> {
    let period = Query {
        since,
        until,
        ..Query::default()
    };
    // The report reads status, model, priority, type, dates, approvals and implementation
    // times, all in the summary; a template is judged for standard changes only, which
    // have no approval time.
    let all = store.load_summaries_where(|c| period.matches(c))?;
    Ok(report_over(policy, since, until, &all))
}

/// [`report`] over summaries read already (the changes requested in the period, and the
/// undecodable ones).
pub fn report_over<L: std::borrow::Borrow<Loaded>>(
    policy: &Policy,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
    all: &[L],
) -> (Report, usize) {
    let period = Query {
        since,
        until,
        ..Query::default()
    };
    let all: Vec<&Loaded> = all
        .iter()
        .map(std::borrow::Borrow::borrow)
        .filter(|l: &&Loaded| !l.decoded.parsed || period.matches(l.change()))
        .collect();
    let unreadable = all.iter().filter(|l| !l.decoded.parsed).count();
    let changes: Vec<&ChangeRequest> = all
        .iter()
        .filter(|l| l.decoded.parsed)
        .map(|l| l.change())
        .collect();
    (
        crate::report::build(&changes, policy, since, until),
        unreadable,
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Approval, Decision, Implementation, sample_change};
    use crate::policy::SodCheck;
    use crate::workflow::Step;
    use proptest::prelude::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const NOW: &str = "2025-03-10T10:00:00Z";

    /// Five changes that differ in every field a filter reads.
    fn changes() -> Vec<ChangeRequest> {
        let make = |n: u32, f: &dyn Fn(&mut ChangeRequest)| {
            let mut c = sample_change();
            c.id = Some(format!("CHG-2025-{n:03}").parse().unwrap());
            f(&mut c);
            c
        };
        vec![
            make(1, &|c| {
                c.title = Some("delta".into());
                c.priority = Some(Priority::Medium);
                c.request_date = Some(ts("2025-03-03T09:00:00Z"));
            }),
            make(2, &|c| {
                c.title = Some("alpha".into());
                c.status = Some(Status::Closed);
                c.change_type = Some("security".into());
                c.priority = Some(Priority::Critical);
                c.risk_level = Some(RiskLevel::High);
                c.request_date = Some(ts("2025-03-01T09:00:00Z"));
            }),
            make(3, &|c| {
                c.title = Some("charlie".into());
                c.status = Some(Status::Draft);
                c.requester = Some("Bob@Example.com".into());
                c.affected_systems = vec!["db".into(), "api".into()];
                c.priority = Some(Priority::High);
                c.risk_level = Some(RiskLevel::Medium);
                c.request_date = Some(ts("2025-03-05T09:00:00Z"));
            }),
            make(4, &|c| {
                c.title = Some("bravo".into());
                c.affected_systems = vec!["web".into()];
                c.priority = None;
                c.risk_level = None;
                c.request_date = None;
            }),
            make(5, &|c| {
                c.title = Some("echo".into());
                c.status = Some(Status::Approved);
                c.risk_level = Some(RiskLevel::Critical);
                c.request_date = Some(ts("2025-03-02T09:00:00Z"));
            }),
        ]
    }

    fn ids(q: &Query, policy: &Policy) -> Vec<String> {
        q.select(changes(), policy, ts(NOW), |_| Provenance::default())
            .rows
            .iter()
            .map(|r| r.item.id_text()[9..].to_owned())
            .collect()
    }

    #[test]
    fn each_filter_keeps_only_its_changes() {
        let p = Policy::default_policy();
        let q = |f: &dyn Fn(&mut Query)| {
            let mut q = Query::default();
            f(&mut q);
            ids(&q, &p)
        };
        assert_eq!(q(&|_| {}), ["001", "002", "003", "004", "005"]);
        assert_eq!(
            q(&|q| q.statuses = vec![Status::Draft, Status::Closed]),
            ["002", "003"]
        );
        assert_eq!(q(&|q| q.types = vec!["security".into()]), ["002"]);
        assert_eq!(q(&|q| q.priorities = vec![Priority::Medium]), ["001"]);
        assert_eq!(q(&|q| q.risks = vec![RiskLevel::Low]), ["001"]);
        assert_eq!(
            q(&|q| q.systems = vec!["db".into(), "web".into()]),
            ["003", "004"]
        );
        assert_eq!(
            q(&|q| q.requester = Some("bob@example.COM".into())),
            ["003"]
        );
        // [since, until): a change without a request date is in no period.
        let since = Some(ts("2025-03-02T09:00:00Z"));
        assert_eq!(q(&|q| q.since = since), ["001", "003", "005"]);
        assert_eq!(q(&|q| q.until = since), ["002"]);
        assert_eq!(q(&|q| q.open_only = true), ["001", "003", "004", "005"]);
        // Filters combine.
        assert_eq!(
            q(&|q| {
                q.open_only = true;
                q.systems = vec!["api".into()];
                q.since = since;
            }),
            ["001", "003", "005"]
        );
    }

    /// The summary skips rows by [`Query::status_may_match`] before decoding them: it must
    /// never skip a change [`Query::matches`] keeps.
    #[test]
    fn the_status_prefilter_never_drops_a_match() {
        let statuses: Vec<Option<Status>> = std::iter::once(None)
            .chain(Status::ALL.iter().copied().map(Some))
            .collect();
        for open_only in [false, true] {
            for wanted in [
                vec![],
                vec![Status::Draft],
                vec![Status::Closed, Status::Approved],
            ] {
                let q = Query {
                    statuses: wanted.clone(),
                    open_only,
                    ..Query::default()
                };
                for s in &statuses {
                    let c = ChangeRequest {
                        status: *s,
                        ..sample_change()
                    };
                    assert_eq!(
                        q.matches(&c),
                        q.status_may_match(*s),
                        "{s:?} with {wanted:?}, open only {open_only}"
                    );
                }
            }
        }
    }

    #[test]
    fn sorts_order_by_their_key_then_id_and_reverse_whole() {
        let p = Policy::default_policy();
        let sorted = |s: &str| {
            let q = Query {
                sort: s.parse().unwrap(),
                ..Query::default()
            };
            ids(&q, &p)
        };
        assert_eq!(sorted("id"), ["001", "002", "003", "004", "005"]);
        assert_eq!(sorted("-id"), ["005", "004", "003", "002", "001"]);
        // No request date sorts first, as None does.
        assert_eq!(sorted("requested"), ["004", "002", "005", "001", "003"]);
        assert_eq!(sorted("-requested"), ["003", "001", "005", "002", "004"]);
        // Most severe first, unknown last; ties by id.
        assert_eq!(sorted("priority"), ["002", "003", "001", "005", "004"]);
        assert_eq!(sorted("risk"), ["005", "002", "003", "001", "004"]);
        assert_eq!(sorted("-risk"), ["004", "001", "003", "002", "005"]);
        assert_eq!(sorted("status"), ["005", "002", "003", "001", "004"]);
        assert_eq!(sorted("title"), ["002", "004", "003", "001", "005"]);
        let e = "titel".parse::<Sort>().unwrap_err();
        assert!(e.contains("did you mean `title`"), "{e}");
    }

    #[test]
    fn offset_and_limit_page_after_sorting_and_total_counts_all() {
        let p = Policy::default_policy();
        let page = |offset, limit| {
            let q = Query {
                sort: "-id".parse().unwrap(),
                offset,
                limit,
                ..Query::default()
            };
            let page = q.select(changes(), &p, ts(NOW), |_| Provenance::default());
            let ids: Vec<String> = page
                .rows
                .iter()
                .map(|r| r.item.id_text()[9..].to_owned())
                .collect();
            (ids, page.total)
        };
        assert_eq!(page(0, Some(2)), (vec!["005".into(), "004".into()], 5));
        assert_eq!(page(2, Some(2)), (vec!["003".into(), "002".into()], 5));
        assert_eq!(page(4, Some(2)), (vec!["001".into()], 5));
        assert_eq!(page(9, None), (vec![], 5));
        assert_eq!(page(3, None).0, ["002", "001"]);
    }

    #[test]
    fn awaiting_lists_the_roles_a_person_may_approve_now() {
        let mut p = Policy::default_policy();
        p.roles
            .get_mut("change-manager")
            .unwrap()
            .push("em@example.com".into());
        let mut c = sample_change();
        c.priority = Some(Priority::Medium);
        let awaiting = |c: &ChangeRequest, who: &str, prov: &Provenance| {
            let q = Query {
                awaiting: Some(who.into()),
                ..Query::default()
            };
            q.select(vec![c], &p, ts(NOW), |_| prov.clone())
                .rows
                .first()
                .map(|r| r.awaiting.clone())
                .unwrap_or_default()
        };
        let none = Provenance::default();
        assert_eq!(
            awaiting(&c, "em@example.com", &none),
            ["engineering-manager", "change-manager"]
        );
        assert_eq!(
            awaiting(&c, "alice@example.com", &none),
            Vec::<String>::new()
        );
        assert_eq!(awaiting(&c, "bob@example.com", &none), Vec::<String>::new());
        // Once she approved in one role, not in the other: one person, one role.
        c.approvals.push(Approval {
            by: "em@example.com".into(),
            role: "engineering-manager".into(),
            decision: Decision::Approved,
            at: ts("2025-03-02T09:00:00Z"),
            comments: None,
            conditions: vec![],
            digest: None,
            signature: None,
            attested_by: None,
            attested_via: None,
        });
        assert_eq!(awaiting(&c, "em@example.com", &none), Vec::<String>::new());
        assert_eq!(awaiting(&c, "cm@example.com", &none), ["change-manager"]);
        // History shows cm wrote the content: not hers to approve.
        let cm_wrote = Provenance {
            content_author: Some(("cm@example.com".into(), "abcdef12".into())),
            ..Provenance::default()
        };
        assert_eq!(
            awaiting(&c, "cm@example.com", &cm_wrote),
            Vec::<String>::new()
        );
    }

    #[test]
    fn overdue_counts_the_timeout_from_submission_while_approvals_are_missing() {
        let p = Policy::default_policy();
        // Low priority: 7 days; requested 1 March 09:00.
        let c = sample_change();
        let overdue = |c: &ChangeRequest, prov: &Provenance, now: &str| {
            let q = Query {
                overdue: true,
                ..Query::default()
            };
            q.select(vec![c], &p, ts(now), |_| prov.clone())
                .rows
                .first()
                .and_then(|r| r.overdue_since)
        };
        let none = Provenance::default();
        let due = ts("2025-03-08T09:00:00Z");
        assert_eq!(overdue(&c, &none, "2025-03-08T09:00:00Z"), None);
        assert_eq!(overdue(&c, &none, "2025-03-08T09:00:01Z"), Some(due));
        // Submitted later than requested: counted from the submission.
        let submitted = Provenance {
            submitted_at: Some(ts("2025-03-05T09:00:00Z")),
            ..Provenance::default()
        };
        assert_eq!(overdue(&c, &submitted, "2025-03-10T09:00:00Z"), None);
        assert_eq!(
            overdue(&c, &submitted, "2025-03-12T09:00:01Z"),
            Some(ts("2025-03-12T09:00:00Z"))
        );
        // Approved, or a draft: nothing pending.
        let mut approved = c.clone();
        approved.status = Some(Status::Approved);
        assert_eq!(overdue(&approved, &none, "2025-04-01T00:00:00Z"), None);
        let mut draft = c.clone();
        draft.status = Some(Status::Draft);
        assert_eq!(overdue(&draft, &none, "2025-04-01T00:00:00Z"), None);
    }

    const PEOPLE: [&str; 5] = [
        "alice@example.com",
        "em@example.com",
        "cm@example.com",
        "sec1@example.com",
        "bob@example.com",
    ];
    const ROLES: [&str; 4] = [
        "change-manager",
        "engineering-manager",
        "security-team",
        "security-team-lead",
    ];

    /// A policy (the default, its roles' members and its segregation of duties drawn), a
    /// change (status, model, priority, requester, approvals, implementer drawn) and what
    /// history says of it.
    fn world() -> impl Strategy<Value = (Policy, ChangeRequest, Provenance)> {
        let person = || 0..PEOPLE.len();
        let approval = (person(), 0..ROLES.len(), 0..3usize, 0..48i64);
        (
            (
                proptest::collection::vec(0u8..32, ROLES.len()),
                proptest::collection::vec(any::<bool>(), 5),
            ),
            (
                0..Status::ALL.len(),
                0..3usize,
                0..Priority::ALL.len(),
                person(),
                proptest::collection::vec(approval, 0..5),
                proptest::option::of(person()),
            ),
            (
                proptest::option::of(person()),
                proptest::option::of(person()),
            ),
        )
            .prop_map(|((members, sod), change, (creator, author))| {
                let mut p = Policy::default_policy();
                for (role, mask) in ROLES.iter().zip(members) {
                    let who = (0..PEOPLE.len()).filter(|i| mask & (1 << i) != 0);
                    p.roles
                        .insert((*role).into(), who.map(|i| PEOPLE[i].into()).collect());
                }
                for (check, forbidden) in SodCheck::ALL.iter().zip(sod) {
                    p.segregation_of_duties.forbid(*check, forbidden);
                }
                let (status, model, priority, requester, approvals, implementer) = change;
                let mut c = sample_change();
                c.status = Some(Status::ALL[status]);
                c.change_model = Some(
                    [
                        ChangeModel::Normal,
                        ChangeModel::Emergency,
                        ChangeModel::Standard,
                    ][model],
                );
                c.priority = Some(Priority::ALL[priority]);
                c.requester = Some(PEOPLE[requester].into());
                c.approvals = approvals
                    .into_iter()
                    .map(|(by, role, d, h)| Approval {
                        by: PEOPLE[by].into(),
                        role: ROLES[role].into(),
                        decision: [Decision::Approved, Decision::Rejected, Decision::Withdrawn][d],
                        at: ts("2025-03-02T00:00:00Z") + SignedDuration::from_hours(h),
                        comments: None,
                        conditions: vec![],
                        digest: None,
                        signature: None,
                        attested_by: None,
                        attested_via: None,
                    })
                    .collect();
                c.implementation = implementer.map(|i| Implementation {
                    implementer: Some(PEOPLE[i].into()),
                    ..Default::default()
                });
                let prov = Provenance {
                    creator: creator.map(|i| PEOPLE[i].into()),
                    content_author: author.map(|i| (PEOPLE[i].into(), "0123abcd".into())),
                    ..Provenance::default()
                };
                (p, c, prov)
            })
    }

    fn approve(
        c: &ChangeRequest,
        p: &Policy,
        who: &str,
        role: Option<&str>,
        prov: &Provenance,
    ) -> Result<String> {
        let step = Step::Approve {
            role: role.map(str::to_owned),
            comment: None,
            conditions: vec![],
        };
        workflow::apply_with(c, p, who, ts(NOW), step, prov)
            .map(|(_, t)| t.role.unwrap_or_default())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Whoever the awaiting query lists, approve accepts, for exactly the roles listed;
        /// whoever approve accepts, the query lists; and approve infers the role when one is
        /// open (issue 26: list --awaiting-me showed a change approve then refused).
        #[test]
        fn the_awaiting_query_and_approve_agree((p, c, prov) in world()) {
            for who in PEOPLE {
                let q = Query { awaiting: Some(who.into()), ..Query::default() };
                let page = q.select(vec![&c], &p, ts(NOW), |_| prov.clone());
                let listed: Vec<String> = page.rows.first().map(|r| r.awaiting.clone()).unwrap_or_default();
                prop_assert_eq!(page.rows.is_empty(), listed.is_empty());
                let accepted: Vec<String> = p
                    .required_roles(&c)
                    .into_iter()
                    .chain(ROLES.iter().map(|r| (*r).to_owned()))
                    .fold(Vec::new(), |mut v, r| { if !v.contains(&r) { v.push(r) } v })
                    .into_iter()
                    .filter(|r| approve(&c, &p, who, Some(r), &prov).is_ok())
                    .collect();
                let (mut l, mut a) = (listed.clone(), accepted);
                l.sort();
                a.sort();
                prop_assert_eq!(&l, &a, "{} on {:?}", who, c);
                let inferred = approve(&c, &p, who, None, &prov);
                match listed.as_slice() {
                    [] => prop_assert!(inferred.is_err()),
                    [one] => prop_assert_eq!(inferred.ok(), Some(one.clone())),
                    _ => {
                        let ambiguous = matches!(inferred, Err(crate::Error::Ambiguous { .. }));
                        prop_assert!(ambiguous, "{:?}", inferred);
                    }
                }
            }
        }
    }
}
