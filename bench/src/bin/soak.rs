//! The soak of issue 12: a release `lakehouse serve` with a configured
//! `[queryd] memory_limit`, under mixed hostile and normal load on loopback
//! for a bounded time (default 10 minutes). At the end the server must be
//! up, its peak RSS (sampled from `/proc/<pid>/status`) under the limit,
//! every acknowledged write readable and every hostile row answered per its
//! contract. Prints one summary line; exits 1 when the soak failed.
//!
//! The load, the hostile table and the checks are the adversarial suite's
//! own files (`crates/lakehouse/tests/it/adversarial/`), included here so the
//! soak and the suite cannot drift apart; the short soak there runs in CI.
//!
//! ```sh
//! bench/soak.sh --duration 600 --memory-limit 512MiB --rss-limit-mib 2048
//! ```

#[allow(dead_code)]
#[path = "../../../crates/lakehouse/tests/it/adversarial/cases.rs"]
mod cases;
#[allow(dead_code)]
#[path = "../../../crates/lakehouse/tests/it/adversarial/fixtures.rs"]
mod fixtures;
#[allow(dead_code)]
#[path = "../../../crates/lakehouse/tests/it/adversarial/http.rs"]
mod http;
#[allow(dead_code)]
#[path = "../../../crates/lakehouse/tests/it/adversarial/soak.rs"]
mod soak;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;
use lakehouse_bench::Server;

const READ: &str = "soak-reader-token-0123456789";
const WRITE: &str = "soak-writer-token-0123456789";
const ADMIN: &str = "soak-admin-token-0123456789";

/// The soak: a release `lakehouse serve` with a memory limit, under mixed
/// hostile and normal load; exits 1 when the soak failed.
#[derive(Debug, Parser)]
#[command(name = "soak")]
struct Args {
    /// The `lakehouse` binary to start (the release build).
    #[arg(long, value_name = "PATH")]
    lakehouse: PathBuf,
    /// How long to run the load, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    duration: u64,
    /// The server's `[queryd] memory_limit`.
    #[arg(long, value_name = "SIZE", default_value = "512MiB")]
    memory_limit: String,
    /// The peak RSS the server must stay under, in MiB.
    #[arg(long, value_name = "N", default_value_t = 2048)]
    rss_limit_mib: u64,
    /// Threads sending the hostile requests.
    #[arg(long, value_name = "N", default_value_t = 2)]
    hostile_threads: usize,
}

fn wait_ready(api: &fixtures::Api) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = api.send(cases::Role::Read, &http::Request::new("GET", "/ready"));
        if r.is_ok_and(|r| r.status == 200) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the server was not ready within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let duration = Duration::from_secs(a.duration);
    let dir = tempfile::tempdir()?;
    let mut env = cases::server_env();
    for (k, v) in &mut env {
        if k == "LAKEHOUSE__QUERYD__MEMORY_LIMIT" {
            v.clone_from(&a.memory_limit);
        }
    }
    env.push((
        "LAKEHOUSE__AUTH__TOKENS".into(),
        format!("r:read:{READ},w:write:{WRITE},a:admin:{ADMIN}"),
    ));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = Server::start(&a.lakehouse, &dir.path().join("data"), &env)?;
    let tokens = cases::Tokens {
        read: READ.into(),
        write: WRITE.into(),
        admin: ADMIN.into(),
    };
    let api = fixtures::Api::new(&server.url, tokens);
    wait_ready(&api)?;
    let ctx = fixtures::setup(&api).map_err(anyhow::Error::msg)?;
    let base = fixtures::snapshot(&api).map_err(anyhow::Error::msg)?;
    eprintln!(
        "soak: {} s against {} (memory_limit {}, RSS limit {} MiB)",
        duration.as_secs(),
        server.url,
        a.memory_limit,
        a.rss_limit_mib
    );
    let report = soak::run(
        soak::SoakConfig {
            duration,
            api,
            pids: vec![("lakehouse".into(), server.child.id())],
            rss_limit: a.rss_limit_mib << 20,
            hostile_threads: a.hostile_threads,
            write_every: Duration::from_millis(20),
        },
        &ctx,
        &base,
    );
    for p in &report.problems {
        eprintln!("problem: {p}");
    }
    for f in &report.hostile_failures {
        eprintln!("hostile: {f}");
    }
    println!("{}", report.summary());
    drop(server);
    if !report.passed() {
        std::process::exit(1);
    }
    Ok(())
}
