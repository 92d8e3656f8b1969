//! The fuzz targets' bodies driven by a seeded PRNG instead of libFuzzer:
//! runs on stable in plain `cargo test`, deterministic, bounded.
//!
//! Inputs start from real PDUs of the fixtures (so they reach deep code)
//! and are damaged structurally (`mutate_pdu`) and byte-wise
//! (`mutate_bytes`), plus fully random JSON.

use std::sync::OnceLock;

use serde_json::Value;

use super::common::{load_fixture, long, size, timed, Fixture};
use super::mutate::{
    drop_deep, mutate_bytes, mutate_pdu, nested_text, nested_value, pick, random_value, Known, Rng, Source,
};
use super::targets::{self, Corpus, IngestLimits, IngestStats};

fn fixture(name: &'static str) -> &'static Fixture {
    static V11: OnceLock<Fixture> = OnceLock::new();
    static V12: OnceLock<Fixture> = OnceLock::new();
    static V3: OnceLock<Fixture> = OnceLock::new();
    let cell = match name {
        "v11-forky-2k" => &V11,
        "v12-forky-1k" => &V12,
        "v3-500" => &V3,
        _ => unreachable!(),
    };
    cell.get_or_init(|| load_fixture(name))
}

/// One generated text input: a damaged real PDU or random JSON.
fn text_input(rng: &mut Rng, pdus: &[&str]) -> Vec<u8> {
    match rng.below(7) {
        6 => {
            // A real PDU with an edge-case number spelled into a field.
            let raw = *pick(rng, pdus);
            let field = *pick(rng, &["\"depth\":", "\"origin_server_ts\":", "\"content\":{\"n\":"]);
            let num = super::mutate::number_text(rng);
            let mut out = raw.replacen(field, &format!("{field}{num},\"_\":"), 1);
            if field.ends_with("\"n\":") {
                out = raw.replacen("\"content\":{", &format!("\"content\":{{\"n\":{num},"), 1);
            } else {
                // Replace the field's value instead of adding a key.
                out = replace_number_field(raw, field, num).unwrap_or(out);
            }
            out.into_bytes()
        }
        0 => {
            let v = random_value(rng, 4);
            serde_json::to_vec(&v).unwrap()
        }
        1 => {
            let raw = *pick(rng, pdus);
            mutate_bytes(rng, raw.as_bytes())
        }
        2 => {
            // Deep nesting near serde_json's recursion limit of 128.
            let n = *pick(rng, &[120usize, 126, 127, 128, 129, 500]);
            let inner = nested_text(n, rng.one_in(2), "1");
            format!("{{\"type\":\"m.room.message\",\"content\":{inner}}}").into_bytes()
        }
        _ => {
            let raw = *pick(rng, pdus);
            let mut ev = match serde_json::from_str(raw) {
                Ok(Value::Object(m)) => m,
                _ => return raw.as_bytes().to_vec(),
            };
            let ids: Vec<String> = Vec::new();
            for _ in 0..1 + rng.below(4) {
                mutate_pdu(rng, &mut ev, &Known { ids: &ids });
            }
            let mut s = serde_json::to_vec(&Value::Object(ev)).unwrap();
            if rng.one_in(4) {
                s = mutate_bytes(rng, &s);
            }
            s
        }
    }
}

/// `"field":123` → `"field":NUM` (the first occurrence).
fn replace_number_field(raw: &str, field: &str, num: &str) -> Option<String> {
    let at = raw.find(field)? + field.len();
    let rest = &raw[at..];
    let rest_trim = rest.trim_start();
    let skip = rest.len() - rest_trim.len();
    let len = rest_trim.find(|c: char| !(c.is_ascii_digit() || c == '-'))?;
    Some(format!("{}{}{}", &raw[..at + skip], num, &rest_trim[len..]))
}

fn all_pdus() -> Vec<&'static str> {
    let mut v = Vec::new();
    for name in ["v11-forky-2k", "v12-forky-1k", "v3-500"] {
        v.extend(fixture(name).pdus.iter().map(String::as_str));
    }
    v
}

