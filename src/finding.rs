//! A finding: one problem in one file, with its place and the rule it breaks.

use std::fmt;

use serde::Serialize;

use crate::yaml::Pos;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Fails validation.
    Error,
    /// Reported, but does not fail validation.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem, with everything needed to find and fix it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Finding {
    /// The file, relative to the store where possible.
    pub file: String,
    /// Where in the file, when a place applies.
    pub pos: Option<Pos>,
    /// The change id, when known.
    pub id: Option<String>,
    /// A stable rule name (`required`, `unknown-key`, `enum`, …).
    pub rule: &'static str,
    /// Error or warning.
    pub severity: Severity,
    /// One sentence.
    pub message: String,
}

impl Finding {
    /// An error finding.
    pub fn error(
        file: impl Into<String>,
        pos: Option<Pos>,
        rule: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Finding {
            file: file.into(),
            pos,
            id: None,
            rule,
            severity: Severity::Error,
            message: message.into(),
        }
    }

    /// A warning finding.
    pub fn warning(
        file: impl Into<String>,
        pos: Option<Pos>,
        rule: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Finding {
            severity: Severity::Warning,
            ..Finding::error(file, pos, rule, message)
        }
    }

    /// Whether this finding fails validation.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Finding {
    /// `file:line:column: rule: message`, the text format of SPEC section 8.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some(p) => write!(
                f,
                "{}:{}:{}: ",
                crate::text::one_line(&self.file),
                p.line,
                p.column
            )?,
            None => write!(f, "{}: ", crate::text::one_line(&self.file))?,
        }
        // The rule stays in the fourth field, so `file:line:column: rule: message` parses
        // the same for warnings.
        write!(f, "{}: ", self.rule)?;
        if self.severity == Severity::Warning {
            write!(f, "warning: ")?;
        }
        // One finding, one line, whatever the file's keys and values hold.
        f.write_str(&crate::text::one_line(&self.message))
    }
}

/// The closest of `candidates` to a misspelt `word`, for did-you-mean hints.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let candidates: Vec<&str> = candidates.into_iter().collect();
    let close = candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c);
    // An abbreviation (`infra`) names the one candidate it starts.
    close.or_else(|| {
        let mut starts = candidates
            .iter()
            .filter(|c| word.len() >= 3 && c.starts_with(word));
        match (starts.next(), starts.next()) {
            (Some(c), None) => Some(*c),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_keeps_the_rule_in_the_fourth_field() {
        let at = Some(Pos { line: 3, column: 7 });
        let e = Finding::error("c.yaml", at, "enum", "bad");
        assert_eq!(e.to_string(), "c.yaml:3:7: enum: bad");
        let w = Finding::warning("c.yaml", at, "approval", "odd");
        assert_eq!(w.to_string(), "c.yaml:3:7: approval: warning: odd");
        assert_eq!(
            Finding::error("p.yaml", None, "policy", "x").to_string(),
            "p.yaml: policy: x"
        );
    }

    #[test]
    fn suggestions_catch_near_misses_only() {
        let keys = ["rollback_plan", "test_plan", "title"];
        assert_eq!(suggest("rollback_paln", keys), Some("rollback_plan"));
        assert_eq!(suggest("tittle", keys), Some("title"));
        assert_eq!(suggest("banana", keys), None);
    }
}
