//! The API's request bodies, answers and query parameters, with the descriptions the
//! OpenAPI document shows for each field.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

/// A new change: the seed's fields and the rest of the change's content fields.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// One line.
    pub title: Option<String>,
    /// What changes.
    pub description: Option<String>,
    /// Why.
    pub business_justification: Option<String>,
    /// One of the policy's change types.
    pub change_type: Option<String>,
    /// standard, normal (the default) or emergency.
    pub change_model: Option<String>,
    /// critical, high, medium, low.
    pub priority: Option<String>,
    /// emergency, high, medium, low.
    pub urgency: Option<String>,
    /// low, medium, high, critical.
    pub risk_level: Option<String>,
    /// Systems touched.
    #[serde(default)]
    pub affected_systems: Vec<String>,
    /// Who or what is affected.
    pub impact_scope: Option<String>,
    /// How it will be done.
    pub implementation_plan: Option<String>,
    /// How it will be undone.
    pub rollback_plan: Option<String>,
    /// Whether testing is part of the plan.
    pub testing_required: Option<bool>,
    /// How it will be tested.
    pub test_plan: Option<String>,
    /// Where it will be tested.
    pub test_environment: Option<String>,
    /// Answers to the policy's risk questionnaire, by question id.
    pub risk_assessment: Option<std::collections::BTreeMap<String, bool>>,
    /// File it as a draft (not yet submitted for approval).
    #[serde(default)]
    pub draft: bool,
}

/// The answer to a new change.
#[derive(Debug, Serialize, ToSchema)]
pub struct Created {
    /// The id it was filed under.
    pub change_request_id: String,
    /// pending_approval (or draft).
    pub status: String,
    /// The roles whose approval it still needs.
    pub approvers: Vec<String>,
    /// The policy's approval timeout for its priority (`24h`), if any.
    pub estimated_approval_time: Option<String>,
    /// The commit that filed it.
    pub commit: String,
}

/// A decision: `approved: false` rejects (with `comments` saying why).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    /// true approves, false rejects.
    pub approved: bool,
    /// A comment (required when rejecting).
    pub comments: Option<String>,
    /// Conditions attached to an approval.
    #[serde(default)]
    pub conditions: Vec<String>,
    /// The role decided for; inferred when the person holds exactly one the change needs.
    pub role: Option<String>,
    /// Where the policy requires the decision signed: the armored SSHSIG (namespace
    /// `chg`) of the statement from `GET …/statement`, made with the person's own key.
    pub signature: Option<String>,
    /// The `at` of that statement (RFC 3339): the decision is recorded at this time.
    pub at: Option<String>,
    /// A passkey's answer over the statement's `signed_data` (SPEC 12.1):
    /// `{client_data_json, authenticator_data, signature, credential_id?}`, base64url, as
    /// `navigator.credentials.get()` returns them. `at` may then be left out: the server
    /// knows it from the challenge it handed out (within ten minutes, on this server).
    pub passkey: Option<Value>,
}

/// The answer to a decision.
#[derive(Debug, Serialize, ToSchema)]
pub struct Decided {
    /// The change.
    pub change_request_id: String,
    /// Its status after the decision.
    pub status: String,
    /// The role decided for.
    pub approved_by: String,
    /// Who decided.
    pub approver: String,
    /// approved, rejected.
    pub decision: String,
    /// When.
    pub approved_at: String,
    /// `approval` (roles still needed), `implementation`, or `closed`.
    pub next_step: String,
    /// The roles still needed.
    pub waiting_for: Vec<String>,
    /// The commit.
    pub commit: String,
    /// How the record is proven: `signature` (the person's own: an SSH key or a passkey),
    /// `attested` (the server's key in the person's stead, where signing.server_attests
    /// allows it) or `none`.
    pub proof: String,
}

/// Start implementation.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImplementRequest {
    /// Must be the approved plan, if given (a different plan is an edit, which voids
    /// approvals: make it before approval).
    pub implementation_plan: Option<String>,
    /// When implementation starts (RFC 3339): schedules the change there first when it
    /// has no window starting then (two hours long unless it had one).
    pub scheduled_time: Option<String>,
    /// Whether it must run inside a maintenance window of the policy.
    pub maintenance_window: Option<bool>,
}

/// The answer to implement.
#[derive(Debug, Serialize, ToSchema)]
pub struct Implemented {
    /// The change.
    pub change_request_id: String,
    /// implementing (or approved, when the window starts later).
    pub status: String,
    /// When implementation started (null when only scheduled).
    pub implementation_started: Option<String>,
    /// The end of the window.
    pub estimated_completion: Option<String>,
    /// The commits made (a schedule, then implement).
    pub commits: Vec<String>,
}

/// Finish implementation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    /// completed, failed or rolled_back.
    pub status: String,
    /// Evidence of testing.
    pub test_results: Option<String>,
    /// The post-implementation review (the policy requires one for some changes).
    pub post_implementation_review: Option<String>,
}

/// The answer to complete.
#[derive(Debug, Serialize, ToSchema)]
pub struct Completed {
    /// The change.
    pub change_request_id: String,
    /// completed, failed or rolled_back.
    pub status: String,
    /// When.
    pub completed_at: Option<String>,
    /// When the change is next reviewed (a month after completion), as a date.
    pub next_review: Option<String>,
    /// The commit.
    pub commit: String,
}

/// One step of a change's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryItem {
    /// When.
    pub timestamp: String,
    /// created, submitted, approved, rejected, withdrawn, edited, scheduled, implemented,
    /// completed, cancelled, renumbered, deployed.
    pub action: String,
    /// Who (email).
    pub user: String,
    /// The commit's subject, and the role where there is one.
    pub details: String,
    /// The commit.
    pub commit: String,
    /// What the audit says of the step: `ok` or its problems.
    pub audit: String,
}

/// A change's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct History {
    /// The change.
    pub change_id: String,
    /// Oldest first.
    pub history: Vec<HistoryItem>,
}

/// The gate's verdict.
#[derive(Debug, Serialize, ToSchema)]
pub struct Gate {
    /// Whether the change may be deployed now.
    pub open: bool,
    /// Why not.
    pub reasons: Vec<Reason>,
}

/// One reason.
#[derive(Debug, Serialize, ToSchema)]
pub struct Reason {
    /// The rule.
    pub rule: String,
    /// One sentence.
    pub message: String,
}

/// What to sign.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatementAnswer {
    /// The statement's text: what `ssh-keygen -Y sign -n chg` signs.
    pub statement: String,
    /// The SSHSIG signed-data blob of the statement, base64url (a passkey's challenge).
    pub signed_data: String,
    /// The time the statement records; send it back as `at` with the signature.
    pub at: String,
    /// The role.
    pub role: String,
}

/// Filters of the list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// A status (pending_approval, approved, …; `pending` and `completed` are read as
    /// pending_approval and closed).
    pub status: Option<String>,
    /// A change type.
    #[serde(rename = "type")]
    pub change_type: Option<String>,
    /// A priority.
    pub priority: Option<String>,
    /// An affected system.
    pub system: Option<String>,
    /// `me` or an email: the changes awaiting that person's approval.
    pub awaiting: Option<String>,
    /// Only changes whose approval is overdue.
    pub overdue: Option<bool>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
    /// Skip this many.
    pub offset: Option<usize>,
}

/// The statement asked for.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StatementParams {
    /// approve or reject.
    pub action: String,
    /// The role.
    pub role: Option<String>,
}

/// The report's period.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReportParams {
    /// `2025`, `2025-Q1` or `2025-01`; all time when absent.
    pub period: Option<String>,
}
