//! Bearer-token auth with three roles, applied in front of every route.
//!
//! Tokens come from the config (`[[auth.tokens]]`, plaintext `token` or its
//! `token_sha256`). Only SHA-256 digests are kept in memory; a presented token
//! is hashed and compared against *every* stored digest in constant time, so
//! neither timing nor early exit tells an attacker how close a guess was.
//! Tokens never reach logs: [`TokenConfig`]'s `Debug` redacts them and the
//! request span records only method, path and request id.
//!
//! What each route needs is decided by [`required_role`], from the method and
//! the route prefix every service shares (DESIGN.md §1): reads are `read`,
//! creating data is `write`, deleting and raw storage writes are `admin`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

use crate::Service;
use crate::error::ApiError;

/// What a token may do. Ordered: `Read < Write < Admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// GET, list, SQL, vector search, `/ready`, `/metrics`.
    Read,
    /// Plus ingest, catalog register, vector index create and add.
    Write,
    /// Plus every delete and raw storage writes.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = AuthConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Role::Read),
            "write" => Ok(Role::Write),
            "admin" => Ok(Role::Admin),
            other => Err(AuthConfigError::BadRole(other.to_string())),
        }
    }
}

/// One `[[auth.tokens]]` entry.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it (shown in 403 messages and logs; never the token).
    pub name: String,
    /// The token itself…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// …or its SHA-256, hex, so the config file holds no secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
    pub role: Role,
}

impl std::fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConfig")
            .field("name", &self.name)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field(
                "token_sha256",
                &self.token_sha256.as_ref().map(|_| "<redacted>"),
            )
            .field("role", &self.role)
            .finish()
    }
}

/// `[auth]` in `lakehouse.toml`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The accepted tokens. Empty = no auth, and then the server refuses to
    /// bind anything but loopback unless `allow_public_without_auth` is set.
    /// From the environment: `LAKEHOUSE__AUTH__TOKENS="name:role:token,…"`.
    #[serde(deserialize_with = "tokens_from_list_or_string")]
    pub tokens: Vec<TokenConfig>,
    /// The token this process presents to the other services (split
    /// deployment). Defaults to the first admin token given in plaintext.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_token: Option<String>,
    /// Serve a non-loopback address with no tokens configured.
    pub allow_public_without_auth: bool,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("tokens", &self.tokens)
            .field(
                "service_token",
                &self.service_token.as_ref().map(|_| "<redacted>"),
            )
            .field("allow_public_without_auth", &self.allow_public_without_auth)
            .finish()
    }
}

impl AuthConfig {
    /// The token this process sends to its upstreams, if any.
    pub fn outgoing_token(&self) -> Option<String> {
        self.service_token.clone().or_else(|| {
            self.tokens
                .iter()
                .find(|t| t.role == Role::Admin && t.token.is_some())
                .and_then(|t| t.token.clone())
        })
    }
}

/// Accepts the TOML list of tables, or the env form `name:role:token,…`.
fn tokens_from_list_or_string<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<TokenConfig>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        List(Vec<TokenConfig>),
        Text(String),
    }
    match Form::deserialize(d)? {
        Form::List(v) => Ok(v),
        Form::Text(s) => parse_token_list(&s).map_err(serde::de::Error::custom),
    }
}

/// Parses `name:role:token[,name:role:token…]` (the token may contain `:`).
pub fn parse_token_list(s: &str) -> Result<Vec<TokenConfig>, AuthConfigError> {
    s.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let mut parts = entry.splitn(3, ':');
            let (Some(name), Some(role), Some(token)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(AuthConfigError::BadEntry(
                    entry.split(':').next().unwrap_or_default().to_string(),
                ));
            };
            Ok(TokenConfig {
                name: name.to_string(),
                token: Some(token.to_string()),
                token_sha256: None,
                role: role.parse()?,
            })
        })
        .collect()
}

/// A token configuration that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthConfigError {
    #[error("unknown role {0:?} (expected read, write or admin)")]
    BadRole(String),
    #[error("token entry {0:?} is not name:role:token")]
    BadEntry(String),
    #[error("token {0:?} needs exactly one of `token` or `token_sha256`")]
    TokenOrHash(String),
    #[error("token {0:?}: token_sha256 must be 64 hex digits")]
    BadHash(String),
    #[error("token {0:?}: a token must be at least 16 characters")]
    TooShort(String),
    #[error("two tokens are named {0:?}")]
    DuplicateName(String),
}

