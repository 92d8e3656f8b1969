//! The bodies of the fuzz targets, shared by `fuzz/fuzz_targets/*.rs`
//! (libFuzzer) and the PRNG-driven harness in `tests/hardening`.
//!
//! Each target is oracle-checked, not only "does not panic":
//!
//! * `canonical`: parse → canonical → parse → canonical is idempotent; for
//!   float-free values the output equals serde_json's own sorted output and
//!   the value round-trips; the strict verdict survives the round trip;
//!   every float's Python repr parses back to the same float.
//! * `pdu`: for every room version, a parsed PDU's canonical form and its
//!   redacted form parse again to the same event ID and fields; redaction is
//!   idempotent; the signing bytes are those of the redacted form.
//! * `redaction`: redaction is idempotent for every version, keeps only
//!   allowed top-level keys, and always leaves an object `content`.
//! * `ingest`: a room fed real and mutated PDUs keeps its invariants
//!   (lookups, extremities, states), queries stay within their caps, the
//!   same inputs give the same room twice, and replaying only the stored
//!   records (what a store keeps) rebuilds the same room.

#![allow(dead_code)]

use std::collections::HashSet;

use roomdag::canonical_json::{object_to_canonical_string, python_float_repr, to_canonical_string, validate_strict};
use roomdag::pdu::{parse_pdu, MAX_RAW_PDU_BYTES};
use roomdag::queries::{self, Direction, BACKFILL_CAP, GET_MISSING_CAP};
use roomdag::redaction::redact;
use roomdag::room::digest_of;
use roomdag::signing::{content_hash, event_id_for_reference_hash, redacted_signing_bytes};
use roomdag::{EventStatus, Outcome, Room, RoomVersionRules, Verification};
use serde_json::{Map, Value};

use super::mutate::{mutate_bytes, mutate_pdu, Known, Source};

// ---------------------------------------------------------------------------
// canonical JSON

fn numbers(v: &Value) -> Vec<&serde_json::Number> {
    let mut out = Vec::new();
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::Number(n) => out.push(n),
            Value::Array(a) => stack.extend(a.iter()),
            Value::Object(m) => stack.extend(m.values()),
            _ => {}
        }
    }
    out
}

/// Whether serde_json's map keeps keys sorted (no `preserve_order`).
fn serde_json_sorts_keys() -> bool {
    let v: Value = serde_json::from_str(r#"{"b":1,"a":2}"#).unwrap();
    serde_json::to_string(&v).unwrap() == r#"{"a":2,"b":1}"#
}

/// An integer literal (`-?digits`), as the crate's writer sees numbers
/// (serde_json runs with `arbitrary_precision`, so a number keeps its text).
fn is_integer_text(t: &str) -> bool {
    let d = t.strip_prefix('-').unwrap_or(t);
    !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())
}

/// Canonical JSON round trip (any bytes).
pub fn canonical(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(v) = serde_json::from_str::<Value>(text) else { return };
    let c1 = to_canonical_string(&v);
    let v2: Value = serde_json::from_str(&c1).unwrap_or_else(|e| panic!("canonical output does not parse ({e}): {c1}"));
    let c2 = to_canonical_string(&v2);
    assert_eq!(c1, c2, "canonical JSON is not idempotent");
    if let Value::Object(m) = &v {
        assert_eq!(object_to_canonical_string(m), c1, "object and value writers disagree");
    }
    assert_eq!(validate_strict(&v), validate_strict(&v2), "strict verdict changed by the round trip: {c1}");
    let nums = numbers(&v);
    // Numbers already in canonical form: integers without `-0` or leading
    // zeros (JSON has none). Then the writer must agree with serde_json's
    // own sorted, compact output, and the value must round-trip exactly.
    let all_canonical = nums.iter().all(|n| {
        let t = n.to_string();
        is_integer_text(&t) && t != "-0"
    });
    if all_canonical {
        assert_eq!(v, v2, "value changed by the round trip");
        if serde_json_sorts_keys() {
            assert_eq!(c1, serde_json::to_string(&v).unwrap(), "differs from serde_json's sorted output");
        }
    }
    for n in nums {
        let t = n.to_string();
        if is_integer_text(&t) {
            continue;
        }
        if let Some(f) = t.parse::<f64>().ok().filter(|f| f.is_finite() && *f != 0.0) {
            let r = python_float_repr(f);
            assert_eq!(r.parse::<f64>().ok(), Some(f), "python_float_repr({f:?}) = {r} does not round-trip");
        }
    }
}

