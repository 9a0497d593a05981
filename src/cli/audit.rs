//! `chg audit` and `chg audit export`: the history checked, and the evidence pack.

use std::path::PathBuf;
use std::process::ExitCode;

use chg::Error;
use chg::audit::{self, AuditFinding, Level, reconcile};
use chg::model::format_timestamp;
use chg::store::Store;
use clap::{Args, Subcommand, ValueEnum};

use super::{CmdResult, short, ui::Ui};

/// Check the git history against the life cycle and the policy in force at each commit.
///
/// Walks the history of changes/ and policy/ and lists every exception (the README's audit section names each rule):
/// transitions the life cycle does not allow, approvals outside the role or by the
/// requester, implementations before approval, in a freeze or outside the schedule, late or
/// missing emergency approvals and reviews, and commits that skipped chg or whose trailers
/// do not match what they changed. Exit 1 when there is any exception.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: Option<AuditCommand>,
    /// Only commits at or after this time (RFC 3339, or a date meaning its midnight UTC).
    #[arg(long, value_name = "DATE", allow_hyphen_values = true)]
    since: Option<String>,
    /// Only commits before this time.
    #[arg(long, value_name = "DATE", allow_hyphen_values = true)]
    until: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: AuditFormat,
    /// Re-verify every commit instead of only those since the last run (the verdicts of
    /// earlier runs are kept in .git/chg/audit/).
    #[arg(long)]
    full: bool,
    /// Leave out notes (hand-made drafts and edits, policy changes); show exceptions only.
    #[arg(long)]
    exceptions_only: bool,
    /// Commits that receivers of chg's events witnessed (one id a line, as a webhook
    /// receiver logs events' `commit`; JSON events are read too): each one no longer in the
    /// history is an exception `history-truncated`.
    #[arg(long, value_name = "FILE")]
    witness: Option<PathBuf>,
    #[command(flatten)]
    json: super::json::JsonArgs,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    Export(ExportArgs),
    Reconcile(ReconcileArgs),
}

/// Reconcile a CI/CD system's deployments (or release tags) against the changes' records.
///
/// FILE is CSV with a header naming commit, environment and time (other columns are
/// ignored), or JSON: an array of objects with those keys (by the .json extension or a
/// leading `[`). A deployment reconciles when a change committed at HEAD records it with
/// `chg deploy`: the same commit (equal, or a unique prefix of 7 or more hex digits either
/// way), the same environment, and the time inside the change's open gate (its schedule
/// window, or from implementation start to close; an emergency change from its request to
/// its close). Each other deployment is an exception `unreconciled-deployment`: exit 1.
/// A malformed file: exit 2, naming its line.
#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// The deployments (CSV or JSON).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: AuditFormat,
    #[command(flatten)]
    json: super::json::JsonArgs,
}

/// Write the evidence pack for a period, for an auditor to take away.
///
/// population.csv, one evidence file per change,
/// exceptions.csv, and manifest.json with the command, HEAD, counts and a SHA-256 per file.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The period: a year (2025), a quarter (2025-Q1) or a month (2025-01), as chg report
    /// takes it; or give --since and --until.
    #[arg(long, conflicts_with_all = ["since", "until"])]
    period: Option<String>,
    /// First instant of the period (a date meaning its midnight UTC, RFC 3339, now, -90d…).
    #[arg(long, value_name = "DATE", allow_hyphen_values = true)]
    since: Option<String>,
    /// First instant after the period.
    #[arg(long, value_name = "DATE", allow_hyphen_values = true)]
    until: Option<String>,
    /// The folder to write (created; must be empty if it exists).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Re-verify every commit instead of using the audit index.
    #[arg(long)]
    full: bool,
    /// Export from a shallow clone anyway: the pack is marked partial (manifest, PARTIAL,
    /// every page).
    #[arg(long)]
    allow_partial: bool,
    /// Deployments from the CI/CD system to reconcile (as `chg audit reconcile` reads
    /// them): the pack gets deployments.csv, and the unreconciled ones as exceptions.
    #[arg(long, value_name = "FILE")]
    deployments: Option<PathBuf>,
}

/// Output formats of `audit`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum AuditFormat {
    /// One line per finding: `CHANGE COMMIT WHEN AUTHOR: rule: message`.
    Text,
    /// One JSON document with the findings and what was audited.
    Json,
    /// Comma-separated values with a header row.
    Csv,
}

