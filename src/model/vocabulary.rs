//! The vocabulary of a change: the closed lists (statuses, models, priorities, urgencies,
//! risk levels, outcomes, decisions), ids and durations.

use std::fmt;
use std::str::FromStr;

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
