//! `lakehouse vectors create|add|search|list|drop`: the vector indexes from
//! the command line. `add` reads NDJSON (`{"id", "vector", "metadata"?}` per
//! line), Parquet or Arrow IPC (file or stream): an `id` column, a `vector`
//! list column, and either a `metadata` column (JSON text or a struct) or
//! other columns, which become the metadata's fields. It sends Arrow IPC
//! batches (the fast path: raw floats, no JSON) with a progress bar.

use std::io::{BufRead, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use arrow::array::{Array, ArrayRef, RecordBatch, StructArray};
use arrow::datatypes::{DataType, Field, Schema};
use indicatif::{ProgressBar, ProgressStyle};
use lakehouse_vectord::{Batch, IndexSpec, Item, SearchRequest, VectorClient, Vectors, ipc};

use crate::remote::Remote;
use serde_json::{Map, Value};

#[derive(Debug, clap::Args)]
pub struct VectorsArgs {
    #[command(subcommand)]
    command: VectorsCommand,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, clap::Subcommand)]
enum VectorsCommand {
    /// Create an index (the same parameters again is fine).
    Create {
        name: String,
        #[arg(long)]
        dim: usize,
        /// cosine | l2 | dot
        #[arg(long, default_value = "cosine")]
        metric: String,
        #[arg(long, default_value_t = 16)]
        m: usize,
        #[arg(long, default_value_t = 200)]
        ef_construction: usize,
    },
    /// Add (upsert) items from an NDJSON, Parquet or Arrow IPC file.
    Add {
        name: String,
        file: PathBuf,
        /// Items per request.
        #[arg(long, default_value_t = 10_000)]
        batch: usize,
    },
    /// Nearest neighbours of a vector.
    Search {
        name: String,
        /// The query vector as JSON, e.g. '[0.1, 0.2, 0.3]'.
        #[arg(long)]
        vector: String,
        #[arg(short, long, default_value_t = 10)]
        k: usize,
        #[arg(long)]
        ef: Option<usize>,
        /// Metadata equality, KEY=VALUE (VALUE is JSON when it parses, else a string).
        #[arg(long)]
        filter: Vec<String>,
    },
    /// List the indexes.
    List,
    /// Delete an index and its data.
    Drop { name: String },
}

fn metric(s: &str) -> anyhow::Result<lakehouse_hnsw::Metric> {
    serde_json::from_value(Value::from(s.to_ascii_lowercase()))
        .map_err(|_| anyhow::anyhow!("unknown metric {s:?}; use cosine, l2 or dot"))
}

pub async fn run(args: VectorsArgs) -> anyhow::Result<()> {
    let client = VectorClient::with_options(&args.remote.url, &args.remote.options());
    match args.command {
        VectorsCommand::Create {
            name,
            dim,
            metric: m,
            m: mm,
            ef_construction,
        } => {
            let spec = IndexSpec {
                name,
                dim,
                metric: metric(&m)?,
                m: mm,
                ef_construction,
                source: Default::default(),
            };
            let (info, created) = client.create(spec).await?;
            println!(
                "{} index {} (dim {}, {:?}, m {}, ef_construction {})",
                if created { "created" } else { "already have" },
                info.name,
                info.dim,
                info.metric,
                info.m,
                info.ef_construction
            );
        }
        VectorsCommand::Add { name, file, batch } => {
            add(&client, &name, &file, batch.max(1)).await?
        }
        VectorsCommand::Search {
            name,
            vector,
            k,
            ef,
            filter,
        } => {
            let vector: Vec<f32> = serde_json::from_str(&vector)
                .context("--vector must be a JSON array of numbers")?;
            let mut f = Map::new();
            for kv in &filter {
                let (k, v) = kv
                    .split_once('=')
                    .with_context(|| format!("--filter {kv:?} is not KEY=VALUE"))?;
                f.insert(
                    k.to_string(),
                    serde_json::from_str(v).unwrap_or_else(|_| Value::from(v)),
                );
            }
            let hits = client
                .search(
                    &name,
                    SearchRequest {
                        vector,
                        k,
                        ef,
                        filter: (!f.is_empty()).then_some(f),
                        text: None,
                        hybrid: false,
                    },
                )
                .await?;
            let w = hits.iter().map(|h| h.id.len()).max().unwrap_or(2).max(2);
            println!("{:<w$}  {:>10}  METADATA", "ID", "DISTANCE");
            for h in &hits {
                let md = h
                    .metadata
                    .as_ref()
                    .map(|m| Value::Object(m.clone()).to_string())
                    .unwrap_or_default();
                println!("{:<w$}  {:>10.6}  {md}", h.id, h.distance);
            }
        }
        VectorsCommand::List => list(&client).await?,
        VectorsCommand::Drop { name } => {
            client.drop_index(&name).await?;
            println!("dropped {name}");
        }
    }
    Ok(())
}

