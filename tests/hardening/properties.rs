//! Property tests over the Synapse-judged fixtures, with real signatures
//! (`Verification::Keys` with the fixture's pinned keys):
//!
//! (a) arrival order does not matter: any topologically valid order
//!     (respecting `prev_events` and `auth_events`) gives every event the
//!     same status and the same state before/after, and the room the same
//!     forward extremities, current state and set of redacted events;
//! (b) ingesting everything twice changes nothing;
//! (c) a failed store append rolls the room back exactly, and reopening the
//!     store rebuilds the same room.

use std::collections::{BTreeSet, HashMap};

use roomdag::pdu::parse_pdu;
use roomdag::signing::PinnedKeys;
use roomdag::store::{MemoryStore, RoomEngine};
use roomdag::{Outcome, Room, RoomVersionRules, Verification};

use super::common::{forky_room, hex, load_fixture, long, size, snapshot, timed, Fixture, Snapshot};
use super::mutate::{Rng, Source};

/// What happened to one event, order-independently.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Verdict {
    status: &'static str,
    before: Option<String>,
    after: Option<String>,
}

struct Run {
    room: Room,
    /// By event ID (computed), the first non-duplicate outcome.
    verdicts: HashMap<String, Verdict>,
    /// Per input, in input order: the outcome's status.
    statuses: Vec<&'static str>,
}

fn keys(f: &Fixture) -> PinnedKeys {
    f.header.pinned_keys().expect("fixture keys")
}

fn replay(f: &Fixture, keys: &PinnedKeys, order: &[usize]) -> Run {
    replay_pdus(f.version(), &f.pdus, Some(keys), order)
}

/// Replays `pdus` in `order`, checking signatures with `keys` (or none).
fn replay_pdus(version: &str, pdus: &[String], keys: Option<&PinnedKeys>, order: &[usize]) -> Run {
    let mut room = Room::new(version).unwrap();
    let mut verdicts = HashMap::new();
    let mut statuses = Vec::with_capacity(order.len());
    for &i in order {
        let v = match keys {
            Some(k) => Verification::Keys(k),
            None => Verification::Unsigned,
        };
        let o = room.ingest(&pdus[i], v);
        statuses.push(o.status());
        if matches!(o, Outcome::Duplicate { .. }) {
            continue;
        }
        let Some(id) = o.event_id().map(|e| e.as_str().to_owned()) else { continue };
        let v = match room.lookup(&id).unwrap() {
            Some(idx) if o.is_stored() => {
                let e = room.event(idx).unwrap();
                Verdict {
                    status: o.status(),
                    before: Some(hex(room.state_digest(e.state_before).unwrap())),
                    after: Some(hex(room.state_digest(e.state_after).unwrap())),
                }
            }
            _ => Verdict { status: o.status(), before: None, after: None },
        };
        verdicts.entry(id).or_insert(v);
    }
    Run { room, verdicts, statuses }
}

/// Each input's dependencies (inputs whose computed ID it cites in
/// `prev_events` or `auth_events`); the first input with an ID stands for it.
fn dependencies(f: &Fixture) -> Vec<Vec<usize>> {
    dependencies_of(&f.pdus, f.rules)
}

fn dependencies_of(pdus: &[String], rules: &RoomVersionRules) -> Vec<Vec<usize>> {
    let ids: Vec<Option<String>> =
        pdus.iter().map(|p| parse_pdu(p, rules).ok().map(|p| p.event_id.as_str().to_owned())).collect();
    let mut first: HashMap<&str, usize> = HashMap::new();
    for (i, id) in ids.iter().enumerate() {
        if let Some(id) = id {
            first.entry(id.as_str()).or_insert(i);
        }
    }
    pdus.iter()
        .enumerate()
        .map(|(i, p)| match parse_pdu(p, rules) {
            Ok(p) => {
                let mut d: Vec<usize> = p
                    .prev_events
                    .iter()
                    .chain(p.auth_events.iter())
                    .filter_map(|e| first.get(e.as_str()).copied())
                    .filter(|&j| j != i)
                    .collect();
                d.sort_unstable();
                d.dedup();
                d
            }
            Err(_) => Vec::new(),
        })
        .collect()
}

