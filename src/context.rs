//! Who acts, when, and how patiently: the [`Context`] every state-changing call takes.
//!
//! The library reads no environment and no clock. The caller decides: the CLI builds a
//! context from git config and the environment (`GIT_AUTHOR_*`, `CHG_NOW`, …), a server from
//! the authenticated request and its own clock, tests directly. So one process can act for
//! many people, and every rule is testable at any instant.

use std::time::Duration;

use jiff::Timestamp;

use crate::error::{Error, Result};

/// A person as git records them: a name and an email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `user.name`.
    pub name: String,
    /// `user.email`: the identity the policy's roles name.
    pub email: String,
}

impl Identity {
    /// An identity, refused when git could not record it faithfully: an empty part, or a
    /// character that would break the commit header (`<`, `>`, a newline or another control
    /// character). Git strips some of these silently; chg refuses rather than record
    /// someone other than who acts.
    pub fn new(name: impl Into<String>, email: impl Into<String>) -> Result<Identity> {
        let (name, email) = (name.into(), email.into());
        let (name, email) = (name.trim().to_owned(), email.trim().to_owned());
        for (what, value) in [("name", &name), ("email", &email)] {
            if value.is_empty() {
                return Err(Error::Usage(format!(
                    "the git identity has an empty {what}"
                )));
            }
            if value
                .chars()
                .any(|c| c.is_control() || c == '<' || c == '>')
            {
                return Err(Error::Usage(format!(
                    "the git identity's {what} {value:?} holds a control character or an angle bracket, which a commit cannot record"
                )));
            }
        }
        Ok(Identity { name, email })
    }
}

/// Who acts and when, for one state-changing call.
#[derive(Debug, Clone)]
pub struct Context {
    /// The acting person: the author of the commit and the name in the record.
    pub actor: Identity,
    /// The time of the action, in whole seconds (files and commits record seconds).
    pub now: Timestamp,
    /// Who writes the commit, and when; by default the actor, at `now`. A sync replaying
    /// someone else's step commits as the person running it.
    pub committer: Identity,
    /// The committer's time (`GIT_COMMITTER_DATE` in the CLI); by default `now`.
    pub committed_at: Timestamp,
    /// How long to wait for another chg process holding the store lock.
    pub lock_timeout: Duration,
}

/// How long a command waits for the store lock unless told otherwise.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

impl Context {
    /// `actor` acting at `now` (truncated to whole seconds), committing as themselves.
    pub fn new(actor: Identity, now: Timestamp) -> Context {
        let now = whole_seconds(now);
        Context {
            committer: actor.clone(),
            actor,
            now,
            committed_at: now,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }

    /// The same context with another committer.
    pub fn committed_by(mut self, committer: Identity, at: Timestamp) -> Context {
        self.committer = committer;
        self.committed_at = whole_seconds(at);
        self
    }

    /// The same context with another lock timeout.
    pub fn waiting(mut self, lock_timeout: Duration) -> Context {
        self.lock_timeout = lock_timeout;
        self
    }
}

/// `t` without its fraction of a second.
pub fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// Parses the date formats git accepts in `GIT_AUTHOR_DATE` that matter in practice:
/// `@<unix seconds> [+zone]`, RFC 3339 / ISO 8601, and RFC 2822.
pub fn parse_git_date(text: &str) -> Option<Timestamp> {
    let t = text.trim();
    if let Some(rest) = t.strip_prefix('@') {
        let secs: i64 = rest.split_whitespace().next()?.parse().ok()?;
        return Timestamp::from_second(secs).ok();
    }
    if let Ok(ts) = t.parse::<Timestamp>() {
        return Some(ts);
    }
    if let Ok(z) = jiff::fmt::rfc2822::parse(t) {
        return Some(z.timestamp());
    }
    for fmt in ["%Y-%m-%d %H:%M:%S %z", "%Y-%m-%dT%H:%M:%S%z"] {
        if let Ok(z) = jiff::Zoned::strptime(fmt, t) {
            return Some(z.timestamp());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_that_would_break_a_commit_are_refused() {
        assert!(Identity::new("Ann", "ann@example.com").is_ok());
        assert!(Identity::new("Ann\nEvil", "ann@example.com").is_err());
        assert!(Identity::new("Ann", "ann@example.com>").is_err());
        assert!(Identity::new(" ", "ann@example.com").is_err());
        assert_eq!(
            Identity::new(" Ann ", " ann@example.com ").unwrap().email,
            "ann@example.com"
        );
    }

    #[test]
    fn the_context_keeps_whole_seconds() {
        let at: Timestamp = "2025-01-27T10:30:00.75Z".parse().unwrap();
        let ctx = Context::new(Identity::new("Ann", "a@x").unwrap(), at);
        assert_eq!(ctx.now.to_string(), "2025-01-27T10:30:00Z");
        assert_eq!(ctx.committed_at, ctx.now);
    }

    #[test]
    fn git_dates_parse() {
        let want: Timestamp = "2025-01-27T10:30:00Z".parse().unwrap();
        for t in [
            "@1737973800 +0000",
            "2025-01-27T10:30:00Z",
            "Mon, 27 Jan 2025 10:30:00 +0000",
            "2025-01-27 11:30:00 +0100",
        ] {
            assert_eq!(parse_git_date(t), Some(want), "{t}");
        }
        assert_eq!(parse_git_date("yesterday"), None);
    }
}
