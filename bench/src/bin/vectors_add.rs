//! Adding vectors through the HTTP API at the speed of the index: loads
//! `gen_vectors.py` data into a fresh `lakehouse serve` as JSON bodies and as
//! Arrow IPC bodies (the fast path, through `VectorClient::add_batch`), builds
//! the same vectors with the engine in-process, and times hnswlib's build
//! (same M, ef_construction and threads) in the same run. Each round uses a
//! fresh server; medians and ratios to hnswlib are printed at the end.
//!
//! ```text
//! vectors_add --lakehouse target/release/lakehouse --data bench/data/emb-384 \
//!   [--batch 10000] [--rounds 3] [--m 16] [--ef-construction 200] [--python python3]
//! ```
//! The time of an add-all starts before the first body is encoded and ends
//! when the last add is acknowledged (in the log and searchable).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::bail;
use clap::Parser;
use lakehouse_bench::vecdata::{Dataset as Data, hnswlib_build, load};
use lakehouse_bench::{Server, median};
use lakehouse_hnsw::{Index, Params};
use lakehouse_vectord::{Batch, IndexSpec, VectorClient, Vectors};

/// Adding vectors over HTTP (JSON and Arrow IPC bodies) vs the engine
/// in-process and hnswlib's build.
#[derive(Debug, Parser)]
#[command(name = "vectors_add")]
struct Args {
    /// The `lakehouse` binary to start (a release build).
    #[arg(long, value_name = "PATH", default_value = "target/release/lakehouse")]
    lakehouse: PathBuf,
    /// Directory of gen_vectors.py output (meta.json, base.f32).
    #[arg(long, value_name = "DIR", default_value = "bench/data/emb-384")]
    data: PathBuf,
    /// Vectors per add request.
    #[arg(long, default_value_t = 10_000)]
    batch: usize,
    /// Rounds (a fresh server each); medians are printed.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// HNSW M: links per node.
    #[arg(long, default_value_t = 16)]
    m: usize,
    /// HNSW ef_construction: candidate list size while building.
    #[arg(long, default_value_t = 200)]
    ef_construction: usize,
    /// The Python interpreter that runs the hnswlib build.
    #[arg(long, value_name = "PATH", default_value = "python3")]
    python: String,
}

/// What one add-all sends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Wire {
    Json,
    Arrow,
}

fn batch_of(d: &Data, range: std::ops::Range<usize>) -> Batch {
    let mut b = Batch::with_capacity(range.len(), d.dim);
    for i in range {
        b.push(i.to_string(), &d.base[i * d.dim..(i + 1) * d.dim], None);
    }
    b
}

/// A JSON add body, serialised straight from the slices (what a careful
/// client does; no `serde_json::Value` per number).
fn json_body(d: &Data, range: std::ops::Range<usize>) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Item<'a> {
        id: String,
        vector: &'a [f32],
    }
    #[derive(serde::Serialize)]
    struct Body<'a> {
        items: Vec<Item<'a>>,
    }
    let items = range
        .map(|i| Item {
            id: i.to_string(),
            vector: &d.base[i * d.dim..(i + 1) * d.dim],
        })
        .collect();
    serde_json::to_vec(&Body { items }).expect("serialises")
}

/// Seconds to add every vector to a new index over HTTP.
async fn add_all(a: &Args, d: &Data, wire: Wire) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(&a.lakehouse, dir.path(), &[])?;
    let client = VectorClient::new(&server.url);
    let spec = IndexSpec {
        name: "bench".into(),
        dim: d.dim,
        metric: d.metric,
        m: a.m,
        ef_construction: a.ef_construction,
        source: Default::default(),
    };
    client.create(spec).await?;
    let http = reqwest::Client::new();
    let url = format!("{}/vectors/indexes/bench/add", server.url);
    let t = Instant::now();
    for start in (0..d.n).step_by(a.batch) {
        let range = start..(start + a.batch).min(d.n);
        match wire {
            Wire::Arrow => {
                client.add_batch("bench", batch_of(d, range)).await?;
            }
            Wire::Json => {
                let r = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(json_body(d, range))
                    .send()
                    .await?;
                if !r.status().is_success() {
                    bail!("add: {}", r.text().await?);
                }
            }
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let info = client.get("bench").await?;
    anyhow::ensure!(info.count == d.n, "{} items, expected {}", info.count, d.n);
    Ok(secs)
}

/// Seconds for the engine alone to build the index in-process, one batch.
fn engine_build(a: &Args, d: &Data) -> anyhow::Result<f64> {
    let ix = Index::new(Params {
        dim: d.dim,
        metric: d.metric,
        m: a.m,
        ef_construction: a.ef_construction,
    })?;
    let items: Vec<(u64, &[f32])> = d
        .base
        .chunks_exact(d.dim)
        .enumerate()
        .map(|(i, v)| (i as u64, v))
        .collect();
    let t = Instant::now();
    ix.insert_batch(&items)?;
    Ok(t.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let d = load(&a.data)?;
    let label = format!(
        "{} x {} {:?}, m={} efc={}, batches of {}",
        d.n, d.dim, d.metric, a.m, a.ef_construction, a.batch
    );
    let (mut hnswlib, mut engine, mut json, mut arrow) = (vec![], vec![], vec![], vec![]);
    for round in 1..=a.rounds.max(1) {
        hnswlib.push(hnswlib_build(&a.python, &a.data, a.m, a.ef_construction)?);
        engine.push(engine_build(&a, &d)?);
        json.push(add_all(&a, &d, Wire::Json).await?);
        arrow.push(add_all(&a, &d, Wire::Arrow).await?);
        let h = hnswlib[round - 1];
        println!(
            "round={round} hnswlib_build_s={h:.2} engine_build_s={:.2} http_json_s={:.2} http_arrow_s={:.2}",
            engine[round - 1],
            json[round - 1],
            arrow[round - 1]
        );
    }
    let (h, e, j, r) = (median(hnswlib), median(engine), median(json), median(arrow));
    println!(
        "vectors add ({label}), medians of {} rounds: hnswlib build {h:.2} s; engine in-process {e:.2} s ({:.2}x); \
         HTTP JSON {j:.2} s ({:.2}x); HTTP Arrow {r:.2} s ({:.2}x hnswlib, {:.0} items/s)",
        a.rounds.max(1),
        e / h,
        j / h,
        r / h,
        d.n as f64 / r
    );
    Ok(())
}
