//! The policy's `notifications:` section (SPEC section 13): channels, routes, escalation,
//! reminders and the link base. Secrets and URLs are never in the policy: a channel names
//! the environment variables that hold them (`url_env`, `secret_env`), and the caller reads
//! them (`chg::notify::Endpoints`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::model::Duration;
use crate::yaml::Pos;

/// What a channel is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChannelKind {
    /// Mail over SMTP (`smtp://` with STARTTLS, `smtps://` implicit TLS; plain only to
    /// localhost): one digest per person per run.
    Email,
    /// A Slack incoming webhook (Block Kit).
    Slack,
    /// A Microsoft Teams Workflows webhook (Adaptive Card).
    Teams,
    /// JSON events signed the Standard Webhooks way.
    Webhook,
}

impl ChannelKind {
    /// The policy's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Email => "email",
            ChannelKind::Slack => "slack",
            ChannelKind::Teams => "teams",
            ChannelKind::Webhook => "webhook",
        }
    }
}

/// One event kind a route names.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A change entered `pending_approval` (filed, submitted, or sent back by an edit).
    AwaitingApproval,
    /// A change was approved (every role) or rejected.
    Decided,
    /// Implementation started.
    Implemented,
    /// The change was closed.
    Closed,
    /// The change was cancelled.
    Cancelled,
    /// An approval is past its timeout (first notice, reminders, escalation).
    Overdue,
}

impl EventKind {
    /// Every kind, in the order of a change's life.
    pub const ALL: [EventKind; 6] = [
        EventKind::AwaitingApproval,
        EventKind::Decided,
        EventKind::Implemented,
        EventKind::Closed,
        EventKind::Cancelled,
        EventKind::Overdue,
    ];

    /// The policy's (and the event schema's) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::AwaitingApproval => "awaiting_approval",
            EventKind::Decided => "decided",
            EventKind::Implemented => "implemented",
            EventKind::Closed => "closed",
            EventKind::Cancelled => "cancelled",
            EventKind::Overdue => "overdue",
        }
    }
}

/// One channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// Its name, as routes name it.
    pub name: String,
    /// What it is.
    pub kind: ChannelKind,
    /// The environment variable that holds its URL (webhook URL, or SMTP URL with credentials).
    pub url_env: String,
    /// The environment variable that holds its signing secrets (`webhook`: `whsec_…`,
    /// several separated by spaces during a rotation).
    pub secret_env: Option<String>,
    /// The sender (`email`).
    pub from: Option<String>,
    /// How long one connection may take, from connect to the answer (default 10s).
    pub timeout: Duration,
}

/// Reminders to the awaited approvers once an approval is overdue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reminders {
    /// The interval between two notices.
    pub every: Duration,
    /// How many notices the approvers get (the first overdue notice counts); then the
    /// approval is escalated.
    pub at_most: u32,
}

/// The checked `notifications:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notifications {
    /// The channels, in the policy's order.
    pub channels: Vec<Channel>,
    /// Event kind to channel names.
    pub route: BTreeMap<EventKind, Vec<String>>,
    /// Roles that overdue approvals are escalated to.
    pub escalate_to: Vec<String>,
    /// Reminders; `None`: one overdue notice, escalated at once.
    pub reminders: Option<Reminders>,
    /// Where `chg serve` is reached: every message links to the change there.
    pub base_url: Option<String>,
}

impl Notifications {
    /// The channel named `name`.
    pub fn channel(&self, name: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.name == name)
    }

    /// The channels events of `kind` go to.
    pub fn routes(&self, kind: EventKind) -> Vec<&Channel> {
        self.route
            .get(&kind)
            .into_iter()
            .flatten()
            .filter_map(|n| self.channel(n))
            .collect()
    }
}

/// The default time one connection may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

// ---- as written ----

