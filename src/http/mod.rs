//! The federation endpoints, sans IO: routing, request authentication,
//! parameter checks and the wire format of every answer.
//!
//! A host (the JS package, the Worker, a native server) receives the HTTP
//! request, asks [`route`] what it is, authenticates it with
//! [`xmatrix::authenticate_request`] (fetching keys it lacks, then asking
//! again), loads the room, and calls [`room_query`] or the `/send` helpers.
//! Nothing here blocks or performs I/O.

pub mod acl;
#[cfg(test)]
mod event_auth_tests;
pub mod keys;
pub mod xmatrix;

use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use crate::event::Facts;
use crate::ids::EventIdx;
use crate::pages::PageError;
use crate::queries::{self, Direction, QueryError, Served};
use crate::redaction::redact;
use crate::room::Room;

pub use acl::ServerAcl;

/// Most PDUs in one transaction.
pub const MAX_TXN_PDUS: usize = 50;
/// Most EDUs in one transaction.
pub const MAX_TXN_EDUS: usize = 100;
/// Largest request body accepted, in bytes (the reference server's
/// `MAX_REQUEST_SIZE`: 200 × 65,536).
pub const MAX_BODY_BYTES: usize = 200 * 65_536;
/// Longest `/send` transaction ID, in bytes (UTF-8, percent-decoded). A host
/// keys its log of answered transactions by it (a Durable Object storage key
/// holds at most 2 KiB), so a longer one is refused before anything runs.
pub const MAX_TXN_ID_BYTES: usize = 2_048;

/// An error answer: status, `errcode`, message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status} {errcode}: {error}")]
pub struct HttpError {
    /// HTTP status.
    pub status: u16,
    /// Matrix error code.
    pub errcode: &'static str,
    /// Human-readable message.
    pub error: String,
}

impl HttpError {
    /// An error answer.
    pub fn new(status: u16, errcode: &'static str, error: impl Into<String>) -> Self {
        Self { status, errcode, error: error.into() }
    }

    /// The JSON body `{errcode, error}`.
    pub fn body(&self) -> Value {
        json!({"errcode": self.errcode, "error": self.error})
    }
}

impl From<PageError> for HttpError {
    fn from(e: PageError) -> Self {
        HttpError::new(500, "M_UNKNOWN", e.to_string())
    }
}

impl From<QueryError> for HttpError {
    fn from(e: QueryError) -> Self {
        HttpError::new(e.status(), e.errcode(), e.to_string())
    }
}

/// A federation endpoint, with its path parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /_matrix/key/v2/server`: our signing keys.
    ServerKeys,
    /// `GET /_matrix/federation/v1/version`.
    Version,
    /// `PUT /_matrix/federation/v1/send/{txnId}`.
    Send {
        /// The transaction ID.
        txn_id: String,
    },
    /// `GET /_matrix/federation/v1/event/{eventId}`.
    Event {
        /// The event.
        event_id: String,
    },
    /// `GET /_matrix/federation/v1/state/{roomId}`.
    State {
        /// The room.
        room_id: String,
    },
    /// `GET /_matrix/federation/v1/state_ids/{roomId}`.
    StateIds {
        /// The room.
        room_id: String,
    },
    /// `GET /_matrix/federation/v1/backfill/{roomId}`.
    Backfill {
        /// The room.
        room_id: String,
    },
    /// `POST /_matrix/federation/v1/get_missing_events/{roomId}`.
    GetMissingEvents {
        /// The room.
        room_id: String,
    },
    /// `GET /_matrix/federation/v1/timestamp_to_event/{roomId}`.
    TimestampToEvent {
        /// The room.
        room_id: String,
    },
    /// `PUT /_matrix/federation/v{1,2}/invite/{roomId}/{eventId}`: an invite
    /// for one of our users (ours: the join user).
    Invite {
        /// The room.
        room_id: String,
        /// The invite event.
        event_id: String,
        /// v2 (`{event, room_version, invite_room_state}`) or v1 (the event).
        v2: bool,
    },
    /// `GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}`.
    EventAuth {
        /// The room.
        room_id: String,
        /// The event whose auth chain is asked for.
        event_id: String,
    },
}

