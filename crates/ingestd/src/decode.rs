//! Push decoders: bytes in, Arrow record batches out, in bounded memory.
//!
//! CSV and NDJSON buffer a sample to infer a schema (unless one is given),
//! then decode incrementally. Arrow IPC streams decode incrementally. Parquet
//! (and Arrow IPC *files*) need their footer, so the body is spooled to a
//! temporary file and read back in batches.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::buffer::Buffer;
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::ipc::reader::StreamDecoder;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::IngestError;
use crate::exact_json::JsonDecoder;
use crate::footer;
use crate::guard::{Guarded, arrow_message, parquet_message};
use crate::options::{CsvOptions, Format, IngestOptions};
use crate::sniff::{self, CsvReport, Punct};

/// Rows per decoded batch.
pub const BATCH_ROWS: usize = 64 * 1024;
/// Largest sample buffered for schema inference.
const MAX_SAMPLE: usize = 16 << 20;

pub type BatchIter = Box<dyn Iterator<Item = Result<RecordBatch, IngestError>> + Send>;

/// What is left once the input has ended: the schema (known even when there
/// are no rows, e.g. a header-only CSV) and the remaining batches.
pub struct Finished {
    pub schema: SchemaRef,
    pub batches: BatchIter,
    /// How a CSV body was read (dialect, header, renamed columns).
    pub csv: Option<CsvReport>,
}

/// A push decoder.
pub trait Decode: Send {
    /// Feeds bytes; decoded batches are appended to `out`.
    fn push(&mut self, data: &[u8], out: &mut Vec<RecordBatch>) -> Result<(), IngestError>;
    /// End of input: the schema and the remaining batches.
    fn finish(self: Box<Self>) -> Result<Finished, IngestError>;
}

/// Builds the decoder for `opts`. `target` is the existing dataset's schema
/// (appends decode text formats with it when the columns line up). A panic
/// inside a decoder (hostile input can trigger some in the Arrow and Parquet
/// readers) becomes a `BadData` error, never a crashed ingest.
pub fn decoder(
    opts: &IngestOptions,
    target: Option<SchemaRef>,
    spool_dir: &Path,
) -> Box<dyn Decode> {
    let inner: Box<dyn Decode> = match opts.format {
        Format::Csv => Box::new(TextDecoder::new(Text::Csv(opts.csv.clone()), opts, target)),
        Format::Ndjson => Box::new(TextDecoder::new(Text::Ndjson, opts, target)),
        Format::Arrow => Box::new(ArrowDecoder::new(spool_dir)),
        Format::Parquet => Box::new(Spooled::new(spool_dir, SpoolKind::Parquet)),
    };
    Box::new(Guarded::new(inner, opts.format))
}

/// Every column nullable: datasets do not promise non-null columns, so a later
/// append of a file with nulls is not a schema change.
pub fn normalize_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            f.as_ref()
                .clone()
                .with_nullable(true)
                .with_metadata(Default::default())
        })
        .collect();
    Arc::new(Schema::new(fields))
}

pub fn normalize_batch(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, IngestError> {
    RecordBatch::try_new(schema.clone(), batch.columns().to_vec())
        .map_err(|e| IngestError::BadData(arrow_message(&e)))
}

enum Text {
    Csv(CsvOptions),
    Ndjson,
}

enum Inner {
    Csv(Box<arrow::csv::reader::Decoder>),
    Json(JsonDecoder),
}

impl Inner {
    fn decode(&mut self, data: &[u8]) -> Result<usize, ArrowError> {
        match self {
            Inner::Csv(d) => d.decode(data),
            Inner::Json(d) => d.decode(data),
        }
    }
    fn full(&self) -> bool {
        match self {
            Inner::Csv(d) => d.capacity() == 0,
            Inner::Json(d) => d.len() >= BATCH_ROWS,
        }
    }
    fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        match self {
            Inner::Csv(d) => d.flush(),
            Inner::Json(d) => d.flush(),
        }
    }
}

/// How the CSV body is read, once decided.
struct CsvRead {
    punct: Punct,
    header: bool,
    nulls: regex::Regex,
}

enum TextState {
    Sampling(Vec<u8>),
    Decoding {
        inner: Inner,
        schema: SchemaRef,
        /// Raw bytes since the last flush (a flush always ends on a record
        /// boundary), kept to name the exact bad line when decoding fails
        /// and to check that the last record closed its quotes.
        pending: Vec<u8>,
        /// Physical lines before `pending`.
        line_base: usize,
    },
}

