//! Fuzzing of every decoder that reads untrusted bytes: CSV, NDJSON,
//! Parquet, Arrow IPC stream and file.
//!
//! Valid inputs are mutated (truncated, bytes flipped, bytes inserted,
//! length-like words overwritten with huge values, slices repeated) by a
//! proptest strategy from a fixed seed (`LAKEHOUSE_FUZZ_SEED` to vary it)
//! for `LAKEHOUSE_FUZZ_SECS` seconds (default 4). Every input must end in
//! either rows or a 400-class error, never a panic escaping the decoder and
//! never a 500-class error; CSV and NDJSON rows must be exactly what an
//! independent reader counts. Inputs that made an Arrow / Parquet reader
//! panic (caught at the decoder boundary) are printed (and written to
//! `LAKEHOUSE_FUZZ_OUT` when set); some are kept as regression cases in
//! `tests/fixtures/fuzz/` (see `kept_crashers_are_bad_data`).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    ArrayRef, BooleanArray, DictionaryArray, Float64Array, Int64Array, ListArray, RecordBatch,
    StringArray,
};
use arrow::datatypes::{Int32Type, Int64Type};
use lakehouse_ingestd::decode::decoder;
use lakehouse_ingestd::guard::panics_caught;
use lakehouse_ingestd::sniff::{BlankLines, CsvReport, Punct};
use lakehouse_ingestd::{Format, IngestError, IngestOptions};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

fn batch(rows: usize) -> RecordBatch {
    let ints: Vec<Option<i64>> = (0..rows as i64)
        .map(|i| (i % 7 != 0).then_some(i * 31 - 500))
        .collect();
    let strs: Vec<Option<String>> = (0..rows)
        .map(|i| (i % 5 != 0).then(|| format!("v{i}-é日{}", "x".repeat(i % 9))))
        .collect();
    let list = ListArray::from_iter_primitive::<Int64Type, _, _>(
        (0..rows).map(|i| (i % 4 != 0).then(|| (0..(i % 3) as i64).map(Some).collect::<Vec<_>>())),
    );
    let dict: DictionaryArray<Int32Type> = (0..rows).map(|i| ["a", "b", "c"][i % 3]).collect();
    RecordBatch::try_from_iter([
        ("i", Arc::new(Int64Array::from(ints)) as ArrayRef),
        (
            "f",
            Arc::new(Float64Array::from_iter_values(
                (0..rows).map(|i| i as f64 / 3.0),
            )),
        ),
        ("s", Arc::new(StringArray::from(strs))),
        (
            "b",
            Arc::new(BooleanArray::from_iter((0..rows).map(|i| Some(i % 2 == 0)))),
        ),
        ("l", Arc::new(list)),
        ("d", Arc::new(dict)),
    ])
    .unwrap()
}

fn parquet_bytes(compression: Compression) -> Vec<u8> {
    let b = batch(300);
    let props = WriterProperties::builder()
        .set_compression(compression)
        .set_max_row_group_row_count(Some(128))
        .set_data_page_row_count_limit(50)
        .build();
    let mut out = vec![];
    let mut w = ArrowWriter::try_new(&mut out, b.schema(), Some(props)).unwrap();
    w.write(&b).unwrap();
    w.close().unwrap();
    out
}

fn arrow_stream() -> Vec<u8> {
    let b = batch(200);
    let mut out = vec![];
    let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut out, &b.schema()).unwrap();
    w.write(&b).unwrap();
    w.write(&b.slice(10, 50)).unwrap();
    w.finish().unwrap();
    drop(w);
    out
}

fn arrow_file() -> Vec<u8> {
    let b = batch(200);
    let mut out = vec![];
    let mut w = arrow::ipc::writer::FileWriter::try_new(&mut out, &b.schema()).unwrap();
    w.write(&b).unwrap();
    w.write(&b.slice(5, 20)).unwrap();
    w.finish().unwrap();
    drop(w);
    out
}

