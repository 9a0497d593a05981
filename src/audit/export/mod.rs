//! The evidence pack of `chg audit export`: what an auditor takes away for a period.
//!
//! Everything is read from the commit audited (HEAD), never from the work tree, so the pack
//! is reproducible from the repository and the manifest's `head`. The population is every
//! change at HEAD with any recorded activity in the period (requested, approved or
//! rejected, implemented, completed, reviewed, cancelled, or touched by a commit), so a
//! change that skipped a step still shows up; a change file deleted outside chg is in
//! `exceptions.csv` (`manual-delete`).

use std::collections::HashMap;

use git2::{ObjectType, Oid, Repository, Tree};
use jiff::Timestamp;
use serde_json::json;

use super::{AuditFinding, Entry, Level};
use crate::decode;
use crate::error::{Error, Result};
use crate::model::{ChangeModel, ChangeRequest, Decision, format_timestamp};
use crate::policy::Policy;
use crate::report::{Csv, MarkdownTable, md_cell};

mod pages;
mod population;
use pages::{duties, evidence_md, proposal_diff, signature_marks, signing_markdown, ts};
use population::{Population, population};

/// What to export.
#[derive(Debug, Clone)]
pub struct Request {
    /// First instant of the period.
    pub since: Timestamp,
    /// First instant after the period.
    pub until: Timestamp,
    /// The command line, for the manifest.
    pub command: String,
    /// Re-verify every commit.
    pub full: bool,
    /// The present.
    pub now: Timestamp,
    /// Export from a shallow clone anyway, marked partial.
    pub allow_partial: bool,
    /// Who will sign the manifest (email, OpenSSH public key), named in it.
    pub signer: Option<(String, String)>,
    /// Deployments from a CI/CD system to reconcile (`--deployments`), already read.
    pub deployments: Option<Vec<super::reconcile::Deployed>>,
}

/// The pack: file names (relative, `/`-separated) and contents, `manifest.json` and
/// `SHA256SUMS` last.
#[derive(Debug, Clone)]
pub struct Pack {
    /// The files.
    pub files: Vec<(String, Vec<u8>)>,
    /// Changes in the population.
    pub population: usize,
    /// Exceptions in the period.
    pub exceptions: usize,
}

/// The change files in `tree` under `dir`, decoded.
fn changes_at(
    repo: &Repository,
    tree: &Tree<'_>,
    dir: &str,
) -> Result<Vec<(String, ChangeRequest)>> {
    use rayon::prelude::*;
    let mut blobs: Vec<(String, Oid)> = Vec::new();
    let root = match tree.get_path(std::path::Path::new(dir)) {
        Ok(e) if e.kind() == Some(ObjectType::Tree) => repo.find_tree(e.id())?,
        _ => return Ok(Vec::new()),
    };
    root.walk(git2::TreeWalkMode::PreOrder, |parent, e| {
        let name = e.name().unwrap_or("");
        if e.kind() == Some(ObjectType::Blob) && name.ends_with(".yaml") {
            blobs.push((format!("{dir}/{parent}{name}"), e.id()));
        }
        git2::TreeWalkResult::Ok
    })?;
    let contents: Vec<(String, Vec<u8>)> = blobs
        .into_iter()
        .map(|(p, id)| Ok((p, repo.find_blob(id)?.content().to_vec())))
        .collect::<Result<_>>()?;
    Ok(contents
        .into_par_iter()
        .filter_map(|(p, bytes)| {
            let d = decode::decode_bytes_with(&p, &bytes, false);
            d.parsed.then_some((p, d.change))
        })
        .collect())
}

fn in_period(c: &ChangeRequest, entries: &[Entry], since: Timestamp, until: Timestamp) -> bool {
    let within = |t: Timestamp| t >= since && t < until;
    let mut times: Vec<Timestamp> = c.request_date.into_iter().collect();
    times.extend(c.approvals.iter().map(|a| a.at));
    if let Some(i) = &c.implementation {
        times.extend(i.started_at);
        times.extend(i.completed_at);
    }
    times.extend(c.review.as_ref().map(|r| r.at));
    times.extend(c.cancellation.as_ref().map(|x| x.at));
    times.extend(entries.iter().map(|e| e.when));
    times.into_iter().any(within)
}

