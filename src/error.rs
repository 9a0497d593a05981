//! The library's error type. Each variant says what kind of failure it is (a refusal by a
//! named rule, bad input, a concurrent update, a broken environment); front ends map kinds
//! to what their users see (the CLI to exit codes, a server to HTTP statuses), and write
//! their own hints: no message here names a command-line flag.

use std::path::PathBuf;
use std::time::Duration;

use crate::finding::Finding;

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A rule said no: which rule, why, and what would make it yes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The rule's id (`approval-role`, `segregation-of-duties`, `lifecycle`, …): the names
    /// `chg validate`, `chg audit` and `chg gate` report.
    pub rule: &'static str,
    /// One sentence.
    pub message: String,
    /// What would help, in words that name no front end's flags.
    pub hint: Option<String>,
    /// The same help as a value, for a front end to say in its own words (the CLI names
    /// its flags and commands) without reading the message.
    pub remedy: Option<Remedy>,
}

/// What would turn a refusal into a yes, as a front end can act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Remedy {
    /// Give a post-implementation review with the close.
    Review,
    /// Schedule the change (its id) first.
    Schedule(String),
    /// Sync again, leaving out the steps that no longer apply.
    DropStale,
}

impl Refusal {
    /// A refusal without a hint.
    pub fn new(rule: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            rule,
            message: message.into(),
            hint: None,
            remedy: None,
        }
    }

    /// The same refusal with a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Refusal {
        self.hint = Some(hint.into());
        self
    }

    /// The same refusal with a remedy.
    pub fn remedy(mut self, remedy: Remedy) -> Refusal {
        self.remedy = Some(remedy);
        self
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        Error::Refused(r)
    }
}

/// Everything that can stop a command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The policy or the life cycle says no.
    #[error("{0}")]
    Refused(Refusal),
    /// The check's answer is no: the findings say why.
    #[error("{} problem(s) found", .0.len())]
    Findings(Vec<Finding>),
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// The request names one of several things and must say which (`what`: `role`, `file`).
    #[error("{message}")]
    Ambiguous {
        /// One sentence.
        message: String,
        /// What must be chosen.
        what: &'static str,
        /// The choices.
        choices: Vec<String>,
    },
    /// A file could not be read as what it should be.
    #[error("{0}")]
    Malformed(Finding),
    /// The input has these problems; all are listed.
    #[error("{summary}")]
    Invalid {
        /// One sentence.
        summary: String,
        /// The details, one per line.
        findings: Vec<Finding>,
    },
    /// No change has this id.
    #[error("no change {0} in this store")]
    UnknownId(String),
    /// Not inside a store.
    #[error(
        "no chg store found from {0} (looked for policy/policy.yaml up to the git work tree root)"
    )]
    NoStore(PathBuf),
    /// No identity to act as.
    #[error("no git identity")]
    NoIdentity,
    /// The change file has edits that are not committed.
    #[error(
        "{0} has uncommitted changes; commit them (git commit {0}) or discard them (git restore --staged --worktree {0}) first, chg will not overwrite them"
    )]
    Dirty(String),
    /// Someone else changed the store while this call worked; nothing was written, and the
    /// same request may succeed when made again.
    #[error("{0}")]
    Conflict(String),
    /// Another chg process held the store lock for longer than the context allows.
    #[error(
        "another chg process is working on this store and did not finish within {} seconds",
        .0.as_secs()
    )]
    Locked(Duration),
    /// The policy requires the action's record to be signed and the caller gave no key.
    #[error("the policy requires `{0}` to be signed, and no signing key is set")]
    NoSigningKey(String),
    /// Git failed.
    #[error("git: {}", git_words(.0))]
    Git(#[from] git2::Error),
    /// The file system failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// Anything else that is not the user's fault.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// A refusal by `rule`.
    pub fn refused(rule: &'static str, message: impl Into<String>) -> Self {
        Error::Refused(Refusal::new(rule, message))
    }

    /// The rule that refused, for a refusal.
    pub fn rule(&self) -> Option<&'static str> {
        match self {
            Error::Refused(r) => Some(r.rule),
            _ => None,
        }
    }
}

/// libgit2's message in chg's words: without its `class=…; code=…` internals, and with what
/// to do where there is something to do.
fn git_words(e: &git2::Error) -> String {
    let message = e.message().trim().trim_end_matches(':').trim();
    match e.code() {
        git2::ErrorCode::Locked => format!(
            "{message}; another git process holds that lock (if none is running, one died: remove the .lock file)"
        ),
        git2::ErrorCode::NotFound => format!("{message} (not in this repository)"),
        _ => message.to_owned(),
    }
}
