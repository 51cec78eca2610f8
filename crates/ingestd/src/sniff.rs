//! CSV dialect and header detection, after DuckDB's sniffer.
//!
//! Every candidate dialect (delimiter `,` `|` `;` tab × quote `"` `'` ×
//! escape: a doubled quote or a backslash) reads the sample strictly — a
//! character right after a closing quote disqualifies it. Of the candidates
//! that read every sampled row with the same number of columns, the one with
//! the most columns wins; ties go to a quote the data actually uses, then to
//! the order above. When none is consistent, the one whose rows mostly agree
//! is taken, so that decoding names the ragged row instead of silently
//! reading one wide column. Options the request gives are not guessed.
//!
//! The header is decided from types, as DuckDB does: the first row is a
//! header when one of its values does not fit its column's type inferred
//! from the other rows; when every column is text (nothing to tell them
//! apart) the first row is taken as the header (see [`is_header`]). Header names are made usable:
//! an empty name becomes `column<i>`, a repeated one (compared without case,
//! as SQL identifiers are) gets `_1`, `_2`, … — DuckDB's rules — and every
//! rename is reported.
//!
//! The same scanner, reading leniently as the decoder does, tells whether
//! the input ended inside a quoted field: a quote that is never closed would
//! otherwise swallow every following row into one value.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::csv::reader::Format as CsvFormat;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::error::IngestError;
use crate::options::{CsvOptions, show_byte};

/// How a CSV body is punctuated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Punct {
    pub delimiter: u8,
    pub quote: u8,
    /// `None`: quotes inside quoted fields are doubled.
    pub escape: Option<u8>,
}

impl Default for Punct {
    fn default() -> Self {
        Self {
            delimiter: b',',
            quote: b'"',
            escape: None,
        }
    }
}

/// What an ingest read a CSV body as: part of the ingest answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CsvReport {
    /// Whether the first row was read as the column names.
    pub header: bool,
    pub delimiter: String,
    pub quote: String,
    /// Equal to `quote` when quotes are escaped by doubling them.
    pub escape: String,
    /// The options that were detected rather than given.
    #[serde(default)]
    pub detected: Vec<String>,
    /// Header names that were changed to be usable as column names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub renamed: Vec<RenamedColumn>,
}

/// A header name that was changed (empty or repeated).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RenamedColumn {
    /// 1-based position of the column.
    pub column: usize,
    pub from: String,
    pub to: String,
}

impl CsvReport {
    pub fn new(p: Punct, header: bool, o: &CsvOptions) -> Self {
        let s = |b: u8| (b as char).to_string();
        let mut detected = Vec::new();
        for (name, given) in [
            ("header", o.header.is_some()),
            ("delimiter", o.delimiter.is_some()),
            ("quote", o.quote.is_some()),
            ("escape", o.escape.is_some()),
        ] {
            if !given {
                detected.push(name.to_string());
            }
        }
        Self {
            header,
            delimiter: s(p.delimiter),
            quote: s(p.quote),
            escape: s(p.escape.unwrap_or(p.quote)),
            detected,
            renamed: Vec::new(),
        }
    }
}