/// The policies a change's records were written under (SPEC section 7: every record is
/// judged by the policy and signers in force at the parent of the commit that wrote it),
/// read from its history: by record (its signature path), and the policy of the last
/// commit that added a record (for segregation of duties, judged on the change as its last
/// step left it). Records history does not show fall back to HEAD's.
struct DayPolicies {
    by_record: HashMap<String, std::sync::Arc<Policy>>,
    last_record: Option<std::sync::Arc<Policy>>,
}

fn day_policies(
    auditor: &mut super::Auditor<'_>,
    repo: &Repository,
    entries: &[Entry],
) -> Result<DayPolicies> {
    let mut out = DayPolicies {
        by_record: HashMap::new(),
        last_record: None,
    };
    let mut decisions = 0;
    for e in entries {
        let Ok(oid) = Oid::from_str(&e.commit) else {
            continue;
        };
        let commit = repo.find_commit(oid)?;
        let Some(blob) = crate::git::blob_at(&commit.tree()?, &e.path)? else {
            continue;
        };
        let version = auditor.decode(blob, &e.path)?;
        let Ok(version) = version.as_ref() else {
            continue;
        };
        let new: Vec<String> = crate::signing::records(version)
            .into_iter()
            .map(|r| r.path)
            .filter(|p| !out.by_record.contains_key(p))
            .collect();
        let more_decisions = version.approvals.len() > decisions;
        decisions = decisions.max(version.approvals.len());
        if new.is_empty() && !more_decisions {
            continue;
        }
        let Some(parent) = commit.parents().next() else {
            continue;
        };
        let policy = auditor.policy_of(&parent.tree()?)?;
        out.last_record = Some(policy.clone());
        for p in new {
            out.by_record.insert(p, policy.clone());
        }
    }
    Ok(out)
}

/// The changes whose file a commit deleted without chg (`manual-delete`) and no file at HEAD
/// holds again: their last known state, read from the deleting commit's parent.
fn deleted_changes(
    auditor: &mut super::Auditor<'_>,
    repo: &Repository,
    findings: &[AuditFinding],
    present: &[(String, ChangeRequest, Option<String>)],
) -> Result<Vec<(String, ChangeRequest, Option<String>)>> {
    let mut out: Vec<(String, ChangeRequest, Option<String>)> = Vec::new();
    for f in findings.iter().filter(|f| f.rule == "manual-delete") {
        let (Some(id), Some(path)) = (&f.change, &f.path) else {
            continue;
        };
        let here = |c: &ChangeRequest| c.id.as_ref().is_some_and(|x| x.to_string() == *id);
        if present.iter().any(|(_, c, _)| here(c)) || out.iter().any(|(_, c, _)| here(c)) {
            continue;
        }
        let Ok(oid) = Oid::from_str(&f.commit) else {
            continue;
        };
        let Some(parent) = repo.find_commit(oid)?.parents().next() else {
            continue;
        };
        let Some(blob) = crate::git::blob_at(&parent.tree()?, path)? else {
            continue;
        };
        if let Ok(c) = auditor.decode(blob, path)?.as_ref() {
            out.push((path.clone(), c.clone(), Some(f.commit.clone())));
        }
    }
    Ok(out)
}