// ---------------------------------------------------------------------------
// PDU parsing

/// Every room version's PDU parser on one input.
pub fn pdu(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for rules in RoomVersionRules::ALL {
        let Ok(p) = parse_pdu(text, rules) else { continue };
        assert!(p.event_id.as_str().starts_with('$'));
        let redacted = redact(&p.json, rules);
        assert_eq!(redact(&redacted, rules), redacted, "v{}: redaction is not idempotent", rules.id);
        assert_eq!(redacted_signing_bytes(&redacted), p.signing_bytes, "v{}: signing bytes", rules.id);
        let _ = content_hash(&p.json);
        // The canonical form, and the redacted form, parse to the same event.
        // (Known quirk, shared with Synapse: in v12 redaction removes `room_id`
        // from every `m.room.create`-typed event, so the redacted form of one
        // without `state_key: ""` no longer passes the v12 room-ID rule.)
        let v12_stateless_create =
            rules.room_ids_as_hashes && p.event_type == "m.room.create" && p.state_key.as_deref() != Some("");
        for (what, form) in [("canonical", &p.json), ("redacted", &redacted)] {
            if what == "redacted" && v12_stateless_create {
                continue;
            }
            let text = object_to_canonical_string(form);
            if text.len() > MAX_RAW_PDU_BYTES {
                continue;
            }
            let q = parse_pdu(&text, rules)
                .unwrap_or_else(|e| panic!("v{}: {what} form of a parsed PDU does not parse: {e}\n{text}", rules.id));
            assert_eq!(q.event_id, p.event_id, "v{}: {what} form has another event ID", rules.id);
            assert_eq!(q.room_id, p.room_id, "v{}: {what} room_id", rules.id);
            assert_eq!(q.prev_events, p.prev_events, "v{}: {what} prev_events", rules.id);
            assert_eq!(q.auth_events, p.auth_events, "v{}: {what} auth_events", rules.id);
            assert_eq!((q.depth, q.origin_server_ts), (p.depth, p.origin_server_ts), "v{}: {what}", rules.id);
            assert_eq!((&q.sender, &q.event_type, &q.state_key), (&p.sender, &p.event_type, &p.state_key));
        }
    }
}

// ---------------------------------------------------------------------------
// Redaction

const ALLOWED_TOP_LEVEL: &[&str] = &[
    "event_id",
    "sender",
    "room_id",
    "hashes",
    "signatures",
    "content",
    "type",
    "state_key",
    "depth",
    "prev_events",
    "origin_server_ts",
    "auth_events",
    "prev_state",
    "membership",
    "origin",
];

/// The redaction algorithm on any JSON object.
pub fn redaction(data: &[u8]) {
    let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(data) else { return };
    for rules in RoomVersionRules::ALL {
        let r = redact(&m, rules);
        assert_eq!(redact(&r, rules), r, "v{}: redaction is not idempotent", rules.id);
        assert!(r.get("content").is_some_and(Value::is_object), "v{}: content is not an object", rules.id);
        for k in r.keys() {
            assert!(ALLOWED_TOP_LEVEL.contains(&k.as_str()), "v{}: kept top-level key {k:?}", rules.id);
        }
        assert!(!r.contains_key("unsigned"));
        let bytes = redacted_signing_bytes(&r);
        assert!(event_id_for_reference_hash(&bytes, rules).starts_with('$'));
        let _ = content_hash(&m);
    }
}

// ---------------------------------------------------------------------------
// Ingest

/// Real PDUs to start from.
pub struct Corpus {
    pub version: String,
    pub rules: &'static RoomVersionRules,
    pub pdus: Vec<String>,
    pub maps: Vec<Map<String, Value>>,
}

impl Corpus {
    pub fn new(version: &str, pdus: Vec<String>) -> Self {
        let maps = pdus
            .iter()
            .map(|p| match serde_json::from_str(p) {
                Ok(Value::Object(m)) => m,
                _ => Map::new(),
            })
            .collect();
        Corpus { version: version.into(), rules: RoomVersionRules::supported(version).unwrap(), pdus, maps }
    }
}

