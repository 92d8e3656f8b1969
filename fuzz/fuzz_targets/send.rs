#![no_main]
//! `/send` bodies → outcomes, as `FederationServer` processes them:
//! `parse_transaction`, `group_pdus`, the full check of a create event before
//! a room is made, then ingest with signature checks, into a held room (the
//! first 30 PDUs of `../shared/fixtures/v11-forky-2k.json`) or a new one.
//! The input bytes are the body. See `tests/hardening/targets.rs` (`send`)
//! for the oracles; key fetching is not involved (the fixtures' keys are
//! known), as with a mocked fetch.

#[path = "../../tests/hardening/mutate.rs"]
#[allow(dead_code)]
mod mutate;
#[path = "../../tests/hardening/targets.rs"]
#[allow(dead_code)]
mod targets;

use std::sync::OnceLock;

use targets::SendCorpus;

fn corpus() -> &'static SendCorpus {
    static C: OnceLock<SendCorpus> = OnceLock::new();
    C.get_or_init(|| {
        let dir = std::env::var_os("ROOMDAG_FIXTURES")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"));
        let load = |name: &str| {
            let mut pdus = Vec::new();
            let header = roomdag::fixture::stream_room(roomdag::fixture::open(&dir.join(format!("{name}.json"))).expect("fixture"), |_, _, ev| {
                pdus.push(ev.pdu.get().to_owned());
                Ok(())
            })
            .expect("read fixture");
            (header, pdus)
        };
        let (held_header, held_pdus) = load("v11-forky-2k");
        let mut keys = vec![(held_header.room_id.clone().unwrap(), held_header.pinned_keys().unwrap())];
        for name in ["v12-forky-1k", "v3-500"] {
            let (h, _) = load(name);
            keys.push((h.room_id.clone().unwrap(), h.pinned_keys().unwrap()));
        }
        SendCorpus {
            held_version: held_header.room_version.clone().unwrap(),
            held: held_pdus[..30].to_vec(),
            held_room_id: held_header.room_id.clone().unwrap(),
            keys,
        }
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    targets::send(data, corpus());
});
