//! Replaying a fixture and answering its queries (`roomdag replay`).
//!
//! Shared by the native CLI, the wasm CLI and the tests, so all three produce
//! byte-identical `roomdag-answers/1` documents.

use std::io::Read;

use serde_json::{json, Map, Value};

use crate::fixture::{read_queries, stream_room, FixtureError, FixtureHeader, Query};
use crate::ids::EventIdx;
use crate::queries::{self, Direction, QueryError, Served};
use crate::room::{Outcome, Room, Verification};
use crate::signing::{encode_base64, PinnedKeys};
use crate::state_set::StateSetId;

/// The replayed room and what happened to each fixture event.
pub struct Replay {
    /// The room after every PDU.
    pub room: Room,
    /// The fixture header.
    pub header: FixtureHeader,
    /// Per fixture event: the fixture's claimed ID and the outcome.
    pub outcomes: Vec<(String, Outcome)>,
}

/// Replays a room fixture through the full receipt pipeline.
pub fn replay(reader: impl Read) -> Result<Replay, FixtureError> {
    let mut room: Option<Room> = None;
    let mut keys: Option<PinnedKeys> = None;
    let mut outcomes = Vec::new();
    let header = stream_room(reader, |header, _, ev| {
        if room.is_none() {
            let v = header.room_version.as_deref().unwrap_or_default();
            room = Some(Room::new(v).map_err(|e| FixtureError::Invalid(e.to_string()))?);
            keys = Some(header.pinned_keys()?);
        }
        let (room, keys) = (room.as_mut().expect("just set"), keys.as_ref().expect("just set"));
        let outcome = room.ingest(ev.pdu.get(), Verification::Keys(keys));
        outcomes.push((ev.event_id, outcome));
        Ok(())
    })?;
    let room = match room {
        Some(r) => r,
        None => Room::new(header.room_version.as_deref().unwrap_or_default())
            .map_err(|e| FixtureError::Invalid(e.to_string()))?,
    };
    Ok(Replay { room, header, outcomes })
}

