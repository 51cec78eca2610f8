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
