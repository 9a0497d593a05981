//! `chg notify`: the notifications the history and the clock call for, each sent once.

use std::process::ExitCode;

use chg::Error;
use chg::notify::{self, Endpoints};
use chg::policy::Policy;
use chg::store::Store;
use clap::Args;

use super::{CmdResult, ui::Ui};

/// Send the notifications that the history since the last run and the clock call for.
///
/// Transitions made anywhere (any clone, sync, the API, by hand) and approvals past their
/// timeout go to the channels the policy's `notifications:` section routes them to: the
/// approvers still needed, the requester of a decided change, `escalate_to` for overdue
/// approvals (after the reminders). URLs and secrets come from the environment variables the
/// policy names. Each delivery is made once: the outbox and the delivery log are kept in
/// .git/chg/notify/. A failed delivery is kept and retried by the next run.
/// Exit 0 when everything was delivered, 1 when a delivery failed or waits for its retry,
/// 2 on wrong input (a variable that is not a URL, a bad flag).
#[derive(Debug, Args)]
pub struct NotifyArgs {
    /// Print what would be sent; send nothing and record nothing.
    #[arg(long)]
    dry_run: bool,
    /// Where `chg serve` is reached: every message links to the change's page there
    /// (default: the policy's notifications.base_url).
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,
    /// Retry failed deliveries now, without waiting for their pause to end.
    #[arg(long)]
    retry_now: bool,
    /// Leave out transitions older than this (30m, 24h, 7d; `0` for no limit), so that a
    /// first run, or a run whose .git/chg/notify/ was lost (an evicted CI cache), does not
    /// replay the past. Clock events and deliveries already queued are not affected.
    #[arg(long, value_name = "DURATION", default_value = "7d")]
    max_age: String,
    #[command(flatten)]
    json: super::json::JsonArgs,
}

pub fn run(ui: &Ui, store: &Store, policy: &Policy, a: NotifyArgs) -> CmdResult {
    if let Some(b) = &a.base_url
        && !chg::notify::config::is_http_url(b)
    {
        return Err(Error::Usage(format!(
            "--base-url `{}` is not an http(s) URL",
            chg::text::ascii_escaped(b)
        )));
    }
    let endpoints = match &policy.notifications {
        Some(n) => Endpoints::from_vars(n, |k| std::env::var(k).ok())?,
        None => Endpoints::default(),
    };
    if policy.notifications.is_none() {
        eprintln!(
            "chg notify: the policy has no notifications section; nothing to derive (README, \"Notifications\")"
        );
    }
    let max_age = match a.max_age.trim() {
        "0" => None,
        text => {
            let d: chg::model::Duration = text
                .parse()
                .map_err(|e: String| Error::Usage(format!("--max-age: {e}")))?;
            Some(d.to_signed())
        }
    };
    let opts = notify::Options {
        max_age,
        dry_run: a.dry_run,
        base_url: a.base_url.map(|b| b.trim_end_matches('/').to_owned()),
        retry_now: a.retry_now,
        lock_wait: super::context::lock_timeout(),
    };
    let report = notify::run(store, policy, ui.now()?, &endpoints, &opts)?;
    if ui.json(&a.json) {
        ui.out_json(&report)?;
    } else {
        let mut s = String::new();
        let verb = if report.dry_run { "would send" } else { "sent" };
        let counted = if report.dry_run { "to send" } else { "sent" };
        for m in &report.sent {
            let to = if m.to.is_empty() {
                String::new()
            } else {
                format!(" to {}", chg::text::one_line(&m.to))
            };
            s.push_str(&format!(
                "{verb} {} ({}){to}: {}\n",
                m.channel,
                m.kind,
                m.events.join(", ")
            ));
        }
        ui.out(&s)?;
        for f in &report.failed {
            let to = if f.message.to.is_empty() {
                String::new()
            } else {
                format!(" to {}", chg::text::one_line(&f.message.to))
            };
            eprintln!(
                "chg: error: delivery through channel {}{to} failed (attempt {}): {}; kept for the next run (not before {})",
                f.message.channel,
                f.attempts,
                chg::text::one_line(&f.error),
                chg::model::format_timestamp(f.next_attempt)
            );
        }
        for d in &report.discarded {
            eprintln!(
                "chg: warning: delivery of {} given up: {} (recorded in .git/chg/notify/delivered.jsonl)",
                d.message.events.join(", "),
                chg::text::one_line(&d.error)
            );
        }
        for w in &report.waiting {
            eprintln!(
                "chg: note: delivery through channel {} waits for its retry at {} (last error: {}); `chg notify --retry-now` tries it now",
                w.message.channel,
                chg::model::format_timestamp(w.next_attempt),
                chg::text::one_line(&w.error)
            );
        }
        eprintln!(
            "chg notify: {} new event(s), {} message(s) {counted}, {} failed, {} waiting",
            report.events.len(),
            report.sent.len(),
            report.failed.len(),
            report.waiting.len()
        );
    }
    Ok(if report.all_delivered() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
