//! Runs the table against a real deployment: fixtures first, then every row
//! with its checks, a fixture check after each family, the slow-client and
//! disconnect checks, and a restart at the end. A process that dies (or is
//! killed by the RSS watchdog) is a failure of the row that did it; it is
//! started again so the remaining rows still run, and every failure is
//! reported at the end, not only the first.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::cases::{self, Case, Family, Role, Then, Tokens};
use super::fixtures::{self, Api, Baseline, Entry};
use super::http::{Request, Response, send};
use super::soak::rss;
use crate::support::{ADMIN, Cluster, READER, WRITER};

/// No process of a deployment may grow past this (debug build, with
/// `[queryd] memory_limit` at 256 MiB); the watchdog kills it there, so a
/// runaway allocation fails the row instead of taking the machine down.
pub const RSS_LIMIT: u64 = 1 << 30;

/// Longest wait for a row's answer (the query timeout is 30 s).
const ROW_TIMEOUT: Duration = Duration::from_secs(60);

pub fn tokens() -> Tokens {
    Tokens {
        read: READER.into(),
        write: WRITER.into(),
        admin: ADMIN.into(),
    }
}

/// CPU seconds `pid` has used (user + system).
fn cpu_secs(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the parenthesised name: state, ppid, …; utime and stime are the
    // 14th and 15th fields of the line, the 12th and 13th after the name.
    let after = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    (field(11) + field(12)) as f64 / 100.0
}

