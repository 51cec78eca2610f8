//! `lakehouse vectors create|add|search|list|drop`: the vector indexes from
//! the command line. `add` reads NDJSON (`{"id", "vector", "metadata"?}` per
//! line) or Parquet (an `id` column, a `vector` list column, every other
//! column becomes metadata) and sends it in batches with a progress bar.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float32Type, Float64Type};
use indicatif::{ProgressBar, ProgressStyle};
use lakehouse_vectord::{IndexSpec, Item, SearchRequest, VectorClient, Vectors};

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
    /// Add (upsert) items from an NDJSON or Parquet file.
    Add {
        name: String,
        file: PathBuf,
        /// Items per request.
        #[arg(long, default_value_t = 1000)]
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
        VectorsCommand::List => {
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
        }
        VectorsCommand::Drop { name } => {
            client.drop_index(&name).await?;
            println!("dropped {name}");
        }
    }
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
    let mut it = items.into_iter().peekable();
    while it.peek().is_some() {
        let chunk: Vec<Item> = it.by_ref().take(batch).collect();
        let n = chunk.len();
        let r = client.add(name, chunk).await.with_context(|| {
            format!(
                "adding items {}..{}",
                pb.position(),
                pb.position() + n as u64
            )
        })?;
        count = r.count;
        pb.inc(n as u64);
    }
    pb.finish_and_clear();
    println!("added {total} items to {name}; it now has {count}");
    Ok(())
}

fn read_items(file: &Path) -> anyhow::Result<Vec<Item>> {
    let is_parquet = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet") || e.eq_ignore_ascii_case("pq"));
    if !is_parquet {
        let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
        let mut out = Vec::new();
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
            out.push(item);
        }
        return Ok(out);
    }
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)?.build()?;
    let mut out = Vec::new();
    for b in reader {
        out.extend(items_from_batch(&b?)?);
    }
    Ok(out)
}

fn items_from_batch(b: &RecordBatch) -> anyhow::Result<Vec<Item>> {
    let schema = b.schema();
    let id_idx = schema
        .index_of("id")
        .context("the Parquet file needs an `id` column")?;
    let vec_idx = schema
        .index_of("vector")
        .context("the Parquet file needs a `vector` column")?;
    let ids = arrow::compute::cast(b.column(id_idx), &DataType::Utf8)?;
    let ids = ids.as_string::<i32>();
    let vectors = b.column(vec_idx);
    let vector_at = |row: usize| -> anyhow::Result<Vec<f32>> {
        let values = match vectors.data_type() {
            DataType::List(_) => vectors.as_list::<i32>().value(row),
            DataType::LargeList(_) => vectors.as_list::<i64>().value(row),
            DataType::FixedSizeList(_, _) => vectors.as_fixed_size_list().value(row),
            other => bail!("`vector` must be a list of floats, not {other}"),
        };
        Ok(match values.data_type() {
            DataType::Float32 => values.as_primitive::<Float32Type>().values().to_vec(),
            DataType::Float64 => values
                .as_primitive::<Float64Type>()
                .values()
                .iter()
                .map(|v| *v as f32)
                .collect(),
            other => bail!("`vector` must hold float32 or float64, not {other}"),
        })
    };
    // Every other column becomes metadata, via Arrow's JSON writer.
    let others: Vec<usize> = (0..b.num_columns())
        .filter(|i| *i != id_idx && *i != vec_idx)
        .collect();
    let meta_rows: Vec<Map<String, Value>> = if others.is_empty() {
        vec![Map::new(); b.num_rows()]
    } else {
        let proj = b.project(&others)?;
        let mut buf = Vec::new();
        {
            let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
            w.write(&proj)?;
            w.finish()?;
        }
        buf.split(|c| *c == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).map_err(anyhow::Error::from))
            .collect::<anyhow::Result<_>>()?
    };
    (0..b.num_rows())
        .map(|row| {
            if ids.is_null(row) {
                bail!("row {row}: the id is null");
            }
            Ok(Item {
                id: ids.value(row).to_string(),
                vector: vector_at(row)?,
                metadata: (!meta_rows[row].is_empty()).then(|| meta_rows[row].clone()),
            })
        })
        .collect()
}