/// Counts, for the harness's report.
#[derive(Clone, Debug, Default)]
pub struct IngestStats {
    pub inputs: usize,
    pub accepted: usize,
    pub rejected: usize,
    pub dropped: usize,
    pub duplicate: usize,
}

impl IngestStats {
    pub fn add(&mut self, o: &IngestStats) {
        self.inputs += o.inputs;
        self.accepted += o.accepted;
        self.rejected += o.rejected;
        self.dropped += o.dropped;
        self.duplicate += o.duplicate;
    }
}

/// Limits of one ingest run.
#[derive(Clone, Copy, Debug)]
pub struct IngestLimits {
    /// Most verbatim PDUs fed before mutating.
    pub max_prefix: usize,
    /// Most mutation steps.
    pub max_steps: usize,
    /// Run the determinism and record-replay checks (two more replays of
    /// the whole input) on one run in this many (1: always).
    pub replay_checks_one_in: usize,
}

/// Sets the content hash, so the event reaches the auth rules unredacted.
fn fix_hash(ev: &mut Map<String, Value>) {
    ev.remove("hashes");
    let h = roomdag::signing::encode_base64(&content_hash(ev));
    ev.insert("hashes".into(), serde_json::json!({ "sha256": h }));
}

fn outcome_line(o: &Outcome) -> (String, Option<String>) {
    (o.status().to_owned(), o.event_id().map(|e| e.as_str().to_owned()))
}

/// Builds the input sequence of one ingest run from `src`.
pub fn ingest_inputs(src: &mut dyn Source, corpus: &Corpus, limits: IngestLimits) -> Vec<String> {
    let mut inputs: Vec<String> = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    // A verbatim prefix of the corpus first, so that later mutations land
    // in a populated room (joins, power levels, forks); sizes from a table
    // so that cheap runs dominate.
    const PREFIXES: [usize; 10] = [0, 4, 8, 16, 32, 64, 128, 256, 512, 2_048];
    let prefix = PREFIXES[src.below(PREFIXES.len())].min(limits.max_prefix).min(corpus.pdus.len());
    for p in &corpus.pdus[..prefix] {
        inputs.push(p.clone());
    }
    for p in &corpus.pdus[..prefix] {
        if let Ok(parsed) = parse_pdu(p, corpus.rules) {
            ids.push(parsed.event_id.as_str().to_owned());
        }
    }
    let mut cursor = prefix;
    let steps = src.below(limits.max_steps + 1);
    for _ in 0..steps {
        let raw = match src.below(10) {
            // The next real PDU.
            0..=2 => {
                if cursor >= corpus.pdus.len() {
                    continue;
                }
                cursor += 1;
                corpus.pdus[cursor - 1].clone()
            }
            // A mutated real PDU (usually with a correct content hash).
            3..=6 => {
                let i = src.below((cursor + 5).min(corpus.maps.len()).max(1));
                let mut ev = corpus.maps.get(i).cloned().unwrap_or_default();
                let known = Known { ids: &ids };
                for _ in 0..1 + src.below(3) {
                    mutate_pdu(src, &mut ev, &known);
                }
                if !src.one_in(4) {
                    fix_hash(&mut ev);
                }
                serde_json::to_string(&Value::Object(ev)).unwrap()
            }
            // A new child of recent events: real content, new prev_events.
            7 => {
                let i = src.below(cursor.max(1).min(corpus.maps.len()));
                let mut ev = corpus.maps.get(i).cloned().unwrap_or_default();
                let n = 1 + src.below(3);
                let prev: Vec<Value> = (0..n)
                    .filter_map(|_| {
                        (!ids.is_empty())
                            .then(|| Value::String(ids[ids.len() - 1 - src.below(ids.len().min(16))].clone()))
                    })
                    .collect();
                ev.insert("prev_events".into(), Value::Array(prev));
                ev.insert("depth".into(), serde_json::json!(cursor as i64 + 10 + src.below(3) as i64));
                if let Some(Value::Object(c)) = ev.get_mut("content") {
                    c.insert("nonce".into(), serde_json::json!(src.below(1 << 16)));
                }
                fix_hash(&mut ev);
                serde_json::to_string(&Value::Object(ev)).unwrap()
            }
            // A duplicate of an earlier input.
            8 => {
                if inputs.is_empty() {
                    continue;
                }
                inputs[src.below(inputs.len())].clone()
            }
            // Byte-level damage to a real PDU.
            _ => {
                let i = src.below(cursor.max(1).min(corpus.pdus.len()));
                let b = mutate_bytes(src, corpus.pdus[i].as_bytes());
                match String::from_utf8(b) {
                    Ok(s) => s,
                    Err(_) => continue,
                }
            }
        };
        if let Ok(parsed) = parse_pdu(&raw, corpus.rules) {
            ids.push(parsed.event_id.as_str().to_owned());
        }
        inputs.push(raw);
        if src.exhausted() && src.below(2) == 0 {
            break;
        }
    }
    inputs
}

