//! `lakehouse datasets` (every dataset as a table) and
//! `lakehouse datasets show NAME [--version N | --at TIME]` (one manifest as
//! JSON), `lakehouse datasets history NAME` (its table's versions), and
//! `compact`, `restore`, `vacuum` and `drop`,
//! through the catalog HTTP API of a running server.

use anyhow::Context;
use chrono::SecondsFormat;
use lakehouse_catalogd::http::parse_timestamp;
use lakehouse_catalogd::{At, Catalog, CatalogClient, Change, CompactOptions, ErrorKind, Manifest};

use crate::remote::Remote;

#[derive(Debug, clap::Args)]
pub struct DatasetsArgs {
    #[command(subcommand)]
    pub command: Option<DatasetsCommand>,
    #[command(flatten)]
    pub remote: Remote,
}

#[derive(Debug, clap::Subcommand)]
pub enum DatasetsCommand {
    /// Print one dataset's manifest (now, or at a table version or time).
    Show {
        /// The dataset name.
        name: String,
        /// A table version (0 is the first).
        #[arg(long, conflicts_with = "at")]
        version: Option<i64>,
        /// The version current at this time (RFC 3339, or a date).
        #[arg(long)]
        at: Option<String>,
    },
    /// Rewrite a dataset's small files into large ones (a new table version, same rows).
    Compact {
        /// The dataset name.
        name: String,
        /// Cluster rows by these columns (comma-separated), Z-order.
        #[arg(long, value_delimiter = ',')]
        zorder: Vec<String>,
        /// Target file size in bytes.
        #[arg(long)]
        target_size: Option<u64>,
    },
    /// Make an earlier version's files current again (a new version).
    Restore {
        /// The dataset name.
        name: String,
        /// The table version to restore.
        #[arg(long, conflicts_with = "at", required_unless_present = "at")]
        version: Option<i64>,
        /// Restore the version current at this time (RFC 3339, or a date).
        #[arg(long)]
        at: Option<String>,
    },
    /// Delete the files no kept version lists (`[catalogd.vacuum]` says which are kept).
    Vacuum {
        /// The dataset name.
        name: String,
        /// Only list what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
    /// Remove a dataset from the catalog; its files stay until `vacuum NAME`
    /// (the list of what that will delete is printed).
    Drop {
        /// The dataset name.
        name: String,
    },
    /// Print the versions of a dataset's table, newest first.
    History {
        /// The dataset name.
        name: String,
        /// How many versions.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

pub fn run(args: DatasetsArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = CatalogClient::with_options(&args.remote.url, &args.remote.options());
    match args.command {
        None => {
            let manifests = rt
                .block_on(client.list())
                .with_context(|| format!("listing datasets at {}", args.remote.url))?;
            print!("{}", render_table(&manifests));
        }
        Some(DatasetsCommand::Show { name, version, at }) => {
            let at = match (version, at) {
                (Some(v), _) => At::Version(v),
                (None, Some(t)) => At::Time(parse_timestamp(&t)?),
                (None, None) => At::Latest,
            };
            let m = rt
                .block_on(client.get_at(&name, at))
                .map_err(|e| explain(e, &name, &args.remote.url))?;
            println!("{}", serde_json::to_string_pretty(&m)?);
        }
        Some(DatasetsCommand::Compact {
            name,
            zorder,
            target_size,
        }) => {
            let opts = CompactOptions {
                target_size,
                zorder,
                concurrency: 0,
            };
            let r = rt
                .block_on(client.compact(&name, opts))
                .map_err(|e| explain(e, &name, &args.remote.url))?;
            match r.compacted {
                Some(c) => println!(
                    "version {}: {} files rewritten into {}",
                    c.version, c.files_removed, c.files_added
                ),
                None => println!("nothing to compact"),
            }
        }
        Some(DatasetsCommand::Restore { name, version, at }) => {
            let to = match (version, at) {
                (Some(v), _) => At::Version(v),
                (None, Some(t)) => At::Time(parse_timestamp(&t)?),
                (None, None) => unreachable!("clap requires one"),
            };
            let m = rt
                .block_on(client.restore(&name, to))
                .map_err(|e| explain(e, &name, &args.remote.url))?;
            println!(
                "restored: version {} ({} rows in {} objects)",
                m.table_version.unwrap_or_default(),
                m.row_count,
                m.objects.len()
            );
        }
        Some(DatasetsCommand::Vacuum { name, dry_run }) => {
            let r = rt
                .block_on(client.vacuum(&name, dry_run))
                .map_err(|e| explain(e, &name, &args.remote.url))?;
            for f in &r.files {
                println!("{f}");
            }
            let kept = if r.dropped {
                "the dataset was dropped".to_string()
            } else {
                format!(
                    "versions {}–{} stay readable",
                    r.oldest_kept_version, r.latest_version
                )
            };
            println!(
                "{} {} files ({}); {kept}",
                if r.dry_run { "would delete" } else { "deleted" },
                r.files.len(),
                human_bytes(r.bytes),
            );
            if let Some(until) = &r.held_until {
                println!(
                    "{} more written within the grace period stay until {until}",
                    r.held_files
                );
            }
        }
        Some(DatasetsCommand::Drop { name }) => {
            let r = rt
                .block_on(client.drop_dataset(&name))
                .map_err(|e| explain(e, &name, &args.remote.url))?
                .ok_or_else(|| {
                    anyhow::anyhow!("no dataset named {name:?} at {}", args.remote.url)
                })?;
            let when = match &r.held_until {
                Some(t) => format!(
                    " (run after {t}: files written within the grace period stay until then)"
                ),
                None => String::new(),
            };
            println!(
                "dropped {name:?}; `lakehouse datasets vacuum {name}` will delete its {} files ({}), its table's log included{when}",
                r.files.len(),
                human_bytes(r.bytes)
            );
        }
        Some(DatasetsCommand::History { name, limit }) => {
            let history = rt
                .block_on(client.history(&name, limit))
                .map_err(|e| explain(e, &name, &args.remote.url))?;
            print!("{}", render_history(&history));
        }
    }
    Ok(())
}

fn explain(e: lakehouse_catalogd::CatalogError, name: &str, url: &str) -> anyhow::Error {
    match e.kind() {
        ErrorKind::NotFound => anyhow::anyhow!("no dataset named {name:?} at {url}"),
        _ => anyhow::Error::new(e).context(format!("reading dataset {name:?} at {url}")),
    }
}

/// Versions, newest first: what each did and what it changed.
fn render_history(history: &[Change]) -> String {
    let mut out = format!(
        "{:>7}  {:<20}  {:<24}  {:>6}  {:>8}  {:>12}  {:>12}\n",
        "VERSION", "TIME", "OPERATION", "+FILES", "-FILES", "+ROWS", "-ROWS"
    );
    for c in history {
        let op = match &c.mode {
            Some(m) if c.operation == "WRITE" => format!("{} ({m})", c.operation),
            _ => c.operation.clone(),
        };
        let time = c
            .timestamp
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
            .unwrap_or_default();
        let removed = c
            .rows_removed
            .map(group_thousands)
            .unwrap_or_else(|| "?".into());
        out.push_str(&format!(
            "{:>7}  {:<20}  {:<24}  {:>6}  {:>8}  {:>12}  {:>12}\n",
            c.version,
            time,
            op,
            c.files_added,
            c.files_removed,
            group_thousands(c.rows_added),
            removed
        ));
    }
    out
}

/// A plain-text table, one row per dataset; numbers right-aligned.
fn render_table(manifests: &[Manifest]) -> String {
    if manifests.is_empty() {
        return "no datasets\n".to_string();
    }
    let header = ["NAME", "ROWS", "OBJECTS", "SIZE", "VERSION", "UPDATED"];
    let right = [false, true, true, true, true, false];
    let rows: Vec<[String; 6]> = manifests
        .iter()
        .map(|m| {
            [
                m.name.clone(),
                group_thousands(m.row_count),
                group_thousands(m.objects.len() as u64),
                human_bytes(m.objects.iter().map(|o| o.size).sum()),
                m.version.to_string(),
                m.updated_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if right[i] {
                    format!("{c:>w$}", w = widths[i])
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(&header);
    for r in &rows {
        line(&r.iter().map(String::as_str).collect::<Vec<_>>());
    }
    out.push_str(&format!(
        "{} dataset{}\n",
        manifests.len(),
        if manifests.len() == 1 { "" } else { "s" }
    ));
    out
}

fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lakehouse_catalogd::{ObjectRef, dataset_id_for};

    #[test]
    fn number_formatting() {
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1000), "1,000");
        assert_eq!(group_thousands(6_001_215), "6,001,215");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn table_layout() {
        let t = chrono::DateTime::parse_from_rfc3339("2025-03-04T05:06:07Z")
            .unwrap()
            .to_utc();
        let m = |name: &str, rows: u64| Manifest {
            dataset_id: dataset_id_for(name),
            name: name.to_string(),
            schema_fingerprint: "fp".to_string(),
            objects: vec![ObjectRef {
                key: "k".to_string(),
                size: 2048,
                row_count: rows,
            }],
            row_count: rows,
            created_at: t,
            updated_at: t,
            version: 3,
            table_version: Some(2),
        };
        let out = render_table(&[m("tpch/lineitem", 6_001_215), m("a", 7)]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "NAME                ROWS  OBJECTS     SIZE  VERSION  UPDATED"
        );
        assert_eq!(
            lines[1],
            "tpch/lineitem  6,001,215        1  2.0 KiB        3  2025-03-04T05:06:07Z"
        );
        assert_eq!(
            lines[2],
            "a                      7        1  2.0 KiB        3  2025-03-04T05:06:07Z"
        );
        assert_eq!(lines[3], "2 datasets");
        assert_eq!(render_table(&[]), "no datasets\n");
    }
}
