//! Partial DAGs: a room joined in the middle of its history, then completed
//! by history fetched later, answers exactly what Synapse answered for the
//! room replayed from scratch.
//!
//! For each fixture, a "join" at an accepted event J: the state before J and
//! its auth chain arrive as outliers (what `send_join` returns), J with that
//! state, then the events after J, then the history before J newest first in
//! batches of 100 (what `/backfill` returns), as a server that joined late
//! receives them. Only events Synapse stored are sent (a remote never serves
//! what it dropped). While history is missing, queries answer from what is
//! held; after a rebuild, every per-event verdict, state, the forward
//! extremities, the current state and every query match Synapse's answers;
//! reopening the store gives the same room.

use std::collections::HashMap;

#[path = "support/answers.rs"]
mod answers;
#[path = "support/room_view.rs"]
mod room_view;
#[path = "support/shared.rs"]
mod shared;

use answers::{load, norm};
use roomdag::conformance::{self, Line};
use roomdag::fixture::{self, read_queries};
use roomdag::placement::Placement;
use roomdag::queries;
use roomdag::store::{EventStore, MemoryStore, RoomEngine};
use roomdag::EventIdx;
use serde_json::Value;

struct Case {
    name: &'static str,
    /// Where J sits, as a fraction of the room's events.
    at: f64,
    /// The room is linear: the rebuilt order is the fixture's, so even
    /// answers that arrival order decides must match Synapse's.
    strict_order: bool,
}

/// Whether two answers differ only where arrival order breaks a tie: in
/// `/backfill` and `/get_missing_events`, the same number of events, the
/// same ones except at the last depth reached (the limit cuts among events
/// of equal depth by arrival), possibly in another order among equal
/// depths; in `/timestamp_to_event`, an event at the same timestamp.
fn tie_order_only(room: &roomdag::Room, ep: &str, want: &Value, have: &Value) -> bool {
    if want["status"] != have["status"] {
        return false;
    }
    match ep {
        "backfill" | "get_missing_events" => {
            let field = if ep == "backfill" { "pdus" } else { "events" };
            let ids = |v: &Value| -> Vec<String> {
                v[field]
                    .as_array()
                    .map(|a| a.iter().map(|p| p["event_id"].as_str().unwrap_or("").to_owned()).collect())
                    .unwrap_or_default()
            };
            let (w, h) = (ids(want), ids(have));
            let depth = |id: &str| room.lookup(id).unwrap().map(|e| room.event(e).unwrap().depth);
            let Some(floor) = w.iter().chain(&h).map(|id| depth(id)).min().flatten() else { return w == h };
            let above = |l: &[String]| -> Vec<String> {
                let mut v: Vec<String> = l.iter().filter(|id| depth(id) != Some(floor)).cloned().collect();
                v.sort();
                v
            };
            w.len() == h.len() && above(&w) == above(&h)
        }
        "timestamp_to_event" => want["origin_server_ts"] == have["origin_server_ts"],
        _ => false,
    }
}

