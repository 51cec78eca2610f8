//! The table of hostile requests: one row per request, with what the
//! contract (README, issues 12 and 20) says must come back.
//!
//! Each row names its family, the raw request (the target is sent byte for
//! byte), the role whose token it carries, the status (exact where the
//! contract is exact, else a set or a class), the error codes allowed, and
//! follow-up checks. What holds for every row is checked by the harness
//! (`evaluate` here, the rest in `harness.rs`): every error is the JSON
//! envelope `{"error":{"code","message"}}`, no 5xx unless the row allows it,
//! the server is still up, and nothing changed that the role may not change.
//!
//! Contracts the issues leave open are decided in one place each:
//! [`truncation_ok`] (a result past `max_rows`), and the status sets of the
//! rows marked "open" below (deep expressions: answered or a 400; huge
//! allocations: 400 or 413; ownership refusals: any 4xx).
//!
//! Only `std` and `serde_json`: the soak binary in `bench/` includes this file.

use std::sync::{Arc, OnceLock};

use serde_json::{Value, json};

use super::http::{Request, Response};

// ------------------------------------------------------------- fixtures

/// Datasets, objects and an index the admin creates before the run; no row
/// may change them (see `fixtures.rs`).
pub const FX_ROWS: &str = "fx_rows";
pub const FX_ROWS_N: u64 = 500;
pub const FX_NESTED: &str = "fx/nested";
pub const FX_NESTED_N: u64 = 100;
pub const FX_IDX: &str = "fx_idx";
pub const FX_IDX_N: usize = 60;
pub const DIM: usize = 8;
pub const BLOB_KEY: &str = "fx/raw/blob.bin";
pub const BLOB_LEN: usize = 65_536;
pub const SMALL_KEY: &str = "fx/raw/small.txt";
pub const SMALL_BODY: &[u8] = b"hello, fixture\n";
/// A dataset the attacker may own (its own prefix), created by the admin.
pub const ATK_OWN: &str = "atk_own";
/// A dataset whose object the admin re-registers with `row_count: 0`.
pub const RC0: &str = "adv_rc0";
/// A non-Parquet object inside `datasets/atk_np/`.
pub const NP_KEY: &str = "datasets/atk_np/data.parquet";
pub const NP_BODY: &[u8] = b"this is not a parquet file, whatever its name says\n";

/// The server's limits during the suite and the soak.
pub const MAX_ROWS: u64 = 10_000;
pub const MEMORY_LIMIT: &str = "256MiB";
pub const MAX_OBJECT: usize = 8 << 20;
pub const QUERY_TIMEOUT_SECS: u64 = 30;

