//! The change request and its vocabulary: ids, statuses, models, priorities, durations.
//!
//! These are plain data types. Reading them from YAML with places for every problem lives in
//! [`crate::decode`]; the rules that relate them live in [`crate::policy`] and
//! [`crate::workflow`].

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize, Serializer};

/// Defines a closed vocabulary (an enum written in lower case in files and on the command line).
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $(
                #[doc = $text]
                #[serde(rename = $text)]
                $variant,
            )+
        }

        impl $name {
            /// Every value, in the order the SPEC lists them.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// What this vocabulary is called in messages.
            pub const WHAT: &'static str = $what;

            /// The spelling used in files and on the command line.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// All spellings, for error messages and prompts.
            pub fn names() -> Vec<&'static str> {
                Self::ALL.iter().map(|v| v.as_str()).collect()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(format!(
                        "`{}` is not a valid {}; expected one of: {}{}",
                        s,
                        $what,
                        Self::names().join(", "),
                        crate::finding::suggest(s, Self::names())
                            .map(|m| format!(" (did you mean `{m}`?)"))
                            .unwrap_or_default()
                    )),
                }
            }
        }
    };
}

vocabulary!(
    /// Where a change is in its life cycle (SPEC section 4).
    Status, "status" {
        Draft => "draft",
        PendingApproval => "pending_approval",
        Approved => "approved",
        Rejected => "rejected",
        Implementing => "implementing",
        Closed => "closed",
        Cancelled => "cancelled",
    }
);

vocabulary!(
    /// ITIL change model: how much ceremony a change needs.
    ChangeModel, "change model" {
        Standard => "standard",
        Normal => "normal",
        Emergency => "emergency",
    }
);

vocabulary!(
    /// Business priority; selects the approval rule.
    Priority, "priority" {
        Critical => "critical",
        High => "high",
        Medium => "medium",
        Low => "low",
    }
);

vocabulary!(
    /// How soon the change is needed.
    Urgency, "urgency" {
        Emergency => "emergency",
        High => "high",
        Medium => "medium",
        Low => "low",
    }
);

vocabulary!(
    /// The assessed risk of the change.
    RiskLevel, "risk level" {
        Low => "low",
        Medium => "medium",
        High => "high",
        Critical => "critical",
    }
);

vocabulary!(
    /// How an implementation ended.
    Outcome, "outcome" {
        Successful => "successful",
        Failed => "failed",
        RolledBack => "rolled_back",
    }
);

vocabulary!(
    /// An approver's decision.
    Decision, "decision" {
        Approved => "approved",
        Rejected => "rejected",
        Withdrawn => "withdrawn",
    }
);

impl Status {
    /// Statuses after which nothing but reading happens.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Rejected | Status::Closed | Status::Cancelled)
    }
}

/// A change request id: `<prefix>-<year>-<number>`, number zero-padded to three digits.
///
/// Parsing is strict so that an id can be turned into a path without any chance of
/// escaping the store (`../../etc/passwd` is not an id).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChangeId {
    prefix: String,
    year: i16,
    number: u32,
}

impl ChangeId {
    /// Builds an id from its parts.
    pub fn new(prefix: &str, year: i16, number: u32) -> Result<Self, String> {
        if !valid_prefix(prefix) {
            return Err(format!(
                "`{prefix}` is not a valid id prefix (letters and digits, starting with a letter)"
            ));
        }
        if !(1970..=9999).contains(&year) {
            return Err(format!("{year} is not a valid id year"));
        }
        Ok(ChangeId {
            prefix: prefix.to_owned(),
            year,
            number,
        })
    }

    /// The prefix (`CHG`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The year of creation.
    pub fn year(&self) -> i16 {
        self.year
    }

    /// The sequence number within the year.
    pub fn number(&self) -> u32 {
        self.number
    }
}

/// Prefixes are short and plain so that ids are safe in paths, refs and commit subjects.
pub fn valid_prefix(prefix: &str) -> bool {
    let mut chars = prefix.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && prefix.len() <= 16
        && chars.all(|c| c.is_ascii_alphanumeric())
}

