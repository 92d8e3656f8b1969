//! Joining and leaving rooms, and accepting invites, over federation
//! (server-server API "Joining Rooms", "Leaving Rooms", "Inviting to a
//! room"): the requesting side, sans IO. A host sends the requests these
//! functions describe and hands the answers back; every answer is checked
//! here before anything from it is used.
//!
//! Joining, as the spec's steps:
//!
//! 1. `GET /make_join/{roomId}/{userId}?ver=…` to a resident server, naming
//!    every room version we support ([`make_join_target`]);
//! 2. the answer's template becomes our join event: checked (the room, the
//!    user, the membership, a supported room version), hashed and signed by
//!    us ([`build_membership_event`]);
//! 3. `PUT /v2/send_join/{roomId}/{eventId}` with it ([`send_join_target`]);
//! 4. the answer's state and auth chain are checked — one room, a create
//!    event of the same room version in the state, for restricted joins the
//!    resident's countersigned copy of *our* event — and ordered so that
//!    every event follows its auth events ([`check_send_join_response`]).
//!    The host then stores them as outliers (signatures, hashes and the auth
//!    rules are checked on ingest) and our join with that state.
//!
//! Leaving is steps 1–3 with `make_leave`/`send_leave`, whose answer is
//! empty. An invite is checked and countersigned by [`accept_invite`].

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::ids::{domain_of, is_valid_user_id};
use crate::pdu::parse_pdu;
use crate::placement::order_by_auth;
use crate::room_version::RoomVersionRules;
use crate::signatures::Signers;
use crate::signing::{hash_and_sign_event, KeyStore, ServerSigningKey};

/// Why a membership exchange failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// The answer is not what the endpoint answers.
    #[error("invalid {endpoint} answer: {reason}")]
    InvalidResponse {
        /// `make_join`, `send_join`, …
        endpoint: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The room's version is not one we host.
    #[error("room version {0:?} is not supported")]
    UnsupportedRoomVersion(String),
    /// An invite we refuse (the spec's error, for the inviting server).
    #[error("{errcode}: {reason}")]
    InviteRefused {
        /// HTTP status.
        status: u16,
        /// Matrix error code.
        errcode: &'static str,
        /// Why.
        reason: String,
    },
}

fn invalid(endpoint: &'static str, reason: impl Into<String>) -> MembershipError {
    MembershipError::InvalidResponse { endpoint, reason: reason.into() }
}

/// Percent-encodes a path segment or query value (everything but the
/// unreserved characters of RFC 3986).
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Room versions we can join, in the order we offer them.
pub fn supported_room_versions() -> impl Iterator<Item = &'static str> {
    RoomVersionRules::ALL.iter().map(|r| r.id).filter(|v| RoomVersionRules::supported(v).is_ok())
}

/// `GET /_matrix/federation/v1/make_join/{roomId}/{userId}?ver=…` (every
/// room version we support).
pub fn make_join_target(room_id: &str, user_id: &str) -> String {
    let vers: Vec<String> = supported_room_versions().map(|v| format!("ver={}", encode_component(v))).collect();
    format!(
        "/_matrix/federation/v1/make_join/{}/{}?{}",
        encode_component(room_id),
        encode_component(user_id),
        vers.join("&")
    )
}

/// `GET /_matrix/federation/v1/make_leave/{roomId}/{userId}`.
pub fn make_leave_target(room_id: &str, user_id: &str) -> String {
    format!("/_matrix/federation/v1/make_leave/{}/{}", encode_component(room_id), encode_component(user_id))
}

/// `PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}`, asking for the
/// full state (no `omit_members`: a history mirror needs every member).
pub fn send_join_target(room_id: &str, event_id: &str) -> String {
    format!(
        "/_matrix/federation/v2/send_join/{}/{}?omit_members=false",
        encode_component(room_id),
        encode_component(event_id)
    )
}

/// `PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}`.
pub fn send_leave_target(room_id: &str, event_id: &str) -> String {
    format!("/_matrix/federation/v2/send_leave/{}/{}", encode_component(room_id), encode_component(event_id))
}

/// Our membership event, built from a `make_join`/`make_leave` template.
#[derive(Clone, Debug)]
pub struct SignedMembership {
    /// The room version the resident server named.
    pub room_version: &'static RoomVersionRules,
    /// The event's ID.
    pub event_id: String,
    /// The hashed and signed event.
    pub pdu: Map<String, Value>,
}

