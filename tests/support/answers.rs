//! Shared by the test crates that score roomdag's answers against Synapse's
//! (`tests/fixtures.rs`, `tests/hardening/oracle_diff.rs`).

use std::path::Path;

use roomdag::fixture;
use serde_json::{json, Value};

/// A fixture, queries or answers file (`.json` or `.json.gz`).
pub fn load(path: &Path) -> Value {
    serde_json::from_reader(fixture::open(path).expect("open")).expect("json")
}

/// The compared fields of an answer (as `compare.py`'s `norm_answer`).
pub fn norm(endpoint: &str, a: &Value) -> Value {
    let status = a.get("status").cloned().unwrap_or(Value::Null);
    if status != 200 {
        return json!([status, a.get("errcode")]);
    }
    let sorted = |v: Option<&Value>| {
        let mut ids: Vec<String> = v
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        ids.sort();
        ids
    };
    match endpoint {
        "state_ids" | "state" => json!([200, sorted(a.get("pdu_ids")), sorted(a.get("auth_chain_ids"))]),
        "backfill" => json!([200, a.get("pdus")]),
        "get_missing_events" => json!([200, a.get("events")]),
        "timestamp_to_event" => json!([200, a.get("event_id"), a.get("origin_server_ts")]),
        "event" => json!([200, a.get("event_id"), a.get("pruned")]),
        _ => a.clone(),
    }
}