/// Feeds `inputs` to a fresh room, checking every outcome.
fn feed(corpus: &Corpus, inputs: &[String]) -> (Room, Vec<(String, Option<String>)>, IngestStats) {
    let mut room = Room::new(&corpus.version).unwrap();
    let mut lines = Vec::with_capacity(inputs.len());
    let mut stats = IngestStats { inputs: inputs.len(), ..Default::default() };
    for raw in inputs {
        let before = room.events().len();
        let o = room.ingest(raw, Verification::Unsigned);
        match &o {
            Outcome::Accepted { event_id, .. } | Outcome::Rejected { event_id, .. } => {
                assert_eq!(room.events().len(), before + 1, "a stored event adds one event");
                let idx = room.lookup(event_id.as_str()).unwrap().expect("stored event is found");
                assert_eq!(idx.ix(), before, "stored at the end");
                assert_eq!(room.id(idx).unwrap(), event_id.as_str());
                assert_eq!(&*room.raw(idx).unwrap(), raw.as_str(), "raw bytes kept");
                let want =
                    if matches!(o, Outcome::Accepted { .. }) { EventStatus::Accepted } else { EventStatus::Rejected };
                assert_eq!(room.event(idx).unwrap().status, want);
                if matches!(o, Outcome::Accepted { .. }) {
                    stats.accepted += 1;
                } else {
                    stats.rejected += 1;
                }
            }
            Outcome::Duplicate { event_id } => {
                assert_eq!(room.events().len(), before, "a duplicate stores nothing");
                assert!(room.lookup(event_id.as_str()).unwrap().is_some(), "a duplicate is of a stored event");
                stats.duplicate += 1;
            }
            Outcome::Deferred { .. } => panic!("a live PDU is never deferred"),
            Outcome::Dropped { event_id, .. } => {
                assert_eq!(room.events().len(), before, "a dropped PDU stores nothing");
                if let Some(id) = event_id {
                    assert!(room.lookup(id.as_str()).unwrap().is_none(), "dropped but stored: {id:?}");
                }
                stats.dropped += 1;
            }
        }
        lines.push(outcome_line(&o));
    }
    (room, lines, stats)
}

/// Everything observable about a room, to compare two rooms.
fn observe(room: &Room) -> (Vec<(String, bool, [u8; 32], [u8; 32])>, Vec<String>, [u8; 32]) {
    let per_event = room
        .events()
        .iter()
        .map(Result::unwrap)
        .map(|e| {
            (
                room.events().id(&e).unwrap().to_owned(),
                e.is_accepted(),
                room.state_digest(e.state_before).unwrap(),
                room.state_digest(e.state_after).unwrap(),
            )
        })
        .collect();
    let mut ext: Vec<String> = room.forward_extremities().map(|e| room.id(e).unwrap().to_owned()).collect();
    ext.sort();
    let cur = room.current_state_map().unwrap();
    let current = digest_of(cur.iter().map(|(k, e)| {
        let (t, s) = room.key_name(k);
        (t, s, room.state_id(e))
    }));
    (per_event, ext, current)
}

