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
use crate::report::csv_field;

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

/// Each signable record's signature as the policy judges it: `approve change-manager by
/// cm@example.com: signed SHA256:…` (or unsigned, or INVALID signature).
fn signature_marks(c: &ChangeRequest, policy: &Policy) -> Vec<String> {
    crate::rules::signature_verdicts(c, policy)
        .into_iter()
        .map(|(r, v)| {
            let role = r
                .statement
                .role
                .as_deref()
                .map(|x| format!(" {x}"))
                .unwrap_or_default();
            format!("{}{role} by {}: {}", r.action, r.actor, v.mark())
        })
        .collect()
}

/// Segregation of duties for one change under the policy at HEAD. For population.csv:
/// `pass`, or `fail: why; …` (the approval rules of `chg validate` beside segregation, then
/// each check of the policy that failed, named: `approver implements: …`). For the change's
/// evidence: a section with one line per check (`pass`, `fail: …`, or allowed by the
/// policy), so an auditor sees what was checked, not only what failed.
fn segregation(c: &ChangeRequest, entries: &[Entry], policy: &Policy) -> (String, String) {
    use crate::policy::SodCheck;
    // Whoever history shows filed the change (as `Standing::creator` reads it).
    let creator = entries
        .iter()
        .find(|e| e.material)
        .map(|e| e.email.as_str());
    let failures = crate::rules::segregation_failures(c, policy, creator);
    let mut why: Vec<String> = crate::validate::approval_problems(c, policy)
        .into_iter()
        .filter(|p| p.severity == crate::finding::Severity::Error && p.rule != "segregation")
        .map(|p| p.message)
        .collect();
    why.extend(failures.iter().map(|(k, w)| format!("{}: {w}", k.label())));
    let column = if why.is_empty() {
        "pass".to_owned()
    } else {
        format!("fail: {}", why.join("; "))
    };
    let mut md = String::from("\n## Segregation of duties\n\n| Check | Verdict |\n| --- | --- |\n");
    for check in SodCheck::ALL {
        let failed: Vec<&str> = failures
            .iter()
            .filter(|(k, _)| *k == check)
            .map(|(_, w)| w.as_str())
            .collect();
        let verdict = if !policy.segregation_of_duties.forbids(check) {
            "allowed by the policy".to_owned()
        } else if failed.is_empty() {
            "pass".to_owned()
        } else {
            format!("fail: {}", failed.join("; ").replace('|', "\\|"))
        };
        md.push_str(&format!("| {} | {verdict} |\n", check.label()));
    }
    (column, md)
}

fn ts(t: Option<Timestamp>) -> String {
    t.map(format_timestamp).unwrap_or_default()
}

fn evidence_md(
    c: &ChangeRequest,
    path: &str,
    entries: &[Entry],
    findings: &[&AuditFinding],
    marks: &[String],
) -> String {
    let id = c.id_text();
    let text = |f: &str| c.field_text(f).unwrap_or_else(|| "-".into());
    let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    let mut s = format!(
        "# {id}: {}\n\nFile: `{path}`\n\n## Request\n\n| Field | Value |\n| --- | --- |\n",
        cell(&text("title"))
    );
    for f in [
        "requester",
        "request_date",
        "status",
        "change_type",
        "change_model",
        "priority",
        "urgency",
        "risk_level",
        "affected_systems",
        "impact_scope",
        "description",
        "business_justification",
        "implementation_plan",
        "rollback_plan",
    ] {
        s.push_str(&format!("| {f} | {} |\n", cell(&text(f))));
    }
    if let Some(sch) = &c.schedule {
        s.push_str(&format!("| schedule | {sch} |\n"));
    }
    s.push_str("\n## Approvals\n\n");
    if c.approvals.is_empty() {
        s.push_str("None recorded.\n");
    } else {
        s.push_str("| Role | By | Decision | At | Comments | Conditions |\n| --- | --- | --- | --- | --- | --- |\n");
        for a in &c.approvals {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                a.role,
                a.by,
                a.decision,
                format_timestamp(a.at),
                cell(a.comments.as_deref().unwrap_or("")),
                cell(&a.conditions.join("; "))
            ));
        }
        // One line per signed or signature-required record, with the key's fingerprint.
        for m in marks {
            s.push_str(&format!("\nSignature: {}\n", cell(m)));
        }
    }
    let imp = c.implementation.clone().unwrap_or_default();
    s.push_str(&format!(
        "\n## Testing\n\n| Field | Value |\n| --- | --- |\n| testing_required | {} |\n| test_plan | {} |\n| test_environment | {} |\n| test_results | {} |\n",
        cell(&text("testing_required")),
        cell(&text("test_plan")),
        cell(&text("test_environment")),
        cell(imp.test_results.as_deref().unwrap_or("-"))
    ));
    s.push_str(&format!(
        "\n## Implementation\n\n| Field | Value |\n| --- | --- |\n| implementer | {} |\n| started_at | {} |\n| completed_at | {} |\n| outcome | {} |\n",
        imp.implementer.as_deref().unwrap_or("-"),
        ts(imp.started_at),
        ts(imp.completed_at),
        imp.outcome.map(|o| o.to_string()).unwrap_or_default()
    ));
    s.push_str("\n## Review\n\n");
    match &c.review {
        Some(r) => s.push_str(&format!(
            "By {} at {}: {}\n",
            r.by,
            format_timestamp(r.at),
            cell(&r.summary)
        )),
        None => s.push_str("None recorded.\n"),
    }
    if let Some(x) = &c.cancellation {
        s.push_str(&format!(
            "\n## Cancellation\n\nBy {} at {}: {}\n",
            x.by,
            format_timestamp(x.at),
            cell(&x.reason)
        ));
    }
    s.push_str("\n## History (from git)\n\n| When | Who | Action | Role | From -> To | Commit | Audit |\n| --- | --- | --- | --- | --- | --- | --- |\n");
    for e in entries {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | `{}` | {} |\n",
            format_timestamp(e.when),
            e.email,
            e.action,
            e.role.as_deref().unwrap_or(""),
            e.status_change(),
            e.commit,
            e.verdict()
        ));
    }
    if !findings.is_empty() {
        s.push_str("\n## Audit findings\n\n");
        for f in findings {
            s.push_str(&format!(
                "- {} `{}` {}: {} (commit `{}`, {})\n",
                f.level.as_str(),
                f.rule,
                format_timestamp(f.when),
                cell(&f.message),
                f.commit,
                f.author
            ));
        }
    }
    s
}

