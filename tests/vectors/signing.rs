//! `signing.json`: signing JSON, hashing and signing events, event and room
//! IDs, and signature verification.

use roomdag::pdu::parse_pdu;
use roomdag::redaction::redact;
use roomdag::signing::{
    content_hash, encode_base64, event_id_for_reference_hash, redacted_signing_bytes, verify_ed25519, verify_json,
    ServerSigningKey,
};
use roomdag::RoomVersionRules;
use serde_json::{json, Map, Value};

use super::common::{array, load, obj, str_of, Report};

/// Cases where roomdag is known to disagree with Synapse (see the report).
const KNOWN_DIFFERENCES: &[&str] = &[];

#[test]
fn signing_matches_synapse() {
    let data = load("signing.json");
    let server = str_of(&data, "server_name");
    let key_id = str_of(&data, "key_id");
    let key = ServerSigningKey::from_seed_b64(server, key_id, str_of(&data, "seed")).expect("seed decodes");
    assert_eq!(key.public_key_b64(), str_of(&data, "public_key"), "public key of the seed");
    let mut report = Report::new("signing");
    for case in array(&data, "vectors") {
        let name = str_of(case, "name");
        report.case(name);
        match str_of(case, "kind") {
            "json" => check_json(&mut report, name, case, &key),
            "event" => check_event(&mut report, name, case, &key),
            "verify" => check_verify(&mut report, name, case, &key),
            other => report.fail(name, format!("unknown kind {other:?}")),
        }
    }
    report.finish(KNOWN_DIFFERENCES);
}

fn rules_of(case: &Value) -> &'static RoomVersionRules {
    let v = str_of(case, "room_version");
    RoomVersionRules::known(v).unwrap_or_else(|| panic!("room version {v} unknown to roomdag"))
}

fn signature<'a>(object: &'a Map<String, Value>, key: &ServerSigningKey) -> Option<&'a str> {
    object.get("signatures")?.get(&key.server_name)?.get(&key.key_id)?.as_str()
}

/// Sign a plain object.
fn check_json(report: &mut Report, name: &str, case: &Value, key: &ServerSigningKey) {
    let mut object = obj(&case["input"]).clone();
    let mut unsigned_copy = object.clone();
    unsigned_copy.remove("signatures");
    unsigned_copy.remove("unsigned");
    report.check_eq(
        name,
        "signing input",
        roomdag::canonical_json::object_to_canonical_string(&unsigned_copy).as_str(),
        str_of(case, "signing_input"),
    );
    key.sign_json(&mut object);
    report.check_eq(name, "signature", signature(&object, key), Some(str_of(case, "expected_signature")));
    report.check_json(name, "signed output", &Value::Object(object.clone()), &case["expected_output"]);
    report.check_eq(
        name,
        "verify_json of the output",
        verify_json(&object, &key.server_name, &key.key_id, &key.verifying_key()),
        true,
    );
}

/// Hash, redact, sign an event; its event ID / reference hash / room ID.
fn check_event(report: &mut Report, name: &str, case: &Value, key: &ServerSigningKey) {
    let rules = rules_of(case);
    let input = obj(&case["input"]);
    let hash = encode_base64(&content_hash(input));
    report.check_eq(name, "content hash", hash.as_str(), str_of(case, "expected_content_hash"));
    let mut hashed = input.clone();
    hashed.insert("hashes".into(), json!({ "sha256": hash }));
    let signing_input = redacted_signing_bytes(&redact(&hashed, rules));
    report.check_eq(name, "signing input", signing_input.as_str(), str_of(case, "signing_input"));
    let sig = key.sign_bytes(signing_input.as_bytes());
    report.check_eq(name, "signature", sig.as_str(), str_of(case, "expected_signature"));
    let mut signed = hashed.clone();
    signed.insert("signatures".into(), json!({ key.server_name.clone(): { key.key_id.clone(): sig } }));
    report.check_json(name, "signed output", &Value::Object(signed.clone()), &case["expected_output"]);

    // The signature over Synapse's output verifies.
    let expected_output = obj(&case["expected_output"]);
    let out_bytes = redacted_signing_bytes(&redact(expected_output, rules));
    let out_sig = signature(expected_output, key).unwrap_or_default();
    report.check_eq(
        name,
        "verify Synapse's signature",
        verify_ed25519(&key.verifying_key(), out_bytes.as_bytes(), out_sig),
        true,
    );

    // IDs: from the signed event (signatures are not hashed into the ID).
    let id = event_id_for_reference_hash(&redacted_signing_bytes(&redact(&signed, rules)), rules);
    if let Some(want) = case["expected_event_id"].as_str() {
        report.check_eq(name, "event ID", id.as_str(), want);
        // The receipt pipeline's parser computes the same ID (and room ID).
        match parse_pdu(&Value::Object(expected_output.clone()).to_string(), rules) {
            Ok(p) => {
                report.check_eq(name, "event ID from parse_pdu", p.event_id.as_str(), want);
                if let Some(room) = case.get("expected_room_id").and_then(Value::as_str) {
                    report.check_eq(name, "room ID from parse_pdu", p.room_id.as_str(), room);
                }
            }
            Err(e) => report.fail(name, format!("parse_pdu refuses the signed event: {e}")),
        }
    }
    if let Some(want) = case.get("expected_reference_hash").and_then(Value::as_str) {
        // v1/v2: the reference hash is the standard base64 of the same digest.
        report.check_eq(name, "reference hash", id.strip_prefix('$'), Some(want));
    }
    if let Some(room) = case.get("expected_room_id").and_then(Value::as_str) {
        report.check_eq(name, "room ID (! + reference hash)", format!("!{}", &id[1..]).as_str(), room);
    }
}

/// Verify a signed event's signature (over its redacted form).
fn check_verify(report: &mut Report, name: &str, case: &Value, key: &ServerSigningKey) {
    let rules = rules_of(case);
    let redacted = redact(obj(&case["event"]), rules);
    let valid = verify_json(&redacted, &key.server_name, &key.key_id, &key.verifying_key());
    report.check_eq(name, "signature valid", valid, case["expected_valid"].as_bool().expect("expected_valid"));
}
