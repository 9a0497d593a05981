//! `chg audit --witness FILE`: commits that receivers of chg's events saw, checked against
//! the history as it is now. Every notification carries the commit it reports; a force push
//! that drops the newest transitions leaves a fresh clone nothing to notice, but whoever
//! kept the events can name what went missing (rule `history-truncated`).

use git2::{Oid, Repository};
use jiff::Timestamp;

use super::{AuditFinding, Level};
use crate::error::{Error, Result};

/// Rule id: a commit that a receiver witnessed is no longer in the history.
pub const HISTORY_TRUNCATED: &str = "history-truncated";

/// One witnessed commit, with the line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witnessed {
    /// The line number in the file, from 1.
    pub line: usize,
    /// The commit id as written (hex, 7 to 40 digits).
    pub commit: String,
}

/// Reads a witness file: one commit id a line (as a receiver logs events' `commit`), or one
/// JSON event a line (its `commit`, or `data.commit`, is taken). Blank lines and lines
/// starting with `#` are skipped. Anything else is wrong input, named by its line.
pub fn parse(file: &str, text: &str) -> Result<Vec<Witnessed>> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let commit = if line.starts_with('{') {
            let v: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| Error::Usage(format!("{file}:{}: not a JSON event: {e}", i + 1)))?;
            v.get("commit")
                .or_else(|| v.get("data").and_then(|d| d.get("commit")))
                .and_then(|c| c.as_str())
                .map(str::to_owned)
                .ok_or_else(|| {
                    Error::Usage(format!("{file}:{}: the JSON event has no commit", i + 1))
                })?
        } else {
            line.to_owned()
        };
        let ok = (7..=40).contains(&commit.len()) && commit.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok {
            return Err(Error::Usage(format!(
                "{file}:{}: `{}` is not a commit id (7 to 40 hex digits)",
                i + 1,
                crate::text::ascii_escaped(&commit)
            )));
        }
        out.push(Witnessed {
            line: i + 1,
            commit: commit.to_ascii_lowercase(),
        });
    }
    Ok(out)
}

/// Each witnessed commit that HEAD's history does not contain (absent from the repository,
/// or present but not an ancestor of HEAD), as a `history-truncated` exception.
pub fn check(
    repo: &Repository,
    file: &str,
    witnessed: &[Witnessed],
    now: Timestamp,
) -> Result<Vec<AuditFinding>> {
    let head = repo.head().ok().and_then(|h| h.target());
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for w in witnessed {
        if !seen.insert(w.commit.clone()) {
            continue;
        }
        let found = if w.commit.len() == 40 {
            Oid::from_str(&w.commit)
                .ok()
                .and_then(|o| repo.find_commit(o).ok())
        } else {
            repo.find_commit_by_prefix(&w.commit).ok()
        };
        let in_history = match (&found, head) {
            (Some(c), Some(h)) => c.id() == h || repo.graph_descendant_of(h, c.id())?,
            _ => false,
        };
        if in_history {
            continue;
        }
        let why = if found.is_some() {
            "is in the repository but no longer in the history of HEAD (rewritten or force-pushed away)"
        } else {
            "is not in the repository: the history that held it was rewritten or cut"
        };
        out.push(AuditFinding {
            level: Level::Exception,
            rule: HISTORY_TRUNCATED.into(),
            change: None,
            path: None,
            commit: found.map_or_else(|| w.commit.clone(), |c| c.id().to_string()),
            author: String::new(),
            when: now,
            message: format!("commit {} witnessed at {file}:{} {why}", w.commit, w.line),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_witness_file_takes_ids_and_json_events_and_names_a_bad_line() {
        let text = "# receiver log\n0123456789abcdef0123456789abcdef01234567\n\n{\"id\":\"x\",\"data\":{\"commit\":\"abcdef1\"}}\n";
        let got = parse("w.txt", text).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].commit, "abcdef1");
        assert_eq!(got[1].line, 4);
        let err = parse("w.txt", "abc\n").unwrap_err().to_string();
        assert!(err.contains("w.txt:1"), "{err}");
        let err = parse("w.txt", "0123456789abcdefXX\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a commit id"), "{err}");
    }
}
