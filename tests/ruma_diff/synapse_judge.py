"""Synapse's verdict on a room of tests/ruma_diff.rs, for disagreements that
no documented ruma-vs-Synapse difference explains by itself.

    python synapse_judge.py ROOM_VERSION PDUS.jsonl [INDEX ...]

Replays the unsigned PDUs through the Synapse oracle (../shared/oracle,
oracle_core.RoomModel: Synapse's receipt checks, auth rules and state
resolution), with signatures taken as valid: each PDU gets a placeholder
signature from the servers Synapse asks for, and the signature check is
skipped. Prints one JSON object:

    {"statuses": ["accepted" | "rejected" | "dropped", ...],
     "resolved": {"<type>\\u0000<state_key>": "<event ID>", ...}}

`resolved` is Synapse's resolution of the states after the events at the
given indices (in arrival order); with no index, of the forward extremities
(accepted events no accepted event cites), i.e. the current state.
"""

import json
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_STEERING = os.path.join(_HERE, "..", "..", "..", "shared", "oracle")
ORACLE = os.environ.get("ROOMDAG_ORACLE_DIR") or (
    _STEERING if os.path.isdir(_STEERING) else os.path.join(_HERE, "..", "shared", "oracle")
)
sys.path.insert(0, ORACLE)

import oracle_core  # noqa: E402


def main() -> None:
    version, path, *indices = sys.argv[1:]
    pdus = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    for p in pdus:
        domains = {p["sender"].split(":", 1)[1]}
        content = p.get("content")
        via = content.get("join_authorised_via_users_server") if isinstance(content, dict) else None
        if isinstance(via, str) and ":" in via:
            domains.add(via.split(":", 1)[1])
        p["signatures"] = {d: {"ed25519:placeholder": "AAAA"} for d in domains}

    room = oracle_core.RoomModel(version, {})
    room._check_signatures = lambda ev: None  # signatures are not what is compared
    ids, statuses = [], []
    for p in pdus:
        out = room.process(p)
        ids.append(out.event_id)
        statuses.append(out.status)

    if indices:
        chosen = [ids[int(i)] for i in indices]
    else:
        accepted = [e for e, s in zip(ids, statuses) if s == "accepted"]
        cited = {p for e in accepted for p in room.events[e].prev_event_ids()}
        chosen = [e for e in accepted if e not in cited]
    resolved = room.state_for_prev_events(chosen).state if chosen else {}
    print(json.dumps({
        "statuses": statuses,
        "resolved": {f"{t}\u0000{k}": e for (t, k), e in resolved.items()},
    }))


if __name__ == "__main__":
    main()