/// `LAKEHOUSE__…` overrides every process of a deployment gets.
pub fn server_env() -> Vec<(String, String)> {
    [
        ("LAKEHOUSE__QUERYD__MAX_ROWS", MAX_ROWS.to_string()),
        ("LAKEHOUSE__QUERYD__MEMORY_LIMIT", MEMORY_LIMIT.to_string()),
        (
            "LAKEHOUSE__QUERYD__TIMEOUT_SECS",
            QUERY_TIMEOUT_SECS.to_string(),
        ),
        (
            "LAKEHOUSE__STORAGED__MAX_OBJECT_SIZE",
            format!("{}MiB", MAX_OBJECT >> 20),
        ),
        // Snapshot the fixture index once (50 adds), then only log.
        ("LAKEHOUSE__VECTORD__SNAPSHOT_EVERY", "40".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The fixture blob's bytes.
pub fn blob() -> Vec<u8> {
    (0..BLOB_LEN).map(|i| (i * 7 % 251) as u8).collect()
}

/// A deterministic vector, never zero.
pub fn vector(i: usize, dim: usize) -> Vec<f32> {
    (0..dim)
        .map(|d| ((i as f32 + 1.0) * (d as f32 + 1.37) * 0.731).sin() + 0.01)
        .collect()
}

/// What the admin's setup learned: keys the attacks aim at.
#[derive(Clone, Debug, Default)]
pub struct Ctx {
    /// The deployment's role tokens (some rows forge headers with them).
    pub tokens: Tokens,
    /// One Parquet object of `fx_rows`, its size and rows.
    pub rows_key: String,
    pub rows_size: u64,
    pub rows_count: u64,
    /// `fx_rows`'s schema fingerprint (an attacker can read it).
    pub fingerprint: String,
    /// One object of `fx/nested`, and its size.
    pub nested_key: String,
    pub nested_size: u64,
    /// `_catalog/manifests/fx_rows.parquet`, its size.
    pub manifest_key: String,
    pub manifest_size: u64,
    /// One of `fx_idx`'s write-ahead-log entries and its snapshot.
    pub wal_key: String,
    pub lhv1_key: String,
    /// `atk_own`'s object (the attacker's own prefix).
    pub own_key: String,
    pub own_size: u64,
    /// `adv_rc0`'s object.
    pub rc0_key: String,
    pub rc0_size: u64,
    /// Valid bodies to fuzz: `SELECT * FROM fx_rows` as Parquet and Arrow IPC.
    pub parquet: Arc<[u8]>,
    pub arrow: Arc<[u8]>,
}

// ------------------------------------------------------------- the row type

/// Whose token a row carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    None,
    Bad,
    Read,
    Write,
    Admin,
}

impl Role {
    /// May this role change anything at all?
    pub fn read_only(self) -> bool {
        matches!(self, Role::None | Role::Bad | Role::Read)
    }
}

/// The role tokens of a deployment.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    pub read: String,
    pub write: String,
    pub admin: String,
}

pub const BAD_TOKEN: &str = "not-a-valid-token-at-all-000";

impl Tokens {
    pub fn of(&self, role: Role) -> Option<&str> {
        match role {
            Role::None => None,
            Role::Bad => Some(BAD_TOKEN),
            Role::Read => Some(&self.read),
            Role::Write => Some(&self.write),
            Role::Admin => Some(&self.admin),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    Auth,
    Keys,
    Headers,
    Methods,
    Register,
    Ownership,
    Ingest,
    Sql,
    Vectors,
    Upstream,
}

impl Family {
    pub const ALL: [Family; 10] = [
        Family::Auth,
        Family::Keys,
        Family::Headers,
        Family::Methods,
        Family::Register,
        Family::Ownership,
        Family::Ingest,
        Family::Sql,
        Family::Vectors,
        Family::Upstream,
    ];
}

/// The status a row must get.
#[derive(Clone, Debug)]
pub enum Status {
    Is(u16),
    OneOf(Vec<u16>),
    /// Any 4xx (the contract says "refused", not which status).
    Client,
}

impl Status {
    pub fn allows(&self, s: u16) -> bool {
        match self {
            Status::Is(x) => *x == s,
            Status::OneOf(v) => v.contains(&s),
            Status::Client => (400..500).contains(&s),
        }
    }
    fn allows_client_error(&self) -> bool {
        (400..500).any(|s| self.allows(s))
    }
}

/// Checks after the response.
#[derive(Clone, Debug)]
pub enum Then {
    /// `sql` (as admin) answers `[{"n": n}]`.
    SqlCount { sql: String, n: u64 },
    /// When the row succeeded, `sql` answers 200 (the data it made is readable).
    SqlOkIfCreated(String),
    /// When the row answered 200, its body is this JSON.
    AnswerIfOk(Value),
    /// The response body is exactly these bytes.
    BodyIs(Arc<[u8]>),
    /// When the row succeeded, an object (raw target under
    /// `/storage/objects/`) holds these bytes.
    ObjectIs { target: Vec<u8>, bytes: Arc<[u8]> },
    /// An object (raw target) does not exist.
    ObjectAbsent(Vec<u8>),
    /// An object (raw target) exists.
    ObjectExists(Vec<u8>),
    /// The error message mentions each of these.
    MessageNames(Vec<String>),
    /// A result past `max_rows` in `format`: see [`truncation_ok`].
    Truncated(&'static str),
    /// When 200, a JSON array of exactly this many rows.
    RowsIfOk(usize),
}

/// One hostile request and what must come back.
#[derive(Clone, Debug)]
pub struct Case {
    pub family: Family,
    pub name: String,
    pub req: Request,
    pub role: Role,
    pub status: Status,
    /// Error codes allowed when the status is an error (empty: any).
    pub codes: Vec<&'static str>,
    pub then: Vec<Then>,
    /// Refused by the HTTP layer itself: the envelope is not required, and a
    /// closed connection counts as a refusal.
    pub protocol: bool,
    /// The service that must be down while this row runs (split only).
    pub down: Option<&'static str>,
    /// Left out of the soak (order-dependent or deployment-dependent).
    pub no_soak: bool,
}

/// Builder for a row.
pub struct B(Case);

pub fn case(f: Family, name: &str, method: &str, target: impl AsRef<[u8]>, role: Role) -> B {
    B(Case {
        family: f,
        name: name.to_string(),
        req: Request::new(method, target),
        role,
        status: Status::Client,
        codes: vec![],
        then: vec![],
        protocol: false,
        down: None,
        no_soak: false,
    })
}

impl B {
    pub fn h(mut self, k: &str, v: impl AsRef<[u8]>) -> B {
        self.0.req = self.0.req.header(k, v);
        self
    }
    pub fn body(mut self, b: impl Into<Arc<[u8]>>) -> B {
        self.0.req = self.0.req.body(b);
        self
    }
    pub fn json(mut self, v: Value) -> B {
        self.0.req = self.0.req.json(&v);
        self
    }
    /// A JSON content type with these raw bytes as the body.
    pub fn json_raw(self, b: impl Into<Arc<[u8]>>) -> B {
        self.h("content-type", "application/json").body(b)
    }
    pub fn status(mut self, s: u16) -> B {
        self.0.status = Status::Is(s);
        self
    }
    pub fn one_of(mut self, s: &[u16]) -> B {
        self.0.status = Status::OneOf(s.to_vec());
        self
    }
    pub fn client(mut self) -> B {
        self.0.status = Status::Client;
        self
    }
    pub fn code(mut self, c: &'static str) -> B {
        self.0.codes.push(c);
        self
    }
    pub fn then(mut self, t: Then) -> B {
        self.0.then.push(t);
        self
    }
    pub fn names(self, what: &str) -> B {
        self.then(Then::MessageNames(vec![what.to_string()]))
    }
    pub fn protocol(mut self) -> B {
        self.0.protocol = true;
        self
    }
    pub fn raw_framing(mut self) -> B {
        self.0.req.raw_framing = true;
        self
    }
    pub fn shutdown_write(mut self) -> B {
        self.0.req.shutdown_write = true;
        self
    }
    pub fn down(mut self, svc: &'static str) -> B {
        self.0.down = Some(svc);
        self.0.no_soak = true;
        self
    }
    pub fn no_soak(mut self) -> B {
        self.0.no_soak = true;
        self
    }
    pub fn done(self) -> Case {
        self.0
    }
}

// ------------------------------------------------------------- evaluation

/// What is wrong with `resp` for row `c` (empty: nothing). Checks that need
/// more requests are the harness's.
pub fn evaluate(c: &Case, resp: &Result<Response, super::http::HttpError>) -> Vec<String> {
    let r = match resp {
        Ok(r) => r,
        Err(_) if c.protocol && c.status.allows_client_error() => return vec![],
        Err(e) => return vec![format!("{e}")],
    };
    let mut bad = Vec::new();
    if !c.status.allows(r.status) {
        bad.push(format!(
            "status {} (expected {:?}): {}",
            r.status,
            c.status,
            r.text()
        ));
    }
    if r.status >= 400 && c.req.method != "HEAD" && !c.protocol {
        match envelope(r) {
            Err(e) => bad.push(e),
            Ok((code, message)) => {
                if !c.codes.is_empty() && !c.codes.contains(&code.as_str()) {
                    bad.push(format!("code {code:?} (expected one of {:?})", c.codes));
                }
                if message.contains("Error(") {
                    bad.push(format!("the message shows a debug wrapper: {message:?}"));
                }
                if r.status == 405 && code != "method_not_allowed" {
                    bad.push(format!("405 with code {code:?}, not method_not_allowed"));
                }
                for t in &c.then {
                    if let Then::MessageNames(words) = t {
                        for w in words {
                            if !message.contains(w.as_str()) {
                                bad.push(format!("the message does not name {w:?}: {message:?}"));
                            }
                        }
                    }
                }
            }
        }
    }
    if r.status == 401 && r.header("www-authenticate").is_none() {
        bad.push("401 without WWW-Authenticate".into());
    }
    if r.status == 405 && r.header("allow").is_none_or(|a| a.trim().is_empty()) {
        bad.push("405 without an Allow header".into());
    }
    for t in &c.then {
        if let Some(e) = then_on_response(t, r) {
            bad.push(e);
        }
    }
    bad
}

/// The error envelope's code and message, or why it is not one.
pub fn envelope(r: &Response) -> Result<(String, String), String> {
    let v: Value = serde_json::from_slice(&r.body).map_err(|_| {
        format!(
            "{} without the JSON error envelope: {:?}",
            r.status,
            r.text()
        )
    })?;
    let code = v["error"]["code"].as_str();
    let message = v["error"]["message"].as_str();
    match (code, message) {
        (Some(c), Some(m)) if !c.is_empty() && !m.is_empty() => Ok((c.to_string(), m.to_string())),
        _ => Err(format!("{} with a malformed error envelope: {v}", r.status)),
    }
}

fn then_on_response(t: &Then, r: &Response) -> Option<String> {
    match t {
        Then::AnswerIfOk(want) if r.status == 200 => {
            let got = r.json();
            (got.as_ref() != Some(want)).then(|| format!("answer {} (expected {want})", r.text()))
        }
        Then::RowsIfOk(n) if r.status == 200 => match r.json() {
            Some(Value::Array(a)) if a.len() == *n => None,
            _ => Some(format!("expected {n} rows, got {}", r.text())),
        },
        Then::BodyIs(want) => (r.body[..] != want[..]).then(|| {
            format!(
                "body differs ({} bytes, expected {})",
                r.body.len(),
                want.len()
            )
        }),
        Then::Truncated(format) => truncation_ok(r, format).err(),
        _ => None,
    }
}

/// THE contract for a result past `max_rows` (issue 20 item 4; the issue
/// leaves the exact form open, this is the one place that decides it):
/// either `413 too_many_rows` before the first byte, or `200` with a body
/// that is complete and well formed in its format, holds at most `max_rows`
/// rows, and says it was cut: a trailer whose name or value contains
/// "truncated", or (json) a last array element / (ndjson) a last line that is
/// an object with a `truncated` key or an `error` of code `too_many_rows`,
/// or (csv) a last line containing "truncated". Arrow and Parquet can only
/// say it in a trailer.
pub fn truncation_ok(r: &Response, format: &str) -> Result<(), String> {
    if r.status == 413 {
        return match envelope(r) {
            Ok((code, _)) if code == "too_many_rows" => Ok(()),
            Ok((code, _)) => Err(format!("413 with code {code:?}, not too_many_rows")),
            Err(e) => Err(e),
        };
    }
    if r.status != 200 {
        return Err(format!("status {}: {}", r.status, r.text()));
    }
    if !r.complete {
        return Err(format!(
            "200 with a body cut short after {} bytes (not a well-formed end)",
            r.body.len()
        ));
    }
    let trailer = r
        .trailers
        .iter()
        .any(|(k, v)| k.contains("truncated") || v.to_ascii_lowercase().contains("truncated"));
    // The README's in-band markers: NDJSON's last line
    // `{"$lakehouse":{"truncated":true,…}}` (older shapes accepted too).
    let marks = |v: &Value| {
        v["$lakehouse"]["truncated"] == true
            || v.get("truncated").is_some()
            || v["error"]["code"] == "too_many_rows"
    };
    let text = String::from_utf8_lossy(&r.body);
    let (rows, marked) = match format {
        "json" => {
            let v: Value = serde_json::from_slice(&r.body)
                .map_err(|e| format!("200 but the JSON does not parse: {e}"))?;
            let a = v.as_array().cloned().unwrap_or_default();
            let marked = a.last().is_some_and(marks);
            (a.len() - usize::from(marked), marked)
        }
        "ndjson" => {
            let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
            let mut last_marks = false;
            for (i, l) in lines.iter().enumerate() {
                let v: Value = serde_json::from_str(l)
                    .map_err(|e| format!("200 but NDJSON line {} does not parse: {e}", i + 1))?;
                last_marks = i + 1 == lines.len() && marks(&v);
            }
            (lines.len() - usize::from(last_marks), last_marks)
        }
        "csv" => {
            let lines: Vec<&str> = text.lines().collect();
            let marked = lines
                .last()
                .is_some_and(|l| l.to_ascii_lowercase().contains("truncated"));
            (lines.len().saturating_sub(1 + usize::from(marked)), marked)
        }
        _ => (0, false),
    };
    if rows as u64 > MAX_ROWS {
        return Err(format!(
            "200 with {rows} rows, more than max_rows {MAX_ROWS}"
        ));
    }
    if !(trailer || marked) {
        return Err(format!(
            "200 with {rows} rows and nothing saying the result was truncated (no trailer, no marker)"
        ));
    }
    Ok(())
}

// ------------------------------------------------------------- the table

/// Every row, in the order they run (families in [`Family::ALL`] order).
pub fn table(ctx: &Ctx) -> Vec<Case> {
    let mut t = Vec::new();
    auth(ctx, &mut t);
    auth_malformed(ctx, &mut t);
    keys(&mut t);
    keys_read_and_list(&mut t);
    list_params(&mut t);
    headers(&mut t);
    conditionals(&mut t);
    big_headers(&mut t);
    framing(&mut t);
    methods(&mut t);
    register(ctx, &mut t);
    register_odd(ctx, &mut t);
    register_bodies(&mut t);
    register_names(&mut t);
    ownership(ctx, &mut t);
    ownership_rc0(ctx, &mut t);
    ingest_csv(&mut t);
    ingest_options(&mut t);
    ingest_bad_bodies(&mut t);
    ingest_binary(ctx, &mut t);
    ingest_names(&mut t);
    sql_deep(&mut t);
    sql_time_travel(&mut t);
    sql_vectors(&mut t);
    sql_memory(&mut t);
    sql_sandbox(&mut t);
    sql_writes(&mut t);
    sql_rows(&mut t);
    vectors_create(&mut t);
    vectors_datasets(&mut t);
    vectors_search(&mut t);
    vectors_add(&mut t);
    vectors_paths(&mut t);
    upstream(&mut t);
    t.sort_by_key(|c| c.family);
    t
}

const OBJ: &str = "/storage/objects/";

fn fx_vec(i: usize) -> Value {
    json!(vector(i, DIM))
}

/// Every write and admin route, with the role each needs.
fn guarded_routes(ctx: &Ctx) -> Vec<(Request, &'static str)> {
    let csv: Arc<[u8]> = Arc::from(&b"id,name\n1,a\n"[..]);
    vec![
        (
            Request::new("POST", "/ingest/auth_w?format=csv").body(csv),
            "write",
        ),
        (
            Request::new("POST", "/catalog/register")
                .json(&json!({"name": "auth_reg", "schema_fingerprint": "f", "objects": []})),
            "write",
        ),
        (
            Request::new("POST", format!("/catalog/compact/{FX_ROWS}")),
            "write",
        ),
        (
            Request::new("POST", format!("/catalog/sync/{FX_ROWS}")),
            "write",
        ),
        (
            Request::new("POST", format!("/catalog/restore/{FX_ROWS}"))
                .json(&json!({"version": 0})),
            "admin",
        ),
        (
            Request::new("POST", format!("/catalog/vacuum/{FX_ROWS}")),
            "admin",
        ),
        (
            Request::new("POST", "/vectors/indexes")
                .json(&json!({"name": "auth_idx", "dim": 2, "metric": "l2"})),
            "write",
        ),
        (
            Request::new("POST", format!("/vectors/indexes/{FX_IDX}/add"))
                .json(&json!({"items": [{"id": "auth", "vector": fx_vec(999)}]})),
            "write",
        ),
        (
            Request::new("POST", format!("/vectors/indexes/{FX_IDX}/sync")),
            "write",
        ),
        (
            Request::new("PUT", format!("{OBJ}{BLOB_KEY}")).body(&b"overwritten"[..]),
            "admin",
        ),
        (Request::new("DELETE", format!("{OBJ}{SMALL_KEY}")), "admin"),
        (
            Request::new("DELETE", format!("{OBJ}{}", ctx.rows_key)),
            "admin",
        ),
        (
            Request::new("DELETE", format!("/catalog/manifest/{FX_ROWS}")),
            "admin",
        ),
        (
            Request::new("DELETE", format!("/vectors/indexes/{FX_IDX}")),
            "admin",
        ),
        (
            Request::new("DELETE", format!("/vectors/indexes/{FX_IDX}/items/f1")),
            "admin",
        ),
    ]
}

fn read_routes() -> Vec<(Request, u16)> {
    vec![
        (Request::new("GET", format!("{OBJ}{SMALL_KEY}")), 200),
        (Request::new("HEAD", format!("{OBJ}{SMALL_KEY}")), 200),
        (Request::new("GET", "/storage/list?prefix=fx/"), 200),
        (Request::new("GET", "/catalog/list"), 200),
        (
            Request::new("GET", format!("/catalog/manifest/{FX_ROWS}")),
            200,
        ),
        (
            Request::new("GET", format!("/catalog/manifest/{FX_ROWS}?version=0")),
            200,
        ),
        (
            Request::new("GET", format!("/catalog/history/{FX_ROWS}")),
            200,
        ),
        (
            Request::new("POST", "/query/sql")
                .json(&json!({"sql": format!("SELECT count(*) AS n FROM \"{FX_ROWS}@v0\"")})),
            200,
        ),
        (
            Request::new("POST", "/query/sql")
                .json(&json!({"sql": format!("SELECT count(*) AS n FROM {FX_ROWS}")})),
            200,
        ),
        (Request::new("GET", "/vectors/indexes"), 200),
        (
            Request::new("GET", format!("/vectors/indexes/{FX_IDX}")),
            200,
        ),
        (
            Request::new("POST", format!("/vectors/indexes/{FX_IDX}/search"))
                .json(&json!({"vector": fx_vec(3), "k": 1})),
            200,
        ),
        (Request::new("GET", "/ready"), 200),
        (Request::new("GET", "/metrics"), 200),
        (Request::new("GET", "/no/such/route"), 404),
    ]
}

fn from_req(f: Family, name: String, req: Request, role: Role) -> B {
    let mut b = case(f, &name, &req.method, &req.target, role);
    b.0.req = req;
    b
}

fn req_name(r: &Request) -> String {
    format!("{} {}", r.method, String::from_utf8_lossy(&r.target))
}

/// Every guarded route with every role below it, and every read route
/// without a token and with a read token.
fn auth(ctx: &Ctx, t: &mut Vec<Case>) {
    use Role::*;
    for (req, needs) in guarded_routes(ctx) {
        let n = req_name(&req);
        for role in [None, Bad] {
            t.push(
                from_req(Family::Auth, format!("{role:?}: {n}"), req.clone(), role)
                    .status(401)
                    .code("unauthorized")
                    .done(),
            );
        }
        let below: &[Role] = if needs == "admin" {
            &[Read, Write]
        } else {
            &[Read]
        };
        for &role in below {
            t.push(
                from_req(Family::Auth, format!("{role:?}: {n}"), req.clone(), role)
                    .status(403)
                    .code("forbidden")
                    .names(needs)
                    .done(),
            );
        }
    }
    for (req, ok) in read_routes() {
        let n = req_name(&req);
        t.push(
            from_req(Family::Auth, format!("None: {n}"), req.clone(), None)
                .status(401)
                .code("unauthorized")
                .done(),
        );
        t.push(
            from_req(Family::Auth, format!("Read: {n}"), req, Read)
                .status(ok)
                .code("no_route")
                .done(),
        );
    }
}

fn auth_malformed(ctx: &Ctx, t: &mut Vec<Case>) {
    use Role::*;
    let (read, admin) = (ctx.tokens.read.as_str(), ctx.tokens.admin.as_str());
    let del = format!("{OBJ}{SMALL_KEY}");
    let a = |name: &str, v: &[u8]| {
        case(Family::Auth, name, "DELETE", &del, None)
            .h("authorization", v)
            .status(401)
            .code("unauthorized")
    };
    t.push(a("Basic scheme", b"Basic YWRtaW46YWRtaW4=").done());
    t.push(a("Bearer without a token", b"Bearer").done());
    t.push(a("Bearer with an empty token", b"Bearer    ").done());
    t.push(a("two tokens in one header", b"Bearer x y").done());
    t.push(
        a("a token of 0xff bytes", b"Bearer \xff\xfe\xfd")
            .one_of(&[400, 401])
            .done(),
    );
    t.push(
        a(
            "the sha256 of a token instead of it",
            b"Bearer 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        )
        .done(),
    );
    let long = format!("Bearer {}", "t".repeat(64 << 10));
    t.push(
        a("a 64 KiB token", long.as_bytes())
            .one_of(&[401, 431])
            .protocol()
            .done(),
    );
    // A read token with extra headers claiming more: still read.
    t.push(
        case(
            Family::Auth,
            "read token + X-Role: admin",
            "DELETE",
            &del,
            Read,
        )
        .h("x-role", "admin")
        .h("x-lakehouse-role", "admin")
        .h("x-forwarded-user", "admin")
        .status(403)
        .code("forbidden")
        .done(),
    );
    t.push(
        case(
            Family::Auth,
            "read token, trailing spaces",
            "DELETE",
            &del,
            None,
        )
        .h("authorization", format!("Bearer {read}   "))
        .one_of(&[401, 403])
        .done(),
    );
    // Scheme names are case-insensitive (RFC 9110): a read works.
    t.push(
        case(
            Family::Auth,
            "lower-case scheme, read token",
            "GET",
            &del,
            None,
        )
        .h("authorization", format!("bearer {read}"))
        .status(200)
        .then(Then::BodyIs(Arc::from(SMALL_BODY)))
        .done(),
    );
    // Two Authorization headers, read first: never escalates.
    t.push(
        case(
            Family::Auth,
            "two Authorization headers",
            "DELETE",
            &del,
            None,
        )
        .h("authorization", format!("Bearer {read}"))
        .h("authorization", format!("Bearer {admin}"))
        .one_of(&[400, 401, 403])
        .done(),
    );
}

/// PUT of a raw target as admin: refused as `invalid_key`, nothing written.
fn bad_key(name: &str, target: &[u8]) -> Case {
    let mut full = OBJ.as_bytes().to_vec();
    full.extend_from_slice(target);
    case(Family::Keys, name, "PUT", &full, Role::Admin)
        .body(&b"k"[..])
        .status(400)
        .code("invalid_key")
        .done()
}

/// Keys that are valid however odd: stored and read back byte-exact.
fn good_key(name: &str, target: &[u8]) -> Case {
    let mut full = OBJ.as_bytes().to_vec();
    full.extend_from_slice(target);
    let body: Arc<[u8]> = Arc::from(format!("odd key {name}").into_bytes());
    case(Family::Keys, name, "PUT", &full, Role::Admin)
        .body(body.clone())
        .status(200)
        .then(Then::ObjectIs {
            target: full.clone(),
            bytes: body,
        })
        .done()
}

fn long_key(len: usize) -> String {
    let mut k = String::from("adv/long");
    while k.len() < len {
        let room = len - k.len() - 1;
        k.push('/');
        k.push_str(&"k".repeat(room.min(200)));
    }
    k
}

fn keys(t: &mut Vec<Case>) {
    let cases: &[(&str, &[u8])] = &[
        ("dot-dot", b"adv/../x"),
        ("leading dot-dot", b"../x"),
        ("%2e%2e", b"adv/%2e%2e/x"),
        ("%2E%2E", b"adv/%2E%2E/x"),
        (".%2e", b"adv/.%2e/x"),
        ("%2e.", b"adv/%2e./x"),
        ("..%2f", b"adv/..%2fx"),
        ("%2f..%2f..", b"adv%2f..%2f..%2fx"),
        ("all encoded", b"%2e%2e%2f%2e%2e%2fetc%2fpasswd"),
        ("%2e%2e over a fixture", b"adv/%2e%2e/fx/raw/small.txt"),
        ("dot", b"adv/./x"),
        ("%2e", b"adv/%2e/x"),
        ("empty segment", b"adv//x"),
        ("leading slash", b"/etc/passwd"),
        ("trailing slash", b"adv/"),
        ("trailing dot", b"adv/."),
        ("NUL", b"adv/x%00y"),
        ("newline", b"adv/x%0ay"),
        ("CR LF", b"adv/x%0d%0ay"),
        ("DEL", b"adv/x%7f"),
        ("NEL (C1 control)", b"adv/x%c2%85"),
        ("overlong UTF-8 dots", b"adv/%c0%ae%c0%ae/x"),
        ("invalid UTF-8", b"adv/%ff%fe"),
        ("reserved #digits suffix", b"adv/upload%23123"),
    ];
    for (name, target) in cases {
        t.push(bad_key(name, target));
    }
    let seg256 = format!("adv/{}", "s".repeat(256));
    t.push(bad_key("a 256-byte segment", seg256.as_bytes()));
    t.push(bad_key("a 1025-byte key", long_key(1025).as_bytes()));
    // NAME_MAX is 255, less room for the `#<n>` staging suffix: segments
    // over 240 bytes are refused up front on every backend, never a 500.
    let seg255 = format!("adv/{}", "s".repeat(255));
    t.push(bad_key("a 255-byte segment", seg255.as_bytes()));
    let seg241 = format!("adv/{}", "s".repeat(241));
    t.push(bad_key("a 241-byte segment", seg241.as_bytes()));
    let seg240 = format!("adv/{}", "s".repeat(240));
    t.push(good_key("a 240-byte segment", seg240.as_bytes()));
    t.push(good_key("a 1024-byte key", long_key(1024).as_bytes()));
    t.push(good_key(
        "literal %2e%2e (double-encoded)",
        b"adv/%252e%252e/x",
    ));
    t.push(good_key("backslash dot-dot", b"adv/..%5cx"));
    t.push(good_key(
        "unicode and spaces",
        b"adv/d%C3%A9j%C3%A0%20vu/%E2%9C%93",
    ));
    t.push(good_key("#letters is not reserved", b"adv/file%23abc"));
}

fn keys_read_and_list(t: &mut Vec<Case>) {
    use Role::*;
    let k = |name: &str, m: &str, target: &str, role: Role| {
        case(Family::Keys, name, m, target, role)
            .status(400)
            .code("invalid_key")
    };
    t.push(
        k(
            "GET ../ ",
            "GET",
            "/storage/objects/adv/../fx/raw/small.txt",
            Read,
        )
        .done(),
    );
    t.push(
        k(
            "GET %2e%2e",
            "GET",
            "/storage/objects/adv/%2e%2e/fx/raw/small.txt",
            Read,
        )
        .done(),
    );
    t.push(
        k(
            "GET etc/passwd",
            "GET",
            "/storage/objects/..%2f..%2f..%2fetc%2fpasswd",
            Read,
        )
        .done(),
    );
    t.push(k("HEAD %2e%2e", "HEAD", "/storage/objects/%2e%2e/x", Read).done());
    // Through a normalising gateway these become DELETE / PUT of a fixture.
    t.push(
        k(
            "DELETE %2e%2e onto a fixture",
            "DELETE",
            "/storage/objects/adv/%2e%2e/fx/raw/small.txt",
            Admin,
        )
        .done(),
    );
    t.push(
        k(
            "PUT ../ onto a fixture",
            "PUT",
            "/storage/objects/zz/../fx/raw/blob.bin",
            Admin,
        )
        .body(&b"overwritten"[..])
        .done(),
    );
}

fn list_params(t: &mut Vec<Case>) {
    use Role::*;
    let l = |name: &str, q: &str| {
        case(
            Family::Keys,
            name,
            "GET",
            format!("/storage/list?{q}"),
            Read,
        )
        .status(400)
        .code("invalid_argument")
        .done()
    };
    t.push(l("list limit=abc", "limit=abc"));
    t.push(l("list limit=-1", "limit=-1"));
    t.push(l("list limit=2^64", "limit=18446744073709551616"));
    t.push(
        case(
            Family::Keys,
            "list limit=0",
            "GET",
            "/storage/list?limit=0",
            Read,
        )
        .one_of(&[200, 400])
        .done(),
    );
    t.push(
        case(
            Family::Keys,
            "list limit over the cap",
            "GET",
            "/storage/list?limit=10000000",
            Read,
        )
        .one_of(&[200, 400])
        .done(),
    );
    t.push(
        case(
            Family::Keys,
            "list prefix ../",
            "GET",
            "/storage/list?prefix=..%2f..%2f",
            Read,
        )
        .one_of(&[200, 400])
        .done(),
    );
    t.push(
        case(
            Family::Keys,
            "list prefix NUL",
            "GET",
            "/storage/list?prefix=%00",
            Read,
        )
        .one_of(&[200, 400])
        .done(),
    );
    t.push(
        case(
            Family::Keys,
            "list bad percent-encoding",
            "GET",
            "/storage/list?prefix=%zz%ff",
            Read,
        )
        .one_of(&[200, 400])
        .done(),
    );
}

fn blob_get(name: &str, range: &[u8]) -> B {
    case(
        Family::Headers,
        name,
        "GET",
        format!("{OBJ}{BLOB_KEY}"),
        Role::Read,
    )
    .h("range", range)
}

fn headers(t: &mut Vec<Case>) {
    let full: Arc<[u8]> = Arc::from(blob());
    // RFC 9110 §14.2: a Range the server does not understand is ignored.
    for (name, r) in [
        ("Range garbage", &b"bytes=abc"[..]),
        ("Range reversed", b"bytes=5-1"),
        ("Range multi", b"bytes=0-1,4-5"),
        ("Range other unit", b"items=0-1"),
        ("Range overflowing u64", b"bytes=0-99999999999999999999999"),
        ("Range empty", b""),
    ] {
        t.push(
            blob_get(name, r)
                .status(200)
                .then(Then::BodyIs(full.clone()))
                .done(),
        );
    }
    t.push(
        blob_get("Range first byte", b"bytes=0-0")
            .status(206)
            .then(Then::BodyIs(Arc::from(&full[..1])))
            .done(),
    );
    t.push(
        blob_get("Range at u64::MAX", b"bytes=18446744073709551615-")
            .status(416)
            .code("range_not_satisfiable")
            .done(),
    );
    t.push(
        blob_get("Range at the end", format!("bytes={BLOB_LEN}-").as_bytes())
            .status(416)
            .done(),
    );
    t.push(
        blob_get("Range suffix 0", b"bytes=-0")
            .one_of(&[200, 416])
            .done(),
    );
    t.push(
        blob_get("Range with 0xff bytes", b"bytes=\xff-\xfe")
            .one_of(&[200, 400])
            .done(),
    );
}

fn conditionals(t: &mut Vec<Case>) {
    use Role::*;
    let put = |name: &str| {
        case(
            Family::Headers,
            name,
            "PUT",
            format!("{OBJ}{SMALL_KEY}"),
            Admin,
        )
        .body(&b"overwritten"[..])
    };
    t.push(
        put("If-Match mismatch")
            .h("if-match", "\"nope\"")
            .status(412)
            .done(),
    );
    t.push(
        put("If-None-Match * on an existing key")
            .h("if-none-match", "*")
            .status(412)
            .done(),
    );
    t.push(
        put("If-Match and If-None-Match")
            .h("if-match", "*")
            .h("if-none-match", "*")
            .status(400)
            .done(),
    );
    t.push(
        put("If-Match with 0xff bytes")
            .h("if-match", b"\"\xff\"")
            .one_of(&[400, 412])
            .done(),
    );
    t.push(
        put("If-Match of 8 KiB")
            .h("if-match", format!("\"{}\"", "e".repeat(8192)))
            .status(412)
            .done(),
    );
    t.push(
        case(
            Family::Headers,
            "If-Match * on a missing key",
            "PUT",
            "/storage/objects/adv/ifmatch-absent",
            Admin,
        )
        .h("if-match", "*")
        .body(&b"x"[..])
        .status(412)
        .then(Then::ObjectAbsent(
            b"/storage/objects/adv/ifmatch-absent".to_vec(),
        ))
        .done(),
    );
}

fn big_headers(t: &mut Vec<Case>) {
    use Role::*;
    let get_small = |name: &str| {
        case(
            Family::Headers,
            name,
            "GET",
            format!("{OBJ}{SMALL_KEY}"),
            Read,
        )
    };
    t.push(
        get_small("If-None-Match garbage")
            .h("if-none-match", "garbage")
            .status(200)
            .done(),
    );
    t.push(
        get_small("If-Modified-Since garbage")
            .h("if-modified-since", "yesterday-ish")
            .one_of(&[200, 400])
            .done(),
    );
    t.push(
        get_small("a 100 KiB header")
            .h("x-big", "b".repeat(100 << 10))
            .one_of(&[200, 431])
            .protocol()
            .done(),
    );
    t.push(
        get_small("a 1 MiB header")
            .h("x-big", "b".repeat(1 << 20))
            .client()
            .protocol()
            .done(),
    );
    let mut many = get_small("300 headers");
    for i in 0..300 {
        many = many.h(&format!("x-h{i}"), "v");
    }
    t.push(many.client().protocol().done());
}

/// Request framing: lying lengths, bad chunks. Nothing may be stored.
fn framing(t: &mut Vec<Case>) {
    let put = |name: &str, key: &str| {
        let target = format!("{OBJ}adv/framing/{key}");
        case(Family::Headers, name, "PUT", &target, Role::Admin)
            .raw_framing()
            .client()
            .protocol()
            .then(Then::ObjectAbsent(target.into_bytes()))
    };
    t.push(
        put("Content-Length longer than the body", "short")
            .h("content-length", "1000")
            .body(&b"only ten b"[..])
            .shutdown_write()
            .done(),
    );
    t.push(
        put("negative Content-Length", "neg")
            .h("content-length", "-5")
            .body(&b"x"[..])
            .done(),
    );
    // RFC 9112 §6.3: chunked overrides Content-Length (or the request is refused).
    let both = format!("{OBJ}adv/framing/both");
    t.push(
        case(
            Family::Headers,
            "Content-Length and chunked",
            "PUT",
            &both,
            Role::Admin,
        )
        .raw_framing()
        .h("content-length", "3")
        .h("transfer-encoding", "chunked")
        .body(&b"3\r\nabc\r\n0\r\n\r\n"[..])
        .one_of(&[200, 400])
        .protocol()
        .then(Then::ObjectIs {
            target: both.into_bytes(),
            bytes: Arc::from(&b"abc"[..]),
        })
        .done(),
    );
    t.push(
        put("a bad chunk size", "chunk")
            .h("transfer-encoding", "chunked")
            .body(&b"zz\r\nabc\r\n0\r\n\r\n"[..])
            .done(),
    );
    t.push(
        put("a chunked body cut short", "cut")
            .h("transfer-encoding", "chunked")
            .body(&b"100\r\nabc"[..])
            .shutdown_write()
            .done(),
    );
    t.push(
        case(
            Family::Headers,
            "a body over max_object_size",
            "PUT",
            "/storage/objects/adv/too-big",
            Role::Admin,
        )
        .body(bodies().over_max_object.clone())
        .status(413)
        .code("too_large")
        .then(Then::ObjectAbsent(b"/storage/objects/adv/too-big".to_vec()))
        .done(),
    );
}

/// Wrong methods on every route: 405, JSON, with `Allow` (issue 20 item 3).
fn methods(t: &mut Vec<Case>) {
    use Role::*;
    let routes: &[(&str, String)] = &[
        ("PATCH", format!("{OBJ}{SMALL_KEY}")),
        ("OPTIONS", format!("{OBJ}{SMALL_KEY}")),
        ("TRACE", format!("{OBJ}{SMALL_KEY}")),
        ("POST", format!("{OBJ}{SMALL_KEY}")),
        ("POST", "/storage/list".into()),
        ("GET", "/query/sql".into()),
        ("HEAD", "/query/sql".into()),
        ("PUT", "/query/sql".into()),
        ("DELETE", "/query/sql".into()),
        ("GET", "/ingest/adv_m".into()),
        ("PUT", "/ingest/adv_m".into()),
        ("GET", "/catalog/register".into()),
        ("DELETE", "/catalog/register".into()),
        ("PUT", "/catalog/list".into()),
        ("POST", format!("/catalog/manifest/{FX_ROWS}")),
        ("PUT", "/vectors/indexes".into()),
        ("POST", format!("/vectors/indexes/{FX_IDX}")),
        ("PATCH", format!("/vectors/indexes/{FX_IDX}")),
        ("GET", format!("/vectors/indexes/{FX_IDX}/add")),
        ("GET", format!("/vectors/indexes/{FX_IDX}/search")),
        ("PUT", format!("/vectors/indexes/{FX_IDX}/items/f1")),
        ("POST", format!("/vectors/indexes/{FX_IDX}/items/f1")),
        ("POST", "/health".into()),
        ("DELETE", "/ready".into()),
    ];
    for (m, target) in routes {
        t.push(
            case(Family::Methods, &format!("{m} {target}"), m, target, Admin)
                .status(405)
                .code("method_not_allowed")
                .done(),
        );
    }
    // Below the role, either answer is fine: the route is refused.
    t.push(
        case(
            Family::Methods,
            "PATCH as read",
            "PATCH",
            format!("{OBJ}{SMALL_KEY}"),
            Read,
        )
        .one_of(&[403, 405])
        .done(),
    );
    t.push(
        case(
            Family::Methods,
            "TRACE /query/sql as read",
            "TRACE",
            "/query/sql",
            Read,
        )
        .one_of(&[403, 405])
        .done(),
    );
    t.push(
        case(
            Family::Methods,
            "an unknown method",
            "FROB",
            format!("{OBJ}{SMALL_KEY}"),
            Admin,
        )
        .one_of(&[400, 405, 501])
        .done(),
    );
    t.push(
        case(Family::Methods, "no key", "GET", "/storage/objects/", Read)
            .one_of(&[400, 404, 405])
            .done(),
    );
}

fn reg(name: &str, role: Role, body: Value) -> B {
    case(Family::Register, name, "POST", "/catalog/register", role).json(body)
}

fn obj(key: &str, size: u64, rows: u64) -> Value {
    json!({"key": key, "size": size, "row_count": rows})
}

/// Registers that must be refused: keys the dataset does not own, internal
/// keys, missing objects, wrong sizes, broken bodies (issue 12).
fn register(ctx: &Ctx, t: &mut Vec<Case>) {
    let fp = ctx.fingerprint.as_str();
    let trav = format!("datasets/atk_trav/../{FX_ROWS}/x.parquet");
    let long = format!("datasets/atk_long/{}", "k".repeat(1010));
    let rows = obj(&ctx.rows_key, ctx.rows_size, ctx.rows_count);
    let attacks: Vec<(&str, &str, Value)> = vec![
        ("another dataset's object", "atk_foreign", rows),
        (
            "the catalog's manifest",
            "atk_cat",
            obj(&ctx.manifest_key, ctx.manifest_size, 1),
        ),
        ("a vector WAL entry", "atk_wal", obj(&ctx.wal_key, 10, 1)),
        ("a vector snapshot", "atk_lhv1", obj(&ctx.lhv1_key, 10, 1)),
        (
            "../../etc/passwd",
            "atk_passwd",
            obj("../../etc/passwd", 10, 1),
        ),
        ("a ../ inside its prefix", "atk_trav", obj(&trav, 10, 1)),
        (
            "a missing object",
            "atk_missing",
            obj("datasets/atk_missing/none.parquet", 10, 1),
        ),
        (
            "its own object, wrong size",
            ATK_OWN,
            obj(&ctx.own_key, ctx.own_size + 1, 10),
        ),
        ("its own object, size 0", ATK_OWN, obj(&ctx.own_key, 0, 10)),
        (
            "an object of another attacker's dataset",
            "atk_other",
            obj(&ctx.own_key, ctx.own_size, 10),
        ),
        (
            "a key with a NUL",
            "atk_nul",
            obj("datasets/atk_nul/a\u{0}b", 1, 1),
        ),
        ("a 1025-byte key", "atk_long", obj(&long, 1, 1)),
        (
            "a raw fixture object",
            "atk_raw",
            obj(BLOB_KEY, BLOB_LEN as u64, 1),
        ),
    ];
    for (name, ds, object) in attacks {
        t.push(
            reg(
                name,
                Role::Write,
                json!({"name": ds, "schema_fingerprint": fp, "objects": [object]}),
            )
            .client()
            .done(),
        );
    }
}

fn register_odd(ctx: &Ctx, t: &mut Vec<Case>) {
    use Role::*;
    let fp = ctx.fingerprint.as_str();
    // A non-Parquet object in its own prefix: refused now, or every query
    // on it fails with JSON naming the dataset.
    t.push(reg("a non-Parquet object", Write, json!({"name": "atk_np", "schema_fingerprint": fp, "objects": [obj(NP_KEY, NP_BODY.len() as u64, 1)]})).one_of(&[200, 400, 409, 422]).done());
    t.push(
        case(
            Family::Register,
            "SELECT from the non-Parquet dataset",
            "POST",
            "/query/sql",
            Read,
        )
        .json(json!({"sql": "SELECT * FROM atk_np"}))
        .one_of(&[400, 404, 409, 422, 500, 502])
        .names("atk_np")
        .done(),
    );
    t.push(
        reg(
            "fingerprint conflict on a fixture",
            Write,
            json!({"name": FX_ROWS, "schema_fingerprint": "other", "objects": []}),
        )
        .status(409)
        .code("fingerprint_conflict")
        .done(),
    );
    t.push(reg("stale expected_version on a fixture", Write, json!({"name": FX_ROWS, "schema_fingerprint": fp, "objects": [obj(&ctx.rows_key, ctx.rows_size, ctx.rows_count)], "expected_version": 999})).one_of(&[400, 403, 409, 412]).done());
}

fn register_bodies(t: &mut Vec<Case>) {
    use Role::*;
    let b = bodies();
    t.push(
        reg("a 5 MiB body", Write, json!(null))
            .json_raw(b.huge_register.clone())
            .status(413)
            .code("too_large")
            .done(),
    );
    t.push(
        reg("100k-deep JSON", Write, json!(null))
            .json_raw(b.deep_json.clone())
            .status(400)
            .done(),
    );
    t.push(
        reg("not JSON", Write, json!(null))
            .json_raw(&b"name=x"[..])
            .status(400)
            .done(),
    );
    t.push(
        reg("trailing garbage", Write, json!(null))
            .json_raw(&br#"{"name":"atk_tg","schema_fingerprint":"f","objects":[]} x"#[..])
            .status(400)
            .done(),
    );
    t.push(
        reg("invalid UTF-8", Write, json!(null))
            .json_raw(&b"{\"name\":\"\xff\xfe\",\"schema_fingerprint\":\"f\",\"objects\":[]}"[..])
            .status(400)
            .done(),
    );
    t.push(
        case(
            Family::Register,
            "text/plain",
            "POST",
            "/catalog/register",
            Write,
        )
        .h("content-type", "text/plain")
        .body(&br#"{"name":"atk_tp","schema_fingerprint":"f","objects":[]}"#[..])
        .one_of(&[400, 415])
        .done(),
    );
    t.push(
        reg("empty body", Write, json!(null))
            .json_raw(&b""[..])
            .status(400)
            .done(),
    );
    t.push(
        reg(
            "negative row_count",
            Write,
            json!({"name": "atk_neg", "schema_fingerprint": "f", "objects": [], "row_count": -1}),
        )
        .status(400)
        .done(),
    );
    t.push(reg("size as a string", Write, json!({"name": "atk_str", "schema_fingerprint": "f", "objects": [{"key": "datasets/atk_str/a", "size": "big", "row_count": 1}]})).status(400).done());
    t.push(
        reg(
            "objects null",
            Write,
            json!({"name": "atk_null", "schema_fingerprint": "f", "objects": null}),
        )
        .status(400)
        .done(),
    );
    t.push(reg("expected_version a string", Write, json!({"name": "atk_ev", "schema_fingerprint": "f", "objects": [], "expected_version": "x"})).status(400).done());
    t.push(
        reg(
            "empty fingerprint",
            Write,
            json!({"name": "atk_efp", "schema_fingerprint": "", "objects": []}),
        )
        .status(400)
        .done(),
    );
}

fn register_names(t: &mut Vec<Case>) {
    let bad = |label: &str, name: &str| {
        reg(
            &format!("name {label}"),
            Role::Write,
            json!({"name": name, "schema_fingerprint": "f", "objects": []}),
        )
        .status(400)
        .code("invalid_name")
        .done()
    };
    t.push(bad("empty", ""));
    t.push(bad("upper case", "UPPER"));
    t.push(bad("../etc", "../etc"));
    t.push(bad("a/../b", "a/../b"));
    t.push(bad("leading slash", "/abs"));
    t.push(bad("double slash", "a//b"));
    t.push(bad("dot", "."));
    t.push(bad("of 257 bytes", &"n".repeat(257)));
    t.push(bad("unicode", "données"));
    t.push(bad("with a NUL", "a\u{0}b"));
    t.push(bad("with a newline", "a\nb"));
    // 256 bytes is within the grammar but not within NAME_MAX once it is a
    // key segment (`_catalog/manifests/<name>.parquet`): refused up front.
    t.push(
        reg(
            "name with a 256-byte segment",
            Role::Write,
            json!({"name": "n".repeat(256), "schema_fingerprint": "f", "objects": []}),
        )
        .status(400)
        .done(),
    );
    for (label, target) in [
        ("manifest ../", "/catalog/manifest/../_catalog/x"),
        (
            "manifest %2e%2e",
            "/catalog/manifest/%2e%2e/%2e%2e/etc/passwd",
        ),
        ("manifest NUL", "/catalog/manifest/a%00b"),
        ("history ../", "/catalog/history/../_catalog/x"),
        (
            "history %2e%2e",
            "/catalog/history/%2e%2e/%2e%2e/etc/passwd",
        ),
        ("history NUL", "/catalog/history/a%00b"),
        ("history of nothing", "/catalog/history/"),
    ] {
        t.push(
            case(Family::Register, label, "GET", target, Role::Read)
                .one_of(&[400, 404])
                .done(),
        );
    }
    // Compaction, restore and vacuum with hostile bodies or targets: a 4xx,
    // nothing changed (the fixture checks hold for admin requests too).
    for (label, target, body, allowed) in [
        (
            "compact junk body",
            format!("/catalog/compact/{FX_ROWS}"),
            "{\"target_size\":",
            &[400][..],
        ),
        (
            "compact tiny target",
            format!("/catalog/compact/{FX_ROWS}"),
            "{\"target_size\":1}",
            &[400],
        ),
        (
            "compact unknown field",
            format!("/catalog/compact/{FX_ROWS}"),
            "{\"rm\":true}",
            &[400],
        ),
        (
            "compact zorder unknown column",
            format!("/catalog/compact/{FX_ROWS}"),
            "{\"zorder\":[\"nope\"]}",
            &[400],
        ),
        (
            "compact no dataset",
            "/catalog/compact/no_such_ds".to_string(),
            "",
            &[404],
        ),
        (
            "compact traversal",
            "/catalog/compact/../_catalog/x".to_string(),
            "",
            &[400, 404],
        ),
        (
            "restore no version",
            format!("/catalog/restore/{FX_ROWS}"),
            "{}",
            &[400],
        ),
        (
            "restore far version",
            format!("/catalog/restore/{FX_ROWS}"),
            "{\"version\":99999}",
            &[404],
        ),
        (
            "restore negative",
            format!("/catalog/restore/{FX_ROWS}"),
            "{\"version\":-3}",
            &[400],
        ),
        (
            "restore both",
            format!("/catalog/restore/{FX_ROWS}"),
            "{\"version\":0,\"timestamp\":\"2026-01-01\"}",
            &[400],
        ),
        (
            "vacuum junk body",
            format!("/catalog/vacuum/{FX_ROWS}"),
            "[]",
            &[400],
        ),
        (
            "vacuum no dataset",
            "/catalog/vacuum/no_such_ds".to_string(),
            "{\"dry_run\":true}",
            &[404],
        ),
    ] {
        t.push(
            case(Family::Register, label, "POST", target, Role::Admin)
                .json_raw(body.as_bytes())
                .one_of(allowed)
                .done(),
        );
    }
    // Versions and times that do not exist, are absurd or are not numbers.
    for (label, target, allowed) in [
        (
            "version far past",
            format!("/catalog/manifest/{FX_ROWS}?version=999999999"),
            &[404][..],
        ),
        (
            "version i64 max",
            format!("/catalog/manifest/{FX_ROWS}?version=9223372036854775807"),
            &[404],
        ),
        (
            "version overflow",
            format!("/catalog/manifest/{FX_ROWS}?version=99999999999999999999"),
            &[400],
        ),
        (
            "version negative",
            format!("/catalog/manifest/{FX_ROWS}?version=-1"),
            &[400],
        ),
        (
            "timestamp year 0",
            format!("/catalog/manifest/{FX_ROWS}?timestamp=0000-01-01"),
            &[400, 404],
        ),
        (
            "timestamp far future",
            format!("/catalog/manifest/{FX_ROWS}?timestamp=9999-12-31T23:59:59Z"),
            &[200],
        ),
        (
            "timestamp junk",
            format!("/catalog/manifest/{FX_ROWS}?timestamp=%00%ff"),
            &[400],
        ),
        (
            "history limit huge",
            format!("/catalog/history/{FX_ROWS}?limit=18446744073709551616"),
            &[400],
        ),
        (
            "history limit zero",
            format!("/catalog/history/{FX_ROWS}?limit=0"),
            &[400],
        ),
        (
            "history unknown param",
            format!("/catalog/history/{FX_ROWS}?since=1"),
            &[400],
        ),
    ] {
        t.push(
            case(Family::Register, label, "GET", target, Role::Read)
                .one_of(allowed)
                .done(),
        );
    }
    // Normalised, this is DELETE /catalog/manifest/fx_rows.
    t.push(
        case(
            Family::Register,
            "DELETE manifest x/%2e%2e/fx_rows",
            "DELETE",
            format!("/catalog/manifest/x/%2e%2e/{FX_ROWS}"),
            Role::Admin,
        )
        .one_of(&[400, 404])
        .done(),
    );
}

fn csv_rows(n: usize) -> Arc<[u8]> {
    let mut s = String::from("id,name\n");
    for i in 0..n {
        s.push_str(&format!("{},attacker {i}\n", 900_000 + i));
    }
    Arc::from(s.into_bytes())
}

/// The attacks of issues 12 and 20 item 7: register a dataset over objects
/// it does not own, then replace or append into it so that its "old
/// objects" are deleted. The fixture checks catch any deletion.
fn ownership(ctx: &Ctx, t: &mut Vec<Case>) {
    use Role::*;
    let fp = ctx.fingerprint.as_str();
    let attacks: Vec<(&str, Value)> = vec![
        (
            "atk_rep",
            json!([obj(&ctx.rows_key, ctx.rows_size, ctx.rows_count)]),
        ),
        (
            "atk_repcat",
            json!([obj(&ctx.manifest_key, ctx.manifest_size, 1)]),
        ),
        (
            "atk_repwal",
            json!([obj(&ctx.wal_key, 10, 1), obj(&ctx.lhv1_key, 10, 1)]),
        ),
        // `fx` owns the prefix `datasets/fx/`, which holds `fx/nested`'s objects.
        (
            "fx",
            json!([obj(&ctx.nested_key, ctx.nested_size, FX_NESTED_N)]),
        ),
    ];
    for (ds, objects) in attacks {
        t.push(
            case(
                Family::Ownership,
                &format!("register {ds} over foreign objects"),
                "POST",
                "/catalog/register",
                Write,
            )
            .json(json!({"name": ds, "schema_fingerprint": fp, "objects": objects}))
            .client()
            .no_soak()
            .done(),
        );
        t.push(
            case(
                Family::Ownership,
                &format!("replace {ds}"),
                "POST",
                format!("/ingest/{ds}?format=csv&mode=replace"),
                Write,
            )
            .body(csv_rows(3))
            .one_of(&[200, 201, 400, 403, 409])
            .no_soak()
            .done(),
        );
    }
}

fn ownership_rc0(ctx: &Ctx, t: &mut Vec<Case>) {
    use Role::*;
    let fp = ctx.fingerprint.as_str();
    // Issue 20 item 7: row_count 0 on someone else's object, then an append.
    t.push(
        case(Family::Ownership, "register atk_rc0 with a foreign row_count:0 object", "POST", "/catalog/register", Write)
            .json(json!({"name": "atk_rc0", "schema_fingerprint": fp, "objects": [obj(&ctx.rows_key, ctx.rows_size, 0)]}))
            .client()
            .no_soak()
            .done(),
    );
    t.push(
        case(
            Family::Ownership,
            "append to atk_rc0",
            "POST",
            "/ingest/atk_rc0?format=csv&mode=append",
            Write,
        )
        .body(csv_rows(2))
        .one_of(&[200, 201, 400, 403, 409])
        .no_soak()
        .done(),
    );
    // Its own object listed with row_count 0 (the admin may): an append
    // deletes nothing but its own failed uploads.
    t.push(
        case(Family::Ownership, "admin lists adv_rc0's object with row_count 0", "POST", "/catalog/register", Admin)
            .json(json!({"name": RC0, "schema_fingerprint": fp, "objects": [obj(&ctx.rc0_key, ctx.rc0_size, 0)]}))
            .one_of(&[200, 400])
            .no_soak()
            .done(),
    );
    t.push(
        case(
            Family::Ownership,
            "append to adv_rc0 keeps its listed object",
            "POST",
            format!("/ingest/{RC0}?format=csv&mode=append"),
            Write,
        )
        .body(csv_rows(2))
        .status(200)
        .then(Then::ObjectExists(
            format!("{OBJ}{}", ctx.rc0_key).into_bytes(),
        ))
        .no_soak()
        .done(),
    );
    // A write token appending a different schema to a fixture: 409, unchanged.
    t.push(
        case(
            Family::Ownership,
            "append another schema to a fixture",
            "POST",
            format!("/ingest/{FX_ROWS}?format=csv"),
            Write,
        )
        .body(&b"x,y,z\n1,2,3\n"[..])
        .status(409)
        .code("schema_mismatch")
        .done(),
    );
    // An idempotency key shaped like a path into the catalog.
    t.push(
        case(
            Family::Ownership,
            "Idempotency-Key ../../_catalog",
            "POST",
            "/ingest/adv_idem?format=csv",
            Write,
        )
        .h(
            "idempotency-key",
            format!("../../_catalog/manifests/{FX_ROWS}"),
        )
        .body(csv_rows(2))
        .one_of(&[201, 400])
        .done(),
    );
}

fn ingest(name: &str, ds: &str, query: &str, body: impl Into<Arc<[u8]>>) -> B {
    case(
        Family::Ingest,
        name,
        "POST",
        format!("/ingest/{ds}?{query}"),
        Role::Write,
    )
    .body(body)
}

fn count_of(ds: &str, n: u64) -> Then {
    Then::SqlCount {
        sql: format!("SELECT count(*) AS n FROM \"{ds}\""),
        n,
    }
}

fn ingest_csv(t: &mut Vec<Case>) {
    // Every row counts, with or without a final newline (issue 12).
    t.push(
        ingest(
            "CSV without a final newline",
            "adv_nofinal",
            "format=csv",
            &b"id,v\n1,a\n2,b\n3,c"[..],
        )
        .status(201)
        .then(count_of("adv_nofinal", 3))
        .done(),
    );
    t.push(
        ingest(
            "CRLF CSV without a final newline",
            "adv_crlf",
            "format=csv",
            &b"id,v\r\n1,a\r\n2,b"[..],
        )
        .status(201)
        .then(count_of("adv_crlf", 2))
        .done(),
    );
    t.push(
        ingest(
            "quoted newline in the last field, no final newline",
            "adv_quoted",
            "format=csv",
            &b"id,v\n1,\"x\ny\""[..],
        )
        .status(201)
        .then(count_of("adv_quoted", 1))
        .done(),
    );
    t.push(
        ingest(
            "headerless single row, no newline",
            "adv_headerless",
            "format=csv&header=false",
            &b"1,2"[..],
        )
        .status(201)
        .then(count_of("adv_headerless", 1))
        .done(),
    );
    t.push(
        ingest(
            "NDJSON without a final newline",
            "adv_ndnofinal",
            "format=ndjson",
            &b"{\"a\":1}\n{\"a\":2}"[..],
        )
        .status(201)
        .then(count_of("adv_ndnofinal", 2))
        .done(),
    );
    // Duplicate or empty header names: renamed (a, a_1) or refused.
    for (ds, body) in [
        ("adv_dup", &b"a,a\n1,2\n"[..]),
        ("adv_emptyh", b"a,,b\n1,2,3\n"),
        ("adv_allempty", b",\n1,2\n"),
        ("adv_dup3", b"x,x,x\n1,2,3\n"),
    ] {
        t.push(
            ingest(
                &format!(
                    "header names {:?}",
                    String::from_utf8_lossy(body).lines().next().unwrap_or("")
                ),
                ds,
                "format=csv",
                body,
            )
            .one_of(&[201, 400])
            .then(Then::SqlOkIfCreated(format!("SELECT * FROM {ds}")))
            .done(),
        );
    }
}

fn ingest_options(t: &mut Vec<Case>) {
    // A delimiter or quote that cannot work is refused, not a dropped row.
    for (i, (label, q)) in [
        ("delimiter=\\n", "delimiter=%0A"),
        ("delimiter=\\r", "delimiter=%0D"),
        ("quote=\\n", "quote=%0A"),
        ("delimiter = quote", "delimiter=%22&quote=%22"),
        ("two-byte delimiter", "delimiter=ab"),
        ("empty delimiter", "delimiter="),
    ]
    .into_iter()
    .enumerate()
    {
        t.push(
            ingest(
                label,
                &format!("adv_delim{i}"),
                &format!("format=csv&{q}"),
                &b"a,b\n1,2\n"[..],
            )
            .status(400)
            .code("invalid_option")
            .done(),
        );
    }
    // A `"` delimiter alone works: the quote becomes `'` (README), every row read.
    t.push(
        ingest(
            "delimiter=\" alone reads with ' as the quote",
            "adv_delim_dq",
            "format=csv&delimiter=%22",
            &b"a\"b\n1\"2\n3\"4"[..],
        )
        .status(201)
        .then(Then::SqlCount {
            sql: "SELECT count(*) AS n FROM adv_delim_dq WHERE b IS NOT NULL".into(),
            n: 2,
        })
        .done(),
    );
    for (label, q) in [
        ("format=xml", "format=xml"),
        ("mode=upsert", "format=csv&mode=upsert"),
        ("header=maybe", "format=csv&header=maybe"),
        ("infer_rows=-1", "format=csv&infer_rows=-1"),
        ("schema with an unknown type", "format=csv&schema=a:nope"),
    ] {
        t.push(
            ingest(label, "adv_opts", q, &b"a,b\n1,2\n"[..])
                .status(400)
                .code("invalid_option")
                .done(),
        );
    }
}

fn ingest_bad_bodies(t: &mut Vec<Case>) {
    t.push(
        ingest("empty body", "adv_empty", "format=csv", &b""[..])
            .status(400)
            .code("empty_input")
            .done(),
    );
    t.push(
        ingest(
            "ragged CSV",
            "adv_ragged",
            "format=csv",
            &b"a,b\n1,2\n3\n"[..],
        )
        .status(400)
        .code("bad_data")
        .done(),
    );
    t.push(
        ingest(
            "NDJSON 100k deep",
            "adv_deep",
            "format=ndjson",
            bodies().deep_ndjson.clone(),
        )
        .status(400)
        .code("bad_data")
        .done(),
    );
    t.push(
        ingest(
            "NDJSON broken line 3",
            "adv_ndbad",
            "format=ndjson",
            &b"{\"a\":1}\n{\"a\":2}\n{\"a\":\n"[..],
        )
        .status(400)
        .code("bad_data")
        .done(),
    );
    t.push(
        ingest(
            "CSV sent as parquet",
            "adv_fmt",
            "format=parquet",
            &b"a,b\n1,2\n"[..],
        )
        .status(400)
        .code("bad_data")
        .done(),
    );
    t.push(
        ingest(
            "CSV sent as arrow",
            "adv_fmt",
            "format=arrow",
            &b"a,b\n1,2\n"[..],
        )
        .status(400)
        .code("bad_data")
        .done(),
    );
    t.push(
        ingest(
            "a 1 MiB idempotency key",
            "adv_idem2",
            "format=csv",
            &b"a\n1\n"[..],
        )
        .h("idempotency-key", "k".repeat(1 << 20))
        .client()
        .protocol()
        .done(),
    );
}

/// Truncated and bit-flipped Parquet and Arrow IPC bodies: 400 `bad_data`
/// (flipped bytes may still decode: then the ingest simply works).
fn ingest_binary(ctx: &Ctx, t: &mut Vec<Case>) {
    for (fmt, good) in [("parquet", &ctx.parquet), ("arrow", &ctx.arrow)] {
        let n = good.len();
        for cut in [4, 8, 12, n / 3, n / 2, n - 9, n - 1] {
            let cut = cut.min(n.saturating_sub(1)).max(1);
            t.push(
                ingest(
                    &format!("{fmt} cut at {cut} of {n}"),
                    &format!("adv_{fmt}_cut{cut}"),
                    &format!("format={fmt}"),
                    good[..cut].to_vec(),
                )
                .status(400)
                .code("bad_data")
                .done(),
            );
        }
        for (i, pos) in [0, 5, n / 4, n / 2, 3 * n / 4, n - 12, n - 8, n - 6, n - 5]
            .into_iter()
            .enumerate()
        {
            let mut b = good.to_vec();
            let pos = pos.min(n - 1);
            b[pos] ^= 0xa5;
            t.push(
                ingest(
                    &format!("{fmt} with byte {pos} flipped"),
                    &format!("adv_{fmt}_flip{i}"),
                    &format!("format={fmt}"),
                    b,
                )
                .one_of(&[201, 400])
                .code("bad_data")
                .done(),
            );
        }
    }
}

fn ingest_names(t: &mut Vec<Case>) {
    let csv = &b"a\n1\n"[..];
    let n = |label: &str, target: String| {
        case(Family::Ingest, label, "POST", target, Role::Write)
            .body(csv)
            .status(400)
            .code("invalid_name")
            .done()
    };
    t.push(n(
        "dataset with a 256-byte segment",
        format!("/ingest/{}?format=csv", "d".repeat(256)),
    ));
    t.push(n(
        "dataset of 300 bytes",
        format!("/ingest/{}?format=csv", "d".repeat(300)),
    ));
    t.push(n(
        "dataset of two 200-byte segments",
        format!("/ingest/{}/{}?format=csv", "d".repeat(200), "e".repeat(200)),
    ));
    t.push(n(
        "dataset %2e%2e",
        "/ingest/%2e%2e/adv_x?format=csv".into(),
    ));
    t.push(n(
        "dataset x/%2e%2e/fx_rows",
        format!("/ingest/x/%2e%2e/{FX_ROWS}?format=csv&mode=replace"),
    ));
    t.push(n(
        "dataset ..%2f",
        "/ingest/adv/..%2f..%2fetc?format=csv".into(),
    ));
    t.push(n("dataset upper case", "/ingest/UPPER?format=csv".into()));
    t.push(n("dataset with a NUL", "/ingest/a%00b?format=csv".into()));
    t.push(
        case(
            Family::Ingest,
            "no dataset",
            "POST",
            "/ingest/?format=csv",
            Role::Write,
        )
        .body(csv)
        .one_of(&[400, 404, 405])
        .done(),
    );
}

fn sql(name: &str, q: &str) -> B {
    case(Family::Sql, name, "POST", "/query/sql", Role::Read).json(json!({ "sql": q }))
}

fn chain(first: &str, sep: &str, term: &str, n: usize) -> String {
    let mut s = String::with_capacity(n * (sep.len() + term.len()) + first.len());
    s.push_str(first);
    for _ in 1..n {
        s.push_str(sep);
        s.push_str(term);
    }
    s
}

/// Table names with a version or time (`"name@v3"`): absurd, malformed or
/// repeated suffixes are a 4xx naming why, never a 5xx.
fn sql_time_travel(t: &mut Vec<Case>) {
    for (name, table, allowed) in [
        ("version 0", format!("{FX_ROWS}@v0"), &[200][..]),
        ("version past the latest", format!("{FX_ROWS}@v99"), &[404]),
        (
            "version overflow",
            format!("{FX_ROWS}@v99999999999999999999"),
            &[400],
        ),
        ("empty suffix", format!("{FX_ROWS}@"), &[400]),
        ("two suffixes", format!("{FX_ROWS}@v0@v0"), &[400]),
        (
            "time before the table",
            format!("{FX_ROWS}@1970-01-01"),
            &[404],
        ),
        (
            "time far future",
            format!("{FX_ROWS}@9999-12-31T00:00:00Z"),
            &[200],
        ),
        ("junk suffix", format!("{FX_ROWS}@%00\u{202e}"), &[400]),
        (
            "unknown dataset at a version",
            "no_such_ds@v0".to_string(),
            &[400, 404],
        ),
    ] {
        t.push(
            sql(
                &format!("time travel: {name}"),
                &format!("SELECT count(*) AS n FROM \"{table}\""),
            )
            .one_of(allowed)
            .done(),
        );
    }
}

/// Vector search and distances in SQL (issue 18): absurd `k`, wrong or huge
/// vectors, bad filters, missing indexes, nesting and a server without a
/// model are a 4xx (501 for the missing model) naming why, never a 5xx.
fn sql_vectors(t: &mut Vec<Case>) {
    let v16 = format!("[{}]", vec!["0.25"; 16].join(","));
    let huge = format!("[{}]", vec!["1"; 200_000].join(","));
    let search = |args: &str| format!("SELECT * FROM vector_search('{FX_IDX}', {args})");
    let cases: Vec<(&str, String, &[u16], Option<&'static str>)> = vec![
        (
            "k = 10^12",
            search(&format!("{v16}, 1000000000000")),
            &[400],
            None,
        ),
        ("k = -1", search(&format!("{v16}, -1")), &[400], None),
        ("k = 0", search(&format!("{v16}, 0")), &[400], None),
        ("k NULL", search(&format!("{v16}, NULL")), &[400], None),
        ("k a string", search(&format!("{v16}, 'ten'")), &[400], None),
        ("wrong dimension", search("[1.0, 2.0], 3"), &[400], None),
        (
            "200 000-element vector",
            search(&format!("{huge}, 3")),
            &[400, 413],
            None,
        ),
        (
            "NaN in the vector",
            search("[cast('NaN' as float), 1.0], 3"),
            &[400],
            None,
        ),
        ("a NULL query", search("NULL, 3"), &[400], None),
        (
            "ef = 10^12",
            search(&format!("{v16}, 3, 1000000000000")),
            &[400],
            None,
        ),
        (
            "ef = -1",
            search(&format!("{v16}, 3, '{{}}', -1")),
            &[400],
            None,
        ),
        ("ef NULL", search(&format!("{v16}, 3, NULL")), &[400], None),
        (
            "malformed filter",
            search(&format!("{v16}, 3, '{{\"a\":'")),
            &[400],
            None,
        ),
        (
            "filter not an object",
            search(&format!("{v16}, 3, '[1,2]'")),
            &[400],
            None,
        ),
        (
            "too few arguments",
            format!("SELECT * FROM vector_search('{FX_IDX}')"),
            &[400],
            None,
        ),
        (
            "too many arguments",
            search(&format!("{v16}, 3, '{{}}', 4, 5")),
            &[400],
            None,
        ),
        (
            "index from a column",
            "SELECT * FROM vector_search(name, [1.0], 3)".into(),
            &[400],
            None,
        ),
        (
            "missing index",
            format!("SELECT * FROM vector_search('adv_none', {v16}, 3)"),
            &[404],
            None,
        ),
        (
            "index name ../x",
            format!("SELECT * FROM vector_search('../x', {v16}, 3)"),
            &[400, 404],
            None,
        ),
        (
            "text query without a model",
            search("'hello', 3"),
            &[501],
            Some("no_embedding_model"),
        ),
        (
            "embed() without a model",
            "SELECT embed('hello') AS e".into(),
            &[501],
            Some("no_embedding_model"),
        ),
        (
            "hybrid without a text column",
            format!("SELECT * FROM hybrid_search('{FX_IDX}', 'x', 3)"),
            &[400, 501],
            None,
        ),
        (
            "nested in a subquery 50 deep",
            {
                let mut q = search(&format!("{v16}, 3"));
                for _ in 0..50 {
                    q = format!("SELECT * FROM ({q}) s");
                }
                q
            },
            &[200, 400],
            None,
        ),
        (
            "64 searches in one statement",
            {
                let parts: Vec<String> = (0..64).map(|_| search(&format!("{v16}, 3"))).collect();
                format!(
                    "SELECT count(*) AS n FROM ({}) u",
                    parts.join(" UNION ALL ")
                )
            },
            &[200, 400],
            None,
        ),
        (
            "distance of different lengths",
            "SELECT l2_distance([1.0, 2.0], [1.0]) AS d".into(),
            &[400],
            None,
        ),
        (
            "distance of a huge generated vector",
            "SELECT cosine_distance(range(100000000), range(100000000)) AS d".into(),
            &[200, 400, 413],
            None,
        ),
        (
            "distance of strings",
            "SELECT inner_product('a', 'b') AS d".into(),
            &[400],
            None,
        ),
    ];
    for (name, q, allowed, code) in cases {
        let mut b = sql(&format!("vectors in SQL: {name}"), &q).one_of(allowed);
        if let Some(c) = code {
            b = b.code(c);
        }
        t.push(b.done());
    }
}

/// Deep and wide expressions (issue 12: 1,000 terms aborted the process).
/// Open: answered correctly, or 400 naming the limit.
fn sql_deep(t: &mut Vec<Case>) {
    let ok_or_400 = |name: &str, q: String, answer: Value| {
        sql(name, &q)
            .one_of(&[200, 400])
            .then(Then::AnswerIfOk(answer))
            .done()
    };
    for n in [1000, 5000] {
        t.push(ok_or_400(
            &format!("1+1+… {n} terms"),
            format!("SELECT {} AS v", chain("1", "+", "1", n)),
            json!([{"v": n}]),
        ));
    }
    t.push(ok_or_400(
        "1-1-… 5000 terms",
        format!("SELECT {} AS v", chain("1", "-", "1", 5000)),
        json!([{"v": 1 - 4999}]),
    ));
    t.push(ok_or_400(
        "AND chain 1000",
        format!("SELECT 1 AS v WHERE {}", chain("1=1", " AND ", "1=1", 1000)),
        json!([{"v": 1}]),
    ));
    t.push(ok_or_400(
        "OR chain 1000",
        format!("SELECT 1 AS v WHERE {}", chain("1=0", " OR ", "1=1", 1000)),
        json!([{"v": 1}]),
    ));
    t.push(ok_or_400(
        "|| 2000",
        format!("SELECT length({}) AS v", chain("'a'", "||", "'a'", 2000)),
        json!([{"v": 2000}]),
    ));
    t.push(ok_or_400(
        "UNION ALL 500",
        format!(
            "SELECT count(*) AS v FROM ({})",
            chain("SELECT 1 AS x", " UNION ALL ", "SELECT 1 AS x", 500)
        ),
        json!([{"v": 500}]),
    ));
    t.push(ok_or_400(
        "parens 1000 deep",
        format!("SELECT {}1{} AS v", "(".repeat(1000), ")".repeat(1000)),
        json!([{"v": 1}]),
    ));
    t.push(ok_or_400(
        "abs() 1000 deep",
        format!("SELECT {}1{} AS v", "abs(".repeat(1000), ")".repeat(1000)),
        json!([{"v": 1}]),
    ));
    t.push(ok_or_400(
        "CASE 500 deep",
        format!(
            "SELECT {}1{} AS v",
            "CASE WHEN 1=1 THEN ".repeat(500),
            " ELSE 0 END".repeat(500)
        ),
        json!([{"v": 1}]),
    ));
    t.push(ok_or_400(
        "subqueries 200 deep",
        format!(
            "SELECT v FROM {}(SELECT 1 AS v){}",
            "(SELECT v FROM ".repeat(200),
            ") AS q".repeat(200)
        ),
        json!([{"v": 1}]),
    ));
    let list = (0..50_000)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    t.push(ok_or_400(
        "IN list of 50k",
        format!("SELECT 1 AS v WHERE 7 IN ({list})"),
        json!([{"v": 1}]),
    ));
    t.push(
        sql(
            "a 6 MiB statement",
            &format!("SELECT 1 AS v -- {}", "c".repeat(6 << 20)),
        )
        .one_of(&[200, 400, 413])
        .done(),
    );
}

/// Allocations sized by an argument (issue 12: 8 GB and 24 GB until the OOM
/// killer). Open: 400 (argument cap) or 413 (memory limit), never the process.
fn sql_memory(t: &mut Vec<Case>) {
    for (name, q) in [
        ("lpad 2e9", "SELECT lpad('x', 2000000000) AS v"),
        ("rpad 2e9", "SELECT rpad('x', 2000000000) AS v"),
        ("repeat 2e9", "SELECT repeat('x', 2000000000) AS v"),
        (
            "array_repeat 1e9",
            "SELECT array_repeat(1, 1000000000) AS v",
        ),
        ("range 2e9", "SELECT range(1, 2000000000) AS v"),
        (
            "generate_series scalar 2e9",
            "SELECT generate_series(1, 2000000000) AS v",
        ),
        (
            "repeat of repeat",
            "SELECT length(repeat(repeat('x', 60000), 60000)) AS v",
        ),
        (
            "array_repeat of a big string",
            "SELECT cardinality(array_repeat(repeat('x', 1000000), 10000)) AS v",
        ),
        (
            "string_agg of 1e8 rows",
            "SELECT length(string_agg(lpad('x', 1000), ',')) AS v FROM generate_series(1, 100000000)",
        ),
    ] {
        t.push(sql(name, q).one_of(&[400, 413]).done());
    }
    // Each value is under any plausible per-argument cap, and constant
    // folding may make it one value: answered right, or refused.
    t.push(
        sql(
            "lpad 1e8 × 20 rows",
            "SELECT length(lpad('x', 100000000)) AS v FROM generate_series(1, 20)",
        )
        .one_of(&[200, 400, 413])
        .then(Then::AnswerIfOk(json!(vec![json!({"v": 100_000_000}); 20])))
        .done(),
    );
    t.push(
        sql(
            "regex that compiles too large",
            "SELECT regexp_replace(repeat('a', 1000000), '(((a{1,100}){1,100}){1,100})', 'b') AS v",
        )
        .status(400)
        .done(),
    );
    t.push(
        sql(
            "regex with a 1e6 repetition",
            "SELECT regexp_like('a', 'a{1000000}') AS v",
        )
        .status(400)
        .done(),
    );
}

/// The read-only sandbox: no files, URLs, DDL, DML, settings (README).
fn sql_sandbox(t: &mut Vec<Case>) {
    for (name, q) in [
        ("COPY TO a file", "COPY (SELECT 1) TO '/tmp/adv_copy.csv'"),
        (
            "CREATE EXTERNAL TABLE",
            "CREATE EXTERNAL TABLE adv_ext STORED AS CSV LOCATION '/etc/passwd'",
        ),
        ("CREATE VIEW", "CREATE VIEW adv_v AS SELECT 1"),
        ("DROP a fixture", "DROP TABLE fx_rows"),
        ("SET", "SET datafusion.execution.batch_size = 1"),
        ("two statements", "SELECT 1; SELECT 2"),
        ("a query then DROP", "SELECT 1; DROP TABLE fx_rows"),
        (
            "EXPLAIN COPY",
            "EXPLAIN COPY (SELECT 1) TO '/tmp/adv_copy2.csv'",
        ),
    ] {
        t.push(
            sql(name, q)
                .status(400)
                .code("forbidden_statement")
                .code("syntax_error")
                .code("not_supported")
                .code("invalid_request")
                .done(),
        );
    }
    for (name, q) in [
        ("a file table", "SELECT * FROM '/etc/passwd'"),
        ("a file:// table", "SELECT * FROM 'file:///etc/passwd'"),
        ("a parquet path", "SELECT * FROM '/tmp/x.parquet'"),
        (
            "an URL table",
            "SELECT * FROM 'http://127.0.0.1:9/x.parquet'",
        ),
        ("an s3 table", "SELECT * FROM 's3://bucket/x.parquet'"),
        ("read_csv()", "SELECT * FROM read_csv('/etc/passwd')"),
        (
            "a 10k-byte table name",
            &format!("SELECT * FROM t{}", "x".repeat(10_000)),
        ),
    ] {
        t.push(sql(name, q).status(400).done());
    }
    let b = |name: &str, body: &[u8]| {
        case(Family::Sql, name, "POST", "/query/sql", Role::Read)
            .h("content-type", "application/json")
            .body(body.to_vec())
            .one_of(&[400, 415])
            .done()
    };
    t.push(b("sql is a number", br#"{"sql": 5}"#));
    t.push(b("no sql", br#"{}"#));
    t.push(b("empty sql", br#"{"sql": ""}"#));
    t.push(b(
        "unknown format in the body",
        br#"{"sql": "SELECT 1", "format": "xml"}"#,
    ));
    t.push(b("not JSON", b"SELECT 1"));
    t.push(
        case(
            Family::Sql,
            "unknown ?format",
            "POST",
            "/query/sql?format=xml",
            Role::Read,
        )
        .json(json!({"sql": "SELECT 1"}))
        .status(400)
        .done(),
    );
}

/// Past `max_rows` (issue 20 item 4), per format; see [`truncation_ok`].
fn sql_rows(t: &mut Vec<Case>) {
    let big = "SELECT * FROM generate_series(1, 1000000000000)";
    for fmt in ["json", "ndjson", "csv", "arrow", "parquet"] {
        t.push(
            case(
                Family::Sql,
                &format!("no LIMIT past max_rows ({fmt})"),
                "POST",
                format!("/query/sql?format={fmt}"),
                Role::Read,
            )
            .h("te", "trailers")
            .json(json!({ "sql": big }))
            .one_of(&[200, 413])
            .code("too_many_rows")
            .then(Then::Truncated(fmt))
            .done(),
        );
    }
    t.push(
        case(
            Family::Sql,
            "LIMIT above max_rows",
            "POST",
            "/query/sql?format=json",
            Role::Read,
        )
        .h("te", "trailers")
        .json(json!({ "sql": format!("{big} LIMIT {}", MAX_ROWS * 3) }))
        .one_of(&[200, 413])
        .code("too_many_rows")
        .then(Then::Truncated("json"))
        .done(),
    );
    t.push(
        sql("LIMIT below max_rows", &format!("{big} LIMIT 5000"))
            .status(200)
            .then(Then::RowsIfOk(5000))
            .done(),
    );
}

fn vcreate(name: &str, body: Value) -> B {
    case(
        Family::Vectors,
        name,
        "POST",
        "/vectors/indexes",
        Role::Write,
    )
    .json(body)
}

/// Index parameters (issue 20 item 6: up to u32::MAX was accepted).
fn vectors_create(t: &mut Vec<Case>) {
    let p = |label: &str, extra: Value| {
        let mut body = json!({"name": "adv_p", "dim": 4, "metric": "l2"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        vcreate(label, body).status(400).done()
    };
    t.push(p("m = u32::MAX", json!({"m": 4294967295u64})));
    t.push(p("m = 0", json!({"m": 0})));
    t.push(p("m = 1", json!({"m": 1})));
    t.push(p(
        "ef_construction = u32::MAX",
        json!({"ef_construction": 4294967295u64}),
    ));
    t.push(p(
        "ef_construction = u64::MAX",
        json!({"ef_construction": u64::MAX}),
    ));
    t.push(p(
        "ef_construction = 1e40",
        json!({"ef_construction": 1e40}),
    ));
    t.push(p("ef_construction = 0", json!({"ef_construction": 0})));
    t.push(p("ef_construction = -1", json!({"ef_construction": -1})));
    t.push(p("dim = 0", json!({"dim": 0})));
    t.push(p("dim = u32::MAX", json!({"dim": 4294967295u64})));
    t.push(p("dim = -1", json!({"dim": -1})));
    t.push(p("metric manhattan", json!({"metric": "manhattan"})));
    t.push(p("m = 129", json!({"m": 129})));
    for (label, name) in [
        ("name empty", ""),
        ("name upper case", "UPPER"),
        ("name ../x", "../x"),
        ("name of 129 bytes", &"v".repeat(129)),
        ("name starting with a dot", ".hidden"),
        ("name unicode", "vé"),
        ("name with a slash", "a/b"),
    ] {
        t.push(
            vcreate(label, json!({"name": name, "dim": 4, "metric": "l2"}))
                .status(400)
                .code("invalid_name")
                .done(),
        );
    }
    t.push(
        vcreate(
            "other params for the fixture index",
            json!({"name": FX_IDX, "dim": 16, "metric": "l2"}),
        )
        .status(409)
        .code("params_conflict")
        .done(),
    );
}

/// Indexes that follow a dataset (issue 18): every bad spec is refused
/// before anything is stored, naming the column; sync of a missing index.
fn vectors_datasets(t: &mut Vec<Case>) {
    let ds = |label: &str, extra: Value| {
        let mut body = json!({"name": "adv_ds", "metric": "l2", "dataset": FX_ROWS,
                              "column": "name", "id_column": "id"});
        for (k, v) in extra.as_object().unwrap() {
            match v {
                Value::Null => {
                    body.as_object_mut().unwrap().remove(k);
                }
                v => body[k] = v.clone(),
            }
        }
        vcreate(label, body)
    };
    let src = |b: B, names: &str| b.status(400).code("invalid_source").names(names).done();
    t.push(
        ds(
            "dataset index on a missing dataset",
            json!({"dataset": "adv_none"}),
        )
        .status(404)
        .code("dataset_not_found")
        .done(),
    );
    t.push(src(ds("vector column of text", json!({})), "name"));
    t.push(src(
        ds("unknown vector column", json!({"column": "nope"})),
        "nope",
    ));
    t.push(src(
        ds("no id_column", json!({"id_column": null})),
        "id_column",
    ));
    t.push(src(
        ds(
            "unknown metadata column",
            json!({"metadata_columns": ["id", "zz"]}),
        ),
        "zz",
    ));
    let many: Vec<String> = (0..10_000).map(|i| format!("c{i}")).collect();
    t.push(src(
        ds("10k metadata columns", json!({ "metadata_columns": many })),
        "metadata_columns",
    ));
    t.push(
        ds(
            "metadata_columns not a list",
            json!({"metadata_columns": "id"}),
        )
        .status(400)
        .done(),
    );
    t.push(src(
        ds(
            "a dataset name of 5000 bytes",
            json!({"dataset": "d".repeat(5000)}),
        ),
        "dataset",
    ));
    t.push(
        ds("dataset ../x", json!({"dataset": "../x"}))
            .one_of(&[400, 404])
            .done(),
    );
    t.push(src(
        ds(
            "columns on a plain index",
            json!({"dataset": null, "dim": 4}),
        ),
        "dataset",
    ));
    t.push(
        ds(
            "dim = u32::MAX with a dataset",
            json!({"dim": 4294967295u64}),
        )
        .status(400)
        .code("invalid_params")
        .done(),
    );
    t.push(src(
        ds(
            "a text column of numbers",
            json!({"column": null, "text_column": "id"}),
        ),
        "id",
    ));
    t.push(
        ds(
            "a text column without a model",
            json!({"column": null, "text_column": "name"}),
        )
        .status(501)
        .code("no_embedding_model")
        .done(),
    );
    t.push(
        case(
            Family::Vectors,
            "sync a missing index",
            "POST",
            "/vectors/indexes/adv_none/sync",
            Role::Write,
        )
        .status(404)
        .done(),
    );
    t.push(
        case(
            Family::Vectors,
            "sync an index that follows no dataset",
            "POST",
            format!("/vectors/indexes/{FX_IDX}/sync"),
            Role::Write,
        )
        .status(200)
        .done(),
    );
}

fn vsearch(name: &str, body: Value) -> B {
    case(
        Family::Vectors,
        name,
        "POST",
        format!("/vectors/indexes/{FX_IDX}/search"),
        Role::Read,
    )
    .json(body)
}

fn vectors_search(t: &mut Vec<Case>) {
    let v = fx_vec(3);
    let s = |label: &str, body: Value| {
        vsearch(label, body)
            .status(400)
            .code("invalid_search")
            .done()
    };
    t.push(s("k = u32::MAX", json!({"vector": v, "k": 4294967295u64})));
    t.push(
        vsearch("a text without a model", json!({"text": "hello", "k": 1}))
            .status(501)
            .code("no_embedding_model")
            .done(),
    );
    t.push(s(
        "hybrid without text",
        json!({"vector": v, "k": 1, "hybrid": true}),
    ));
    t.push(s(
        "hybrid on an index without a text column",
        json!({"vector": v, "text": "x", "k": 1, "hybrid": true}),
    ));
    t.push(s(
        "a text of 1 MiB",
        json!({"text": "a".repeat(1 << 20), "k": 1}),
    ));
    t.push(s(
        "a vector and a text without hybrid",
        json!({"vector": v, "text": "x", "k": 1}),
    ));
    t.push(s(
        "a text with a batch",
        json!({"vectors": [v], "text": "x"}),
    ));
    t.push(
        vsearch("text is a number", json!({"text": 5, "k": 1}))
            .status(400)
            .done(),
    );
    t.push(s("k = 0", json!({"vector": v, "k": 0})));
    t.push(s(
        "ef = u32::MAX",
        json!({"vector": v, "k": 1, "ef": 4294967295u64}),
    ));
    t.push(s("wrong dimension", json!({"vector": [1.0, 2.0], "k": 1})));
    t.push(s(
        "zero vector (cosine)",
        json!({"vector": vec![0.0; DIM], "k": 1}),
    ));
    t.push(
        vsearch("1e39 overflows f32", json!(null))
            .json_raw(
                format!("{{\"vector\": [1e39{}], \"k\": 1}}", ",1.0".repeat(DIM - 1)).into_bytes(),
            )
            .status(400)
            .done(),
    );
    t.push(
        vsearch("NaN literal", json!(null))
            .json_raw(
                format!("{{\"vector\": [NaN{}], \"k\": 1}}", ",1.0".repeat(DIM - 1)).into_bytes(),
            )
            .status(400)
            .done(),
    );
    t.push(
        vsearch("k = 1e20", json!({"vector": v, "k": 1e20}))
            .status(400)
            .done(),
    );
    t.push(
        vsearch("a vector of 1M dimensions", json!(null))
            .json_raw(bodies().big_vector.clone())
            .one_of(&[400, 413])
            .done(),
    );
    t.push(
        vsearch("a filter 10k deep", json!(null))
            .json_raw(
                format!(
                    "{{\"vector\": {v}, \"k\": 1, \"filter\": {{\"a\": {}1{}}}}}",
                    "[".repeat(10_000),
                    "]".repeat(10_000)
                )
                .into_bytes(),
            )
            .status(400)
            .done(),
    );
    t.push(
        case(
            Family::Vectors,
            "search a missing index",
            "POST",
            "/vectors/indexes/adv_none/search",
            Role::Read,
        )
        .json(json!({"vector": v, "k": 1}))
        .status(404)
        .done(),
    );
}

fn vadd(name: &str, items: Value) -> B {
    case(
        Family::Vectors,
        name,
        "POST",
        format!("/vectors/indexes/{FX_IDX}/add"),
        Role::Write,
    )
    .json(json!({ "items": items }))
}

/// Bad batches change nothing (the fixture index keeps its count).
fn vectors_add(t: &mut Vec<Case>) {
    let good = |i: usize| json!({"id": format!("adv{i}"), "vector": fx_vec(5000 + i)});
    let bad = |label: &str, item: Value| {
        let mut items: Vec<Value> = (0..5).map(good).collect();
        items.push(item);
        vadd(label, json!(items))
            .status(400)
            .code("invalid_item")
            .done()
    };
    t.push(bad(
        "wrong dimension last",
        json!({"id": "w", "vector": [1.0, 2.0]}),
    ));
    t.push(bad(
        "zero vector (cosine)",
        json!({"id": "z", "vector": vec![0.0; DIM]}),
    ));
    t.push(bad("empty id", json!({"id": "", "vector": fx_vec(1)})));
    t.push(bad(
        "a 1025-byte id",
        json!({"id": "i".repeat(1025), "vector": fx_vec(1)}),
    ));
    t.push(
        vadd("1e39 in a vector", json!(null))
            .json_raw(
                format!(
                    "{{\"items\": [{{\"id\": \"inf\", \"vector\": [1e39{}]}}]}}",
                    ",1.0".repeat(DIM - 1)
                )
                .into_bytes(),
            )
            .status(400)
            .done(),
    );
    t.push(vadd("metadata 10k deep", json!(null)).json_raw(format!("{{\"items\": [{{\"id\": \"deep\", \"vector\": {}, \"metadata\": {{\"a\": {}1{}}}}}]}}", fx_vec(1), "[".repeat(10_000), "]".repeat(10_000)).into_bytes()).status(400).done());
    t.push(
        vadd(
            "an unknown item field",
            json!([{"id": "u", "vector": fx_vec(1), "boost": 3}]),
        )
        .status(400)
        .done(),
    );
    t.push(
        vadd("items not an array", json!({"id": "x"}))
            .status(400)
            .done(),
    );
    t.push(
        case(
            Family::Vectors,
            "100,001 items",
            "POST",
            format!("/vectors/indexes/{FX_IDX}/add"),
            Role::Write,
        )
        .json_raw(bodies().over_batch.clone())
        .status(413)
        .code("too_large")
        .done(),
    );
    t.push(
        case(
            Family::Vectors,
            "add to a missing index",
            "POST",
            "/vectors/indexes/adv_none/add",
            Role::Write,
        )
        .json(json!({"items": [good(1)]}))
        .status(404)
        .done(),
    );
}

fn vectors_paths(t: &mut Vec<Case>) {
    let admin =
        |label: &str, m: &str, target: String| case(Family::Vectors, label, m, target, Role::Admin);
    // One item: a read token may look, the answer is exactly the item.
    t.push(
        case(
            Family::Vectors,
            "GET an item as read",
            "GET",
            format!("/vectors/indexes/{FX_IDX}/items/f3"),
            Role::Read,
        )
        .status(200)
        .done(),
    );
    for (label, id, code) in [
        ("GET a missing item", "nope".to_string(), "item_not_found"),
        (
            "GET a 5000-byte item id",
            "i".repeat(5000),
            "item_not_found",
        ),
        (
            "GET item ..%2f..%2fx",
            "..%2f..%2fx".to_string(),
            "item_not_found",
        ),
    ] {
        t.push(
            case(
                Family::Vectors,
                label,
                "GET",
                format!("/vectors/indexes/{FX_IDX}/items/{id}"),
                Role::Read,
            )
            .status(404)
            .code(code)
            .done(),
        );
    }
    t.push(
        case(
            Family::Vectors,
            "GET an item of a missing index",
            "GET",
            "/vectors/indexes/nope_idx/items/f1",
            Role::Read,
        )
        .status(404)
        .code("not_found")
        .done(),
    );
    t.push(
        admin(
            "delete a 5000-byte item id",
            "DELETE",
            format!("/vectors/indexes/{FX_IDX}/items/{}", "i".repeat(5000)),
        )
        .one_of(&[400, 404])
        .done(),
    );
    t.push(
        admin(
            "delete item ..%2f",
            "DELETE",
            format!("/vectors/indexes/{FX_IDX}/items/..%2f..%2fx"),
        )
        .one_of(&[400, 404])
        .done(),
    );
    t.push(
        admin("GET index %2e%2e", "GET", "/vectors/indexes/%2e%2e".into())
            .one_of(&[400, 404])
            .done(),
    );
    // Normalised, this is DELETE /vectors/indexes/fx_idx.
    t.push(
        admin(
            "DELETE index zz/%2e%2e/fx_idx",
            "DELETE",
            format!("/vectors/indexes/zz/%2e%2e/{FX_IDX}"),
        )
        .one_of(&[400, 404, 405])
        .done(),
    );
    t.push(
        admin(
            "DELETE index x%2f..%2ffx_idx",
            "DELETE",
            format!("/vectors/indexes/x%2f..%2f{FX_IDX}"),
        )
        .one_of(&[400, 404])
        .done(),
    );
}

/// Split deployment with a daemon down (issue 20 item 1): 503
/// `upstream_unavailable` naming the service, from every daemon's calls
/// as from the gateway.
fn upstream(t: &mut Vec<Case>) {
    use Role::*;
    let csv = Request::new("POST", "").body(&b"id,name\n1,a\n"[..]);
    let js = |v: Value| Request::new("POST", "").json(&v);
    let search = json!({"vector": fx_vec(3), "k": 1});
    let count = json!({"sql": format!("SELECT count(*) AS n FROM {FX_ROWS}")});
    let rows: Vec<(&str, &'static str, &str, String, Role, Request)> = vec![
        (
            "ingest, storaged down",
            "storaged",
            "POST",
            "/ingest/adv_down?format=csv".into(),
            Write,
            csv.clone(),
        ),
        (
            "vector add, storaged down",
            "storaged",
            "POST",
            format!("/vectors/indexes/{FX_IDX}/add"),
            Write,
            js(json!({"items": [{"id": "down", "vector": fx_vec(7000)}]})),
        ),
        (
            "register, storaged down",
            "storaged",
            "POST",
            "/catalog/register".into(),
            Write,
            js(json!({"name": "adv_down_reg", "schema_fingerprint": "f", "objects": []})),
        ),
        (
            "object GET, storaged down",
            "storaged",
            "GET",
            format!("{OBJ}{SMALL_KEY}"),
            Read,
            Request::default(),
        ),
        (
            "SELECT, catalogd down",
            "catalogd",
            "POST",
            "/query/sql".into(),
            Read,
            js(count),
        ),
        (
            "ingest, catalogd down",
            "catalogd",
            "POST",
            "/ingest/adv_down2?format=csv".into(),
            Write,
            csv,
        ),
        (
            "catalog list, catalogd down",
            "catalogd",
            "GET",
            "/catalog/list".into(),
            Read,
            Request::default(),
        ),
        (
            "search, vectord down",
            "vectord",
            "POST",
            format!("/vectors/indexes/{FX_IDX}/search"),
            Read,
            js(search),
        ),
    ];
    for (name, down, m, target, role, with) in rows {
        let mut b = case(Family::Upstream, name, m, target, role)
            .status(503)
            .code("upstream_unavailable")
            .names(down)
            .down(down);
        b.0.req.headers = with.headers;
        b.0.req.body = with.body;
        t.push(b.done());
    }
}

// ------------------------------------------------------------- big bodies

/// Bodies too big to build per row, built once per process.
pub struct Bodies {
    pub over_max_object: Arc<[u8]>,
    pub huge_register: Arc<[u8]>,
    pub deep_json: Arc<[u8]>,
    pub deep_ndjson: Arc<[u8]>,
    pub big_vector: Arc<[u8]>,
    pub over_batch: Arc<[u8]>,
}

pub fn bodies() -> &'static Bodies {
    static B: OnceLock<Bodies> = OnceLock::new();
    B.get_or_init(|| {
        let mut reg = String::from(r#"{"name":"atk_huge","schema_fingerprint":"f","objects":["#);
        let mut i = 0;
        while reg.len() < 5 << 20 {
            if i > 0 {
                reg.push(',');
            }
            reg.push_str(&format!(
                r#"{{"key":"datasets/atk_huge/part-{i:08}.parquet","size":1,"row_count":1}}"#
            ));
            i += 1;
        }
        reg.push_str("]}");
        let depth = 100_000;
        let deep = format!(
            r#"{{"name":"atk_deep","schema_fingerprint":"f","objects":{}{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let deep_nd = format!("{{\"a\":{}1{}}}\n", "[".repeat(depth), "]".repeat(depth));
        let big_vec = format!(
            "{{\"vector\": [{}1.0], \"k\": 1}}",
            "0.5,".repeat(1_000_000 - 1)
        );
        let mut batch = String::from("{\"items\":[");
        let v = serde_json::to_string(&vector(1, DIM)).expect("json");
        for i in 0..100_001 {
            if i > 0 {
                batch.push(',');
            }
            batch.push_str(&format!("{{\"id\":\"b{i}\",\"vector\":{v}}}"));
        }
        batch.push_str("]}");
        Bodies {
            over_max_object: Arc::from(vec![b'o'; MAX_OBJECT + 1]),
            huge_register: Arc::from(reg.into_bytes()),
            deep_json: Arc::from(deep.into_bytes()),
            deep_ndjson: Arc::from(deep_nd.into_bytes()),
            big_vector: Arc::from(big_vec.into_bytes()),
            over_batch: Arc::from(batch.into_bytes()),
        }
    })
}

/// SQL write statements: no token or a bad one is a 401, a read token a
/// 403 `write_not_allowed`; a write token still meets the sandbox (no file
/// or URL tables, no past-version target, no deep expression) and a failed
/// statement changes nothing.
fn sql_writes(t: &mut Vec<Case>) {
    use Role::*;
    let unchanged = || Then::SqlCount {
        sql: format!("SELECT count(*) AS n FROM {FX_ROWS}"),
        n: FX_ROWS_N,
    };
    let writes = [
        (
            "INSERT VALUES",
            "INSERT INTO fx_rows VALUES (1, 'x')".to_string(),
        ),
        (
            "INSERT SELECT",
            "INSERT INTO fx_rows SELECT * FROM fx_rows".to_string(),
        ),
        ("DELETE all", "DELETE FROM fx_rows".to_string()),
        ("UPDATE all", "UPDATE fx_rows SET id = 0".to_string()),
        (
            "CREATE TABLE AS",
            "CREATE TABLE adv_ctas AS SELECT 1 AS x".to_string(),
        ),
        (
            "MERGE",
            "MERGE INTO fx_rows USING fx_rows AS s ON fx_rows.id = s.id WHEN MATCHED THEN DELETE"
                .to_string(),
        ),
        (
            "EXPLAIN ANALYZE DELETE",
            "EXPLAIN ANALYZE DELETE FROM fx_rows".to_string(),
        ),
    ];
    for (name, q) in &writes {
        for role in [None, Bad] {
            t.push(
                case(
                    Family::Sql,
                    &format!("{role:?}: {name}"),
                    "POST",
                    "/query/sql",
                    role,
                )
                .json(json!({ "sql": q }))
                .status(401)
                .code("unauthorized")
                .then(unchanged())
                .done(),
            );
        }
        t.push(
            sql(&format!("Read: {name}"), q)
                .status(if name.starts_with("EXPLAIN") {
                    400
                } else {
                    403
                })
                .code("write_not_allowed")
                .code("forbidden_statement")
                .code("not_supported")
                .then(unchanged())
                .done(),
        );
    }
    let deep = format!(
        "UPDATE fx_rows SET id = {}1{}",
        "(".repeat(5000),
        ")".repeat(5000)
    );
    let hostile = [
        ("INSERT from a file table", "INSERT INTO fx_rows SELECT * FROM '/etc/passwd'".to_string()),
        ("INSERT from read_csv()", "INSERT INTO fx_rows SELECT * FROM read_csv('/etc/passwd')".to_string()),
        ("CTAS from an URL table", "CREATE TABLE adv_url AS SELECT * FROM 'http://127.0.0.1:9/x.parquet'".to_string()),
        ("CTAS named ../x", "CREATE TABLE \"../adv\" AS SELECT 1 AS x".to_string()),
        ("CTAS named with a space", "CREATE TABLE \"adv x\" AS SELECT 1 AS x".to_string()),
        ("CTAS named with an upper-case letter", "CREATE TABLE \"Adv\" AS SELECT 1 AS x".to_string()),
        (
            "MERGE from a file table",
            "MERGE INTO fx_rows USING (SELECT * FROM '/etc/passwd') AS s ON true WHEN MATCHED THEN DELETE".to_string(),
        ),
        ("DELETE a past version", "DELETE FROM \"fx_rows@v0\"".to_string()),
        ("UPDATE an unknown column", "UPDATE fx_rows SET nope = 1".to_string()),
        ("UPDATE to a bad cast", "UPDATE fx_rows SET id = CAST('x' || name AS BIGINT)".to_string()),
        ("INSERT of the wrong arity", "INSERT INTO fx_rows VALUES (1)".to_string()),
        ("DELETE with a subquery", "DELETE FROM fx_rows WHERE id IN (SELECT id FROM fx_rows)".to_string()),
        ("UPDATE with a 5000-deep expression", deep),
        ("DELETE then DROP", "DELETE FROM fx_rows; DROP TABLE fx_rows".to_string()),
        ("DELETE from an unknown table", "DELETE FROM adv_nope".to_string()),
    ];
    for (name, q) in hostile {
        t.push(
            case(
                Family::Sql,
                &format!("Write: {name}"),
                "POST",
                "/query/sql",
                Write,
            )
            .json(json!({ "sql": q }))
            .client()
            .then(unchanged())
            .done(),
        );
    }
}
