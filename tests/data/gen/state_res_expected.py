"""Compute (or check) the expected_* fields of tests/data/state_res/*.json with Synapse.

For each scenario file the events are replayed *from the file alone*, in file
order, through synroom.Room (Synapse's check_state_independent_auth_rules /
check_state_dependent_auth_rules against the auth events, then against the
state before when the selection differs; synapse.state.v2.resolve_events_with_store
for every merge).  Then:

  expected_state_at      {event_id: {"type\\u0000state_key": event_id}} = state BEFORE each event
  expected_rejected      [event_id, ...] events that fail auth (file order)
  rejection_reasons      {event_id: {"stage": "auth_events"|"state_before", "synapse_reason": str}}
  expected_current_state {"forward_extremities": [...], "state": {...}}: resolution of the states
                         after the accepted events that no accepted event cites as a prev
  state_map_resolutions[i].expected   Synapse's resolution of explicit state maps
  source_claims[i].holds  whether the source test's claim holds (asserted unless informational)

Usage:  python state_res_expected.py [--check] [FILE...]
  (default: every tests/data/state_res/*.json; --check: fail if a file differs
  instead of rewriting it)
"""

from __future__ import annotations

import glob
import json
import os
import sys

from _common import DATA, SYNAPSE_VERSION, read_json, write_json
from synroom import Room, skey, unskey

STATE_RES = os.path.join(DATA, "state_res")

FIELDS = ("expected_state_at", "expected_rejected", "rejection_reasons", "expected_current_state")


def smap(d: dict) -> dict:
    return {skey(k): v for k, v in sorted(d.items())}


def compute(doc: dict) -> dict:
    room = Room(doc["room_version"])
    seen: set[str] = set()
    for pdu in doc["events"]:
        for ref in pdu["prev_events"] + pdu["auth_events"]:
            if ref not in seen:
                raise AssertionError(f"{doc['name']}: {pdu['event_id']} cites {ref} which is not earlier in the file")
        eid = room.process(pdu)
        if eid != pdu["event_id"]:
            raise AssertionError(f"{doc['name']}: event_id {pdu['event_id']} but Synapse computes {eid}")
        seen.add(eid)
    if room.room_id != doc.get("room_id", room.room_id):
        raise AssertionError(f"{doc['name']}: room_id mismatch {room.room_id}")

    out = dict(doc)
    out["expected_state_at"] = {e: smap(room.state_before[e]) for e in room.order}
    out["expected_rejected"] = [e for e in room.order if room.status[e] == "rejected"]
    out["rejection_reasons"] = {e: {"stage": room.stage[e], "synapse_reason": room.reason[e]}
                                for e in out["expected_rejected"]}
    out["expected_current_state"] = {
        "forward_extremities": room.forward_extremities(),
        "state": smap(room.current_state()),
    }
    if "state_map_resolutions" in doc:
        res = []
        for r in doc["state_map_resolutions"]:
            r = dict(r)
            maps = [{unskey(k): v for k, v in m.items()} for m in r["state_maps"]]
            r["expected"] = smap(room.resolve(maps))
            claim = r.get("source_claim")
            if claim is not None:
                got = r["expected"]
                ok = got == claim["expect"]
                claim = dict(claim)
                claim["holds"] = ok
                r["source_claim"] = claim
                if not ok and not claim.get("informational"):
                    raise AssertionError(f"{doc['name']}/{r['name']}: source claim fails: {got}")
            res.append(r)
        out["state_map_resolutions"] = res
    if "source_claims" in doc:
        claims = []
        for c in doc["source_claims"]:
            c = dict(c)
            at = out["expected_state_at"].get(c.get("at"), {})
            if c["kind"] == "current_state":
                got = out["expected_current_state"]["state"]
                ok = got == c["expect"]
                if not ok:
                    c["observed"] = got
            elif c["kind"] == "state_before":
                ok = all(at.get(k) == v for k, v in c["expect"].items())
            elif c["kind"] == "changed_since":
                since = out["expected_state_at"][c["since"]]
                keys_expected = {}
                for x in c["expect"]:
                    p = next(p for p in doc["events"] if p["event_id"] == x)
                    keys_expected[skey((p["type"], p["state_key"]))] = x
                got = {k: v for k, v in at.items() if k in keys_expected or since.get(k) != v}
                ok = got == keys_expected
                if not ok:
                    c["observed"] = got
            else:
                raise ValueError(c["kind"])
            c["holds"] = ok
            if not ok and not c.get("informational"):
                raise AssertionError(f"{doc['name']}: source claim fails: {c}")
            claims.append(c)
        out["source_claims"] = claims
    out["expected_by"] = (
        f"tests/data/gen/state_res_expected.py with Synapse {SYNAPSE_VERSION} "
        "(check_state_independent_auth_rules, check_state_dependent_auth_rules, "
        "synapse.state.v2.resolve_events_with_store over an in-memory store)"
    )
    # stable key order: scenario fields first, then expectations
    order = ["name", "source", "description", "room_version", "room_id", "notes", "labels", "events",
             "expected_by", "expected_state_at", "expected_rejected", "rejection_reasons",
             "expected_current_state", "state_map_resolutions", "source_claims"]
    ordered = {k: out[k] for k in order if k in out}
    ordered.update({k: v for k, v in out.items() if k not in ordered})
    return ordered


def main(argv: list[str]) -> int:
    check = "--check" in argv
    files = [a for a in argv if not a.startswith("--")] or sorted(glob.glob(os.path.join(STATE_RES, "*.json")))
    bad = 0
    for f in files:
        doc = read_json(f)
        new = compute(doc)
        if check:
            if json.dumps(new, sort_keys=True) != json.dumps(doc, sort_keys=True):
                print(f"DIFFERS: {f}", file=sys.stderr)
                bad += 1
        else:
            write_json(f, new)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
