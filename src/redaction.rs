//! The redaction algorithm (spec: room versions, "Redactions"), per room version.
//!
//! Redaction strips an event down to the keys the protocol needs: the
//! top-level keys below, and for a few event types some content keys. The
//! redacted form is what gets hashed into the event ID and signed, what a
//! server stores when the content hash fails, and what it serves once an
//! event has been redacted.

use serde_json::{Map, Value};

use crate::room_version::RoomVersionRules;

/// Top-level keys every room version keeps.
const KEPT_TOP_LEVEL: &[&str] = &[
    "event_id",
    "sender",
    "room_id",
    "hashes",
    "signatures",
    "content",
    "type",
    "state_key",
    "depth",
    "prev_events",
    "origin_server_ts",
    "auth_events",
];

/// Top-level keys kept only before v11 (MSC2176 removed them).
const KEPT_TOP_LEVEL_BEFORE_V11: &[&str] = &["prev_state", "membership", "origin"];

/// What the redaction algorithm keeps of a PDU, borrowed from it: the kept
/// top-level members (in key order, `content` not among them) and the kept
/// content members. [`redact`] copies it into a new object;
/// [`crate::signing::redacted_signing_bytes_of`] writes its canonical JSON
/// without copying anything.
#[derive(Debug)]
pub struct Redacted<'a> {
    /// The kept top-level members but `content`, in key order.
    pub top: Vec<(&'a str, &'a Value)>,
    /// The kept content members, in key order, each key once.
    pub content: Vec<(&'a str, Kept<'a>)>,
}

/// A kept content member.
#[derive(Clone, Copy, Debug)]
pub enum Kept<'a> {
    /// The value as it is.
    Whole(&'a Value),
    /// An object reduced to its `signed` member, if it has one (v11+
    /// `third_party_invite`).
    OnlySigned(Option<&'a Value>),
}

impl Kept<'_> {
    /// The kept value, copied.
    pub fn to_value(self) -> Value {
        match self {
            Kept::Whole(v) => v.clone(),
            Kept::OnlySigned(signed) => {
                let mut t = Map::new();
                if let Some(signed) = signed {
                    t.insert("signed".into(), signed.clone());
                }
                Value::Object(t)
            }
        }
    }
}

/// The redaction algorithm, as what it keeps (see [`redact`]).
///
/// 1. Keep only the allowed top-level keys.
/// 2. Replace `content` by the content keys the event type keeps
///    (`m.room.member`: `membership`, since v9 `join_authorised_via_users_server`,
///    since v11 `third_party_invite.signed`; `m.room.create`: `creator` before
///    v11, the whole content since v11; `m.room.join_rules`: `join_rule`,
///    since v8 `allow`; `m.room.power_levels`: the level keys, since v11
///    `invite`; `m.room.aliases` (v1–v5): `aliases`;
///    `m.room.history_visibility`: `history_visibility`; `m.room.redaction`
///    (since v11): `redacts`).
/// 3. Since v12 the create event has no `room_id`.
///
/// `unsigned` is dropped: it is never hashed, signed or served in redacted form.
pub fn redacted_view<'a>(event: &'a Map<String, Value>, rules: &RoomVersionRules) -> Redacted<'a> {
    let event_type = event.get("type").and_then(Value::as_str).unwrap_or_default();
    let is_create = event_type == "m.room.create";
    // 1. (and 3.)
    let top = event
        .iter()
        .filter(|(k, _)| {
            let keep = KEPT_TOP_LEVEL.contains(&k.as_str())
                || (!rules.updated_redaction_rules && KEPT_TOP_LEVEL_BEFORE_V11.contains(&k.as_str()));
            let dropped_room_id = is_create && rules.room_ids_as_hashes && *k == "room_id";
            keep && !dropped_room_id && *k != "content"
        })
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    // 2.
    let content = event.get("content").and_then(Value::as_object);
    let mut kept: Vec<(&'a str, Kept<'a>)> = Vec::new();
    let mut keep = |key: &'static str| {
        if let Some(v) = content.and_then(|c| c.get(key)) {
            kept.push((key, Kept::Whole(v)));
        }
    };
    match event_type {
        "m.room.member" => {
            keep("membership");
            if rules.restricted_join_rule_fix {
                keep("join_authorised_via_users_server");
            }
            if rules.updated_redaction_rules {
                if let Some(Value::Object(tpi)) = content.and_then(|c| c.get("third_party_invite")) {
                    kept.push(("third_party_invite", Kept::OnlySigned(tpi.get("signed"))));
                }
            }
        }
        "m.room.create" => {
            if !rules.implicit_room_creator {
                keep("creator");
            }
            if rules.updated_redaction_rules {
                kept.extend(content.into_iter().flatten().map(|(k, v)| (k.as_str(), Kept::Whole(v))));
            }
        }
        "m.room.join_rules" => {
            keep("join_rule");
            if rules.restricted_join_rule {
                keep("allow");
            }
        }
        "m.room.power_levels" => {
            for key in ["users", "users_default", "events", "events_default", "state_default", "ban", "kick", "redact"]
            {
                keep(key);
            }
            if rules.updated_redaction_rules {
                keep("invite");
            }
        }
        "m.room.aliases" if rules.special_case_aliases_auth => keep("aliases"),
        "m.room.history_visibility" => keep("history_visibility"),
        "m.room.redaction" if rules.updated_redaction_rules => keep("redacts"),
        _ => {}
    }
    // Key order (code-point order is UTF-8 byte order); a key kept twice
    // (a create event's `creator`) is the same member of the same content.
    kept.sort_by(|a, b| a.0.cmp(b.0));
    kept.dedup_by(|a, b| a.0 == b.0);
    Redacted { top, content: kept }
}