/// Checks a `make_join`/`make_leave` answer (`{event, room_version}`) and
/// turns its template into our event: the template must be an
/// `m.room.member` event of `room_id` sent by and about `user_id` with the
/// requested membership, in a room version we support; we keep its fields
/// (as the reference server does, `origin_server_ts` included), drop
/// `unsigned`, `hashes` and `signatures`, then hash and sign it.
pub fn build_membership_event(
    response: &Value,
    room_id: &str,
    user_id: &str,
    membership: &str,
    key: &ServerSigningKey,
) -> Result<SignedMembership, MembershipError> {
    let endpoint = if membership == "join" { "make_join" } else { "make_leave" };
    let version = match response.get("room_version") {
        None => "1",
        Some(Value::String(v)) => v.as_str(),
        Some(_) => return Err(invalid(endpoint, "room_version is not a string")),
    };
    let rules = RoomVersionRules::supported(version)
        .map_err(|_| MembershipError::UnsupportedRoomVersion(version.to_owned()))?;
    let Some(Value::Object(template)) = response.get("event") else {
        return Err(invalid(endpoint, "no event template"));
    };
    let text = |k: &str| template.get(k).and_then(Value::as_str);
    if text("type") != Some("m.room.member") {
        return Err(invalid(endpoint, "the template is not an m.room.member event"));
    }
    if text("sender") != Some(user_id) || text("state_key") != Some(user_id) {
        return Err(invalid(endpoint, format!("the template is not for {user_id}")));
    }
    // v12 create events name no room: other events still carry room_id.
    if text("room_id") != Some(room_id) {
        return Err(invalid(endpoint, format!("the template is not for room {room_id}")));
    }
    let content = template.get("content").and_then(Value::as_object);
    if content.and_then(|c| c.get("membership")).and_then(Value::as_str) != Some(membership) {
        return Err(invalid(endpoint, format!("the template's membership is not {membership}")));
    }
    let mut event = template.clone();
    for k in ["unsigned", "hashes", "signatures", "event_id"] {
        event.remove(k);
    }
    let event_id = hash_and_sign_event(&mut event, rules, key);
    // The event must parse as a PDU of its room version, as others will parse it.
    let raw = Value::Object(event.clone()).to_string();
    parse_pdu(&raw, rules).map_err(|e| invalid(endpoint, format!("the template does not make a valid event: {e}")))?;
    Ok(SignedMembership { room_version: rules, event_id, pdu: event })
}

/// A checked `send_join` answer, ready to store.
#[derive(Clone, Debug)]
pub struct JoinState {
    /// The state and auth chain (JSON text, deduplicated), every event after
    /// its auth events: to store as outliers, in this order.
    pub outliers: Vec<String>,
    /// The state before our join (event IDs).
    pub state_ids: Vec<String>,
    /// Our join event as the room has it (the resident's countersigned copy
    /// for restricted joins), JSON text.
    pub event: String,
    /// `servers_in_room`, when the resident listed them.
    pub servers_in_room: Option<Vec<String>>,
}

