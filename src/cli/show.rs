//! `chg show`, `chg list`, `chg log`: reading changes and their history.

use std::process::ExitCode;

use chg::Error;
use chg::model::{ChangeRequest, format_timestamp};
use chg::policy::Policy;
use chg::query::{Query, Sort, SortKey};
use chg::store::Store;
use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use super::grid::Grid;
use super::{CmdResult, short, ui::Ui};

/// Show one change, readable, or as JSON.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The change id.
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::complete::ids))]
    id: String,
    /// Times in UTC instead of the local time zone.
    #[arg(long)]
    utc: bool,
    #[command(flatten)]
    json: super::json::JsonArgs,
    /// Output format (`--format json` is the same as `--json`).
    #[arg(long, value_enum, default_value = "text")]
    format: TextFormat,
}

/// Output formats of `show` and `log`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum TextFormat {
    /// For people.
    Text,
    /// JSON.
    Json,
}

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
    #[arg(long, value_delimiter = ',', add = clap_complete::engine::ArgValueCandidates::new(super::complete::statuses))]
    status: Vec<String>,
    /// Only these change types.
    #[arg(long = "type", value_delimiter = ',', value_name = "TYPE", add = clap_complete::engine::ArgValueCandidates::new(super::complete::types))]
    change_type: Vec<String>,
    /// Only these priorities.
    #[arg(long, value_delimiter = ',')]
    priority: Vec<String>,
    /// Only changes affecting this system.
    #[arg(long, value_delimiter = ',', add = clap_complete::engine::ArgValueCandidates::new(super::complete::systems))]
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
    json: super::json::JsonArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: ListFormat,
}

/// How many rows `chg list` shows at a terminal when not told.
const TERMINAL_LIMIT: usize = 30;

/// The history of one change from git, with audit's verdict on each step.
///
/// When, who, action, role, from -> to, commit, and what `chg audit` found wrong with the
/// step; read from the audit index in .git/chg/audit/, brought up to date first.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// The change id.
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::complete::ids))]
    id: String,
    /// Times in UTC instead of the local time zone (and no "3 hours ago").
    #[arg(long)]
    utc: bool,
    #[command(flatten)]
    json: super::json::JsonArgs,
    /// Output format (`--format json` is the same as `--json`).
    #[arg(long, value_enum, default_value = "text")]
    format: TextFormat,
}

