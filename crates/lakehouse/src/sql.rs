//! `lakehouse sql`: run one SQL query against a lakehouse and print the
//! result as a readable table, or stream it as CSV / JSON / NDJSON.
//!
//! The SQL comes from the argument, `--file`, or standard input when neither
//! is given. A failed query exits non-zero with the server's message; a CSV
//! or NDJSON result that the server ended with its in-band marker (cut at
//! `max_rows`, or failed after it began) is reported on standard error, and
//! a failure exits non-zero.

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
        // Streamed straight through: results can be larger than memory. The
        // server's end marker, if any, is in the last chunk.
        let mut out = std::io::stdout().lock();
        let mut last = None;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| anyhow::anyhow!("{e}"))?;
            out.write_all(&chunk)?;
            last = Some(chunk);
        }
        out.flush()?;
        return check_end_marker(last.as_deref().unwrap_or_default());
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

/// The server's in-band end marker (see the README): a truncation is a
/// warning, a failure an error.
fn check_end_marker(last_chunk: &[u8]) -> anyhow::Result<()> {
    let text = String::from_utf8_lossy(last_chunk);
    let Some(line) = text.trim_end_matches('\n').rsplit('\n').next() else {
        return Ok(());
    };
    if let Some(rest) = line.strip_prefix("#lakehouse: ") {
        return match rest.strip_prefix("error ") {
            Some(e) => bail!("the query failed after its result began: {e}"),
            None => {
                eprintln!("warning: {rest}");
                Ok(())
            }
        };
    }
    if line.starts_with("{\"$lakehouse\"")
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
    {
        let m = &v["$lakehouse"];
        if let Some(e) = m.get("error") {
            bail!(
                "the query failed after its result began: {}",
                e["message"].as_str().unwrap_or("unknown error")
            );
        }
        if let Some(msg) = m["message"].as_str() {
            eprintln!("warning: {msg}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_end_marker;

    #[test]
    fn end_markers_are_reported() {
        assert!(check_end_marker(b"a\n1\n").is_ok());
        assert!(check_end_marker(b"1\n#lakehouse: truncated: more rows\n").is_ok());
        let e = check_end_marker(b"1\n#lakehouse: error execution_error: boom\n").unwrap_err();
        assert!(e.to_string().contains("boom"), "{e}");
        let e = check_end_marker(
            b"{\"a\":1}\n{\"$lakehouse\":{\"error\":{\"code\":\"x\",\"message\":\"bad\"}}}\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("bad"), "{e}");
    }
}
