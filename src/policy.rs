//! The policy (`policy/policy.yaml`): who approves what, which fields are required, windows.
//!
//! Every rule is data. The file is read with serde-saphyr (strict booleans, duplicate keys
//! refused, budgets against hostile input) into a raw form that keeps the place of every name,
//! then checked for self-consistency; only a policy without errors is handed to commands.

use std::collections::BTreeMap;

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::finding::{Finding, suggest};
use crate::model::{
    ALL_FIELDS, ChangeModel, ChangeRequest, Duration, Outcome, Priority, RiskLevel, valid_prefix,
};
use crate::yaml::Pos;

pub mod notifications;

/// Where the policy lives in a store.
pub const POLICY_PATH: &str = "policy/policy.yaml";

/// The policy `chg init` writes: the project's seed rules (SPEC section 3).
pub const DEFAULT_POLICY: &str = include_str!("default_policy.yaml");

/// The default policy as `chg init` writes it at `now`: its holiday freeze is the coming
/// (or current) year-end one, not one that has already ended.
pub fn default_policy_at(now: jiff::Timestamp) -> String {
    let today = now.to_zoned(jiff::tz::TimeZone::UTC).date();
    // Before 4 January, the freeze that began last December is still the current one.
    let year = if (today.month(), today.day()) < (1, 4) {
        today.year() - 1
    } else {
        today.year()
    };
    DEFAULT_POLICY
        .replace("2025-12-20T00:00:00Z", &format!("{year}-12-20T00:00:00Z"))
        .replace(
            "2026-01-04T00:00:00Z",
            &format!("{}-01-04T00:00:00Z", year + 1),
        )
}

/// Approvals needed for one priority (or for the emergency model).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalRule {
    /// Every one of these roles must approve.
    pub roles: Vec<String>,
    /// How long approval should take (a target for reports, not a hard limit).
    pub timeout: Option<Duration>,
}

/// A recurring window in which risky changes may run.
#[derive(Debug, Clone, PartialEq)]
pub struct MaintenanceWindow {
    /// Days on which the window opens.
    pub days: Vec<Weekday>,
    /// Local opening time.
    pub start: Time,
    /// Local closing time; at or before `start` means the window runs past midnight.
    pub end: Time,
    /// IANA zone name, as written.
    pub timezone_name: String,
    /// The zone.
    pub timezone: TimeZone,
}

/// A period in which no normal or standard change may be implemented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Freeze {
    /// First instant of the freeze.
    pub start: Timestamp,
    /// First instant after the freeze.
    pub end: Timestamp,
    /// Why, for messages.
    pub reason: String,
}

/// Report targets.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    /// Share of closed changes that succeeded.
    pub success_rate: Option<f64>,
    /// Largest acceptable share of failed changes.
    pub failure_rate: Option<f64>,
    /// Largest acceptable share of rolled-back changes.
    pub rollback_rate: Option<f64>,
    /// Largest acceptable share of emergency changes.
    pub emergency_rate: Option<f64>,
    /// Longest acceptable average approval time, critical priority.
    pub approval_time_critical: Option<Duration>,
    /// Longest acceptable average approval time, high priority.
    pub approval_time_high: Option<Duration>,
    /// Longest acceptable average approval time, medium priority.
    pub approval_time_medium: Option<Duration>,
    /// Longest acceptable average approval time, low priority.
    pub approval_time_low: Option<Duration>,
    /// Longest acceptable average implementation time.
    pub implementation_time: Option<Duration>,
}

/// What a conflict does: `warn` (reported, allowed) or `block` (refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConflictLevel {
    /// Reported; the step goes ahead.
    Warn,
    /// The step is refused.
    Block,
}

/// The `conflicts:` section: what each kind of conflict does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Conflicts {
    /// Two changes to a common affected system with overlapping schedules.
    pub overlap: ConflictLevel,
    /// A change flagged `maintenance_window` scheduled outside every maintenance window.
    pub outside_window: ConflictLevel,
    /// A normal or standard change scheduled into a freeze.
    pub freeze: ConflictLevel,
}

impl Default for Conflicts {
    fn default() -> Self {
        Conflicts {
            overlap: ConflictLevel::Warn,
            outside_window: ConflictLevel::Block,
            freeze: ConflictLevel::Block,
        }
    }
}

/// A checked policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Id prefix (`CHG`).
    pub id_prefix: String,
    /// Allowed `change_type` values.
    pub change_types: Vec<String>,
    /// Fields every submitted change must fill in.
    pub required_fields: Vec<String>,
    /// Change types that need `testing_required: true` and a test plan.
    pub testing_required_for: Vec<String>,
    /// Role name to member emails.
    pub roles: BTreeMap<String, Vec<String>>,
    /// Approval rules by priority.
    pub approvals: BTreeMap<Priority, ApprovalRule>,
    /// Approval rule for the emergency model.
    pub emergency_approvals: Option<ApprovalRule>,
    /// Standard changes need no approval.
    pub standard_changes_preapproved: bool,
    /// Which duties one person may combine on one change (`segregation_of_duties`).
    pub segregation_of_duties: Segregation,
    /// Retroactive approval deadline after an emergency implementation starts.
    pub emergency_approve_within: Option<Duration>,
    /// Post-implementation review deadline for emergency changes.
    pub emergency_review_within: Option<Duration>,
    /// The roles whose members may file a change as an emergency or relabel one so
    /// (`emergency.declared_by`); `None`: anyone may, as before.
    pub emergency_declared_by: Option<Vec<String>>,
    /// `close` needs a review for these outcomes.
    pub review_outcomes: Vec<Outcome>,
    /// … these models.
    pub review_models: Vec<ChangeModel>,
    /// … these risk levels.
    pub review_risks: Vec<RiskLevel>,
    /// Maintenance windows.
    pub maintenance: Vec<MaintenanceWindow>,
    /// Freeze windows.
    pub freezes: Vec<Freeze>,
    /// Report targets.
    pub targets: Targets,
    /// What scheduling conflicts do.
    pub conflicts: Conflicts,
    /// Signed records (SPEC section 9), when the policy asks for them.
    pub signing: Option<SigningPolicy>,
    /// The risk questionnaire (SPEC section 11), when the policy has one.
    pub risk: Option<RiskQuestionnaire>,
    /// The standard-change catalogue (`policy/templates/NAME.yaml`), by name; attached by
    /// whoever read the policy ([`Policy::attach_templates`]).
    pub templates: BTreeMap<String, crate::templates::Template>,
    /// Set by the audit for a commit whose policy had no catalogue: standard changes were
    /// then self-declared, and history is judged by the rules of its day.
    pub legacy_standard_changes: bool,
    /// Earlier versions of the templates, for changes filed under a version changed since
    /// (they are judged by the version they were filed under); set by whoever read the policy.
    pub template_history: Option<std::sync::Arc<crate::templates::TemplateHistory>>,
    /// Roles whose approval every change under `policy/` needs (SPEC section 10); `None`
    /// when the policy is not governed (policy changes are notes, as before).
    pub governance: Option<Vec<String>>,
    /// Notifications and approval deadlines (SPEC section 13), when configured.
    pub notifications: Option<crate::policy::notifications::Notifications>,
    /// This policy with the questionnaire made optional, made once when first asked for
    /// ([`Policy::for_intake`]).
    lenient: Lenient,
}

/// The lenient twin of a policy, made at most once; a clone starts without one (the clone
/// may be changed after, and its twin must follow it).
#[derive(Default)]
struct Lenient(std::sync::OnceLock<std::sync::Arc<Policy>>);