struct Entry {
    name: String,
    role: Role,
    digest: [u8; 32],
}

/// Who a request is, once its token checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

/// The configured tokens, as digests.
pub struct Authenticator {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("tokens", &self.entries.len())
            .finish()
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Equal without an early exit: the time depends only on the length (fixed).
fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

impl Authenticator {
    /// `None` when no tokens are configured (auth off).
    pub fn from_config(cfg: &AuthConfig) -> Result<Option<Self>, AuthConfigError> {
        if cfg.tokens.is_empty() {
            return Ok(None);
        }
        let mut entries: Vec<Entry> = Vec::with_capacity(cfg.tokens.len());
        for t in &cfg.tokens {
            if entries.iter().any(|e| e.name == t.name) {
                return Err(AuthConfigError::DuplicateName(t.name.clone()));
            }
            let digest = match (&t.token, &t.token_sha256) {
                (Some(tok), None) => {
                    if tok.chars().count() < 16 {
                        return Err(AuthConfigError::TooShort(t.name.clone()));
                    }
                    sha256(tok.as_bytes())
                }
                (None, Some(hex)) => {
                    parse_hex32(hex).ok_or_else(|| AuthConfigError::BadHash(t.name.clone()))?
                }
                _ => return Err(AuthConfigError::TokenOrHash(t.name.clone())),
            };
            entries.push(Entry {
                name: t.name.clone(),
                role: t.role,
                digest,
            });
        }
        Ok(Some(Self { entries }))
    }

