//! The decode → encode → upload pipeline: the body is pumped into a decode
//! thread; batches are encoded to Parquet and uploaded on another.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use object_store::ObjectStore;
use tokio::sync::mpsc;

use super::{Ingestor, object_prefix};
use crate::decode::{self, normalize_batch};
use crate::error::IngestError;
use crate::evolve;
use crate::fingerprint::{differences, fingerprint};
use crate::options::IngestOptions;
use crate::sniff::CsvReport;
use crate::writer::{DatasetWriter, WriterConfig, WrittenObject};

impl Ingestor {
    /// Runs the decode → encode → upload pipeline. On failure, returns the
    /// keys of objects already written so the caller can delete them.
    pub(super) async fn write_objects<S, E>(
        &self,
        dataset: &str,
        ingest_id: &str,
        opts: IngestOptions,
        target: Option<SchemaRef>,
        body: S,
    ) -> Result<Written, (IngestError, Vec<String>)>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let (chunk_tx, mut chunk_rx) = mpsc::channel::<Result<Bytes, IngestError>>(16);
        // Pump the body into the decode thread.
        let pump = tokio::spawn(async move {
            let mut body = std::pin::pin!(body);
            while let Some(c) = body.next().await {
                let item = c.map_err(|e| IngestError::Body(e.to_string()));
                let failed = item.is_err();
                if chunk_tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        });

        let pipeline = Pipeline {
            opts,
            target,
            spool: self.cfg.spool_dir.clone(),
            store: self.store.clone(),
            rt: tokio::runtime::Handle::current(),
            prefix: object_prefix(dataset, ingest_id),
            writer: self.cfg.writer.clone(),
            dataset: dataset.to_string(),
        };
        let res = tokio::task::spawn_blocking(move || pipeline.run(&mut chunk_rx)).await;
        pump.abort();
        match res {
            Ok(r) => r,
            Err(e) => Err((
                IngestError::Internal(format!("ingest task failed: {e}")),
                vec![],
            )),
        }
    }
}

/// What the pipeline produced: the schema, the objects, how a CSV was read.
pub(super) type Written = (SchemaRef, Vec<WrittenObject>, Option<CsvReport>);

/// Everything the pipeline needs besides the body.
struct Pipeline {
    opts: IngestOptions,
    /// The dataset's schema, when it has data: the input must match it.
    target: Option<SchemaRef>,
    spool: PathBuf,
    store: Arc<dyn ObjectStore>,
    rt: tokio::runtime::Handle,
    /// Objects are named `<prefix>-NNNNN.parquet`.
    prefix: String,
    writer: WriterConfig,
    dataset: String,
}

/// From the decode thread to the encoder.
enum Item {
    Batch(RecordBatch),
    Done(SchemaRef, Option<CsvReport>),
}

type Batches = std::sync::mpsc::Receiver<Result<Item, IngestError>>;

/// A failure, with the keys of the objects already written (to delete).
type Failed = (IngestError, Vec<String>);