impl Clone for Lenient {
    fn clone(&self) -> Self {
        Lenient::default()
    }
}

impl std::fmt::Debug for Lenient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lenient")
    }
}

/// One pair of duties segregation of duties may keep apart on one change: a key of the
/// policy's `segregation_of_duties` mapping (`false` forbids it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SodCheck {
    /// The requester (or whoever history shows filed or wrote the content) approves.
    RequesterApproves,
    /// One person approves in two roles (`false`: one person fills one role per change;
    /// the key is the contract's spelling).
    OneRolePerPerson,
    /// Someone with a standing approval of the change implements it.
    ApproverImplements,
    /// The requester (or whoever history shows filed it) implements it.
    RequesterImplements,
    /// The implementer writes the post-implementation review.
    ImplementerReviews,
}

impl SodCheck {
    /// Every check, in the policy's order.
    pub const ALL: [SodCheck; 5] = [
        SodCheck::RequesterApproves,
        SodCheck::OneRolePerPerson,
        SodCheck::ApproverImplements,
        SodCheck::RequesterImplements,
        SodCheck::ImplementerReviews,
    ];

    /// The policy's key (`approver_implements`).
    pub fn key(self) -> &'static str {
        match self {
            SodCheck::RequesterApproves => "requester_approves",
            SodCheck::OneRolePerPerson => "one_role_per_person",
            SodCheck::ApproverImplements => "approver_implements",
            SodCheck::RequesterImplements => "requester_implements",
            SodCheck::ImplementerReviews => "implementer_reviews",
        }
    }

    /// The key in words (`approver implements`), for people and evidence.
    pub fn label(self) -> &'static str {
        match self {
            SodCheck::RequesterApproves => "requester approves",
            SodCheck::OneRolePerPerson => "one person in two roles",
            SodCheck::ApproverImplements => "approver implements",
            SodCheck::RequesterImplements => "requester implements",
            SodCheck::ImplementerReviews => "implementer reviews",
        }
    }
}

/// The policy's `segregation_of_duties`: which duties one person may not combine on one
/// change. `true` forbids what it always did (the requester approving, one person in two
/// roles); `false` forbids nothing; a mapping names each check, and a key it leaves out
/// keeps its `true` meaning, so that spelling out one check never loosens the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segregation {
    forbidden: [bool; 5],
}

impl Segregation {
    /// What `segregation_of_duties: true` (the default) or `false` means.
    pub fn from_flag(on: bool) -> Segregation {
        let mut s = Segregation {
            forbidden: [false; 5],
        };
        if on {
            s.forbid(SodCheck::RequesterApproves, true);
            s.forbid(SodCheck::OneRolePerPerson, true);
        }
        s
    }

    /// Whether the policy forbids `check`.
    pub fn forbids(&self, check: SodCheck) -> bool {
        self.forbidden[check as usize]
    }

    /// Sets whether `check` is forbidden.
    pub fn forbid(&mut self, check: SodCheck, forbidden: bool) {
        self.forbidden[check as usize] = forbidden;
    }

    /// The checks forbidden, in the policy's order.
    pub fn forbidden(&self) -> Vec<SodCheck> {
        SodCheck::ALL
            .into_iter()
            .filter(|c| self.forbids(*c))
            .collect()
    }
}

impl Default for Segregation {
    fn default() -> Self {
        Segregation::from_flag(true)
    }
}

/// The policy's `risk` questionnaire: yes/no questions with weights, and the lowest score
/// of each level above `low`.
#[derive(Debug, Clone, Serialize)]
pub struct RiskQuestionnaire {
    /// The questions, in the policy's order.
    pub questions: Vec<RiskQuestion>,
    /// The lowest score for medium, high and critical.
    pub levels: BTreeMap<RiskLevel, u32>,
    /// Set for a change submitted before the policy asked the questionnaire
    /// ([`Policy::for_intake`]): answers are then optional, and checked where given.
    #[serde(skip)]
    pub waived: bool,
}

/// One question of the questionnaire.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskQuestion {
    /// The answer's key in `risk_assessment`.
    pub id: String,
    /// The question as asked.
    pub ask: String,
    /// What a yes adds to the score.
    pub weight: u32,
}

impl RiskQuestionnaire {
    /// The problem of a change that answers none of the questions (the finding's text is
    /// this exactly, so a reader can tell it from the others).
    pub fn unanswered_message(&self, id: &str) -> String {
        let ids: Vec<&str> = self.questions.iter().map(|x| x.id.as_str()).collect();
        format!(
            "the policy's risk questionnaire is not answered ({}); answer each yes or no: `chg set {id} --answer {}=yes|no …` (or in `chg edit {id}`)",
            ids.join(", "),
            ids.first().copied().unwrap_or("QUESTION")
        )
    }

    /// The score of `answers` (the weights of the questions answered yes).
    pub fn score(&self, answers: &BTreeMap<String, bool>) -> u32 {
        self.questions
            .iter()
            .filter(|q| answers.get(&q.id) == Some(&true))
            .map(|q| q.weight)
            .sum()
    }

    /// The level a score gives: the highest whose lowest score it reaches, else low.
    pub fn level(&self, score: u32) -> RiskLevel {
        self.levels
            .iter()
            .filter(|(_, min)| score >= **min)
            .map(|(l, _)| *l)
            .max()
            .unwrap_or(RiskLevel::Low)
    }
}

/// The policy's `signing` section, with the allowed signers file once it is read.
#[derive(Debug, Clone)]
pub struct SigningPolicy {
    /// The allowed signers file, relative to the store (`policy/allowed_signers`).
    pub allowed_signers: String,
    /// Actions whose records must be signed.
    pub required_for: Vec<String>,
    /// The file's keys, attached by whoever read the policy ([`Policy::attach_signers`]);
    /// `None` until then, and then nothing verifies.
    pub signers: Option<crate::signing::Signers>,
    /// Where `chg serve` may sign a decision with its own key instead of the person's
    /// (SPEC 12.1, last point); `None`: never.
    pub server_attests: Option<ServerAttests>,
}

/// `signing.server_attests`: the decisions the server may attest for people who
/// authenticated to it, by role and risk level, and the principal its key is listed under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAttests {
    /// The roles whose decisions it may attest.
    pub roles: Vec<String>,
    /// The highest risk level of a change it may attest a decision on.
    pub max_risk: RiskLevel,
    /// The allowed signers principal the server's key is listed under.
    pub signer: String,
}

pub use crate::signing::DEFAULT_ATTESTING_SIGNER;

