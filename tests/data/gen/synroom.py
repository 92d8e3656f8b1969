"""A minimal in-memory room that asks Synapse every auth / state question.

Used by the state-resolution and auth-rule generators.  It mirrors the receipt
semantics of /work/shared/contract.md (and of the project's oracle,
/work/shared/oracle/oracle_core.py), minus signature and content-hash checks:

  * state before an event = the states after each of its prev_events
    (a rejected prev contributes its own state before), resolved with
    Synapse's ``synapse.state.v2.resolve_events_with_store`` when they differ;
    the create event's state before is empty;
  * the event is checked with Synapse's
    ``check_state_independent_auth_rules`` and ``check_state_dependent_auth_rules``
    against its own auth_events, then, if the auth events Synapse would select
    from the state before (``auth_types_for_event``) differ from the claimed
    ones, ``check_state_dependent_auth_rules`` against those;
  * state after = state before + the event if it is an accepted state event.

Only the storage is ours (``get_events`` / ``get_auth_chain_difference``);
every decision comes out of Synapse functions.
"""

from __future__ import annotations

import collections
import copy
import hashlib
from typing import Any, Iterable, Optional

# NB: synapse.event_auth must be imported before synapse.state (import cycle).
import synapse.event_auth as event_auth  # noqa: E402
from synapse.api.errors import AuthError, SynapseError  # noqa: E402
from synapse.api.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion  # noqa: E402
from synapse.crypto.event_signing import compute_content_hash  # noqa: E402
from synapse.events import make_event_from_dict  # noqa: E402
from synapse.federation.federation_base import event_from_pdu_json  # noqa: E402
from synapse.state.v2 import resolve_events_with_store  # noqa: E402
from synapse.storage.databases.main.event_federation import StateDifference  # noqa: E402
from unpaddedbase64 import encode_base64  # noqa: E402

CREATE_KEY = ("m.room.create", "")


def skey(k: tuple[str, str]) -> str:
    return k[0] + "\u0000" + k[1]


def unskey(s: str) -> tuple[str, str]:
    t, _, k = s.partition("\u0000")
    return (t, k)


def run_sync(coro: Any) -> Any:
    """Drive a Synapse coroutine that never really suspends (our store answers
    immediately)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("Synapse coroutine suspended unexpectedly")


class _Clock:
    async def sleep(self, duration: Any) -> None:
        return None


def with_content_hash(pdu: dict) -> dict:
    """Return a copy of the PDU (without event_id) with hashes.sha256 set to the
    real content hash."""
    d = {k: v for k, v in pdu.items() if k not in ("event_id", "hashes", "signatures")}
    _, digest = compute_content_hash(d, hashlib.sha256)
    d["hashes"] = {"sha256": encode_base64(digest)}
    return d


def event_id_of(rv: RoomVersion, pdu: dict) -> str:
    """Synapse's event ID for a v3+ PDU (reference hash)."""
    d = {k: v for k, v in pdu.items() if k != "event_id"}
    return event_from_pdu_json(copy.deepcopy(d), rv).event_id


def auth_key_order(k: tuple[str, str]) -> tuple:
    order = {"m.room.create": 0, "m.room.power_levels": 1, "m.room.join_rules": 2,
             "m.room.member": 3, "m.room.third_party_invite": 4}
    return (order.get(k[0], 9), k[0], k[1])