fn hex(d: [u8; 32]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn run(case: &Case) {
    let room_path = shared::fixture_file(case.name).expect("room fixture");
    let q_path = shared::fixture_file(&format!("{}.queries", case.name)).expect("queries");
    let expected = load(&shared::fixture_file(&format!("{}.expected", case.name)).expect("expected"));
    let full = conformance::replay(fixture::open(&room_path).unwrap()).unwrap();
    let keys = full.header.pinned_keys().unwrap();
    let version = full.header.room_version.clone().unwrap();
    let room = &full.room;

    // The events Synapse stored, in arrival order.
    let stored: Vec<EventIdx> = full
        .lines
        .iter()
        .filter_map(|l| match l {
            Line::Stored(e) => Some(*e),
            _ => None,
        })
        .collect();
    let candidates: Vec<EventIdx> = stored
        .iter()
        .copied()
        .filter(|e| room.event(*e).unwrap().is_accepted() && room.prev_events(*e).unwrap().len() == 1)
        .collect();
    let j = candidates[(candidates.len() as f64 * case.at) as usize];
    let j_pos = stored.iter().position(|e| *e == j).unwrap();

    // send_join: the state before J and its auth chain, as outliers.
    let before = room.event(j).unwrap().state_before;
    let state_ids: Vec<String> =
        room.state(before).unwrap().iter().map(|(_, e)| room.id(e).unwrap().to_owned()).collect();
    let mut outliers: Vec<EventIdx> = room.state(before).unwrap().iter().map(|(_, e)| e).collect();
    outliers.extend(room.state_auth_chain(before).unwrap().iter().copied());
    outliers.sort();
    outliers.dedup();
    let raw = |e: &EventIdx| room.raw(*e).expect("stored PDU").to_string();

    let mut engine = RoomEngine::create(&version, MemoryStore::new()).unwrap();
    let items: Vec<String> = outliers.iter().map(raw).collect();
    engine.ingest_placed(items.iter().map(|r| (r.as_str(), Placement::Outlier)), &keys).unwrap();
    let j_raw = raw(&j);
    let out = engine.ingest_placed([(j_raw.as_str(), Placement::WithState(&state_ids))], &keys).unwrap();
    assert_eq!(out[0].status(), "accepted", "{}: the join point is accepted: {out:?}", case.name);
    // Live events after J.
    let later: Vec<String> = stored[j_pos + 1..].iter().map(raw).collect();
    let out = engine.ingest_placed(later.iter().map(|r| (r.as_str(), Placement::History)), &keys).unwrap();
    if let Some(d) = out.iter().find(|o| o.status() == "dropped") {
        panic!("{}: a later event was dropped: {d:?}", case.name);
    }

    // While history is missing: /state_ids at J is the remote state, and
    // /backfill from J stops at the backward extremities.
    {
        let partial = engine.room();
        let origin = full.header.servers.keys().next().unwrap().as_str();
        let s = queries::state_ids(partial, origin, &room.id(j).unwrap()).expect("state at J");
        let mut got: Vec<&str> = s.pdu_ids.iter().map(|e| partial.state_id(*e)).collect();
        let mut want: Vec<&str> = state_ids.iter().map(String::as_str).collect();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "{}: state at J", case.name);
        let served = queries::backfill(partial, origin, &[room.id(j).unwrap().to_owned()], 100).unwrap();
        assert!(
            served.iter().all(|s| !partial.is_outlier(s.event).unwrap()
                && room.event(room.lookup(&partial.id(s.event).unwrap()).unwrap().unwrap()).unwrap().depth
                    >= room.event(j).unwrap().depth
                || stored[j_pos..].iter().any(|e| room.id(*e).unwrap() == partial.id(s.event).unwrap())),
            "{}: backfill stops at the backward extremities",
            case.name
        );
        assert!(!partial.backward_extremities().unwrap().is_empty(), "{}: J's prev events are missing", case.name);
        // Outliers have no state, and are not in the timeline.
        let outlier = outliers
            .iter()
            .map(|e| room.id(*e).unwrap())
            .find(|id| partial.lookup(id).unwrap().is_some_and(|e| partial.is_outlier(e).unwrap()));
        if let Some(id) = outlier {
            assert_eq!(
                queries::state_ids(partial, origin, &id).unwrap_err().status(),
                404,
                "{}: no state at an outlier",
                case.name
            );
            assert!(queries::event(partial, origin, &id).is_ok(), "{}: /event serves an outlier", case.name);
        }
        let first = queries::timestamp_to_event(partial, origin, 0, queries::Direction::Forward).unwrap();
        assert!(
            !partial.is_outlier(first).unwrap() && partial.event(first).unwrap().depth >= room.event(j).unwrap().depth,
            "{}: timestamp_to_event answers from the timeline",
            case.name
        );
    }

    // A room image holds the partial DAG: outliers, pending events, the
    // backward extremities.
    let all_queries = read_queries(fixture::open(&q_path).unwrap()).unwrap().queries;
    room_view::image_round_trip(
        &format!("{} joined late", case.name),
        &version,
        engine.store().load().unwrap(),
        &all_queries,
    );

    // History, newest first, in batches of 100.
    let history: Vec<String> = stored[..j_pos].iter().rev().map(raw).collect();
    for batch in history.chunks(100) {
        let out = engine.ingest_placed(batch.iter().map(|r| (r.as_str(), Placement::History)), &keys).unwrap();
        if let Some(d) = out.iter().find(|o| o.status() == "dropped") {
            panic!("{}: a history event was dropped: {d:?}", case.name);
        }
    }
    engine.rebuild().unwrap();
    assert_eq!(engine.room().pending().count(), 0, "{}: every history event placed", case.name);
    assert!(engine.room().backward_extremities().unwrap().is_empty(), "{}: no gap left", case.name);
    compare(case.name, engine.room(), &expected, &q_path, case.strict_order);

    // The store gives the same room back.
    let (_, store) = engine.into_parts();
    let reopened = RoomEngine::open(&version, store).unwrap();
    compare(case.name, reopened.room(), &expected, &q_path, case.strict_order);
}

