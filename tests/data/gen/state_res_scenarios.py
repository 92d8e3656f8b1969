"""Generate the DAGs of tests/data/state_res/*.json (roomdag-authored and
re-authored scenarios).  Run state_res_expected.py afterwards to fill in the
expected_* fields (gen/make_all.sh does both).

Scenario sources:
  * synapse_v2_*: re-authored from the scenarios of Synapse's
    tests/state/test_v2.py (AGPL-3.0).  Only the *ideas* are taken (who sends
    which event on which fork, and which state the test says wins); the text
    below is our own and all data (IDs, timestamps, auth events) is generated
    here by running Synapse.  Each file carries the source test's claim in
    "source_claims"; state_res_expected.py asserts that Synapse's answer
    satisfies it.
  * synapse_v21_*: re-authored the same way from tests/state/test_v21.py
    (state-map resolutions, MSC4297 problems A and B).
  * roomdag_*: our own scenarios (v2.1 differences as real DAGs, rejected
    events cited in the DAG, v12 creator power).
"""

from __future__ import annotations

import os
import sys
from typing import Callable

from _common import DATA, write_json
from dagbuild import Builder, topo_order
from synroom import skey

OUT = os.path.join(DATA, "state_res")

ALICE = "@alice:example.com"
BOB = "@bob:example.com"
CHARLIE = "@charlie:example.com"
EVELYN = "@evelyn:example.com"
ZARA = "@zara:example.com"

JOIN = {"membership": "join"}
PL_KEY = skey(("m.room.power_levels", ""))
JR_KEY = skey(("m.room.join_rules", ""))
TOPIC_KEY = skey(("m.room.topic", ""))


def mkey(user: str) -> str:
    return skey(("m.room.member", user))


def create_content(rv: str, creator: str = ALICE) -> dict:
    if rv in ("11", "12"):
        return {"room_version": rv}
    return {"creator": creator, "room_version": rv}


def users(rv: str, m: dict) -> dict:
    """A power-levels `users` map; in v12 the room creator (Alice) has infinite
    power and must not be listed, so drop her there."""
    if rv == "12":
        return {u: v for u, v in m.items() if u != ALICE}
    return dict(m)


# ---------------------------------------------------------------------------
# Synapse test_v2.py scenarios, re-authored.
#
# Every scenario starts from the same room: Alice creates it and joins, sets
# power levels giving herself 100, makes the room public; Bob, Charlie and Zara
# join; Zara sends a message START.  The scenario then adds its own events on
# forks that start at START (or later), and everything merges into Zara's
# message END.  The test's claim is about the state before END, restricted to
# the keys that changed since START.
# ---------------------------------------------------------------------------

INITIAL_CHAIN = ["START", "IMZ", "IMC", "IMB", "IJR", "IPOWER", "IMA", "CREATE"]


def initial_events(rv: str) -> dict[str, tuple]:
    return {
        "CREATE": (ALICE, "m.room.create", "", create_content(rv)),
        "IMA": (ALICE, "m.room.member", ALICE, JOIN),
        "IPOWER": (ALICE, "m.room.power_levels", "", {"users": users(rv, {ALICE: 100})}),
        "IJR": (ALICE, "m.room.join_rules", "", {"join_rule": "public"}),
        "IMB": (BOB, "m.room.member", BOB, JOIN),
        "IMC": (CHARLIE, "m.room.member", CHARLIE, JOIN),
        "IMZ": (ZARA, "m.room.member", ZARA, JOIN),
        "START": (ZARA, "m.room.message", None, {"body": "start"}),
        "END": (ZARA, "m.room.message", None, {"body": "end"}),
    }


def build_v2_scenario(name: str, rv: str, test: str, description: str, events: dict[str, tuple],
                      edges: list[list[str]], expected: list[str], check_claim: bool) -> Builder:
    allev = initial_events(rv)
    allev.update(events)
    order, prevs = topo_order(list(allev), edges, INITIAL_CHAIN)
    b = Builder(name, rv, f"Synapse tests/state/test_v2.py::{test} (scenario re-authored; data generated)",
                description)
    for lab in order:
        sender, typ, sk, content = allev[lab]
        b.add(lab, sender, typ, content, state_key=sk, prev=prevs[lab])
    if check_claim:
        b.claim_changed("END", "START", expected,
                        f"Synapse's {test}: the state before END, restricted to keys changed since "
                        f"START (or named here), is exactly these events.")
    else:
        b.notes.append(
            f"v12 variant of Synapse's {test}: same DAG, with Alice as creator (infinite power, absent "
            f"from every users map). The source's claim ({', '.join(expected)}) is recorded as "
            f"'claim_for_v10' only; expected_* fields are whatever Synapse computes.")
        b.claims.append({"kind": "changed_since", "at": "END", "since": "START", "expect": expected,
                         "why": "informational only (claim of the v10 original)", "informational": True})
    return b


