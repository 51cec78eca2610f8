//! What an ingest request asks for: format, mode and format options, parsed
//! from the query string (and `Content-Type`) with clear errors.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::error::IngestError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Ndjson,
    Parquet,
    Arrow,
}

impl Format {
    pub fn parse(s: &str) -> Result<Self, IngestError> {
        match s.to_ascii_lowercase().as_str() {
            "csv" => Ok(Self::Csv),
            "ndjson" | "jsonl" | "json" => Ok(Self::Ndjson),
            "parquet" => Ok(Self::Parquet),
            "arrow" | "ipc" | "arrows" => Ok(Self::Arrow),
            other => Err(IngestError::InvalidOption(format!(
                "unknown format {other:?}; expected csv, ndjson, parquet or arrow"
            ))),
        }
    }

    /// The format a `Content-Type` names, if any.
    /// The name `parse` reads back.
    pub fn name(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Ndjson => "ndjson",
            Self::Parquet => "parquet",
            Self::Arrow => "arrow",
        }
    }

    pub fn from_content_type(ct: &str) -> Option<Self> {
        let mime = ct.split(';').next()?.trim().to_ascii_lowercase();
        match mime.as_str() {
            "text/csv" | "application/csv" => Some(Self::Csv),
            "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/x-jsonlines"
            | "application/json" => Some(Self::Ndjson),
            "application/vnd.apache.parquet" | "application/x-parquet" | "application/parquet" => {
                Some(Self::Parquet)
            }
            "application/vnd.apache.arrow.stream"
            | "application/vnd.apache.arrow.file"
            | "application/x-arrow" => Some(Self::Arrow),
            _ => None,
        }
    }

    /// From file extension, for the CLI.
    pub fn from_extension(path: &str) -> Option<Self> {
        let ext = path.rsplit('.').next()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" | "tsv" => Some(Self::Csv),
            "ndjson" | "jsonl" | "json" => Some(Self::Ndjson),
            "parquet" | "pq" => Some(Self::Parquet),
            "arrow" | "arrows" | "ipc" | "feather" => Some(Self::Arrow),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Append,
    Replace,
}

impl Mode {
    /// The name `parse` reads back.
    pub fn name(self) -> &'static str {
        match self {
            Self::Append => "append",
            Self::Replace => "replace",
        }
    }

    pub fn parse(s: &str) -> Result<Self, IngestError> {
        match s.to_ascii_lowercase().as_str() {
            "append" => Ok(Self::Append),
            "replace" | "overwrite" => Ok(Self::Replace),
            other => Err(IngestError::InvalidOption(format!(
                "unknown mode {other:?}; expected append or replace"
            ))),
        }
    }
}

/// CSV reading options. `None` means "detect it from the data" (see
/// [`crate::sniff`]).
#[derive(Debug, Clone)]
pub struct CsvOptions {
    pub header: Option<bool>,
    pub delimiter: Option<u8>,
    pub quote: Option<u8>,
    /// The character that escapes a quote inside a quoted field; the quote
    /// itself means quotes are doubled (`""`), the CSV standard.
    pub escape: Option<u8>,
    /// Field values read as null (exact match). Default: the empty string.
    pub nulls: Vec<String>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            header: None,
            delimiter: None,
            quote: None,
            escape: None,
            nulls: vec![String::new()],
        }
    }
}

impl CsvOptions {
    /// Refuses characters a CSV reader cannot work with: a line end as a
    /// delimiter, quote or escape (the row would be split or dropped), and
    /// the same character in two roles.
    pub fn validate(&self) -> Result<(), IngestError> {
        let roles = [
            ("delimiter", self.delimiter),
            ("quote", self.quote),
            ("escape", self.escape),
        ];
        for (name, c) in roles {
            if let Some(c) = c
                && matches!(c, b'\n' | b'\r')
            {
                return Err(IngestError::InvalidOption(format!(
                    "{name} cannot be a line end ({})",
                    show_byte(c)
                )));
            }
        }
        for (a, b) in [(0, 1), (0, 2)] {
            if let ((an, Some(x)), (bn, Some(y))) = (roles[a], roles[b])
                && x == y
            {
                return Err(IngestError::InvalidOption(format!(
                    "{an} and {bn} cannot both be {}",
                    show_byte(x)
                )));
            }
        }
        Ok(())
    }
}

