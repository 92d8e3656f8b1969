"""Generate tests/data/signing.json.

The Matrix spec's "Cryptographic Test Vectors" (matrix-org/matrix-spec
content/appendices.md, Apache-2.0) re-computed with Synapse's own signing code
(synapse.crypto.event_signing.add_hashes_and_signatures, signedjson,
canonicaljson) for several room versions, plus:
  * gomatrixserverlib eventcrypto_test.go verification vectors (Apache-2.0,
    same key; converted to data, including its negative cases);
  * a few roomdag-own vectors (v12 create event -> room ID, v11 redaction
    event, v9 restricted join) computed the same way.

Every published value is asserted equal to the recomputed one.
"""

from __future__ import annotations

import copy
import hashlib
import os

from _common import DATA, SYNAPSE_VERSION, write_json

from canonicaljson import encode_canonical_json
from signedjson.key import decode_signing_key_base64, encode_verify_key_base64, get_verify_key
from signedjson.sign import SignatureVerifyException, sign_json, verify_signed_json
from unpaddedbase64 import encode_base64

from synapse.api.room_versions import KNOWN_ROOM_VERSIONS, EventFormatVersions
from synapse.crypto.event_signing import add_hashes_and_signatures, compute_content_hash
from synapse.events import make_event_from_dict
from synapse.synapse_rust.events import redact_event_dict

SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
SERVER = "domain"
KEY_ID = "ed25519:1"
SK = decode_signing_key_base64("ed25519", "1", SEED)
VK = get_verify_key(SK)
PUBLIC_KEY = encode_verify_key_base64(VK)

SPEC = "matrix-spec content/appendices.md, Cryptographic Test Vectors"
GMSL = "gomatrixserverlib eventcrypto_test.go TestVerifyEventSignatureTestVectors (Apache-2.0)"
OWN = "roomdag (own vector, values computed with Synapse)"

MINIMAL_EVENT = {
    "room_id": "!x:domain",
    "sender": "@a:domain",
    "origin": "domain",
    "origin_server_ts": 1000000,
    "signatures": {},
    "hashes": {},
    "type": "X",
    "content": {},
    "prev_events": [],
    "auth_events": [],
    "depth": 3,
    "unsigned": {"age_ts": 1000000},
}
MESSAGE_EVENT = {
    "content": {"body": "Here is the message content"},
    "event_id": "$0:domain",
    "origin": "domain",
    "origin_server_ts": 1000000,
    "type": "m.room.message",
    "room_id": "!r:domain",
    "sender": "@u:domain",
    "signatures": {},
    "unsigned": {"age_ts": 1000000},
}

PUBLISHED = {
    "json_empty": "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ",
    "json_one_two": "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw",
    "minimal_hash": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos",
    "minimal_sig_pre_v11": "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg",
    "message_hash": "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g",
    "message_sig_pre_v11": "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA",
}
# Values derived in /work/shared/research/ecosystem.md section 3 (cross-checked there with ruma);
# asserted here as a second, independent computation.
DERIVED = {
    "minimal_sig_v11": "Jxp+1glFcZM+nnHpY0EkedRR7u0VmKsJYGnQqIvqus3UvL5X/p1y6wSkLhGoTBel6MZ9lrMIzUqrjqFquWJKBw",
    "message_sig_v11": "4WQB/6LN2OtkUN/+18xUNB/U4RTX1N3EeKBdlCxux08YO8izKDrSRqML1XB8V97IK7AujkNO1xMl7TaBLA4kDw",
    "minimal_id_pre_v11": "$8yif6p8EqgoSten2BLje9ntKm720NyFLWQv9tn8memc",
    "minimal_id_v11": "$70O_oKlXzFbkfu0KE88USi98DjSWrOELrPj-8tisl8I",
}


def reference_hash(rv_id: str, signed: dict) -> str:
    """Reference hash the way the spec describes it: redact, drop signatures and
    unsigned (keep hashes), canonical JSON, SHA-256, unpadded base64 (standard
    alphabet for v1-v3, URL-safe from v4)."""
    rv = KNOWN_ROOM_VERSIONS[rv_id]
    red = redact_event_dict(rv, copy.deepcopy(signed))
    red.pop("signatures", None)
    red.pop("unsigned", None)
    red.pop("age_ts", None)
    digest = hashlib.sha256(encode_canonical_json(red)).digest()
    b64 = encode_base64(digest)
    if rv.event_format not in (EventFormatVersions.ROOM_V1_V2, EventFormatVersions.ROOM_V3):
        b64 = b64.replace("+", "-").replace("/", "_")
    return b64


