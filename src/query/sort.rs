//! The order of a query's rows: a [`SortKey`] (ties by id) and whether the whole order is
//! reversed, as `--sort` spells them.

use std::str::FromStr;

use crate::model::{ChangeRequest, RiskLevel};

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
