//! Serving connections: the accept loop with a connection cap, header-read
//! and idle timeouts, and graceful shutdown.
//!
//! `axum::serve` has none of these, so a client that opens a connection and
//! sends its headers a byte at a time (slowloris) holds it forever, and
//! enough of them exhaust the process's file descriptors. Here each
//! connection is served by hyper-util's HTTP/1 + HTTP/2 builder and watched
//! by a small timer that knows, from the connection's own I/O and the
//! requests in flight on it, which phase it is in:
//!
//! - **idle** (no request in flight, nothing received since the last one
//!   ended, or since accept): closed after [`ConnLimits::idle_timeout`];
//! - **reading headers** (bytes arrived but no request has been dispatched
//!   yet): closed after [`ConnLimits::header_read_timeout`], counted from the
//!   first byte — a trickle of bytes does not extend it;
//! - **busy** (a request is in flight, until its response body is sent):
//!   never closed here; the request timeout and the handlers bound it.
//!
//! At [`ConnLimits::max_connections`] the loop stops accepting: new
//! connections wait in the kernel's listen backlog (not refused) until a
//! slot frees, which the two timeouts guarantee happens. A well-behaved
//! client is delayed at worst by a header-read timeout, never failed.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tower::ServiceExt;

/// Per-connection limits (`[server]` in `lakehouse.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// From a request's first byte to its complete headers.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight and nothing arriving is
    /// closed after this long. Keep it above the clients' pool idle timeout
    /// (the services' own clients keep idle connections 30 s).
    pub idle_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
        }
    }
}

const NONE: u64 = u64::MAX;

/// What the watchdog knows about one connection. Times are milliseconds
/// since `start`.
struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    /// When the connection last became idle (accept, or a response ended).
    idle_since: AtomicU64,
    /// The first byte received while idle: a request's headers are coming.
    first_byte: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            first_byte: AtomicU64::new(NONE),
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn received(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.first_byte.load(Ordering::Relaxed) == NONE
        {
            self.first_byte.store(self.now(), Ordering::Relaxed);
        }
    }

    /// A request was dispatched: its headers are complete.
    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.first_byte.store(NONE, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// How long until the connection must close, or `None` while busy.
    fn deadline(&self, limits: &ConnLimits) -> Option<(Phase, u64)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let first = self.first_byte.load(Ordering::Relaxed);
        Some(if first != NONE {
            (
                Phase::Headers,
                first.saturating_add(limits.header_read_timeout.as_millis() as u64),
            )
        } else {
            let idle = self.idle_since.load(Ordering::Relaxed);
            (
                Phase::Idle,
                idle.saturating_add(limits.idle_timeout.as_millis() as u64),
            )
        })
    }
}

/// Held while a request is in flight: from dispatch until its response
/// body has been sent (or dropped).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        if a.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            a.first_byte.store(NONE, Ordering::Relaxed);
            a.idle_since.store(a.now(), Ordering::Relaxed);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Headers,
}

/// Resolves when the connection has overstayed its current phase.
async fn overstayed(activity: &Activity, limits: &ConnLimits) -> Phase {
    let tick = (limits.header_read_timeout.min(limits.idle_timeout) / 4)
        .clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        let now = activity.now();
        let wait = match activity.deadline(limits) {
            Some((phase, at)) if at <= now => return phase,
            Some((_, at)) => Duration::from_millis(at - now).min(tick),
            None => tick,
        };
        tokio::time::sleep(wait).await;
    }
}

/// A TCP stream that tells its [`Activity`] when bytes arrive.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.received();
        }
        res
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops
/// accepting, asks every connection to finish its in-flight requests and
/// waits for them.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let max = effective_max_connections(limits.max_connections, fd_limit());
    let slots = Arc::new(Semaphore::new(max));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let mut stopping = stop_rx.clone();
    let mut at_cap_logged = false;
    loop {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => {
                at_cap_logged = false;
                p
            }
            Err(_) => {
                if !at_cap_logged {
                    tracing::warn!(
                        max_connections = max,
                        "connection cap reached: new connections wait in the listen backlog"
                    );
                    at_cap_logged = true;
                }
                tokio::select! {
                    p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                    _ = stopping.wait_for(|s| *s) => break,
                }
            }
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            _ = stopping.wait_for(|s| *s) => break,
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            stream,
            app.clone(),
            limits,
            stop_rx.clone(),
            permit,
        ));
    }
    drop(listener);
    // Every connection holds a slot until it ends: all slots back = all done.
    let _all = slots.acquire_many(max as u32).await;
    Ok(())
}

/// The listen backlog asked for (the kernel caps it at
/// `net.core.somaxconn`). The usual 128 overflows under a burst of
/// connections; with SYN cookies on, an overflowed connection that sends
/// nothing stays open on the client's side and is never served.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a listener on `addr` (`host:port`) with [`LISTEN_BACKLOG`] and
/// `SO_REUSEADDR` (a restart does not wait for old connections' TIME_WAIT).
pub async fn bind(addr: &str) -> io::Result<TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let socket = if a.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(a).and_then(|()| socket.listen(LISTEN_BACKLOG)) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{addr} resolves to no address"),
        )
    }))
}

/// Raises this process's soft limit on open files to its hard limit, as
/// servers do at start: the default soft limit (often 1,024) is below
/// [`ConnLimits::max_connections`], and a process at its limit cannot
/// accept (the connection hangs in the backlog) nor open a file. Returns the
/// soft limit now in force (`None` where it cannot be read).
pub fn raise_fd_limit() -> Option<u64> {
    let lim = nofile()?;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        #[allow(unsafe_code)]
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Some(raised.rlim_cur);
        }
    }
    Some(lim.rlim_cur)
}