def v2_scenarios(rv: str) -> list[Builder]:
    check = rv != "12"
    out = []
    sfx = f"_v{rv}"

    out.append(build_v2_scenario(
        "synapse_v2_ban_vs_pl" + sfx, rv, "test_ban_vs_pl",
        "Alice gives Bob PL 50 (PA). On one fork Alice re-sends her join (MA) and then bans Bob (MB); on "
        "the other Bob re-sends the same power levels (PB). At the merge the ban sorts first (Alice has "
        "the higher power) so Bob's power-levels event no longer passes and PA stays.",
        {
            "PA": (ALICE, "m.room.power_levels", "", {"users": users(rv, {ALICE: 100, BOB: 50})}),
            "MA": (ALICE, "m.room.member", ALICE, JOIN),
            "MB": (ALICE, "m.room.member", BOB, {"membership": "ban"}),
            "PB": (BOB, "m.room.power_levels", "", {"users": users(rv, {ALICE: 100, BOB: 50})}),
        },
        [["END", "MB", "MA", "PA", "START"], ["END", "PB", "PA"]],
        ["PA", "MA", "MB"], check))

    out.append(build_v2_scenario(
        "synapse_v2_join_rule_evasion" + sfx, rv, "test_join_rule_evasion",
        "On one fork Alice replaces the join rules with an event whose content only has a misspelt key "
        "(join_rules: private), so there is no valid join_rule and the room is effectively not public; "
        "on the other Evelyn joins. Power events are applied first, so Evelyn's join then fails.",
        {
            "JR": (ALICE, "m.room.join_rules", "", {"join_rules": "private"}),
            "ME": (EVELYN, "m.room.member", EVELYN, JOIN),
        },
        [["END", "JR", "START"], ["END", "ME", "START"]],
        ["JR"], check))

    out.append(build_v2_scenario(
        "synapse_v2_offtopic_pl" + sfx, rv, "test_offtopic_pl",
        "Alice gives Bob 50 (PA); Bob gives Charlie 50 (PB); Charlie sets himself back to 0 (PC). A "
        "second branch only knows PA. The chain PA, PB, PC is replayed in auth order and PC wins.",
        {
            "PA": (ALICE, "m.room.power_levels", "", {"users": users(rv, {ALICE: 100, BOB: 50})}),
            "PB": (BOB, "m.room.power_levels", "", {"users": users(rv, {ALICE: 100, BOB: 50, CHARLIE: 50})}),
            "PC": (CHARLIE, "m.room.power_levels", "", {"users": users(rv, {ALICE: 100, BOB: 50, CHARLIE: 0})}),
        },
        [["END", "PC", "PB", "PA", "START"], ["END", "PA"]],
        ["PC"], check))

    topic_basic_events = {
        "T1": (ALICE, "m.room.topic", "", {"topic": "T1"}),
        "PA1": (ALICE, "m.room.power_levels", "", {"users": users(rv, {ALICE: 100, BOB: 50})}),
        "T2": (ALICE, "m.room.topic", "", {"topic": "T2"}),
        "PA2": (ALICE, "m.room.power_levels", "", {"users": users(rv, {ALICE: 100, BOB: 0})}),
        "PB": (BOB, "m.room.power_levels", "", {"users": users(rv, {ALICE: 100, BOB: 50})}),
        "T3": (BOB, "m.room.topic", "", {"topic": "T3"}),
    }
    out.append(build_v2_scenario(
        "synapse_v2_topic_basic" + sfx, rv, "test_topic_basic",
        "Alice sets a topic (T1), gives Bob 50 (PA1), sets another topic (T2) and demotes Bob to 0 (PA2). "
        "On a fork from PA1 Bob re-sends the power levels (PB) and sets a topic (T3). The demotion wins, "
        "so Bob's PB and T3 fail and T2 is the topic.",
        topic_basic_events,
        [["END", "PA2", "T2", "PA1", "T1", "START"], ["END", "T3", "PB", "PA1"]],
        ["PA2", "T2"], check))

    out.append(build_v2_scenario(
        "synapse_v2_topic_reset" + sfx, rv, "test_topic_reset",
        "Alice sets a topic (T1) and gives Bob 50 (PA); Bob sets a topic (T2); Alice bans Bob (MB). A "
        "second branch only knows T1. At the merge Bob is banned, so his topic is undone and the topic "
        "resets to T1.",
        {
            "T1": (ALICE, "m.room.topic", "", {"topic": "T1"}),
            "PA": (ALICE, "m.room.power_levels", "", {"users": users(rv, {ALICE: 100, BOB: 50})}),
            "T2": (BOB, "m.room.topic", "", {"topic": "T2"}),
            "MB": (ALICE, "m.room.member", BOB, {"membership": "ban"}),
        },
        [["END", "MB", "T2", "PA", "T1", "START"], ["END", "T1"]],
        ["T1", "MB", "PA"], check))

    topic_events = dict(topic_basic_events)
    topic_events["MZ1"] = (ZARA, "m.room.message", None, {"body": "merge"})
    topic_events["T4"] = (ALICE, "m.room.topic", "", {"topic": "T4"})
    out.append(build_v2_scenario(
        "synapse_v2_topic" + sfx, rv, "test_topic",
        "As topic_basic, but Zara's message MZ1 merges the two forks (a resolution at an intermediate "
        "point) and Alice then sets topic T4 on top of it; T4 and PA2 are the outcome.",
        topic_events,
        [["END", "T4", "MZ1", "PA2", "T2", "PA1", "T1", "START"], ["END", "MZ1", "T3", "PB", "PA1"]],
        ["T4", "PA2"], check))

    out.append(build_v2_scenario(
        "synapse_v2_mainline_sort" + sfx, rv, "test_mainline_sort",
        "Alice: topic T1, Bob to 50 (PA1), topic T2, then PA2 which also raises the level needed for "
        "power-levels events to 100; Bob then sets topic T3 on top of PA2. On a fork from PA1 Bob "
        "re-sends power levels (PB) and Alice sets topic T4 (later timestamp than T3). T3 wins: its "
        "mainline position (PA2) is newer than T4's (PA1), which outranks the timestamp.",
        {
            "T1": (ALICE, "m.room.topic", "", {"topic": "T1"}),
            "PA1": (ALICE, "m.room.power_levels", "", {"users": users(rv, {ALICE: 100, BOB: 50})}),
            "T2": (ALICE, "m.room.topic", "", {"topic": "T2"}),
            "PA2": (ALICE, "m.room.power_levels", "",
                    {"users": users(rv, {ALICE: 100, BOB: 50}), "events": {"m.room.power_levels": 100}}),
            "PB": (BOB, "m.room.power_levels", "", {"users": users(rv, {ALICE: 100, BOB: 50})}),
            "T3": (BOB, "m.room.topic", "", {"topic": "T3"}),
            "T4": (ALICE, "m.room.topic", "", {"topic": "T4"}),
        },
        [["END", "T3", "PA2", "T2", "PA1", "T1", "START"], ["END", "T4", "PB", "PA1"]],
        ["T3", "PA2"], check))

    # test_event_map_none: concurrent joins without a power-levels event
    b = Builder("synapse_v2_event_map_none" + sfx, rv,
                "Synapse tests/state/test_v2.py::SimpleParamStateTestCase::test_event_map_none "
                "(scenario re-authored; data generated)",
                "A room without power levels: Alice creates, joins and makes it public; Bob and Charlie "
                "then join concurrently (both on top of the join rules). A message by Alice merges the two "
                "forks; both joins are in the resolved state.")
    b.add("CREATE", ALICE, "m.room.create", create_content(rv), state_key="")
    b.add("IMA", ALICE, "m.room.member", JOIN, state_key=ALICE)
    b.add("IJR", ALICE, "m.room.join_rules", {"join_rule": "public"}, state_key="")
    b.add("IMB", BOB, "m.room.member", JOIN, state_key=BOB, prev=["IJR"])
    b.add("IMC", CHARLIE, "m.room.member", JOIN, state_key=CHARLIE, prev=["IJR"])
    b.add("END", ALICE, "m.room.message", {"body": "merge"}, prev=["IMB", "IMC"])
    b.claim_state("END", {skey(("m.room.create", "")): "CREATE", mkey(ALICE): "IMA", JR_KEY: "IJR",
                          mkey(BOB): "IMB", mkey(CHARLIE): "IMC"},
                  "Both concurrent joins survive the resolution.")
    b.add_resolution("state_at_bob_vs_state_at_charlie",
                     [["CREATE", "IMA", "IJR", "IMB"], ["CREATE", "IMA", "IJR", "IMC"]],
                     {skey(("m.room.create", "")): "CREATE", mkey(ALICE): "IMA", JR_KEY: "IJR",
                      mkey(BOB): "IMB", mkey(CHARLIE): "IMC"},
                     "The resolution of the two single-join states is their union.")
    out.append(b)
    return out


