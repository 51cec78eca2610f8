//! `lakehouse sql`: run one SQL query against a lakehouse and print the
//! result as a readable table, or stream it as CSV / JSON / NDJSON.
//!
//! The SQL comes from the argument, `--file`, or standard input when neither
//! is given. A failed query exits non-zero with the server's message.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use futures::StreamExt;
use lakehouse_queryd::{Format, Query, QueryClient};

use crate::remote::Remote;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// An aligned text table.
    Table,
    Csv,
    Json,
    Ndjson,
}

#[derive(Debug, clap::Args)]
pub struct SqlArgs {
    /// The SQL (omit it to read --file, or standard input).
    pub sql: Option<String>,
    /// Read the SQL from this file.
    #[arg(long, short = 'f', conflicts_with = "sql")]
    pub file: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
    #[command(flatten)]
    pub remote: Remote,
}

fn read_sql(args: &SqlArgs) -> anyhow::Result<String> {
    let sql = match (&args.sql, &args.file) {
        (Some(s), _) => s.clone(),
        (None, Some(f)) => {
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?
        }
        (None, None) => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading SQL from standard input")?;
            s
        }
    };
    if sql.trim().is_empty() {
        bail!("no SQL given: pass it as an argument, with --file, or on standard input");
    }
    Ok(sql)
}

pub async fn run(args: SqlArgs) -> anyhow::Result<()> {
    let sql = read_sql(&args)?;
    let client = QueryClient::with_options(&args.remote.url, &args.remote.options());
    let format = match args.format {
        OutputFormat::Table => Format::Arrow,
        OutputFormat::Csv => Format::Csv,
        OutputFormat::Json => Format::Json,
        OutputFormat::Ndjson => Format::Ndjson,
    };
    let mut stream = client
        .sql(&sql, format)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if args.format != OutputFormat::Table {
        // Streamed straight through: results can be larger than memory.
        let mut out = std::io::stdout().lock();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| anyhow::anyhow!("{e}"))?;
            out.write_all(&chunk)?;
        }
        out.flush()?;
        return Ok(());
    }
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk.map_err(|e| anyhow::anyhow!("{e}"))?);
    }
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(buf), None)
        .context("reading the result")?;
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .context("reading the result")?;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let mut out = std::io::stdout().lock();
    if batches.is_empty() {
        writeln!(out, "(0 rows)")?;
        return Ok(());
    }
    writeln!(
        out,
        "{}",
        arrow::util::pretty::pretty_format_batches(&batches)?
    )?;
    writeln!(out, "({rows} row{})", if rows == 1 { "" } else { "s" })?;
    Ok(())
}