/// A byte as a person would write it in an option.
pub fn show_byte(b: u8) -> String {
    match b {
        b'\n' => "\"\\n\"".to_string(),
        b'\r' => "\"\\r\"".to_string(),
        b'\t' => "\"\\t\"".to_string(),
        other => format!("{:?}", other as char),
    }
}

/// Everything an ingest needs besides the body.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub format: Format,
    pub mode: Mode,
    pub csv: CsvOptions,
    /// Rows sampled to infer a schema (CSV, NDJSON).
    pub infer_rows: usize,
    /// An explicit schema: skips inference.
    pub schema: Option<SchemaRef>,
    /// `schema=merge`: the ingest may add columns to the dataset (and its
    /// input is widened to the dataset's types); see [`crate::evolve`].
    pub merge: bool,
}

impl IngestOptions {
    pub fn new(format: Format) -> Self {
        Self {
            format,
            mode: Mode::Append,
            csv: CsvOptions::default(),
            infer_rows: 1000,
            schema: None,
            merge: false,
        }
    }

    /// Parses query parameters. `params` may repeat keys (`null=NA&null=`).
    pub fn from_query(
        params: &[(String, String)],
        content_type: Option<&str>,
    ) -> Result<Self, IngestError> {
        let mut map: HashMap<&str, Vec<&str>> = HashMap::new();
        for (k, v) in params {
            map.entry(k.as_str()).or_default().push(v.as_str());
        }
        let one = |k: &str| map.get(k).and_then(|v| v.last().copied());
        let format = match one("format") {
            Some(f) => Format::parse(f)?,
            None => content_type.and_then(Format::from_content_type).ok_or_else(|| {
                IngestError::InvalidOption(
                    "say which format the body is in: ?format=csv|ndjson|parquet|arrow or a Content-Type such as text/csv".to_string(),
                )
            })?,
        };
        let mut o = IngestOptions::new(format);
        if let Some(m) = one("mode") {
            o.mode = Mode::parse(m)?;
        }
        if let Some(h) = one("header") {
            o.csv.header = Some(parse_bool("header", h)?);
        }
        if let Some(d) = one("delimiter") {
            o.csv.delimiter = Some(single_byte("delimiter", d)?);
        }
        if let Some(q) = one("quote") {
            o.csv.quote = Some(single_byte("quote", q)?);
        }
        if let Some(e) = one("escape") {
            o.csv.escape = Some(single_byte("escape", e)?);
        }
        o.csv.validate()?;
        if let Some(ns) = map.get("null") {
            o.csv.nulls = ns.iter().map(|s| s.to_string()).collect();
        }
        if let Some(n) = one("infer_rows") {
            o.infer_rows = n.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                IngestError::InvalidOption(format!(
                    "infer_rows must be a positive number, got {n:?}"
                ))
            })?;
        }
        match one("schema") {
            // Not a schema (one has `name:type` pairs): schema evolution.
            Some(s) if s.trim().eq_ignore_ascii_case("merge") => o.merge = true,
            Some(s) => o.schema = Some(parse_schema(s)?),
            None => {}
        }
        let known = [
            "format",
            "mode",
            "header",
            "delimiter",
            "quote",
            "escape",
            "null",
            "infer_rows",
            "schema",
        ];
        if let Some(k) = map.keys().find(|k| !known.contains(k)) {
            return Err(IngestError::InvalidOption(format!(
                "unknown parameter {k:?}; known: {}",
                known.join(", ")
            )));
        }
        Ok(o)
    }
}

impl IngestOptions {
    /// The query parameters [`IngestOptions::from_query`] reads back into
    /// these options (what [`crate::IngestClient`] sends). Options the query
    /// string cannot say — no null strings at all, a schema type or column
    /// name outside `schema=`'s grammar — are an `InvalidOption`.
    pub fn to_query(&self) -> Result<Vec<(String, String)>, IngestError> {
        let mut q = vec![
            ("format".to_string(), self.format.name().to_string()),
            ("mode".to_string(), self.mode.name().to_string()),
            ("infer_rows".to_string(), self.infer_rows.to_string()),
        ];
        let c = &self.csv;
        if let Some(h) = c.header {
            q.push(("header".into(), h.to_string()));
        }
        for (name, b) in [
            ("delimiter", c.delimiter),
            ("quote", c.quote),
            ("escape", c.escape),
        ] {
            if let Some(b) = b {
                q.push((name.into(), (b as char).to_string()));
            }
        }
        if c.nulls.is_empty() {
            return Err(IngestError::InvalidOption(
                "at least one null string is needed (the empty string by default)".into(),
            ));
        }
        if c.nulls != CsvOptions::default().nulls {
            q.extend(c.nulls.iter().map(|n| ("null".to_string(), n.clone())));
        }
        match (&self.schema, self.merge) {
            (Some(_), true) => {
                return Err(IngestError::InvalidOption(
                    "schema=merge and an explicit schema cannot be combined".into(),
                ));
            }
            (Some(schema), false) => q.push(("schema".into(), schema_to_string(schema)?)),
            (None, true) => q.push(("schema".into(), "merge".into())),
            (None, false) => {}
        }
        Ok(q)
    }
}