/// Builds the evidence pack for the store's branch.
pub fn build(store: &crate::store::Store, req: &Request) -> Result<Pack> {
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
    let repo = store.repo();
    let Some(head) = idx.tip().and_then(|t| Oid::from_str(t).ok()) else {
        return Err(Error::Usage(
            "the repository has no commits to export".into(),
        ));
    };
    let tree = repo.find_commit(head)?.tree()?;
    let policy = super::Auditor::new(repo, store.prefix()).policy_of(&tree)?;
    let signing = signing_periods(repo, store.prefix(), &report.findings, req.since, req.until)?;
    let mut changes = changes_at(repo, &tree, &format!("{}changes", store.prefix()))?;
    changes.sort_by(|a, b| a.1.id.cmp(&b.1.id).then(a.0.cmp(&b.0)));
    let no_entries = Vec::new();
    let period_findings: Vec<&AuditFinding> = report
        .findings
        .iter()
        .filter(|f| f.rule == "history-rewritten" || (f.when >= req.since && f.when < req.until))
        .collect();
    let mut by_change: HashMap<&str, Vec<&AuditFinding>> = HashMap::new();
    for f in &report.findings {
        if let Some(c) = &f.change {
            by_change.entry(c.as_str()).or_default().push(f);
        }
    }

    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut pop = String::from(
        "id,title,change_type,change_model,risk_level,priority,status,requester,request_date,approvals,implementer,implementation_start,implementation_end,outcome,review_date,emergency,segregation_of_duties,exceptions,commits,signatures\n",
    );
    let mut population = 0;
    for (path, c) in &changes {
        let id = c.id_text();
        let entries = logs.get(&id).unwrap_or(&no_entries);
        if !in_period(c, entries, req.since, req.until) {
            continue;
        }
        population += 1;
        let findings = by_change.get(id.as_str()).cloned().unwrap_or_default();
        let imp = c.implementation.clone().unwrap_or_default();
        let approvals: Vec<String> = c
            .approvals
            .iter()
            .map(|a| {
                format!(
                    "{}{}={} at {}",
                    a.role,
                    match a.decision {
                        Decision::Approved => "",
                        Decision::Rejected => " (rejected)",
                        Decision::Withdrawn => " (withdrawn)",
                    },
                    a.by,
                    format_timestamp(a.at)
                )
            })
            .collect();
        let (sod, sod_md) = segregation(c, entries, &policy);
        let row = [
            id.clone(),
            c.title.clone().unwrap_or_default(),
            c.change_type.clone().unwrap_or_default(),
            c.model().to_string(),
            c.field_text("risk_level").unwrap_or_default(),
            c.field_text("priority").unwrap_or_default(),
            c.status().to_string(),
            c.requester.clone().unwrap_or_default(),
            ts(c.request_date),
            approvals.join("; "),
            imp.implementer.clone().unwrap_or_default(),
            ts(imp.started_at),
            ts(imp.completed_at),
            imp.outcome.map(|o| o.to_string()).unwrap_or_default(),
            ts(c.review.as_ref().map(|r| r.at)),
            (c.model() == ChangeModel::Emergency).to_string(),
            sod,
            findings
                .iter()
                .filter(|f| f.level == Level::Exception)
                .count()
                .to_string(),
            entries
                .iter()
                .map(|e| e.commit.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            signature_marks(c, &policy).join("; "),
        ];
        let row: Vec<String> = row.iter().map(|v| csv_field(v)).collect();
        pop.push_str(&row.join(","));
        pop.push('\n');
        files.push((
            format!("changes/{id}.md"),
            (evidence_md(c, path, entries, &findings, &signature_marks(c, &policy)) + &sod_md)
                .into_bytes(),
        ));
    }
    let exceptions = period_findings
        .iter()
        .filter(|f| f.level == Level::Exception)
        .count();
    let owned: Vec<AuditFinding> = period_findings.iter().map(|f| (*f).clone()).collect();
    files.insert(0, ("population.csv".into(), pop.into_bytes()));
    files.insert(
        1,
        ("exceptions.csv".into(), findings_csv(&owned).into_bytes()),
    );
    let period_refs: Vec<&AuditFinding> = owned.iter().collect();
    files.insert(
        2,
        (
            "controls.md".into(),
            format!(
                "{}{}",
                super::controls::markdown(&period_refs, population),
                signing_markdown(&signing)
            )
            .into_bytes(),
        ),
    );
    let controls: Vec<serde_json::Value> = super::controls::CONTROLS
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
        .collect();

    let hashes: Vec<serde_json::Value> = files
        .iter()
        .map(|(p, b)| json!({"path": p, "bytes": b.len(), "sha256": sha256(b)}))
        .collect();
    let manifest = json!({
        "tool": "chg",
        "version": env!("CARGO_PKG_VERSION"),
        "command": req.command,
        "generated_at": format_timestamp(req.now),
        "repository": {
            "head": head.to_string(),
            "store": if store.prefix().is_empty() { "." } else { store.prefix() },
            "commits_audited": report.commits,
        },
        "period": {"since": format_timestamp(req.since), "until": format_timestamp(req.until)},
        "rows": {
            "population": population,
            "evidence_files": population,
            "exceptions": exceptions,
            "notes": owned.len() - exceptions,
        },
        "controls": controls,
        "signing": signing.iter().map(|p| json!({
            "from": format_timestamp(p.from),
            "until": format_timestamp(p.until),
            "policy_commit": p.commit,
            "required_for": p.required_for,
        })).collect::<Vec<_>>(),
        "files": hashes,
    });
    let manifest =
        serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Internal(e.to_string()))?;
    files.push(("manifest.json".into(), manifest));
    let sums: String = files
        .iter()
        .map(|(p, b)| format!("{}  {p}\n", sha256(b)))
        .collect();
    files.push(("SHA256SUMS".into(), sums.into_bytes()));
    Ok(Pack {
        files,
        population,
        exceptions,
    })
}

