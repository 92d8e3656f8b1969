//! The `X-Matrix` authorization scheme (spec: server-server API, "Request
//! Authentication").
//!
//! > `Authorization: X-Matrix origin="origin.hs.example.com",destination="destination.hs.example.com",key="ed25519:key1",sig="ABCDEF..."`
//!
//! The header follows RFC 9110 §11.4 (auth-params): the scheme, one or more
//! spaces, then comma-separated `name=value` pairs with optional whitespace
//! around commas; names are case-insensitive; values are tokens or quoted
//! strings with backslash escapes; colons are allowed in unquoted values.
//! A duplicate parameter makes the header invalid; unknown ones are ignored.

use serde_json::{Map, Value};

use crate::canonical_json::object_to_canonical_string;
use crate::ids::is_valid_server_name;
use crate::signing::{decode_base64, verify_ed25519, KeyStore};

/// A parsed `X-Matrix` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XMatrix {
    /// The requesting server.
    pub origin: String,
    /// The server the request is for, if given (optional before spec v1.3).
    pub destination: Option<String>,
    /// The signing key's ID (`ed25519:…`).
    pub key: String,
    /// The signature, unpadded base64.
    pub sig: String,
}

/// Why an `Authorization` header is not a usable `X-Matrix` header.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum XMatrixError {
    /// Another scheme, or no parameters.
    #[error("not an X-Matrix authorization header")]
    NotXMatrix,
    /// The parameter list does not parse.
    #[error("malformed X-Matrix header: {0}")]
    Malformed(&'static str),
    /// A parameter appears twice.
    #[error("duplicate X-Matrix parameter {0:?}")]
    Duplicate(String),
    /// A required parameter is missing.
    #[error("X-Matrix header lacks {0:?}")]
    Missing(&'static str),
    /// A parameter has an invalid value.
    #[error("invalid X-Matrix {0}")]
    Invalid(&'static str),
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

impl XMatrix {
    /// Parses an `Authorization` header value.
    pub fn parse(header: &str) -> Result<Self, XMatrixError> {
        let header = header.trim_matches(|c| c == ' ' || c == '\t');
        let (scheme, rest) = header.split_once([' ', '\t']).ok_or(XMatrixError::NotXMatrix)?;
        if !scheme.eq_ignore_ascii_case("X-Matrix") {
            return Err(XMatrixError::NotXMatrix);
        }
        let mut params: Vec<(String, String)> = Vec::new();
        let chars: Vec<char> = rest.chars().collect();
        let mut i = 0;
        let skip_ws = |i: &mut usize| {
            while *i < chars.len() && (chars[*i] == ' ' || chars[*i] == '\t') {
                *i += 1;
            }
        };
        loop {
            skip_ws(&mut i);
            if i >= chars.len() {
                break;
            }
            // name
            let start = i;
            while i < chars.len() && is_tchar(chars[i]) {
                i += 1;
            }
            if i == start {
                return Err(XMatrixError::Malformed("expected a parameter name"));
            }
            let name: String = chars[start..i].iter().collect::<String>().to_ascii_lowercase();
            skip_ws(&mut i);
            if i >= chars.len() || chars[i] != '=' {
                return Err(XMatrixError::Malformed("expected '=' after a parameter name"));
            }
            i += 1;
            skip_ws(&mut i);
            // value
            let mut value = String::new();
            if i < chars.len() && chars[i] == '"' {
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(XMatrixError::Malformed("unterminated quoted value")),
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some('\\') => {
                            let Some(c) = chars.get(i + 1) else {
                                return Err(XMatrixError::Malformed("dangling escape"));
                            };
                            value.push(*c);
                            i += 2;
                        }
                        Some(c) => {
                            value.push(*c);
                            i += 1;
                        }
                    }
                }
            } else {
                let start = i;
                // Tokens, plus ':' (allowed unquoted by the spec) and base64's '/' and '='.
                while i < chars.len() && (is_tchar(chars[i]) || chars[i] == ':' || chars[i] == '/' || chars[i] == '=') {
                    i += 1;
                }
                if i == start {
                    return Err(XMatrixError::Malformed("empty parameter value"));
                }
                value = chars[start..i].iter().collect();
            }
            if params.iter().any(|(n, _)| *n == name) {
                return Err(XMatrixError::Duplicate(name));
            }
            params.push((name, value));
            skip_ws(&mut i);
            match chars.get(i) {
                None => break,
                Some(',') => i += 1,
                Some(_) => return Err(XMatrixError::Malformed("expected ',' between parameters")),
            }
        }
        let take = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let origin = take("origin").ok_or(XMatrixError::Missing("origin"))?;
        if !is_valid_server_name(&origin) {
            return Err(XMatrixError::Invalid("origin"));
        }
        let key = take("key").ok_or(XMatrixError::Missing("key"))?;
        if !key.starts_with("ed25519:") || key.len() <= "ed25519:".len() {
            return Err(XMatrixError::Invalid("key"));
        }
        let sig = take("sig").ok_or(XMatrixError::Missing("sig"))?;
        if decode_base64(&sig).is_none() {
            return Err(XMatrixError::Invalid("sig"));
        }
        Ok(Self { origin, destination: take("destination"), key, sig })
    }

    /// Formats a header value (as servers send it: every value quoted).
    pub fn to_header(&self) -> String {
        let q = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let mut out = format!("X-Matrix origin=\"{}\"", q(&self.origin));
        if let Some(d) = &self.destination {
            out.push_str(&format!(",destination=\"{}\"", q(d)));
        }
        out.push_str(&format!(",key=\"{}\",sig=\"{}\"", q(&self.key), q(&self.sig)));
        out
    }
}

/// The JSON object a request signature covers: `method`, `uri` (the raw
/// request target, path and query as sent), `origin`, `destination`, and
/// `content` when the request has a body.
pub fn request_signing_object(
    method: &str,
    uri: &str,
    origin: &str,
    destination: &str,
    content: Option<&Value>,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("method".into(), Value::String(method.to_owned()));
    m.insert("uri".into(), Value::String(uri.to_owned()));
    m.insert("origin".into(), Value::String(origin.to_owned()));
    m.insert("destination".into(), Value::String(destination.to_owned()));
    if let Some(c) = content {
        m.insert("content".into(), c.clone());
    }
    m
}

/// Why a request's X-Matrix authentication failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestAuthError {
    /// No `Authorization: X-Matrix …` header at all.
    #[error("Missing Authorization headers")]
    Missing,
    /// A header that does not parse (400).
    #[error("Malformed Authorization header: {0}")]
    Malformed(XMatrixError),
    /// The header names another destination.
    #[error("Request was for destination {0}, not this server")]
    WrongDestination(String),
    /// The origin's key is not known yet: fetch it, then retry.
    #[error("key {key_id} of {server} is not known")]
    UnknownKey {
        /// The origin.
        server: String,
        /// The key ID.
        key_id: String,
    },
    /// The signature does not verify, or the key has expired.
    #[error("Failed to verify the request signature from {0}")]
    BadSignature(String),
}