impl Endpoint {
    /// The room in the path, for room-scoped endpoints.
    pub fn room_id(&self) -> Option<&str> {
        match self {
            Endpoint::State { room_id }
            | Endpoint::StateIds { room_id }
            | Endpoint::Backfill { room_id }
            | Endpoint::GetMissingEvents { room_id }
            | Endpoint::TimestampToEvent { room_id }
            | Endpoint::EventAuth { room_id, .. } => Some(room_id),
            _ => None,
        }
    }

    /// Whether the endpoint needs an X-Matrix signature.
    pub fn needs_auth(&self) -> bool {
        !matches!(self, Endpoint::ServerKeys | Endpoint::Version)
    }
}

/// A request target split into its percent-decoded path segments and query pairs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Target {
    /// Decoded path segments.
    pub segments: Vec<String>,
    /// Decoded query pairs, in order (repeated keys kept).
    pub query: Vec<(String, String)>,
}

fn percent_decode(s: &str, plus_is_space: bool) -> Result<String, HttpError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                let v = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
                let Some(v) = v else {
                    return Err(HttpError::new(400, "M_UNRECOGNIZED", "invalid percent-encoding"));
                };
                out.push(v);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| HttpError::new(400, "M_UNRECOGNIZED", "request target is not UTF-8"))
}

impl Target {
    /// Parses a raw request target (`/path?query`).
    pub fn parse(raw: &str) -> Result<Self, HttpError> {
        let (path, query) = raw.split_once('?').unwrap_or((raw, ""));
        let segments = path.split('/').skip(1).map(|s| percent_decode(s, false)).collect::<Result<Vec<_>, _>>()?;
        let mut pairs = Vec::new();
        for part in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            pairs.push((percent_decode(k, true)?, percent_decode(v, true)?));
        }
        Ok(Self { segments, query: pairs })
    }

    /// The first value of a query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every value of a (repeated) query parameter.
    pub fn params(&self, name: &str) -> Vec<String> {
        self.query.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect()
    }
}

/// Identifies the endpoint of a request. Unknown paths answer 404
/// `M_UNRECOGNIZED`, a known path with the wrong method 405 `M_UNRECOGNIZED`.
pub fn route(method: &str, target: &Target) -> Result<Endpoint, HttpError> {
    let s: Vec<&str> = target.segments.iter().map(String::as_str).collect();
    let (want, endpoint) = match s.as_slice() {
        ["_matrix", "key", "v2", "server"] | ["_matrix", "key", "v2", "server", _] => ("GET", Endpoint::ServerKeys),
        ["_matrix", "federation", "v1", "version"] => ("GET", Endpoint::Version),
        ["_matrix", "federation", "v1", "send", txn] => {
            if txn.len() > MAX_TXN_ID_BYTES {
                return Err(HttpError::new(
                    400,
                    "M_INVALID_PARAM",
                    format!("Transaction ID longer than {MAX_TXN_ID_BYTES} bytes"),
                ));
            }
            ("PUT", Endpoint::Send { txn_id: (*txn).into() })
        }
        ["_matrix", "federation", "v1", "event", e] => ("GET", Endpoint::Event { event_id: (*e).into() }),
        ["_matrix", "federation", "v1", "state", r] => ("GET", Endpoint::State { room_id: (*r).into() }),
        ["_matrix", "federation", "v1", "state_ids", r] => ("GET", Endpoint::StateIds { room_id: (*r).into() }),
        ["_matrix", "federation", "v1", "backfill", r] => ("GET", Endpoint::Backfill { room_id: (*r).into() }),
        ["_matrix", "federation", "v1", "get_missing_events", r] => {
            ("POST", Endpoint::GetMissingEvents { room_id: (*r).into() })
        }
        ["_matrix", "federation", "v1", "timestamp_to_event", r] => {
            ("GET", Endpoint::TimestampToEvent { room_id: (*r).into() })
        }
        ["_matrix", "federation", v @ ("v1" | "v2"), "invite", r, e] => {
            ("PUT", Endpoint::Invite { room_id: (*r).into(), event_id: (*e).into(), v2: *v == "v2" })
        }
        ["_matrix", "federation", "v1", "event_auth", r, e] => {
            ("GET", Endpoint::EventAuth { room_id: (*r).into(), event_id: (*e).into() })
        }
        _ => return Err(HttpError::new(404, "M_UNRECOGNIZED", "Unrecognized request")),
    };
    if method != want {
        return Err(HttpError::new(405, "M_UNRECOGNIZED", format!("{method} is not allowed here")));
    }
    Ok(endpoint)
}

