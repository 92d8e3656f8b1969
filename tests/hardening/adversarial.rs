//! Adversarial room shapes, built from hand-made unsigned v11 PDUs (correct
//! content hashes, `Verification::Unsigned`): each must complete in bounded
//! time, and the history queries on it must stay within their caps. Each
//! test prints `measure:` lines (`-- --nocapture`) that docs/reliability.md
//! quotes.

use std::time::Duration;

use roomdag::queries::{self, Direction, BACKFILL_CAP, GET_MISSING_CAP, MAX_REQUEST_IDS};
use roomdag::{Outcome, Room};
use serde_json::json;

use super::common::{size, timed, Builder};

fn measure(what: &str, n: usize, t: Duration) {
    let per = if n > 0 { t / n as u32 } else { Duration::ZERO };
    eprintln!("measure: {what}: {n} in {t:.2?} ({per:.2?} each)");
}

/// The history queries from the tip(s), with absurd limits: each answer is
/// capped, and each takes at most `budget`.
fn check_queries(room: &Room, tips: &[String], earliest: &[String], label: &str, budget: Duration) {
    let origin = "a.example";
    let (bf, t_bf) = timed(|| queries::backfill(room, origin, tips, 10_000).expect("backfill"));
    assert!(bf.len() <= BACKFILL_CAP, "{label}: backfill returned {}", bf.len());
    let (gme, t_gme) = timed(|| {
        queries::get_missing_events(room, origin, earliest, tips, Some(1_000_000)).expect("get_missing_events")
    });
    assert!(gme.len() <= GET_MISSING_CAP, "{label}: get_missing_events returned {}", gme.len());
    let (si, t_si) = timed(|| queries::state_ids(room, origin, &tips[0]).expect("state_ids"));
    let (_, t_si2) = timed(|| queries::state_ids(room, origin, &tips[0]).expect("state_ids"));
    let (ts, t_ts) = timed(|| queries::timestamp_to_event(room, origin, 0, Direction::Forward));
    assert!(ts.is_ok());
    eprintln!(
        "measure: {label} queries: backfill(limit 10000) → {} in {t_bf:.2?}; get_missing_events(limit 10^6) → {} in {t_gme:.2?}; \
         state_ids → {} state + {} auth chain in {t_si:.2?} (cached {t_si2:.2?}); timestamp_to_event in {t_ts:.2?}",
        bf.len(),
        gme.len(),
        si.pdu_ids.len(),
        si.auth_chain_ids.len()
    );
    for (name, t) in
        [("backfill", t_bf), ("get_missing_events", t_gme), ("state_ids", t_si), ("timestamp_to_event", t_ts)]
    {
        assert!(t <= budget, "{label}: {name} took {t:?} (budget {budget:?})");
    }
}

fn accepted_id(o: &Outcome) -> String {
    match o {
        Outcome::Accepted { event_id, .. } => event_id.as_str().to_owned(),
        other => panic!("expected acceptance: {other:?}"),
    }
}