/// The scanner's view of (part of) a CSV body.
#[derive(Debug, Default)]
pub struct Scanned {
    /// Fields in each record read (a record still open where the data stops
    /// counts only at the end of the input).
    pub counts: Vec<usize>,
    /// Whether some field was quoted.
    pub quoted: bool,
    /// The input ended inside a quoted field that opened on this line.
    pub open_quote: Option<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum St {
    StartRecord,
    StartField,
    InField,
    Quoted,
    Escaped,
    QuoteInQuoted,
}

/// Reads records the way csv-core (arrow's CSV reader) does: `\n`, `\r\n`
/// and `\r` end records, blank lines are skipped, a quote only opens a field
/// at its start, doubled quotes and the escape work inside quotes. `strict`
/// refuses anything after a closing quote but a delimiter or a line end (the
/// line of the offence is the error). Stops after `max_records`.
pub fn scan(
    data: &[u8],
    p: Punct,
    strict: bool,
    at_eof: bool,
    max_records: usize,
) -> Result<Scanned, usize> {
    let mut out = Scanned::default();
    let mut st = St::StartRecord;
    let (mut line, mut fields, mut quote_line) = (1usize, 0usize, 0usize);
    let is_end = |b: u8| b == b'\n' || b == b'\r';
    let mut i = 0;
    while i < data.len() && out.counts.len() < max_records {
        let b = data[i];
        let mut end_record = false;
        match st {
            St::StartRecord if is_end(b) => {}
            St::StartRecord => {
                st = St::StartField;
                continue;
            }
            St::StartField | St::InField if b == p.delimiter => {
                fields += 1;
                st = St::StartField;
            }
            St::StartField | St::InField if is_end(b) => end_record = true,
            St::StartField if b == p.quote => {
                out.quoted = true;
                quote_line = line;
                st = St::Quoted;
            }
            St::StartField | St::InField => st = St::InField,
            St::Quoted if Some(b) == p.escape => st = St::Escaped,
            St::Quoted if b == p.quote => st = St::QuoteInQuoted,
            St::Quoted => {}
            St::Escaped => st = St::Quoted,
            St::QuoteInQuoted if b == p.quote => st = St::Quoted,
            St::QuoteInQuoted if b == p.delimiter => {
                fields += 1;
                st = St::StartField;
            }
            St::QuoteInQuoted if is_end(b) => end_record = true,
            St::QuoteInQuoted if strict => return Err(line),
            St::QuoteInQuoted => st = St::InField,
        }
        if end_record {
            out.counts.push(fields + 1);
            fields = 0;
            st = St::StartRecord;
        }
        if b == b'\n' {
            line += 1;
        }
        i += 1;
    }
    if at_eof && i == data.len() && st != St::StartRecord && out.counts.len() < max_records {
        if matches!(st, St::Quoted | St::Escaped) {
            out.open_quote = Some(quote_line);
        }
        out.counts.push(fields + 1);
    }
    Ok(out)
}

/// Fails when `data` (the whole rest of the input from a record boundary)
/// ends inside a quoted field. `line_base`: physical lines before `data`.
pub fn check_closed(data: &[u8], p: Punct, line_base: usize) -> Result<(), IngestError> {
    match scan(data, p, false, true, usize::MAX) {
        Ok(Scanned {
            open_quote: Some(line),
            ..
        }) => Err(IngestError::BadData(format!(
            "CSV line {}: a quoted field opened with {} is never closed",
            line_base + line,
            show_byte(p.quote)
        ))),
        _ => Ok(()),
    }
}

/// One-column CSVs only: csv-core skips blank lines, but there a blank line
/// is a row whose one value is missing (DuckDB reads it as NULL). This
/// rewrites every blank line after the first record to `""` (an empty quoted
/// field, read as null by default) as the bytes stream through, keeping line
/// numbers. State carries across chunks.
pub struct BlankLines {
    p: Punct,
    st: Bl,
    seen_record: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Bl {
    LineStart,
    AfterCr,
    FieldStart,
    Field,
    Quoted,
    Escaped,
    QuoteInQuoted,
}

impl BlankLines {
    pub fn new(p: Punct) -> Self {
        Self {
            p,
            st: Bl::LineStart,
            seen_record: false,
        }
    }

