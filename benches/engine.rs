//! `cargo bench --bench engine`: the engine's hot paths on a fixture room
//! (default `v11-20k.json.gz` of the shared fixtures, or `$ROOMDAG_BENCH_FIXTURE`).
//!
//! Prints a Markdown table: replay time, then per-query latencies over every
//! accepted event (`/state_ids` cold and warm, `/backfill` of 100,
//! `/get_missing_events` of 20, `/backfill` and `/state` with their PDUs read
//! back), and the state resolution count.

use std::path::PathBuf;
use std::time::{Duration, Instant};

#[path = "../tests/support/shared.rs"]
mod shared;

use roomdag::conformance;
use roomdag::fixture;
use roomdag::http::outgoing_pdu;
use roomdag::ids::EventIdx;
use roomdag::queries;

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn row(name: &str, mut v: Vec<Duration>) {
    let n = v.len();
    let med = percentile(&mut v, 0.5);
    let p99 = percentile(&mut v, 0.99);
    let max = *v.last().expect("samples");
    println!(
        "| {name} | {n} | {:.1} µs | {:.1} µs | {:.1} µs |",
        med.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6,
        max.as_secs_f64() * 1e6
    );
}

fn main() {
    let path = std::env::var_os("ROOMDAG_BENCH_FIXTURE")
        .map(PathBuf::from)
        .unwrap_or_else(|| shared::fixtures_dir().join("v11-20k.json.gz"));
    let t = Instant::now();
    let replay = conformance::replay(fixture::open(&path).expect("fixture")).expect("replay");
    let replay_time = t.elapsed();
    let mut par = Duration::MAX;
    for _ in 0..2 {
        let t = Instant::now();
        let _ = conformance::replay_pipelined(fixture::open(&path).expect("fixture")).expect("replay");
        par = par.min(t.elapsed());
    }
    let room = &replay.room;
    let origin = roomdag::visibility::servers_in_room(room, &room.current_state_map().unwrap())
        .into_iter()
        .next()
        .expect("a server in the room");
    let accepted: Vec<EventIdx> =
        room.events().iter().map(Result::unwrap).filter(|e| e.is_accepted()).map(|e| e.idx).collect();
    println!("fixture: {} ({} events, {} accepted)\n", path.display(), room.events().len(), accepted.len());
    println!("| operation | time |\n|---|---|");
    println!("| replay (sequential, signatures included) | {:.0} ms |", replay_time.as_secs_f64() * 1e3);
    println!("| replay (--parallel) | {:.0} ms |", par.as_secs_f64() * 1e3);
    println!("| distinct states / auth-index nodes | {} / {} |\n", room.states().len(), room.auth_index().len());
    println!("| query | samples | median | p99 | max |\n|---|---|---|---|---|");
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for e in &accepted {
        let id = room.id(*e).unwrap().to_owned();
        let t = Instant::now();
        let a = queries::state_ids(room, &origin, &id).expect("state_ids");
        cold.push(t.elapsed());
        std::hint::black_box(&a);
        let t = Instant::now();
        let a = queries::state_ids(room, &origin, &id).expect("state_ids");
        warm.push(t.elapsed());
        std::hint::black_box(&a);
    }
    row("/state_ids, each accepted event (first ask)", cold);
    row("/state_ids, same event again (cached auth chain)", warm);
    let mut bf = Vec::new();
    let mut gme = Vec::new();
    for e in accepted.iter().step_by(10) {
        let id = vec![room.id(*e).unwrap().to_owned()];
        let t = Instant::now();
        std::hint::black_box(queries::backfill(room, &origin, &id, 100).expect("backfill"));
        bf.push(t.elapsed());
        let t = Instant::now();
        std::hint::black_box(queries::get_missing_events(room, &origin, &[], &id, Some(20)).expect("gme"));
        gme.push(t.elapsed());
    }
    row("/backfill limit 100", bf);
    row("/get_missing_events limit 20", gme);
    // The same walks with each PDU read back in its outgoing form (what
    // the HTTP answers hold; a room without a page store holds its PDUs
    // compressed in groups).
    let mut bf_pdus = Vec::new();
    let mut state_pdus = Vec::new();
    for (n, e) in accepted.iter().enumerate().step_by(10) {
        let id = vec![room.id(*e).unwrap().to_owned()];
        let t = Instant::now();
        for s in queries::backfill(room, &origin, &id, 100).expect("backfill") {
            std::hint::black_box(outgoing_pdu(room, s.event, s.pruned).expect("PDU"));
        }
        bf_pdus.push(t.elapsed());
        if n % 50 == 0 {
            let t = Instant::now();
            let a = queries::state_ids(room, &origin, &id[0]).expect("state_ids");
            for &p in a.pdu_ids.iter().chain(a.auth_chain_ids.iter()) {
                std::hint::black_box(outgoing_pdu(room, p, false).expect("PDU"));
            }
            state_pdus.push(t.elapsed());
        }
    }
    row("/backfill limit 100, with its PDUs", bf_pdus);
    row("/state (state and auth chain PDUs), every 50th event", state_pdus);
}