fn run_text_target(name: &str, iterations: usize, seed: u64, target: fn(&[u8])) {
    let pdus = all_pdus();
    run_generated(name, iterations, seed, |rng| text_input(rng, &pdus), target);
}

/// Header-like text: real headers (signed by the fixtures' servers'
/// shapes), damaged byte-wise, with random parameters spliced in.
fn header_input(rng: &mut Rng) -> Vec<u8> {
    let base = *pick(
        rng,
        &[
            r#"X-Matrix origin="a.example",destination="b.example",key="ed25519:1",sig="ZHVtbXk""#,
            r#"X-Matrix origin=a.example,key="ed25519:a_b",sig=ZHVtbXk"#,
            "X-Matrix   origin = \"a.example:8448\" ,\tkey=\"ed25519:1\", sig=\"ZHV\\\"tbXk\"",
            r#"x-matrix ORIGIN="[::1]:8448",Key="ed25519:1",SIG="ZHVtbXk=""#,
            "Bearer abc",
            "X-Matrix",
        ],
    );
    let mut s = base.to_string();
    for _ in 0..rng.below(3) {
        let extra =
            *pick(rng, &[",origin=x.y", ",destination=\"\"", ",foo=\"\\\"", ",,", " ,key=k", ",sig=!!", "\"", "="]);
        let at = rng.below(s.len() + 1);
        if s.is_char_boundary(at) {
            s.insert_str(at, extra);
        }
    }
    if rng.one_in(3) {
        mutate_bytes(rng, s.as_bytes())
    } else {
        s.into_bytes()
    }
}

/// Request lines: real federation paths with random methods, room and
/// event IDs (escaped or not), query strings and damage.
fn request_input(rng: &mut Rng) -> Vec<u8> {
    let method = *pick(rng, &["GET", "PUT", "POST", "DELETE", "get", ""]);
    let id = *pick(rng, &["!r:a.example", "%21r%3Aa.example", "$e", "%24e%2Fx", "%ff%fe", "%", "%2", "a%00b", ""]);
    let path = *pick(
        rng,
        &[
            "/_matrix/federation/v1/state_ids/ID?event_id=ID",
            "/_matrix/federation/v1/backfill/ID?v=ID&v=ID&limit=10",
            "/_matrix/federation/v1/get_missing_events/ID",
            "/_matrix/federation/v1/timestamp_to_event/ID?ts=1&dir=b",
            "/_matrix/federation/v1/event/ID",
            "/_matrix/federation/v1/send/ID",
            "/_matrix/federation/v1/version",
            "/_matrix/key/v2/server/ID",
            "/_matrix/federation/v2/ID",
            "/ID//ID/",
            "ID",
        ],
    );
    let line = format!("{method} {}", path.replace("ID", id));
    if rng.one_in(3) {
        mutate_bytes(rng, line.as_bytes())
    } else {
        line.into_bytes()
    }
}

fn run_generated(
    name: &str,
    iterations: usize,
    seed: u64,
    mut gen: impl FnMut(&mut Rng) -> Vec<u8>,
    target: fn(&[u8]),
) {
    let mut rng = Rng::new(seed);
    let ((), t) = timed(|| {
        for i in 0..iterations {
            let input = gen(&mut rng);
            if let Err(e) = std::panic::catch_unwind(|| target(&input)) {
                let msg =
                    e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
                panic!(
                    "{name}: iteration {i} (seed {seed}) failed: {}\ninput: {}",
                    msg.unwrap_or_default(),
                    String::from_utf8_lossy(&input)
                );
            }
        }
    });
    eprintln!("random_inputs::{name}: {iterations} inputs in {t:.2?}");
}

#[test]
fn xmatrix_header_random_inputs() {
    run_generated("xmatrix", size(20_000, 500_000), 11, header_input, targets::xmatrix);
}

