//! Planning: `chg gate` for deploy pipelines, `chg calendar`, `chg cab`.

use std::process::ExitCode;

use chg::Error;
use chg::calendar;
use chg::policy::Policy;
use chg::query::AgendaItem;
use chg::store::Store;
use clap::{Args, ValueEnum};
use jiff::tz::TimeZone;
use serde_json::json;

use super::grid::Grid;
use super::{CmdResult, readable, ui::Ui};

/// For deploy pipelines: exit 0 only if the change may be implemented now.
///
/// Otherwise exit 1 with every reason. Open when the change is approved (or pre-approved, or an emergency), the time is inside
/// its schedule and, when flagged, inside a maintenance window, outside every freeze
/// (unless emergency), a test plan exists where testing is required, and no blocking
/// conflict with another change. A change already implementing passes on the same terms.
#[derive(Debug, Args)]
pub struct GateArgs {
    /// The change id.
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::complete::ids))]
    id: String,
    /// Judge at this time instead of now (RFC 3339).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    at: Option<String>,
    /// Output format (`--format json` is the same as `--json`).
    #[arg(long, value_enum, default_value = "text")]
    format: super::show::TextFormat,
    #[command(flatten)]
    json: super::json::JsonArgs,
}

/// Scheduled changes, freezes and maintenance windows in a range.
#[derive(Debug, Args)]
pub struct CalendarArgs {
    /// Start of the range (default: now).
    #[arg(long, value_name = "DATE", allow_hyphen_values = true)]
    from: Option<String>,
    /// End of the range (default: 30 days after the start).
    #[arg(long, value_name = "DATE", allow_hyphen_values = true)]
    to: Option<String>,
    /// Output format; ics is an iCalendar file for calendar applications.
    #[arg(long, value_enum, default_value = "table")]
    format: CalendarFormat,
    /// Show times in UTC instead of the local time zone.
    #[arg(long)]
    utc: bool,
    #[command(flatten)]
    json: super::json::JsonArgs,
}

/// Output formats of `calendar`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum CalendarFormat {
    /// A table for people, in local time.
    Table,
    /// iCalendar (RFC 5545), times in UTC.
    Ics,
    /// One JSON array, times in UTC.
    Json,
}

/// The change advisory board's agenda.
///
/// Changes awaiting approval by priority, with risk, systems, window, conflicts and the
/// roles still to approve.
#[derive(Debug, Args)]
pub struct CabArgs {
    /// The meeting's date (default: today); changes requested after it are left out.
    #[arg(long = "for", value_name = "DATE", allow_hyphen_values = true)]
    date: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: CabFormat,
    /// Show times in UTC instead of the local time zone.
    #[arg(long)]
    utc: bool,
    #[command(flatten)]
    json: super::json::JsonArgs,
}

/// Output formats of `cab`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum CabFormat {
    /// Tables for people.
    Table,
    /// A document to share before the meeting.
    Markdown,
    /// The agenda as data: each priority's changes with what they await.
    Json,
}