/// Parses a request body as JSON (400 `M_NOT_JSON` otherwise; 413
/// `M_TOO_LARGE` above [`MAX_BODY_BYTES`]).
pub fn parse_body(body: &[u8]) -> Result<Value, HttpError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(HttpError::new(413, "M_TOO_LARGE", "request body too large"));
    }
    serde_json::from_slice(body).map_err(|e| HttpError::new(400, "M_NOT_JSON", format!("Content not JSON: {e}")))
}

/// The room's server ACL in its current state, if any, read as the
/// reference server reads it: from the event as served, so a redacted ACL
/// event has empty content. (Synapse `get_server_acl_for_room` →
/// `get_current_state_event`, which returns the pruned event once a
/// redaction applies, → `server_acl_evaluator_from_event`: `allow` defaults
/// to `[]`, `deny` to `[]`, `allow_ip_literals` to true, so a redacted ACL
/// admits no server at all.)
///
/// # Errors
/// The page store failed to read the current state back.
pub fn current_acl(room: &Room) -> Result<Option<ServerAcl>, PageError> {
    let Some(key) = room.key_of("m.room.server_acl", "") else { return Ok(None) };
    let Some(ev) = room.current_state_map()?.get(key) else { return Ok(None) };
    Ok(match &room.state_event(ev).facts {
        Facts::ServerAcl(_) if room.redacted_by(ev).is_some() => Some(ServerAcl::from_content(&Map::new())),
        Facts::ServerAcl(content) => Some(ServerAcl::from_content(content)),
        _ => None,
    })
}

/// 403 `M_FORBIDDEN` if the room's ACL bans `origin`.
pub fn check_acl(room: &Room, origin: &str) -> Result<(), HttpError> {
    match current_acl(room)? {
        Some(acl) if !acl.allows(origin) => Err(HttpError::new(403, "M_FORBIDDEN", "Server is banned from room")),
        _ => Ok(()),
    }
}

/// 403 unless `origin` may read the room's state (`/state`, `/state_ids`):
/// it has a joined member, then the ACL admits it (Synapse
/// `on_state_ids_request`: `assert_host_in_room`, then
/// `check_server_matches_acl`). A host that caches state answers runs this
/// for every caller before serving a cached answer.
pub fn check_state_access(room: &Room, origin: &str) -> Result<(), HttpError> {
    queries::require_in_room(room, origin)?;
    check_acl(room, origin)
}

/// Answers a room query for a room this server does not hold, for an
/// authenticated origin, as the reference server does: the same parameter
/// checks as [`room_query`], then the room's checks against a room with no
/// events — nobody is joined and there is no ACL, so `/state`,
/// `/state_ids`, `/backfill`, `/get_missing_events`, `/timestamp_to_event`
/// and `/event_auth` answer 403 `M_FORBIDDEN` "Host not in room."
/// (Synapse `federation_server.py`: `on_state_ids_request` /
/// `on_room_state_request` / `on_timestamp_to_event_request` /
/// `on_event_auth` call `assert_host_in_room` first; `on_backfill_request` and
/// `on_get_missing_events` check the ACL — none — then
/// `handlers/federation.py` `assert_host_in_room`; for an unknown room
/// `is_host_in_room` is false → `AuthError(403, "Host not in room.")`).
/// `/event` is not room-scoped: an unknown event is 404 (`on_pdu_request`).
pub fn unknown_room_query(
    endpoint: &Endpoint,
    target: &Target,
    body: Option<&Value>,
    origin: &str,
    our_server_name: &str,
    now_ms: i64,
) -> Result<Value, HttpError> {
    if let Endpoint::Event { event_id } = endpoint {
        return Err(QueryError::NotFound(format!("Could not find event {event_id}")).into());
    }
    let empty = Room::new("10").expect("room version 10 is supported");
    room_query(&empty, endpoint, target, body, origin, our_server_name, now_ms)
}

