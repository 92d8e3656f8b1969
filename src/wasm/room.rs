//! The `Room` class: one room's engine, its ingest, queries, records,
//! restore and image, as JS sees them (`RoomRestore` feeds a restore in
//! parts). Conversion only: the work is [`crate::room::Room`]'s.

use serde_json::{json, Value};
use wasm_bindgen::prelude::*;

use super::{answer_json, js_error, routed, to_json, WasmKeyRing};
use crate::event::EventStatus;
use crate::pages::RestoreRows;
use crate::placement::{EventRecord, LogRecord, Placement, RecordKind, Restoring};
use crate::room::{Checkpoint, Outcome, Room, Verification};
use crate::{export, http};

pub(crate) fn outcome_json(o: &Outcome) -> Value {
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
    pub fn backward_extremities(&self) -> Result<String, JsError> {
        Ok(to_json(&json!(self.room.backward_extremities().map_err(js_error)?)))
    }

    /// History events waiting for a rebuild to place them.
    #[wasm_bindgen(getter, js_name = pendingCount)]
    pub fn pending_count(&self) -> u32 {
        self.room.pending().count() as u32
    }

    /// The servers with a joined member, in the order to ask them for
    /// history (by when they joined), without `except` (ourselves).
    #[wasm_bindgen(js_name = serversInRoomOrdered)]
    pub fn servers_in_room_ordered(&self, except: &str) -> Result<Vec<String>, JsError> {
        let current = self.room.current_state_map().map_err(js_error)?;
        Ok(crate::visibility::servers_in_room_ordered(&self.room, &current, except))
    }

    /// Whether `server` has a joined member in the current state.
    #[wasm_bindgen(js_name = serverInRoom)]
    pub fn server_in_room(&self, server: &str) -> Result<bool, JsError> {
        let current = self.room.current_state_map().map_err(js_error)?;
        Ok(crate::visibility::server_in_room(&self.room, &current, server))
    }

    /// The forward extremities (event IDs).
    #[wasm_bindgen(js_name = forwardExtremities)]
    pub fn forward_extremities(&self) -> Result<Vec<String>, JsError> {
        self.room.forward_extremities().map(|e| Ok(self.room.id(e).map_err(js_error)?.to_owned())).collect()
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
        let mut unplaced = Vec::new();
        for p in parsed.prev_events {
            let found = self.room.lookup(&p).map_err(js_error)?;
            if found.map(|e| self.room.is_outlier(e)).transpose().map_err(js_error)?.unwrap_or(true) {
                unplaced.push(p);
            }
        }
        Ok(unplaced)
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
    pub fn is_outlier(&self, event_id: &str) -> Result<Option<bool>, JsError> {
        let found = self.room.lookup(event_id).map_err(js_error)?;
        found.map(|e| self.room.is_outlier(e)).transpose().map_err(js_error)
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
    pub fn has_event(&self, event_id: &str) -> Result<bool, JsError> {
        Ok(self.room.lookup(event_id).map_err(js_error)?.is_some())
    }

    /// The room graph (`roomdag-graph/1` JSON) for the visualizer.
    #[wasm_bindgen(js_name = exportGraph)]
    pub fn export_graph(&self) -> Result<String, JsError> {
        Ok(to_json(&export::graph_json(&self.room).map_err(js_error)?))
    }

    /// The lane layout (`rows`: "depth" or "arrival"): `[lane, row]` per
    /// event, in arrival order, flattened.
    pub fn layout(&self, rows: &str) -> Result<Vec<u32>, JsError> {
        let rows = match rows {
            "depth" => crate::layout::Rows::Depth,
            "arrival" => crate::layout::Rows::Arrival,
            other => return Err(js_error(format!("rows must be \"depth\" or \"arrival\", not {other:?}"))),
        };
        Ok(crate::layout::layout(&self.room, rows)
            .map_err(js_error)?
            .into_iter()
            .flat_map(|c| [c.lane, c.row])
            .collect())
    }

    /// The room graph as Graphviz DOT.
    #[wasm_bindgen(js_name = exportDot)]
    pub fn export_dot(&self, auth_edges: bool) -> Result<String, JsError> {
        export::graph_dot(&self.room, auth_edges).map_err(js_error)
    }

    /// Details of one event (JSON): status, states before and after, auth
    /// chain, redaction, and the servers that see it whole.
    #[wasm_bindgen(js_name = eventDetails)]
    pub fn event_details(&self, event_id: &str) -> Result<String, JsError> {
        let idx = self
            .room
            .lookup(event_id)
            .map_err(js_error)?
            .ok_or_else(|| js_error(format!("unknown event {event_id}")))?;
        Ok(to_json(&export::event_details(&self.room, idx).map_err(|e| JsError::new(&e.to_string()))?))
    }

    /// The current state (JSON `{"type\u0000state_key": eventId}` plus its digest).
    #[wasm_bindgen(js_name = currentState)]
    pub fn current_state(&mut self) -> Result<String, JsError> {
        let id = self.room.current_state().map_err(js_error)?;
        Ok(to_json(&export::state_json(&self.room, id).map_err(js_error)?))
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