/// Samples every process's RSS every 10 ms; kills one past [`RSS_LIMIT`].
struct Watchdog {
    pids: Arc<Mutex<Vec<(&'static str, u32)>>>,
    current: Arc<Mutex<String>>,
    events: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Watchdog {
    fn start() -> Watchdog {
        let w = Watchdog {
            pids: Arc::default(),
            current: Arc::default(),
            events: Arc::default(),
            stop: Arc::default(),
        };
        let (pids, current, events, stop) = (
            w.pids.clone(),
            w.current.clone(),
            w.events.clone(),
            w.stop.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let list = pids.lock().unwrap().clone();
                for (name, pid) in list {
                    if let Some(r) = rss(pid)
                        && r > RSS_LIMIT
                    {
                        let _ = std::process::Command::new("kill")
                            .args(["-9", &pid.to_string()])
                            .status();
                        events.lock().unwrap().push(format!(
                            "{name} reached {} MiB RSS (limit {} MiB) during {:?}: killed",
                            r >> 20,
                            RSS_LIMIT >> 20,
                            current.lock().unwrap()
                        ));
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        w
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A deployment under test.
struct Deployment {
    cluster: Cluster,
    dog: Watchdog,
    /// The service stopped for the current upstream rows.
    down: Option<&'static str>,
}

impl Deployment {
    fn new(cluster: Cluster) -> Deployment {
        let d = Deployment {
            cluster,
            dog: Watchdog::start(),
            down: None,
        };
        d.watch();
        d
    }

    fn watch(&self) {
        let pids = self
            .cluster
            .procs
            .iter()
            .filter_map(|p| p.server.as_ref().map(|s| (p.name, s.pid())))
            .collect();
        *self.dog.pids.lock().unwrap() = pids;
    }

    fn pid(&self, name: &str) -> u32 {
        let p = self.cluster.procs.iter().find(|p| p.name == name).unwrap();
        p.server.as_ref().unwrap().pid()
    }

    /// The processes that died, by name.
    fn dead(&mut self) -> Vec<&'static str> {
        let down = self.down;
        self.cluster
            .procs
            .iter_mut()
            .filter_map(|p| (Some(p.name) != down && !p.alive()).then_some(p.name))
            .collect()
    }

    /// Starts every process that is not running, and waits until ready.
    fn revive(&mut self) {
        let names: Vec<&'static str> = self
            .cluster
            .procs
            .iter_mut()
            .filter_map(|p| (!p.alive()).then_some(p.name))
            .collect();
        for n in &names {
            self.cluster.respawn(n);
        }
        self.down = None;
        self.watch();
        self.wait_ready();
    }

    fn wait_ready(&self) {
        wait_ready(&self.cluster.front());
    }

    /// Every process answers `/health`.
    fn health(&self) -> Vec<String> {
        let mut bad = Vec::new();
        for p in &self.cluster.procs {
            if Some(p.name) == self.down || p.server.is_none() {
                continue;
            }
            let url = p.url();
            let r = send(
                super::http::host_of(&url),
                &Request::new("GET", "/health"),
                Duration::from_secs(15),
            );
            match r {
                Ok(r) if r.status == 200 => {}
                Ok(r) => bad.push(format!("{} /health answered {}", p.name, r.status)),
                Err(e) => bad.push(format!("{} /health: {e}", p.name)),
            }
        }
        bad
    }

    /// After a row: every process up and answering `/health`, or why not.
    /// A crashing process can take a while to go (a core dump), so an
    /// unhealthy one is given 20 s to exit or recover; one that neither
    /// exits nor recovers, or a row that got no answer in time, has every
    /// process restarted. Either way the row failed and the next row starts
    /// from a running deployment.
    fn settle(&mut self, timed_out: bool) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut health = Vec::new();
        while Instant::now() <= deadline && !timed_out {
            let dead = self.dead();
            if !dead.is_empty() {
                self.revive();
                return Some(format!("the request took down {dead:?}"));
            }
            health = self.health();
            if health.is_empty() {
                return None;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let names: Vec<&'static str> = self.cluster.procs.iter().map(|p| p.name).collect();
        for n in names {
            if self.cluster.proc(n).alive() {
                self.cluster.kill9(n);
            }
        }
        self.revive();
        Some(if timed_out {
            format!(
                "no answer within {:?}: every process restarted",
                ROW_TIMEOUT
            )
        } else {
            format!(
                "unresponsive ({}): every process restarted",
                health.join("; ")
            )
        })
    }

    /// Stops `svc` for the rows that need it down (and brings back the last).
    fn set_down(&mut self, svc: Option<&'static str>) {
        if self.down == svc {
            return;
        }
        if self.down.is_some() {
            self.revive();
        }
        if let Some(s) = svc {
            self.cluster.kill9(s);
            self.down = Some(s);
        }
    }
}

/// Waits until the front door reports every service ready.
pub fn wait_ready(front: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    let req = Request::new("GET", "/ready").bearer(Some(READER));
    loop {
        if let Ok(r) = send(super::http::host_of(front), &req, Duration::from_secs(10))
            && r.status == 200
        {
            return;
        }
        assert!(Instant::now() < deadline, "not ready within 90 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Checks that need more requests than the row's own.
fn followups(api: &Api, c: &Case, resp: &Option<Response>) -> Vec<String> {
    let ok = resp
        .as_ref()
        .is_some_and(|r| (200..300).contains(&r.status));
    let mut bad = Vec::new();
    for t in &c.then {
        let problem = match t {
            Then::SqlCount { sql, n } => match api.sql(sql) {
                Ok(v) if v == json!([{ "n": n }]) => None,
                Ok(v) => Some(format!("{sql} answered {v}, expected n = {n}")),
                Err(e) => Some(e),
            },
            Then::SqlOkIfCreated(sql) if ok => api
                .sql(sql)
                .err()
                .map(|e| format!("accepted, but then the data is unreadable: {e}")),
            Then::ObjectIs { target, bytes } => {
                match api.send(Role::Admin, &Request::new("GET", target)) {
                    Ok(r) if r.status == 200 && r.body[..] == bytes[..] => None,
                    Ok(r) => Some(format!("read back: {} {}", r.status, r.text())),
                    Err(e) => Some(format!("read back: {e}")),
                }
            }
            Then::ObjectAbsent(target) => match api.send(Role::Admin, &Request::new("GET", target))
            {
                Ok(r) if r.status == 404 => None,
                Ok(r) => Some(format!(
                    "{} exists afterwards ({})",
                    String::from_utf8_lossy(target),
                    r.status
                )),
                Err(e) => Some(format!("read back: {e}")),
            },
            Then::ObjectExists(target) => {
                match api.send(Role::Admin, &Request::new("HEAD", target)) {
                    Ok(r) if r.status == 200 => None,
                    Ok(r) => Some(format!(
                        "{} is gone ({})",
                        String::from_utf8_lossy(target),
                        r.status
                    )),
                    Err(e) => Some(format!("read back: {e}")),
                }
            }
            _ => None,
        };
        bad.extend(problem);
    }
    bad
}

/// Runs one row and every check that applies to it.
fn run_case(d: &mut Deployment, api: &Api, c: &Case, base: &mut Baseline) -> Vec<String> {
    d.set_down(c.down);
    *d.dog.current.lock().unwrap() = c.name.clone();
    let before: Option<Vec<Entry>> = if c.down.is_none() {
        api.list_all().ok()
    } else {
        None
    };
    let t = Instant::now();
    let resp = api.send(c.role, &c.req);
    if std::env::var_os("LAKEHOUSE_ADV_VERBOSE").is_some() {
        eprintln!("    answered in {:.0?}", t.elapsed());
    }
    let mut bad = cases::evaluate(c, &resp);
    let timed_out = matches!(resp, Err(super::http::HttpError::Timeout));
    let resp = resp.ok();
    if let Some(gone) = d.settle(timed_out) {
        bad.extend(d.dog.take());
        bad.push(gone);
        return bad;
    }
    bad.extend(d.dog.take());
    if c.down.is_some() {
        return bad;
    }
    bad.extend(followups(api, c, &resp));
    let refused = resp.as_ref().is_none_or(|r| r.status >= 400);
    match (before, api.list_all()) {
        (Some(before), Ok(after)) => {
            if (c.role.read_only() || refused) && before != after {
                bad.push(format!(
                    "a {} request changed the store: {}",
                    if refused { "refused" } else { "read-only" },
                    fixtures::diff(&before, &after)
                ));
            }
            let owned: Vec<Entry> = after
                .into_iter()
                .filter(|e| fixtures::fixture_owned(&e.0))
                .collect();
            if owned != base.owned {
                bad.push(format!(
                    "fixture objects changed: {}",
                    fixtures::diff(&base.owned, &owned)
                ));
                // Put the raw objects back so later rows do not fail for
                // this one; what cannot be put back is the new baseline.
                let _ = fixtures::repair_raw(api);
                base.owned = api
                    .list_all()
                    .map(|all| {
                        all.into_iter()
                            .filter(|e| fixtures::fixture_owned(&e.0))
                            .collect()
                    })
                    .unwrap_or(owned);
            }
        }
        (_, Err(e)) => bad.push(format!("cannot list the store afterwards: {e}")),
        (None, _) => bad.push("cannot list the store before".into()),
    }
    bad
}

/// `/health`, a read and a query are served while 200 connections sit
/// half-way through their headers (issue 20 item 5).
fn slow_clients(api: &Api) -> Vec<String> {
    let mut held = Vec::new();
    for _ in 0..200 {
        match TcpStream::connect(&api.addr) {
            Ok(mut s) => {
                let _ = s.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nx-slow: ");
                held.push(s);
            }
            Err(e) => return vec![format!("slow clients: connect: {e}")],
        }
    }
    let mut bad = Vec::new();
    let checks = [
        (Role::None, Request::new("GET", "/health")),
        (
            Role::Read,
            Request::new("GET", format!("/storage/objects/{}", cases::SMALL_KEY)),
        ),
        (
            Role::Read,
            Request::new("POST", "/query/sql").json(&json!({"sql": "SELECT 1 AS v"})),
        ),
    ];
    for (role, req) in checks {
        let t = Instant::now();
        let quick = Api {
            timeout: Duration::from_secs(10),
            ..api.clone()
        };
        match quick.send(role, &req) {
            Ok(r) if r.status == 200 && t.elapsed() < Duration::from_secs(5) => {}
            Ok(r) => bad.push(format!(
                "with 200 slow clients, {} {} took {:?} and answered {}",
                req.method,
                String::from_utf8_lossy(&req.target),
                t.elapsed(),
                r.status
            )),
            Err(e) => bad.push(format!(
                "with 200 slow clients, {} {}: {e}",
                req.method,
                String::from_utf8_lossy(&req.target)
            )),
        }
    }
    drop(held);
    bad
}

/// A query whose client hangs up stops using the CPU (issue 12).
fn cancel_on_disconnect(api: &Api, pid: u32) -> Vec<String> {
    let sql = "SELECT count(*) AS n FROM generate_series(1, 100000) a, generate_series(1, 100000) b WHERE a.value + b.value = 7";
    let req = Request::new("POST", "/query/sql")
        .bearer(Some(READER))
        .json(&json!({ "sql": sql }));
    let Ok(mut s) = TcpStream::connect(&api.addr) else {
        return vec!["disconnect: cannot connect".into()];
    };
    let mut bytes = req.head(&api.addr);
    bytes.extend_from_slice(&req.body);
    if s.write_all(&bytes).is_err() {
        return vec!["disconnect: cannot send".into()];
    }
    let c0 = cpu_secs(pid);
    std::thread::sleep(Duration::from_secs(2));
    let busy = cpu_secs(pid) - c0;
    let _ = s.set_nonblocking(true);
    let mut b = [0u8; 64];
    if let Ok(n) = s.read(&mut b)
        && n > 0
    {
        eprintln!(
            "note: the long query was answered before the disconnect ({:?}); cancellation not measured",
            String::from_utf8_lossy(&b[..n])
        );
        return vec![];
    }
    if busy < 0.1 {
        eprintln!("note: the long query used {busy:.2} CPU s in 2 s; cancellation not measured");
        return vec![];
    }
    drop(s);
    std::thread::sleep(Duration::from_secs(1));
    let c1 = cpu_secs(pid);
    std::thread::sleep(Duration::from_secs(3));
    let after = cpu_secs(pid) - c1;
    // Compared as rates, so a loaded machine (less CPU for everyone) does
    // not decide it: a running query keeps its share, a cancelled one drops
    // to an idle server's.
    if after > 0.1 && after / 3.0 > 0.3 * busy / 2.0 {
        vec![format!(
            "the query kept running after its client went away: {after:.1} CPU s in the 3 s after (it used {busy:.1} in the 2 s before)"
        )]
    } else {
        vec![]
    }
}

/// Messages with their error ids cut out (`(id 3f2a…)`), to compare them.
fn without_ids(msgs: &[String]) -> Vec<String> {
    msgs.iter()
        .map(|m| {
            let mut out = String::new();
            let mut rest = m.as_str();
            while let Some(i) = rest.find("(id ") {
                out.push_str(&rest[..i]);
                rest = rest[i..].split_once(')').map_or("", |(_, r)| r);
            }
            out.push_str(rest);
            out
        })
        .collect()
}

/// The whole run against one deployment.
pub fn run(split: bool) {
    let env = cases::server_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let cluster = if split {
        Cluster::split_with(&env)
    } else {
        Cluster::all_in_one_with(&env)
    };
    let mut d = Deployment::new(cluster);
    d.wait_ready();
    let api = Api::new(&d.cluster.front(), tokens());
    let ctx = fixtures::setup(&api).expect("creating the fixtures");
    let api = Api {
        timeout: ROW_TIMEOUT,
        ..api
    };
    let mut base = fixtures::snapshot(&api).expect("reading the fixtures");
    let table = cases::table(&ctx);
    assert!(table.len() >= 150, "only {} rows", table.len());
    let started = Instant::now();
    let mut failures: Vec<String> = Vec::new();
    let mut ran = 0;
    // Damage already reported is not reported again after every family.
    let mut known_damage: Vec<String> = Vec::new();
    let only = std::env::var("LAKEHOUSE_ADV_FAMILIES").unwrap_or_default();
    let verbose = std::env::var_os("LAKEHOUSE_ADV_VERBOSE").is_some();
    for fam in Family::ALL {
        if !only.is_empty()
            && !only
                .split(',')
                .any(|f| f.eq_ignore_ascii_case(&format!("{fam:?}")))
        {
            continue;
        }
        let t0 = Instant::now();
        for c in table.iter().filter(|c| c.family == fam) {
            if c.down.is_some() && !split {
                continue;
            }
            ran += 1;
            let t = Instant::now();
            let bad = run_case(&mut d, &api, c, &mut base);
            if verbose {
                eprintln!(
                    "  {:>6.0?} [{fam:?}] {} {}",
                    t.elapsed(),
                    c.name,
                    if bad.is_empty() { "ok" } else { "FAILED" }
                );
            }
            if !bad.is_empty() {
                failures.push(format!("[{fam:?}] {}: {}", c.name, bad.join("; ")));
            }
        }
        d.set_down(None);
        let damage = fixtures::check(&api, &base);
        if !damage.is_empty() && without_ids(&damage) != without_ids(&known_damage) {
            failures.push(format!(
                "[{fam:?}] fixtures after the family: {}",
                damage.join("; ")
            ));
            if let Ok(now) = fixtures::snapshot(&api) {
                base = now;
            }
        }
        known_damage = damage;
        eprintln!("adversarial: {fam:?} in {:.1?}", t0.elapsed());
    }
    failures.extend(
        slow_clients(&api)
            .into_iter()
            .map(|e| format!("[slow clients] {e}")),
    );
    let qpid = d.pid(if split { "queryd" } else { "lakehouse" });
    failures.extend(
        cancel_on_disconnect(&api, qpid)
            .into_iter()
            .map(|e| format!("[disconnect] {e}")),
    );
    let names: Vec<&'static str> = d.cluster.procs.iter().map(|p| p.name).collect();
    for n in names {
        d.cluster.kill9(n);
    }
    d.revive();
    failures.extend(
        fixtures::check(&api, &base)
            .into_iter()
            .map(|e| format!("[restart] {e}")),
    );
    let what = if split { "split" } else { "all-in-one" };
    eprintln!(
        "adversarial ({what}): {ran} cases in {:.0?}, {} failures",
        started.elapsed(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "adversarial ({what}): {} of {ran} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