/// A stored PDU in its outgoing federation form: as received, without
/// `unsigned` keys other than stripped invite/knock state; or redacted.
///
/// # Errors
/// The room's page store failed to read the PDU back (a 500 to a caller).
pub fn outgoing_pdu(room: &Room, idx: EventIdx, pruned: bool) -> Result<Value, PageError> {
    let raw = room.raw(idx)?;
    let Ok(Value::Object(mut m)) = serde_json::from_str::<Value>(&raw) else {
        return Ok(Value::Null);
    };
    let pruned = pruned || room.event(idx)?.redacted_on_receipt;
    if pruned {
        return Ok(Value::Object(redact(&m, room.rules())));
    }
    if let Some(Value::Object(u)) = m.get_mut("unsigned") {
        u.retain(|k, _| k == "invite_room_state" || k == "knock_room_state");
        if u.is_empty() {
            m.remove("unsigned");
        }
    } else {
        m.remove("unsigned");
    }
    Ok(Value::Object(m))
}

fn served(room: &Room, list: &[Served]) -> Result<Vec<Value>, PageError> {
    list.iter().map(|s| outgoing_pdu(room, s.event, s.pruned)).collect()
}

/// Whether a stored event is served redacted to everyone (hash failure or
/// an applied redaction); used where visibility does not apply (`/state`:
/// state events).
fn redacted_for_all(room: &Room, idx: EventIdx) -> bool {
    room.state_event(idx).redacted_on_receipt || room.redacted_by(idx).is_some()
}

fn require_param<'a>(target: &'a Target, name: &str) -> Result<&'a str, HttpError> {
    target.param(name).ok_or_else(|| HttpError::new(400, "M_MISSING_PARAM", format!("Missing parameter: {name}")))
}

fn string_list(body: &Value, key: &str) -> Result<Vec<String>, HttpError> {
    let bad = || HttpError::new(400, "M_BAD_JSON", format!("{key} must be a list of event IDs"));
    body.get(key)
        .and_then(Value::as_array)
        .ok_or_else(bad)?
        .iter()
        .map(|v| v.as_str().map(str::to_owned).ok_or_else(bad))
        .collect()
}

