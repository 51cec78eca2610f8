//! Storage benchmark: PUT and GET of a large object through storaged's HTTP
//! API on loopback, next to writing and reading the same bytes on the same
//! disk directly (a plain buffered write, as `dd`/`cp` do, and also direct
//! I/O from block-aligned memory: the device's raw speed with no CPU copy,
//! printed as a second ratio; the direct read reads the file the API
//! stored). Runs are paired (API and disk in the same round, order
//! alternating, caches dropped and dirty pages flushed before each step), a
//! warm-up round is discarded, and medians of the per-round ratios are
//! printed, because this VM's disk speed drifts
//! by 2x between identical runs. The API is driven by a minimal HTTP/1.1
//! client on a blocking socket (as curl is), and also by reqwest, the
//! client the lakehouse's own services use; both are printed.
//!
//! Usage: `bench/storage.sh` (builds release), or
//! `storage --lakehouse target/release/lakehouse [--size-mib 1024] [--runs 6] [--dir DIR]`

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use lakehouse_bench::{Server, drop_caches, median, timed_get, timed_put};

const CHUNK: usize = 1 << 20;
const ALIGN: usize = 4096;

/// Storage benchmark: PUT and GET of a large object through the API vs the
/// same bytes on the same disk directly.
#[derive(Debug, Parser)]
#[command(name = "storage")]
struct Args {
    /// The `lakehouse` binary to start (a release build).
    #[arg(long, value_name = "PATH", default_value = "target/release/lakehouse")]
    lakehouse: PathBuf,
    /// Size of the object, in MiB.
    #[arg(long, default_value_t = 1024)]
    size_mib: usize,
    /// Paired runs counted, after one warm-up (even: half start with the API).
    #[arg(long, default_value_t = 6)]
    runs: usize,
    /// Directory on the disk under test (one subdirectory per run, removed after).
    #[arg(long, value_name = "DIR", default_value = "bench/data")]
    dir: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let size = args.size_mib * CHUNK;
    std::fs::create_dir_all(&args.dir)?;
    let data = lakehouse_bench::random_bytes(size);
    // The same bytes at a block-aligned address, for the direct-I/O baseline.
    let mut aligned_buf = vec![0u8; size + ALIGN];
    let off = aligned_buf.as_ptr().align_offset(ALIGN);
    aligned_buf[off..off + size].copy_from_slice(&data);
    let aligned = &aligned_buf[off..off + size];
    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let gib = size as f64 / (1u64 << 30) as f64;
    let mut cold = true;
    let mut rounds = Vec::new();

    // Run 0 is a warm-up (fresh memory, first server start) and not counted.
    for run in 0..=args.runs {
        let dir = args.dir.join(format!("run-{run}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let server = Server::start(&args.lakehouse, &dir.join("lakehouse"), &[])?;
        let api = Api {
            http: &http,
            base: &server.url,
            addr: server.url.trim_start_matches("http://"),
        };

        let r = round(&api, &dir, &data, aligned, run % 2 == 1, &mut cold).await?;
        drop(server);
        std::fs::remove_dir_all(&dir)?;

        let g = |secs: f64| gib / secs;
        eprintln!(
            "run {run}{}: api put {:.2} get {:.2} GiB/s (reqwest {:.2} / {:.2}); disk write {:.2} (direct I/O {:.2}) read {:.2} GiB/s",
            if run == 0 { " (warm-up)" } else { "" },
            g(r.api_put),
            g(r.api_get),
            g(r.req_put),
            g(r.req_get),
            g(r.buf_put),
            g(r.dio_put),
            g(r.disk_get)
        );
        if run > 0 {
            rounds.push(r);
        }
    }

    report(&rounds, gib, args.size_mib, args.runs, cold);
    Ok(())
}

/// The object the minimal client writes and reads; reqwest uses its own
/// key for PUT (so the two uploads never replace each other mid-round) and
/// reads this one.
const KEY: &str = "bench/object.bin";
const KEY_REQWEST: &str = "bench/object-reqwest.bin";

/// The API through both clients.
struct Api<'a> {
    http: &'a reqwest::Client,
    base: &'a str,
    addr: &'a str,
}

impl Api<'_> {
    /// Seconds for a PUT by each client, each from a cold cache.
    async fn puts(&self, data: &bytes::Bytes, cold: &mut bool) -> anyhow::Result<(f64, f64)> {
        *cold &= drop_caches();
        let raw = raw_put(self.addr, &format!("/storage/objects/{KEY}"), data)?;
        *cold &= drop_caches();
        let url = format!("{}/storage/objects/{KEY_REQWEST}", self.base);
        Ok((raw, timed_put(self.http, &url, data).await?))
    }

    /// Seconds for a GET of `KEY` by each client, each from a cold cache.
    async fn gets(&self, size: usize, cold: &mut bool) -> anyhow::Result<(f64, f64)> {
        *cold &= drop_caches();
        let raw = raw_get(self.addr, &format!("/storage/objects/{KEY}"), size)?;
        *cold &= drop_caches();
        let url = format!("{}/storage/objects/{KEY}", self.base);
        Ok((raw, timed_get(self.http, &url, size).await?))
    }
}

/// Seconds taken by each step of one paired run.
#[derive(Default)]
struct Round {
    api_put: f64,
    api_get: f64,
    req_put: f64,
    req_get: f64,
    buf_put: f64,
    dio_put: f64,
    disk_get: f64,
}

