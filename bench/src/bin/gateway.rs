//! Gateway overhead: storaged alone (`--only storaged`) and a gateway in front
//! of it (`--only gateway`), the same requests sent to each. Prints PUT/GET
//! throughput of a large object and the latency of small requests, direct vs
//! through the gateway, with ratios (the peer of a proxy is no proxy).
//!
//! Usage: `gateway --lakehouse target/release/lakehouse [--size-mib 1024]
//! [--runs 3] [--requests 2000] [--dir bench/data]`

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use lakehouse_bench::{Server, median, timed_get, timed_put};

const CHUNK: usize = 1 << 20;

/// Gateway overhead: storaged alone vs the same requests through a gateway.
#[derive(Debug, Parser)]
#[command(name = "gateway")]
struct Args {
    /// The `lakehouse` binary to start (a release build).
    #[arg(long, value_name = "PATH", default_value = "target/release/lakehouse")]
    lakehouse: PathBuf,
    /// Size of the large object PUT and GET, in MiB.
    #[arg(long, default_value_t = 1024)]
    size_mib: usize,
    /// Runs (a fresh storaged and gateway each); medians are printed.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Small HEAD requests timed per run, per path.
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// Directory for the servers' data (one subdirectory per run, removed after).
    #[arg(long, value_name = "DIR", default_value = "bench/data")]
    dir: PathBuf,
}

/// Sequential HEADs of one small object; per-request seconds, sorted.
async fn latencies(http: &reqwest::Client, url: &str, n: usize) -> anyhow::Result<Vec<f64>> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = http.head(url).send().await?;
        anyhow::ensure!(r.status().is_success(), "HEAD {url}: {}", r.status());
        v.push(t.elapsed().as_secs_f64());
    }
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    Ok(v)
}

fn pct(v: &[f64], p: f64) -> f64 {
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)] * 1e3
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let size = args.size_mib * CHUNK;
    let gib = size as f64 / (1u64 << 30) as f64;
    let data = lakehouse_bench::random_bytes(size);
    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let (mut dput, mut gput, mut dget, mut gget) = (vec![], vec![], vec![], vec![]);
    let (mut dlat, mut glat) = (vec![], vec![]);

    for run in 0..args.runs {
        let dir = args.dir.join(format!("gateway-run-{run}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let storaged = Server::start_with(&args.lakehouse, &dir, &["--only", "storaged"], &[])?;
        let gateway = Server::start_with(
            &args.lakehouse,
            &dir.join("gw"),
            &["--only", "gateway"],
            &[("LAKEHOUSE__GATEWAY__STORAGED_URL", storaged.url.as_str())],
        )?;
        let direct = format!("{}/storage/objects/bench/direct.bin", storaged.url);
        let via = format!("{}/storage/objects/bench/via.bin", gateway.url);
        // Alternate which goes first so neither always gets the warmer cache.
        let order: [bool; 2] = if run % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for through_gateway in order {
            let url = if through_gateway { &via } else { &direct };
            let put_s = timed_put(&http, url, &data).await?;
            let get_s = timed_get(&http, url, size).await?;
            if through_gateway {
                gput.push(gib / put_s);
                gget.push(gib / get_s);
            } else {
                dput.push(gib / put_s);
                dget.push(gib / get_s);
            }
        }
        let small = format!("{}/storage/objects/bench/small", storaged.url);
        let r = http.put(&small).body("x".repeat(100)).send().await?;
        anyhow::ensure!(r.status().is_success());
        let small_via = format!("{}/storage/objects/bench/small", gateway.url);
        latencies(&http, &small, 200).await?; // warm-up
        latencies(&http, &small_via, 200).await?;
        dlat.extend(latencies(&http, &small, args.requests).await?);
        glat.extend(latencies(&http, &small_via, args.requests).await?);
        eprintln!(
            "run {run}: put direct {:.2} via {:.2} GiB/s; get direct {:.2} via {:.2} GiB/s",
            dput[run], gput[run], dget[run], gget[run]
        );
        drop(gateway);
        drop(storaged);
        std::fs::remove_dir_all(&dir)?;
    }
    dlat.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    glat.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let (dp, gp, dg, gg) = (median(dput), median(gput), median(dget), median(gget));
    println!(
        "gateway PUT {} MiB: direct {dp:.2} GiB/s, via gateway {gp:.2} GiB/s, ratio {:.2}  [median of {}]",
        args.size_mib,
        gp / dp,
        args.runs
    );
    println!(
        "gateway GET {} MiB: direct {dg:.2} GiB/s, via gateway {gg:.2} GiB/s, ratio {:.2}  [median of {}, warm page cache]",
        args.size_mib,
        gg / dg,
        args.runs
    );
    println!(
        "gateway HEAD latency: direct p50 {:.3} ms p99 {:.3} ms; via gateway p50 {:.3} ms p99 {:.3} ms; p50 ratio {:.2}  [{} requests x {} runs]",
        pct(&dlat, 0.5),
        pct(&dlat, 0.99),
        pct(&glat, 0.5),
        pct(&glat, 0.99),
        pct(&glat, 0.5) / pct(&dlat, 0.5),
        args.requests,
        args.runs
    );
    Ok(())
}
