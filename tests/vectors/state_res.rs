//! `state_res/*.json`: whole DAGs ingested in arrival order (no signatures,
//! [`Verification::Unsigned`]); for every event its computed ID, its status
//! and the state before it; then the forward extremities and the current
//! state; then each explicit `state_map_resolutions` entry, resolved with
//! [`ResolveContext`] over the room's events.
//!
//! Case names: the scenario's `name`, and `name::resolution` for explicit
//! resolutions.

use std::collections::{BTreeMap, BTreeSet};

use roomdag::state_res::{MainlineCache, ResolveContext};
use roomdag::state_set::StateMap;
use roomdag::{Room, Verification};
use serde_json::Value;

use super::common::{
    array, describe, expected_map, json_files, map_diff, named_map, obj, pdu_of, state_map, str_of, Report,
};

/// Cases where roomdag is known to disagree with Synapse (see the report).
const KNOWN_DIFFERENCES: &[&str] = &[];

#[test]
fn state_resolution_matches_synapse() {
    let mut report = Report::new("state_res");
    let (mut scenarios, mut events, mut resolutions) = (0, 0, 0);
    for file in json_files("state_res") {
        let data: Value = serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("JSON");
        let name = str_of(&data, "name");
        report.case(name);
        scenarios += 1;
        let label_map: BTreeMap<String, String> = data
            .get("labels")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
            .unwrap_or_default();
        let labels = |id: &str| label_map.get(id).map_or_else(|| id.to_owned(), |l| format!("{l} ({id})"));
        let rejected: BTreeSet<&str> = array(&data, "expected_rejected").iter().filter_map(Value::as_str).collect();
        let state_at = obj(&data["expected_state_at"]);

        let mut room = Room::new(str_of(&data, "room_version")).expect("supported room version");
        for event in array(&data, "events") {
            events += 1;
            let (pdu, id) = pdu_of(event);
            let id = id.expect("events carry their event_id");
            let outcome = room.ingest(&pdu, Verification::Unsigned);
            let want = if rejected.contains(id.as_str()) { "rejected" } else { "accepted" };
            if outcome.status() != want || outcome.event_id().map(|e| e.as_str()) != Some(id.as_str()) {
                report.fail(name, format!("{}: Synapse {want} / roomdag {}", labels(&id), describe(&outcome)));
            }
            let Some(idx) = room.lookup(&id).unwrap() else { continue };
            match state_at.get(&id) {
                None => report.fail(name, format!("{}: no expected_state_at entry", labels(&id))),
                Some(want) => {
                    let got = state_map(&room, room.event(idx).unwrap().state_before);
                    for d in map_diff(&expected_map(want), &got, &labels) {
                        report.fail(name, format!("state before {}: {d}", labels(&id)));
                    }
                }
            }
        }

        let current = &data["expected_current_state"];
        let mut want_fx: Vec<String> =
            array(current, "forward_extremities").iter().map(|v| labels(v.as_str().expect("event ID"))).collect();
        want_fx.sort();
        let mut got_fx: Vec<String> = room.forward_extremities().map(|e| labels(&room.id(e).unwrap())).collect();
        got_fx.sort();
        report.check_eq(name, "forward extremities", got_fx, want_fx);
        let current_state = room.current_state().unwrap();
        for d in map_diff(&expected_map(&current["state"]), &state_map(&room, current_state), &labels) {
            report.fail(name, format!("current state: {d}"));
        }

        for res in data.get("state_map_resolutions").and_then(Value::as_array).map_or(&[][..], Vec::as_slice) {
            let case = format!("{name}::{}", str_of(res, "name"));
            report.case(&case);
            resolutions += 1;
            let mut maps: Vec<StateMap> = Vec::new();
            for m in array(res, "state_maps") {
                let mut entries = Vec::new();
                for (k, e) in obj(m) {
                    let (t, s) = k.split_once('\u{0}').expect("type NUL state_key");
                    let e = e.as_str().expect("event ID");
                    match (room.key_of(t, s), room.lookup(e).unwrap()) {
                        (Some(key), Some(idx)) => entries.push((key, idx)),
                        _ => report.fail(&case, format!("state map entry {k:?} → {} is not in the room", labels(e))),
                    }
                }
                maps.push(StateMap::from_entries(entries));
            }
            let key_of = |t: &str, s: &str| room.key_of(t, s);
            let ctx = ResolveContext {
                rules: room.rules(),
                events: room.events(),
                auth_index: room.auth_index(),
                key_of: &key_of,
                mainlines: &MainlineCache::default(),
            };
            let resolved = ctx.resolve(&maps.iter().collect::<Vec<_>>());
            for d in map_diff(&expected_map(&res["expected"]), &named_map(&room, &resolved.state), &labels) {
                report.fail(&case, format!("resolved state: {d}"));
            }
        }
    }
    eprintln!("[state_res] {scenarios} scenarios, {events} events, {resolutions} explicit resolutions");
    report.finish(KNOWN_DIFFERENCES);
}