    /// Appends `data`, rewritten, to `out`.
    pub fn apply(&mut self, data: &[u8], out: &mut Vec<u8>) {
        out.reserve(data.len());
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            let end = b == b'\n' || b == b'\r';
            match self.st {
                Bl::LineStart if end => {
                    if self.seen_record {
                        out.extend_from_slice(&[self.p.quote, self.p.quote]);
                    }
                }
                Bl::LineStart => {
                    self.seen_record = true;
                    self.st = Bl::FieldStart;
                    continue;
                }
                Bl::AfterCr if b == b'\n' => {}
                Bl::AfterCr => {
                    self.st = Bl::LineStart;
                    continue;
                }
                Bl::FieldStart if b == self.p.quote => self.st = Bl::Quoted,
                Bl::FieldStart | Bl::Field | Bl::QuoteInQuoted if end => {}
                Bl::FieldStart | Bl::Field | Bl::QuoteInQuoted if b == self.p.delimiter => {
                    self.st = Bl::FieldStart;
                }
                Bl::QuoteInQuoted if b == self.p.quote => self.st = Bl::Quoted,
                Bl::FieldStart | Bl::Field | Bl::QuoteInQuoted => self.st = Bl::Field,
                Bl::Quoted if Some(b) == self.p.escape => self.st = Bl::Escaped,
                Bl::Quoted if b == self.p.quote => self.st = Bl::QuoteInQuoted,
                Bl::Quoted => {}
                Bl::Escaped => self.st = Bl::Quoted,
            }
            if end && !matches!(self.st, Bl::Quoted | Bl::Escaped) {
                self.st = if b == b'\r' {
                    Bl::AfterCr
                } else {
                    Bl::LineStart
                };
            }
            out.push(b);
            i += 1;
        }
    }
}

/// A candidate's reading of the sample, as `punctuation` ranks it.
struct Reading {
    consistent: bool,
    /// Columns when consistent, else rows agreeing with the first.
    score: usize,
    cols: usize,
    quoted: bool,
}

/// How `p` reads the sample; `None` when it cannot (a quoting error, or
/// fewer than two columns, or rows that mostly disagree).
fn reading(sample: &[u8], p: Punct, complete: bool, max_records: usize) -> Option<Reading> {
    let s = scan(sample, p, true, complete, max_records).ok()?;
    let cols = *s.counts.first()?;
    let agree = s.counts.iter().filter(|c| **c == cols).count();
    let consistent = agree == s.counts.len();
    // Mostly consistent wide readings still beat one column.
    if cols < 2 || (!consistent && agree * 2 < s.counts.len()) {
        return None;
    }
    Some(Reading {
        consistent,
        score: if consistent { cols } else { agree },
        cols,
        quoted: s.quoted,
    })
}

/// Ranks quote / escape candidates of one delimiter: consistent, quote used,
/// score, columns.
type QuoteKey = (bool, bool, usize, usize);
/// Ranks delimiters: consistent, score, columns, quote used.
type DelimKey = (bool, usize, usize, bool);

/// Picks the punctuation for `sample` (see the module docs). For each
/// delimiter, a quote the data uses beats one it does not (`"a,b"` read with
/// `'` as the quote has more columns, but wrongly); then the delimiter whose
/// reading is consistent and widest wins.
pub fn punctuation(o: &CsvOptions, sample: &[u8], complete: bool, max_records: usize) -> Punct {
    let delims: Vec<u8> = match o.delimiter {
        Some(d) => vec![d],
        None => vec![b',', b'|', b';', b'\t'],
    };
    let quotes: Vec<u8> = match o.quote {
        Some(q) => vec![q],
        None => vec![b'"', b'\''],
    };
    let mut best: Option<(DelimKey, Punct)> = None;
    for &delimiter in &delims {
        let mut per_delim: Option<(QuoteKey, Reading, Punct)> = None;
        for &quote in quotes.iter().filter(|q| **q != delimiter) {
            let escapes: Vec<Option<u8>> = match o.escape {
                Some(e) if e == quote => vec![None],
                Some(e) => vec![Some(e)],
                None => vec![None, Some(b'\\')],
            };
            for escape in escapes.into_iter().filter(|e| *e != Some(delimiter)) {
                let p = Punct {
                    delimiter,
                    quote,
                    escape,
                };
                let Some(r) = reading(sample, p, complete, max_records) else {
                    continue;
                };
                let key = (r.consistent, r.quoted, r.score, r.cols);
                if per_delim.as_ref().is_none_or(|(k, ..)| key > *k) {
                    per_delim = Some((key, r, p));
                }
            }
        }
        if let Some((_, r, p)) = per_delim {
            let key = (r.consistent, r.score, r.cols, r.quoted);
            if best.as_ref().is_none_or(|(k, _)| key > *k) {
                best = Some((key, p));
            }
        }
    }
    match best {
        Some((_, p)) => p,
        None => {
            let quote = o.quote.unwrap_or(if o.delimiter == Some(b'"') {
                b'\''
            } else {
                b'"'
            });
            Punct {
                delimiter: o.delimiter.unwrap_or(b','),
                quote,
                escape: o.escape.filter(|e| *e != quote),
            }
        }
    }
}

/// The arrow CSV format for `p`.
pub fn arrow_format(p: Punct, header: bool, nulls: &regex::Regex) -> CsvFormat {
    let mut f = CsvFormat::default()
        .with_header(header)
        .with_delimiter(p.delimiter)
        .with_quote(p.quote)
        .with_null_regex(nulls.clone());
    if let Some(e) = p.escape {
        f = f.with_escape(e);
    }
    f
}

/// A csv-crate reader for `p`, reading every record (no header handling).
pub fn csv_reader(p: Punct, data: &[u8]) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(p.delimiter)
        .quote(p.quote)
        .escape(p.escape)
        .from_reader(data)
}

/// The first record of `sample`, as text.
pub fn first_record(p: Punct, sample: &[u8]) -> Option<Vec<String>> {
    let mut rec = csv::ByteRecord::new();
    match csv_reader(p, sample).read_byte_record(&mut rec) {
        Ok(true) => Some(
            rec.iter()
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .collect(),
        ),
        _ => None,
    }
}

