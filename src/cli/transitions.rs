//! The state-changing commands that take one step on one change.

use std::path::PathBuf;
use std::process::ExitCode;

use chg::Error;
use chg::model::{Outcome, Status};
use chg::policy::Policy;
use chg::store::{self, Store};
use chg::workflow::Step;
use clap::Args;
use jiff::Timestamp;

use super::{CmdResult, interactive, readable, short, ui::Ui};

/// A change id.
#[derive(Debug, Args)]
pub struct IdArgs {
    /// The change id (CHG-2025-001).
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::complete::ids))]
    id: String,
}

impl IdArgs {
    /// The id, parsed.
    pub fn parse(&self, ui: &Ui) -> Result<chg::model::ChangeId, Error> {
        ui.parse_id(&self.id)
    }
}

/// Record one approval, for one role, by you (the git identity).
///
/// The role is inferred when you hold exactly one of the roles the change still needs.
/// The change becomes approved when every role the policy requires for its priority
/// (or for the emergency model) has approved.
#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The change id.
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::complete::ids))]
    id: String,
    /// The role you approve for.
    #[arg(long, add = clap_complete::engine::ArgValueCandidates::new(super::complete::roles))]
    role: Option<String>,
    /// A comment recorded with the approval.
    #[arg(long, short = 'm')]
    comment: Option<String>,
    /// A condition attached to the approval (repeatable).
    #[arg(long = "condition", value_name = "TEXT")]
    conditions: Vec<String>,
}

/// Reject a change pending approval, for one of your roles.
#[derive(Debug, Args)]
pub struct RejectArgs {
    /// The change id.
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::complete::ids))]
    id: String,
    /// Why (required).
    #[arg(long, short = 'm')]
    comment: String,
    /// The role you reject for.
    #[arg(long, add = clap_complete::engine::ArgValueCandidates::new(super::complete::roles))]
    role: Option<String>,
}

/// Withdraw your own approval before implementation starts (as a dismissed review).
///
/// The approval stays in the file as history, followed by a `withdrawn` record with your
/// reason, signed where the policy requires approvals signed. A change that no longer has
/// every required approval goes back to pending_approval. You may approve again later.
#[derive(Debug, Args)]
pub struct WithdrawArgs {
    /// The change id.
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::complete::ids))]
    id: String,
    /// Why (required: the audit trail keeps the reason).
    #[arg(long, short = 'm')]
    comment: String,
    /// The role whose approval you withdraw (needed only if you approved for several).
    #[arg(long, add = clap_complete::engine::ArgValueCandidates::new(super::complete::roles))]
    role: Option<String>,
}

/// Change content fields: `chg set CHG-2025-001 priority=high affected_systems=api,db`.
///
/// Editing material content (title, description, justification, type, model, priority,
/// risk, affected systems, plans, testing) after an approval voids the approvals and
/// returns the change to pending_approval.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// The change id.
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::complete::ids))]
    id: String,
    /// FIELD=VALUE pairs; an empty VALUE clears the field.
    #[arg(required_unless_present = "answers", value_name = "FIELD=VALUE")]
    assignments: Vec<String>,
    /// An answer to the policy's risk questionnaire (repeatable): ID=yes or ID=no. A change
    /// filed before the policy asked the questionnaire may answer it this way.
    #[arg(long = "answer", value_name = "ID=yes|no")]
    answers: Vec<String>,
}

/// Set the window in which the change will be implemented.
///
/// Times are RFC 3339 (2025-01-28T02:00:00Z), local wall-clock time (2025-01-28T03:00),
/// `now`, or `+DURATION` (`--start +1d` from now, `--end +2h` from the start). Freezes and,
/// when flagged, maintenance windows are checked. Scheduling keeps approvals.
#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// The change id.
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::complete::ids))]
    id: String,
    /// Start of the window (with --next-slot: the earliest start; default now).
    #[arg(
        long,
        allow_hyphen_values = true,
        required_unless_present = "next_slot"
    )]
    start: Option<String>,
    /// End of the window (or +DURATION after the start).
    #[arg(
        long,
        allow_hyphen_values = true,
        required_unless_present = "next_slot",
        conflicts_with = "next_slot"
    )]
    end: Option<String>,
    /// Pick the earliest slot of --duration that satisfies the windows and has no conflict.
    #[arg(long, requires = "duration")]
    next_slot: bool,
    /// How long the change needs, with --next-slot (like 2h, 90m).
    #[arg(long, value_name = "DURATION")]
    duration: Option<String>,
    /// Commit the slot found without asking (asking happens only at a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
    /// The change must run inside a maintenance window of the policy.
    #[arg(long, overrides_with = "no_maintenance_window")]
    maintenance_window: bool,
    /// The change need not run inside a maintenance window.
    #[arg(long)]
    no_maintenance_window: bool,
}

