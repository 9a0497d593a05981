//! What is recorded on a change as it moves: its schedule, decisions, implementation,
//! review, cancellation, deployments and the record of who wrote its content.

use std::fmt;

use jiff::Timestamp;
use serde::Serialize;

use super::{Decision, Outcome, format_timestamp, ser_opt_ts, ser_ts};

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
    ///
    /// [`ChangeRequest::withdrawals`]: super::ChangeRequest::withdrawals
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
    ///
    /// [`ChangeRequest::material_digest`]: super::ChangeRequest::material_digest
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

impl Approval {
    /// `by`'s `decision` in `role` at `at`, with no comment, condition, digest or
    /// signature.
    pub fn new(by: String, role: String, decision: Decision, at: Timestamp) -> Approval {
        Approval {
            by,
            role,
            decision,
            at,
            comments: None,
            conditions: Vec::new(),
            digest: None,
            signature: None,
            attested_by: None,
            attested_via: None,
        }
    }
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
