//! Checking change files against the policy: every rule, every finding, with places.
//!
//! The same rules guard transitions (a step that would produce an invalid file is refused)
//! and CI (`chg validate`), so a file chg writes always passes the check CI runs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use rayon::prelude::*;

use crate::decode::{self, Decoded};
use crate::finding::{Finding, Severity};
use crate::model::{ChangeModel, ChangeRequest, Decision, Status};
use crate::policy::Policy;
use crate::rules::missing_roles;

use crate::layout;
use crate::rules::{self, problem};
pub use crate::rules::{Problem, approval_problems, content_problems, schedule_problem};

/// Every rule for one change that needs the policy. `now` enables the deadline rules.
pub fn change_problems(
    change: &ChangeRequest,
    policy: &Policy,
    now: Option<Timestamp>,
) -> Vec<Problem> {
    let mut out = identity_problems(change, policy);
    out.extend(schedule_problems(change, policy));
    out.extend(approval_problems(change, policy));
    out.extend(rules::duty_problems(change, policy));
    out.extend(status_problems(change, policy));
    out.extend(emergency_problems(change, policy, now));
    out.extend(rules::time_problems(change));
    if let Some(now) = now {
        out.extend(rules::future_problems(change, now));
    }
    out.extend(rules::signature_problems(change, policy));
    if let Some(why) = crate::governance::proposal_problem(change) {
        out.push(problem(
            "proposed_policy",
            crate::governance::GOVERNANCE,
            why,
        ));
    }
    out
}

/// Status, id and request date present; content complete unless a draft; the id's prefix.
fn identity_problems(change: &ChangeRequest, policy: &Policy) -> Vec<Problem> {
    let mut out = Vec::new();
    for (field, present) in [
        ("status", change.status.is_some()),
        ("id", change.id.is_some()),
        ("request_date", change.request_date.is_some()),
    ] {
        if !present {
            out.push(problem(field, "required", format!("{field} is missing")));
        }
    }
    let draft = change.status() == Status::Draft;
    // A draft may be incomplete, but what it says must still make sense.
    out.extend(
        content_problems(change, policy)
            .into_iter()
            .filter(|p| !draft || (p.rule != "required" && p.rule != "testing")),
    );
    if let Some(id) = &change.id
        && id.prefix() != policy.id_prefix
    {
        out.push(problem(
            "id",
            "id",
            format!(
                "id {id} does not use the policy's prefix {}",
                policy.id_prefix
            ),
        ));
    }
    out
}

/// The schedule ends after it starts and, before implementation, fits the windows.
fn schedule_problems(change: &ChangeRequest, policy: &Policy) -> Vec<Problem> {
    let Some(s) = &change.schedule else {
        return Vec::new();
    };
    if s.end <= s.start {
        return vec![problem(
            "schedule.end",
            "schedule",
            "the schedule ends before it starts",
        )];
    }
    let not_started = matches!(
        change.status(),
        Status::Draft | Status::PendingApproval | Status::Approved
    );
    match schedule_problem(change, s, policy) {
        Some(why) if not_started => vec![problem(
            "schedule",
            "window",
            format!("scheduled badly: {why}"),
        )],
        _ => Vec::new(),
    }
}

/// The status agrees with the approvals, the implementation and the cancellation.
fn status_problems(change: &ChangeRequest, policy: &Policy) -> Vec<Problem> {
    let status = change.status();
    let missing = missing_roles(change, policy);
    let mut out = Vec::new();
    let mut push = |path: &str, message: String| out.push(problem(path, "status", message));
    match status {
        Status::Draft | Status::PendingApproval => {
            if change.implementation.is_some() {
                push(
                    "implementation",
                    format!("a change that is {status} cannot have an implementation section"),
                );
            }
            let required = policy.required_roles(change);
            if status == Status::PendingApproval && !required.is_empty() && missing.is_empty() {
                out.push(Problem {
                    severity: Severity::Warning,
                    ..problem(
                        "status",
                        "status",
                        "every required role has approved; the status should be approved",
                    )
                });
            }
        }
        Status::Approved if !missing.is_empty() => push(
            "status",
            format!(
                "status is approved but these roles have not approved: {}",
                missing.join(", ")
            ),
        ),
        Status::Approved => {}
        Status::Rejected => {
            if !change
                .approvals
                .iter()
                .any(|a| a.decision == Decision::Rejected)
            {
                push(
                    "status",
                    "status is rejected but no approval has decision: rejected".into(),
                );
            }
        }
        Status::Implementing | Status::Closed => {
            if !missing.is_empty()
                && change.model() != ChangeModel::Emergency
                && !policy.is_preapproved(change)
            {
                push(
                    "status",
                    format!(
                        "status is {status} but the change was never approved (missing: {})",
                        missing.join(", ")
                    ),
                );
            }
            out.extend(implementation_problems(change, policy));
        }
        Status::Cancelled => {
            if change.cancellation.is_none() {
                push(
                    "status",
                    "status is cancelled but there is no cancellation section".into(),
                );
            }
        }
    }
    out
}

