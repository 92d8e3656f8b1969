//! Checks the engine against the Synapse-computed test vectors in
//! `tests/data/` (see `tests/data/README.md` for every schema).
//!
//! One `#[test]` per data area. Each walks all of its cases, collects every
//! mismatch with the case name, and fails once at the end with the full list.
//! A case the engine is known to get wrong is named in that module's
//! `KNOWN_DIFFERENCES`: it must still fail (a listed case that starts passing
//! fails the test, so the list cannot rot).

#[path = "vectors/common.rs"]
mod common;

#[path = "vectors/canonical_json.rs"]
mod canonical_json;

#[path = "vectors/signing.rs"]
mod signing;

#[path = "vectors/redaction.rs"]
mod redaction;

#[path = "vectors/auth_rules.rs"]
mod auth_rules;

#[path = "vectors/state_res.rs"]
mod state_res;

#[path = "vectors/server_acl.rs"]
mod server_acl;