/// The structural invariants of a room.
fn check_room(room: &mut Room, src: &mut dyn Source) {
    let n = room.events().len();
    // Extremities: exactly the accepted events no accepted event cites.
    let mut referenced = vec![false; n];
    for e in room.events().iter().map(Result::unwrap) {
        if e.is_accepted() {
            for p in room.events().prev_events(&e).unwrap() {
                referenced[p.ix()] = true;
            }
        }
        // Links point backwards.
        for l in room.events().prev_events(&e).unwrap().iter().chain(room.events().auth_events(&e).unwrap()) {
            assert!(l.ix() < e.idx.ix(), "a stored event cites a later one");
        }
        // State after = state before, plus the event if it is accepted state.
        let before = room.state(e.state_before).unwrap();
        let after = room.state(e.state_after).unwrap();
        match (e.is_accepted(), e.key) {
            (true, Some(k)) => {
                assert_eq!(after.get(k), Some(e.idx), "accepted state event is in its state after");
                assert_eq!(after.len(), before.len() + usize::from(before.get(k).is_none()));
            }
            _ => assert_eq!(e.state_before, e.state_after, "non-state or rejected event changes state"),
        }
        // Every event in a state is an accepted state event of that key.
        for (k, s) in after.iter() {
            let se = room.event(s).unwrap();
            assert!(se.is_accepted() && se.key == Some(k), "state holds a rejected or mis-keyed event");
        }
    }
    let want: HashSet<usize> = room
        .events()
        .iter()
        .map(Result::unwrap)
        .filter(|e| e.is_accepted() && !referenced[e.idx.ix()])
        .map(|e| e.idx.ix())
        .collect();
    let got: HashSet<usize> = room.forward_extremities().map(|e| e.ix()).collect();
    assert_eq!(got, want, "forward extremities");
    // Current state: both APIs agree.
    let cur = room.current_state().unwrap();
    assert!(
        *room.state(cur).unwrap() == *room.current_state_map().unwrap(),
        "current_state and current_state_map disagree"
    );
    // Queries stay within their caps and never fail other than 403/404.
    let ids: Vec<String> =
        room.events().iter().map(Result::unwrap).map(|e| room.events().id(&e).unwrap().to_owned()).collect();
    let some_ids = |src: &mut dyn Source, k: usize| -> Vec<String> {
        (0..k)
            .map(|_| {
                if ids.is_empty() || src.one_in(8) {
                    "$unknown".to_string()
                } else {
                    ids[src.below(ids.len())].clone()
                }
            })
            .collect()
    };
    let ext: Vec<String> = room.forward_extremities().map(|e| room.id(e).unwrap().to_owned()).collect();
    for origin in ["a.example", "b.example", "c.example", "evil.example"] {
        let k = 1 + src.below(5);
        let v = some_ids(src, k);
        if let Ok(list) = queries::backfill(room, origin, &v, 10_000) {
            assert!(list.len() <= BACKFILL_CAP, "backfill returned {}", list.len());
            assert!(list.iter().all(|s| room.event(s.event).unwrap().is_accepted()));
        }
        let k = src.below(3);
        let earliest = some_ids(src, k);
        if let Ok(list) = queries::get_missing_events(room, origin, &earliest, &ext, Some(1_000_000)) {
            assert!(list.len() <= GET_MISSING_CAP, "get_missing_events returned {}", list.len());
        }
        for id in some_ids(src, 2) {
            if let Ok(s) = queries::state_ids(room, origin, &id) {
                let e = room.lookup(&id).unwrap().unwrap();
                assert_eq!(s.pdu_ids.len(), room.state(room.event(e).unwrap().state_before).unwrap().len());
            }
            let _ = queries::event(room, origin, &id);
        }
        for dir in [Direction::Forward, Direction::Backward] {
            let shift = src.below(64);
            let _ = queries::timestamp_to_event(room, origin, i128::from((src.next_u64() as i64) >> shift), dir);
        }
    }
    let _ = roomdag::export::graph_json(room);
}

