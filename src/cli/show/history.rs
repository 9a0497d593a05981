//! `chg log`: one change's history from git, each step with the audit's verdict, its
//! signature's mark and what a deployment recorded.

use std::process::ExitCode;

use chg::model::format_timestamp;
use chg::store::Store;
use clap::Args;

use super::{TextFormat, proposal_diff};
use crate::cli::grid::Grid;
use crate::cli::{CmdResult, short, ui::Ui};

/// The history of one change from git, with audit's verdict on each step.
///
/// When, who, action, role, from -> to, commit, and what `chg audit` found wrong with the
/// step; read from the audit index in .git/chg/audit/, brought up to date first.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// The change id.
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(crate::cli::complete::ids))]
    id: String,
    /// Times in UTC instead of the local time zone (and no "3 hours ago").
    #[arg(long)]
    utc: bool,
    #[command(flatten)]
    json: crate::cli::json::JsonArgs,
    /// Output format (`--format json` is the same as `--json`).
    #[arg(long, value_enum, default_value = "text")]
    format: TextFormat,
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
    let times = crate::cli::Times::new(a.utc);
    let target = ui.target();
    let people = !a.utc && matches!(target, crate::cli::grid::Target::Terminal { .. });
    let stamp = |t: jiff::Timestamp| {
        if people {
            format!("{} ({})", times.at(t), crate::cli::ago_short(t, now))
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
        if matches!(target, crate::cli::grid::Target::Pipe { .. }) {
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
