//! A fast path for the plain block YAML that chg itself writes.
//!
//! Whole-store validation is bound by YAML scanning. Most change files are in a tiny subset
//! of YAML: block mappings and block lists, plain one-line scalars, comments on their own
//! lines; and what people add by hand: one-line quoted scalars without escapes, literal
//! blocks (`|`, `|-`, `|+`) and one-line flow lists of plain words (`[a, b]`). This reader
//! accepts exactly that subset and builds the same tree, with the same places, as the full
//! parser; on anything else (escapes, flow mappings or nested flow, folded or multi-line
//! plain scalars, anchors, tags, tabs, carriage returns, trailing comments, duplicate keys,
//! odd indentation, empty values) it declines and the full parser reads the file.
//! A differential test holds the two to the same result on fixtures and mutated files.

use std::borrow::Cow;

use super::{Node, Pos, Value};

/// Nesting deeper than this is left to the full parser and its budgets.
const MAX_DEPTH: usize = 8;

struct Line<'a> {
    /// 1-based line number.
    number: u32,
    /// Leading spaces.
    indent: usize,
    /// The rest of the line, without trailing spaces.
    rest: &'a str,
}

/// Parses `text` if it is in the simple subset; `None` means "use the full parser".
pub fn parse(text: &str) -> Option<Node<'_>> {
    if text.contains(['\t', '\r']) || !text.ends_with('\n') {
        return None;
    }
    let raw: Vec<&str> = text[..text.len() - 1].split('\n').collect();
    let mut p = Reader {
        raw,
        at: 0,
        line: None,
    };
    if p.peek()?.indent != 0 {
        return None;
    }
    let root = p.mapping(0, 0)?;
    p.peek().is_none().then_some(root)
}

struct Reader<'a> {
    /// Every line of the text, without its line break.
    raw: Vec<&'a str>,
    /// The next raw line to look at.
    at: usize,
    /// The structural line at `at`, once found.
    line: Option<Line<'a>>,
}

/// A plain scalar as the full parser would read it, or `None` if it might mean anything
/// else (an indicator, a comment, a nested mapping, quoting).
fn plain(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    !matches!(
        first,
        '-' | '?'
            | ':'
            | ','
            | '['
            | ']'
            | '{'
            | '}'
            | '#'
            | '&'
            | '*'
            | '!'
            | '|'
            | '>'
            | '\''
            | '"'
            | '%'
            | '@'
            | '`'
            | ' '
    ) && !s
        .as_bytes()
        .windows(2)
        // One pass for both: two `contains` of two-byte needles were 4 % of a store read.
        .any(|w| matches!(w, [b':', b' '] | [b' ', b'#']))
        && !s.ends_with(':')
}

/// Splits `key: value` / `key:`; keys are plain words.
fn entry(rest: &str) -> Option<(&str, &str)> {
    let colon = rest.find(':')?;
    let key = &rest[..colon];
    let mut chars = key.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !ok {
        return None;
    }
    let after = &rest[colon + 1..];
    if after.is_empty() {
        Some((key, ""))
    } else {
        after.strip_prefix(' ').map(|v| (key, v))
    }
}

/// A one-line flow list of plain words, `[a, b]` or `[]`, starting at `at`: each item is
/// placed at its first character, as the full parser places it. Anything that could mean
/// more (quotes, nesting, a comma left empty, a colon, a comment) is declined.
fn flow_list(text: &str, at: Pos) -> Option<Node<'_>> {
    let inner = text.strip_prefix('[')?.strip_suffix(']')?;
    if inner.contains(['[', ']', '{', '}', '"', '\'', '#', ':', '\\']) {
        return None;
    }
    let mut items = Vec::new();
    if !inner.trim_matches(' ').is_empty() {
        let mut offset = 1;
        for raw in inner.split(',') {
            let item = raw.trim_matches(' ');
            let lead = raw.len() - raw.trim_start_matches(' ').len();
            if item.is_empty() || !plain(item) || item.contains("  ") {
                return None;
            }
            let column = at.column.checked_add(u32::try_from(offset + lead).ok()?)?;
            items.push(scalar(
                item,
                Pos {
                    line: at.line,
                    column,
                },
            ));
            // Columns count characters, as the full parser's do.
            offset += raw.chars().count() + 1;
        }
    }
    Some(Node {
        value: Value::Seq(items),
        pos: at,
    })
}

fn pos(line: u32, column: usize) -> Option<Pos> {
    Some(Pos {
        line,
        column: u32::try_from(column + 1).ok()?,
    })
}

