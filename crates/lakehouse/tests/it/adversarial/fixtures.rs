//! What the admin creates before a run (datasets with known rows, raw
//! objects with known bytes, a vector index with known items), and the check
//! that all of it is still there, byte for byte and answer for answer.
//!
//! Only `std`, `serde_json` and the raw client: the soak binary includes it.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::cases::*;
use super::http::{HttpError, Request, Response, send};

/// A deployment's front door and its tokens.
#[derive(Clone, Debug)]
pub struct Api {
    pub addr: String,
    pub tokens: Tokens,
    pub timeout: Duration,
}

/// One listed object: key, size, etag.
pub type Entry = (String, u64, String);

impl Api {
    pub fn new(url: &str, tokens: Tokens) -> Api {
        Api {
            addr: super::http::host_of(url).to_string(),
            tokens,
            timeout: Duration::from_secs(120),
        }
    }

    pub fn send(&self, role: Role, req: &Request) -> Result<Response, HttpError> {
        let req = req.clone().bearer(self.tokens.of(role));
        send(&self.addr, &req, self.timeout)
    }

    /// Sends as admin and wants a 2xx.
    pub fn ok(&self, req: Request) -> Result<Response, String> {
        let what = format!("{} {}", req.method, String::from_utf8_lossy(&req.target));
        match self.send(Role::Admin, &req) {
            Ok(r) if (200..300).contains(&r.status) => Ok(r),
            Ok(r) => Err(format!("{what}: {} {}", r.status, r.text())),
            Err(e) => Err(format!("{what}: {e}")),
        }
    }

    pub fn get(&self, target: &str) -> Result<Response, String> {
        self.ok(Request::new("GET", target))
    }

    /// A query's JSON answer, as admin.
    pub fn sql(&self, sql: &str) -> Result<Value, String> {
        let r = self.ok(Request::new("POST", "/query/sql").json(&json!({ "sql": sql })))?;
        r.json()
            .ok_or_else(|| format!("{sql}: not JSON: {}", r.text()))
    }

    pub fn ingest(&self, dataset: &str, format: &str, body: Vec<u8>) -> Result<Value, String> {
        let r =
            self.ok(Request::new("POST", format!("/ingest/{dataset}?format={format}")).body(body))?;
        r.json().ok_or_else(|| "ingest: not JSON".to_string())
    }

    pub fn manifest(&self, name: &str) -> Result<Value, String> {
        let r = self.get(&format!("/catalog/manifest/{name}"))?;
        r.json().ok_or_else(|| "manifest: not JSON".to_string())
    }