/// A started or closed change's implementation section, and the review a close needs.
fn implementation_problems(change: &ChangeRequest, policy: &Policy) -> Vec<Problem> {
    let status = change.status();
    let Some(imp) = &change.implementation else {
        return vec![problem(
            "status",
            "status",
            format!("status is {status} but there is no implementation section"),
        )];
    };
    let mut out = Vec::new();
    if imp.started_at.is_none() {
        out.push(problem(
            "implementation",
            "status",
            "implementation.started_at is missing",
        ));
    }
    if status != Status::Closed {
        return out;
    }
    if imp.outcome.is_none() {
        out.push(problem(
            "implementation",
            "status",
            "a closed change needs implementation.outcome",
        ));
    }
    if imp.completed_at.is_none() {
        out.push(problem(
            "implementation",
            "status",
            "a closed change needs implementation.completed_at",
        ));
    }
    if let Some(o) = imp.outcome
        && rules::review_refusal(change, policy, o, change.review.is_some()).is_some()
    {
        out.push(problem(
            "status",
            "review",
            format!(
                "a closed change with outcome {o} needs a post-implementation review under the policy"
            ),
        ));
    }
    out
}

/// Emergency deadlines: late approvals warn (they were given), missing ones are errors.
fn emergency_problems(
    change: &ChangeRequest,
    policy: &Policy,
    now: Option<Timestamp>,
) -> Vec<Problem> {
    let mut out = Vec::new();
    if let Some(deadline) = rules::emergency_approval_deadline(change, policy) {
        for (i, a) in change.approvals.iter().enumerate() {
            if a.decision != Decision::Withdrawn
                && rules::emergency_approval_late(change, policy, a.at).is_some()
            {
                out.push(Problem {
                    severity: Severity::Warning,
                    ..problem(
                        format!("approvals[{i}].at"),
                        "emergency",
                        format!(
                            "emergency approval by {} came after its deadline ({})",
                            a.by,
                            crate::model::format_timestamp(deadline)
                        ),
                    )
                });
            }
        }
    }
    for r in now.map_or_else(Vec::new, |now| {
        rules::emergency_overdue(change, policy, now)
    }) {
        let path = if r.rule == rules::EMERGENCY_REVIEW_MISSING {
            "review"
        } else {
            "approvals"
        };
        out.push(problem(
            path,
            "emergency",
            format!("overdue: {}", r.message),
        ));
    }
    out
}

/// Turns problems into findings with places looked up in the decoded file.
pub fn locate(file: &str, decoded: &Decoded, problems: Vec<Problem>) -> Vec<Finding> {
    let id = decoded.change.id.as_ref().map(ToString::to_string);
    problems
        .into_iter()
        .map(|p| {
            let pos = decoded
                .place(&p.path)
                .or_else(|| decoded.place(&format!("{}:key", p.path)))
                .or_else(|| {
                    let top = p.path.split(['.', '[']).next().unwrap_or("");
                    decoded.place(&format!("{top}:key"))
                });
            Finding {
                file: file.to_owned(),
                pos,
                id: id.clone(),
                rule: p.rule,
                severity: p.severity,
                message: p.message,
            }
        })
        .collect()
}

