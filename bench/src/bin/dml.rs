//! SQL write statements on TPC-H SF1 `lineitem`: a DELETE of ~1 % of the rows
//! by an `l_orderkey` range (the data is in `l_orderkey` order, so both
//! engines can skip what cannot match by min/max statistics) and an UPDATE of
//! one column on ~10 % of the rows (`l_shipdate` before a date), through
//! `POST /query/sql`, next to DuckDB (`bench/dml_peer.py`) doing the same
//! statements on its own database file loaded from the same Parquet file.
//!
//! Every run starts from a fresh copy: a new data dir, a new server and
//! `POST /ingest/lineitem?format=parquet` for the lakehouse; a new database
//! file for DuckDB. Only the statement is timed (for the lakehouse: the HTTP
//! round trip of its one-row answer). Both engines' changed-row counts and a
//! check query's answer after the statement must agree. Ratios are
//! lakehouse time / DuckDB time (below 1: the lakehouse is faster).
//!
//! Usage: `bench/dml.sh [--runs 3]`, or
//! `dml --lakehouse target/release/lakehouse --data bench/data/tpch-sf1
//!      --peers bench/dml_peer.py [--runs 3] [--only delete|update] [--no-peers]`

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use lakehouse_bench::{Server, fields, median};
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(name = "dml")]
struct Args {
    /// The release `lakehouse` binary.
    #[arg(long, default_value = "target/release/lakehouse")]
    lakehouse: PathBuf,
    /// Directory holding TPC-H `lineitem.parquet` (tpchgen-cli, SF1).
    #[arg(long, default_value = "bench/data/tpch-sf1")]
    data: PathBuf,
    /// The DuckDB peer script, run with python3.
    #[arg(long, default_value = "bench/dml_peer.py")]
    peers: PathBuf,
    /// Runs of each statement, each on a fresh copy (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Run only this statement: `delete` or `update`.
    #[arg(long)]
    only: Option<String>,
    /// Measure the lakehouse only.
    #[arg(long)]
    no_peers: bool,
}

/// One timed statement and the query that checks its effect afterwards.
struct Statement {
    name: &'static str,
    sql: &'static str,
    /// The answer column holding the changed-row count.
    count: &'static str,
    /// One integer, compared between the engines after the statement.
    check: &'static str,
}

const STATEMENTS: [Statement; 2] = [
    Statement {
        name: "delete",
        sql: "DELETE FROM lineitem WHERE l_orderkey BETWEEN 3000001 AND 3060000",
        count: "rows_deleted",
        check: "SELECT count(*) AS c FROM lineitem",
    },
    Statement {
        name: "update",
        sql: "UPDATE lineitem SET l_discount = l_discount + 0.01 WHERE l_shipdate < DATE '1992-11-01'",
        count: "rows_updated",
        check: "SELECT CAST(sum(l_discount) * 100 AS BIGINT) AS c FROM lineitem",
    },
];

/// One run of one statement by one engine.
#[derive(Debug, Clone)]
struct Run {
    /// Ingest (lakehouse) or load + checkpoint (DuckDB), seconds.
    load_s: f64,
    /// The statement alone, seconds.
    stmt_s: f64,
    /// Rows the statement deleted or updated.
    rows: u64,
    /// The check query's answer after the statement.
    check: i64,
    /// Peak RSS during the statement, MiB (the peak is reset just before).
    peak_rss_mib: f64,
    /// Extra figures for the run line.
    note: String,
}