# ---------------------------------------------------------------------------
# Synapse test_v21.py scenarios (MSC4297), re-authored.  Both are direct
# resolutions of two given state maps; the events themselves are laid out as a
# linear DAG here (each event's prev is the previous one) with the auth events
# the test gives them.  Generated for v11 (state res v2.0) and v12 (v2.1) with
# the same shape; in v11 Alice is given PL 100 explicitly (she has no implicit
# creator power there).
# ---------------------------------------------------------------------------


def v21_replay_subgraph(rv: str) -> Builder:
    b = Builder(f"synapse_v21_replay_conflicted_subgraph_v{rv}", rv,
                "Synapse tests/state/test_v21.py::test_state_reset_replay_conflicted_subgraph "
                "(scenario re-authored; data generated) = MSC4297 problem B",
                "Alice creates a public room with power levels PL1; Bob and Charlie join; Alice gives Bob 50 "
                "(PL2); Bob gives Charlie 50 (PL3); Eve joins citing PL3 (ME1); Eve changes her displayname but "
                "cites the old PL1 in her auth events (ME2); Zara joins citing PL3 (MZ). A server that took "
                "'state after ME2' to be {PL1, ME2} (the dodgy state) resolves it against the sensible "
                "state after MZ. v2.0 (v11) only replays PL1 and PL3, and PL3 fails against PL1 (a reset "
                "to PL1); v2.1 (v12) also replays the conflicted subgraph (PL2), so PL3 stays, and Eve's "
                "membership becomes ME1.")
    b.add("CREATE", ALICE, "m.room.create", create_content(rv), state_key="")
    b.add("MA", ALICE, "m.room.member", JOIN, state_key=ALICE, auth=[])
    b.add("PL1", ALICE, "m.room.power_levels", {"users": users(rv, {ALICE: 100})}, state_key="", auth=["MA"])
    b.add("JR", ALICE, "m.room.join_rules", {"join_rule": "public"}, state_key="", auth=["MA", "PL1"])
    b.add("MB", BOB, "m.room.member", JOIN, state_key=BOB, auth=["PL1", "JR"])
    b.add("MC", CHARLIE, "m.room.member", JOIN, state_key=CHARLIE, auth=["PL1", "JR"])
    b.add("PL2", ALICE, "m.room.power_levels", {"users": users(rv, {ALICE: 100, BOB: 50})}, state_key="",
          auth=["MA", "PL1"])
    b.add("PL3", BOB, "m.room.power_levels", {"users": users(rv, {ALICE: 100, BOB: 50, CHARLIE: 50})},
          state_key="", auth=["MB", "PL2"])
    b.add("ME1", EVELYN, "m.room.member", JOIN, state_key=EVELYN, auth=["PL3", "JR"])
    b.add("ME2", EVELYN, "m.room.member", {"membership": "join", "displayname": "eve++"}, state_key=EVELYN,
          auth=["PL1", "JR", "ME1"])
    b.add("MZ", ZARA, "m.room.member", JOIN, state_key=ZARA, auth=["PL3", "JR"])
    dodgy = ["CREATE", "MA", "MB", "MC", "ME2", "PL1", "JR"]
    sensible = ["CREATE", "MA", "MB", "MC", "MZ", "PL3", "JR"]
    if rv == "12":
        b.add_resolution("dodgy_state_after_ME2_vs_state_after_MZ", [dodgy, sensible],
                         {skey(("m.room.create", "")): "CREATE", mkey(ALICE): "MA", mkey(BOB): "MB",
                          mkey(CHARLIE): "MC", mkey(EVELYN): "ME1", mkey(ZARA): "MZ", PL_KEY: "PL3",
                          JR_KEY: "JR"},
                         "Synapse's test: v2.1 keeps PL3; ME2 is replayed in the PL1 epoch and then ME1 in "
                         "the PL3 epoch, so Eve = ME1.")
    else:
        b.add_resolution("dodgy_state_after_ME2_vs_state_after_MZ", [dodgy, sensible])
        b.notes.append("v11 counterpart (state res v2.0) of the Synapse v2.1 test; no claim from the source.")
    return b


