//! `chg list`: the changes a query selects, as a table, JSON or CSV; at a terminal, the
//! open changes, most recent first, a screenful.

use std::process::ExitCode;

use chg::Error;
use chg::policy::Policy;
use chg::query::{Query, Sort, SortKey};
use chg::store::Store;
use clap::{Args, ValueEnum};
use serde_json::Value;

use crate::cli::grid::Grid;
use crate::cli::{CmdResult, ui::Ui};

/// Output formats of `list`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ListFormat {
    /// A table for people.
    Table,
    /// One JSON array.
    Json,
    /// Comma-separated values with a header row.
    Csv,
}

/// List changes in a table, with filters.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only these statuses (repeatable or comma-separated).
    #[arg(long, value_delimiter = ',', add = clap_complete::engine::ArgValueCandidates::new(crate::cli::complete::statuses))]
    status: Vec<String>,
    /// Only these change types.
    #[arg(long = "type", value_delimiter = ',', value_name = "TYPE", add = clap_complete::engine::ArgValueCandidates::new(crate::cli::complete::types))]
    change_type: Vec<String>,
    /// Only these priorities.
    #[arg(long, value_delimiter = ',')]
    priority: Vec<String>,
    /// Only changes affecting this system.
    #[arg(long, value_delimiter = ',', add = clap_complete::engine::ArgValueCandidates::new(crate::cli::complete::systems))]
    system: Vec<String>,
    /// Only changes requested on or after this date (2025-01-01 or RFC 3339).
    #[arg(long, allow_hyphen_values = true)]
    since: Option<String>,
    /// Only changes requested before this date (2025-02-01 or RFC 3339).
    #[arg(long, allow_hyphen_values = true)]
    until: Option<String>,
    /// Dates in UTC instead of the local time zone (and no "3 days ago").
    #[arg(long)]
    utc: bool,
    /// Only changes filed by this person (git email).
    #[arg(long, value_name = "EMAIL")]
    requester: Option<String>,
    /// Only changes you filed.
    #[arg(long, conflicts_with = "requester")]
    mine: bool,
    /// Only changes you may approve now, for a role you hold (as `chg approve` judges it).
    #[arg(long)]
    awaiting_me: bool,
    /// Only changes whose approval is overdue: pending longer than the policy's timeout for
    /// their priority, counted from submission.
    #[arg(long)]
    overdue: bool,
    /// Closed, rejected and cancelled changes too, and no limit (at a terminal, chg list
    /// shows the 30 most recent open changes unless asked otherwise).
    #[arg(long)]
    all: bool,
    /// At most this many rows, after sorting.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Sort by id, requested, priority, risk, status or title; priority and risk put the
    /// most severe first; a leading - reverses (default: id; at a terminal, -requested).
    #[arg(long, value_name = "FIELD", allow_hyphen_values = true)]
    sort: Option<String>,
    #[command(flatten)]
    json: crate::cli::json::JsonArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: ListFormat,
}

/// How many rows `chg list` shows at a terminal when not told.
const TERMINAL_LIMIT: usize = 30;

/// Each of `values` parsed, or the first one's usage error.
fn parse_all<T: std::str::FromStr<Err = String>>(values: &[String]) -> Result<Vec<T>, Error> {
    values
        .iter()
        .map(|v| v.parse::<T>().map_err(Error::Usage))
        .collect()
}

