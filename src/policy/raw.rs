//! The policy file as written: what serde reads, with the place of every name, so that
//! the checks (`check.rs`) report each problem where it is; and the options and error
//! wording for reading chg's own YAML with serde-saphyr.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::finding::Finding;
use crate::model::{ChangeModel, Duration, Outcome, RiskLevel};
use crate::yaml::Pos;

use super::{Conflicts, RiskQuestion, Targets};

// ---- the file as written, with places ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub(super) id_prefix: Option<Spanned<String>>,
    pub(super) change_types: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) required_fields: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) testing: RawTesting,
    pub(super) roles: BTreeMap<String, Spanned<Vec<String>>>,
    pub(super) approvals: RawApprovals,
    #[serde(default = "yes")]
    pub(super) standard_changes_preapproved: bool,
    #[serde(default)]
    pub(super) segregation_of_duties: RawSegregation,
    #[serde(default)]
    pub(super) emergency: RawEmergency,
    #[serde(default)]
    pub(super) review_required_for: RawReview,
    #[serde(default)]
    pub(super) windows: RawWindows,
    #[serde(default)]
    pub(super) targets: Targets,
    #[serde(default)]
    pub(super) conflicts: Conflicts,
    #[serde(default)]
    pub(super) signing: Option<Spanned<RawSigning>>,
    #[serde(default)]
    pub(super) governance: Option<Spanned<RawGovernance>>,
    #[serde(default)]
    pub(super) risk: Option<Spanned<RawRisk>>,
    #[serde(default)]
    pub(super) notifications: Option<Spanned<crate::policy::notifications::RawNotifications>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRisk {
    pub(super) questions: Vec<Spanned<RiskQuestion>>,
    pub(super) levels: BTreeMap<String, Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGovernance {
    pub(super) roles: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSigning {
    pub(super) allowed_signers: Spanned<String>,
    #[serde(default)]
    pub(super) required_for: Vec<Spanned<String>>,
    pub(super) server_attests: Option<Spanned<RawServerAttests>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServerAttests {
    pub(super) roles: Vec<Spanned<String>>,
    pub(super) max_risk: Spanned<RiskLevel>,
    pub(super) signer: Option<Spanned<String>>,
}

/// `segregation_of_duties` as written: a bool, or a mapping whose keys keep their places
/// (checked by `Checker::segregation` in `check.rs`, so an unknown key is reported where it
/// is).
pub(super) enum RawSegregation {
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
pub(super) struct RawTesting {
    #[serde(default)]
    pub(super) required_for: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApprovals {
    pub(super) emergency: Option<Spanned<RawRule>>,
    pub(super) critical: Option<Spanned<RawRule>>,
    pub(super) high: Option<Spanned<RawRule>>,
    pub(super) medium: Option<Spanned<RawRule>>,
    pub(super) low: Option<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub(super) roles: Vec<Spanned<String>>,
    pub(super) timeout: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEmergency {
    pub(super) approve_within: Option<Duration>,
    pub(super) review_within: Option<Duration>,
    pub(super) declared_by: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReview {
    #[serde(default)]
    pub(super) outcomes: Vec<Outcome>,
    #[serde(default)]
    pub(super) change_models: Vec<ChangeModel>,
    #[serde(default)]
    pub(super) risk_levels: Vec<RiskLevel>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWindows {
    #[serde(default)]
    pub(super) maintenance: Vec<Spanned<RawMaintenance>>,
    #[serde(default)]
    pub(super) freeze: Vec<Spanned<RawFreeze>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMaintenance {
    pub(super) days: Vec<Spanned<String>>,
    pub(super) start: Spanned<String>,
    pub(super) end: Spanned<String>,
    #[serde(default)]
    pub(super) timezone: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFreeze {
    pub(super) start: Spanned<String>,
    pub(super) end: Spanned<String>,
    #[serde(default)]
    pub(super) reason: Option<String>,
}

pub(super) fn pos(loc: &serde_saphyr::Location) -> Option<Pos> {
    (loc.line() > 0).then(|| Pos {
        line: u32::try_from(loc.line()).unwrap_or(u32::MAX),
        column: u32::try_from(loc.column()).unwrap_or(u32::MAX),
    })
}

pub(super) fn at<T>(s: &Spanned<T>) -> Option<Pos> {
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