/// `notifications:` as written, with places.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotifications {
    #[serde(default)]
    channels: Vec<Spanned<RawChannel>>,
    #[serde(default)]
    route: BTreeMap<String, Spanned<Vec<String>>>,
    #[serde(default)]
    escalate_to: Vec<Spanned<String>>,
    #[serde(default)]
    reminders: Option<Spanned<RawReminders>>,
    #[serde(default)]
    base_url: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChannel {
    name: String,
    kind: String,
    url_env: Option<String>,
    #[serde(default)]
    secret_env: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    timeout: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReminders {
    every: Duration,
    at_most: u32,
}

/// Whether `s` can name an environment variable (`CHG_SLACK_WEBHOOK`).
fn env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Whether `s` is an http(s) URL with a host, as `base_url` must be.
pub fn is_http_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    rest.is_some_and(|r| {
        let host = r.split(['/', '?', '#']).next().unwrap_or("");
        !host.is_empty() && !r.chars().any(|c| c.is_whitespace() || c.is_control())
    })
}

/// Checks `raw` against the policy's `roles`; each error goes to `err` with its place.
pub fn check(
    raw: &Spanned<RawNotifications>,
    roles: &BTreeMap<String, Vec<String>>,
    at: impl Fn(&serde_saphyr::Location) -> Option<Pos>,
    mut err: impl FnMut(Option<Pos>, String),
) -> Notifications {
    let n = &raw.value;
    let mut channels: Vec<Channel> = Vec::new();
    for c in &n.channels {
        if let Some(channel) = check_channel(&c.value, at(&c.referenced), &channels, &mut err) {
            channels.push(channel);
        }
    }
    let route = check_route(&n.route, &channels, &at, &mut err);
    let mut escalate_to = Vec::new();
    for r in &n.escalate_to {
        if roles.contains_key(&r.value) {
            escalate_to.push(r.value.clone());
        } else {
            err(
                at(&r.referenced),
                format!(
                    "notifications.escalate_to names role `{}`, which the policy does not define",
                    r.value
                ),
            );
        }
    }
    let reminders = n.reminders.as_ref().and_then(|r| {
        let v = &r.value;
        if v.every.as_secs() <= 0 {
            err(
                at(&r.referenced),
                "notifications.reminders.every must be positive".into(),
            );
            None
        } else if v.at_most == 0 || v.at_most > 100 {
            err(
                at(&r.referenced),
                "notifications.reminders.at_most must be between 1 and 100".into(),
            );
            None
        } else {
            Some(Reminders {
                every: v.every,
                at_most: v.at_most,
            })
        }
    });
    let base_url = n.base_url.as_ref().and_then(|b| {
        if is_http_url(&b.value) {
            Some(b.value.trim_end_matches('/').to_owned())
        } else {
            err(
                at(&b.referenced),
                format!(
                    "notifications.base_url `{}` is not an http(s) URL",
                    crate::text::ascii_escaped(&b.value)
                ),
            );
            None
        }
    });
    Notifications {
        channels,
        route,
        escalate_to,
        reminders,
        base_url,
    }
}

/// One channel as written, checked against those before it (`taken`); `None` when it
/// cannot be used (no name, a name taken, an unknown kind, no `url_env`). Errors that
/// leave the channel usable are reported and the channel kept, so each is said once.
fn check_channel(
    v: &RawChannel,
    place: Option<Pos>,
    taken: &[Channel],
    err: &mut impl FnMut(Option<Pos>, String),
) -> Option<Channel> {
    let name = v.name.trim();
    if name.is_empty() {
        err(place, "a notification channel needs a name".into());
        return None;
    }
    if taken.iter().any(|x| x.name == name) {
        err(
            place,
            format!("notification channel `{name}` is named twice"),
        );
        return None;
    }
    let kind = match v.kind.as_str() {
        "email" => ChannelKind::Email,
        "slack" => ChannelKind::Slack,
        "teams" => ChannelKind::Teams,
        "webhook" => ChannelKind::Webhook,
        other => {
            err(
                place,
                format!(
                    "notification channel `{name}`: `{other}` is not a kind (email, slack, teams, webhook)"
                ),
            );
            return None;
        }
    };
    let Some(url_env) = v.url_env.clone() else {
        err(
            place,
            format!(
                "notification channel `{name}` needs url_env: the environment variable that holds its URL (URLs and secrets are never written in the policy)"
            ),
        );
        return None;
    };
    check_channel_env(v, name, kind, &url_env, place, err);
    check_channel_from(v, name, kind, place, err);
    let timeout = v.timeout.unwrap_or(DEFAULT_TIMEOUT);
    if timeout.as_secs() <= 0 || timeout.as_secs() > 300 {
        err(
            place,
            format!("notification channel `{name}`: timeout must be between 1s and 5m"),
        );
    }
    Some(Channel {
        name: name.to_owned(),
        kind,
        url_env,
        secret_env: v.secret_env.clone(),
        from: v.from.clone(),
        timeout,
    })
}

