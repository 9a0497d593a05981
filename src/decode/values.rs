//! The decoder's readers of one value: text, a parsed enum or id, a time, a boolean, a
//! list, a mapping of known keys or of the writer's keys; each records its place and turns
//! every problem into a finding rather than stopping.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;

use crate::finding::{Finding, suggest};
use crate::model::parse_timestamp;
use crate::yaml::{self, Node, Pos, Value};

use super::Decoder;

impl Decoder<'_> {
    pub(super) fn error(&mut self, pos: Pos, rule: &'static str, message: String) {
        self.out
            .findings
            .push(Finding::error(self.file, Some(pos), rule, message));
    }

    // Paths (`approvals[0].by`) are `Display` values, formatted only when a place is recorded
    // or a finding written: most files have neither, and formatting them all showed up in
    // profiles of listing 100,000 changes.
    pub(super) fn place(&mut self, path: &dyn fmt::Display, node: &Node) {
        if self.track {
            self.out.places.insert(path.to_string(), node.pos);
        }
    }

    /// The entries of a mapping with known keys; unknown keys become findings.
    pub(super) fn mapping<'n, 'a>(
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

    pub(super) fn text(&mut self, node: &Node, path: &dyn fmt::Display) -> Option<String> {
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

    pub(super) fn parsed<T: FromStr<Err = String>>(
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

    pub(super) fn timestamp(&mut self, node: &Node, path: &dyn fmt::Display) -> Option<Timestamp> {
        let text = self.text(node, path)?;
        match parse_timestamp(&text) {
            Ok(t) => Some(t),
            Err(e) => {
                self.error(node.pos, "timestamp", format!("{path}: {e}"));
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, node: &Node, path: &dyn fmt::Display) -> Option<bool> {
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

    pub(super) fn list(&mut self, node: &Node, path: &dyn fmt::Display) -> Vec<String> {
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
    pub(super) fn required<T>(
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

    /// A mapping of yes/no answers (`risk_assessment`).
    pub(super) fn answers(
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
    pub(super) fn text_map(
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
    pub(super) fn keyed<T>(
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

    /// The items of the list field `name` (placed), or none with a `type` error when the
    /// node is not a list.
    pub(super) fn records<'n, 'y>(
        &mut self,
        node: &'n Node<'y>,
        name: &'static str,
    ) -> &'n [Node<'y>] {
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
}