    /// Every object in the store, in key order.
    pub fn list_all(&self) -> Result<Vec<Entry>, String> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut target = "/storage/list?limit=10000".to_string();
            if let Some(a) = &after {
                target.push_str("&after=");
                target.push_str(&pct(a));
            }
            let v = self.get(&target)?.json().ok_or("list: not JSON")?;
            for o in v["objects"].as_array().ok_or("list: no objects")? {
                out.push((
                    o["key"].as_str().unwrap_or_default().to_string(),
                    o["size"].as_u64().unwrap_or_default(),
                    o["etag"].as_str().unwrap_or_default().to_string(),
                ));
            }
            match v["next"].as_str() {
                Some(n) if !n.is_empty() => after = Some(n.to_string()),
                _ => return Ok(out),
            }
        }
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters and `/`.
pub fn pct(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

fn csv(rows: std::ops::Range<u64>) -> Vec<u8> {
    let mut s = String::from("id,name\n");
    for i in rows {
        s.push_str(&format!("{i},name {i}\n"));
    }
    s.into_bytes()
}

/// The first object of a manifest: key, size, rows.
fn first_object(m: &Value) -> Result<(String, u64, u64), String> {
    let o = &m["objects"][0];
    Ok((
        o["key"]
            .as_str()
            .ok_or(format!("no object in {m}"))?
            .to_string(),
        o["size"].as_u64().unwrap_or_default(),
        o["row_count"].as_u64().unwrap_or_default(),
    ))
}

/// Creates every fixture as admin and returns what the attacks aim at.
pub fn setup(api: &Api) -> Result<Ctx, String> {
    api.ok(Request::new("PUT", format!("/storage/objects/{BLOB_KEY}")).body(blob()))?;
    api.ok(Request::new("PUT", format!("/storage/objects/{SMALL_KEY}")).body(SMALL_BODY))?;
    api.ok(Request::new("PUT", format!("/storage/objects/{NP_KEY}")).body(NP_BODY))?;
    api.ingest(FX_ROWS, "csv", csv(0..FX_ROWS_N))?;
    let nd: String = (0..FX_NESTED_N)
        .map(|i| format!("{{\"k\":{i},\"tag\":\"t{}\"}}\n", i % 3))
        .collect();
    api.ingest(FX_NESTED, "ndjson", nd.into_bytes())?;
    api.ingest(ATK_OWN, "csv", csv(0..10))?;
    api.ingest(RC0, "csv", csv(0..2))?;
    vectors(api)?;
    let rows = api.manifest(FX_ROWS)?;
    let (rows_key, rows_size, rows_count) = first_object(&rows)?;
    let (nested_key, nested_size, _) = first_object(&api.manifest(FX_NESTED)?)?;
    let (own_key, own_size, _) = first_object(&api.manifest(ATK_OWN)?)?;
    let (rc0_key, rc0_size, _) = first_object(&api.manifest(RC0)?)?;
    let all = api.list_all()?;
    let find = |prefix: &str| {
        all.iter()
            .find(|e| e.0.starts_with(prefix))
            .cloned()
            .ok_or(format!("no object under {prefix}"))
    };
    let manifest = find(&format!("_catalog/manifests/{FX_ROWS}."))?;
    let wal = find(&format!("_vectors/{FX_IDX}.wal/"))?;
    let lhv1 = find(&format!("_vectors/{FX_IDX}.lhv1"))?;
    let q = |format: &str| {
        api.ok(Request::new("POST", format!("/query/sql?format={format}"))
            .json(&json!({"sql": format!("SELECT * FROM {FX_ROWS} ORDER BY id")})))
            .map(|r| std::sync::Arc::from(r.body))
    };
    Ok(Ctx {
        tokens: api.tokens.clone(),
        rows_key,
        rows_size,
        rows_count,
        fingerprint: rows["schema_fingerprint"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        nested_key,
        nested_size,
        manifest_key: manifest.0,
        manifest_size: manifest.1,
        wal_key: wal.0,
        lhv1_key: lhv1.0,
        own_key,
        own_size,
        rc0_key,
        rc0_size,
        parquet: q("parquet")?,
        arrow: q("arrow")?,
    })
}

fn item(i: usize) -> Value {
    json!({"id": format!("f{i}"), "vector": vector(i, DIM), "metadata": {"i": i}})
}

/// `fx_idx`: 50 adds (one snapshot: `snapshot_every` is 40), then 10 more
/// that stay in the write-ahead log.
fn vectors(api: &Api) -> Result<(), String> {
    api.ok(Request::new("POST", "/vectors/indexes")
        .json(&json!({"name": FX_IDX, "dim": DIM, "metric": "cosine"})))?;
    let add = |range: std::ops::Range<usize>| {
        let items: Vec<Value> = range.map(item).collect();
        api.ok(
            Request::new("POST", format!("/vectors/indexes/{FX_IDX}/add"))
                .json(&json!({ "items": items })),
        )
    };
    add(0..50)?;
    // Wait for the background snapshot, and for the log it covers to go.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    loop {
        let now: Vec<Entry> = api
            .list_all()?
            .into_iter()
            .filter(|e| e.0.starts_with(&format!("_vectors/{FX_IDX}.")))
            .collect();
        let has_snapshot = now.iter().any(|e| e.0.ends_with(".lhv1"));
        if has_snapshot && last.as_ref() == Some(&now) {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("no settled snapshot of {FX_IDX}: {now:?}"));
        }
        last = Some(now);
        std::thread::sleep(Duration::from_millis(300));
    }
    add(50..FX_IDX_N)?;
    Ok(())
}

/// Puts the raw fixture objects back if a row changed them.
pub fn repair_raw(api: &Api) -> Result<(), String> {
    for (key, body) in [(BLOB_KEY, blob()), (SMALL_KEY, SMALL_BODY.to_vec())] {
        let target = format!("/storage/objects/{key}");
        let same = api
            .send(Role::Admin, &Request::new("GET", target.as_str()))
            .is_ok_and(|r| r.status == 200 && r.body == body);
        if !same {
            api.ok(Request::new("PUT", target).body(body))?;
        }
    }
    Ok(())
}

