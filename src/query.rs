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
    let status = change.status();
    let retroactive = change.model() == ChangeModel::Emergency
        && matches!(status, Status::Implementing | Status::Closed);
    (status == Status::PendingApproval || retroactive) && !policy.is_preapproved(change)
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

    /// Whether the awaiting or overdue filter may let `c` through, so its history is worth
    /// reading: a cheap necessary condition of both.
    fn may_need_history(&self, c: &ChangeRequest, policy: &Policy) -> bool {
        (self.awaiting.is_some() || self.overdue)
            && in_approval(c, policy)
            && self.awaiting.as_deref().is_none_or(|person| {
                policy
                    .required_roles(c)
                    .iter()
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
        let mut rows: Vec<Row<T>> = items
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
        rows.sort_by(|x, y| self.sort.cmp(x.item.change(), y.item.change()));
        let total = rows.len();
        let rows = rows
            .into_iter()
            .skip(self.offset)
            .take(self.limit.unwrap_or(usize::MAX))
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
    pub fn run(&self, store: &Store, policy: &Policy, now: Timestamp) -> Result<Page<Loaded>> {
        let all = store.load_where(|c| self.matches(c))?;
        let unreadable = all.iter().filter(|l| !l.decoded.parsed).count();
        let readable: Vec<Loaded> = all.into_iter().filter(|l| l.decoded.parsed).collect();
        let ids: Vec<String> = readable
            .iter()
            .map(Loaded::change)
            .filter(|c| self.may_need_history(c, policy))
            .map(ChangeRequest::id_text)
            .collect();
        let known = if ids.is_empty() {
            HashMap::new()
        } else {
            crate::standing::provenances(store, &ids, now)?
        };
        let mut page = self.select(readable, policy, now, |c| {
            known.get(&c.id_text()).cloned().unwrap_or_default()
        });
        page.unreadable = unreadable;
        Ok(page)
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
    let pending = Query {
        statuses: vec![Status::PendingApproval],
        ..Query::default()
    };
    // The agenda, and whatever its changes can conflict with.
    let all = store.load_where(|c| pending.matches(c) || conflicts::can_conflict(c))?;
    let unreadable = all.iter().filter(|l| !l.decoded.parsed).count();
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
    let all = store.load_where(|c| period.matches(c))?;
    let unreadable = all.iter().filter(|l| !l.decoded.parsed).count();
    let changes: Vec<&ChangeRequest> = all
        .iter()
        .filter(|l| l.decoded.parsed)
        .map(Loaded::change)
        .collect();
    Ok((
        crate::report::build(&changes, policy, since, until),
        unreadable,
    ))
}
