//! Notifications and approval deadlines (SPEC section 13).
//!
//! `chg notify` (and `chg serve`, after each state change and every minute) calls [`run`]:
//!
//! 1. **Events** ([`events`]) from the verified history since the last run: every transition
//!    the audit index holds (made by chg in any clone, by `chg sync`, through the API or by
//!    hand), made while the policy of its commit configured notifications; and from the
//!    clock: approvals past their timeout ([`crate::query::overdue_since`]), with bounded
//!    reminders, then escalation. Each event has a stable id, `seq` (chg transitions in the
//!    history up to it) and `commit`, so every receiver is a witness of the history.
//! 2. **Deliveries**: one per event, routed channel and (for email) recipient, keyed
//!    `event|channel|recipient`. They go into a durable outbox ([`outbox`]) under
//!    `.git/chg/notify/` before anything is sent; a delivery is recorded in the delivery log
//!    (appended, fsynced) as soon as the receiver acknowledged it. A run killed at any point
//!    loses nothing (the outbox and the cursor are written before sending) and doubles
//!    nothing that was recorded; the only window is between a receiver's acknowledgement and
//!    the log's fsync, and a repeat then carries the same `webhook-id` for the receiver to
//!    drop. A lock keeps two runs from sending at once.
//! 3. **Channels** ([`channels`]): email (one digest per person per run), Slack, Teams and
//!    signed webhooks. A failed delivery stays in the outbox, is retried by the next runs
//!    with a growing pause, and is reported.
//!
//! The library reads no environment and no clock: the caller gives the time, and the
//! channels' URLs and secrets ([`Endpoints`]), read from the variables the policy names.

pub mod channels;
pub use crate::policy::notifications as config;
pub mod events;
pub mod outbox;

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub use config::{ChannelKind, EventKind, Notifications};
pub use events::Event;

use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::store::Store;

/// Where a channel delivers, as the environment gives it (never the policy).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// The URL (`https://hooks…`, `smtp://user:pass@host:587`), when its variable is set.
    pub url: Option<String>,
    /// The signing secrets (webhook; `whsec_…`, several during a rotation).
    pub secrets: Vec<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // URLs of chat webhooks and SMTP carry credentials: never printed.
        f.debug_struct("Endpoint")
            .field("url", &self.url.as_ref().map(|_| "<set>"))
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

/// Every channel's endpoint, by channel name.
#[derive(Debug, Clone, Default)]
pub struct Endpoints(pub BTreeMap<String, Endpoint>);

impl Endpoints {
    /// The endpoints of `n`'s channels, reading each variable the policy names through
    /// `var` (the CLI passes the environment). A variable set to something that cannot be
    /// what it names is wrong input, said without its value.
    pub fn from_vars(n: &Notifications, var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut out = BTreeMap::new();
        for c in &n.channels {
            let url = var(&c.url_env).filter(|v| !v.trim().is_empty());
            if let Some(u) = &url {
                channels::check_url(c, u).map_err(|why| {
                    Error::Usage(format!("{} (channel `{}`): {why}", c.url_env, c.name))
                })?;
            }
            let secrets: Vec<String> = c
                .secret_env
                .as_deref()
                .and_then(&var)
                .map(|s| s.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default();
            for s in &secrets {
                channels::secret_key(s).map_err(|why| {
                    Error::Usage(format!(
                        "{} (channel `{}`): {why}",
                        c.secret_env.as_deref().unwrap_or(""),
                        c.name
                    ))
                })?;
            }
            out.insert(c.name.clone(), Endpoint { url, secrets });
        }
        Ok(Endpoints(out))
    }
}

/// How a run behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Say what would be sent; send and write nothing.
    pub dry_run: bool,
    /// Where `chg serve` is reached (overrides the policy's `base_url`).
    pub base_url: Option<String>,
    /// Retry failed deliveries now, whatever their pause.
    pub retry_now: bool,
    /// How long to wait for another run holding the notify lock.
    pub lock_wait: Duration,
    /// Transitions older than this (by commit time) are not notified: a first run, or a run
    /// whose outbox was lost (a CI cache evicted), does not replay the store's past.
    /// Deliveries already queued are not affected.
    pub max_age: Option<jiff::SignedDuration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dry_run: false,
            base_url: None,
            retry_now: false,
            lock_wait: Duration::from_secs(30),
            max_age: Some(jiff::SignedDuration::from_hours(7 * 24)),
        }
    }
}

/// One message sent (or, in a dry run, to be sent): a channel, a recipient (email) and the
/// events it carries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Message {
    /// The channel's name.
    pub channel: String,
    /// The channel's kind.
    pub kind: String,
    /// The recipient (email), empty for chat and webhooks.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub to: String,
    /// The events' ids.
    pub events: Vec<String>,
}

