//! Ingest benchmark: TPC-H SF1 `lineitem.csv` streamed through
//! `POST /ingest/lineitem?format=csv`, next to DuckDB `COPY` and pyarrow
//! (`../shared/bench/peers_ingest.py`) measured in the same run: MB/s of CSV
//! and the server's peak RSS. Medians of several runs.
//!
//! Usage: `bench/ingest.sh` (generates the data, builds release), or
//! `ingest --lakehouse target/release/lakehouse --csv lineitem.csv [--runs 3] [--peers PATH | --no-peers]`

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use lakehouse_bench::{Server, fields, median};

/// Ingest benchmark: a CSV file through `/ingest` vs DuckDB `COPY` and pyarrow.
#[derive(Debug, Parser)]
#[command(name = "ingest")]
struct Args {
    /// The `lakehouse` binary to start (a release build).
    #[arg(long, value_name = "PATH", default_value = "target/release/lakehouse")]
    lakehouse: PathBuf,
    /// The CSV file to ingest (TPC-H lineitem).
    #[arg(
        long,
        value_name = "PATH",
        default_value = "bench/data/tpch-csv/lineitem.csv"
    )]
    csv: PathBuf,
    /// Runs of each side; medians are printed.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The peers script (DuckDB and pyarrow), run with python3.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "../shared/bench/peers_ingest.py",
        overrides_with = "no_peers"
    )]
    peers: PathBuf,
    /// Measure the lakehouse only, not the peers.
    #[arg(long, overrides_with = "peers")]
    no_peers: bool,
    /// The server's data directory (emptied before each run, removed after).
    #[arg(long, value_name = "DIR", default_value = "bench/data/ingest-run")]
    dir: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let size = std::fs::metadata(&args.csv)
        .with_context(|| format!("{} (generate it with bench/ingest.sh)", args.csv.display()))?
        .len();
    let mb = size as f64 / 1e6;
    let http = reqwest::Client::new();
    let (mut rates, mut rss) = (vec![], vec![]);
    for run in 0..args.runs {
        let _ = std::fs::remove_dir_all(&args.dir);
        let server = Server::start(&args.lakehouse, &args.dir, &[])?;
        let file = tokio::fs::File::open(&args.csv).await?;
        let body =
            reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(file, 1 << 20));
        let t = Instant::now();
        let resp = http
            .post(format!("{}/ingest/lineitem?format=csv", server.url))
            .header("content-length", size)
            .body(body)
            .send()
            .await?;
        let status = resp.status();
        let text = resp.text().await?;
        let secs = t.elapsed().as_secs_f64();
        if !status.is_success() {
            bail!("ingest failed: {status} {text}");
        }
        let v: serde_json::Value = serde_json::from_str(&text)?;
        let peak = server.peak_rss_mib().unwrap_or(f64::NAN);
        eprintln!(
            "run {run}: {secs:.2} s, {:.0} MB/s, {} rows in {} objects, peak RSS {peak:.0} MiB",
            mb / secs,
            v["rows"],
            v["objects"].as_array().map_or(0, |o| o.len())
        );
        rates.push(mb / secs);
        rss.push(peak);
        drop(server);
    }
    let _ = std::fs::remove_dir_all(&args.dir);
    let (ours, our_rss) = (median(rates), median(rss));
    println!(
        "ingest lineitem.csv ({mb:.0} MB) via /ingest: lakehouse {ours:.0} MB/s, peak RSS {our_rss:.0} MiB  [median of {}]",
        args.runs
    );

    if args.no_peers {
        return Ok(());
    }
    let peers = &args.peers;
    let mut by_peer: std::collections::BTreeMap<String, (Vec<f64>, Vec<f64>)> = Default::default();
    for _ in 0..args.runs {
        let out = Command::new("python3").arg(peers).arg(&args.csv).output()?;
        if !out.status.success() {
            bail!(
                "{} failed: {}",
                peers.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let f = fields(line);
            if let (Some(p), Some(r), Some(m)) =
                (f.get("peer"), f.get("mb_per_s"), f.get("peak_rss_mib"))
            {
                let e = by_peer.entry(p.clone()).or_default();
                e.0.push(r.parse()?);
                e.1.push(m.parse()?);
            }
        }
    }
    for (peer, (r, m)) in by_peer {
        let (r, m) = (median(r), median(m));
        println!(
            "  {peer}: {r:.0} MB/s, peak RSS {m:.0} MiB; lakehouse/{peer} throughput ratio {:.2}, RSS ratio {:.2}",
            ours / r,
            our_rss / m
        );
    }
    Ok(())
}