/// Checks a `send_join` v2 answer for our `join` (the reference server's
/// checks): `state` and `auth_chain` are lists of PDUs of this room
/// (unparseable ones are left out: ingest would drop them); the state
/// holds the room's create event, of the room version `make_join` named;
/// `members_omitted` is refused (we asked for the full state); a returned
/// `event` (restricted joins) must be our event, countersigned.
pub fn check_send_join_response(response: &Value, join: &SignedMembership) -> Result<JoinState, MembershipError> {
    const EP: &str = "send_join";
    let rules = join.room_version;
    let room_id = join.pdu.get("room_id").and_then(Value::as_str).unwrap_or_default();
    if response.get("members_omitted").and_then(Value::as_bool) == Some(true) {
        return Err(invalid(EP, "members_omitted was set, but we asked for the full state"));
    }
    let list = |key: &str| -> Result<&Vec<Value>, MembershipError> {
        response.get(key).and_then(Value::as_array).ok_or_else(|| invalid(EP, format!("no {key} list")))
    };
    let (state, auth_chain) = (list("state")?, list("auth_chain")?);
    let mut by_id: HashMap<String, String> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut state_ids: Vec<String> = Vec::new();
    let mut create_version: Option<String> = None;
    for (is_state, pdu) in state.iter().map(|p| (true, p)).chain(auth_chain.iter().map(|p| (false, p))) {
        let raw = pdu.to_string();
        let Ok(parsed) = parse_pdu(&raw, rules) else { continue };
        if parsed.room_id != room_id {
            return Err(invalid(EP, format!("{} belongs to room {}, not {room_id}", parsed.event_id, parsed.room_id)));
        }
        let id = parsed.event_id.as_str().to_owned();
        if is_state {
            if parsed.state_key.is_none() {
                return Err(invalid(EP, format!("{id} in state is not a state event")));
            }
            if parsed.event_type == "m.room.create" && parsed.state_key.as_deref() == Some("") {
                let v = parsed.json.get("content").and_then(|c| c.get("room_version"));
                create_version = Some(v.and_then(Value::as_str).unwrap_or("1").to_owned());
            }
            state_ids.push(id.clone());
        }
        if by_id.insert(id.clone(), raw).is_none() {
            order.push(id);
        }
    }
    match create_version {
        None => return Err(invalid(EP, "no create event in state")),
        Some(v) if v != rules.id => {
            return Err(invalid(EP, format!("unexpected room version {v} in create event")));
        }
        Some(_) => {}
    }
    state_ids.sort_unstable();
    state_ids.dedup();
    let event = match response.get("event") {
        Some(Value::Object(e)) if rules.restricted_join_rule => {
            let raw = Value::Object(e.clone()).to_string();
            let parsed = parse_pdu(&raw, rules).map_err(|e| invalid(EP, format!("the returned join event: {e}")))?;
            if parsed.event_id.as_str() != join.event_id {
                return Err(invalid(EP, "returned an invalid join event (another event ID)"));
            }
            raw
        }
        _ => Value::Object(join.pdu.clone()).to_string(),
    };
    let nodes: Vec<(&str, &str)> = order.iter().map(|id| (id.as_str(), by_id[id].as_str())).collect();
    let outliers = order_by_auth(&nodes).into_iter().map(|i| by_id[&order[i]].clone()).collect();
    let servers_in_room = response
        .get("servers_in_room")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect());
    Ok(JoinState { outliers, state_ids, event, servers_in_room })
}

/// The user we join rooms as: `@{localpart}:{server_name}`.
pub fn join_user_id(localpart: &str, server_name: &str) -> Option<String> {
    let id = format!("@{localpart}:{server_name}");
    is_valid_user_id(&id).then_some(id)
}

/// An invite we accepted: the event countersigned by us, to answer with,
/// and where to join from.
#[derive(Clone, Debug)]
pub struct AcceptedInvite {
    /// The room version of the room.
    pub room_version: &'static RoomVersionRules,
    /// The invite, with our signature added.
    pub event: Map<String, Value>,
    /// The inviting server (to join through).
    pub inviter_server: String,
}

fn refuse(status: u16, errcode: &'static str, reason: impl Into<String>) -> MembershipError {
    MembershipError::InviteRefused { status, errcode, reason: reason.into() }
}