def v21_start_empty(rv: str) -> Builder:
    b = Builder(f"synapse_v21_start_empty_set_v{rv}", rv,
                "Synapse tests/state/test_v21.py::test_state_reset_start_empty_set "
                "(scenario re-authored; data generated) = MSC4297 problem A",
                "Alice makes Bob an admin (PL), makes the room public (JR1), Bob joins, Alice switches the join "
                "rule to invite (JR2) and leaves (MA2). Resolving the correct state against a fork that still "
                "has JR1: in v2.0 (v11) the iterative checks start from the unconflicted state, where Alice "
                "has already left, so both join rules fail and the room ends up with no join rules; v2.1 "
                "(v12) starts from the empty state and keeps JR2.")
    b.add("CREATE", ALICE, "m.room.create", create_content(rv), state_key="")
    b.add("MA1", ALICE, "m.room.member", JOIN, state_key=ALICE, auth=[])
    b.add("PL", ALICE, "m.room.power_levels", {"users": users(rv, {ALICE: 100, BOB: 100})}, state_key="",
          auth=["MA1"])
    b.add("JR1", ALICE, "m.room.join_rules", {"join_rule": "public"}, state_key="", auth=["MA1", "PL"])
    b.add("MB", BOB, "m.room.member", JOIN, state_key=BOB, auth=["PL", "JR1"])
    b.add("JR2", ALICE, "m.room.join_rules", {"join_rule": "invite"}, state_key="", auth=["MA1", "PL"])
    b.add("MA2", ALICE, "m.room.member", {"membership": "leave"}, state_key=ALICE, auth=["PL", "MA1"])
    correct = ["CREATE", "MA2", "MB", "PL", "JR2"]
    incorrect = ["CREATE", "MA2", "MB", "PL", "JR1"]
    if rv == "12":
        b.add_resolution("correct_vs_fork_citing_old_join_rules", [correct, incorrect],
                         {skey(("m.room.create", "")): "CREATE", mkey(ALICE): "MA2", mkey(BOB): "MB",
                          PL_KEY: "PL", JR_KEY: "JR2"},
                         "Synapse's test: v2.1 yields the invite join rules JR2.")
    else:
        b.add_resolution("correct_vs_fork_citing_old_join_rules", [correct, incorrect])
        b.notes.append("v11 counterpart (state res v2.0) of the Synapse v2.1 test; no claim from the source.")
    return b


