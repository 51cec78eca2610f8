//! Calls from one lakehouse service to another: the typed error for "the
//! other service did not give an answer", and how every edge reports it.
//!
//! Each service client (and the gateway) wraps a transport failure in an
//! [`UpstreamError`] naming the service it called, classified by the error's
//! type — `reqwest::Error::is_connect()` / `is_timeout()` or the gateway's own
//! timer — never by message text. The error travels inside the caller's own
//! error enum as a `#[source]` (for the object store, as the source of
//! `object_store::Error::Generic`), and every HTTP edge finds it again with
//! [`UpstreamError::find`] and answers the way the gateway does:
//!
//! | kind | status | code |
//! |---|---|---|
//! | [`UpstreamKind::Unreachable`] | 503 | `upstream_unavailable` |
//! | [`UpstreamKind::Timeout`] | 504 | `upstream_timeout` |
//! | [`UpstreamKind::Broken`] | 502 | `bad_gateway` |
//!
//! with `"upstream": "<service>"` beside the code and message.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

use crate::error::ApiError;

/// Why another service gave no usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamKind {
    /// Nothing accepted the connection (refused, unroutable, not resolvable).
    Unreachable,
    /// The service did not answer in time.
    Timeout,
    /// The exchange broke off, or the answer was not HTTP.
    Broken,
}

/// Another service could not be used. Cheap to clone (the source is shared),
/// so an error found deep in a borrowed chain can be carried on.
#[derive(Debug, Clone)]
pub struct UpstreamError {
    /// The service called (`storaged`, `catalogd`, …).
    pub service: &'static str,
    /// Its base URL.
    pub url: String,
    pub kind: UpstreamKind,
    /// How long the caller waited, when it was the caller's own deadline.
    pub waited: Option<Duration>,
    source: Option<Arc<dyn StdError + Send + Sync + 'static>>,
    /// The message of another service's answer this one relays.
    relayed: Option<String>,
}

impl UpstreamError {
    pub fn new(
        service: &'static str,
        url: impl Into<String>,
        kind: UpstreamKind,
        source: Option<Box<dyn StdError + Send + Sync + 'static>>,
    ) -> Self {
        Self {
            service,
            url: url.into(),
            kind,
            waited: None,
            source: source.map(Arc::from),
            relayed: None,
        }
    }

    /// The service called answered that *its* upstream failed (503/504/502
    /// with `"upstream": "<service>"`): the same error, one hop further.
    /// `None` for any other answer.
    pub fn from_remote(e: &crate::client::RemoteError) -> Option<Self> {
        let kind = match e.code.as_str() {
            "upstream_unavailable" => UpstreamKind::Unreachable,
            "upstream_timeout" => UpstreamKind::Timeout,
            "bad_gateway" => UpstreamKind::Broken,
            _ => return None,
        };
        let service = crate::Service::from_name(e.detail_str("upstream"))
            .map_or(e.service, crate::Service::name);
        Some(Self {
            relayed: Some(e.message.clone()),
            ..Self::new(service, "", kind, Some(Box::new(e.clone())))
        })
    }

    /// The caller's own deadline passed after `waited`.
    pub fn timed_out(service: &'static str, url: impl Into<String>, waited: Duration) -> Self {
        Self {
            waited: Some(waited),
            ..Self::new(service, url, UpstreamKind::Timeout, None)
        }
    }

    /// Classifies a failed `reqwest` call by the error's type: a failed
    /// connect is `Unreachable` (a connect timeout included: nothing
    /// answered), any other timeout is `Timeout`, anything else `Broken`.
    /// A pooled connection the service closed before any answer (hyper's
    /// `is_incomplete_message`: the process went away between requests) is
    /// `Unreachable` too.
    pub fn from_reqwest(service: &'static str, url: impl Into<String>, e: reqwest::Error) -> Self {
        let kind = if e.is_connect() || closed_before_answer(&e) {
            UpstreamKind::Unreachable
        } else if e.is_timeout() {
            UpstreamKind::Timeout
        } else {
            UpstreamKind::Broken
        };
        Self::new(service, url, kind, Some(Box::new(e)))
    }

    /// The first `UpstreamError` in `e`'s source chain (`e` included). Looks
    /// inside `std::io::Error`s too, whose `source()` skips the error they
    /// wrap.
    pub fn find<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a UpstreamError> {
        let mut cur = Some(e);
        let mut depth = 0;
        while let Some(err) = cur {
            if let Some(up) = err.downcast_ref::<UpstreamError>() {
                return Some(up);
            }
            if let Some(inner) = err
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                && let Some(up) = Self::find(inner)
            {
                return Some(up);
            }
            depth += 1;
            if depth > 64 {
                return None;
            }
            cur = err.source();
        }
        None
    }

