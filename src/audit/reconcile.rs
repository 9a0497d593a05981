//! `chg audit reconcile`: the deployments a CI/CD system (or the release tags) says happened,
//! against the deployments changes record (`chg deploy`). Every deployment that no change
//! records is an exception, so that an auditor's population of deployments reconciles to
//! change records, or the gap is named.
//!
//! A deployment `(commit, environment, time)` reconciles to a change when the change holds a
//! deployment record with
//! - the same commit: equal, or one a prefix of the other of at least 7 hex digits that
//!   matches one recorded commit only (a short id in the CI/CD system's export);
//! - the same environment (letters compared without regard to case);
//! - the time inside the change's open-gate span: its schedule window, its implementation
//!   from start to close (open while it is implementing), and for an emergency change, which
//!   needs no window, from its request to its close or cancellation.
//!
//! The changes are those committed at HEAD (as the evidence pack reads them), never the work
//! tree. Whether each record was written by chg is `chg audit`'s to say (`manual-deployment`).

use git2::{ObjectType, Oid};
use jiff::Timestamp;

use super::{AuditFinding, Level};
use crate::error::{Error, Result};
use crate::finding::Finding;
use crate::model::{ChangeModel, ChangeRequest, Deployment, format_timestamp};
use crate::yaml::Pos;

/// Rule id: a deployment that no change records.
pub const UNRECONCILED: &str = "unreconciled-deployment";

/// Shortest commit prefix matched (git's own default abbreviation).
const MIN_PREFIX: usize = 7;

/// One deployment as the CI/CD system reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployed {
    /// The commit, lower case (a prefix of at least 7 hex digits, or the full id).
    pub commit: String,
    /// Where.
    pub environment: String,
    /// When.
    pub time: Timestamp,
    /// `FILE:LINE` of its row or object, for findings.
    pub place: String,
}

/// One deployment and the change that records it, if one does.
#[derive(Debug, Clone)]
pub struct Reconciled {
    /// The deployment.
    pub deployed: Deployed,
    /// The change that records it with an open gate.
    pub change: Option<String>,
    /// Why it does not reconcile (when `change` is `None`).
    pub why: Option<String>,
    /// A change that records the deployment, though not with its gate open then.
    pub near: Option<String>,
}

/// Reads deployments from `bytes` of the file named `file`: JSON (an array of objects) when
/// the name ends in `.json` or the content starts with `[`, CSV otherwise (a header naming
/// `commit`, `environment` and `time`; other columns are ignored). Every bad row is listed,
/// each at its line.
pub fn parse(file: &str, bytes: &[u8]) -> Result<Vec<Deployed>> {
    let json = file.to_ascii_lowercase().ends_with(".json")
        || (!file.to_ascii_lowercase().ends_with(".csv")
            && bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'['));
    let mut bad = Vec::new();
    let rows = if json {
        parse_json(file, bytes, &mut bad)
    } else {
        parse_csv(file, bytes, &mut bad)
    };
    if bad.is_empty() {
        return Ok(rows);
    }
    Err(Error::Invalid {
        summary: format!(
            "{file} is not a list of deployments ({} problem(s))",
            bad.len()
        ),
        findings: bad,
    })
}

fn at_line(file: &str, line: u64, message: impl Into<String>) -> Finding {
    let pos = Pos {
        line: u32::try_from(line).unwrap_or(u32::MAX),
        column: 1,
    };
    Finding::error(file, Some(pos), "deployments", message)
}

/// One row's values, checked.
fn row(
    file: &str,
    line: u64,
    commit: &str,
    environment: &str,
    time: &str,
    bad: &mut Vec<Finding>,
) -> Option<Deployed> {
    let commit = commit.trim().to_ascii_lowercase();
    let environment = environment.trim();
    let before = bad.len();
    if commit.len() < MIN_PREFIX
        || commit.len() > 64
        || !commit.bytes().all(|b| b.is_ascii_hexdigit())
    {
        bad.push(at_line(
            file,
            line,
            format!("commit `{commit}` is not a commit id (7 to 40 hexadecimal digits)"),
        ));
    }
    if let Some(p) = Deployment::environment_problem(environment) {
        bad.push(at_line(file, line, format!("environment: {p}")));
    }
    let time = match crate::model::parse_timestamp(time) {
        Ok(t) => Some(t),
        Err(e) => {
            bad.push(at_line(file, line, format!("time: {e}")));
            None
        }
    };
    (bad.len() == before).then(|| Deployed {
        commit,
        environment: environment.to_owned(),
        time: time.expect("checked"),
        place: format!("{file}:{line}"),
    })
}