/// The open-file limits (soft and hard), `None` where they cannot be read.
fn nofile() -> Option<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    #[allow(unsafe_code)]
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    ok.then_some(lim)
}

/// The soft limit on open files (`None`: unknown or unlimited).
fn fd_limit() -> Option<u64> {
    nofile()
        .map(|l| l.rlim_cur)
        .filter(|&c| c != libc::RLIM_INFINITY)
}

/// Descriptors kept for everything but client connections (files, the
/// services' own clients, listeners).
const FD_RESERVE: u64 = 256;

/// The connection cap actually used: the configured one, lowered so that
/// connections (each may cost two descriptors: the client's and, through
/// the gateway, one upstream) cannot exhaust the file limit. At the cap new
/// connections wait in the backlog and are served in turn; out of
/// descriptors, they would wait with no turn coming.
fn effective_max_connections(configured: usize, fd_limit: Option<u64>) -> usize {
    let configured = configured.clamp(1, u32::MAX as usize);
    let Some(limit) = fd_limit else {
        return configured;
    };
    let by_fds = (limit.saturating_sub(FD_RESERVE) / 2).max(16) as usize;
    if by_fds < configured {
        tracing::warn!(
            max_connections = configured,
            open_file_limit = limit,
            using = by_fds,
            "the open-file limit is too low for max_connections: capping connections (raise `ulimit -n`)"
        );
    }
    configured.min(by_fds)
}

/// Accept errors: a connection that died in the backlog is skipped; running
/// out of descriptors or memory waits a little (connections ending free
/// them) instead of spinning.
async fn accept_failed(e: io::Error) {
    match e.kind() {
        io::ErrorKind::ConnectionAborted
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionRefused
        | io::ErrorKind::Interrupted => {}
        _ => {
            tracing::warn!(error = %e, "accept failed; retrying in 100 ms");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    app: Router,
    limits: ConnLimits,
    mut stop: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: activity.clone(),
    });
    let a = activity.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let in_flight = a.begin();
        let app = app.clone();
        async move {
            let resp = app.oneshot(req.map(Body::new)).await?;
            // The request stays in flight until its body is sent.
            Ok::<_, Infallible>(resp.map(|b| {
                Body::new(b.map_frame(move |f| {
                    let _held = &in_flight;
                    f
                }))
            }))
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The timer below is the header-read timeout (hyper's own would also
    // cut idle keep-alive connections at the same moment).
    builder.http1().header_read_timeout(None);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut closing = Closing::No;
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stop.wait_for(|s| *s), if closing != Closing::Draining => {
                conn.as_mut().graceful_shutdown();
                closing = Closing::Draining;
            }
            phase = overstayed(&activity, &limits), if closing == Closing::No => {
                if phase == Phase::Headers {
                    tracing::debug!("closing a connection whose request headers did not arrive in time");
                }
                // HTTP/1 closes at once (nothing is in flight); HTTP/2 says GOAWAY.
                conn.as_mut().graceful_shutdown();
                closing = Closing::TimedOut;
            }
            // A peer that ignores the GOAWAY is cut off, unless a request
            // slipped in meanwhile (then it finishes first).
            _ = tokio::time::sleep(Duration::from_secs(1)), if closing == Closing::TimedOut => {
                if activity.in_flight.load(Ordering::Acquire) == 0 {
                    return;
                }
            }
        }
    }
}

/// Why a connection is being closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    No,
    /// A timeout: closed as soon as nothing is in flight.
    TimedOut,
    /// Server shutdown: every in-flight request finishes.
    Draining,
}

#[cfg(test)]
mod tests {
    use super::effective_max_connections as eff;

    #[tokio::test]
    async fn listeners_have_a_deep_backlog() {
        let l = super::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        // 300 connections with nobody accepting: all complete (a backlog
        // of 128 would leave some in SYN-cookie limbo or refused). The
        // kernel caps a backlog at net.core.somaxconn; stay under it.
        let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(4096);
        let n = 300.min(somaxconn.saturating_sub(8));
        let mut conns = Vec::new();
        for _ in 0..n {
            let c = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                tokio::net::TcpStream::connect(("127.0.0.1", port)),
            )
            .await
            .expect("connect in time")
            .expect("connected");
            conns.push(c);
        }
        let mut accepted = 0;
        while accepted < n {
            tokio::time::timeout(std::time::Duration::from_secs(5), l.accept())
                .await
                .expect("every connection is in the backlog")
                .unwrap();
            accepted += 1;
        }
        assert!(super::bind("no-such-host.invalid:1").await.is_err());
    }

    #[test]
    fn the_cap_follows_the_open_file_limit() {
        assert_eq!(eff(4096, None), 4096);
        assert_eq!(eff(4096, Some(1_048_576)), 4096);
        assert_eq!(eff(4096, Some(1024)), 384);
        assert_eq!(eff(100, Some(1024)), 100);
        assert_eq!(eff(4096, Some(10)), 16);
        assert_eq!(eff(0, None), 1);
    }

    fn limits() -> (u64, u64) {
        let l = super::nofile().expect("readable");
        (l.rlim_cur, l.rlim_max)
    }

    #[test]
    fn raising_the_file_limit_reaches_the_hard_limit() {
        let (before, hard) = limits();
        let now = super::raise_fd_limit().expect("readable");
        let (soft, _) = limits();
        assert_eq!(now, soft);
        assert!(soft >= before);
        // A hard limit the kernel allows (≤ fs.nr_open, 1 Mi by default) is
        // reached; a larger one may be refused, leaving the soft one as it was.
        if hard <= 1 << 20 {
            assert_eq!(soft, hard);
        }
    }
}