/// Checks one decoded file at `rel` (relative to the store) completely.
pub fn check_file(
    rel: &Path,
    decoded: &Decoded,
    policy: &Policy,
    now: Option<Timestamp>,
) -> Vec<Finding> {
    let file = rel.display().to_string();
    let mut findings = decoded.findings.clone();
    if !decoded.parsed {
        return findings;
    }
    let c = &decoded.change;
    let mut problems = change_problems(c, policy, now);
    problems.retain(|p| !(p.rule == "required" && decoded.invalid.contains(&p.path.as_str())));
    // The file's name and folder follow from its id and request date (SPEC section 1).
    if let Some(id) = &c.id {
        let stem = rel.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if stem != id.to_string() {
            problems.push(problem(
                "id",
                "file-name",
                format!(
                    "id {id} does not match the file name {stem}.yaml; rename the file to {id}.yaml"
                ),
            ));
        } else if let Some(date) = c.request_date {
            let want = layout::change_path(id, date);
            if rel != want {
                problems.push(problem(
                    "request_date",
                    "location",
                    format!(
                        "the file belongs in the folder of its request month: move it to {} (git mv {} {})",
                        want.display(),
                        rel.display(),
                        want.display()
                    ),
                ));
            }
        }
    }
    findings.extend(locate(&file, decoded, problems));
    for f in &mut findings {
        if f.id.is_none() {
            f.id = c.id.as_ref().map(ToString::to_string);
        }
    }
    findings
}

/// One checked file: its path, id, findings, and the change when it is active and scheduled.
type Checked = (PathBuf, Option<String>, Vec<Finding>, Option<ChangeRequest>);

/// Reads and checks `files` (absolute, inside `store`) in parallel; checks across files
/// (one id claimed twice, overlapping schedules) look at all of them, so pass the whole
/// store and filter after.
///
/// The risk questionnaire is due from a change unless it was submitted before the policy
/// asked it, which only history knows: `due` answers, once, for the changes that leave it
/// unanswered (their ids); the others are judged without it.
pub fn validate_files(
    store: &Path,
    files: &[PathBuf],
    policy: &Policy,
    now: Option<Timestamp>,
    due: &dyn Fn(&[String]) -> crate::error::Result<std::collections::BTreeSet<String>>,
) -> crate::error::Result<Vec<Finding>> {
    let lenient = policy.for_intake(false);
    let unanswered: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::default();
    let judges = Judges {
        policy,
        lenient,
        now,
    };
    let results: Vec<Checked> = files
        .par_iter()
        .map(|path| judges.check(store, path, &unanswered))
        .collect();

    let mut findings = with_duplicate_ids(&results);
    findings.extend(overlaps(&results, policy));
    findings.extend(duplicate_requests(&results));
    let unanswered = unanswered.into_inner().unwrap_or_default();
    if let Some(q) = &policy.risk
        && !unanswered.is_empty()
    {
        let ids: Vec<String> = unanswered.iter().map(|(_, id)| id.clone()).collect();
        let due = due(&ids)?;
        for (file, id) in unanswered.into_iter().filter(|(_, id)| due.contains(id)) {
            findings.push(Finding {
                id: Some(id.clone()),
                ..Finding::error(file, None, rules::RISK, q.unanswered_message(&id))
            });
        }
    }
    Ok(findings)
}

/// How a file is judged: by the policy, or by its lenient form (no questionnaire) when
/// the change leaves the risk questionnaire unanswered, which only history can excuse.
struct Judges<'a> {
    policy: &'a Policy,
    lenient: &'a Policy,
    now: Option<Timestamp>,
}

impl Judges<'_> {
    /// Reads and checks one file; a change leaving the questionnaire unanswered is added
    /// to `unanswered` (file, id) for history to judge.
    fn check(
        &self,
        store: &Path,
        path: &Path,
        unanswered: &std::sync::Mutex<Vec<(String, String)>>,
    ) -> Checked {
        let policy = self.policy;
        let rel = path.strip_prefix(store).unwrap_or(path).to_path_buf();
        let file = rel.display().to_string();
        let bytes = match read_change_file(path, &rel, &file) {
            Ok(b) => b,
            Err(refused) => return (rel, None, vec![refused], None),
        };
        // Most files are clean: decode without places, and again with them only when
        // there is something to place.
        let mut decoded = decode::decode_bytes_with(&file, &bytes, false);
        let open = decoded.parsed && rules::questionnaire_unanswered(&decoded.change, policy);
        let judge = if open { self.lenient } else { policy };
        let mut findings = check_file(&rel, &decoded, judge, self.now);
        if findings.iter().any(|f| f.pos.is_none()) && decoded.parsed {
            decoded = decode::decode_bytes(&file, &bytes);
            findings = check_file(&rel, &decoded, judge, self.now);
        }
        let id = decoded.change.id.as_ref().map(ToString::to_string);
        if let (true, Some(id)) = (open, &id)
            && let Ok(mut u) = unanswered.lock()
        {
            u.push((file.clone(), id.clone()));
        }
        // Kept for the checks across files: scheduled active changes (overlaps) and
        // signed ones (duplicate requests); the rest are dropped as soon as checked.
        let signed = crate::signing::records(&decoded.change)
            .iter()
            .any(|r| r.signature.is_some());
        let scheduled = ((decoded.change.schedule.is_some()
            && crate::conflicts::active(&decoded.change))
            || signed)
            .then(|| decoded.change.clone());
        (rel, id, findings, scheduled)
    }
}

