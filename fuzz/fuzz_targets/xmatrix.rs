#![no_main]
//! See `tests/hardening/targets.rs` for the oracle (shared with the
//! PRNG-driven harness of `cargo test --test hardening`).

#[path = "../../tests/hardening/mutate.rs"]
#[allow(dead_code)]
mod mutate;
#[path = "../../tests/hardening/targets.rs"]
#[allow(dead_code)]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::xmatrix(data));