/// Scores `room` against Synapse's answers, as `tests/fixtures.rs` does.
fn compare(name: &str, room: &roomdag::Room, expected: &Value, q_path: &std::path::Path, strict_order: bool) {
    let mut mismatches = Vec::new();
    for e in expected["events"].as_array().unwrap() {
        let id = e["event_id"].as_str().unwrap();
        let got = room.lookup(id).unwrap();
        match (e["status"].as_str().unwrap(), got) {
            ("dropped", None) => {}
            ("dropped", Some(_)) => mismatches.push(format!("{id}: dropped by Synapse, stored here")),
            (_, None) => mismatches.push(format!("{id}: not stored")),
            (status, Some(g)) => {
                let ev = room.event(g).unwrap();
                if ev.outlier {
                    mismatches.push(format!("{id}: still an outlier"));
                }
                if status != serde_json::to_value(ev.status).unwrap() {
                    mismatches.push(format!("{id}: status {:?} != {status}", ev.status));
                }
                if e["state_before"] != hex(room.state_digest(ev.state_before).unwrap()) {
                    mismatches.push(format!("{id}: state_before differs"));
                }
                if e["state_after"] != hex(room.state_digest(ev.state_after).unwrap()) {
                    mismatches.push(format!("{id}: state_after differs"));
                }
            }
        }
    }
    let mut fwd: Vec<String> = room.forward_extremities().map(|e| room.id(e).unwrap().to_owned()).collect();
    fwd.sort_unstable();
    if serde_json::to_value(&fwd).unwrap() != expected["forward_extremities"] {
        mismatches.push("forward extremities differ".into());
    }
    let map = room.current_state_map().unwrap();
    let current = hex(roomdag::room::digest_of(map.iter().map(|(k, e)| {
        let (t, s) = room.key_name(k);
        (t, s, room.state_id(e))
    })));
    if expected["current_state_digest"] != current {
        mismatches.push("current state differs".into());
    }
    // Every query: as Synapse answered when the order of arrival does not
    // decide (same depth or timestamp), and always exactly as the same
    // events replayed from scratch in the room's order.
    let mut scratch = roomdag::Room::new(room.rules().id).unwrap();
    for i in 0..room.events().len() {
        let e = EventIdx(i as u32);
        if !room.is_outlier(e).unwrap() {
            let o = scratch.ingest(&room.raw(e).expect("stored PDU"), roomdag::Verification::AlreadyVerified);
            assert_eq!(
                o.status(),
                serde_json::to_value(room.event(e).unwrap().status).unwrap(),
                "{name}: replay of {}",
                room.id(e).unwrap()
            );
        }
    }
    let qs = read_queries(fixture::open(q_path).unwrap()).unwrap();
    let by_id: HashMap<&str, &Value> =
        expected["queries"].as_array().unwrap().iter().map(|q| (q["id"].as_str().unwrap(), q)).collect();
    let mut order_decides = 0;
    for q in &qs.queries {
        let want = by_id[q.id.as_str()];
        let ep = want["endpoint"].as_str().unwrap();
        let have = conformance::answer(room, q);
        let fresh = conformance::answer(&scratch, q);
        if have != fresh {
            mismatches.push(format!("{} ({ep}): differs from the room replayed from scratch", q.id));
        }
        if norm(ep, &want["expect"]) != norm(ep, &have) {
            if tie_order_only(room, ep, &want["expect"], &have) {
                order_decides += 1;
            } else {
                mismatches.push(format!(
                    "{} ({ep}): expected {} got {}",
                    q.id,
                    norm(ep, &want["expect"]),
                    norm(ep, &have)
                ));
            }
        }
    }
    if strict_order {
        assert_eq!(order_decides, 0, "{name}: arrival order is the fixture's, so no tie differs");
    }
    assert!(
        mismatches.is_empty(),
        "{name}: {} differ:\n{}",
        mismatches.len(),
        mismatches[..mismatches.len().min(20)].join("\n")
    );
}

#[test]
fn joined_late_then_backfilled_matches_synapse_linear() {
    run(&Case { name: "v10-linear-200", at: 0.6, strict_order: true });
}

#[test]
fn joined_late_then_backfilled_matches_synapse_forky() {
    for name in ["v12-forky-1k", "v11-forky-2k", "v9-500", "v6-500", "v3-500"] {
        run(&Case { name, at: 0.5, strict_order: false });
    }
}

