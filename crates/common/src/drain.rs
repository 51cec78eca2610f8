//! A refused request's unread body is read and dropped before the answer.
//!
//! A handler that refuses a request early — a body over its limit, a bad
//! header — answers without reading the body, and the server then closes
//! the connection with the body still arriving. A client that is still
//! sending (the gateway forwarding a 6 MiB statement, `curl --data-binary`)
//! gets a broken pipe instead of the 413 that was sent: through the gateway
//! that was a 502. [`tap`] keeps hold of a request body its handler dropped
//! unfinished, and when the answer is an error it reads the rest — at most
//! [`DRAIN_MAX`] bytes within [`DRAIN_TIME`] — so the client sees the answer.
//! Bodies declared larger than that are not waited for.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use http::header;
use http_body::{Frame, SizeHint};
use parking_lot::Mutex;

/// Most bytes read from a refused request's body.
pub const DRAIN_MAX: u64 = 64 << 20;
/// Longest wait for a refused request's body.
pub const DRAIN_TIME: Duration = Duration::from_secs(5);

type Slot = Arc<Mutex<Option<Body>>>;

/// A request body that, dropped unfinished, leaves itself in the slot.
struct Tap {
    inner: Option<Body>,
    slot: Slot,
}

impl http_body::Body for Tap {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        match this.inner.as_mut() {
            Some(b) => Pin::new(b).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map(http_body::Body::size_hint)
            .unwrap_or_default()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        if let Some(b) = self.inner.take()
            && !http_body::Body::is_end_stream(&b)
        {
            *self.slot.lock() = Some(b);
        }
    }
}

/// Middleware: drains what an error answer left unread (see the module doc).
pub async fn tap(req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_MAX) || declared == Some(0) {
        return next.run(req).await;
    }
    let slot: Slot = Arc::default();
    let req = req.map(|b| {
        Body::new(Tap {
            inner: Some(b),
            slot: slot.clone(),
        })
    });
    let resp = next.run(req).await;
    let status = resp.status();
    if status.is_client_error() || status.is_server_error() {
        let left = slot.lock().take();
        if let Some(body) = left {
            drain(body).await;
        }
    }
    resp
}

async fn drain(body: Body) {
    let read = async {
        let mut stream = body.into_data_stream();
        let mut total = 0u64;
        while let Some(Ok(chunk)) = stream.next().await {
            total += chunk.len() as u64;
            if total > DRAIN_MAX {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, read).await;
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::extract::DefaultBodyLimit;
    use axum::routing::post;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A client that writes a whole over-limit body before reading gets the
    /// 413, not a reset connection.
    #[tokio::test]
    async fn an_over_limit_body_is_read_before_the_413() {
        let app = Router::new()
            .route("/x", post(|_b: bytes::Bytes| async { "ok" }))
            .layer(DefaultBodyLimit::max(1024))
            .layer(axum::middleware::from_fn(super::tap));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let body = vec![b'a'; 6 << 20];
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /x HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&body)
            .await
            .expect("the server read the whole body");
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    }
}