struct TextDecoder {
    kind: Text,
    explicit: Option<SchemaRef>,
    target: Option<SchemaRef>,
    /// `schema=merge`: the target's types for its columns, inferred ones
    /// for the rest.
    merge: bool,
    infer_rows: usize,
    state: TextState,
    /// Line ends in the sample so far (`\n`, and `\r`, for CR-only files).
    sample_lines: (usize, usize),
    csv: Option<CsvRead>,
    report: Option<CsvReport>,
    /// One-column CSVs: blank lines are rows.
    blank_lines: Option<sniff::BlankLines>,
    /// Line ends to sample before inferring; doubled while the sample holds
    /// no whole record (a long quoted field).
    sample_goal: usize,
}

const BOM: &[u8] = b"\xef\xbb\xbf";

impl TextDecoder {
    fn new(kind: Text, opts: &IngestOptions, target: Option<SchemaRef>) -> Self {
        Self {
            kind,
            explicit: opts.schema.clone(),
            target,
            merge: opts.merge,
            infer_rows: opts.infer_rows,
            state: TextState::Sampling(Vec::new()),
            sample_lines: (0, 0),
            csv: None,
            report: None,
            blank_lines: None,
            sample_goal: opts.infer_rows.saturating_add(2),
        }
    }

    /// Infers (or takes) the schema from the sample and starts decoding it.
    fn start(
        &mut self,
        mut sample: Vec<u8>,
        complete: bool,
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), IngestError> {
        // A UTF-8 byte-order mark is not data.
        if sample.starts_with(BOM) {
            sample.drain(..BOM.len());
        }
        if complete && sample.iter().all(|b| b.is_ascii_whitespace()) {
            return Err(IngestError::EmptyInput);
        }
        let (inner, schema) = match &self.kind {
            Text::Csv(o) => {
                let o = o.clone();
                self.start_csv(&o, &sample, complete)?
            }
            Text::Ndjson => self.start_json(&sample, complete)?,
        };
        self.state = TextState::Decoding {
            inner,
            schema,
            pending: Vec::new(),
            line_base: 0,
        };
        self.feed(&sample, out)
    }

    /// Sniffs the dialect and the header, infers the column types.
    fn start_csv(
        &mut self,
        o: &CsvOptions,
        sample: &[u8],
        complete: bool,
    ) -> Result<(Inner, SchemaRef), IngestError> {
        let nulls = null_regex(&o.nulls)?;
        // Inference reads whole records only: a cut last record is left out.
        let max = self.infer_rows.saturating_add(1);
        let punct = sniff::punctuation(o, sample, complete, max);
        let usable = sniff::scan(sample, punct, false, complete, max)
            .map(|s| s.counts.len())
            .unwrap_or(0);
        let Some(first) = sniff::first_record(punct, sample).filter(|_| usable > 0) else {
            return Err(IngestError::BadData(
                "no complete CSV record in the first 16 MiB".to_string(),
            ));
        };
        let read = CsvRead {
            punct,
            header: o.header.unwrap_or(true),
            nulls,
        };
        let infer = |header: bool, n: usize| {
            sniff::arrow_format(punct, header, &read.nulls)
                .infer_schema(sample, Some(n))
                .map(|(s, _)| s)
                .map_err(|e| locate_csv_error(&read, None, sample, 0, e))
        };
        let mut header_types = None;
        let header = match (o.header, &self.explicit) {
            (Some(h), _) => h,
            (None, Some(s)) => sniff::is_header(&first, s, &read.nulls, self.target.as_deref()),
            // A lone record is compared with its own types (DuckDB: `a,b`
            // is a header, `1,2` and `a,1` are data).
            (None, None) if usable == 1 => {
                let types = infer(false, 1)?;
                sniff::is_header(&first, &types, &read.nulls, self.target.as_deref())
            }
            (None, None) => {
                let types = infer(true, usable - 1)?;
                let h = sniff::is_header(&first, &types, &read.nulls, self.target.as_deref());
                header_types = Some(types);
                h
            }
        };
        let mut report = CsvReport::new(punct, header, o);
        let schema = match &self.explicit {
            Some(s) => s.clone(),
            None => {
                let inferred = match header_types.filter(|_| header) {
                    Some(t) => t,
                    None if header => infer(true, usable - 1)?,
                    None => infer(false, usable)?,
                };
                let (names, renamed) = sniff::column_names(&first, header);
                report.renamed = renamed;
                let inferred = sniff::rename(&inferred, &names);
                self.pick_schema(&inferred, |t, i| {
                    // A null-typed column reads every value as null.
                    same_names(t, i) && !t.fields().iter().any(|f| f.data_type().is_null())
                })
            }
        };
        let decoder = arrow::csv::ReaderBuilder::new(schema.clone())
            .with_format(sniff::arrow_format(punct, header, &read.nulls))
            .with_batch_size(BATCH_ROWS)
            .build_decoder();
        if schema.fields().len() == 1 {
            self.blank_lines = Some(sniff::BlankLines::new(punct));
        }
        self.csv = Some(CsvRead { header, ..read });
        self.report = Some(report);
        Ok((Inner::Csv(Box::new(decoder)), schema))
    }