/// A message that could not be delivered, kept for the next run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Failure {
    /// What was not delivered.
    #[serde(flatten)]
    pub message: Message,
    /// Why (never with a URL or a secret in it).
    pub error: String,
    /// Attempts so far.
    pub attempts: u32,
    /// The earliest time of the next attempt.
    pub next_attempt: Timestamp,
}

/// What a run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The events this run found (new, not yet in the outbox or the log).
    pub events: Vec<Event>,
    /// Messages delivered (in a dry run: those that would be sent).
    pub sent: Vec<Message>,
    /// Messages that failed now.
    pub failed: Vec<Failure>,
    /// Messages still waiting for their next attempt (a failure's pause not over).
    pub waiting: Vec<Failure>,
    /// Messages given up because the policy at HEAD no longer defines their channel (a
    /// governed decision; recorded in the delivery log with the reason).
    pub discarded: Vec<Failure>,
    /// Nothing was sent or written.
    pub dry_run: bool,
    /// The commit the run read the history up to.
    pub head: Option<String>,
}

impl Report {
    /// Whether everything due was delivered (exit 0); else the run exits 1.
    pub fn all_delivered(&self) -> bool {
        self.failed.is_empty() && self.waiting.is_empty()
    }
}

/// Runs notifications once (refused while an unauthorized policy is at HEAD): derives the
/// events since the last run and the clock's, queues
/// their deliveries durably, sends what is due, and records what was delivered. `policy` is
/// the policy at HEAD; without `notifications` nothing is derived or sent, but deliveries
/// already queued are still attempted.
pub fn run(
    store: &Store,
    policy: &Policy,
    now: Timestamp,
    endpoints: &Endpoints,
    opts: &Options,
) -> Result<Report> {
    // A policy slipped in under governance decides nothing, its routes included: a run
    // refuses, loudly (exit 1 naming the commit), as every command that applies it does.
    store.ensure_authorized_policy()?;
    let dir = outbox::dir(store);
    let _lock = if opts.dry_run {
        None
    } else {
        Some(
            crate::store::lock::acquire(&dir.join("lock"), opts.lock_wait).map_err(
                |e| match e {
                    Error::Locked(_) => Error::Conflict(
                        "another chg notify is sending for this store; try again when it is done"
                            .into(),
                    ),
                    e => e,
                },
            )?,
        )
    };
    let mut book = outbox::Book::open(&dir)?;
    let base = opts
        .base_url
        .clone()
        .or_else(|| policy.notifications.as_ref()?.base_url.clone());
    let oldest = opts.max_age.and_then(|a| now.checked_sub(a).ok());
    let derived = events::derive(store, policy, now, book.cursor(), base.as_deref(), oldest)?;
    let mut report = Report {
        dry_run: opts.dry_run,
        head: derived.head.clone(),
        ..Report::default()
    };
    if let Some(n) = &policy.notifications {
        for (event, recipients) in derived.events {
            let mut queued = false;
            for channel in n.routes(event.kind) {
                let to: Vec<String> = if channel.kind == ChannelKind::Email {
                    recipients.clone()
                } else {
                    vec![String::new()]
                };
                for person in to {
                    queued |= book.queue(&event, &channel.name, channel.kind, &person, now);
                }
            }
            if queued {
                report.events.push(event);
            }
        }
    }
    if opts.dry_run {
        for batch in book.due(now, true) {
            report.sent.push(batch.message());
        }
        return Ok(report);
    }
    // Durable before anything is sent: a run killed from here on loses nothing.
    book.save_outbox()?;
    if let Some(head) = &derived.head {
        book.save_cursor(head)?;
    }
    crate::store::commit::failpoint("notify-after-outbox");
    let channels_of = |name: &str| {
        policy
            .notifications
            .as_ref()
            .and_then(|n| n.channel(name).cloned())
    };
    for batch in book.due(now, opts.retry_now) {
        let message = batch.message();
        let outcome = match channels_of(&message.channel) {
            None => {
                let why = format!(
                    "the policy at HEAD no longer defines channel `{}`",
                    message.channel
                );
                book.discarded(&batch, now, &why)?;
                report.discarded.push(Failure {
                    message,
                    error: why,
                    attempts: 0,
                    next_attempt: now,
                });
                continue;
            }
            Some(ch) => {
                let endpoint = endpoints.0.get(&ch.name).cloned().unwrap_or_default();
                channels::send(&ch, &endpoint, &message.to, &batch.events(), now)
            }
        };
        match outcome {
            Ok(()) => {
                book.delivered(&batch, now)?;
                crate::store::commit::failpoint("notify-after-record");
                report.sent.push(message);
            }
            Err(why) => {
                let (attempts, next) = book.failed(&batch, now, &why);
                report.failed.push(Failure {
                    message,
                    error: why,
                    attempts,
                    next_attempt: next,
                });
            }
        }
    }
    book.save_outbox()?;
    report.waiting = book.waiting(now);
    report
        .waiting
        .retain(|w| !report.failed.iter().any(|f| f.message == w.message));
    Ok(report)
}