def signing_input(rv_id: str, event: dict) -> str:
    """The exact bytes that get signed: the redacted event minus signatures/unsigned."""
    red = redact_event_dict(KNOWN_ROOM_VERSIONS[rv_id], copy.deepcopy(event))
    red.pop("signatures", None)
    red.pop("unsigned", None)
    red.pop("age_ts", None)
    return encode_canonical_json(red).decode("utf-8")


def event_vector(name: str, source: str, rv_id: str, inp: dict, *, expect_hash=None,
                 expect_sig=None, expect_id=None, id_applicable=True, note=None) -> dict:
    rv = KNOWN_ROOM_VERSIONS[rv_id]
    signed = copy.deepcopy(inp)
    add_hashes_and_signatures(rv, signed, SERVER, SK)
    content_hash = signed["hashes"]["sha256"]
    sig = signed["signatures"][SERVER][KEY_ID]
    if expect_hash is not None:
        assert content_hash == expect_hash, (name, content_hash, expect_hash)
    if expect_sig is not None:
        assert sig == expect_sig, (name, sig, expect_sig)
    # the signature verifies over the redacted form
    verify_signed_json(redact_event_dict(rv, copy.deepcopy(signed)), SERVER, VK)
    v: dict = {
        "kind": "event",
        "name": name,
        "source": source,
        "room_version": rv_id,
        "input": inp,
        "expected_content_hash": content_hash,
        "expected_signature": sig,
        "signing_input": signing_input(rv_id, signed),
    }
    ref = reference_hash(rv_id, signed)
    if rv.event_format == EventFormatVersions.ROOM_V1_V2:
        v["expected_reference_hash"] = ref
        v["expected_event_id"] = None
    elif id_applicable:
        evid = "$" + ref
        ev = make_event_from_dict(copy.deepcopy(signed), rv)
        assert ev.event_id == evid, (name, ev.event_id, evid)
        if expect_id is not None:
            assert evid == expect_id, (name, evid, expect_id)
        v["expected_event_id"] = evid
        if rv.msc4291_room_ids_as_hashes and inp.get("type") == "m.room.create":
            v["expected_room_id"] = "!" + evid[1:]
            assert ev.room_id == v["expected_room_id"]
    else:
        v["expected_event_id"] = None
    v["expected_output"] = signed
    if note:
        v["note"] = note
    return v