#[test]
fn request_router_random_inputs() {
    run_generated("router", size(20_000, 500_000), 12, request_input, targets::router);
}

#[test]
fn canonical_json_random_inputs() {
    run_text_target("canonical", size(20_000, 300_000), 1, targets::canonical);
}

#[test]
fn pdu_parse_random_inputs() {
    run_text_target("pdu", size(5_000, 100_000), 2, targets::pdu);
}

#[test]
fn redaction_random_inputs() {
    run_text_target("redaction", size(10_000, 200_000), 3, targets::redaction);
}

#[test]
fn canonical_json_deep_values_do_not_overflow() {
    // Values built in memory are not capped at 128 levels like parsed ones.
    for n in [1_000usize, 50_000] {
        let v = nested_value(n);
        let s = roomdag::canonical_json::to_canonical_string(&v);
        assert_eq!(s.len(), 1 + n * 2 + n / 2 * 4);
        assert!(roomdag::canonical_json::validate_strict(&v).is_ok());
        drop_deep(v);
    }
}

fn run_ingest(name: &'static str, seeds: u64, limits: IngestLimits) {
    let f = fixture(name);
    run_ingest_corpus(name, &Corpus::new(f.version(), f.pdus.clone()), seeds, limits);
}

fn run_ingest_corpus(name: &str, corpus: &Corpus, seeds: u64, limits: IngestLimits) {
    let mut total = IngestStats::default();
    let ((), t) = timed(|| {
        for seed in 0..seeds {
            let mut rng = Rng::new(seed.wrapping_mul(7919) + 11);
            let r =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| targets::ingest(&mut rng, corpus, limits)));
            match r {
                Ok(s) => total.add(&s),
                Err(e) => {
                    let msg =
                        e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
                    // Recreate the inputs for the report.
                    let mut rng = Rng::new(seed.wrapping_mul(7919) + 11);
                    let inputs = targets::ingest_inputs(&mut rng, corpus, limits);
                    let dump = std::env::temp_dir().join(format!("roomdag-ingest-{name}-{seed}.json"));
                    std::fs::write(&dump, serde_json::to_string(&inputs).unwrap()).ok();
                    panic!(
                        "ingest {name}: seed {seed} failed: {}\n{} inputs written to {}",
                        msg.unwrap_or_default(),
                        inputs.len(),
                        dump.display()
                    );
                }
            }
        }
    });
    eprintln!("random_inputs::ingest {name}: {seeds} runs in {t:.2?}: {total:?}");
}

#[test]
fn ingest_random_batches_v11() {
    let limits = IngestLimits { max_prefix: if long() { 2_000 } else { 300 }, max_steps: 150, replay_checks_one_in: 1 };
    run_ingest("v11-forky-2k", size(120, 2_000) as u64, limits);
}

#[test]
fn ingest_random_batches_v12() {
    let limits = IngestLimits { max_prefix: if long() { 1_000 } else { 200 }, max_steps: 150, replay_checks_one_in: 1 };
    run_ingest("v12-forky-1k", size(80, 1_000) as u64, limits);
}

#[test]
fn ingest_random_batches_v3() {
    let limits = IngestLimits { max_prefix: 500, max_steps: 150, replay_checks_one_in: 1 };
    run_ingest("v3-500", size(40, 600) as u64, limits);
}

/// The same on generated rooms with long-lived forks (power-level changes,
/// bans and join-rule flips on several branches): mutations there reach
/// state resolution with conflicting power events.
#[test]
fn ingest_random_batches_generated_forky_room() {
    let (_, pdus) = super::common::forky_room(77, size(600, 2_000));
    let corpus = Corpus::new("11", pdus);
    let limits = IngestLimits { max_prefix: if long() { 2_000 } else { 600 }, max_steps: 150, replay_checks_one_in: 1 };
    run_ingest_corpus("generated-forky", &corpus, size(60, 1_000) as u64, limits);
}

