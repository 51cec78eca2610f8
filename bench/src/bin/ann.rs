//! ANN benchmark of the `lakehouse-hnsw` engine, in-process, on `gen_vectors.py`
//! data; prints one line per ef in the shape of `peers_ann.py` so the two compare
//! directly.
//!
//! ```text
//! ann --data DIR [--m 16] [--ef-construction 200] [--efs 16,32,64,128,256] [--threads 1]
//! ```
//! The build uses every core; searches run on `--threads` threads (queries split
//! between them). Row i of `base.f32` is inserted under key i.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use lakehouse_bench::vecdata::{Dataset, load};
use lakehouse_hnsw::{Index, Params};

/// ANN benchmark of the lakehouse HNSW engine, in-process, on gen_vectors.py
/// data; one line per ef, in the shape of peers_ann.py.
#[derive(Debug, Parser)]
#[command(name = "ann")]
struct Args {
    /// Directory of gen_vectors.py output (meta.json, base.f32, queries.f32, gt.i32).
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// HNSW M: links per node.
    #[arg(long, default_value_t = 16)]
    m: usize,
    /// HNSW ef_construction: candidate list size while building.
    #[arg(long, default_value_t = 200)]
    ef_construction: usize,
    /// Search ef values to measure, comma-separated (one output line each).
    #[arg(long, value_delimiter = ',', default_value = "16,32,64,128,256")]
    efs: Vec<usize>,
    /// Search threads (queries split between them); the build uses every core.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// The keys of the `k` nearest of each query, on `threads` threads.
fn search_all(index: &Index, d: &Dataset, ef: usize, threads: usize) -> Result<Vec<Vec<u64>>> {
    let (dim, k) = (d.dim, d.k);
    let search_chunk = |chunk: &[f32]| {
        chunk
            .chunks_exact(dim)
            .map(|q| {
                index
                    .search(q, k, ef)
                    .map(|r| r.iter().map(|h| h.key).collect())
            })
            .collect::<Result<Vec<Vec<u64>>, _>>()
    };
    if threads <= 1 {
        return Ok(search_chunk(&d.queries)?);
    }
    let per = d.nq.div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = d
            .queries
            .chunks(per * dim)
            .map(|chunk| s.spawn(move || search_chunk(chunk)))
            .collect();
        let mut all = Vec::with_capacity(d.nq);
        for h in handles {
            all.extend(h.join().expect("search thread panicked")?);
        }
        Ok(all)
    })
}

/// Diagnostics (stderr): snapshot round trip and self-retrieval of stored rows.
fn snapshot_check(index: &Index, d: &Dataset) -> Result<()> {
    let t = Instant::now();
    let bytes = index.to_bytes();
    let enc_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let loaded = Index::from_bytes(&bytes)?;
    let dec_s = t.elapsed().as_secs_f64();
    let sample: Vec<usize> = (0..d.n).step_by((d.n / 2000).max(1)).collect();
    let mut self_hits = 0;
    for &i in &sample {
        let r = loaded.search(&d.base[i * d.dim..(i + 1) * d.dim], 1, 64)?;
        self_hits += r
            .first()
            .is_some_and(|h| h.key == i as u64 && h.distance.abs() <= 1e-5)
            as usize;
    }
    eprintln!(
        "snapshot_mb={:.1} encode_s={enc_s:.2} decode_s={dec_s:.2} self_found={self_hits}/{} (ef=64)",
        bytes.len() as f64 / 1e6,
        sample.len()
    );
    Ok(())
}

fn main() -> Result<()> {
    let a = Args::parse();
    let d = load(&a.data)?;
    let params = Params {
        dim: d.dim,
        metric: d.metric,
        m: a.m,
        ef_construction: a.ef_construction,
    };
    let index = Index::new(params)?;
    let items: Vec<(u64, &[f32])> = d
        .base
        .chunks_exact(d.dim)
        .enumerate()
        .map(|(i, v)| (i as u64, v))
        .collect();
    let t = Instant::now();
    index.insert_batch(&items)?;
    let build_s = t.elapsed().as_secs_f64();
    drop(items);
    let stats = index.stats();
    let mem_mb = stats.memory_bytes as f64 / 1e6;
    let raw_mb = (stats.vector_bytes + stats.link_bytes) as f64 / 1e6;
    eprintln!(
        "isa={:?} levels={} build_threads={}",
        stats.isa,
        stats.max_level,
        rayon_threads()
    );
    let k = d.k;
    for &ef in &a.efs {
        let ef = ef.max(k);
        let t = Instant::now();
        let results = search_all(&index, &d, ef, a.threads)?;
        let dt = t.elapsed().as_secs_f64();
        let hits: usize = results
            .iter()
            .enumerate()
            .map(|(i, r)| {
                r.iter()
                    .filter(|id| d.gt[i * k..(i + 1) * k].contains(id))
                    .count()
            })
            .sum();
        let recall = hits as f64 / (d.nq * k) as f64;
        println!(
            "engine=lakehouse m={} efc={} ef={} recall@{k}={recall:.4} qps={:.0} build_s={build_s:.2} mem_mb={mem_mb:.1} raw_mb={raw_mb:.1}",
            a.m,
            a.ef_construction,
            ef,
            d.nq as f64 / dt
        );
    }
    snapshot_check(&index, &d)
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
