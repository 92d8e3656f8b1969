"""Build state-resolution scenario files with real (hash) event IDs.

A scenario is written with readable labels ("CREATE", "IMA", "PA", ...).  The
builder walks the events in the given (topological) order and, for each one:
  * computes the state before it with Synapse (synroom.Room);
  * chooses its auth_events from that state by the spec's auth-event selection
    (Synapse's auth_types_for_event; no create event in v12), unless the
    scenario gives them explicitly;
  * fills depth (1 + max depth of prevs), origin_server_ts (a counter),
    hashes.sha256 (the real content hash) and computes the real event ID with
    Synapse (reference hash); for v12 the room ID is "!" + the create event's
    hash;
  * feeds it to the Synapse-backed room so that later events see its outcome.

The file keeps a "labels" map {real_id: label}.  Expected results are *not*
written here; state_res_expected.py computes them from the file alone.
"""

from __future__ import annotations

import heapq
from typing import Any, Optional

from synroom import Room, skey, with_content_hash

EVENT_KEY_ORDER = ["event_id", "room_id", "sender", "type", "state_key", "content",
                   "origin_server_ts", "depth", "prev_events", "auth_events", "hashes"]


def ordered(pdu: dict) -> dict:
    out = {k: pdu[k] for k in EVENT_KEY_ORDER if k in pdu}
    out.update({k: v for k, v in pdu.items() if k not in out})
    return out