    fn start_json(
        &mut self,
        sample: &[u8],
        complete: bool,
    ) -> Result<(Inner, SchemaRef), IngestError> {
        // Inference reads whole lines only: stop before a possibly cut last one.
        let lines = count_lines(sample);
        let max_records = if complete {
            self.infer_rows
        } else {
            self.infer_rows.min(lines.saturating_sub(2).max(1))
        };
        let schema = match &self.explicit {
            Some(s) => s.clone(),
            None => {
                let inferred =
                    match arrow::json::reader::infer_json_schema(sample, Some(max_records)) {
                        Ok((s, _)) => s,
                        Err(e) => return Err(locate_json_error(None, sample, 0, e)),
                    };
                if inferred.fields().is_empty() {
                    return Err(IngestError::BadData(
                        "the JSON objects have no fields".to_string(),
                    ));
                }
                self.pick_schema(&inferred, |t, i| {
                    i.fields()
                        .iter()
                        .all(|f| t.field_with_name(f.name()).is_ok())
                })
            }
        };
        Ok((Inner::Json(json_decoder(&schema)?), schema))
    }

    /// Explicit schema > the target's (when compatible) > inferred. Under
    /// `schema=merge`, the target's types for the columns it has.
    fn pick_schema(
        &self,
        inferred: &Schema,
        compatible: impl Fn(&Schema, &Schema) -> bool,
    ) -> SchemaRef {
        if let Some(s) = &self.explicit {
            return s.clone();
        }
        if let Some(t) = self.target.as_ref().filter(|_| self.merge) {
            return crate::evolve::with_table_types(&normalize_schema(inferred), t);
        }
        if let Some(t) = &self.target
            && compatible(t, inferred)
        {
            return t.clone();
        }
        normalize_schema(inferred)
    }

    fn feed(&mut self, data: &[u8], out: &mut Vec<RecordBatch>) -> Result<(), IngestError> {
        let rewritten;
        let mut data = match &mut self.blank_lines {
            Some(f) => {
                let mut buf = Vec::new();
                f.apply(data, &mut buf);
                rewritten = buf;
                &rewritten[..]
            }
            None => data,
        };
        let TextState::Decoding {
            inner,
            schema: _,
            pending,
            line_base,
        } = &mut self.state
        else {
            unreachable!("feed before start");
        };
        pending.extend_from_slice(data);
        let mut res = Ok(());
        while !data.is_empty() {
            match inner.decode(data) {
                Ok(n) => data = &data[n..],
                Err(e) => {
                    res = Err(e);
                    break;
                }
            }
            if inner.full() {
                match inner.flush() {
                    Ok(Some(b)) => {
                        out.push(b);
                        let consumed = pending.len() - data.len();
                        *line_base += count_lines(&pending[..consumed]);
                        pending.drain(..consumed);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        res = Err(e);
                        break;
                    }
                }
            }
        }
        res.map_err(|e| self.locate(e))
    }

    /// End of input: the last record counts even without a final line end,
    /// and must not end inside an open quote.
    fn end_input(&mut self) -> Result<Option<RecordBatch>, IngestError> {
        let TextState::Decoding {
            inner,
            pending,
            line_base,
            ..
        } = &mut self.state
        else {
            unreachable!("end before start");
        };
        let ended = match inner {
            // An empty buffer tells csv-core the input has ended.
            Inner::Csv(d) => d.decode(&[]).map(|_| ()),
            Inner::Json(_) => Ok(()),
        };
        if let (Ok(()), Some(read)) = (&ended, &self.csv) {
            sniff::check_closed(pending, read.punct, *line_base)?;
        }
        match ended.and_then(|_| inner.flush()) {
            Ok(b) => Ok(b),
            Err(e) => Err(self.locate(e)),
        }
    }

