//! Building an outgoing federation request (spec: server-server API,
//! "Request Authentication"): the destination must be a valid server name,
//! the target a plain `/_matrix/…` request target, the body a JSON object;
//! the `Authorization: X-Matrix …` header signs method, target, origin,
//! destination and body. The destination is the server *name*, never the
//! host discovery resolved it to.

use serde_json::Value;

use super::server_name::{ServerName, ServerNameError};
use crate::canonical_json::object_to_canonical_string;
use crate::http::xmatrix::{request_signing_object, XMatrix};
use crate::signing::ServerSigningKey;

/// Why a request cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The destination is not a valid server name.
    #[error("invalid destination server name: {0}")]
    InvalidServerName(#[from] ServerNameError),
    /// The target is not `/_matrix/…` of visible ASCII without a fragment.
    #[error("invalid request target {0:?}")]
    InvalidTarget(String),
    /// The method is not one federation uses.
    #[error("invalid method {0:?}")]
    InvalidMethod(String),
    /// The body is not a JSON object (text).
    #[error("request body must be a JSON object: {0}")]
    InvalidBody(String),
}

/// A checked, signed request, ready for the transport.
#[derive(Clone, Debug, PartialEq)]
pub struct PreparedRequest {
    /// The destination server name.
    pub destination: ServerName,
    /// `GET`, `PUT`, `POST` or `DELETE`.
    pub method: String,
    /// The request target (path and query).
    pub target: String,
    /// The body as sent (compact JSON), if any.
    pub body: Option<String>,
    /// The `Authorization` header, if signed.
    pub authorization: Option<String>,
}

/// Checks a request target: starts with `/_matrix/` or `/.well-known/`,
/// visible ASCII only (no spaces or controls: the path is sent and signed
/// byte for byte), no fragment, no `..` path segment.
pub fn check_target(target: &str) -> Result<(), RequestError> {
    let bad = || RequestError::InvalidTarget(target.chars().take(200).collect());
    if !(target.starts_with("/_matrix/") || target.starts_with("/.well-known/")) {
        return Err(bad());
    }
    if !target.bytes().all(|b| (0x21..0x7f).contains(&b)) || target.contains('#') || target.contains('\\') {
        return Err(bad());
    }
    let path = target.split('?').next().unwrap_or("");
    if path
        .split('/')
        .any(|seg| seg == ".." || seg == "." || seg.eq_ignore_ascii_case("%2e%2e") || seg.eq_ignore_ascii_case("%2e"))
    {
        return Err(bad());
    }
    Ok(())
}

/// Builds a request to `destination`, signed as `key`'s server unless
/// `signed` is false.
pub fn prepare_request(
    key: &ServerSigningKey,
    destination: &str,
    method: &str,
    target: &str,
    body: Option<&str>,
    signed: bool,
) -> Result<PreparedRequest, RequestError> {
    let destination = ServerName::parse(destination)?;
    if !matches!(method, "GET" | "PUT" | "POST" | "DELETE") {
        return Err(RequestError::InvalidMethod(method.chars().take(20).collect()));
    }
    check_target(target)?;
    let content = match body {
        None => None,
        Some(text) => {
            let v: Value = serde_json::from_str(text).map_err(|e| RequestError::InvalidBody(e.to_string()))?;
            if !v.is_object() {
                return Err(RequestError::InvalidBody("not an object".into()));
            }
            Some(v)
        }
    };
    let body = content.as_ref().map(|v| serde_json::to_string(v).expect("a Value serializes"));
    let authorization = signed.then(|| {
        let object = request_signing_object(method, target, &key.server_name, destination.as_str(), content.as_ref());
        let sig = key.sign_bytes(object_to_canonical_string(&object).as_bytes());
        XMatrix {
            origin: key.server_name.clone(),
            destination: Some(destination.as_str().to_owned()),
            key: key.key_id.clone(),
            sig,
        }
        .to_header()
    });
    Ok(PreparedRequest { destination, method: method.to_owned(), target: target.to_owned(), body, authorization })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::keys::KeyRing;
    use crate::http::xmatrix::authenticate_request;

    fn key() -> ServerSigningKey {
        ServerSigningKey::from_seed_b64("origin.example", "ed25519:1", "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1")
            .unwrap()
    }

    #[test]
    fn signed_requests_authenticate_at_the_destination() {
        let k = key();
        let target = "/_matrix/federation/v1/get_missing_events/!r:x?a=1";
        let r = prepare_request(&k, "dest.example:8448", "POST", target, Some(r#"{"limit": 10}"#), true).unwrap();
        assert_eq!(r.body.as_deref(), Some(r#"{"limit":10}"#));
        let auth = r.authorization.unwrap();
        assert!(auth.contains(r#"destination="dest.example:8448""#));
        let mut ring = KeyRing::new();
        ring.pin("origin.example", "ed25519:1", k.verifying_key());
        let content: Value = serde_json::from_str(r#"{"limit":10}"#).unwrap();
        let origin =
            authenticate_request(&[&auth], "POST", target, Some(&content), "dest.example:8448", &ring, 0).unwrap();
        assert_eq!(origin, "origin.example");
        assert!(authenticate_request(&[&auth], "POST", target, Some(&content), "other.example", &ring, 0).is_err());
        assert!(prepare_request(&k, "d.example", "GET", "/_matrix/key/v2/server", None, false)
            .unwrap()
            .authorization
            .is_none());
    }

    #[test]
    fn refuses_bad_requests() {
        let k = key();
        assert!(matches!(
            prepare_request(&k, "host/path?x", "GET", "/_matrix/x", None, true),
            Err(RequestError::InvalidServerName(_))
        ));
        assert!(matches!(
            prepare_request(&k, "d.example", "TRACE", "/_matrix/x", None, true),
            Err(RequestError::InvalidMethod(_))
        ));
        for t in [
            "/other",
            "_matrix/x",
            "/_matrix/a b",
            "/_matrix/x#f",
            "/_matrix/../admin",
            "/_matrix/%2e%2e/x",
            "/_matrix/\u{e9}",
            "/_matrix/x\r\nHost: y",
        ] {
            assert!(
                matches!(prepare_request(&k, "d.example", "GET", t, None, true), Err(RequestError::InvalidTarget(_))),
                "{t:?}"
            );
        }
        assert!(matches!(
            prepare_request(&k, "d.example", "PUT", "/_matrix/x", Some("[1]"), true),
            Err(RequestError::InvalidBody(_))
        ));
        assert!(matches!(
            prepare_request(&k, "d.example", "PUT", "/_matrix/x", Some("{"), true),
            Err(RequestError::InvalidBody(_))
        ));
    }
}