# ---------------------------------------------------------------------------
# roomdag's own scenarios
# ---------------------------------------------------------------------------


def dag_problem_a(rv: str) -> Builder:
    b = Builder(f"roomdag_v21_dag_join_rules_after_leave_v{rv}", rv, "roomdag (own scenario)",
                "MSC4297 problem A as a real DAG. After Bob joins (MB), Alice changes the join rule to invite "
                "(JR2) and, concurrently, leaves (MA2). X (Bob) merges both: state {JR2, Alice left}. Y (Bob) "
                "builds on MA2 only: state {JR1, Alice left}. Z (Bob) merges X and Y: Alice's leave is "
                "unconflicted and only the join rules conflict. v2.0 (v11) starts the iterative checks from "
                "the unconflicted state where Alice has left, so both join rules fail and the room loses its "
                "join rules; v2.1 (v12) keeps JR2.")
    b.add("CREATE", ALICE, "m.room.create", create_content(rv), state_key="")
    b.add("MA1", ALICE, "m.room.member", JOIN, state_key=ALICE)
    b.add("PL", ALICE, "m.room.power_levels", {"users": users(rv, {ALICE: 100, BOB: 100})}, state_key="")
    b.add("JR1", ALICE, "m.room.join_rules", {"join_rule": "public"}, state_key="")
    b.add("MB", BOB, "m.room.member", JOIN, state_key=BOB)
    b.add("JR2", ALICE, "m.room.join_rules", {"join_rule": "invite"}, state_key="", prev=["MB"])
    b.add("MA2", ALICE, "m.room.member", {"membership": "leave"}, state_key=ALICE, prev=["MB"])
    b.add("X", BOB, "m.room.message", {"body": "x"}, prev=["JR2", "MA2"])
    b.add("Y", BOB, "m.room.message", {"body": "y"}, prev=["MA2"])
    b.add("Z", BOB, "m.room.message", {"body": "z"}, prev=["X", "Y"])
    b.claim_state("X", {JR_KEY: "JR2", mkey(ALICE): "MA2"}, "Both forks' changes survive at X.")
    b.claim_state("Z", {JR_KEY: None if rv == "11" else "JR2", mkey(ALICE): "MA2"},
                  "v2.0 loses the join rules (problem A); v2.1 keeps JR2.")
    return b