/// Lines of `/proc/<pid>/status` value in MiB (`VmRSS`, `VmHWM`).
fn proc_mib(pid: u32, key: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Best effort: resets the process's peak RSS (VmHWM) to its current RSS.
fn reset_peak_rss(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

async fn ingest(http: &reqwest::Client, url: &str, parquet: &Path) -> anyhow::Result<f64> {
    let file = tokio::fs::File::open(parquet)
        .await
        .with_context(|| format!("opening {}", parquet.display()))?;
    let len = file.metadata().await?.len();
    let t = Instant::now();
    let r = http
        .post(format!("{url}/ingest/lineitem?format=parquet"))
        .header(reqwest::header::CONTENT_LENGTH, len)
        .body(reqwest::Body::wrap_stream(
            tokio_util::io::ReaderStream::with_capacity(file, 1 << 20),
        ))
        .send()
        .await?;
    let status = r.status();
    let body = r.text().await?;
    if !status.is_success() {
        bail!("ingesting lineitem: {status} {body}");
    }
    Ok(t.elapsed().as_secs_f64())
}

/// The first row of `q`'s JSON answer; the error answer on failure.
async fn first_row(http: &reqwest::Client, url: &str, q: &str) -> anyhow::Result<Value> {
    let r = http
        .post(format!("{url}/query/sql"))
        .json(&json!({ "sql": q, "format": "json" }))
        .send()
        .await?;
    let status = r.status();
    let body = r.text().await?;
    if !status.is_success() {
        bail!("{q}: {status} {body}");
    }
    let v: Value = serde_json::from_str(&body).with_context(|| format!("{q}: answer {body}"))?;
    v.get(0)
        .cloned()
        .with_context(|| format!("{q}: no row in {body}"))
}

fn as_i64(v: &Value, key: &str) -> anyhow::Result<i64> {
    match &v[key] {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .with_context(|| format!("{key} missing or not an integer in {v}"))
}

/// One lakehouse run: fresh data dir and server, ingest, the statement.
async fn lakehouse_run(a: &Args, s: &Statement) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(&a.lakehouse, dir.path(), &[])?;
    let pid = server.child.id();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3600))
        .build()?;
    let url = server.url.clone();
    let load_s = ingest(&http, &url, &a.data.join("lineitem.parquet")).await?;
    let rss_before = proc_mib(pid, "VmRSS:").unwrap_or(f64::NAN);
    reset_peak_rss(pid);
    let t = Instant::now();
    let answer = first_row(&http, &url, s.sql).await?;
    let stmt_s = t.elapsed().as_secs_f64();
    let peak_rss_mib = proc_mib(pid, "VmHWM:").unwrap_or(f64::NAN);
    let rows = as_i64(&answer, s.count)? as u64;
    let check = as_i64(&first_row(&http, &url, s.check).await?, "c")?;
    let objects = objects(&http, &url).await.unwrap_or(0);
    Ok(Run {
        load_s,
        stmt_s,
        rows,
        check,
        peak_rss_mib,
        note: format!(
            "version {}, RSS before {rss_before:.0} MiB, {objects} objects after",
            answer["version"]
        ),
    })
}

/// How many data objects the dataset's manifest lists.
async fn objects(http: &reqwest::Client, url: &str) -> anyhow::Result<usize> {
    let m: Value = http
        .get(format!("{url}/catalog/manifest/lineitem"))
        .send()
        .await?
        .json()
        .await?;
    Ok(m["objects"].as_array().map_or(0, Vec::len))
}

