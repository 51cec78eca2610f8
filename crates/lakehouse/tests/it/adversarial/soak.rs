//! The soak: normal writes and reads mixed with the table's hostile rows and
//! a few slow clients, for a bounded time, against one running deployment.
//! Every acknowledged write is recorded; at the end the server must be up,
//! its peak RSS under the limit, every acknowledged write readable (rows
//! counted, objects byte-exact, vectors found at distance 0), the fixtures
//! unchanged, and no hostile row answered against its contract.
//!
//! Shared by the short soak test and `bench/src/bin/soak.rs` (which includes
//! this file with `#[path]`), so it uses only `std`, `serde_json` and the
//! modules beside it.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::cases::{self, Case, Ctx, DIM, Role, vector};
use super::fixtures::{self, Api, Baseline};
use super::http::{HttpError, Request};

/// What to run.
#[derive(Clone, Debug)]
pub struct SoakConfig {
    pub duration: Duration,
    pub api: Api,
    /// Processes whose RSS is sampled (and that must stay up).
    pub pids: Vec<(String, u32)>,
    /// No process may exceed this RSS (bytes).
    pub rss_limit: u64,
    /// Threads sending hostile rows.
    pub hostile_threads: usize,
    /// Pause between two normal writes.
    pub write_every: Duration,
}

/// What happened.
#[derive(Debug, Default)]
pub struct SoakReport {
    pub elapsed: Duration,
    pub requests: u64,
    pub hostile: u64,
    /// Hostile rows answered against their contract: count, first messages.
    pub hostile_failed: u64,
    pub hostile_failures: Vec<String>,
    pub ingests: usize,
    pub objects: usize,
    pub vectors: usize,
    pub peak_rss: u64,
    pub rss_limit: u64,
    /// Acknowledged writes that cannot be read back, processes down,
    /// fixtures changed.
    pub problems: Vec<String>,
}

impl SoakReport {
    pub fn passed(&self) -> bool {
        self.hostile_failed == 0 && self.problems.is_empty() && self.peak_rss < self.rss_limit
    }

    /// One line for people and scripts.
    pub fn summary(&self) -> String {
        format!(
            "soak: {} in {:.0}s requests={} hostile={} hostile_failed={} acked_ingests={} acked_objects={} acked_vectors={} peak_rss_mib={} rss_limit_mib={} problems={}",
            if self.passed() { "PASS" } else { "FAIL" },
            self.elapsed.as_secs_f64(),
            self.requests,
            self.hostile,
            self.hostile_failed,
            self.ingests,
            self.objects,
            self.vectors,
            self.peak_rss >> 20,
            self.rss_limit >> 20,
            self.problems.len()
        )
    }
}

/// Datasets the ingests rotate over (keeps each one's object count modest).
const SOAK_DATASETS: u64 = 8;
const SOAK_INDEX: &str = "soak_idx";
const BATCH_ROWS: u64 = 50;
const VEC_BATCH: usize = 10;

#[derive(Default)]
struct Acked {
    batches: Vec<u64>,
    objects: Vec<u64>,
    vectors: Vec<usize>,
}

/// The bytes of soak object `i` (regenerated to verify).
fn object_bytes(i: u64) -> Vec<u8> {
    let len = 1024 + (i as usize * 7919) % (63 << 10);
    (0..len)
        .map(|j| ((j as u64 * 31 + i * 17) % 251) as u8)
        .collect()
}

fn object_key(i: u64) -> String {
    format!("soak/obj/{i}")
}

/// Shared run state.
struct Run {
    cfg: SoakConfig,
    stop: AtomicBool,
    deadline: Instant,
    requests: AtomicU64,
    acked: Mutex<Acked>,
    problems: Mutex<Vec<String>>,
    hostile: AtomicU64,
    hostile_failed: AtomicU64,
    hostile_failures: Mutex<Vec<String>>,
    peak: AtomicU64,
}

impl Run {
    fn going(&self) -> bool {
        !self.stop.load(Ordering::Relaxed) && Instant::now() < self.deadline
    }
    fn problem(&self, p: String) {
        self.problems.lock().unwrap().push(p);
    }
}

