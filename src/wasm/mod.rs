//! WebAssembly bindings (wasm-bindgen). Only conversion lives here: every
//! algorithm is in the core. Structured results cross the boundary as JSON
//! text (parsed once by the JS layer, `pkg/api.js`), which is both faster and
//! simpler than building JS objects field by field.

use serde_json::{json, Value};
use wasm_bindgen::prelude::*;

use crate::conformance;
use crate::event::EventStatus;
use crate::export;
use crate::http::keys::{
    notary_keys_from_b64, parse_notary_response, parse_server_keys, server_keys_response, ExportedKey, KeyRing,
    RequestKeys,
};
use crate::http::xmatrix::{
    authenticate_request, check_request_headers, request_signing_object, RequestAuthError, XMatrix,
};
use crate::http::{self, Endpoint, HttpError, Target};
use crate::pages::RestoreRows;
use crate::placement::{EventRecord, LogRecord, Placement, RecordKind, Restoring};
use crate::room::{Checkpoint, Outcome, Room, Verification};
use crate::signing::ServerSigningKey;

mod client;
mod federation;
mod pages;

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

fn outcome_json(o: &Outcome) -> Value {
    match o {
        Outcome::Accepted { event_id, redacted_on_receipt } => {
            json!({"eventId": event_id.as_str(), "status": "accepted", "redactedOnReceipt": redacted_on_receipt})
        }
        Outcome::Rejected { event_id, reason, redacted_on_receipt } => {
            json!({"eventId": event_id.as_str(), "status": "rejected", "reason": reason, "redactedOnReceipt": redacted_on_receipt})
        }
        Outcome::Dropped { event_id, stage, reason } => {
            json!({"eventId": event_id.as_ref().map(|e| e.as_str()), "status": "dropped", "stage": stage, "reason": reason})
        }
        Outcome::Duplicate { event_id } => json!({"eventId": event_id.as_str(), "status": "duplicate"}),
        Outcome::Deferred { event_id } => json!({"eventId": event_id.as_str(), "status": "deferred"}),
    }
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

/// The page cache when none is given: 8 MiB.
const DEFAULT_CACHE_BYTES: f64 = 8.0 * 1024.0 * 1024.0;

/// One room: its DAG, states and indexes.
#[wasm_bindgen(js_name = Room)]
pub struct WasmRoom {
    pub(crate) room: Room,
    pub(crate) checkpoint: Option<Checkpoint>,
}

#[wasm_bindgen(js_class = Room)]
impl WasmRoom {
    /// An empty room of `roomVersion` ("3" … "12").
    #[wasm_bindgen(constructor)]
    pub fn new(room_version: &str) -> Result<WasmRoom, JsError> {
        Ok(Self { room: Room::new(room_version).map_err(js_error)?, checkpoint: None })
    }

    /// The room ID, once its create event is stored.
    #[wasm_bindgen(getter, js_name = roomId)]
    pub fn room_id(&self) -> Option<String> {
        self.room.room_id().map(str::to_owned)
    }

    /// The room version.
    #[wasm_bindgen(getter, js_name = roomVersion)]
    pub fn room_version(&self) -> String {
        self.room.rules().id.to_owned()
    }

    /// Number of stored events.
    #[wasm_bindgen(getter, js_name = eventCount)]
    pub fn event_count(&self) -> u32 {
        self.room.events().len() as u32
    }

    /// Starts a batch: [`rollback`](Self::rollback) undoes everything stored after this.
    pub fn begin(&mut self) {
        self.checkpoint = Some(self.room.checkpoint());
    }

    /// Ends a batch whose records were written.
    pub fn commit(&mut self) {
        if let Some(cp) = self.checkpoint.take() {
            self.room.release(cp);
        }
    }

    /// Undoes the current batch (its records could not be written).
    pub fn rollback(&mut self) -> Result<(), JsError> {
        let cp = self.checkpoint.take().ok_or_else(|| js_error("rollback without begin"))?;
        self.room.rollback(cp);
        Ok(())
    }

    /// Receives PDUs (JSON text each), checking signatures with `keys`.
    /// Returns a JSON array of outcomes.
    pub fn ingest(&mut self, pdus: Vec<String>, keys: &WasmKeyRing) -> String {
        self.ingest_batch(&pdus, Placement::Timeline, keys, |_| false)
    }

    /// Starts a restore of a room from its store's log, fed in parts (see
    /// `RoomRestore`): `head` is the log up to its last rebuild marker (empty
    /// when it has none), records `{eventId, status, raw, kind?, state?}`
    /// and rebuild markers `{rebuild: true}` in order (see the core's
    /// `placement` module); the records after it follow with `push`.
    /// Signatures were verified when the records were first stored.
    ///
    /// With `pages` (see [`setPages`](Self::set_pages)), the restored room
    /// keeps its PDU texts there, behind a cache of `cacheBytes`; with
    /// `trustRows`, the page store holds the row of every record already
    /// (each written with its record) and the restore writes none.
    #[wasm_bindgen(js_name = restoreStart)]
    pub fn restore_start(
        room_version: &str,
        head: JsValue,
        pages: Option<JsValue>,
        cache_bytes: Option<f64>,
        trust_rows: Option<bool>,
    ) -> Result<WasmRestoring, JsError> {
        let head = log_of(head)?;
        let (room, rows) = Self::to_restore(room_version, pages, cache_bytes, trust_rows)?;
        Ok(WasmRestoring { inner: Some(Restoring::start(room, head, rows).map_err(js_error)?) })
    }

    /// Receives PDUs placed as `placement` says: `timeline` (live: every
    /// prev event must be placed), `history` (backfilled: kept pending until
    /// a rebuild when its prev events are not placed) or `outlier` (state or
    /// auth chain). Returns a JSON array of outcomes. With `untilRejected`,
    /// stops right after the first rejected PDU (its outcome is the last of
    /// the answer): the caller counts it against the sender's bound before
    /// going on.
    #[wasm_bindgen(js_name = ingestAs)]
    pub fn ingest_as(
        &mut self,
        pdus: Vec<String>,
        placement: &str,
        keys: &WasmKeyRing,
        until_rejected: Option<bool>,
    ) -> Result<String, JsError> {
        let placement = match placement {
            "timeline" => Placement::Timeline,
            "history" => Placement::History,
            "outlier" => Placement::Outlier,
            "live" => Placement::Live,
            other => {
                return Err(js_error(format!("placement must be timeline, live, history or outlier, not {other:?}")))
            }
        };
        let until_rejected = until_rejected.unwrap_or(false);
        Ok(self.ingest_batch(&pdus, placement, keys, |o| until_rejected && matches!(o, Outcome::Rejected { .. })))
    }

    /// Receives a timeline PDU whose state before comes from a verified
    /// remote answer (`stateIds`: stored state events), used where its prev
    /// events are not placed. Returns the outcome as JSON.
    #[wasm_bindgen(js_name = ingestWithState)]
    pub fn ingest_with_state(&mut self, pdu: &str, state_ids: Vec<String>, keys: &WasmKeyRing) -> String {
        to_json(&outcome_json(&self.room.ingest_as(
            pdu,
            Placement::WithState(&state_ids),
            Verification::Keys(&keys.ring),
        )))
    }

    /// The records of what was stored since the last call, numbered from
    /// `first` (their positions in the store's log), as a JSON array of
    /// `{i, eventId, status, raw, kind, state?}` (what a store appends).
    /// With `paged`, the store keeps the room's page store, where the PDU of
    /// each accepted or rejected event already is: those records carry
    /// `paged: true` instead of `raw` (a store reads it back on load).
    #[wasm_bindgen(js_name = takeRecords)]
    pub fn take_records(&mut self, first: u32, paged: Option<bool>) -> String {
        let paged = paged == Some(true);
        let out: Vec<Value> = self
            .room
            .take_records()
            .iter()
            .enumerate()
            .map(|(n, r)| {
                let status = r.status.map_or(json!("deferred"), |s| json!(s));
                let mut v = json!({"i": first as usize + n, "eventId": r.event_id(), "status": status, "kind": r.kind});
                if paged && r.status.is_some() {
                    v["paged"] = json!(true);
                } else {
                    v["raw"] = json!(r.raw());
                }
                if r.soft_failed {
                    v["softFailed"] = json!(true);
                }
                if let Some(state) = &r.state {
                    v["state"] = json!(state);
                }
                v
            })
            .collect();
        to_json(&Value::Array(out))
    }

    /// The backward extremities (`[[eventId, depth], …]`, newest gaps first):
    /// what `/backfill` is asked for.
    #[wasm_bindgen(js_name = backwardExtremities)]
    pub fn backward_extremities(&self) -> String {
        to_json(&json!(self.room.backward_extremities()))
    }

    /// History events waiting for a rebuild to place them.
    #[wasm_bindgen(getter, js_name = pendingCount)]
    pub fn pending_count(&self) -> u32 {
        self.room.pending().count() as u32
    }

    /// The servers with a joined member, in the order to ask them for
    /// history (by when they joined), without `except` (ourselves).
    #[wasm_bindgen(js_name = serversInRoomOrdered)]
    pub fn servers_in_room_ordered(&self, except: &str) -> Vec<String> {
        let current = self.room.current_state_map();
        crate::visibility::servers_in_room_ordered(&self.room, &current, except)
    }

    /// Whether `server` has a joined member in the current state.
    #[wasm_bindgen(js_name = serverInRoom)]
    pub fn server_in_room(&self, server: &str) -> bool {
        crate::visibility::server_in_room(&self.room, &self.room.current_state_map(), server)
    }

    /// The forward extremities (event IDs).
    #[wasm_bindgen(js_name = forwardExtremities)]
    pub fn forward_extremities(&self) -> Vec<String> {
        self.room.forward_extremities().map(|e| self.room.id(e).to_owned()).collect()
    }

    /// The least depth of the timeline (`min_depth` of `/get_missing_events`).
    #[wasm_bindgen(getter, js_name = minDepth)]
    pub fn min_depth(&self) -> f64 {
        self.room.min_depth() as f64
    }

    /// The prev events of a PDU (JSON text) that are not placed in the
    /// timeline here: what gap filling must fetch before it can be placed.
    #[wasm_bindgen(js_name = unplacedPrevEvents)]
    pub fn unplaced_prev_events(&self, pdu: &str) -> Result<Vec<String>, JsError> {
        let parsed = crate::pdu::parse_pdu(pdu, self.room.rules()).map_err(js_error)?;
        Ok(parsed
            .prev_events
            .into_iter()
            .filter(|p| self.room.lookup(p).is_none_or(|e| self.room.is_outlier(e)))
            .collect())
    }

    /// The state resolved from several remote states (a JSON array of
    /// arrays of stored state event IDs): event IDs.
    #[wasm_bindgen(js_name = resolveRemoteStates)]
    pub fn resolve_remote_states(&mut self, states: &str) -> Result<Vec<String>, JsError> {
        let states: Vec<Vec<String>> = serde_json::from_str(states).map_err(js_error)?;
        self.room.resolve_remote_states(&states).map_err(js_error)
    }

    /// Auth events of deferred history events that are neither stored nor deferred.
    #[wasm_bindgen(js_name = missingAuthEvents)]
    pub fn missing_auth_events(&self) -> Vec<String> {
        self.room.missing_auth_events()
    }

    /// History events logged before their auth events.
    #[wasm_bindgen(getter, js_name = deferredCount)]
    pub fn deferred_count(&self) -> u32 {
        self.room.deferred_count() as u32
    }

    /// Whether a stored event is an outlier (`undefined` if not stored).
    #[wasm_bindgen(js_name = isOutlier)]
    pub fn is_outlier(&self, event_id: &str) -> Option<bool> {
        self.room.lookup(event_id).map(|e| self.room.is_outlier(e))
    }

    /// Answers a room-scoped federation query (`/state_ids`, `/state`,
    /// `/backfill`, `/get_missing_events`, `/timestamp_to_event`, `/event`,
    /// `/event_auth`)
    /// for an authenticated origin: JSON `{status, body}`.
    #[wasm_bindgen(js_name = federationQuery)]
    pub fn federation_query(
        &mut self,
        method: &str,
        target: &str,
        body: Option<String>,
        origin: &str,
        our_server_name: &str,
        now_ms: f64,
    ) -> String {
        let answer = answer_json(routed(method, target, body.as_deref()).and_then(|(endpoint, t, body)| {
            http::room_query(&self.room, &endpoint, &t, body.as_ref(), origin, our_server_name, now_ms as i64)
        }));
        // The states the query built stay only within the room's budget.
        self.room.trim_caches();
        answer
    }

    /// Whether `origin` may read the room's state (joined, then admitted by
    /// the ACL): JSON `null`, or the `{status, body}` error answer.
    #[wasm_bindgen(js_name = stateAccess)]
    pub fn state_access(&self, origin: &str) -> String {
        to_json(&match http::check_state_access(&self.room, origin) {
            Ok(()) => Value::Null,
            Err(e) => json!({"status": e.status, "body": e.body()}),
        })
    }

    /// Whether the room's server ACL lets `server` take part (true without an ACL).
    #[wasm_bindgen(js_name = aclAllows)]
    pub fn acl_allows(&self, server: &str) -> bool {
        http::check_acl(&self.room, server).is_ok()
    }

    /// Whether the event is stored here.
    #[wasm_bindgen(js_name = hasEvent)]
    pub fn has_event(&self, event_id: &str) -> bool {
        self.room.lookup(event_id).is_some()
    }

    /// The room graph (`roomdag-graph/1` JSON) for the visualizer.
    #[wasm_bindgen(js_name = exportGraph)]
    pub fn export_graph(&self) -> String {
        to_json(&export::graph_json(&self.room))
    }

    /// The lane layout (`rows`: "depth" or "arrival"): `[lane, row]` per
    /// event, in arrival order, flattened.
    pub fn layout(&self, rows: &str) -> Result<Vec<u32>, JsError> {
        let rows = match rows {
            "depth" => crate::layout::Rows::Depth,
            "arrival" => crate::layout::Rows::Arrival,
            other => return Err(js_error(format!("rows must be \"depth\" or \"arrival\", not {other:?}"))),
        };
        Ok(crate::layout::layout(&self.room, rows).into_iter().flat_map(|c| [c.lane, c.row]).collect())
    }

    /// The room graph as Graphviz DOT.
    #[wasm_bindgen(js_name = exportDot)]
    pub fn export_dot(&self, auth_edges: bool) -> String {
        export::graph_dot(&self.room, auth_edges)
    }

    /// Details of one event (JSON): status, states before and after, auth
    /// chain, redaction, and the servers that see it whole.
    #[wasm_bindgen(js_name = eventDetails)]
    pub fn event_details(&self, event_id: &str) -> Result<String, JsError> {
        let idx = self.room.lookup(event_id).ok_or_else(|| js_error(format!("unknown event {event_id}")))?;
        Ok(to_json(&export::event_details(&self.room, idx).map_err(|e| JsError::new(&e.to_string()))?))
    }

    /// The current state (JSON `{"type\u0000state_key": eventId}` plus its digest).
    #[wasm_bindgen(js_name = currentState)]
    pub fn current_state(&mut self) -> String {
        let id = self.room.current_state();
        to_json(&export::state_json(&self.room, id))
    }
}

/// A record as the JS stores keep it.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredRecordJs {
    #[serde(default)]
    event_id: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    raw: Option<String>,
    #[serde(default)]
    kind: Option<RecordKind>,
    #[serde(default)]
    state: Option<Vec<String>>,
    #[serde(default)]
    rebuild: bool,
    #[serde(default)]
    soft_failed: bool,
}