/// One ingest run: builds inputs from `src`, feeds them, checks the room,
/// checks determinism and the store contract (replaying only the stored
/// records rebuilds the same room).
pub fn ingest(src: &mut dyn Source, corpus: &Corpus, limits: IngestLimits) -> IngestStats {
    let inputs = ingest_inputs(src, corpus, limits);
    let (mut room, lines, stats) = feed(corpus, &inputs);
    check_room(&mut room, src);
    if !src.one_in(limits.replay_checks_one_in.max(1)) {
        return stats;
    }
    // Same inputs, same room.
    let (again, lines2, _) = feed(corpus, &inputs);
    assert_eq!(lines, lines2, "the same inputs gave different outcomes");
    let seen = observe(&room);
    assert!(seen == observe(&again), "the same inputs gave a different room");
    // Re-ingesting a stored event is a duplicate and changes nothing.
    if room.events().len() > 0 {
        let i = src.below(room.events().len());
        let raw = room.raw(roomdag::EventIdx(i as u32)).unwrap().to_string();
        let o = room.ingest(&raw, Verification::Unsigned);
        assert!(matches!(o, Outcome::Duplicate { .. }), "re-ingest of a stored event: {o:?}");
        assert!(seen == observe(&room), "a duplicate changed the room");
    }
    // The stored records alone rebuild the same room.
    let records: Vec<String> =
        room.events().iter().map(Result::unwrap).map(|e| room.events().raw(&e).unwrap().to_string()).collect();
    let (rebuilt, lines3, _) = feed(corpus, &records);
    assert!(lines3.iter().all(|(s, _)| s != "dropped" && s != "duplicate"), "a stored record did not store again");
    let rebuilt_seen = observe(&rebuilt);
    if rebuilt_seen != seen {
        let (a, b) = (&seen.0, &rebuilt_seen.0);
        let first = a.iter().zip(b.iter()).position(|(x, y)| x != y);
        panic!(
            "replaying the stored records gave another room (first differing event: {first:?}; extremities equal: {}, current state equal: {})",
            seen.1 == rebuilt_seen.1,
            seen.2 == rebuilt_seen.2
        );
    }
    stats
}

// ---------------------------------------------------------------------------
// X-Matrix Authorization header

/// The `Authorization: X-Matrix …` parser on any text. A header that parses
/// has a valid origin, an `ed25519:` key and base64 signature, and what
/// servers send for it (`to_header`, every value quoted) parses back to
/// the same fields; a header that does not parse gives the 401/400 error a
/// request would get (never a panic).
pub fn xmatrix(data: &[u8]) {
    use roomdag::http::xmatrix::{XMatrix, XMatrixError};
    let Ok(text) = std::str::from_utf8(data) else { return };
    match XMatrix::parse(text) {
        Ok(x) => {
            assert!(!x.origin.is_empty(), "empty origin from {text:?}");
            assert!(x.key.starts_with("ed25519:") && x.key.len() > 8, "key {:?} from {text:?}", x.key);
            let again = XMatrix::parse(&x.to_header())
                .unwrap_or_else(|e| panic!("{text:?} → {:?} does not parse again: {e}", x.to_header()));
            assert_eq!(again, x, "round trip of {text:?}");
            // Parameter names are case-insensitive and the scheme too.
            let shouted = x.to_header().replacen("X-Matrix", "x-MATRIX", 1).replacen("origin=", "ORIGIN=", 1);
            assert_eq!(XMatrix::parse(&shouted).as_ref(), Ok(&x), "case-insensitive names: {shouted:?}");
        }
        Err(e) => {
            // A scheme other than X-Matrix is "no credentials", not an error.
            let scheme = text.trim_matches([' ', '\t']).split([' ', '\t']).next().unwrap_or("");
            if matches!(e, XMatrixError::NotXMatrix) {
                let params = text.trim_matches([' ', '\t']).split_once([' ', '\t']);
                assert!(!scheme.eq_ignore_ascii_case("X-Matrix") || params.is_none(), "{text:?}: {e}");
            }
            assert!(!e.to_string().is_empty());
        }
    }
}

// ---------------------------------------------------------------------------
// federation request routing

/// The request-target parser and the router on `METHOD SP TARGET` text.
/// Every failure is a 4xx with an errcode; a routed request's room ID (for
/// room endpoints) is the percent-decoded path segment; a target without
/// escapes decodes to its own segments.
pub fn router(data: &[u8]) {
    use roomdag::http::{route, Endpoint, Target};
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (method, raw) = text.split_once(' ').unwrap_or(("GET", text));
    let target = match Target::parse(raw) {
        Ok(t) => t,
        Err(e) => {
            assert_eq!(e.status, 400, "{raw:?}: {e:?}");
            return;
        }
    };
    let path = raw.split_once('?').map_or(raw, |(p, _)| p);
    if !path.contains('%') {
        let plain: Vec<&str> = path.split('/').skip(1).collect();
        assert_eq!(target.segments, plain, "{raw:?}");
    }
    match route(method, &target) {
        Ok(endpoint) => {
            assert_eq!(target.segments.first().map(String::as_str), Some("_matrix"));
            if let Some(room) = endpoint.room_id() {
                assert_eq!(Some(room), target.segments.last().map(String::as_str), "{raw:?}");
            }
            if let Endpoint::Version | Endpoint::ServerKeys = endpoint {
                assert!(!endpoint.needs_auth());
            } else {
                assert!(endpoint.needs_auth(), "{endpoint:?} must need X-Matrix auth");
            }
        }
        Err(e) if e.status == 400 => {
            // Only a `/send` transaction ID over the limit is refused as a parameter.
            let s = &target.segments;
            let is_send = s.len() == 5 && s[..4] == ["_matrix", "federation", "v1", "send"];
            assert!(is_send && s[4].len() > roomdag::http::MAX_TXN_ID_BYTES, "{method} {raw:?}: {e:?}");
            assert_eq!(e.body()["errcode"], "M_INVALID_PARAM");
        }
        Err(e) => {
            assert!(matches!(e.status, 404 | 405), "{method} {raw:?}: {e:?}");
            assert_eq!(e.body()["errcode"], "M_UNRECOGNIZED");
        }
    }
}

