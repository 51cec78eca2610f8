//! Tables benchmark (issue 15): many small appends, then a selective and a
//! full-scan query before and after compaction, and start-up time with many
//! datasets × versions. The peer (`bench/tables_peer.py`: the Python
//! `deltalake` package writing the same appends, polars querying, delta-rs's
//! `optimize.compact()`) runs in the same invocation; ratios are peer time /
//! lakehouse time (above 1: we are faster).
//!
//! `tables --lakehouse target/release/lakehouse [--appends 2000] [--rows 1000] [--runs 5]`

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use futures::StreamExt;
use lakehouse_bench::{Server, fields, median};
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(name = "tables")]
struct Args {
    /// The release `lakehouse` binary.
    #[arg(long)]
    lakehouse: PathBuf,
    /// Appends before compaction.
    #[arg(long, default_value_t = 2000)]
    appends: usize,
    /// Rows per append.
    #[arg(long, default_value_t = 1000)]
    rows: usize,
    /// Runs of each query (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Datasets and versions each for the start-up measurement (0: skip).
    #[arg(long, default_value_t = 1000)]
    startup_datasets: usize,
    #[arg(long, default_value_t = 10)]
    startup_versions: usize,
    /// The peer script, run with python3.
    #[arg(long, default_value = "bench/tables_peer.py")]
    peers: PathBuf,
    /// Measure the lakehouse only.
    #[arg(long)]
    no_peers: bool,
}

fn csv(i: usize, rows: usize) -> String {
    let mut s = String::with_capacity(rows * 24 + 8);
    s.push_str("id,k,v\n");
    for x in i * rows..(i + 1) * rows {
        s.push_str(&format!(
            "{x},{},{:.1}\n",
            x % 100,
            (x % 1000) as f64 / 10.0
        ));
    }
    s
}

async fn post_ok(
    http: &reqwest::Client,
    url: String,
    body: reqwest::Body,
) -> anyhow::Result<Value> {
    let r = http.post(&url).body(body).send().await?;
    let status = r.status();
    let v: Value = r.json().await?;
    if !status.is_success() {
        bail!("{url}: {status} {v}");
    }
    Ok(v)
}

async fn sql(http: &reqwest::Client, url: &str, q: &str) -> anyhow::Result<Value> {
    let r = http
        .post(format!("{url}/query/sql"))
        .json(&json!({ "sql": q }))
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await?;
    if !status.is_success() {
        bail!("{q}: {status} {v}");
    }
    Ok(v)
}

/// Median seconds of `runs` runs of `q`, and its last answer.
async fn timed(
    http: &reqwest::Client,
    url: &str,
    q: &str,
    runs: usize,
) -> anyhow::Result<(f64, Value)> {
    let mut ts = Vec::with_capacity(runs);
    let mut last = Value::Null;
    for _ in 0..runs {
        let t = Instant::now();
        last = sql(http, url, q).await?;
        ts.push(t.elapsed().as_secs_f64());
    }
    Ok((median(ts), last))
}