/// Finish implementation with its outcome.
#[derive(Debug, Args)]
pub struct CloseArgs {
    /// The change id.
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::complete::ids))]
    id: String,
    /// How it went.
    #[arg(long, value_parser = ["successful", "failed", "rolled_back"])]
    outcome: String,
    /// Evidence of testing.
    #[arg(long)]
    test_results: Option<String>,
    /// The post-implementation review (required by the policy for some changes).
    #[arg(long)]
    review: Option<String>,
}

/// Cancel a change that has not been closed.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The change id.
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::complete::ids))]
    id: String,
    /// Why (required).
    #[arg(long)]
    reason: String,
}

/// Record a deployment of the change's work, for a deploy pipeline after it deployed.
///
/// Allowed only while the change's gate is open now (`chg gate ID` exits 0): the change
/// is implementing, or approved and inside its window, with every approval standing. The
/// record (commit, environment, run, time, you) is appended to `deployments:`; the status
/// stays and approvals are kept. `chg audit reconcile` matches a CI/CD system's deployments
/// against these records.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The change id.
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::complete::ids))]
    id: String,
    /// The deployed commit: any revision this repository knows (a short id, a tag,
    /// HEAD), recorded as its full id; a commit of another repository in full (40 hex).
    #[arg(long, value_name = "SHA")]
    commit: String,
    /// Where it was deployed (a plain name, like production).
    #[arg(long, value_name = "ENV")]
    environment: String,
    /// The CI/CD run that deployed it (an http(s) URL).
    #[arg(long, value_name = "URL")]
    run: Option<String>,
}

/// Move a change to the next free id of its year, for an id claimed twice (two pull
/// requests merged without chg). The content and the approvals stay; the commit records the
/// old id in a `Chg-Renumbered-From` trailer and `chg log` follows it.
#[derive(Debug, Args)]
pub struct RenumberArgs {
    /// The id to move away from.
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::complete::ids))]
    id: String,
    /// Which file moves, when two files claim the id (as `chg validate` names them).
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
}

/// Parses a time given on the command line: RFC 3339, civil time in the local zone, `now`,
/// or `+DURATION` after `base`.
pub fn parse_time(ui: &Ui, text: &str, base: Timestamp) -> Result<Timestamp, Error> {
    // `+2h` counts from `base` (the end from the start); everything else as every time
    // flag takes it.
    if let Some(d) = text.strip_prefix('+') {
        let d: chg::model::Duration = d.parse().map_err(Error::Usage)?;
        return base
            .checked_add(d.to_signed())
            .map_err(|e| Error::Usage(format!("`{text}`: {e}")));
    }
    let t = ui.read_time(text)?;
    // Files and commits record whole seconds: rounding would record another time than the
    // one given.
    if t.subsec_nanosecond() != 0 {
        return Err(Error::Usage(format!(
            "`{text}` has a fraction of a second; chg records whole seconds (write {})",
            chg::model::format_timestamp(t)
        )));
    }
    Ok(t)
}

