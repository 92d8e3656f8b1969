//! Hashes, event IDs and ed25519 signatures (spec: server-server API,
//! "Signing Events", "Calculating the reference hash", "Calculating the
//! content hash"; appendix "Signing JSON").

use std::collections::HashMap;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::canonical_json::{canonical_len_from_part, object_to_canonical_string, object_to_canonical_string_except};
use crate::room_version::{EventIdFormat, RoomVersionRules};

const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_encode_padding(false)
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
/// Unpadded standard base64, the encoding of hashes, keys and signatures.
pub const B64: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
/// Unpadded URL-safe base64 (event IDs of room v4+).
pub const B64_URL: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// Decodes unpadded (or padded) standard or URL-safe base64, like Synapse's
/// `unpaddedbase64.decode_base64`.
pub fn decode_base64(s: &str) -> Option<Vec<u8>> {
    B64.decode(s).or_else(|_| B64_URL.decode(s)).ok()
}

/// Encodes bytes as unpadded standard base64.
pub fn encode_base64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// Keys removed before computing the content hash.
const NOT_HASHED: &[&str] = &["unsigned", "signatures", "hashes", "age_ts", "outlier", "destinations"];

/// The content hash of a PDU: SHA-256 of the canonical JSON of the event
/// without `unsigned`, `signatures` and `hashes`.
pub fn content_hash(event: &Map<String, Value>) -> [u8; 32] {
    content_hash_and_size(event).0
}

/// The content hash, and the length of the whole event's canonical JSON
/// (the size limit's measure), from one serialisation.
pub fn content_hash_and_size(event: &Map<String, Value>) -> ([u8; 32], usize) {
    let hashed = object_to_canonical_string_except(event, NOT_HASHED);
    let size = canonical_len_from_part(event, NOT_HASHED, hashed.len());
    (Sha256::digest(hashed.as_bytes()).into(), size)
}

/// The bytes that are both signed and hashed into the event ID: the canonical
/// JSON of the *redacted* event without `signatures` and `unsigned`.
pub fn redacted_signing_bytes(redacted: &Map<String, Value>) -> String {
    object_to_canonical_string_except(redacted, &NOT_SIGNED)
}

/// [`redacted_signing_bytes`] of the redacted `event`, written from what
/// the redaction keeps ([`crate::redaction::redacted_view`]) instead of a
/// redacted copy: the same bytes, without copying the event.
pub fn redacted_signing_bytes_of(event: &Map<String, Value>, rules: &RoomVersionRules) -> String {
    use crate::canonical_json::{write_string, write_value};
    use crate::redaction::Kept;
    let view = crate::redaction::redacted_view(event, rules);
    let mut out = String::with_capacity(512);
    out.push('{');
    // `content` goes where its key sorts among the others (`signatures` is
    // not signed; `unsigned` and `age_ts` are never kept).
    let mut content_written = false;
    let mut first = true;
    let mut member = |out: &mut String, key: &str| {
        if !std::mem::take(&mut first) {
            out.push(',');
        }
        write_string(out, key);
        out.push(':');
    };
    let write_content = |out: &mut String| {
        out.push('{');
        for (i, (k, v)) in view.content.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_string(out, k);
            out.push(':');
            match v {
                Kept::Whole(v) => write_value(out, v),
                // Rare (a v11+ third-party invite): its reduced copy.
                reduced => write_value(out, &reduced.to_value()),
            }
        }
        out.push('}');
    };
    for &(k, v) in view.top.iter().filter(|(k, _)| !NOT_SIGNED.contains(k)) {
        if !content_written && k > "content" {
            member(&mut out, "content");
            write_content(&mut out);
            content_written = true;
        }
        member(&mut out, k);
        write_value(&mut out, v);
    }
    if !content_written {
        member(&mut out, "content");
        write_content(&mut out);
    }
    out.push('}');
    out
}

/// The keys [`redacted_signing_bytes`] leaves out.
const NOT_SIGNED: [&str; 3] = ["signatures", "unsigned", "age_ts"];

/// The event ID for the reference hash of an event, per the room version's
/// format (`$` + unpadded standard base64 in v3, URL-safe from v4).
pub fn event_id_for_reference_hash(signing_bytes: &str, rules: &RoomVersionRules) -> String {
    let hash = Sha256::digest(signing_bytes.as_bytes());
    let b64 = match rules.event_id_format {
        EventIdFormat::ReferenceHashStandard | EventIdFormat::Explicit => B64.encode(hash),
        EventIdFormat::ReferenceHashUrlSafe => B64_URL.encode(hash),
    };
    format!("${b64}")
}

/// Where a server's public keys come from (pinned keys, a key cache, …).
pub trait KeyStore {
    /// The key `key_id` of `server`, if known, with the time (ms) until which
    /// it is valid (`None`: no expiry known, e.g. a pinned key).
    fn verify_key(&self, server: &str, key_id: &str) -> Option<PublicKey>;

