//! The outbound federation client, sans IO: everything a transport needs to
//! talk to another homeserver, with no I/O and no clock (times and random
//! numbers are parameters). The JS transport (`js/client.js`) drives it.
//!
//! * [`server_name`]: the server name grammar, and which addresses are private.
//! * [`discovery`]: "Resolving server names" as a state machine; its caches
//!   in [`cache`], SRV record choice in [`srv`].
//! * [`well_known`]: `/.well-known/matrix/server` bodies and cache periods.
//! * [`request`]: checked, X-Matrix-signed outgoing requests.
//! * [`backoff`]: per-destination backoff (Synapse's `retryutils`).
//!
//! Key responses are checked in [`crate::http::keys`].

pub mod backoff;
pub mod cache;
pub mod discovery;
pub mod request;
pub mod server_name;
pub mod srv;
pub mod well_known;

pub use discovery::{Discovery, Resolution, ResolvedServer, SrvAnswer, SrvRecord, Step, WellKnownFetch};
pub use server_name::{is_private_address, ServerName, ServerNameError};
