//! The checked policy's sections: approval rules, maintenance windows and freezes, report
//! targets, what scheduling conflicts do, segregation of duties and the risk questionnaire.

use std::collections::BTreeMap;

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde::{Deserialize, Serialize};

use crate::model::{Duration, RiskLevel};

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
    ///
    /// [`Policy::for_intake`]: super::Policy::for_intake
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