/// Answers a room-scoped query (everything but `/send`, `/version` and the
/// key endpoint) for an authenticated `origin`, in the reference server's
/// order of checks. `now_ms` stamps transaction-shaped answers.
pub fn room_query(
    room: &Room,
    endpoint: &Endpoint,
    target: &Target,
    body: Option<&Value>,
    origin: &str,
    our_server_name: &str,
    now_ms: i64,
) -> Result<Value, HttpError> {
    match endpoint {
        Endpoint::Event { event_id } => {
            let s = queries::event(room, origin, event_id)?;
            Ok(
                json!({"origin": our_server_name, "origin_server_ts": now_ms, "pdus": [outgoing_pdu(room, s.event, s.pruned)?]}),
            )
        }
        Endpoint::StateIds { .. } | Endpoint::State { .. } => {
            let event_id = require_param(target, "event_id")?;
            queries::require_in_room(room, origin)?;
            check_acl(room, origin)?;
            let s = queries::state_ids(room, origin, event_id)?;
            if matches!(endpoint, Endpoint::StateIds { .. }) {
                let ids = |l: &mut dyn Iterator<Item = EventIdx>| {
                    l.map(|e| Value::String(room.state_id(e).to_owned())).collect::<Vec<_>>()
                };
                Ok(
                    json!({"pdu_ids": ids(&mut s.pdu_ids.iter().copied()), "auth_chain_ids": ids(&mut s.auth_chain_ids.iter().copied())}),
                )
            } else {
                let pdus = |l: &mut dyn Iterator<Item = EventIdx>| {
                    l.map(|e| outgoing_pdu(room, e, redacted_for_all(room, e))).collect::<Result<Vec<_>, _>>()
                };
                Ok(
                    json!({"pdus": pdus(&mut s.pdu_ids.iter().copied())?, "auth_chain": pdus(&mut s.auth_chain_ids.iter().copied())?}),
                )
            }
        }
        Endpoint::EventAuth { event_id, .. } => {
            // The reference server: host in room (403), then its ACL (403),
            // then the event (404 unless an accepted event of this room).
            queries::require_in_room(room, origin)?;
            check_acl(room, origin)?;
            let chain = queries::event_auth(room, origin, event_id)?;
            let pdus: Vec<Value> = chain
                .into_iter()
                .map(|e| outgoing_pdu(room, e, redacted_for_all(room, e)))
                .collect::<Result<_, _>>()?;
            Ok(json!({ "auth_chain": pdus }))
        }
        Endpoint::Backfill { .. } => {
            let v = target.params("v");
            if v.is_empty() {
                return Err(HttpError::new(400, "M_MISSING_PARAM", "Missing parameter: v"));
            }
            let limit = require_param(target, "limit")?;
            let limit: usize = match limit.parse::<i64>() {
                Ok(l) if l > 0 => l as usize,
                _ => return Err(HttpError::new(400, "M_INVALID_PARAM", "limit must be a positive integer")),
            };
            check_acl(room, origin)?;
            let list = queries::backfill(room, origin, &v, limit)?;
            Ok(json!({"origin": our_server_name, "origin_server_ts": now_ms, "pdus": served(room, &list)?}))
        }
        Endpoint::GetMissingEvents { .. } => {
            let Some(body) = body else {
                return Err(HttpError::new(400, "M_NOT_JSON", "Missing request body"));
            };
            let earliest = string_list(body, "earliest_events")?;
            let latest = string_list(body, "latest_events")?;
            let limit = match body.get("limit") {
                None | Some(Value::Null) => None,
                Some(l) => match l.as_i64() {
                    Some(l) => Some(l.max(0) as usize),
                    None => return Err(HttpError::new(400, "M_BAD_JSON", "limit must be an integer")),
                },
            };
            check_acl(room, origin)?;
            let list = queries::get_missing_events(room, origin, &earliest, &latest, limit)?;
            Ok(json!({"events": served(room, &list)?}))
        }
        Endpoint::TimestampToEvent { .. } => {
            let ts_text = require_param(target, "ts")?;
            let digits = ts_text.strip_prefix('-').unwrap_or(ts_text);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HttpError::new(400, "M_INVALID_PARAM", "ts must be an integer"));
            }
            let ts = crate::fixture::saturate(ts_text);
            let dir = match require_param(target, "dir")? {
                "f" => Direction::Forward,
                "b" => Direction::Backward,
                _ => return Err(HttpError::new(400, "M_INVALID_PARAM", "dir must be one of f, b")),
            };
            check_acl(room, origin)?;
            let e = queries::timestamp_to_event(room, origin, ts, dir)?;
            let event_id = room.id(e)?;
            Ok(json!({"event_id": event_id, "origin_server_ts": room.event(e)?.origin_server_ts}))
        }
        _ => Err(HttpError::new(400, "M_UNRECOGNIZED", "not a room query")),
    }
}

/// A transaction body, with each PDU's raw text kept exactly as sent.
#[derive(Debug)]
pub struct Transaction<'a> {
    /// The PDUs, in order.
    pub pdus: Vec<&'a RawValue>,
    /// How many EDUs it carried.
    pub edu_count: usize,
}

#[derive(serde::Deserialize)]
struct TxnBody<'a> {
    #[serde(borrow)]
    pdus: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default)]
    edus: Option<Vec<&'a RawValue>>,
}

