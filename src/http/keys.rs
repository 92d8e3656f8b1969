//! Server signing keys (spec: server-server API, "Retrieving server keys").
//!
//! * [`server_keys_response`]: our own `/_matrix/key/v2/server` answer,
//!   self-signed.
//! * [`parse_server_keys`] / [`parse_notary_response`]: verify a key
//!   response fetched from a server or a notary before trusting it.
//! * [`KeyRing`]: pinned keys plus verified fetched keys, each valid until
//!   `min(valid_until_ts, fetched_at + 7 days)`.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use crate::signing::{decode_base64, verify_json, KeyStore, PublicKey, ServerSigningKey};

/// Keys are trusted at most this long after they were fetched, whatever
/// `valid_until_ts` says (spec: "the lesser of valid_until_ts and 7 days").
pub const MAX_KEY_VALIDITY_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// Why a fetched key response is not trusted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyResponseError {
    /// Not a JSON object of the right shape.
    #[error("malformed key response: {0}")]
    Malformed(&'static str),
    /// `server_name` is not the server asked about.
    #[error("key response is for {got}, not {want}")]
    WrongServer {
        /// The server asked about.
        want: String,
        /// The server named in the response.
        got: String,
    },
    /// Not signed by one of its own keys (or by the notary).
    #[error("key response for {0} is not correctly signed")]
    BadSignature(String),
    /// Already expired.
    #[error("key response for {0} has expired")]
    Expired(String),
}

/// Our `/_matrix/key/v2/server` response: the current key, valid for
/// `validity_ms`, signed by itself.
pub fn server_keys_response(key: &ServerSigningKey, now_ms: i64, validity_ms: i64) -> Value {
    let mut body = json!({
        "server_name": key.server_name,
        "valid_until_ts": now_ms + validity_ms,
        "verify_keys": { key.key_id.clone(): { "key": key.public_key_b64() } },
        "old_verify_keys": {},
    })
    .as_object()
    .expect("an object literal")
    .clone();
    key.sign_json(&mut body);
    Value::Object(body)
}

/// A verified key from a response.
#[derive(Clone, Debug)]
pub struct FetchedKey {
    /// The server.
    pub server: String,
    /// The key ID.
    pub key_id: String,
    /// The key, with its validity (capped at fetch time + 7 days).
    pub key: PublicKey,
    /// An `old_verify_keys` entry: usable for event signatures made before
    /// it expired, never for requests.
    pub old: bool,
}

fn decode_key(b64: &str) -> Option<ed25519_dalek::VerifyingKey> {
    let arr: [u8; 32] = decode_base64(b64)?.try_into().ok()?;
    ed25519_dalek::VerifyingKey::from_bytes(&arr).ok()
}

/// Verifies a server's own key response (self-signed, for `expected_server`,
/// not expired) and returns its keys.
pub fn parse_server_keys(
    response: &Value,
    expected_server: &str,
    now_ms: i64,
) -> Result<Vec<FetchedKey>, KeyResponseError> {
    let obj = response.as_object().ok_or(KeyResponseError::Malformed("not an object"))?;
    let server = obj.get("server_name").and_then(Value::as_str).ok_or(KeyResponseError::Malformed("no server_name"))?;
    if server != expected_server {
        return Err(KeyResponseError::WrongServer { want: expected_server.into(), got: server.into() });
    }
    let valid_until =
        obj.get("valid_until_ts").and_then(Value::as_i64).ok_or(KeyResponseError::Malformed("no valid_until_ts"))?;
    if valid_until < now_ms {
        return Err(KeyResponseError::Expired(server.into()));
    }
    let capped = valid_until.min(now_ms + MAX_KEY_VALIDITY_MS);
    let verify_keys =
        obj.get("verify_keys").and_then(Value::as_object).ok_or(KeyResponseError::Malformed("no verify_keys"))?;
    let mut keys = Vec::new();
    for (key_id, v) in verify_keys {
        let key = v
            .get("key")
            .and_then(Value::as_str)
            .and_then(decode_key)
            .ok_or(KeyResponseError::Malformed("bad verify key"))?;
        keys.push(FetchedKey {
            server: server.into(),
            key_id: key_id.clone(),
            key: PublicKey { key, valid_until_ts: Some(capped) },
            old: false,
        });
    }
    // Self-signed by at least one of its current keys.
    if !keys.iter().any(|k| verify_json(obj, server, &k.key_id, &k.key.key)) {
        return Err(KeyResponseError::BadSignature(server.into()));
    }
    if let Some(old) = obj.get("old_verify_keys").and_then(Value::as_object) {
        for (key_id, v) in old {
            let (Some(key), Some(expired)) = (
                v.get("key").and_then(Value::as_str).and_then(decode_key),
                v.get("expired_ts").and_then(Value::as_i64),
            ) else {
                continue;
            };
            keys.push(FetchedKey {
                server: server.into(),
                key_id: key_id.clone(),
                key: PublicKey { key, valid_until_ts: Some(expired) },
                old: true,
            });
        }
    }
    Ok(keys)
}