/// `schema=`'s text for `schema`, which [`parse_schema`] reads back.
pub fn schema_to_string(schema: &Schema) -> Result<String, IngestError> {
    let mut parts = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        let ty = match f.data_type() {
            DataType::Boolean => "bool",
            DataType::Int8 => "int8",
            DataType::Int16 => "int16",
            DataType::Int32 => "int32",
            DataType::Int64 => "int64",
            DataType::UInt8 => "uint8",
            DataType::UInt16 => "uint16",
            DataType::UInt32 => "uint32",
            DataType::UInt64 => "uint64",
            DataType::Float32 => "float32",
            DataType::Float64 => "float64",
            DataType::Utf8 => "utf8",
            DataType::Date32 => "date",
            DataType::Timestamp(TimeUnit::Microsecond, Some(tz)) if tz.as_ref() == "UTC" => {
                "timestamp"
            }
            other => {
                return Err(IngestError::InvalidOption(format!(
                    "column {:?}: type {other} cannot be given as schema=",
                    f.name()
                )));
            }
        };
        let name = f.name();
        if name.contains(',') || name.trim() != name || name.is_empty() {
            return Err(IngestError::InvalidOption(format!(
                "column name {name:?} cannot be given as schema="
            )));
        }
        parts.push(format!("{name}:{ty}"));
    }
    Ok(parts.join(","))
}

fn parse_bool(name: &str, v: &str) -> Result<bool, IngestError> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(IngestError::InvalidOption(format!(
            "{name} must be true or false, got {v:?}"
        ))),
    }
}

fn single_byte(name: &str, v: &str) -> Result<u8, IngestError> {
    let v = match v {
        "\\t" | "tab" => "\t",
        other => other,
    };
    match v.as_bytes() {
        [b] if b.is_ascii() => Ok(*b),
        _ => Err(IngestError::InvalidOption(format!(
            "{name} must be a single ASCII character, got {v:?}"
        ))),
    }
}