/// All DuckDB runs of `s`, by the peer script.
fn peer_runs(a: &Args, s: &Statement) -> anyhow::Result<Vec<Run>> {
    let dir = tempfile::tempdir()?;
    let out = Command::new("python3")
        .arg(&a.peers)
        .arg(a.data.join("lineitem.parquet"))
        .arg(dir.path().join("duckdb"))
        .args(["--sql", s.sql, "--check", s.check])
        .args(["--runs", &a.runs.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .context("running the peer")?;
    if !out.status.success() {
        bail!("{} failed", a.peers.display());
    }
    let mut runs = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if !line.starts_with("peer=") {
            continue;
        }
        let f = fields(line);
        let get = |k: &str| -> anyhow::Result<&String> {
            f.get(k).with_context(|| format!("{k} missing in {line:?}"))
        };
        runs.push(Run {
            load_s: get("load_s")?.parse()?,
            stmt_s: get("stmt_s")?.parse()?,
            rows: get("rows")?.parse()?,
            check: get("check")?.parse()?,
            peak_rss_mib: get("peak_rss_mib")?.parse()?,
            note: format!("checkpoint after it {} s", get("checkpoint_s")?),
        });
    }
    if runs.len() != a.runs {
        bail!("the peer printed {} runs, not {}", runs.len(), a.runs);
    }
    Ok(runs)
}

/// Prints the runs and medians of `s`; the mismatches between the engines
/// (an empty `ours`: the lakehouse failed; an empty `theirs`: no peer).
fn report(s: &Statement, total: u64, ours: &[Run], theirs: &[Run]) -> Vec<String> {
    let mut problems = Vec::new();
    println!("dml {}: {}", s.name, s.sql);
    let engines = [("lakehouse", ours), ("duckdb", theirs)];
    for (engine, runs) in engines {
        for (i, r) in runs.iter().enumerate() {
            println!(
                "  {engine} run {}: {:.4} s, {} rows ({:.2} % of {total}), check {}, peak RSS {:.0} MiB; load {:.1} s, {}",
                i + 1,
                r.stmt_s,
                r.rows,
                100.0 * r.rows as f64 / total as f64,
                r.check,
                r.peak_rss_mib,
                r.load_s,
                r.note
            );
        }
    }
    let all: Vec<&Run> = ours.iter().chain(theirs).collect();
    if let Some(first) = all.first()
        && let Some(r) = all
            .iter()
            .find(|r| (r.rows, r.check) != (first.rows, first.check))
    {
        problems.push(format!(
            "{}: runs disagree: {} rows / check {} vs {} rows / check {}",
            s.name, first.rows, first.check, r.rows, r.check
        ));
    }
    let med = |runs: &[Run]| median(runs.iter().map(|r| r.stmt_s).collect());
    match (ours.is_empty(), theirs.is_empty()) {
        (false, false) => println!(
            "  median of {}: lakehouse {:.4} s, duckdb {:.4} s, ratio lakehouse/duckdb {:.2} (time; below 1: lakehouse faster)",
            ours.len(),
            med(ours),
            med(theirs),
            med(ours) / med(theirs)
        ),
        (false, true) => println!(
            "  median of {}: lakehouse {:.4} s (peer skipped)",
            ours.len(),
            med(ours)
        ),
        (true, false) => println!(
            "  median of {}: lakehouse FAILED, duckdb {:.4} s",
            theirs.len(),
            med(theirs)
        ),
        (true, true) => println!("  no successful run"),
    }
    problems
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    anyhow::ensure!(a.runs > 0, "--runs must be at least 1");
    let parquet = a.data.join("lineitem.parquet");
    let total = parquet::file::reader::SerializedFileReader::new(
        std::fs::File::open(&parquet).with_context(|| format!("opening {}", parquet.display()))?,
    )
    .map(|r| {
        parquet::file::reader::FileReader::metadata(&r)
            .file_metadata()
            .num_rows()
    })? as u64;
    let mut problems = Vec::new();
    for s in STATEMENTS
        .iter()
        .filter(|s| a.only.as_deref().is_none_or(|o| o == s.name))
    {
        let mut ours = Vec::with_capacity(a.runs);
        for i in 0..a.runs {
            match lakehouse_run(&a, s).await {
                Ok(r) => {
                    eprintln!("lakehouse {} run {}: {:.4} s", s.name, i + 1, r.stmt_s);
                    ours.push(r);
                }
                Err(e) => {
                    // Reported, then the peer still runs; no further runs.
                    println!("dml {}: lakehouse run {} FAILED: {e:#}", s.name, i + 1);
                    let short: String = format!("{e:#}").chars().take(300).collect();
                    problems.push(format!("{}: the lakehouse failed: {short}…", s.name));
                    ours.clear();
                    break;
                }
            }
        }
        let theirs = if a.no_peers {
            Vec::new()
        } else {
            peer_runs(&a, s)?
        };
        problems.extend(report(s, total, &ours, &theirs));
    }
    if !problems.is_empty() {
        bail!("problems:\n{}", problems.join("\n"));
    }
    Ok(())
}
