//! Replays every Synapse-judged fixture (`../shared/fixtures`, else the
//! project's copy in `tests/shared/fixtures`; or `$ROOMDAG_FIXTURES`) and requires a 100 % match on every area that
//! `oracle/compare.py` scores: per-event status, state before and after,
//! forward extremities, current state, and every query's answer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[path = "support/answers.rs"]
mod answers;
#[path = "support/shared.rs"]
mod shared;

use answers::{load, norm};
use roomdag::conformance;
use roomdag::fixture;
use serde_json::Value;
use shared::fixture_dirs;

/// Every room fixture that has expected answers: (name, room, queries, expected).
fn fixtures() -> Vec<(String, PathBuf, PathBuf, PathBuf)> {
    let mut out: Vec<(String, PathBuf, PathBuf, PathBuf)> = Vec::new();
    for dir in fixture_dirs() {
        out.extend(
            fixtures_in(&dir).into_iter().filter(|(n, ..)| !out.iter().any(|(m, ..)| m == n)).collect::<Vec<_>>(),
        );
    }
    out.sort();
    assert!(!out.is_empty(), "no fixtures found in {:?}", fixture_dirs());
    out
}

fn fixtures_in(dir: &Path) -> Vec<(String, PathBuf, PathBuf, PathBuf)> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("fixtures at {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("dir entry").path();
        let file = path.file_name().and_then(|f| f.to_str()).unwrap_or_default().to_owned();
        let Some(name) = file.strip_suffix(".json.gz").or_else(|| file.strip_suffix(".json")) else { continue };
        if name.ends_with(".expected") || name.ends_with(".queries") {
            continue;
        }
        let ext = if file.ends_with(".gz") { ".json.gz" } else { ".json" };
        let queries = dir.join(format!("{name}.queries{ext}"));
        let expected = dir.join(format!("{name}.expected{ext}"));
        if queries.exists() && expected.exists() {
            out.push((name.to_owned(), path, queries, expected));
        }
    }
    out
}

fn check_fixture(name: &str, room: &Path, queries: &Path, expected: &Path) {
    let mut bytes = Vec::new();
    conformance::replay_and_answer(fixture::open(room).unwrap(), fixture::open(queries).unwrap(), &mut bytes)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let answers: Value = serde_json::from_slice(&bytes).expect("answers are JSON");
    let exp = load(expected);
    let mut mismatches: Vec<String> = Vec::new();
    let mut total = 0usize;

    let got_events: HashMap<&str, &Value> =
        answers["events"].as_array().unwrap().iter().map(|e| (e["event_id"].as_str().unwrap(), e)).collect();
    for e in exp["events"].as_array().unwrap() {
        let id = e["event_id"].as_str().unwrap();
        let g = got_events.get(id).copied().unwrap_or(&Value::Null);
        total += 1;
        if g["status"] != e["status"] {
            mismatches.push(format!("{id}: status {} != expected {}", g["status"], e["status"]));
        }
        if e["status"] != "dropped" {
            for field in ["state_before", "state_after"] {
                total += 1;
                if g[field] != e[field] {
                    mismatches.push(format!("{id}: {field} differs"));
                }
            }
        }
    }
    total += 2;
    if answers["current_state_digest"] != exp["current_state_digest"] {
        mismatches.push("current_state_digest differs".into());
    }
    if answers["forward_extremities"] != exp["forward_extremities"] {
        mismatches.push("forward_extremities differ".into());
    }
    let got_q: HashMap<&str, &Value> =
        answers["answers"].as_array().unwrap().iter().map(|a| (a["id"].as_str().unwrap(), a)).collect();
    for q in exp["queries"].as_array().unwrap() {
        total += 1;
        let ep = q["endpoint"].as_str().unwrap();
        let id = q["id"].as_str().unwrap();
        let want = norm(ep, &q["expect"]);
        let have = norm(ep, got_q.get(id).copied().unwrap_or(&Value::Null));
        if want != have {
            mismatches.push(format!("{id} ({ep}): expected {want} got {have}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{name}: {} of {total} checks differ from Synapse:\n{}",
        mismatches.len(),
        mismatches.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
    eprintln!("{name}: {total}/{total} checks match");
}

#[test]
fn every_fixture_matches_synapse() {
    for (name, room, queries, expected) in fixtures() {
        check_fixture(&name, &room, &queries, &expected);
    }
}