fn scalar<'a>(text: &'a str, at: Pos) -> Node<'a> {
    let value = if matches!(text, "~" | "null" | "Null" | "NULL") {
        Value::Null
    } else {
        Value::Scalar {
            text: Cow::Borrowed(text),
            plain: true,
        }
    };
    Node { value, pos: at }
}

impl<'a> Reader<'a> {
    /// The next line that carries structure (blank lines and comment lines skipped).
    fn peek(&mut self) -> Option<&Line<'a>> {
        if self.line.is_none() {
            while let Some(raw) = self.raw.get(self.at) {
                let content = raw.trim_end_matches(' ');
                let rest = content.trim_start_matches(' ');
                if rest.is_empty() || rest.starts_with('#') {
                    self.at += 1;
                    continue;
                }
                self.line = Some(Line {
                    number: u32::try_from(self.at + 1).ok()?,
                    indent: content.len() - rest.len(),
                    rest,
                });
                break;
            }
        }
        self.line.as_ref()
    }

    /// Moves past the line `peek` returned.
    fn advance(&mut self) -> Option<Line<'a>> {
        self.peek()?;
        self.at += 1;
        self.line.take()
    }

    /// The character column where `sub` starts inside line `l` (both from the same text).
    fn column(l: &Line<'a>, sub: &str) -> usize {
        let offset = sub.as_ptr() as usize - l.rest.as_ptr() as usize;
        l.indent + l.rest[..offset].chars().count()
    }

    /// A block mapping whose keys sit at `indent`; the first key may sit later on its line
    /// (`- key: value` in a list), given as `first`.
    fn mapping(&mut self, indent: usize, depth: usize) -> Option<Node<'a>> {
        self.mapping_from(indent, None, depth)
    }

    fn mapping_from(
        &mut self,
        indent: usize,
        first: Option<(Line<'a>, &'a str)>,
        depth: usize,
    ) -> Option<Node<'a>> {
        if depth > MAX_DEPTH {
            return None;
        }
        let mut entries: Vec<(Node<'a>, Node<'a>)> = Vec::new();
        let mut start = None;
        let mut pending = first;
        loop {
            // The next entry: the one after a `- ` first, else a line at exactly `indent`.
            let (line, text) = match pending.take() {
                Some(f) => f,
                None => match self.peek() {
                    Some(l) if l.indent == indent && !l.rest.starts_with("- ") && l.rest != "-" => {
                        let l = self.advance()?;
                        let rest = l.rest;
                        (l, rest)
                    }
                    Some(l) if l.indent > indent => return None,
                    _ => break,
                },
            };
            let (key, value) = entry(text)?;
            let key_pos = pos(line.number, Self::column(&line, text))?;
            start.get_or_insert(key_pos);
            if entries.iter().any(|(k, _)| k.as_scalar() == Some(key)) {
                return None;
            }
            let key_node = scalar(key, key_pos);
            if key_node.value == Value::Null {
                return None;
            }
            let value_node = if value.is_empty() {
                self.nested(indent, depth)?
            } else {
                self.value(&line, value, indent)?
            };
            entries.push((key_node, value_node));
        }
        Some(Node {
            value: Value::Map(entries),
            pos: start?,
        })
    }

    /// An inline value: a plain scalar, a one-line quoted scalar without escapes, or a
    /// literal block scalar (`|`, `|-`, `|+`) whose lines follow, more indented than `parent`.
    fn value(&mut self, line: &Line<'a>, text: &'a str, parent: usize) -> Option<Node<'a>> {
        let at = pos(line.number, Self::column(line, text))?;
        let quoted = |q: char| -> Option<&'a str> {
            let inner = text.strip_prefix(q)?.strip_suffix(q)?;
            (!inner.contains(q) && !inner.contains('\\')).then_some(inner)
        };
        if let Some(q) = text.chars().next().filter(|c| matches!(c, '\'' | '"')) {
            let inner = quoted(q)?;
            return Some(Node {
                value: Value::Scalar {
                    text: Cow::Borrowed(inner),
                    plain: false,
                },
                pos: at,
            });
        }
        if text.starts_with('[') {
            return flow_list(text, at);
        }
        if let Some(chomp) = text.strip_prefix('|') {
            let keep = match chomp {
                "" => None,
                "-" => Some(false),
                "+" => Some(true),
                _ => return None,
            };
            // The full parser places a block scalar at its first line of content.
            let (block, at) = self.literal(parent, keep)?;
            return Some(Node {
                value: Value::Scalar {
                    text: Cow::Owned(block),
                    plain: false,
                },
                pos: at,
            });
        }
        plain(text).then(|| scalar(text, at))
    }

    /// The lines of a literal block scalar; `keep`: None clips, Some(false) strips,
    /// Some(true) keeps trailing line breaks.
    fn literal(&mut self, parent: usize, keep: Option<bool>) -> Option<(String, Pos)> {
        let first = self.at;
        // The content indentation is that of the first non-blank line.
        let (offset, indent) = self.raw[first..].iter().enumerate().find_map(|(i, raw)| {
            let rest = raw.trim_start_matches(' ');
            (!rest.is_empty()).then(|| (i, raw.len() - rest.len()))
        })?;
        let at = pos(u32::try_from(first + offset + 1).ok()?, indent)?;
        if indent <= parent {
            return None;
        }
        let mut body = String::new();
        let mut seen_content = false;
        let mut end = self.raw.len();
        for (i, raw) in self.raw[first..].iter().enumerate() {
            let rest = raw.trim_start_matches(' ');
            let spaces = raw.len() - rest.len();
            if rest.is_empty() {
                if spaces > indent {
                    // Spaces beyond the indentation are content; before any content they
                    // are an error the full parser should report.
                    if !seen_content {
                        return None;
                    }
                    body.push_str(&raw[indent..]);
                }
                body.push('\n');
                continue;
            }
            if spaces < indent {
                end = first + i;
                break;
            }
            seen_content = true;
            body.push_str(&raw[indent..]);
            body.push('\n');
        }
        // A comment line right after the block could be read either way: leave it alone.
        if self
            .raw
            .get(end)
            .is_some_and(|r| r.trim_start_matches(' ').starts_with('#'))
        {
            return None;
        }
        let content_end = body.trim_end_matches('\n').len();
        let trailing = body.len() - content_end;
        body.truncate(content_end);
        match keep {
            None => body.push('\n'),
            Some(false) => {}
            Some(true) => body.extend(std::iter::repeat_n('\n', trailing)),
        }
        self.at = end;
        Some((body, at))
    }

    /// The block under `key:` at `indent`: a list at `indent` (indentless) or deeper, or a
    /// mapping deeper. Nothing at all (a null) is left to the full parser.
    fn nested(&mut self, indent: usize, depth: usize) -> Option<Node<'a>> {
        let next = self.peek()?;
        let is_item = next.rest.starts_with("- ");
        let i = next.indent;
        if is_item && i >= indent {
            self.sequence(i, i == indent, depth + 1)
        } else if i > indent {
            self.mapping(i, depth + 1)
        } else {
            None
        }
    }

    /// A block list whose `- ` markers sit at `indent`. The full parser places an
    /// indentless list (`key:` then `- item` at the key's indent) at its first item's
    /// content, and an indented one at its first `-`.
    fn sequence(&mut self, indent: usize, indentless: bool, depth: usize) -> Option<Node<'a>> {
        if depth > MAX_DEPTH {
            return None;
        }
        let mut items = Vec::new();
        let mut start = None;
        while let Some(l) = self.peek() {
            if l.indent != indent || !l.rest.starts_with("- ") {
                if l.indent > indent {
                    return None;
                }
                break;
            }
            let l = self.advance()?;
            let content = l.rest[2..].trim_start_matches(' ');
            let col = Self::column(&l, content);
            start.get_or_insert(pos(l.number, if indentless { col } else { l.indent })?);
            if content.is_empty() || content.starts_with("- ") || content.starts_with('|') {
                return None;
            }
            if entry(content).is_some() {
                // `- key: value`: a mapping whose keys line up with the first one.
                items.push(self.mapping_from(col, Some((l, content)), depth + 1)?);
            } else {
                items.push(self.value(&l, content, indent)?);
            }
        }
        Some(Node {
            value: Value::Seq(items),
            pos: start?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Limits, parse_full};
    use super::*;

    const CANONICAL: &str = "id: CHG-2025-001\ntitle: Rotate TLS certificates, then reload\ndescription: Replace the expiring wildcard certificate (über-wichtig)\nrequester: alice@example.com\nrequest_date: 2025-03-09T08:00:00Z\naffected_systems:\n  - edge-proxy\n  - cdn\ntesting_required: true\nstatus: approved\napprovals:\n- by: em@example.com\n  role: engineering-manager\n  decision: approved\n  at: 2025-01-27T11:00:00Z\n  conditions:\n    - after 5pm\n    - ~\n- by: cm@example.com\n  role: change-manager\nschedule:\n  start: 2025-03-12T10:00:00Z\n  end: 2025-03-12T12:00:00Z\n# a trailing comment\nimplementation:\n  implementer: bob@example.com\n";

    const BLOCKS: &str = "title: 'Release: 0.1'\nq: \"double: quoted\"\nempty: ''\ndescription: |-\n  Line one,\n  # not a comment\n\n    indented more\nplan: |\n  clip\n\n\nkeep: |+\n  kept\n\nlist:\n- 'a: b'\n- c\nlast: x\n";

    /// A file as people write it by hand (the benchmark generator's `--style hand`).
    const FLOW: &str = "# Filed by hand\nid: CHG-2025-003\ntitle: \"Rotate certificates\"\naffected_systems: [edge-proxy, cdn, db-primary]\nrollback_plan: |-\n  Reload the previous certificate\napprovals:\n  - by: em@example.com\n    conditions: [after 5pm, with a second pair of eyes]\n";

    /// The fast path either declines or agrees with the full parser exactly.
    fn agree(text: &str) -> bool {
        match parse(text) {
            None => false,
            Some(fast) => {
                let full = parse_full(text, Limits::default());
                assert_eq!(
                    full,
                    Ok(Some(fast)),
                    "fast and full parsers disagree on:\n{text}"
                );
                true
            }
        }
    }

    #[test]
    fn canonical_files_take_the_fast_path_and_agree() {
        assert!(agree(CANONICAL));
        assert!(agree("a:\n- x\n-   y\nb:\n    - z\nc: d\n"));
        assert!(agree(
            "# only comments first\n\nk: v   \nl:\n   m: n\n   o:\n   - p\n"
        ));
        assert!(agree(BLOCKS), "{BLOCKS}");
        assert!(agree(FLOW), "{FLOW}");
        for text in [
            "a: []\n",
            "a: [ ]\n",
            "a: [x]\n",
            "a: [ x , y ]\n",
            "a: [x,y]\n",
            "a: [~, null, 1, true]\n",
            "- [a, b]\n",
        ] {
            if parse(text).is_some() {
                assert!(agree(text), "{text}");
            }
        }
        let rendered = crate::edit::render_new(&crate::model::ChangeRequest {
            id: Some("CHG-2025-002".parse().unwrap()),
            title: Some("A title".into()),
            affected_systems: vec!["a".into(), "b".into()],
            testing_required: Some(false),
            ..Default::default()
        })
        .unwrap();
        assert!(agree(&rendered), "{rendered}");
    }

    #[test]
    fn anything_unusual_is_declined() {
        for text in [
            "a: 'it''s'\n",
            "a: \"esc\\n\"\n",
            "a: [flow, [nested]]\n",
            "a: {flow: map}\n",
            "a: [x, , y]\n",
            "a: ['q']\n",
            "a: >\n  folded\n",
            "a: |2\n  indicated\n",
            "a: x # trailing comment\n",
            "a: x\na: y\n",
            "a:\nb: c\n",
            "a: &anchor x\n",
            "a: !tag x\n",
            "a:\tx\n",
            "a: x\r\n",
            "---\na: x\n",
            "a: multi\n  line\n",
            "a: b: c\n",
            " a: x\n",
            "- a\n",
            "a:\n  - - nested\n",
            "\"k\": v\n",
        ] {
            assert!(parse(text).is_none(), "accepted {text:?}");
        }
    }

    /// Mutations of a canonical file: every one the fast path accepts must read exactly as
    /// the full parser reads it.
    #[test]
    fn mutations_never_make_the_fast_path_disagree() {
        let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let pieces = [
            " ", "  ", ":", ": ", "#", " #", "-", "- ", "\n", "\n  ", "'", "\"", "[", "]", "{",
            "}", ",", "&", "*", "!", "|", ">", "?", "~", "%", "@", "`", "null", "x", "é", "\t",
        ];
        let (mut accepted, mut total) = (0, 0);
        for round in 0..30_000 {
            let base = [CANONICAL, BLOCKS, FLOW][round % 3];
            let mut text: Vec<char> = base.chars().collect();
            for _ in 0..1 + next() % 3 {
                let at = (next() as usize) % (text.len() + 1);
                match next() % 3 {
                    0 if at < text.len() => {
                        text.remove(at);
                    }
                    _ => {
                        let piece = pieces[(next() as usize) % pieces.len()];
                        for (i, c) in piece.chars().enumerate() {
                            text.insert(at + i, c);
                        }
                    }
                }
            }
            let text: String = text.into_iter().collect();
            total += 1;
            if agree(&text) {
                accepted += 1;
            }
        }
        // The test means something only if many mutants took the fast path.
        assert!(
            accepted > total / 10,
            "only {accepted} of {total} mutants took the fast path"
        );
    }
}
