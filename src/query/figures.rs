//! The figures of `chg report` for a period, over the store's read summaries.

use jiff::Timestamp;

use crate::error::Result;
use crate::model::ChangeRequest;
use crate::policy::Policy;
use crate::report::Report;
use crate::store::{Loaded, Store};

use super::Query;

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
    let (tally, unreadable) = store.fold_summaries(
        |c| period.matches(c),
        crate::report::Tally::default,
        |t, c| t.add_if_in(c, policy, since, until),
        crate::report::Tally::merge,
    )?;
    Ok((tally.finish(policy, since, until), unreadable))
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