impl FromStr for ChangeId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "`{}` is not a change id (expected PREFIX-YEAR-NUMBER, like CHG-2025-001)",
                s.escape_debug()
            )
        };
        let mut parts = s.rsplitn(3, '-');
        let (Some(number), Some(year), Some(prefix)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !valid_prefix(prefix) || year.len() != 4 || !digits(year) {
            return Err(bad());
        }
        if number.len() < 3 || number.len() > 9 || !digits(number) {
            return Err(bad());
        }
        // `CHG-2025-0001` would name the same change as `CHG-2025-001`; only one spelling is valid.
        if number.len() > 3 && number.starts_with('0') {
            return Err(bad());
        }
        let year: i16 = year.parse().map_err(|_| bad())?;
        let number: u32 = number.parse().map_err(|_| bad())?;
        ChangeId::new(prefix, year, number).map_err(|_| bad())
    }
}

impl fmt::Display for ChangeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{:04}-{:03}", self.prefix, self.year, self.number)
    }
}

impl Serialize for ChangeId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A length of time written like `30m`, `1h`, `24h`, `7d` (units may be combined: `1h30m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration {
    seconds: i64,
}

impl Duration {
    /// A duration of this many seconds.
    pub const fn from_secs(seconds: i64) -> Self {
        Duration { seconds }
    }

    /// The length in seconds.
    pub fn as_secs(self) -> i64 {
        self.seconds
    }

    /// As a jiff span usable in timestamp arithmetic.
    pub fn to_signed(self) -> jiff::SignedDuration {
        jiff::SignedDuration::from_secs(self.seconds)
    }
}

impl FromStr for Duration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "`{}` is not a duration (expected a number and a unit: 30m, 1h, 24h, 7d)",
                s.escape_debug()
            )
        };
        let text = s.trim();
        if text.is_empty() {
            return Err(bad());
        }
        let mut total: i64 = 0;
        let mut number = String::new();
        for c in text.chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let unit = match c {
                'w' => 7 * 86_400,
                'd' => 86_400,
                'h' => 3_600,
                'm' => 60,
                's' => 1,
                _ => return Err(bad()),
            };
            if number.is_empty() {
                return Err(bad());
            }
            let n: i64 = number.parse().map_err(|_| bad())?;
            total = n
                .checked_mul(unit)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(bad)?;
            number.clear();
        }
        if !number.is_empty() {
            return Err(bad());
        }
        Ok(Duration { seconds: total })
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.seconds;
        if s == 0 {
            return f.write_str("0m");
        }
        for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
            if s % size == 0 {
                return write!(f, "{}{unit}", s / size);
            }
        }
        write!(f, "{s}s")
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

pub use crate::time::{format_timestamp, parse_timestamp};

/// Serializes a timestamp the way files store it.
pub(crate) fn ser_ts<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_timestamp(*t))
}

fn ser_opt_ts<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => ser_ts(t, s),
        None => s.serialize_none(),
    }
}

/// When a change is planned to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Schedule {
    /// Planned start.
    #[serde(serialize_with = "ser_ts")]
    pub start: Timestamp,
    /// Planned end.
    #[serde(serialize_with = "ser_ts")]
    pub end: Timestamp,
    /// Whether the change must run inside a policy maintenance window.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub maintenance_window: bool,
}

/// `START to END`, with ` (maintenance window)` when flagged.
impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} to {}{}",
            format_timestamp(self.start),
            format_timestamp(self.end),
            if self.maintenance_window {
                " (maintenance window)"
            } else {
                ""
            }
        )
    }
}

/// One approver's decision for one role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Approval {
    /// The approver's git email.
    pub by: String,
    /// The role the approver acted in.
    pub role: String,
    /// Approved or rejected; withdrawn for a record that withdraws the same person's
    /// earlier approval for the same role (see [`ChangeRequest::withdrawals`]).
    pub decision: Decision,
    /// When.
    #[serde(serialize_with = "ser_ts")]
    pub at: Timestamp,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comments: Option<String>,
    /// Conditions attached to the approval.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<String>,
    /// [`ChangeRequest::material_digest`] of the content the decision was made on, so an
    /// approval cannot silently carry over to a plan that changed after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The approver's SSH signature over the record's statement (SPEC section 9); for an
    /// attested decision, the server's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// For a decision the server attested (SPEC 12.1, `signing.server_attests`): the
    /// allowed signers principal of the server's key that signed it in the person's stead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attested_by: Option<String>,
    /// How the server authenticated the person (`api token tok_…`, `session (token tok_…,
    /// signed in 2026-…)`): part of what the server signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attested_via: Option<String>,
}

/// What happened when the change was carried out.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Implementation {
    /// Who implemented it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub implementer: Option<String>,
    /// When implementation started.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_opt_ts")]
    pub started_at: Option<Timestamp>,
    /// The implementer's signature, where the policy requires one for `implement`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// When it finished.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_opt_ts")]
    pub completed_at: Option<Timestamp>,
    /// How it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// Evidence of testing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_results: Option<String>,
    /// Who closed it, where the close is signed (the signature names its signer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_by: Option<String>,
    /// The closer's signature, where the policy requires one for `close`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close_signature: Option<String>,
}