def dag_problem_b(rv: str) -> Builder:
    b = Builder(f"roomdag_v21_dag_replay_subgraph_v{rv}", rv, "roomdag (own scenario)",
                "MSC4297 problem B as a real DAG. Main line: Alice's PL1, public JR, Bob and Charlie join, "
                "Alice gives Bob 50 (PL2), Bob gives Charlie 50 (PL3), Zara joins (MZ). Fork from MC (before "
                "PL2): Eve joins citing PL3 in her auth events (ME1, so the state after it still has PL1), "
                "then renames citing PL1 (ME2). END (Alice) merges ME2 and MZ: PL1 vs PL3 conflict, and PL2 "
                "is in both auth chains, so v2.0 (v11) does not replay it and PL3 fails against PL1 (reset "
                "to PL1); v2.1 (v12) replays the conflicted subgraph PL1-PL2-PL3 and keeps PL3, Eve = ME1.")
    b.add("CREATE", ALICE, "m.room.create", create_content(rv), state_key="")
    b.add("MA", ALICE, "m.room.member", JOIN, state_key=ALICE)
    b.add("PL1", ALICE, "m.room.power_levels", {"users": users(rv, {ALICE: 100})}, state_key="")
    b.add("JR", ALICE, "m.room.join_rules", {"join_rule": "public"}, state_key="")
    b.add("MB", BOB, "m.room.member", JOIN, state_key=BOB)
    b.add("MC", CHARLIE, "m.room.member", JOIN, state_key=CHARLIE)
    b.add("PL2", ALICE, "m.room.power_levels", {"users": users(rv, {ALICE: 100, BOB: 50})}, state_key="")
    b.add("PL3", BOB, "m.room.power_levels", {"users": users(rv, {ALICE: 100, BOB: 50, CHARLIE: 50})},
          state_key="")
    b.add("MZ", ZARA, "m.room.member", JOIN, state_key=ZARA)
    b.add("ME1", EVELYN, "m.room.member", JOIN, state_key=EVELYN, prev=["MC"], auth=["PL3", "JR"])
    b.add("ME2", EVELYN, "m.room.member", {"membership": "join", "displayname": "eve++"}, state_key=EVELYN,
          auth=["PL1", "JR", "ME1"])
    b.add("END", ALICE, "m.room.message", {"body": "merge"}, prev=["ME2", "MZ"])
    b.claim_state("ME2", {PL_KEY: "PL1"}, "The fork's own state still has PL1.")
    b.claim_state("END", {PL_KEY: "PL1" if rv == "11" else "PL3", mkey(ZARA): "MZ"},
                  "v2.0 resets to PL1; v2.1 keeps PL3.")
    return b


