//! Reading a change file: bytes → YAML tree → [`ChangeRequest`], with a finding (and its
//! place) for every problem rather than stopping at the first.
//!
//! Decoding is independent of the policy: it checks shapes, types and vocabularies. Rules
//! that need the policy (required fields, change types, approvals) are in [`crate::validate`].

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;

use crate::finding::{Finding, suggest};
use crate::model::{
    ALL_FIELDS, Approval, Cancellation, ChangeId, ChangeRequest, Decision, Deployment,
    Implementation, Review, Schedule, parse_timestamp,
};
use crate::yaml::{self, Limits, Node, Pos, Value};

/// Largest change file read. Real ones are a few kilobytes; anything this big is an attack
/// or an accident, and reading it whole would cost memory proportional to the attack.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Reads a file chg is given or finds (a change file, the policy, `--file` input) as it
/// must be read: a regular file (a FIFO would block forever, a device never end) of at most
/// [`MAX_FILE_BYTES`]. Every such read goes through here.
pub fn read_bounded(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    read_limited(path, MAX_FILE_BYTES)
}

/// [`read_bounded`] with another limit (a deployments file from a CI/CD system holds a
/// year of rows).
pub fn read_limited(path: &std::path::Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind, Read};
    let not_regular = || Error::new(ErrorKind::InvalidInput, "not a regular file");
    let mut open = std::fs::OpenOptions::new();
    open.read(true);
    // Opening a FIFO for reading waits for a writer; without blocking it returns at once,
    // and what was opened is judged below. A regular file ignores the flag.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut open, libc::O_NONBLOCK);
    #[cfg(not(unix))]
    if !std::fs::metadata(path)?.is_file() {
        return Err(not_regular());
    }
    let file = open.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    // Sized from the stat (one read for the whole file), still bounded if it grows.
    let mut bytes = Vec::with_capacity(meta.len().min(limit) as usize + 1);
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!("larger than chg's limit of {limit} bytes"),
        ));
    }
    Ok(bytes)
}

/// Keys allowed in each nested mapping.
pub const SCHEDULE_KEYS: &[&str] = &["start", "end", "maintenance_window"];
/// Keys of one approval.
pub const APPROVAL_KEYS: &[&str] = &[
    "by",
    "role",
    "decision",
    "at",
    "comments",
    "conditions",
    "digest",
    "signature",
    "attested_by",
    "attested_via",
];
/// Keys of `implementation`.
pub const IMPLEMENTATION_KEYS: &[&str] = &[
    "implementer",
    "started_at",
    "completed_at",
    "outcome",
    "test_results",
    "signature",
    "closed_by",
    "close_signature",
];
/// Keys of `review`.
pub const REVIEW_KEYS: &[&str] = &["by", "at", "summary"];
/// Keys of `content_signature`.
pub const CONTENT_SIGNATURE_KEYS: &[&str] = &["action", "by", "at", "digest", "signature"];
/// Keys of one deployment.
pub const DEPLOYMENT_KEYS: &[&str] = &["commit", "environment", "run", "at", "by", "signature"];
/// Keys of `cancellation`.
pub const CANCELLATION_KEYS: &[&str] = &["by", "at", "reason", "signature"];

/// A decoded change file.
#[derive(Debug, Clone, Default)]
pub struct Decoded {
    /// What could be read. Fields with problems are left empty.
    pub change: ChangeRequest,
    /// Every problem found.
    pub findings: Vec<Finding>,
    /// Where each value is (`status`, `approvals[0].by`, `schedule.end`, …); keys of the
    /// top-level mapping are under `<name>:key`.
    pub places: HashMap<String, Pos>,
    /// The file was readable YAML (findings, if any, are about content).
    pub parsed: bool,
    /// Top-level fields present with a value that could not be read (already reported),
    /// so that rules do not report them again as missing.
    pub invalid: Vec<&'static str>,
}

impl Decoded {
    /// The place of a path, if known.
    pub fn place(&self, path: &str) -> Option<Pos> {
        self.places.get(path).copied()
    }

    /// Whether any finding is an error.
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(Finding::is_error)
    }
}

/// Decodes the bytes of a change file named `file` (used in findings), recording the place
/// of every value.
pub fn decode_bytes(file: &str, bytes: &[u8]) -> Decoded {
    decode_bytes_with(file, bytes, true)
}