    fn locate(&self, e: ArrowError) -> IngestError {
        let TextState::Decoding {
            schema,
            pending,
            line_base,
            ..
        } = &self.state
        else {
            return IngestError::BadData(arrow_message(&e));
        };
        match (&self.kind, &self.csv) {
            (Text::Csv(_), Some(read)) => {
                locate_csv_error(read, Some(schema), pending, *line_base, e)
            }
            _ => locate_json_error(Some(schema), pending, *line_base, e),
        }
    }
}

impl Decode for TextDecoder {
    fn push(&mut self, data: &[u8], out: &mut Vec<RecordBatch>) -> Result<(), IngestError> {
        if let TextState::Sampling(buf) = &mut self.state {
            buf.extend_from_slice(data);
            self.sample_lines.0 += count_lines(data);
            self.sample_lines.1 += data.iter().filter(|b| **b == b'\r').count();
            let lines = self.sample_lines.0.max(self.sample_lines.1);
            if buf.len() < MAX_SAMPLE && lines <= self.sample_goal {
                return Ok(());
            }
            if buf.len() < MAX_SAMPLE && !has_records(&self.kind, buf) {
                self.sample_goal = self.sample_goal.saturating_mul(2);
                return Ok(());
            }
            let sample = std::mem::take(buf);
            return self.start(sample, false, out);
        }
        self.feed(data, out)
    }

    fn finish(mut self: Box<Self>) -> Result<Finished, IngestError> {
        let mut out = Vec::new();
        if let TextState::Sampling(buf) = &mut self.state {
            let sample = std::mem::take(buf);
            self.start(sample, true, &mut out)?;
        }
        out.extend(self.end_input()?);
        let TextState::Decoding { schema, .. } = &self.state else {
            unreachable!("started above");
        };
        Ok(Finished {
            schema: schema.clone(),
            batches: Box::new(out.into_iter().map(Ok)),
            csv: self.report.take(),
        })
    }
}

/// Whether a CSV sample holds at least two whole records (quotes may hold
/// many lines); NDJSON samples always do once past the goal.
fn has_records(kind: &Text, sample: &[u8]) -> bool {
    let Text::Csv(o) = kind else {
        return true;
    };
    let p = Punct {
        delimiter: o.delimiter.unwrap_or(b','),
        quote: o.quote.unwrap_or(b'"'),
        escape: None,
    };
    sniff::scan(sample, p, false, false, 2).is_ok_and(|s| s.counts.len() >= 2)
}

fn same_names(a: &Schema, b: &Schema) -> bool {
    a.fields().len() == b.fields().len()
        && a.fields()
            .iter()
            .zip(b.fields())
            .all(|(x, y)| x.name() == y.name())
}

fn count_lines(b: &[u8]) -> usize {
    b.iter().filter(|c| **c == b'\n').count()
}

fn json_decoder(schema: &SchemaRef) -> Result<JsonDecoder, IngestError> {
    JsonDecoder::new(schema, BATCH_ROWS).map_err(|e| IngestError::BadData(arrow_message(&e)))
}

/// Re-reads `pending` record by record to name the first bad line (1-based,
/// physical, header included) and column. Error path only.
fn locate_csv_error(
    read: &CsvRead,
    schema: Option<&SchemaRef>,
    pending: &[u8],
    line_base: usize,
    original: ArrowError,
) -> IngestError {
    let mut rdr = sniff::csv_reader(read.punct, pending);
    let mut expected = schema.map(|s| s.fields().len());
    let skip_header = read.header && line_base == 0;
    for (i, rec) in rdr.byte_records().enumerate() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line() as usize).unwrap_or(1);
                return IngestError::BadData(format!(
                    "CSV line {}: {}",
                    line_base + line,
                    csv_message(&e)
                ));
            }
        };
        let line = line_base + rec.position().map(|p| p.line() as usize).unwrap_or(i + 1);
        let want = *expected.get_or_insert(rec.len());
        if rec.len() != want {
            return IngestError::BadData(format!(
                "CSV line {line}: expected {want} fields, found {}",
                rec.len()
            ));
        }
        if i == 0 && skip_header {
            continue;
        }
        let Some(schema) = schema else { continue };
        for (c, field) in schema.fields().iter().enumerate() {
            let raw = &rec[c];
            let text = String::from_utf8_lossy(raw);
            if read.nulls.is_match(&text) {
                continue;
            }
            if !sniff::value_parses(field, raw) {
                return IngestError::BadData(format!(
                    "CSV line {line}, column {} ({:?}): cannot read {text:?} as {}",
                    c + 1,
                    field.name(),
                    crate::fingerprint::canonical_type(field.data_type())
                ));
            }
        }
    }
    IngestError::BadData(format!(
        "CSV near line {}: {}",
        line_base + 1,
        arrow_message(&original)
    ))
}

