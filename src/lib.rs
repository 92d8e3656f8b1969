//! # roomdag
//!
//! A Matrix room-DAG engine: it stores a room's event graph and answers the
//! federation history endpoints (`/backfill`, `/get_missing_events`,
//! `/event`, `/state`, `/state_ids`, `/timestamp_to_event`) for room
//! versions 3–12, checking every PDU the way a homeserver must.
//!
//! ## Reading order
//!
//! * [`room_version`]: the rule flags of each room version.
//! * [`canonical_json`], [`redaction`], [`signing`]: the byte-level rules
//!   (canonical JSON, the redaction algorithm, hashes, event IDs, ed25519).
//! * [`pdu`]: format checks of a received PDU; [`signatures`]: its signatures.
//! * [`auth_rules`], [`power_levels`], [`third_party_invite`]: the authorization rules.
//! * [`state_set`], [`auth_chain`]: shared state maps and the auth-chain index.
//! * [`state_res`]: state resolution v2 and v2.1.
//! * [`room`]: the receipt pipeline and the room's indexes.
//! * [`queries`], [`visibility`]: the endpoints' semantics.
//! * [`placement`]: outliers, history and remote states (rooms joined late).
//! * [`membership`], [`history`]: joining, leaving and invites, and fetching
//!   history, as the requesting server (sans IO: request building and
//!   answer checks).
//! * [`store`]: persistence as an append-only record log.
//! * [`fixture`], [`export`]: the conformance fixtures and graph export.
//!
//! The core is sans-IO: nothing here touches the network, the clock or
//! files, so the same code runs natively and in WebAssembly.

#![warn(missing_docs)]

pub mod auth_chain;
pub mod auth_rules;
pub mod canonical_json;
pub mod client;
pub mod conformance;
pub mod demo;
pub mod event;
pub mod export;
pub mod fixture;
pub mod history;
pub mod http;
pub mod ids;
pub mod image;
pub mod layout;
pub mod membership;
pub mod pages;
pub mod pdu;
pub mod placement;
pub mod power_levels;
pub mod queries;
pub mod redaction;
pub mod room;
pub mod room_version;
pub mod signatures;
pub mod signing;
pub mod state_digest;
pub mod state_res;
pub mod state_set;
pub mod store;
pub mod third_party_invite;
pub mod visibility;

#[cfg(target_arch = "wasm32")]
pub mod wasm;

pub use event::{EventStatus, StoredEvent};
pub use ids::{EventId, EventIdx};
pub use room::{Outcome, Room, Verification};
pub use room_version::RoomVersionRules;
pub use signing::{KeyStore, PinnedKeys};