async fn files(http: &reqwest::Client, url: &str) -> anyhow::Result<usize> {
    let m: Value = http
        .get(format!("{url}/catalog/manifest/t"))
        .send()
        .await?
        .json()
        .await?;
    Ok(m["objects"].as_array().map_or(0, Vec::len))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let server = Server::start(&args.lakehouse, dir.path(), &[])?;
    let http = reqwest::Client::new();
    let url = server.url.clone();

    let t = Instant::now();
    for i in 0..args.appends {
        post_ok(
            &http,
            format!("{url}/ingest/t?format=csv"),
            csv(i, args.rows).into(),
        )
        .await?;
    }
    let appends_s = t.elapsed().as_secs_f64();
    let probe = args.appends * args.rows / 2 + 7;
    let selective = format!("SELECT sum(v) AS s FROM t WHERE id = {probe}");
    let scan = "SELECT sum(s) AS s FROM (SELECT k, sum(v) AS s FROM t GROUP BY k)";
    let files_before = files(&http, &url).await?;
    let (sel_b, _) = timed(&http, &url, &selective, args.runs).await?;
    let (scan_b, sum_b) = timed(&http, &url, scan, args.runs).await?;
    let t = Instant::now();
    post_ok(
        &http,
        format!("{url}/catalog/compact/t"),
        reqwest::Body::from(""),
    )
    .await?;
    let compact_s = t.elapsed().as_secs_f64();
    let files_after = files(&http, &url).await?;
    let (sel_a, _) = timed(&http, &url, &selective, args.runs).await?;
    let (scan_a, sum_a) = timed(&http, &url, scan, args.runs).await?;
    if sum_a != sum_b {
        bail!("compaction changed the answer: {sum_b} → {sum_a}");
    }
    println!(
        "tables: {} appends × {} rows in {appends_s:.2} s ({:.0} appends/s); files {files_before} → {files_after} after compaction ({compact_s:.2} s)",
        args.appends,
        args.rows,
        args.appends as f64 / appends_s
    );
    println!(
        "  selective query {:.1} ms → {:.1} ms; full scan {:.1} ms → {:.1} ms  [median of {}]",
        sel_b * 1e3,
        sel_a * 1e3,
        scan_b * 1e3,
        scan_a * 1e3,
        args.runs
    );
    drop(server);

    if !args.no_peers {
        peer(&args, appends_s, [sel_b, scan_b, compact_s, sel_a, scan_a])?;
    }
    if args.startup_datasets > 0 {
        startup(&args).await?;
    }
    Ok(())
}

/// Runs the peer once and prints its figures and the ratios.
fn peer(args: &Args, appends_s: f64, ours: [f64; 5]) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("t");
    let out = Command::new("python3")
        .arg(&args.peers)
        .arg(&path)
        .arg(args.appends.to_string())
        .arg(args.rows.to_string())
        .output()
        .context("running the peer")?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            args.peers.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("peer="))
        .context("no peer line")?;
    let f = fields(line);
    let get = |k: &str| -> anyhow::Result<f64> {
        f.get(k)
            .with_context(|| format!("{k} missing"))?
            .parse()
            .map_err(Into::into)
    };
    let theirs = [
        get("selective_before_s")?,
        get("scan_before_s")?,
        get("compact_s")?,
        get("selective_after_s")?,
        get("scan_after_s")?,
    ];
    let names = [
        "selective before",
        "scan before",
        "compaction",
        "selective after",
        "scan after",
    ];
    println!(
        "  {}: appends {:.2} s (ratio {:.2}), files {} → {}",
        f["peer"],
        get("appends_s")?,
        get("appends_s")? / appends_s,
        f["files_before"],
        f["files_after"]
    );
    for ((n, o), p) in names.iter().zip(ours).zip(theirs) {
        println!(
            "    {n}: lakehouse {:.1} ms, peer {:.1} ms, ratio {:.2}",
            o * 1e3,
            p * 1e3,
            p / o
        );
    }
    Ok(())
}

/// Start-up with `startup_datasets` datasets of `startup_versions` versions:
/// the time from spawning the server to its first answer.
async fn startup(args: &Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    {
        let server = Server::start(&args.lakehouse, dir.path(), &[])?;
        let http = reqwest::Client::new();
        let url = server.url.clone();
        let jobs = (0..args.startup_datasets)
            .flat_map(|d| (0..args.startup_versions).map(move |v| (d, v)));
        // Versions of one dataset in order; datasets in parallel.
        let by_dataset: Vec<Vec<(usize, usize)>> = {
            let mut m = vec![Vec::new(); args.startup_datasets];
            for (d, v) in jobs {
                m[d].push((d, v));
            }
            m
        };
        let mut work = futures::stream::iter(by_dataset)
            .map(|versions| {
                let (http, url) = (http.clone(), url.clone());
                async move {
                    for (d, v) in versions {
                        let body = format!("id,v\n{v},{d}\n");
                        post_ok(
                            &http,
                            format!("{url}/ingest/s/d{d}?format=csv"),
                            body.into(),
                        )
                        .await?;
                    }
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(8);
        while let Some(r) = work.next().await {
            r?;
        }
    }
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let server = Server::start(&args.lakehouse, dir.path(), &[])?;
        times.push(t.elapsed().as_secs_f64());
        drop(server);
    }
    println!(
        "  start-up with {} datasets × {} versions: {:.2} s  [median of 3]",
        args.startup_datasets,
        args.startup_versions,
        median(times)
    );
    Ok(())
}
