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
    /// A notary answered about a server it was not asked about.
    #[error("notary answered about {0}, which was not asked about")]
    NotAsked(String),
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

/// The keys a notary is trusted with: its own configured (pinned) keys,
/// key ID → key. Nothing else verifies a notary's answer: not other keys in
/// a ring, not an `old_verify_keys` key the notary once published.
pub type NotaryKeys = HashMap<String, ed25519_dalek::VerifyingKey>;

/// Parses `{keyId: base64}` into [`NotaryKeys`] (`None` if a key is invalid).
pub fn notary_keys_from_b64<'a>(keys: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<NotaryKeys> {
    keys.into_iter().map(|(id, b64)| decode_key(b64).map(|k| (id.to_owned(), k))).collect()
}

/// Verifies a notary's `/_matrix/key/v2/query` answer (Synapse's
/// `PerspectivesKeyFetcher`): each entry must be signed by `notary` with one
/// of `notary_keys`, be for one of the servers `asked` about, and be a valid
/// self-signed key response. Bad entries are skipped (Synapse does the same);
/// an answer with no usable entry is an error (the first entry's problem).
pub fn parse_notary_response(
    response: &Value,
    notary: &str,
    notary_keys: &NotaryKeys,
    asked: &[&str],
    now_ms: i64,
) -> Result<Vec<FetchedKey>, KeyResponseError> {
    let entries =
        response.get("server_keys").and_then(Value::as_array).ok_or(KeyResponseError::Malformed("no server_keys"))?;
    let mut out = Vec::new();
    let mut first_error = None;
    for entry in entries {
        match parse_notary_entry(entry, notary, notary_keys, asked, now_ms) {
            Ok(keys) => out.extend(keys),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match (out.is_empty(), first_error) {
        (true, Some(e)) => Err(e),
        (true, None) => Err(KeyResponseError::Malformed("no keys for the servers asked about")),
        _ => Ok(out),
    }
}

fn parse_notary_entry(
    entry: &Value,
    notary: &str,
    notary_keys: &NotaryKeys,
    asked: &[&str],
    now_ms: i64,
) -> Result<Vec<FetchedKey>, KeyResponseError> {
    let obj = entry.as_object().ok_or(KeyResponseError::Malformed("entry is not an object"))?;
    let server = obj.get("server_name").and_then(Value::as_str).ok_or(KeyResponseError::Malformed("no server_name"))?;
    if !asked.contains(&server) {
        return Err(KeyResponseError::NotAsked(server.into()));
    }
    let notary_sigs = obj.get("signatures").and_then(|s| s.get(notary)).and_then(Value::as_object);
    let signed_by_notary = notary_sigs.is_some_and(|sigs| {
        sigs.keys().any(|kid| notary_keys.get(kid).is_some_and(|k| verify_json(obj, notary, kid, k)))
    });
    if !signed_by_notary {
        return Err(KeyResponseError::BadSignature(notary.into()));
    }
    parse_server_keys(entry, server, now_ms)
}

/// Most fetched keys a [`KeyRing`] holds; past this, the oldest fetched
/// keys are forgotten (pinned keys never are), and fetched again if needed.
pub const MAX_FETCHED_KEYS: usize = 20_000;

#[derive(Clone, Debug)]
struct RingEntry {
    key: PublicKey,
    old: bool,
    /// Insertion order, for forgetting the oldest fetched keys first.
    seq: u64,
}

/// A key as [`KeyRing::export_keys`] gives it and [`KeyRing::import_keys`] takes it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportedKey {
    /// The server.
    pub server: String,
    /// The key ID.
    pub key_id: String,
    /// The key, unpadded base64.
    pub key: String,
    /// Valid until (ms); `None` for a pinned key.
    pub valid_until_ts: Option<i64>,
    /// An `old_verify_keys` entry.
    pub old: bool,
}

/// Pinned keys plus fetched ones. Request authentication only uses keys
/// valid now; event signatures use the key's validity at the event's time.
/// At most [`MAX_FETCHED_KEYS`] fetched keys are held.
#[derive(Clone, Debug, Default)]
pub struct KeyRing {
    keys: HashMap<(String, String), RingEntry>,
    fetched: usize,
    seq: u64,
}

impl KeyRing {
    /// An empty ring.
    pub fn new() -> Self {
        Self::default()
    }

    fn insert(&mut self, server: String, key_id: String, key: PublicKey, old: bool) {
        self.seq += 1;
        let pinned = key.valid_until_ts.is_none();
        let prev = self.keys.insert((server, key_id), RingEntry { key, old, seq: self.seq });
        let was_fetched = prev.is_some_and(|p| p.key.valid_until_ts.is_some());
        match (was_fetched, pinned) {
            (false, false) => self.fetched += 1,
            (true, true) => self.fetched -= 1,
            _ => {}
        }
        if self.fetched > MAX_FETCHED_KEYS {
            self.forget_oldest_fetched(MAX_FETCHED_KEYS / 10);
        }
    }

    /// Forgets the `n` oldest fetched keys.
    fn forget_oldest_fetched(&mut self, n: usize) {
        let mut seqs: Vec<u64> = self.keys.values().filter(|e| e.key.valid_until_ts.is_some()).map(|e| e.seq).collect();
        seqs.sort_unstable();
        let Some(&cut) = seqs.get(n.min(seqs.len()).saturating_sub(1)) else { return };
        let before = self.keys.len();
        self.keys.retain(|_, e| e.key.valid_until_ts.is_none() || e.seq > cut);
        self.fetched -= before - self.keys.len();
    }

    /// Pins a key (never expires).
    pub fn pin(&mut self, server: &str, key_id: &str, key: ed25519_dalek::VerifyingKey) {
        self.insert(server.into(), key_id.into(), PublicKey { key, valid_until_ts: None }, false);
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
            if matches!(self.keys.get(&slot), Some(e) if e.key.valid_until_ts.is_none()) {
                continue;
            }
            // A key fetched without a validity would read as pinned: give it the cap.
            let mut key = k.key;
            key.valid_until_ts.get_or_insert(0);
            self.insert(slot.0, slot.1, key, k.old);
        }
    }

    /// A key usable to authenticate a request now (not an old key, not expired).
    pub fn request_key(&self, server: &str, key_id: &str, now_ms: i64) -> Option<PublicKey> {
        let e = self.keys.get(&(server.into(), key_id.into()))?;
        (!e.old && e.key.valid_until_ts.is_none_or(|v| v >= now_ms)).then(|| e.key.clone())
    }

    /// The keys of `servers` (pinned and fetched), for another ring.
    pub fn export_keys(&self, servers: &[&str]) -> Vec<ExportedKey> {
        let mut out: Vec<ExportedKey> = self
            .keys
            .iter()
            .filter(|((s, _), _)| servers.contains(&s.as_str()))
            .map(|((s, id), e)| ExportedKey {
                server: s.clone(),
                key_id: id.clone(),
                key: crate::signing::encode_base64(e.key.key.as_bytes()),
                valid_until_ts: e.key.valid_until_ts,
                old: e.old,
            })
            .collect();
        out.sort_by(|a, b| (&a.server, &a.key_id).cmp(&(&b.server, &b.key_id)));
        out
    }

    /// Adds keys another ring exported (a pinned key is never replaced).
    /// Returns how many were added, or `None` if one is not a valid key.
    pub fn import_keys(&mut self, keys: &[ExportedKey]) -> Option<usize> {
        let decoded: Vec<(&ExportedKey, ed25519_dalek::VerifyingKey)> =
            keys.iter().map(|k| decode_key(&k.key).map(|d| (k, d))).collect::<Option<_>>()?;
        let mut n = 0;
        for (k, key) in decoded {
            let slot = (k.server.clone(), k.key_id.clone());
            if matches!(self.keys.get(&slot), Some(e) if e.key.valid_until_ts.is_none()) {
                continue;
            }
            self.insert(slot.0, slot.1, PublicKey { key, valid_until_ts: k.valid_until_ts }, k.old);
            n += 1;
        }
        Some(n)
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Number of fetched (not pinned) keys held.
    pub fn fetched_len(&self) -> usize {
        self.fetched
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl KeyStore for KeyRing {
    fn verify_key(&self, server: &str, key_id: &str) -> Option<PublicKey> {
        self.keys.get(&(server.into(), key_id.into())).map(|e| e.key.clone())
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

    fn origin_key() -> ServerSigningKey {
        ServerSigningKey::from_seed_b64("a.example", "ed25519:1", "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1")
            .unwrap()
    }

    fn notary_key(key_id: &str, seed: &str) -> ServerSigningKey {
        ServerSigningKey::from_seed_b64("notary.example", key_id, seed).unwrap()
    }

    #[test]
    fn notary_responses_need_a_configured_notary_key() {
        let notary = notary_key("ed25519:n", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
        let mut entry = server_keys_response(&origin_key(), 1_000, 3_600_000).as_object().unwrap().clone();
        let unsigned_by_notary = json!({"server_keys": [entry.clone()]});
        notary.sign_json(&mut entry);
        let resp = json!({"server_keys": [entry]});
        let configured: NotaryKeys = [("ed25519:n".to_owned(), notary.verifying_key())].into();
        let asked = ["a.example"];
        assert_eq!(parse_notary_response(&resp, "notary.example", &configured, &asked, 2_000).unwrap().len(), 1);
        assert!(parse_notary_response(&unsigned_by_notary, "notary.example", &configured, &asked, 2_000).is_err());
        // Not configured for this notary: refused, whatever else is trusted.
        let other: NotaryKeys = [("ed25519:other".to_owned(), origin_key().verifying_key())].into();
        assert_eq!(
            parse_notary_response(&resp, "notary.example", &other, &asked, 2_000).unwrap_err(),
            KeyResponseError::BadSignature("notary.example".into())
        );
        // Answers about servers not asked about are not used.
        assert_eq!(
            parse_notary_response(&resp, "notary.example", &configured, &["b.example"], 2_000).unwrap_err(),
            KeyResponseError::NotAsked("a.example".into())
        );
    }

    #[test]
    fn an_old_notary_key_does_not_verify_notary_answers() {
        // The notary rotated: its old key is in its own old_verify_keys. An
        // answer signed with that old key is refused even though a ring that
        // fetched the notary's keys would hold it.
        let old = notary_key("ed25519:old", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
        let new = notary_key("ed25519:new", "bm90YXJ5IG5vdGFyeSBub3Rhcnkgbm90YXJ5IG5vdGE");
        let mut own = server_keys_response(&new, 1_000, 3_600_000).as_object().unwrap().clone();
        own.remove("signatures");
        own.insert("old_verify_keys".into(), json!({"ed25519:old": {"key": old.public_key_b64(), "expired_ts": 500}}));
        new.sign_json(&mut own);
        let mut ring = KeyRing::new();
        ring.add_fetched(parse_server_keys(&Value::Object(own), "notary.example", 2_000).unwrap());
        assert!(ring.verify_key("notary.example", "ed25519:old").is_some(), "the ring holds the old key");
        let mut entry = server_keys_response(&origin_key(), 1_000, 3_600_000).as_object().unwrap().clone();
        old.sign_json(&mut entry);
        let resp = json!({"server_keys": [entry]});
        let configured: NotaryKeys = [("ed25519:new".to_owned(), new.verifying_key())].into();
        assert!(parse_notary_response(&resp, "notary.example", &configured, &["a.example"], 2_000).is_err());
    }

    #[test]
    fn export_import_and_bounds() {
        let key = origin_key();
        let mut ring = KeyRing::new();
        ring.add_fetched(parse_server_keys(&server_keys_response(&key, 1_000, 3_600_000), "a.example", 2_000).unwrap());
        ring.pin("p.example", "ed25519:p", key.verifying_key());
        let exported = ring.export_keys(&["a.example", "p.example", "absent.example"]);
        assert_eq!(exported.len(), 2);
        assert_eq!(exported[1].valid_until_ts, None, "pinned stays pinned");
        let mut other = KeyRing::new();
        assert_eq!(other.import_keys(&exported), Some(2));
        assert!(other.request_key("a.example", "ed25519:1", 2_000).is_some());
        assert!(other.request_key("a.example", "ed25519:1", 4_000_000).is_none(), "validity travels");
        let mut bad = exported.clone();
        bad[0].key = "not a key".into();
        assert_eq!(KeyRing::new().import_keys(&bad), None);
        // Fetched keys are bounded; pinned ones stay.
        let mut ring = KeyRing::new();
        ring.pin("p.example", "ed25519:p", key.verifying_key());
        for i in 0..MAX_FETCHED_KEYS + 5 {
            ring.add_fetched(vec![FetchedKey {
                server: format!("s{i}.example"),
                key_id: "ed25519:1".into(),
                key: PublicKey { key: key.verifying_key(), valid_until_ts: Some(10) },
                old: false,
            }]);
        }
        assert!(ring.fetched_len() <= MAX_FETCHED_KEYS);
        assert_eq!(ring.len(), ring.fetched_len() + 1);
        assert!(ring.verify_key("p.example", "ed25519:p").is_some());
        assert!(ring.verify_key("s0.example", "ed25519:1").is_none(), "the oldest were forgotten");
        assert!(ring.verify_key(&format!("s{}.example", MAX_FETCHED_KEYS + 4), "ed25519:1").is_some());
    }
}
