//! A query run: filtered, judged by history where the awaiting and overdue filters ask,
//! sorted and paged, over changes given or the store's read summaries (borrowed from a
//! server's memory where it keeps them).

use std::collections::HashMap;

use jiff::Timestamp;

use crate::error::Result;
use crate::model::{ChangeRequest, Status};
use crate::policy::Policy;
use crate::rules::Provenance;
use crate::standing::KeptProvenances;
use crate::store::{Loaded, Store};
use crate::workflow;

use super::{AsChange, Page, Query, Row, overdue_since};

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

impl Query {
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
