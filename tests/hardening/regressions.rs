//! One test per bug the hardening work found, with the minimal input.
//!
//! Every bug below is fixed; the comments describe the bug as found, and
//! each test pins the fix. A newly found bug lands here as an `#[ignore]`d
//! test (`#[ignore = "known bug Hn: …"]`) until its fix drops the ignore.

use roomdag::canonical_json::to_canonical_string;
use roomdag::pdu::parse_pdu;
use roomdag::{Outcome, RoomVersionRules, Verification};
use serde_json::{json, Value};

use super::common::Builder;

// ---------------------------------------------------------------------------
// H1: a number beyond the f64 range is written as `NaN`.
//
// Since serde_json runs with `arbitrary_precision` (commit 021334d), `1e400`
// parses (the text is kept) instead of failing with "number out of range";
// `write_number` then calls `python_float_repr(n.as_f64().unwrap_or(NaN))`
// and `as_f64` is `None` for an infinite value, so the canonical form is
// `[NaN]`: not JSON. Python's `canonicaljson` (Synapse) refuses to encode
// an infinite float (ValueError), so such a PDU cannot be hashed there.
// In room versions 1–5 (no strict canonical JSON) a PDU carrying
// `"content": {"n": 1e400}` parses, and its content hash and (for kept
// content) event ID are computed over the non-JSON text.

#[test]
fn h1_out_of_range_float_is_not_written_as_nan() {
    for text in ["[1e400]", "[-1e400]", r#"{"a":1E400}"#] {
        let v: Value = serde_json::from_str(text).expect("serde_json (arbitrary_precision) accepts it");
        let c = to_canonical_string(&v);
        assert!(serde_json::from_str::<Value>(&c).is_ok(), "{text} → canonical {c} is not JSON");
    }
}

#[test]
fn h1_v3_pdu_with_out_of_range_float_is_refused() {
    let raw = r#"{"type":"m.room.message","sender":"@a:a.example","room_id":"!r:a.example","content":{"n":1e400},
        "depth":2,"origin_server_ts":1,"prev_events":[],"auth_events":[],"hashes":{"sha256":"x"}}"#;
    let r = parse_pdu(raw, RoomVersionRules::supported("3").unwrap());
    assert!(r.is_err(), "a PDU whose canonical form is not JSON must not parse (Synapse cannot hash it)");
}

/// What H1 does not affect: strict room versions refuse the float.
#[test]
fn h1_strict_versions_refuse_out_of_range_floats() {
    let raw = r#"{"type":"m.room.message","sender":"@a:a.example","room_id":"!r:a.example","content":{"n":1e400},
        "depth":2,"origin_server_ts":1,"prev_events":[],"auth_events":[],"hashes":{"sha256":"x"}}"#;
    for v in ["6", "11"] {
        assert!(parse_pdu(raw, RoomVersionRules::supported(v).unwrap()).is_err());
    }
}

// ---------------------------------------------------------------------------
// H2: a PDU with no prev and no auth events panics when the link arena's
// block is exactly full.
//
// `Events::push_links` starts a new 65,536-entry block only when the event's
// links do not fit (`capacity - len < need`); with `need == 0` and a full
// block it stays on the full block and records `links_at = (block + 1) *
// LINK_BLOCK`. `links_of` then indexes `self.links[block + 1]`, which does
// not exist yet: `index out of bounds` in `Room::check_auth` (it reads the
// event's auth events). Any non-create PDU with `"prev_events": [],
// "auth_events": []` reaches that point in room versions 3–11 (v12 always
// appends the create event), so a remote server that can steer the room's
// total link count to a multiple of 65,536 crashes the engine.

/// A v11 room whose stored events hold exactly `65_536 * blocks` links.
fn room_with_full_link_block() -> Builder {
    let mut b = Builder::new_v11();
    // create 0 + join 2 + power levels 3 + join rules 4.
    let mut links: usize = 9;
    let target = 65_536;
    let (create, pl, join) = (b.create.clone(), b.power_levels.clone(), b.creator_join.clone());
    let creator = b.creator.clone();
    let mut prev = b.join_rules.clone();
    while links < target {
        let left = target - links;
        // 20 prev events + 10 auth events = 30 links per event; the last
        // one takes what is left (at least 1 prev + 3 auth).
        let n = if left >= 30 + 4 { 30 } else { left };
        let (n_prev, n_auth) = if n == 30 {
            (20, 10)
        } else if n <= 20 {
            (n, 0)
        } else {
            (20, n - 20)
        };
        let prevs: Vec<&str> = (0..n_prev).map(|_| prev.as_str()).collect();
        let mut auths: Vec<&str> = vec![create.as_str(), pl.as_str(), join.as_str()];
        while auths.len() < n_auth {
            auths.push(create.as_str());
        }
        auths.truncate(n_auth);
        let raw = b.pdu("m.room.message", None, &creator, json!({"body": "fill"}), &prevs, &auths);
        let o = b.add(&raw);
        assert!(o.is_stored(), "filler must be stored: {o:?}");
        if let Outcome::Accepted { event_id, .. } = o {
            prev = event_id.as_str().to_owned();
        }
        links += n;
    }
    assert_eq!(links, target);
    b
}

