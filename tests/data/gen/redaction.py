"""Generate tests/data/redaction/*.json.

One file per event-type family, each {"provenance", "schema", "cases": [...]}, every
case {"name", "room_version", "input", "expected", "expected_spec"?, "note"?}.

`expected` is computed with Synapse's own redaction
(synapse.synapse_rust.events.redact_event_dict, the function
synapse.crypto.event_signing uses before signing/hashing).  `expected_spec` is
added where the spec text gives a different answer (it only differs in
`unsigned`, and for v12 create events that carry a room_id), derived from
`expected` by the rule stated in the case's note.

Scenarios are roomdag's own, written from the spec's per-version redaction
lists (matrix-spec content/rooms/fragments/v1-, v6-, v9-, v11-redactions.md,
rooms/v8.md) with the kinds of cases Synapse's PruneEventTestCase and
gomatrixserverlib's redactevent_test.go exercise.
"""

from __future__ import annotations

import copy
import os

from _common import DATA, SYNAPSE_VERSION, write_json

from synapse.api.room_versions import KNOWN_ROOM_VERSIONS
from synapse.synapse_rust.events import redact_event_dict

OUT = os.path.join(DATA, "redaction")
ALL = ["3", "4", "5", "6", "7", "8", "9", "10", "11", "12"]
FAMILIES = ["3", "6", "8", "9", "11", "12"]  # one representative per redaction algorithm change

ROOM = "!room:example.org"
V12_ROOM = "!CREATEeventhashAAAAAAAAAAAAAAAAAAAAAAAAAA"

UNSIGNED_NOTE = (
    "Synapse keeps the 'unsigned' key with only age_ts and replaces_state in it (an empty object if "
    "neither is present); the spec's key list does not contain 'unsigned' at all, so expected_spec "
    "drops it. For hashing and signing 'unsigned' is removed anyway, so both agree there. "
    "`expected` is Synapse's output."
)


def base(rv: str, typ: str, content, *, state_key=None, **extra) -> dict:
    ev = {
        "type": typ,
        "room_id": V12_ROOM if rv == "12" else ROOM,
        "sender": "@alice:example.org",
        "content": content,
        "origin_server_ts": 1700000000000,
        "depth": 12,
        "prev_events": ["$prevAAAA"],
        "auth_events": ["$authAAAA", "$authBBBB"],
        "hashes": {"sha256": "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"},
        "signatures": {"example.org": {"ed25519:1": "c2lnbmF0dXJlc2lnbmF0dXJl"}},
    }
    if state_key is not None:
        ev["state_key"] = state_key
    ev.update(extra)
    return ev


def spec_form(rv: str, inp: dict, synapse_out: dict) -> dict:
    """What the spec text says, derived from Synapse's output: no `unsigned`;
    v12 create events lose nothing else (the spec has no room_id rule because a
    valid v12 create has no room_id)."""
    out = copy.deepcopy(synapse_out)
    out.pop("unsigned", None)
    if rv == "12" and inp.get("type") == "m.room.create" and "room_id" in inp:
        out["room_id"] = inp["room_id"]
    return out


def case(name: str, rv: str, inp: dict, note: str | None = None) -> dict:
    got = redact_event_dict(KNOWN_ROOM_VERSIONS[rv], copy.deepcopy(inp))
    c = {"name": name, "room_version": rv, "input": inp, "expected": got}
    spec = spec_form(rv, inp, got)
    if spec != got:
        c["expected_spec"] = spec
    if note:
        c["note"] = note
    return c


