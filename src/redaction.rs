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

/// Returns the redacted copy of a PDU.
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
pub fn redact(event: &Map<String, Value>, rules: &RoomVersionRules) -> Map<String, Value> {
    let event_type = event.get("type").and_then(Value::as_str).unwrap_or_default();
    let is_create = event_type == "m.room.create";
    let mut out = Map::new();
    for (k, v) in event {
        let keep = KEPT_TOP_LEVEL.contains(&k.as_str())
            || (!rules.updated_redaction_rules && KEPT_TOP_LEVEL_BEFORE_V11.contains(&k.as_str()));
        let dropped_room_id = is_create && rules.room_ids_as_hashes && k == "room_id";
        if keep && !dropped_room_id && k != "content" {
            out.insert(k.clone(), v.clone());
        }
    }
    let content = event.get("content");
    let mut kept = Map::new();
    let keep = |kept: &mut Map<String, Value>, key: &str| {
        if let Some(v) = content.and_then(|c| c.get(key)) {
            kept.insert(key.to_owned(), v.clone());
        }
    };
    match event_type {
        "m.room.member" => {
            keep(&mut kept, "membership");
            if rules.restricted_join_rule_fix {
                keep(&mut kept, "join_authorised_via_users_server");
            }
            if rules.updated_redaction_rules {
                if let Some(Value::Object(tpi)) = content.and_then(|c| c.get("third_party_invite")) {
                    let mut t = Map::new();
                    if let Some(signed) = tpi.get("signed") {
                        t.insert("signed".into(), signed.clone());
                    }
                    kept.insert("third_party_invite".into(), Value::Object(t));
                }
            }
        }
        "m.room.create" => {
            if rules.updated_redaction_rules {
                if let Some(Value::Object(c)) = content {
                    for (k, v) in c {
                        kept.insert(k.clone(), v.clone());
                    }
                }
            }
            if !rules.implicit_room_creator {
                keep(&mut kept, "creator");
            }
        }
        "m.room.join_rules" => {
            keep(&mut kept, "join_rule");
            if rules.restricted_join_rule {
                keep(&mut kept, "allow");
            }
        }
        "m.room.power_levels" => {
            for key in ["users", "users_default", "events", "events_default", "state_default", "ban", "kick", "redact"]
            {
                keep(&mut kept, key);
            }
            if rules.updated_redaction_rules {
                keep(&mut kept, "invite");
            }
        }
        "m.room.aliases" if rules.special_case_aliases_auth => keep(&mut kept, "aliases"),
        "m.room.history_visibility" => keep(&mut kept, "history_visibility"),
        "m.room.redaction" if rules.updated_redaction_rules => keep(&mut kept, "redacts"),
        _ => {}
    }
    out.insert("content".into(), Value::Object(kept));
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
}
