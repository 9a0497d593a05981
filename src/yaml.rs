//! A small YAML tree with a place (line, column) on every node.
//!
//! Validation must report every problem in a file with the place of the offending key or
//! value, so it needs the document as a tree with positions rather than a typed struct that
//! stops at the first error. The tree is built from the event stream of `granit-parser` (the
//! parser under serde-saphyr) with fixed budgets, so hostile input (alias bombs, deep
//! nesting, huge documents) costs bounded time and memory and ends in a clear error.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde_saphyr::granit_parser::{self, Event, Marker, Parser, ScalarStyle};

mod fast;

/// A place in a file, both counted from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// Line, from 1.
    pub line: u32,
    /// Column in characters, from 1.
    pub column: u32,
}

impl Pos {
    fn from_marker(m: &Marker) -> Pos {
        Pos {
            line: u32::try_from(m.line()).unwrap_or(u32::MAX),
            column: u32::try_from(m.col() + 1).unwrap_or(u32::MAX),
        }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A node's content. Scalars borrow from the source text where they can (plain scalars
/// without escapes), which saves an allocation per key and value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// `~`, `null` or nothing at all.
    Null,
    /// Any scalar; `plain` is false when it was quoted or a block scalar, which makes
    /// `"true"` a string and `true` a boolean.
    Scalar {
        /// The scalar after escape processing.
        text: Cow<'a, str>,
        /// Written without quotes or block indicators.
        plain: bool,
    },
    /// A list.
    Seq(Vec<Node<'a>>),
    /// A mapping, in file order; keys are unique (duplicates are an error).
    Map(Vec<(Node<'a>, Node<'a>)>),
}

/// A value with the place it starts at.
#[derive(Debug, Clone, PartialEq)]
pub struct Node<'a> {
    /// The content.
    pub value: Value<'a>,
    /// Where it starts.
    pub pos: Pos,
}

impl<'a> Node<'a> {
    /// The scalar text, if this is a scalar.
    pub fn as_scalar(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The entries, if this is a mapping.
    pub fn as_map(&self) -> Option<&[(Node<'a>, Node<'a>)]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// What kind of node this is, for messages.
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Null => "nothing",
            Value::Scalar { .. } => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Why a document could not be read, with where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// Where, when known.
    pub pos: Option<Pos>,
    /// One sentence.
    pub message: String,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Budgets that bound the work one document may cause.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Nested collections.
    pub max_depth: usize,
    /// Nodes in the tree, counting every copy an alias makes.
    pub max_nodes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // A change file is a flat form a few levels deep with a few hundred nodes; these
        // budgets leave two orders of magnitude of room and still stop an alias bomb at once.
        Limits {
            max_depth: 32,
            max_nodes: 100_000,
        }
    }
}

enum Frame<'a> {
    Seq {
        items: Vec<Node<'a>>,
        pos: Pos,
        anchor: usize,
        size: usize,
    },
    Map {
        entries: Vec<(Node<'a>, Node<'a>)>,
        key: Option<Node<'a>>,
        pos: Pos,
        anchor: usize,
        size: usize,
    },
}

/// Parses one YAML document into a tree. An empty document gives `None`.
///
/// Files in the plain block subset that chg writes take a fast path that builds the same
/// tree (see [`fast`]); everything else goes through the full parser.
pub fn parse(text: &str, limits: Limits) -> Result<Option<Node<'_>>, YamlError> {
    if let Some(node) = fast::parse(text) {
        return Ok(Some(node));
    }
    parse_full(text, limits)
}

/// Whether `text` is read by the fast path (for benchmarks and diagnostics).
pub fn takes_fast_path(text: &str) -> bool {
    fast::parse(text).is_some()
}