/// Verifies a notary's `/_matrix/key/v2/query` answer: each entry must be a
/// valid self-signed response that the notary also signed with a key in
/// `notary_keys`.
pub fn parse_notary_response(
    response: &Value,
    notary: &str,
    notary_keys: &dyn KeyStore,
    now_ms: i64,
) -> Result<Vec<FetchedKey>, KeyResponseError> {
    let entries =
        response.get("server_keys").and_then(Value::as_array).ok_or(KeyResponseError::Malformed("no server_keys"))?;
    let mut out = Vec::new();
    for entry in entries {
        let Some(obj) = entry.as_object() else { continue };
        let Some(server) = obj.get("server_name").and_then(Value::as_str) else { continue };
        let notary_sigs = obj.get("signatures").and_then(|s| s.get(notary)).and_then(Value::as_object);
        let signed_by_notary = notary_sigs.is_some_and(|sigs| {
            sigs.keys()
                .any(|kid| notary_keys.verify_key(notary, kid).is_some_and(|k| verify_json(obj, notary, kid, &k.key)))
        });
        if !signed_by_notary {
            return Err(KeyResponseError::BadSignature(notary.into()));
        }
        out.extend(parse_server_keys(entry, server, now_ms)?);
    }
    Ok(out)
}

/// Pinned keys plus fetched ones. Request authentication only uses keys
/// valid now; event signatures use the key's validity at the event's time.
#[derive(Clone, Debug, Default)]
pub struct KeyRing {
    keys: HashMap<(String, String), (PublicKey, bool)>,
}

impl KeyRing {
    /// An empty ring.
    pub fn new() -> Self {
        Self::default()
    }

    /// Pins a key (never expires).
    pub fn pin(&mut self, server: &str, key_id: &str, key: ed25519_dalek::VerifyingKey) {
        self.keys.insert((server.into(), key_id.into()), (PublicKey { key, valid_until_ts: None }, false));
    }

    /// Pins a key given as unpadded base64.
    pub fn pin_b64(&mut self, server: &str, key_id: &str, b64: &str) -> bool {
        match decode_key(b64) {
            Some(k) => {
                self.pin(server, key_id, k);
                true
            }
            None => false,
        }
    }

    /// Adds verified fetched keys (a pinned key is never replaced).
    pub fn add_fetched(&mut self, keys: Vec<FetchedKey>) {
        for k in keys {
            let slot = (k.server, k.key_id);
            if matches!(self.keys.get(&slot), Some((p, _)) if p.valid_until_ts.is_none()) {
                continue;
            }
            self.keys.insert(slot, (k.key, k.old));
        }
    }

    /// A key usable to authenticate a request now (not an old key, not expired).
    pub fn request_key(&self, server: &str, key_id: &str, now_ms: i64) -> Option<PublicKey> {
        let (k, old) = self.keys.get(&(server.into(), key_id.into()))?;
        (!old && k.valid_until_ts.is_none_or(|v| v >= now_ms)).then(|| k.clone())
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl KeyStore for KeyRing {
    fn verify_key(&self, server: &str, key_id: &str) -> Option<PublicKey> {
        self.keys.get(&(server.into(), key_id.into())).map(|(k, _)| k.clone())
    }
}

/// A view of a [`KeyRing`] for request authentication at a given time:
/// expired and old keys are invisible.
pub struct RequestKeys<'a> {
    /// The ring.
    pub ring: &'a KeyRing,
    /// Now, in ms since the epoch.
    pub now_ms: i64,
}

impl KeyStore for RequestKeys<'_> {
    fn verify_key(&self, server: &str, key_id: &str) -> Option<PublicKey> {
        self.ring.request_key(server, key_id, self.now_ms)
    }
}

/// The body of a notary query for `server`'s keys.
pub fn notary_query_body(server: &str, min_valid_until_ts: i64) -> Value {
    let mut criteria = Map::new();
    criteria.insert("minimum_valid_until_ts".into(), json!(min_valid_until_ts));
    json!({"server_keys": {server: {"": criteria}}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_responses_verify() {
        let key =
            ServerSigningKey::from_seed_b64("a.example", "ed25519:1", "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1")
                .unwrap();
        let resp = server_keys_response(&key, 1_000, 3_600_000);
        let keys = parse_server_keys(&resp, "a.example", 2_000).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].key.valid_until_ts, Some(3_601_000));
        assert!(matches!(parse_server_keys(&resp, "b.example", 2_000), Err(KeyResponseError::WrongServer { .. })));
        assert!(matches!(parse_server_keys(&resp, "a.example", 9_999_999), Err(KeyResponseError::Expired(_))));
        let mut tampered = resp.clone();
        tampered["valid_until_ts"] = json!(9_999_999_999i64);
        assert!(matches!(parse_server_keys(&tampered, "a.example", 2_000), Err(KeyResponseError::BadSignature(_))));
        let mut ring = KeyRing::new();
        ring.add_fetched(keys);
        assert!(ring.request_key("a.example", "ed25519:1", 2_000).is_some());
        assert!(ring.request_key("a.example", "ed25519:1", 4_000_000).is_none());
    }

    #[test]
    fn notary_responses_need_the_notary_signature() {
        let origin =
            ServerSigningKey::from_seed_b64("a.example", "ed25519:1", "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1")
                .unwrap();
        let notary = ServerSigningKey::from_seed_b64(
            "notary.example",
            "ed25519:n",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )
        .unwrap();
        let mut entry = server_keys_response(&origin, 1_000, 3_600_000).as_object().unwrap().clone();
        let unsigned_by_notary = json!({"server_keys": [entry.clone()]});
        notary.sign_json(&mut entry);
        let resp = json!({"server_keys": [entry]});
        let mut trusted = KeyRing::new();
        trusted.pin("notary.example", "ed25519:n", notary.verifying_key());
        assert_eq!(parse_notary_response(&resp, "notary.example", &trusted, 2_000).unwrap().len(), 1);
        assert!(parse_notary_response(&unsigned_by_notary, "notary.example", &trusted, 2_000).is_err());
    }
}