def dag_pl_after_leave(rv: str) -> Builder:
    b = Builder(f"roomdag_v21_dag_power_levels_after_leave_v{rv}", rv, "roomdag (own scenario)",
                "Like problem A but for power levels. After Bob joins, Alice raises Bob to 75 (PL2) and, "
                "concurrently, leaves (MA2). X merges both ({PL2, Alice left}); Y builds on MA2 only "
                "({PL1, Alice left}); Z merges X and Y. v2.0 (v11) replays PL1 and PL2 on top of the "
                "unconflicted state where Alice has left, so both fail and the room ends up without a "
                "power-levels event; v2.1 (v12) keeps PL2.")
    b.add("CREATE", ALICE, "m.room.create", create_content(rv), state_key="")
    b.add("MA1", ALICE, "m.room.member", JOIN, state_key=ALICE)
    b.add("PL1", ALICE, "m.room.power_levels", {"users": users(rv, {ALICE: 100, BOB: 50})}, state_key="")
    b.add("JR", ALICE, "m.room.join_rules", {"join_rule": "public"}, state_key="")
    b.add("MB", BOB, "m.room.member", JOIN, state_key=BOB)
    b.add("PL2", ALICE, "m.room.power_levels", {"users": users(rv, {ALICE: 100, BOB: 75})}, state_key="",
          prev=["MB"])
    b.add("MA2", ALICE, "m.room.member", {"membership": "leave"}, state_key=ALICE, prev=["MB"])
    b.add("X", BOB, "m.room.message", {"body": "x"}, prev=["PL2", "MA2"])
    b.add("Y", BOB, "m.room.message", {"body": "y"}, prev=["MA2"])
    b.add("Z", BOB, "m.room.message", {"body": "z"}, prev=["X", "Y"])
    # After Z, Bob sets a topic: allowed with PL1/PL2 (Bob 50/75, state_default 50); in v11 without any
    # power-levels event only the creator (Alice) has power, so it is rejected there.
    b.add("T", BOB, "m.room.topic", {"topic": "after the merge"}, state_key="", prev=["Z"])
    b.claim_state("Z", {PL_KEY: None if rv == "11" else "PL2", mkey(ALICE): "MA2"},
                  "v2.0 loses the power levels; v2.1 keeps PL2.")
    return b


def rejected_in_dag(rv: str) -> Builder:
    b = Builder(f"roomdag_rejected_events_in_dag_v{rv}", rv, "roomdag (own scenario)",
                "Rejected events cited by later events. Bob (PL 0) tries to set a topic (TB, rejected: "
                "state_default 50) and to give himself PL 100 (PB, rejected). Charlie joins with prev_events "
                "[PB] (allowed: a rejected prev contributes its own state before). Alice sends a message M1 "
                "with prev_events [TB]. Bob sends a message citing the rejected PB in auth_events (MSG, "
                "rejected: rule 2.3, an auth event was rejected). Alice sets a topic (TA) on a branch that "
                "merges M1 and Charlie's join; the final merge END cites the rejected MSG as a prev. "
                "Then Alice raises Bob to 50 (PLB) and demotes him again (PLD); Bob sets a topic on top of "
                "PLD citing PLB (TSTALE): accepted against its auth events but rejected against the state "
                "before it (stage state_before); FINAL (Alice) has TSTALE as its only prev. "
                "Rejected events never enter the state and are never forward extremities.")
    b.add("CREATE", ALICE, "m.room.create", create_content(rv), state_key="")
    b.add("MA", ALICE, "m.room.member", JOIN, state_key=ALICE)
    b.add("PL", ALICE, "m.room.power_levels", {"users": users(rv, {ALICE: 100})}, state_key="")
    b.add("JR", ALICE, "m.room.join_rules", {"join_rule": "public"}, state_key="")
    b.add("MB", BOB, "m.room.member", JOIN, state_key=BOB)
    b.add("TB", BOB, "m.room.topic", {"topic": "bob was here"}, state_key="")
    b.add("PB", BOB, "m.room.power_levels", {"users": users(rv, {ALICE: 100, BOB: 100})}, state_key="",
          prev=["MB"])
    b.add("MC", CHARLIE, "m.room.member", JOIN, state_key=CHARLIE, prev=["PB"])
    b.add("M1", ALICE, "m.room.message", {"body": "m1"}, prev=["TB"])
    b.add("MSG", BOB, "m.room.message", {"body": "citing a rejected PL"}, prev=["MB"], auth=["PB", "MB"])
    b.add("TA", ALICE, "m.room.topic", {"topic": "alice"}, state_key="", prev=["M1", "MC"])
    b.add("END", CHARLIE, "m.room.message", {"body": "end"}, prev=["TA", "MSG"])
    # Stale auth events: Alice raises Bob to 50 (PLB) and then demotes him again (PLD); Bob sets a topic on
    # top of PLD but cites PLB in auth_events (TSTALE): it passes against its auth events and is rejected
    # against the state before it.  FINAL (Alice) builds on it.
    b.add("PLB", ALICE, "m.room.power_levels", {"users": users(rv, {ALICE: 100, BOB: 50})}, state_key="",
          prev=["END"])
    b.add("PLD", ALICE, "m.room.power_levels", {"users": users(rv, {ALICE: 100, BOB: 0})}, state_key="")
    b.add("TSTALE", BOB, "m.room.topic", {"topic": "stale"}, state_key="", auth=["PLB", "MB"])
    b.add("FINAL", ALICE, "m.room.message", {"body": "final"}, prev=["TSTALE"])
    b.claim_state("END", {TOPIC_KEY: "TA", PL_KEY: "PL", mkey(CHARLIE): "MC"},
                  "Only accepted events are in the state.")
    b.claim_state("FINAL", {TOPIC_KEY: "TA", PL_KEY: "PLD"},
                  "TSTALE was rejected against the state before it.")
    return b