def create_cases() -> list:
    out = []
    for rv in ALL:
        content = {
            "creator": "@alice:example.org",
            "room_version": rv,
            "m.federate": False,
            "predecessor": {"room_id": "!old:example.org", "event_id": "$oldlast"},
            "type": "m.space",
        }
        if rv == "12":
            # v12 create events carry no creator (the sender is the creator)
            del content["creator"]
            content["additional_creators"] = ["@bob:example.org"]
        ev = base(rv, "m.room.create", content, state_key="", prev_events=[], auth_events=[], depth=1)
        if rv == "12":
            del ev["room_id"]
        out.append(case(f"create_v{rv}", rv, ev,
                        "Before v11 only content.creator survives; from v11 the whole create content is kept."))
    # v11 create that still carries creator: kept as an ordinary content key
    ev = base("11", "m.room.create", {"creator": "@alice:example.org", "room_version": "11", "x": [1]},
              state_key="", prev_events=[], auth_events=[], depth=1)
    out.append(case("create_v11_with_creator_key", "11", ev))
    # create without creator pre-v11: content becomes empty
    ev = base("6", "m.room.create", {"room_version": "6", "m.federate": True},
              state_key="", prev_events=[], auth_events=[], depth=1)
    out.append(case("create_v6_without_creator", "6", ev))
    # v12 create that (invalidly) has a room_id: Synapse strips it
    ev = base("12", "m.room.create", {"room_version": "12"}, state_key="", prev_events=[], auth_events=[], depth=1)
    out.append(case(
        "create_v12_with_room_id", "12", ev,
        "Synapse's v12 redaction removes room_id from create events (the room ID is derived from the "
        "event ID). The spec's v11 key list (used by v12) still lists room_id; such an event is "
        "invalid in v12 anyway (auth rule 1.2 rejects a create event with a room_id). "
        "expected_spec keeps it."))
    return out


def member_cases() -> list:
    out = []
    content = {
        "membership": "join",
        "displayname": "Alice",
        "avatar_url": "mxc://example.org/abc",
        "reason": "hello",
        "join_authorised_via_users_server": "@bob:example.org",
        "third_party_invite": {
            "display_name": "alice...@ex",
            "signed": {
                "mxid": "@alice:example.org",
                "token": "tok",
                "signatures": {"id.example.org": {"ed25519:0": "c2ln"}},
            },
        },
        "is_direct": True,
    }
    for rv in ALL:
        out.append(case(
            f"member_v{rv}", rv,
            base(rv, "m.room.member", copy.deepcopy(content), state_key="@alice:example.org"),
            "membership always kept; join_authorised_via_users_server from v9 (not v8); "
            "third_party_invite.signed from v11."))
    tpi_no_signed = {"membership": "invite", "third_party_invite": {"display_name": "x"}}
    for rv in ("10", "11"):
        out.append(case(
            f"member_third_party_invite_without_signed_v{rv}", rv,
            base(rv, "m.room.member", copy.deepcopy(tpi_no_signed), state_key="@carol:example.org"),
            "v11+: Synapse keeps an empty third_party_invite object when it has no 'signed' key. "
            "The spec only says the 'signed' key of third_party_invite is kept; an implementation "
            "that drops the empty object would produce a different redacted form (and event ID)."))
    tpi_not_object = {"membership": "invite", "third_party_invite": "not-an-object"}
    out.append(case(
        "member_third_party_invite_not_object_v11", "11",
        base("11", "m.room.member", tpi_not_object, state_key="@carol:example.org"),
        "A non-object third_party_invite is dropped entirely."))
    out.append(case(
        "member_no_membership_v11", "11",
        base("11", "m.room.member", {"displayname": "x"}, state_key="@alice:example.org"),
        "Missing allowed keys are simply absent from the result."))
    return out


def join_rules_cases() -> list:
    out = []
    content = {
        "join_rule": "restricted",
        "allow": [{"type": "m.room_membership", "room_id": "!space:example.org"}],
        "extra": "dropped",
    }
    for rv in ALL:
        out.append(case(f"join_rules_v{rv}", rv,
                        base(rv, "m.room.join_rules", copy.deepcopy(content), state_key=""),
                        "join_rule always kept; allow kept from v8."))
    return out