impl RequestAuthError {
    /// The HTTP status (401, or 400 for a malformed header like the reference server).
    pub fn status(&self) -> u16 {
        match self {
            RequestAuthError::Malformed(_) => 400,
            _ => 401,
        }
    }
}

/// The `X-Matrix` headers of a request, parsed: at least one, all from the
/// same origin, none naming another destination.
fn request_headers(authorization: &[&str], our_server_name: &str) -> Result<Vec<XMatrix>, RequestAuthError> {
    let mut headers: Vec<XMatrix> = Vec::new();
    for h in authorization {
        match XMatrix::parse(h) {
            Ok(x) => headers.push(x),
            Err(XMatrixError::NotXMatrix) => {}
            Err(e) => return Err(RequestAuthError::Malformed(e)),
        }
    }
    let Some(first) = headers.first() else {
        return Err(RequestAuthError::Missing);
    };
    let origin = first.origin.clone();
    for x in &headers {
        if x.origin != origin {
            return Err(RequestAuthError::Malformed(XMatrixError::Invalid("origin (headers disagree)")));
        }
        if let Some(d) = &x.destination {
            if d != our_server_name {
                return Err(RequestAuthError::WrongDestination(d.clone()));
            }
        }
    }
    Ok(headers)
}

/// The checks of [`authenticate_request`] that need neither the body nor a
/// signature check: `X-Matrix` headers that parse, one origin, our
/// destination, and a key of the origin that `keys` holds. A host runs this
/// before it reads the request body, so a request that cannot authenticate
/// costs no body read or parse. Returns the claimed origin.
pub fn check_request_headers(
    authorization: &[&str],
    our_server_name: &str,
    keys: &dyn KeyStore,
) -> Result<String, RequestAuthError> {
    let headers = request_headers(authorization, our_server_name)?;
    let origin = headers[0].origin.clone();
    if headers.iter().any(|x| keys.verify_key(&origin, &x.key).is_some()) {
        return Ok(origin);
    }
    Err(RequestAuthError::UnknownKey { key_id: headers[0].key.clone(), server: origin })
}