/// Parses with the full YAML parser only.
pub fn parse_full(text: &str, limits: Limits) -> Result<Option<Node<'_>>, YamlError> {
    let mut options = granit_parser::Options::default();
    options.flow_nesting_limit = limits.max_depth;
    options.block_nesting_limit = limits.max_depth;
    options.set_emit_comments(false);
    let mut parser = Parser::new_from_str_with_options(text, options);

    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, (Node, usize)> = HashMap::new();
    let mut nodes = 0usize;
    let mut documents = 0usize;
    let mut root: Option<Node> = None;

    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| YamlError {
            pos: Some(Pos::from_marker(e.marker())),
            message: format!("invalid YAML: {}", e.info()),
        })?;
        let pos = Pos::from_marker(&span.start);
        // `size` is the node's whole subtree; `cost` is what it adds to the budget now
        // (a collection's children were charged as they arrived).
        let (node, size, cost, anchor) = match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => continue,
            Event::DocumentStart(..) => {
                documents += 1;
                if documents > 1 {
                    return Err(YamlError {
                        pos: Some(pos),
                        message: "a change file holds one YAML document, but this is a second one"
                            .into(),
                    });
                }
                continue;
            }
            Event::SequenceStart(_, anchor, tag) => {
                check_tag(tag.as_deref(), pos)?;
                stack.push(Frame::Seq {
                    items: Vec::new(),
                    pos,
                    anchor,
                    size: 1,
                });
                continue;
            }
            Event::MappingStart(_, anchor, tag) => {
                check_tag(tag.as_deref(), pos)?;
                stack.push(Frame::Map {
                    entries: Vec::new(),
                    key: None,
                    pos,
                    anchor,
                    size: 1,
                });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let frame = stack.pop().ok_or_else(|| YamlError {
                    pos: Some(pos),
                    message: "invalid YAML: unbalanced collection".into(),
                })?;
                let (node, size, anchor) = frame.close();
                (node, size, 1, anchor)
            }
            Event::Scalar(text, style, anchor, tag) => {
                check_tag(tag.as_deref(), pos)?;
                let plain = style == ScalarStyle::Plain && tag.is_none();
                (scalar(text, plain, pos)?, 1, 1, anchor)
            }
            Event::Alias(id) => {
                let (target, size) = anchors.get(&id).cloned().ok_or_else(|| YamlError {
                    pos: Some(pos),
                    message: "invalid YAML: alias to an unknown anchor".into(),
                })?;
                // Every alias copies its target: charge the copy against the node budget.
                (Node { pos, ..target }, size, size, 0)
            }
            _ => continue,
        };
        nodes = nodes.saturating_add(cost);
        if nodes > limits.max_nodes {
            return Err(YamlError {
                pos: Some(pos),
                message: format!(
                    "the document expands to more than {} nodes (an alias bomb?); refusing to read it",
                    limits.max_nodes
                ),
            });
        }
        if anchor != 0 {
            anchors.insert(anchor, (node.clone(), size));
        }
        place(&mut stack, &mut root, node, size)?;
    }
    Ok(root)
}

impl<'a> Frame<'a> {
    /// The collection a frame built, once its end event arrives: the node, the size of
    /// its subtree and its anchor.
    fn close(self) -> (Node<'a>, usize, usize) {
        match self {
            Frame::Seq {
                items,
                pos,
                anchor,
                size,
            } => (
                Node {
                    value: Value::Seq(items),
                    pos,
                },
                size,
                anchor,
            ),
            Frame::Map {
                entries,
                pos,
                anchor,
                size,
                ..
            } => (
                Node {
                    value: Value::Map(entries),
                    pos,
                },
                size,
                anchor,
            ),
        }
    }
}

