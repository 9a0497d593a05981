//! The compliance mapping of the evidence pack: which criteria each check supports, so an
//! auditor reads the pack by control (criterion -> evidence files -> exceptions).

use super::{AuditFinding, Level};

/// One criterion and the checks whose results evidence it.
#[derive(Debug, Clone, Copy)]
pub struct Control {
    /// Short id (`SOC2-CC8.1`).
    pub id: &'static str,
    /// The framework and criterion, as an auditor names it.
    pub criterion: &'static str,
    /// What the criterion asks, in a line.
    pub asks: &'static str,
    /// The audit rules whose findings bear on it (`manual-*` covers every manual- rule).
    pub checks: &'static [&'static str],
    /// The pack's files (or columns) that evidence it.
    pub evidence: &'static [&'static str],
}

/// Rules of the change's life cycle and its trail, shared by the change-management criteria.
const LIFECYCLE: &[&str] = &[
    "lifecycle",
    "trailer-mismatch",
    "multiple-files",
    "manual-*",
    "malformed-file",
    "history-rewritten",
    "time-order",
    "approval-role",
    "segregation-of-duties",
    "withdrawal",
    "approval-digest",
    "approval-survived-edit",
    "testing-missing",
    "deployment-gate",
    "unreconciled-deployment",
    "implemented-unapproved",
    "unscheduled",
    "implemented-outside-schedule",
    "implemented-outside-window",
    "implemented-in-freeze",
    "emergency-approval-missing",
    "emergency-approval-late",
    "emergency-review-missing",
    "emergency-review-late",
    "review-missing",
    "standard-template",
    "risk",
    "signature",
    "policy-unauthorized",
    "policy-invalid",
];

/// The criteria the pack evidences.
pub const CONTROLS: &[Control] = &[
    Control {
        id: "SOC2-CC8.1",
        criterion: "SOC 2 (2017 Trust Services Criteria) CC8.1",
        asks: "Changes to infrastructure, data, software and procedures are authorized, designed, developed or acquired, configured, documented, tested, approved and implemented",
        checks: LIFECYCLE,
        evidence: &["population.csv", "changes/*.md", "exceptions.csv"],
    },
    Control {
        id: "ISO27001-A.8.32",
        criterion: "ISO/IEC 27001:2022 Annex A 8.32 Change management",
        asks: "Changes to information processing facilities and information systems are subject to change management procedures",
        checks: LIFECYCLE,
        evidence: &["population.csv", "changes/*.md", "exceptions.csv"],
    },
    Control {
        id: "ISO27001-A.8.29",
        criterion: "ISO/IEC 27001:2022 Annex A 8.29 Security testing in development and acceptance",
        asks: "Security testing processes are defined and implemented in the development life cycle",
        checks: &["testing-missing", "testing"],
        evidence: &["changes/*.md (Testing)", "population.csv (change_type)"],
    },
    Control {
        id: "ISO27001-A.5.3",
        criterion: "ISO/IEC 27001:2022 Annex A 5.3 Segregation of duties",
        asks: "Conflicting duties and conflicting areas of responsibility are segregated",
        checks: &[
            "segregation-of-duties",
            "approval-role",
            "manual-approval",
            "signature",
            "policy-unauthorized",
        ],
        evidence: &[
            "population.csv (segregation_of_duties, approvals, signatures)",
            "changes/*.md (Approvals, Signature)",
        ],
    },
];

impl Control {
    /// Whether a finding of `rule` bears on this control.
    pub fn covers(&self, rule: &str) -> bool {
        self.checks.iter().any(|c| match c.strip_suffix('*') {
            Some(prefix) => rule.starts_with(prefix),
            None => *c == rule,
        })
    }

    /// The exceptions among `findings` that bear on this control.
    pub fn exceptions<'f>(&self, findings: &[&'f AuditFinding]) -> Vec<&'f AuditFinding> {
        findings
            .iter()
            .copied()
            .filter(|f| f.level == Level::Exception && self.covers(&f.rule))
            .collect()
    }
}

/// `controls.md`: criterion -> evidence files -> exceptions.
pub fn markdown(findings: &[&AuditFinding], population: usize) -> String {
    let mut s = String::from(
        "# Controls\n\nEach criterion this pack evidences, the checks chg ran for it over every change in the population, the files that hold the evidence, and the exceptions that bear on it (also in exceptions.csv).\n",
    );
    for c in CONTROLS {
        let ex = c.exceptions(findings);
        s.push_str(&format!(
            "\n## {}: {}\n\n{}.\n\n- Population: {population} change(s)\n- Checks: {}\n- Evidence: {}\n- Exceptions: {}\n",
            c.id,
            c.criterion,
            c.asks,
            c.checks.join(", "),
            c.evidence.join(", "),
            ex.len()
        ));
        for f in ex {
            s.push_str(&format!(
                "  - {} {} {} {}: {}\n",
                f.change.as_deref().unwrap_or("-"),
                &f.commit[..f.commit.len().min(8)],
                f.author,
                f.rule,
                crate::text::one_line(&f.message)
            ));
        }
    }
    s
}
