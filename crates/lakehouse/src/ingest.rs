//! `lakehouse ingest FILE`: streams a file to `POST /ingest/{dataset}` with a
//! progress bar (bytes, rate, ETA) and prints the resulting dataset.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, bail};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use lakehouse_ingestd::{Format, IngestClient, IngestError, IngestOptions};

use crate::remote::Remote;

#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// The file to ingest (CSV, NDJSON, Parquet or Arrow IPC).
    pub file: PathBuf,
    /// Dataset name [default: derived from the file name].
    #[arg(long)]
    pub dataset: Option<String>,
    /// csv | ndjson | parquet | arrow [default: from the file extension].
    #[arg(long)]
    pub format: Option<String>,
    /// append | replace.
    #[arg(long, default_value = "append")]
    pub mode: String,
    /// More options as KEY=VALUE: header=false, delimiter=';', quote, escape
    /// (CSV: detected when not given), null=NA (repeatable), infer_rows=N,
    /// schema=a:int64,b:utf8, or schema=merge to add the input's new columns
    /// to the dataset (schema evolution).
    #[arg(long = "option", short = 'o', value_name = "KEY=VALUE")]
    pub options: Vec<String>,
    /// Makes a retry of this ingest safe: the server applies it once.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub remote: Remote,
}

/// A dataset name from a file name: lowercase, other characters become `_`.
fn dataset_from_file(file: &std::path::Path) -> Option<String> {
    let stem = file.file_stem()?.to_string_lossy().to_lowercase();
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    (!name.is_empty()).then_some(name)
}

pub async fn run(args: IngestArgs) -> anyhow::Result<()> {
    let format = match &args.format {
        Some(f) => Format::parse(f)?,
        None => Format::from_extension(&args.file.to_string_lossy()).with_context(|| {
            format!(
                "cannot tell the format of {} from its name; pass --format",
                args.file.display()
            )
        })?,
    };
    let dataset = match &args.dataset {
        Some(d) => d.clone(),
        None => dataset_from_file(&args.file).context("pass --dataset NAME")?,
    };
    let file = tokio::fs::File::open(&args.file)
        .await
        .with_context(|| format!("opening {}", args.file.display()))?;
    let len = file.metadata().await?.len();

    let mut query: Vec<(String, String)> = vec![
        ("format".into(), format.name().into()),
        ("mode".into(), args.mode.clone()),
    ];
    for o in &args.options {
        let (k, v) = o
            .split_once('=')
            .with_context(|| format!("--option {o:?} is not KEY=VALUE"))?;
        query.push((k.to_string(), v.to_string()));
    }
    // Checked here, before a byte is sent, by the server's own reading.
    let opts = IngestOptions::from_query(&query, None)?;

    let pb = if args.quiet || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(len)
    };
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} {bytes}/{total_bytes} [{wide_bar}] {bytes_per_sec} ETA {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let counter = pb.clone();
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20).inspect(move |c| {
        if let Ok(b) = c {
            counter.inc(b.len() as u64);
        }
    });

    let client = IngestClient::with_http(&args.remote.url, args.remote.http());
    let answer = client
        .ingest_sized(
            &dataset,
            &opts,
            stream.boxed(),
            Some(len),
            args.idempotency_key.as_deref(),
        )
        .await;
    pb.finish_and_clear();
    let r = match answer {
        Ok(r) => r,
        Err(IngestError::Remote {
            status, message, ..
        }) => {
            let status =
                reqwest::StatusCode::from_u16(status).map_or(status.to_string(), |s| s.to_string());
            bail!("ingest failed ({status}): {message}")
        }
        Err(e) => {
            return Err(e).with_context(|| {
                format!("sending {} to {}", args.file.display(), args.remote.url)
            });
        }
    };
    println!(
        "{} {} rows into {} ({} new object{}); the dataset now has {} rows in {} objects, {}",
        if r.replayed {
            "already ingested:"
        } else {
            "ingested"
        },
        r.rows,
        r.dataset,
        r.objects.len(),
        if r.objects.len() == 1 { "" } else { "s" },
        r.manifest.row_count,
        r.manifest.objects.len(),
        match r.manifest.table_version {
            Some(v) => format!("table version {v}"),
            None => format!("version {}", r.manifest.version),
        }
    );
    if let Some(c) = &r.csv {
        println!("{}", describe_csv(c));
    }
    Ok(())
}

/// How the server read a CSV, in one or two lines.
fn describe_csv(c: &lakehouse_ingestd::sniff::CsvReport) -> String {
    let show = |name: &str, v: &str| {
        let v = if v == "\t" {
            "tab".to_string()
        } else {
            format!("{v:?}")
        };
        let how = if c.detected.iter().any(|d| d == name) {
            " (detected)"
        } else {
            ""
        };
        format!("{name} {v}{how}")
    };
    let header = if c.header {
        "the first row as column names"
    } else {
        "no header row"
    };
    let header_how = if c.detected.iter().any(|d| d == "header") {
        " (detected)"
    } else {
        ""
    };
    let mut s = format!(
        "read as CSV with {header}{header_how}, {}, {}, {}",
        show("delimiter", &c.delimiter),
        show("quote", &c.quote),
        show("escape", &c.escape)
    );
    if !c.renamed.is_empty() {
        let names: Vec<String> = c
            .renamed
            .iter()
            .map(|r| format!("column {} {:?} -> {:?}", r.column, r.from, r.to))
            .collect();
        s.push_str(&format!("\nrenamed columns: {}", names.join(", ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_how_a_csv_was_read() {
        let c = lakehouse_ingestd::sniff::CsvReport {
            header: false,
            delimiter: "\t".into(),
            quote: "\"".into(),
            escape: "\\".into(),
            detected: vec!["header".into(), "delimiter".into()],
            renamed: vec![lakehouse_ingestd::sniff::RenamedColumn {
                column: 2,
                from: "a".into(),
                to: "a_1".into(),
            }],
        };
        assert_eq!(
            describe_csv(&c),
            "read as CSV with no header row (detected), delimiter tab (detected), quote \"\\\"\", escape \"\\\\\"\nrenamed columns: column 2 \"a\" -> \"a_1\""
        );
    }

    #[test]
    fn names_from_files() {
        assert_eq!(
            dataset_from_file("data/Line Item.CSV".as_ref()).as_deref(),
            Some("line_item")
        );
        assert_eq!(
            dataset_from_file("x/orders-2024.parquet".as_ref()).as_deref(),
            Some("orders-2024")
        );
    }
}
