//! Tables as gh and jj print them: at a terminal, borderless columns aligned and fitted to
//! its width, the status coloured when colour is on; piped, tab-separated rows under one
//! header line, so `chg list | awk -F'\t' '{print $1}'` and `grep` see whole rows (coloured
//! only when asked: `--color always`, CLICOLOR_FORCE).
//!
//! Fitting gives up the least of what people read the table for: first what each table
//! says it can spare (a time's "(3d ago)" note, then whole optional columns), then the free
//! text (a title, a verdict) is cut with `…`. Ids, emails, roles, statuses and times are
//! never cut: a line that cannot hold them is let run past the width rather than lie.

use unicode_width::UnicodeWidthStr;

/// Where a table goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A terminal this many columns wide, with or without colour.
    Terminal { width: usize, color: bool },
    /// A pipe or a file: tab-separated values, coloured only when forced.
    Pipe { color: bool },
}

/// `--color`: when to colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorWhen {
    /// At a terminal (or wherever, with CLICOLOR_FORCE set), unless NO_COLOR is set.
    #[default]
    Auto,
    /// Always, piped too, NO_COLOR or not: a flag given for this run outranks the
    /// environment (as the NO_COLOR convention, cargo and ripgrep have it).
    Always,
    /// Never.
    Never,
}

/// The terminal's width: the window's, else COLUMNS, else 80.
pub fn terminal_width() -> usize {
    #[cfg(unix)]
    {
        // SAFETY: TIOCGWINSZ fills the winsize we own; a failure leaves it zeroed.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
        if ok && ws.ws_col > 0 {
            return usize::from(ws.ws_col);
        }
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .filter(|w: &usize| *w > 0)
        .unwrap_or(80)
}

/// A table: a header, rows of cells, what may give way to fit a terminal, the column
/// coloured as a status.
#[derive(Debug, Clone)]
pub struct Grid {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    /// Columns that may be cut with `…`, the first given way first.
    flex: Vec<usize>,
    /// What is left out at a terminal too narrow for the table even with every flexible
    /// column cut, the first given first.
    spare: Vec<Spare>,
    status: Option<usize>,
}

/// Something a table can do without at a narrow terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spare {
    /// A whole column.
    Column(usize),
    /// The ` (…)` note that ends the cells of a column.
    Note(usize),
}

/// How a table fits a width: the columns shown, each one's width, the columns whose
/// notes are left out.
struct Layout {
    shown: Vec<usize>,
    widths: Vec<usize>,
    noteless: Vec<usize>,
}

/// Between columns.
const GAP: usize = 2;
/// The narrowest a giving-way column gets.
const MIN_FLEX: usize = 8;
/// What the main text column keeps before optional columns are left out for it.
const READABLE: usize = 24;

impl Grid {
    /// A table with this header.
    pub fn new(header: &[&str]) -> Grid {
        Grid {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
            flex: Vec::new(),
            spare: Vec::new(),
            status: None,
        }
    }

    /// Column `col` (a title, a message) may be cut with `…` to fit the terminal; the
    /// widest such column gives way first.
    pub fn flex(mut self, col: usize) -> Grid {
        self.flex.push(col);
        self
    }

    /// Column `col` is left out at a terminal too narrow for the table even with every
    /// flexible column cut (piped rows keep every column). Spares (this and [`Grid::note`])
    /// go in the order they are declared.
    pub fn optional(mut self, col: usize) -> Grid {
        self.spare.push(Spare::Column(col));
        self
    }

    /// The cells of column `col` may end in a note in parentheses (`2025-03-10 (2d ago)`),
    /// left out like an optional column: what the note says can be worked out from the
    /// rest of the cell.
    pub fn note(mut self, col: usize) -> Grid {
        self.spare.push(Spare::Note(col));
        self
    }

    /// Column `col` holds statuses, coloured at a terminal with colour on.
    pub fn status(mut self, col: usize) -> Grid {
        self.status = Some(col);
        self
    }