/// Runs the soak; `ctx` and `base` come from `fixtures::setup`/`snapshot`.
pub fn run(cfg: SoakConfig, ctx: &Ctx, base: &Baseline) -> SoakReport {
    let started = Instant::now();
    let api = cfg.api.clone();
    let created = api.ok(Request::new("POST", "/vectors/indexes")
        .json(&json!({"name": SOAK_INDEX, "dim": DIM, "metric": "l2"})));
    let run = Arc::new(Run {
        deadline: started + cfg.duration,
        cfg,
        stop: AtomicBool::new(false),
        requests: AtomicU64::new(0),
        acked: Mutex::default(),
        problems: Mutex::default(),
        hostile: AtomicU64::new(0),
        hostile_failed: AtomicU64::new(0),
        hostile_failures: Mutex::default(),
        peak: AtomicU64::new(0),
    });
    if let Err(e) = created {
        run.problem(format!("creating {SOAK_INDEX}: {e}"));
    }
    let rows: Arc<Vec<Case>> = Arc::new(
        cases::table(ctx)
            .into_iter()
            .filter(|c| !c.no_soak && c.down.is_none())
            .collect(),
    );
    let mut threads = Vec::new();
    let r = run.clone();
    threads.push(std::thread::spawn(move || writer(&r)));
    let r = run.clone();
    threads.push(std::thread::spawn(move || reader(&r)));
    for seed in 0..run.cfg.hostile_threads {
        let (r, rows) = (run.clone(), rows.clone());
        threads.push(std::thread::spawn(move || {
            hostile(&r, &rows, seed as u64 + 1)
        }));
    }
    let r = run.clone();
    threads.push(std::thread::spawn(move || slow_clients(&r)));
    let r = run.clone();
    threads.push(std::thread::spawn(move || sampler(&r)));
    for t in threads {
        if t.join().is_err() {
            run.problem("a soak thread panicked".into());
        }
    }
    finish(&run, base, started)
}

/// The end: everything up, every acknowledged write readable.
fn finish(run: &Run, base: &Baseline, started: Instant) -> SoakReport {
    let api = &run.cfg.api;
    for (name, pid) in &run.cfg.pids {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            run.problem(format!("{name} (pid {pid}) is down"));
        }
    }
    let up = api
        .send(Role::None, &Request::new("GET", "/health"))
        .is_ok_and(|r| r.status == 200);
    if !up {
        run.problem("the server does not answer /health".into());
    }
    let acked = std::mem::take(&mut *run.acked.lock().unwrap());
    if up {
        for p in verify(api, &acked) {
            run.problem(p);
        }
        for p in fixtures::check(api, base) {
            run.problem(format!("fixtures: {p}"));
        }
    }
    let problems = std::mem::take(&mut *run.problems.lock().unwrap());
    SoakReport {
        elapsed: started.elapsed(),
        requests: run.requests.load(Ordering::Relaxed),
        hostile: run.hostile.load(Ordering::Relaxed),
        hostile_failed: run.hostile_failed.load(Ordering::Relaxed),
        hostile_failures: std::mem::take(&mut *run.hostile_failures.lock().unwrap()),
        ingests: acked.batches.len(),
        objects: acked.objects.len(),
        vectors: acked.vectors.len(),
        peak_rss: run.peak.load(Ordering::Relaxed),
        rss_limit: run.cfg.rss_limit,
        problems,
    }
}

