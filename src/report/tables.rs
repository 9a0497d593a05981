//! CSV and Markdown tables as chg writes them (`chg list`, `chg report`, `chg audit`, the
//! evidence pack): one writer each, so that every export quotes and guards alike.

pub use crate::text::csv_field;

/// CSV as chg writes it (`chg list`, `chg report`, `chg audit`, the evidence pack): RFC 4180
/// by the `csv` crate, `\n` line ends, every field but the header's guarded against
/// spreadsheet formulas as [`csv_field`] guards it.
pub struct Csv(csv::Writer<Vec<u8>>);

impl Csv {
    /// A CSV text with this header line.
    pub fn new(header: &[&str]) -> Csv {
        // Flexible: a row of another length is written as it is, as the hand-made rows
        // were, rather than failing the whole export.
        let mut w = csv::WriterBuilder::new()
            .flexible(true)
            .from_writer(Vec::new());
        // Writing to memory fails only if memory does.
        w.write_record(header).expect("CSV in memory");
        Csv(w)
    }

    /// One row.
    pub fn row<S: AsRef<str>>(&mut self, fields: impl IntoIterator<Item = S>) {
        let guarded: Vec<String> = fields
            .into_iter()
            .map(|f| formula_safe(f.as_ref()).into_owned())
            .collect();
        self.0.write_record(&guarded).expect("CSV in memory");
    }

    /// The text.
    pub fn finish(self) -> String {
        let bytes = self.0.into_inner().unwrap_or_default();
        String::from_utf8(bytes).expect("CSV of UTF-8 fields")
    }
}

/// A value a spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, a tab or
/// a carriage return), prefixed with `'` as OWASP advises, so it is shown as text.
fn formula_safe(s: &str) -> std::borrow::Cow<'_, str> {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{s}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// How a Markdown table's column is aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// `---`
    Left,
    /// `---:` (numbers)
    Right,
}

/// A Markdown table (report, CAB agenda, the evidence pack's pages): a header, its
/// alignment line, then rows. Cells are written as given; [`md_cell`] makes free text one.
pub struct MarkdownTable(String);

impl MarkdownTable {
    /// A table with these columns; a column without a name has a header of one space.
    pub fn new(columns: &[(&str, Align)]) -> MarkdownTable {
        let mut s = String::from("|");
        for (name, _) in columns {
            s.push_str(&if name.is_empty() {
                " |".to_owned()
            } else {
                format!(" {name} |")
            });
        }
        s.push_str("\n|");
        for (_, align) in columns {
            s.push_str(match align {
                Align::Left => " --- |",
                Align::Right => " ---: |",
            });
        }
        s.push('\n');
        MarkdownTable(s)
    }

    /// Left-aligned columns with these names.
    pub fn left(names: &[&str]) -> MarkdownTable {
        let columns: Vec<(&str, Align)> = names.iter().map(|n| (*n, Align::Left)).collect();
        MarkdownTable::new(&columns)
    }

    /// One row.
    pub fn row<S: AsRef<str>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.0.push('|');
        for c in cells {
            self.0.push(' ');
            self.0.push_str(c.as_ref());
            self.0.push_str(" |");
        }
        self.0.push('\n');
    }

    /// The text, ending with a newline.
    pub fn finish(self) -> String {
        self.0
    }
}

/// Free text as one Markdown table cell: `|` escaped, line breaks as spaces.
pub fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {

    /// The csv crate writes what the hand-made fields wrote: the pack's bytes do not move.
    #[test]
    fn csv_rows_are_the_hand_quoted_fields_they_replaced() {
        let fields = [
            "plain",
            "a,b",
            "say \"hi\"",
            "two\nlines",
            "cr\r",
            "=1+1",
            "-1",
            "@x",
            "\tx",
            "",
            "é ünïcode",
            " spaced ",
        ];
        let mut c = super::Csv::new(&["h1", "h2"]);
        c.row(fields);
        let want: Vec<String> = fields.iter().map(|f| super::csv_field(f)).collect();
        assert_eq!(c.finish(), format!("h1,h2\n{}\n", want.join(",")));
    }
}
