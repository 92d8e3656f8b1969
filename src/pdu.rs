//! Parsing a received PDU for a room version: the format checks of "Checks
//! performed on receipt of a PDU", step 1.
//!
//! The checks mirror what the reference server does before anything else
//! (`event_from_pdu_json` and its event format): required keys and their
//! JSON types, the `unsigned` allow-list, the depth range, strict canonical
//! JSON (v6+), the v12 room-ID rules; then the event ID is computed from the
//! reference hash. A PDU that fails here is *dropped*.

use serde_json::{Map, Value};

use crate::canonical_json::{validate_finite, validate_strict, CanonicalJsonError, MAX_SAFE_INT};
use crate::ids::EventId;
use crate::room_version::RoomVersionRules;
use crate::signing::{event_id_for_reference_hash, redacted_signing_bytes_of};

/// The largest PDU we parse at all. The spec limit (65,536 bytes of
/// canonical JSON) is checked later, on the canonical form; a PDU is stored
/// as received, so this cap bounds what whitespace or `\uXXXX` escapes can
/// make it cost: at most 4× the spec limit. Servers send (near-)canonical
/// JSON; 4× leaves room for pretty-printing and for `\uXXXX`-escaped
/// non-ASCII text (about 2×).
pub const MAX_RAW_PDU_BYTES: usize = 4 * 65_536;

/// Why a PDU could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PduFormatError {
    /// Not JSON, or not a JSON object.
    #[error("not a JSON object: {0}")]
    NotJson(String),
    /// Larger than [`MAX_RAW_PDU_BYTES`].
    #[error("PDU of {0} bytes is too large")]
    TooLarge(usize),
    /// A required key is missing.
    #[error("missing required key {0:?}")]
    Missing(&'static str),
    /// A key has the wrong JSON type.
    #[error("{0:?} has the wrong type (expected {1})")]
    WrongType(&'static str, &'static str),
    /// `depth` is outside 0..=2^53−1.
    #[error("depth {0} out of range")]
    Depth(String),
    /// Strict canonical JSON violated (v6+).
    #[error("{0}")]
    Canonical(#[from] CanonicalJsonError),
    /// A key that the room version does not allow.
    #[error("{0}")]
    Format(&'static str),
}

/// A parsed PDU, before any signature, hash or auth check.
#[derive(Clone, Debug)]
pub struct ParsedPdu {
    /// The event JSON with `unsigned` reduced to its allow-list.
    pub json: Map<String, Value>,
    /// The computed event ID.
    pub event_id: EventId,
    /// The room ID (for a v12 create event: derived from its event ID).
    pub room_id: String,
    /// Whether the PDU carries a `room_id` key.
    pub has_room_id: bool,
    /// The canonical JSON of the redacted event without signatures: the
    /// bytes the signatures cover (and whose hash is the event ID).
    pub signing_bytes: String,
    /// `type`.
    pub event_type: String,
    /// `sender`.
    pub sender: String,
    /// `state_key`.
    pub state_key: Option<String>,
    /// `depth`.
    pub depth: i64,
    /// `origin_server_ts`.
    pub origin_server_ts: i64,
    /// `prev_events`.
    pub prev_events: Vec<String>,
    /// The auth events; in v12 the create event is appended (it is implied).
    pub auth_events: Vec<String>,
}

fn string_list(v: Option<&Value>, key: &'static str) -> Result<Vec<String>, PduFormatError> {
    match v {
        None => Err(PduFormatError::Missing(key)),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned).ok_or(PduFormatError::WrongType(key, "a list of strings")))
            .collect(),
        Some(_) => Err(PduFormatError::WrongType(key, "a list of strings")),
    }
}

fn int_field(v: Option<&Value>, key: &'static str) -> Result<i64, PduFormatError> {
    match v {
        None => Err(PduFormatError::Missing(key)),
        Some(Value::Number(n)) if n.is_i64() => Ok(n.as_i64().expect("checked")),
        Some(_) => Err(PduFormatError::WrongType(key, "an integer")),
    }
}