    pub fn status(&self) -> StatusCode {
        match self.kind {
            UpstreamKind::Unreachable => StatusCode::SERVICE_UNAVAILABLE,
            UpstreamKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            UpstreamKind::Broken => StatusCode::BAD_GATEWAY,
        }
    }

    pub fn code(&self) -> &'static str {
        match self.kind {
            UpstreamKind::Unreachable => "upstream_unavailable",
            UpstreamKind::Timeout => "upstream_timeout",
            UpstreamKind::Broken => "bad_gateway",
        }
    }

    /// The innermost error's text ("Connection refused (os error 111)"):
    /// what a person can act on, without the wrappers above it.
    fn cause(&self) -> Option<String> {
        let mut cur: &(dyn StdError + 'static) = self.source.as_deref()?;
        while let Some(next) = cur.source() {
            cur = next;
        }
        Some(cur.to_string())
    }
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(m) = &self.relayed {
            return f.write_str(m);
        }
        let Self { service, url, .. } = self;
        match (self.kind, self.waited) {
            (UpstreamKind::Unreachable, _) => write!(f, "{service} at {url} is not reachable")?,
            (UpstreamKind::Timeout, Some(w)) => write!(
                f,
                "{service} at {url} did not answer within {} s",
                w.as_secs_f64()
            )?,
            (UpstreamKind::Timeout, None) => {
                write!(f, "{service} at {url} did not answer in time")?
            }
            (UpstreamKind::Broken, _) => write!(f, "{service} at {url} failed")?,
        }
        match self.cause() {
            Some(c) => write!(f, " ({c})"),
            None => Ok(()),
        }
    }
}

impl StdError for UpstreamError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

impl From<&UpstreamError> for ApiError {
    fn from(e: &UpstreamError) -> Self {
        tracing::warn!(upstream = e.service, error = %e, "upstream call failed");
        ApiError::new(e.status(), e.code(), e.to_string()).with_detail("upstream", e.service)
    }
}

impl From<UpstreamError> for ApiError {
    fn from(e: UpstreamError) -> Self {
        ApiError::from(&e)
    }
}

/// Whether hyper says the connection closed before a whole answer came
/// (typed: `hyper::Error::is_incomplete_message`, found in the source chain).
fn closed_before_answer(e: &reqwest::Error) -> bool {
    let mut cur: Option<&(dyn StdError + 'static)> = StdError::source(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            return h.is_incomplete_message();
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn refused_url() -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn a_refused_connection_is_unreachable() {
        let url = refused_url().await;
        let e = reqwest::get(&url).await.unwrap_err();
        let up = UpstreamError::from_reqwest("storaged", &url, e);
        assert_eq!(up.kind, UpstreamKind::Unreachable);
        assert_eq!(up.status(), StatusCode::SERVICE_UNAVAILABLE);
        let msg = up.to_string();
        assert!(msg.starts_with(&format!("storaged at {url} is not reachable (")));
        assert!(!msg.contains("reqwest::Error"), "{msg}");
        let api = ApiError::from(&up);
        assert_eq!(api.code, "upstream_unavailable");
        assert_eq!(api.details["upstream"], "storaged");
    }

    #[tokio::test]
    async fn a_slow_answer_is_a_timeout() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        // Accepts, never answers.
        let _held = tokio::spawn(async move {
            let (_s, _) = l.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let c = reqwest::Client::builder()
            .timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        let e = c.get(&url).send().await.unwrap_err();
        let up = UpstreamError::from_reqwest("catalogd", &url, e);
        assert_eq!(up.kind, UpstreamKind::Timeout);
        assert_eq!(ApiError::from(up).status, StatusCode::GATEWAY_TIMEOUT);
    }

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("storage: {0}")]
        Storage(#[source] Box<dyn StdError + Send + Sync>),
    }

    #[test]
    fn found_through_boxes_and_io_errors() {
        let up = UpstreamError::timed_out("vectord", "http://v:1", Duration::from_secs(3));
        assert_eq!(
            up.to_string(),
            "vectord at http://v:1 did not answer within 3 s"
        );
        // Boxed as a source, then wrapped in an io::Error, then boxed again.
        let io = std::io::Error::other(Outer::Storage(Box::new(up)));
        let outer = Outer::Storage(Box::new(io));
        let found = UpstreamError::find(&outer).expect("found");
        assert_eq!(found.service, "vectord");
        assert_eq!(found.kind, UpstreamKind::Timeout);
        let plain = Outer::Storage("disk full".into());
        assert!(UpstreamError::find(&plain).is_none());
    }
}