/// Every event cites 20 prev events (the cap), spread over the last 60:
/// every merge resolves up to 20 different states (topics, custom state,
/// joins).
#[test]
fn twenty_prev_events_everywhere() {
    let n = size(1_500, 10_000);
    let mut b = Builder::new_v11();
    let creator = b.creator.clone();
    let mut recent: Vec<String> = vec![b.join_rules.clone()];
    let mut segments: Vec<Duration> = Vec::new();
    let mut seg_start = std::time::Instant::now();
    let ((), t) = timed(|| {
        for i in 0..n {
            if i > 0 && i % (n / 5) == 0 {
                segments.push(seg_start.elapsed());
                seg_start = std::time::Instant::now();
            }
            let k = recent.len().min(20);
            let start = recent.len().saturating_sub(60);
            let mut prev: Vec<String> = Vec::with_capacity(k);
            let mut j = 0;
            while prev.len() < k {
                let cand = &recent[start + (i * 7 + j * 13) % (recent.len() - start)];
                if !prev.contains(cand) {
                    prev.push(cand.clone());
                }
                j += 1;
                if j > 200 {
                    break;
                }
            }
            let prev: Vec<&str> = prev.iter().map(String::as_str).collect();
            let (_, o) = match i % 4 {
                0 => b.event("m.room.topic", Some(""), &creator, json!({"topic": format!("t{i}")}), &prev),
                1 => b.event("org.example.state", Some(&format!("k{}", i % 50)), &creator, json!({"v": i}), &prev),
                2 => {
                    let u = format!("@w{i}:s{}.example", i % 7);
                    b.event("m.room.member", Some(&u), &u, json!({"membership": "join"}), &prev)
                }
                _ => b.event("m.room.message", None, &creator, json!({"body": format!("m{i}")}), &prev),
            };
            recent.push(accepted_id(&o));
        }
    });
    segments.push(seg_start.elapsed());
    measure("20 prev events per event, ingest", n, t);
    eprintln!("measure: 20 prev events per event, ingest time per fifth of the room: {segments:.2?}");
    let resolutions = b.room.events().iter().map(Result::unwrap).filter(|e| e.prev_count() == 20).count();
    assert!(resolutions > n * 9 / 10);
    let tip = recent.last().unwrap().clone();
    check_queries(&b.room, &[tip], &[b.create.clone()], "20-prev room", Duration::from_secs(2));
}

/// Hundreds of forward extremities: siblings of one event, each setting
/// its own state key, so the current state resolves hundreds of states in
/// which every key is conflicted.
#[test]
fn hundreds_of_forward_extremities() {
    let n = size(500, 3_000);
    let mut b = Builder::new_v11();
    let creator = b.creator.clone();
    let root = b.join_rules.clone();
    let mut tips: Vec<String> = Vec::new();
    let ((), t) = timed(|| {
        for i in 0..n {
            let (_, o) = b.event("org.example.ext", Some(&format!("k{i}")), &creator, json!({"i": i}), &[&root]);
            tips.push(accepted_id(&o));
        }
    });
    measure("sibling state events, ingest", n, t);
    assert_eq!(b.room.forward_extremities().count(), n);
    let (cur, t) = timed(|| b.room.current_state().unwrap());
    measure(&format!("current state over {n} forward extremities"), 1, t);
    assert_eq!(b.room.state(cur).unwrap().len(), 4 + n, "every sibling's key survives");
    let (_, t2) = timed(|| b.room.current_state().unwrap());
    eprintln!("measure: current state again (resolution cached): {t2:.2?}");
    // Merge them 20 at a time, then merge the merges.
    let ((), t) = timed(|| {
        let mut layer = tips.clone();
        while layer.len() > 1 {
            let mut next = Vec::new();
            for chunk in layer.chunks(20) {
                let prev: Vec<&str> = chunk.iter().map(String::as_str).collect();
                let (_, o) = b.event("m.room.message", None, &creator, json!({"body": "merge"}), &prev);
                next.push(accepted_id(&o));
            }
            layer = next;
        }
        assert_eq!(b.room.forward_extremities().count(), 1);
    });
    measure("merge tree over the extremities", n / 19 + 1, t);
    // Backfill from every extremity: only MAX_REQUEST_IDS are read.
    let (bf, t) = timed(|| queries::backfill(&b.room, "a.example", &tips, 10_000).unwrap());
    assert!(bf.len() <= BACKFILL_CAP);
    eprintln!(
        "measure: backfill from {} extremities (first {MAX_REQUEST_IDS} read) → {} events in {t:.2?}",
        tips.len(),
        bf.len()
    );
    let (gme, t) = timed(|| queries::get_missing_events(&b.room, "a.example", &[], &tips, Some(1_000)).unwrap());
    assert!(gme.len() <= GET_MISSING_CAP);
    eprintln!("measure: get_missing_events from {} latest → {} in {t:.2?}", tips.len(), gme.len());
}

