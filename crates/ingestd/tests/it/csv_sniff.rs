//! Sniffing real CSV files (the `csv` crate's benchmark files, see
//! `tests/fixtures/csv-bench/README.md`): ingest detects the same header
//! and delimiter as DuckDB and reads the same columns and rows.

use std::path::{Path, PathBuf};

use lakehouse_ingestd::decode::decoder;
use lakehouse_ingestd::sniff::CsvReport;
use lakehouse_ingestd::{Format, IngestOptions};

use crate::python;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/csv-bench");

struct Read {
    rows: usize,
    columns: usize,
    csv: CsvReport,
}

fn ingest(data: &[u8]) -> Read {
    let dir = tempfile::tempdir().unwrap();
    let mut d = decoder(&IngestOptions::new(Format::Csv), None, dir.path());
    let mut out = vec![];
    for c in data.chunks(64 * 1024) {
        d.push(c, &mut out).unwrap();
    }
    let f = d.finish().unwrap();
    let columns = f.schema.fields().len();
    let csv = f.csv.clone().unwrap();
    for b in f.batches {
        out.push(b.unwrap());
    }
    Read {
        rows: out.iter().map(|b| b.num_rows()).sum(),
        columns,
        csv,
    }
}

/// The same table with another delimiter.
fn redelimit(data: &[u8], delimiter: u8) -> Vec<u8> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(data);
    let mut w = csv::WriterBuilder::new()
        .delimiter(delimiter)
        .from_writer(vec![]);
    for rec in r.byte_records() {
        w.write_byte_record(&rec.unwrap()).unwrap();
    }
    w.into_inner().unwrap()
}

/// (file, header, columns, data rows) of the committed excerpts, as DuckDB
/// 2.0 reads them.
const EXCERPTS: [(&str, bool, usize, usize); 4] = [
    ("game.csv", false, 6, 100),
    ("nfl.csv", true, 13, 149),
    ("worldcitiespop.csv", true, 7, 199),
    ("gtfs-mbta-stop-times.csv", true, 9, 149),
];

#[test]
fn real_files_are_sniffed_in_every_delimiter() {
    for (file, header, columns, rows) in EXCERPTS {
        let data = std::fs::read(Path::new(FIXTURES).join(file)).unwrap();
        for delimiter in [b',', b';', b'|', b'\t'] {
            let body = if delimiter == b',' {
                data.clone()
            } else {
                redelimit(&data, delimiter)
            };
            let r = ingest(&body);
            let what = format!("{file} delimited by {:?}", delimiter as char);
            assert_eq!(r.csv.header, header, "{what}");
            assert_eq!(r.csv.delimiter, (delimiter as char).to_string(), "{what}");
            assert_eq!((r.columns, r.rows), (columns, rows), "{what}");
        }
    }
}

#[test]
fn real_files_read_as_duckdb_reads_them() {
    if !python::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = vec![];
    for (file, ..) in EXCERPTS {
        let path = Path::new(FIXTURES).join(file);
        let data = std::fs::read(&path).unwrap();
        files.push(path);
        for delimiter in [b';', b'|', b'\t'] {
            let p = dir.path().join(format!("{}-{file}", delimiter as u32));
            std::fs::write(&p, redelimit(&data, delimiter)).unwrap();
            files.push(p);
        }
    }
    match python::csv_bench_dir() {
        Some(bench) => files.extend(EXCERPTS.iter().map(|(f, ..)| bench.join(f))),
        None => eprintln!(
            "the csv crate's whole benchmark files are not in the cargo registry; comparing the excerpts only"
        ),
    }
    let theirs = python::read("sniff", &files);
    for (path, theirs) in files.iter().zip(&theirs) {
        let ours = ingest(&std::fs::read(path).unwrap());
        let duck = &theirs["duckdb"];
        let what = path.display();
        assert!(duck.get("error").is_none(), "{what}: DuckDB: {duck}");
        assert_eq!(duck["header"].as_bool(), Some(ours.csv.header), "{what}");
        assert_eq!(
            duck["delimiter"].as_str(),
            Some(ours.csv.delimiter.as_str()),
            "{what}"
        );
        assert_eq!(
            duck["columns"].as_array().unwrap().len(),
            ours.columns,
            "{what}"
        );
        assert_eq!(duck["rows"].as_array().unwrap().len(), ours.rows, "{what}");
    }
}
