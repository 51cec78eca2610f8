//! The web console, served at `/ui` by `lakehouse serve` (all-in-one) and by
//! the gateway of a split deployment.
//!
//! The console is static files — plain ES modules, CSS and one HTML page,
//! with no build step — embedded in the binary by `build.rs` (gzip copies
//! made at build time), so it works offline and needs nothing but this
//! process. It talks to the same HTTP API as every other client, with the
//! bearer token the person typed in (kept in the browser's `sessionStorage`),
//! so it can do nothing that token cannot.
//!
//! Routes:
//! - `GET /ui` → redirect to `/ui/` (the page uses relative URLs);
//! - `GET /ui/` → the page; `GET /ui/assets/<version>/<path>` → a file;
//!   both open without a token (they hold no data), see
//!   `lakehouse_common::auth::required_role`;
//! - `GET /ui/api/info` → version, mode, the caller's role and the config
//!   with its secrets hidden ([`Info`]); needs `read` like every GET.
//!
//! Every response carries a strict Content-Security-Policy (scripts and
//! styles from this origin only: no inline script, no `eval`), `nosniff`,
//! no framing and no referrer.

mod assets;
mod info;

use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use lakehouse_common::ApiError;

pub use assets::{ASSETS, Asset, VERSION, find};
pub use info::{HIDDEN, Info};

/// The policy on every console response. `form-action 'none'`: the login
/// form is handled by script; if script were off, the browser must not
/// submit the token in a URL.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// Versioned asset URLs change with their content: cache them for a year.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Why the console could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("the console has no file {0:?}")]
    NotFound(String),
    #[error(
        "{path:?} is from another build of the console (this server runs {current}); reload the page"
    )]
    StaleVersion { path: String, current: &'static str },
}

impl From<ConsoleError> for ApiError {
    fn from(e: ConsoleError) -> Self {
        let msg = e.to_string();
        match e {
            ConsoleError::NotFound(_) | ConsoleError::StaleVersion { .. } => {
                ApiError::not_found(msg)
            }
        }
    }
}

/// The console's routes, to merge into a service router.
pub fn router(info: Info) -> Router {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(index))
        .route("/ui/assets/{version}/{*path}", get(asset))
        .route("/ui/api/info", get(info::handler))
        .with_state(Arc::new(info))
        .layer(axum::middleware::map_response(security_headers))
}

async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    resp
}

async fn index(headers: HeaderMap) -> Response {
    let page = find("index.html").expect("build.rs checks index.html exists");
    // Revalidated on every load (cheap: a 304), so a new build shows at once.
    send(page, &headers, "no-cache")
}

async fn asset(
    Path((version, path)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let file = find(&path)
        .filter(|a| a.path != "index.html")
        .ok_or_else(|| ConsoleError::NotFound(path.clone()))?;
    if version != VERSION {
        // Never serve today's bytes under another build's URL: that URL is
        // cached as immutable.
        return Err(ConsoleError::StaleVersion {
            path: format!("{version}/{path}"),
            current: VERSION,
        }
        .into());
    }
    Ok(send(file, &headers, IMMUTABLE))
}

/// The file, gzipped when the client takes it, or 304 when its copy is current.
fn send(a: &'static Asset, req: &HeaderMap, cache: &'static str) -> Response {
    let etag = HeaderValue::from_static(a.etag);
    let mut resp = if etag_matches(req, a.etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        match a.gzip.filter(|_| accepts_gzip(req)) {
            Some(gz) => (
                [
                    (header::CONTENT_TYPE, HeaderValue::from_static(a.mime)),
                    (header::CONTENT_ENCODING, HeaderValue::from_static("gzip")),
                ],
                gz,
            )
                .into_response(),
            None => (
                [(header::CONTENT_TYPE, HeaderValue::from_static(a.mime))],
                a.raw,
            )
                .into_response(),
        }
    };
    let h = resp.headers_mut();
    h.insert(header::ETAG, etag);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if a.gzip.is_some() {
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    resp
}

fn etag_matches(req: &HeaderMap, etag: &str) -> bool {
    req.get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

/// Whether `Accept-Encoding` lists gzip with a non-zero weight.
fn accepts_gzip(req: &HeaderMap) -> bool {
    req.get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|part| {
            let mut it = part.split(';');
            let coding = it.next().unwrap_or("").trim();
            let zero = it.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    == Some(0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !zero
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hm(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip(&hm(&[(
            "accept-encoding",
            "gzip, deflate, br"
        )])));
        assert!(accepts_gzip(&hm(&[(
            "accept-encoding",
            "br;q=1.0, GZIP;q=0.5"
        )])));
        assert!(accepts_gzip(&hm(&[("accept-encoding", "*")])));
        assert!(!accepts_gzip(&hm(&[("accept-encoding", "gzip;q=0")])));
        assert!(!accepts_gzip(&hm(&[("accept-encoding", "identity")])));
        assert!(!accepts_gzip(&hm(&[])));
    }

    #[test]
    fn etag_lists_and_weak_tags() {
        let h = hm(&[("if-none-match", "\"x\", W/\"abc\"")]);
        assert!(etag_matches(&h, "\"abc\""));
        assert!(!etag_matches(&h, "\"abd\""));
        assert!(etag_matches(&hm(&[("if-none-match", "*")]), "\"q\""));
        assert!(!etag_matches(&hm(&[]), "\"q\""));
    }
}
