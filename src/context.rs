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

/// Signs the commits chg writes, as git does with `commit.gpgsign`: given the commit
/// object's text, returns the signature (armored) that goes into its `gpgsig` header. The
/// library runs no program and holds no key; the caller supplies this (the CLI runs
/// `ssh-keygen -Y sign` or gpg, as git's config says).
pub trait CommitSigner: Send + Sync {
    /// The signature of `payload`, or why there is none (the commit is then not written).
    fn sign(&self, payload: &[u8]) -> Result<String, crate::error::Error>;
}

/// Who acts and when, for one state-changing call.
#[derive(Clone)]
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
    /// Signs every commit written for this call, when set.
    pub commit_signer: Option<std::sync::Arc<dyn CommitSigner>>,
    /// Signs the actor's records (approvals and the actions the policy names), when set.
    pub record_signer: Option<std::sync::Arc<dyn crate::signing::RecordSigner>>,
    /// Signs the actor's record with [`Context::record_signer`] even where the policy does
    /// not require it (a passkey approval: the person signed, so the record carries it).
    pub sign_unrequired: bool,
    /// How the request came in, when not from the command line (`api token=tok_…`): the
    /// commit records it in a `Chg-Via` trailer.
    pub via: Option<String>,
    /// `chg serve`'s own key, to attest the actor's decision where no signature of
    /// theirs comes with it and the policy lets the server attest it (SPEC 12.1).
    pub attester: Option<Attester>,
}

/// The server's signer of attested decisions, and how it authenticated the actor.
#[derive(Clone)]
pub struct Attester {
    /// Signs with the server's key (listed under `signing.server_attests.signer`).
    pub signer: std::sync::Arc<dyn crate::signing::RecordSigner>,
    /// How the actor was authenticated (`api token tok_…`), recorded and signed.
    pub via: String,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("actor", &self.actor)
            .field("now", &self.now)
            .field("committer", &self.committer)
            .field("committed_at", &self.committed_at)
            .field("lock_timeout", &self.lock_timeout)
            .field("signs_commits", &self.commit_signer.is_some())
            .field("signs_records", &self.record_signer.is_some())
            .field("sign_unrequired", &self.sign_unrequired)
            .field("via", &self.via)
            .field("attests", &self.attester.as_ref().map(|a| &a.via))
            .finish()
    }
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
            commit_signer: None,
            record_signer: None,
            sign_unrequired: false,
            via: None,
            attester: None,
        }
    }

    /// The same context, signing the actor's records with `signer`.
    pub fn signing_records(
        mut self,
        signer: std::sync::Arc<dyn crate::signing::RecordSigner>,
    ) -> Context {
        self.record_signer = Some(signer);
        self
    }

    /// The same context, signing the actor's records with `signer` whether or not the
    /// policy requires it.
    pub fn signing_records_always(
        mut self,
        signer: std::sync::Arc<dyn crate::signing::RecordSigner>,
    ) -> Context {
        self.record_signer = Some(signer);
        self.sign_unrequired = true;
        self
    }

    /// The same context, with the server's key attesting the actor's decisions where the
    /// policy allows it.
    pub fn attested_by(mut self, attester: Attester) -> Context {
        self.attester = Some(attester);
        self
    }

    /// The same context, signing its commits with `signer`.
    pub fn signing_commits(mut self, signer: std::sync::Arc<dyn CommitSigner>) -> Context {
        self.commit_signer = Some(signer);
        self
    }

    /// The same context with another committer.
    pub fn committed_by(mut self, committer: Identity, at: Timestamp) -> Context {
        self.committer = committer;
        self.committed_at = whole_seconds(at);
        self
    }

    /// The same context, recording that the request came in `via` (a `Chg-Via` trailer).
    pub fn via(mut self, via: impl Into<String>) -> Context {
        self.via = Some(via.into());
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
    if !offset_is_real(t) {
        return None;
    }
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

/// [`parse_git_date`], and the forms git also takes without a zone (`2025-03-10 12:00`,
/// `2025-03-10T12:00:00`: civil time in `tz`, the user's zone, as git reads them) and git's
/// raw `SECONDS OFFSET`.
pub fn parse_git_date_in(text: &str, tz: &jiff::tz::TimeZone) -> Option<Timestamp> {
    if let Some(t) = parse_git_date(text) {
        return Some(t);
    }
    let t = text.trim();
    if let Some((secs, offset)) = t.split_once(' ')
        && let Ok(secs) = secs.parse::<i64>()
        && offset.len() == 5
        && offset_is_real(t)
    {
        return Timestamp::from_second(secs).ok();
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(civil) = jiff::civil::DateTime::strptime(fmt, t) {
            return civil.to_zoned(tz.clone()).ok().map(|z| z.timestamp());
        }
    }
    None
}

pub use crate::time::check_time;
use crate::time::offset_is_real;

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
    fn impossible_offsets_and_times_are_refused() {
        assert!(parse_git_date("2025-03-10T10:00:00+25:00").is_none());
        assert!(parse_git_date("2025-03-10 10:00:00 +2500").is_none());
        assert!(parse_git_date("2025-03-10T10:00:00+14:00").is_some());
        assert!(parse_git_date("2025-03-10T10:00:00-05:30").is_some());
        assert!(parse_git_date("2025-03-10T10:00:00Z").is_some());
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        assert!(check_time(t("2106-02-07T06:28:15Z")).is_ok());
        assert!(check_time(t("2106-02-07T06:28:16Z")).is_err());
        assert!(check_time(t("1969-12-31T23:59:59Z")).is_err());
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