    /// Verifies an ed25519 signature (unpadded base64) over `message`. The
    /// default uses `ed25519-dalek`; a host may supply a faster native
    /// implementation (e.g. the platform's crypto under WebAssembly).
    fn verify_signature(&self, key: &VerifyingKey, message: &[u8], signature_b64: &str) -> bool {
        verify_ed25519(key, message, signature_b64)
    }
}

/// A host's ed25519 check: `verify(public_key, message, signature)`.
pub type HostVerify<'a> = &'a dyn Fn(&[u8; 32], &[u8], &[u8; 64]) -> bool;

/// A key store whose signature checks go through a host function
/// `verify(public_key, message, signature) -> bool`.
pub struct WithVerifier<'a, K: KeyStore + ?Sized> {
    /// Where the keys come from.
    pub keys: &'a K,
    /// The signature check.
    pub verify: HostVerify<'a>,
}

impl<K: KeyStore + ?Sized> KeyStore for WithVerifier<'_, K> {
    fn verify_key(&self, server: &str, key_id: &str) -> Option<PublicKey> {
        self.keys.verify_key(server, key_id)
    }

    fn verify_signature(&self, key: &VerifyingKey, message: &[u8], signature_b64: &str) -> bool {
        let Some(bytes) = decode_base64(signature_b64) else { return false };
        let Ok(sig) = <[u8; 64]>::try_from(bytes.as_slice()) else { return false };
        (self.verify)(key.as_bytes(), message, &sig)
    }
}

/// A server's public key.
#[derive(Clone, Debug)]
pub struct PublicKey {
    /// The ed25519 key.
    pub key: VerifyingKey,
    /// Valid until this time in ms since the epoch (`None`: no known expiry).
    pub valid_until_ts: Option<i64>,
}

/// Keys given up front: server → key ID → unpadded base64 public key.
#[derive(Clone, Debug, Default)]
pub struct PinnedKeys {
    keys: HashMap<String, HashMap<String, PublicKey>>,
}

/// A key that could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid ed25519 public key for {server} {key_id}")]
pub struct InvalidKey {
    /// The server the key was given for.
    pub server: String,
    /// Its key ID.
    pub key_id: String,
}

impl PinnedKeys {
    /// An empty key set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `server`'s key `key_id` (unpadded base64 of the 32-byte public key).
    pub fn insert(&mut self, server: &str, key_id: &str, public_key_b64: &str) -> Result<(), InvalidKey> {
        let err = || InvalidKey { server: server.into(), key_id: key_id.into() };
        let bytes = decode_base64(public_key_b64).ok_or_else(err)?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| err())?;
        let key = VerifyingKey::from_bytes(&arr).map_err(|_| err())?;
        self.keys
            .entry(server.to_owned())
            .or_default()
            .insert(key_id.to_owned(), PublicKey { key, valid_until_ts: None });
        Ok(())
    }

    /// Adds an already decoded key.
    pub fn insert_key(&mut self, server: &str, key_id: &str, key: PublicKey) {
        self.keys.entry(server.to_owned()).or_default().insert(key_id.to_owned(), key);
    }

    /// Every server with at least one key.
    pub fn servers(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }
}

impl KeyStore for PinnedKeys {
    fn verify_key(&self, server: &str, key_id: &str) -> Option<PublicKey> {
        self.keys.get(server)?.get(key_id).cloned()
    }
}

/// Verifies an ed25519 signature (unpadded base64) over `message`.
///
/// Uses `verify_strict`, which refuses small-order keys and non-canonical
/// signatures like libsodium (which the reference implementation uses) does.
pub fn verify_ed25519(key: &VerifyingKey, message: &[u8], signature_b64: &str) -> bool {
    let Some(bytes) = decode_base64(signature_b64) else {
        return false;
    };
    let Ok(arr) = <[u8; 64]>::try_from(bytes.as_slice()) else {
        return false;
    };
    key.verify_strict(message, &Signature::from_bytes(&arr)).is_ok()
}

/// A server's signing key, for signing requests and JSON.
#[derive(Clone)]
pub struct ServerSigningKey {
    /// The server name.
    pub server_name: String,
    /// The key ID (`ed25519:…`).
    pub key_id: String,
    key: SigningKey,
}

impl std::fmt::Debug for ServerSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerSigningKey({} {})", self.server_name, self.key_id)
    }
}

impl ServerSigningKey {
    /// A key from its 32-byte seed in unpadded base64 (the form Synapse's
    /// signing key files and the fixtures use).
    pub fn from_seed_b64(server_name: &str, key_id: &str, seed_b64: &str) -> Option<Self> {
        let seed: [u8; 32] = decode_base64(seed_b64)?.try_into().ok()?;
        Some(Self { server_name: server_name.into(), key_id: key_id.into(), key: SigningKey::from_bytes(&seed) })
    }

