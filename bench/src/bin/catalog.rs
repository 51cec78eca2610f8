//! catalogd benchmark: registers per second (in-process and over HTTP) and
//! rehydrate time for 10 000 manifests on the local-filesystem backend.
//!
//! `cargo run --release -p lakehouse-bench --bin catalog [-- --runs 5]`
//!
//! Knobs (flag, or env when the flag is absent): `--runs` /
//! `CATALOG_BENCH_RUNS` (5), `--registers` / `CATALOG_BENCH_REGISTERS`
//! (2000), `--manifests` / `CATALOG_BENCH_MANIFESTS` (10000), `--clients` /
//! `CATALOG_BENCH_CLIENTS` (16, HTTP concurrency). Every figure is the median
//! of the runs; each register run starts from an empty catalog on a fresh
//! directory whose objects were written beforehand (a register checks that
//! each object exists, has its size and starts and ends like Parquet — a HEAD
//! and ranged GETs of its first 4 and last 64 KiB per new object, its footer
//! decoded — and commits the dataset's table version).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use futures::StreamExt;
use lakehouse_catalogd::{Catalog, CatalogClient, ObjectRef, RegisterRequest, Registry};
use lakehouse_common::Metrics;
use lakehouse_common::server::{self, ServerOptions};
use lakehouse_storaged::Backend;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// catalogd benchmark: registers per second (in-process and over HTTP) and
/// rehydrate time of many manifests, on the local-filesystem backend.
#[derive(Debug, Parser)]
#[command(name = "catalog")]
struct Args {
    /// Runs per figure (each figure is the median of the runs).
    #[arg(long, env = "CATALOG_BENCH_RUNS", default_value_t = 5)]
    runs: usize,
    /// Registers per run.
    #[arg(long, env = "CATALOG_BENCH_REGISTERS", default_value_t = 2000)]
    registers: usize,
    /// Manifests written, then rehydrated.
    #[arg(long, env = "CATALOG_BENCH_MANIFESTS", default_value_t = 10_000)]
    manifests: usize,
    /// Concurrent HTTP clients for the concurrent register run.
    #[arg(long, env = "CATALOG_BENCH_CLIENTS", default_value_t = 16)]
    clients: usize,
}

/// A small real Parquet file (one Int64 column, one row): a register
/// decodes each new object's footer, for the statistics its table version
/// records.
fn object() -> &'static bytes::Bytes {
    static OBJECT: std::sync::OnceLock<bytes::Bytes> = std::sync::OnceLock::new();
    OBJECT.get_or_init(|| {
        use arrow::array::{Int64Array, RecordBatch};
        use arrow::datatypes::{DataType, Field, Schema};
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1]))])
            .expect("a batch");
        let mut buf = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, schema, None).expect("a writer");
        w.write(&batch).expect("a write");
        w.close().expect("a footer");
        bytes::Bytes::from(buf)
    })
}

/// A register like ingest makes: a few objects per dataset.
fn request(i: usize) -> RegisterRequest {
    let name = format!("bench/ds-{i:06}");
    let objects = (0..4)
        .map(|p| ObjectRef {
            key: format!("datasets/{name}/part-{p}.parquet"),
            size: object().len() as u64,
            row_count: 1_000_000,
        })
        .collect();
    RegisterRequest::new(name, "sha256:0123456789abcdef", objects)
}

/// Writes the objects of the first `n` requests.
async fn put_objects(store: &Arc<dyn ObjectStore>, n: usize) -> anyhow::Result<()> {
    let keys: Vec<String> = (0..n)
        .flat_map(|i| request(i).objects.into_iter().map(|o| o.key))
        .collect();
    let mut puts = futures::stream::iter(keys)
        .map(|k| {
            let store = store.clone();
            async move {
                store
                    .put(
                        &object_store::path::Path::from(k.as_str()),
                        PutPayload::from(object().clone()),
                    )
                    .await
            }
        })
        .buffer_unordered(32);
    while let Some(r) = puts.next().await {
        r.context("writing an object")?;
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn fs_store(dir: &std::path::Path) -> anyhow::Result<Arc<dyn ObjectStore>> {
    Ok(Backend::fs(dir)
        .await
        .context("opening the fs backend")?
        .store)
}

/// Registers `n` datasets with `clients` concurrent callers; returns registers/s.
async fn run_registers(catalog: Arc<dyn Catalog>, n: usize, clients: usize) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut results = futures::stream::iter(0..n)
        .map(|i| {
            let c = catalog.clone();
            async move { c.register(request(i)).await }
        })
        .buffer_unordered(clients);
    while let Some(r) = results.next().await {
        r.context("register")?;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Serves a registry over HTTP (with the standard middleware) on 127.0.0.1:0.
async fn serve(registry: Registry) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let app = server::finish_router(
        lakehouse_catalogd::http::router(Arc::new(registry)),
        Metrics::new(),
        Vec::new(),
        &ServerOptions::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{addr}"), task))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runs = args.runs.max(1);
    let registers = args.registers.max(1);
    let manifests = args.manifests;
    let clients = args.clients.max(1);
    println!(
        "catalog bench: {runs} runs, {registers} registers per run, {manifests} manifests, fs backend"
    );

    // In-process: the registry called directly, one caller at a time.
    let mut inproc = Vec::new();
    for _ in 0..runs {
        let dir = tempfile::tempdir()?;
        let store = fs_store(dir.path()).await?;
        put_objects(&store, registers).await?;
        let registry = Registry::empty(store);
        inproc.push(run_registers(Arc::new(registry), registers, 1).await?);
    }
    println!("catalog register (in-process): {:.0}/s", median(inproc));

    // HTTP: CatalogClient → axum → registry, sequential and concurrent.
    for conc in [1, clients] {
        let mut rates = Vec::new();
        for _ in 0..runs {
            let dir = tempfile::tempdir()?;
            let store = fs_store(dir.path()).await?;
            put_objects(&store, registers).await?;
            let registry = Registry::empty(store);
            let (url, task) = serve(registry).await?;
            let client: Arc<dyn Catalog> = Arc::new(CatalogClient::new(&url));
            rates.push(run_registers(client, registers, conc).await?);
            task.abort();
        }
        println!(
            "catalog register (HTTP, {conc} client{}): {:.0}/s",
            if conc == 1 { "" } else { "s" },
            median(rates)
        );
    }

    // Rehydrate: write the manifests once, then time Registry::open.
    let dir = tempfile::tempdir()?;
    let setup = Instant::now();
    {
        let store = fs_store(dir.path()).await?;
        put_objects(&store, manifests).await?;
        let registry = Registry::empty(store);
        run_registers(Arc::new(registry), manifests, 1).await?;
    }
    println!(
        "  (wrote {manifests} manifests in {:.2} s)",
        setup.elapsed().as_secs_f64()
    );
    let mut times = Vec::new();
    for _ in 0..runs {
        let store = fs_store(dir.path()).await?;
        let start = Instant::now();
        let registry = Registry::open(store).await.context("rehydrate")?;
        let took = start.elapsed();
        anyhow::ensure!(
            registry.len() == manifests,
            "rehydrated {} manifests, expected {manifests}",
            registry.len()
        );
        times.push(took.as_secs_f64());
    }
    let t = median(times);
    println!(
        "catalog rehydrate {manifests} manifests: {t:.3} s (goal < 2 s){}",
        if Duration::from_secs_f64(t) < Duration::from_secs(2) {
            ""
        } else {
            "  ** GOAL MISSED **"
        }
    );
    Ok(())
}