/// A deep linear room: one long chain, a state change every 10 events, a
/// join every 100.
#[test]
fn deep_linear_room() {
    let n = size(20_000, 100_000);
    let mut b = Builder::new_v11();
    let creator = b.creator.clone();
    let (create, pl, creator_join) = (b.create.clone(), b.power_levels.clone(), b.creator_join.clone());
    let mut tip = b.join_rules.clone();
    let mut segments: Vec<Duration> = Vec::new();
    let mut seg_start = std::time::Instant::now();
    let ((), t) = timed(|| {
        for i in 0..n {
            if i > 0 && i % (n / 5) == 0 {
                segments.push(seg_start.elapsed());
                seg_start = std::time::Instant::now();
            }
            let raw = if i % 100 == 99 {
                b.join(&format!("@d{i}:s{}.example", i % 11), &[&tip])
            } else if i % 10 == 9 {
                b.pdu(
                    "m.room.topic",
                    Some(""),
                    &creator,
                    json!({"topic": format!("t{i}")}),
                    &[&tip],
                    &[&create, &pl, &creator_join],
                )
            } else {
                b.message(&creator, &creator_join, &[&tip], "hello")
            };
            tip = b.add_ok(raw);
        }
    });
    segments.push(seg_start.elapsed());
    measure("deep linear room, ingest", n, t);
    eprintln!("measure: deep linear room, ingest time per fifth of the room: {segments:.2?}");
    assert_eq!(b.room.forward_extremities().count(), 1);
    let (chain, t) = timed(|| b.room.auth_chain_of(b.room.lookup(&tip).unwrap().unwrap()).unwrap());
    eprintln!("measure: auth_chain_of(tip) → {} events in {t:.2?}", chain.len());
    let (aidx, atxt) = (b.room.auth_index().footprint(), b.room.events().text_footprint());
    eprintln!("measure: deep linear room footprint: auth index {aidx} bytes; text {atxt:?} (held, used bytes)");
    check_queries(&b.room, &[tip], &[b.create.clone()], "deep linear room", Duration::from_secs(2));
}

/// Two forks of concurrent joins (siblings, merged 20 at a time within each
/// fork), then one merge of the two forks: the last resolution's conflicted
/// set holds every join of both forks.
#[test]
fn huge_conflicted_set() {
    let k = size(500, 2_000);
    let mut b = Builder::new_v11();
    let creator = b.creator.clone();
    let root = b.join_rules.clone();
    let mut fork_tips: Vec<String> = Vec::new();
    let ((), t) = timed(|| {
        for fork in ["a", "b"] {
            // A fork root of its own (a topic), so the forks differ in power events too.
            let (_, o) = b.event("m.room.topic", Some(""), &creator, json!({"topic": fork}), &[&root]);
            let fork_root = accepted_id(&o);
            let mut layer: Vec<String> = (0..k)
                .map(|i| {
                    let u = format!("@{fork}{i}:s{}.example", i % 13);
                    accepted_id(&b.event("m.room.member", Some(&u), &u, json!({"membership": "join"}), &[&fork_root]).1)
                })
                .collect();
            while layer.len() > 1 {
                let mut next = Vec::new();
                for chunk in layer.chunks(20) {
                    let prev: Vec<&str> = chunk.iter().map(String::as_str).collect();
                    next.push(accepted_id(&b.event("m.room.message", None, &creator, json!({"body": "m"}), &prev).1));
                }
                layer = next;
            }
            fork_tips.push(layer.pop().unwrap());
        }
    });
    measure(&format!("2 forks × {k} concurrent joins + merge trees, ingest"), 2 * k, t);
    let prev: Vec<&str> = fork_tips.iter().map(String::as_str).collect();
    let ((_, o), t) = timed(|| b.event("m.room.message", None, &creator, json!({"body": "the merge"}), &prev));
    let merge = accepted_id(&o);
    let info = b
        .room
        .resolution_for(b.room.prev_events(b.room.lookup(&merge).unwrap().unwrap()).unwrap())
        .unwrap()
        .expect("a resolution happened");
    eprintln!(
        "measure: final merge of 2 × {k} joins: conflicted keys {}, full conflicted set {}, in {t:.2?} (includes auth selection)",
        info.conflicted_keys.len(),
        info.full_conflicted_set
    );
    assert!(info.conflicted_keys.len() >= 2 * k, "every join is conflicted");
    let state = b.room.state(b.room.event(b.room.lookup(&merge).unwrap().unwrap()).unwrap().state_before).unwrap();
    assert_eq!(state.len(), 4 + 2 * k + 1, "every join and one topic survive");
    check_queries(&b.room, &[merge], &[b.create.clone()], "huge conflicted set", Duration::from_secs(2));
}