/// A csv-crate error without its debug wrapping.
fn csv_message(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { err, .. } => format!("invalid UTF-8 in field {}", err.field() + 1),
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("expected {expected_len} fields, found {len}"),
        _ => e.to_string(),
    }
}

/// Re-decodes the pending lines one at a time to name the first bad one.
fn locate_json_error(
    schema: Option<&SchemaRef>,
    pending: &[u8],
    line_base: usize,
    original: ArrowError,
) -> IngestError {
    for (i, line) in pending.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let r = match schema {
            Some(s) => json_decoder(s)
                .map_err(|e| ArrowError::JsonError(e.to_string()))
                .and_then(|mut d| d.decode(line).and_then(|_| d.flush().map(|_| ()))),
            None => arrow::json::reader::infer_json_schema(line, None).map(|_| ()),
        };
        if let Err(e) = r {
            return IngestError::BadData(format!(
                "NDJSON line {}: {}",
                line_base + i + 1,
                arrow_message(&e)
            ));
        }
    }
    IngestError::BadData(format!(
        "NDJSON near line {}: {}",
        line_base + 1,
        arrow_message(&original)
    ))
}

fn null_regex(nulls: &[String]) -> Result<regex::Regex, IngestError> {
    let alts: Vec<String> = nulls.iter().map(|n| regex::escape(n)).collect();
    regex::Regex::new(&format!("^(?:{})$", alts.join("|")))
        .map_err(|e| IngestError::InvalidOption(format!("invalid null strings: {e}")))
}

/// Arrow IPC: the streaming format decodes as it arrives; the file format
/// (magic `ARROW1`) needs its footer and is spooled.
struct ArrowDecoder {
    spool_dir: PathBuf,
    state: ArrowState,
}

enum ArrowState {
    Undecided(Vec<u8>),
    Stream(StreamDecoder),
    File(Spooled),
}

impl ArrowDecoder {
    fn new(spool_dir: &Path) -> Self {
        Self {
            spool_dir: spool_dir.to_path_buf(),
            state: ArrowState::Undecided(Vec::new()),
        }
    }
}

fn ipc_error(e: ArrowError) -> IngestError {
    IngestError::BadData(format!("Arrow IPC: {}", arrow_message(&e)))
}

impl Decode for ArrowDecoder {
    fn push(&mut self, data: &[u8], out: &mut Vec<RecordBatch>) -> Result<(), IngestError> {
        if let ArrowState::Undecided(buf) = &mut self.state {
            buf.extend_from_slice(data);
            if buf.len() < 6 {
                return Ok(());
            }
            let head = std::mem::take(buf);
            if head.starts_with(b"ARROW1") {
                let mut s = Spooled::new(&self.spool_dir, SpoolKind::ArrowFile);
                s.push(&head, out)?;
                self.state = ArrowState::File(s);
            } else {
                self.state = ArrowState::Stream(StreamDecoder::new());
                return self.push(&head, out);
            }
            return Ok(());
        }
        match &mut self.state {
            ArrowState::Undecided(_) => unreachable!(),
            ArrowState::File(s) => s.push(data, out),
            ArrowState::Stream(d) => {
                let mut buf = Buffer::from(data.to_vec());
                while !buf.is_empty() {
                    match d.decode(&mut buf).map_err(ipc_error)? {
                        Some(b) => out.push(b),
                        None => continue,
                    }
                }
                Ok(())
            }
        }
    }