pub fn show(ui: &Ui, store: &Store, policy: &Policy, a: ShowArgs) -> CmdResult {
    let id = ui.parse_id(&a.id)?;
    let loaded = store.load(&id)?;
    let c = loaded.change();
    // The approval deadline (SPEC section 13), from submission as verified history knows it.
    let overdue = if chg::rules::missing_roles(c, policy).is_empty() {
        None
    } else {
        let now = ui.now()?;
        let ids = [c.id_text()];
        let prov = chg::standing::provenances(store, &ids, now)?
            .remove(&ids[0])
            .unwrap_or_default();
        chg::query::overdue_since(c, policy, &prov, now).map(|due| (due, now))
    };
    if ui.json(&a.json) || a.format == TextFormat::Json {
        let mut v = chg::query::change_json(policy, &loaded.rel, c)?;
        if let (Some((due, _)), Value::Object(map)) = (overdue, &mut v) {
            map.insert("overdue_since".into(), json!(due));
        }
        ui.out_json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    let times = super::Times::new(a.utc);
    let when = |t: jiff::Timestamp| times.at(t);
    let mut s = String::new();
    fields_text(&mut s, &id.to_string(), &loaded.rel, c, &times);
    // A mark per signed record, where signing concerns it: signed by which key, or why not.
    let verdicts = chg::rules::signature_verdicts(c, policy);
    approvals_text(&mut s, c, policy, &times, &verdicts, overdue);
    records_text(&mut s, c, &times, &verdicts);
    if let Some(proposal) = &c.proposed_policy {
        s.push_str(&proposal_diff(store, proposal)?);
    }
    if let Some(x) = &c.cancellation {
        s.push_str(&format!(
            // The reason on its own line, as a review's summary: free text past 80 columns.
            "\ncancelled: by {} at {}\n  {}\n",
            x.by,
            when(x.at),
            x.reason
        ));
    }
    ui.out(&s)?;
    Ok(ExitCode::SUCCESS)
}

/// The fields of `chg show`: title, file, the short fields, the risk answers, the long
/// texts, schedule and content signature.
fn fields_text(
    s: &mut String,
    id: &str,
    rel: &std::path::Path,
    c: &ChangeRequest,
    times: &super::Times,
) {
    let when = |t: jiff::Timestamp| times.at(t);
    s.push_str(&format!(
        "{id}  {}\n",
        c.title.as_deref().unwrap_or("(no title)")
    ));
    s.push_str(&format!("file: {}\n\n", rel.display()));
    for field in [
        "status",
        "change_type",
        "change_model",
        "template",
        "priority",
        "urgency",
        "risk_level",
        "requester",
        "request_date",
        "affected_systems",
        "impact_scope",
        "testing_required",
        "test_environment",
    ] {
        let v = match (field, c.request_date) {
            ("request_date", Some(t)) => Some(when(t)),
            // The catalogue entry it was filed from, and which version of it.
            ("template", _) => c.template.as_ref().map(|t| match &c.template_digest {
                // `sha256:` and enough of the hash to tell versions apart.
                Some(d) => format!("{t} (digest {})", d.chars().take(19).collect::<String>()),
                None => t.clone(),
            }),
            _ => c.field_text(field),
        };
        if let Some(v) = v {
            s.push_str(&format!("{:<18}{v}\n", format!("{field}:")));
        }
    }
    if let Some(p) = &c.policy_base {
        // A file's text, not a commit chg read: cut by characters, never mid-character.
        let base: String = p.chars().take(8).collect();
        s.push_str(&format!("{:<18}{base}\n", "policy_base:"));
    }
    // The answers the risk level was worked out from: a reviewer checks them, not the level.
    if let Some(answers) = c.risk_assessment.as_ref().filter(|m| !m.is_empty()) {
        s.push_str("\nrisk_assessment:\n");
        for (question, yes) in answers {
            s.push_str(&format!(
                "  {question}: {}\n",
                if *yes { "yes" } else { "no" }
            ));
        }
    }
    for field in [
        "description",
        "business_justification",
        "implementation_plan",
        "rollback_plan",
        "test_plan",
    ] {
        if let Some(v) = c.field_text(field) {
            s.push_str(&format!("\n{field}:\n"));
            for line in v.lines() {
                s.push_str(&format!("  {line}\n"));
            }
        }
    }
    if let Some(sch) = &c.schedule {
        s.push_str(&format!(
            "\nschedule: {}{}\n",
            times.span(sch.start, sch.end),
            if sch.maintenance_window {
                " (maintenance window)"
            } else {
                ""
            }
        ));
    }
    if let Some(r) = &c.content_signature {
        s.push_str(&format!(
            "\ncontent_signature: {} by {} at {}{}\n",
            r.action,
            r.by,
            when(r.at),
            if r.signature.is_none() {
                " (no signature)"
            } else {
                ""
            }
        ));
    }
}

/// The approvals of `chg show`: one line per required role (who, when; withdrawn, waiting
/// or overdue), then decisions for roles not required, each with its signature mark,
/// comment and conditions indented below.
fn approvals_text(
    s: &mut String,
    c: &ChangeRequest,
    policy: &Policy,
    times: &super::Times,
    verdicts: &[(chg::signing::Record<'_>, chg::signing::Verdict)],
    overdue: Option<(jiff::Timestamp, jiff::Timestamp)>,
) {
    let when = |t: jiff::Timestamp| times.at(t);
    let required = policy.required_roles(c);
    let marks: std::collections::HashMap<usize, String> = verdicts
        .iter()
        .filter_map(|(r, v)| r.approval.map(|i| (i, v.mark())))
        .collect();
    // One short line per approval (who, for which role, when), what goes with it below,
    // indented: a fingerprint or a comment on the same line ran past 80 columns.
    let decision =
        |s: &mut String, box_: &str, role: &str, a: &chg::model::Approval, extra: &str| {
            s.push_str(&if a.decision == chg::model::Decision::Withdrawn {
                format!(
                    "  [{box_}] {role}: waiting (approval withdrawn by {} at {}){extra}\n",
                    a.by,
                    when(a.at)
                )
            } else {
                format!("  [{box_}] {role}: {} at {}{extra}\n", a.by, when(a.at))
            });
            let i = c.approvals.iter().position(|x| std::ptr::eq(x, a));
            if let Some(m) = i.and_then(|i| marks.get(&i)) {
                s.push_str(&format!("      {m}\n"));
            }
            if let Some(text) = &a.comments {
                s.push_str(&format!("      {}\n", chg::text::one_line(text)));
            }
            for cond in &a.conditions {
                s.push_str(&format!("      condition: {}\n", chg::text::one_line(cond)));
            }
        };
    s.push_str("\napprovals:\n");
    if let Some((due, now)) = overdue {
        s.push_str(&format!(
            "  OVERDUE: approval was due at {} ({})\n",
            when(due),
            super::ago(due, now)
        ));
    }
    if required.is_empty() && policy.is_preapproved(c) {
        s.push_str("  pre-approved (standard change)\n");
    }
    for role in &required {
        // The approval that stands for the role, else the role's last decision (a rejection
        // or a withdrawal), as every other reader counts them.
        let standing = c
            .standing_approvals()
            .map(|(_, a)| a)
            .find(|a| &a.role == role);
        let last = c.approvals.iter().rfind(|a| &a.role == role);
        match standing.or(last) {
            Some(a) if a.decision == chg::model::Decision::Withdrawn => {
                decision(s, " ", role, a, "");
            }
            Some(a) => {
                let box_ = if a.decision == chg::model::Decision::Approved {
                    "x"
                } else {
                    "-"
                };
                decision(s, box_, role, a, "");
            }
            None => s.push_str(&format!("  [ ] {role}: waiting\n")),
        }
    }
    for a in c.approvals.iter().filter(|a| !required.contains(&a.role)) {
        decision(s, "?", &a.role, a, " (role not required)");
    }
}

/// The records after approval in `chg show`: implementation, review, deployments and
/// the other signed records, judged as approvals are.
fn records_text(
    s: &mut String,
    c: &ChangeRequest,
    times: &super::Times,
    verdicts: &[(chg::signing::Record<'_>, chg::signing::Verdict)],
) {
    let when = |t: jiff::Timestamp| times.at(t);
    if let Some(imp) = &c.implementation {
        s.push_str("\nimplementation:\n");
        if let Some(v) = &imp.implementer {
            s.push_str(&format!("  implementer:  {v}\n"));
        }
        if let Some(v) = imp.started_at {
            s.push_str(&format!("  started_at:   {}\n", when(v)));
        }
        if let Some(v) = imp.completed_at {
            s.push_str(&format!("  completed_at: {}\n", when(v)));
        }
        if let Some(v) = &imp.closed_by {
            s.push_str(&format!("  closed_by:    {v}\n"));
        }
        if let Some(v) = imp.outcome {
            s.push_str(&format!("  outcome:      {v}\n"));
        }
        if let Some(v) = &imp.test_results {
            s.push_str(&format!("  test_results: {v}\n"));
        }
    }
    if let Some(r) = &c.review {
        s.push_str(&format!(
            "\nreview: {} at {}\n  {}\n",
            r.by,
            when(r.at),
            r.summary
        ));
    }
    if !c.deployments.is_empty() {
        s.push_str("\ndeployments:\n");
        for d in &c.deployments {
            // The full commit on its own line: with the rest it would pass 80 columns.
            s.push_str(&format!(
                "  {} at {} by {}\n    commit: {}\n",
                d.environment,
                when(d.at),
                d.by,
                d.commit
            ));
            if let Some(run) = &d.run {
                s.push_str(&format!("    run: {run}\n"));
            }
        }
    }
    // The other signed records (content, implement, close, cancel, deploy), judged as
    // approvals are.
    let others: Vec<String> = verdicts
        .iter()
        .filter(|(r, _)| r.approval.is_none())
        .map(|(r, v)| format!("  {} by {}: {}\n", r.action, r.actor, v.mark()))
        .collect();
    if !others.is_empty() {
        s.push_str(&format!("\nsignatures:\n{}", others.concat()));
    }
}

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
    super::warn_unreadable(page.unreadable, "listed");
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
        Some(super::context::identity(Some(store.repo()))?.email)
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
    let times = super::Times::new(a.utc);
    for l in rows {
        let c = l.change();
        let f = |k: &str| c.field_text(k).unwrap_or_default();
        let date = c
            .request_date
            .map(|d| {
                let day = times.day(d);
                if at_terminal && !a.utc {
                    format!("{day} ({})", super::ago_short(d, now))
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

pub fn log(ui: &Ui, store: &Store, a: LogArgs) -> CmdResult {
    let id = ui.parse_id(&a.id)?;
    store.find(&id)?;
    let entries = chg::audit::change_log(store, &id, ui.now()?)?;
    if let Some(cut) = chg::store::commit::shallow_commits(store.repo()).first() {
        eprintln!(
            "chg: note: this is a shallow clone; history before {} is not here (git fetch --unshallow)",
            &cut.to_string()[..8]
        );
    }
    if ui.json(&a.json) || a.format == TextFormat::Json {
        ui.out_json(&entries)?;
        return Ok(ExitCode::SUCCESS);
    }
    let (marks, deployed) = log_marks(store, &id);
    // Local times as everywhere; at a terminal with how long ago, the first thing left out
    // when the table is too wide for the facts (who, role, commit), which are never cut.
    let now = ui.now()?;
    let times = super::Times::new(a.utc);
    let target = ui.target();
    let people = !a.utc && matches!(target, super::grid::Target::Terminal { .. });
    let stamp = |t: jiff::Timestamp| {
        if people {
            format!("{} ({})", times.at(t), super::ago_short(t, now))
        } else {
            times.at(t)
        }
    };
    const AUDIT: usize = 6;
    let mut t = Grid::new(&[
        "WHEN",
        "WHO",
        "ACTION",
        "ROLE",
        "FROM -> TO",
        "COMMIT",
        "AUDIT",
    ])
    .flex(AUDIT)
    .flex(2)
    .note(0)
    .optional(4)
    .optional(AUDIT);
    let mut details = String::new();
    for e in &entries {
        let mark = e.role.as_ref().and_then(|role| {
            marks.get(&(
                e.email.to_lowercase(),
                role.clone(),
                format_timestamp(e.when),
            ))
        });
        for p in &e.problems {
            details.push_str(&format!(
                "{} {}: {}: {}\n",
                short(&e.commit),
                p.level.as_str(),
                p.rule,
                p.message
            ));
        }
        t.push(vec![
            stamp(e.when),
            e.email.clone(),
            match (
                mark,
                deployed.get(&(e.email.to_lowercase(), format_timestamp(e.when))),
            ) {
                (Some(m), _) => format!("{} [{m}]", e.action),
                (None, Some(d)) if e.action == "deploy" => format!("deploy {d}"),
                _ => e.action.clone(),
            },
            e.role.clone().unwrap_or_default(),
            match (&e.from, &e.to) {
                // A step that kept the status says it once.
                (Some(f), Some(t)) if f == t && people => t.clone(),
                _ => e.status_change(),
            },
            short(&e.commit).to_owned(),
            e.verdict(),
        ]);
    }
    if let Ok(loaded) = store.load(&id)
        && let Some(proposal) = &loaded.change().proposed_policy
    {
        details.push_str(&proposal_diff(store, proposal)?);
    }
    // The verdicts' column left out at a narrow terminal: the problems below still name
    // every rule; say so when there are none, rather than leave the reader guessing.
    if details.is_empty() && !t.shows(AUDIT, target) && !entries.is_empty() {
        details.push_str("audit: ok, every step\n");
    }
    ui.out_table(&t, None)?;
    // Below the table at a terminal; piped, stdout stays rows (the JSON has it all).
    if !details.is_empty() {
        if matches!(target, super::grid::Target::Pipe { .. }) {
            eprint!("{}", chg::text::terminal_safe(&details));
        } else {
            ui.out(&format!("\n{details}"))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What `chg log` marks its steps with, as the change stands now: each approval's
/// signature judged by the policy in force (by who, role and time) and what each deployment
/// recorded (by who and time).
#[allow(clippy::type_complexity)]
fn log_marks(
    store: &Store,
    id: &chg::model::ChangeId,
) -> (
    std::collections::HashMap<(String, String, String), String>,
    std::collections::HashMap<(String, String), String>,
) {
    // Each approval's signature as it stands now, judged by the policy in force.
    let mut marks: std::collections::HashMap<(String, String, String), String> = Default::default();
    if let (Ok(loaded), Ok(policy)) = (store.load(id), store.policy()) {
        let c = loaded.change();
        for (r, v) in chg::rules::signature_verdicts(c, &policy) {
            if let Some(i) = r.approval {
                let a = &c.approvals[i];
                marks.insert(
                    (a.by.to_lowercase(), a.role.clone(), format_timestamp(a.at)),
                    v.mark(),
                );
            }
        }
    }
    // What each deployment step recorded, found as approvals' marks are: by who and when.
    let mut deployed: std::collections::HashMap<(String, String), String> = Default::default();
    if let Ok(loaded) = store.load(id) {
        for d in &loaded.change().deployments {
            deployed.insert(
                (d.by.to_lowercase(), format_timestamp(d.at)),
                format!("{} {}", d.environment, short(&d.commit)),
            );
        }
    }
    (marks, deployed)
}

/// A policy proposal's diff against the policy at HEAD, indented, for show and log.
fn proposal_diff(
    store: &Store,
    proposal: &std::collections::BTreeMap<String, String>,
) -> Result<String, Error> {
    let diff = chg::governance::diff(&store.committed_policy_files()?, proposal)?;
    let mut s = String::from("\nproposed policy (against the policy at HEAD):\n");
    if diff.is_empty() {
        s.push_str("  (the same as the policy at HEAD)\n");
    }
    for line in diff.lines() {
        s.push_str(&format!("  {}\n", chg::text::terminal_safe(line)));
    }
    Ok(s)
}