/// A linear chain of joins with power-level changes on two long forks:
/// state resolution with many *power* events (the expensive part: the
/// reverse topological power ordering and iterative auth checks).
#[test]
fn conflicting_power_levels_on_long_forks() {
    let k = size(300, 1_500);
    let mut b = Builder::new_v11();
    let creator = b.creator.clone();
    let root = b.join_rules.clone();
    let mut tips = Vec::new();
    let ((), t) = timed(|| {
        for fork in ["p", "q"] {
            let mut tip = root.clone();
            for i in 0..k {
                let u = format!("@{fork}{i}:s{}.example", i % 5);
                tip = accepted_id(&b.event("m.room.member", Some(&u), &u, json!({"membership": "join"}), &[&tip]).1);
                let content = json!({"users": {creator.clone(): 100, u.clone(): 50}, "users_default": 0, "state_default": 50,
                    "events_default": 0, "ban": 50, "kick": 50, "redact": 50, "invite": 0});
                tip = accepted_id(&b.event("m.room.power_levels", Some(""), &creator, content, &[&tip]).1);
            }
            tips.push(tip);
        }
    });
    measure(&format!("2 forks × {k} (join + power levels), ingest"), 4 * k, t);
    let prev: Vec<&str> = tips.iter().map(String::as_str).collect();
    let ((_, o), t) = timed(|| b.event("m.room.message", None, &creator, json!({"body": "merge"}), &prev));
    let merge = accepted_id(&o);
    let info =
        b.room.resolution_for(b.room.prev_events(b.room.lookup(&merge).unwrap().unwrap()).unwrap()).unwrap().unwrap();
    eprintln!(
        "measure: merge of two forks with {k} power-level events each: conflicted keys {}, full conflicted set {}, in {t:.2?}",
        info.conflicted_keys.len(),
        info.full_conflicted_set
    );
    assert!(info.full_conflicted_set >= 2 * k);
    check_queries(&b.room, &[merge], &[b.create.clone()], "power-level forks", Duration::from_secs(2));
}

/// Many dropped PDUs: the dropped log stays at MAX_DROPPED_LOG, and a
/// drop costs about the same before and after the log is full.
#[test]
fn dropped_log_is_capped() {
    let cap = roomdag::room::MAX_DROPPED_LOG;
    let extra = size(2_000, 50_000);
    let mut b = Builder::new_v11();
    let creator = b.creator.clone();
    let pdus: Vec<String> = (0..cap + extra)
        .map(|i| b.pdu("m.room.message", None, &creator, json!({"i": i}), &["$missing"], &[]))
        .collect();
    let (_, t_fill) = timed(|| {
        for raw in &pdus[..cap] {
            assert!(matches!(b.room.ingest(raw, roomdag::Verification::Unsigned), Outcome::Dropped { .. }));
        }
    });
    let (_, t_full) = timed(|| {
        for raw in &pdus[cap..] {
            assert!(matches!(b.room.ingest(raw, roomdag::Verification::Unsigned), Outcome::Dropped { .. }));
        }
    });
    measure("dropped PDUs while the log fills", cap, t_fill);
    measure("dropped PDUs with the log full", extra, t_full);
    let (log, total) = b.room.dropped();
    assert_eq!(log.len(), cap);
    assert_eq!(total, (cap + extra) as u64);
}

