//! TPC-H SF1 through the lakehouse API: ingest the eight tables with
//! `POST /ingest/<table>?format=parquet`, run the 22 queries through
//! `POST /query/sql` (Arrow IPC answers), check each answer against DuckDB's
//! (`peers_tpch.py --answers`) and compare times with DuckDB and
//! DataFusion-python measured in the same run.
//!
//! Times are the best of `--runs` (default 2) per query, like the peers
//! script, and include the HTTP round trip and decoding the answer.
//!
//! Usage: `bench/tpch.sh`, or
//! `tpch --lakehouse target/release/lakehouse --data bench/data/tpch-sf1
//!       --peers ../shared/bench/peers_tpch.py [--runs 2] [--skip-peers]`

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use clap::Parser;
use serde_json::Value;

const TABLES: [&str; 8] = [
    "customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier",
];

/// TPC-H SF1 through the lakehouse API vs DuckDB and DataFusion-python.
#[derive(Debug, Parser)]
#[command(name = "tpch")]
struct Args {
    /// The `lakehouse` binary to start (a release build).
    #[arg(long, value_name = "PATH", default_value = "target/release/lakehouse")]
    lakehouse: PathBuf,
    /// Directory of the eight TPC-H tables as `<table>.parquet`.
    #[arg(long, value_name = "DIR", default_value = "bench/data/tpch-sf1")]
    data: PathBuf,
    /// The peers script (DuckDB, DataFusion-python); the queries are read from
    /// the `tpch` directory next to it.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "../shared/bench/peers_tpch.py"
    )]
    peers: PathBuf,
    /// Runs per query; the best time is kept.
    #[arg(long, default_value_t = 2)]
    runs: usize,
    /// Do not run the peers script: no peer times and no answer check.
    #[arg(long)]
    skip_peers: bool,
}

