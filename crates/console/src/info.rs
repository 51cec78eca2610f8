//! `GET /ui/api/info`: what the Status page shows about this process — the
//! version, how it runs (all-in-one or the gateway of a split deployment),
//! who the caller is, and the effective configuration with every secret
//! hidden.
//!
//! Hiding is by construction, not by hoping: a value is replaced by
//! [`HIDDEN`] when its key names a secret (`token`, `secret`, `password`,
//! `credential`, `private`, `…_key`, `access_key…`) — whatever its shape —
//! and afterwards any string that still contains one of the configured
//! tokens, or a password in a URL, is hidden too. Token entries keep only
//! their name and role.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use lakehouse_common::auth::Principal;
use serde_json::{Value, json};

/// What a hidden value is replaced by.
pub const HIDDEN: &str = "<hidden>";

/// The process description served to the console; built once at start-up.
#[derive(Debug, Clone)]
pub struct Info {
    mode: String,
    services: Vec<String>,
    auth: bool,
    config: Value,
}

impl Info {
    /// `mode` is `all-in-one` or `gateway`; `services` what this process
    /// runs or fronts; `config` the effective configuration, serialized
    /// (secrets are hidden here, before anything is kept).
    pub fn new(mode: &str, services: &[&str], config: Value) -> Self {
        let auth = config
            .pointer("/auth/tokens")
            .and_then(Value::as_array)
            .is_some_and(|t| !t.is_empty());
        Self {
            mode: mode.to_string(),
            services: services.iter().map(|s| s.to_string()).collect(),
            auth,
            config: redact(config),
        }
    }

    /// The JSON body for a caller (`None` when auth is off).
    pub fn body(&self, caller: Option<&Principal>) -> Value {
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "console": crate::VERSION,
            "mode": self.mode,
            "services": self.services,
            "auth": self.auth,
            "caller": caller.map(|p| json!({"name": p.name, "role": p.role.as_str()})),
            "config": self.config,
        })
    }
}

pub(crate) async fn handler(
    State(info): State<Arc<Info>>,
    caller: Option<axum::Extension<Principal>>,
) -> impl IntoResponse {
    (
        [(http::header::CACHE_CONTROL, "no-store")],
        Json(info.body(caller.as_ref().map(|c| &c.0))),
    )
}

/// The configuration with every secret replaced by [`HIDDEN`].
pub fn redact(mut config: Value) -> Value {
    let mut known = Vec::new();
    collect_secrets(&config, false, &mut known);
    // Token entries: name and role stay (they show in 403 messages anyway).
    if let Some(tokens) = config
        .pointer_mut("/auth/tokens")
        .and_then(Value::as_array_mut)
    {
        for t in tokens.iter_mut() {
            let keep = |k: &str| t.get(k).cloned().unwrap_or(Value::Null);
            *t = json!({"name": keep("name"), "role": keep("role"), "token": HIDDEN});
        }
    }
    hide_secret_keys(&mut config);
    hide_leftovers(&mut config, &known);
    config
}

fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "token",
        "secret",
        "password",
        "passwd",
        "credential",
        "private",
        "access_key",
    ]
    .iter()
    .any(|w| k.contains(w))
        || k.ends_with("_key")
        || k == "key"
}

/// Every non-empty string whose key names a secret (directly, or through a
/// list): hidden wherever else it shows. A token entry's `name` and `role`
/// are not secrets — their own keys decide.
fn collect_secrets(v: &Value, secret: bool, out: &mut Vec<String>) {
    match v {
        Value::String(s) if secret && !s.is_empty() => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| collect_secrets(x, secret, out)),
        Value::Object(m) => m
            .iter()
            .for_each(|(k, x)| collect_secrets(x, is_secret_key(k), out)),
        _ => {}
    }
}

fn hide_secret_keys(v: &mut Value) {
    match v {
        Value::Array(a) => a.iter_mut().for_each(hide_secret_keys),
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == "tokens" && x.is_array() {
                    // Already reduced to name, role and a hidden token.
                    continue;
                }
                if is_secret_key(k) && !x.is_null() {
                    *x = Value::String(HIDDEN.to_string());
                } else {
                    hide_secret_keys(x);
                }
            }
        }
        _ => {}
    }
}