/// Authenticates a request: finds its `X-Matrix` headers, checks the
/// destination and verifies one signature over the raw request target and
/// body with the origin's key (which must be valid at `now_ms`). Returns the
/// authenticated origin.
pub fn authenticate_request(
    authorization: &[&str],
    method: &str,
    uri: &str,
    content: Option<&Value>,
    our_server_name: &str,
    keys: &dyn KeyStore,
    now_ms: i64,
) -> Result<String, RequestAuthError> {
    let headers = request_headers(authorization, our_server_name)?;
    let origin = headers[0].origin.clone();
    let object = request_signing_object(method, uri, &origin, our_server_name, content);
    let message = object_to_canonical_string(&object);
    let mut missing: Option<RequestAuthError> = None;
    for x in &headers {
        match keys.verify_key(&origin, &x.key) {
            None => {
                missing.get_or_insert(RequestAuthError::UnknownKey { server: origin.clone(), key_id: x.key.clone() });
            }
            Some(k) => {
                if k.valid_until_ts.is_some_and(|v| v < now_ms) {
                    return Err(RequestAuthError::BadSignature(origin));
                }
                if !verify_ed25519(&k.key, message.as_bytes(), &x.sig) {
                    return Err(RequestAuthError::BadSignature(origin));
                }
                return Ok(origin);
            }
        }
    }
    Err(missing.unwrap_or(RequestAuthError::BadSignature(origin)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_spec_and_variants() {
        let x =
            XMatrix::parse(r#"X-Matrix origin="origin.example",destination="dest.example",key="ed25519:1",sig="ABCD""#)
                .unwrap();
        assert_eq!(x.origin, "origin.example");
        assert_eq!(x.destination.as_deref(), Some("dest.example"));
        let y = XMatrix::parse("x-matrix  Origin=origin.example:8448 , KEY=ed25519:1,\tsig=dGVzdA==").unwrap();
        assert_eq!(y.origin, "origin.example:8448");
        assert_eq!(y.key, "ed25519:1");
        assert_eq!(y.destination, None);
        let z = XMatrix::parse(r#"X-Matrix origin="o.example",key="ed25519:a\"b",sig="AAAA",extra="ignored""#).unwrap();
        assert_eq!(z.key, "ed25519:a\"b");
        assert_eq!(XMatrix::parse(r#"Bearer abc"#), Err(XMatrixError::NotXMatrix));
        assert!(matches!(
            XMatrix::parse(r#"X-Matrix origin="a.example",origin="b.example",key="ed25519:1",sig="AA""#),
            Err(XMatrixError::Duplicate(_))
        ));
        assert_eq!(XMatrix::parse(r#"X-Matrix key="ed25519:1",sig="AA""#), Err(XMatrixError::Missing("origin")));
        assert!(matches!(
            XMatrix::parse(r#"X-Matrix origin="a.example" key="ed25519:1""#),
            Err(XMatrixError::Malformed(_))
        ));
        assert!(matches!(
            XMatrix::parse(r#"X-Matrix origin="a.example,key="ed25519:1""#),
            Err(XMatrixError::Malformed(_))
        ));
        assert_eq!(
            XMatrix::parse(r#"X-Matrix origin="bad_name!",key="ed25519:1",sig="AA""#),
            Err(XMatrixError::Invalid("origin"))
        );
        assert_eq!(XMatrix::parse(&x.to_header()).unwrap(), x);
    }
}