/// Builds the evidence pack for the store's branch.
pub fn build(store: &dyn crate::git::Located, req: &Request) -> Result<Pack> {
    let (partial, report, head, logs) = audited(store, req)?;
    let repo = store.repo();
    let tree = repo.find_commit(head)?.tree()?;
    let mut auditor = super::Auditor::new(repo, store.prefix());
    let policy = auditor.policy_of(&tree)?;
    let signing = signing_periods(repo, store.prefix(), &report.findings, req.since, req.until)?;
    let range = period_commits(repo, head, req.since, req.until)?;
    let changes = all_changes(&mut auditor, repo, &tree, store.prefix(), &report.findings)?;
    let period_findings: Vec<AuditFinding> = report
        .findings
        .iter()
        .filter(|f| f.rule == "history-rewritten" || (f.when >= req.since && f.when < req.until))
        .cloned()
        .collect();
    let Population {
        mut files,
        csv,
        count: population,
        sod_failures,
    } = population(
        &mut auditor,
        repo,
        &changes,
        &logs,
        &report.findings,
        &policy,
        req,
    )?;
    let controls = summary_files(
        &mut files,
        csv,
        &period_findings,
        (population, sod_failures),
        &signing,
    );
    let exceptions = period_findings
        .iter()
        .filter(|f| f.level == Level::Exception)
        .count();

    policy_version_files(repo, store.prefix(), &signing, &mut files)?;
    if partial {
        mark_partial(&mut files);
    }
    let deployments = reconcile_into(req, &changes, &mut files);
    let exceptions = exceptions + deployments["unreconciled"].as_u64().unwrap_or(0) as usize;
    let hashes: Vec<serde_json::Value> = files
        .iter()
        .map(|(p, b)| json!({"path": p, "bytes": b.len(), "sha256": sha256(b)}))
        .collect();
    let manifest = json!({
        "tool": "chg",
        "version": env!("CARGO_PKG_VERSION"),
        "command": req.command,
        "generated_at": format_timestamp(req.now),
        "repository": repository_json(store, head, partial, report.commits)?,
        "partial": partial,
        "signer": req.signer.as_ref().map(|(email, key)| json!({
            "email": email,
            "key": key,
            "signature": "manifest.json.sig (SSHSIG, namespace chg-evidence)",
        })),
        "period_commits": {
            "first": range.first().map(|c| c.to_string()),
            "last": range.last().map(|c| c.to_string()),
            "count": range.len(),
        },
        "policy_versions": policy_versions_json(&signing),
        "period": {"since": format_timestamp(req.since), "until": format_timestamp(req.until)},
        "rows": {
            "population": population,
            "evidence_files": population,
            "exceptions": exceptions,
            // Counted, not subtracted: exceptions include unreconciled deployments, which
            // are not audit findings.
            "notes": period_findings.iter().filter(|f| f.level == Level::Note).count(),
        },
        "controls": controls,
        "deployments": deployments,
        "signing": signing_json(&signing),
        "files": hashes,
    });
    seal(&mut files, &manifest)?;
    Ok(Pack {
        files,
        population,
        exceptions,
    })
}

/// The audit the pack is built on: whether the clone is shallow (refused unless
/// `allow_partial`: its population and verdicts would be incomplete while looking whole),
/// the audit report, the commit audited (HEAD) and every change's history.
fn audited(
    store: &dyn crate::git::Located,
    req: &Request,
) -> Result<(bool, super::Report, Oid, super::feed::Histories)> {
    // A shallow clone holds only part of the history: its population and verdicts would
    // be incomplete while looking whole.
    let partial = !crate::git::shallow_commits(store.repo()).is_empty();
    if partial && !req.allow_partial {
        return Err(Error::Usage(
            "this clone is shallow, so the history behind the pack is incomplete; fetch the whole history (`git fetch --unshallow`, or a fetch depth of 0 in CI), or pass --allow-partial to mark the pack as partial".into(),
        ));
    }
    let (report, idx, logs) = super::run_with_index(
        store,
        &super::Options {
            since: None,
            until: None,
            full: req.full,
            now: req.now,
        },
        super::index::Index::all_logs,
    )?;
    let Some(head) = idx.tip().and_then(|t| Oid::from_str(t).ok()) else {
        return Err(Error::Usage(
            "the repository has no commits to export".into(),
        ));
    };
    Ok((partial, report, head, logs))
}

/// Every change the pack can count: those at HEAD (`tree`) and those whose file a commit
/// deleted without chg, which stay in the population of every period they touched, with
/// their last known state and the commit that deleted them. Sorted by id, then path.
fn all_changes(
    auditor: &mut super::Auditor<'_>,
    repo: &Repository,
    tree: &Tree<'_>,
    prefix: &str,
    findings: &[AuditFinding],
) -> Result<Vec<(String, ChangeRequest, Option<String>)>> {
    let mut changes: Vec<(String, ChangeRequest, Option<String>)> =
        changes_at(repo, tree, &format!("{prefix}changes"))?
            .into_iter()
            .map(|(p, c)| (p, c, None))
            .collect();
    changes.extend(deleted_changes(auditor, repo, findings, &changes)?);
    changes.sort_by(|a, b| a.1.id.cmp(&b.1.id).then(a.0.cmp(&b.0)));
    Ok(changes)
}

