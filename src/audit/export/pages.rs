//! The pack's Markdown pages: one per change (its fields, history, signatures, duties,
//! proposal diff) and the signing section of `controls.md`.

use super::*;

/// A policy proposal's change against the `policy/` it was proposed on (`policy_base`, a
/// tree of this repository), as a unified diff; `None` for other changes or a base this
/// repository does not hold.
pub(super) fn proposal_diff(repo: &Repository, c: &ChangeRequest) -> Option<String> {
    let proposed = c.proposed_policy.as_ref()?;
    let base = repo
        .find_tree(Oid::from_str(c.policy_base.as_deref()?).ok()?)
        .ok()?;
    let mut files = std::collections::BTreeMap::new();
    base.walk(git2::TreeWalkMode::PreOrder, |parent, e| {
        if e.kind() == Some(ObjectType::Blob)
            && let Ok(b) = repo.find_blob(e.id())
        {
            files.insert(
                format!(
                    "{}/{parent}{}",
                    crate::governance::POLICY_DIR,
                    e.name().unwrap_or("")
                ),
                String::from_utf8_lossy(b.content()).into_owned(),
            );
        }
        git2::TreeWalkResult::Ok
    })
    .ok()?;
    crate::governance::diff(&files, proposed).ok()
}

/// Each signable record's signature as the policy of its day judges it: `approve
/// change-manager by cm@example.com: signed SHA256:…` (or unsigned, or INVALID signature).
pub(super) fn signature_marks(c: &ChangeRequest, head: &Policy, day: &DayPolicies) -> Vec<String> {
    // Each record's verdict under the policy it was written under; verdicts are computed
    // once per distinct policy.
    let mut verdicts: Vec<(String, crate::signing::Record<'_>, crate::signing::Verdict)> =
        Vec::new();
    let mut policies: Vec<&Policy> = vec![head];
    for p in day.by_record.values() {
        if !policies.iter().any(|q| std::ptr::eq(*q, &**p)) {
            policies.push(p);
        }
    }
    for policy in policies {
        for (r, v) in crate::rules::signature_verdicts(c, policy) {
            let written_under = day.by_record.get(&r.path).map_or(head, |p| &**p);
            if std::ptr::eq(written_under, policy) {
                verdicts.push((r.path.clone(), r, v));
            }
        }
    }
    // In the file's order.
    let order: Vec<String> = crate::signing::records(c)
        .into_iter()
        .map(|r| r.path)
        .collect();
    verdicts.sort_by_key(|(p, _, _)| order.iter().position(|o| o == p));
    verdicts
        .into_iter()
        .map(|(_, r, v)| {
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
pub(super) fn segregation(
    c: &ChangeRequest,
    entries: &[Entry],
    policy: &Policy,
) -> (String, String) {
    use crate::policy::SodCheck;
    // Whoever history shows filed the change (as `Standing::creator` reads it).
    let creator = entries
        .iter()
        .find(|e| e.material)
        .map(|e| e.email.as_str());
    let failures = crate::rules::segregation_failures(c, policy, creator);
    let mut why: Vec<String> = crate::validate::approval_problems(c, policy)
        .into_iter()
        .filter(|p| {
            p.severity == crate::finding::Severity::Error && p.rule != crate::rules::SEGREGATION
        })
        .map(|p| p.message)
        .collect();
    why.extend(failures.iter().map(|(k, w)| format!("{}: {w}", k.label())));
    let column = if why.is_empty() {
        "pass".to_owned()
    } else {
        format!("fail: {}", why.join("; "))
    };
    let mut md = MarkdownTable::left(&["Check", "Verdict"]);
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
        md.row([check.label(), &verdict]);
    }
    (
        column,
        format!("\n## Segregation of duties\n\n{}", md.finish()),
    )
}

/// The change's segregation of duties: judged by the policy of its last step (its day's),
/// and failed by what the audit found against it (a duty broken on a branch and merged,
/// say), whatever that policy allowed. The population column and the page's section.
pub(super) fn duties(
    c: &ChangeRequest,
    entries: &[Entry],
    findings: &[&AuditFinding],
    day: &DayPolicies,
    head: &Policy,
) -> (String, String) {
    let (sod, md) = segregation(c, entries, day.last_record.as_deref().unwrap_or(head));
    if sod.starts_with("fail") {
        return (sod, md);
    }
    match findings
        .iter()
        .find(|f| f.level == Level::Exception && f.rule == crate::rules::SEGREGATION)
    {
        Some(f) => (
            format!(
                "fail: {} (commit {})",
                f.message,
                &f.commit[..f.commit.len().min(8)]
            ),
            md,
        ),
        None => (sod, md),
    }
}

pub(super) fn ts(t: Option<Timestamp>) -> String {
    t.map(format_timestamp).unwrap_or_default()
}

/// A change's page in the pack (`changes/<id>.md`): its request, approvals, testing,
/// implementation, review, signatures, proposed policy, history and audit findings.
pub(super) fn evidence_md(
    c: &ChangeRequest,
    path: &str,
    entries: &[Entry],
    findings: &[&AuditFinding],
    marks: &[String],
    deleted: Option<&str>,
    proposal_diff: Option<&str>,
) -> String {
    let mut s = request_md(c, path, deleted);
    approvals_md(&mut s, c, marks);
    work_md(&mut s, c);
    signatures_md(&mut s, c);
    proposed_policy_md(&mut s, c, proposal_diff);
    history_md(&mut s, entries, findings);
    s
}

/// A field of the change as text, `-` when it has none.
fn field_md(c: &ChangeRequest, f: &str) -> String {
    c.field_text(f).unwrap_or_else(|| "-".into())
}

/// The page's title and `## Request` table (after a notice when the file was deleted
/// without chg).
fn request_md(c: &ChangeRequest, path: &str, deleted: Option<&str>) -> String {
    let id = c.id_text();
    let text = |f: &str| field_md(c, f);
    let cell = md_cell;
    let mut s = format!(
        "# {id}: {}\n\nFile: `{path}`\n\n## Request\n\n| Field | Value |\n| --- | --- |\n",
        cell(&text("title"))
    );
    if let Some(commit) = deleted {
        s.insert_str(
            s.find("## Request").unwrap_or(0),
            &format!("**Deleted** by commit `{commit}` without chg (audit exception `manual-delete`); shown as it was last known.\n\n"),
        );
    }
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
        "template",
        "template_digest",
    ] {
        s.push_str(&format!("| {f} | {} |\n", cell(&text(f))));
    }
    if let Some(answers) = &c.risk_assessment {
        let list: Vec<String> = answers
            .iter()
            .map(|(q, a)| format!("{q}: {}", if *a { "yes" } else { "no" }))
            .collect();
        s.push_str(&format!(
            "| risk_assessment | {} |\n",
            cell(&list.join(", "))
        ));
    }
    if let Some(sch) = &c.schedule {
        s.push_str(&format!("| schedule | {sch} |\n"));
    }
    s
}

/// `## Approvals`: each decision with the digest it was made on, the content's digest
/// now, and a line per signed or signature-required record (`marks`).
fn approvals_md(s: &mut String, c: &ChangeRequest, marks: &[String]) {
    let cell = md_cell;
    s.push_str("\n## Approvals\n\n");
    if c.approvals.is_empty() {
        s.push_str("None recorded.\n");
        return;
    }
    let mut t = MarkdownTable::left(&[
        "Role",
        "By",
        "Decision",
        "At",
        "Comments",
        "Conditions",
        "Digest of the content decided on",
    ]);
    for a in &c.approvals {
        t.row([
            a.role.to_string(),
            a.by.to_string(),
            a.decision.to_string(),
            format_timestamp(a.at),
            cell(a.comments.as_deref().unwrap_or("")),
            cell(&a.conditions.join("; ")),
            format!("`{}`", a.digest.as_deref().unwrap_or("-")),
        ]);
    }
    s.push_str(&t.finish());
    s.push_str(&format!(
        "\nThe content's digest now: `{}` (an approval counts only for the content its digest names).\n",
        c.material_digest()
    ));
    // One line per signed or signature-required record, with the key's fingerprint.
    for m in marks {
        s.push_str(&format!("\nSignature: {}\n", cell(m)));
    }
}

/// `## Testing`, `## Implementation`, `## Review` and (when cancelled) `## Cancellation`.
fn work_md(s: &mut String, c: &ChangeRequest) {
    let text = |f: &str| field_md(c, f);
    let cell = md_cell;
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
}

/// `## Signatures`: the signatures themselves, so a record can be checked with plain
/// ssh-keygen from the pack alone (the statement's lines are in the README; it ends with
/// a newline).
fn signatures_md(s: &mut String, c: &ChangeRequest) {
    let signed: Vec<crate::signing::Record<'_>> = crate::signing::records(c)
        .into_iter()
        .filter(|r| r.signature.is_some())
        .collect();
    if !signed.is_empty() {
        s.push_str("\n## Signatures\n");
        for r in signed {
            s.push_str(&format!(
                "\n`{}` ({} by {}), over the statement:\n\n```\n{}```\n\n```\n{}\n```\n",
                r.path,
                r.action,
                r.actor,
                r.statement.text(),
                r.signature.unwrap_or("").trim_end()
            ));
        }
    }
}

/// For a policy change: its diff against the policy it was proposed against, and the
/// files approved.
fn proposed_policy_md(s: &mut String, c: &ChangeRequest, proposal_diff: Option<&str>) {
    if let Some(diff) = proposal_diff {
        s.push_str(&format!(
            "\n## Proposed policy: its change to the policy it was proposed against\n\n```diff\n{}\n```\n",
            diff.trim_end()
        ));
    }
    if let Some(files) = &c.proposed_policy {
        s.push_str("\n## Proposed policy (the content approved)\n");
        for (name, text) in files {
            s.push_str(&format!(
                "\n`{name}`:\n\n```yaml\n{}\n```\n",
                text.trim_end()
            ));
        }
    }
}

/// `## History (from git)`, one row per step with its verdict, and the audit findings
/// about the change.
fn history_md(s: &mut String, entries: &[Entry], findings: &[&AuditFinding]) {
    let mut t = MarkdownTable::left(&[
        "When",
        "Who",
        "Action",
        "Role",
        "From -> To",
        "Commit",
        "Audit",
    ]);
    for e in entries {
        t.row([
            format_timestamp(e.when),
            e.email.to_string(),
            e.action.to_string(),
            e.role.as_deref().unwrap_or("").to_owned(),
            e.status_change().to_string(),
            format!("`{}`", e.commit),
            e.verdict().to_string(),
        ]);
    }
    s.push_str("\n## History (from git)\n\n");
    s.push_str(&t.finish());
    if !findings.is_empty() {
        s.push_str("\n## Audit findings\n\n");
        for f in findings {
            s.push_str(&format!(
                "- {} `{}` {}: {} (commit `{}`, {})\n",
                f.level.as_str(),
                f.rule,
                format_timestamp(f.when),
                md_cell(&f.message),
                f.commit,
                f.author
            ));
        }
    }
}

/// The signing periods as a section of controls.md.
pub(super) fn signing_markdown(periods: &[SigningPeriod]) -> String {
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
        if let Some(a) = &p.server_attests {
            s.push_str(&format!(
                "  - chg serve could sign decisions of {} on changes of risk up to {} with its own key ({}) in the person's stead; such records are marked attested, not the person's signature\n",
                a.roles.join(", "),
                a.max_risk,
                a.signer
            ));
        }
    }
    s
}