    /// The public half, unpadded base64.
    pub fn public_key_b64(&self) -> String {
        encode_base64(self.key.verifying_key().as_bytes())
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Signs raw bytes; returns unpadded base64.
    pub fn sign_bytes(&self, message: &[u8]) -> String {
        encode_base64(&self.key.sign(message).to_bytes())
    }

    /// Signs a JSON object in place (spec "Signing JSON"): the signature covers
    /// the canonical JSON without `signatures` and `unsigned`.
    pub fn sign_json(&self, object: &mut Map<String, Value>) {
        let mut copy = object.clone();
        copy.remove("signatures");
        copy.remove("unsigned");
        let sig = self.sign_bytes(object_to_canonical_string(&copy).as_bytes());
        let sigs = object.entry("signatures").or_insert_with(|| Value::Object(Map::new()));
        if !sigs.is_object() {
            *sigs = Value::Object(Map::new());
        }
        let server = sigs
            .as_object_mut()
            .expect("just made an object")
            .entry(self.server_name.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if !server.is_object() {
            *server = Value::Object(Map::new());
        }
        server.as_object_mut().expect("just made an object").insert(self.key_id.clone(), Value::String(sig));
    }
}

/// Hashes and signs an event the way its origin server does (spec: "Signing
/// Events"): sets `hashes.sha256` to the content hash, then signs the
/// redacted form. Returns the event ID (room v3+).
pub fn hash_and_sign_event(event: &mut Map<String, Value>, rules: &RoomVersionRules, key: &ServerSigningKey) -> String {
    event.remove("signatures");
    event.remove("hashes");
    let hash = encode_base64(&content_hash(event));
    event.insert("hashes".into(), serde_json::json!({ "sha256": hash }));
    let bytes = redacted_signing_bytes_of(event, rules);
    let sig = key.sign_bytes(bytes.as_bytes());
    event.insert("signatures".into(), serde_json::json!({ key.server_name.clone(): { key.key_id.clone(): sig } }));
    event_id_for_reference_hash(&bytes, rules)
}

/// Verifies a JSON object's signature by `server` with `key` (spec "Checking
/// for a Signature").
pub fn verify_json(object: &Map<String, Value>, server: &str, key_id: &str, key: &VerifyingKey) -> bool {
    let Some(sig) =
        object.get("signatures").and_then(|s| s.get(server)).and_then(|s| s.get(key_id)).and_then(Value::as_str)
    else {
        return false;
    };
    let mut copy = object.clone();
    copy.remove("signatures");
    copy.remove("unsigned");
    verify_ed25519(key, object_to_canonical_string(&copy).as_bytes(), sig)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SEED: &str = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1";

    #[test]
    fn spec_signing_vectors() {
        let key = ServerSigningKey::from_seed_b64("domain", "ed25519:1", SEED).unwrap();
        assert_eq!(key.public_key_b64(), "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI");
        let mut empty = Map::new();
        key.sign_json(&mut empty);
        assert_eq!(
            empty["signatures"]["domain"]["ed25519:1"],
            "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"
        );
        let mut two = json!({"one": 1, "two": "Two"}).as_object().unwrap().clone();
        key.sign_json(&mut two);
        assert_eq!(
            two["signatures"]["domain"]["ed25519:1"],
            "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"
        );
        assert!(verify_json(&two, "domain", "ed25519:1", &key.verifying_key()));
        two.insert("one".into(), json!(2));
        assert!(!verify_json(&two, "domain", "ed25519:1", &key.verifying_key()));
    }

    #[test]
    fn spec_event_vectors() {
        let key = ServerSigningKey::from_seed_b64("domain", "ed25519:1", SEED).unwrap();
        let event = json!({
            "room_id": "!x:domain", "sender": "@a:domain", "origin": "domain",
            "origin_server_ts": 1000000, "signatures": {}, "hashes": {}, "type": "X",
            "content": {}, "prev_events": [], "auth_events": [], "depth": 3,
            "unsigned": {"age_ts": 1000000}
        });
        let event = event.as_object().unwrap().clone();
        assert_eq!(encode_base64(&content_hash(&event)), "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos");
        let mut hashed = event.clone();
        hashed.insert("hashes".into(), json!({"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"}));
        for (rules, sig, id) in [
            (
                &RoomVersionRules::V10,
                "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg",
                "$8yif6p8EqgoSten2BLje9ntKm720NyFLWQv9tn8memc",
            ),
            (
                &RoomVersionRules::V11,
                "Jxp+1glFcZM+nnHpY0EkedRR7u0VmKsJYGnQqIvqus3UvL5X/p1y6wSkLhGoTBel6MZ9lrMIzUqrjqFquWJKBw",
                "$70O_oKlXzFbkfu0KE88USi98DjSWrOELrPj-8tisl8I",
            ),
        ] {
            let redacted = crate::redaction::redact(&hashed, rules);
            let bytes = redacted_signing_bytes(&redacted);
            assert_eq!(key.sign_bytes(bytes.as_bytes()), sig, "room v{}", rules.id);
            let mut signed = hashed.clone();
            signed.insert("signatures".into(), json!({"domain": {"ed25519:1": sig}}));
            assert_eq!(
                event_id_for_reference_hash(&redacted_signing_bytes(&crate::redaction::redact(&signed, rules)), rules),
                id
            );
        }
    }
}