/// The manifest's `policy_versions`: each policy in force in the period and its folder.
fn policy_versions_json(signing: &[SigningPeriod]) -> Vec<serde_json::Value> {
    signing
        .iter()
        .map(|p| {
            json!({
                "commit": p.commit,
                "from": format_timestamp(p.from),
                "until": format_timestamp(p.until),
                "files": format!("policy-versions/{}/", &p.commit[..p.commit.len().min(12)]),
            })
        })
        .collect()
}

/// The manifest's `signing`: which records each policy of the period required signed.
fn signing_json(signing: &[SigningPeriod]) -> Vec<serde_json::Value> {
    signing
        .iter()
        .map(|p| {
            json!({
                "from": format_timestamp(p.from),
                "until": format_timestamp(p.until),
                "policy_commit": p.commit,
                "required_for": p.required_for,
                "server_attests": p.server_attests.as_ref().map(|a| json!({
                    "roles": a.roles,
                    "max_risk": a.max_risk.as_str(),
                    "signer": a.signer,
                })),
            })
        })
        .collect()
}

/// Puts the summary files first (`population.csv`, `exceptions.csv` of the period's
/// findings, `controls.md`, which counts the population and its rows failing segregation
/// of duties) and returns the controls as the manifest lists them.
fn summary_files(
    files: &mut Vec<(String, Vec<u8>)>,
    population_csv: String,
    period_findings: &[AuditFinding],
    (population, sod_failures): (usize, usize),
    signing: &[SigningPeriod],
) -> Vec<serde_json::Value> {
    files.insert(0, ("population.csv".into(), population_csv.into_bytes()));
    files.insert(
        1,
        (
            "exceptions.csv".into(),
            findings_csv(period_findings).into_bytes(),
        ),
    );
    let period_refs: Vec<&AuditFinding> = period_findings.iter().collect();
    files.insert(
        2,
        (
            "controls.md".into(),
            format!(
                "{}\nPopulation rows whose segregation_of_duties column fails: {sod_failures} of {population} (judged by the policy of each change's last step; the exceptions above are the commits that broke a rule).\n{}",
                super::controls::markdown(&period_refs, population),
                signing_markdown(signing)
            )
            .into_bytes(),
        ),
    );
    super::controls::CONTROLS
        .iter()
        .map(|c| {
            json!({
                "id": c.id,
                "criterion": c.criterion,
                "checks": c.checks,
                "evidence": c.evidence,
                "exceptions": c.exceptions(&period_refs).len(),
            })
        })
        .collect()
}

/// The manifest's `repository`: where the pack comes from, so it can be checked against
/// the repository.
fn repository_json(
    store: &dyn crate::git::Located,
    head: Oid,
    partial: bool,
    commits_audited: u64,
) -> Result<serde_json::Value> {
    let repo = store.repo();
    Ok(json!({
        "head": head.to_string(),
        "branch": branch_name(repo),
        "remote": remote_url(repo),
        "root_commits": root_commits(repo, head)?,
        "shallow": partial,
        "store": if store.prefix().is_empty() { "." } else { store.prefix() },
        "commits_audited": commits_audited,
    }))
}

/// Ends the pack: `manifest.json` (pretty-printed), then `SHA256SUMS` over every file.
fn seal(files: &mut Vec<(String, Vec<u8>)>, manifest: &serde_json::Value) -> Result<()> {
    let manifest =
        serde_json::to_vec_pretty(manifest).map_err(|e| Error::Internal(e.to_string()))?;
    files.push(("manifest.json".into(), manifest));
    let sums: String = files
        .iter()
        .map(|(p, b)| format!("{}  {p}\n", sha256(b)))
        .collect();
    files.push(("SHA256SUMS".into(), sums.into_bytes()));
    Ok(())
}

