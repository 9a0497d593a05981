//! `chg`: technical change management in git.
//!
//! One YAML file per change request, a policy in the same repository, and one git commit per
//! state transition, so that `git log` is the audit trail. This crate is the domain: a
//! command-line front end (the `chg` binary) and, later, an HTTP API call into it.
//!
//! - [`model`]: the change request and its vocabulary.
//! - [`yaml`] and [`decode`]: reading files with a place for every problem.
//! - [`policy`]: the rules, checked for self-consistency.
//! - [`workflow`]: the life cycle as pure functions from a change to its next version.
//! - [`validate`]: files and the whole store against the policy.
//! - [`edit`]: in-place edits that keep a person's comments and layout.
//! - [`store`]: the git-backed store: discovery, locking, atomic writes, one commit per step.
//! - [`audit`]: the history checked against the life cycle and the policy of its time.
//! - [`history`]: commit trailers.
//! - [`conflicts`] and [`calendar`]: scheduling conflicts, free slots, windows and freezes.
//! - [`query`]: which changes a reader asks for (filters, awaiting a person, overdue
//!   approvals, sort, pages): under `chg list`, `chg cab`, `chg report` and the API.
//! - [`report`]: figures for a period against the policy's targets.
//! - [`schema`]: a JSON Schema of change files for editors and other tools.
//! - [`signing`]: signed records: statements, allowed signers, verdicts.
//! - [`standing`]: what verified history says about a change (gate, implement, validate).
//! - [`governance`]: whether each policy change was authorized, merges included.
//! - [`notify`]: notifications and approval deadlines: events from verified history, outbox, channels.
//! - [`text`]: output made harmless for terminals, CI logs and spreadsheets.
//! - [`tokens`]: the API tokens of `chg serve` (hashes only).
#![warn(missing_docs)]

pub mod audit;
pub mod calendar;
pub mod conflicts;
pub mod context;
pub mod decode;
pub mod edit;
pub mod error;
pub mod finding;
pub mod git;
pub mod governance;
pub mod layout;
pub mod model;
pub mod notify;
pub mod passkeys;
pub mod policy;
pub mod policy_source;
pub mod query;
pub mod report;
pub mod rules;
pub mod schema;
pub mod signing;
pub mod standing;
pub mod store;
pub mod sync;
pub mod templates;
#[cfg(test)]
mod testing;
pub mod text;
pub mod time;
pub mod tokens;
pub mod trailers;
pub mod validate;
pub mod webauthn;
pub mod workflow;
pub mod yaml;

pub use context::{Context, Identity};
pub use error::{Error, Refusal, Remedy, Result};