/// Decodes without recording places (faster); findings of the decoder still have places.
/// Re-decode with places when rules found problems that need them.
pub fn decode_bytes_with(file: &str, bytes: &[u8], track: bool) -> Decoded {
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return failed(Finding::error(
            file,
            None,
            "too-large",
            format!(
                "the file is {} bytes; change files are limited to {} bytes",
                bytes.len(),
                MAX_FILE_BYTES
            ),
        ));
    }
    if bytes.contains(&0) {
        return failed(Finding::error(
            file,
            None,
            "encoding",
            "the file contains NUL bytes: it is binary, not a YAML change file",
        ));
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => decode_str_with(file, text, track),
        Err(e) => failed(Finding::error(
            file,
            Some(yaml::pos_of_offset(bytes, e.valid_up_to())),
            "encoding",
            "the file is not valid UTF-8",
        )),
    }
}

fn failed(f: Finding) -> Decoded {
    Decoded {
        findings: vec![f],
        ..Default::default()
    }
}

/// Decodes the text of a change file, recording places.
pub fn decode_str(file: &str, text: &str) -> Decoded {
    decode_str_with(file, text, true)
}

fn decode_str_with(file: &str, text: &str, track: bool) -> Decoded {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let root = match yaml::parse(text, Limits::default()) {
        Ok(Some(root)) => root,
        Ok(None) => {
            return failed(Finding::error(
                file,
                None,
                "empty",
                "the file is empty: a change file is a YAML mapping of fields",
            ));
        }
        Err(e) => return failed(Finding::error(file, e.pos, "yaml", e.message)),
    };
    let mut d = Decoder {
        file,
        out: Decoded {
            parsed: true,
            ..Default::default()
        },
        track,
    };
    d.change(&root);
    d.out
}

struct Decoder<'f> {
    file: &'f str,
    out: Decoded,
    /// Record the place of every value (costly; needed only to place findings).
    track: bool,
}