impl WasmRoom {
    /// An empty room to restore into, its PDU texts in `pages` when given,
    /// and what the restore does with the page rows.
    fn to_restore(
        room_version: &str,
        pages: Option<JsValue>,
        cache_bytes: Option<f64>,
        trust_rows: Option<bool>,
    ) -> Result<(Room, RestoreRows), JsError> {
        let mut room = Self::new(room_version)?;
        if let Some(p) = pages.filter(|p| !p.is_undefined() && !p.is_null()) {
            room.set_pages(p, cache_bytes.unwrap_or(DEFAULT_CACHE_BYTES))?;
        }
        let rows = if trust_rows == Some(true) { RestoreRows::Trust } else { RestoreRows::Write };
        Ok((room.room, rows))
    }

    /// Ingests `pdus` with [`Room::ingest_batch`] (signatures checked in
    /// batches), stopping after the first outcome `stop` holds for; the
    /// outcomes as a JSON array.
    fn ingest_batch(
        &mut self,
        pdus: &[String],
        placement: Placement<'_>,
        keys: &WasmKeyRing,
        stop: impl Fn(&Outcome) -> bool,
    ) -> String {
        let raws: Vec<&str> = pdus.iter().map(String::as_str).collect();
        let out: Vec<Value> =
            self.room.ingest_batch(&raws, placement, &keys.ring, stop).iter().map(outcome_json).collect();
        to_json(&Value::Array(out))
    }
}