/// `lakehouse serve` on an ephemeral port and a temporary data dir.
struct Server {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(bin: &Path) -> anyhow::Result<Server> {
        let dir = tempfile::tempdir()?;
        let mut child = Command::new(bin)
            .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env("LAKEHOUSE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = lines.next().context("lakehouse exited")??;
        std::thread::spawn(move || for _ in lines {});
        let url = line
            .strip_prefix("lakehouse listening on ")
            .with_context(|| format!("unexpected first line {line:?}"))?
            .trim()
            .to_string();
        Ok(Server {
            child,
            url,
            _dir: dir,
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A cell, normalised like `peers_tpch.py`: floats and decimals rounded to 2
/// places, dates as ISO text.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
}

fn cell_from_json(v: &Value) -> Cell {
    match v {
        Value::Null => Cell::Null,
        Value::Bool(b) => Cell::Int(*b as i64),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Cell::Int(i),
            None => Cell::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Cell::Text(s.clone()),
        other => Cell::Text(other.to_string()),
    }
}

fn cells(batches: &[RecordBatch]) -> anyhow::Result<Vec<Vec<Cell>>> {
    let mut out = Vec::new();
    for b in batches {
        let cols = b
            .columns()
            .iter()
            .map(|c| column_cells(c.as_ref()))
            .collect::<anyhow::Result<Vec<_>>>()?;
        for r in 0..b.num_rows() {
            out.push(cols.iter().map(|c| c[r].clone()).collect());
        }
    }
    Ok(out)
}

/// One cell per row of `c`: `Null`, or `value(row)`.
fn each(c: &dyn Array, value: impl Fn(usize) -> Cell) -> Vec<Cell> {
    (0..c.len())
        .map(|i| if c.is_null(i) { Cell::Null } else { value(i) })
        .collect()
}

/// A column's cells: integers and floats as numbers, dates as text, other
/// numbers through Float64, anything else as text.
fn column_cells(c: &dyn Array) -> anyhow::Result<Vec<Cell>> {
    use arrow::datatypes::{Date32Type, Float64Type, Int32Type, Int64Type};
    Ok(match c.data_type() {
        DataType::Int64 => {
            let a = c.as_primitive::<Int64Type>();
            each(c, |i| Cell::Int(a.value(i)))
        }
        DataType::Int32 => {
            let a = c.as_primitive::<Int32Type>();
            each(c, |i| Cell::Int(a.value(i) as i64))
        }
        DataType::Float64 => {
            let a = c.as_primitive::<Float64Type>();
            each(c, |i| Cell::Float(a.value(i)))
        }
        DataType::Date32 => {
            let a = c.as_primitive::<Date32Type>();
            each(c, |i| {
                Cell::Text(
                    a.value_as_date(i)
                        .map(|d| d.to_string())
                        .unwrap_or_default(),
                )
            })
        }
        DataType::Decimal128(_, _)
        | DataType::Float32
        | DataType::Int8
        | DataType::Int16
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => {
            let f = arrow::compute::cast(c, &DataType::Float64)?;
            let a = f.as_primitive::<Float64Type>();
            let integral = c.data_type().is_integer();
            each(c, |i| {
                if integral {
                    Cell::Int(a.value(i) as i64)
                } else {
                    Cell::Float(a.value(i))
                }
            })
        }
        _ => {
            let s = arrow::compute::cast(c, &DataType::Utf8)?;
            let a = s.as_string::<i32>();
            each(c, |i| Cell::Text(a.value(i).to_string()))
        }
    })
}

fn num(c: &Cell) -> Option<f64> {
    match c {
        Cell::Int(i) => Some(*i as f64),
        Cell::Float(f) => Some(*f),
        _ => None,
    }
}

fn cell_eq(a: &Cell, b: &Cell) -> bool {
    match (a, b) {
        (Cell::Null, Cell::Null) => true,
        (Cell::Int(x), Cell::Int(y)) => x == y,
        (Cell::Text(x), Cell::Text(y)) => x.trim_end() == y.trim_end(),
        // DuckDB's side is rounded to 2 places: compare with that tolerance
        // (plus a relative one for large sums, summed in another order).
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => (x - y).abs() <= 0.01 + 1e-9 * x.abs().max(y.abs()),
            _ => false,
        },
    }
}

fn row_eq(a: &[Cell], b: &[Cell]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| cell_eq(x, y))
}

fn sort_key(r: &[Cell]) -> String {
    r.iter()
        .map(|c| match c {
            Cell::Null => "~".to_string(),
            Cell::Int(i) => format!("{i:020}"),
            Cell::Float(f) => format!("{:020.1}", f),
            Cell::Text(s) => s.clone(),
        })
        .collect::<Vec<_>>()
        .join("\u{1}")
}

/// Equal answers: in order where the query orders its output, as multisets
/// otherwise.
fn answers_equal(got: &[Vec<Cell>], want: &[Vec<Cell>], ordered: bool) -> bool {
    if got.len() != want.len() {
        return false;
    }
    if ordered {
        return got.iter().zip(want).all(|(a, b)| row_eq(a, b));
    }
    let mut g: Vec<&Vec<Cell>> = got.iter().collect();
    let mut w: Vec<&Vec<Cell>> = want.iter().collect();
    g.sort_by_key(|r| sort_key(r));
    w.sort_by_key(|r| sort_key(r));
    g.iter().zip(&w).all(|(a, b)| row_eq(a, b))
}

fn geomean(xs: &[f64]) -> f64 {
    (xs.iter().map(|x| x.ln()).sum::<f64>() / xs.len() as f64).exp()
}

async fn ingest(http: &reqwest::Client, url: &str, data: &Path) -> anyhow::Result<()> {
    for t in TABLES {
        let path = data.join(format!("{t}.parquet"));
        let file = tokio::fs::File::open(&path)
            .await
            .with_context(|| format!("opening {}", path.display()))?;
        let len = file.metadata().await?.len();
        let t0 = Instant::now();
        let r = http
            .post(format!("{url}/ingest/{t}?format=parquet"))
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(reqwest::Body::wrap_stream(
                tokio_util::io::ReaderStream::with_capacity(file, 1 << 20),
            ))
            .send()
            .await?;
        let status = r.status();
        let body = r.text().await?;
        if !status.is_success() {
            bail!("ingesting {t}: {status} {body}");
        }
        eprintln!(
            "ingested {t} ({} MB) in {:.1} s",
            len >> 20,
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

async fn run_query(
    http: &reqwest::Client,
    url: &str,
    sql: &str,
) -> anyhow::Result<Vec<RecordBatch>> {
    let r = http
        .post(format!("{url}/query/sql"))
        .json(&serde_json::json!({"sql": sql, "format": "arrow"}))
        .send()
        .await?;
    let status = r.status();
    let body = r.bytes().await?;
    if !status.is_success() {
        bail!("{status}: {}", String::from_utf8_lossy(&body));
    }
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}

/// Runs `peers_tpch.py`, returning per-engine per-query best times and the
/// DuckDB answers.
fn run_peers(a: &Args, answers: &Path) -> anyhow::Result<BTreeMap<String, Vec<f64>>> {
    let out = Command::new("python3")
        .arg(&a.peers)
        .arg(&a.data)
        .args(["--runs", &a.runs.to_string(), "--answers"])
        .arg(answers)
        .stderr(Stdio::inherit())
        .output()
        .context("running peers_tpch.py")?;
    if !out.status.success() {
        bail!("peers_tpch.py failed");
    }
    let mut times: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // engine=duckdb query=q1 best_s=0.1234
        let kv: BTreeMap<&str, &str> = line
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .collect();
        if let (Some(e), Some(_), Some(t)) = (kv.get("engine"), kv.get("query"), kv.get("best_s")) {
            times.entry(e.to_string()).or_default().push(t.parse()?);
        }
    }
    Ok(times)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let queries_dir = a.peers.parent().context("peers path")?.join("tpch");
    let server = Server::start(&a.lakehouse)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3600))
        .build()?;
    ingest(&http, &server.url, &a.data).await?;

    let answers_path =
        std::env::temp_dir().join(format!("tpch-answers-{}.json", std::process::id()));
    let peers = if a.skip_peers {
        None
    } else {
        Some(run_peers(&a, &answers_path)?)
    };
    let answers: Option<serde_json::Map<String, Value>> = match &peers {
        Some(_) => Some(serde_json::from_slice(&std::fs::read(&answers_path)?)?),
        None => None,
    };

    let mut ours = Vec::new();
    let mut equal = 0;
    for i in 1..=22 {
        let sql = std::fs::read_to_string(queries_dir.join(format!("q{i}.sql")))?;
        let mut best = f64::INFINITY;
        let mut result = Vec::new();
        for _ in 0..a.runs.max(1) {
            let t0 = Instant::now();
            result = run_query(&http, &server.url, &sql)
                .await
                .with_context(|| format!("q{i}"))?;
            best = best.min(t0.elapsed().as_secs_f64());
        }
        ours.push(best);
        let verdict = match &answers {
            Some(ans) => {
                let want: Vec<Vec<Cell>> = ans
                    .get(&format!("q{i}"))
                    .and_then(|v| v.as_array())
                    .context("answer missing")?
                    .iter()
                    .map(|r| {
                        r.as_array()
                            .map(|r| r.iter().map(cell_from_json).collect())
                            .unwrap_or_default()
                    })
                    .collect();
                let got = cells(&result)?;
                let ordered = sql.to_ascii_lowercase().contains("order by");
                if answers_equal(&got, &want, ordered) {
                    equal += 1;
                    "equal".to_string()
                } else {
                    format!(
                        "DIFFERENT (got {} rows, duckdb {}; first got {:?}, want {:?})",
                        got.len(),
                        want.len(),
                        got.first(),
                        want.first()
                    )
                }
            }
            None => "unchecked".to_string(),
        };
        let peer = |e: &str| {
            peers
                .as_ref()
                .and_then(|p| p.get(e))
                .and_then(|t| t.get(i - 1))
                .map(|t| format!("{t:.4}"))
                .unwrap_or_else(|| "-".to_string())
        };
        println!(
            "tpch q{i}: lakehouse {best:.4} s, duckdb {} s, datafusion-python {} s; answer {verdict}",
            peer("duckdb"),
            peer("datafusion-python")
        );
    }
    let gm = geomean(&ours);
    match &peers {
        Some(p) => {
            let d = geomean(p.get("duckdb").context("duckdb times")?);
            let f = geomean(
                p.get("datafusion-python")
                    .context("datafusion-python times")?,
            );
            println!(
                "tpch geomean: lakehouse {gm:.4} s, duckdb {d:.4} s ({:.2}x), datafusion-python {f:.4} s ({:.2}x); answers equal: {equal}/22",
                gm / d,
                gm / f
            );
        }
        None => println!("tpch geomean: lakehouse {gm:.4} s (peers skipped)"),
    }
    let _ = std::fs::remove_file(&answers_path);
    Ok(())
}