/// `name:type,name:type` with types bool, int8..int64, uint8..uint64,
/// float32, float64, utf8 (string), date, timestamp (microseconds, UTC).
pub fn parse_schema(s: &str) -> Result<SchemaRef, IngestError> {
    let mut fields = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, ty) = part.rsplit_once(':').ok_or_else(|| {
            IngestError::InvalidOption(format!("schema entry {part:?} is not name:type"))
        })?;
        let dt = match ty.trim().to_ascii_lowercase().as_str() {
            "bool" | "boolean" => DataType::Boolean,
            "int8" => DataType::Int8,
            "int16" => DataType::Int16,
            "int32" | "int" => DataType::Int32,
            "int64" | "bigint" | "long" => DataType::Int64,
            "uint8" => DataType::UInt8,
            "uint16" => DataType::UInt16,
            "uint32" => DataType::UInt32,
            "uint64" => DataType::UInt64,
            "float32" | "float" => DataType::Float32,
            "float64" | "double" => DataType::Float64,
            "utf8" | "string" | "text" => DataType::Utf8,
            "date" | "date32" => DataType::Date32,
            "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            other => {
                return Err(IngestError::InvalidOption(format!(
                    "unknown type {other:?} for column {name:?}"
                )));
            }
        };
        fields.push(Field::new(name.trim(), dt, true));
    }
    if fields.is_empty() {
        return Err(IngestError::InvalidOption("schema is empty".to_string()));
    }
    Ok(Arc::new(Schema::new(fields)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn parses_query_options() {
        let o = IngestOptions::from_query(
            &q(&[
                ("format", "csv"),
                ("mode", "replace"),
                ("delimiter", "tab"),
                ("null", "NA"),
                ("null", ""),
                ("header", "false"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(o.format, Format::Csv);
        assert_eq!(o.mode, Mode::Replace);
        assert_eq!(o.csv.delimiter, Some(b'\t'));
        assert_eq!(o.csv.nulls, vec!["NA".to_string(), String::new()]);
        assert_eq!(o.csv.header, Some(false));
        let o = IngestOptions::from_query(&[], Some("text/csv; charset=utf-8")).unwrap();
        assert_eq!(o.format, Format::Csv);
    }

    #[test]
    fn rejects_bad_options() {
        for bad in [
            q(&[]),
            q(&[("format", "xml")]),
            q(&[("format", "csv"), ("mode", "merge")]),
            q(&[("format", "csv"), ("delimiter", ";;")]),
            q(&[("format", "csv"), ("header", "maybe")]),
            q(&[("format", "csv"), ("infer_rows", "0")]),
            q(&[("format", "csv"), ("schema", "a:int128")]),
            q(&[("format", "csv"), ("colour", "blue")]),
        ] {
            assert!(IngestOptions::from_query(&bad, None).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn refuses_characters_a_csv_reader_cannot_use() {
        for (pairs, names) in [
            (vec![("delimiter", "\n")], "delimiter"),
            (vec![("delimiter", "\r")], "delimiter"),
            (vec![("quote", "\n")], "quote"),
            (vec![("escape", "\r")], "escape"),
            (
                vec![("delimiter", ";"), ("quote", ";")],
                "delimiter and quote",
            ),
            (
                vec![("delimiter", "\\"), ("escape", "\\")],
                "delimiter and escape",
            ),
        ] {
            let mut all = vec![("format", "csv")];
            all.extend(pairs.iter().copied());
            let err = IngestOptions::from_query(&q(&all), None).unwrap_err();
            assert!(matches!(err, IngestError::InvalidOption(_)), "{pairs:?}");
            assert!(err.to_string().starts_with(names), "{pairs:?}: {err}");
        }
        // A quote that is also the escape means doubled quotes: fine.
        let o = IngestOptions::from_query(
            &q(&[("format", "csv"), ("quote", "'"), ("escape", "'")]),
            None,
        )
        .unwrap();
        assert_eq!(o.csv.escape, Some(b'\''));
    }

    #[test]
    fn parses_schemas() {
        let s = parse_schema("id:int64, name:utf8,when:timestamp").unwrap();
        assert_eq!(s.fields().len(), 3);
        assert_eq!(s.field(0).data_type(), &DataType::Int64);
    }

    #[test]
    fn options_survive_the_query_string() {
        let cases = [
            q(&[("format", "csv")]),
            q(&[
                ("format", "csv"),
                ("mode", "replace"),
                ("header", "false"),
                ("delimiter", "tab"),
                ("quote", "'"),
                ("escape", "\\"),
                ("null", "NA"),
                ("null", ""),
                ("infer_rows", "7"),
                (
                    "schema",
                    "a:int64, b c:utf8,d:timestamp,e:date,f:bool,g:uint16",
                ),
            ]),
            q(&[("format", "ndjson"), ("schema", "x:float64")]),
            q(&[("format", "parquet"), ("mode", "append")]),
            q(&[("format", "csv"), ("schema", "merge")]),
        ];
        for params in cases {
            let o = IngestOptions::from_query(&params, None).unwrap();
            let back = IngestOptions::from_query(&o.to_query().unwrap(), None).unwrap();
            assert_eq!(format!("{back:?}"), format!("{o:?}"), "{params:?}");
        }
    }

    #[test]
    fn options_the_query_string_cannot_say_are_refused() {
        let mut o = IngestOptions::new(Format::Csv);
        o.csv.nulls.clear();
        assert!(matches!(o.to_query(), Err(IngestError::InvalidOption(_))));
        for field in [
            Field::new("a", DataType::LargeUtf8, true),
            Field::new("a,b", DataType::Utf8, true),
        ] {
            let mut o = IngestOptions::new(Format::Csv);
            o.schema = Some(Arc::new(Schema::new(vec![field])));
            assert!(matches!(o.to_query(), Err(IngestError::InvalidOption(_))));
        }
        let mut o =
            IngestOptions::from_query(&q(&[("schema", "a:int64")]), Some("text/csv")).unwrap();
        o.merge = true;
        assert!(matches!(o.to_query(), Err(IngestError::InvalidOption(_))));
    }
}
