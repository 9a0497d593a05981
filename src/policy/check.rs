//! The policy's self-checks: the file as written ([`super::raw`]) checked one section at a
//! time into a [`Policy`], each error with its place.

use std::collections::BTreeMap;

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use serde_saphyr::Spanned;

use crate::finding::{Finding, suggest};
use crate::model::{ALL_FIELDS, Priority, RiskLevel, valid_prefix};
use crate::yaml::Pos;

use super::raw::{
    RawFreeze, RawGovernance, RawMaintenance, RawPolicy, RawRisk, RawRule, RawSegregation,
    RawServerAttests, RawSigning, at, pos,
};
use super::{
    ApprovalRule, DEFAULT_ATTESTING_SIGNER, Freeze, Lenient, MaintenanceWindow, Policy,
    RiskQuestion, RiskQuestionnaire, Segregation, ServerAttests, SigningPolicy, SodCheck,
};

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

pub(super) fn check(file: &str, raw: RawPolicy, findings: &mut Vec<Finding>) -> Policy {
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
