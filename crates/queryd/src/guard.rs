//! Running queries: their cancellation, their memory, and the process
//! memory guard.
//!
//! Every query is registered in [`Running`] while it runs, with a
//! cancellation token and a [`QueryPool`] — a view of the shared DataFusion
//! memory pool that counts this query's reservations. The token is
//! cancelled when the query's consumer goes away (the HTTP client
//! disconnected and the response body was dropped), which ends the query's
//! task and drops its DataFusion stream, stopping every operator task.
//!
//! Cancelling drops the query's DataFusion stream, which aborts its operator
//! tasks, and [`CancelExec`] makes each operator stop at its next batch even
//! inside a task that does not yield.
//!
//! The guard ([`spawn_watchdog`]) is a thread that reads the process's
//! resident memory (`VmRSS`, what the kernel's OOM killer counts) every
//! 50 ms. Over `[queryd].process_memory_limit` it cancels the running query
//! holding the most pool memory (the oldest on a tie, e.g. when the memory
//! is outside the pool) with a 503 `memory_pressure` for that query's
//! client, waits for memory to fall, and cancels the next one only if it
//! does not. jemalloc returns freed pages to the kernel after about ten
//! seconds, so the limit should leave that much headroom below the machine.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use datafusion::common::Result as DfResult;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use futures::StreamExt;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::error::QueryError;

/// One query's view of the shared pool: every call goes to the shared pool,
/// and this query's share is counted.
#[derive(Debug)]
pub(crate) struct QueryPool {
    inner: Arc<dyn MemoryPool>,
    used: AtomicUsize,
}

impl QueryPool {
    pub fn new(inner: Arc<dyn MemoryPool>) -> Self {
        Self {
            inner,
            used: AtomicUsize::new(0),
        }
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

impl std::fmt::Display for QueryPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "query view of {}", self.inner)
    }
}

impl MemoryPool for QueryPool {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.inner.register(consumer)
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.inner.unregister(consumer)
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.inner.grow(reservation, additional);
        self.used.fetch_add(additional, Ordering::Relaxed);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.inner.shrink(reservation, shrink);
        self.used.fetch_sub(shrink, Ordering::Relaxed);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> DfResult<()> {
        self.inner.try_grow(reservation, additional)?;
        self.used.fetch_add(additional, Ordering::Relaxed);
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.inner.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.inner.memory_limit()
    }
}

/// A running query, as the registry sees it.
struct Entry {
    started: Instant,
    pool: Arc<QueryPool>,
    cancel: CancellationToken,
    /// Why the engine cancelled it (the guard); `None` = the client left.
    reason: Arc<Mutex<Option<QueryError>>>,
}

/// Counters for `GET /query/stats`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct QueryStats {
    /// Queries running now.
    pub running: usize,
    /// Queries started since the engine started.
    pub started: u64,
    /// Queries stopped because their client went away.
    pub cancelled_disconnected: u64,
    /// Queries cancelled by the process memory guard.
    pub cancelled_memory: u64,
}

/// The running queries.
#[derive(Default)]
pub(crate) struct Running {
    entries: Mutex<HashMap<u64, Entry>>,
    next: AtomicU64,
    started: AtomicU64,
    disconnected: AtomicU64,
    memory: AtomicU64,
}

/// A registered query; dropping it unregisters the query.
pub(crate) struct Registration {
    id: u64,
    running: Arc<Running>,
    pub cancel: CancellationToken,
    pub reason: Arc<Mutex<Option<QueryError>>>,
}

impl Drop for Registration {
    /// The query ended (finished, failed, timed out or was cancelled): any
    /// operator still running stops at its next batch.
    fn drop(&mut self) {
        self.cancel.cancel();
        self.running.entries.lock().remove(&self.id);
    }
}

impl Running {
    pub fn register(self: &Arc<Self>, pool: Arc<QueryPool>) -> Registration {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let cancel = CancellationToken::new();
        let reason = Arc::new(Mutex::new(None));
        self.entries.lock().insert(
            id,
            Entry {
                started: Instant::now(),
                pool,
                cancel: cancel.clone(),
                reason: reason.clone(),
            },
        );
        self.started.fetch_add(1, Ordering::Relaxed);
        Registration {
            id,
            running: self.clone(),
            cancel,
            reason,
        }
    }