fn str_field<'a>(m: &'a Map<String, Value>, key: &'static str) -> Result<&'a str, PduFormatError> {
    match m.get(key) {
        None => Err(PduFormatError::Missing(key)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(PduFormatError::WrongType(key, "a string")),
    }
}

/// Parses and format-checks a PDU for `rules`.
pub fn parse_pdu(raw: &str, rules: &RoomVersionRules) -> Result<ParsedPdu, PduFormatError> {
    parse_with(raw, rules, None)
}

/// Parses a PDU this room stored before under `event_id` (restoring it from
/// its store's log): the same checks as [`parse_pdu`], but the event ID is
/// the stored one instead of the reference hash computed again, and there
/// are no signing bytes (its signatures were checked when it was stored).
pub fn parse_stored_pdu(raw: &str, rules: &RoomVersionRules, event_id: &EventId) -> Result<ParsedPdu, PduFormatError> {
    parse_with(raw, rules, Some(event_id))
}

fn parse_with(raw: &str, rules: &RoomVersionRules, stored_id: Option<&EventId>) -> Result<ParsedPdu, PduFormatError> {
    if raw.len() > MAX_RAW_PDU_BYTES {
        return Err(PduFormatError::TooLarge(raw.len()));
    }
    let value: Value = serde_json::from_str(raw).map_err(|e| PduFormatError::NotJson(e.to_string()))?;
    let Value::Object(mut json) = value else {
        return Err(PduFormatError::NotJson("not an object".into()));
    };
    parse_pdu_object(&mut json, rules, stored_id).map(|p| ParsedPdu { json, ..p })
}

fn parse_pdu_object(
    json: &mut Map<String, Value>,
    rules: &RoomVersionRules,
    stored_id: Option<&EventId>,
) -> Result<ParsedPdu, PduFormatError> {
    // `type` and `depth` must be present.
    for key in ["type", "depth"] {
        if !json.contains_key(key) {
            return Err(PduFormatError::Missing(if key == "type" { "type" } else { "depth" }));
        }
    }
    let is_member = json.get("type").and_then(Value::as_str) == Some("m.room.member");
    // `unsigned` keeps only what a sender may set: `age` (dropped here, as it
    // only makes sense relative to receipt) and, on memberships, stripped
    // state for invites and knocks.
    if let Some(u) = json.get_mut("unsigned") {
        let mut kept = Map::new();
        if let Value::Object(m) = u {
            for key in ["invite_room_state", "knock_room_state"] {
                if let Some(v) = m.get(key).filter(|_| is_member) {
                    if !v.is_array() {
                        return Err(PduFormatError::WrongType("unsigned", "lists of stripped state"));
                    }
                    kept.insert(key.into(), v.clone());
                }
            }
        }
        *u = Value::Object(kept);
    }
    // depth: an integer in 0..=2^53−1.
    let depth = match json.get("depth") {
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => match n.as_i64() {
            Some(d) if (0..=MAX_SAFE_INT).contains(&d) => d,
            _ => return Err(PduFormatError::Depth(n.to_string())),
        },
        _ => return Err(PduFormatError::WrongType("depth", "an integer")),
    };
    let whole = Value::Object(std::mem::take(json));
    let checked =
        validate_finite(&whole)
            .and_then(|()| if rules.strict_canonical_json { validate_strict(&whole) } else { Ok(()) });
    let Value::Object(back) = whole else { unreachable!("wrapped an object") };
    *json = back;
    checked?;
    let event_type = str_field(json, "type")?.to_owned();
    let state_key = match json.get("state_key") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(PduFormatError::WrongType("state_key", "a string")),
    };
    let is_create = event_type == "m.room.create" && state_key.as_deref() == Some("");
    let room_id_field = match json.get("room_id") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(PduFormatError::WrongType("room_id", "a string")),
    };
    // v12: the create event is implied, so listing it is malformed.
    if rules.room_ids_as_hashes {
        if let Some(r) = room_id_field.as_deref().filter(|r| !r.is_empty()) {
            let create_id = format!("${}", &r[r.char_indices().nth(1).map_or(r.len(), |(i, _)| i)..]);
            if json
                .get("auth_events")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(&create_id)))
            {
                return Err(PduFormatError::Format("auth_events must not contain the create event"));
            }
        }
    }
    // The event format's typed fields.
    if !json.get("content").is_some_and(Value::is_object) {
        return Err(if json.contains_key("content") {
            PduFormatError::WrongType("content", "an object")
        } else {
            PduFormatError::Missing("content")
        });
    }
    match json.get("hashes") {
        None => return Err(PduFormatError::Missing("hashes")),
        Some(Value::Object(h)) if h.values().all(Value::is_string) => {}
        Some(_) => return Err(PduFormatError::WrongType("hashes", "an object of strings")),
    }
    let origin_server_ts = int_field(json.get("origin_server_ts"), "origin_server_ts")?;
    let sender = str_field(json, "sender")?.to_owned();
    match json.get("signatures") {
        None => {}
        Some(Value::Object(s))
            if s.values().all(|v| v.as_object().is_some_and(|m| m.values().all(Value::is_string))) => {}
        Some(_) => return Err(PduFormatError::WrongType("signatures", "an object of objects of strings")),
    }
    let prev_events = string_list(json.get("prev_events"), "prev_events")?;
    let mut auth_events = string_list(json.get("auth_events"), "auth_events")?;
    if json.contains_key("event_id") {
        return Err(PduFormatError::Format("events of room v3+ must not have an explicit event_id"));
    }
    if rules.room_ids_as_hashes {
        match (is_create, &room_id_field) {
            (true, Some(_)) => return Err(PduFormatError::Format("create event must not have a room ID")),
            (false, None) => return Err(PduFormatError::Format("non-create event must have a room ID")),
            (false, Some(r)) if !r.starts_with('!') => {
                return Err(PduFormatError::Format("room_id must start with '!'"))
            }
            _ => {}
        }
    } else if room_id_field.is_none() {
        return Err(PduFormatError::Missing("room_id"));
    }

    // The event ID: reference hash of the redacted event (or the one it was stored under).
    let (signing_bytes, event_id) = match stored_id {
        Some(id) => (String::new(), id.clone()),
        None => {
            let bytes = redacted_signing_bytes_of(json, rules);
            let id = EventId::new(&event_id_for_reference_hash(&bytes, rules)).expect("starts with $");
            (bytes, id)
        }
    };
    let room_id = match room_id_field.clone() {
        Some(r) => r,
        None => format!("!{}", &event_id.as_str()[1..]),
    };
    if rules.room_ids_as_hashes && !is_create {
        auth_events.push(format!("${}", &room_id[1..]));
    }
    Ok(ParsedPdu {
        json: Map::new(),
        event_id,
        room_id,
        has_room_id: room_id_field.is_some(),
        signing_bytes,
        event_type,
        sender,
        state_key,
        depth,
        origin_server_ts,
        prev_events,
        auth_events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v11() -> &'static RoomVersionRules {
        &RoomVersionRules::V11
    }

    const GOOD: &str = r#"{"type":"m.room.message","sender":"@a:b","room_id":"!r:b","content":{"body":"x"},"depth":5,
        "origin_server_ts":1,"prev_events":["$p"],"auth_events":["$a"],"hashes":{"sha256":"x"},"signatures":{"b":{"ed25519:1":"s"}},
        "unsigned":{"age":5,"junk":1}}"#;

    #[test]
    fn a_stored_pdu_parses_the_same_under_its_stored_id() {
        let fresh = parse_pdu(GOOD, v11()).unwrap();
        let stored = parse_stored_pdu(GOOD, v11(), &fresh.event_id).unwrap();
        assert_eq!(stored.event_id, fresh.event_id);
        assert!(stored.signing_bytes.is_empty(), "no signing bytes: its signatures were checked when stored");
        assert_eq!(
            (&stored.room_id, &stored.sender, &stored.event_type, &stored.state_key, stored.depth),
            (&fresh.room_id, &fresh.sender, &fresh.event_type, &fresh.state_key, fresh.depth)
        );
        assert_eq!(
            (&stored.prev_events, &stored.auth_events, &stored.json),
            (&fresh.prev_events, &fresh.auth_events, &fresh.json)
        );
        // The format checks still hold.
        let bad = GOOD.replace("\"depth\":5", "\"depth\":-1");
        assert!(parse_stored_pdu(&bad, v11(), &fresh.event_id).is_err());
    }

    #[test]
    fn parses_a_message() {
        let p = parse_pdu(GOOD, v11()).unwrap();
        assert_eq!(p.event_type, "m.room.message");
        assert_eq!(p.depth, 5);
        assert_eq!(p.json["unsigned"], serde_json::json!({}));
        assert!(p.event_id.as_str().starts_with('$'));
    }

    #[test]
    fn refuses_bad_shapes() {
        let bad = |s: &str| parse_pdu(s, v11()).unwrap_err();
        assert!(matches!(bad("[1]"), PduFormatError::NotJson(_)));
        assert!(matches!(bad("{"), PduFormatError::NotJson(_)));
        assert_eq!(bad(r#"{"type":"x"}"#), PduFormatError::Missing("depth"));
        assert_eq!(bad(&GOOD.replace("\"depth\":5", "\"depth\":-1")), PduFormatError::Depth("-1".into()));
        assert_eq!(
            bad(&GOOD.replace("\"depth\":5", "\"depth\":5.0")),
            PduFormatError::WrongType("depth", "an integer")
        );
        assert_eq!(
            bad(&GOOD.replace("\"body\":\"x\"", "\"body\":1.5")),
            PduFormatError::Canonical(CanonicalJsonError::Float)
        );
        assert_eq!(
            bad(&GOOD.replace("[\"$p\"]", "[1]")),
            PduFormatError::WrongType("prev_events", "a list of strings")
        );
        assert_eq!(
            bad(&GOOD.replace("\"sha256\":\"x\"", "\"sha256\":1")),
            PduFormatError::WrongType("hashes", "an object of strings")
        );
        assert!(matches!(bad(&GOOD.replace("\"type\"", "\"event_id\":\"$x\",\"type\"")), PduFormatError::Format(_)));
    }

    #[test]
    fn v12_room_ids() {
        let r = &RoomVersionRules::V12;
        let create = r#"{"type":"m.room.create","state_key":"","sender":"@a:b","content":{"room_version":"12"},"depth":1,
            "origin_server_ts":1,"prev_events":[],"auth_events":[],"hashes":{"sha256":"x"}}"#;
        let p = parse_pdu(create, r).unwrap();
        assert_eq!(p.room_id, format!("!{}", &p.event_id.as_str()[1..]));
        assert!(!p.has_room_id);
        let with_room = create.replace("\"type\"", "\"room_id\":\"!x\",\"type\"");
        assert!(matches!(parse_pdu(&with_room, r), Err(PduFormatError::Format(_))));
        let msg = GOOD.replace("\"!r:b\"", "\"!abc\"");
        let p = parse_pdu(&msg, r).unwrap();
        assert_eq!(p.auth_events, vec!["$a".to_string(), "$abc".to_string()]);
        let listed = msg.replace("[\"$a\"]", "[\"$abc\"]");
        assert!(matches!(parse_pdu(&listed, r), Err(PduFormatError::Format(_))));
    }
}
