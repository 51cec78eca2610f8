//! The request id (`x-request-id`) follows a request into the calls a
//! service makes to other services: the server stack keeps the id in a
//! task-local for the handler, and every service client copies it onto its
//! outgoing requests, so one id shows in every daemon's log. (Work handed to
//! other tasks or threads — query execution, ingest pipelines — starts fresh.)

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderName, HeaderValue};

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static CURRENT: HeaderValue;
}

/// Middleware: runs the rest of the request with its id in scope.
pub async fn scope(req: Request, next: Next) -> Response {
    match req.headers().get(&HEADER).cloned() {
        Some(id) => CURRENT.scope(id, next.run(req)).await,
        None => next.run(req).await,
    }
}

/// The id of the request this task is serving, if any.
pub fn current() -> Option<HeaderValue> {
    CURRENT.try_with(HeaderValue::clone).ok()
}

/// `fut` with the current request id (if any) in scope: for work spawned
/// on another task on behalf of a request.
pub fn carry<F: std::future::Future>(fut: F) -> impl std::future::Future<Output = F::Output> {
    let id = current();
    async move {
        match id {
            Some(id) => CURRENT.scope(id, fut).await,
            None => fut.await,
        }
    }
}

/// `fut` with `id` as the current request id.
pub async fn with_id<F: std::future::Future>(id: HeaderValue, fut: F) -> F::Output {
    CURRENT.scope(id, fut).await
}

/// Adds the current request id to an outgoing request.
pub fn propagate(rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    match current() {
        Some(id) => rb.header(HEADER, id),
        None => rb,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn current_is_scoped() {
        assert!(current().is_none());
        let id = HeaderValue::from_static("abc");
        CURRENT
            .scope(id.clone(), async {
                assert_eq!(current(), Some(id.clone()));
                let req = propagate(reqwest::Client::new().get("http://127.0.0.1:1/"))
                    .build()
                    .unwrap();
                assert_eq!(req.headers().get(&HEADER), Some(&id));
            })
            .await;
        assert!(current().is_none());
    }
}
