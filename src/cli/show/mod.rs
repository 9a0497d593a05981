//! `chg show`, `chg list`, `chg log`: reading changes and their history.
//!
//! This file holds `chg show` (its text: fields, approvals, signed records) and the
//! proposal diff show and log share; `listing` holds `chg list`, `history` `chg log`.

use std::process::ExitCode;

use chg::Error;
use chg::model::ChangeRequest;
use chg::policy::Policy;
use chg::store::Store;
use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use super::{CmdResult, ui::Ui};

mod history;
mod listing;

pub use history::{LogArgs, log};
pub use listing::{ListArgs, list};

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
