//! WebAssembly bindings (wasm-bindgen). Only conversion lives here: every
//! algorithm is in the core. Structured results cross the boundary as JSON
//! text (parsed once by the JS layer, `pkg/api.js`), which is both faster and
//! simpler than building JS objects field by field.

use serde_json::{json, Value};
use wasm_bindgen::prelude::*;

use crate::conformance;
use crate::export;
use crate::http::keys::{
    notary_keys_from_b64, parse_notary_response, parse_server_keys, server_keys_response, ExportedKey, KeyRing,
    RequestKeys,
};
use crate::http::xmatrix::{
    authenticate_request, check_request_headers, request_signing_object, RequestAuthError, XMatrix,
};
use crate::http::{self, Endpoint, HttpError, Target};
use crate::signing::ServerSigningKey;

mod client;
mod federation;
mod pages;
mod room;

pub use room::{WasmRestoring, WasmRoom};

#[wasm_bindgen(start)]
fn start() {
    console_error_panic_hook::set_once();
}

pub(crate) fn js_error(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// A signing key from its unpadded base64 seed (a JS error for a bad seed).
pub(crate) fn signing_key(server: &str, key_id: &str, seed_b64: &str) -> Result<ServerSigningKey, JsError> {
    ServerSigningKey::from_seed_b64(server, key_id, seed_b64).ok_or_else(|| js_error("invalid signing key seed"))
}

pub(crate) fn to_json(v: &Value) -> String {
    serde_json::to_string(v).expect("serde_json::Value always serializes")
}

/// Trusted server keys: pinned ones and verified fetched ones.
#[wasm_bindgen(js_name = KeyRing)]
#[derive(Default)]
pub struct WasmKeyRing {
    ring: KeyRing,
}

#[wasm_bindgen(js_class = KeyRing)]
impl WasmKeyRing {
    /// An empty key ring.
    #[wasm_bindgen(constructor)]
    pub fn new() -> Self {
        Self::default()
    }

    /// Pins `server`'s key `keyId` (unpadded base64).
    pub fn pin(&mut self, server: &str, key_id: &str, public_key: &str) -> Result<(), JsError> {
        if self.ring.pin_b64(server, key_id, public_key) {
            Ok(())
        } else {
            Err(js_error(format!("invalid ed25519 public key for {server} {key_id}")))
        }
    }

    /// Verifies and adds a `/_matrix/key/v2/server` response of `server`.
    /// Returns the number of keys added.
    #[wasm_bindgen(js_name = addServerKeys)]
    pub fn add_server_keys(&mut self, response_json: &str, server: &str, now_ms: f64) -> Result<u32, JsError> {
        let v: Value = serde_json::from_str(response_json).map_err(js_error)?;
        let keys = parse_server_keys(&v, server, now_ms as i64).map_err(js_error)?;
        let n = keys.len() as u32;
        self.ring.add_fetched(keys);
        Ok(n)
    }

    /// Verifies and adds a notary's `/_matrix/key/v2/query` response. Only
    /// `notaryKeys` (JSON `{keyId: base64}`: the keys configured for this
    /// notary) verify the notary's signature; only entries for the servers
    /// `asked` about are used. Returns the number of keys added.
    #[wasm_bindgen(js_name = addNotaryKeys)]
    pub fn add_notary_keys(
        &mut self,
        response_json: &str,
        notary: &str,
        notary_keys_json: &str,
        asked: Vec<String>,
        now_ms: f64,
    ) -> Result<u32, JsError> {
        let v: Value = serde_json::from_str(response_json).map_err(js_error)?;
        let configured: std::collections::HashMap<String, String> =
            serde_json::from_str(notary_keys_json).map_err(|e| js_error(format!("notary keys of {notary}: {e}")))?;
        let notary_keys = notary_keys_from_b64(configured.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .ok_or_else(|| js_error(format!("notary keys of {notary}: not ed25519 keys")))?;
        let asked: Vec<&str> = asked.iter().map(String::as_str).collect();
        let keys = parse_notary_response(&v, notary, &notary_keys, &asked, now_ms as i64).map_err(js_error)?;
        let n = keys.len() as u32;
        self.ring.add_fetched(keys);
        Ok(n)
    }

    /// The keys of `servers` (JSON `[{server, keyId, key, validUntilTs, old}]`),
    /// to hand to another ring with [`importKeys`](Self::import_keys).
    #[wasm_bindgen(js_name = exportKeys)]
    pub fn export_keys(&self, servers: Vec<String>) -> String {
        let servers: Vec<&str> = servers.iter().map(String::as_str).collect();
        serde_json::to_string(&self.ring.export_keys(&servers)).expect("keys serialize")
    }

    /// Adds keys [`exportKeys`](Self::export_keys) gave (already verified by
    /// the ring they came from). Returns how many were added.
    #[wasm_bindgen(js_name = importKeys)]
    pub fn import_keys(&mut self, keys_json: &str) -> Result<u32, JsError> {
        let keys: Vec<ExportedKey> = serde_json::from_str(keys_json).map_err(js_error)?;
        self.ring.import_keys(&keys).map(|n| n as u32).ok_or_else(|| js_error("importKeys: invalid key"))
    }

    /// Whether a key usable for request authentication at `nowMs` is known.
    #[wasm_bindgen(js_name = hasRequestKey)]
    pub fn has_request_key(&self, server: &str, key_id: &str, now_ms: f64) -> bool {
        self.ring.request_key(server, key_id, now_ms as i64).is_some()
    }

    /// Number of keys held.
    #[wasm_bindgen(getter)]
    pub fn size(&self) -> u32 {
        self.ring.len() as u32
    }
}

/// The `GET /_matrix/federation/v1/version` answer (JSON): `{"server":
/// {"name": "roomdag", "version": <the crate's version>}}`.
#[wasm_bindgen(js_name = versionBody)]
pub fn version_body() -> String {
    to_json(&http::version_body())
}

/// Identifies a request: JSON `{endpoint, roomId?, eventId?, txnId?,
/// needsAuth}` or `{status, body}` for unknown paths and wrong methods.
#[wasm_bindgen(js_name = routeRequest)]
pub fn route_request(method: &str, target: &str) -> String {
    let r = Target::parse(target).and_then(|t| http::route(method, &t));
    to_json(&match r {
        Ok(e) => {
            let (name, extra) = match &e {
                Endpoint::ServerKeys => ("server_keys", json!({})),
                Endpoint::Version => ("version", json!({})),
                Endpoint::Send { txn_id } => ("send", json!({"txnId": txn_id})),
                Endpoint::Event { event_id } => ("event", json!({"eventId": event_id})),
                Endpoint::State { room_id } => ("state", json!({"roomId": room_id})),
                Endpoint::StateIds { room_id } => ("state_ids", json!({"roomId": room_id})),
                Endpoint::Backfill { room_id } => ("backfill", json!({"roomId": room_id})),
                Endpoint::GetMissingEvents { room_id } => ("get_missing_events", json!({"roomId": room_id})),
                Endpoint::TimestampToEvent { room_id } => ("timestamp_to_event", json!({"roomId": room_id})),
                Endpoint::Invite { room_id, event_id, v2 } => {
                    ("invite", json!({"roomId": room_id, "eventId": event_id, "v2": v2}))
                }
                Endpoint::EventAuth { room_id, event_id } => {
                    ("event_auth", json!({"roomId": room_id, "eventId": event_id}))
                }
            };
            let mut m = extra.as_object().cloned().unwrap_or_default();
            m.insert("endpoint".into(), json!(name));
            m.insert("needsAuth".into(), json!(e.needs_auth()));
            Value::Object(m)
        }
        Err(e) => json!({"status": e.status, "body": e.body()}),
    })
}

/// The first authentication checks, before the body is read (see
/// `check_request_headers`): JSON `{origin}` (a key of the claimed origin is
/// held), `{needKey: {server, keyId}}`, or the `{status, body}` refusal.
#[wasm_bindgen(js_name = authenticateHeaders)]
pub fn authenticate_headers(
    authorization: Vec<String>,
    our_server_name: &str,
    keys: &WasmKeyRing,
    now_ms: f64,
) -> String {
    let headers: Vec<&str> = authorization.iter().map(String::as_str).collect();
    let view = RequestKeys { ring: &keys.ring, now_ms: now_ms as i64 };
    to_json(&match check_request_headers(&headers, our_server_name, &view) {
        Ok(origin) => json!({"origin": origin}),
        Err(RequestAuthError::UnknownKey { server, key_id }) => json!({"needKey": {"server": server, "keyId": key_id}}),
        Err(e) => json!({"status": e.status(), "body": {"errcode": "M_UNAUTHORIZED", "error": e.to_string()}}),
    })
}

/// Answers a room query for a room this server does not hold (as the
/// reference server does: see `unknown_room_query`): JSON `{status, body}`.
#[wasm_bindgen(js_name = unknownRoomQuery)]
pub fn unknown_room_query(
    method: &str,
    target: &str,
    body: Option<String>,
    origin: &str,
    our_server_name: &str,
    now_ms: f64,
) -> String {
    answer_json(routed(method, target, body.as_deref()).and_then(|(endpoint, t, body)| {
        http::unknown_room_query(&endpoint, &t, body.as_ref(), origin, our_server_name, now_ms as i64)
    }))
}

/// A request's endpoint, target and JSON body (for the room queries).
fn routed(method: &str, target: &str, body: Option<&str>) -> Result<(Endpoint, Target, Option<Value>), HttpError> {
    let t = Target::parse(target)?;
    let endpoint = http::route(method, &t)?;
    let body = match body {
        Some(b) if !b.is_empty() => Some(http::parse_body(b.as_bytes())?),
        _ => None,
    };
    Ok((endpoint, t, body))
}

/// A query's answer as JSON `{status, body}`.
fn answer_json(result: Result<Value, HttpError>) -> String {
    to_json(&match result {
        Ok(body) => json!({"status": 200, "body": body}),
        Err(e) => json!({"status": e.status, "body": e.body()}),
    })
}

/// Groups a transaction's PDUs by room: JSON `[{roomId, pdus: [index…],
/// create: {index, roomVersion} | null}]` (see `group_pdus`).
#[wasm_bindgen(js_name = groupPdus)]
pub fn group_pdus(pdus: Vec<String>) -> String {
    let raws: Vec<&str> = pdus.iter().map(String::as_str).collect();
    let groups: Vec<Value> = http::group_pdus(&raws)
        .into_iter()
        .map(|g| {
            let create = g.create.map(|(i, v)| json!({"index": i, "roomVersion": v}));
            json!({"roomId": g.room_id, "pdus": g.pdus, "create": create})
        })
        .collect();
    to_json(&Value::Array(groups))
}

/// Checks a create event that would start a room (parse, signatures with
/// `keys`, content hash, auth rules): JSON `{roomId, eventId}` or `{error}`.
#[wasm_bindgen(js_name = checkCreateEvent)]
pub fn check_create_event(raw: &str, room_version: &str, keys: &WasmKeyRing) -> String {
    to_json(&match http::check_create_event(raw, room_version, &keys.ring) {
        Ok((room_id, event_id)) => json!({"roomId": room_id, "eventId": event_id}),
        Err(error) => json!({"error": error}),
    })
}

/// The size of this module's wasm memory in bytes: the most it has held at
/// once (a wasm memory grows and never shrinks).
#[wasm_bindgen(js_name = wasmMemoryBytes)]
pub fn wasm_memory_bytes() -> f64 {
    (core::arch::wasm32::memory_size::<0>() * 65_536) as f64
}

/// The serving limits (bytes and counts) the JS layer enforces before
/// calling into the core: JSON.
#[wasm_bindgen(js_name = servingLimits)]
pub fn serving_limits() -> String {
    to_json(&json!({
        "maxBodyBytes": http::MAX_BODY_BYTES,
        "maxTxnPdus": http::MAX_TXN_PDUS,
        "maxTxnEdus": http::MAX_TXN_EDUS,
        "maxTxnIdBytes": http::MAX_TXN_ID_BYTES,
        "maxReasonBytes": crate::room::MAX_REASON_BYTES,
    }))
}

/// Authenticates a request (X-Matrix): JSON `{origin}`, `{needKey: {server,
/// keyId}}` (fetch it, add it to the ring, ask again), or `{status, body}`.
#[wasm_bindgen(js_name = authenticateRequest)]
pub fn authenticate(
    authorization: Vec<String>,
    method: &str,
    target: &str,
    body: Option<String>,
    our_server_name: &str,
    keys: &WasmKeyRing,
    now_ms: f64,
) -> String {
    let headers: Vec<&str> = authorization.iter().map(String::as_str).collect();
    // Unauthenticated requests are refused before their body is looked at.
    let content = match body.as_deref().filter(|b| !b.is_empty()) {
        None => None,
        Some(_)
            if !headers.iter().any(|h| h.trim_start().get(..8).is_some_and(|s| s.eq_ignore_ascii_case("X-Matrix"))) =>
        {
            return to_json(
                &json!({"status": 401, "body": {"errcode": "M_UNAUTHORIZED", "error": RequestAuthError::Missing.to_string()}}),
            );
        }
        Some(b) => match http::parse_body(b.as_bytes()) {
            Ok(v) => Some(v),
            Err(e) => return to_json(&json!({"status": e.status, "body": e.body()})),
        },
    };
    let view = RequestKeys { ring: &keys.ring, now_ms: now_ms as i64 };
    to_json(&match authenticate_request(
        &headers,
        method,
        target,
        content.as_ref(),
        our_server_name,
        &view,
        now_ms as i64,
    ) {
        Ok(origin) => json!({"origin": origin}),
        Err(RequestAuthError::UnknownKey { server, key_id }) => json!({"needKey": {"server": server, "keyId": key_id}}),
        Err(e) => {
            let status = e.status();
            json!({"status": status, "body": {"errcode": "M_UNAUTHORIZED", "error": e.to_string()}})
        }
    })
}

/// Splits a `/send` body: JSON `{pdus: [text…], eduCount}` or `{status, body}`.
#[wasm_bindgen(js_name = parseTransaction)]
pub fn parse_transaction(body: &str) -> String {
    to_json(&match http::parse_transaction(body) {
        Ok(t) => json!({"pdus": t.pdus.iter().map(|p| p.get()).collect::<Vec<_>>(), "eduCount": t.edu_count}),
        Err(e) => json!({"status": e.status, "body": e.body()}),
    })
}

/// The room of a PDU: JSON `{roomId, createRoomVersion}` (either may be null), or null.
#[wasm_bindgen(js_name = pduRoom)]
pub fn pdu_room(raw: &str) -> String {
    to_json(&match http::pdu_room(raw) {
        Some(p) => json!({"roomId": p.room_id, "createRoomVersion": p.create_room_version}),
        None => Value::Null,
    })
}

/// The room ID a create event defines (v12: from its hash; before: its `room_id`).
#[wasm_bindgen(js_name = createEventRoomId)]
pub fn create_event_room_id(raw: &str, room_version: &str) -> Result<String, JsError> {
    let rules = crate::room_version::RoomVersionRules::supported(room_version).map_err(js_error)?;
    let pdu = crate::pdu::parse_pdu(raw, rules).map_err(js_error)?;
    Ok(pdu.room_id)
}

/// The event ID of a PDU for a room version (its reference hash).
#[wasm_bindgen(js_name = pduEventId)]
pub fn pdu_event_id(raw: &str, room_version: &str) -> Result<String, JsError> {
    let rules = crate::room_version::RoomVersionRules::supported(room_version).map_err(js_error)?;
    let pdu = crate::pdu::parse_pdu(raw, rules).map_err(js_error)?;
    Ok(pdu.event_id.as_str().to_owned())
}

/// Our `/_matrix/key/v2/server` answer (JSON), signed with the key from `seed`.
#[wasm_bindgen(js_name = serverKeysResponse)]
pub fn server_keys(
    server_name: &str,
    key_id: &str,
    seed_b64: &str,
    now_ms: f64,
    validity_ms: f64,
) -> Result<String, JsError> {
    let key = signing_key(server_name, key_id, seed_b64)?;
    Ok(to_json(&server_keys_response(&key, now_ms as i64, validity_ms as i64)))
}

/// Signs a JSON object (spec "Signing JSON") as `server`: returns it with the
/// signature added.
#[wasm_bindgen(js_name = signJson)]
pub fn sign_json(object: &str, server: &str, key_id: &str, seed_b64: &str) -> Result<String, JsError> {
    let key = signing_key(server, key_id, seed_b64)?;
    let Value::Object(mut m) = serde_json::from_str::<Value>(object).map_err(js_error)? else {
        return Err(js_error("only JSON objects can be signed"));
    };
    key.sign_json(&mut m);
    Ok(to_json(&Value::Object(m)))
}

/// The public key (unpadded base64) of a signing key seed.
#[wasm_bindgen(js_name = publicKeyOf)]
pub fn public_key_of(seed_b64: &str) -> Result<String, JsError> {
    let key = signing_key("x", "ed25519:x", seed_b64)?;
    Ok(key.public_key_b64())
}

/// Signs a request as `origin`: the `Authorization` header value.
#[wasm_bindgen(js_name = signRequest)]
#[allow(clippy::too_many_arguments)]
pub fn sign_request(
    origin: &str,
    key_id: &str,
    seed_b64: &str,
    destination: &str,
    method: &str,
    target: &str,
    body: Option<String>,
) -> Result<String, JsError> {
    let key = signing_key(origin, key_id, seed_b64)?;
    let content = match body.as_deref().filter(|b| !b.is_empty()) {
        Some(b) => Some(serde_json::from_str::<Value>(b).map_err(js_error)?),
        None => None,
    };
    let object = request_signing_object(method, target, origin, destination, content.as_ref());
    let sig = key.sign_bytes(crate::canonical_json::object_to_canonical_string(&object).as_bytes());
    Ok(XMatrix { origin: origin.into(), destination: Some(destination.into()), key: key_id.into(), sig }.to_header())
}

/// The redacted form of a PDU in a room version (JSON text).
#[wasm_bindgen(js_name = redactPdu)]
pub fn redact_pdu(pdu: &str, room_version: &str) -> Result<String, JsError> {
    let rules = crate::room_version::RoomVersionRules::supported(room_version).map_err(js_error)?;
    let Value::Object(event) = serde_json::from_str::<Value>(pdu).map_err(js_error)? else {
        return Err(js_error("a PDU must be a JSON object"));
    };
    Ok(to_json(&Value::Object(crate::redaction::redact(&event, rules))))
}

/// Hashes and signs an event as `server` (for tools and tests): JSON
/// `{eventId, pdu}`.
#[wasm_bindgen(js_name = signPdu)]
pub fn sign_pdu(pdu: &str, room_version: &str, server: &str, key_id: &str, seed_b64: &str) -> Result<String, JsError> {
    let rules = crate::room_version::RoomVersionRules::supported(room_version).map_err(js_error)?;
    let key = signing_key(server, key_id, seed_b64)?;
    let Value::Object(mut event) = serde_json::from_str::<Value>(pdu).map_err(js_error)? else {
        return Err(js_error("a PDU must be a JSON object"));
    };
    let event_id = crate::signing::hash_and_sign_event(&mut event, rules, &key);
    Ok(to_json(&json!({"eventId": event_id, "pdu": Value::Object(event)})))
}

/// The native CLI's `replay`, on wasm: a fixture (JSON text) and its queries
/// (JSON text) → `roomdag-answers/1` JSON text. `verify`, when given, is
/// `(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array) =>
/// boolean` and replaces the built-in ed25519 check (e.g. Node's crypto).
#[wasm_bindgen(js_name = replayFixture)]
pub fn replay_fixture(fixture: &[u8], queries: &[u8], verify: Option<js_sys::Function>) -> Result<String, JsError> {
    let queries = crate::fixture::read_queries(queries).map_err(|e| match e {
        crate::fixture::FixtureError::Invalid(m) => js_error(format!("queries: {m}")),
        crate::fixture::FixtureError::Json(j) => js_error(format!("queries: not a roomdag-queries/1 file: {j}")),
        e => js_error(format!("queries: {e}")),
    })?;
    let host = verify.map(|f| {
        move |key: &[u8; 32], msg: &[u8], sig: &[u8; 64]| -> bool {
            let r = f.call3(
                &JsValue::NULL,
                &js_sys::Uint8Array::from(&key[..]),
                &js_sys::Uint8Array::from(msg),
                &js_sys::Uint8Array::from(&sig[..]),
            );
            r.ok().and_then(|v| v.as_bool()).unwrap_or(false)
        }
    });
    let host_ref: Option<conformance::HostVerify<'_>> = host.as_ref().map(|h| h as _);
    let mut replay = conformance::replay_with(fixture, host_ref).map_err(js_error)?;
    let mut out = Vec::new();
    replay.write_answers(&queries.queries, &mut out).map_err(js_error)?;
    String::from_utf8(out).map_err(js_error)
}

/// The native CLI's `export`, on wasm: a fixture → graph JSON or DOT.
#[wasm_bindgen(js_name = exportFixture)]
pub fn export_fixture(fixture: &[u8], format: &str, auth_edges: bool) -> Result<String, JsError> {
    let replay = conformance::replay(fixture).map_err(js_error)?;
    match format {
        "json" => Ok(to_json(&export::graph_json(&replay.room).map_err(js_error)?)),
        "dot" => export::graph_dot(&replay.room, auth_edges).map_err(js_error),
        other => Err(js_error(format!("unknown format {other:?} (json or dot)"))),
    }
}

/// A synthetic demo room (`matrix-dag-oracle/1` JSON text) of about `events`
/// events, at most [`MAX_EVENTS`](crate::demo::MAX_EVENTS).
#[wasm_bindgen(js_name = demoRoom)]
pub fn demo_room(events: u32) -> Result<String, JsError> {
    if events as usize > crate::demo::MAX_EVENTS {
        return Err(js_error(format!("events must be at most {}, not {events}", crate::demo::MAX_EVENTS)));
    }
    Ok(to_json(&crate::demo::demo_room(events as usize)))
}

/// The room versions this engine hosts, in order ("3" … "12").
#[wasm_bindgen(js_name = roomVersions)]
pub fn room_versions() -> Vec<String> {
    crate::room_version::RoomVersionRules::ALL
        .iter()
        .filter(|r| crate::room_version::RoomVersionRules::supported(r.id).is_ok())
        .map(|r| r.id.to_owned())
        .collect()
}

/// Builds a room from a fixture (JSON text) for inspection (the visualizer).
#[wasm_bindgen(js_name = roomFromFixture)]
pub fn room_from_fixture(fixture: &[u8]) -> Result<WasmRoom, JsError> {
    let replay = conformance::replay(fixture).map_err(js_error)?;
    Ok(WasmRoom { room: replay.room, checkpoint: None })
}