impl Pipeline {
    /// Decode on a second thread, encode and upload on this one.
    fn run(
        self,
        chunks: &mut mpsc::Receiver<Result<Bytes, IngestError>>,
    ) -> Result<Written, Failed> {
        let (batch_tx, batch_rx) = std::sync::mpsc::sync_channel::<Result<Item, IngestError>>(4);
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let stop = &stop;
            let (opts, target, spool) = (&self.opts, self.target.clone(), &self.spool);
            let decoder_thread = scope.spawn(move || {
                decode_into(chunks, opts, target, spool, stop, batch_tx);
            });
            let result = self.write_all(&batch_rx);
            // Stop the decoder early (it may be waiting for more of the body).
            stop.store(true, Ordering::SeqCst);
            drop(batch_rx);
            let _ = decoder_thread.join();
            result
        })
    }

    fn new_writer(&self, schema: &SchemaRef) -> Result<DatasetWriter, IngestError> {
        DatasetWriter::new(
            self.store.clone(),
            self.rt.clone(),
            self.prefix.clone(),
            schema.clone(),
            self.writer.clone(),
        )
    }

    /// Encodes and uploads the decoded batches until the decoder is done.
    fn write_all(&self, batches: &Batches) -> Result<Written, Failed> {
        let mut writer: Option<DatasetWriter> = None;
        let mut schema: Option<SchemaRef> = None;
        let fail = |e: IngestError, writer: Option<DatasetWriter>| {
            (e, writer.map(|w| w.abort()).unwrap_or_default())
        };
        // The schema written: the input's, or under `schema=merge` the
        // dataset's with the input's new columns (batches conformed to it).
        let mut out: Option<SchemaRef> = None;
        let output = |s: &SchemaRef| self.output_schema(s);
        loop {
            let Ok(item) = batches.recv() else {
                return Err(fail(
                    IngestError::Internal("the decoder stopped".into()),
                    writer.take(),
                ));
            };
            match item {
                Err(e) => return Err(fail(e, writer.take())),
                Ok(Item::Batch(b)) => {
                    if writer.is_none() {
                        let s = decode::normalize_schema(&b.schema());
                        let o = output(&s).map_err(|e| fail(e, None))?;
                        writer = Some(self.new_writer(&o).map_err(|e| fail(e, None))?);
                        schema = Some(s);
                        out = Some(o);
                    }
                    let s = schema.as_ref().expect("set with the writer");
                    let o = out.as_ref().expect("set with the writer");
                    let res = normalize_batch(b, s)
                        .and_then(|b| self.conform(b, o))
                        .and_then(|b| match writer.as_mut() {
                            Some(w) => w.write(&b),
                            None => Ok(()),
                        });
                    if let Err(e) = res {
                        return Err(fail(e, writer.take()));
                    }
                }
                Ok(Item::Done(s, csv)) => {
                    let s = schema
                        .clone()
                        .unwrap_or_else(|| decode::normalize_schema(&s));
                    let o = match output(&s) {
                        Ok(o) => o,
                        Err(e) => return Err(fail(e, writer.take())),
                    };
                    let mut w = match writer.take() {
                        Some(w) => w,
                        None => self.new_writer(&o).map_err(|e| fail(e, None))?,
                    };
                    return match w.finish() {
                        Ok(objs) => Ok((o, objs, csv)),
                        Err(e) => Err(fail(e, Some(w))),
                    };
                }
            }
        }
    }
}

impl Pipeline {
    /// The schema the objects are written with, for input decoded as `got`:
    /// `got` itself when it is the dataset's (or the dataset has none);
    /// under `schema=merge`, the merged schema; else a mismatch.
    fn output_schema(&self, got: &SchemaRef) -> Result<SchemaRef, IngestError> {
        match &self.target {
            Some(t) if self.opts.merge => {
                evolve::merged(t, got).map_err(|differences| IngestError::SchemaMismatch {
                    dataset: self.dataset.clone(),
                    differences,
                })
            }
            target => same_schema(&self.dataset, target.as_ref(), got).map(|()| got.clone()),
        }
    }

    /// A batch with the schema written (a no-op unless merging).
    fn conform(&self, b: RecordBatch, out: &SchemaRef) -> Result<RecordBatch, IngestError> {
        if b.schema() == *out {
            Ok(b)
        } else {
            evolve::conform(&b, out)
        }
    }
}

/// The decode thread: chunks in, batches out, until the body ends, an
/// error, or `stop`.
fn decode_into(
    chunks: &mut mpsc::Receiver<Result<Bytes, IngestError>>,
    opts: &IngestOptions,
    target: Option<SchemaRef>,
    spool: &std::path::Path,
    stop: &AtomicBool,
    batches: std::sync::mpsc::SyncSender<Result<Item, IngestError>>,
) {
    let send = |item| batches.send(item).is_ok();
    let mut dec = decode::decoder(opts, target, spool);
    let mut out = Vec::new();
    while let Some(chunk) = chunks.blocking_recv() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        if let Err(e) = chunk.and_then(|c| dec.push(&c, &mut out)) {
            send(Err(e));
            return;
        }
        for b in out.drain(..) {
            if !send(Ok(Item::Batch(b))) {
                return;
            }
        }
    }
    match dec.finish() {
        Err(e) => {
            send(Err(e));
        }
        Ok(f) => {
            for b in f.batches {
                if !send(b.map(Item::Batch)) {
                    return;
                }
            }
            send(Ok(Item::Done(f.schema, f.csv)));
        }
    }
}

/// Fails fast when the input's schema is not the dataset's.
fn same_schema(
    dataset: &str,
    target: Option<&SchemaRef>,
    got: &SchemaRef,
) -> Result<(), IngestError> {
    match target {
        Some(t) if fingerprint(t) != fingerprint(got) => Err(IngestError::SchemaMismatch {
            dataset: dataset.to_string(),
            differences: differences(t, got),
        }),
        _ => Ok(()),
    }
}