/// The post-implementation review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Review {
    /// The reviewer.
    pub by: String,
    /// When.
    #[serde(serialize_with = "ser_ts")]
    pub at: Timestamp,
    /// What was learned.
    pub summary: String,
}

/// Why and by whom a change was cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cancellation {
    /// Who cancelled.
    pub by: String,
    /// When.
    #[serde(serialize_with = "ser_ts")]
    pub at: Timestamp,
    /// Why.
    pub reason: String,
    /// The signature, where the policy requires one for `cancel`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// One deployment of the change's work, recorded by `chg deploy` while its gate was open:
/// what an auditor reconciles a CI/CD system's deployments against. Not material content:
/// recording one voids no approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deployment {
    /// The deployed commit, 40 lowercase hex digits (resolved by `chg deploy` where the store's
    /// repository has it; a commit of another repository is given in full).
    pub commit: String,
    /// Where it went (`production`): a plain name.
    pub environment: String,
    /// The CI/CD run that deployed it, a URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// When it was recorded.
    #[serde(serialize_with = "ser_ts")]
    pub at: Timestamp,
    /// Who recorded it.
    pub by: String,
    /// The signature, where the policy requires one for `deploy`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl Deployment {
    /// Why `commit` is not a full commit id as a deployment records it (40 lowercase hex
    /// digits: a prefix may later match another commit, and reconciliation compares ids).
    pub fn commit_problem(commit: &str) -> Option<String> {
        let full = commit.len() == 40
            && commit
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        (!full).then(|| {
            format!("`{commit}` is not a full commit id (40 lowercase hexadecimal digits)")
        })
    }

    /// Why `environment` is not a plain name (letters, digits, `.`, `_`, `-`; at most 64).
    pub fn environment_problem(environment: &str) -> Option<String> {
        let plain = !environment.is_empty()
            && environment.len() <= 64
            && environment.bytes().enumerate().all(|(i, b)| {
                b.is_ascii_alphanumeric() || (i > 0 && matches!(b, b'.' | b'_' | b'-'))
            });
        (!plain).then(|| {
            format!(
                "`{environment}` is not an environment name (letters, digits, `.`, `_` and `-`, starting with a letter or digit)"
            )
        })
    }

    /// Why `run` is not a URL a reader can follow (http or https, no spaces).
    pub fn run_problem(run: &str) -> Option<String> {
        let rest = run
            .strip_prefix("https://")
            .or_else(|| run.strip_prefix("http://"));
        let ok = rest.is_some_and(|r| !r.is_empty() && !r.chars().any(char::is_whitespace));
        (!ok).then(|| format!("`{run}` is not an http(s) URL"))
    }

    /// Every problem of this record's form.
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = [
            Self::commit_problem(&self.commit),
            Self::environment_problem(&self.environment),
        ]
        .into_iter()
        .flatten()
        .collect();
        out.extend(self.run.as_deref().and_then(Self::run_problem));
        out
    }
}

