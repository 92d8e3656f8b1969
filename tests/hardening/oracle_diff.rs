//! Differential fuzzing against Synapse itself: mutated (and re-signed)
//! PDUs mixed into a real fixture, judged by the shared oracle
//! (`../shared/oracle/expect.py`, Synapse's own receipt checks, auth rules
//! and state resolution) and by roomdag; every per-event status, state
//! digest, the extremities, current state and query answers must agree.
//!
//! Needs Synapse (`$ROOMDAG_ORACLE_PYTHON`, or the oracle's venv from
//! `bash ../shared/oracle/setup.sh`), so it is `#[ignore]`d in `cargo
//! test`; `npm test`'s `synapse-diff` tier installs Synapse and runs a
//! cheap mode of both tests. The long mode:
//!
//! ```sh
//! ROOMDAG_ORACLE_DIFF_RUNS=20 cargo test --release --test hardening oracle_diff -- --ignored --nocapture
//! ```
//!
//! A mismatching run's fixture is kept under
//! `$TMPDIR/roomdag-oracle-diff/run-SEED/` (with `expected` and `answers`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use roomdag::conformance;
use roomdag::fixture::{open, FixtureHeader};
use roomdag::pdu::parse_pdu;
use roomdag::redaction::redact;
use roomdag::signing::{content_hash, encode_base64, redacted_signing_bytes, ServerSigningKey};
use roomdag::RoomVersionRules;
use serde_json::{json, Map, Value};

use super::common::{load_fixture, shared_dir, timed};
use super::mutate::{mutate_pdu, Known, Rng, Source};
use crate::answers::{load, norm};

fn oracle_dir() -> PathBuf {
    shared_dir("oracle")
}

/// The oracle's Python: `$ROOMDAG_ORACLE_PYTHON` (what `npm test` sets up),
/// else the shared venv of `../shared/oracle/setup.sh`.
fn oracle_python() -> Option<PathBuf> {
    let p = match std::env::var_os("ROOMDAG_ORACLE_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => oracle_dir().join(".venv/bin/python"),
    };
    p.exists().then_some(p)
}

/// These tests only run when asked for (`--ignored`): without Synapse they
/// fail, rather than pass having compared nothing.
fn require_oracle_python() -> PathBuf {
    oracle_python().unwrap_or_else(|| {
        panic!(
            "no Synapse oracle: set ROOMDAG_ORACLE_PYTHON to a Python with matrix-synapse, or run {}",
            oracle_dir().join("setup.sh").display()
        )
    })
}

/// Hashes and signs like the origin server (content hash, then a signature
/// over the redacted form).
fn hash_and_sign(ev: &mut Map<String, Value>, rules: &RoomVersionRules, key: &ServerSigningKey) {
    ev.remove("signatures");
    ev.remove("hashes");
    ev.insert("hashes".into(), json!({ "sha256": encode_base64(&content_hash(ev)) }));
    let bytes = redacted_signing_bytes(&redact(ev, rules));
    let sig = key.sign_bytes(bytes.as_bytes());
    ev.insert("signatures".into(), json!({ key.server_name.clone(): { key.key_id.clone(): sig } }));
}

fn sender_server(ev: &Map<String, Value>) -> Option<String> {
    ev.get("sender")?.as_str()?.split_once(':').map(|(_, d)| d.to_owned())
}

