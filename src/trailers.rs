//! The commit protocol (SPEC section 6): the `Chg-*` trailers every chg commit carries, as
//! one typed value with one spelling, and the [`Action`]s they name. Written by the store,
//! read back by audit, sync and `chg log`.
//!
//! Git compares trailer keys without regard to case, and so does [`Trailers::parse`]: a
//! commit written by hand with `chg-action:` is read the same way by every reader.

use std::fmt;
use std::str::FromStr;

/// What a chg commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `chg init`: the store was created.
    Init,
    /// A change was filed.
    New,
    /// draft → pending_approval.
    Submit,
    /// One approval.
    Approve,
    /// A rejection.
    Reject,
    /// An approver withdrew their own approval.
    Withdraw,
    /// Content changed.
    Edit,
    /// The window was set.
    Schedule,
    /// Implementation started.
    Implement,
    /// Implementation finished.
    Close,
    /// Cancelled.
    Cancel,
    /// Moved to another id.
    Renumber,
    /// A deployment recorded (the status stays).
    Deploy,
}

impl Action {
    /// Every action, in life-cycle order.
    pub const ALL: [Action; 13] = [
        Action::Init,
        Action::New,
        Action::Submit,
        Action::Approve,
        Action::Reject,
        Action::Withdraw,
        Action::Edit,
        Action::Schedule,
        Action::Implement,
        Action::Close,
        Action::Cancel,
        Action::Renumber,
        Action::Deploy,
    ];

    /// The word in `Chg-Action`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Init => "init",
            Action::New => "new",
            Action::Submit => "submit",
            Action::Approve => "approve",
            Action::Reject => "reject",
            Action::Withdraw => "withdraw",
            Action::Edit => "edit",
            Action::Schedule => "schedule",
            Action::Implement => "implement",
            Action::Close => "close",
            Action::Cancel => "cancel",
            Action::Renumber => "renumber",
            Action::Deploy => "deploy",
        }
    }

    /// Whether the action changes one change (every action but `init`).
    pub fn is_change_action(self) -> bool {
        self != Action::Init
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s.trim())
            .ok_or_else(|| format!("`{s}` is not a chg action"))
    }
}

impl PartialEq<&str> for Action {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The keys, spelled once.
pub mod key {
    /// The change.
    pub const ID: &str = "Chg-Id";
    /// The [`super::Action`].
    pub const ACTION: &str = "Chg-Action";
    /// Who acted (the commit's author email).
    pub const ACTOR: &str = "Chg-Actor";
    /// The role of an approval, rejection or withdrawal.
    pub const ROLE: &str = "Chg-Role";
    /// The status before.
    pub const FROM: &str = "Chg-From";
    /// The status after.
    pub const TO: &str = "Chg-To";
    /// The outcome of a close.
    pub const OUTCOME: &str = "Chg-Outcome";
    /// The fields an edit changed.
    pub const FIELDS: &str = "Chg-Fields";
    /// The approvals an edit voided.
    pub const VOIDED: &str = "Chg-Voided";
    /// The id a renumbered change had.
    pub const RENUMBERED_FROM: &str = "Chg-Renumbered-From";
    /// The local commit a synced commit replays.
    pub const SYNCED_FROM: &str = "Chg-Synced-From";
    /// How the step came in, when not from the command line (`api token=tok_…`).
    pub const VIA: &str = "Chg-Via";
}

/// The `Chg-*` trailers of one commit. Every field is optional: a reader meets hand-made
/// and partial commits, and says what is missing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trailers {
    /// `Chg-Id`.
    pub id: Option<String>,
    /// `Chg-Action`, as written (see [`Trailers::action`]).
    pub action: Option<String>,
    /// `Chg-Actor`.
    pub actor: Option<String>,
    /// `Chg-Role`.
    pub role: Option<String>,
    /// `Chg-From`.
    pub from: Option<String>,
    /// `Chg-To`.
    pub to: Option<String>,
    /// `Chg-Outcome`.
    pub outcome: Option<String>,
    /// `Chg-Fields`.
    pub fields: Option<String>,
    /// `Chg-Voided`.
    pub voided: Option<String>,
    /// `Chg-Renumbered-From`.
    pub renumbered_from: Option<String>,
    /// `Chg-Synced-From`.
    pub synced_from: Option<String>,
    /// `Chg-Via`.
    pub via: Option<String>,
}

