//! `chg validate`: the CI check.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;

use chg::Error;
use chg::finding::Finding;
use chg::policy::{POLICY_PATH, Policy};
use chg::store::Store;
use clap::{Args, ValueEnum};
use serde_json::json;

use super::{CmdResult, ui::Ui};

/// Output formats of `validate`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// `file:line:column: rule: message`
    Text,
    /// One JSON array of findings.
    Json,
    /// GitHub Actions annotations.
    Github,
}

/// Check change files (as they are in the work tree, committed or not) and the policy.
///
/// With no arguments, the whole store. Exit 0 when there are no errors, 1 when there are,
/// 2 when the input is wrong.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Change ids or file paths (default: every file under changes/).
    targets: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Only report files changed since the merge base with REF (cross-file checks still see all).
    #[arg(long, value_name = "REF")]
    changed_since: Option<String>,
    /// Check the files only, not whether each open change's history verifies (which reads
    /// the audit index: in a fresh clone, a full audit of the history first).
    #[arg(long)]
    no_history: bool,
    #[command(flatten)]
    json: super::json::JsonArgs,
}

fn changed_files(store: &Store, rev: &str) -> Result<HashSet<String>, Error> {
    let repo = store.repo();
    let target = repo
        .revparse_single(rev)
        .and_then(|o| o.peel_to_commit())
        .map_err(|_| Error::Usage(format!("`{rev}` is not a commit in this repository")))?;
    let head = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let base = match &head {
        Some(h) => repo.merge_base(h.id(), target.id()).ok(),
        None => None,
    }
    .and_then(|id| repo.find_commit(id).ok())
    .unwrap_or(target);
    let mut opts = git2::DiffOptions::new();
    opts.include_untracked(true).recurse_untracked_dirs(true);
    let diff = repo.diff_tree_to_workdir_with_index(Some(&base.tree()?), Some(&mut opts))?;
    let mut files = HashSet::new();
    for d in diff.deltas() {
        for f in [d.old_file().path(), d.new_file().path()]
            .into_iter()
            .flatten()
        {
            files.insert(f.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(files)
}

pub fn run(ui: &Ui, store: &Store, a: ValidateArgs) -> CmdResult {
    let root = store.root();
    let (policy, mut findings) = read_policy(store)?;
    policy_state_findings(store, policy.as_ref(), &mut findings)?;
    if let Some(policy) = &policy {
        let all =
            chg::layout::change_files(root).map_err(|e| Error::io("cannot read changes/", e))?;
        let now = ui.now()?;
        findings.extend(chg::validate::validate_files(
            root,
            &all,
            policy,
            Some(now),
            &|ids| chg::standing::questionnaire_due_among(store, ids, now),
        )?);
        if !a.no_history {
            findings.extend(history_findings(store, now)?);
        }
        if let Some(keep) = kept_files(ui, store, &a)? {
            // The policy's own problems bear on every file; the store-wide warning that
            // nothing is signed is said by a whole-store run, not on every pull request.
            findings.retain(|f| {
                keep.contains(&f.file) || (f.file.starts_with("policy/") && f.rule != "signing")
            });
        }
    }
    findings
        .sort_by(|x, y| (x.file.as_str(), x.pos, x.rule).cmp(&(y.file.as_str(), y.pos, y.rule)));
    let errors = findings.iter().filter(|f| f.is_error()).count();
    match if ui.json(&a.json) {
        Format::Json
    } else {
        a.format
    } {
        Format::Text => {
            let mut s = String::new();
            for f in &findings {
                s.push_str(&format!("{f}\n"));
            }
            ui.out(&s)?;
            let warnings = findings.len() - errors;
            if errors + warnings == 0 {
                eprintln!("chg: no problems found");
            } else {
                eprintln!("chg: {errors} error(s), {warnings} warning(s)");
            }
        }
        Format::Json => {
            let items: Vec<_> = findings
                .iter()
                .map(|f| {
                    json!({
                        "file": f.file,
                        "line": f.pos.map(|p| p.line),
                        "column": f.pos.map(|p| p.column),
                        "id": f.id,
                        "rule": f.rule,
                        "severity": f.severity,
                        "message": f.message,
                    })
                })
                .collect();
            ui.out_json(&items)?;
        }
        Format::Github => {
            // Workflow commands on purpose: their data is escaped by GitHub's rules.
            ui.out_unfiltered(&chg::text::controls_escaped(&github_annotations(
                store, &findings,
            )))?;
        }
    }
    Ok(if errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The policy in the work tree with its signers and catalogue, as validate judges it
/// (`None` when it does not parse), and the findings about it.
fn read_policy(store: &Store) -> Result<(Option<Policy>, Vec<Finding>), Error> {
    let root = store.root();
    let policy_bytes = chg::decode::read_bounded(&root.join(POLICY_PATH))
        .map_err(|e| Error::io(format!("cannot read {POLICY_PATH}"), e))?;
    // Validate judges the work tree: its policy, signers and catalogue as they stand.
    Ok(match chg::policy_source::parse(&policy_bytes) {
        Ok((mut p, mut w)) => {
            let files = chg::policy_source::Files::WorkTree(root);
            let attached = chg::policy_source::attach(&mut p, &files, store.template_history()?)?;
            if let Some(signers) = p.signers() {
                signers.remember_in(store.proven_signatures());
            }
            w.extend(attached.signers);
            w.extend(attached.templates);
            (Some(p), w)
        }
        Err(f) => (None, f),
    })
}

/// What the policy's standing says: no signatures required, edits not committed (and
/// how they take effect), or a policy at HEAD that nobody authorized.
fn policy_state_findings(
    store: &Store,
    policy: Option<&Policy>,
    findings: &mut Vec<Finding>,
) -> Result<(), Error> {
    if let Some(p) = policy
        && p.signing.as_ref().is_none_or(|s| s.required_for.is_empty())
    {
        findings.push(Finding::warning(
            POLICY_PATH,
            None,
            "signing",
            "the policy requires no signatures: approvals name people without proving who made them (anyone who can push can write one); add `signing` (README: Signed records)",
        ));
    }
    if store.policy_has_uncommitted_edits()? {
        // Under governance a commit of them would be unauthorized: the way in is a proposal.
        let governed = store.policy().is_ok_and(|p| p.governance.is_some());
        findings.push(Finding::warning(
            POLICY_PATH,
            None,
            "policy-uncommitted",
            if governed {
                "the policy has uncommitted edits: validate reports them, but state changes are judged by the policy committed at HEAD; the policy is governed, so they take effect through `chg policy propose` and, once approved, `chg policy apply` (a plain commit would be policy-unauthorized)"
            } else {
                "the policy has uncommitted edits: validate reports them, but state changes are judged by the policy committed at HEAD until they are committed"
            },
        ));
    }
    if let Some((commit, why)) = store.unauthorized_policy()? {
        findings.push(Finding::error(
            policy_file_changed_by(store, commit).unwrap_or_else(|| POLICY_PATH.to_owned()),
            None,
            chg::governance::UNAUTHORIZED,
            format!(
                "{why}; no step is judged by it until it is reverted (`git revert {}`) or proposed and applied",
                &commit.to_string()[..8]
            ),
        ));
    }
    Ok(())
}

/// The files (relative to the store) whose findings are reported: those named on the
/// command line and/or changed since `--changed-since`; `None` for the whole store.
fn kept_files(ui: &Ui, store: &Store, a: &ValidateArgs) -> Result<Option<HashSet<String>>, Error> {
    let mut keep: Option<HashSet<String>> = None;
    if !a.targets.is_empty() {
        let mut set = HashSet::new();
        for t in &a.targets {
            set.insert(target_file(ui, store, t)?);
        }
        keep = Some(set);
    }
    if let Some(rev) = &a.changed_since {
        let prefix = store.repo_path(std::path::Path::new(""));
        let changed: HashSet<String> = changed_files(store, rev)?
            .into_iter()
            .filter_map(|f| f.strip_prefix(&prefix).map(str::to_owned))
            .collect();
        keep = Some(match keep {
            Some(k) => k.intersection(&changed).cloned().collect(),
            None => changed,
        });
    }
    Ok(keep)
}

/// The file (relative to the store) a target names: an existing file first; then an id
/// as every command takes it (`6`, `2025-6`, `chg-2025-6`).
fn target_file(ui: &Ui, store: &Store, t: &str) -> Result<String, Error> {
    let root = store.root();
    let as_id = if std::path::Path::new(t).exists() {
        None
    } else {
        ui.parse_id(t).ok()
    };
    if let Some(id) = as_id {
        let rel = store.find(&id)?;
        return Ok(rel.display().to_string());
    }
    let p = PathBuf::from(t);
    let abs = if p.is_absolute() {
        p
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io("cannot read the current folder", e))?
            .join(p)
    };
    let abs = abs
        .canonicalize()
        .map_err(|_| Error::Usage(format!("`{t}` is neither a change id nor an existing file")))?;
    let rel = abs
        .strip_prefix(root)
        .map_err(|_| Error::Usage(format!("{t} is outside the store {}", root.display())))?;
    Ok(rel.display().to_string())
}

/// The findings as GitHub Actions workflow commands: exactly the SPEC's `::error
/// file=…,line=…,col=…::message`, the rule leading the message as in the text format.
fn github_annotations(store: &Store, findings: &[Finding]) -> String {
    let mut s = String::new();
    for f in findings {
        let level = if f.is_error() { "error" } else { "warning" };
        let file = store.repo_path(std::path::Path::new(&f.file));
        let mut props = format!("file={}", gh_escape_prop(&file));
        if let Some(p) = f.pos {
            props.push_str(&format!(",line={},col={}", p.line, p.column));
        }
        let message = format!("{}: {}", f.rule, f.message);
        s.push_str(&format!(
            "::{level} {props}::{}\n",
            gh_escape_data(&message)
        ));
    }
    s
}

/// Open changes whose committed history does not verify (a status, approval or record
/// that chg's verified steps did not produce): the gate and implement refuse them.
fn history_findings(store: &Store, now: jiff::Timestamp) -> Result<Vec<Finding>, Error> {
    let mut out = Vec::new();
    for (id, b) in chg::standing::open_breaks(store, now)? {
        let Ok(cid) = id.parse::<chg::model::ChangeId>() else {
            continue;
        };
        // A deleted or renumbered change has no file to report at.
        let Ok(loaded) = store.load(&cid) else {
            continue;
        };
        if loaded.change().status().is_terminal() {
            continue;
        }
        out.push(Finding::error(
            loaded.rel.display().to_string(),
            None,
            chg::standing::UNVERIFIED,
            format!("{}; the gate and implement refuse it", b.sentence(&id)),
        ));
    }
    Ok(out)
}

/// The first file under `policy/` that `commit` changed (against its first parent), relative
/// to the store: where a finding about that commit belongs (an allowed signers or template
/// change is not a change of policy.yaml).
fn policy_file_changed_by(store: &Store, commit: git2::Oid) -> Option<String> {
    let repo = store.repo();
    let c = repo.find_commit(commit).ok()?;
    let tree = c.tree().ok()?;
    let parent = c.parent(0).ok().and_then(|p| p.tree().ok());
    let dir = store.repo_path(std::path::Path::new("policy"));
    let mut opts = git2::DiffOptions::new();
    opts.pathspec(&dir);
    let diff = repo
        .diff_tree_to_tree(parent.as_ref(), Some(&tree), Some(&mut opts))
        .ok()?;
    let prefix = store.repo_path(std::path::Path::new(""));
    diff.deltas().find_map(|d| {
        let p = d.new_file().path().or(d.old_file().path())?;
        let p = p.to_string_lossy().replace('\\', "/");
        p.strip_prefix(&prefix).map(str::to_owned)
    })
}

fn gh_escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn gh_escape_prop(s: &str) -> String {
    gh_escape_data(s).replace(':', "%3A").replace(',', "%2C")
}