/// The policy, allowed signers and templates of every version in force in the period,
/// under `policy-versions/`: the auditor tests roles, signatures and templates from the
/// pack alone.
fn policy_version_files(
    repo: &Repository,
    prefix: &str,
    signing: &[SigningPeriod],
    files: &mut Vec<(String, Vec<u8>)>,
) -> Result<()> {
    for p in signing {
        let Ok(oid) = Oid::from_str(&p.commit) else {
            continue;
        };
        let t = repo.find_commit(oid)?.tree()?;
        let dir = format!("{}policy", prefix);
        if let Ok(e) = t.get_path(std::path::Path::new(&dir)) {
            let sub = repo.find_tree(e.id())?;
            let mut found: Vec<(String, Oid)> = Vec::new();
            sub.walk(git2::TreeWalkMode::PreOrder, |parent, e| {
                if e.kind() == Some(ObjectType::Blob) {
                    found.push((format!("{parent}{}", e.name().unwrap_or("")), e.id()));
                }
                git2::TreeWalkResult::Ok
            })?;
            for (rel, blob) in found {
                files.push((
                    format!("policy-versions/{}/policy/{rel}", &p.commit[..12]),
                    repo.find_blob(blob)?.content().to_vec(),
                ));
            }
        }
    }
    Ok(())
}

/// Marks a pack exported from a shallow clone: a `PARTIAL` file, and a line atop every
/// page.
fn mark_partial(files: &mut Vec<(String, Vec<u8>)>) {
    files.push((
        "PARTIAL".into(),
        b"This pack was exported from a shallow clone (--allow-partial): the history before the clone's cut is missing, so the population and the verdicts may be incomplete.\n".to_vec(),
    ));
    for (name, bytes) in files.iter_mut() {
        if name.ends_with(".md") {
            let mut marked =
                b"> **Partial**: exported from a shallow clone; see PARTIAL.\n\n".to_vec();
            marked.extend_from_slice(bytes);
            *bytes = marked;
        }
    }
}

/// The branch HEAD is on, if any.
fn branch_name(repo: &Repository) -> Option<String> {
    let head = repo.head().ok()?;
    if !head.is_branch() {
        return None;
    }
    head.shorthand().ok().map(str::to_owned)
}

/// The URL of the remote the branch tracks, else of `origin`, if any, without credentials
/// (the pack is handed to others).
fn remote_url(repo: &Repository) -> Option<String> {
    let config = repo.config().ok()?;
    let name = branch_name(repo)
        .and_then(|b| config.get_string(&format!("branch.{b}.remote")).ok())
        .unwrap_or_else(|| "origin".into());
    let url = repo.find_remote(&name).ok()?.url().ok()?.to_owned();
    // `https://user:token@host/x` → `https://host/x`.
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            return Some(format!("{scheme}://{}", &rest[at + 1..]));
        }
    }
    Some(url)
}

/// The root commits behind HEAD (where the history begins).
fn root_commits(repo: &Repository, head: Oid) -> Result<Vec<String>> {
    let mut walk = repo.revwalk()?;
    walk.push(head)?;
    let mut out = Vec::new();
    for oid in walk {
        let oid = oid?;
        if repo.find_commit(oid)?.parent_count() == 0 {
            out.push(oid.to_string());
        }
    }
    Ok(out)
}

/// The commits behind HEAD made in the period (by commit time), oldest first.
fn period_commits(
    repo: &Repository,
    head: Oid,
    since: Timestamp,
    until: Timestamp,
) -> Result<Vec<Oid>> {
    let mut walk = repo.revwalk()?;
    walk.set_sorting(git2::Sort::TIME | git2::Sort::REVERSE)?;
    walk.push(head)?;
    let mut out = Vec::new();
    for oid in walk {
        let oid = oid?;
        let t = repo.find_commit(oid)?.time().seconds();
        if t >= since.as_second() && t < until.as_second() {
            out.push(oid);
        }
    }
    Ok(out)
}

/// With `--deployments`: `deployments.csv` (each deployment in the period and the change
/// that records it, or `unreconciled`), and each unreconciled one appended to
/// `exceptions.csv`. The counts, for the manifest (`null` without `--deployments`).
fn reconcile_into(
    req: &Request,
    changes: &[(String, ChangeRequest, Option<String>)],
    files: &mut Vec<(String, Vec<u8>)>,
) -> serde_json::Value {
    use super::reconcile;
    let Some(all) = &req.deployments else {
        return serde_json::Value::Null;
    };
    let deployed: Vec<reconcile::Deployed> = all
        .iter()
        .filter(|d| d.time >= req.since && d.time < req.until)
        .cloned()
        .collect();
    let changes: Vec<ChangeRequest> = changes.iter().map(|(_, c, _)| c.clone()).collect();
    let matched = reconcile::reconcile(&deployed, &changes);
    let found = reconcile::findings(&matched);
    if let Some((_, bytes)) = files.iter_mut().find(|(p, _)| p == "exceptions.csv") {
        // The rows without findings_csv's header line.
        let rows = findings_csv(&found);
        bytes.extend_from_slice(rows.split_once('\n').map_or("", |(_, r)| r).as_bytes());
    }
    files.push((
        "deployments.csv".into(),
        reconcile::csv(&matched).into_bytes(),
    ));
    json!({"rows": matched.len(), "reconciled": matched.len() - found.len(), "unreconciled": found.len()})
}

