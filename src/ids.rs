//! Matrix identifiers (spec appendix "Identifier Grammar") as the reference
//! server checks them.
//!
//! Inside the engine, events are addressed by interned [`EventIdx`] numbers;
//! the string identifiers appear only at the edges (parsing and answers).

use std::fmt;
use std::sync::Arc;

/// The position of a stored event in its room, in arrival order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventIdx(pub u32);

impl EventIdx {
    /// As a `usize` index into per-event arrays.
    #[inline]
    pub fn ix(self) -> usize {
        self.0 as usize
    }
}

/// An event ID (`$…`), shared between the room's index and its events.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId(Arc<str>);

impl EventId {
    /// Wraps a string that is known to be an event ID (starts with `$`).
    pub fn new(s: &str) -> Option<Self> {
        (s.starts_with('$') && !s.is_empty()).then(|| Self(Arc::from(s)))
    }
    /// The ID as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::borrow::Borrow<str> for EventId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// An interned string (sender, event type, state key): one pointer wide,
/// shared by every event that uses it, compared by content.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(Arc<String>);

impl Name {
    /// Wraps a string.
    pub fn new(s: &str) -> Self {
        Self(Arc::new(s.to_owned()))
    }

    /// The address of the shared string (equal for clones of one name).
    pub fn addr(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }
}

impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self.0, f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The part of an identifier after its first `:` (Synapse's
/// `get_domain_from_id`), or `None` when there is no colon.
pub fn domain_of(id: &str) -> Option<&str> {
    id.split_once(':').map(|(_, d)| d)
}

/// Whether `s` is a user ID in the sense of Synapse's `UserID.is_valid`:
/// `@localpart:server_name` with a valid server name (the localpart is not
/// checked, as historical user IDs can contain anything).
pub fn is_valid_user_id(s: &str) -> bool {
    match s.strip_prefix('@').and_then(|rest| rest.split_once(':')) {
        Some((_, server)) => is_valid_server_name(server),
        None => false,
    }
}

/// Whether `s` parses as `@localpart:domain` (Synapse's `UserID.from_string`,
/// which does not validate the domain).
pub fn is_user_id_shaped(s: &str) -> bool {
    s.strip_prefix('@').is_some_and(|rest| rest.contains(':'))
}

/// Server name grammar: `host [":" port]`, host being an IPv4 literal, an
/// `[IPv6]` literal, or a DNS name of `[A-Za-z0-9.-]` up to 255 chars
/// (Synapse's `parse_and_validate_server_name`).
pub fn is_valid_server_name(s: &str) -> bool {
    let (host, port) = split_host_port(s);
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        if port.parse::<u32>().map_or(true, |p| p > 65535) {
            return false;
        }
    }
    if host.is_empty() {
        return false;
    }
    if let Some(v6) = host.strip_prefix('[') {
        return v6.strip_suffix(']').is_some_and(|a| {
            !a.is_empty() && a.len() <= 45 && a.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        });
    }
    host.len() <= 255 && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Splits `host:port` (the port being after the last colon, unless the host
/// is a bracketed IPv6 literal).
pub fn split_host_port(s: &str) -> (&str, Option<&str>) {
    if s.starts_with('[') {
        return match s.find(']') {
            Some(end) => match s[end + 1..].strip_prefix(':') {
                Some(port) => (&s[..=end], Some(port)),
                None => (s, None),
            },
            None => (s, None),
        };
    }
    match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids() {
        assert!(is_valid_user_id("@alice:example.org"));
        assert!(is_valid_user_id("@alice:example.org:8448"));
        assert!(is_valid_user_id("@:[::1]:80"));
        assert!(!is_valid_user_id("alice:example.org"));
        assert!(!is_valid_user_id("@alice"));
        assert!(!is_valid_user_id("@alice:exa_mple.org"));
        assert!(!is_valid_user_id("@alice:example.org:99999"));
        assert!(is_user_id_shaped("@a:b_c"));
    }

    #[test]
    fn domains() {
        assert_eq!(domain_of("@a:b.example:8448"), Some("b.example:8448"));
        assert_eq!(domain_of("$abc"), None);
        assert_eq!(split_host_port("[::1]:8448"), ("[::1]", Some("8448")));
        assert_eq!(split_host_port("example.org"), ("example.org", None));
    }
}

/// A hasher for integer keys we assign ourselves (dense indexes, or
/// already-hashed values), which no attacker picks: one multiply (Fibonacci
/// hashing) instead of SipHash.
#[derive(Default)]
pub struct IntHasher(u64);

impl std::hash::Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u32(u32::from(*b));
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

/// A map with integer keys (see [`IntHasher`]).
pub type IntMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<IntHasher>>;