/// The bytes of a change file, or the one finding that refuses it before decoding: it
/// cannot be read, is a symbolic link, is not `ID.yaml`, or is too large.
fn read_change_file(path: &Path, rel: &Path, file: &str) -> Result<Vec<u8>, Finding> {
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| Finding::error(file, None, "io", format!("cannot read: {e}")))?;
    if meta.file_type().is_symlink() {
        return Err(Finding::error(
            file,
            None,
            "symlink",
            "change files must be regular files, not symbolic links (a link could point outside the repository)",
        ));
    }
    if rel.extension().and_then(|e| e.to_str()) != Some("yaml") {
        return Err(Finding::error(
            file,
            None,
            "file-name",
            "only change files (ID.yaml) belong under changes/",
        ));
    }
    if meta.len() > decode::MAX_FILE_BYTES {
        return Err(Finding::error(
            file,
            None,
            "too-large",
            format!(
                "the file is {} bytes; change files are limited to {} bytes",
                meta.len(),
                decode::MAX_FILE_BYTES
            ),
        ));
    }
    decode::read_bounded(path)
        .map_err(|e| Finding::error(file, None, "io", format!("cannot read: {e}")))
}

/// Each file's findings in order, each followed by a `duplicate-id` finding when another
/// file claims its id.
fn with_duplicate_ids(results: &[Checked]) -> Vec<Finding> {
    let mut by_id: HashMap<&str, Vec<&Path>> = HashMap::new();
    for (rel, id, _, _) in results {
        if let Some(id) = id {
            by_id.entry(id.as_str()).or_default().push(rel);
        }
    }
    let mut findings: Vec<Finding> = Vec::new();
    for (rel, id, fs, _) in results {
        findings.extend(fs.iter().cloned());
        if let Some(id) = id {
            let others: Vec<String> = by_id[id.as_str()]
                .iter()
                .filter(|p| *p != rel)
                .map(|p| p.display().to_string())
                .collect();
            if !others.is_empty() {
                findings.push(Finding {
                    id: Some(id.clone()),
                    ..Finding::error(
                        rel.display().to_string(),
                        None,
                        "duplicate-id",
                        format!(
                            "{id} is also claimed by {}; keep one and move the other to a free id, for this file: chg renumber {id} --file {}",
                            others.join(", "),
                            rel.display()
                        ),
                    )
                });
            }
        }
    }
    findings
}

/// Two files holding one signed request ([`crate::rules::repeats_request`]): the second
/// is reported, naming the first.
fn duplicate_requests(results: &[Checked]) -> Vec<Finding> {
    type Key = (Option<String>, Option<jiff::Timestamp>);
    let mut seen: HashMap<Key, Vec<(&Path, &ChangeRequest)>> = HashMap::new();
    let mut out = Vec::new();
    for (rel, id, _, change) in results {
        let Some(c) = change else { continue };
        if crate::signing::records(c)
            .iter()
            .all(|r| r.signature.is_none())
        {
            continue;
        }
        let same = seen
            .entry((c.requester.clone(), c.request_date))
            .or_default();
        if let Some((first, _)) = same
            .iter()
            .find(|(_, other)| crate::rules::repeats_request(c, other))
        {
            out.push(Finding {
                id: id.clone(),
                ..Finding::error(
                    rel.display().to_string(),
                    None,
                    crate::rules::DUPLICATE_REQUEST,
                    format!(
                        "this file repeats the signed request in {} (same requester and request time, and its content or a signature): its signatures belong to that change; remove the copy",
                        first.display()
                    ),
                )
            });
        } else {
            same.push((rel, c));
        }
    }
    out
}