/// One stretch of the period under one policy version: which records had to be signed.
struct SigningPeriod {
    from: Timestamp,
    until: Timestamp,
    commit: String,
    required_for: Vec<String>,
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
        });
    }
    Ok(out)
}

/// The signing periods as a section of controls.md.
fn signing_markdown(periods: &[SigningPeriod]) -> String {
    let mut s = String::from(
        "\n## Signed records\n\nWhich records the policy in force required to carry their maker's SSH signature (checked by chg, verifiable with `ssh-keygen -Y verify`); where none, records name people without proving who made them.\n\n",
    );
    for p in periods {
        s.push_str(&format!(
            "- {} to {} (policy of commit {}): {}\n",
            format_timestamp(p.from),
            format_timestamp(p.until),
            &p.commit[..p.commit.len().min(8)],
            if p.required_for.is_empty() {
                "no signatures required".to_owned()
            } else {
                format!("signed: {}", p.required_for.join(", "))
            }
        ));
    }
    s
}

/// The SHA-256 of `bytes`, in lower-case hex.
pub fn sha256(bytes: &[u8]) -> String {
    crate::text::sha256_hex(bytes)
}

/// Findings as CSV: `level,rule,change,path,commit,author,when,message`.
pub fn findings_csv(findings: &[AuditFinding]) -> String {
    let mut s = String::from("level,rule,change,path,commit,author,when,message\n");
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
        let row: Vec<String> = row.iter().map(|v| csv_field(v)).collect();
        s.push_str(&row.join(","));
        s.push('\n');
    }
    s
}
