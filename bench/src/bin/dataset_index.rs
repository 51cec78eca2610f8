//! An index that follows a dataset (issue 18), end to end on a release
//! `lakehouse serve`: `gen_vectors.py` data written as Parquet (`id`,
//! `grp` = id % 100, `embedding` as `fixed_size_list<float32>`), ingested
//! as the dataset `vecs`; then the time from `POST /vectors/indexes` with
//! `{"dataset": "vecs", "column": "embedding", …}` until its catch-up is
//! acknowledged (`POST …/sync`: every row read from Parquet and indexed),
//! next to hnswlib's build of the same vectors (same M, ef_construction,
//! every core) in the same run.
//!
//! Then SQL: `vector_search` joined with the dataset, one query at a time
//! over `POST /query/sql`, p50/p99 latency and recall@k against the exact
//! answer, next to DuckDB's exact search (`ORDER BY array_distance … LIMIT
//! k` over the same rows loaded into a DuckDB table, in process: no HTTP).
//!
//! ```text
//! dataset_index --lakehouse target/release/lakehouse --data bench/data/ann-1m \
//!   [--rounds 3] [--m 16] [--ef-construction 100] [--queries 200] [--python python3]
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use arrow::array::{ArrayRef, FixedSizeListArray, Float32Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use clap::Parser;
use lakehouse_bench::vecdata::{Dataset, hnswlib_build, load};
use lakehouse_bench::{Server, fields, median};
use serde_json::{Value, json};

/// A dataset-backed vector index: build vs hnswlib, SQL search latency vs DuckDB.
#[derive(Debug, Parser)]
#[command(name = "dataset_index")]
struct Args {
    /// The `lakehouse` binary to start (a release build).
    #[arg(long, value_name = "PATH", default_value = "target/release/lakehouse")]
    lakehouse: PathBuf,
    /// Directory of gen_vectors.py output (meta.json, base.f32, queries.f32, gt.i32).
    #[arg(long, value_name = "DIR", default_value = "bench/data/ann-1m")]
    data: PathBuf,
    /// Rounds of the build (a fresh server each); medians are printed.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// HNSW M: links per node.
    #[arg(long, default_value_t = 16)]
    m: usize,
    /// HNSW ef_construction: candidate list size while building.
    #[arg(long, default_value_t = 100)]
    ef_construction: usize,
    /// The `ef` of the SQL searches (`vector_search`'s 5th argument); the
    /// index's default (64) when not given. Repeat it to time several.
    #[arg(long)]
    ef: Vec<usize>,
    /// SQL queries timed (taken from queries.f32, cycling).
    #[arg(long, default_value_t = 200)]
    queries: usize,
    /// Rows per Parquet file ingested.
    #[arg(long, default_value_t = 100_000)]
    rows_per_file: usize,
    /// The Python interpreter with numpy, hnswlib and duckdb.
    #[arg(long, value_name = "PATH", default_value = "python3")]
    python: String,
}

/// Writes the base vectors as Parquet files of `rows` rows under `dir`.
fn write_parquet(d: &Dataset, dir: &Path, rows: usize) -> anyhow::Result<Vec<PathBuf>> {
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("grp", DataType::Int64, false),
        Field::new(
            "embedding",
            DataType::FixedSizeList(item.clone(), d.dim as i32),
            false,
        ),
    ]));
    let mut files = Vec::new();
    for (part, start) in (0..d.n).step_by(rows).enumerate() {
        let end = (start + rows).min(d.n);
        let ids: Int64Array = (start as i64..end as i64).collect();
        let grp: Int64Array = (start as i64..end as i64).map(|i| i % 100).collect();
        let values = Float32Array::from(d.base[start * d.dim..end * d.dim].to_vec());
        let vectors = FixedSizeListArray::new(item.clone(), d.dim as i32, Arc::new(values), None);
        let columns: Vec<ArrayRef> = vec![Arc::new(ids), Arc::new(grp), Arc::new(vectors)];
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        let path = dir.join(format!("part-{part:03}.parquet"));
        let mut w = parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(&path)?,
            schema.clone(),
            None,
        )?;
        w.write(&batch)?;
        w.close()?;
        files.push(path);
    }
    Ok(files)
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> anyhow::Result<Value> {
    let r = http.post(&url).json(&body).send().await?;
    let s = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    ensure!(s.is_success(), "POST {url}: {s} {v}");
    Ok(v)
}

