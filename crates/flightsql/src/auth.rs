//! Credentials on a Flight call: the same tokens and roles as HTTP.
//!
//! A call carries `authorization: Bearer <token>`, or `Basic` credentials
//! whose password is the token (the user name is ignored: the token names
//! its holder). The handshake answers Basic credentials with the bearer
//! header clients then send on every call.

use base64::Engine;
use lakehouse_common::auth::{Authenticator, Principal, Role};
use tonic::metadata::MetadataMap;

use crate::error::FlightError;

/// The token presented in `metadata`, if any.
pub fn presented_token(metadata: &MetadataMap) -> Result<Option<String>, FlightError> {
    let Some(value) = metadata.get("authorization") else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| {
        FlightError::Unauthenticated("the authorization header is not ASCII".to_string())
    })?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Some(rest.trim().to_string()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                FlightError::Unauthenticated("the Basic credentials are not valid base64".into())
            })?;
        let password = decoded.split_once(':').map_or("", |(_, p)| p);
        return Ok(Some(password.to_string()));
    }
    Err(FlightError::Unauthenticated(format!(
        "unsupported authorization scheme {scheme:?}: send `Bearer <token>` or Basic credentials with the token as the password"
    )))
}

/// Checks the call's token against `needed`; `None` auth means auth is off.
pub fn authorize(
    auth: Option<&Authenticator>,
    metadata: &MetadataMap,
    needed: Role,
    what: &str,
) -> Result<Option<Principal>, FlightError> {
    let Some(auth) = auth else {
        return Ok(None);
    };
    let Some(token) = presented_token(metadata)? else {
        return Err(FlightError::Unauthenticated(
            "this server needs a token: send `authorization: Bearer <token>`, or Basic credentials with the token as the password"
                .to_string(),
        ));
    };
    let Some(who) = auth.authenticate(&token) else {
        return Err(FlightError::Unauthenticated(
            "the token is not valid".to_string(),
        ));
    };
    if who.role < needed {
        tracing::info!(token_name = %who.name, role = %who.role, %needed, "forbidden");
        return Err(FlightError::Forbidden(format!(
            "token {:?} has role {}; {what} needs {needed}",
            who.name, who.role
        )));
    }
    Ok(Some(who))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lakehouse_common::auth::{AuthConfig, TokenConfig};

    fn auth() -> Authenticator {
        let cfg = AuthConfig {
            tokens: vec![TokenConfig {
                name: "r".into(),
                token: Some("reader-token-0123456789".into()),
                token_sha256: None,
                role: Role::Read,
            }],
            ..Default::default()
        };
        Authenticator::from_config(&cfg).unwrap().unwrap()
    }

    fn md(v: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", v.parse().unwrap());
        m
    }

    #[test]
    fn bearer_and_basic() {
        let a = auth();
        let ok = authorize(
            Some(&a),
            &md("Bearer reader-token-0123456789"),
            Role::Read,
            "x",
        );
        assert_eq!(ok.unwrap().unwrap().name, "r");
        let basic =
            base64::engine::general_purpose::STANDARD.encode("anyone:reader-token-0123456789");
        let ok = authorize(Some(&a), &md(&format!("Basic {basic}")), Role::Read, "x");
        assert!(ok.unwrap().is_some());
        assert!(matches!(
            authorize(
                Some(&a),
                &md("Bearer wrong-token-0123456789"),
                Role::Read,
                "x"
            ),
            Err(FlightError::Unauthenticated(_))
        ));
        assert!(matches!(
            authorize(Some(&a), &MetadataMap::new(), Role::Read, "x"),
            Err(FlightError::Unauthenticated(_))
        ));
        assert!(matches!(
            authorize(
                Some(&a),
                &md("Bearer reader-token-0123456789"),
                Role::Write,
                "x"
            ),
            Err(FlightError::Forbidden(_))
        ));
        assert!(
            authorize(None, &MetadataMap::new(), Role::Admin, "x")
                .unwrap()
                .is_none()
        );
    }
}