/// Two active changes to a common system with overlapping schedules, reported on both files
/// with both ids; an error or a warning as the policy's `conflicts.overlap` says.
fn overlaps(results: &[Checked], policy: &Policy) -> Vec<Finding> {
    let mut by_system: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, r) in results.iter().enumerate() {
        if let Some(c) = r.3.as_ref().filter(|c| crate::conflicts::active(c)) {
            for s in &c.affected_systems {
                by_system.entry(s.as_str()).or_default().push(i);
            }
        }
    }
    let mut pairs = std::collections::BTreeSet::new();
    for list in by_system.values_mut() {
        let start = |i: usize| {
            results[i]
                .3
                .as_ref()
                .and_then(|c| c.schedule.as_ref())
                .map(|s| (s.start, s.end))
        };
        list.sort_by_key(|i| start(*i));
        // Sweep by start: each change is compared with those that started before it ends.
        for (k, &i) in list.iter().enumerate() {
            let Some((_, end)) = start(i) else { continue };
            for &j in &list[k + 1..] {
                let Some((js, _)) = start(j) else { continue };
                if js >= end {
                    break;
                }
                pairs.insert((i.min(j), i.max(j)));
            }
        }
    }
    let mut out = Vec::new();
    for (i, j) in pairs {
        let (Some(a), Some(b)) = (&results[i].3, &results[j].3) else {
            continue;
        };
        for (me, other, rel) in [(a, b, &results[i].0), (b, a, &results[j].0)] {
            let Some(s) = &me.schedule else { continue };
            for c in crate::conflicts::conflicts(me, s, &[other], policy) {
                if c.kind != "overlap" {
                    continue;
                }
                let file = rel.display().to_string();
                let f = if c.blocks() {
                    Finding::error(file, None, "conflict", c.message)
                } else {
                    Finding::warning(file, None, "conflict", c.message)
                };
                out.push(Finding {
                    id: Some(me.id_text()),
                    ..f
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Approval;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn complete() -> ChangeRequest {
        crate::model::sample_change()
    }

    fn rules(c: &ChangeRequest) -> Vec<&'static str> {
        change_problems(c, &Policy::default_policy(), None)
            .into_iter()
            .filter(|p| p.severity == Severity::Error)
            .map(|p| p.rule)
            .collect()
    }

    #[test]
    fn a_complete_change_has_no_problems() {
        assert!(rules(&complete()).is_empty(), "{:?}", rules(&complete()));
    }

    #[test]
    fn blank_required_fields_count_as_missing() {
        let mut c = complete();
        c.rollback_plan = Some("   ".into());
        assert_eq!(rules(&c), ["required"]);
    }

    #[test]
    fn security_changes_need_testing() {
        let mut c = complete();
        c.change_type = Some("security".into());
        assert_eq!(rules(&c), ["testing", "testing"]);
    }

    #[test]
    fn approvals_are_checked_against_roles_and_segregation() {
        let mut c = complete();
        c.status = Some(Status::Approved);
        c.approvals = vec![Approval::new(
            "alice@example.com".into(),
            "change-manager".into(),
            Decision::Approved,
            ts("2025-01-27T10:00:00Z"),
        )];
        let got = rules(&c);
        assert!(got.contains(&"segregation-of-duties"), "{got:?}");
        assert!(got.contains(&"approval-role"), "{got:?}");
        assert!(got.contains(&"status"), "{got:?}");
    }

    #[test]
    fn a_closed_change_needs_its_outcome() {
        let mut c = complete();
        c.status = Some(Status::Closed);
        assert!(rules(&c).contains(&"status"));
    }

    #[test]
    fn overdue_emergency_approvals_are_errors_against_now() {
        let mut c = complete();
        c.change_model = Some(ChangeModel::Emergency);
        c.status = Some(Status::Implementing);
        c.implementation = Some(crate::model::Implementation {
            implementer: Some("bob@example.com".into()),
            started_at: Some(ts("2025-01-28T00:00:00Z")),
            ..Default::default()
        });
        let p = Policy::default_policy();
        let at = |now: &str| {
            change_problems(&c, &p, Some(ts(now)))
                .into_iter()
                .filter(|x| x.rule == "emergency")
                .count()
        };
        assert_eq!(at("2025-01-28T12:00:00Z"), 0);
        assert_eq!(at("2025-01-29T01:00:00Z"), 1);
        assert_eq!(at("2025-01-30T01:00:00Z"), 2);
    }
}