fn hide_leftovers(v: &mut Value, known: &[String]) {
    match v {
        Value::String(s) => {
            if known.iter().any(|k| s.contains(k.as_str())) {
                *s = HIDDEN.to_string();
            } else if let Some(clean) = strip_url_password(s) {
                *s = clean;
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| hide_leftovers(x, known)),
        Value::Object(m) => m.values_mut().for_each(|x| hide_leftovers(x, known)),
        _ => {}
    }
}

/// `scheme://user:pass@host/…` → `scheme://user:<hidden>@host/…`.
fn strip_url_password(s: &str) -> Option<String> {
    let start = s.find("://")? + 3;
    let authority_end = s[start..]
        .find(['/', '?', '#'])
        .map_or(s.len(), |i| start + i);
    let at = s[start..authority_end].rfind('@')? + start;
    let colon = s[start..at].find(':')? + start;
    Some(format!("{}{HIDDEN}{}", &s[..=colon], &s[at..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Value {
        json!({
            "server": {"bind": "127.0.0.1:8080", "data_dir": "/srv/lake"},
            "storaged": {
                "backend": "s3", "bucket": "lake",
                "endpoint": "http://minio:9000",
                "access_key_id": "AKIAEXAMPLE",
                "secret_access_key": "wJalrEXAMPLEKEY",
                "session_token": null,
            },
            "gateway": {"queryd_url": "http://svc:pa55word-in-url@queryd:8084/x"},
            "ingestd": {"catalogd_url": "http://ops-admin-token-0123456789@catalogd:8082"},
            "auth": {
                "tokens": [
                    {"name": "ci-reader", "token": "reader-token-0123456789", "role": "read"},
                    {"name": "ops", "token_sha256": "ab".repeat(32), "role": "admin"},
                ],
                "service_token": "ops-admin-token-0123456789",
                "allow_public_without_auth": false,
            },
        })
    }

    #[test]
    fn hides_every_secret_and_keeps_the_rest() {
        let info = Info::new("all-in-one", &["storaged"], sample());
        let body = info.body(None);
        let text = body.to_string();
        for secret in [
            "AKIAEXAMPLE",
            "wJalrEXAMPLEKEY",
            "reader-token-0123456789",
            "ops-admin-token-0123456789",
            "pa55word-in-url",
            &"ab".repeat(32),
        ] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        let c = &body["config"];
        assert_eq!(c["storaged"]["secret_access_key"], HIDDEN);
        assert_eq!(c["storaged"]["access_key_id"], HIDDEN);
        assert_eq!(
            c["storaged"]["session_token"],
            Value::Null,
            "unset stays unset"
        );
        assert_eq!(c["storaged"]["endpoint"], "http://minio:9000");
        assert_eq!(c["server"]["data_dir"], "/srv/lake");
        assert_eq!(c["auth"]["service_token"], HIDDEN);
        assert_eq!(
            c["gateway"]["queryd_url"],
            format!("http://svc:{HIDDEN}@queryd:8084/x")
        );
        // A token pasted where no key says "secret" is still found.
        assert_eq!(c["ingestd"]["catalogd_url"], HIDDEN);
        assert_eq!(
            c["auth"]["tokens"],
            json!([
                {"name": "ci-reader", "role": "read", "token": HIDDEN},
                {"name": "ops", "role": "admin", "token": HIDDEN},
            ])
        );
        assert_eq!(body["auth"], true);
        assert_eq!(body["mode"], "all-in-one");
    }

    #[test]
    fn secret_keys_hide_whole_values() {
        let v =
            redact(json!({"credentials": {"user": "u", "pass": "p"}, "x": [{"private_key": 7}]}));
        assert_eq!(
            v,
            json!({"credentials": HIDDEN, "x": [{"private_key": HIDDEN}]})
        );
    }

    #[test]
    fn url_passwords() {
        assert_eq!(
            strip_url_password("s3://k:s@h/p").as_deref(),
            Some("s3://k:<hidden>@h/p")
        );
        assert_eq!(strip_url_password("http://h:80/a@b"), None);
        assert_eq!(strip_url_password("http://user@h"), None);
        assert_eq!(strip_url_password("plain"), None);
    }

    #[test]
    fn caller_is_shown() {
        let info = Info::new("gateway", &[], json!({"auth": {"tokens": []}}));
        let p = Principal {
            name: "ci".into(),
            role: lakehouse_common::Role::Read,
        };
        let b = info.body(Some(&p));
        assert_eq!(b["caller"], json!({"name": "ci", "role": "read"}));
        assert_eq!(b["auth"], false);
    }
}