/// Parses a `/send` body: at most [`MAX_TXN_PDUS`] PDUs and
/// [`MAX_TXN_EDUS`] EDUs (400 otherwise).
pub fn parse_transaction(body: &str) -> Result<Transaction<'_>, HttpError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(HttpError::new(413, "M_TOO_LARGE", "request body too large"));
    }
    let t: TxnBody<'_> = serde_json::from_str(body).map_err(|e| {
        if serde_json::from_str::<Value>(body).is_err() {
            HttpError::new(400, "M_NOT_JSON", format!("Content not JSON: {e}"))
        } else {
            HttpError::new(400, "M_BAD_JSON", format!("Malformed transaction: {e}"))
        }
    })?;
    let pdus = t.pdus.ok_or_else(|| HttpError::new(400, "M_BAD_JSON", "Transaction has no pdus"))?;
    let edu_count = t.edus.map_or(0, |e| e.len());
    if pdus.len() > MAX_TXN_PDUS || edu_count > MAX_TXN_EDUS {
        return Err(HttpError::new(
            400,
            "M_BAD_JSON",
            format!(
                "Transaction has {} PDUs and {edu_count} EDUs (at most {MAX_TXN_PDUS} and {MAX_TXN_EDUS})",
                pdus.len()
            ),
        ));
    }
    Ok(Transaction { pdus, edu_count })
}

/// Which room a PDU is for, read without checking anything else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PduRoom {
    /// `room_id`, when present.
    pub room_id: Option<String>,
    /// For a create event: its `content.room_version` (default `"1"`).
    pub create_room_version: Option<String>,
}

/// Reads the room of a PDU (`None` if it is not a JSON object).
pub fn pdu_room(raw: &str) -> Option<PduRoom> {
    // `content` is read as text, and parsed only for a create event.
    #[derive(serde::Deserialize)]
    struct Peek<'a> {
        room_id: Option<Value>,
        #[serde(rename = "type")]
        ty: Option<Value>,
        state_key: Option<Value>,
        #[serde(borrow)]
        content: Option<&'a serde_json::value::RawValue>,
    }
    let p: Peek<'_> = serde_json::from_str(raw).ok()?;
    let is_create = p.ty.as_ref().and_then(Value::as_str) == Some("m.room.create")
        && p.state_key.as_ref().and_then(Value::as_str) == Some("");
    let create_room_version = match is_create {
        false => None,
        true => {
            let content: Option<Value> = p.content.and_then(|c| serde_json::from_str(c.get()).ok());
            Some(content.as_ref().and_then(|c| c.get("room_version")).and_then(Value::as_str).unwrap_or("1").to_owned())
        }
    };
    Some(PduRoom { room_id: p.room_id.and_then(|r| r.as_str().map(str::to_owned)), create_room_version })
}

/// The PDUs of a transaction for one room, in transaction order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PduGroup {
    /// The room.
    pub room_id: String,
    /// Positions of its PDUs in the transaction.
    pub pdus: Vec<usize>,
    /// The first create event among them: its position and the room version
    /// its content names.
    pub create: Option<(usize, String)>,
}

/// Groups a transaction's PDUs by room, keeping their order within each
/// room (groups in order of first appearance). A create event without a
/// `room_id` (room v12) belongs to the room its hash names; PDUs with no
/// recognisable room are left out (they get no answer entry).
pub fn group_pdus(pdus: &[&str]) -> Vec<PduGroup> {
    let mut groups: Vec<PduGroup> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (i, raw) in pdus.iter().enumerate() {
        let Some(hint) = pdu_room(raw) else { continue };
        let room_id = match (&hint.room_id, &hint.create_room_version) {
            (Some(r), _) => r.clone(),
            (None, Some(version)) => {
                let Ok(rules) = crate::room_version::RoomVersionRules::supported(version) else { continue };
                match crate::pdu::parse_pdu(raw, rules) {
                    Ok(p) => p.room_id,
                    Err(_) => continue,
                }
            }
            (None, None) => continue,
        };
        let g = *index.entry(room_id.clone()).or_insert_with(|| {
            groups.push(PduGroup { room_id, pdus: Vec::new(), create: None });
            groups.len() - 1
        });
        let group = &mut groups[g];
        group.pdus.push(i);
        if group.create.is_none() {
            group.create = hint.create_room_version.map(|v| (i, v));
        }
    }
    groups
}