/// How a topological order picks among the ready inputs.
#[derive(Clone, Copy, Debug)]
enum Strategy {
    /// Uniformly at random.
    Uniform,
    /// A random 15 % of inputs are held back until nothing else is ready
    /// (a partition healing late: whole branches arrive at the end).
    Delay,
    /// The most recently readied first (depth-first along one branch).
    Lifo,
}

/// A random topological order (Kahn's algorithm).
fn random_topological_order(deps: &[Vec<usize>], rng: &mut Rng, strategy: Strategy) -> Vec<usize> {
    let n = deps.len();
    let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, d) in deps.iter().enumerate() {
        for &j in d {
            dependents[j].push(i);
        }
    }
    let delayed: Vec<bool> = (0..n).map(|_| matches!(strategy, Strategy::Delay) && rng.below(100) < 15).collect();
    let mut ready: Vec<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while !ready.is_empty() {
        let k = match strategy {
            Strategy::Uniform => rng.below(ready.len()),
            Strategy::Lifo => ready.len() - 1 - rng.below(ready.len().min(2)),
            Strategy::Delay => {
                let prompt: Vec<usize> = (0..ready.len()).filter(|&k| !delayed[ready[k]]).collect();
                if prompt.is_empty() {
                    rng.below(ready.len())
                } else {
                    prompt[rng.below(prompt.len())]
                }
            }
        };
        let i = ready.remove(k);
        order.push(i);
        for &d in &dependents[i] {
            waiting[d] -= 1;
            if waiting[d] == 0 {
                ready.push(d);
            }
        }
    }
    assert_eq!(order.len(), n, "the fixture's references form a cycle");
    order
}

/// How far an order is from the fixture's: (mean, max) absolute displacement.
fn displacement(order: &[usize]) -> (f64, usize) {
    let d = order.iter().enumerate().map(|(pos, &i)| pos.abs_diff(i));
    (d.clone().sum::<usize>() as f64 / order.len().max(1) as f64, d.max().unwrap_or(0))
}

fn redacted_targets(room: &Room) -> BTreeSet<String> {
    room.applied_redactions().map(|(t, _)| room.id(t).unwrap().to_owned()).collect()
}

fn check_order_independence(name: &str, seeds: u64) {
    let f = load_fixture(name);
    let keys = keys(&f);
    let deps = dependencies(&f);
    // The fixture's own order must be topological for the comparison to
    // hold (an event sent before its prev event is dropped, then would be
    // accepted in a reordering).
    for (i, d) in deps.iter().enumerate() {
        assert!(d.iter().all(|&j| j < i), "{name}: input {i} cites a later input");
    }
    let identity: Vec<usize> = (0..f.pdus.len()).collect();
    let (base, t) = timed(|| replay(&f, &keys, &identity));
    let base_snap = snapshot(&base.room);
    eprintln!("properties::order {name}: {} PDUs, fixture order replay {t:.2?}", f.pdus.len());
    for seed in 0..seeds {
        let mut rng = Rng::new(1000 + seed);
        let strategy = [Strategy::Uniform, Strategy::Delay, Strategy::Lifo][seed as usize % 3];
        let order = random_topological_order(&deps, &mut rng, strategy);
        let (run, t) = timed(|| replay(&f, &keys, &order));
        let mut differ: Vec<String> = Vec::new();
        for (id, want) in &base.verdicts {
            match run.verdicts.get(id) {
                Some(got) if got == want => {}
                got => differ.push(format!("{id}: fixture order {want:?}, shuffled {got:?}")),
            }
        }
        assert!(
            differ.is_empty(),
            "{name} seed {seed}: {} of {} events differ when replayed in another topological order:\n{}",
            differ.len(),
            base.verdicts.len(),
            differ.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
        );
        assert_eq!(run.verdicts.len(), base.verdicts.len());
        let snap = snapshot(&run.room);
        assert_eq!(snap.extremities, base_snap.extremities, "{name} seed {seed}: forward extremities");
        assert_eq!(snap.current_state, base_snap.current_state, "{name} seed {seed}: current state");
        assert_eq!(redacted_targets(&run.room), redacted_targets(&base.room), "{name} seed {seed}: redacted events");
        let (mean, max) = displacement(&order);
        eprintln!(
            "properties::order {name} seed {seed} ({strategy:?}): displacement mean {mean:.1} max {max}, {} verdicts equal, {t:.2?}",
            base.verdicts.len()
        );
    }
}