/// Receipt check 6: in a room we are joined to, a pushed event that forks
/// from an old point, whose sender has left since, passes the auth rules
/// against its own state (accepted) but not against the current state: it
/// is soft failed — stored and placed, never a forward extremity — and its
/// record keeps it so through a restart and a rebuild. Placed as a plain
/// live event (the contract's model) it would become an extremity.
#[test]
fn soft_failure_keeps_a_stale_fork_out_of_the_forward_extremities() {
    use roomdag::signing::hash_and_sign_event;
    let path = shared::fixture_file("v10-linear-200").unwrap();
    let replay = || conformance::replay(fixture::open(&path).unwrap()).unwrap();
    let full = replay();
    let room = &full.room;
    let current = room.current_state_map().unwrap();
    let member = |state: &roomdag::state_set::StateMap, user: &str| {
        room.key_of("m.room.member", user)
            .and_then(|k| state.get(k))
            .map(|e| room.event(e).unwrap().membership().cloned())
    };
    // A user not joined now, and the last event after which they were.
    let (user, e) = full
        .header
        .servers
        .values()
        .flat_map(|s| s.users.iter())
        .filter(|u| member(&current, u) != Some(Some(roomdag::event::Membership::Join)))
        .find_map(|u| {
            (0..room.events().len())
                .rev()
                .map(|i| EventIdx(i as u32))
                .find(|e| {
                    room.event(*e).unwrap().is_accepted()
                        && member(room.state(room.event(*e).unwrap().state_after).unwrap(), u)
                            == Some(Some(roomdag::event::Membership::Join))
                })
                .map(|e| (u.clone(), e))
        })
        .expect("a user who left after having been joined");
    let server = user.split_once(':').unwrap().1.to_owned();
    let key = full.header.signing_key(&server).unwrap();
    let after = room.state(room.event(e).unwrap().state_after).unwrap();
    let auth: Vec<String> = [("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", user.as_str())]
        .iter()
        .filter_map(|(t, k)| room.key_of(t, k).and_then(|key| after.get(key)))
        .map(|x| room.id(x).unwrap().to_owned())
        .collect();
    let mut ev = serde_json::json!({
        "type": "m.room.message", "room_id": room.room_id().unwrap(), "sender": user,
        "content": {"body": "from an old fork", "msgtype": "m.text"},
        "prev_events": [room.id(e).unwrap()], "auth_events": auth, "depth": room.event(e).unwrap().depth + 1,
        "origin_server_ts": room.event(e).unwrap().origin_server_ts + 1, "origin": server,
    });
    let Value::Object(ref mut m) = ev else { unreachable!() };
    let id = hash_and_sign_event(m, room.rules(), &key);
    let raw = ev.to_string();
    let keys = full.header.pinned_keys().unwrap();

    // As the contract models it (no soft failure): a new forward extremity.
    let mut plain = replay().room;
    assert_eq!(plain.ingest(&raw, roomdag::Verification::Keys(&keys)).status(), "accepted");
    assert!(plain.forward_extremities().any(|x| *plain.id(x).unwrap() == *id));

    // Pushed into a joined room: soft failed.
    let mut engine = RoomEngine::create(room.rules().id, MemoryStore::new()).unwrap();
    let raws: Vec<String> =
        (0..room.events().len()).map(|i| room.raw(EventIdx(i as u32)).expect("stored PDU").to_string()).collect();
    engine.ingest_batch(raws.iter().map(String::as_str), &keys).unwrap();
    let out = engine.ingest_placed([(raw.as_str(), Placement::Live)], &keys).unwrap();
    assert_eq!(out[0].status(), "accepted", "{out:?}");
    let check = |r: &roomdag::Room, what: &str| {
        let x = r.lookup(&id).unwrap().expect("stored");
        assert!(r.event(x).unwrap().soft_failed, "{what}: soft failed");
        assert!(!r.forward_extremities().any(|f| f == x), "{what}: not a forward extremity");
        assert!(
            r.forward_extremities()
                .any(|f| r.id(f).unwrap() == room.id(room.forward_extremities().next().unwrap()).unwrap()),
            "{what}: the old extremities stay"
        );
    };
    check(engine.room(), "on receipt");
    engine.rebuild().unwrap();
    check(engine.room(), "after a rebuild");
    room_view::image_round_trip("soft failure", room.rules().id, engine.store().load().unwrap(), &[]);
    let (_, store) = engine.into_parts();
    let reopened = RoomEngine::open(room.rules().id, store).unwrap();
    check(reopened.room(), "after a restart");
}