/// Checks a create event that would start a new room, fully, before
/// anything is created: it must parse for the room version its content
/// names, carry valid signatures of the servers the version requires and a
/// matching content hash, and pass the auth rules. Returns the room ID and
/// the event ID, or why not (a bounded reason).
pub fn check_create_event(
    raw: &str,
    room_version: &str,
    keys: &dyn crate::signing::KeyStore,
) -> Result<(String, String), String> {
    let mut room = Room::new(room_version).map_err(|e| crate::room::bounded_reason(e.to_string()))?;
    match room.ingest(raw, crate::room::Verification::Keys(keys)) {
        crate::room::Outcome::Accepted { event_id, redacted_on_receipt: false } => {
            let room_id = room.room_id().map(str::to_owned).ok_or("not a create event")?;
            Ok((room_id, event_id.as_str().to_owned()))
        }
        crate::room::Outcome::Accepted { .. } => Err("content hash mismatch".into()),
        crate::room::Outcome::Rejected { reason, .. } | crate::room::Outcome::Dropped { reason, .. } => Err(reason),
        crate::room::Outcome::Duplicate { .. } => Err("duplicate".into()),
        crate::room::Outcome::Deferred { .. } => Err("its auth events are not stored".into()),
    }
}

/// The `/_matrix/federation/v1/version` answer.
pub fn version_body() -> Value {
    json!({"server": {"name": "roomdag", "version": env!("CARGO_PKG_VERSION")}})
}

/// Builds the object a `/send` answer maps each PDU to: `{}` on success,
/// `{"error": …}` otherwise.
pub fn pdu_result(error: Option<&str>) -> Value {
    match error {
        None => Value::Object(Map::new()),
        Some(e) => json!({ "error": e }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_routes() {
        let t = Target::parse("/_matrix/federation/v1/backfill/%21room%3Aa.example?v=%24a&v=%24b&limit=5").unwrap();
        assert_eq!(t.segments[4], "!room:a.example");
        assert_eq!(t.params("v"), vec!["$a", "$b"]);
        assert_eq!(route("GET", &t).unwrap(), Endpoint::Backfill { room_id: "!room:a.example".into() });
        assert_eq!(route("POST", &t).unwrap_err().status, 405);
        assert_eq!(route("GET", &Target::parse("/_matrix/federation/v1/nope").unwrap()).unwrap_err().status, 404);
        assert_eq!(route("GET", &Target::parse("/_matrix/key/v2/server").unwrap()).unwrap(), Endpoint::ServerKeys);
        assert!(Target::parse("/a/%zz").is_err());
    }

    #[test]
    fn transactions() {
        let pdus: Vec<String> = (0..51).map(|i| format!("{{\"n\":{i}}}")).collect();
        let body = format!("{{\"origin\":\"a\",\"origin_server_ts\":1,\"pdus\":[{}]}}", pdus.join(","));
        assert_eq!(parse_transaction(&body).unwrap_err().status, 400);
        let ok = parse_transaction(r#"{"origin":"a","pdus":[ {"a": 1} ],"edus":[]}"#).unwrap();
        assert_eq!(ok.pdus[0].get(), r#"{"a": 1}"#);
        assert_eq!(parse_transaction("{").unwrap_err().errcode, "M_NOT_JSON");
        assert_eq!(parse_transaction(r#"{"pdus": 5}"#).unwrap_err().errcode, "M_BAD_JSON");
    }

    #[test]
    fn pdu_rooms() {
        let c = pdu_room(r#"{"type":"m.room.create","state_key":"","content":{"room_version":"12"}}"#).unwrap();
        assert_eq!(c, PduRoom { room_id: None, create_room_version: Some("12".into()) });
        let m = pdu_room(r#"{"type":"m.room.message","room_id":"!r:a"}"#).unwrap();
        assert_eq!(m.room_id.as_deref(), Some("!r:a"));
        assert!(pdu_room("[1]").is_none());
    }
}