def power_levels_cases() -> list:
    out = []
    content = {
        "ban": 50,
        "events": {"m.room.name": 100, "m.room.power_levels": 100},
        "events_default": 0,
        "invite": 0,
        "kick": 50,
        "redact": 50,
        "state_default": 50,
        "users": {"@alice:example.org": 100},
        "users_default": 0,
        "notifications": {"room": 50},
        "historical": 100,
    }
    for rv in ALL:
        out.append(case(f"power_levels_v{rv}", rv,
                        base(rv, "m.room.power_levels", copy.deepcopy(content), state_key=""),
                        "invite is kept from v11 only; notifications is never kept."))
    return out


def history_visibility_cases() -> list:
    out = []
    for rv in FAMILIES:
        out.append(case(f"history_visibility_v{rv}", rv,
                        base(rv, "m.room.history_visibility",
                             {"history_visibility": "joined", "other": 1}, state_key="")))
    return out


def aliases_cases() -> list:
    out = []
    for rv in ALL:
        out.append(case(f"aliases_v{rv}", rv,
                        base(rv, "m.room.aliases", {"aliases": ["#a:example.org"], "other": 1},
                             state_key="example.org"),
                        "content.aliases is kept only in room versions 1-5."))
    return out


def redaction_event_cases() -> list:
    out = []
    for rv in ALL:
        ev = base(rv, "m.room.redaction", {"redacts": "$target", "reason": "spam"}, redacts="$target")
        out.append(case(
            f"redaction_v{rv}", rv, ev,
            "Top-level 'redacts' is not in any redaction key list, so it is always dropped; "
            "content.redacts is kept from v11 (where it is the canonical location)."))
    return out


def top_level_cases() -> list:
    out = []
    for rv in ALL:
        ev = base(rv, "m.room.member", {"membership": "join"}, state_key="@alice:example.org",
                  origin="example.org", membership="join", prev_state=["$old"],
                  unknown_key={"x": 1}, outlier=True, destinations=["a"], age_ts=5, age=7,
                  user_id="@alice:example.org")
        out.append(case(
            f"top_level_keys_v{rv}", rv, ev,
            "origin, membership and prev_state are kept before v11 only; any other unknown top-level "
            "key (incl. age_ts, age, user_id, outlier, destinations) is dropped."))
    ev = base("10", "m.room.message", {"body": "x"}, event_id="$explicit:example.org")
    out.append(case("event_id_key_kept_v10", "10", ev,
                    "event_id is in every key list (it only occurs in v1/v2-format events)."))
    ev = base("11", "m.room.message", {"body": "x"}, event_id="$explicit:example.org")
    out.append(case("event_id_key_kept_v11", "11", ev))
    ev = base("11", "m.room.message", {"body": "x"})
    del ev["hashes"], ev["signatures"]
    out.append(case("no_hashes_no_signatures_v11", "11", ev,
                    "hashes/signatures are kept if present but not added if absent."))
    return out


def unsigned_cases() -> list:
    out = []
    unsigned = {
        "age_ts": 1700000000001,
        "replaces_state": "$old",
        "prev_content": {"membership": "invite"},
        "age": 1234,
        "redacted_because": {"type": "m.room.redaction"},
        "transaction_id": "txn",
        "invite_room_state": [],
    }
    for rv in FAMILIES:
        out.append(case(f"unsigned_v{rv}", rv,
                        base(rv, "m.room.member", {"membership": "join"}, state_key="@alice:example.org",
                             unsigned=copy.deepcopy(unsigned)), UNSIGNED_NOTE))
    out.append(case("unsigned_without_allowed_keys_v11", "11",
                    base("11", "m.room.message", {"body": "hi"}, unsigned={"age": 5}), UNSIGNED_NOTE))
    return out