/// Ingests, object PUTs and vector adds in turn; records what is acknowledged.
fn writer(run: &Run) {
    let api = &run.cfg.api;
    let mut i: u64 = 0;
    while run.going() {
        i += 1;
        let req = match i % 3 {
            0 => {
                let mut csv = String::from("batch,n\n");
                for n in 0..BATCH_ROWS {
                    csv.push_str(&format!("{i},{n}\n"));
                }
                Request::new(
                    "POST",
                    format!("/ingest/soak_rows_{}?format=csv", i % SOAK_DATASETS),
                )
                .header("idempotency-key", format!("soak-{i}"))
                .body(csv.into_bytes())
            }
            1 => Request::new("PUT", format!("/storage/objects/{}", object_key(i)))
                .body(object_bytes(i)),
            _ => {
                let base = i as usize * VEC_BATCH;
                let items: Vec<Value> = (base..base + VEC_BATCH)
                    .map(|j| json!({"id": format!("s{j}"), "vector": vector(j, DIM)}))
                    .collect();
                Request::new("POST", format!("/vectors/indexes/{SOAK_INDEX}/add"))
                    .json(&json!({ "items": items }))
            }
        };
        run.requests.fetch_add(1, Ordering::Relaxed);
        // Admin: the object PUTs need it; ingests and adds would take write.
        let ok = api
            .send(Role::Admin, &req)
            .is_ok_and(|r| (200..300).contains(&r.status));
        if ok {
            let mut a = run.acked.lock().unwrap();
            match i % 3 {
                0 => a.batches.push(i),
                1 => a.objects.push(i),
                _ => a
                    .vectors
                    .extend(i as usize * VEC_BATCH..(i as usize + 1) * VEC_BATCH),
            }
        }
        std::thread::sleep(run.cfg.write_every);
    }
}