fn seeds() -> Vec<(Format, Vec<u8>)> {
    let nfl = include_bytes!("../fixtures/csv-bench/nfl.csv");
    let nfl: Vec<u8> = nfl
        .split_inclusive(|b| *b == b'\n')
        .take(30)
        .flatten()
        .copied()
        .collect();
    let game: Vec<u8> = include_bytes!("../fixtures/csv-bench/game.csv")[..600].to_vec();
    let hand =
        b"id;name;score\r\n1;\"a;b\";1.5\r\n2;\"two\nlines \"\"q\"\"\";\r\n3;\xc3\xa9;-2\r\n"
            .to_vec();
    let mut ndjson = Vec::new();
    for i in 0..40 {
        ndjson.extend_from_slice(
            format!("{{\"a\": {i}, \"b\": \"x{i}\\n\", \"c\": [{i}, 2], \"d\": {{\"e\": {}}}, \"f\": {i}.5}}\n", i % 2 == 0)
                .as_bytes(),
        );
    }
    vec![
        (Format::Csv, nfl),
        (Format::Csv, game),
        (Format::Csv, hand),
        (Format::Csv, b"x\n1\n\n2\n".to_vec()),
        (Format::Ndjson, ndjson),
        (Format::Parquet, parquet_bytes(Compression::UNCOMPRESSED)),
        (Format::Parquet, parquet_bytes(Compression::SNAPPY)),
        (
            Format::Parquet,
            parquet_bytes(Compression::ZSTD(ZstdLevel::default())),
        ),
        (Format::Arrow, arrow_stream()),
        (Format::Arrow, arrow_file()),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(f64),
    Flip(f64, u8),
    Insert(f64, Vec<u8>),
    /// A length-like little-endian word overwritten with a large value.
    Word(f64, u32),
    Repeat(f64, f64),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let pos = 0.0f64..1.0;
    prop_oneof![
        1 => pos.clone().prop_map(Mutation::Truncate),
        3 => (pos.clone(), any::<u8>()).prop_map(|(p, b)| Mutation::Flip(p, b.max(1))),
        1 => (pos.clone(), prop::collection::vec(any::<u8>(), 1..6)).prop_map(|(p, v)| Mutation::Insert(p, v)),
        1 => (pos.clone(), prop::sample::select(vec![u32::MAX, 0x7fff_ffff, 0x8000_0000, 0x0100_0000, 0]))
            .prop_map(|(p, w)| Mutation::Word(p, w)),
        1 => (pos.clone(), pos).prop_map(|(a, b)| Mutation::Repeat(a, b)),
    ]
}

fn apply(mut data: Vec<u8>, m: &Mutation) -> Vec<u8> {
    let at = |p: f64, len: usize| ((p * len as f64) as usize).min(len);
    match m {
        Mutation::Truncate(p) => data.truncate(at(*p, data.len())),
        Mutation::Flip(p, b) if !data.is_empty() => {
            let i = at(*p, data.len() - 1);
            data[i] ^= b;
        }
        Mutation::Flip(..) => {}
        Mutation::Insert(p, v) => {
            let i = at(*p, data.len());
            data.splice(i..i, v.iter().copied());
        }
        Mutation::Word(p, w) if data.len() >= 4 => {
            let i = at(*p, data.len() - 4);
            data[i..i + 4].copy_from_slice(&w.to_le_bytes());
        }
        Mutation::Word(..) => {}
        Mutation::Repeat(a, b) => {
            let (x, y) = (at(*a, data.len()), at(*b, data.len()));
            let (lo, hi) = (x.min(y), x.max(y).min(x.min(y) + 4096));
            let copy = data[lo..hi].to_vec();
            data.splice(hi..hi, copy);
        }
    }
    data
}

struct Decoded {
    rows: usize,
    columns: usize,
    csv: Option<CsvReport>,
}

fn decode(format: Format, data: &[u8], chunk: usize) -> Result<Decoded, IngestError> {
    let dir = tempfile::tempdir().unwrap();
    let mut d = decoder(&IngestOptions::new(format), None, dir.path());
    let mut out = vec![];
    for c in data.chunks(chunk.max(1)) {
        d.push(c, &mut out)?;
    }
    let f = d.finish()?;
    let columns = f.schema.fields().len();
    let csv = f.csv.clone();
    for b in f.batches {
        out.push(b?);
    }
    Ok(Decoded {
        rows: out.iter().map(|b| b.num_rows()).sum(),
        columns,
        csv,
    })
}

/// Rows an independent reader sees in a CSV body read as `r` says.
fn csv_oracle(data: &[u8], r: &CsvReport, columns: usize) -> usize {
    let body = data.strip_prefix(b"\xef\xbb\xbf").unwrap_or(data);
    let byte = |s: &str| s.as_bytes()[0];
    let p = Punct {
        delimiter: byte(&r.delimiter),
        quote: byte(&r.quote),
        escape: Some(byte(&r.escape)).filter(|e| *e != byte(&r.quote)),
    };
    let mut rewritten = vec![];
    let body = if columns == 1 {
        BlankLines::new(p).apply(body, &mut rewritten);
        &rewritten[..]
    } else {
        body
    };
    let records = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(p.delimiter)
        .quote(p.quote)
        .escape(p.escape)
        .from_reader(body)
        .byte_records()
        .count();
    records - usize::from(r.header)
}

/// Values an independent JSON reader sees, when it reads the body whole.
fn json_oracle(data: &[u8]) -> Option<usize> {
    let body = data.strip_prefix(b"\xef\xbb\xbf").unwrap_or(data);
    let mut n = 0;
    for v in serde_json::Deserializer::from_slice(body).into_iter::<serde_json::Value>() {
        if !v.ok()?.is_object() {
            return None;
        }
        n += 1;
    }
    Some(n)
}

/// Checks one input; `Err` says what was wrong.
fn check(format: Format, data: &[u8], chunk: usize) -> Result<(), String> {
    let res = catch_unwind(AssertUnwindSafe(|| decode(format, data, chunk)))
        .map_err(|_| "a panic escaped the decoder".to_string())?;
    match res {
        Ok(d) => match (format, &d.csv) {
            (Format::Csv, Some(r)) => {
                let want = csv_oracle(data, r, d.columns);
                (d.rows == want)
                    .then_some(())
                    .ok_or(format!("CSV: {} rows, the csv crate reads {want}", d.rows))
            }
            (Format::Ndjson, _) => match json_oracle(data) {
                Some(want) if want != d.rows => {
                    Err(format!("NDJSON: {} rows, serde_json reads {want}", d.rows))
                }
                _ => Ok(()),
            },
            _ => Ok(()),
        },
        Err(IngestError::BadData(_) | IngestError::EmptyInput | IngestError::InvalidOption(_)) => {
            Ok(())
        }
        Err(e) => Err(format!("not a 400-class error: {e:?}")),
    }
}

#[test]
fn mutated_inputs_never_crash_or_miscount() {
    let secs: f64 = std::env::var("LAKEHOUSE_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4.0);
    let seed: u64 = std::env::var("LAKEHOUSE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0xf0_22);
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &key),
    );
    let strategy = (prop::collection::vec(mutation(), 1..4), 1usize..4096);
    let seeds = seeds();
    for (format, data) in &seeds {
        check(*format, data, 4096).unwrap_or_else(|e| panic!("unmutated {format:?}: {e}"));
    }
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let (mut cases, mut failures, mut crashers) = (0usize, vec![], vec![]);
    while Instant::now() < deadline || cases < seeds.len() {
        let (format, original) = &seeds[cases % seeds.len()];
        let (mutations, chunk) = strategy.new_tree(&mut runner).unwrap().current();
        let data = mutations.iter().fold(original.clone(), apply);
        let caught = panics_caught();
        if let Err(why) = check(*format, &data, chunk) {
            failures.push(format!("{format:?} {mutations:?} chunk {chunk}: {why}"));
        }
        if panics_caught() > caught {
            if let Ok(dir) = std::env::var("LAKEHOUSE_FUZZ_OUT") {
                let ext = format!("{format:?}").to_lowercase();
                let p = std::path::Path::new(&dir).join(format!("crash-{cases}.{ext}"));
                std::fs::write(p, &data).unwrap();
            }
            crashers.push((*format, mutations));
        }
        cases += 1;
    }
    eprintln!(
        "fuzzed {cases} inputs in {secs} s (seed {seed}); {} made a reader panic (caught)",
        crashers.len()
    );
    for (format, m) in crashers.iter().take(10) {
        eprintln!("  caught panic: {format:?} {m:?}");
    }
    assert!(
        failures.is_empty(),
        "{} of {cases} fuzzed inputs failed:\n{}",
        failures.len(),
        failures
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Inputs the fuzzing found that make a reader panic, kept in
/// `tests/fixtures/fuzz/` (or replayed from `LAKEHOUSE_FUZZ_REPLAY`): each is
/// a 400 `bad_data`, with nothing escaping the decoder.
#[test]
fn kept_crashers_are_bad_data() {
    let dir = std::env::var("LAKEHOUSE_FUZZ_REPLAY").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fuzz").to_string()
    });
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e != "md"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no kept crashers in {dir}");
    for path in files {
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some("parquet") => Format::Parquet,
            Some("arrow") => Format::Arrow,
            Some("csv") => Format::Csv,
            Some("ndjson") => Format::Ndjson,
            other => panic!("{}: unknown extension {other:?}", path.display()),
        };
        let data = std::fs::read(&path).unwrap();
        let before = panics_caught();
        let res = catch_unwind(AssertUnwindSafe(|| decode(format, &data, 4096)));
        let res = res.unwrap_or_else(|_| panic!("{}: a panic escaped", path.display()));
        match res {
            Err(IngestError::BadData(msg)) => eprintln!(
                "{}: {msg}{}",
                path.display(),
                if panics_caught() > before {
                    " (a reader panicked)"
                } else {
                    ""
                }
            ),
            Err(e) => panic!("{}: not bad_data: {e:?}", path.display()),
            Ok(d) => panic!(
                "{}: read {} rows from a broken file",
                path.display(),
                d.rows
            ),
        }
    }
}
