//! `lakehouse`: one binary that serves every service (or one, with `--only`)
//! and carries the client subcommands.

mod config;
mod datasets;
mod ingest;
mod protocols;
mod remote;
mod serve;
mod sql;
mod status;
mod vectors;

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use lakehouse_common::Service;

/// jemalloc rather than glibc malloc: storage streams allocate and free
/// megabytes per request, and glibc hands those pages back to the kernel, so
/// every request paid page faults and page zeroing again (a quarter of the
/// server's CPU in an upload profile). jemalloc reuses them.
#[cfg(all(target_os = "linux", not(target_env = "msvc")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(
    name = "lakehouse",
    version,
    about = "A self-hosted lakehouse: object storage, Parquet datasets, SQL and vector search in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the lakehouse (every service on one port, or one with --only).
    Serve(ServeArgs),
    /// List the catalog's datasets, or `show NAME` for one manifest.
    Datasets(datasets::DatasetsArgs),
    /// Stream a CSV / NDJSON / Parquet / Arrow file into a dataset.
    Ingest(ingest::IngestArgs),
    /// Vector indexes: create, add, search, list, drop.
    Vectors(vectors::VectorsArgs),
    /// Run a SQL query (from the argument, --file or stdin) and print the result.
    Sql(sql::SqlArgs),
    /// Is the server up, and is each service ready?
    Status(status::StatusArgs),
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Listen address [default: 127.0.0.1:8080, or the service's own port with --only].
    #[arg(long)]
    pub bind: Option<String>,
    /// Data directory [default: ./lakehouse-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// A TOML config file (one section per service).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Run just this service as a daemon.
    #[arg(long, value_parser = service_parser())]
    pub only: Option<Service>,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LAKEHOUSE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// `--only`'s values: the names in the service table.
fn service_parser() -> impl clap::builder::TypedValueParser<Value = Service> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(Service::ALL.map(Service::name))
        .try_map(|s| s.parse::<Service>())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            init_tracing(args.log_format);
            match lakehouse_common::conn::raise_fd_limit() {
                Some(n) => tracing::debug!(open_file_limit = n, "open-file limit"),
                None => tracing::warn!("the open-file limit cannot be read"),
            }
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(serve::run(args))
        }
        Command::Datasets(args) => datasets::run(args),
        Command::Ingest(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(ingest::run(args)),
        Command::Vectors(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(vectors::run(args)),
        Command::Sql(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(sql::run(args)),
        Command::Status(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(status::run(args)),
    }
}