/// The `/send` target's rooms: v11-forky-2k's first 30 PDUs as the held
/// room; the keys of v11-forky-2k (default), v12-forky-1k and v3-500.
fn send_corpus() -> &'static targets::SendCorpus {
    static C: OnceLock<targets::SendCorpus> = OnceLock::new();
    C.get_or_init(|| {
        let held = fixture("v11-forky-2k");
        let keys = ["v11-forky-2k", "v12-forky-1k", "v3-500"]
            .iter()
            .map(|n| {
                let f = fixture(n);
                (f.header.room_id.clone().unwrap_or_default(), f.header.pinned_keys().unwrap())
            })
            .collect();
        targets::SendCorpus {
            held_version: held.version().to_owned(),
            held: held.pdus[..30].to_vec(),
            held_room_id: held.header.room_id.clone().unwrap(),
            keys,
        }
    })
}

/// A `/send` body: up to 55 PDUs — real ones of three fixtures (create
/// events included), damaged ones, random JSON — in a transaction object
/// that is itself sometimes damaged.
fn send_input(rng: &mut Rng) -> Vec<u8> {
    let pdus = all_pdus();
    let creates: Vec<&str> =
        ["v11-forky-2k", "v12-forky-1k", "v3-500"].iter().map(|n| fixture(n).pdus[0].as_str()).collect();
    let n = *pick(rng, &[0usize, 1, 2, 5, 20, 50, 51, 55]);
    let mut items: Vec<String> = Vec::with_capacity(n);
    // The held room's next events in order (from 30: its stored prefix),
    // so that they reach the auth rules (event 33 is rejected by Synapse).
    let held = &fixture("v11-forky-2k").pdus;
    let mut next = 30 + rng.below(3);
    for _ in 0..n {
        let item = match rng.below(8) {
            0 => pick(rng, &creates).to_string(),
            1 | 2 => {
                let t = text_input(rng, &pdus);
                match serde_json::from_slice::<Value>(&t) {
                    Ok(_) => String::from_utf8(t).unwrap(),
                    Err(_) => pick(rng, &pdus).to_string(),
                }
            }
            3 => serde_json::to_string(&random_value(rng, 3)).unwrap(),
            4 => held[30 + rng.below(48)].clone(),
            _ => {
                next += 1;
                held[next - 1].clone()
            }
        };
        items.push(item);
    }
    let edus = if rng.one_in(4) {
        format!(",\"edus\":[{}]", vec!["{\"edu_type\":\"m.typing\"}"; rng.below(102)].join(","))
    } else {
        String::new()
    };
    let body = format!("{{\"origin\":\"a.example\",\"origin_server_ts\":1,\"pdus\":[{}]{edus}}}", items.join(","));
    match rng.below(12) {
        0 => mutate_bytes(rng, body.as_bytes()),
        1 => serde_json::to_vec(&random_value(rng, 4)).unwrap(),
        2 => body.replacen("\"pdus\"", "\"pdu\"", 1).into_bytes(),
        _ => body.into_bytes(),
    }
}

#[test]
fn send_body_random_inputs() {
    let n = size(400, 20_000);
    let mut rng = Rng::new(13);
    let mut total = targets::SendStats::default();
    let ((), t) = timed(|| {
        for i in 0..n {
            let input = send_input(&mut rng);
            match std::panic::catch_unwind(|| targets::send(&input, send_corpus())) {
                Ok(s) => total.add(&s),
                Err(e) => {
                    let msg =
                        e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
                    let dump = std::env::temp_dir().join(format!("roomdag-send-{i}.json"));
                    std::fs::write(&dump, &input).ok();
                    panic!("send: input {i} failed: {}\ninput written to {}", msg.unwrap_or_default(), dump.display());
                }
            }
        }
    });
    eprintln!("random_inputs::send: {n} bodies in {t:.2?}: {total:?}");
    assert!(
        total.accepted > 0 && total.rejected + total.dropped > 0 && total.rooms_started > 0 && total.refused > 0,
        "{total:?}"
    );
}