def main() -> None:
    vectors = []
    # ---- JSON signing ---------------------------------------------------------------------
    for name, obj, want in (("json_empty_object", {}, PUBLISHED["json_empty"]),
                            ("json_one_two", {"one": 1, "two": "Two"}, PUBLISHED["json_one_two"])):
        signed = sign_json(copy.deepcopy(obj), SERVER, SK)
        sig = signed["signatures"][SERVER][KEY_ID]
        assert sig == want, (name, sig)
        vectors.append({
            "kind": "json", "name": name, "source": SPEC, "room_version": None, "input": obj,
            "expected_signature": sig, "signing_input": encode_canonical_json(obj).decode(),
            "expected_output": signed,
        })

    # ---- spec event vectors per room version ---------------------------------------------------
    pre_v11_note = ("Published spec value; the spec vectors use the pre-v11 redaction algorithm "
                    "(top-level 'origin' is kept), i.e. room versions 1-10.")
    v11_note = ("Room versions 11/12 redact 'origin' away before signing, so the signature and "
                "event ID differ from the published (pre-v11) values. Not published in the spec; "
                "computed with Synapse and equal to the values derived in research/ecosystem.md.")
    for rv_id in ("3", "4", "10"):
        vectors.append(event_vector(
            f"spec_minimal_event_v{rv_id}", SPEC, rv_id, MINIMAL_EVENT,
            expect_hash=PUBLISHED["minimal_hash"], expect_sig=PUBLISHED["minimal_sig_pre_v11"],
            expect_id=DERIVED["minimal_id_pre_v11"],
            note=pre_v11_note + (" Event ID: the reference hash happens to contain no '+', '/', "
                                 "'-' or '_' so the v3 (standard) and v4+ (URL-safe) forms coincide."
                                 if rv_id == "3" else "")))
    for rv_id in ("11", "12"):
        vectors.append(event_vector(
            f"spec_minimal_event_v{rv_id}", SPEC + " (re-computed for v11+ redaction)", rv_id,
            MINIMAL_EVENT, expect_hash=PUBLISHED["minimal_hash"], expect_sig=DERIVED["minimal_sig_v11"],
            expect_id=DERIVED["minimal_id_v11"], note=v11_note))
    vectors.append(event_vector(
        "spec_message_event_v1", SPEC, "1", MESSAGE_EVENT,
        expect_hash=PUBLISHED["message_hash"], expect_sig=PUBLISHED["message_sig_pre_v11"],
        note=pre_v11_note + " This event carries an explicit event_id ($0:domain), i.e. the "
        "v1/v2 event format, so no hash-based event ID applies; expected_reference_hash is its "
        "v1-style reference hash (as used in v1/v2 prev_events/auth_events pairs)."))
    vectors.append(event_vector(
        "spec_message_event_v10", SPEC, "10", MESSAGE_EVENT,
        expect_hash=PUBLISHED["message_hash"], expect_sig=PUBLISHED["message_sig_pre_v11"],
        id_applicable=False,
        note=pre_v11_note + " The explicit event_id field is not valid in the v3+ event format, "
        "so expected_event_id is null; hash and signature are still well defined."))
    vectors.append(event_vector(
        "spec_message_event_v11", SPEC + " (re-computed for v11+ redaction)", "11", MESSAGE_EVENT,
        expect_hash=PUBLISHED["message_hash"], expect_sig=DERIVED["message_sig_v11"],
        id_applicable=False, note=v11_note + " expected_event_id is null (explicit event_id field)."))

    # ---- own vectors ---------------------------------------------------------------------------
    v12_create = {
        "type": "m.room.create", "state_key": "", "sender": "@a:domain",
        "content": {"room_version": "12", "additional_creators": ["@b:domain"], "m.federate": True},
        "origin_server_ts": 1000000, "depth": 1, "prev_events": [], "auth_events": [],
        "hashes": {}, "signatures": {}, "unsigned": {"age_ts": 1000000},
    }
    vectors.append(event_vector(
        "own_v12_create_room_id", OWN, "12", v12_create,
        note="v12 create event: no room_id; the room ID is '!' + the event ID without '$'. "
             "All of the create content is kept by v11+ redaction, so it is covered by the signature."))
    v11_redaction = {
        "type": "m.room.redaction", "sender": "@a:domain", "room_id": "!r:domain",
        "content": {"redacts": "$target", "reason": "spam"}, "origin": "domain",
        "origin_server_ts": 1000001, "depth": 7, "prev_events": ["$prev"], "auth_events": ["$a1", "$a2"],
        "hashes": {}, "signatures": {},
    }
    for rv_id in ("10", "11"):
        vectors.append(event_vector(
            f"own_redaction_event_v{rv_id}", OWN, rv_id, v11_redaction,
            note="content.redacts is kept by v11+ redaction (so it is signed) but stripped before v11; "
                 "'origin' is kept before v11 only."))
    v9_join = {
        "type": "m.room.member", "state_key": "@u:domain", "sender": "@u:domain", "room_id": "!r:domain",
        "content": {"membership": "join", "displayname": "U",
                    "join_authorised_via_users_server": "@a:other"},
        "origin_server_ts": 1000002, "depth": 9, "prev_events": ["$prev"], "auth_events": ["$a1"],
        "hashes": {}, "signatures": {},
    }
    for rv_id in ("8", "9"):
        vectors.append(event_vector(
            f"own_restricted_join_v{rv_id}", OWN, rv_id, v9_join,
            note="join_authorised_via_users_server survives redaction (and is signed) from v9 only."))

    # ---- verification vectors (gomatrixserverlib) --------------------------------------------
    gmsl_old_event = {
        "event_id": "$0:domain",
        "hashes": {"sha256": "6tJjLpXtggfke8UxFhAKg82QVkJzvKOVOOSjUDK4ZSI"},
        "origin": "domain", "origin_server_ts": 1000000,
        "signatures": {"domain": {"ed25519:1": "2Wptgo4CwmLo/Y8B8qinxApKaCkBG2fjTWB7AbP5Uy+aIbygsSdLOFzvdDjww8zUVKCmI02eP9xtyJxc/cLiBA"}},
        "type": "X", "unsigned": {"age_ts": 1000000},
    }
    msg_signed = copy.deepcopy(MESSAGE_EVENT)
    add_hashes_and_signatures(KNOWN_ROOM_VERSIONS["1"], msg_signed, SERVER, SK)

    def verify_case(name, event, expected_valid, note, *, redaction_adds_content=False, source=GMSL):
        ev = copy.deepcopy(event)
        if redaction_adds_content:
            red = {k: v for k, v in ev.items() if k != "unsigned"}
            red.setdefault("content", {})
        else:
            red = redact_event_dict(KNOWN_ROOM_VERSIONS["1"], ev)
        try:
            verify_signed_json(red, SERVER, VK)
            ok = True
        except SignatureVerifyException:
            ok = False
        assert ok == expected_valid, name
        return {"kind": "verify", "name": name, "source": source, "room_version": "1", "event": event,
                "expected_valid": ok, "note": note}

    vectors.append(verify_case(
        "gmsl_old_spec_event_without_content", gmsl_old_event, True,
        "An older edition of the spec's minimal-event vector. The event has no 'content' key: the "
        "content hash (6tJjL...) is over the event as is, but the signature covers the redacted "
        "form, in which content is {} (GMSL's redaction adds an empty content). Synapse's "
        "redact_event_dict refuses an event without content, so treat this as an optional case.",
        redaction_adds_content=True))
    no_unsigned = copy.deepcopy(gmsl_old_event)
    no_unsigned["unsigned"] = {}
    vectors.append(verify_case(
        "gmsl_old_spec_event_unsigned_removed", no_unsigned, True,
        "unsigned is not covered by the signature.", redaction_adds_content=True))
    vectors.append(verify_case("gmsl_message_event", msg_signed, True, "The spec's signed message event."))
    red_msg = copy.deepcopy(msg_signed)
    red_msg["content"] = {}
    red_msg["unsigned"] = {}
    vectors.append(verify_case(
        "gmsl_message_event_content_redacted", red_msg, True,
        "A redacted copy still verifies: the signature covers the redacted form."))
    modified = copy.deepcopy(gmsl_old_event)
    modified["type"] = "modified"
    modified["unsigned"] = {}
    vectors.append(verify_case("gmsl_type_modified", modified, False,
                               "A field covered by the signature was changed.", redaction_adds_content=True))
    bad_hash = copy.deepcopy(red_msg)
    bad_hash["hashes"] = {"sha256": "adifferenthashvalueaP9SorVmRQNdN5aM2JYU2n/g"}
    vectors.append(verify_case("gmsl_content_hash_modified", bad_hash, False,
                               "hashes is covered by the signature."))

    doc = {
        "provenance": (
            "Spec vectors: matrix-org/matrix-spec content/appendices.md 'Cryptographic Test Vectors' "
            "(Apache-2.0). Verify vectors: matrix-org/gomatrixserverlib eventcrypto_test.go (Apache-2.0). "
            f"All values recomputed by tests/data/gen/signing.py with Synapse {SYNAPSE_VERSION} "
            "(synapse.crypto.event_signing.add_hashes_and_signatures, synapse_rust redact_event_dict, "
            "signedjson, canonicaljson); published values asserted equal. Event IDs cross-checked with "
            "synapse.events.make_event_from_dict."
        ),
        "seed": SEED,
        "server_name": SERVER,
        "key_id": KEY_ID,
        "public_key": PUBLIC_KEY,
        "schema": {
            "kind": "json (sign a plain object) | event (hash + sign an event) | verify (check a signed event)",
            "input": "object to hash/sign (events: as given, before hashing)",
            "expected_content_hash": "hashes.sha256 after hashing (drop unsigned, signatures, hashes; canonical JSON; SHA-256; unpadded std base64)",
            "expected_signature": "signatures.domain.ed25519:1 (signature over signing_input)",
            "signing_input": "the exact canonical JSON that is signed: redacted per room_version, minus signatures and unsigned",
            "expected_event_id": "v3+ event ID ($ + reference hash), or null when not applicable (v1/v2 format or explicit event_id field)",
            "expected_reference_hash": "v1/v2 events only: reference hash (std base64)",
            "expected_room_id": "v12 create events: the derived room ID",
            "expected_output": "the full signed event/object Synapse emits",
        },
        "vectors": vectors,
    }
    write_json(os.path.join(DATA, "signing.json"), doc)


if __name__ == "__main__":
    main()