class Room:
    def __init__(self, room_version_id: str):
        self.rv: RoomVersion = KNOWN_ROOM_VERSIONS[room_version_id]
        self.rv_id = room_version_id
        self.room_id: Optional[str] = None
        self.events: dict[str, Any] = {}  # event_id -> Synapse event (rejected ones marked)
        self.order: list[str] = []
        self.chain: dict[str, set[str]] = {}  # strict auth ancestors
        self.state_before: dict[str, dict] = {}
        self.state_after: dict[str, dict] = {}
        self.status: dict[str, str] = {}
        self.reason: dict[str, Optional[str]] = {}
        self.stage: dict[str, Optional[str]] = {}
        self._clock = _Clock()
        self._merge_cache: dict[frozenset, dict] = {}

    # ------------------------------------------------------------ Synapse store API
    async def get_events(self, event_ids: Iterable[str], redact_behaviour: Any = None,
                         get_prev_content: bool = False, allow_rejected: bool = False) -> dict:
        out = {}
        for eid in event_ids:
            ev = self.events.get(eid)
            if ev is not None and (allow_rejected or ev.rejected_reason is None):
                out[eid] = ev
        return out

    async def get_auth_chain_difference(self, room_id: str, state_sets: list[set[str]],
                                        conflicted_state: Optional[set[str]],
                                        additional_backwards_reachable_conflicted_events: Optional[set[str]]
                                        ) -> StateDifference:
        fulls = []
        for ids in state_sets:
            acc: set[str] = set()
            for eid in ids:
                acc.add(eid)
                acc |= self.chain[eid]
            fulls.append(acc)
        union = set().union(*fulls) if fulls else set()
        inter = set(fulls[0]).intersection(*fulls[1:]) if fulls else set()
        diff = union - inter
        if conflicted_state is None:
            return StateDifference(auth_difference=diff, conflicted_subgraph=None)
        sources = set(conflicted_state) | set(additional_backwards_reachable_conflicted_events or ())
        backwards: set[str] = set()
        for eid in sources:
            backwards.add(eid)
            backwards |= self.chain[eid]
        subgraph = {e for e in backwards if ({e} | self.chain[e]) & set(conflicted_state)}
        return StateDifference(auth_difference=diff, conflicted_subgraph=subgraph)

    # ------------------------------------------------------------ state
    def resolve(self, state_maps: list[dict]) -> dict:
        """Synapse's state resolution of the given state maps ((type, sk) -> id)."""
        return dict(run_sync(resolve_events_with_store(
            self._clock, self.room_id, self.rv, state_maps, None, self)))

    def state_for_prevs(self, prev_ids: list[str]) -> dict:
        distinct: list[dict] = []
        for p in prev_ids:
            s = self.state_after[p]
            if not any(s == d for d in distinct):
                distinct.append(s)
        if len(distinct) == 1:
            return dict(distinct[0])
        key = frozenset(frozenset(d.items()) for d in distinct)
        if key not in self._merge_cache:
            self._merge_cache[key] = self.resolve(distinct)
        return dict(self._merge_cache[key])

    def select_auth_events(self, pdu_without_auth: dict, state: dict) -> list[str]:
        """The auth events the spec (and Synapse) select from `state` for this event.
        In rooms with room-ID-as-hash (v12) the create event is implied, not listed."""
        probe = dict(pdu_without_auth)
        probe["auth_events"] = []
        probe.setdefault("hashes", {})
        ev = make_event_from_dict(probe, self.rv)
        keys = sorted(event_auth.auth_types_for_event(self.rv, ev), key=auth_key_order)
        out = []
        for k in keys:
            if k == CREATE_KEY and self.rv.msc4291_room_ids_as_hashes:
                continue
            if k in state:
                out.append(state[k])
        return out

    # ------------------------------------------------------------ receipt
    def process(self, pdu: dict) -> str:
        """Evaluate and store one PDU (dict without signatures; hashes present).
        Returns its event ID."""
        rv = self.rv
        body = {k: v for k, v in pdu.items() if k != "event_id"}
        ev = event_from_pdu_json(copy.deepcopy(body), rv)
        eid = ev.event_id
        if eid in self.events:
            raise ValueError(f"duplicate event {eid}")
        for x in list(ev.prev_event_ids()) + list(ev.auth_event_ids()):
            if x not in self.events:
                raise ValueError(f"{eid}: unknown prev/auth event {x}")
        if ev.type == "m.room.create" and ev.get_state_key() == "":
            if self.room_id is None:
                self.room_id = ev.room_id
            before: dict = {}
        else:
            if ev.room_id != self.room_id:
                raise ValueError(f"{eid}: wrong room {ev.room_id}")
            before = self.state_for_prevs(list(ev.prev_event_ids()))

        status, stage, reason = "accepted", None, None
        try:
            run_sync(event_auth.check_state_independent_auth_rules(self, ev))
            claimed = [self.events[a] for a in ev.auth_event_ids()]
            event_auth.check_state_dependent_auth_rules(ev, claimed)
        except SynapseError as e:
            status, stage, reason = "rejected", "auth_events", _msg(e)
        if status == "accepted" and ev.type != "m.room.create":
            calculated = [before[k] for k in event_auth.auth_types_for_event(rv, ev) if k in before]
            if collections.Counter(calculated) != collections.Counter(ev.auth_event_ids()):
                try:
                    event_auth.check_state_dependent_auth_rules(ev, [self.events[a] for a in calculated])
                except SynapseError as e:
                    status, stage, reason = "rejected", "state_before", _msg(e)

        if status == "rejected":
            ev = make_event_from_dict(ev.get_pdu_json(), rv, rejected_reason="auth_error")
        self.events[eid] = ev
        self.order.append(eid)
        ch: set[str] = set()
        for a in ev.auth_event_ids():
            ch.add(a)
            ch |= self.chain[a]
        self.chain[eid] = ch
        self.state_before[eid] = before
        after = dict(before)
        if status == "accepted" and ev.is_state():
            after[(ev.type, ev.state_key)] = eid
        self.state_after[eid] = after
        self.status[eid] = status
        self.stage[eid] = stage
        self.reason[eid] = reason
        return eid

    def forward_extremities(self) -> list[str]:
        accepted = [e for e in self.order if self.status[e] == "accepted"]
        referenced = set()
        for e in accepted:
            referenced |= set(self.events[e].prev_event_ids())
        return sorted(e for e in accepted if e not in referenced)

    def current_state(self) -> dict:
        fe = self.forward_extremities()
        if not fe:
            return {}
        return self.state_for_prevs(fe)


def _msg(e: Exception) -> str:
    msg = getattr(e, "msg", None) or str(e)
    if not isinstance(e, AuthError):
        msg = f"{type(e).__name__}: {msg}"
    return msg