/// Returns the redacted copy of a PDU ([`redacted_view`], copied).
pub fn redact(event: &Map<String, Value>, rules: &RoomVersionRules) -> Map<String, Value> {
    let view = redacted_view(event, rules);
    let mut out: Map<String, Value> = view.top.into_iter().map(|(k, v)| (k.to_owned(), v.clone())).collect();
    let content = view.content.into_iter().map(|(k, v)| (k.to_owned(), v.to_value())).collect();
    out.insert("content".into(), Value::Object(content));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn message_loses_content_and_unknown_keys() {
        let e = obj(
            json!({"type": "m.room.message", "content": {"body": "x"}, "origin": "a", "unsigned": {"age": 1}, "foo": 1, "sender": "@a:b"}),
        );
        assert_eq!(
            redact(&e, &RoomVersionRules::V10),
            obj(json!({"type": "m.room.message", "content": {}, "origin": "a", "sender": "@a:b"}))
        );
        assert_eq!(
            redact(&e, &RoomVersionRules::V11),
            obj(json!({"type": "m.room.message", "content": {}, "sender": "@a:b"}))
        );
    }

    #[test]
    fn member_keys_by_version() {
        let e = obj(json!({"type": "m.room.member", "content": {"membership": "join", "displayname": "x",
            "join_authorised_via_users_server": "@u:s", "third_party_invite": {"signed": {"a": 1}, "display_name": "d"}}}));
        assert_eq!(redact(&e, &RoomVersionRules::V8)["content"], json!({"membership": "join"}));
        assert_eq!(
            redact(&e, &RoomVersionRules::V9)["content"],
            json!({"membership": "join", "join_authorised_via_users_server": "@u:s"})
        );
        assert_eq!(
            redact(&e, &RoomVersionRules::V11)["content"],
            json!({"membership": "join", "join_authorised_via_users_server": "@u:s", "third_party_invite": {"signed": {"a": 1}}})
        );
    }

    #[test]
    fn create_power_levels_redaction() {
        let c = obj(
            json!({"type": "m.room.create", "room_id": "!r", "content": {"creator": "@a:b", "room_version": "12", "m.federate": false}}),
        );
        assert_eq!(redact(&c, &RoomVersionRules::V10)["content"], json!({"creator": "@a:b"}));
        let v12 = redact(&c, &RoomVersionRules::V12);
        assert_eq!(v12["content"], json!({"creator": "@a:b", "room_version": "12", "m.federate": false}));
        assert!(!v12.contains_key("room_id"));
        let pl = obj(
            json!({"type": "m.room.power_levels", "content": {"ban": 1, "invite": 2, "notifications": {"room": 3}}}),
        );
        assert_eq!(redact(&pl, &RoomVersionRules::V10)["content"], json!({"ban": 1}));
        assert_eq!(redact(&pl, &RoomVersionRules::V11)["content"], json!({"ban": 1, "invite": 2}));
        let r = obj(json!({"type": "m.room.redaction", "redacts": "$x", "content": {"redacts": "$x", "reason": "r"}}));
        assert_eq!(redact(&r, &RoomVersionRules::V10), obj(json!({"type": "m.room.redaction", "content": {}})));
        assert_eq!(
            redact(&r, &RoomVersionRules::V11),
            obj(json!({"type": "m.room.redaction", "content": {"redacts": "$x"}}))
        );
    }
    /// The signing bytes written from the view equal those of the redacted
    /// copy, for every room version, over events built from the cases the
    /// algorithm distinguishes (each kept type, content that is not an
    /// object, `third_party_invite` with and without `signed`, top-level keys
    /// sorting before, between and after `content`, non-ASCII keys) and the
    /// demo room's PDUs.
    #[test]
    fn signing_bytes_from_the_view_equal_those_of_the_copy() {
        use crate::signing::{redacted_signing_bytes, redacted_signing_bytes_of};
        let types = [
            "m.room.member",
            "m.room.create",
            "m.room.join_rules",
            "m.room.power_levels",
            "m.room.aliases",
            "m.room.history_visibility",
            "m.room.redaction",
            "m.room.message",
        ];
        let contents = [
            json!({"membership": "join", "join_authorised_via_users_server": "@u:s", "displayname": "d",
                "third_party_invite": {"signed": {"token": "t", "mxid": "@x:y"}, "display_name": "x"}}),
            json!({"membership": "invite", "third_party_invite": {"display_name": "no signed"}}),
            json!({"third_party_invite": "not an object", "creator": "@a:b", "room_version": "11", "é": [1, {"b": null}]}),
            json!({"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": "!r:s"}],
                "users": {"@a:b": 100}, "users_default": 0, "events": {"m.room.name": 50}, "events_default": 0,
                "state_default": 50, "ban": 50, "kick": 50, "redact": 50, "invite": 0, "notifications": {"room": 50},
                "aliases": ["#a:b"], "history_visibility": "shared", "redacts": "$x", "reason": "r"}),
            json!("content that is a string"),
            json!([1, 2]),
            json!({}),
        ];
        let mut events: Vec<Map<String, Value>> = Vec::new();
        for t in types {
            for c in &contents {
                let mut e = obj(json!({"type": t, "content": c, "sender": "@a:b", "room_id": "!r:s", "depth": 3,
                    "auth_events": ["$a"], "prev_events": ["$p"], "origin_server_ts": 1, "hashes": {"sha256": "h"},
                    "signatures": {"s": {"ed25519:1": "x"}}, "unsigned": {"age": 1}, "age_ts": 5, "origin": "s",
                    "membership": "join", "prev_state": [], "state_key": "", "zz": 1, "a": 2, "ü": 3}));
                events.push(e.clone());
                e.remove("content");
                e.remove("room_id");
                events.push(e);
            }
        }
        let demo = crate::demo::demo_room(40);
        events.extend(demo["events"].as_array().unwrap().iter().map(|e| e["pdu"].as_object().unwrap().clone()));
        for rules in RoomVersionRules::ALL {
            for e in &events {
                assert_eq!(
                    redacted_signing_bytes_of(e, rules),
                    redacted_signing_bytes(&redact(e, rules)),
                    "v{}: {e:?}",
                    rules.id
                );
            }
        }
    }
}