/// A channel's environment variables: well-formed names, and a signing secret for a
/// webhook only (the policy never holds a URL or secret itself).
fn check_channel_env(
    v: &RawChannel,
    name: &str,
    kind: ChannelKind,
    url_env: &String,
    place: Option<Pos>,
    err: &mut impl FnMut(Option<Pos>, String),
) {
    for (key, var) in [
        ("url_env", Some(url_env)),
        ("secret_env", v.secret_env.as_ref()),
    ] {
        if let Some(var) = var
            && !env_name(var)
        {
            err(
                place,
                format!(
                    "notification channel `{name}`: {key} must name an environment variable (letters, digits and _), not `{}`",
                    crate::text::ascii_escaped(var)
                ),
            );
        }
    }
    if kind == ChannelKind::Webhook && v.secret_env.is_none() {
        err(
            place,
            format!(
                "notification channel `{name}` (webhook) needs secret_env: the environment variable that holds its whsec_ signing secret"
            ),
        );
    }
    if kind != ChannelKind::Webhook && v.secret_env.is_some() {
        err(
            place,
            format!(
                "notification channel `{name}`: secret_env is for webhook channels (an email channel's credentials go in its SMTP URL)"
            ),
        );
    }
}

/// A channel's `from`: required (and an address) for email, refused elsewhere.
fn check_channel_from(
    v: &RawChannel,
    name: &str,
    kind: ChannelKind,
    place: Option<Pos>,
    err: &mut impl FnMut(Option<Pos>, String),
) {
    match (&v.from, kind) {
        (None, ChannelKind::Email) => err(
            place,
            format!("notification channel `{name}` (email) needs from: the sender's address"),
        ),
        (Some(f), ChannelKind::Email) if f.parse::<lettre::Address>().is_err() => err(
            place,
            format!(
                "notification channel `{name}`: from `{}` is not an email address",
                crate::text::ascii_escaped(f)
            ),
        ),
        (Some(_), k) if k != ChannelKind::Email => err(
            place,
            format!("notification channel `{name}`: from is for email channels"),
        ),
        _ => {}
    }
}

/// `route:` as written: event names to defined channels (each named once, in order).
fn check_route(
    raw: &BTreeMap<String, Spanned<Vec<String>>>,
    channels: &[Channel],
    at: &impl Fn(&serde_saphyr::Location) -> Option<Pos>,
    err: &mut impl FnMut(Option<Pos>, String),
) -> BTreeMap<EventKind, Vec<String>> {
    let mut route = BTreeMap::new();
    for (key, list) in raw {
        let place = at(&list.referenced);
        let Some(kind) = EventKind::ALL.into_iter().find(|k| k.as_str() == key) else {
            err(
                place,
                format!(
                    "notifications.route: `{key}` is not an event ({})",
                    EventKind::ALL.map(EventKind::as_str).join(", ")
                ),
            );
            continue;
        };
        let mut names = Vec::new();
        for name in &list.value {
            if !channels.iter().any(|c| &c.name == name) {
                err(
                    place,
                    format!(
                        "notifications.route.{key} names channel `{name}`, which is not defined under channels"
                    ),
                );
            } else if !names.contains(name) {
                names.push(name.clone());
            }
        }
        route.insert(kind, names);
    }
    route
}