/// `lakehouse vectors list`: one line per index.
async fn list(client: &VectorClient) -> anyhow::Result<()> {
    let list = client.list().await?;
    println!(
        "{:<24} {:>6} {:>7} {:>4} {:>6} {:>10} {:>12}",
        "NAME", "DIM", "METRIC", "M", "EFC", "COUNT", "MEMORY"
    );
    for i in &list {
        println!(
            "{:<24} {:>6} {:>7} {:>4} {:>6} {:>10} {:>10.1} MiB",
            i.name,
            i.dim,
            format!("{:?}", i.metric).to_lowercase(),
            i.m,
            i.ef_construction,
            i.count,
            i.memory_bytes as f64 / (1 << 20) as f64
        );
    }
    println!(
        "{} index{}",
        list.len(),
        if list.len() == 1 { "" } else { "es" }
    );
    Ok(())
}

async fn add(client: &VectorClient, name: &str, file: &Path, batch: usize) -> anyhow::Result<()> {
    let items = read_items(file)?;
    let pb = if std::io::stderr().is_terminal() {
        ProgressBar::new(items.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} {pos}/{len} items [{wide_bar}] {per_sec} ETA {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let mut count = 0;
    let total = items.len();
    for start in (0..total).step_by(batch) {
        let end = (start + batch).min(total);
        let r = client
            .add_batch(name, items.slice(start..end))
            .await
            .with_context(|| format!("adding items {start}..{end}"))?;
        count = r.count;
        pb.inc((end - start) as u64);
    }
    pb.finish_and_clear();
    println!("added {total} items to {name}; it now has {count}");
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Ndjson,
    Parquet,
    Arrow,
}

fn format_of(file: &Path) -> Format {
    let ext = file
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "parquet" | "pq" => Format::Parquet,
        "arrow" | "arrows" | "ipc" | "feather" => Format::Arrow,
        _ => Format::Ndjson,
    }
}

fn read_items(file: &Path) -> anyhow::Result<Batch> {
    let open = || std::fs::File::open(file).with_context(|| format!("opening {}", file.display()));
    let batches: Vec<RecordBatch> = match format_of(file) {
        Format::Ndjson => return read_ndjson(file),
        Format::Parquet => {
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(open()?)?
                .build()?
                .collect::<Result<_, _>>()?
        }
        Format::Arrow => {
            let mut magic = [0u8; 6];
            let n = open()?.read(&mut magic)?;
            if n == 6 && &magic == b"ARROW1" {
                arrow::ipc::reader::FileReader::try_new(open()?, None)?.collect::<Result<_, _>>()?
            } else {
                arrow::ipc::reader::StreamReader::try_new(std::io::BufReader::new(open()?), None)?
                    .collect::<Result<_, _>>()?
            }
        }
    };
    let rows = batches.iter().map(|b| b.num_rows()).sum();
    let mut out = Batch::with_capacity(rows, 0);
    let mut first = 0;
    for b in &batches {
        let b = normalise(b).with_context(|| file.display().to_string())?;
        ipc::append_record_batch(&b, first, &mut out)
            .with_context(|| file.display().to_string())?;
        first += b.num_rows();
    }
    Ok(out)
}

fn read_ndjson(file: &Path) -> anyhow::Result<Batch> {
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let mut out = Batch::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let item: Item = serde_json::from_str(&line).with_context(|| {
            format!(
                "{} line {}: expected {{\"id\", \"vector\", \"metadata\"?}}",
                file.display(),
                i + 1
            )
        })?;
        out.push(item.id, &item.vector, item.metadata);
    }
    Ok(out)
}

/// A record batch in the add body's shape: `id` as utf8 (any type is cast),
/// `vector` as is, and `metadata` — the file's own column, or a struct of
/// every other column.
fn normalise(b: &RecordBatch) -> anyhow::Result<RecordBatch> {
    let schema = b.schema();
    let id_idx = schema
        .index_of("id")
        .context("the file needs an `id` column")?;
    let vec_idx = schema
        .index_of("vector")
        .context("the file needs a `vector` column")?;
    let ids = arrow::compute::cast(b.column(id_idx), &DataType::Utf8)
        .context("the `id` column cannot be read as text")?;
    let mut fields = vec![
        Field::new("id", DataType::Utf8, true),
        schema.field(vec_idx).clone().with_name("vector"),
    ];
    let mut columns: Vec<ArrayRef> = vec![ids, b.column(vec_idx).clone()];
    let others: Vec<usize> = (0..b.num_columns())
        .filter(|i| *i != id_idx && *i != vec_idx)
        .collect();
    let md_idx = schema.index_of("metadata").ok();
    match md_idx {
        Some(m) if others.len() > 1 => bail!(
            "with a `metadata` column the file can have no other columns than id and vector (found {:?})",
            others
                .iter()
                .filter(|i| **i != m)
                .map(|i| schema.field(*i).name())
                .collect::<Vec<_>>()
        ),
        Some(m) => {
            fields.push(schema.field(m).clone());
            columns.push(b.column(m).clone());
        }
        None if !others.is_empty() => {
            let st = StructArray::from(b.project(&others)?);
            fields.push(Field::new("metadata", st.data_type().clone(), true));
            columns.push(Arc::new(st));
        }
        None => {}
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}
