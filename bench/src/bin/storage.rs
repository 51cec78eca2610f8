//! Storage benchmark: PUT and GET of a large object through storaged's HTTP
//! API on loopback, next to writing and reading the same bytes on the same
//! disk directly. Prints medians of several runs and the API/disk ratio.
//!
//! Usage: `bench/storage.sh` (builds release), or
//! `storage --lakehouse target/release/lakehouse [--size-mib 1024] [--runs 3] [--dir DIR]`

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use bytes::Bytes;
use futures::StreamExt;
use lakehouse_bench::{Server, drop_caches, median};

const CHUNK: usize = 1 << 20;

struct Args {
    lakehouse: PathBuf,
    size_mib: usize,
    runs: usize,
    dir: PathBuf,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        lakehouse: PathBuf::from("target/release/lakehouse"),
        size_mib: 1024,
        runs: 3,
        dir: PathBuf::from("bench/data"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--lakehouse" => a.lakehouse = v.into(),
            "--size-mib" => a.size_mib = v.parse()?,
            "--runs" => a.runs = v.parse()?,
            "--dir" => a.dir = v.into(),
            _ => bail!("unknown flag {flag}"),
        }
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let size = args.size_mib * CHUNK;
    std::fs::create_dir_all(&args.dir)?;
    let data = lakehouse_bench::random_bytes(size);
    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let (mut api_put, mut api_get, mut disk_put, mut disk_get) = (vec![], vec![], vec![], vec![]);
    let mut cold = true;
    let gib = size as f64 / (1u64 << 30) as f64;

    for run in 0..args.runs {
        let dir = args.dir.join(format!("run-{run}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;

        // Disk directly: write the same bytes in the same 1 MiB chunks.
        let path = dir.join("direct.bin");
        let t = Instant::now();
        {
            let mut f = std::fs::File::create(&path)?;
            for c in data.chunks(CHUNK) {
                f.write_all(c)?;
            }
        }
        disk_put.push(gib / t.elapsed().as_secs_f64());
        cold &= drop_caches();
        let t = Instant::now();
        {
            let mut f = std::fs::File::open(&path)?;
            let mut buf = vec![0u8; CHUNK];
            let mut n = 0;
            loop {
                let r = f.read(&mut buf)?;
                if r == 0 {
                    break;
                }
                n += r;
            }
            assert_eq!(n, size);
        }
        disk_get.push(gib / t.elapsed().as_secs_f64());
        std::fs::remove_file(&path)?;

        // Through the API.
        let server = Server::start(&args.lakehouse, &dir.join("lakehouse"), &[])?;
        let url = format!("{}/storage/objects/bench/object.bin", server.url);
        let chunks: Vec<Bytes> = (0..size / CHUNK)
            .map(|i| data.slice(i * CHUNK..(i + 1) * CHUNK))
            .collect();
        let body = reqwest::Body::wrap_stream(futures::stream::iter(
            chunks.into_iter().map(Ok::<_, std::io::Error>),
        ));
        let t = Instant::now();
        let resp = http
            .put(&url)
            .header("content-length", size)
            .body(body)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("PUT failed: {} {}", resp.status(), resp.text().await?);
        }
        api_put.push(gib / t.elapsed().as_secs_f64());
        cold &= drop_caches();
        let t = Instant::now();
        let resp = http.get(&url).send().await?;
        if !resp.status().is_success() {
            bail!("GET failed: {}", resp.status());
        }
        let mut n = 0;
        let mut s = resp.bytes_stream();
        while let Some(b) = s.next().await {
            n += b?.len();
        }
        assert_eq!(n, size);
        api_get.push(gib / t.elapsed().as_secs_f64());
        drop(server);
        std::fs::remove_dir_all(&dir)?;
        eprintln!(
            "run {run}: api put {:.2} get {:.2} GiB/s; disk write {:.2} read {:.2} GiB/s",
            api_put[run], api_get[run], disk_put[run], disk_get[run]
        );
    }

    let (ap, ag, dp, dg) = (
        median(api_put),
        median(api_get),
        median(disk_put),
        median(disk_get),
    );
    let reads = if cold {
        "cold page cache"
    } else {
        "warm page cache (could not drop caches)"
    };
    println!(
        "storage PUT {} MiB: api {ap:.2} GiB/s, disk {dp:.2} GiB/s, ratio {:.2} (goal >= 0.8)  [median of {}]",
        args.size_mib,
        ap / dp,
        args.runs
    );
    println!(
        "storage GET {} MiB: api {ag:.2} GiB/s, disk {dg:.2} GiB/s, ratio {:.2} (goal >= 0.8)  [median of {}, {reads}]",
        args.size_mib,
        ag / dg,
        args.runs
    );
    Ok(())
}
