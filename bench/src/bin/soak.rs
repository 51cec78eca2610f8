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

use anyhow::{Context, bail};
use lakehouse_bench::Server;

const READ: &str = "soak-reader-token-0123456789";
const WRITE: &str = "soak-writer-token-0123456789";
const ADMIN: &str = "soak-admin-token-0123456789";

struct Args {
    lakehouse: PathBuf,
    duration: Duration,
    memory_limit: String,
    rss_limit_mib: u64,
    hostile_threads: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        lakehouse: PathBuf::new(),
        duration: Duration::from_secs(600),
        memory_limit: "512MiB".into(),
        rss_limit_mib: 2048,
        hostile_threads: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--lakehouse" => a.lakehouse = val()?.into(),
            "--duration" => a.duration = Duration::from_secs(val()?.parse()?),
            "--memory-limit" => a.memory_limit = val()?,
            "--rss-limit-mib" => a.rss_limit_mib = val()?.parse()?,
            "--hostile-threads" => a.hostile_threads = val()?.parse()?,
            other => bail!(
                "unknown flag {other}; flags: --lakehouse PATH --duration SECS --memory-limit SIZE --rss-limit-mib N --hostile-threads N"
            ),
        }
    }
    if a.lakehouse.as_os_str().is_empty() {
        bail!("--lakehouse PATH (the release binary) is required");
    }
    Ok(a)
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
    let a = args()?;
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
        a.duration.as_secs(),
        server.url,
        a.memory_limit,
        a.rss_limit_mib
    );
    let report = soak::run(
        soak::SoakConfig {
            duration: a.duration,
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