fn parse_csv(file: &str, bytes: &[u8], bad: &mut Vec<Finding>) -> Vec<Deployed> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let columns = match reader.headers() {
        Ok(h) => {
            // A column named twice would be read one way by chg and another by the reader.
            for name in ["commit", "environment", "time"] {
                if h.iter().filter(|c| c.eq_ignore_ascii_case(name)).count() > 1 {
                    bad.push(at_line(
                        file,
                        1,
                        format!("the header names the column {name} twice"),
                    ));
                    return Vec::new();
                }
            }
            let find = |name: &str| h.iter().position(|c| c.eq_ignore_ascii_case(name));
            match (find("commit"), find("environment"), find("time")) {
                (Some(c), Some(e), Some(t)) => (c, e, t),
                _ => {
                    bad.push(at_line(
                        file,
                        1,
                        "the header must name the columns commit, environment and time",
                    ));
                    return Vec::new();
                }
            }
        }
        Err(e) => {
            bad.push(at_line(file, 1, format!("not CSV: {e}")));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for record in reader.records() {
        match record {
            Ok(r) => {
                let line = r.position().map_or(0, csv::Position::line);
                let cell = |i: usize| r.get(i);
                match (cell(columns.0), cell(columns.1), cell(columns.2)) {
                    (Some(c), Some(e), Some(t)) => out.extend(row(file, line, c, e, t, bad)),
                    _ => bad.push(at_line(
                        file,
                        line,
                        "the row has fewer columns than the header",
                    )),
                }
            }
            Err(e) => {
                let line = e.position().map_or(0, csv::Position::line);
                bad.push(at_line(file, line, format!("not CSV: {e}")));
            }
        }
    }
    out
}

/// The line on which each element of the top-level JSON array starts (JSON parsers give
/// no places for values, and a finding must say where).
fn element_lines(bytes: &[u8]) -> Vec<u64> {
    let (mut line, mut depth) = (1u64, 0usize);
    let (mut in_string, mut escaped, mut in_scalar) = (false, false, false);
    let mut out = Vec::new();
    for &b in bytes {
        if b == b'\n' {
            line += 1;
        }
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        let starts = depth == 1 && !in_scalar;
        match b {
            b'"' | b'{' | b'[' if starts => out.push(line),
            b',' | b']' | b'}' => in_scalar = false,
            b if b.is_ascii_whitespace() => in_scalar = false,
            // A number, true, false or null element: counted at its first byte.
            _ if starts => {
                out.push(line);
                in_scalar = true;
            }
            _ => {}
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    out
}

fn parse_json(file: &str, bytes: &[u8], bad: &mut Vec<Finding>) -> Vec<Deployed> {
    let items: Vec<serde_json::Value> = match serde_json::from_slice(bytes) {
        Ok(serde_json::Value::Array(items)) => items,
        Ok(_) => {
            bad.push(at_line(file, 1, "not a JSON array of deployments"));
            return Vec::new();
        }
        Err(e) => {
            bad.push(at_line(file, e.line() as u64, format!("not JSON: {e}")));
            return Vec::new();
        }
    };
    let lines = element_lines(bytes);
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let line = lines.get(i).copied().unwrap_or(1);
        let text = |k: &str| match item.get(k) {
            Some(serde_json::Value::String(s)) => Some(s.as_str()),
            _ => None,
        };
        match (text("commit"), text("environment"), text("time")) {
            (Some(c), Some(e), Some(t)) => out.extend(row(file, line, c, e, t, bad)),
            _ => bad.push(at_line(
                file,
                line,
                "each deployment must be an object with the texts commit, environment and time",
            )),
        }
    }
    out
}

/// Whether two commit ids name the same commit: equal, or one a prefix of the other of at
/// least [`MIN_PREFIX`] digits.
fn same_commit(a: &str, b: &str) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    short.len() >= MIN_PREFIX && long.starts_with(short)
}

/// The spans in which `change`'s gate could be open (see the module's doc); `None` ends an
/// open span.
fn open_spans(c: &ChangeRequest) -> Vec<(Timestamp, Option<Timestamp>)> {
    let mut out = Vec::new();
    let imp = c.implementation.as_ref();
    if let Some(s) = &c.schedule {
        out.push((s.start, Some(s.end)));
    }
    if let Some(start) = imp.and_then(|i| i.started_at) {
        out.push((start, imp.and_then(|i| i.completed_at)));
    }
    if c.model() == ChangeModel::Emergency
        && let Some(request) = c.request_date
    {
        let end = imp
            .and_then(|i| i.completed_at)
            .or(c.cancellation.as_ref().map(|x| x.at));
        out.push((request, end));
    }
    out
}

fn spans_text(c: &ChangeRequest) -> String {
    let spans: Vec<String> = open_spans(c)
        .iter()
        .map(|(s, e)| {
            format!(
                "{} to {}",
                format_timestamp(*s),
                e.map_or("now".to_owned(), format_timestamp)
            )
        })
        .collect();
    if spans.is_empty() {
        "no window, never implemented".into()
    } else {
        spans.join(", ")
    }
}

/// How far from a deployment's time its record may be written and still reconcile it.
const RECORD_LAG_SECS: i64 = 24 * 3600;

/// Each deployment with the change that records it, by the rule of the module's doc.
pub fn reconcile(deployed: &[Deployed], changes: &[ChangeRequest]) -> Vec<Reconciled> {
    deployed
        .iter()
        .map(|d| {
            let recorded: Vec<(&ChangeRequest, &Deployment)> = changes
                .iter()
                .flat_map(|c| c.deployments.iter().map(move |r| (c, r)))
                .filter(|(_, r)| same_commit(&d.commit, &r.commit))
                .collect();
            let mut commits: Vec<&str> = recorded.iter().map(|(_, r)| r.commit.as_str()).collect();
            commits.sort_unstable();
            commits.dedup();
            let mut out = Reconciled {
                deployed: d.clone(),
                change: None,
                why: None,
                near: None,
            };
            if commits.len() > 1 {
                out.why = Some(format!(
                    "the commit {} matches several recorded commits ({}); give more of its digits",
                    d.commit,
                    commits.join(", ")
                ));
                return out;
            }
            let here: Vec<&(&ChangeRequest, &Deployment)> = recorded
                .iter()
                .filter(|(_, r)| r.environment.eq_ignore_ascii_case(&d.environment))
                .collect();
            // Recorded when it was made: the pipeline runs `chg deploy` as it deploys (before
            // or after, within a day). A record written long after (a window scheduled into
            // the past, a change filed once the deployment was found) reconciles nothing.
            let timely =
                |r: &Deployment| (r.at.as_second() - d.time.as_second()).abs() <= RECORD_LAG_SECS;
            let open = here.iter().find(|(c, r)| {
                timely(r)
                    && open_spans(c)
                        .iter()
                        .any(|(s, e)| *s <= d.time && e.is_none_or(|e| d.time <= e))
            });
            // Inside a window but recorded far from it: said as such (outside every window,
            // the gate's reason is the one to give).
            let late = here.iter().find(|(c, r)| {
                !timely(r)
                    && open_spans(c)
                        .iter()
                        .any(|(s, e)| *s <= d.time && e.is_none_or(|e| d.time <= e))
            });
            match (open, here.first()) {
                (Some((c, _)), _) => out.change = Some(c.id_text()),
                (None, Some(_)) if late.is_some() => {
                    let (c, r) = late.expect("checked");
                    out.near = Some(c.id_text());
                    out.why = Some(format!(
                        "{} recorded the deployment of {} to {} at {}, not when it was made ({}): a deployment is recorded by the pipeline that makes it, within a day",
                        c.id_text(),
                        d.commit,
                        d.environment,
                        format_timestamp(r.at),
                        format_timestamp(d.time)
                    ));
                }
                (None, Some((c, _))) => {
                    out.near = Some(c.id_text());
                    out.why = Some(format!(
                        "{} records the deployment of {} to {}, but its gate was not open at {} ({})",
                        c.id_text(),
                        d.commit,
                        d.environment,
                        format_timestamp(d.time),
                        spans_text(c)
                    ));
                }
                (None, None) => {
                    let elsewhere: Vec<String> = recorded
                        .iter()
                        .map(|(c, r)| format!("{} to {}", c.id_text(), r.environment))
                        .collect();
                    out.why = Some(format!(
                        "no change records the deployment of {} to {}{}",
                        d.commit,
                        d.environment,
                        if elsewhere.is_empty() {
                            String::new()
                        } else {
                            format!(" (recorded: {})", elsewhere.join(", "))
                        }
                    ));
                }
            }
            out
        })
        .collect()
}

/// The exceptions: one `unreconciled-deployment` per deployment no change records.
pub fn findings(reconciled: &[Reconciled]) -> Vec<AuditFinding> {
    reconciled
        .iter()
        .filter(|r| r.change.is_none())
        .map(|r| AuditFinding {
            level: Level::Exception,
            rule: UNRECONCILED.into(),
            change: r.near.clone(),
            path: Some(r.deployed.place.clone()),
            commit: r.deployed.commit.clone(),
            author: String::new(),
            when: r.deployed.time,
            message: r.why.clone().unwrap_or_default(),
        })
        .collect()
}

/// `deployments.csv` of the evidence pack: each deployment and the change that records it,
/// or `unreconciled`.
pub fn csv(reconciled: &[Reconciled]) -> String {
    let mut s = String::from("commit,environment,time,change,source\n");
    for r in reconciled {
        let row = [
            r.deployed.commit.clone(),
            r.deployed.environment.clone(),
            format_timestamp(r.deployed.time),
            r.change.clone().unwrap_or_else(|| "unreconciled".into()),
            r.deployed.place.clone(),
        ];
        let row: Vec<String> = row.iter().map(|v| crate::report::csv_field(v)).collect();
        s.push_str(&row.join(","));
        s.push('\n');
    }
    s
}

/// The change files committed at HEAD (unreadable ones left out: `chg validate` reports
/// them).
pub fn changes_at_head(store: &dyn crate::git::Located) -> Result<Vec<ChangeRequest>> {
    let repo = store.repo();
    let Some(head) = crate::git::head_state(repo)?.1 else {
        return Ok(Vec::new());
    };
    let tree = repo.find_commit(head)?.tree()?;
    let dir = format!("{}changes", store.prefix());
    let root = match tree.get_path(std::path::Path::new(&dir)) {
        Ok(e) if e.kind() == Some(ObjectType::Tree) => repo.find_tree(e.id())?,
        _ => return Ok(Vec::new()),
    };
    let mut blobs: Vec<Oid> = Vec::new();
    root.walk(git2::TreeWalkMode::PreOrder, |_, e| {
        if e.kind() == Some(ObjectType::Blob) && e.name().is_ok_and(|n| n.ends_with(".yaml")) {
            blobs.push(e.id());
        }
        git2::TreeWalkResult::Ok
    })?;
    let mut out = Vec::new();
    for id in blobs {
        let blob = repo.find_blob(id)?;
        let d = crate::decode::decode_bytes_with("", blob.content(), false);
        if d.parsed {
            out.push(d.change);
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_elements_are_found_on_their_lines() {
        let text =
            b"[\n  {\"commit\": \"a{b\"},\n  {\"commit\": \"x\",\n   \"environment\": \"p\"}\n]\n";
        assert_eq!(element_lines(text), [2, 3]);
        let d = parse("d.json", text).unwrap_err();
        match d {
            Error::Invalid { findings, .. } => {
                let lines: Vec<u32> = findings.iter().map(|f| f.pos.unwrap().line).collect();
                assert_eq!(lines, [2, 3]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn prefixes_match_either_way_from_seven_digits() {
        let full = "0123456789abcdef0123456789abcdef01234567";
        assert!(same_commit("0123456", full));
        assert!(same_commit(full, "0123456"));
        assert!(!same_commit("012345", full));
        assert!(!same_commit("0123457", full));
    }
}
