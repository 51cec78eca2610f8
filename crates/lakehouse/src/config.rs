//! Configuration: built-in defaults → `--config lakehouse.toml` → environment
//! (`LAKEHOUSE__<SECTION>__<KEY>`) → command-line flags. One struct per
//! service, handed to that service explicitly; nothing global.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use lakehouse_common::size::ByteSize;
use lakehouse_storaged::StoragedConfig;
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
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".to_string(),
            data_dir: PathBuf::from("./lakehouse-data"),
            request_timeout_secs: 3600,
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
}

impl Default for IngestdConfig {
    fn default() -> Self {
        Self {
            bind: None,
            storaged_url: None,
            catalogd_url: None,
            spool_dir: None,
            target_object_size: ByteSize(256 << 20),
            row_group_rows: 1 << 20,
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
        std::fs::write(&f, "[catalogd]\nstorage_url = \"x\"\n").unwrap();
        let err = format!("{:#}", Config::load(Some(&f), &[]).unwrap_err());
        assert!(err.contains("storage_url"), "{err}");
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
