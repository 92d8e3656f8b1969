//! Errors of Synapse's auth rules that are not authorization failures
//! (contract.md, `dropped`): `FederationEventHandler._check_event_auth`
//! turns only an `AuthError` into a rejection; the plain `SynapseError` 400
//! of `_check_power_levels`, or a Python exception on malformed content,
//! escapes the PDU's processing and Synapse never stores the event.
//!
//! Found while checking the feature rooms (`gen_room.py --features all`):
//! roomdag stored all of these as rejected. Each test ingests hand-made
//! PDUs on top of a fixture's first events and compares every verdict,
//! state digest and the current state with Synapse 1.163.2's (the oracle's
//! `expect.py` on the same PDUs). To judge them again:
//!
//! ```sh
//! ROOMDAG_REGRESSION_DUMP=/tmp/drops cargo test --test hardening auth_drops
//! for f in /tmp/drops/*.json; do $ROOMDAG_ORACLE_PYTHON tests/shared/oracle/expect.py $f -o /tmp/drops; done
//! ```

use roomdag::redaction::redact;
use roomdag::signing::{content_hash, encode_base64, redacted_signing_bytes};
use roomdag::{Outcome, Room, Verification};
use serde_json::{json, Value};

use super::common::{event_id_of, hex, load_fixture, Fixture};

/// The first `n` events of a fixture and their IDs.
fn base(name: &str, n: usize) -> (Fixture, Vec<String>) {
    let mut f = load_fixture(name);
    f.pdus.truncate(n);
    let ids = f.pdus.iter().map(|p| event_id_of(p, f.rules).unwrap()).collect();
    (f, ids)
}

/// Hashes and signs a PDU as its sender's server (the fixture's seed).
fn signed(f: &Fixture, mut ev: Value) -> String {
    let server = ev["sender"].as_str().unwrap().split_once(':').unwrap().1.to_owned();
    let key = f.header.signing_key(&server).expect("the server's seed");
    let m = ev.as_object_mut().unwrap();
    m.insert("hashes".into(), json!({"sha256": encode_base64(&content_hash(m))}));
    let bytes = redacted_signing_bytes(&redact(m, f.rules));
    m.insert("signatures".into(), json!({ server: {"ed25519:1": key.sign_bytes(bytes.as_bytes())}}));
    serde_json::to_string(&ev).unwrap()
}

/// A PDU of `sender` with `prev` as its only prev event. `n` makes its
/// timestamp (and so its ID) unique.
#[allow(clippy::too_many_arguments)]
fn pdu(
    f: &Fixture,
    n: i64,
    sender: &str,
    ty: &str,
    state_key: Option<&str>,
    content: Value,
    prev: &str,
    auth: &[&String],
) -> String {
    let room_id = serde_json::from_str::<Value>(&f.pdus[1]).unwrap()["room_id"].clone();
    let mut ev = json!({"type": ty, "sender": sender, "content": content, "room_id": room_id,
        "depth": 100 + n, "origin_server_ts": 1_800_000_000_000i64 + n, "prev_events": [prev], "auth_events": auth});
    if let Some(k) = state_key {
        ev["state_key"] = json!(k);
    }
    signed(f, ev)
}

/// Synapse's verdict on one PDU: its ID, status and (stored events) state
/// digests before and after.
type Verdict<'a> = (&'a str, &'a str, Option<(&'a str, &'a str)>);