/// One fuzzed fixture: a prefix of the base fixture with mutated, re-signed
/// PDUs mixed in. Returns the events (JSON objects for the fixture file).
fn fuzzed_events(seed: u64, header: &FixtureHeader, rules: &'static RoomVersionRules, pdus: &[String]) -> Vec<Value> {
    let mut rng = Rng::new(seed);
    let maps: Vec<Map<String, Value>> = pdus.iter().map(|p| serde_json::from_str(p).unwrap()).collect();
    let keys: HashMap<String, ServerSigningKey> =
        header.servers.keys().filter_map(|s| Some((s.clone(), header.signing_key(s)?))).collect();
    let servers: Vec<String> = keys.keys().cloned().collect();
    let n_real = [60usize, 150, 300, 600][rng.below(4)].min(pdus.len());
    let mut ids: Vec<String> = Vec::new();
    let mut out: Vec<Value> = Vec::new();
    let mut push = |ev: Map<String, Value>, origin: String, intent: String, ids: &mut Vec<String>| {
        let raw = serde_json::to_string(&ev).unwrap();
        let id = parse_pdu(&raw, rules)
            .map(|p| p.event_id.as_str().to_owned())
            .unwrap_or_else(|_| format!("$unparseable{}", out.len()));
        ids.push(id.clone());
        out.push(json!({"event_id": id, "origin": origin, "pdu": Value::Object(ev), "meta": {"intent": intent}}));
    };
    let mut real = 0;
    while real < n_real {
        if ids.is_empty() || rng.below(100) < 70 {
            let ev = maps[real].clone();
            let origin = sender_server(&ev).unwrap_or_default();
            push(ev, origin, "valid".into(), &mut ids);
            real += 1;
            continue;
        }
        // A mutation of a recent real PDU, or a new child of recent events.
        let i = real.saturating_sub(rng.below(20)).min(maps.len() - 1);
        let mut ev = maps[i].clone();
        let what;
        if rng.one_in(3) {
            let k = 1 + rng.below(3);
            let prev: Vec<Value> = (0..k).map(|_| json!(ids[ids.len() - 1 - rng.below(ids.len().min(12))])).collect();
            ev.insert("prev_events".into(), Value::Array(prev));
            if let Some(Value::Object(c)) = ev.get_mut("content") {
                c.insert("nonce".into(), json!(rng.below(1 << 20)));
            }
            what = format!("child of recent events (from input {i})");
        } else {
            let m = 1 + rng.below(2);
            for _ in 0..m {
                mutate_pdu(&mut rng, &mut ev, &Known { ids: &ids });
            }
            what = format!("{m} mutation(s) of input {i}");
        }
        // Shapes the oracle cannot judge (it crashes inside Synapse, which
        // would answer 500): no prev events on a non-create event, a
        // membership without a state key. Repair them.
        let is_create = ev.get("type").and_then(Value::as_str) == Some("m.room.create");
        if !is_create && ev.get("prev_events").and_then(Value::as_array).is_some_and(Vec::is_empty) {
            ev.insert("prev_events".into(), json!([ids[ids.len() - 1]]));
        }
        if ev.get("type").and_then(Value::as_str) == Some("m.room.member")
            && !ev.get("state_key").is_some_and(Value::is_string)
        {
            let sk = ev.get("sender").cloned().unwrap_or(json!("@x:y"));
            ev.insert("state_key".into(), sk);
        }
        // Sign with the sender's server when it is a fixture server, so the
        // mutation reaches the auth rules; sometimes leave the hash wrong.
        let origin = sender_server(&ev)
            .filter(|s| keys.contains_key(s))
            .unwrap_or_else(|| servers[rng.below(servers.len())].clone());
        hash_and_sign(&mut ev, rules, &keys[&origin]);
        if rng.one_in(8) {
            ev.insert("hashes".into(), json!({"sha256": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}));
        }
        push(ev, origin, format!("fuzz: {what}"), &mut ids);
    }
    out
}

/// "all equal", or how many mismatches.
fn summary(diff: &[String]) -> String {
    if diff.is_empty() {
        "all equal".to_string()
    } else {
        format!("{} mismatches", diff.len())
    }
}

/// A run's working directory is removed when roomdag and Synapse agree, and
/// kept (with the first mismatches printed and a failure recorded) when not.
fn keep_if_different(run: &str, dir: &std::path::Path, diff: &[String], failures: &mut Vec<String>) {
    if diff.is_empty() {
        std::fs::remove_dir_all(dir).ok();
        return;
    }
    for d in diff.iter().take(8) {
        eprintln!("    {d}");
    }
    failures.push(format!("{run}: {} mismatches, kept in {}", diff.len(), dir.display()));
}