impl Decoder<'_> {
    fn error(&mut self, pos: Pos, rule: &'static str, message: String) {
        self.out
            .findings
            .push(Finding::error(self.file, Some(pos), rule, message));
    }

    // Paths (`approvals[0].by`) are `Display` values, formatted only when a place is recorded
    // or a finding written: most files have neither, and formatting them all showed up in
    // profiles of listing 100,000 changes.
    fn place(&mut self, path: &dyn fmt::Display, node: &Node) {
        if self.track {
            self.out.places.insert(path.to_string(), node.pos);
        }
    }

    /// The entries of a mapping with known keys; unknown keys become findings.
    fn mapping<'n, 'a>(
        &mut self,
        node: &'n Node<'a>,
        path: &dyn fmt::Display,
        allowed: &[&str],
    ) -> Vec<(&'n str, &'n Node<'a>)> {
        let Some(entries) = node.as_map() else {
            if node.value != Value::Null {
                let path = path.to_string();
                let what = if path.is_empty() { "the file" } else { &path };
                self.error(
                    node.pos,
                    "type",
                    format!("{what} must be a mapping of fields, not {}", node.kind()),
                );
            }
            return Vec::new();
        };
        let mut known = Vec::new();
        for (k, v) in entries {
            let key = yaml::key_text(k);
            if allowed.contains(&key) {
                known.push((key, v));
                continue;
            }
            let hint = suggest(key, allowed.iter().copied())
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            let path = path.to_string();
            let scope = if path.is_empty() {
                String::new()
            } else {
                format!(" in {path}")
            };
            self.error(
                k.pos,
                "unknown-key",
                format!("unknown key `{key}`{scope}{hint}"),
            );
        }
        known
    }

    fn text(&mut self, node: &Node, path: &dyn fmt::Display) -> Option<String> {
        self.place(path, node);
        match &node.value {
            Value::Null => None,
            Value::Scalar { text, .. } => Some(text.to_string()),
            _ => {
                self.error(
                    node.pos,
                    "type",
                    format!("{path} must be text, not {}", node.kind()),
                );
                None
            }
        }
    }

    fn parsed<T: FromStr<Err = String>>(
        &mut self,
        node: &Node,
        path: &dyn fmt::Display,
        rule: &'static str,
    ) -> Option<T> {
        let text = self.text(node, path)?;
        match text.trim().parse::<T>() {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(node.pos, rule, format!("{path}: {e}"));
                None
            }
        }
    }

    fn timestamp(&mut self, node: &Node, path: &dyn fmt::Display) -> Option<Timestamp> {
        let text = self.text(node, path)?;
        match parse_timestamp(&text) {
            Ok(t) => Some(t),
            Err(e) => {
                self.error(node.pos, "timestamp", format!("{path}: {e}"));
                None
            }
        }
    }

    fn boolean(&mut self, node: &Node, path: &dyn fmt::Display) -> Option<bool> {
        self.place(path, node);
        match &node.value {
            Value::Null => None,
            Value::Scalar { text, plain: true } if text == "true" => Some(true),
            Value::Scalar { text, plain: true } if text == "false" => Some(false),
            _ => {
                let shown = node.as_scalar().unwrap_or(node.kind());
                self.error(
                    node.pos,
                    "type",
                    format!("{path} must be true or false (unquoted), not `{shown}`"),
                );
                None
            }
        }
    }

    fn list(&mut self, node: &Node, path: &dyn fmt::Display) -> Vec<String> {
        self.place(path, node);
        match &node.value {
            Value::Null => Vec::new(),
            Value::Seq(items) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| self.text(item, &format_args!("{path}[{i}]")))
                .collect(),
            _ => {
                self.error(
                    node.pos,
                    "type",
                    format!(
                        "{path} must be a list (like [a, b] or one `- item` per line), not {}",
                        node.kind()
                    ),
                );
                Vec::new()
            }
        }
    }

    /// Reports a missing or empty part of a nested section; `entries` are the section's.
    fn required<T>(
        &mut self,
        value: Option<T>,
        parent: &Node,
        entries: &[(&str, &Node<'_>)],
        section: &dyn fmt::Display,
        key: &str,
    ) -> Option<T> {
        if value.is_none() {
            let path = format!("{section}.{key}");
            match entries.iter().find(|(k, _)| *k == key) {
                Some((_, node)) => self.error(node.pos, "required", format!("{path} is empty")),
                None => self.error(parent.pos, "required", format!("{path} is missing")),
            }
        }
        value
    }

    fn change(&mut self, root: &Node) {
        let mut c = ChangeRequest::default();
        for (key, v) in self.mapping(root, &"", ALL_FIELDS) {
            let before = self.out.findings.len();
            if self.track
                && let Some((k, _)) = root
                    .as_map()
                    .and_then(|m| m.iter().find(|(k, _)| yaml::key_text(k) == key))
            {
                self.out.places.insert(format!("{key}:key"), k.pos);
            }
            match key {
                "id" => c.id = self.parsed::<ChangeId>(v, &key, "id"),
                "title" => c.title = self.text(v, &key),
                "description" => c.description = self.text(v, &key),
                "business_justification" => c.business_justification = self.text(v, &key),
                "requester" => c.requester = self.text(v, &key),
                "request_date" => c.request_date = self.timestamp(v, &key),
                "change_type" => c.change_type = self.text(v, &key),
                "change_model" => c.change_model = self.parsed(v, &key, "enum"),
                "priority" => c.priority = self.parsed(v, &key, "enum"),
                "urgency" => c.urgency = self.parsed(v, &key, "enum"),
                "risk_level" => c.risk_level = self.parsed(v, &key, "enum"),
                "affected_systems" => c.affected_systems = self.list(v, &key),
                "impact_scope" => c.impact_scope = self.text(v, &key),
                "implementation_plan" => c.implementation_plan = self.text(v, &key),
                "rollback_plan" => c.rollback_plan = self.text(v, &key),
                "testing_required" => c.testing_required = self.boolean(v, &key),
                "test_plan" => c.test_plan = self.text(v, &key),
                "test_environment" => c.test_environment = self.text(v, &key),
                "risk_assessment" => c.risk_assessment = self.answers(v, &key),
                "template" => c.template = self.text(v, &key),
                "template_digest" => c.template_digest = self.text(v, &key),
                "proposed_policy" => c.proposed_policy = self.text_map(v, &key),
                "policy_base" => c.policy_base = self.text(v, &key),
                "content_signature" => c.content_signature = self.content_signature(v),
                "schedule" => c.schedule = self.schedule(v),
                "status" => c.status = self.parsed(v, &key, "enum"),
                "approvals" => c.approvals = self.approvals(v),
                "implementation" => c.implementation = self.implementation(v),
                "review" => c.review = self.review(v),
                "cancellation" => c.cancellation = self.cancellation(v),
                "deployments" => c.deployments = self.deployments(v),
                _ => unreachable!("mapping() returns allowed keys only"),
            }
            if self.out.findings.len() > before
                && let Some(name) = ALL_FIELDS.iter().find(|f| **f == key)
            {
                self.out.invalid.push(name);
            }
        }
        self.out.change = c;
    }

    /// A mapping of yes/no answers (`risk_assessment`).
    fn answers(
        &mut self,
        node: &Node,
        path: &dyn fmt::Display,
    ) -> Option<std::collections::BTreeMap<String, bool>> {
        self.keyed(
            node,
            path,
            "map each question id to true or false",
            |d, v, p| d.boolean(v, p),
        )
    }

    /// A mapping of texts (`proposed_policy`: path to content).
    fn text_map(
        &mut self,
        node: &Node,
        path: &dyn fmt::Display,
    ) -> Option<std::collections::BTreeMap<String, String>> {
        self.keyed(
            node,
            path,
            "be a mapping of file paths to contents",
            |d, v, p| Some(d.text(v, p).unwrap_or_default()),
        )
    }

    /// A mapping with keys of the writer's choosing, each value read by `read`.
    fn keyed<T>(
        &mut self,
        node: &Node,
        path: &dyn fmt::Display,
        must: &str,
        mut read: impl FnMut(&mut Self, &Node, &dyn fmt::Display) -> Option<T>,
    ) -> Option<std::collections::BTreeMap<String, T>> {
        self.place(path, node);
        if node.value == Value::Null {
            return None;
        }
        let Some(entries) = node.as_map() else {
            self.error(
                node.pos,
                "type",
                format!("{path} must {must}, not {}", node.kind()),
            );
            return None;
        };
        let mut out = std::collections::BTreeMap::new();
        for (k, v) in entries {
            let key = yaml::key_text(k).to_owned();
            if let Some(value) = read(self, v, &format_args!("{path}.{key}")) {
                out.insert(key, value);
            }
        }
        Some(out)
    }

    fn schedule(&mut self, node: &Node) -> Option<Schedule> {
        self.place(&"schedule", node);
        if node.value == Value::Null {
            return None;
        }
        let (mut start, mut end, mut mw) = (None, None, false);
        let entries = self.mapping(node, &"schedule", SCHEDULE_KEYS);
        for &(key, v) in &entries {
            let path = format_args!("schedule.{key}");
            match key {
                "start" => start = self.timestamp(v, &path),
                "end" => end = self.timestamp(v, &path),
                _ => mw = self.boolean(v, &path).unwrap_or(false),
            }
        }
        node.as_map()?;
        let start = self.required(start, node, &entries, &"schedule", "start");
        let end = self.required(end, node, &entries, &"schedule", "end");
        Some(Schedule {
            start: start?,
            end: end?,
            maintenance_window: mw,
        })
    }

    /// The items of the list field `name` (placed), or none with a `type` error when the
    /// node is not a list.
    fn records<'n, 'y>(&mut self, node: &'n Node<'y>, name: &'static str) -> &'n [Node<'y>] {
        self.place(&name, node);
        match &node.value {
            Value::Null => &[],
            Value::Seq(items) => items,
            _ => {
                self.error(
                    node.pos,
                    "type",
                    format!("{name} must be a list, not {}", node.kind()),
                );
                &[]
            }
        }
    }

    fn approvals(&mut self, node: &Node) -> Vec<Approval> {
        let items = self.records(node, "approvals");
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let base = format_args!("approvals[{i}]");
            self.place(&base, item);
            let (mut by, mut role, mut decision, mut at, mut comments, mut conditions) =
                (None, None, None, None, None, Vec::new());
            let (mut digest, mut signature, mut attested_by, mut attested_via) =
                (None, None, None, None);
            let entries = self.mapping(item, &base, APPROVAL_KEYS);
            for &(key, v) in &entries {
                let path = format_args!("approvals[{i}].{key}");
                match key {
                    "by" => by = self.text(v, &path),
                    "role" => role = self.text(v, &path),
                    "decision" => decision = self.parsed::<Decision>(v, &path, "enum"),
                    "at" => at = self.timestamp(v, &path),
                    "comments" => comments = self.text(v, &path),
                    "digest" => digest = self.text(v, &path),
                    "signature" => signature = self.text(v, &path),
                    "attested_by" => attested_by = self.text(v, &path),
                    "attested_via" => attested_via = self.text(v, &path),
                    _ => conditions = self.list(v, &path),
                }
            }
            if item.as_map().is_none() {
                continue;
            }
            let by = self.required(by, item, &entries, &base, "by");
            let role = self.required(role, item, &entries, &base, "role");
            let decision = self.required(decision, item, &entries, &base, "decision");
            let at = self.required(at, item, &entries, &base, "at");
            if let (Some(by), Some(role), Some(decision), Some(at)) = (by, role, decision, at) {
                out.push(Approval {
                    by,
                    role,
                    decision,
                    at,
                    comments,
                    conditions,
                    digest,
                    signature,
                    attested_by,
                    attested_via,
                });
            }
        }
        out
    }

    fn implementation(&mut self, node: &Node) -> Option<Implementation> {
        self.place(&"implementation", node);
        let mut imp = Implementation::default();
        let entries = self.mapping(node, &"implementation", IMPLEMENTATION_KEYS);
        for &(key, v) in &entries {
            let path = format_args!("implementation.{key}");
            match key {
                "implementer" => imp.implementer = self.text(v, &path),
                "started_at" => imp.started_at = self.timestamp(v, &path),
                "completed_at" => imp.completed_at = self.timestamp(v, &path),
                "outcome" => imp.outcome = self.parsed(v, &path, "enum"),
                "signature" => imp.signature = self.text(v, &path),
                "closed_by" => imp.closed_by = self.text(v, &path),
                "close_signature" => imp.close_signature = self.text(v, &path),
                _ => imp.test_results = self.text(v, &path),
            }
        }
        node.as_map().map(|_| imp)
    }

    fn review(&mut self, node: &Node) -> Option<Review> {
        self.place(&"review", node);
        node.as_map()?;
        let (mut by, mut at, mut summary) = (None, None, None);
        let entries = self.mapping(node, &"review", REVIEW_KEYS);
        for &(key, v) in &entries {
            let path = format_args!("review.{key}");
            match key {
                "by" => by = self.text(v, &path),
                "at" => at = self.timestamp(v, &path),
                _ => summary = self.text(v, &path),
            }
        }
        let by = self.required(by, node, &entries, &"review", "by");
        let at = self.required(at, node, &entries, &"review", "at");
        let summary = self.required(summary, node, &entries, &"review", "summary");
        Some(Review {
            by: by?,
            at: at?,
            summary: summary?,
        })
    }

    fn content_signature(&mut self, node: &Node) -> Option<crate::model::ContentRecord> {
        let name = "content_signature";
        self.place(&name, node);
        node.as_map()?;
        let (mut action, mut by, mut at, mut digest, mut signature) =
            (None, None, None, None, None);
        let entries = self.mapping(node, &name, CONTENT_SIGNATURE_KEYS);
        for &(key, v) in &entries {
            let path = format_args!("content_signature.{key}");
            match key {
                "action" => action = self.text(v, &path),
                "by" => by = self.text(v, &path),
                "at" => at = self.timestamp(v, &path),
                "digest" => digest = self.text(v, &path),
                _ => signature = self.text(v, &path),
            }
        }
        let action = self.required(action, node, &entries, &name, "action");
        let by = self.required(by, node, &entries, &name, "by");
        let at = self.required(at, node, &entries, &name, "at");
        let digest = self.required(digest, node, &entries, &name, "digest");
        Some(crate::model::ContentRecord {
            action: action?,
            by: by?,
            at: at?,
            digest: digest?,
            signature,
        })
    }

    fn deployments(&mut self, node: &Node) -> Vec<Deployment> {
        let items = self.records(node, "deployments");
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let base = format_args!("deployments[{i}]");
            self.place(&base, item);
            let (mut commit, mut environment, mut run, mut at, mut by, mut signature) =
                (None, None, None, None, None, None);
            let entries = self.mapping(item, &base, DEPLOYMENT_KEYS);
            for &(key, v) in &entries {
                let path = format_args!("deployments[{i}].{key}");
                match key {
                    "commit" => commit = self.text(v, &path),
                    "environment" => environment = self.text(v, &path),
                    "run" => run = self.text(v, &path),
                    "at" => at = self.timestamp(v, &path),
                    "by" => by = self.text(v, &path),
                    _ => signature = self.text(v, &path),
                }
            }
            if item.as_map().is_none() {
                continue;
            }
            let commit = self.required(commit, item, &entries, &base, "commit");
            let environment = self.required(environment, item, &entries, &base, "environment");
            let at = self.required(at, item, &entries, &base, "at");
            let by = self.required(by, item, &entries, &base, "by");
            if let (Some(commit), Some(environment), Some(at), Some(by)) =
                (commit, environment, at, by)
            {
                let d = Deployment {
                    commit,
                    environment,
                    run,
                    at,
                    by,
                    signature,
                };
                // A record that cannot be reconciled (a short id, a name with spaces) is
                // malformed, as an unknown enum value is.
                for problem in d.problems() {
                    self.error(item.pos, "type", format!("deployments[{i}]: {problem}"));
                }
                out.push(d);
            }
        }
        out
    }

    fn cancellation(&mut self, node: &Node) -> Option<Cancellation> {
        self.place(&"cancellation", node);
        node.as_map()?;
        let (mut by, mut at, mut reason, mut signature) = (None, None, None, None);
        let entries = self.mapping(node, &"cancellation", CANCELLATION_KEYS);
        for &(key, v) in &entries {
            let path = format_args!("cancellation.{key}");
            match key {
                "by" => by = self.text(v, &path),
                "at" => at = self.timestamp(v, &path),
                "signature" => signature = self.text(v, &path),
                _ => reason = self.text(v, &path),
            }
        }
        let by = self.required(by, node, &entries, &"cancellation", "by");
        let at = self.required(at, node, &entries, &"cancellation", "at");
        let reason = self.required(reason, node, &entries, &"cancellation", "reason");
        Some(Cancellation {
            by: by?,
            at: at?,
            reason: reason?,
            signature,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Priority, Status};

    #[test]
    fn a_tricky_but_good_file_decodes_cleanly() {
        let text = "# hand-written\r\nrisk_level: low\r\nid: CHG-2025-001\r\ntitle: \"Ünïcödé: title\"\r\npriority: high # inline\r\naffected_systems: [a, b]\r\ndescription: |\r\n  line one\r\n  line two\r\ntesting_required: true\r\nstatus: pending_approval\r\n";
        let d = decode_str("f.yaml", text);
        assert!(d.findings.is_empty(), "{:?}", d.findings);
        assert_eq!(d.change.priority, Some(Priority::High));
        assert_eq!(d.change.status, Some(Status::PendingApproval));
        assert_eq!(d.change.title.as_deref(), Some("Ünïcödé: title"));
        assert_eq!(
            d.change.description.as_deref(),
            Some("line one\nline two\n")
        );
        assert_eq!(d.change.affected_systems, ["a", "b"]);
    }

    #[test]
    fn every_problem_is_reported_with_its_place() {
        let text = "id: CHG-2025-001\nrollback_paln: x\npriority: urgent\ntesting_required: \"yes\"\nrequest_date: 2025-01-27\naffected_systems: one\n";
        let d = decode_str("f.yaml", text);
        let got: Vec<_> = d
            .findings
            .iter()
            .map(|f| (f.rule, f.pos.unwrap().line, f.pos.unwrap().column))
            .collect();
        assert_eq!(
            got,
            [
                ("unknown-key", 2, 1),
                ("enum", 3, 11),
                ("type", 4, 19),
                ("timestamp", 5, 15),
                ("type", 6, 19)
            ]
        );
        assert!(
            d.findings[0]
                .message
                .contains("did you mean `rollback_plan`")
        );
        assert!(
            d.findings[1]
                .message
                .contains("critical, high, medium, low")
        );
    }

    #[test]
    fn nested_sections_check_their_keys_and_required_parts() {
        let text = "approvals:\n  - by: a@x\n    role: r\n    decison: approved\n    at: 2025-01-01T00:00:00Z\nschedule:\n  start: 2025-01-01T00:00:00Z\n";
        let d = decode_str("f.yaml", text);
        let rules: Vec<_> = d.findings.iter().map(|f| f.rule).collect();
        assert_eq!(
            rules,
            ["unknown-key", "required", "required"],
            "{:?}",
            d.findings
        );
        assert!(d.findings[0].message.contains("did you mean `decision`"));
    }

    #[test]
    fn hostile_bytes_are_findings_not_crashes() {
        assert_eq!(
            decode_bytes("f", b"title: \xff\xfe").findings[0].rule,
            "encoding"
        );
        assert_eq!(
            decode_bytes("f", b"\x00\x01\x02").findings[0].rule,
            "encoding"
        );
        assert_eq!(decode_bytes("f", b"").findings[0].rule, "empty");
        assert_eq!(decode_bytes("f", b"- a\n- b\n").findings[0].rule, "type");
        assert_eq!(decode_bytes("f", b"a: [\n").findings[0].rule, "yaml");
        let big = vec![b'#'; (MAX_FILE_BYTES + 1) as usize];
        assert_eq!(decode_bytes("f", &big).findings[0].rule, "too-large");
    }
}