    /// The holder of `token`, checking every entry whatever matches.
    pub fn authenticate(&self, token: &str) -> Option<Principal> {
        let presented = sha256(token.as_bytes());
        let mut found: Option<&Entry> = None;
        for e in &self.entries {
            if ct_eq(&presented, &e.digest) && found.is_none() {
                found = Some(e);
            }
        }
        found.map(|e| Principal {
            name: e.name.clone(),
            role: e.role,
        })
    }
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let hi = (chunk[0] as char).to_digit(16)?;
        let lo = (chunk[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// The role a request needs; `None` for the open routes: `/health` and the
/// console's static files (`GET /ui`, `/ui/`, `/ui/assets/…`), which hold no
/// data and must load before anyone has typed a token in.
///
/// Route classes (every service's prefixes are fixed by DESIGN.md §1):
/// - `read`: any GET/HEAD (objects, listings, manifests, indexes, `/ready`,
///   `/metrics`), `POST /query/sql`, `POST /vectors/indexes/{name}/search`;
/// - `write`: `POST /ingest/…`, `POST /catalog/register`, `POST /catalog/compact/…`,
///   `POST /catalog/sync/…`,
///   `POST /vectors/indexes` (create), `POST /vectors/indexes/{name}/add`,
///   `POST /vectors/indexes/{name}/sync` (catch up with the dataset it follows);
/// - `admin`: everything else — every DELETE, `PUT /storage/objects/…`, and
///   any route not listed (new routes are admin until classified).
pub fn required_role(method: &Method, path: &str) -> Option<Role> {
    if path == "/health" {
        return None;
    }
    let console_file = path == "/ui" || path == "/ui/" || path.starts_with("/ui/assets/");
    if console_file && (method == Method::GET || method == Method::HEAD) {
        return None;
    }
    if method == Method::GET || method == Method::HEAD {
        return Some(Role::Read);
    }
    if method == Method::POST {
        // By the service owning the route (the one service table), then
        // by the route.
        let rest = |s: Service| path.strip_prefix(s.prefix()).unwrap_or_default();
        match Service::of_path(path) {
            Some(s @ Service::Queryd) if !rest(s).is_empty() => return Some(Role::Read),
            Some(s @ Service::Ingestd) if !rest(s).is_empty() => return Some(Role::Write),
            Some(s @ Service::Catalogd) if rest(s) == "/register" => return Some(Role::Write),
            // Compaction rewrites files with the same rows: a writer's job.
            Some(s @ Service::Catalogd) if rest(s).starts_with("/compact/") => {
                return Some(Role::Write);
            }
            // Records a version a SQL statement committed (queryd calls it).
            Some(s @ Service::Catalogd) if rest(s).starts_with("/sync/") => {
                return Some(Role::Write);
            }
            Some(s @ Service::Vectord) => match rest(s).strip_prefix("/indexes") {
                Some("") => return Some(Role::Write),
                Some(r) => match r.strip_prefix('/') {
                    Some(n) if n.ends_with("/search") => return Some(Role::Read),
                    Some(n) if n.ends_with("/add") => return Some(Role::Write),
                    Some(n) if n.ends_with("/sync") => return Some(Role::Write),
                    _ => {}
                },
                None => {}
            },
            _ => {}
        }
    }
    Some(Role::Admin)
}

/// The middleware: 401 without a valid bearer token, 403 when its role is too
/// small. Runs before routing, so unknown routes need a token too.
/// The caller ([`Principal`]) is left in the request's extensions for handlers.
pub async fn require(
    State(auth): State<Arc<Authenticator>>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(needed) = required_role(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    let Some(token) = presented else {
        return unauthorized(
            "this server needs a bearer token: send `Authorization: Bearer <token>`",
        );
    };
    let Some(who) = auth.authenticate(token) else {
        return unauthorized("the bearer token is not valid");
    };
    if who.role < needed {
        tracing::info!(token_name = %who.name, role = %who.role, needed = %needed, "forbidden");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "token {:?} has role {}; {} {} needs {}",
                who.name,
                who.role,
                req.method(),
                req.uri().path(),
                needed
            ),
        )
        .with_detail("required_role", needed.as_str())
        .with_detail("role", who.role.as_str())
        .into_response();
    }
    req.extensions_mut().insert(who);
    next.run(req).await
}

fn unauthorized(message: &str) -> Response {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
        .with_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"lakehouse\""),
        )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(tokens: &[(&str, &str, Role)]) -> AuthConfig {
        AuthConfig {
            tokens: tokens
                .iter()
                .map(|(n, t, r)| TokenConfig {
                    name: n.to_string(),
                    token: Some(t.to_string()),
                    token_sha256: None,
                    role: *r,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn route_classes() {
        use Role::*;
        let table: &[(&str, &str, Option<Role>)] = &[
            ("GET", "/health", None),
            ("GET", "/ready", Some(Read)),
            ("GET", "/metrics", Some(Read)),
            ("GET", "/storage/objects/a/b", Some(Read)),
            ("HEAD", "/storage/objects/a/b", Some(Read)),
            ("GET", "/storage/list", Some(Read)),
            ("PUT", "/storage/objects/a", Some(Admin)),
            ("DELETE", "/storage/objects/a", Some(Admin)),
            ("GET", "/catalog/list", Some(Read)),
            ("GET", "/catalog/manifest/x", Some(Read)),
            ("POST", "/catalog/register", Some(Write)),
            ("POST", "/catalog/compact/sales", Some(Write)),
            ("POST", "/catalog/compact/a/b", Some(Write)),
            ("POST", "/catalog/restore/sales", Some(Admin)),
            ("GET", "/catalog/history/sales", Some(Read)),
            ("DELETE", "/catalog/manifest/x", Some(Admin)),
            ("POST", "/ingest/x", Some(Write)),
            ("POST", "/query/sql", Some(Read)),
            ("GET", "/vectors/indexes", Some(Read)),
            ("POST", "/vectors/indexes", Some(Write)),
            ("GET", "/vectors/indexes/v", Some(Read)),
            ("POST", "/vectors/indexes/v/add", Some(Write)),
            ("POST", "/vectors/indexes/v/sync", Some(Write)),
            ("POST", "/vectors/indexes/v/search", Some(Read)),
            ("DELETE", "/vectors/indexes/v/items/1", Some(Admin)),
            ("DELETE", "/vectors/indexes/v", Some(Admin)),
            ("POST", "/somewhere/new", Some(Admin)),
            ("PATCH", "/catalog/register", Some(Admin)),
            // The console's files are open; its API and anything else under /ui are not.
            ("GET", "/ui", None),
            ("GET", "/ui/", None),
            ("HEAD", "/ui/assets/abc/js/app.js", None),
            ("GET", "/ui/assets/abc/app.css", None),
            ("GET", "/ui/api/info", Some(Read)),
            ("GET", "/ui/other", Some(Read)),
            ("GET", "/uix", Some(Read)),
            ("POST", "/ui/assets/abc/app.css", Some(Admin)),
            ("DELETE", "/ui/", Some(Admin)),
        ];
        for (m, p, want) in table {
            let m: Method = m.parse().unwrap();
            assert_eq!(required_role(&m, p), *want, "{m} {p}");
        }
    }

    #[test]
    fn authenticates_plain_and_hashed_tokens() {
        let mut c = cfg(&[("r", "reader-token-0123456789", Role::Read)]);
        c.tokens.push(TokenConfig {
            name: "a".into(),
            token: None,
            token_sha256: Some(
                sha256(b"admin-token-0123456789")
                    .iter()
                    .map(|b| format!("{b:02X}"))
                    .collect(),
            ),
            role: Role::Admin,
        });
        let auth = Authenticator::from_config(&c).unwrap().unwrap();
        assert_eq!(
            auth.authenticate("reader-token-0123456789").unwrap().role,
            Role::Read
        );
        let a = auth.authenticate("admin-token-0123456789").unwrap();
        assert_eq!((a.name.as_str(), a.role), ("a", Role::Admin));
        assert!(auth.authenticate("reader-token-012345678").is_none());
        assert!(auth.authenticate("").is_none());
    }

    #[test]
    fn config_errors() {
        assert!(
            Authenticator::from_config(&AuthConfig::default())
                .unwrap()
                .is_none()
        );
        let short = cfg(&[("s", "short", Role::Read)]);
        assert_eq!(
            Authenticator::from_config(&short).unwrap_err(),
            AuthConfigError::TooShort("s".into())
        );
        let dup = cfg(&[
            ("d", "0123456789abcdefX", Role::Read),
            ("d", "0123456789abcdefY", Role::Read),
        ]);
        assert!(matches!(
            Authenticator::from_config(&dup),
            Err(AuthConfigError::DuplicateName(_))
        ));
        let mut both = cfg(&[("b", "0123456789abcdefX", Role::Read)]);
        both.tokens[0].token_sha256 = Some("00".repeat(32));
        assert!(matches!(
            Authenticator::from_config(&both),
            Err(AuthConfigError::TokenOrHash(_))
        ));
        let mut bad_hash = cfg(&[("h", "x", Role::Read)]);
        bad_hash.tokens[0].token = None;
        bad_hash.tokens[0].token_sha256 = Some("zz".repeat(32));
        assert!(matches!(
            Authenticator::from_config(&bad_hash),
            Err(AuthConfigError::BadHash(_))
        ));
    }

    #[test]
    fn env_token_list() {
        let v = parse_token_list("ci:read:abc:def, ops:admin:xyz").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].token.as_deref(), Some("abc:def"));
        assert_eq!(v[1].role, Role::Admin);
        assert!(matches!(
            parse_token_list("x:root:t"),
            Err(AuthConfigError::BadRole(_))
        ));
        assert!(matches!(
            parse_token_list("x:read"),
            Err(AuthConfigError::BadEntry(_))
        ));
    }

    #[test]
    fn debug_never_shows_tokens() {
        let mut c = cfg(&[("n", "super-secret-token-value", Role::Admin)]);
        c.service_token = Some("another-secret-value".into());
        let s = format!("{c:?}");
        assert!(
            !s.contains("super-secret") && !s.contains("another-secret"),
            "{s}"
        );
    }

    #[test]
    fn outgoing_token_defaults_to_first_plain_admin() {
        let c = cfg(&[
            ("r", "reader-token-0123456789", Role::Read),
            ("a", "admin-token-0123456789", Role::Admin),
        ]);
        assert_eq!(
            c.outgoing_token().as_deref(),
            Some("admin-token-0123456789")
        );
        let mut c2 = c.clone();
        c2.service_token = Some("explicit".into());
        assert_eq!(c2.outgoing_token().as_deref(), Some("explicit"));
    }
}