/// Whether the first record is a header, by DuckDB's rules (checked against
/// DuckDB 2.0): a first row of only missing values is a header; when every
/// column is text, the first row is a header; otherwise it is one when a
/// value of it does not fit its column's type — and a column with no values
/// at all (null-typed) fits only a missing value. `types`: the columns'
/// types read from the other records (or given).
pub fn is_header(
    first: &[String],
    types: &Schema,
    nulls: &regex::Regex,
    target: Option<&Schema>,
) -> bool {
    if let Some(t) = target {
        let names: Vec<&str> = t.fields().iter().map(|f| f.name().as_str()).collect();
        if names == first.iter().map(String::as_str).collect::<Vec<_>>()
            || names == unique_names(first).0
        {
            return true;
        }
    }
    if first.iter().all(|v| nulls.is_match(v))
        || types
            .fields()
            .iter()
            .all(|f| f.data_type() == &DataType::Utf8)
    {
        return true;
    }
    types.fields().iter().zip(first).any(|(field, value)| {
        !nulls.is_match(value)
            && match field.data_type() {
                DataType::Utf8 => false,
                DataType::Null => true,
                _ => !value_parses(field, value.as_bytes()),
            }
    })
}

/// Column names for a CSV: the header's, made unique and non-empty, or
/// `column0`, `column1`, … (zero-padded to the widest index) without one.
pub fn column_names(first: &[String], header: bool) -> (Vec<String>, Vec<RenamedColumn>) {
    if header {
        let (names, renamed) = unique_names(first);
        return (names, renamed);
    }
    (
        (0..first.len())
            .map(|i| generated(i, first.len()))
            .collect(),
        vec![],
    )
}

fn generated(i: usize, n: usize) -> String {
    let width = n.saturating_sub(1).to_string().len();
    format!("column{i:0width$}")
}

/// DuckDB's renaming: empty → `column<i>`; a name already taken (ignoring
/// case) gets `_<n>`, `n` counting the earlier uses of that name, and so on
/// until it is free: `a,a,A,a_1` → `a, a_1, A_2, a_1_1`.
pub fn unique_names(raw: &[String]) -> (Vec<String>, Vec<RenamedColumn>) {
    let mut uses: HashMap<String, usize> = HashMap::new();
    let mut names = Vec::with_capacity(raw.len());
    let mut renamed = Vec::new();
    for (i, name) in raw.iter().enumerate() {
        let mut candidate = if name.is_empty() {
            generated(i, raw.len())
        } else {
            name.clone()
        };
        while let Some(n) = uses.get_mut(&candidate.to_lowercase()) {
            *n += 1;
            candidate = format!("{candidate}_{n}");
        }
        uses.insert(candidate.to_lowercase(), 0);
        if &candidate != name {
            renamed.push(RenamedColumn {
                column: i + 1,
                from: name.clone(),
                to: candidate.clone(),
            });
        }
        names.push(candidate);
    }
    (names, renamed)
}

