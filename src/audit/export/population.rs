//! The population of a period: one row per change with any activity in it (`population.csv`)
//! and its page, each change judged by the policies of its day.

use super::*;

/// The changes of the period, as the pack shows them: their rows of `population.csv` and
/// an evidence page each.
pub(super) struct Population {
    /// `changes/<id>.md` for each change in the period.
    pub(super) files: Vec<(String, Vec<u8>)>,
    /// `population.csv`.
    pub(super) csv: String,
    /// Changes in the period.
    pub(super) count: usize,
    /// Rows whose segregation of duties fails.
    pub(super) sod_failures: usize,
}

/// Judges each change with activity in the period (by the policy of each of its days, and
/// HEAD's for the signature marks) into its population row and evidence page.
pub(super) fn population(
    auditor: &mut crate::audit::Auditor<'_>,
    repo: &Repository,
    changes: &[(String, ChangeRequest, Option<String>)],
    logs: &crate::audit::feed::Histories,
    all_findings: &[AuditFinding],
    policy: &Policy,
    req: &Request,
) -> Result<Population> {
    let no_entries = Vec::new();
    let mut by_change: HashMap<&str, Vec<&AuditFinding>> = HashMap::new();
    for f in all_findings {
        if let Some(c) = &f.change {
            by_change.entry(c.as_str()).or_default().push(f);
        }
    }
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut pop = Csv::new(POPULATION_COLUMNS);
    let mut population = 0;
    let mut sod_failures = 0;
    for (path, c, deleted) in changes {
        let id = c.id_text();
        let entries = logs.get(&id).unwrap_or(&no_entries);
        if !in_period(c, entries, req.since, req.until) {
            continue;
        }
        population += 1;
        let findings = by_change.get(id.as_str()).cloned().unwrap_or_default();
        let day = day_policies(auditor, repo, entries)?;
        let marks = signature_marks(c, policy, &day);
        let (sod, sod_md) = duties(c, entries, &findings, &day, policy);
        sod_failures += usize::from(sod.starts_with("fail"));
        let row = population_row(c, entries, &findings, &marks, sod, deleted.as_deref());
        pop.row(&row);
        files.push((
            format!("changes/{id}.md"),
            (evidence_md(
                c,
                path,
                entries,
                &findings,
                &marks,
                deleted.as_deref(),
                proposal_diff(repo, c).as_deref(),
            ) + &sod_md)
                .into_bytes(),
        ));
    }
    Ok(Population {
        files,
        csv: pop.finish(),
        count: population,
        sod_failures,
    })
}

/// The columns of `population.csv`, one row per change in the period ([`population_row`]).
pub(super) const POPULATION_COLUMNS: &[&str] = &[
    "id",
    "title",
    "change_type",
    "change_model",
    "risk_level",
    "priority",
    "status",
    "requester",
    "request_date",
    "approvals",
    "implementer",
    "implementation_start",
    "implementation_end",
    "outcome",
    "review_date",
    "emergency",
    "segregation_of_duties",
    "exceptions",
    "commits",
    "signatures",
    "affected_systems",
    "template",
    "template_digest",
    "schedule_start",
    "schedule_end",
    "testing_required",
    "test_plan",
    "test_environment",
    "closed_by",
    "reviewer",
    "final_approval",
    "deleted_by",
];

/// The row of `population.csv` for change `c` ([`POPULATION_COLUMNS`]).
pub(super) fn population_row(
    c: &ChangeRequest,
    entries: &[Entry],
    findings: &[&AuditFinding],
    marks: &[String],
    sod: String,
    deleted: Option<&str>,
) -> Vec<String> {
    let id = c.id_text();
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
    vec![
        id,
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
        marks.join("; "),
        c.affected_systems.join(" "),
        c.template.clone().unwrap_or_default(),
        c.template_digest.clone().unwrap_or_default(),
        ts(c.schedule.as_ref().map(|x| x.start)),
        ts(c.schedule.as_ref().map(|x| x.end)),
        c.field_text("testing_required").unwrap_or_default(),
        c.test_plan.clone().unwrap_or_default(),
        c.test_environment.clone().unwrap_or_default(),
        imp.closed_by.clone().unwrap_or_default(),
        c.review.as_ref().map(|r| r.by.clone()).unwrap_or_default(),
        // When the last approval that stands was given: the change's sign-off.
        ts(c.standing_approvals().map(|(_, a)| a.at).max()),
        deleted.unwrap_or_default().to_owned(),
    ]
}