// ---------------------------------------------------------------------------
// `/send` bodies → outcomes (the Rust side of `FederationServer`'s path)

/// The rooms a `/send` target knows: a held room (a fixture's first PDUs,
/// restored as a store would) and the keys of each fixture's servers (key
/// IDs repeat across fixtures, so each room is checked with its own).
pub struct SendCorpus {
    /// The held room's version and stored PDUs.
    pub held_version: String,
    pub held: Vec<String>,
    pub held_room_id: String,
    /// Room ID → the keys of its fixture's servers (the first entry is the default).
    pub keys: Vec<(String, roomdag::PinnedKeys)>,
}

impl SendCorpus {
    fn keys_for(&self, room_id: &str) -> &roomdag::PinnedKeys {
        self.keys.iter().find(|(r, _)| r == room_id).map_or(&self.keys[0].1, |(_, k)| k)
    }
}

/// What one `/send` body did, for the harness's report.
#[derive(Clone, Debug, Default)]
pub struct SendStats {
    pub refused: usize,
    pub groups: usize,
    pub rooms_started: usize,
    pub creates_refused: usize,
    pub accepted: usize,
    pub rejected: usize,
    pub dropped: usize,
    pub duplicate: usize,
}

impl SendStats {
    pub fn add(&mut self, o: &SendStats) {
        self.refused += o.refused;
        self.groups += o.groups;
        self.rooms_started += o.rooms_started;
        self.creates_refused += o.creates_refused;
        self.accepted += o.accepted;
        self.rejected += o.rejected;
        self.dropped += o.dropped;
        self.duplicate += o.duplicate;
    }
}