impl Trailers {
    fn slots(&self) -> [(&'static str, &Option<String>); 12] {
        [
            (key::ID, &self.id),
            (key::ACTION, &self.action),
            (key::ACTOR, &self.actor),
            (key::ROLE, &self.role),
            (key::FROM, &self.from),
            (key::TO, &self.to),
            (key::OUTCOME, &self.outcome),
            (key::FIELDS, &self.fields),
            (key::VOIDED, &self.voided),
            (key::RENUMBERED_FROM, &self.renumbered_from),
            (key::SYNCED_FROM, &self.synced_from),
            (key::VIA, &self.via),
        ]
    }

    /// The field for key `k` (in any case), if chg has one.
    fn slot_mut(&mut self, k: &str) -> Option<&mut Option<String>> {
        let i = self
            .slots()
            .iter()
            .position(|(name, _)| name.eq_ignore_ascii_case(k.trim()))?;
        let fields = [
            &mut self.id,
            &mut self.action,
            &mut self.actor,
            &mut self.role,
            &mut self.from,
            &mut self.to,
            &mut self.outcome,
            &mut self.fields,
            &mut self.voided,
            &mut self.renumbered_from,
            &mut self.synced_from,
            &mut self.via,
        ];
        fields.into_iter().nth(i)
    }

    /// The `Chg-*` trailers of a commit message (keys in any case; the first of a repeated
    /// key counts). Other trailers are ignored.
    pub fn parse(message: &str) -> Trailers {
        let mut t = Trailers::default();
        if let Ok(all) = git2::message_trailers_strs(message) {
            for (k, v) in all.iter() {
                if let Some(slot) = t.slot_mut(k)
                    && slot.is_none()
                {
                    *slot = Some(v.trim().to_owned());
                }
            }
        }
        t
    }

    /// Whether the message has any `Chg-*` trailer.
    pub fn is_empty(&self) -> bool {
        self.slots().iter().all(|(_, v)| v.is_none())
    }

    /// The action, when it is one chg knows.
    pub fn action(&self) -> Option<Action> {
        self.action.as_deref().and_then(|a| a.parse().ok())
    }

    /// The trailer block: one `Key: value` line per present field, in the order above; a
    /// value's newlines are folded into spaces so a value cannot forge another trailer.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (k, v) in self.slots() {
            if let Some(v) = v {
                let v: String = v
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect();
                out.push_str(&format!("{k}: {v}\n"));
            }
        }
        out
    }
}

/// Whether `message` ends in a trailer block (any trailers, chg's or others').
pub fn has_trailers(message: &str) -> bool {
    git2::message_trailers_strs(message).is_ok_and(|t| t.len() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailers_round_trip_and_keys_are_read_in_any_case() {
        let t = Trailers {
            id: Some("CHG-2025-001".into()),
            action: Some("approve".into()),
            actor: Some("em@example.com".into()),
            role: Some("engineering-manager".into()),
            from: Some("pending_approval".into()),
            to: Some("approved".into()),
            ..Trailers::default()
        };
        let msg = format!("CHG-2025-001: approve\n\n{}", t.render());
        assert_eq!(Trailers::parse(&msg), t);
        assert_eq!(Trailers::parse(&msg).action(), Some(Action::Approve));
        let lower = msg.replace("Chg-Action", "chg-action");
        assert_eq!(Trailers::parse(&lower).action(), Some(Action::Approve));
    }

    #[test]
    fn a_value_cannot_forge_another_trailer() {
        let t = Trailers {
            id: Some("CHG-2025-001".into()),
            voided: Some("x\nChg-Action: close".into()),
            ..Trailers::default()
        };
        let msg = format!("s\n\n{}", t.render());
        assert_eq!(Trailers::parse(&msg).action, None);
    }

    #[test]
    fn actions_parse_and_print() {
        for a in Action::ALL {
            assert_eq!(a.as_str().parse::<Action>(), Ok(a));
        }
        assert!("approved".parse::<Action>().is_err());
    }
}