class Builder:
    def __init__(self, name: str, room_version: str, source: str, description: str,
                 room_alias_id: str = "!room:example.com", ts_start: int = 1):
        self.name = name
        self.rv_id = room_version
        self.source = source
        self.description = description
        self.room = Room(room_version)
        self.default_room_id = room_alias_id
        self.ids: dict[str, str] = {}  # label -> event id
        self.labels: dict[str, str] = {}  # event id -> label
        self.depth: dict[str, int] = {}
        self.pdus: list[dict] = []
        self.ts = ts_start
        self.last: Optional[str] = None
        self.claims: list[dict] = []
        self.resolutions: list[dict] = []
        self.notes: list[str] = []

    @property
    def v12(self) -> bool:
        return self.room.rv.msc4291_room_ids_as_hashes

    def id(self, label: str) -> str:
        return self.ids[label]

    def build(self, sender: str, type: str, content: dict, *, state_key: Optional[str] = None,
              prev: Optional[list[str]] = None, auth: Optional[list[str]] = None, ts: Optional[int] = None,
              auth_include_create: bool = True, extra: Optional[dict] = None,
              room_id: Optional[str] = "<auto>") -> dict:
        """Build (but do not process) a PDU.  prev/auth are labels; prev defaults
        to the previously added event; auth=None means "select from the state
        before"; an explicit auth list is given without the create event, which
        is prepended for room versions that list it (unless
        auth_include_create=False).  Returns the PDU with hashes, without
        event_id."""
        is_create = type == "m.room.create"
        if prev is None:
            prev = [] if is_create or self.last is None else [self.last]
        prev_ids = [self.ids[p] for p in prev]
        pdu: dict[str, Any] = {}
        if room_id == "<auto>":
            if not (is_create and self.v12):
                pdu["room_id"] = self.room.room_id if self.room.room_id else self.default_room_id
        elif room_id is not None:
            pdu["room_id"] = room_id
        pdu["sender"] = sender
        pdu["type"] = type
        if state_key is not None:
            pdu["state_key"] = state_key
        pdu["content"] = content
        if ts is None:
            ts = self.ts
            self.ts += 1
        pdu["origin_server_ts"] = ts
        pdu["depth"] = 1 + max((self.depth[p] for p in prev_ids), default=0)
        pdu["prev_events"] = prev_ids
        if is_create and auth is None:
            pdu["auth_events"] = []
        elif auth is None:
            before = self.room.state_for_prevs(prev_ids)
            pdu["auth_events"] = self.room.select_auth_events(pdu, before)
        else:
            ids = [self.ids[a] for a in auth]
            if not self.v12 and auth_include_create and "CREATE" in self.ids:
                ids = [self.ids["CREATE"]] + ids
            pdu["auth_events"] = ids
        if extra:
            pdu.update(extra)
        return with_content_hash(pdu)

    def add(self, label: str, sender: str, type: str, content: dict, **kw: Any) -> str:
        """Build, process (auth-check with Synapse) and store one event."""
        assert label not in self.ids, label
        pdu = self.build(sender, type, content, **kw)
        eid = self.room.process(pdu)
        pdu = ordered({"event_id": eid, **pdu})
        self.ids[label] = eid
        self.labels[eid] = label
        self.depth[eid] = pdu["depth"]
        self.pdus.append(pdu)
        self.last = label
        return eid

    # ----------------------------------------------------------------- claims
    def claim_state(self, at: str, expect: dict[str, Optional[str]], why: str) -> None:
        """Claim from the source test: in the state before `at`, key -> label
        (None = key absent).  Keys are "type\\u0000state_key"."""
        self.claims.append({"kind": "state_before", "at": at, "expect": expect, "why": why})

    def claim_changed(self, at: str, since: str, expect_labels: list[str], why: str) -> None:
        """Synapse test_v2 style: the state before `at`, restricted to keys that
        differ from the state before `since` or that appear in expect_labels,
        equals exactly the given events."""
        self.claims.append({"kind": "changed_since", "at": at, "since": since,
                            "expect": expect_labels, "why": why})

    def claim_current(self, expect: dict[str, str], why: str) -> None:
        """Claim: the resolved state of the forward extremities is exactly `expect`
        (key -> label)."""
        self.claims.append({"kind": "current_state", "expect": expect, "why": why})

    def add_resolution(self, name: str, state_maps: list[list[str]], expect: Optional[dict] = None,
                       why: str = "") -> None:
        """A direct resolution of explicit state maps (lists of labels)."""
        r: dict[str, Any] = {"name": name, "state_maps_labels": state_maps}
        if expect is not None:
            r["claim"] = {"expect": expect, "why": why}
        self.resolutions.append(r)

    # ----------------------------------------------------------------- output
    def key_of(self, label: str) -> str:
        pdu = next(p for p in self.pdus if p["event_id"] == self.ids[label])
        return skey((pdu["type"], pdu["state_key"]))

    def to_doc(self) -> dict:
        L = self.ids

        def claim_out(c: dict) -> dict:
            c = dict(c)
            if c["kind"] == "current_state":
                c["expect"] = {k: L[v] for k, v in c["expect"].items()}
            elif c["kind"] == "state_before":
                c["at"] = L[c["at"]]
                c["expect"] = {k: (L[v] if v else None) for k, v in c["expect"].items()}
            else:
                c["at"] = L[c["at"]]
                c["since"] = L[c["since"]]
                c["expect"] = [L[x] for x in c["expect"]]
            return c

        doc: dict[str, Any] = {
            "name": self.name,
            "source": self.source,
            "description": self.description,
            "room_version": self.rv_id,
            "room_id": self.room.room_id,
            "labels": dict(self.labels),
            "events": self.pdus,
        }
        if self.notes:
            doc["notes"] = self.notes
        if self.claims:
            doc["source_claims"] = [claim_out(c) for c in self.claims]
        if self.resolutions:
            res = []
            for r in self.resolutions:
                maps = []
                for labels in r["state_maps_labels"]:
                    m = {}
                    for lab in labels:
                        m[self.key_of(lab)] = L[lab]
                    maps.append(dict(sorted(m.items())))
                out: dict[str, Any] = {"name": r["name"], "state_maps": maps}
                if "claim" in r:
                    out["source_claim"] = {
                        "expect": {k: (L[v] if v else None) for k, v in r["claim"]["expect"].items()},
                        "why": r["claim"]["why"],
                    }
                    if r["claim"].get("informational"):
                        out["source_claim"]["informational"] = True
                res.append(out)
            doc["state_map_resolutions"] = res
        return doc


def topo_order(nodes: list[str], edges: list[list[str]], initial_edges: list[str]) -> tuple[list[str], dict]:
    """Order nodes oldest-first given chains newest->oldest (each chain [A, B, C]
    means A's prev is B and B's prev is C); ties broken by label, like a
    lexicographic Kahn's algorithm.  Returns (order, prevs)."""
    prevs: dict[str, set[str]] = {n: set() for n in nodes}
    for chain in [initial_edges] + edges:
        for a, b in zip(chain, chain[1:]):
            prevs[a].add(b)
    children: dict[str, set[str]] = {n: set() for n in nodes}
    for n, ps in prevs.items():
        for p in ps:
            children[p].add(n)
    indeg = {n: len(prevs[n]) for n in nodes}
    heap = [n for n in nodes if indeg[n] == 0]
    heapq.heapify(heap)
    order = []
    while heap:
        n = heapq.heappop(heap)
        order.append(n)
        for c in children[n]:
            indeg[c] -= 1
            if indeg[c] == 0:
                heapq.heappush(heap, c)
    assert len(order) == len(nodes), "cycle"
    return order, {n: sorted(ps) for n, ps in prevs.items()}
