//! Hardening tests (the "hardening and proof" issue): a PRNG-driven random
//! input harness running the same oracle-checked bodies as the cargo-fuzz
//! targets in `fuzz/`, property tests (arrival order, duplicates, store
//! rollback), adversarial rooms with timings, and one regression test per
//! crash found.
//!
//! `cargo test --test hardening` stays around a minute in the test profile;
//! `ROOMDAG_HARDENING_LONG=1` runs the big sizes (100k-event linear room,
//! 2×2,000 conflicting joins, more iterations). Add `-- --nocapture` to see
//! the timings.

#[path = "hardening/mutate.rs"]
mod mutate;

#[path = "hardening/common.rs"]
mod common;

#[path = "hardening/targets.rs"]
mod targets;

#[path = "hardening/random_inputs.rs"]
mod random_inputs;

#[path = "hardening/properties.rs"]
mod properties;

#[path = "hardening/adversarial.rs"]
mod adversarial;

#[path = "hardening/regressions.rs"]
mod regressions;

#[path = "hardening/auth_drops.rs"]
mod auth_drops;

#[path = "support/answers.rs"]
mod answers;

#[path = "support/shared.rs"]
mod shared;

#[path = "hardening/oracle_diff.rs"]
mod oracle_diff;

#[path = "hardening/security.rs"]
mod security;

#[path = "hardening/paged.rs"]
mod paged;