/// Who vouches for a change's content as it is (SPEC section 9, `new` and `edit` in
/// `signing.required_for`): the requester when it was filed, then whoever made each
/// material edit. Written by `chg new`, `chg edit` and `chg set` where the policy requires
/// those signed; older records stay in history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContentRecord {
    /// `new` or `edit`.
    pub action: String,
    /// Who wrote the content.
    pub by: String,
    /// When.
    #[serde(serialize_with = "ser_ts")]
    pub at: Timestamp,
    /// The material digest of the content vouched for.
    pub digest: String,
    /// The SSH signature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// One change request file (SPEC section 2). Field order is the file's canonical order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ChangeRequest {
    /// `CHG-2025-001`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<ChangeId>,
    /// One line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// What changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub business_justification: Option<String>,
    /// Git email of whoever filed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requester: Option<String>,
    /// When it was filed; decides the month folder.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_opt_ts")]
    pub request_date: Option<Timestamp>,
    /// One of the policy's change types.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change_type: Option<String>,
    /// standard, normal or emergency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change_model: Option<ChangeModel>,
    /// Selects the approval rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// How soon it is needed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub urgency: Option<Urgency>,
    /// Assessed risk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk_level: Option<RiskLevel>,
    /// Answers to the policy's risk questionnaire, by question id (SPEC section 11).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk_assessment: Option<std::collections::BTreeMap<String, bool>>,
    /// Systems touched.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub affected_systems: Vec<String>,
    /// Who or what is affected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impact_scope: Option<String>,
    /// How it will be done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub implementation_plan: Option<String>,
    /// How it will be undone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_plan: Option<String>,
    /// Whether testing is part of the plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub testing_required: Option<bool>,
    /// How it will be tested.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_plan: Option<String>,
    /// Where it will be tested.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_environment: Option<String>,
    /// For a standard change: the template of the policy's catalogue it was filed from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The digest of that template's file when the change was filed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_digest: Option<String>,
    /// For a policy change (SPEC section 10): the proposed content of every file under
    /// `policy/`, by path relative to the store, as `chg policy propose` captured it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proposed_policy: Option<std::collections::BTreeMap<String, String>>,
    /// For a policy change: the git tree id of `policy/` at HEAD when it was proposed.
    /// Applying it after `policy/` changed is refused, so that a proposal never undoes
    /// another one applied meanwhile (a key revocation, say).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_base: Option<String>,
    /// The signed record of who wrote the content as it is, where the policy requires it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_signature: Option<ContentRecord>,
    /// When it will run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Where it is in the life cycle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// Decisions so far.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<Approval>,
    /// Written by implement and close.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub implementation: Option<Implementation>,
    /// Written by close.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review: Option<Review>,
    /// Written by cancel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancellation: Option<Cancellation>,
    /// Appended by deploy.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deployments: Vec<Deployment>,
}

/// The fields a person writes; everything else is written by `chg` as the change moves.
pub const CONTENT_FIELDS: &[&str] = &[
    "title",
    "description",
    "business_justification",
    "change_type",
    "change_model",
    "priority",
    "urgency",
    "risk_level",
    "affected_systems",
    "impact_scope",
    "implementation_plan",
    "rollback_plan",
    "testing_required",
    "test_plan",
    "test_environment",
];

/// Content whose change after an approval voids the approvals (SPEC section 4).
pub const MATERIAL_FIELDS: &[&str] = &[
    "title",
    "description",
    "business_justification",
    "change_type",
    "change_model",
    "priority",
    "risk_level",
    "affected_systems",
    "implementation_plan",
    "rollback_plan",
    "testing_required",
    "test_plan",
];

/// Every top-level key a change file may have, in canonical order.
pub const ALL_FIELDS: &[&str] = &[
    "id",
    "title",
    "description",
    "business_justification",
    "requester",
    "request_date",
    "change_type",
    "change_model",
    "priority",
    "urgency",
    "risk_level",
    "risk_assessment",
    "affected_systems",
    "impact_scope",
    "implementation_plan",
    "rollback_plan",
    "testing_required",
    "test_plan",
    "test_environment",
    "template",
    "template_digest",
    "proposed_policy",
    "policy_base",
    "content_signature",
    "schedule",
    "status",
    "approvals",
    "implementation",
    "review",
    "cancellation",
    "deployments",
];