/// A fresh server with the dataset ingested (not timed).
async fn server_with_dataset(
    a: &Args,
    files: &[PathBuf],
) -> anyhow::Result<(tempfile::TempDir, Server)> {
    let dir = tempfile::tempdir()?;
    let env = [
        ("LAKEHOUSE__VECTORD__SYNC_INTERVAL_MS", "0"),
        ("LAKEHOUSE__QUERYD__PG_BIND", "off"),
        ("LAKEHOUSE__QUERYD__FLIGHT_BIND", "off"),
    ];
    let server = Server::start(&a.lakehouse, dir.path(), &env)?;
    let http = reqwest::Client::new();
    for f in files {
        let r = http
            .post(format!("{}/ingest/vecs?format=parquet", server.url))
            .body(tokio::fs::read(f).await?)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("ingest {}: {}", f.display(), r.text().await?);
        }
    }
    Ok((dir, server))
}

/// Seconds from the create request until the index's catch-up (every row
/// of the dataset read and indexed) is acknowledged.
async fn build(a: &Args, d: &Dataset, server: &Server) -> anyhow::Result<f64> {
    let http = reqwest::Client::new();
    let spec = json!({"name": "vidx", "metric": d.metric.to_string(), "m": a.m,
        "ef_construction": a.ef_construction, "dataset": "vecs", "column": "embedding",
        "id_column": "id", "metadata_columns": ["grp"]});
    let t = Instant::now();
    post(&http, format!("{}/vectors/indexes", server.url), spec).await?;
    let info = post(
        &http,
        format!("{}/vectors/indexes/vidx/sync", server.url),
        json!({}),
    )
    .await?;
    let secs = t.elapsed().as_secs_f64();
    ensure!(
        info["count"] == d.n,
        "the index has {} items, expected {}",
        info["count"],
        d.n
    );
    Ok(secs)
}

fn vector_literal(v: &[f32]) -> String {
    let parts: Vec<String> = v.iter().map(|x| format!("{x}")).collect();
    format!("[{}]", parts.join(","))
}

/// The SQL join's latency per query (ms, sorted) and its recall@k.
async fn sql_latency(
    a: &Args,
    d: &Dataset,
    server: &Server,
    ef: Option<usize>,
) -> anyhow::Result<(Vec<f64>, f64)> {
    let http = reqwest::Client::new();
    let (mut ms, mut found) = (Vec::new(), 0usize);
    let ef = ef.map(|e| format!(", {e}")).unwrap_or_default();
    for i in 0..a.queries {
        let q = i % d.nq;
        let sql = format!(
            "SELECT d.id, d.grp, v.distance FROM vector_search('vidx', {}, {}{ef}) v \
             JOIN vecs d USING (id) ORDER BY v.distance",
            vector_literal(&d.queries[q * d.dim..(q + 1) * d.dim]),
            d.k
        );
        let t = Instant::now();
        let rows = post(
            &http,
            format!("{}/query/sql", server.url),
            json!({"sql": sql}),
        )
        .await?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        let rows = rows.as_array().context("rows")?;
        ensure!(rows.len() == d.k, "{} rows, expected {}", rows.len(), d.k);
        let truth = &d.gt[q * d.k..(q + 1) * d.k];
        found += rows
            .iter()
            .filter(|r| r["id"].as_u64().is_some_and(|id| truth.contains(&id)))
            .count();
    }
    ms.sort_by(f64::total_cmp);
    Ok((ms, found as f64 / (a.queries * d.k) as f64))
}