fn hex(d: [u8; 32]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

impl Replay {
    /// The `events` list of the answers document.
    pub fn events_json(&self) -> Vec<Value> {
        self.outcomes
            .iter()
            .map(|(claimed, o)| {
                let id = o.event_id().map_or_else(|| claimed.clone(), |e| e.to_string());
                let mut m = Map::new();
                m.insert("event_id".into(), json!(id));
                match o {
                    Outcome::Dropped { stage, reason, .. } => {
                        m.insert("status".into(), json!("dropped"));
                        m.insert("stage".into(), json!(stage));
                        m.insert("reason".into(), json!(reason));
                    }
                    Outcome::Duplicate { .. } => {
                        m.insert("status".into(), json!("dropped"));
                        m.insert("reason".into(), json!("duplicate event"));
                    }
                    Outcome::Accepted { event_id, redacted_on_receipt }
                    | Outcome::Rejected { event_id, redacted_on_receipt, .. } => {
                        let e = self.room.event(self.room.lookup(event_id.as_str()).expect("stored"));
                        m.insert("status".into(), json!(o.status()));
                        if let Outcome::Rejected { reason, .. } = o {
                            m.insert("reason".into(), json!(reason));
                        }
                        if *redacted_on_receipt {
                            m.insert("redacted_on_receipt".into(), json!(true));
                        }
                        m.insert("state_before".into(), json!(hex(self.room.state_digest(e.state_before))));
                        m.insert("state_after".into(), json!(hex(self.room.state_digest(e.state_after))));
                    }
                }
                Value::Object(m)
            })
            .collect()
    }

    /// The full `roomdag-answers/1` document for `queries`.
    pub fn answers(&mut self, queries: &[Query]) -> Value {
        let current = self.room.current_state();
        let extremities: Vec<String> = {
            let mut v: Vec<String> =
                self.room.forward_extremities().map(|e| self.room.event(e).id.to_string()).collect();
            v.sort();
            v
        };
        let answers: Vec<Value> = queries.iter().map(|q| answer(&self.room, q)).collect();
        json!({
            "format": "roomdag-answers/1",
            "room_id": self.room.room_id(),
            "events": self.events_json(),
            "forward_extremities": extremities,
            "current_state_digest": hex(self.room.state_digest(current)),
            "servers_in_room": crate::visibility::servers_in_room(&self.room, self.room.state(current)),
            "answers": answers,
        })
    }

    /// The current state's digest.
    pub fn current_state_digest(&mut self) -> String {
        let id: StateSetId = self.room.current_state();
        hex(self.room.state_digest(id))
    }
}

/// Replays a fixture and answers a query file, in one call.
pub fn replay_and_answer(fixture: impl Read, queries: impl Read) -> Result<Value, FixtureError> {
    let queries = read_queries(queries)?;
    let mut replay = replay(fixture)?;
    Ok(replay.answers(&queries.queries))
}

fn error(id: &str, status: u16, errcode: &str, message: &str) -> Value {
    json!({"id": id, "status": status, "errcode": errcode, "error": message})
}

fn query_error(id: &str, e: QueryError) -> Value {
    error(id, e.status(), e.errcode(), &e.to_string())
}

fn served(room: &Room, list: Vec<Served>) -> Value {
    Value::Array(
        list.into_iter().map(|s| json!({"event_id": room.event(s.event).id.as_str(), "pruned": s.pruned})).collect(),
    )
}

fn ids(room: &Room, list: impl IntoIterator<Item = EventIdx>) -> Value {
    Value::Array(list.into_iter().map(|e| json!(room.event(e).id.as_str())).collect())
}

fn string_list(v: Option<&Value>) -> Option<Vec<String>> {
    v?.as_array()?.iter().map(|x| x.as_str().map(str::to_owned)).collect()
}

/// Answers one query (`contract.md` semantics).
pub fn answer(room: &Room, q: &Query) -> Value {
    let id = q.id.as_str();
    let missing = |p: &str| error(id, 400, "M_MISSING_PARAM", &format!("missing parameter {p}"));
    match q.endpoint.as_str() {
        "state_ids" | "state" => {
            let Some(event_id) = q.event_id.as_deref() else {
                return missing("event_id");
            };
            match queries::state_ids(room, &q.origin, event_id) {
                Ok(s) => {
                    json!({"id": id, "status": 200, "pdu_ids": ids(room, s.pdu_ids), "auth_chain_ids": ids(room, s.auth_chain_ids.iter().copied())})
                }
                Err(e) => query_error(id, e),
            }
        }
        "backfill" => {
            let Some(v) = q.v.as_ref() else {
                return missing("v");
            };
            let limit = match q.limit {
                Some(l) if l > 0 => l as usize,
                _ => return error(id, 400, "M_INVALID_PARAM", "limit must be a positive integer"),
            };
            match queries::backfill(room, &q.origin, v, limit) {
                Ok(list) => json!({"id": id, "status": 200, "pdus": served(room, list)}),
                Err(e) => query_error(id, e),
            }
        }
        "get_missing_events" => {
            let body = q.body.as_ref();
            let Some(earliest) = string_list(body.and_then(|b| b.get("earliest_events"))) else {
                return missing("earliest_events");
            };
            let Some(latest) = string_list(body.and_then(|b| b.get("latest_events"))) else {
                return missing("latest_events");
            };
            let limit = match body.and_then(|b| b.get("limit")) {
                None => None,
                Some(l) => match l.as_i64() {
                    Some(l) => Some(l.max(0) as usize),
                    None => return error(id, 400, "M_INVALID_PARAM", "limit must be an integer"),
                },
            };
            match queries::get_missing_events(room, &q.origin, &earliest, &latest, limit) {
                Ok(list) => json!({"id": id, "status": 200, "events": served(room, list)}),
                Err(e) => query_error(id, e),
            }
        }
        "timestamp_to_event" => {
            let Some(ts) = q.ts else { return missing("ts") };
            let dir = match q.dir.as_deref() {
                Some("f") => Direction::Forward,
                Some("b") => Direction::Backward,
                _ => return error(id, 400, "M_INVALID_PARAM", "dir must be f or b"),
            };
            match queries::timestamp_to_event(room, &q.origin, ts, dir) {
                Ok(e) => {
                    json!({"id": id, "status": 200, "event_id": room.event(e).id.as_str(), "origin_server_ts": room.event(e).origin_server_ts})
                }
                Err(e) => query_error(id, e),
            }
        }
        "event" => {
            let Some(event_id) = q.event_id.as_deref() else {
                return missing("event_id");
            };
            match queries::event(room, &q.origin, event_id) {
                Ok(s) => {
                    json!({"id": id, "status": 200, "event_id": room.event(s.event).id.as_str(), "pruned": s.pruned})
                }
                Err(e) => query_error(id, e),
            }
        }
        other => error(id, 400, "M_UNRECOGNIZED", &format!("unknown endpoint {other}")),
    }
}

/// Unpadded base64 of a digest (for compact output).
pub fn b64(d: &[u8]) -> String {
    encode_base64(d)
}