/// A log of records from JS (`{eventId, status, raw, kind?, state?}` and
/// `{rebuild: true}`).
fn log_of(records: JsValue) -> Result<Vec<LogRecord>, JsError> {
    let stored: Vec<StoredRecordJs> = serde_wasm_bindgen::from_value(records).map_err(js_error)?;
    stored.into_iter().map(StoredRecordJs::into_log).collect()
}

/// A restore fed in parts (`Room.restoreStart`), so that the log is never
/// all in wasm memory at once (wasm memory does not shrink: a log copied in
/// whole would stay the room's size for good).
#[wasm_bindgen(js_name = RoomRestore)]
pub struct WasmRestoring {
    pub(crate) inner: Option<Restoring>,
}

#[wasm_bindgen(js_class = RoomRestore)]
impl WasmRestoring {
    /// Replays the next records after the last rebuild marker, in order.
    pub fn push(&mut self, records: JsValue) -> Result<(), JsError> {
        let inner = self.inner.as_mut().ok_or_else(|| js_error("RoomRestore: already finished"))?;
        inner.replay(log_of(records)?).map_err(js_error)
    }

    /// The restored room.
    pub fn finish(&mut self) -> Result<WasmRoom, JsError> {
        let inner = self.inner.take().ok_or_else(|| js_error("RoomRestore: already finished"))?;
        Ok(WasmRoom { room: inner.finish(), checkpoint: None })
    }
}

impl StoredRecordJs {
    fn into_log(self) -> Result<LogRecord, JsError> {
        if self.rebuild {
            return Ok(LogRecord::Rebuild);
        }
        let (Some(event_id), Some(raw)) = (self.event_id, self.raw) else {
            return Err(js_error("a stored record has no eventId or raw"));
        };
        let status = match self.status.as_deref() {
            None | Some("accepted") => Some(EventStatus::Accepted),
            Some("rejected") => Some(EventStatus::Rejected),
            Some("deferred") => None,
            Some(other) => return Err(js_error(format!("a stored record has status {other:?}"))),
        };
        let mut rec =
            EventRecord::with_kind(&event_id, &raw, status, self.kind.unwrap_or(RecordKind::Timeline), self.state);
        rec.soft_failed = self.soft_failed;
        Ok(LogRecord::Event(rec))
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
    let host_ref: Option<&dyn Fn(&[u8; 32], &[u8], &[u8; 64]) -> bool> = host.as_ref().map(|h| h as _);
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
        "json" => Ok(to_json(&export::graph_json(&replay.room))),
        "dot" => Ok(export::graph_dot(&replay.room, auth_edges)),
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
