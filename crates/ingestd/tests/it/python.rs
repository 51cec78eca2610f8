//! The Python readers (DuckDB's `read_csv`, Python's `csv`) that the CSV
//! comparison tests check ingest against, via `read_csv.py`.
//!
//! Without `python3` and the `duckdb` package the comparison tests are
//! skipped with a message, unless `LAKEHOUSE_TEST_REQUIRE_PY=1` (as in CI),
//! which turns a missing reader into a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/read_csv.py");

/// Whether the readers can run; panics when they are required and cannot.
pub fn available() -> bool {
    let probe = Command::new("python3")
        .args(["-c", "import duckdb"])
        .output();
    let why = match probe {
        Ok(o) if o.status.success() => return true,
        Ok(o) => format!(
            "python3 cannot import duckdb: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => format!("python3 cannot be run: {e}"),
    };
    if std::env::var("LAKEHOUSE_TEST_REQUIRE_PY").as_deref() == Ok("1") {
        panic!("LAKEHOUSE_TEST_REQUIRE_PY=1 but {why} (pip install -r .ci/requirements.txt)");
    }
    eprintln!("skipping the DuckDB / Python csv comparison: {why}");
    false
}

/// What DuckDB and Python's csv read from each file (see `read_csv.py`).
/// `mode`: "property" (dialect given) or "sniff" (all detected).
pub fn read(mode: &str, files: &[PathBuf]) -> Vec<serde_json::Value> {
    let out = Command::new("python3")
        .arg(SCRIPT)
        .arg(mode)
        .args(files)
        .output()
        .expect("run read_csv.py");
    assert!(
        out.status.success(),
        "read_csv.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8 from read_csv.py");
    let v: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON from read_csv.py"))
        .collect();
    assert_eq!(v.len(), files.len(), "one answer per file");
    v
}

/// The csv crate's benchmark files (`examples/data/bench/` of the `csv`
/// crate, a dependency, so its source is in the cargo registry).
pub fn csv_bench_dir() -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))?;
    let src = home.join("registry").join("src");
    let mut found = Vec::new();
    for index in std::fs::read_dir(src).ok()?.flatten() {
        for krate in std::fs::read_dir(index.path()).ok()?.flatten() {
            let name = krate.file_name().to_string_lossy().into_owned();
            let bench = krate.path().join("examples/data/bench");
            if name.starts_with("csv-1.") && bench.join("game.csv").is_file() {
                found.push(bench);
            }
        }
    }
    found.sort();
    found.pop()
}
