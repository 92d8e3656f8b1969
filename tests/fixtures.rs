//! Replays every Synapse-judged fixture (`../shared/fixtures`, else the
//! project's copy in `tests/shared/fixtures`; or `$ROOMDAG_FIXTURES`) and requires a 100 % match on every area that
//! `oracle/compare.py` scores: per-event status, state before and after,
//! forward extremities, current state, and every query's answer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[path = "support/answers.rs"]
mod answers;
#[path = "support/shared.rs"]
mod shared;

use answers::{load, norm};
use roomdag::conformance;
use roomdag::fixture;
use serde_json::Value;

/// Every room fixture that has expected answers: (name, room, queries, expected).
fn fixtures() -> Vec<(String, PathBuf, PathBuf, PathBuf)> {
    shared::fixture_rooms()
}

fn check_fixture(name: &str, room: &Path, queries: &Path, expected: &Path) {
    let mut bytes = Vec::new();
    conformance::replay_and_answer(fixture::open(room).unwrap(), fixture::open(queries).unwrap(), &mut bytes)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let answers: Value = serde_json::from_slice(&bytes).expect("answers are JSON");
    let exp = load(expected);
    let mut mismatches: Vec<String> = Vec::new();
    let mut total = 0usize;

    let got_events: HashMap<&str, &Value> =
        answers["events"].as_array().unwrap().iter().map(|e| (e["event_id"].as_str().unwrap(), e)).collect();
    for e in exp["events"].as_array().unwrap() {
        let id = e["event_id"].as_str().unwrap();
        let g = got_events.get(id).copied().unwrap_or(&Value::Null);
        total += 1;
        if g["status"] != e["status"] {
            mismatches.push(format!("{id}: status {} != expected {}", g["status"], e["status"]));
        }
        if e["status"] != "dropped" {
            for field in ["state_before", "state_after"] {
                total += 1;
                if g[field] != e[field] {
                    mismatches.push(format!("{id}: {field} differs"));
                }
            }
        }
    }
    total += 2;
    if answers["current_state_digest"] != exp["current_state_digest"] {
        mismatches.push("current_state_digest differs".into());
    }
    if answers["forward_extremities"] != exp["forward_extremities"] {
        mismatches.push("forward_extremities differ".into());
    }
    let got_q: HashMap<&str, &Value> =
        answers["answers"].as_array().unwrap().iter().map(|a| (a["id"].as_str().unwrap(), a)).collect();
    for q in exp["queries"].as_array().unwrap() {
        total += 1;
        let ep = q["endpoint"].as_str().unwrap();
        let id = q["id"].as_str().unwrap();
        let want = norm(ep, &q["expect"]);
        let have = norm(ep, got_q.get(id).copied().unwrap_or(&Value::Null));
        if want != have {
            mismatches.push(format!("{id} ({ep}): expected {want} got {have}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{name}: {} of {total} checks differ from Synapse:\n{}",
        mismatches.len(),
        mismatches.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
    eprintln!("{name}: {total}/{total} checks match");
}

#[test]
fn every_fixture_matches_synapse() {
    for (name, room, queries, expected) in fixtures() {
        check_fixture(&name, &room, &queries, &expected);
    }
}

/// The paged store (issue 13): every fixture replayed with its PDU texts in a
/// page store behind the smallest cache answers byte for byte as the room
/// that holds them in memory: the conformance answers, and every stored
/// event in its outgoing federation form, whole and redacted.
#[test]
fn every_fixture_answers_the_same_with_its_pdus_paged() {
    use roomdag::conformance::Pages;
    use roomdag::http::outgoing_pdu;
    use roomdag::pages::{MemoryPages, MIN_CACHE_BYTES};

    for (name, room, queries, _) in fixtures() {
        let queries = fixture::read_queries(fixture::open(&queries).unwrap()).unwrap().queries;
        let mut held = conformance::replay(fixture::open(&room).unwrap()).unwrap();
        let pages = Pages { store: Box::new(MemoryPages::new()), cache_bytes: MIN_CACHE_BYTES };
        let mut paged = conformance::replay_paged(fixture::open(&room).unwrap(), pages).unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        held.write_answers(&queries, &mut a).unwrap();
        paged.write_answers(&queries, &mut b).unwrap();
        assert!(a == b, "{name}: the answers differ with paged PDUs");
        let n = held.room.events().len();
        assert_eq!(n, paged.room.events().len(), "{name}");
        for i in 0..n {
            let idx = roomdag::EventIdx(i as u32);
            assert_eq!(&*held.room.raw(idx).unwrap(), &*paged.room.raw(idx).unwrap(), "{name}: event {i}");
            // The event's record, read from the paged room's packed table.
            let fields = |r: &roomdag::Room| {
                let e = r.event(idx).unwrap();
                let ev = r.events();
                format!(
                    "{} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
                    ev.id(e).unwrap(),
                    e.idx,
                    e.outlier,
                    e.soft_failed,
                    e.status,
                    e.redacted_on_receipt,
                    e.recheck_redaction,
                    e.first_prev(),
                    e.sender,
                    e.event_type,
                    e.state_key,
                    e.key,
                    e.depth,
                    e.origin_server_ts,
                    e.facts,
                    e.state_before,
                    e.state_after,
                    e.auth_node(),
                    ev.prev_events(e).unwrap(),
                    ev.auth_events(e).unwrap(),
                )
            };
            assert_eq!(fields(&held.room), fields(&paged.room), "{name}: event {i}'s record");
            for pruned in [false, true] {
                assert_eq!(
                    outgoing_pdu(&held.room, idx, pruned).unwrap(),
                    outgoing_pdu(&paged.room, idx, pruned).unwrap(),
                    "{name}: event {i} (pruned: {pruned})"
                );
            }
        }
        paged.room.trim_caches();
        if n >= 4 * 256 {
            // Packed blocks take about a seventh of their built size; the
            // state events (a fifth of these rooms' events) and the last,
            // open block stay built.
            let (held_table, paged_table) = (held.room.events().table_bytes(), paged.room.events().table_bytes());
            assert!(
                paged_table * 5 < held_table * 3,
                "{name}: the paged room's event table is packed: {paged_table} of {held_table} bytes"
            );
        }
        let stats = paged.room.page_stats().expect("paged");
        assert!(stats.bytes <= MIN_CACHE_BYTES, "{name}: {stats:?}");
        assert!(held.room.page_stats().is_none());
        if n > 100 {
            assert!(stats.misses > n as u64 / 2, "{name}: the cache was too big to page: {stats:?}");
        }
        eprintln!("{name}: {n} events, answers identical with paged PDUs ({stats:?})");
    }
}

/// Rows are keyed by event ID, so a paged room restored from its log, or
/// rebuilt (every event placed afresh, at other indexes), into the store it
/// shares with the room it replaces reads every PDU right, and the store
/// holds one row per stored event.
#[test]
fn a_paged_room_restored_or_rebuilt_from_its_log_reads_every_pdu_right() {
    use std::cell::RefCell;
    use std::rc::Rc;

    use roomdag::http::outgoing_pdu;
    use roomdag::pages::RestoreRows;
    use roomdag::pages::{MemoryPages, Table};
    use roomdag::placement::{restore_into, LogRecord};
    use roomdag::{Room, Verification};

    let all = fixtures();
    for want in ["v11-forky-2k", "v12-features-1k", "v9-features-1k"] {
        let Some((name, path, ..)) = all.iter().find(|(n, ..)| n == want) else { continue };
        let pages = Rc::new(RefCell::new(MemoryPages::new()));
        let mut room: Option<Room> = None;
        fixture::stream_room(fixture::open(path).unwrap(), |header, _, ev| {
            let room = room.get_or_insert_with(|| {
                let mut r = Room::new(header.room_version.as_deref().unwrap()).unwrap();
                r.set_pages(Box::new(pages.clone()), 4096).unwrap();
                r
            });
            let keys = header.pinned_keys()?;
            room.ingest(ev.pdu.get(), Verification::Keys(&keys));
            Ok(())
        })
        .unwrap();
        let mut room = room.unwrap();
        let version = room.rules().id;
        let log: Vec<LogRecord> = room.take_records().into_iter().map(LogRecord::Event).collect();
        assert_eq!(pages.borrow().len_of(Table::Pdu), room.events().len(), "{name}: one row per stored event");
        room.trim_caches();
        let full_blocks = room.events().len() / 256;
        assert_eq!(pages.borrow().len_of(Table::Ids), full_blocks, "{name}: one row of IDs per full block");
        let mut rebuild_log = log.clone();
        rebuild_log.push(LogRecord::Rebuild);
        for (what, log, rows) in [
            ("restored", log.clone(), RestoreRows::Write),
            ("restored, rows trusted", log, RestoreRows::Trust),
            ("rebuilt", rebuild_log.clone(), RestoreRows::Write),
            ("rebuilt, rows trusted", rebuild_log, RestoreRows::Trust),
        ] {
            let mut fresh = Room::new(version).unwrap();
            fresh.set_pages(Box::new(pages.clone()), 4096).unwrap();
            let writes = pages.borrow().writes;
            let again = restore_into(fresh, log, rows).unwrap();
            assert_eq!(again.events().len(), room.events().len(), "{name} {what}");
            if rows == RestoreRows::Trust {
                assert_eq!(pages.borrow().writes, writes, "{name} {what}: trusted rows are not written again");
            }
            for i in 0..room.events().len() {
                let idx = roomdag::EventIdx(i as u32);
                let there = again.lookup(&room.id(idx).unwrap()).unwrap().expect("stored");
                assert_eq!(&*again.raw(there).unwrap(), &*room.raw(idx).unwrap(), "{name} {what}: event {i}");
                for pruned in [false, true] {
                    assert_eq!(
                        outgoing_pdu(&again, there, pruned).unwrap(),
                        outgoing_pdu(&room, idx, pruned).unwrap(),
                        "{name} {what}: event {i}"
                    );
                }
            }
            assert_eq!(pages.borrow().len_of(Table::Pdu), room.events().len(), "{name} {what}: no rows added or lost");
        }
        eprintln!("{name}: {} events restored and rebuilt with shared pages", room.events().len());
    }
}
