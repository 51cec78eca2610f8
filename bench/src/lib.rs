//! Shared pieces of the benchmark binaries: starting a release `lakehouse`,
//! reading its peak memory, medians.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::Context;

/// A `lakehouse serve` child on an ephemeral port; killed on drop.
pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Server {
    pub fn start(
        lakehouse: &Path,
        data_dir: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Server> {
        Self::start_with(lakehouse, data_dir, &[], env)
    }

    /// Like [`Server::start`] with extra `serve` arguments (`--only X`).
    pub fn start_with(
        lakehouse: &Path,
        data_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Server> {
        let mut cmd = Command::new(lakehouse);
        cmd.args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env("LAKEHOUSE_LOG", "warn")
            .stdout(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", lakehouse.display()))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let url = line
            .trim()
            .strip_prefix("lakehouse listening on ")
            .with_context(|| format!("unexpected output {line:?}"))?
            .to_string();
        Ok(Server { child, url })
    }

    /// Peak resident set size of the server so far, in MiB (Linux VmHWM).
    pub fn peak_rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    assert!(!v.is_empty(), "median of nothing");
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let m = v.len() / 2;
    // An even count takes the mean of the middle two, not the upper one.
    if v.len().is_multiple_of(2) {
        (v[m - 1] + v[m]) / 2.0
    } else {
        v[m]
    }
}

/// Best effort: drop the page cache so reads come from the disk. Needs root.
pub fn drop_caches() -> bool {
    let _ = Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// `key=value` pairs of a peer script's output line.
pub fn fields(line: &str) -> std::collections::HashMap<String, String> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Incompressible-looking bytes (xorshift), for storage benchmarks.
pub fn random_bytes(len: usize) -> bytes::Bytes {
    let mut v = vec![0u8; len];
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for w in v.chunks_exact_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w.copy_from_slice(&x.to_le_bytes());
    }
    bytes::Bytes::from(v)
}

/// Chunk size of the streamed request bodies.
const BODY_CHUNK: usize = 1 << 20;

/// Streams `data` to `url` in 1 MiB chunks; seconds taken.
pub async fn timed_put(
    http: &reqwest::Client,
    url: &str,
    data: &bytes::Bytes,
) -> anyhow::Result<f64> {
    let chunks: Vec<bytes::Bytes> = (0..data.len() / BODY_CHUNK)
        .map(|i| data.slice(i * BODY_CHUNK..(i + 1) * BODY_CHUNK))
        .collect();
    let body = reqwest::Body::wrap_stream(futures::stream::iter(
        chunks.into_iter().map(Ok::<_, std::io::Error>),
    ));
    let t = Instant::now();
    let resp = http
        .put(url)
        .header("content-length", data.len())
        .body(body)
        .send()
        .await?;
    if !resp.status().is_success() {
        anyhow::bail!("PUT {url}: {} {}", resp.status(), resp.text().await?);
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Reads `url` to the end, checking its length; seconds taken.
pub async fn timed_get(http: &reqwest::Client, url: &str, size: usize) -> anyhow::Result<f64> {
    let t = Instant::now();
    let resp = http.get(url).send().await?;
    if !resp.status().is_success() {
        anyhow::bail!("GET {url}: {}", resp.status());
    }
    let mut n = 0;
    let mut s = resp.bytes_stream();
    while let Some(b) = futures::StreamExt::next(&mut s).await {
        n += b?.len();
    }
    anyhow::ensure!(n == size, "GET returned {n} bytes, expected {size}");
    Ok(t.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(super::median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(super::median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(super::median(vec![7.0]), 7.0);
    }
}

/// `gen_vectors.py`'s output (shared by the vector benchmarks) and
/// hnswlib's build of it, the peer of every index build.
pub mod vecdata {
    use std::path::Path;

    use anyhow::{Context, Result, bail};
    use lakehouse_hnsw::Metric;

    pub fn read_f32(path: &Path, rows: usize, dim: usize) -> Result<Vec<f32>> {
        let b = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        if b.len() != rows * dim * 4 {
            bail!(
                "{}: {} bytes, expected {}",
                path.display(),
                b.len(),
                rows * dim * 4
            );
        }
        Ok(b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// gen_vectors.py's output: the base rows, the queries, the ground truth.
    pub struct Dataset {
        pub n: usize,
        pub nq: usize,
        pub dim: usize,
        pub k: usize,
        pub metric: Metric,
        pub base: Vec<f32>,
        pub queries: Vec<f32>,
        pub gt: Vec<u64>,
    }

    pub fn load(dir: &Path) -> Result<Dataset> {
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("meta.json")).with_context(|| {
                format!("{} (generate it with gen_vectors.py)", dir.display())
            })?)?;
        let get = |k: &str| {
            meta[k]
                .as_u64()
                .map(|v| v as usize)
                .with_context(|| format!("meta.json: {k}"))
        };
        let (n, nq, dim, k) = (get("n")?, get("nq")?, get("dim")?, get("k")?);
        let metric: Metric = meta["metric"]
            .as_str()
            .context("meta.json: metric")?
            .parse()
            .map_err(anyhow::Error::msg)?;
        let base = read_f32(&dir.join("base.f32"), n, dim)?;
        let queries = read_f32(&dir.join("queries.f32"), nq, dim)?;
        let gt_raw = std::fs::read(dir.join("gt.i32"))?;
        if gt_raw.len() != nq * k * 4 {
            bail!("gt.i32 has the wrong size");
        }
        let gt = gt_raw
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as u64)
            .collect();
        Ok(Dataset {
            n,
            nq,
            dim,
            k,
            metric,
            base,
            queries,
            gt,
        })
    }

    /// Seconds for hnswlib's `add_items` of `dir`'s base vectors on every
    /// core, with `python` (numpy + hnswlib).
    pub fn hnswlib_build(python: &str, dir: &Path, m: usize, efc: usize) -> Result<f64> {
        let script = r#"
import json, os, sys, time
import numpy as np, hnswlib
data_dir, m, efc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
meta = json.load(open(os.path.join(data_dir, "meta.json")))
n, d = meta["n"], meta["dim"]
base = np.fromfile(os.path.join(data_dir, "base.f32"), dtype="<f4").reshape(n, d)
h = hnswlib.Index(space="l2" if meta["metric"] == "l2" else "cosine", dim=d)
h.init_index(max_elements=n, ef_construction=efc, M=m)
h.set_num_threads(os.cpu_count())
t = time.perf_counter(); h.add_items(base, np.arange(n)); print(time.perf_counter() - t)
"#;
        let out = std::process::Command::new(python)
            .arg("-c")
            .arg(script)
            .arg(dir)
            .arg(m.to_string())
            .arg(efc.to_string())
            .output()
            .with_context(|| format!("running {python}"))?;
        if !out.status.success() {
            bail!("hnswlib: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?.trim().parse()?)
    }
}