/// One stretch of the period under one policy version: which records had to be signed.
struct SigningPeriod {
    from: Timestamp,
    until: Timestamp,
    commit: String,
    required_for: Vec<String>,
    /// `signing.server_attests` of that version: where the server could sign in a
    /// person's stead.
    server_attests: Option<crate::policy::ServerAttests>,
}

/// The policy versions in force over `since..until` (from the audit's policy-change notes,
/// each version read at its commit), with the records each required signed: an auditor
/// sees for which stretch approvals prove who made them and for which they are claims.
fn signing_periods(
    repo: &git2::Repository,
    prefix: &str,
    findings: &[AuditFinding],
    since: Timestamp,
    until: Timestamp,
) -> Result<Vec<SigningPeriod>> {
    // In history order, as the audit lists them (commit times may tie or go backwards).
    let changes: Vec<(Timestamp, &str)> = findings
        .iter()
        .filter(|f| f.rule == "policy-change")
        .map(|f| (f.when, f.commit.as_str()))
        .collect();
    let mut auditor = super::Auditor::new(repo, prefix);
    let mut out: Vec<SigningPeriod> = Vec::new();
    for (i, (when, commit)) in changes.iter().enumerate() {
        let end = changes.get(i + 1).map_or(until, |n| n.0);
        let (from, to) = ((*when).max(since), end.min(until));
        // A version replaced within the same second still governed nothing: skipped; the
        // last version always shows.
        if from > to || (from == to && i + 1 < changes.len()) {
            continue;
        }
        let Ok(oid) = Oid::from_str(commit) else {
            continue;
        };
        let policy = auditor.policy_of(&repo.find_commit(oid)?.tree()?)?;
        out.push(SigningPeriod {
            from,
            until: to,
            commit: (*commit).to_owned(),
            required_for: policy
                .signing
                .as_ref()
                .map(|s| s.required_for.clone())
                .unwrap_or_default(),
            server_attests: policy
                .signing
                .as_ref()
                .and_then(|s| s.server_attests.clone()),
        });
    }
    Ok(out)
}

/// The SHA-256 of `bytes`, in lower-case hex.
pub fn sha256(bytes: &[u8]) -> String {
    crate::text::sha256_hex(bytes)
}

/// Findings as CSV: `level,rule,change,path,commit,author,when,message`.
pub fn findings_csv(findings: &[AuditFinding]) -> String {
    let mut s = Csv::new(&[
        "level", "rule", "change", "path", "commit", "author", "when", "message",
    ]);
    for f in findings {
        let row = [
            f.level.as_str().to_owned(),
            f.rule.clone(),
            f.change.clone().unwrap_or_default(),
            f.path.clone().unwrap_or_default(),
            f.commit.clone(),
            f.author.clone(),
            format_timestamp(f.when),
            f.message.clone(),
        ];
        s.row(&row);
    }
    s.finish()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_remote_is_named_without_its_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init(dir.path()).unwrap();
        assert_eq!(super::remote_url(&repo), None);
        for (url, shown) in [
            (
                "https://ci:s3cret@git.example.com/org/store.git",
                "https://git.example.com/org/store.git",
            ),
            (
                "https://git.example.com/a@b.git",
                "https://git.example.com/a@b.git",
            ),
            (
                "git@git.example.com:org/store.git",
                "git@git.example.com:org/store.git",
            ),
        ] {
            let _ = repo.remote_delete("origin");
            repo.remote("origin", url).unwrap();
            assert_eq!(super::remote_url(&repo).as_deref(), Some(shown), "{url}");
        }
    }
}