/// Checks an invite for `our_user` received from `origin` at
/// `PUT /_matrix/federation/v{1,2}/invite/{roomId}/{eventId}` (`body`: v2
/// `{event, room_version, invite_room_state}`, v1 the event itself, room
/// version 1 unless the event says otherwise) and countersigns it. The
/// spec's errors: an unsupported room version → 400
/// `M_INCOMPATIBLE_ROOM_VERSION`; an invite that is not for our user, whose
/// sender's server is not `origin`, whose IDs do not match the path, or
/// whose sender's signature does not verify with `keys` → 403 `M_FORBIDDEN`
/// (400 `M_BAD_JSON` for one that does not parse).
#[allow(clippy::too_many_arguments)]
pub fn accept_invite(
    body: &Value,
    v2: bool,
    room_id: &str,
    event_id: &str,
    our_user: &str,
    origin: &str,
    keys: &dyn KeyStore,
    key: &ServerSigningKey,
) -> Result<AcceptedInvite, MembershipError> {
    let (event, version) = if v2 {
        let version = match body.get("room_version") {
            Some(Value::String(v)) => v.as_str(),
            _ => return Err(refuse(400, "M_BAD_JSON", "room_version is required")),
        };
        (body.get("event"), version)
    } else {
        (Some(body), "1")
    };
    let Some(Value::Object(event)) = event else {
        return Err(refuse(400, "M_BAD_JSON", "no invite event"));
    };
    let rules = RoomVersionRules::supported(version)
        .map_err(|_| refuse(400, "M_INCOMPATIBLE_ROOM_VERSION", format!("room version {version} is not supported")))?;
    let raw = Value::Object(event.clone()).to_string();
    let pdu = parse_pdu(&raw, rules).map_err(|e| refuse(400, "M_BAD_JSON", format!("invalid invite event: {e}")))?;
    let membership = pdu.json.get("content").and_then(|c| c.get("membership")).and_then(Value::as_str);
    if pdu.event_type != "m.room.member" || membership != Some("invite") {
        return Err(refuse(403, "M_FORBIDDEN", "not an invite"));
    }
    if pdu.state_key.as_deref() != Some(our_user) {
        return Err(refuse(403, "M_FORBIDDEN", format!("this server only accepts invites for {our_user}")));
    }
    if pdu.room_id != room_id || pdu.event_id.as_str() != event_id {
        return Err(refuse(403, "M_FORBIDDEN", "the invite's room or event ID differs from the request path"));
    }
    if domain_of(&pdu.sender) != Some(origin) {
        return Err(refuse(403, "M_FORBIDDEN", "the inviter's server is not the requesting server"));
    }
    let signers = Signers::of(&pdu, rules).map_err(|e| refuse(403, "M_FORBIDDEN", e))?;
    signers.verify(&pdu, rules, keys).map_err(|e| refuse(403, "M_FORBIDDEN", format!("invite signature: {e}")))?;
    let mut signed = event.clone();
    let signature = key.sign_bytes(pdu.signing_bytes.as_bytes());
    let sigs = signed.entry("signatures").or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(sigs) = sigs {
        let ours = sigs.entry(key.server_name.clone()).or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(ours) = ours {
            ours.insert(key.key_id.clone(), Value::String(signature));
        }
    }
    Ok(AcceptedInvite { room_version: rules, event: signed, inviter_server: origin.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::PinnedKeys;
    use serde_json::json;

    const SEED: &str = "dGhpcyBpcyB0aGUgcm9vbWRhZyB0ZXN0IHNlZWQhISE";

    fn key(server: &str) -> ServerSigningKey {
        ServerSigningKey::from_seed_b64(server, "ed25519:1", SEED).unwrap()
    }

    fn template(user: &str, room: &str, membership: &str) -> Value {
        json!({"room_version": "11", "event": {
            "type": "m.room.member", "room_id": room, "sender": user, "state_key": user,
            "content": {"membership": membership}, "prev_events": ["$p"], "auth_events": ["$a"],
            "depth": 7, "origin_server_ts": 1, "origin": "res.example", "unsigned": {"age": 3}
        }})
    }

    #[test]
    fn make_join_offers_every_version() {
        let t = make_join_target("!r:a.example", "@roomdag:us.example");
        assert!(t.starts_with("/_matrix/federation/v1/make_join/%21r%3Aa.example/%40roomdag%3Aus.example?ver=3&"));
        assert!(t.ends_with("ver=12"));
    }

    #[test]
    fn templates_are_checked_then_signed() {
        let k = key("us.example");
        let user = "@roomdag:us.example";
        let ok = build_membership_event(&template(user, "!r:a", "join"), "!r:a", user, "join", &k).unwrap();
        assert!(ok.pdu["signatures"]["us.example"]["ed25519:1"].is_string());
        assert!(!ok.pdu.contains_key("unsigned"));
        assert_eq!(ok.pdu["depth"], 7, "the template's fields are kept");
        let raw = Value::Object(ok.pdu.clone()).to_string();
        assert_eq!(parse_pdu(&raw, ok.room_version).unwrap().event_id.as_str(), ok.event_id);
        let wrong_user = build_membership_event(&template("@x:a", "!r:a", "join"), "!r:a", user, "join", &k);
        assert!(matches!(wrong_user, Err(MembershipError::InvalidResponse { .. })));
        let wrong_room = build_membership_event(&template(user, "!s:a", "join"), "!r:a", user, "join", &k);
        assert!(wrong_room.is_err());
        let wrong_membership = build_membership_event(&template(user, "!r:a", "leave"), "!r:a", user, "join", &k);
        assert!(wrong_membership.is_err());
        let mut v = template(user, "!r:a", "join");
        v["room_version"] = json!("99");
        assert_eq!(
            build_membership_event(&v, "!r:a", user, "join", &k).unwrap_err(),
            MembershipError::UnsupportedRoomVersion("99".into())
        );
    }

    #[test]
    fn send_join_answers_are_checked() {
        let k = key("us.example");
        let user = "@roomdag:us.example";
        let join = build_membership_event(&template(user, "!r:a", "join"), "!r:a", user, "join", &k).unwrap();
        let err = |v: Value| check_send_join_response(&v, &join).unwrap_err().to_string();
        assert!(err(json!({"state": [], "auth_chain": []})).contains("no create event"));
        assert!(err(json!({"auth_chain": []})).contains("no state list"));
        assert!(err(json!({"state": [], "auth_chain": [], "members_omitted": true})).contains("full state"));
        // A create event of another room version, and an event of another room.
        let mut create = json!({"type": "m.room.create", "state_key": "", "room_id": "!r:a", "sender": "@c:a",
            "content": {"room_version": "10", "creator": "@c:a"}, "prev_events": [], "auth_events": [], "depth": 1,
            "origin_server_ts": 1});
        let Value::Object(ref mut m) = create else { unreachable!() };
        hash_and_sign_event(m, join.room_version, &key("a"));
        assert!(err(json!({"state": [create.clone()], "auth_chain": []})).contains("unexpected room version 10"));
        create["room_id"] = json!("!elsewhere:a");
        assert!(err(json!({"state": [create], "auth_chain": []})).contains("belongs to room"));
    }

    #[test]
    fn invites_are_checked_and_countersigned() {
        let inviter = key("them.example");
        let us = key("us.example");
        let our_user = "@roomdag:us.example";
        let mut keys = PinnedKeys::new();
        keys.insert("them.example", "ed25519:1", &inviter.public_key_b64()).unwrap();
        let invite = |state_key: &str, sender: &str| {
            let mut e = json!({"type": "m.room.member", "room_id": "!r:them.example", "sender": sender,
                "state_key": state_key, "content": {"membership": "invite"}, "prev_events": ["$p"],
                "auth_events": ["$a"], "depth": 3, "origin_server_ts": 5});
            let Value::Object(ref mut m) = e else { unreachable!() };
            let rules = RoomVersionRules::supported("11").unwrap();
            let id = hash_and_sign_event(m, rules, &inviter);
            (e, id)
        };
        let (event, id) = invite(our_user, "@alice:them.example");
        let body = json!({"room_version": "11", "event": event, "invite_room_state": []});
        let accept = |body: &Value, user: &str, origin: &str| {
            accept_invite(body, true, "!r:them.example", &id, user, origin, &keys, &us)
        };
        let a = accept(&body, our_user, "them.example").unwrap();
        assert!(a.event["signatures"]["us.example"]["ed25519:1"].is_string());
        assert!(a.event["signatures"]["them.example"]["ed25519:1"].is_string());
        let status = |r: Result<AcceptedInvite, MembershipError>| match r {
            Err(MembershipError::InviteRefused { status, errcode, .. }) => (status, errcode),
            other => panic!("{other:?}"),
        };
        assert_eq!(status(accept(&body, "@other:us.example", "them.example")), (403, "M_FORBIDDEN"));
        assert_eq!(status(accept(&body, our_user, "evil.example")), (403, "M_FORBIDDEN"));
        let mut old = body.clone();
        old["room_version"] = json!("2");
        assert_eq!(status(accept(&old, our_user, "them.example")), (400, "M_INCOMPATIBLE_ROOM_VERSION"));
        let mut forged = body.clone();
        forged["event"]["signatures"]["them.example"]["ed25519:1"] = json!("AAAA");
        assert_eq!(status(accept(&forged, our_user, "them.example")), (403, "M_FORBIDDEN"));
    }
}