#[test]
fn order_independence_v11_forky_2k() {
    check_order_independence("v11-forky-2k", if long() { 10 } else { 2 });
}

#[test]
fn order_independence_v12_forky_1k() {
    check_order_independence("v12-forky-1k", if long() { 10 } else { 3 });
}

#[test]
fn order_independence_v3_500() {
    check_order_independence("v3-500", if long() { 20 } else { 4 });
}

/// The same property on generated rooms with long-lived forks (conflicting
/// power levels, bans, join rules across branches), where reordering
/// moves events by hundreds of positions. No signatures: `Unsigned`.
#[test]
fn order_independence_generated_forky_rooms() {
    let rules = RoomVersionRules::supported("11").unwrap();
    for room_seed in 0..if long() { 40 } else { 6 } {
        let ((b, pdus), t_gen) = timed(|| forky_room(room_seed, size(1_000, 3_000)));
        let deps = dependencies_of(&pdus, rules);
        let identity: Vec<usize> = (0..pdus.len()).collect();
        let base = replay_pdus("11", &pdus, None, &identity);
        assert_eq!(snapshot(&base.room), snapshot(&b.room), "replaying the generated PDUs rebuilds the room");
        let accepted = base.verdicts.values().filter(|v| v.status == "accepted").count();
        let resolutions = b.room.events().iter().map(Result::unwrap).filter(|e| e.prev_count() > 1).count();
        eprintln!(
            "properties::order generated room {room_seed}: {} PDUs ({accepted} accepted, {resolutions} merges), generated in {t_gen:.2?}",
            pdus.len()
        );
        let base_snap = snapshot(&base.room);
        for seed in 0..if long() { 6 } else { 3 } {
            let mut rng = Rng::new(room_seed * 100 + seed);
            let strategy = [Strategy::Uniform, Strategy::Delay, Strategy::Lifo][seed as usize % 3];
            let order = random_topological_order(&deps, &mut rng, strategy);
            let (run, t) = timed(|| replay_pdus("11", &pdus, None, &order));
            let mut differ: Vec<String> = Vec::new();
            for (id, want) in &base.verdicts {
                match run.verdicts.get(id) {
                    Some(got) if got == want => {}
                    got => differ.push(format!("{id}: generation order {want:?}, shuffled {got:?}")),
                }
            }
            assert!(
                differ.is_empty(),
                "generated room {room_seed}, order seed {seed} ({strategy:?}): {} of {} events differ:\n{}",
                differ.len(),
                base.verdicts.len(),
                differ.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
            );
            let snap = snapshot(&run.room);
            assert_eq!(snap.extremities, base_snap.extremities, "generated room {room_seed} seed {seed}: extremities");
            assert_eq!(
                snap.current_state, base_snap.current_state,
                "generated room {room_seed} seed {seed}: current state"
            );
            assert_eq!(redacted_targets(&run.room), redacted_targets(&base.room));
            let (mean, max) = displacement(&order);
            eprintln!(
                "properties::order generated room {room_seed} seed {seed} ({strategy:?}): displacement mean {mean:.1} max {max}, verdicts equal, {t:.2?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// (b) duplicates

fn check_duplicates(name: &str) {
    let f = load_fixture(name);
    let keys = keys(&f);
    let identity: Vec<usize> = (0..f.pdus.len()).collect();
    let base = replay(&f, &keys, &identity);
    let base_snap = snapshot(&base.room);
    // Each PDU twice in a row.
    let mut room = Room::new(f.version()).unwrap();
    for (i, raw) in f.pdus.iter().enumerate() {
        let first = room.ingest(raw, Verification::Keys(&keys));
        let snap_between = (room.events().len(), room.forward_extremities().count());
        let second = room.ingest(raw, Verification::Keys(&keys));
        match (&first, &second) {
            (
                Outcome::Accepted { event_id: a, .. } | Outcome::Rejected { event_id: a, .. },
                Outcome::Duplicate { event_id: b },
            ) => {
                assert_eq!(a, b)
            }
            // A PDU that the fixture itself repeats.
            (Outcome::Duplicate { event_id: a }, Outcome::Duplicate { event_id: b }) => assert_eq!(a, b),
            (
                Outcome::Dropped { event_id: a, stage: s, reason: r },
                Outcome::Dropped { event_id: b, stage: t, reason: q },
            ) => {
                assert_eq!((a, s, r), (b, t, q), "{name} input {i}: a dropped PDU is dropped again the same way")
            }
            _ => panic!("{name} input {i}: second ingest {second:?} after {first:?}"),
        }
        assert_eq!(snap_between, (room.events().len(), room.forward_extremities().count()));
    }
    assert_eq!(snapshot(&room), base_snap, "{name}: ingesting each PDU twice");
    // And the whole fixture again.
    for raw in &f.pdus {
        let o = room.ingest(raw, Verification::Keys(&keys));
        assert!(matches!(o, Outcome::Duplicate { .. } | Outcome::Dropped { .. }), "{o:?}");
    }
    assert_eq!(snapshot(&room), base_snap, "{name}: ingesting the fixture a second time");
    eprintln!("properties::duplicates {name}: {} PDUs twice, room unchanged", f.pdus.len());
}

#[test]
fn duplicates_change_nothing_v11_forky_2k() {
    check_duplicates("v11-forky-2k");
}

#[test]
fn duplicates_change_nothing_v12_forky_1k() {
    check_duplicates("v12-forky-1k");
}

// ---------------------------------------------------------------------------
// (c) store rollback and reopen

fn engine_state(e: &RoomEngine<MemoryStore>) -> (Snapshot, usize, usize) {
    (snapshot(e.room()), e.store().len(), e.room().dropped().0.len())
}

fn check_store_rollback(name: &str, seed: u64) {
    let f = load_fixture(name);
    let keys = keys(&f);
    let mut rng = Rng::new(seed);
    let mut engine = RoomEngine::create(f.version(), MemoryStore::new()).unwrap();
    let mut outcomes: Vec<&'static str> = Vec::new();
    let (mut failures, mut batches) = (0, 0);
    let mut at = 0;
    let ((), t) = timed(|| {
        while at < f.pdus.len() {
            let cap = if rng.one_in(10) { 300 } else { 40 };
            let n = 1 + rng.below(cap);
            let batch: Vec<&str> = f.pdus[at..(at + n).min(f.pdus.len())].iter().map(String::as_str).collect();
            batches += 1;
            if rng.one_in(3) {
                let before = engine_state(&engine);
                engine.store_mut().fail_next_append = true;
                match engine.ingest_batch(batch.iter().copied(), &keys) {
                    Err(_) => {
                        failures += 1;
                        let after = engine_state(&engine);
                        assert_eq!(after.1, before.1, "{name}: a failed append stored records");
                        assert_eq!(after.0.events, before.0.events, "{name}: event count after rollback");
                        assert_eq!(after.0.extremities, before.0.extremities, "{name}: extremities after rollback");
                        assert_eq!(
                            after.0.current_state, before.0.current_state,
                            "{name}: current state after rollback"
                        );
                        assert_eq!(after.0, before.0, "{name}: room after rollback");
                        assert_eq!(after.2, before.2, "{name}: dropped log after rollback");
                    }
                    Ok(o) => {
                        // Nothing new to store: append was not called.
                        assert!(o.iter().all(|o| !matches!(o, Outcome::Accepted { .. } | Outcome::Rejected { .. })));
                        engine.store_mut().fail_next_append = false;
                        outcomes.extend(o.iter().map(Outcome::status));
                        at += batch.len();
                        continue;
                    }
                }
            }
            let o = engine.ingest_batch(batch.iter().copied(), &keys).expect("append");
            outcomes.extend(o.iter().map(Outcome::status));
            at += batch.len();
        }
    });
    // Same as a straight replay.
    let identity: Vec<usize> = (0..f.pdus.len()).collect();
    let straight = replay(&f, &keys, &identity);
    assert_eq!(outcomes, straight.statuses, "{name}: outcomes with failed appends");
    let snap = snapshot(engine.room());
    assert_eq!(snap, snapshot(&straight.room), "{name}: room with failed appends vs straight replay");
    // Reopen from the store.
    let store = engine.store().clone();
    let ((), t_open) = timed(|| {
        let reopened = RoomEngine::open(f.version(), store).expect("reopen");
        assert_eq!(snapshot(reopened.room()), snap, "{name}: reopened room");
    });
    eprintln!(
        "properties::store {name} seed {seed}: {batches} batches, {failures} failed appends rolled back, {t:.2?}; reopen {t_open:.2?}"
    );
}

#[test]
fn store_rollback_and_reopen_v11_forky_2k() {
    for seed in 0..if long() { 5 } else { 1 } {
        check_store_rollback("v11-forky-2k", seed);
    }
}

#[test]
fn store_rollback_and_reopen_v12_forky_1k() {
    for seed in 0..if long() { 5 } else { 2 } {
        check_store_rollback("v12-forky-1k", 100 + seed);
    }
}

// ---------------------------------------------------------------------------
// (d) batched ingest

/// `Room::ingest_batch` (signatures checked in ed25519 batches) gives every
/// PDU the outcome `Room::ingest` gives it one by one, also when some
/// signatures in a batch are bad (each PDU's signature corrupted in turn, one
/// per batch), and stops right after the first outcome its `stop` holds for.
fn check_batch_equals_one_by_one(name: &str) {
    use roomdag::placement::Placement;
    let f = load_fixture(name);
    let keys = keys(&f);
    // Before every 7th PDU, a copy with one signature character changed (a
    // bad signature in most batches; the genuine PDU follows it).
    let pdus: Vec<String> = f
        .pdus
        .iter()
        .enumerate()
        .flat_map(|(i, raw)| {
            if i % 7 != 3 {
                return vec![raw.clone()];
            }
            let mut v: serde_json::Value = serde_json::from_str(raw).unwrap();
            if let Some(sigs) = v.get_mut("signatures").and_then(|s| s.as_object_mut()) {
                if let Some(by_key) = sigs.values_mut().next().and_then(|k| k.as_object_mut()) {
                    if let Some(sig) = by_key.values_mut().next() {
                        let s = sig.as_str().unwrap().to_owned();
                        let flipped = match s.strip_prefix('A') {
                            Some(rest) => format!("B{rest}"),
                            None => format!("A{}", &s[1..]),
                        };
                        *sig = serde_json::Value::String(flipped);
                    }
                }
            }
            vec![v.to_string(), raw.clone()]
        })
        .collect();
    let mut one = Room::new(f.version()).unwrap();
    let want: Vec<Outcome> = pdus.iter().map(|p| one.ingest(p, Verification::Keys(&keys))).collect();
    assert!(want.iter().any(|o| matches!(o, Outcome::Dropped { .. })), "{name}: the corrupted signatures drop events");

    let raws: Vec<&str> = pdus.iter().map(String::as_str).collect();
    let mut batched = Room::new(f.version()).unwrap();
    let got = batched.ingest_batch(&raws, Placement::Timeline, &keys, |_| false);
    assert_eq!(got, want, "{name}: batched outcomes");
    assert_eq!(snapshot(&batched), snapshot(&one), "{name}: batched room");

    // Stopping after each rejected PDU and going on gives the same again.
    let mut stopping = Room::new(f.version()).unwrap();
    let mut got = Vec::new();
    let mut stops = 0;
    while got.len() < raws.len() {
        let part = stopping
            .ingest_batch(&raws[got.len()..], Placement::Timeline, &keys, |o| matches!(o, Outcome::Rejected { .. }));
        let last_rejected = matches!(part.last(), Some(Outcome::Rejected { .. }));
        assert!(
            part[..part.len() - 1].iter().all(|o| !matches!(o, Outcome::Rejected { .. })),
            "{name}: stops at the first rejection"
        );
        assert!(last_rejected || got.len() + part.len() == raws.len());
        stops += usize::from(last_rejected);
        got.extend(part);
    }
    assert_eq!(got, want, "{name}: outcomes when stopping after each rejection");
    assert_eq!(stops, want.iter().filter(|o| matches!(o, Outcome::Rejected { .. })).count());
    assert!(stops > 0, "{name}: the room has rejected events");
    eprintln!("properties::batch {name}: {} PDUs, {stops} rejections, batched = one by one", raws.len());
}

#[test]
fn batch_ingest_equals_one_by_one_v11_forky_2k() {
    check_batch_equals_one_by_one("v11-forky-2k");
}

#[test]
fn batch_ingest_equals_one_by_one_v3_500() {
    check_batch_equals_one_by_one("v3-500");
}

#[test]
fn batch_ingest_equals_one_by_one_v12_features_1k() {
    check_batch_equals_one_by_one("v12-features-1k");
}
