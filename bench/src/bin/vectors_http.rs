//! Vector search through the HTTP API: loads `gen_vectors.py` data (100k ×
//! 128 by default) into a running `lakehouse serve` in batches, then times
//! single searches one after another and prints p50 / p99 latency.
//!
//! Usage: `vectors_http --lakehouse target/release/lakehouse --data bench/data/ann-l2 [--ef 64] [--batch 5000]`

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use lakehouse_bench::Server;
use serde_json::{Value, json};

/// Vector search latency through the HTTP API (and the time to load the
/// vectors in batches).
#[derive(Debug, Parser)]
#[command(name = "vectors_http")]
struct Args {
    /// The `lakehouse` binary to start (a release build).
    #[arg(long, value_name = "PATH", default_value = "target/release/lakehouse")]
    lakehouse: PathBuf,
    /// Directory of gen_vectors.py output (meta.json, base.f32, queries.f32).
    #[arg(long, value_name = "DIR", default_value = "bench/data/ann-l2")]
    data: PathBuf,
    /// Search ef.
    #[arg(long, default_value_t = 64)]
    ef: usize,
    /// Vectors per add request while loading.
    #[arg(long, default_value_t = 5000)]
    batch: usize,
}

fn read_f32(path: &std::path::Path) -> anyhow::Result<Vec<f32>> {
    let b = std::fs::read(path)
        .with_context(|| format!("{} (run bench/ann.sh to generate)", path.display()))?;
    Ok(b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Args {
        lakehouse,
        data,
        ef,
        batch,
    } = Args::parse();
    let meta: Value = serde_json::from_slice(&std::fs::read(data.join("meta.json"))?)?;
    let (n, dim) = (
        meta["n"].as_u64().unwrap() as usize,
        meta["dim"].as_u64().unwrap() as usize,
    );
    let metric = meta["metric"].as_str().unwrap_or("l2").to_string();
    let base = read_f32(&data.join("base.f32"))?;
    let queries = read_f32(&data.join("queries.f32"))?;
    let dir = tempfile::tempdir()?;
    let server = Server::start(&lakehouse, dir.path(), &[])?;
    let http = reqwest::Client::new();
    let idx = format!("{}/vectors/indexes", server.url);
    let r = http
        .post(&idx)
        .json(&json!({"name": "bench", "dim": dim, "metric": metric, "m": 16, "ef_construction": 200}))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("create: {}", r.text().await?);
    }
    let t = Instant::now();
    for start in (0..n).step_by(batch) {
        let items: Vec<Value> = (start..(start + batch).min(n))
            .map(|i| json!({"id": i.to_string(), "vector": &base[i * dim..(i + 1) * dim]}))
            .collect();
        let r = http
            .post(format!("{idx}/bench/add"))
            .json(&json!({ "items": items }))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("add: {}", r.text().await?);
        }
    }
    let load = t.elapsed().as_secs_f64();
    let nq = queries.len() / dim;
    let mut lat = Vec::with_capacity(nq);
    for q in 0..nq {
        let body = json!({"vector": &queries[q * dim..(q + 1) * dim], "k": 10, "ef": ef});
        let t = Instant::now();
        let r = http
            .post(format!("{idx}/bench/search"))
            .json(&body)
            .send()
            .await?;
        let ok = r.status().is_success();
        let _ = r.bytes().await?;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        if !ok {
            bail!("search failed");
        }
    }
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let p = |q: f64| lat[((lat.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "vectors over HTTP ({n} x {dim}, {metric}, ef={ef}): load {load:.1} s ({:.0} items/s, batches of {batch}); search latency p50 {:.2} ms, p99 {:.2} ms over {nq} queries",
        n as f64 / load,
        p(0.5),
        p(0.99)
    );
    Ok(())
}