/// Compares roomdag's answers with the oracle's; returns the mismatches.
fn compare(expected: &Value, answers: &Value, events: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    // Both lists have one entry per fixture event, in fixture order.
    let got = answers["events"].as_array().unwrap();
    let want = expected["events"].as_array().unwrap();
    if got.len() != want.len() {
        out.push(format!("{} events answered, {} expected", got.len(), want.len()));
    }
    for (i, (e, g)) in want.iter().zip(got).enumerate() {
        let id = e["event_id"].as_str().unwrap_or("?");
        let intent = events.get(i).and_then(|x| x["meta"]["intent"].as_str()).unwrap_or("?");
        let why = format!(
            "[input {i}, {intent}] synapse: {} {} / roomdag: {} {} {}",
            e["status"],
            e.get("reason").unwrap_or(&Value::Null),
            g["status"],
            g.get("reason").unwrap_or(&Value::Null),
            if g["event_id"] != e["event_id"] {
                format!("(roomdag event ID {})", g["event_id"])
            } else {
                String::new()
            }
        );
        if g["status"] != e["status"] || g["event_id"] != e["event_id"] {
            out.push(format!("{id}: status differs {why}"));
        } else if e["status"] != "dropped" {
            for f in ["state_before", "state_after"] {
                if g[f] != e[f] {
                    out.push(format!("{id}: {f} differs {why}"));
                }
            }
        }
    }
    if answers["current_state_digest"] != expected["current_state_digest"] {
        out.push("current_state_digest differs".into());
    }
    if answers["forward_extremities"] != expected["forward_extremities"] {
        out.push("forward_extremities differ".into());
    }
    let got_q: HashMap<&str, &Value> =
        answers["answers"].as_array().unwrap().iter().map(|a| (a["id"].as_str().unwrap(), a)).collect();
    for q in expected["queries"].as_array().unwrap() {
        let ep = q["endpoint"].as_str().unwrap();
        let id = q["id"].as_str().unwrap();
        let (want, have) = (norm(ep, &q["expect"]), norm(ep, got_q.get(id).copied().unwrap_or(&Value::Null)));
        if want != have {
            out.push(format!("query {id} ({ep}): synapse {want} roomdag {have}"));
        }
    }
    out
}

/// Feeds the fixture to the oracle's room model one PDU at a time and
/// prints the indices (and exceptions) of the PDUs on which Synapse's code
/// raised something unexpected; those are not committed, so the rest
/// replays the same without them.
const PREPASS: &str = r#"
import json, sys
sys.path.insert(0, ".")
import oracle_core
from oracle_core import RoomModel
fx = json.load(open(sys.argv[1]))
model = RoomModel(fx["room_version"], {n: s["verify_keys"] for n, s in fx["servers"].items()})
bad = []
for i, item in enumerate(fx["events"]):
    try:
        model.process(item["pdu"])
    except Exception as e:
        bad.append([i, f"{type(e).__name__}: {e}"[:200]])
print(json.dumps(bad))
"#;

