//! `redaction/*.json`: the redaction algorithm per room version.
//!
//! Synapse's `redact_event_dict` keeps an `unsigned` object (with only
//! `age_ts` and `replaces_state`); `roomdag::redaction::redact` returns the
//! spec form without `unsigned`, so `unsigned` is compared separately from
//! the rest. `expected_spec` (the spec's reading) is compared only where it
//! agrees with Synapse apart from `unsigned`: for `create_v12_with_room_id`
//! the spec's key list keeps `room_id` and Synapse strips it; Synapse is the
//! reference.

use roomdag::redaction::redact;
use roomdag::RoomVersionRules;
use serde_json::Value;

use super::common::{array, json_files, obj, str_of, Report};

/// Cases where roomdag is known to disagree with Synapse (see the report).
const KNOWN_DIFFERENCES: &[&str] = &[];

#[test]
fn redaction_matches_synapse() {
    let mut report = Report::new("redaction");
    for file in json_files("redaction") {
        let data: Value = serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("JSON");
        for case in array(&data, "cases") {
            let name = str_of(case, "name");
            report.case(name);
            let v = str_of(case, "room_version");
            let Some(rules) = RoomVersionRules::known(v) else {
                report.fail(name, format!("room version {v} unknown to roomdag"));
                continue;
            };
            let got = redact(obj(&case["input"]), rules);
            let mut synapse = obj(&case["expected"]).clone();
            let synapse_unsigned = synapse.remove("unsigned");
            let json = |m: &serde_json::Map<String, Value>| Value::Object(m.clone());
            report.check_json(name, "redacted event (without unsigned)", &json(&got), &json(&synapse));
            // roomdag never keeps `unsigned` (the spec form).
            report.check_eq(name, "unsigned kept", got.contains_key("unsigned"), false);
            if let Some(u) = synapse_unsigned {
                // Synapse only ever keeps these two keys; they are never
                // hashed or signed, so dropping them changes no ID.
                let extra: Vec<&String> =
                    obj(&u).keys().filter(|k| !["age_ts", "replaces_state"].contains(&k.as_str())).collect();
                report.check_eq(name, "Synapse's unsigned holds only age_ts/replaces_state", extra.len(), 0);
            }
            if let Some(spec) = case.get("expected_spec") {
                let spec = obj(spec);
                if *spec == synapse {
                    report.check_json(name, "redacted event vs expected_spec", &json(&got), &json(spec));
                } else {
                    eprintln!(
                        "[redaction] {name}: the spec's form differs from Synapse's; checked against Synapse. Note: {}",
                        case.get("note").and_then(Value::as_str).unwrap_or("")
                    );
                }
            }
        }
    }
    report.finish(KNOWN_DIFFERENCES);
}