def v12_creator_power() -> list[Builder]:
    out = []
    for rv in ("11", "12"):
        b = Builder(f"roomdag_creator_power_sort_v{rv}", rv, "roomdag (own scenario)",
                    "The creator's power. Alice creates the room and makes Bob an admin (v11: users "
                    "{Alice: 100, Bob: 100}; v12: Alice is a creator with infinite power and only Bob is "
                    "listed). Concurrently, Bob changes the power levels (PB, earlier timestamp: Zara gets 50 "
                    "and the topic needs 100) and Alice bans Bob (BAN, later timestamp); END merges them. "
                    "v12: Alice outranks Bob, so the ban is accepted, sorts first in the power ordering "
                    "(creators first, before the timestamp), and Bob's PB then fails: state = {BAN, PL}. "
                    "v11: Alice and Bob both have 100, so the ban is rejected on receipt (a ban needs a "
                    "strictly higher level) and PB stays.")
        b.add("CREATE", ALICE, "m.room.create", create_content(rv), state_key="")
        b.add("MA", ALICE, "m.room.member", JOIN, state_key=ALICE)
        b.add("PL", ALICE, "m.room.power_levels", {"users": users(rv, {ALICE: 100, BOB: 100})}, state_key="")
        b.add("JR", ALICE, "m.room.join_rules", {"join_rule": "public"}, state_key="")
        b.add("MB", BOB, "m.room.member", JOIN, state_key=BOB)
        b.add("PB", BOB, "m.room.power_levels",
              {"users": users(rv, {ALICE: 100, BOB: 100, ZARA: 50}), "events": {"m.room.topic": 100}},
              state_key="", prev=["MB"])
        b.add("BAN", ALICE, "m.room.member", {"membership": "ban"}, state_key=BOB, prev=["MB"])
        b.add("END", ALICE, "m.room.message", {"body": "merge"}, prev=["PB", "BAN"])
        if rv == "12":
            b.claim_state("END", {PL_KEY: "PL", mkey(BOB): "BAN"}, "Creator's ban sorts first; PB fails.")
        else:
            b.claim_state("END", {PL_KEY: "PB", mkey(BOB): "MB"}, "The ban was rejected on receipt.")
        out.append(b)
    return out


def main() -> None:
    builders: list[Builder] = []
    for rv in ("10", "12"):
        builders += v2_scenarios(rv)
    for rv in ("11", "12"):
        builders += [v21_replay_subgraph(rv), v21_start_empty(rv), dag_problem_a(rv), dag_problem_b(rv),
                     dag_pl_after_leave(rv)]
    builders += [rejected_in_dag("10"), rejected_in_dag("12")]
    builders += v12_creator_power()
    for b in builders:
        write_json(os.path.join(OUT, b.name + ".json"), b.to_doc())
    print(f"{len(builders)} scenarios", file=sys.stderr)


if __name__ == "__main__":
    main()
