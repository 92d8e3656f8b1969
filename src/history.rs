//! Fetching history we lack (server-server API "Backfilling and retrieving
//! missing events"): the requesting side, sans IO. A host sends the
//! requests these functions build to other servers of the room and hands
//! the answers back; each answer is checked here, and only PDUs of the room,
//! with their computed event IDs, come out. Signatures, hashes and the auth
//! rules are checked when the host ingests them.
//!
//! * `/backfill` from the room's backward extremities (at most
//!   [`BACKFILL_EXTREMITIES`] at a time, [`BACKFILL_LIMIT`] events), until
//!   the create event — as the reference server asks
//!   (`synapse/handlers/federation.py`, `NUMBER_OF_EVENTS_TO_BACKFILL`);
//! * `/get_missing_events` when a pushed PDU's prev events are unknown
//!   (latest = the PDU, earliest = our forward extremities,
//!   [`GET_MISSING_LIMIT`] events, `min_depth` the room's least depth —
//!   `synapse/handlers/federation_event.py` `_get_missing_events_for_pdu`);
//! * `/state_ids` (+ `/event` for what we lack) at an event whose prev
//!   events could not be fetched, so that it is placed with the remote state;
//! * `/event` for single events (a rejected event `/backfill` leaves out, a
//!   missing auth event).

use serde_json::{json, Value};

use crate::membership::encode_component;
use crate::pdu::parse_pdu;
use crate::room_version::RoomVersionRules;

/// Events asked for per `/backfill` request (the reference server's).
pub const BACKFILL_LIMIT: usize = 100;
/// Backward extremities named per `/backfill` request (the reference server's).
pub const BACKFILL_EXTREMITIES: usize = 5;
/// Events asked for per `/get_missing_events` request (the reference server's).
pub const GET_MISSING_LIMIT: usize = 10;
/// Most PDUs read from one answer: more than any request asks for is refused.
pub const MAX_ANSWER_PDUS: usize = 1_000;

/// Why an answer was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {endpoint} answer: {reason}")]
pub struct InvalidAnswer {
    /// `backfill`, `get_missing_events`, `event`, `state_ids`.
    pub endpoint: &'static str,
    /// What is wrong.
    pub reason: String,
}

fn invalid(endpoint: &'static str, reason: impl Into<String>) -> InvalidAnswer {
    InvalidAnswer { endpoint, reason: reason.into() }
}

/// A PDU of the room from an answer, with its computed event ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedPdu {
    /// The event ID computed from the PDU.
    pub event_id: String,
    /// `depth`.
    pub depth: i64,
    /// The PDU, JSON text.
    pub raw: String,
}

/// What an answer held: the room's PDUs, and how many were left out
/// (unparseable, or of another room).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchedPdus {
    /// PDUs of the room, oldest first (by depth, then as listed).
    pub pdus: Vec<FetchedPdu>,
    /// PDUs left out.
    pub skipped: usize,
}

/// `GET /_matrix/federation/v1/backfill/{roomId}?v=…&limit=…`.
pub fn backfill_target(room_id: &str, v: &[String], limit: usize) -> String {
    let vs: Vec<String> = v.iter().take(BACKFILL_EXTREMITIES).map(|e| format!("v={}", encode_component(e))).collect();
    format!("/_matrix/federation/v1/backfill/{}?{}&limit={limit}", encode_component(room_id), vs.join("&"))
}

/// `POST /_matrix/federation/v1/get_missing_events/{roomId}`: the target and body.
pub fn get_missing_events_request(
    room_id: &str,
    earliest: &[String],
    latest: &[String],
    limit: usize,
    min_depth: i64,
) -> (String, Value) {
    (
        format!("/_matrix/federation/v1/get_missing_events/{}", encode_component(room_id)),
        json!({"earliest_events": earliest, "latest_events": latest, "limit": limit, "min_depth": min_depth}),
    )
}

/// `GET /_matrix/federation/v1/event/{eventId}`.
pub fn event_target(event_id: &str) -> String {
    format!("/_matrix/federation/v1/event/{}", encode_component(event_id))
}

/// `GET /_matrix/federation/v1/state_ids/{roomId}?event_id=…`.
pub fn state_ids_target(room_id: &str, event_id: &str) -> String {
    format!("/_matrix/federation/v1/state_ids/{}?event_id={}", encode_component(room_id), encode_component(event_id))
}

/// `GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}`.
pub fn event_auth_target(room_id: &str, event_id: &str) -> String {
    format!("/_matrix/federation/v1/event_auth/{}/{}", encode_component(room_id), encode_component(event_id))
}