    fn finish(self: Box<Self>) -> Result<Finished, IngestError> {
        let stream =
            |mut d: StreamDecoder, out: Vec<RecordBatch>| -> Result<Finished, IngestError> {
                d.finish().map_err(ipc_error)?;
                let schema = d.schema().ok_or_else(|| {
                    IngestError::BadData("Arrow IPC: the stream has no schema message".to_string())
                })?;
                Ok(Finished {
                    schema,
                    batches: Box::new(out.into_iter().map(Ok)),
                    csv: None,
                })
            };
        match self.state {
            ArrowState::Undecided(buf) if buf.is_empty() => Err(IngestError::EmptyInput),
            ArrowState::Undecided(buf) => {
                let mut d = StreamDecoder::new();
                let mut b = Buffer::from(buf);
                let mut out = vec![];
                while !b.is_empty() {
                    if let Some(batch) = d.decode(&mut b).map_err(ipc_error)? {
                        out.push(batch);
                    }
                }
                stream(d, out)
            }
            ArrowState::Stream(d) => stream(d, vec![]),
            ArrowState::File(s) => Box::new(s).finish(),
        }
    }
}

#[derive(Clone, Copy)]
enum SpoolKind {
    Parquet,
    ArrowFile,
}

/// Spools the body to a temporary file, then reads it back in batches.
struct Spooled {
    dir: PathBuf,
    kind: SpoolKind,
    file: Option<std::fs::File>,
    len: u64,
}

impl Spooled {
    fn new(dir: &Path, kind: SpoolKind) -> Self {
        Self {
            dir: dir.to_path_buf(),
            kind,
            file: None,
            len: 0,
        }
    }
}

