//! The change advisory board's agenda (`chg cab`): the changes pending approval, by
//! priority, each with its schedule's conflicts.

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::conflicts::{self, Conflict};
use crate::error::Result;
use crate::model::{ChangeModel, ChangeRequest, Priority, Status};
use crate::policy::Policy;
use crate::rules::Provenance;
use crate::store::{Loaded, Store};

use super::Query;

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