#[test]
#[ignore = "needs Synapse (ROOMDAG_ORACLE_PYTHON or ../shared/oracle/.venv); npm test runs it"]
fn oracle_diff() {
    let python = require_oracle_python();
    let runs: u64 = std::env::var("ROOMDAG_ORACLE_DIFF_RUNS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let first: u64 = std::env::var("ROOMDAG_ORACLE_DIFF_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let base_name = std::env::var("ROOMDAG_ORACLE_DIFF_FIXTURE").unwrap_or_else(|_| "v11-forky-2k".into());
    let f = load_fixture(&base_name);
    let raw_fixture: Value = load(&crate::shared::fixture_file(&base_name).expect("the base fixture"));
    let root = std::env::temp_dir().join("roomdag-oracle-diff");
    let mut failures: Vec<String> = Vec::new();
    let mut oracle_crashes: std::collections::BTreeMap<String, usize> = Default::default();
    let (mut total_events, mut total_fuzzed) = (0usize, 0usize);
    for seed in first..first + runs {
        let dir = root.join(format!("run-{seed}"));
        std::fs::create_dir_all(&dir).unwrap();
        let events = fuzzed_events(seed, &f.header, f.rules, &f.pdus);
        total_events += events.len();
        total_fuzzed += events.iter().filter(|e| e["meta"]["intent"].as_str().unwrap().starts_with("fuzz")).count();
        let mut fixture = raw_fixture.clone();
        fixture["events"] = Value::Array(events.clone());
        let name = format!("fuzz{seed}");
        let fixture_path = dir.join(format!("{name}.json"));
        std::fs::write(&fixture_path, serde_json::to_vec(&fixture).unwrap()).unwrap();
        // Leave out the PDUs on which Synapse's own code raises something
        // other than a SynapseError (a 500 in a real server: no verdict to
        // compare with).
        let pre = Command::new(&python)
            .args(["-c", PREPASS])
            .arg(&fixture_path)
            .current_dir(oracle_dir())
            .output()
            .expect("run the oracle pre-pass");
        let undefined: Vec<(usize, String)> = match serde_json::from_slice::<Vec<(usize, String)>>(&pre.stdout) {
            Ok(v) => v,
            Err(_) => {
                eprintln!(
                    "oracle_diff run {seed}: pre-pass failed: {}",
                    String::from_utf8_lossy(&pre.stderr).lines().last().unwrap_or("")
                );
                continue;
            }
        };
        for (_, why) in &undefined {
            let kind = why.split(':').next().unwrap_or("").to_owned();
            *oracle_crashes.entry(kind).or_default() += 1;
        }
        let skip: std::collections::HashSet<usize> = undefined.iter().map(|(i, _)| *i).collect();
        let events: Vec<Value> =
            events.into_iter().enumerate().filter(|(i, _)| !skip.contains(i)).map(|(_, e)| e).collect();
        fixture["events"] = Value::Array(events.clone());
        std::fs::write(&fixture_path, serde_json::to_vec(&fixture).unwrap()).unwrap();
        let (out, t_oracle) = timed(|| {
            Command::new(&python)
                .arg(oracle_dir().join("expect.py"))
                .arg(&fixture_path)
                .args(["--queries", "80", "--seed", "1", "-o"])
                .arg(&dir)
                .current_dir(oracle_dir())
                .output()
                .expect("run expect.py")
        });
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err.lines().last().unwrap_or("");
            eprintln!("oracle_diff run {seed}: the oracle itself failed ({last}); skipped");
            continue;
        }
        let expected = load(&dir.join(format!("{name}.expected.json")));
        let mut answers = Vec::new();
        let (r, t_ours) = timed(|| {
            conformance::replay_and_answer(
                open(&fixture_path).unwrap(),
                open(&dir.join(format!("{name}.queries.json"))).unwrap(),
                &mut answers,
            )
        });
        r.unwrap_or_else(|e| panic!("run {seed}: roomdag replay failed: {e}"));
        std::fs::write(dir.join("answers.json"), &answers).unwrap();
        let answers: Value = serde_json::from_slice(&answers).unwrap();
        let diff = compare(&expected, &answers, &events);
        eprintln!(
            "oracle_diff run {seed}: {} events ({} fuzzed), oracle {t_oracle:.1?}, roomdag {t_ours:.1?}: {}",
            events.len(),
            events.iter().filter(|e| e["meta"]["intent"].as_str().unwrap().starts_with("fuzz")).count(),
            summary(&diff)
        );
        keep_if_different(&format!("run {seed}"), &dir, &diff, &mut failures);
    }
    eprintln!("oracle_diff: {runs} runs, {total_events} events, {total_fuzzed} fuzzed; left out (Synapse raised): {oracle_crashes:?}");
    assert!(failures.is_empty(), "roomdag and Synapse disagree:\n{}", failures.join("\n"));
}