#[test]
fn h2_linkless_pdu_on_a_full_link_block_does_not_panic() {
    let mut b = room_with_full_link_block();
    let creator = b.creator.clone();
    let raw = b.pdu("m.room.message", None, &creator, json!({"body": "no links"}), &[], &[]);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| b.room.ingest(&raw, Verification::Unsigned)));
    let o = r.expect("ingesting a PDU with no prev/auth events panicked (H2)");
    assert!(matches!(o, Outcome::Rejected { .. } | Outcome::Dropped { .. }), "{o:?}");
}

/// The same PDU one link earlier is fine (shows the panic is the boundary).
#[test]
fn h2_linkless_pdu_below_the_boundary_is_rejected() {
    let mut b = Builder::new_v11();
    let creator = b.creator.clone();
    let raw = b.pdu("m.room.message", None, &creator, json!({"body": "no links"}), &[], &[]);
    let o = b.room.ingest(&raw, Verification::Unsigned);
    assert!(matches!(o, Outcome::Rejected { .. }), "{o:?}");
}

// ---------------------------------------------------------------------------
// H4: events of type `m.room.create` whose `state_key` is not `""` (absent
// or another key) are not treated as create events by the auth rules.
//
// Synapse (and the spec: "1. If type is m.room.create") applies the create
// rules by *type alone*: such an event is rejected if it has prev events
// ("Create event has prev events") and otherwise allowed without looking at
// any state; its state before is the empty state. roomdag checks
// `event.is("m.room.create", "")`, so it runs the ordinary rules instead:
// with prev events it accepts the event (an `m.room.create` state event
// with state key "x" even enters the room state), without them it rejects
// it ("No create event in auth events"). Found by the oracle differential
// fuzzer (`oracle_diff`); the verdicts below are Synapse's (expect.py on
// the same PDUs, which have the same event IDs).

/// Hashes and signs a PDU as a.example (the fixture's seed), like the
/// oracle's `add_hashes_and_signatures`.
fn sign_as_a_example(f: &super::common::Fixture, mut ev: Value) -> String {
    use roomdag::signing::{content_hash, encode_base64, redacted_signing_bytes};
    let key = f.header.signing_key("a.example").expect("a.example's seed");
    let m = ev.as_object_mut().unwrap();
    m.insert("hashes".into(), json!({"sha256": encode_base64(&content_hash(m))}));
    let bytes = redacted_signing_bytes(&roomdag::redaction::redact(m, f.rules));
    m.insert("signatures".into(), json!({"a.example": {"ed25519:1": key.sign_bytes(bytes.as_bytes())}}));
    serde_json::to_string(&ev).unwrap()
}

/// The first six events of v11-forky-2k (create, carol's join, power
/// levels, join rules, history visibility, name) and their IDs.
fn v11_base() -> (super::common::Fixture, Vec<String>, Vec<String>) {
    let f = super::common::load_fixture("v11-forky-2k");
    let ids: Vec<String> = f.pdus[..6].iter().map(|p| super::common::event_id_of(p, f.rules).unwrap()).collect();
    let pdus = f.pdus[..6].to_vec();
    (f, pdus, ids)
}