fn room_pdus(
    endpoint: &'static str,
    list: Option<&Value>,
    rules: &RoomVersionRules,
    room_id: &str,
    cap: usize,
) -> Result<FetchedPdus, InvalidAnswer> {
    let Some(Value::Array(items)) = list else {
        return Err(invalid(endpoint, "no list of PDUs"));
    };
    if items.len() > cap {
        return Err(invalid(endpoint, format!("{} PDUs, more than the {cap} asked for", items.len())));
    }
    let mut out = FetchedPdus::default();
    for item in items {
        let raw = item.to_string();
        match parse_pdu(&raw, rules) {
            Ok(p) if p.room_id == room_id => {
                out.pdus.push(FetchedPdu { event_id: p.event_id.as_str().to_owned(), depth: p.depth, raw })
            }
            _ => out.skipped += 1,
        }
    }
    out.pdus.sort_by_key(|p| p.depth);
    Ok(out)
}

/// Checks a `/backfill` answer (a transaction: `{origin, origin_server_ts, pdus}`).
pub fn check_backfill_response(
    response: &Value,
    rules: &RoomVersionRules,
    room_id: &str,
    limit: usize,
) -> Result<FetchedPdus, InvalidAnswer> {
    room_pdus("backfill", response.get("pdus"), rules, room_id, limit.clamp(1, MAX_ANSWER_PDUS))
}

/// Checks a `/get_missing_events` answer (`{events}`).
pub fn check_get_missing_events_response(
    response: &Value,
    rules: &RoomVersionRules,
    room_id: &str,
    limit: usize,
) -> Result<FetchedPdus, InvalidAnswer> {
    room_pdus("get_missing_events", response.get("events"), rules, room_id, limit.clamp(1, MAX_ANSWER_PDUS))
}

/// Checks an `/event/{eventId}` answer: exactly the event asked for.
pub fn check_event_response(
    response: &Value,
    rules: &RoomVersionRules,
    room_id: &str,
    event_id: &str,
) -> Result<FetchedPdu, InvalidAnswer> {
    let fetched = room_pdus("event", response.get("pdus"), rules, room_id, 1)?;
    fetched
        .pdus
        .into_iter()
        .find(|p| p.event_id == event_id)
        .ok_or_else(|| invalid("event", format!("the answer does not hold {event_id} of {room_id}")))
}

/// Checks an `/event_auth` answer (`{auth_chain}`): PDUs of the room.
pub fn check_event_auth_response(
    response: &Value,
    rules: &RoomVersionRules,
    room_id: &str,
) -> Result<FetchedPdus, InvalidAnswer> {
    room_pdus("event_auth", response.get("auth_chain"), rules, room_id, MAX_ANSWER_PDUS * 100)
}

/// A checked `/state_ids` answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateIds {
    /// The state before the event.
    pub pdu_ids: Vec<String>,
    /// Their auth chain.
    pub auth_chain_ids: Vec<String>,
}

/// Checks a `/state_ids` answer: two lists of event IDs.
pub fn check_state_ids_response(response: &Value) -> Result<StateIds, InvalidAnswer> {
    let list = |key: &str| -> Result<Vec<String>, InvalidAnswer> {
        let Some(Value::Array(items)) = response.get(key) else {
            return Err(invalid("state_ids", format!("no {key} list")));
        };
        items
            .iter()
            .map(|v| match v.as_str() {
                Some(s) if s.starts_with('$') && s.len() <= 255 => Ok(s.to_owned()),
                _ => Err(invalid("state_ids", format!("{key} holds something that is not an event ID"))),
            })
            .collect()
    };
    Ok(StateIds { pdu_ids: list("pdu_ids")?, auth_chain_ids: list("auth_chain_ids")? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            backfill_target("!r:a.example", &["$x".into(), "$y/z".into()], 100),
            "/_matrix/federation/v1/backfill/%21r%3Aa.example?v=%24x&v=%24y%2Fz&limit=100"
        );
        assert_eq!(event_target("$a+b"), "/_matrix/federation/v1/event/%24a%2Bb");
        let (t, body) = get_missing_events_request("!r:a", &["$e".into()], &["$l".into()], 10, 3);
        assert_eq!(t, "/_matrix/federation/v1/get_missing_events/%21r%3Aa");
        assert_eq!(body["limit"], 10);
        assert_eq!(body["min_depth"], 3);
    }

    #[test]
    fn answers_are_checked() {
        let rules = RoomVersionRules::supported("11").unwrap();
        assert!(check_backfill_response(&json!({"pdus": 5}), rules, "!r:a", 100).is_err());
        let too_many = json!({"pdus": vec![json!({}); 101]});
        assert!(check_backfill_response(&too_many, rules, "!r:a", 100).is_err());
        let junk = check_backfill_response(&json!({"pdus": [{"type": "x"}, 7]}), rules, "!r:a", 100).unwrap();
        assert_eq!(junk.skipped, 2);
        assert!(check_state_ids_response(&json!({"pdu_ids": ["$a"], "auth_chain_ids": [1]})).is_err());
        let ok = check_state_ids_response(&json!({"pdu_ids": ["$a"], "auth_chain_ids": []})).unwrap();
        assert_eq!(ok.pdu_ids, vec!["$a".to_owned()]);
    }
}
