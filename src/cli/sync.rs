//! `chg sync`.

use std::process::ExitCode;

use chg::store::Store;
use chg::sync::{Options, Report};
use clap::Args;

use super::{CmdResult, short, ui::Ui};

/// Fetch, bring this clone's chg steps onto the remote's latest state, and push.
///
/// Local transitions are replayed on the remote's current version of each change under its
/// policy (two approvals from two clones both survive; a new change whose id was taken
/// upstream moves to the next free id); other commits are cherry-picked. A push rejected
/// because someone pushed first is retried. A local step that can no longer apply stops the
/// sync with nothing changed (or is dropped with --drop-stale); the local work is kept on a
/// ref under refs/chg/sync/. Network access goes through your own `git`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The remote (default: the branch's remote, else origin).
    remote: Option<String>,
    /// Sync everything else when a local step can no longer apply; the dropped steps stay on
    /// a ref under refs/chg/sync/.
    #[arg(long)]
    drop_stale: bool,
    /// Push attempts when others keep pushing first.
    #[arg(long, default_value_t = 10, value_name = "N")]
    attempts: u32,
    /// Output format (`--format json` is the same as `--json`).
    #[arg(long, value_enum, default_value = "text")]
    format: super::show::TextFormat,
    #[command(flatten)]
    json: super::json::JsonArgs,
}

pub fn run(ui: &Ui, store: &Store, a: SyncArgs) -> CmdResult {
    let ctx = super::context::for_store(ui, store)?;
    let report = chg::sync::sync(
        store,
        &ctx,
        &Options {
            remote: a.remote,
            drop_stale: a.drop_stale,
            attempts: a.attempts,
        },
    )?;
    if ui.json(&a.json) || a.format == super::show::TextFormat::Json {
        ui.out_json(&report)?;
    } else {
        ui.out(&text(&report))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn text(r: &Report) -> String {
    let mut parts = Vec::new();
    if r.pulled > 0 {
        parts.push(format!("pulled {} commit(s)", r.pulled));
    }
    if !r.replayed.is_empty() {
        parts.push(format!("replayed {} local step(s)", r.replayed.len()));
    }
    if r.pushed > 0 {
        parts.push(format!("pushed {} commit(s)", r.pushed));
    }
    if parts.is_empty() {
        parts.push("up to date".into());
    }
    let mut s = format!(
        "{}/{}: {} [{}]\n",
        r.remote,
        r.branch,
        parts.join(", "),
        short(&r.head)
    );
    for (old, new) in &r.renumbered {
        s.push_str(&format!(
            "renumbered: {old} is now {new} ({old} was taken on the remote)\n"
        ));
    }
    if r.already_upstream > 0 {
        s.push_str(&format!(
            "{} local step(s) were on the remote already (an earlier sync pushed them)\n",
            r.already_upstream
        ));
    }
    for d in &r.dropped {
        s.push_str(&format!(
            "dropped: {} `{}` (commit {}): {}\n",
            d.id,
            d.action,
            short(&d.commit),
            d.reason
        ));
    }
    if let Some(saved) = &r.saved_ref {
        s.push_str(&format!(
            "your local work before the sync is kept at {saved} (git log {saved})\n"
        ));
    }
    s
}