// ---- the file as written, with places ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    id_prefix: Option<Spanned<String>>,
    change_types: Vec<Spanned<String>>,
    #[serde(default)]
    required_fields: Vec<Spanned<String>>,
    #[serde(default)]
    testing: RawTesting,
    roles: BTreeMap<String, Spanned<Vec<String>>>,
    approvals: RawApprovals,
    #[serde(default = "yes")]
    standard_changes_preapproved: bool,
    #[serde(default)]
    segregation_of_duties: RawSegregation,
    #[serde(default)]
    emergency: RawEmergency,
    #[serde(default)]
    review_required_for: RawReview,
    #[serde(default)]
    windows: RawWindows,
    #[serde(default)]
    targets: Targets,
    #[serde(default)]
    conflicts: Conflicts,
    #[serde(default)]
    signing: Option<Spanned<RawSigning>>,
    #[serde(default)]
    governance: Option<Spanned<RawGovernance>>,
    #[serde(default)]
    risk: Option<Spanned<RawRisk>>,
    #[serde(default)]
    notifications: Option<Spanned<crate::policy::notifications::RawNotifications>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRisk {
    questions: Vec<Spanned<RiskQuestion>>,
    levels: BTreeMap<String, Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGovernance {
    roles: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSigning {
    allowed_signers: Spanned<String>,
    #[serde(default)]
    required_for: Vec<Spanned<String>>,
    server_attests: Option<Spanned<RawServerAttests>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServerAttests {
    roles: Vec<Spanned<String>>,
    max_risk: Spanned<RiskLevel>,
    signer: Option<Spanned<String>>,
}

/// `segregation_of_duties` as written: a bool, or a mapping whose keys keep their places
/// (checked by [`Checker::segregation`], so an unknown key is reported where it is).
enum RawSegregation {
    Flag(bool),
    Map(Vec<(Spanned<String>, bool)>),
}

impl Default for RawSegregation {
    fn default() -> Self {
        RawSegregation::Flag(true)
    }
}

impl<'de> Deserialize<'de> for RawSegregation {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawSegregation;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("true, false, or a mapping of checks to true or false")
            }
            fn visit_bool<E>(self, v: bool) -> Result<RawSegregation, E> {
                Ok(RawSegregation::Flag(v))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawSegregation, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = map.next_key::<Spanned<String>>()? {
                    out.push((k, map.next_value::<bool>()?));
                }
                Ok(RawSegregation::Map(out))
            }
        }
        d.deserialize_any(V)
    }
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTesting {
    #[serde(default)]
    required_for: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApprovals {
    emergency: Option<Spanned<RawRule>>,
    critical: Option<Spanned<RawRule>>,
    high: Option<Spanned<RawRule>>,
    medium: Option<Spanned<RawRule>>,
    low: Option<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    roles: Vec<Spanned<String>>,
    timeout: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEmergency {
    approve_within: Option<Duration>,
    review_within: Option<Duration>,
    declared_by: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawReview {
    #[serde(default)]
    outcomes: Vec<Outcome>,
    #[serde(default)]
    change_models: Vec<ChangeModel>,
    #[serde(default)]
    risk_levels: Vec<RiskLevel>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWindows {
    #[serde(default)]
    maintenance: Vec<Spanned<RawMaintenance>>,
    #[serde(default)]
    freeze: Vec<Spanned<RawFreeze>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMaintenance {
    days: Vec<Spanned<String>>,
    start: Spanned<String>,
    end: Spanned<String>,
    #[serde(default)]
    timezone: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFreeze {
    start: Spanned<String>,
    end: Spanned<String>,
    #[serde(default)]
    reason: Option<String>,
}

fn pos(loc: &serde_saphyr::Location) -> Option<Pos> {
    (loc.line() > 0).then(|| Pos {
        line: u32::try_from(loc.line()).unwrap_or(u32::MAX),
        column: u32::try_from(loc.column()).unwrap_or(u32::MAX),
    })
}

fn at<T>(s: &Spanned<T>) -> Option<Pos> {
    pos(&s.referenced)
}

/// Options for reading chg's own YAML with serde-saphyr: strict, bounded, no snippets.
pub fn saphyr_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_events = 200_000;
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    options.with_snippet = false;
    options.budget = Some(budget);
    options
}

/// A serde-saphyr error as one finding with its place.
pub fn saphyr_finding(file: &str, err: &serde_saphyr::Error) -> Finding {
    let place = err.location().and_then(|l| pos(&l));
    // Messages that speak of the parser's settings are said in chg's words.
    if let serde_saphyr::Error::DuplicateMappingKey { key, .. } = err.without_snippet() {
        let message = match key {
            Some(k) => format!("`{k}` appears twice in one mapping; keep one of them"),
            None => "a key appears twice in one mapping; keep one of them".to_owned(),
        };
        return Finding::error(file, place, "yaml", message);
    }
    let message = err.without_snippet().to_string();
    // The library appends " at line L column C"; the place is already in the finding.
    let message = match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message,
    };
    Finding::error(
        file,
        place,
        "yaml",
        message.lines().next().unwrap_or("").trim().to_owned(),
    )
}

impl Policy {
    /// The policy as it applies to a change, given whether the risk questionnaire is due
    /// from it ([`crate::standing::Standing::questionnaire_due`]). A change submitted before
    /// the policy asked the questionnaire keeps the rules of its day: its risk level was
    /// declared as the policy then asked, and answers are optional (checked where given).
    pub fn for_intake(&self, questionnaire_due: bool) -> &Policy {
        match &self.risk {
            Some(q) if !questionnaire_due && !q.waived => self.lenient.0.get_or_init(|| {
                let mut p = self.clone();
                if let Some(q) = &mut p.risk {
                    q.waived = true;
                }
                std::sync::Arc::new(p)
            }),
            _ => self,
        }
    }

    /// Reads and checks a policy. Errors come back as findings with places; warnings are
    /// returned beside a usable policy.
    pub fn parse(file: &str, text: &str) -> Result<(Policy, Vec<Finding>), Vec<Finding>> {
        let raw: RawPolicy = serde_saphyr::from_str_with_options(text, saphyr_options())
            .map_err(|e| vec![saphyr_finding(file, &e)])?;
        let mut findings = Vec::new();
        let policy = check(file, raw, &mut findings);
        if findings.iter().any(Finding::is_error) {
            return Err(findings);
        }
        Ok((policy, findings))
    }

    /// Reads the allowed signers file the `signing` section names (`read` gives a file's
    /// bytes by store path: from the work tree, or from the tree of a commit) and attaches
    /// it. Its problems come back as findings with places: a missing file, a line that is
    /// not a key, an email that is in no role.
    pub fn attach_signers(
        &mut self,
        read: impl Fn(&str) -> std::io::Result<Vec<u8>>,
    ) -> Vec<Finding> {
        let Some(signing) = &mut self.signing else {
            return Vec::new();
        };
        let file = signing.allowed_signers.clone();
        let refuse = |signing: &mut SigningPolicy, at: &str, message: String| {
            signing.signers = Some(Default::default());
            vec![Finding::error(at, None, "signature", message)]
        };
        let bytes = match read(&file) {
            Ok(b) if b.len() as u64 > crate::decode::MAX_FILE_BYTES => {
                return refuse(
                    signing,
                    &file,
                    format!(
                        "the allowed signers file is larger than chg's limit of {} bytes",
                        crate::decode::MAX_FILE_BYTES
                    ),
                );
            }
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return refuse(
                    signing,
                    POLICY_PATH,
                    format!(
                        "signing.allowed_signers names {file}, which does not exist; create it (one line per key: email, then the public key)"
                    ),
                );
            }
            Err(e) => {
                return refuse(
                    signing,
                    &file,
                    format!("the allowed signers file cannot be read: {e}"),
                );
            }
        };
        let Ok(text) = String::from_utf8(bytes) else {
            return refuse(
                signing,
                &file,
                "the allowed signers file is not UTF-8 text".to_owned(),
            );
        };
        let (signers, mut findings) = crate::signing::AllowedSigners::parse(&file, &text);
        // The server's attesting key must be its own: a key also listed for a person would
        // let that person attest decisions in anyone's name.
        if let Some(a) = &signing.server_attests {
            for (principal, fingerprint) in signers.principals().filter(|(p, _)| *p == a.signer) {
                for (other, _) in signers
                    .principals()
                    .filter(|(p, f)| *f == fingerprint && *p != principal)
                {
                    findings.push(Finding::error(
                        &file,
                        None,
                        "signature",
                        format!(
                            "key {fingerprint} is listed for the server's signer {} and for {}: the key that attests decisions (signing.server_attests) must be the server's own",
                            crate::text::ascii_escaped(principal),
                            crate::text::ascii_escaped(other)
                        ),
                    ));
                }
            }
        }
        let members: Vec<&str> = self.roles.values().flatten().map(String::as_str).collect();
        for (principal, fingerprint) in signers.principals() {
            if crate::signing::is_pattern(principal) {
                // One key for every matching email: role members' approvals included.
                let covered: Vec<&str> = members
                    .iter()
                    .copied()
                    .filter(|m| crate::signing::covers(principal, m))
                    .collect();
                if !covered.is_empty() {
                    findings.push(Finding::warning(
                        &file,
                        None,
                        "signature",
                        format!(
                            "the pattern {} lets key {fingerprint} sign for {}: anyone holding it approves as them",
                            crate::text::ascii_escaped(principal),
                            covered.join(", ")
                        ),
                    ));
                }
                continue;
            }
            // Exactly, as OpenSSH matches principals: `CM@example.com` signs for nobody
            // named cm@example.com.
            if members.contains(&principal) {
                continue;
            }
            // Anyone may sign (requesters and implementers hold no role); an email close
            // to a member's is worth a look (a typo would leave that member unable to sign).
            // Close means a typo or a look-alike (two characters at most), not a colleague
            // at the same domain (`alice@` is not `sec1@`).
            let Some(close) = members
                .iter()
                .copied()
                .map(|m| {
                    let d =
                        strsim::damerau_levenshtein(&m.to_lowercase(), &principal.to_lowercase());
                    (d, m)
                })
                .filter(|(d, _)| *d <= 2)
                .min_by_key(|(d, _)| *d)
                .map(|(_, m)| m)
            else {
                continue;
            };
            let line = text
                .lines()
                .position(|l| {
                    l.trim_start().starts_with(principal) || l.contains(&format!(",{principal}"))
                })
                .map(|n| Pos {
                    line: u32::try_from(n + 1).unwrap_or(u32::MAX),
                    column: 1,
                });
            findings.push(Finding::warning(
                &file,
                line,
                "signature",
                format!(
                    "{} (key {fingerprint}) is in no role of the policy, and close to the member {}: is it a typo?",
                    crate::text::ascii_escaped(principal),
                    crate::text::ascii_escaped(close)
                ),
            ));
        }
        signing.signers = Some(std::sync::Arc::new(signers));
        findings
    }

    /// Whether records of `action` must be signed.
    pub fn requires_signature(&self, action: &str) -> bool {
        // Withdrawing an approval undoes a signed decision: it is proven as the decision
        // was, whether or not the policy names it.
        let also = (action == "withdraw").then_some("approve");
        self.signing.as_ref().is_some_and(|s| {
            s.required_for
                .iter()
                .any(|a| a == action || Some(a.as_str()) == also)
        })
    }

    /// Whether the server may attest a decision for `role` on `change` (SPEC 12.1):
    /// `signing.server_attests` names the role, the change's risk is known and not above
    /// its `max_risk`, and it proposes no policy. `Err` says why not, in a sentence.
    pub fn server_may_attest(
        &self,
        role: &str,
        change: &ChangeRequest,
    ) -> std::result::Result<&ServerAttests, String> {
        let Some(a) = self
            .signing
            .as_ref()
            .and_then(|s| s.server_attests.as_ref())
        else {
            return Err(
                "the policy does not let the server attest decisions (signing.server_attests)"
                    .into(),
            );
        };
        // Who decides the policy decides every approval: those decisions are signed by the
        // approvers themselves, never vouched for by a token.
        if change.proposed_policy.is_some() {
            return Err("decisions on a policy proposal are never attested".into());
        }
        let risk = change.risk_level;
        if !a.roles.iter().any(|r| r == role) {
            return Err(format!(
                "signing.server_attests does not name the role {role}"
            ));
        }
        match risk {
            Some(r) if r <= a.max_risk => Ok(a),
            Some(r) => Err(format!(
                "the change's risk level is {r}, above signing.server_attests.max_risk {}",
                a.max_risk
            )),
            None => Err("the change has no risk level, so the server may not attest for it".into()),
        }
    }

    /// The allowed signers, once attached.
    pub fn signers(&self) -> Option<&crate::signing::AllowedSigners> {
        self.signing.as_ref().and_then(|s| s.signers.as_deref())
    }

    /// The default policy, checked.
    pub fn default_policy() -> Policy {
        Policy::parse(POLICY_PATH, DEFAULT_POLICY)
            .expect("the built-in policy is valid")
            .0
    }

    /// The approval rule that applies to a change: `emergency` for the emergency model,
    /// else the rule for its priority.
    pub fn rule_for(&self, change: &ChangeRequest) -> Option<&ApprovalRule> {
        if change.model() == ChangeModel::Emergency
            && let Some(rule) = &self.emergency_approvals
        {
            return Some(rule);
        }
        change.priority.and_then(|p| self.approvals.get(&p))
    }

    /// Roles whose approval the change needs; empty for pre-approved standard changes.
    pub fn required_roles(&self, change: &ChangeRequest) -> Vec<String> {
        let mut roles = if self.is_preapproved(change) && change.proposed_policy.is_none() {
            Vec::new()
        } else {
            self.rule_for(change)
                .map(|r| r.roles.clone())
                .unwrap_or_default()
        };
        // A policy change needs the governance roles on top of its priority's (SPEC 10).
        if change.proposed_policy.is_some() {
            for role in self.governance.iter().flatten() {
                if !roles.contains(role) {
                    roles.push(role.clone());
                }
            }
        }
        roles
    }

    /// Whether the change is a standard change the policy pre-approves.
    pub fn is_preapproved(&self, change: &ChangeRequest) -> bool {
        change.model() == ChangeModel::Standard
            && self.standard_changes_preapproved
            && self.template_problem(change).is_none()
    }

    /// Why a standard change does not conform to this policy's catalogue (see
    /// [`crate::templates::problem`]).
    pub fn template_problem(&self, change: &ChangeRequest) -> Option<String> {
        crate::templates::problem(
            change,
            &self.templates,
            self.template_history.as_deref(),
            self.legacy_standard_changes,
        )
    }

    /// Reads the catalogue (`files`: every file under `policy/templates/`, by store path)
    /// and attaches it; each template's problems come back as findings with places, and a
    /// template with problems is left out.
    pub fn attach_templates(&mut self, files: Vec<(String, Vec<u8>)>) -> Vec<Finding> {
        let mut findings = Vec::new();
        let mut templates = BTreeMap::new();
        let testing = |t: &str| self.testing_required_for(t);
        let requirements = crate::templates::Requirements {
            change_types: &self.change_types,
            required_fields: &self.required_fields,
            testing_for: &testing,
        };
        for (path, bytes) in files {
            let (t, f) = crate::templates::parse(&path, &bytes, &requirements);
            findings.extend(f);
            if let Some(t) = t {
                templates.insert(t.name.clone(), t);
            }
        }
        self.templates = templates;
        findings
    }

    /// Whether `email` is a member of `role`.
    pub fn is_member(&self, role: &str, email: &str) -> bool {
        self.roles
            .get(role)
            .is_some_and(|m| m.iter().any(|x| self.same_person(x, email)))
    }

    /// The roles `email` holds.
    pub fn roles_of(&self, email: &str) -> Vec<&str> {
        self.roles
            .iter()
            .filter(|(_, m)| m.iter().any(|x| self.same_person(x, email)))
            .map(|(r, _)| r.as_str())
            .collect()
    }

    /// Whether a role member's email names the acting email. With signing, exactly: a
    /// person is proven by an allowed-signers principal, which ssh-keygen matches exactly,
    /// so a key listed for `CM@example.com` must not make anyone `cm@example.com`'s role.
    /// Without signing, emails are claims either way and case is forgiven.
    fn same_person(&self, member: &str, email: &str) -> bool {
        if self.signing.is_some() {
            member == email
        } else {
            member.eq_ignore_ascii_case(email)
        }
    }

    /// Whether closing with this outcome needs a review.
    pub fn review_required(&self, change: &ChangeRequest, outcome: Outcome) -> bool {
        self.review_outcomes.contains(&outcome)
            || self.review_models.contains(&change.model())
            || change
                .risk_level
                .is_some_and(|r| self.review_risks.contains(&r))
    }

    /// Whether this change type needs testing.
    pub fn testing_required_for(&self, change_type: &str) -> bool {
        self.testing_required_for.iter().any(|t| t == change_type)
    }

    /// The freeze that contains `t`, if any.
    pub fn freeze_at(&self, t: Timestamp) -> Option<&Freeze> {
        self.freezes.iter().find(|f| f.start <= t && t < f.end)
    }

    /// The first freeze that overlaps `[start, end)`, if any.
    pub fn freeze_overlapping(&self, start: Timestamp, end: Timestamp) -> Option<&Freeze> {
        self.freezes.iter().find(|f| start < f.end && f.start < end)
    }

    /// Whether `[start, end]` lies inside one opening of a maintenance window.
    pub fn in_maintenance_window(&self, start: Timestamp, end: Timestamp) -> bool {
        self.maintenance.iter().any(|w| w.contains(start, end))
    }
}

impl MaintenanceWindow {
    /// The opening that starts on local `day`, if the window opens that weekday. Computed in
    /// the window's own zone, so 02:00 Europe/Berlin stays 02:00 across daylight saving.
    pub fn opening_on(&self, day: jiff::civil::Date) -> Option<(Timestamp, Timestamp)> {
        if !self.days.contains(&day.weekday()) {
            return None;
        }
        let close_day = if self.end <= self.start {
            day.checked_add(1.day()).ok()?
        } else {
            day
        };
        let open = day
            .to_datetime(self.start)
            .to_zoned(self.timezone.clone())
            .ok()?;
        let close = close_day
            .to_datetime(self.end)
            .to_zoned(self.timezone.clone())
            .ok()?;
        Some((open.timestamp(), close.timestamp()))
    }

    /// Whether `[start, end]` lies inside one opening of this window.
    pub fn contains(&self, start: Timestamp, end: Timestamp) -> bool {
        let date = start.to_zoned(self.timezone.clone()).date();
        // The opening that contains `start` began on its local date or, for a window past
        // midnight, the day before.
        [date.yesterday().ok(), Some(date)]
            .into_iter()
            .flatten()
            .filter_map(|day| self.opening_on(day))
            .any(|(open, close)| open <= start && end <= close)
    }
}

fn parse_weekday(s: &str) -> Option<Weekday> {
    Some(match s.to_ascii_lowercase().as_str() {
        "mon" | "monday" => Weekday::Monday,
        "tue" | "tuesday" => Weekday::Tuesday,
        "wed" | "wednesday" => Weekday::Wednesday,
        "thu" | "thursday" => Weekday::Thursday,
        "fri" | "friday" => Weekday::Friday,
        "sat" | "saturday" => Weekday::Saturday,
        "sun" | "sunday" => Weekday::Sunday,
        _ => return None,
    })
}

fn check(file: &str, raw: RawPolicy, findings: &mut Vec<Finding>) -> Policy {
    let mut c = Checker { file, findings };
    let id_prefix = c.id_prefix(&raw.id_prefix);
    let change_types = c.change_types(&raw.change_types);
    c.required_fields(&raw.required_fields);
    c.testing(&raw.testing.required_for, &change_types);
    let roles = c.roles(&raw.roles);
    let governance = raw.governance.as_ref().map(|g| c.governance(g, &roles));
    let emergency_declared_by = raw
        .emergency
        .declared_by
        .as_ref()
        .map(|list| c.known_roles("emergency.declared_by", list, &roles));
    let risk = raw.risk.as_ref().map(|r| c.risk(r));
    let signing = raw.signing.as_ref().map(|sg| c.signing(sg, &roles));
    let notifications = raw
        .notifications
        .as_ref()
        .map(|n| crate::policy::notifications::check(n, &roles, pos, |p, m| c.err(p, m)));
    let a = &raw.approvals;
    let emergency_approvals = c.approval_rule("emergency", &a.emergency, false, &roles);
    let mut approvals = BTreeMap::new();
    for (p, r) in [
        (Priority::Critical, &a.critical),
        (Priority::High, &a.high),
        (Priority::Medium, &a.medium),
        (Priority::Low, &a.low),
    ] {
        if let Some(rule) = c.approval_rule(p.as_str(), r, true, &roles) {
            approvals.insert(p, rule);
        }
    }
    let maintenance = raw
        .windows
        .maintenance
        .iter()
        .filter_map(|w| c.maintenance_window(w))
        .collect();
    let freezes = raw
        .windows
        .freeze
        .iter()
        .filter_map(|f| c.freeze(f))
        .collect();
    Policy {
        id_prefix,
        change_types,
        required_fields: raw
            .required_fields
            .iter()
            .map(|f| f.value.clone())
            .collect(),
        testing_required_for: raw
            .testing
            .required_for
            .iter()
            .map(|t| t.value.clone())
            .collect(),
        roles,
        approvals,
        emergency_approvals,
        standard_changes_preapproved: raw.standard_changes_preapproved,
        segregation_of_duties: c.segregation(&raw.segregation_of_duties),
        emergency_approve_within: raw.emergency.approve_within,
        emergency_review_within: raw.emergency.review_within,
        emergency_declared_by,
        review_outcomes: raw.review_required_for.outcomes,
        review_models: raw.review_required_for.change_models,
        review_risks: raw.review_required_for.risk_levels,
        maintenance,
        freezes,
        targets: raw.targets,
        conflicts: raw.conflicts,
        signing,
        governance,
        notifications,
        lenient: Lenient::default(),
        risk,
        templates: BTreeMap::new(),
        template_history: None,
        legacy_standard_changes: false,
    }
}

/// Fields that chg's transitions write: a policy cannot require them of a new change.
const WRITTEN_BY_TRANSITIONS: &[&str] = &[
    "approvals",
    "implementation",
    "review",
    "cancellation",
    "deployments",
];

/// The policy's self-checks, one section at a time, each error with its place.
struct Checker<'f> {
    file: &'f str,
    findings: &'f mut Vec<Finding>,
}

impl Checker<'_> {
    /// `risk`: questions with unique ids and positive weights; levels medium, high and
    /// critical, each at least the one below.
    fn risk(&mut self, raw: &Spanned<RawRisk>) -> RiskQuestionnaire {
        let mut questions: Vec<RiskQuestion> = Vec::new();
        for q in &raw.value.questions {
            let v = &q.value;
            let id_ok = !v.id.is_empty()
                && v.id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !id_ok {
                self.err(
                    at(q),
                    format!(
                        "risk question id `{}` must be lower-case letters, digits and _",
                        v.id
                    ),
                );
            } else if questions.iter().any(|x| x.id == v.id) {
                self.err(at(q), format!("risk question `{}` is asked twice", v.id));
            } else if v.weight == 0 {
                self.err(
                    at(q),
                    format!(
                        "risk question `{}` has weight 0; give it a positive weight",
                        v.id
                    ),
                );
            } else {
                questions.push(v.clone());
            }
        }
        if questions.is_empty() && raw.value.questions.is_empty() {
            self.err(at(raw), "risk.questions is empty".into());
        }
        let mut levels = BTreeMap::new();
        for (name, min) in &raw.value.levels {
            match name.parse::<RiskLevel>() {
                Ok(RiskLevel::Low) | Err(_) => self.err(
                    at(min),
                    format!("risk.levels names `{name}`; give the lowest score of medium, high and critical (below medium is low)"),
                ),
                Ok(level) => {
                    levels.insert(level, min.value);
                }
            }
        }
        let mut last: Option<(RiskLevel, u32)> = None;
        for (level, min) in &levels {
            if let Some((below, m)) = last
                && *min < m
            {
                let place = raw.value.levels.get(level.as_str()).and_then(at);
                self.err(
                    place,
                    format!("risk.levels: {level} starts at {min}, below {below} ({m})"),
                );
            }
            last = Some((*level, *min));
        }
        RiskQuestionnaire {
            questions,
            levels,
            waived: false,
        }
    }

    /// `governance`: at least one role, each a role of the policy.
    fn governance(
        &mut self,
        raw: &Spanned<RawGovernance>,
        roles: &BTreeMap<String, Vec<String>>,
    ) -> Vec<String> {
        if raw.value.roles.is_empty() {
            self.err(
                at(raw),
                "governance.roles is empty: name the roles whose approval every policy change needs, or remove governance".into(),
            );
        }
        self.known_roles("governance.roles", &raw.value.roles, roles)
    }

    /// A list of roles (`what` names it in messages): each must be a role of the policy.
    fn known_roles(
        &mut self,
        what: &str,
        list: &[Spanned<String>],
        roles: &BTreeMap<String, Vec<String>>,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for role in list {
            if roles.contains_key(&role.value) {
                out.push(role.value.clone());
                continue;
            }
            let hint = suggest(&role.value, roles.keys().map(String::as_str))
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            self.err(
                at(role),
                format!("{what} names unknown role `{}`{hint}", role.value),
            );
        }
        out
    }

    /// `signing`: the allowed signers file under `policy/`, known actions only.
    fn signing(
        &mut self,
        raw: &Spanned<RawSigning>,
        roles: &BTreeMap<String, Vec<String>>,
    ) -> SigningPolicy {
        let raw = &raw.value;
        let path = raw.allowed_signers.value.trim().to_owned();
        let inside = path.starts_with("policy/")
            && !path
                .split('/')
                .any(|c| c == ".." || c == "." || c.is_empty());
        if !inside {
            self.err(
                at(&raw.allowed_signers),
                format!(
                    "signing.allowed_signers `{path}` must be a file under policy/ (it is governed with the policy), like policy/allowed_signers"
                ),
            );
        }
        let mut required_for = Vec::new();
        for a in &raw.required_for {
            if crate::signing::SIGNABLE.contains(&a.value.as_str()) {
                if required_for.contains(&a.value) {
                    self.err(
                        at(a),
                        format!("`{}` is named twice in signing.required_for", a.value),
                    );
                }
                required_for.push(a.value.clone());
            } else {
                let hint =
                    crate::finding::suggest(&a.value, crate::signing::SIGNABLE.iter().copied())
                        .map(|s| format!("; did you mean `{s}`?"))
                        .unwrap_or_default();
                self.err(
                    at(a),
                    format!(
                        "`{}` is not an action chg signs (new, edit, approve, reject, withdraw, implement, close, cancel){hint}",
                        a.value
                    ),
                );
            }
        }
        let server_attests = raw
            .server_attests
            .as_ref()
            .map(|a| self.server_attests(a, roles));
        SigningPolicy {
            allowed_signers: path,
            required_for,
            signers: None,
            server_attests,
        }
    }

    /// `signing.server_attests`: known roles, at least one, and a signer principal that
    /// is one word (an allowed signers principal, never a pattern).
    fn server_attests(
        &mut self,
        raw: &Spanned<RawServerAttests>,
        roles: &BTreeMap<String, Vec<String>>,
    ) -> ServerAttests {
        let a = &raw.value;
        if a.roles.is_empty() {
            self.err(
                at(raw),
                "signing.server_attests.roles is empty: name the roles whose decisions the server may attest, or remove server_attests".into(),
            );
        }
        let attested = self.known_roles("signing.server_attests.roles", &a.roles, roles);
        let signer = match &a.signer {
            Some(s) => {
                let v = s.value.trim();
                if v.is_empty()
                    || crate::signing::is_pattern(v)
                    || v.starts_with('#')
                    || v.contains(|c: char| {
                        c.is_whitespace() || c.is_control() || matches!(c, ',' | '"' | '\\' | '\'')
                    })
                {
                    self.err(
                        at(s),
                        format!("signing.server_attests.signer `{v}` is not one allowed signers principal (like chg-server@example.com)"),
                    );
                }
                v.to_owned()
            }
            None => DEFAULT_ATTESTING_SIGNER.to_owned(),
        };
        if roles
            .values()
            .flatten()
            .any(|m| m.eq_ignore_ascii_case(&signer))
        {
            self.err(
                at(raw),
                format!("signing.server_attests.signer `{signer}` is a role member: the server's key must not be a person's"),
            );
        }
        ServerAttests {
            roles: attested,
            max_risk: a.max_risk.value,
            signer,
        }
    }

    /// `segregation_of_duties`: a bool, or a mapping of known checks.
    fn segregation(&mut self, raw: &RawSegregation) -> Segregation {
        let pairs = match raw {
            RawSegregation::Flag(on) => return Segregation::from_flag(*on),
            RawSegregation::Map(pairs) => pairs,
        };
        let mut s = Segregation::default();
        let keys = || SodCheck::ALL.into_iter().map(SodCheck::key);
        for (key, allowed) in pairs {
            match SodCheck::ALL.into_iter().find(|c| c.key() == key.value) {
                Some(check) => s.forbid(check, !allowed),
                None => {
                    let hint = suggest(&key.value, keys())
                        .map(|k| format!("; did you mean `{k}`?"))
                        .unwrap_or_default();
                    self.err(
                        at(key),
                        format!(
                            "`{}` is not a check of segregation_of_duties ({}){hint}",
                            key.value,
                            keys().collect::<Vec<_>>().join(", ")
                        ),
                    );
                }
            }
        }
        s
    }

    fn err(&mut self, p: Option<Pos>, msg: String) {
        self.findings
            .push(Finding::error(self.file, p, "policy", msg));
    }

    fn id_prefix(&mut self, raw: &Option<Spanned<String>>) -> String {
        match raw {
            Some(p) if !valid_prefix(&p.value) => {
                self.err(
                    at(p),
                    format!(
                        "`{}` is not a valid id prefix (letters and digits, starting with a letter)",
                        p.value
                    ),
                );
                p.value.clone()
            }
            Some(p) => p.value.clone(),
            None => "CHG".to_owned(),
        }
    }

    fn change_types(&mut self, raw: &[Spanned<String>]) -> Vec<String> {
        let types: Vec<String> = raw.iter().map(|t| t.value.clone()).collect();
        if types.is_empty() {
            self.err(
                None,
                "change_types is empty: no change could be filed".into(),
            );
        }
        for (i, t) in raw.iter().enumerate() {
            if t.value.trim().is_empty() {
                self.err(at(t), "a change type is empty".into());
            } else if types[..i].contains(&t.value) {
                self.err(at(t), format!("change type `{}` is listed twice", t.value));
            }
        }
        types
    }

    fn required_fields(&mut self, raw: &[Spanned<String>]) {
        for f in raw {
            if WRITTEN_BY_TRANSITIONS.contains(&f.value.as_str()) {
                self.err(
                    at(f),
                    format!(
                        "required field `{}` is written by chg's transitions, not by whoever files a change: no change could be filed",
                        f.value
                    ),
                );
            } else if !ALL_FIELDS.contains(&f.value.as_str()) {
                let hint = suggest(&f.value, ALL_FIELDS.iter().copied())
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                self.err(
                    at(f),
                    format!("required field `{}` is not a change field{hint}", f.value),
                );
            }
        }
    }

    fn testing(&mut self, required_for: &[Spanned<String>], change_types: &[String]) {
        for t in required_for {
            if !change_types.contains(&t.value) {
                self.err(
                    at(t),
                    format!(
                        "testing.required_for names unknown change type `{}` (change_types: {})",
                        t.value,
                        change_types.join(", ")
                    ),
                );
            }
        }
    }

    fn roles(
        &mut self,
        raw: &BTreeMap<String, Spanned<Vec<String>>>,
    ) -> BTreeMap<String, Vec<String>> {
        let mut roles = BTreeMap::new();
        for (name, members) in raw {
            if members.value.iter().all(|m| m.trim().is_empty()) {
                self.err(
                    at(members),
                    format!("role `{name}` has no members: nobody could approve for it"),
                );
            }
            for m in &members.value {
                // One bare address: a space, a comma, angle brackets or a control character
                // would let a member be read as several addresses or headers where mail is
                // sent (found by an attacker session).
                let odd = m
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || "<>,;\"".contains(c));
                if !m.contains('@') || odd {
                    self.err(
                        at(members),
                        format!(
                            "member `{}` of role `{name}` is not one email address",
                            crate::text::ascii_escaped(m)
                        ),
                    );
                }
            }
            roles.insert(name.clone(), members.value.clone());
        }
        roles
    }

    fn approval_rule(
        &mut self,
        name: &str,
        r: &Option<Spanned<RawRule>>,
        required: bool,
        roles: &BTreeMap<String, Vec<String>>,
    ) -> Option<ApprovalRule> {
        let Some(r) = r else {
            if required {
                self.err(
                    None,
                    format!(
                        "approvals has no rule for `{name}`: changes of that priority could never be approved"
                    ),
                );
            }
            return None;
        };
        if r.value.roles.is_empty() {
            self.err(
                at(r),
                format!("the approval rule for `{name}` names no roles"),
            );
        }
        for (i, role) in r.value.roles.iter().enumerate() {
            if r.value.roles[..i].iter().any(|o| o.value == role.value) {
                self.err(
                    at(role),
                    format!(
                        "the approval rule for `{name}` names `{}` twice",
                        role.value
                    ),
                );
            } else if !roles.contains_key(&role.value) {
                let hint = suggest(&role.value, roles.keys().map(String::as_str))
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                self.err(
                    at(role),
                    format!(
                        "the approval rule for `{name}` names unknown role `{}`{hint}",
                        role.value
                    ),
                );
            }
        }
        let mut names: Vec<String> = Vec::new();
        for role in &r.value.roles {
            if !names.contains(&role.value) {
                names.push(role.value.clone());
            }
        }
        Some(ApprovalRule {
            roles: names,
            timeout: r.value.timeout,
        })
    }

    fn time_of_day(&mut self, s: &Spanned<String>) -> Option<Time> {
        let t = s.value.parse::<Time>().ok();
        if t.is_none() {
            self.err(
                at(s),
                format!("`{}` is not a time of day (like 02:00)", s.value),
            );
        }
        t
    }

    fn maintenance_window(&mut self, w: &Spanned<RawMaintenance>) -> Option<MaintenanceWindow> {
        let mut days = Vec::new();
        for d in &w.value.days {
            match parse_weekday(&d.value) {
                Some(day) => days.push(day),
                None => self.err(
                    at(d),
                    format!(
                        "`{}` is not a day (mon, tue, wed, thu, fri, sat, sun)",
                        d.value
                    ),
                ),
            }
        }
        if w.value.days.is_empty() {
            self.err(at(w), "a maintenance window names no days".into());
        }
        let (start, end) = (
            self.time_of_day(&w.value.start),
            self.time_of_day(&w.value.end),
        );
        let tz_name = w
            .value
            .timezone
            .as_ref()
            .map_or("UTC".to_owned(), |t| t.value.clone());
        let timezone = TimeZone::get(&tz_name).ok();
        if timezone.is_none() {
            self.err(
                w.value.timezone.as_ref().and_then(at),
                format!("`{tz_name}` is not a known IANA time zone (like Europe/Berlin or UTC)"),
            );
        }
        let (start, end, timezone) = (start?, end?, timezone?);
        if start == end {
            self.err(
                at(&w.value.start),
                "a maintenance window opens and closes at the same time".into(),
            );
        }
        Some(MaintenanceWindow {
            days,
            start,
            end,
            timezone_name: tz_name,
            timezone,
        })
    }

    fn freeze(&mut self, f: &Spanned<RawFreeze>) -> Option<Freeze> {
        let mut ts = |s: &Spanned<String>| match crate::model::parse_timestamp(&s.value) {
            Ok(t) => Some(t),
            Err(e) => {
                self.err(at(s), e);
                None
            }
        };
        let (start, end) = (ts(&f.value.start), ts(&f.value.end));
        let (start, end) = (start?, end?);
        if end <= start {
            self.err(
                at(&f.value.end),
                "a freeze window ends before it starts".into(),
            );
        }
        Some(Freeze {
            start,
            end,
            reason: f.value.reason.clone().unwrap_or_else(|| "freeze".into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_writes_the_coming_year_end_freeze_not_an_ended_one() {
        for (now, start, end) in [
            ("2025-03-10T10:00:00Z", "2025-12-20", "2026-01-04"),
            ("2026-12-05T10:00:00Z", "2026-12-20", "2027-01-04"),
            ("2027-01-02T10:00:00Z", "2026-12-20", "2027-01-04"),
            ("2027-01-04T00:00:00Z", "2027-12-20", "2028-01-04"),
        ] {
            let text = default_policy_at(now.parse().unwrap());
            let (p, _) = Policy::parse(POLICY_PATH, &text).unwrap();
            let f = &p.freezes[0];
            assert_eq!(
                (f.start.to_string(), f.end.to_string()),
                (format!("{start}T00:00:00Z"), format!("{end}T00:00:00Z")),
                "{now}"
            );
        }
    }

    fn errors(text: &str) -> Vec<Finding> {
        Policy::parse("policy.yaml", text).unwrap_err()
    }

    #[test]
    fn the_default_policy_is_consistent() {
        let p = Policy::default_policy();
        assert_eq!(p.id_prefix, "CHG");
        assert_eq!(
            p.approvals[&Priority::High].roles,
            ["security-team", "engineering-manager", "change-manager"]
        );
        assert!(p.is_member("security-team", "sec2@example.com"));
        assert_eq!(p.freezes.len(), 1);
    }

    #[test]
    fn unknown_roles_in_rules_are_reported_with_places() {
        let text = DEFAULT_POLICY.replace(
            "low:       {roles: [change-manager]",
            "low:       {roles: [change-manger]",
        );
        let f = errors(&text);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.contains("unknown role `change-manger`"));
        assert!(f[0].message.contains("did you mean `change-manager`"));
        assert!(f[0].pos.is_some());
    }

    #[test]
    fn empty_roles_unknown_types_and_bad_windows_are_errors() {
        let text = DEFAULT_POLICY
            .replace("change-manager: [cm@example.com]", "change-manager: []")
            .replace(
                "required_for: [security, infrastructure]",
                "required_for: [securty]",
            )
            .replace("timezone: UTC}", "timezone: Mars/Olympus}");
        let f = errors(&text);
        let msgs: Vec<_> = f.iter().map(|x| x.message.as_str()).collect();
        assert!(
            msgs.iter().any(|m| m.contains("has no members")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.contains("unknown change type `securty`")),
            "{msgs:?}"
        );
        assert!(msgs.iter().any(|m| m.contains("Mars/Olympus")), "{msgs:?}");
    }

    #[test]
    fn server_attests_names_known_roles_a_risk_level_and_one_principal() {
        let with = |a: &str| {
            format!(
                "{DEFAULT_POLICY}signing:\n  allowed_signers: policy/allowed_signers\n  required_for: [approve]\n  server_attests: {a}\n"
            )
        };
        let (p, _) = Policy::parse(
            "policy.yaml",
            &with("{roles: [engineering-manager], max_risk: low}"),
        )
        .unwrap();
        let a = p.signing.as_ref().unwrap().server_attests.as_ref().unwrap();
        assert_eq!(a.signer, DEFAULT_ATTESTING_SIGNER);
        let change = |risk| ChangeRequest {
            risk_level: risk,
            ..ChangeRequest::default()
        };
        assert!(
            p.server_may_attest("engineering-manager", &change(Some(RiskLevel::Low)))
                .is_ok()
        );
        let proposal = ChangeRequest {
            proposed_policy: Some(Default::default()),
            ..change(Some(RiskLevel::Low))
        };
        let e = p
            .server_may_attest("engineering-manager", &proposal)
            .unwrap_err();
        assert!(e.contains("policy proposal"), "{e}");
        for (role, risk, why) in [
            (
                "change-manager",
                Some(RiskLevel::Low),
                "does not name the role",
            ),
            ("engineering-manager", Some(RiskLevel::Medium), "above"),
            ("engineering-manager", None, "no risk level"),
        ] {
            let e = p.server_may_attest(role, &change(risk)).unwrap_err();
            assert!(e.contains(why), "{role} {risk:?}: {e}");
        }
        for (bad, why) in [
            ("{roles: [change-manger], max_risk: low}", "unknown role"),
            ("{roles: [], max_risk: low}", "is empty"),
            ("{roles: [change-manager], max_risk: huge}", "huge"),
            (
                "{roles: [change-manager], max_risk: low, signer: \"*@example.com\"}",
                "not one allowed signers principal",
            ),
            (
                "{roles: [change-manager], max_risk: low, signer: \"a b\"}",
                "not one allowed signers principal",
            ),
            (
                "{roles: [change-manager], max_risk: low, signer: cm@example.com}",
                "is a role member",
            ),
        ] {
            let f = errors(&with(bad));
            assert!(f.iter().any(|x| x.message.contains(why)), "{bad}: {f:?}");
        }
        let p = Policy::default_policy();
        assert!(
            p.server_may_attest("change-manager", &change(Some(RiskLevel::Low)))
                .is_err()
        );
    }

    #[test]
    fn a_member_is_one_bare_address() {
        for member in [
            "\"evil@x.example>\\r\\nBcc: y@x.example\"",
            "\"a@b.example, c@d.example\"",
            "\"Name <a@b.example>\"",
        ] {
            let f = errors(&DEFAULT_POLICY.replace(
                "change-manager: [cm@example.com]",
                &format!("change-manager: [cm@example.com, {member}]"),
            ));
            assert!(
                f.iter()
                    .any(|x| x.message.contains("is not one email address")),
                "{member}: {f:?}"
            );
        }
    }

    #[test]
    fn a_role_named_twice_in_a_rule_and_fields_chg_writes_are_refused() {
        let f = errors(&DEFAULT_POLICY.replace(
            "low:       {roles: [change-manager], timeout: 7d}",
            "low:       {roles: [change-manager, change-manager], timeout: 7d}",
        ));
        assert!(
            f.iter()
                .any(|f| f.message.contains("names `change-manager` twice")),
            "{f:?}"
        );
        let f = errors(&DEFAULT_POLICY.replace(
            "required_fields: [title,",
            "required_fields: [approvals, title,",
        ));
        assert!(
            f.iter().any(|f| f
                .message
                .contains("`approvals` is written by chg's transitions")),
            "{f:?}"
        );
    }

    #[test]
    fn typos_in_keys_and_duplicates_are_yaml_errors_with_places() {
        let f = errors(&DEFAULT_POLICY.replace("segregation_of_duties:", "segregation_of_dutys:"));
        assert!(f[0].pos.is_some(), "{f:?}");
        let f = errors("change_types: [a]\nchange_types: [b]\n");
        assert_eq!(
            f[0].message, "`change_types` appears twice in one mapping; keep one of them",
            "{f:?}"
        );
        assert_eq!(f[0].pos.map(|p| p.line), Some(2), "{f:?}");
    }

    #[test]
    fn segregation_of_duties_is_a_flag_or_a_mapping_with_unknown_keys_at_their_place() {
        use SodCheck::*;
        let with = |v: &str| {
            DEFAULT_POLICY.replace(
                "segregation_of_duties: true",
                &format!("segregation_of_duties: {v}"),
            )
        };
        let forbidden = |v: &str| {
            Policy::parse("policy.yaml", &with(v))
                .unwrap()
                .0
                .segregation_of_duties
                .forbidden()
        };
        assert_eq!(forbidden("true"), [RequesterApproves, OneRolePerPerson]);
        assert_eq!(forbidden("false"), []);
        // Keys left out keep what `true` means: naming one check never loosens the others.
        assert_eq!(
            forbidden("{approver_implements: false}"),
            [RequesterApproves, OneRolePerPerson, ApproverImplements]
        );
        assert_eq!(
            forbidden("{requester_approves: true, implementer_reviews: false}"),
            [OneRolePerPerson, ImplementerReviews]
        );
        let f = errors(&with(
            "\n  approver_implements: false\n  aprover_reviews: false",
        ));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].rule, "policy", "{f:?}");
        assert!(
            f[0].message
                .contains("`aprover_reviews` is not a check of segregation_of_duties"),
            "{f:?}"
        );
        let line = with("")
            .lines()
            .position(|l| l.starts_with("segregation_of_duties"));
        assert_eq!(
            f[0].pos.map(|p| (p.line, p.column)),
            Some((u32::try_from(line.unwrap()).unwrap() + 3, 3)),
            "{f:?}"
        );
        assert!(!errors(&with("{approver_implements: maybe}")).is_empty());
    }

    #[test]
    fn maintenance_windows_follow_the_zone_across_dst() {
        let text = DEFAULT_POLICY.replace(
            "{days: [sat, sun], start: \"02:00\", end: \"06:00\", timezone: UTC}",
            "{days: [sun], start: \"01:00\", end: \"04:00\", timezone: Europe/Berlin}",
        );
        let p = Policy::parse("p", &text).unwrap().0;
        // 2025-03-30 is the spring-forward Sunday in Berlin: 01:00 CET = 00:00Z, 04:00 CEST = 02:00Z.
        let ts = |s: &str| s.parse::<Timestamp>().unwrap();
        assert!(p.in_maintenance_window(ts("2025-03-30T00:00:00Z"), ts("2025-03-30T02:00:00Z")));
        assert!(!p.in_maintenance_window(ts("2025-03-30T00:00:00Z"), ts("2025-03-30T02:30:00Z")));
        // A week later (CEST all night): 01:00 = 23:00Z on Saturday.
        assert!(p.in_maintenance_window(ts("2025-04-05T23:00:00Z"), ts("2025-04-06T02:00:00Z")));
    }
}
