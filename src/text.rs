//! Text that leaves chg for a terminal, a CI log or a spreadsheet, made harmless there.
//!
//! Change files, file names, git identities and commit messages are other people's input.
//! Printed raw, an escape sequence rewrites the terminal, a `\r` hides what came before it,
//! a bidirectional override reorders what a reviewer reads, a line that starts with `::`
//! is a workflow command to GitHub Actions, and a CSV cell that starts with `=` is a formula
//! to a spreadsheet. Every text output goes through these functions.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a terminal as it is: C0 controls other than newline and tab
/// (and a carriage return ending a line, as in CRLF formats), DEL, C1 controls, and the
/// Unicode bidirectional embeddings, overrides and isolates.
fn unsafe_char(c: char, next: Option<char>) -> bool {
    (c.is_control() && c != '\n' && c != '\t' && !(c == '\r' && next == Some('\n')))
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// Each character of `text` with whether it must be escaped (a `\r` is judged by what
/// follows it).
fn judged(text: &str) -> impl Iterator<Item = (char, bool)> + '_ {
    let mut chars = text.chars().peekable();
    std::iter::from_fn(move || {
        let c = chars.next()?;
        Some((c, unsafe_char(c, chars.peek().copied())))
    })
}

fn any_unsafe(text: &str) -> bool {
    judged(text).any(|(_, bad)| bad)
}

fn push_escaped(out: &mut String, text: &str) {
    for (c, bad) in judged(text) {
        if bad {
            escape(out, c);
        } else {
            out.push(c);
        }
    }
}

/// `text` with only its unsafe characters escaped: for output that is itself made of CI
/// workflow commands (`chg validate --format github`) and escapes its data by their rules.
pub fn controls_escaped(text: &str) -> Cow<'_, str> {
    if !any_unsafe(text) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    push_escaped(&mut out, text);
    Cow::Owned(out)
}

fn escape(out: &mut String, c: char) {
    if (c as u32) < 0x100 {
        let _ = write!(out, "\\x{:02x}", c as u32);
    } else {
        let _ = write!(out, "\\u{{{:x}}}", c as u32);
    }
}

/// `text` safe for a terminal and a CI log: unsafe characters shown escaped (`\x1b`), and
/// a line that would start with `::` (after blanks) begun with `\x3a:` instead, so CI
/// runners do not read it as a workflow command. Newlines and tabs are kept.
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    let command_line = |l: &str| l.trim_start().starts_with("::");
    if !any_unsafe(text) && !text.split('\n').any(command_line) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let mut rest = line;
        if command_line(line) {
            let blanks = line.len() - line.trim_start().len();
            out.push_str(&line[..blanks]);
            out.push_str("\\x3a");
            rest = &line[blanks + 1..];
        }
        push_escaped(&mut out, rest);
    }
    Cow::Owned(out)
}

/// An identifier such as an email with every character outside printable ASCII escaped
/// (`\u{430}`), so that a look-alike (a Cyrillic `а` for a Latin `a`) shows as what it is.
pub fn ascii_escaped(text: &str) -> Cow<'_, str> {
    if text.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_ascii_graphic() || c == ' ' {
            out.push(c);
        } else {
            escape(&mut out, c);
        }
    }
    Cow::Owned(out)
}

/// `text` on one line, for line-oriented records (`file:line:column: rule: message`): a
/// newline or tab shown as `\n` or `\t`, and [`terminal_safe`].
pub fn one_line(text: &str) -> Cow<'_, str> {
    if !text.contains(['\n', '\t']) {
        return terminal_safe(text);
    }
    let flat = text.replace('\n', "\\n").replace('\t', "\\t");
    Cow::Owned(terminal_safe(&flat).into_owned())
}

/// One CSV field (RFC 4180), quoted when it must be; a value a spreadsheet would run as a
/// formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage return) is prefixed with
/// `'`, as OWASP advises, so it is shown as text.
pub fn csv_field(s: &str) -> String {
    let formula = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let s: Cow<'_, str> = if formula {
        Cow::Owned(format!("'{s}"))
    } else {
        Cow::Borrowed(s)
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.into_owned()
    }
}

/// Bytes in lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// The SHA-256 of `bytes`, in lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

/// A length of time as people read it in a finding: `3d 4h`, `2h 5m`, `45s`.
pub fn duration_words(secs: i64) -> String {
    let s = secs.unsigned_abs();
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_bidi_controls_are_shown_not_obeyed() {
        assert_eq!(terminal_safe("plain\ttext\n"), "plain\ttext\n");
        assert_eq!(terminal_safe("a\x1b[2Jb"), "a\\x1b[2Jb");
        assert_eq!(terminal_safe("ok\rforged"), "ok\\x0dforged");
        assert_eq!(terminal_safe("x\u{202e}y\u{9b}"), "x\\u{202e}y\\x9b");
        assert_eq!(terminal_safe("BEGIN:VCALENDAR\r\n"), "BEGIN:VCALENDAR\r\n");
    }

    #[test]
    fn ci_workflow_commands_are_defused_on_every_line() {
        assert_eq!(
            terminal_safe("title\n  ::set-env name=X::1\n::error::x"),
            "title\n  \\x3a:set-env name=X::1\n\\x3a:error::x"
        );
        assert_eq!(terminal_safe("a :: b"), "a :: b");
    }

    #[test]
    fn one_line_keeps_records_on_one_line() {
        assert_eq!(one_line("a\nb\tc"), "a\\nb\\tc");
        assert_eq!(one_line("x\n::error::y"), "x\\n::error::y");
    }

    #[test]
    fn csv_formulas_are_text_and_quoting_is_rfc4180() {
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("-1+2"), "'-1+2");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("2025-03-01T00:00:00Z"), "2025-03-01T00:00:00Z");
    }
}
