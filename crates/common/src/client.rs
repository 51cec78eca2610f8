//! The HTTP client every service client (and the gateway) is built on, so
//! timeouts, pooling and the bearer token are set in one place.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, header};

/// How a service client talks to its upstream.
#[derive(Clone, Default)]
pub struct ClientOptions {
    /// Sent as `Authorization: Bearer …` on every request (marked sensitive,
    /// so it never shows in debug output).
    pub token: Option<String>,
    /// Whole-request timeout; `None` for streams of unbounded length.
    pub timeout: Option<Duration>,
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl ClientOptions {
    pub fn with_token(token: Option<String>) -> Self {
        Self {
            token,
            ..Default::default()
        }
    }

    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }
}

/// A pooled client: 10 s connect timeout, 30 s idle connections, no Nagle.
pub fn http_client(opts: &ClientOptions) -> reqwest::Client {
    let mut headers = HeaderMap::new();
    if let Some(t) = &opts.token
        && let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {t}"))
    {
        v.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, v);
    }
    let mut b = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .default_headers(headers);
    if let Some(t) = opts.timeout {
        b = b.timeout(t);
    }
    b.build()
        .expect("a reqwest client with these settings builds")
}
