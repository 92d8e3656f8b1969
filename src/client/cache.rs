//! The caches of server discovery: `.well-known` answers (and failures) per
//! server name, whether a server had a valid answer recently, and SRV
//! answers, each bounded to [`MAX_CACHED_SERVERS`] entries.

use std::collections::HashMap;

use super::server_name::ServerName;
use super::srv::SrvRecord;

/// Most server names whose `.well-known` answer is cached (past it, expired
/// answers are forgotten, else the one that expires soonest).
pub const MAX_CACHED_SERVERS: usize = 10_000;
/// Longest an SRV answer is cached, whatever its TTL (and how long "no
/// records" is remembered).
pub const MAX_SRV_CACHE_MS: i64 = 24 * 3600 * 1000;

#[derive(Clone, Debug)]
pub(super) struct WellKnownEntry {
    /// The delegated server, or `None` for "no valid well-known".
    pub(super) delegated: Option<ServerName>,
    /// Why there is none (for logs).
    pub(super) error: Option<String>,
    pub(super) stored_at: i64,
    pub(super) expires_at: i64,
}

#[derive(Clone, Debug)]
pub(super) struct SrvEntry {
    pub(super) records: Vec<SrvRecord>,
    pub(super) expires_at: i64,
}

/// The discovery caches: `.well-known` answers (and failures) per server
/// name, whether a server had a valid answer recently, and SRV answers.
/// Bounded: at most [`MAX_CACHED_SERVERS`] entries each. Resolve names with
/// [`Discovery::resolve`](super::discovery).
#[derive(Clone, Debug, Default)]
pub struct Discovery {
    pub(super) well_known: HashMap<String, WellKnownEntry>,
    pub(super) had_valid_until: HashMap<String, i64>,
    pub(super) srv: HashMap<String, SrvEntry>,
}

impl Discovery {
    /// Empty caches.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of server names with a cached `.well-known` answer.
    pub fn cached_servers(&self) -> usize {
        self.well_known.len()
    }

    /// Forgets every cached answer.
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    pub(super) fn store_well_known(&mut self, host: &str, entry: WellKnownEntry) {
        if entry.expires_at <= entry.stored_at {
            return;
        }
        if self.well_known.len() >= MAX_CACHED_SERVERS && !self.well_known.contains_key(host) {
            evict(&mut self.well_known, entry.stored_at, |e| (e.expires_at, e.stored_at));
        }
        self.well_known.insert(host.to_owned(), entry);
    }

    pub(super) fn mark_had_valid(&mut self, host: &str, until: i64, now_ms: i64) {
        if self.had_valid_until.len() >= MAX_CACHED_SERVERS && !self.had_valid_until.contains_key(host) {
            evict(&mut self.had_valid_until, now_ms, |u| (*u, *u));
        }
        self.had_valid_until.insert(host.to_owned(), until);
    }

    pub(super) fn store_srv(&mut self, name: &str, records: Vec<SrvRecord>, ttl_secs: u32, now_ms: i64) {
        let ttl = (i64::from(ttl_secs) * 1000).min(MAX_SRV_CACHE_MS);
        if ttl <= 0 {
            return;
        }
        if self.srv.len() >= MAX_CACHED_SERVERS && !self.srv.contains_key(name) {
            evict(&mut self.srv, now_ms, |e| (e.expires_at, e.expires_at));
        }
        self.srv.insert(name.to_owned(), SrvEntry { records, expires_at: now_ms + ttl });
    }
}

/// Makes room in a full cache: drops expired entries, else the one that
/// expires first.
fn evict<V>(map: &mut HashMap<String, V>, now_ms: i64, key: impl Fn(&V) -> (i64, i64)) {
    let before = map.len();
    map.retain(|_, v| key(v).0 > now_ms);
    if map.len() < before {
        return;
    }
    if let Some(k) = map.iter().min_by_key(|(_, v)| key(v)).map(|(k, _)| k.clone()) {
        map.remove(&k);
    }
}