/// PDUs padded with whitespace up to the raw cap: the spec's 65,536-byte
/// limit applies to the canonical form, and the PDU is stored as received.
#[test]
fn whitespace_padded_pdus() {
    let n = size(20, 200);
    let mut b = Builder::new_v11();
    let creator = b.creator.clone();
    let (create, pl, join) = (b.create.clone(), b.power_levels.clone(), b.creator_join.clone());
    let mut tip = b.join_rules.clone();
    let (_, before) = b.room.events().text_footprint();
    let pad = roomdag::pdu::MAX_RAW_PDU_BYTES - 2_000;
    let ((), t) = timed(|| {
        for i in 0..n {
            let raw = b.pdu(
                "m.room.message",
                None,
                &creator,
                json!({"body": format!("m{i}")}),
                &[&tip],
                &[&create, &pl, &join],
            );
            let padded = format!("{}{}", &raw[..raw.len() - 1], " ".repeat(pad) + "}");
            assert!(padded.len() <= roomdag::pdu::MAX_RAW_PDU_BYTES);
            tip = accepted_id(&b.room.ingest(&padded, roomdag::Verification::Unsigned));
        }
    });
    measure("whitespace-padded PDUs (~1 MiB raw, <1 KiB canonical), ingest", n, t);
    let (held, used) = b.room.events().text_footprint();
    eprintln!(
        "measure: whitespace-padded PDUs: {} bytes of text stored per event ({held} held / {used} used for {n} events)",
        (used - before) / n
    );
    let over = roomdag::pdu::MAX_RAW_PDU_BYTES + 1;
    let raw = b.pdu("m.room.message", None, &creator, json!({"body": "x"}), &[&tip], &[&create, &pl, &join]);
    let padded = format!("{}{}", &raw[..raw.len() - 1], " ".repeat(over - raw.len()) + "}");
    assert!(matches!(b.room.ingest(&padded, roomdag::Verification::Unsigned), Outcome::Dropped { .. }));
}

/// One user toggling join/leave: every membership event cites the previous
/// one, so auth chains grow with the room (the auth index's cost).
#[test]
fn membership_toggles() {
    let n = size(10_000, 100_000);
    let mut b = Builder::new_v11();
    let u = "@toggler:t.example".to_string();
    let mut tip = b.join_rules.clone();
    let ((), t) = timed(|| {
        for i in 0..n {
            let m = if i % 2 == 0 { "join" } else { "leave" };
            tip = accepted_id(&b.event("m.room.member", Some(&u), &u, json!({"membership": m}), &[&tip]).1);
        }
    });
    measure("join/leave toggles of one user, ingest", n, t);
    let bytes = b.room.auth_index().footprint();
    eprintln!("measure: membership toggles: auth index {bytes} bytes for {n} nodes");
    // Three arrays of 4-byte entries: node → event, auth edges, edge ends.
    assert!(bytes <= 2 * 4 * (2 * n + 4 * n), "the auth index grows with its nodes and edges: {bytes} bytes");
    check_queries(&b.room, &[tip], &[b.create.clone()], "membership toggles", Duration::from_secs(2));
}

/// Many forks, each with its own joins, merged 20 at a time in ever
/// different combinations: every merge is a fresh, uncached resolution of
/// a large conflicted set (the per-PDU worst case of state resolution).
#[test]
fn fresh_resolutions_of_large_forks() {
    let forks = 21;
    let k = size(100, 500);
    let merges = size(21, 60);
    let mut b = Builder::new_v11();
    let creator = b.creator.clone();
    let root = b.join_rules.clone();
    let mut tips: Vec<String> = Vec::new();
    let ((), t) = timed(|| {
        for f in 0..forks {
            let mut tip = root.clone();
            for i in 0..k {
                let u = format!("@f{f}x{i}:s{}.example", i % 3);
                tip = accepted_id(&b.event("m.room.member", Some(&u), &u, json!({"membership": "join"}), &[&tip]).1);
            }
            tips.push(tip);
        }
    });
    measure(&format!("{forks} forks × {k} joins, ingest"), forks * k, t);
    let mut worst = Duration::ZERO;
    let ((), t) = timed(|| {
        for m in 0..merges {
            // Leave out fork m % 21, and rotate the order.
            let prev: Vec<&str> =
                (0..forks).filter(|f| *f != m % forks).map(|f| tips[(f + m) % forks].as_str()).take(20).collect();
            let ((_, o), t) =
                timed(|| b.event("m.room.message", None, &creator, json!({"body": format!("merge {m}")}), &prev));
            accepted_id(&o);
            worst = worst.max(t);
        }
    });
    measure(&format!("merges of 20 of {forks} forks ({} conflicted joins each)", 20 * k), merges, t);
    eprintln!("measure: worst single merge: {worst:.2?}");
}