/// DuckDB's exact search over the same rows: p50 and p99 in ms.
fn duckdb_latency(a: &Args, d: &Dataset, parquet_dir: &Path) -> anyhow::Result<(f64, f64)> {
    let script = r#"
import os, sys, time, duckdb, numpy as np
pq, data_dir, n_q, k, dim, nq = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
queries = np.fromfile(os.path.join(data_dir, "queries.f32"), dtype="<f4").reshape(nq, dim)
con = duckdb.connect()
con.execute(f"CREATE TABLE vecs AS SELECT id, grp, embedding::FLOAT[{dim}] AS embedding FROM read_parquet('{pq}/*.parquet')")
sql = f"SELECT id, grp, array_distance(embedding, $1::FLOAT[{dim}]) AS distance FROM vecs ORDER BY distance LIMIT {k}"
ms = []
for i in range(n_q):
    t = time.perf_counter(); rows = con.execute(sql, [queries[i % nq].tolist()]).fetchall(); ms.append((time.perf_counter() - t) * 1e3)
    assert len(rows) == k
ms.sort()
print(f"p50={ms[len(ms) // 2]} p99={ms[min(len(ms) - 1, len(ms) * 99 // 100)]}")
"#;
    let out = std::process::Command::new(&a.python)
        .arg("-c")
        .arg(script)
        .arg(parquet_dir)
        .arg(&a.data)
        .args([a.queries.min(50), d.k, d.dim, d.nq].map(|x| x.to_string()))
        .output()
        .with_context(|| format!("running {}", a.python))?;
    if !out.status.success() {
        bail!("duckdb: {}", String::from_utf8_lossy(&out.stderr));
    }
    let f = fields(String::from_utf8(out.stdout)?.trim());
    let get = |k: &str| -> anyhow::Result<f64> { Ok(f.get(k).context("duckdb output")?.parse()?) };
    Ok((get("p50")?, get("p99")?))
}

fn percentile(sorted: &[f64], p: usize) -> f64 {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let d = load(&a.data)?;
    let parquet_dir = tempfile::tempdir()?;
    let files = write_parquet(&d, parquet_dir.path(), a.rows_per_file)?;
    let label = format!(
        "{} x {} {}, m={} efc={}",
        d.n, d.dim, d.metric, a.m, a.ef_construction
    );
    let (mut ours, mut peer) = (Vec::new(), Vec::new());
    let mut last = None;
    for round in 1..=a.rounds.max(1) {
        drop(last.take()); // the previous round's server stops before this one starts
        peer.push(hnswlib_build(&a.python, &a.data, a.m, a.ef_construction)?);
        let (dir, server) = server_with_dataset(&a, &files).await?;
        ours.push(build(&a, &d, &server).await?);
        println!(
            "round={round} hnswlib_build_s={:.2} dataset_index_build_s={:.2}",
            peer[round - 1],
            ours[round - 1]
        );
        last = Some((dir, server));
    }
    let (o, p) = (median(ours), median(peer));
    println!(
        "dataset index build ({label}), medians of {} rounds: lakehouse {o:.2} s (Parquet read + index), \
         hnswlib {p:.2} s (in-memory numpy), ratio {:.2}x hnswlib's time",
        a.rounds.max(1),
        o / p
    );
    let (_dir, server) = last.context("no round")?;
    let (dp50, dp99) = duckdb_latency(&a, &d, parquet_dir.path())?;
    let efs: Vec<Option<usize>> = match a.ef.is_empty() {
        true => vec![None],
        false => a.ef.iter().map(|&e| Some(e)).collect(),
    };
    for ef in efs {
        let (ms, recall) = sql_latency(&a, &d, &server, ef).await?;
        let (p50, p99) = (percentile(&ms, 50), percentile(&ms, 99));
        let ef = ef.map_or("default".to_string(), |e| e.to_string());
        println!(
            "sql vector_search join (k={}, ef={ef}, {} queries over HTTP): p50 {p50:.1} ms p99 {p99:.1} ms recall@{} {recall:.3}; \
             duckdb exact ORDER BY array_distance in process: p50 {dp50:.1} ms p99 {dp99:.1} ms; \
             p50 ratio {:.3}x duckdb's time",
            d.k,
            a.queries,
            d.k,
            p50 / dp50
        );
    }
    Ok(())
}