pub fn done(ui: &Ui, o: store::Outcome) -> CmdResult {
    let id = o.change.id_text();
    let t = &o.transition;
    let mut line = format!("{id}: {}", t.action);
    if let Some(role) = &t.role {
        line.push_str(&format!(" ({role})"));
    }
    if t.from != t.to {
        line.push_str(&format!(", {} -> {}", t.from, t.to));
    } else {
        line.push_str(&format!(", {}", t.to));
    }
    line.push_str(&format!(" [commit {}]\n", short(&o.commit.to_string())));
    // Say why approvals were voided, where they were, and where a change came from.
    if t.extra.voided.is_some() || t.extra.renumbered_from.is_some() {
        for note in &t.notes {
            line.push_str(&format!("note: {note}\n"));
        }
    }
    // Still awaited: for a pending change, and for an emergency change approved after the
    // fact (implementing or closed, its approvals still owed).
    if !o.waiting_for.is_empty()
        && (o.change.status() == Status::PendingApproval
            || matches!(t.action, chg::trailers::Action::Approve))
    {
        line.push_str(&format!(
            "waiting for approval by: {}\n",
            o.waiting_for.join(", ")
        ));
    }
    ui.out(&line)?;
    Ok(ExitCode::SUCCESS)
}

pub fn submit(ui: &Ui, store: &Store, a: IdArgs) -> CmdResult {
    take_step(ui, store, &a.id, Step::Submit)
}

pub fn approve(ui: &Ui, store: &Store, a: ApproveArgs) -> CmdResult {
    let step = Step::Approve {
        role: a.role,
        comment: a.comment,
        conditions: a.conditions,
    };
    take_step(ui, store, &a.id, step)
}

pub fn reject(ui: &Ui, store: &Store, a: RejectArgs) -> CmdResult {
    let step = Step::Reject {
        role: a.role,
        comment: reason(a.comment, "a rejection")?,
    };
    take_step(ui, store, &a.id, step)
}

pub fn withdraw(ui: &Ui, store: &Store, a: WithdrawArgs) -> CmdResult {
    let step = Step::Withdraw {
        role: a.role,
        comment: reason(a.comment, "a withdrawal")?,
    };
    take_step(ui, store, &a.id, step)
}

/// Takes `step` on change `id` (as typed) as the acting person, now, and reports it.
fn take_step(ui: &Ui, store: &Store, id: &str, step: Step) -> CmdResult {
    let o = store.transition(
        &super::context::for_store(ui, store)?,
        &ui.parse_id(id)?,
        step,
    )?;
    done(ui, o)
}

/// The `--comment` a decision that undoes or refuses must give: an auditor asks why.
fn reason(comment: String, what: &str) -> Result<String, Error> {
    if comment.trim().is_empty() {
        return Err(Error::Usage(format!("{what} needs a --comment saying why")));
    }
    Ok(comment)
}

pub fn set(ui: &Ui, store: &Store, policy: &Policy, a: SetArgs) -> CmdResult {
    let id = ui.parse_id(&a.id)?;
    let current = store.load(&id)?;
    let mut new = current.change().clone();
    super::new::answer(&mut new, policy, &a.answers, false)?;
    for assignment in &a.assignments {
        let (field, value) = assignment.split_once('=').ok_or_else(|| {
            Error::Usage(format!(
                "`{assignment}` is not FIELD=VALUE (like priority=high)"
            ))
        })?;
        new.set_field(field.trim(), value).map_err(Error::Usage)?;
    }
    let o = store.transition(
        &super::context::for_store(ui, store)?,
        &id,
        Step::Edit { new: Box::new(new) },
    )?;
    done(ui, o)
}

