"""Convert ruma's state-resolution fixtures into tests/data/state_res/ruma_*.json.

Source: ruma/ruma crates/ruma-state-res/tests/it/resolve/{fixtures,snapshots}
(MIT licence), vendored unmodified under gen/vendor/ruma/ (see README there).

ruma's PDUs use readable event IDs and no hashes.  Synapse computes v3+ event
IDs from the content, so each PDU is rebuilt with the same sender, type,
state_key, content, origin_server_ts, prev_events and auth_events (mapped to
the new IDs), plus depth and a real content hash; its real event ID is computed
by Synapse and the ruma ID is kept as its label.  For v12 the room ID becomes
"!" + the create event's hash.  The ruma-only top-level key "test-comments" is
dropped.  The auth_events are kept exactly as ruma lists them.

ruma's expectation (the insta snapshot: the resolved state) is recorded as a
source claim: for the "batches" tests it is the resolved state of all forward
extremities (our expected_current_state); for the "state maps" tests it is the
resolution of the two given state maps.  state_res_expected.py asserts that
Synapse agrees.
"""

from __future__ import annotations

import json
import os
import sys

from _common import HERE, write_json
from dagbuild import Builder
from synroom import skey

VENDOR = os.path.join(HERE, "vendor", "ruma")
OUT = os.path.join(os.path.dirname(HERE), "state_res")
RUMA_SRC = "ruma crates/ruma-state-res/tests/it/resolve.rs::{test} (MIT; fixtures {files}; converted)"

# test name -> (kind, pdu files, state-map files, description (ours, paraphrasing ruma's comments))
TESTS = {
    "minimal_private_chat": ("batches", ["bootstrap-private-chat.json"], [],
                             "The minimal events of a room created with the private_chat preset."),
    "minimal_public_chat": ("batches", ["bootstrap-public-chat.json"], [],
                            "The minimal events of a room created with the public_chat preset, Bob as admin."),
    "origin_server_ts_tiebreak": ("batches", ["bootstrap-private-chat.json", "origin-server-ts-tiebreak.json"], [],
                                  "A private room whose join rules move to restricted and then public on "
                                  "topologically tied events; origin_server_ts, not the event ID, decides."),
    "ban_vs_power_levels": ("batches", ["bootstrap-public-chat.json", "ban-vs-power-levels-alice.json",
                                        "ban-vs-power-levels-bob.json"], [],
                            "Bob's power-levels change is superseded by Alice banning him."),
    "topic_vs_power_levels": ("batches", ["bootstrap-public-chat.json", "topic-vs-power-levels-alice.json",
                                          "topic-vs-power-levels-bob.json"], [],
                              "Bob's topic change is superseded by Alice demoting him."),
    "power_levels_admin_vs_mod": ("batches", ["bootstrap-public-chat.json", "power-levels-admin-vs-mod-alice.json",
                                              "power-levels-admin-vs-mod-bob.json"], [],
                                  "Bob's power-levels change is superseded by Alice demoting him."),
    "topic_vs_ban": ("batches", ["bootstrap-public-chat.json", "topic-vs-ban-common.json", "topic-vs-ban-alice.json",
                                 "topic-vs-ban-bob.json"], [],
                     "Bob's topic change is superseded by Alice banning him."),
    "join_rules_vs_join": ("batches", ["bootstrap-public-chat.json", "join-rules-vs-join-common.json",
                                       "join-rules-vs-join-alice.json", "join-rules-vs-join-ella.json"], [],
                           "Ella's join is superseded by Alice's join-rules change."),
    "concurrent_joins": ("batches", ["bootstrap-public-chat.json", "concurrent-joins-charlie.json",
                                     "concurrent-joins-ella.json"], [],
                         "Concurrent joins both end up in the state."),
    "msc4297_problem_a_state_res_v2_0": ("state_maps", ["MSC4297-problem-A/pdus-v11.json"],
                                         ["MSC4297-problem-A/state-bob.json", "MSC4297-problem-A/state-charlie.json"],
                                         "MSC4297 problem A under state res v2.0 (v11): starting from the "
                                         "unconflicted state loses the join rules."),
    "msc4297_problem_a_state_res_v2_1": ("state_maps", ["MSC4297-problem-A/pdus-v12.json"],
                                         ["MSC4297-problem-A/state-bob.json", "MSC4297-problem-A/state-charlie.json"],
                                         "MSC4297 problem A under state res v2.1 (v12): starting from the empty "
                                         "state keeps the join rules."),
    "msc4297_problem_b_state_res_v2_0": ("state_maps", ["MSC4297-problem-B/pdus-v11.json"],
                                         ["MSC4297-problem-B/state-eve.json", "MSC4297-problem-B/state-zara.json"],
                                         "MSC4297 problem B under state res v2.0 (v11): without the conflicted "
                                         "subgraph the power levels reset to the first event."),
    "msc4297_problem_b_state_res_v2_1": ("state_maps", ["MSC4297-problem-B/pdus-v12.json"],
                                         ["MSC4297-problem-B/state-eve.json", "MSC4297-problem-B/state-zara.json"],
                                         "MSC4297 problem B under state res v2.1 (v12): the conflicted subgraph "
                                         "is replayed and the latest power levels stay."),
}