/// A `/send` body (the bytes), processed the way `FederationServer` does:
/// `parse_transaction`, `group_pdus`, then per room either the held room, or
/// — for a create event — `check_create_event` before a room is made, then
/// ingest with signature checks. Oracles: a refused body is a 4xx with an
/// errcode; grouping keeps every PDU at most once, in order, rooms distinct,
/// each group's create event really is its first one; a create event that
/// passes the check is accepted by the new room, whose ID is the checked
/// one; every reason is at most `MAX_REASON_BYTES`; exactly the accepted and
/// rejected PDUs are stored; the dropped log stays within its bound; a
/// room's version never changes, and once it holds events it stores no
/// create event for another version.
pub fn send(data: &[u8], corpus: &SendCorpus) -> SendStats {
    use roomdag::http::{group_pdus, parse_transaction, pdu_room, MAX_TXN_PDUS};
    use roomdag::room::{MAX_DROPPED_LOG_BYTES, MAX_REASON_BYTES};
    let mut stats = SendStats::default();
    let Ok(body) = std::str::from_utf8(data) else { return stats };
    let txn = match parse_transaction(body) {
        Ok(t) => t,
        Err(e) => {
            assert!(matches!(e.status, 400 | 413), "{e:?}");
            assert!(e.errcode.starts_with("M_"), "{e:?}");
            stats.refused += 1;
            return stats;
        }
    };
    assert!(txn.pdus.len() <= MAX_TXN_PDUS);
    let raws: Vec<&str> = txn.pdus.iter().map(|p| p.get()).collect();
    let groups = group_pdus(&raws);
    let mut seen = HashSet::new();
    let mut rooms = HashSet::new();
    for g in &groups {
        assert!(rooms.insert(g.room_id.clone()), "room {} grouped twice", g.room_id);
        assert!(!g.pdus.is_empty() && g.pdus.windows(2).all(|w| w[0] < w[1]), "order kept: {:?}", g.pdus);
        for i in &g.pdus {
            assert!(seen.insert(*i), "PDU {i} in two groups");
        }
        if let Some((i, v)) = &g.create {
            assert!(g.pdus.contains(i));
            assert_eq!(pdu_room(raws[*i]).and_then(|p| p.create_room_version).as_deref(), Some(v.as_str()));
            assert!(
                g.pdus
                    .iter()
                    .take_while(|j| *j != i)
                    .all(|j| pdu_room(raws[*j]).unwrap().create_room_version.is_none()),
                "the first create event"
            );
        }
    }
    for (i, raw) in raws.iter().enumerate() {
        if !seen.contains(&i) {
            let hint = pdu_room(raw);
            assert!(hint.as_ref().is_none_or(|h| h.room_id.is_none()), "PDU {i} has a room_id but no group: {raw}");
        }
    }
    stats.groups = groups.len();
    for g in &groups {
        let keys = corpus.keys_for(&g.room_id);
        let (mut room, order, fresh) = if g.room_id == corpus.held_room_id {
            let mut room = Room::new(&corpus.held_version).unwrap();
            for p in &corpus.held {
                room.ingest(p, Verification::AlreadyVerified);
            }
            (room, g.pdus.clone(), None)
        } else if let Some((ci, version)) = &g.create {
            match roomdag::http::check_create_event(raws[*ci], version, keys) {
                Err(reason) => {
                    assert!(reason.len() <= MAX_REASON_BYTES, "{} bytes", reason.len());
                    stats.creates_refused += 1;
                    continue;
                }
                Ok((room_id, event_id)) => {
                    assert_eq!(room_id, g.room_id, "a checked create event is for its group's room");
                    let mut order = vec![*ci];
                    order.extend(g.pdus.iter().filter(|i| *i != ci));
                    stats.rooms_started += 1;
                    (Room::new(version).unwrap(), order, Some(event_id))
                }
            }
        } else {
            continue; // a room we do not hold: ignored
        };
        let version = room.rules().id;
        for (n, i) in order.iter().enumerate() {
            let before = room.events().len();
            let o = room.ingest(raws[*i], Verification::Keys(keys));
            match &o {
                Outcome::Accepted { .. } => {
                    stats.accepted += 1;
                    assert_eq!(room.events().len(), before + 1);
                }
                Outcome::Rejected { reason, .. } => {
                    stats.rejected += 1;
                    assert_eq!(room.events().len(), before + 1);
                    assert!(reason.len() <= MAX_REASON_BYTES, "{} bytes", reason.len());
                }
                Outcome::Dropped { reason, .. } => {
                    stats.dropped += 1;
                    assert_eq!(room.events().len(), before);
                    assert!(reason.len() <= MAX_REASON_BYTES, "{} bytes", reason.len());
                }
                Outcome::Duplicate { .. } => {
                    stats.duplicate += 1;
                    assert_eq!(room.events().len(), before);
                }
                Outcome::Deferred { .. } => panic!("a timeline PDU is never deferred: {o:?}"),
            }
            if n == 0 {
                if let Some(id) = &fresh {
                    assert!(
                        matches!(&o, Outcome::Accepted { event_id, redacted_on_receipt: false } if event_id.as_str() == id),
                        "the checked create event is accepted by the new room: {o:?}"
                    );
                    assert_eq!(room.room_id(), Some(g.room_id.as_str()));
                }
            }
        }
        assert_eq!(room.rules().id, version, "the room version never changes");
        let (log, _) = room.dropped();
        let bytes: usize = log.iter().map(|d| d.reason.len() + d.event_id.as_ref().map_or(0, String::len)).sum();
        assert!(bytes <= MAX_DROPPED_LOG_BYTES);
        for e in room.events().iter().map(Result::unwrap) {
            if &*e.event_type == "m.room.create" && e.state_key.as_deref() == Some("") && e.idx.ix() > 0 {
                let raw: Value = serde_json::from_str(&room.raw(e.idx).unwrap()).unwrap();
                let claimed = raw.get("content").and_then(|c| c.get("room_version"));
                assert_eq!(
                    claimed.map_or(Some("1"), Value::as_str),
                    Some(version),
                    "a later create for another version was stored"
                );
            }
        }
    }
    stats
}
