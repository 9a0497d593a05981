//! The policy (`policy/policy.yaml`): who approves what, which fields are required, windows.
//!
//! Every rule is data. The file is read with serde-saphyr (strict booleans, duplicate keys
//! refused, budgets against hostile input) into a raw form that keeps the place of every name,
//! then checked for self-consistency; only a policy without errors is handed to commands.

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::finding::Finding;
use crate::model::{ChangeModel, ChangeRequest, Duration, Outcome, Priority, RiskLevel};

mod check;
pub mod notifications;
mod raw;
mod sections;
mod signing;

use check::check;
use raw::RawPolicy;

pub use crate::signing::DEFAULT_ATTESTING_SIGNER;
pub use raw::{saphyr_finding, saphyr_options};
pub use sections::{
    ApprovalRule, ConflictLevel, Conflicts, Freeze, MaintenanceWindow, RiskQuestion,
    RiskQuestionnaire, Segregation, SodCheck, Targets,
};
pub use signing::{ServerAttests, SigningPolicy};

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
        self.required_role_names(change)
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    /// [`Policy::required_roles`], borrowed from the policy: for the queries that ask it
    /// of thousands of changes.
    pub fn required_role_names(&self, change: &ChangeRequest) -> Vec<&str> {
        let mut roles: Vec<&str> =
            if self.is_preapproved(change) && change.proposed_policy.is_none() {
                Vec::new()
            } else {
                self.rule_for(change)
                    .map(|r| r.roles.iter().map(String::as_str).collect())
                    .unwrap_or_default()
            };
        // A policy change needs the governance roles on top of its priority's (SPEC 10).
        if change.proposed_policy.is_some() {
            for role in self.governance.iter().flatten() {
                if !roles.contains(&role.as_str()) {
                    roles.push(role);
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