    pub fn note_disconnected(&self) {
        self.disconnected.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stats(&self) -> QueryStats {
        QueryStats {
            running: self.entries.lock().len(),
            started: self.started.load(Ordering::Relaxed),
            cancelled_disconnected: self.disconnected.load(Ordering::Relaxed),
            cancelled_memory: self.memory.load(Ordering::Relaxed),
        }
    }

    /// Cancels the query with the most pool memory (oldest on a tie) that
    /// is not cancelled yet; returns whether there was one.
    fn cancel_largest(&self, reason: impl FnOnce() -> QueryError) -> bool {
        let entries = self.entries.lock();
        let victim = entries
            .values()
            .filter(|e| !e.cancel.is_cancelled())
            .max_by(|a, b| {
                a.pool
                    .used()
                    .cmp(&b.pool.used())
                    .then(b.started.cmp(&a.started))
            });
        let Some(v) = victim else {
            return false;
        };
        tracing::warn!(
            pool_bytes = v.pool.used(),
            running_for = ?v.started.elapsed(),
            "process memory over [queryd].process_memory_limit: cancelling the largest query"
        );
        *v.reason.lock() = Some(reason());
        v.cancel.cancel();
        self.memory.fetch_add(1, Ordering::Relaxed);
        true
    }
}

/// The process's resident memory in bytes (Linux `VmRSS`).
pub fn process_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The default guard limit: 90 % of the machine's memory, or of the
/// cgroup's limit when that is lower.
pub fn default_process_limit() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let total_kb: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let mut total = total_kb * 1024;
    for path in [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ] {
        if let Some(limit) = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
        {
            total = total.min(limit);
        }
    }
    Some(total / 10 * 9)
}

/// Starts the guard thread; it ends when the registry is dropped.
pub(crate) fn spawn_watchdog(running: &Arc<Running>, limit: u64) -> std::io::Result<()> {
    let weak: Weak<Running> = Arc::downgrade(running);
    std::thread::Builder::new()
        .name("queryd-memguard".to_string())
        .spawn(move || watch(weak, limit))
        .map(|_| ())
}

fn watch(weak: Weak<Running>, limit: u64) {
    const TICK: Duration = Duration::from_millis(50);
    // After a cancellation, memory takes a moment to be freed.
    const SETTLE: Duration = Duration::from_millis(500);
    let mut last_cancel: Option<(Instant, u64)> = None;
    loop {
        std::thread::sleep(TICK);
        let Some(running) = weak.upgrade() else {
            return;
        };
        let Some(used) = process_memory() else {
            continue;
        };
        if used <= limit {
            last_cancel = None;
            continue;
        }
        // Give the last victim time to free its memory, unless memory
        // keeps growing.
        if let Some((at, then)) = last_cancel
            && at.elapsed() < SETTLE
            && used <= then
        {
            continue;
        }
        let size = |b: u64| lakehouse_common::size::ByteSize(b).to_string();
        if running.cancel_largest(|| QueryError::MemoryPressure {
            used: size(used),
            limit: size(limit),
        }) {
            last_cancel = Some((Instant::now(), used));
        }
    }
}

/// A pass-through node put above every operator of a query's physical plan:
/// its stream ends the query with an error as soon as the query is
/// cancelled. Operators that pull batches in a loop without yielding to the
/// runtime (an aggregate over a cross join) would otherwise run on after
/// their task was dropped, until their input ran dry; with this, each stops
/// at its next batch, and the CPU is freed.
#[derive(Debug)]
pub(crate) struct CancelExec {
    input: Arc<dyn ExecutionPlan>,
    cancel: CancellationToken,
}

impl CancelExec {
    /// Wraps every node of `plan`.
    pub fn wrap_all(
        plan: Arc<dyn ExecutionPlan>,
        cancel: &CancellationToken,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            Ok(Transformed::yes(Arc::new(CancelExec {
                input: node,
                cancel: cancel.clone(),
            }) as Arc<dyn ExecutionPlan>))
        })
        .map(|t| t.data)
    }
}

impl DisplayAs for CancelExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "CancelExec")
    }
}

impl ExecutionPlan for CancelExec {
    fn name(&self) -> &str {
        "CancelExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(CancelExec {
            input: children.swap_remove(0),
            cancel: self.cancel.clone(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let schema = input.schema();
        let cancel = self.cancel.clone();
        let stream = input.map(move |batch| {
            if cancel.is_cancelled() {
                Err(DataFusionError::Execution(
                    "the query was cancelled".to_string(),
                ))
            } else {
                batch
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}
