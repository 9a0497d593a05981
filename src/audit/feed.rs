//! The verified history as a feed, for readers that follow it (`chg notify`): every change's
//! entries from the audit index, brought up to date with HEAD first, and the tip reached.

use std::collections::HashMap;

use jiff::Timestamp;

use super::Entry;
use crate::error::Result;

/// Every change's history by change id, oldest first.
pub type Histories = HashMap<String, Vec<Entry>>;

/// Every change's history (by change id, oldest first) as the audit index holds it, and
/// the commit the index reached (HEAD); `None` on an empty history. Reading it does not
/// acknowledge a rewrite of the history: `chg audit` still reports it.
pub fn all_histories(
    store: &dyn crate::git::Located,
    now: Timestamp,
) -> Result<(Option<String>, Histories)> {
    let (idx, _, logs) = super::read_index(store, false, now, super::index::Index::all_logs)?;
    Ok((idx.tip().map(str::to_owned), logs))
}