/// Writes `data` to a new file in 1 MiB (buffered) or 4 MiB (direct I/O,
/// `data` block-aligned) writes, the way a program writing directly would.
fn disk_write(path: &Path, data: &[u8], direct: bool) -> anyhow::Result<f64> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    if direct {
        opts.custom_flags(libc::O_DIRECT);
    }
    let t = Instant::now();
    let mut f = opts
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    for c in data.chunks(if direct { 4 * CHUNK } else { CHUNK }) {
        f.write_all(c)?;
    }
    drop(f);
    Ok(t.elapsed().as_secs_f64())
}

fn disk_read(path: &Path, size: usize) -> anyhow::Result<f64> {
    let t = Instant::now();
    let mut f = std::fs::File::open(path)?;
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
    Ok(t.elapsed().as_secs_f64())
}

/// PUT with a minimal HTTP/1.1 client on a blocking socket (what curl does:
/// headers, then the body straight from memory), so the time is the
/// server's and the kernel's, not a client library's.
fn raw_put(addr: &str, path: &str, data: &[u8]) -> anyhow::Result<f64> {
    let t = Instant::now();
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    write!(
        s,
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        data.len()
    )?;
    for c in data.chunks(CHUNK) {
        s.write_all(c)?;
    }
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let secs = t.elapsed().as_secs_f64();
    if !resp.starts_with(b"HTTP/1.1 200") {
        bail!("PUT failed: {}", String::from_utf8_lossy(&resp));
    }
    Ok(secs)
}

/// GET with the same minimal client: read into one reused 1 MiB buffer.
fn raw_get(addr: &str, path: &str, size: usize) -> anyhow::Result<f64> {
    let t = Instant::now();
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = vec![0u8; CHUNK];
    let mut head = Vec::new();
    let mut body = 0usize;
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if body == 0 && !head.ends_with(b"\r\n\r\n") {
            head.extend_from_slice(&buf[..n]);
            if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                body = head.len() - (end + 4);
                head.truncate(end + 4);
            }
        } else {
            body += n;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    if !head.starts_with(b"HTTP/1.1 200") || body != size {
        bail!(
            "GET failed: {} ({body} body bytes)",
            String::from_utf8_lossy(&head)
        );
    }
    Ok(secs)
}

/// One paired round: API and disk writes, then API and disk reads of the
/// same file, each from a cold cache; `api_first` alternates the order.
async fn round(
    api: &Api<'_>,
    dir: &std::path::Path,
    data: &bytes::Bytes,
    aligned: &[u8],
    api_first: bool,
    cold: &mut bool,
) -> anyhow::Result<Round> {
    let size = data.len();
    // Every timed step starts with no dirty pages and a cold cache;
    // which side goes first alternates, to cancel drift.
    let mut r = Round::default();
    if api_first {
        (r.api_put, r.req_put) = api.puts(data, cold).await?;
    }
    *cold &= drop_caches();
    r.buf_put = disk_write(&dir.join("buffered.bin"), data, false)?;
    *cold &= drop_caches();
    r.dio_put = disk_write(&dir.join("direct.bin"), aligned, true)?;
    std::fs::remove_file(dir.join("direct.bin"))?;
    if !api_first {
        (r.api_put, r.req_put) = api.puts(data, cold).await?;
    }
    // The disk read reads the very file the API stored, so both reads
    // see the same bytes laid out the same way. The first read of a
    // freshly written file is slow here whoever does it (the VM's host
    // caches the disk image behind the guest), so one untimed read puts
    // the file in the same state for both timed reads.
    let stored = dir.join("lakehouse/objects").join(KEY);
    *cold &= drop_caches();
    disk_read(&stored, size)?;
    if api_first {
        (r.api_get, r.req_get) = api.gets(size, cold).await?;
    }
    *cold &= drop_caches();
    r.disk_get = disk_read(&stored, size)?;
    if !api_first {
        (r.api_get, r.req_get) = api.gets(size, cold).await?;
    }
    Ok(r)
}

/// Medians over the rounds: speeds in GiB/s, and ratios API/disk taken
/// per round (times are seconds, so disk/api).
fn report(rounds: &[Round], gib: f64, size_mib: usize, n: usize, cold: bool) {
    let speed = |f: fn(&Round) -> f64| median(rounds.iter().map(|r| gib / f(r)).collect());
    let ratio = |f: fn(&Round) -> f64| median(rounds.iter().map(f).collect());
    let reads = if cold {
        "cold page cache"
    } else {
        "warm page cache (could not drop caches)"
    };
    println!(
        "storage PUT {} MiB: api {:.2} GiB/s, disk {:.2} GiB/s, ratio {:.2} (goal >= 0.8); disk with direct I/O from aligned memory {:.2} GiB/s, ratio {:.2}; reqwest client {:.2} GiB/s, ratio {:.2}  [medians of {n} paired runs]",
        size_mib,
        speed(|r| r.api_put),
        speed(|r| r.buf_put),
        ratio(|r| r.buf_put / r.api_put),
        speed(|r| r.dio_put),
        ratio(|r| r.dio_put / r.api_put),
        speed(|r| r.req_put),
        ratio(|r| r.buf_put / r.req_put),
    );
    println!(
        "storage GET {} MiB: api {:.2} GiB/s, disk {:.2} GiB/s, ratio {:.2} (goal >= 0.8); reqwest client {:.2} GiB/s, ratio {:.2}  [medians of {n} paired runs, {reads}]",
        size_mib,
        speed(|r| r.api_get),
        speed(|r| r.disk_get),
        ratio(|r| r.disk_get / r.api_get),
        speed(|r| r.req_get),
        ratio(|r| r.disk_get / r.req_get),
    );
}