    /// Adds a row; cells are made one line and safe for a terminal.
    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(
            row.into_iter()
                .map(|c| chg::text::one_line(&chg::text::terminal_safe(&c)).into_owned())
                .collect(),
        );
    }

    /// The rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether column `col` is shown at `target` (piped rows keep every column).
    pub fn shows(&self, col: usize, target: Target) -> bool {
        match target {
            Target::Pipe { .. } => true,
            Target::Terminal { width, .. } => self.layout(width).shown.contains(&col),
        }
    }

    /// The table as text for `target`.
    pub fn render(&self, target: Target) -> String {
        match target {
            Target::Pipe { color } => self.tsv(color),
            Target::Terminal { width, color } => self.aligned(width, color),
        }
    }

    fn paint(&self, text: String, i: usize, header: bool, color: bool) -> String {
        match (color, header, self.status) {
            (true, true, _) => format!("\x1b[1m{text}\x1b[0m"),
            (true, false, Some(col)) if col == i => paint_status(&text),
            _ => text,
        }
    }

    fn tsv(&self, color: bool) -> String {
        let mut s = String::new();
        for (r, row) in std::iter::once(&self.header).chain(&self.rows).enumerate() {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(i, c)| self.paint(c.replace('\t', " "), i, r == 0, color))
                .collect();
            s.push_str(&cells.join("\t"));
            s.push('\n');
        }
        s
    }

    /// The cell as shown: without its note when the column's notes are left out.
    fn cell<'a>(&self, row: &'a [String], i: usize, noteless: &[usize]) -> &'a str {
        let text = row.get(i).map(String::as_str).unwrap_or("");
        if noteless.contains(&i) {
            without_note(text)
        } else {
            text
        }
    }

    fn layout(&self, width: usize) -> Layout {
        let n = self.header.len();
        let natural = |noteless: &[usize]| {
            let mut widths: Vec<usize> = self.header.iter().map(|h| h.width()).collect();
            for row in &self.rows {
                for (i, w) in widths.iter_mut().enumerate() {
                    *w = (*w).max(self.cell(row, i, noteless).width());
                }
            }
            widths
        };
        let total = |widths: &[usize], shown: &[usize]| {
            shown.iter().map(|&i| widths[i]).sum::<usize>() + GAP * shown.len().saturating_sub(1)
        };
        // The main text (the first flexible column) keeps room to be read before anything
        // spare is left out for it; the others may go down to a few letters.
        let least = |widths: &[usize], shown: &[usize]| {
            let floors: Vec<usize> = (0..n)
                .map(|i| match self.flex.iter().position(|&f| f == i) {
                    Some(0) => READABLE.min(widths[i]),
                    Some(_) => MIN_FLEX.min(widths[i]),
                    None => widths[i],
                })
                .collect();
            total(&floors, shown)
        };
        let mut shown: Vec<usize> = (0..n).collect();
        let mut noteless = Vec::new();
        // The fewest spares given up so that cutting the flexible columns can fit.
        for spare in &self.spare {
            if least(&natural(&noteless), &shown) <= width {
                break;
            }
            match *spare {
                Spare::Column(c) => shown.retain(|&i| i != c),
                Spare::Note(c) => noteless.push(c),
            }
        }
        let mut widths = natural(&noteless);
        // Then the widest flexible column gives way, a column at a time.
        while total(&widths, &shown) > width {
            let Some(&widest) = self
                .flex
                .iter()
                .filter(|i| shown.contains(i) && widths[**i] > MIN_FLEX)
                .max_by_key(|i| widths[**i])
            else {
                break;
            };
            widths[widest] -= 1;
        }
        Layout {
            shown,
            widths,
            noteless,
        }
    }

    fn aligned(&self, width: usize, color: bool) -> String {
        let Layout {
            shown,
            widths,
            noteless,
        } = self.layout(width);
        let mut s = String::new();
        let line = |s: &mut String, row: &[String], header: bool| {
            let last = shown.last().copied().unwrap_or(0);
            for &i in &shown {
                let text = cut(self.cell(row, i, &noteless), widths[i]);
                let pad = widths[i].saturating_sub(text.width());
                s.push_str(&self.paint(text, i, header, color));
                if i != last {
                    s.push_str(&" ".repeat(pad + GAP));
                }
            }
            s.push('\n');
        };
        line(&mut s, &self.header, true);
        for row in &self.rows {
            line(&mut s, row, false);
        }
        s
    }
}

/// `text` without the ` (…)` note it ends with, if any.
fn without_note(text: &str) -> &str {
    match text.rfind(" (") {
        Some(at) if text.ends_with(')') => &text[..at],
        _ => text,
    }
}