/// Fresh rooms from the oracle's own generator (`gen_room.py`: several
/// simulated servers, partitions, scripted races, bad PDUs), every room
/// version, high fork rates; roomdag must match Synapse on each. Rooms of
/// odd seeds have every optional feature their version supports
/// (`--features all`: knocks, restricted joins, ACLs, third-party invites,
/// v12 creators, visibility episodes, state redactions);
/// `ROOMDAG_ORACLE_GEN_FEATURES=all|none` for all or none of them.
///
/// ```sh
/// ROOMDAG_ORACLE_GEN_RUNS=20 cargo test --release --test hardening oracle_generated_rooms -- --ignored --nocapture
/// ```
#[test]
#[ignore = "needs Synapse (ROOMDAG_ORACLE_PYTHON or ../shared/oracle/.venv); npm test runs it"]
fn oracle_generated_rooms() {
    let python = require_oracle_python();
    let runs: u64 = std::env::var("ROOMDAG_ORACLE_GEN_RUNS").ok().and_then(|s| s.parse().ok()).unwrap_or(4);
    let first: u64 = std::env::var("ROOMDAG_ORACLE_GEN_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let features_mode = std::env::var("ROOMDAG_ORACLE_GEN_FEATURES").unwrap_or_default();
    let root = std::env::temp_dir().join("roomdag-oracle-gen");
    let mut failures = Vec::new();
    let mut total = 0usize;
    for seed in first..first + runs {
        let version = ["3", "4", "5", "6", "7", "8", "9", "10", "11", "12"][seed as usize % 10];
        let fork_rate = ["0.3", "0.5", "0.7", "0.9"][(seed / 10) as usize % 4];
        let events = [300, 800, 1500][seed as usize % 3].to_string();
        let servers = (3 + seed % 5).to_string();
        let features = match features_mode.as_str() {
            "all" => "all",
            "none" => "none",
            _ if seed % 2 == 1 => "all",
            _ => "none",
        };
        let dir = root.join(format!("gen-{seed}"));
        std::fs::create_dir_all(&dir).unwrap();
        let name = format!("gen{seed}");
        let fixture = dir.join(format!("{name}.json"));
        let (gen, t_gen) = timed(|| {
            Command::new(&python)
                .arg(oracle_dir().join("gen_room.py"))
                .args(["--seed", &(1000 + seed).to_string(), "--events", &events, "--servers", &servers])
                .args([
                    "--room-version",
                    version,
                    "--fork-rate",
                    fork_rate,
                    "--bad-rate",
                    "0.08",
                    "--features",
                    features,
                ])
                .arg("-o")
                .arg(&fixture)
                .current_dir(oracle_dir())
                .output()
                .expect("run gen_room.py")
        });
        if !gen.status.success() {
            eprintln!(
                "oracle_generated_rooms {seed}: generator failed: {}",
                String::from_utf8_lossy(&gen.stderr).lines().last().unwrap_or("")
            );
            continue;
        }
        let ex = Command::new(&python)
            .arg(oracle_dir().join("expect.py"))
            .arg(&fixture)
            .args(["--queries", "150", "--seed", "3", "-o"])
            .arg(&dir)
            .current_dir(oracle_dir())
            .output()
            .expect("run expect.py");
        if !ex.status.success() {
            eprintln!(
                "oracle_generated_rooms {seed}: expect.py failed: {}",
                String::from_utf8_lossy(&ex.stderr).lines().last().unwrap_or("")
            );
            continue;
        }
        let expected = load(&dir.join(format!("{name}.expected.json")));
        let mut answers = Vec::new();
        let (r, t_ours) = timed(|| {
            conformance::replay_and_answer(
                open(&fixture).unwrap(),
                open(&dir.join(format!("{name}.queries.json"))).unwrap(),
                &mut answers,
            )
        });
        r.unwrap_or_else(|e| panic!("gen {seed}: roomdag replay failed: {e}"));
        let answers: Value = serde_json::from_slice(&answers).unwrap();
        let fx = load(&fixture);
        let events_list = fx["events"].as_array().unwrap().clone();
        total += events_list.len();
        let diff = compare(&expected, &answers, &events_list);
        eprintln!(
            "oracle_generated_rooms {seed}: v{version}, {events} events, {servers} servers, fork rate {fork_rate}, features {features}: generated in {t_gen:.1?}, roomdag {t_ours:.1?}: {}",
            summary(&diff)
        );
        keep_if_different(&format!("gen {seed}"), &dir, &diff, &mut failures);
    }
    eprintln!("oracle_generated_rooms: {runs} rooms, {total} events");
    assert!(failures.is_empty(), "roomdag and Synapse disagree:\n{}", failures.join("\n"));
}