def load(rel: str):
    with open(os.path.join(VENDOR, "fixtures", rel), encoding="utf-8") as f:
        return json.load(f)


def load_snapshot(test: str) -> list[dict]:
    with open(os.path.join(VENDOR, "snapshots", f"{test}@resolved_state.snap"), encoding="utf-8") as f:
        text = f.read()
    body = text.split("---", 2)[2]
    return json.loads(body)


def topo(pdus: list[dict]) -> list[dict]:
    """Keep file order when it is topological; otherwise a stable topological sort."""
    known: set[str] = set()
    ok = True
    for p in pdus:
        if any(r not in known for r in p["prev_events"] + p["auth_events"]):
            ok = False
            break
        known.add(p["event_id"])
    if ok:
        return pdus
    remaining = list(pdus)
    out, known = [], set()
    while remaining:
        for i, p in enumerate(remaining):
            if all(r in known for r in p["prev_events"] + p["auth_events"]):
                out.append(p)
                known.add(p["event_id"])
                del remaining[i]
                break
        else:
            raise ValueError("cycle or missing reference")
    return out


TIE_NOTE = (
    "Eve's join and her displayname change both have origin_server_ts 9 and the same mainline "
    "position, so the mainline ordering falls back to the event ID. ruma's readable IDs put "
    "'$00-m-room-member-join-eve' first (so the displayname change is applied last and wins); with "
    "the real hash IDs of this file the order is reversed and Synapse (correctly, for these IDs) keeps "
    "the join. ruma's snapshot is therefore recorded as informational only; see the *_ts10 variant, "
    "where the displayname change has origin_server_ts 10 and ruma's outcome is asserted."
)
# Tests whose ruma expectation depends on ruma's readable event IDs as a tie-break.
ID_TIE_BREAK = {"msc4297_problem_b_state_res_v2_0", "msc4297_problem_b_state_res_v2_1"}
TS10 = {"$01-m-room-member-change-display-name-eve": 10}


def convert(test: str, ts_override: dict | None = None) -> Builder:
    kind, pdu_files, map_files, description = TESTS[test]
    pdus = topo([p for f in pdu_files for p in load(f)])
    if ts_override:
        pdus = [dict(p, origin_server_ts=ts_override.get(p["event_id"], p["origin_server_ts"])) for p in pdus]
    create = pdus[0]
    assert create["type"] == "m.room.create"
    rv = create["content"].get("room_version", "1")
    name = "ruma_" + test + ("_ts10" if ts_override else "")
    b = Builder(name, rv, RUMA_SRC.format(test=test, files=", ".join(pdu_files + map_files)),
                description + " (ruma's readable event IDs are kept as labels.)",
                room_alias_id=create.get("room_id") or "!room:example.com", ts_start=0)
    for p in pdus:
        b.add(p["event_id"], p["sender"], p["type"], p["content"], state_key=p.get("state_key"),
              prev=p["prev_events"], auth=p["auth_events"], ts=p["origin_server_ts"], auth_include_create=False)
    snap = load_snapshot(test)
    expect = {skey((e["type"], e["state_key"])): e["event_id"] for e in snap}
    why = f"ruma's insta snapshot tests/it/resolve/snapshots/{test}@resolved_state.snap"
    if kind == "batches":
        b.claim_current(expect, why + " (resolved state of all forward extremities)")
    else:
        maps = [load(f) for f in map_files]
        b.add_resolution(test, maps, expect, why)
        if test in ID_TIE_BREAK and not ts_override:
            b.resolutions[-1]["claim"]["informational"] = True
            b.notes.append(TIE_NOTE)
    if ts_override:
        b.notes.append("Variant of the ruma fixture with origin_server_ts changed for: "
                       + ", ".join(f"{k} -> {v}" for k, v in ts_override.items())
                       + " (removes the event-ID tie-break, so ruma's snapshot applies).")
    return b


def main() -> None:
    n = 0
    for test in TESTS:
        variants = [None] + ([TS10] if test in ID_TIE_BREAK else [])
        for ts in variants:
            b = convert(test, ts)
            write_json(os.path.join(OUT, b.name + ".json"), b.to_doc())
            n += 1
    print(f"{n} ruma scenarios", file=sys.stderr)


if __name__ == "__main__":
    main()