pub fn list(ui: &Ui, store: &Store, policy: &Policy, a: ListArgs) -> CmdResult {
    let (query, at_terminal, open_only) = list_query(ui, store, policy, &a)?;
    let now = ui.now()?;
    let page = query.run(store, policy, now)?;
    crate::cli::warn_unreadable(page.unreadable, "listed");
    let total = page.total;
    let rows: Vec<&chg::store::Loaded> = page.rows.iter().map(|r| &r.item).collect();
    if rows.len() < total {
        eprintln!(
            "chg: showing {} of {total} {}change(s); --limit N or --all for more",
            rows.len(),
            if open_only { "open " } else { "" }
        );
    }
    let format = if ui.json(&a.json) {
        ListFormat::Json
    } else {
        a.format
    };
    match format {
        ListFormat::Json => {
            // Rows hold what the read summary holds; JSON shows every field: read the files.
            let items: Vec<Value> = rows
                .iter()
                .map(|l| {
                    let whole = store.load_file(&l.rel)?;
                    chg::query::change_json(policy, &l.rel, whole.change())
                })
                .collect::<Result<_, _>>()?;
            ui.out_json(&items)?;
        }
        ListFormat::Csv => {
            let cols = [
                "id",
                "title",
                "status",
                "change_type",
                "change_model",
                "priority",
                "risk_level",
                "requester",
                "request_date",
                "affected_systems",
            ];
            let mut s = chg::report::Csv::new(&cols);
            for l in &rows {
                s.row(
                    cols.iter()
                        .map(|f| l.change().field_text(f).unwrap_or_default()),
                );
            }
            ui.out(&s.finish())?;
        }
        ListFormat::Table => {
            list_table(ui, store, &a, &rows, total, now, at_terminal)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The query `chg list` asks, from its arguments, and whether it speaks to a person at a
/// terminal (who sees the open changes, recent first, a screenful) and asked only for open
/// changes.
fn list_query(
    ui: &Ui,
    store: &Store,
    policy: &Policy,
    a: &ListArgs,
) -> Result<(Query, bool, bool), Error> {
    let statuses = parse_all::<chg::model::Status>(&a.status)?;
    let priorities = parse_all::<chg::model::Priority>(&a.priority)?;
    for t in &a.change_type {
        if !policy.change_types.contains(t) {
            let hint = chg::finding::suggest(t, policy.change_types.iter().map(String::as_str))
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            return Err(Error::Usage(format!(
                "--type `{t}` is not one of the policy's change types ({}){hint}",
                policy.change_types.join(", ")
            )));
        }
    }
    let sort = a
        .sort
        .as_deref()
        .map(str::parse::<Sort>)
        .transpose()
        .map_err(|e| Error::Usage(format!("--sort {e}")))?;
    let me = if a.mine || a.awaiting_me {
        Some(crate::cli::context::identity(Some(store.repo()))?.email)
    } else {
        None
    };
    let requester = a
        .requester
        .clone()
        .or_else(|| a.mine.then(|| me.clone()).flatten());
    // A person at a terminal who asked for nothing in particular sees the open changes,
    // most recent first, as gh does; scripts (a pipe, a format, any filter) get them all.
    let filtered = !(a.status.is_empty()
        && a.change_type.is_empty()
        && a.priority.is_empty()
        && a.system.is_empty()
        && a.since.is_none()
        && a.until.is_none()
        && requester.is_none()
        && !a.awaiting_me
        && !a.overdue);
    let at_terminal = ui.at_terminal() && !ui.json(&a.json) && a.format == ListFormat::Table;
    let open_only = at_terminal && !a.all && !filtered;
    let sort = match sort {
        Some(sort) => sort,
        None if at_terminal => Sort {
            key: SortKey::Requested,
            descending: true,
        },
        None => Sort::default(),
    };
    let limit = match a.limit {
        Some(n) => Some(n),
        None if at_terminal && !a.all => Some(TERMINAL_LIMIT),
        None => None,
    };
    let query = Query {
        statuses,
        types: a.change_type.clone(),
        priorities,
        systems: a.system.clone(),
        requester,
        since: a.since.as_deref().map(|t| ui.parse_bound(t)).transpose()?,
        until: a.until.as_deref().map(|t| ui.parse_bound(t)).transpose()?,
        open_only,
        awaiting: if a.awaiting_me { me } else { None },
        overdue: a.overdue,
        sort,
        limit,
        ..Query::default()
    };
    Ok((query, at_terminal, open_only))
}

/// `chg list` as a table; with no rows, says so (and which system names match nothing).
fn list_table(
    ui: &Ui,
    store: &Store,
    a: &ListArgs,
    rows: &[&chg::store::Loaded],
    total: usize,
    now: jiff::Timestamp,
    at_terminal: bool,
) -> Result<(), Error> {
    let mut t = Grid::new(&[
        "ID",
        "STATUS",
        "TYPE",
        "MODEL",
        "PRIORITY",
        "RISK",
        "REQUESTED",
        "TITLE",
    ])
    .flex(7)
    .optional(3)
    .optional(2)
    .optional(5)
    .optional(4)
    .note(6)
    .status(1);
    let times = crate::cli::Times::new(a.utc);
    for l in rows {
        let c = l.change();
        let f = |k: &str| c.field_text(k).unwrap_or_default();
        let date = c
            .request_date
            .map(|d| {
                let day = times.day(d);
                if at_terminal && !a.utc {
                    format!("{day} ({})", crate::cli::ago_short(d, now))
                } else {
                    day
                }
            })
            .unwrap_or_default();
        t.push(vec![
            f("id"),
            f("status"),
            f("change_type"),
            f("change_model"),
            f("priority"),
            f("risk_level"),
            date,
            f("title"),
        ]);
    }
    if rows.is_empty() {
        eprintln!("No changes match.");
        // A system is free text: say when no change names it, and what is close.
        if !a.system.is_empty() {
            let known: std::collections::BTreeSet<String> = store
                .load_where(|c| !c.affected_systems.is_empty())?
                .iter()
                .flat_map(|l| l.change().affected_systems.clone())
                .collect();
            for sys in a.system.iter().filter(|s| !known.contains(*s)) {
                let hint = chg::finding::suggest(sys, known.iter().map(String::as_str))
                    .map(|m| format!("; did you mean `{m}`?"))
                    .unwrap_or_default();
                eprintln!("chg: no change names system `{sys}`{hint}");
            }
        }
    } else {
        // The count, unless the line about the limit already gave it.
        let counted = rows.len() < total;
        ui.out_table(&t, (!counted).then(|| format!("{} change(s)", rows.len())))?;
    }
    Ok(())
}