def other_types_cases() -> list:
    out = []
    samples = [
        ("m.room.message", None, {"body": "hi", "msgtype": "m.text",
                                  "m.relates_to": {"rel_type": "m.thread", "event_id": "$root"}}),
        ("m.room.topic", "", {"topic": "t"}),
        ("m.room.name", "", {"name": "n"}),
        ("m.room.server_acl", "", {"allow": ["*"], "deny": ["evil.example"]}),
        ("m.room.third_party_invite", "token", {"display_name": "x", "public_key": "abc"}),
        ("m.room.guest_access", "", {"guest_access": "can_join"}),
        ("m.room.message", None, {"membership": "join", "join_rule": "public", "creator": "@x:y"}),
    ]
    for rv in ("3", "11"):
        for i, (typ, sk, content) in enumerate(samples):
            out.append(case(f"{typ.replace('m.room.', '')}_{i}_v{rv}", rv,
                            base(rv, typ, copy.deepcopy(content), state_key=sk),
                            "Content of other event types is emptied (m.relates_to is only preserved by "
                            "unstable MSC3389 room versions, none of 1-12); keys special to other event "
                            "types are not kept."))
    return out


def main() -> None:
    groups = {
        "create": create_cases(),
        "member": member_cases(),
        "join_rules": join_rules_cases(),
        "power_levels": power_levels_cases(),
        "history_visibility": history_visibility_cases(),
        "aliases": aliases_cases(),
        "redaction_event": redaction_event_cases(),
        "top_level_keys": top_level_cases(),
        "unsigned": unsigned_cases(),
        "other_types": other_types_cases(),
    }
    # spot checks of the brief's expectations
    by = {c["name"]: c for cs in groups.values() for c in cs}
    assert by["create_v10"]["expected"]["content"] == {"creator": "@alice:example.org"}
    assert "m.federate" in by["create_v11"]["expected"]["content"]
    assert "room_id" not in by["create_v12_with_room_id"]["expected"]
    assert "join_authorised_via_users_server" not in by["member_v8"]["expected"]["content"]
    assert "join_authorised_via_users_server" in by["member_v9"]["expected"]["content"]
    assert "third_party_invite" not in by["member_v10"]["expected"]["content"]
    assert by["member_v11"]["expected"]["content"]["third_party_invite"] == {"signed": by["member_v11"]["input"]["content"]["third_party_invite"]["signed"]}
    assert "allow" not in by["join_rules_v7"]["expected"]["content"] and "allow" in by["join_rules_v8"]["expected"]["content"]
    assert "invite" not in by["power_levels_v10"]["expected"]["content"] and "invite" in by["power_levels_v11"]["expected"]["content"]
    assert by["aliases_v5"]["expected"]["content"] and not by["aliases_v6"]["expected"]["content"]
    assert by["redaction_v10"]["expected"]["content"] == {} and by["redaction_v11"]["expected"]["content"] == {"redacts": "$target"}
    assert "origin" in by["top_level_keys_v10"]["expected"] and "origin" not in by["top_level_keys_v11"]["expected"]

    n = 0
    for group, cases in groups.items():
        doc = {
            "provenance": (
                "roomdag's own redaction cases, written from the Matrix spec's per-room-version redaction "
                "rules (matrix-spec content/rooms/fragments/v1-/v6-/v9-/v11-redactions.md, rooms/v8.md). "
                f"'expected' = Synapse {SYNAPSE_VERSION} synapse.synapse_rust.events.redact_event_dict"
                "(room_version, input) (the function Synapse uses before hashing/signing), computed by "
                "tests/data/gen/redaction.py. 'expected_spec' is present only where the spec text differs "
                "from Synapse (see each note). Tests should compare against 'expected' unless they "
                "implement the spec's unsigned handling, in which case use 'expected_spec' when present."
            ),
            "schema": {
                "room_version": "room version string",
                "input": "full event object (v3+ PDU format; sample hashes/signatures are placeholders)",
                "expected": "Synapse's redacted form",
                "expected_spec": "the spec's redacted form where it differs from Synapse (unsigned removed entirely; v12 create keeps room_id)",
            },
            "cases": cases,
        }
        write_json(os.path.join(OUT, f"{group}.json"), doc)
        n += len(cases)
    print(f"{n} redaction cases")


if __name__ == "__main__":
    main()