/// Ingests the base and `pdus` with the fixture's keys and compares each
/// new PDU with Synapse's verdict, and the current state digest.
fn check(name: &str, f: &Fixture, pdus: &[String], want: &[Verdict<'_>], current: &str) {
    if dump(name, f, pdus) {
        return;
    }
    let keys = f.header.pinned_keys().unwrap();
    let mut room = Room::new(f.version()).unwrap();
    for p in &f.pdus {
        assert!(matches!(room.ingest(p, Verification::Keys(&keys)), Outcome::Accepted { .. }), "base event");
    }
    assert_eq!(pdus.len(), want.len(), "one verdict per PDU");
    let mut differ = Vec::new();
    for (raw, (id, status, digests)) in pdus.iter().zip(want) {
        let o = room.ingest(raw, Verification::Keys(&keys));
        assert_eq!(o.event_id().map(|e| e.as_str()), Some(*id), "same PDUs as the oracle run");
        let got = match room.lookup(id).unwrap() {
            None => (o.status(), None),
            Some(idx) => {
                let e = room.event(idx).unwrap();
                (
                    o.status(),
                    Some((
                        hex(room.state_digest(e.state_before).unwrap()),
                        hex(room.state_digest(e.state_after).unwrap()),
                    )),
                )
            }
        };
        let want_digests = digests.map(|(b, a)| (b.to_owned(), a.to_owned()));
        if got != (*status, want_digests) {
            differ.push(format!("{id}: synapse {status}, roomdag {} ({o:?})", got.0));
        }
        if *status == "dropped" {
            assert!(room.lookup(id).unwrap().is_none(), "{id}: a dropped PDU is not stored");
        }
    }
    let cur = room.current_state().unwrap();
    if hex(room.state_digest(cur).unwrap()) != current {
        differ.push("current state digest differs from Synapse's".into());
    }
    assert!(differ.is_empty(), "{name}:\n{}", differ.join("\n"));
}

/// With `ROOMDAG_REGRESSION_DUMP=DIR`, writes the case as a fixture for
/// the oracle (`DIR/NAME.json`) instead of checking it.
fn dump(name: &str, f: &Fixture, pdus: &[String]) -> bool {
    let Some(dir) = std::env::var_os("ROOMDAG_REGRESSION_DUMP") else { return false };
    let path = crate::shared::fixture_file(&f.name).unwrap();
    let mut room: Value = serde_json::from_reader(roomdag::fixture::open(&path).unwrap()).unwrap();
    let events: Vec<Value> = f
        .pdus
        .iter()
        .chain(pdus)
        .map(|raw| {
            let pdu: Value = serde_json::from_str(raw).unwrap();
            let origin = pdu["sender"].as_str().unwrap().split_once(':').unwrap().1.to_owned();
            json!({"event_id": event_id_of(raw, f.rules), "origin": origin, "pdu": pdu, "meta": {"intent": "regression"}})
        })
        .collect();
    room["events"] = Value::Array(events);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(std::path::Path::new(&dir).join(format!("{name}.json")), room.to_string()).unwrap();
    true
}

/// `content` of the fixture's power-levels event (index 2) with `edit` applied.
fn power_levels(f: &Fixture, edit: impl FnOnce(&mut Value)) -> Value {
    let mut c = serde_json::from_str::<Value>(&f.pdus[2]).unwrap()["content"].clone();
    edit(&mut c);
    c
}

// ---------------------------------------------------------------------------
// H11: power-levels content that `_check_power_levels` refuses with a plain
// `SynapseError` 400 (a `users` key that is not a user ID, a `users` level
// that `int()` refuses, from v10 any level that is not a JSON integer; in
// v12 a creator in `users`) was stored as rejected. Synapse drops it.

#[test]
fn h11_power_levels_errors_drop_the_event() {
    let (f, ids) = base("v11-forky-2k", 6);
    let (create, join, pl, last) = (&ids[0], &ids[1], &ids[2], &ids[5]);
    let carol = "@carol:a.example";
    let edits: [(&str, Value); 6] = [
        ("/users/notauser", json!(10)),
        ("/users/@x:a.example", json!("abc")),
        ("/users/@x:a.example", json!("50")),
        ("/ban", json!("50")),
        ("/users/@x:a.example", Value::Null),
        ("/users/@x:a.example", json!(50)),
    ];
    let pdus: Vec<String> = edits
        .iter()
        .enumerate()
        .map(|(n, (path, v))| {
            let content = power_levels(&f, |c| {
                let (parent, key) = path.rsplit_once('/').unwrap();
                c.pointer_mut(if parent.is_empty() { "" } else { parent }).unwrap()[key] = v.clone();
            });
            pdu(&f, n as i64, carol, "m.room.power_levels", Some(""), content, last, &[create, pl, join])
        })
        .collect();
    let want: [Verdict; 6] = [
        ("$pX-ASfV-FqC0XEBxZhZSDLR1BaESHBZyBoQASWz6PFI", "dropped", None), // SynapseError: Not a valid user_id: notauser
        ("$yaGKZosPYMAXeDj_9X80K3rfjPgYQVpoJ3o5DAEJ4X8", "dropped", None), // SynapseError: Not a valid power level: abc
        ("$70b-xnxxKY1jtNmJjYNl6FhuNq5ZKPIFZuny_Sm1y0U", "dropped", None), // SynapseError: {'@carol:a.example': 100, '@dave:c.example': 50, '@walte
        ("$mqk2ARsEdS7BroRkBYJIHajJtjEUpqCirhasp4WF9oY", "dropped", None), // SynapseError: '50' must be an integer.
        ("$GeYvofLFVYJ6w1Xh-2PmzQXqezZJV5fn85nR-lCXbJA", "dropped", None), // SynapseError: Not a valid power level: None
        (
            "$NJZ0tUoqeQcXX8503Dms8LsbK-NF159-2u_Ci4DyEbs",
            "accepted",
            Some((
                "e9e34dccb784b15c31d4af629ff6f01dab3fdb2ab027f9a700c97f18660989b2",
                "1fccbe744925d4b08d84e1a5d5cb85d514bd8adf9c1629070f7b1794ce2c18f7",
            )),
        ),
    ];
    check("h11-v11", &f, &pdus, &want, "1fccbe744925d4b08d84e1a5d5cb85d514bd8adf9c1629070f7b1794ce2c18f7");
}

#[test]
fn h11_v12_creator_in_users_drops_the_event() {
    let (f, ids) = base("v12-forky-1k", 7);
    let (join, pl, last) = (&ids[1], &ids[2], &ids[6]);
    let trent = "@trent:a.example";
    let pdus: Vec<String> = [json!(100), json!(0), json!(null)]
        .iter()
        .enumerate()
        .map(|(n, level)| {
            let content = power_levels(&f, |c| match level {
                Value::Null => c["users"]["@q:a.example"] = json!(5),
                l => c["users"][trent] = l.clone(),
            });
            pdu(&f, n as i64, trent, "m.room.power_levels", Some(""), content, last, &[pl, join])
        })
        .collect();
    let want: [Verdict; 3] = [
        ("$nywTAPoG7J4IFP7FH8bjYdGFNZg5iQygE8AZViJ4GBs", "dropped", None), // SynapseError: Creator user @trent:a.example must not appear in content
        ("$TMMs1VTqCQ8WmZFxXuYUq6x5F9igSW7IQQTrJXML1Lg", "dropped", None), // SynapseError: Creator user @trent:a.example must not appear in content
        (
            "$YauzhmXIsqZfjbWfnM_ToPUleP84Qy0LdcaasWlUSbI",
            "accepted",
            Some((
                "a2e5499c29d1901d23115e6200560059034918252f174d3b0dc676a0db5d6bad",
                "f34fb9cb084fcf735ca0c03ce6142b59e060e6271f9cf5c681dd1e8f09dd1534",
            )),
        ),
    ];
    check("h11-v12", &f, &pdus, &want, "f34fb9cb084fcf735ca0c03ce6142b59e060e6271f9cf5c681dd1e8f09dd1534");
}

// ---------------------------------------------------------------------------
// H12: an invite whose `third_party_invite` has no `signed.token` (or an
// unhashable one) makes Synapse's `auth_types_for_event` raise `KeyError` /
// `TypeError`; a membership target without a server name makes
// `get_domain_from_id` raise `SynapseError("Invalid ID")`. roomdag stored
// them as rejected; Synapse drops them. An unknown membership value stays an
// `AuthError` (rejected).

#[test]
fn h12_malformed_membership_content_drops_the_event() {
    let (f, ids) = base("v11-forky-2k", 6);
    let (create, join, pl, rules, last) = (&ids[0], &ids[1], &ids[2], &ids[3], &ids[5]);
    let carol = "@carol:a.example";
    let cases: [(&str, Value); 6] = [
        ("@x:b.example", json!({"membership": "invite", "third_party_invite": "str"})),
        ("@x:b.example", json!({"membership": "invite", "third_party_invite": {}})),
        ("@x:b.example", json!({"membership": "invite", "third_party_invite": {"signed": {}}})),
        ("@x:b.example", json!({"membership": "invite", "third_party_invite": {"signed": {"token": ["a"]}}})),
        ("nocolon", json!({"membership": "ban"})),
        ("@x:b.example", json!({"membership": 5})),
    ];
    let pdus: Vec<String> = cases
        .iter()
        .enumerate()
        .map(|(n, (target, content))| {
            let auth: &[&String] =
                if content["membership"] == "invite" { &[create, pl, join, rules] } else { &[create, pl, join] };
            pdu(&f, n as i64, carol, "m.room.member", Some(target), content.clone(), last, auth)
        })
        .collect();
    let want: [Verdict; 6] = [
        ("$51ylptinnUMTTJXFxtqdCh_tRd8oCv5z3-nWtFvpW1Y", "dropped", None), // TypeError: string indices must be integers, not 'str'
        ("$vPVC4-fTJ9mettJLP985ZMBNHv9HOxh4j5VzitthXdU", "dropped", None), // KeyError: 'signed'
        ("$35Vp7BV_RV3E6rmqWkVMey7xAOEHpDhMO1dKAB2Vy8U", "dropped", None), // KeyError: 'token'
        ("$mrcyI-L1SmOHK1inJTu8DPkC0HlR9fu4eVNWLhiW7fo", "dropped", None), // TypeError: unhashable type: 'list'
        ("$79ExqEHuvUrdh3SHvpBYxZ7iCnseqesSISJ6--sFfwA", "dropped", None), // SynapseError: Invalid ID: 'nocolon'
        (
            "$-S5OmVTkGJsw9KEB9ZACETExhi-5L_V68wzpQKkYh54",
            "rejected",
            Some((
                "e9e34dccb784b15c31d4af629ff6f01dab3fdb2ab027f9a700c97f18660989b2",
                "e9e34dccb784b15c31d4af629ff6f01dab3fdb2ab027f9a700c97f18660989b2",
            )),
        ), // Unknown membership 5
    ];
    check("h12", &f, &pdus, &want, "e9e34dccb784b15c31d4af629ff6f01dab3fdb2ab027f9a700c97f18660989b2");
}

/// The create event's rule 1.2 (before v12) reads the room ID's server name
/// with `get_domain_from_id`: `SynapseError("Invalid ID")` without a colon,
/// so Synapse drops it. A `room_version` that is not a string is only
/// unknown (`KNOWN_ROOM_VERSIONS` answers `in` with false for any non-string):
/// rejected. Synapse 1.163.2's verdicts on these four PDUs (`RoomModel.evaluate`).
#[test]
fn h12_create_event_room_id_without_colon_is_dropped() {
    let f = load_fixture("v11-forky-2k");
    let keys = f.header.pinned_keys().unwrap();
    let cases = [
        ("11", "!nocolon", json!({"room_version": "11"}), "dropped"),
        ("9", "!nocolon", json!({"room_version": "9", "creator": "@c:a.example"}), "dropped"),
        ("11", "!r:a.example", json!({"room_version": ["11"]}), "rejected"),
        ("11", "!r:a.example", json!({"room_version": 5}), "rejected"),
    ];
    for (version, room_id, content, want) in cases {
        let rules = roomdag::RoomVersionRules::supported(version).unwrap();
        let mut ev = json!({"type": "m.room.create", "sender": "@c:a.example", "state_key": "", "content": content,
            "room_id": room_id, "depth": 1, "origin_server_ts": 1, "prev_events": [], "auth_events": []});
        let key = f.header.signing_key("a.example").unwrap();
        let m = ev.as_object_mut().unwrap();
        m.insert("hashes".into(), json!({"sha256": encode_base64(&content_hash(m))}));
        let bytes = redacted_signing_bytes(&redact(m, rules));
        m.insert("signatures".into(), json!({"a.example": {"ed25519:1": key.sign_bytes(bytes.as_bytes())}}));
        let mut room = Room::new(version).unwrap();
        let o = room.ingest(&ev.to_string(), Verification::Keys(&keys));
        assert_eq!(o.status(), want, "v{version} {room_id} {}: {o:?}", ev["content"]);
    }
}

// ---------------------------------------------------------------------------
// H13: the public keys of the `m.room.third_party_invite` event are read by
// `_verify_third_party_invite` outside its `try`, or raise other errors
// than the ones it catches: an entry of `public_keys` without
// `public_key` (KeyError), `public_keys` not a list (TypeError), a key that
// is not valid base64 (binascii.Error) or not 32 bytes (ValueError) once a
// signature with an `ed25519:` key ID is there. Synapse drops the invite;
// roomdag rejected it ("You are not invited"). Without any `ed25519:`
// signature the key is never decoded: rejected.

#[test]
fn h13_unreadable_third_party_public_keys_drop_the_invite() {
    let (f, ids) = base("v11-forky-2k", 6);
    let (create, join, pl, rules) = (&ids[0], &ids[1], &ids[2], &ids[3]);
    let carol = "@carol:a.example";
    let keys = [
        ("t1", json!({"public_keys": [{"x": 1}]})),
        ("t2", json!({"public_key": "abcde"})),
        ("t3", json!({"public_key": "AAAA"})),
        ("t4", json!({"public_keys": null})),
        ("t5", json!({"public_keys": "abc"})),
    ];
    let mut pdus = Vec::new();
    let mut prev = ids[5].clone();
    let mut tpi_ids = Vec::new();
    for (n, (token, content)) in keys.iter().enumerate() {
        let raw = pdu(
            &f,
            n as i64,
            carol,
            "m.room.third_party_invite",
            Some(token),
            content.clone(),
            &prev,
            &[create, pl, join],
        );
        prev = event_id_of(&raw, f.rules).unwrap();
        tpi_ids.push(prev.clone());
        pdus.push(raw);
    }
    let invite = |n: i64, token: &str, tpi: &String, signatures: Value| {
        let signed = json!({"mxid": "@x:b.example", "token": token, "signatures": signatures});
        let content = json!({"membership": "invite", "third_party_invite": {"display_name": "x", "signed": signed}});
        pdu(&f, n, carol, "m.room.member", Some("@x:b.example"), content, &prev, &[create, pl, join, rules, tpi])
    };
    let ed = json!({"id.example": {"ed25519:0": "AAAA"}});
    pdus.push(invite(10, "t1", &tpi_ids[0], ed.clone()));
    pdus.push(invite(11, "t2", &tpi_ids[1], ed.clone()));
    pdus.push(invite(12, "t2", &tpi_ids[1], json!({"id.example": {"curve25519:0": "AAAA"}})));
    pdus.push(invite(13, "t3", &tpi_ids[2], ed.clone()));
    pdus.push(invite(14, "t4", &tpi_ids[3], ed.clone()));
    pdus.push(invite(15, "t5", &tpi_ids[4], ed));
    let want: [Verdict; 11] = [
        (
            "$iVv1_O0rYxxt41WHlAGuCqBp3y8Lo2ekeooZ6EJeuPA",
            "accepted",
            Some((
                "e9e34dccb784b15c31d4af629ff6f01dab3fdb2ab027f9a700c97f18660989b2",
                "7c8bc14385f76b85e64676e5c78e1b76e8ae33c3e6d367fb634533824cc8d827",
            )),
        ),
        (
            "$9sqq8Ttd-rsZkGg-tQHHoyd1FXKYGJUAg-dmqLsrcMY",
            "accepted",
            Some((
                "7c8bc14385f76b85e64676e5c78e1b76e8ae33c3e6d367fb634533824cc8d827",
                "e3b11ed8b0c3d4fb3639ebf896c4bc45bd24f8c77cbeb418d47dd3b610012e34",
            )),
        ),
        (
            "$u5pgT6lKhZahJymVjJWJWcA30EYaNInqqdLKquuSp1g",
            "accepted",
            Some((
                "e3b11ed8b0c3d4fb3639ebf896c4bc45bd24f8c77cbeb418d47dd3b610012e34",
                "f95c6e9d6c2aea7b1fb37a154f8c7c7184eda847278d3501e88d1a889cd0115a",
            )),
        ),
        (
            "$kWyc773Az15Ds-g3ugRO2dbiTZCMl4Nl5hXIJ0Cc7MQ",
            "accepted",
            Some((
                "f95c6e9d6c2aea7b1fb37a154f8c7c7184eda847278d3501e88d1a889cd0115a",
                "e597eda298a5cde05483ab8c3a5684365357d485744bc8f85591b9cbc9cbd677",
            )),
        ),
        (
            "$4AwtpWpL1iDF-qenN-KFKKy1MVce_XtZt9tEOjG-c94",
            "accepted",
            Some((
                "e597eda298a5cde05483ab8c3a5684365357d485744bc8f85591b9cbc9cbd677",
                "c344eef6f2694b9ed17fbfc378e9eb020d3ce2a42f1df7547203d1c88b0b57c4",
            )),
        ),
        ("$ydlKfERbn7BsKJp6iklaLOMkQZup0I4oFaOe09I9jkY", "dropped", None), // KeyError: 'public_key'
        ("$hk61nU2NvEf5yoDlTGTXyLhDHXMUZnpRVev3luoUAAk", "dropped", None), // Error: Invalid base64-encoded string: number of data characters (5) ca
        (
            "$xs-PN_rjZTchGtu2RLlGqT6IxbR8cRqFKVi2XzagGAg",
            "rejected",
            Some((
                "c344eef6f2694b9ed17fbfc378e9eb020d3ce2a42f1df7547203d1c88b0b57c4",
                "c344eef6f2694b9ed17fbfc378e9eb020d3ce2a42f1df7547203d1c88b0b57c4",
            )),
        ), // You are not invited to this room.
        ("$90eC4jI9Ewkc5K6zhzKOrozkYgkZp7jHmOJ93YbBiQ0", "dropped", None), // ValueError: The key must be exactly 32 bytes long
        ("$YvDYpH0yCNEAmMR9r4iEGdGs5-pKH6gpVOHXHNs3iMs", "dropped", None), // TypeError: 'NoneType' object is not iterable
        ("$3n-kADK-BC4l2q5YcWMzKVrRKDXrx-59kEyV4TWulEQ", "dropped", None), // TypeError: string indices must be integers, not 'str'
    ];
    check("h13", &f, &pdus, &want, "c344eef6f2694b9ed17fbfc378e9eb020d3ce2a42f1df7547203d1c88b0b57c4");
}

// ---------------------------------------------------------------------------
// H14 (rooms v3–v9): rule 10 compares levels the way Python reads them.
// `events` / `notifications` given as a list or string are iterated as
// Python containers (`list(x)`, `k in x`, `x[k]`): an empty list passes, a
// string whose characters occur in it fails to index (TypeError), a list
// element equal to a valid index reads that element; a value `int()`
// refuses, or `null` where a level is compared, raises. roomdag refused
// every container that is not an object; numeric strings (" +20 ") and
// booleans are levels before v10.

/// A change to the fixture's power-levels content.
type Edit = fn(&mut Value);

fn h14_case(name: &str, edit: impl FnOnce(&mut Value), verdict: Verdict<'_>, current: &str) {
    let (f, ids) = base("v9-500", 7);
    let (create, join, pl, last) = (&ids[0], &ids[1], &ids[2], &ids[6]);
    let content = power_levels(&f, edit);
    let pdus = [pdu(&f, 0, "@trent:a.example", "m.room.power_levels", Some(""), content, last, &[create, pl, join])];
    check(name, &f, &pdus, &[verdict], current);
}

#[test]
fn h14_pre_v10_level_containers_read_as_python() {
    // Each case on its own: an accepted `events: []` breaks every later
    // message for Synapse (`[].get`), so no two of them may meet in a
    // state resolution.
    let cases: [(&str, Edit); 10] = [
        ("h14-events-empty-list", |c| c["events"] = json!([])),
        ("h14-events-empty-string", |c| c["events"] = json!("")),
        ("h14-events-string", |c| c["events"] = json!("m.room.name")),
        ("h14-events-index-0", |c| c["events"] = json!([0])),
        ("h14-events-null", |c| c["events"] = Value::Null),
        ("h14-events-unhashable", |c| c["events"] = json!([[1]])),
        ("h14-notifications-list", |c| c["notifications"] = json!([])),
        ("h14-user-numeric-string", |c| c["users"]["@x:a.example"] = json!(" +20 ")),
        ("h14-ban-not-a-number", |c| c["ban"] = json!("abc")),
        ("h14-kick-null", |c| c["kick"] = Value::Null),
    ];
    let want: [(Verdict, &str); 10] = [
        (
            (
                "$dzRjD_T_DxmdCsSoKOUj1dDl2fHY1rJhONHGtHd_w7U",
                "accepted",
                Some((
                    "35aa46e31e39cd982a5248d364f5df6a09b1cb67c2050ba9795d4601d71a7761",
                    "25fd1a46c6b51262cc0a8779f1a51053ba101dd27bbea2029d2b68e4d533fef6",
                )),
            ),
            "25fd1a46c6b51262cc0a8779f1a51053ba101dd27bbea2029d2b68e4d533fef6",
        ),
        (
            (
                "$2SDGVxQA_9u3w7y3K-fk1-tPXCyWOzARQ2tXtVjFfUE",
                "accepted",
                Some((
                    "35aa46e31e39cd982a5248d364f5df6a09b1cb67c2050ba9795d4601d71a7761",
                    "84ba33b9c7b8f5f5842c7463706d1dae67a871f30545543193cef531e3e5da48",
                )),
            ),
            "84ba33b9c7b8f5f5842c7463706d1dae67a871f30545543193cef531e3e5da48",
        ),
        (
            ("$T4sgQQTqN606eC--Dvh7wkR_Ffw-Dqaf8DNI_emPi1A", "dropped", None),
            "35aa46e31e39cd982a5248d364f5df6a09b1cb67c2050ba9795d4601d71a7761",
        ), // TypeError: string indices must be integers, not 'str'
        (
            (
                "$nKVz38JI_nefqRzLBOMh5Sbw9XLcG5FeUCLiv7BCojo",
                "accepted",
                Some((
                    "35aa46e31e39cd982a5248d364f5df6a09b1cb67c2050ba9795d4601d71a7761",
                    "bd2a09ab4ab7e4570ee0ebc6dccaacdaa0e88af8ff7a24971ca1527cd2f3ddee",
                )),
            ),
            "bd2a09ab4ab7e4570ee0ebc6dccaacdaa0e88af8ff7a24971ca1527cd2f3ddee",
        ),
        (
            ("$GriHLJ3pYfNVDdY0fbbDppTOP_QzsAbnCS6paNfub18", "dropped", None),
            "35aa46e31e39cd982a5248d364f5df6a09b1cb67c2050ba9795d4601d71a7761",
        ), // TypeError: 'NoneType' object is not iterable
        (
            ("$LheC_LVMlhrwwALTNjAPLE_STA6nmA3wj_Fs9O7iYzM", "dropped", None),
            "35aa46e31e39cd982a5248d364f5df6a09b1cb67c2050ba9795d4601d71a7761",
        ), // TypeError: unhashable type: 'list'
        (
            (
                "$aS18WZR3i8jHmZPZ9Z42QCyQ7zvmnHafHhhdxV_gx0k",
                "accepted",
                Some((
                    "35aa46e31e39cd982a5248d364f5df6a09b1cb67c2050ba9795d4601d71a7761",
                    "7255065ef9a82c1ae9ab47ddf7dc5e37673c11cd3f275b7e808cc049810854b4",
                )),
            ),
            "7255065ef9a82c1ae9ab47ddf7dc5e37673c11cd3f275b7e808cc049810854b4",
        ),
        (
            (
                "$p0RHmHH9B-aYPX0GkAUBU5nMj_4RqTAz9hGi-xqyDvE",
                "accepted",
                Some((
                    "35aa46e31e39cd982a5248d364f5df6a09b1cb67c2050ba9795d4601d71a7761",
                    "2cbaa84ad048fec96f6cefdf8de816aef4e9cb41550a1cd067fc035908eb4594",
                )),
            ),
            "2cbaa84ad048fec96f6cefdf8de816aef4e9cb41550a1cd067fc035908eb4594",
        ),
        (
            ("$EzzOv1MPJYKg8TAwXdVgzHCTnpDZXFb1I-i3mNg9cZw", "dropped", None),
            "35aa46e31e39cd982a5248d364f5df6a09b1cb67c2050ba9795d4601d71a7761",
        ), // ValueError: invalid literal for int() with base 10: 'abc'
        (
            ("$6Zlxvuepbqrfn8d5OiI1ETiU7skAw5TEUbCtS64jFD0", "dropped", None),
            "35aa46e31e39cd982a5248d364f5df6a09b1cb67c2050ba9795d4601d71a7761",
        ), // TypeError: int() argument must be a string, a bytes-like obj
    ];
    for ((name, edit), (verdict, current)) in cases.into_iter().zip(want) {
        h14_case(name, edit, verdict, current);
    }
}

/// Receipt check 6 (soft failure) runs the same auth rules against the
/// room's current state, and Synapse's `_check_for_soft_fail` catches only
/// `AuthError` too. A v9 room whose current power levels have `events: []`
/// (accepted, H14): a message on an older fork passes its own checks, but
/// against the current state `get_send_level` calls `[].get`
/// (`AttributeError`), so Synapse never stores it — dropped, not soft
/// failed. (The oracle does not model soft failure; this is read from
/// `handlers/federation_event.py`.)
#[test]
fn h14_soft_failure_check_errors_drop_the_event() {
    let (f, ids) = base("v9-500", 7);
    let (create, join, pl, last) = (&ids[0], &ids[1], &ids[2], &ids[6]);
    let trent = "@trent:a.example";
    let content = power_levels(&f, |c| c["events"] = json!([]));
    let levels = pdu(&f, 0, trent, "m.room.power_levels", Some(""), content, last, &[create, pl, join]);
    let message = json!({"msgtype": "m.text", "body": "from an older fork"});
    let stale = pdu(&f, 1, trent, "m.room.message", None, message, last, &[create, pl, join]);
    let keys = f.header.pinned_keys().unwrap();
    let mut room = Room::new(f.version()).unwrap();
    for p in &f.pdus {
        room.ingest(p, Verification::Keys(&keys));
    }
    assert_eq!(room.ingest(&levels, Verification::Keys(&keys)).status(), "accepted");
    let o = room.ingest_as(&stale, roomdag::room::Placement::Live, Verification::Keys(&keys));
    assert!(matches!(o, Outcome::Dropped { stage: roomdag::room::DropStage::Auth, .. }), "{o:?}");
    assert!(room.lookup(&event_id_of(&stale, f.rules).unwrap()).unwrap().is_none(), "not stored");
    // Placed as the contract models a replay (no soft failure): accepted.
    assert_eq!(room.ingest(&stale, Verification::Keys(&keys)).status(), "accepted");
}