/// `schema` with its fields renamed to `names`, and a column with no values
/// in the sample typed as text, as DuckDB does (a null-typed column would
/// read every later value as null).
pub fn rename(schema: &Schema, names: &[String]) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .zip(names)
        .map(|(f, n)| {
            let f = f.as_ref().clone().with_name(n);
            if f.data_type().is_null() {
                f.with_data_type(DataType::Utf8)
            } else {
                f
            }
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// Whether one CSV field parses as `field`'s type, decided by arrow-csv itself.
pub fn value_parses(field: &Field, raw: &[u8]) -> bool {
    let schema = Arc::new(Schema::new(vec![field.clone().with_nullable(true)]));
    let mut line = Vec::with_capacity(raw.len() + 3);
    line.push(b'"');
    for b in raw {
        if *b == b'"' {
            line.push(b'"');
        }
        line.push(*b);
    }
    line.extend_from_slice(b"\"\n");
    let mut d = arrow::csv::ReaderBuilder::new(schema)
        .with_header(false)
        .build_decoder();
    d.decode(&line).is_ok() && d.flush().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(data: &[u8], p: Punct, eof: bool) -> Vec<usize> {
        scan(data, p, false, eof, usize::MAX).unwrap().counts
    }

    #[test]
    fn scans_like_csv_core() {
        let p = Punct::default();
        assert_eq!(counts(b"a,b\n1,2", p, true), vec![2, 2]);
        assert_eq!(counts(b"a,b\n1,2", p, false), vec![2]);
        assert_eq!(counts(b"a,b\r\n\r\n1,2\r", p, true), vec![2, 2]);
        assert_eq!(counts(b"a,b\r1,\"x\ny\"\r", p, true), vec![2, 2]);
        assert_eq!(counts(b"\"a\"\"b\",c\n", p, true), vec![2]);
        let s = scan(b"a,b\n1,\"open\n2,3\n", p, false, true, usize::MAX).unwrap();
        assert_eq!(s.open_quote, Some(2));
        assert_eq!(scan(b"\"a\"x,b\n", p, true, true, 10).unwrap_err(), 1);
        let bs = Punct {
            escape: Some(b'\\'),
            ..p
        };
        assert_eq!(counts(b"\"a\\\"b\",c\n", bs, true), vec![2]);
        assert!(check_closed(b"a\n\"x\"\n", p, 0).is_ok());
        let e = check_closed(b"a\n1\n\"x\n", p, 10).unwrap_err().to_string();
        assert!(e.contains("CSV line 13"), "{e}");
    }

    #[test]
    fn picks_the_consistent_widest_dialect() {
        let o = CsvOptions::default();
        let p = |s: &[u8]| punctuation(&o, s, true, 100);
        assert_eq!(p(b"a;b;c\n1;2,5;3\n").delimiter, b';');
        assert_eq!(p(b"a|b\n1|2\n").delimiter, b'|');
        assert_eq!(p(b"a\tb\n1\t2\n").delimiter, b'\t');
        assert_eq!(p(b"a,b\n1,2\n").delimiter, b',');
        assert_eq!(p(b"just one column\n").delimiter, b',');
        let q = p(b"a,b\n'x,y',2\n");
        assert_eq!((q.delimiter, q.quote), (b',', b'\''));
        let e = p(b"a,b\n\"say \\\"hi\\\"\",2\n");
        assert_eq!(e.escape, Some(b'\\'));
        assert_eq!(p(b"a,b\n\"say \"\"hi\"\"\",2\n").escape, None);
        // game.csv: with `'` as the quote the commas in `","` split (7
        // columns, consistently); the quote the data uses wins.
        let game = p(b"hello,\",\",\" \",world,1,\"!\"\nhello,\",\",\" \",world,1,\"!\"\n");
        assert_eq!((game.delimiter, game.quote), (b',', b'"'));
        // One ragged row among many keeps the comma (decoding reports it).
        let mut ragged = b"a,b\n".to_vec();
        for _ in 0..20 {
            ragged.extend_from_slice(b"1,2\n");
        }
        ragged.extend_from_slice(b"3\n");
        assert_eq!(p(&ragged).delimiter, b',');
    }

    #[test]
    fn blank_lines_of_one_column_files_are_rows() {
        let run = |input: &[u8], split: usize| {
            let mut f = BlankLines::new(Punct::default());
            let mut out = vec![];
            f.apply(&input[..split], &mut out);
            f.apply(&input[split..], &mut out);
            String::from_utf8(out).unwrap()
        };
        let cases: [(&[u8], &str); 5] = [
            (b"x\n1\n\n\n2\n", "x\n1\n\"\"\n\"\"\n2\n"),
            (
                b"x\r\n1\r\n\r\n2\r\n\r\n",
                "x\r\n1\r\n\"\"\r\n2\r\n\"\"\r\n",
            ),
            (b"\n\nx\n\"a\n\nb\"\n\n", "\n\nx\n\"a\n\nb\"\n\"\"\n"),
            (b"x\r1\r\r2", "x\r1\r\"\"\r2"),
            (b"x\n1\n2", "x\n1\n2"),
        ];
        for (input, want) in cases {
            for split in 0..=input.len() {
                assert_eq!(run(input, split), want, "{input:?} split at {split}");
            }
        }
    }

    #[test]
    fn names_like_duckdb() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        // What DuckDB 2.0 names `a,a,,A,a_1,a`.
        let (names, renamed) = unique_names(&s(&["a", "a", "", "A", "a_1", "a"]));
        assert_eq!(names, s(&["a", "a_1", "column2", "A_2", "a_1_1", "a_3"]));
        assert_eq!(renamed.len(), 5);
        assert_eq!(
            renamed[1],
            RenamedColumn {
                column: 3,
                from: String::new(),
                to: "column2".into()
            }
        );
        assert_eq!(column_names(&s(&["x"; 11]), false).0[10], "column10");
        assert_eq!(column_names(&s(&["x"; 11]), false).0[0], "column00");
    }
}