pub fn gate(ui: &Ui, store: &Store, policy: &Policy, a: GateArgs) -> CmdResult {
    let id = ui.parse_id(&a.id)?;
    let at = match &a.at {
        Some(t) => ui.parse_bound(t)?,
        None => ui.now()?,
    };
    let reasons = store.gate(&id, policy, at, ui.now()?)?;
    let open = reasons.is_empty();
    if ui.json(&a.json) || a.format == super::show::TextFormat::Json {
        ui.out_json(&json!({
            "id": id.to_string(),
            "at": chg::model::format_timestamp(at),
            "open": open,
            "reasons": reasons.iter().map(|r| json!({"rule": r.rule, "message": r.message})).collect::<Vec<_>>(),
        }))?;
    } else if open {
        ui.out(&format!(
            "{id}: open at {}\n",
            chg::model::format_timestamp(at)
        ))?;
    } else {
        let mut s = format!(
            "{id}: blocked at {} (not cleared to deploy)\n",
            chg::model::format_timestamp(at)
        );
        for r in &reasons {
            s.push_str(&format!("  {}: {}\n", r.rule, r.message));
        }
        ui.out(&s)?;
    }
    Ok(if open {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn calendar(ui: &Ui, store: &Store, policy: &Policy, a: CalendarArgs) -> CmdResult {
    let now = ui.now()?;
    let from = a
        .from
        .as_deref()
        .map(|t| ui.parse_bound(t))
        .transpose()?
        .unwrap_or(now);
    let to = match a.to.as_deref().map(|t| ui.parse_bound(t)).transpose()? {
        Some(t) => t,
        None => calendar::default_range(from).1,
    };
    if to <= from {
        return Err(Error::Usage("--to must be after --from".into()));
    }
    // The calendar shows scheduled changes only.
    let all = store.load_where(|c| c.schedule.is_some())?;
    let events = calendar::events(&readable(&all, "shown"), policy, from, to);
    match if ui.json(&a.json) {
        CalendarFormat::Json
    } else {
        a.format
    } {
        CalendarFormat::Json => ui.out_json(&events)?,
        CalendarFormat::Ics => ui.out(&calendar::to_ics(&events, now, "chg.invalid"))?,
        CalendarFormat::Table => {
            // One compact WHEN (the end's date only when it is another day), the change's
            // id in a column of its own so that only the title is ever cut; the kind goes
            // first at a narrow terminal (an id, "Maintenance window", "Freeze:" say it).
            let times = super::Times::new(a.utc);
            let mut t = Grid::new(&["WHEN", "KIND", "ID", "WHAT"])
                .flex(3)
                .optional(1);
            for e in &events {
                let change = e.kind == "change";
                let title = e.summary.strip_prefix(&format!("{}: ", e.uid));
                t.push(vec![
                    times.span(e.start, e.end),
                    e.kind.to_owned(),
                    if change { e.uid.clone() } else { String::new() },
                    match title {
                        Some(title) if change => title.to_owned(),
                        _ => e.summary.clone(),
                    },
                ]);
            }
            ui.out_table(&t, Some(format!("{} event(s)", t.len())))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn cab(ui: &Ui, store: &Store, policy: &Policy, a: CabArgs) -> CmdResult {
    let now = ui.now()?;
    let date = match &a.date {
        Some(d) => ui.parse_bound(d)?,
        None => now,
    };
    let day_end = date + jiff::SignedDuration::from_hours(24);
    let agenda = chg::query::agenda(store, policy, day_end)?;
    super::warn_unreadable(agenda.unreadable, "on the agenda");
    let times = super::Times::new(a.utc);
    // Approvals past their timeout (SPEC section 13), marked in the AWAITING column.
    let ids: Vec<String> = agenda
        .groups
        .iter()
        .flat_map(|(_, list)| list.iter().map(|i| i.change.id_text()))
        .collect();
    let known = chg::standing::provenances(store, &ids, now)?;
    let overdue = |c: &chg::model::ChangeRequest| {
        let prov = known.get(&c.id_text()).cloned().unwrap_or_default();
        chg::query::overdue_since(c, policy, &prov, now)
    };
    let row = |item: &AgendaItem| -> Vec<String> {
        let c = &item.change;
        let window = c
            .schedule
            .as_ref()
            .map(|s| times.span(s.start, s.end))
            .unwrap_or_else(|| "not scheduled".into());
        let clashes: Vec<String> = item
            .conflicts
            .iter()
            .map(|k| match &k.other {
                Some(o) => format!("{o} ({})", k.systems.join(", ")),
                None => k.kind.to_owned(),
            })
            .collect();
        vec![
            c.id_text(),
            c.title.clone().unwrap_or_default(),
            c.field_text("risk_level").unwrap_or_default(),
            c.affected_systems.join(", "),
            window,
            if clashes.is_empty() {
                "-".into()
            } else {
                clashes.join("; ")
            },
            match overdue(c) {
                Some(due) => format!(
                    "{} (OVERDUE since {})",
                    item.awaiting.join(", "),
                    times.at(due)
                ),
                None => item.awaiting.join(", "),
            },
        ]
    };
    let header = [
        "ID",
        "TITLE",
        "RISK",
        "SYSTEMS",
        "WINDOW",
        "CONFLICTS",
        "AWAITING",
    ];
    let day = date.to_zoned(TimeZone::UTC).date();
    let total: usize = agenda.groups.iter().map(|(_, list)| list.len()).sum();
    let format = if ui.json(&a.json) {
        CabFormat::Json
    } else {
        a.format
    };
    if format == CabFormat::Json {
        cab_json(ui, &agenda, &row, &overdue, day, total)?;
        return Ok(ExitCode::SUCCESS);
    }
    cab_text(ui, &agenda, &row, &header, format, day, total)?;
    Ok(ExitCode::SUCCESS)
}

/// The CAB agenda as JSON (times in UTC, as in every JSON chg writes).
fn cab_json(
    ui: &Ui,
    agenda: &chg::query::Agenda,
    row: &dyn Fn(&AgendaItem) -> Vec<String>,
    overdue: &dyn Fn(&chg::model::ChangeRequest) -> Option<jiff::Timestamp>,
    day: jiff::civil::Date,
    total: usize,
) -> Result<(), Error> {
    let preapproved = agenda.preapproved;
    // Times in UTC, as in every JSON chg writes.
    let groups: Vec<serde_json::Value> = agenda
        .groups
        .iter()
        .map(|(p, list)| {
            let changes: Vec<serde_json::Value> = list
                .iter()
                .map(|item| {
                    let c = &item.change;
                    let cells = row(item);
                    let mut v = serde_json::json!({
                        "id": c.id_text(),
                        "title": c.title,
                        "risk_level": c.risk_level,
                        "affected_systems": c.affected_systems,
                        "schedule": c.schedule,
                        "conflicts": cells[5],
                        "awaiting": item.awaiting,
                    });
                    if let Some(due) = overdue(c) {
                        v["overdue_since"] = serde_json::json!(due);
                    }
                    v
                })
                .collect();
            serde_json::json!({"priority": p.as_str(), "changes": changes})
        })
        .collect();
    ui.out_json(
        &serde_json::json!({"date": day.to_string(), "total": total, "preapproved": preapproved, "agenda": groups}),
    )?;
    Ok(())
}

/// The CAB agenda as a table per priority, or Markdown.
fn cab_text(
    ui: &Ui,
    agenda: &chg::query::Agenda,
    row: &dyn Fn(&AgendaItem) -> Vec<String>,
    header: &[&str],
    format: CabFormat,
    day: jiff::civil::Date,
    total: usize,
) -> Result<(), Error> {
    let preapproved = agenda.preapproved;
    let aside = if preapproved > 0 {
        format!(" ({preapproved} pre-approved standard change(s) not listed)")
    } else {
        String::new()
    };
    let mut s = match format {
        CabFormat::Markdown => {
            format!("# CAB agenda, {day}\n\n{total} change(s) awaiting approval{aside}.\n")
        }
        _ => format!("CAB agenda for {day}: {total} change(s) awaiting approval{aside}\n"),
    };
    for (p, list) in &agenda.groups {
        match format {
            CabFormat::Markdown => {
                let mut t = chg::report::MarkdownTable::left(header);
                for item in list {
                    t.row(row(item).iter().map(|v| v.replace('|', "\\|")));
                }
                s.push_str(&format!("\n## {p} priority\n\n{}", t.finish()));
            }
            _ => {
                // Ids, risks and the roles awaited are never cut; the title is. At a
                // narrow terminal the systems go first (the conflicts name them), then
                // the conflicts, the window and the risk.
                let mut t = Grid::new(header)
                    .flex(1)
                    .flex(3)
                    .optional(3)
                    .optional(5)
                    .optional(4)
                    .optional(2);
                for item in list {
                    t.push(row(item));
                }
                s.push_str(&format!("\n{p} priority\n{}", t.render(ui.target())));
            }
        }
    }
    // Table cells were made safe as they went in; colour codes must survive.
    if format == CabFormat::Markdown {
        ui.out(&s)?;
    } else {
        ui.out_unfiltered(&s)?;
    }
    Ok(())
}
