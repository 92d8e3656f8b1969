#![no_main]
//! Random batches of real and mutated PDUs into a v11 room
//! (`Verification::Unsigned`); the input bytes are the stream of choices.
//! See `tests/hardening/targets.rs` for the invariants checked.

#[path = "../../tests/hardening/mutate.rs"]
#[allow(dead_code)]
mod mutate;
#[path = "../../tests/hardening/targets.rs"]
#[allow(dead_code)]
mod targets;

use std::sync::OnceLock;

use targets::{Corpus, IngestLimits};

fn corpus() -> &'static Corpus {
    static C: OnceLock<Corpus> = OnceLock::new();
    C.get_or_init(|| {
        let dir = std::env::var_os("ROOMDAG_FIXTURES")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"));
        let path = dir.join("v11-forky-2k.json");
        let mut pdus = Vec::new();
        roomdag::fixture::stream_room(roomdag::fixture::open(&path).expect("fixture"), |_, _, ev| {
            pdus.push(ev.pdu.get().to_owned());
            Ok(())
        })
        .expect("read fixture");
        Corpus::new("11", pdus)
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut src = mutate::Bytes::new(data);
    targets::ingest(&mut src, corpus(), IngestLimits { max_prefix: 512, max_steps: 64, replay_checks_one_in: 4 });
});