pub fn schedule(ui: &Ui, store: &Store, policy: &Policy, a: ScheduleArgs) -> CmdResult {
    let id = ui.parse_id(&a.id)?;
    let now = ui.now()?;
    let loaded = store.load(&id)?;
    let change = loaded.change();
    let mw = if a.maintenance_window {
        Some(true)
    } else if a.no_maintenance_window {
        Some(false)
    } else {
        None
    };
    let flagged = mw.unwrap_or_else(|| {
        change
            .schedule
            .as_ref()
            .is_some_and(|s| s.maintenance_window)
    });
    // Conflicts with other changes need every active scheduled change: a whole-store read.
    let all = store.load_where(chg::conflicts::can_conflict)?;
    let others = readable(&all, "checked for conflicts");
    let (start, end) = if a.next_slot {
        let duration: chg::model::Duration = a
            .duration
            .as_deref()
            .unwrap_or_default()
            .parse()
            .map_err(Error::Usage)?;
        let from = match &a.start {
            Some(s) => parse_time(ui, s, now)?.max(now),
            None => now,
        };
        let slot =
            chg::conflicts::next_slot(change, duration.to_signed(), flagged, from, &others, policy)
                .ok_or_else(|| {
                    Error::refused(
                        "no-slot",
                        format!("no free slot of {duration} for {id} in the coming year"),
                    )
                })?;
        let shown = format!("next free slot for {id}: {slot}");
        if interactive() && !a.yes {
            let ok = super::prompt::confirm(
                &format!("{}; schedule it?", chg::text::one_line(&shown)),
                true,
            )?;
            if !ok {
                eprintln!("chg: nothing scheduled");
                return Ok(ExitCode::from(1));
            }
        } else {
            eprintln!("{}", chg::text::one_line(&shown));
        }
        (slot.start, slot.end)
    } else {
        let start = parse_time(ui, a.start.as_deref().unwrap_or_default(), now)?;
        (
            start,
            parse_time(ui, a.end.as_deref().unwrap_or_default(), start)?,
        )
    };
    let mut o = store.transition(
        &super::context::for_store(ui, store)?,
        &id,
        Step::Schedule {
            start,
            end,
            maintenance_window: mw,
        },
    )?;
    let warnings = std::mem::take(&mut o.warnings);
    // Say what window was set (`now`, `+2h` and local times are resolved here), in the
    // local zone and in UTC; a window already over is said, not silently accepted.
    eprintln!(
        "chg: {id} scheduled {} to {}",
        super::understood(start),
        super::understood(end)
    );
    if end <= now {
        eprintln!(
            "chg: warning: this window ended {}; implement and the gate refuse outside it (schedule it again to move it)",
            super::ago(end, now)
        );
    }
    let code = done(ui, o)?;
    for c in &warnings {
        eprintln!(
            "chg: warning: {}: {}",
            c.kind,
            chg::text::one_line(&c.message)
        );
    }
    Ok(code)
}

pub fn implement(ui: &Ui, store: &Store, a: IdArgs) -> CmdResult {
    take_step(ui, store, &a.id, Step::Implement)
}

pub fn close(ui: &Ui, store: &Store, a: CloseArgs) -> CmdResult {
    let outcome: Outcome = a.outcome.parse().map_err(Error::Usage)?;
    take_step(
        ui,
        store,
        &a.id,
        Step::Close {
            outcome,
            test_results: a.test_results,
            review: a.review,
        },
    )
}

pub fn cancel(ui: &Ui, store: &Store, a: CancelArgs) -> CmdResult {
    take_step(ui, store, &a.id, Step::Cancel { reason: a.reason })
}

/// The full id of the deployed commit: the store's repository resolves what it knows (the
/// code is often kept beside its changes); anything else must already be a full id, since a
/// prefix chg cannot check could later match another commit.
fn deployed_commit(store: &Store, rev: &str) -> Result<String, Error> {
    let rev = rev.trim();
    if let Ok(commit) = store
        .repo()
        .revparse_single(rev)
        .and_then(|o| o.peel_to_commit())
    {
        return Ok(commit.id().to_string());
    }
    let full = rev.to_ascii_lowercase();
    if chg::model::Deployment::commit_problem(&full).is_none() {
        return Ok(full);
    }
    Err(Error::Usage(format!(
        "`{rev}` is not a commit of this repository, nor a full commit id; give the deployed commit's 40 hex digits"
    )))
}

pub fn deploy(ui: &Ui, store: &Store, a: DeployArgs) -> CmdResult {
    let id = ui.parse_id(&a.id)?;
    let step = Step::Deploy {
        commit: deployed_commit(store, &a.commit)?,
        environment: a.environment.trim().to_owned(),
        run: a.run.map(|r| r.trim().to_owned()).filter(|r| !r.is_empty()),
    };
    let o = store.transition(&super::context::for_store(ui, store)?, &id, step)?;
    if let Some(d) = o.change.deployments.last() {
        eprintln!(
            "chg: {id} deployed {} to {} recorded",
            d.commit, d.environment
        );
    }
    done(ui, o)
}

pub fn renumber(ui: &Ui, store: &Store, a: RenumberArgs) -> CmdResult {
    let o = store.renumber(
        &super::context::for_store(ui, store)?,
        &ui.parse_id(&a.id)?,
        a.file.as_deref(),
    )?;
    done(ui, o)
}
