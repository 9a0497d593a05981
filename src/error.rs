//! The library's error type. Each variant knows its exit code (SPEC section 8), so the
//! mapping is decided here and nowhere else.

use std::path::PathBuf;

use crate::finding::Finding;

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can stop a command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The policy or the life cycle says no (exit 1).
    #[error("{0}")]
    Refused(String),
    /// The check's answer is no: the findings say why (exit 1).
    #[error("{} problem(s) found", .0.len())]
    Findings(Vec<Finding>),
    /// Bad flags or arguments (exit 2).
    #[error("{0}")]
    Usage(String),
    /// A file could not be read as what it should be (exit 2).
    #[error("{0}")]
    Malformed(Finding),
    /// The input has these problems; all are listed (exit 2).
    #[error("{summary}")]
    Invalid {
        /// One sentence.
        summary: String,
        /// The details, one per line.
        findings: Vec<Finding>,
    },
    /// No change has this id (exit 2).
    #[error("no change {0} in this store")]
    UnknownId(String),
    /// Not inside a store (exit 2).
    #[error(
        "no chg store found from {0} (looked for policy/policy.yaml up to the git work tree root); create one with `chg init`, or name one with --repo PATH or CHG_REPO"
    )]
    NoStore(PathBuf),
    /// No git identity (exit 2).
    #[error(
        "no git identity: set one with `git config --global user.name \"Your Name\"` and `git config --global user.email you@example.com` (or GIT_AUTHOR_NAME and GIT_AUTHOR_EMAIL)"
    )]
    NoIdentity,
    /// The change file has edits that are not committed (exit 2).
    #[error(
        "{0} has uncommitted changes; commit them (git commit {0}) or discard them (git restore --staged --worktree {0}) first, chg will not overwrite them"
    )]
    Dirty(String),
    /// Another chg process held the store lock for too long (exit 3).
    #[error(
        "another chg process is working on this store and did not finish within {0} seconds; try again (or raise CHG_LOCK_TIMEOUT)"
    )]
    Locked(u64),
    /// Git failed (exit 3).
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    /// The file system failed (exit 3).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// Anything else that is not the user's fault (exit 3).
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Refused(_) | Error::Findings(_) => 1,
            Error::Usage(_)
            | Error::Malformed(_)
            | Error::Invalid { .. }
            | Error::UnknownId(_)
            | Error::NoStore(_)
            | Error::NoIdentity
            | Error::Dirty(_) => 2,
            Error::Locked(_) | Error::Git(_) | Error::Io { .. } | Error::Internal(_) => 3,
        }
    }

    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