/// Reads of acknowledged writes while the run goes on.
fn reader(run: &Run) {
    let api = &run.cfg.api;
    let mut n: u64 = 0;
    while run.going() {
        n += 1;
        let (obj, vec) = {
            let a = run.acked.lock().unwrap();
            let pick = |len: usize| (len > 0).then(|| (n as usize * 7919) % len);
            (
                pick(a.objects.len()).map(|k| a.objects[k]),
                pick(a.vectors.len()).map(|k| a.vectors[k]),
            )
        };
        run.requests.fetch_add(1, Ordering::Relaxed);
        match n % 3 {
            0 => {
                let q = format!("SELECT count(*) AS n FROM soak_rows_{}", n % SOAK_DATASETS);
                let _ = api.send(
                    Role::Read,
                    &Request::new("POST", "/query/sql").json(&json!({ "sql": q })),
                );
            }
            1 => {
                if let Some(i) = obj {
                    let r = api.send(
                        Role::Read,
                        &Request::new("GET", format!("/storage/objects/{}", object_key(i))),
                    );
                    if !r.is_ok_and(|r| r.status == 200 && r.body == object_bytes(i)) {
                        run.problem(format!(
                            "acknowledged object {} not readable during the run",
                            object_key(i)
                        ));
                    }
                }
            }
            _ => {
                if let Some(j) = vec {
                    let _ = api.send(
                        Role::Read,
                        &Request::new("POST", format!("/vectors/indexes/{SOAK_INDEX}/search"))
                            .json(&json!({"vector": vector(j, DIM), "k": 3})),
                    );
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Random rows of the table, each checked against its contract.
fn hostile(run: &Run, rows: &[Case], seed: u64) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while run.going() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let c = &rows[(x % rows.len() as u64) as usize];
        let mut resp = run.cfg.api.send(c.role, &c.req);
        if matches!(resp, Err(HttpError::Connect(_))) {
            // The server is down: the sampler ends the run and says so.
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        // Repeated, an ingest that created its dataset appends to it: 200.
        if let Ok(r) = &mut resp
            && r.status == 200
            && c.req.target.starts_with(b"/ingest/")
            && c.status.allows(201)
        {
            r.status = 201;
        }
        run.requests.fetch_add(1, Ordering::Relaxed);
        run.hostile.fetch_add(1, Ordering::Relaxed);
        let bad = cases::evaluate(c, &resp);
        if !bad.is_empty() {
            run.hostile_failed.fetch_add(1, Ordering::Relaxed);
            let mut f = run.hostile_failures.lock().unwrap();
            if f.len() < 50 {
                f.push(format!("[{:?}] {}: {}", c.family, c.name, bad.join("; ")));
            }
        }
    }
}

/// Keeps 64 connections that never finish their headers.
fn slow_clients(run: &Run) {
    let mut held: Vec<TcpStream> = Vec::new();
    while run.going() {
        held.retain_mut(|s| s.write_all(b"x").is_ok());
        while held.len() < 64 {
            match TcpStream::connect(&run.cfg.api.addr) {
                Ok(mut s) => {
                    let _ = s.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nx-slow: ");
                    held.push(s);
                }
                Err(_) => break,
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Samples RSS every 100 ms; stops the run when a process dies or passes
/// the limit (then it is killed: the machine is shared).
fn sampler(run: &Run) {
    while run.going() {
        for (name, pid) in &run.cfg.pids {
            match rss(*pid) {
                None => {
                    run.problem(format!("{name} (pid {pid}) died during the soak"));
                    run.stop.store(true, Ordering::Relaxed);
                }
                Some(r) => {
                    run.peak.fetch_max(r, Ordering::Relaxed);
                    if r >= run.cfg.rss_limit {
                        run.problem(format!(
                            "{name} reached {} MiB RSS (limit {} MiB): killed",
                            r >> 20,
                            run.cfg.rss_limit >> 20
                        ));
                        let _ = std::process::Command::new("kill")
                            .args(["-9", &pid.to_string()])
                            .status();
                        run.stop.store(true, Ordering::Relaxed);
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Resident set size of `pid` in bytes (VmRSS), `None` once it is gone.
pub fn rss(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Every acknowledged write, read back.
fn verify(api: &Api, a: &Acked) -> Vec<String> {
    let mut bad = Vec::new();
    let want: BTreeSet<u64> = a.batches.iter().copied().collect();
    for d in 0..SOAK_DATASETS {
        let mine: Vec<u64> = want
            .iter()
            .copied()
            .filter(|b| b % SOAK_DATASETS == d)
            .collect();
        for chunk in mine.chunks(5000) {
            let (lo, hi) = (chunk[0], chunk[chunk.len() - 1]);
            let q = format!(
                "SELECT batch, count(*) AS n FROM soak_rows_{d} WHERE batch BETWEEN {lo} AND {hi} GROUP BY batch"
            );
            let got: Vec<(u64, u64)> = match api.sql(&q) {
                Ok(Value::Array(rows)) => rows
                    .iter()
                    .map(|r| {
                        (
                            r["batch"].as_u64().unwrap_or(0),
                            r["n"].as_u64().unwrap_or(0),
                        )
                    })
                    .collect(),
                Ok(v) => return vec![format!("{q}: {v}")],
                Err(e) => return vec![format!("acknowledged ingests unreadable: {e}")],
            };
            for b in chunk {
                match got.iter().find(|g| g.0 == *b) {
                    Some((_, n)) if *n == BATCH_ROWS => {}
                    Some((_, n)) => {
                        bad.push(format!("ingest batch {b} has {n} rows, not {BATCH_ROWS}"))
                    }
                    None => bad.push(format!("acknowledged ingest batch {b} is missing")),
                }
            }
        }
    }
    for &i in &a.objects {
        match api.get(&format!("/storage/objects/{}", object_key(i))) {
            Ok(r) if r.body == object_bytes(i) => {}
            Ok(_) => bad.push(format!("object {} differs", object_key(i))),
            Err(e) => bad.push(format!("acknowledged object: {e}")),
        }
    }
    for &j in &a.vectors {
        let r = api.ok(
            Request::new("POST", format!("/vectors/indexes/{SOAK_INDEX}/search"))
                .json(&json!({"vector": vector(j, DIM), "k": 1, "ef": 64})),
        );
        let hit = r.ok().and_then(|r| r.json());
        let found = hit.as_ref().is_some_and(|h| {
            h[0]["id"] == format!("s{j}")
                && h[0]["distance"].as_f64().is_some_and(|d| d.abs() < 1e-4)
        });
        if !found {
            bad.push(format!(
                "acknowledged vector s{j} not found at distance 0: {hit:?}"
            ));
        }
    }
    bad.truncate(50);
    bad
}