/// The state the fixtures must keep.
#[derive(Clone, Debug, PartialEq)]
pub struct Baseline {
    /// Every stored object the fixtures own (datasets, manifests, vector
    /// logs and snapshots, raw objects).
    pub owned: Vec<Entry>,
    pub manifests: Vec<Value>,
    pub answers: Vec<Value>,
    pub index: Value,
    pub hits: Vec<Value>,
}

pub fn fixture_owned(key: &str) -> bool {
    [
        &format!("datasets/{FX_ROWS}/") as &str,
        &format!("datasets/{FX_NESTED}/"),
        "fx/raw/",
        &format!("_catalog/manifests/{FX_ROWS}.parquet"),
        &format!("_catalog/manifests/{FX_NESTED}.parquet"),
        &format!("_vectors/{FX_IDX}."),
    ]
    .iter()
    .any(|p| key.starts_with(p))
}

const ANSWERS: [&str; 3] = [
    "SELECT count(*) AS n, sum(id) AS s, min(name) AS lo, max(name) AS hi FROM fx_rows",
    "SELECT count(*) AS n, sum(k) AS s FROM \"fx/nested\"",
    "SELECT id, name FROM fx_rows WHERE id IN (0, 7, 499) ORDER BY id",
];

/// Reads the fixtures' state now.
pub fn snapshot(api: &Api) -> Result<Baseline, String> {
    let owned = api
        .list_all()?
        .into_iter()
        .filter(|e| fixture_owned(&e.0))
        .collect();
    let manifests = vec![api.manifest(FX_ROWS)?, api.manifest(FX_NESTED)?];
    let answers = ANSWERS
        .iter()
        .map(|q| api.sql(q))
        .collect::<Result<_, _>>()?;
    let index = api
        .get(&format!("/vectors/indexes/{FX_IDX}"))?
        .json()
        .ok_or("index info: not JSON")?["count"]
        .clone();
    let mut hits = Vec::new();
    for i in [0, 31, FX_IDX_N - 1] {
        let r = api.ok(
            Request::new("POST", format!("/vectors/indexes/{FX_IDX}/search"))
                .json(&json!({"vector": vector(i, DIM), "k": 1, "ef": 100})),
        )?;
        let v = r.json().ok_or("search: not JSON")?;
        hits.push(json!({"id": v[0]["id"], "self_at_zero": v[0]["distance"].as_f64().is_some_and(|d| d.abs() < 1e-4)}));
    }
    Ok(Baseline {
        owned,
        manifests,
        answers,
        index,
        hits,
    })
}

/// What differs from `base` (the fixtures must be exactly as created).
pub fn check(api: &Api, base: &Baseline) -> Vec<String> {
    let mut bad = Vec::new();
    match api.get(&format!("/storage/objects/{BLOB_KEY}")) {
        Ok(r) if r.body == blob() => {}
        Ok(_) => bad.push(format!("{BLOB_KEY} changed")),
        Err(e) => bad.push(e),
    }
    match api.get(&format!("/storage/objects/{SMALL_KEY}")) {
        Ok(r) if r.body == SMALL_BODY => {}
        Ok(_) => bad.push(format!("{SMALL_KEY} changed")),
        Err(e) => bad.push(e),
    }
    match snapshot(api) {
        Err(e) => bad.push(format!("fixtures unreadable: {e}")),
        Ok(now) => {
            if now.owned != base.owned {
                bad.push(format!(
                    "fixture objects changed: {}",
                    diff(&base.owned, &now.owned)
                ));
            }
            for (what, a, b) in [
                ("manifests", json!(base.manifests), json!(now.manifests)),
                ("answers", json!(base.answers), json!(now.answers)),
                ("index count", base.index.clone(), now.index.clone()),
                ("vector hits", json!(base.hits), json!(now.hits)),
            ] {
                if a != b {
                    bad.push(format!("fixture {what} changed: {a} → {b}"));
                }
            }
        }
    }
    bad
}

/// The keys added, removed or changed between two listings.
pub fn diff(before: &[Entry], after: &[Entry]) -> String {
    let mut out = Vec::new();
    for e in before {
        match after.iter().find(|a| a.0 == e.0) {
            None => out.push(format!("-{}", e.0)),
            Some(a) if a != e => out.push(format!("~{}", e.0)),
            _ => {}
        }
    }
    for a in after {
        if !before.iter().any(|e| e.0 == a.0) {
            out.push(format!("+{}", a.0));
        }
    }
    let n = out.len();
    out.truncate(12);
    format!("{} ({n} keys)", out.join(" "))
}