impl ChangeRequest {
    /// The id as text, empty when the change has none yet.
    pub fn id_text(&self) -> String {
        self.id
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    /// The status, with a file that forgot it treated as a draft.
    pub fn status(&self) -> Status {
        self.status.unwrap_or(Status::Draft)
    }

    /// The change model, `normal` when unset.
    pub fn model(&self) -> ChangeModel {
        self.change_model.unwrap_or(ChangeModel::Normal)
    }

    /// The value of a content field as text, for comparisons and `show`.
    pub fn field_text(&self, field: &str) -> Option<String> {
        fn s<T: fmt::Display>(v: &Option<T>) -> Option<String> {
            v.as_ref().map(|v| v.to_string())
        }
        match field {
            "id" => s(&self.id),
            "title" => self.title.clone(),
            "description" => self.description.clone(),
            "business_justification" => self.business_justification.clone(),
            "requester" => self.requester.clone(),
            "request_date" => self.request_date.map(format_timestamp),
            "change_type" => self.change_type.clone(),
            "change_model" => s(&self.change_model),
            "priority" => s(&self.priority),
            "urgency" => s(&self.urgency),
            "risk_level" => s(&self.risk_level),
            "affected_systems" => {
                (!self.affected_systems.is_empty()).then(|| self.affected_systems.join(", "))
            }
            "impact_scope" => self.impact_scope.clone(),
            "implementation_plan" => self.implementation_plan.clone(),
            "rollback_plan" => self.rollback_plan.clone(),
            "testing_required" => s(&self.testing_required),
            "test_plan" => self.test_plan.clone(),
            "test_environment" => self.test_environment.clone(),
            "template" => self.template.clone(),
            "status" => s(&self.status),
            _ => None,
        }
    }

    /// Whether a required field counts as filled in (blank text counts as missing).
    pub fn has_field(&self, field: &str) -> bool {
        match field {
            "affected_systems" => self.affected_systems.iter().any(|s| !s.trim().is_empty()),
            "schedule" => self.schedule.is_some(),
            _ => self
                .field_text(field)
                .is_some_and(|text| !text.trim().is_empty()),
        }
    }

    /// Sets a content field from text, as `chg set FIELD=VALUE` and prompts give it. An
    /// empty value clears the field; `affected_systems` takes a comma-separated list.
    pub fn set_field(&mut self, field: &str, value: &str) -> Result<(), String> {
        let v = value.trim();
        let text = || (!v.is_empty()).then(|| v.to_owned());
        fn parse<T: FromStr<Err = String>>(v: &str) -> Result<Option<T>, String> {
            if v.is_empty() {
                Ok(None)
            } else {
                v.parse().map(Some)
            }
        }
        match field {
            "title" => self.title = text(),
            "description" => self.description = text(),
            "business_justification" => self.business_justification = text(),
            "change_type" => self.change_type = text(),
            "change_model" => self.change_model = parse(v)?,
            "priority" => self.priority = parse(v)?,
            "urgency" => self.urgency = parse(v)?,
            "risk_level" => self.risk_level = parse(v)?,
            "affected_systems" => {
                self.affected_systems = v
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
            "impact_scope" => self.impact_scope = text(),
            "implementation_plan" => self.implementation_plan = text(),
            "rollback_plan" => self.rollback_plan = text(),
            "testing_required" => {
                self.testing_required = match v {
                    "" => None,
                    "true" | "yes" => Some(true),
                    "false" | "no" => Some(false),
                    _ => return Err(format!("testing_required must be true or false, not `{v}`")),
                }
            }
            "test_plan" => self.test_plan = text(),
            "test_environment" => self.test_environment = text(),
            _ => {
                let hint = crate::finding::suggest(field, CONTENT_FIELDS.iter().copied())
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                return Err(
                    if field == "risk_assessment" || field.starts_with("risk_assessment.") {
                        "the risk questionnaire is answered with `--answer ID=yes|no` (repeatable)"
                            .into()
                    } else if ALL_FIELDS.contains(&field) {
                        format!(
                            "`{field}` is written by chg transitions and cannot be set directly"
                        )
                    } else {
                        format!("`{field}` is not a change field{hint}")
                    },
                );
            }
        }
        Ok(())
    }

    /// A digest of the material content (SPEC section 4): `sha256:` and the hex SHA-256 of
    /// one line per field of [`MATERIAL_FIELDS`], in that order, `field=<JSON value>`, with
    /// `null` for an absent field and a JSON array of strings for `affected_systems`. The id,
    /// status, schedule and approvals are not part of it: renumbering or scheduling an
    /// approved change keeps its approvals valid.
    pub fn material_digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for f in MATERIAL_FIELDS {
            let value = if *f == "affected_systems" {
                serde_json::to_string(&self.affected_systems)
            } else {
                serde_json::to_string(&self.field_text(f))
            }
            .expect("strings serialise");
            h.update(f.as_bytes());
            h.update(b"=");
            h.update(value.as_bytes());
            h.update(b"\n");
        }
        // Added only when present, so that the digests of every other change stay as they
        // were before policy proposals existed.
        for (key, value) in [
            ("template", &self.template),
            ("template_digest", &self.template_digest),
            ("policy_base", &self.policy_base),
        ] {
            if let Some(v) = value {
                let value = serde_json::to_string(v).expect("strings serialise");
                h.update(key.as_bytes());
                h.update(b"=");
                h.update(value.as_bytes());
                h.update(b"\n");
            }
        }
        if let Some(answers) = &self.risk_assessment {
            let value = serde_json::to_string(answers).expect("booleans serialise");
            h.update(b"risk_assessment=");
            h.update(value.as_bytes());
            h.update(b"\n");
        }
        if let Some(files) = &self.proposed_policy {
            let value = serde_json::to_string(files).expect("strings serialise");
            h.update(b"proposed_policy=");
            h.update(value.as_bytes());
            h.update(b"\n");
        }
        format!("sha256:{}", crate::text::hex(&h.finalize()))
    }

    /// The approvals (by index) that do not vouch for this version's material content: their
    /// digest names other content, or they have none. An approval without a digest proves
    /// nothing about what was approved (deleting the line must not revive a stale approval),
    /// so it counts only as history: on a rejected, closed or cancelled change.
    pub fn stale_approvals(&self) -> Vec<usize> {
        let mut now = None;
        let history = self.status().is_terminal();
        // A withdrawn approval vouches for nothing, stale or not.
        self.standing_approvals()
            .map(|(i, _)| i)
            .filter(|&i| {
                let a = &self.approvals[i];
                match &a.digest {
                    Some(d) => *d != *now.get_or_insert_with(|| self.material_digest()),
                    None => !history,
                }
            })
            .collect()
    }

    /// Each withdrawal record (by index) with the approval it withdraws: the latest approval
    /// before it by the same person (emails compare without case) for the same role that
    /// is not already withdrawn; `None` when there is none (a record chg never writes).
    /// The one reading of withdrawals: every count of approvals goes through
    /// [`ChangeRequest::standing_approvals`], which is built on it.
    pub fn withdrawals(&self) -> Vec<(usize, Option<usize>)> {
        let mut standing: Vec<usize> = Vec::new();
        let mut out = Vec::new();
        for (i, a) in self.approvals.iter().enumerate() {
            match a.decision {
                Decision::Approved => standing.push(i),
                Decision::Rejected => {}
                Decision::Withdrawn => {
                    let found = standing.iter().rposition(|&j| {
                        let b = &self.approvals[j];
                        b.role == a.role && b.by.eq_ignore_ascii_case(&a.by)
                    });
                    out.push((i, found.map(|k| standing.remove(k))));
                }
            }
        }
        out
    }

    /// The approvals (by index) that stand: decision approved, and not withdrawn by a later
    /// record of the same person for the same role. Whether they count for a role (member,
    /// digest, signature) is the rules' to judge.
    pub fn standing_approvals(&self) -> impl Iterator<Item = (usize, &Approval)> {
        let withdrawn: Vec<usize> = self
            .withdrawals()
            .into_iter()
            .filter_map(|(_, a)| a)
            .collect();
        self.approvals
            .iter()
            .enumerate()
            .filter(move |(i, a)| a.decision == Decision::Approved && !withdrawn.contains(i))
    }

    /// Sets one content field (of [`CONTENT_FIELDS`]) to `from`'s value, as it is.
    pub fn copy_field(&mut self, from: &ChangeRequest, field: &str) {
        match field {
            "title" => self.title = from.title.clone(),
            "description" => self.description = from.description.clone(),
            "business_justification" => {
                self.business_justification = from.business_justification.clone();
            }
            "change_type" => self.change_type = from.change_type.clone(),
            "change_model" => self.change_model = from.change_model,
            "priority" => self.priority = from.priority,
            "urgency" => self.urgency = from.urgency,
            "risk_level" => self.risk_level = from.risk_level,
            "affected_systems" => self.affected_systems = from.affected_systems.clone(),
            "impact_scope" => self.impact_scope = from.impact_scope.clone(),
            "implementation_plan" => self.implementation_plan = from.implementation_plan.clone(),
            "rollback_plan" => self.rollback_plan = from.rollback_plan.clone(),
            "testing_required" => self.testing_required = from.testing_required,
            "test_plan" => self.test_plan = from.test_plan.clone(),
            "test_environment" => self.test_environment = from.test_environment.clone(),
            "risk_assessment" => self.risk_assessment = from.risk_assessment.clone(),
            _ => {}
        }
    }

    /// The content fields (of [`CONTENT_FIELDS`]) whose values differ.
    pub fn content_differences(&self, other: &ChangeRequest) -> Vec<&'static str> {
        let mut out = self.differences(CONTENT_FIELDS, other);
        if self.risk_assessment != other.risk_assessment {
            out.push("risk_assessment");
        }
        out
    }