/// `text` cut to `width` columns, with `…` where it was cut.
fn cut(text: &str, width: usize) -> String {
    if text.width() <= width {
        return text.to_owned();
    }
    let mut out = String::new();
    let mut used = 0;
    for ch in text.chars() {
        let w = unicode_width::UnicodeWidthChar::width(ch).unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        out.push(ch);
        used += w;
    }
    out.push('…');
    out
}

/// A status in its colour: where it is in the life cycle at a glance.
fn paint_status(status: &str) -> String {
    let code = match status {
        "approved" | "closed" => "32",
        "pending_approval" | "draft" => "33",
        "implementing" => "36",
        "rejected" | "cancelled" => "31",
        _ => return status.to_owned(),
    };
    format!("\x1b[{code}m{status}\x1b[0m")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Grid {
        let mut g = Grid::new(&["ID", "Status", "Requested", "Title"])
            .flex(3)
            .status(1);
        g.push(vec![
            "CHG-2026-001".into(),
            "pending_approval".into(),
            "2026-11-28".into(),
            "Rotate the wildcard TLS certificate on every edge proxy before it expires in ten days"
                .into(),
        ]);
        g.push(vec![
            "CHG-2026-1024".into(),
            "closed".into(),
            "2026-11-30".into(),
            "Title with a\ttab and\nnewline".into(),
        ]);
        g
    }

    #[test]
    fn at_80_columns_only_the_title_gives_way() {
        let text = sample().render(Target::Terminal {
            width: 80,
            color: false,
        });
        insta::assert_snapshot!(text);
        assert!(text.lines().all(|l| l.width() <= 80), "{text}");
        assert!(text.contains("CHG-2026-1024") && text.contains("2026-11-30"));
    }

    #[test]
    fn at_200_columns_nothing_is_cut() {
        let text = sample().render(Target::Terminal {
            width: 200,
            color: false,
        });
        insta::assert_snapshot!(text);
        assert!(!text.contains('…'));
    }

    #[test]
    fn colour_marks_the_header_and_the_status() {
        let text = sample().render(Target::Terminal {
            width: 200,
            color: true,
        });
        insta::assert_snapshot!(text);
        assert!(text.contains("\x1b[33mpending_approval\x1b[0m"), "{text:?}");
    }

    #[test]
    fn a_narrow_terminal_leaves_out_optional_columns_before_overflowing() {
        let mut g = Grid::new(&["ID", "STATUS", "TYPE", "WHEN", "TITLE"])
            .flex(4)
            .optional(2);
        g.push(vec![
            "CHG-2026-001".into(),
            "pending_approval".into(),
            "infrastructure".into(),
            "2026-11-28 (3d ago)".into(),
            "Rotate the wildcard TLS certificate".into(),
        ]);
        let text = g.render(Target::Terminal {
            width: 70,
            color: false,
        });
        insta::assert_snapshot!(text);
        assert!(!text.contains("infrastructure") && text.contains("2026-11-28 (3d ago)"));
        assert!(text.lines().all(|l| l.width() <= 70), "{text}");
    }

    #[test]
    fn notes_go_before_facts_and_come_back_when_there_is_room() {
        let mut g = Grid::new(&["WHEN", "WHO", "ROLE"]).note(0);
        g.push(vec![
            "2026-11-28 10:00 (3d ago)".into(),
            "someone.long@example.com".into(),
            "engineering-manager".into(),
        ]);
        let narrow = g.render(Target::Terminal {
            width: 70,
            color: false,
        });
        assert!(
            narrow.contains("2026-11-28 10:00  someone.long@example.com  engineering-manager"),
            "{narrow}"
        );
        let wide = g.render(Target::Terminal {
            width: 200,
            color: false,
        });
        assert!(wide.contains("(3d ago)"), "{wide}");
    }

    #[test]
    fn piped_rows_are_coloured_only_when_asked() {
        let text = sample().render(Target::Pipe { color: true });
        assert!(
            text.contains("\t\x1b[33mpending_approval\x1b[0m\t"),
            "{text:?}"
        );
        assert!(
            !sample()
                .render(Target::Pipe { color: false })
                .contains('\x1b')
        );
    }

    #[test]
    fn piped_rows_are_tab_separated_under_one_header() {
        let text = sample().render(Target::Pipe { color: false });
        insta::assert_snapshot!(text);
        assert_eq!(text.lines().count(), 3);
        assert!(text.lines().all(|l| l.split('\t').count() == 4), "{text}");
    }
}