/// Ingests `pdus` with the fixture's keys and compares events 6.. with
/// Synapse's verdicts `(event ID, status, state before, state after)` and
/// the current state digest.
fn check_against_synapse(
    f: &super::common::Fixture,
    pdus: &[String],
    want: &[(&str, &str, &str, &str)],
    current: &str,
) {
    let keys = f.header.pinned_keys().unwrap();
    let mut room = roomdag::Room::new(f.version()).unwrap();
    let outcomes: Vec<Outcome> = pdus.iter().map(|p| room.ingest(p, Verification::Keys(&keys))).collect();
    let mut differ = Vec::new();
    for (o, (id, status, before, after)) in outcomes[6..].iter().zip(want) {
        assert_eq!(o.event_id().unwrap().as_str(), *id, "same PDUs as the oracle run");
        if *status == "dropped" {
            if o.status() != "dropped" || room.lookup(id).unwrap().is_some() {
                differ.push(format!("{id}: synapse dropped, roomdag {} ({o:?})", o.status()));
            }
            continue;
        }
        let e = room.event(room.lookup(id).unwrap().unwrap()).unwrap();
        let hex = super::common::hex;
        let got = (
            o.status(),
            hex(room.state_digest(e.state_before).unwrap()),
            hex(room.state_digest(e.state_after).unwrap()),
        );
        if got != (*status, before.to_string(), after.to_string()) {
            differ.push(format!("{id}: synapse {status}, roomdag {} ({o:?})", got.0));
        }
    }
    let cur = room.current_state().unwrap();
    if super::common::hex(room.state_digest(cur).unwrap()) != current {
        differ.push("current state digest differs from Synapse's".into());
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

/// Four `m.room.create`-typed PDUs signed by a.example: (state key, with
/// prev/auth events?).
fn h4_pdus() -> (super::common::Fixture, Vec<String>) {
    let (f, mut pdus, ids) = v11_base();
    let (create, join, pl, last) = (&ids[0], &ids[1], &ids[2], &ids[5]);
    let cases: [(Option<&str>, bool); 4] = [(None, true), (None, false), (Some("x"), true), (Some("x"), false)];
    for (n, (state_key, linked)) in cases.into_iter().enumerate() {
        let n = n as i64 + 1;
        let (prev, auth) = if linked { (json!([last]), json!([create, pl, join])) } else { (json!([]), json!([])) };
        let mut ev = json!({"type": "m.room.create", "sender": "@carol:a.example", "content": {"room_version": "11", "n": n},
            "room_id": "!6b51d431df5d7f141c:a.example", "depth": 7, "origin_server_ts": 1_700_000_001_000i64 + n,
            "prev_events": prev, "auth_events": auth});
        if let Some(k) = state_key {
            ev["state_key"] = json!(k);
        }
        pdus.push(sign_as_a_example(&f, ev));
    }
    (f, pdus)
}

const EMPTY_STATE: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

#[test]
fn h4_create_typed_events_follow_the_create_rules() {
    let (f, pdus) = h4_pdus();
    // Synapse 1.163.2 via ../shared/oracle/expect.py:
    let want = [
        ("$P7LhqpIPVuyl9LswVYyYHcFD8mp12goGt_GV5iQMXxw", "rejected", EMPTY_STATE, EMPTY_STATE),
        ("$j8vZyFX0smjrtI5uDkVaeLY56ewAFj41RzdWLxrmMVg", "accepted", EMPTY_STATE, EMPTY_STATE),
        ("$B27sXm7LVrwJhFVh6FOTPV01xMQbadixcBe_FWcojyI", "rejected", EMPTY_STATE, EMPTY_STATE),
        (
            "$dkZ8G1G4lXQhh9hVua-Mzn3V2HESxw_svT_uD-I4b9U",
            "accepted",
            EMPTY_STATE,
            "364045c526312b8ddfe04c8481fba67dbc9d3590f862cd95bb45767f7a35b6f0",
        ),
    ];
    check_against_synapse(&f, &pdus, &want, "40f12e73c1d865308ad7263bb38b8430582e0cfce2c3a53ff52456fc82459378");
}

// ---------------------------------------------------------------------------
// H5: a membership event whose state key has no `:` is not refused.
//
// Synapse's `_is_membership_change_allowed` computes the target's domain
// with `get_domain_from_id(state_key)`, which raises `SynapseError("Invalid
// ID")` when there is no colon (after the creator's-first-join shortcut).
// roomdag's `domain_of` returns `None` there and the check goes on: an
// invite of `""`, a ban of `"nocolon"`, a kick of `"@nocolon"` by a joined
// user with enough power are *accepted* and enter the room state. Found by
// the oracle differential fuzzer. That `SynapseError` is not an `AuthError`,
// so Synapse never stores the event: first fixed as a rejection, now (with
// the oracle that models it, see `auth_drops.rs`) a drop.

#[test]
fn h5_membership_target_without_colon_is_dropped() {
    let (f, mut pdus, ids) = v11_base();
    let (create, join, pl, last) = (&ids[0], &ids[1], &ids[2], &ids[5]);
    for (n, (state_key, membership)) in
        [("", "invite"), ("nocolon", "ban"), ("@nocolon", "leave")].into_iter().enumerate()
    {
        let ev = json!({"type": "m.room.member", "sender": "@carol:a.example", "state_key": state_key,
            "content": {"membership": membership}, "room_id": "!6b51d431df5d7f141c:a.example", "depth": 7,
            "origin_server_ts": 1_700_000_002_001i64 + n as i64, "prev_events": [last], "auth_events": [create, pl, join]});
        pdus.push(sign_as_a_example(&f, ev));
    }
    // Synapse 1.163.2: all three dropped ("Invalid ID"), the state unchanged.
    const BEFORE: &str = "e9e34dccb784b15c31d4af629ff6f01dab3fdb2ab027f9a700c97f18660989b2";
    let want = [
        ("$NO2ixFIc99BLp9keQcK7mqplTqs3nlqZTkp3wXjlWKg", "dropped", "", ""),
        ("$QQSwl28fyntfSrGAnJYtCui5LUiEpqqoFbyPh9_FvXA", "dropped", "", ""),
        ("$OBZRY9Tck5yfCuLKCi3XvvRGMvRnP4_bXf4u2nq2H-4", "dropped", "", ""),
    ];
    check_against_synapse(&f, &pdus, &want, BEFORE);
}

// ---------------------------------------------------------------------------
// H6: one query with a `ts` beyond i64 makes the whole queries file
// unreadable.
//
// `fixture::Query::ts` is an `i64`, so serde refuses the file (`invalid
// value: integer 9223372036855368709, expected i64`) and `roomdag replay`
// exits 1 without answering anything. The oracle draws timestamps around
// event timestamps, so a room with an event at `origin_server_ts` =
// i64::MAX (valid in room versions without strict canonical JSON, and
// Synapse stores it) yields such a query. Expected: the file is read and
// that one query is answered (404, or 400 M_INVALID_PARAM), the others as
// usual. Found by the oracle differential fuzzer on v3-500.

#[test]
fn h6_query_with_huge_ts_does_not_fail_the_file() {
    let doc = r#"{"format": "roomdag-queries/1", "queries": [
        {"id": "q0", "endpoint": "timestamp_to_event", "origin": "a.example", "ts": 9223372036855368709, "dir": "b"},
        {"id": "q1", "endpoint": "event", "origin": "a.example", "event_id": "$x"}]}"#;
    let q = roomdag::fixture::read_queries(doc.as_bytes());
    assert!(q.is_ok(), "queries file refused: {:?}", q.err());
    // Exact at the i64 boundary (found by the differential on v3: an event
    // at origin_server_ts = i64::MIN is not "at or before" i64::MIN − 1, so
    // Synapse answers 404; clamping the query to i64 found that event).
    use roomdag::fixture::saturate;
    assert!(saturate("-9223372036854775809") < i128::from(i64::MIN));
    assert!(saturate("9223372036854775808") > i128::from(i64::MAX));
    assert!(saturate(&"9".repeat(60)) > i128::from(i64::MAX));
    assert!(saturate(&format!("-{}", "9".repeat(60))) < i128::from(i64::MIN));
}

// ---------------------------------------------------------------------------
// H7 (minor, inspection only): a rolled-back batch leaves its drops counted.
//
// `Room::rollback` truncates the dropped log back to the checkpoint but not
// `dropped_total`, so after a failed `ingest_batch` and its retry every
// dropped PDU of the batch is counted twice; and when the log was full, the
// entries the batch evicted (`remove(0)`) are not restored. The room's
// events, states and extremities are restored exactly (see
// properties::store_rollback_and_reopen_*).

#[test]
fn h7_rollback_restores_the_dropped_count() {
    use roomdag::store::{MemoryStore, RoomEngine};
    let f = super::common::load_fixture("v11-forky-2k");
    let keys = f.header.pinned_keys().unwrap();
    let mut engine = RoomEngine::create("11", MemoryStore::new()).unwrap();
    engine.ingest_batch(f.pdus[..10].iter().map(String::as_str), &keys).unwrap();
    let before = engine.room().dropped().1;
    engine.store_mut().fail_next_append = true;
    let batch = [f.pdus[10].as_str(), "not json"];
    assert!(engine.ingest_batch(batch, &keys).is_err());
    assert_eq!(engine.room().dropped().1, before, "the failed batch's drop is still counted");
}