    /// The material fields whose values differ between two versions of a change (the risk
    /// answers included: they are material, SPEC section 11, though kept out of
    /// [`MATERIAL_FIELDS`], whose order the digest follows).
    pub fn material_differences(&self, other: &ChangeRequest) -> Vec<&'static str> {
        let mut out = self.differences(MATERIAL_FIELDS, other);
        if self.risk_assessment != other.risk_assessment {
            out.push("risk_assessment");
        }
        out
    }

    fn differences(&self, fields: &[&'static str], other: &ChangeRequest) -> Vec<&'static str> {
        fields
            .iter()
            .copied()
            .filter(|f| {
                if *f == "affected_systems" {
                    self.affected_systems != other.affected_systems
                } else {
                    self.field_text(f) != other.field_text(f)
                }
            })
            .collect()
    }
}

/// A complete, valid change pending approval, for unit tests across modules.
#[cfg(test)]
pub(crate) fn sample_change() -> ChangeRequest {
    let ts = |s: &str| s.parse::<Timestamp>().unwrap();
    ChangeRequest {
        id: Some("CHG-2025-001".parse().unwrap()),
        title: Some("t".into()),
        description: Some("d".into()),
        business_justification: Some("j".into()),
        requester: Some("alice@example.com".into()),
        request_date: Some(ts("2025-03-01T09:00:00Z")),
        change_type: Some("feature".into()),
        change_model: Some(ChangeModel::Normal),
        priority: Some(Priority::Low),
        risk_level: Some(RiskLevel::Low),
        affected_systems: vec!["api".into()],
        implementation_plan: Some("p".into()),
        rollback_plan: Some("r".into()),
        status: Some(Status::PendingApproval),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_pad() {
        let id: ChangeId = "CHG-2025-001".parse().unwrap();
        assert_eq!(id.to_string(), "CHG-2025-001");
        assert_eq!(id.number(), 1);
        let big: ChangeId = "CHG-2025-1000".parse().unwrap();
        assert_eq!(big.to_string(), "CHG-2025-1000");
        assert_eq!(
            ChangeId::new("OPS", 2026, 7).unwrap().to_string(),
            "OPS-2026-007"
        );
    }

    #[test]
    fn hostile_or_sloppy_ids_are_refused() {
        for bad in [
            "../../etc/passwd",
            "CHG-2025-01",
            "CHG-2025-0001",
            "CHG-25-001",
            "CHG-2025-001/..",
            "CHG-2025-001.yaml",
            "chg 2025 001",
            "-2025-001",
            "CHG-2025-",
            "",
            "CHG-2025-1234567890",
        ] {
            assert!(bad.parse::<ChangeId>().is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn durations_parse_and_print() {
        assert_eq!("1h".parse::<Duration>().unwrap().as_secs(), 3600);
        assert_eq!("7d".parse::<Duration>().unwrap().as_secs(), 7 * 86400);
        assert_eq!("1h30m".parse::<Duration>().unwrap().as_secs(), 5400);
        assert_eq!(Duration::from_secs(86400).to_string(), "1d");
        assert_eq!(Duration::from_secs(5400).to_string(), "90m");
        for bad in ["", "h", "10", "1x", "1.5h", "99999999999999999999d"] {
            assert!(bad.parse::<Duration>().is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn material_differences_ignore_schedule_and_urgency() {
        let a = ChangeRequest {
            title: Some("A".into()),
            ..Default::default()
        };
        let mut b = a.clone();
        b.urgency = Some(Urgency::High);
        assert!(a.material_differences(&b).is_empty());
        b.title = Some("B".into());
        assert_eq!(a.material_differences(&b), vec!["title"]);
    }
}