impl Decode for Spooled {
    fn push(&mut self, data: &[u8], _out: &mut Vec<RecordBatch>) -> Result<(), IngestError> {
        if self.file.is_none() {
            std::fs::create_dir_all(&self.dir).map_err(IngestError::Spool)?;
            // An unnamed temporary file: gone with the process, even on kill -9.
            self.file = Some(tempfile::tempfile_in(&self.dir).map_err(IngestError::Spool)?);
        }
        if let Some(f) = &mut self.file {
            f.write_all(data).map_err(IngestError::Spool)?;
        }
        self.len += data.len() as u64;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<Finished, IngestError> {
        let Some(mut file) = self.file else {
            return Err(IngestError::EmptyInput);
        };
        file.seek(SeekFrom::Start(0)).map_err(IngestError::Spool)?;
        match self.kind {
            SpoolKind::Parquet => {
                let bad = |e| {
                    IngestError::BadData(format!(
                        "not a valid Parquet file: {}",
                        parquet_message(&e)
                    ))
                };
                footer::check_parquet(&mut file, self.len)?;
                let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                    .map_err(bad)?
                    .with_batch_size(BATCH_ROWS)
                    .build()
                    .map_err(bad)?;
                Ok(Finished {
                    schema: arrow::array::RecordBatchReader::schema(&reader),
                    batches: Box::new(reader.map(|r| {
                        r.map_err(|e| {
                            IngestError::BadData(format!("Parquet: {}", arrow_message(&e)))
                        })
                    })),
                    csv: None,
                })
            }
            SpoolKind::ArrowFile => {
                footer::check_arrow_file(&mut file, self.len)?;
                let reader = arrow::ipc::reader::FileReader::try_new(file, None).map_err(|e| {
                    IngestError::BadData(format!(
                        "not a valid Arrow IPC file: {}",
                        arrow_message(&e)
                    ))
                })?;
                Ok(Finished {
                    schema: reader.schema(),
                    batches: Box::new(reader.map(|r| r.map_err(ipc_error))),
                    csv: None,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::IngestOptions;

    fn decode_all(opts: &IngestOptions, chunks: &[&[u8]]) -> Result<Vec<RecordBatch>, IngestError> {
        let dir = tempfile::tempdir().unwrap();
        let mut d = decoder(opts, None, dir.path());
        let mut out = vec![];
        for c in chunks {
            d.push(c, &mut out)?;
        }
        out.extend(d.finish()?.batches.collect::<Result<Vec<_>, _>>()?);
        Ok(out)
    }

    fn rows(b: &[RecordBatch]) -> usize {
        b.iter().map(|b| b.num_rows()).sum()
    }

    #[test]
    fn csv_infers_and_decodes_across_chunk_boundaries() {
        let data = b"id,name,score\n1,\"a, b\",1.5\n2,\"multi\nline\",\n3,\xc3\xa9t\xc3\xa9,2\n";
        let opts = IngestOptions::new(Format::Csv);
        for split in 1..data.len() {
            let b = decode_all(&opts, &[&data[..split], &data[split..]]).unwrap();
            assert_eq!(rows(&b), 3, "split at {split}");
            let s = b[0].schema();
            assert_eq!(s.field(0).data_type(), &arrow::datatypes::DataType::Int64);
            assert_eq!(s.field(2).data_type(), &arrow::datatypes::DataType::Float64);
            assert_eq!(b[0].column(2).null_count(), 1);
        }
    }

    #[test]
    fn csv_bad_value_names_line_and_column() {
        let mut data = String::from("a,b\n");
        for i in 0..2000 {
            data.push_str(&format!("{i},{i}\n"));
        }
        data.push_str("7,oops\n");
        let err = decode_all(&IngestOptions::new(Format::Csv), &[data.as_bytes()]).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, IngestError::BadData(_)));
        assert!(msg.contains("CSV line 2002, column 2 (\"b\")"), "{msg}");
        assert!(msg.contains("\"oops\" as int64"), "{msg}");
        // Past the first batch, with a quoted newline before it.
        let mut data = String::from("a,b\n1,\"two\nlines\"\n");
        for i in 0..(BATCH_ROWS + 10) {
            data.push_str(&format!("{i},x\n"));
        }
        data.push_str("bad,x\n");
        let mut o = IngestOptions::new(Format::Csv);
        o.schema = Some(crate::options::parse_schema("a:int64,b:utf8").unwrap());
        let bad_line = BATCH_ROWS + 10 + 4;
        let err = decode_all(&o, &[data.as_bytes()]).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("CSV line {bad_line}, column 1 (\"a\")")),
            "{err}"
        );
        // Ragged rows, in the sample and later.
        let ragged = "a,b\n1,2\n3\n";
        let err = decode_all(&IngestOptions::new(Format::Csv), &[ragged.as_bytes()]).unwrap_err();
        assert!(
            err.to_string()
                .contains("CSV line 3: expected 2 fields, found 1"),
            "{err}"
        );
        let err = decode_all(&o, &[ragged.as_bytes()]).unwrap_err();
        assert!(
            err.to_string()
                .contains("CSV line 3: expected 2 fields, found 1"),
            "{err}"
        );
    }

    #[test]
    fn ndjson_bad_line_is_named() {
        let mut data = String::new();
        for i in 0..100 {
            data.push_str(&format!("{{\"a\": {i}, \"b\": \"x\"}}\n"));
        }
        data.push_str("{\"a\": \"not a number\", \"b\": \"y\"}\n");
        let mut o = IngestOptions::new(Format::Ndjson);
        o.schema = Some(crate::options::parse_schema("a:int64,b:utf8").unwrap());
        let err = decode_all(&o, &[data.as_bytes()]).unwrap_err();
        assert!(err.to_string().contains("NDJSON line 101"), "{err}");
        // Inferred: a mixed column becomes a string column and reads fine.
        let b = decode_all(&IngestOptions::new(Format::Ndjson), &[data.as_bytes()]).unwrap();
        assert_eq!(rows(&b), 101);
        let err = decode_all(
            &IngestOptions::new(Format::Ndjson),
            &[b"{\"a\": 1}\n{\"a\": \n"],
        )
        .unwrap_err();
        assert!(err.to_string().contains("line"), "{err}");
    }

    #[test]
    fn empty_and_header_only() {
        let e = decode_all(&IngestOptions::new(Format::Csv), &[b""]).unwrap_err();
        assert!(matches!(e, IngestError::EmptyInput));
        let b = decode_all(&IngestOptions::new(Format::Csv), &[b"x,y\n"]).unwrap();
        assert_eq!(rows(&b), 0);
        let e = decode_all(&IngestOptions::new(Format::Ndjson), &[b"\n\n"]).unwrap_err();
        assert!(matches!(e, IngestError::EmptyInput));
        let e = decode_all(&IngestOptions::new(Format::Parquet), &[]).unwrap_err();
        assert!(matches!(e, IngestError::EmptyInput));
        let e = decode_all(
            &IngestOptions::new(Format::Parquet),
            &[b"not parquet at all"],
        )
        .unwrap_err();
        assert!(e.to_string().contains("Parquet"), "{e}");
    }
}