pub fn run(ui: &Ui, store: &Store, a: AuditArgs) -> CmdResult {
    match a.command {
        Some(AuditCommand::Export(e)) => return export(ui, store, e),
        Some(AuditCommand::Reconcile(r)) => return reconcile(ui, store, r),
        None => {}
    }
    let opts = audit::Options {
        since: a.since.as_deref().map(|t| ui.parse_bound(t)).transpose()?,
        until: a.until.as_deref().map(|t| ui.parse_bound(t)).transpose()?,
        full: a.full,
        now: ui.now()?,
    };
    // The witness file is read first: wrong input stops the command before any work.
    let witnessed = match &a.witness {
        Some(path) => {
            let bytes = chg::decode::read_limited(path, DEPLOYMENTS_LIMIT)
                .map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| Error::Usage(format!("{}: not UTF-8 text", path.display())))?;
            let name = path.display().to_string();
            Some((audit::witness::parse(&name, &text)?, name))
        }
        None => None,
    };
    let mut report = audit::run(store, &opts)?;
    if let Some((list, name)) = &witnessed {
        report
            .findings
            .extend(audit::witness::check(store.repo(), name, list, opts.now)?);
    }
    if report.repaired {
        eprintln!(
            "chg: note: the audit index in .git/chg/audit did not verify (emptied, garbled or cut short); it was rebuilt from the history"
        );
    }
    if a.exceptions_only {
        report.findings.retain(|f| f.level == Level::Exception);
    }
    let exceptions = report.exceptions();
    let notes = report.findings.len() - exceptions;
    match if ui.json(&a.json) {
        AuditFormat::Json
    } else {
        a.format
    } {
        AuditFormat::Json => ui.out_json(&serde_json::json!({
            "head": report.head,
            "commits": report.commits,
            "exceptions": exceptions,
            "notes": notes,
            "findings": report.findings,
        }))?,
        AuditFormat::Csv => ui.out(&audit::export::findings_csv(&report.findings))?,
        AuditFormat::Text => {
            let mut s = String::new();
            for f in &report.findings {
                s.push_str(&text_line(f));
                s.push('\n');
            }
            ui.out(&s)?;
            eprintln!(
                "chg audit: {} commit(s) ({} verified now{}), {exceptions} exception(s), {notes} note(s)",
                report.commits,
                report.audited,
                if report.rebuilt {
                    ", index rebuilt"
                } else {
                    ""
                },
            );
        }
    }
    Ok(if exceptions > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The deployments of `path`, read and parsed (exit 2 with its line when malformed).
/// The largest deployments file read: about a million rows, years of a busy pipeline.
const DEPLOYMENTS_LIMIT: u64 = 64 << 20;

fn read_deployments(path: &std::path::Path) -> Result<Vec<reconcile::Deployed>, Error> {
    let bytes = chg::decode::read_limited(path, DEPLOYMENTS_LIMIT).map_err(|e| {
        // A file that is not there, or too large, is the input's fault: exit 2, said so.
        if matches!(
            e.kind(),
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::NotFound
        ) {
            Error::Usage(format!("{}: {e}", path.display()))
        } else {
            Error::io(format!("cannot read {}", path.display()), e)
        }
    })?;
    reconcile::parse(&path.display().to_string(), &bytes)
}

fn reconcile(ui: &Ui, store: &Store, a: ReconcileArgs) -> CmdResult {
    let deployed = read_deployments(&a.file)?;
    let mut changes = reconcile::changes_at_head(store)?;
    // A record is believed only where the change's history verifies (a deployment written
    // by hand is `manual-deployment` in the audit, and counts for nothing here).
    let broken: std::collections::BTreeSet<String> = chg::standing::open_breaks(store, ui.now()?)?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    changes.retain(|c| !broken.contains(&c.id_text()));
    if !broken.is_empty() {
        eprintln!(
            "chg: not counted, their history does not verify (see chg validate): {}",
            broken.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let matched = reconcile::reconcile(&deployed, &changes);
    let findings = reconcile::findings(&matched);
    let exceptions = findings.len();
    match if ui.json(&a.json) {
        AuditFormat::Json
    } else {
        a.format
    } {
        AuditFormat::Json => ui.out_json(&serde_json::json!({
            "deployments": matched.iter().map(|r| serde_json::json!({
                "commit": r.deployed.commit,
                "environment": r.deployed.environment,
                "time": format_timestamp(r.deployed.time),
                "source": r.deployed.place,
                "change": r.change,
            })).collect::<Vec<_>>(),
            "exceptions": exceptions,
            "findings": findings,
        }))?,
        AuditFormat::Csv => ui.out(&audit::export::findings_csv(&findings))?,
        AuditFormat::Text => {
            let mut s = String::new();
            for f in &findings {
                s.push_str(&text_line(f));
                s.push('\n');
            }
            ui.out(&s)?;
            eprintln!(
                "chg audit reconcile: {} deployment(s), {} recorded by a change, {exceptions} exception(s)",
                matched.len(),
                matched.len() - exceptions
            );
        }
    }
    Ok(if exceptions > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn text_line(f: &AuditFinding) -> String {
    format!(
        "{} {} {} {}: {}{}: {}",
        f.change.as_deref().unwrap_or("-"),
        short(&f.commit),
        format_timestamp(f.when),
        if f.author.is_empty() {
            "-".into()
        } else {
            chg::text::one_line(&f.author)
        },
        if f.level == Level::Note { "note: " } else { "" },
        f.rule,
        chg::text::one_line(&f.message)
    )
}

fn export(ui: &Ui, store: &Store, a: ExportArgs) -> CmdResult {
    let (since, until) = match (&a.period, &a.since, &a.until) {
        (Some(p), _, _) => chg::report::parse_period(p).map_err(Error::Usage)?,
        (None, Some(s), Some(u)) => (ui.parse_bound(s)?, ui.parse_bound(u)?),
        // Said here rather than by clap, which named only --period while either form does.
        _ => {
            return Err(Error::Usage(
                "say which period to export: --period 2025-Q1 (a year, quarter or month), or --since DATE --until DATE".into(),
            ));
        }
    };
    if until <= since {
        return Err(Error::Usage(format!(
            "the period must end after it starts (--until {} is not after --since {})",
            a.until.as_deref().unwrap_or_default(),
            a.since.as_deref().unwrap_or_default()
        )));
    }
    if a.out.exists()
        && std::fs::read_dir(&a.out)
            .map_err(|e| Error::io(format!("cannot read {}", a.out.display()), e))?
            .next()
            .is_some()
    {
        return Err(Error::Usage(format!(
            "{} is not empty; the evidence pack goes into a new or empty folder",
            a.out.display()
        )));
    }
    // Read before anything is written: a malformed file stops the export.
    let deployments = a.deployments.as_deref().map(read_deployments).transpose()?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    // With a key (--signing-key, CHG_SIGNING_KEY, user.signingkey), the manifest is
    // signed: it names every file's SHA-256, so the signature covers the whole pack.
    let signer = super::sign::evidence_signer(ui, store.repo())?;
    let named = match &signer {
        Some(s) => Some((
            super::context::identity(Some(store.repo()))?.email,
            s.public_key()?,
        )),
        None => None,
    };
    let pack = audit::export::build(
        store,
        &audit::export::Request {
            since,
            until,
            command,
            full: a.full,
            now: ui.now()?,
            allow_partial: a.allow_partial,
            signer: named.clone(),
            deployments,
        },
    )?;
    let signature = match (
        &signer,
        pack.files.iter().find(|(n, _)| n == "manifest.json"),
    ) {
        (Some(s), Some((_, manifest))) => Some(s.sign(manifest)?),
        _ => None,
    };
    for (rel, bytes) in &pack.files {
        let path = a.out.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        }
        chg::store::commit::atomic_write(&path, bytes)?;
    }
    if let (Some(sig), Some((email, _))) = (&signature, &named) {
        chg::store::commit::atomic_write(&a.out.join("manifest.json.sig"), sig.as_bytes())?;
        eprintln!(
            "chg: signed manifest.json as {email} (manifest.json.sig); check it with `ssh-keygen -Y verify -n chg-evidence -I {email} -f ALLOWED_SIGNERS -s manifest.json.sig < manifest.json`"
        );
    } else {
        eprintln!(
            "chg: the pack is not signed; give a key (--signing-key, CHG_SIGNING_KEY or user.signingkey) to sign its manifest"
        );
    }
    ui.out(&format!(
        "wrote {} ({} change(s) in the population, {} exception(s), {} files; verify with `sha256sum -c SHA256SUMS` inside it)\n",
        a.out.display(),
        pack.population,
        pack.exceptions,
        pack.files.len()
    ))?;
    Ok(ExitCode::SUCCESS)
}