/// A scalar's node: `null` when plain and spelled as YAML's null. An escape (`"\0"`) can
/// put a NUL into text that git, terminals and C tools all cut short: no field may hold
/// one.
fn scalar(text: Cow<'_, str>, plain: bool, pos: Pos) -> Result<Node<'_>, YamlError> {
    if text.contains('\0') {
        return Err(YamlError {
            pos: Some(pos),
            message: "a value contains a NUL character (\\0), which no field may hold".into(),
        });
    }
    let value = if plain && matches!(&*text, "" | "~" | "null" | "Null" | "NULL") {
        Value::Null
    } else {
        Value::Scalar { text, plain }
    };
    Ok(Node { value, pos })
}

/// Puts a finished node where it belongs: the root, the next item of the open sequence,
/// or the open mapping's next key (a scalar, not seen before in it) or value.
fn place<'a>(
    stack: &mut [Frame<'a>],
    root: &mut Option<Node<'a>>,
    node: Node<'a>,
    size: usize,
) -> Result<(), YamlError> {
    match stack.last_mut() {
        None => *root = Some(node),
        Some(Frame::Seq {
            items, size: total, ..
        }) => {
            *total = total.saturating_add(size);
            items.push(node);
        }
        Some(Frame::Map {
            entries,
            key,
            size: total,
            ..
        }) => match key.take() {
            None => {
                if !matches!(node.value, Value::Scalar { .. } | Value::Null) {
                    return Err(YamlError {
                        pos: Some(node.pos),
                        message: format!("a mapping key must be a plain word, not {}", node.kind()),
                    });
                }
                let name = key_text(&node);
                if let Some((first, _)) = entries.iter().find(|(k, _)| key_text(k) == name) {
                    return Err(YamlError {
                        pos: Some(node.pos),
                        message: format!(
                            "duplicate key `{name}` (first defined at line {})",
                            first.pos.line
                        ),
                    });
                }
                *key = Some(node);
            }
            Some(k) => {
                *total = total.saturating_add(size + 1);
                entries.push((k, node));
            }
        },
    }
    Ok(())
}

/// The text of a mapping key.
pub fn key_text<'n>(node: &'n Node<'_>) -> &'n str {
    node.as_scalar().unwrap_or("")
}

fn check_tag(tag: Option<&granit_parser::Tag>, pos: Pos) -> Result<(), YamlError> {
    match tag {
        None => Ok(()),
        Some(t) if t.is_yaml_core_schema() => Ok(()),
        Some(t) => Err(YamlError {
            pos: Some(pos),
            message: format!("the YAML tag `{t}` is not supported in chg files"),
        }),
    }
}

/// The place of a byte offset, for errors found before parsing (invalid UTF-8).
pub fn pos_of_offset(bytes: &[u8], offset: usize) -> Pos {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    Pos {
        line: u32::try_from(line).unwrap_or(u32::MAX),
        column: u32::try_from(column).unwrap_or(u32::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Option<Node<'_>>, YamlError> {
        parse(text, Limits::default())
    }

    #[test]
    fn places_are_one_based_and_point_at_values() {
        let root = p("a: 1\nlist:\n  - x\n  - 'y'\n").unwrap().unwrap();
        let entries = root.as_map().unwrap();
        assert_eq!(entries[0].1.pos, Pos { line: 1, column: 4 });
        let Value::Seq(items) = &entries[1].1.value else {
            panic!("not a list")
        };
        assert_eq!(items[1].pos, Pos { line: 4, column: 5 });
        assert_eq!(
            items[1].value,
            Value::Scalar {
                text: Cow::Borrowed("y"),
                plain: false
            }
        );
    }

    #[test]
    fn duplicate_keys_are_errors_at_the_second_key() {
        let err = p("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.pos, Some(Pos { line: 3, column: 1 }));
        assert!(err.message.contains("duplicate key `a`"), "{}", err.message);
    }

    #[test]
    fn alias_bombs_stop_at_the_node_budget() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let prev = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        let err = p(&text).unwrap_err();
        assert!(err.message.contains("alias bomb"), "{}", err.message);
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion() {
        let text = "[".repeat(10_000) + &"]".repeat(10_000);
        assert!(p(&text).is_err());
        let text: String = (0..10_000)
            .map(|i| format!("{}k:\n", " ".repeat(i)))
            .collect();
        assert!(p(&text).is_err());
    }

    #[test]
    fn nulls_and_empty_documents() {
        assert_eq!(p("").unwrap(), None);
        assert_eq!(p("# only a comment\n").unwrap(), None);
        let root = p("a: ~\nb:\nc: 'null'\n").unwrap().unwrap();
        let e = root.as_map().unwrap();
        assert_eq!(e[0].1.value, Value::Null);
        assert_eq!(e[1].1.value, Value::Null);
        assert!(matches!(e[2].1.value, Value::Scalar { .. }));
    }

    #[test]
    fn second_documents_and_custom_tags_are_errors() {
        assert!(p("a: 1\n---\nb: 2\n").is_err());
        assert!(p("a: !custom 1\n").is_err());
        assert!(p("a: !!str 1\n").is_ok());
    }

    #[test]
    fn offsets_map_to_places() {
        assert_eq!(pos_of_offset(b"ab\ncd", 4), Pos { line: 2, column: 2 });
    }
}
