//! Server names as the outbound client accepts them (spec: appendices,
//! "Server Name"):
//!
//! ```text
//! server_name = hostname [ ":" port ]
//! port        = 1*5DIGIT
//! hostname    = IPv4address / "[" IPv6address "]" / dns-name
//! IPv4address = 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT
//! IPv6address = 2*45IPv6char
//! IPv6char    = DIGIT / %x41-46 / %x61-66 / ":" / "."
//! dns-name    = 1*255dns-char
//! dns-char    = DIGIT / ALPHA / "-" / "."
//! ```
//!
//! A name we *connect to* is held to a little more than the grammar, so that
//! what we validate is exactly what a URL parser and a resolver will see:
//! IP literals must parse as addresses (`1.2.3.999` is refused, not looked
//! up as a DNS name), a DNS name has no empty label and no label over 63
//! characters (RFC 1035), and a DNS name whose last label is numeric (which
//! the WHATWG URL parser reads as an IPv4 address: `127.1`, `0x7f.1`,
//! `2130706433`) must be a dotted-quad IPv4 literal. The port is 1–65535.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The port used when a server name has none and discovery finds no other (spec step 6).
pub const DEFAULT_FEDERATION_PORT: u16 = 8448;

/// The host part of a server name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// An IPv4 literal.
    Ipv4(Ipv4Addr),
    /// A bracketed IPv6 literal.
    Ipv6(Ipv6Addr),
    /// A DNS name (as written; DNS names compare case-insensitively).
    Dns(String),
}

impl Host {
    /// The IP address, for an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Ipv4(a) => Some(IpAddr::V4(*a)),
            Host::Ipv6(a) => Some(IpAddr::V6(*a)),
            Host::Dns(_) => None,
        }
    }
}

impl fmt::Display for Host {
    /// As it appears in a URL authority or `Host` header (`[…]` around IPv6).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ipv4(a) => write!(f, "{a}"),
            Host::Ipv6(a) => write!(f, "[{a}]"),
            Host::Dns(d) => f.write_str(d),
        }
    }
}

/// A valid server name: its text as given, its host and its port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServerName {
    text: String,
    host: Host,
    port: Option<u16>,
}

/// Why a string is not a server name we would contact.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ServerNameError {
    /// The empty string.
    #[error("empty server name")]
    Empty,
    /// Over 255 characters of host.
    #[error("server name is longer than 255 characters")]
    TooLong,
    /// A character the grammar does not allow (`/`, `?`, `@`, a space…).
    #[error("server name contains {0:?}, which is not allowed")]
    InvalidChar(char),
    /// The port is not 1–65535.
    #[error("server name has an invalid port")]
    InvalidPort,
    /// `[…]` that is not an IPv6 address.
    #[error("server name has an invalid IPv6 literal")]
    InvalidIpv6,
    /// A numeric host that is not a dotted-quad IPv4 address.
    #[error("server name has an invalid IPv4 literal")]
    InvalidIpv4,
    /// `a..b`, a leading or trailing dot.
    #[error("server name has an empty DNS label")]
    EmptyLabel,
    /// A DNS label over 63 characters.
    #[error("server name has a DNS label longer than 63 characters")]
    LabelTooLong,
}

impl ServerName {
    /// Parses and validates a server name.
    pub fn parse(s: &str) -> Result<Self, ServerNameError> {
        if s.is_empty() {
            return Err(ServerNameError::Empty);
        }
        if let Some(c) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '[' | ']'))) {
            return Err(ServerNameError::InvalidChar(c));
        }
        let (host_text, port_text) = if let Some(rest) = s.strip_prefix('[') {
            let end = rest.find(']').ok_or(ServerNameError::InvalidIpv6)?;
            let after = &rest[end + 1..];
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or(ServerNameError::InvalidIpv6)?),
            };
            (&s[..end + 2], port)
        } else {
            match s.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (s, None),
            }
        };
        let port = match port_text {
            None => None,
            Some(p) => Some(parse_port(p)?),
        };
        let host = parse_host(host_text)?;
        Ok(Self { text: s.to_owned(), host, port })
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The host.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The explicit port, if any.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// Whether the host is an IP literal.
    pub fn is_ip_literal(&self) -> bool {
        self.host.ip().is_some()
    }
}

impl fmt::Display for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn parse_port(p: &str) -> Result<u16, ServerNameError> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ServerNameError::InvalidPort);
    }
    match p.parse::<u32>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
        _ => Err(ServerNameError::InvalidPort),
    }
}

fn parse_host(h: &str) -> Result<Host, ServerNameError> {
    if h.is_empty() {
        return Err(ServerNameError::Empty);
    }
    if let Some(inner) = h.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or(ServerNameError::InvalidIpv6)?;
        if inner.len() < 2 || inner.len() > 45 {
            return Err(ServerNameError::InvalidIpv6);
        }
        return inner.parse::<Ipv6Addr>().map(Host::Ipv6).map_err(|_| ServerNameError::InvalidIpv6);
    }
    if let Some(c) = h.chars().find(|c| matches!(c, '[' | ']' | ':')) {
        return Err(ServerNameError::InvalidChar(c));
    }
    if h.len() > 255 {
        return Err(ServerNameError::TooLong);
    }
    let labels: Vec<&str> = h.split('.').collect();
    if labels.iter().any(|l| l.is_empty()) {
        return Err(ServerNameError::EmptyLabel);
    }
    if labels.iter().any(|l| l.len() > 63) {
        return Err(ServerNameError::LabelTooLong);
    }
    // The WHATWG URL parser reads a host whose last label is a number as an
    // IPv4 address (decimal, octal or hex parts): only a plain dotted quad
    // means the same thing to it, to a resolver and to us.
    let last = labels[labels.len() - 1];
    let numeric = last.bytes().all(|b| b.is_ascii_digit())
        || (last.len() > 1
            && (last.starts_with("0x") || last.starts_with("0X"))
            && last[2..].bytes().all(|b| b.is_ascii_hexdigit()));
    if numeric {
        return h.parse::<Ipv4Addr>().map(Host::Ipv4).map_err(|_| ServerNameError::InvalidIpv4);
    }
    Ok(Host::Dns(h.to_owned()))
}

/// Whether an address is one the federation client must not contact unless
/// told to: Synapse's `DEFAULT_IP_RANGE_BLOCKLIST` (`synapse/config/server.py`:
/// loopback, private, carrier-grade NAT, IETF registry, link-local, former
/// 6to4 relay, benchmarking and documentation networks, multicast; `::1`,
/// `fe80::/10`, `fc00::/7`, `2001:db8::/32`, `ff00::/8`, `fec0::/10`) plus the
/// unspecified addresses Synapse always adds, with each IPv4 range also as
/// IPv4-mapped, IPv4-compatible and 6to4 IPv6 (Synapse's `generate_ip_set`).
/// Also refused: `0.0.0.0/8` ("this network"), `240.0.0.0/4` (reserved) and
/// the broadcast address, which no federating server uses.
pub fn is_private_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => is_private_v4(a),
        IpAddr::V6(a) => {
            let s = a.segments();
            if a.is_unspecified() || a.is_loopback() {
                return true;
            }
            // IPv4-mapped ::ffff:a.b.c.d and IPv4-compatible ::a.b.c.d.
            if s[..5] == [0, 0, 0, 0, 0] && (s[5] == 0xffff || s[5] == 0) {
                return is_private_v4(Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8));
            }
            // 6to4: 2002:AABB:CCDD::/48 carries a.b.c.d.
            if s[0] == 0x2002
                && is_private_v4(Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8))
            {
                return true;
            }
            (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation 2001:db8::/32
                || (s[0] & 0xff00) == 0xff00 // multicast ff00::/8
                || (s[0] & 0xffc0) == 0xfec0 // site-local fec0::/10
        }
    }
}

fn is_private_v4(a: Ipv4Addr) -> bool {
    let [o0, o1, o2, _] = a.octets();
    o0 == 0 // 0.0.0.0/8
        || o0 == 127 // loopback
        || o0 == 10
        || (o0 == 172 && (o1 & 0xf0) == 16)
        || (o0 == 192 && o1 == 168)
        || (o0 == 100 && (o1 & 0xc0) == 64) // carrier-grade NAT 100.64.0.0/10
        || (o0 == 192 && o1 == 0 && o2 == 0) // IETF protocol assignments
        || (o0 == 169 && o1 == 254) // link-local
        || (o0 == 192 && o1 == 88 && o2 == 99) // former 6to4 relay
        || (o0 == 198 && (o1 & 0xfe) == 18) // benchmarking 198.18.0.0/15
        || (o0 == 192 && o1 == 0 && o2 == 2) // TEST-NET-1
        || (o0 == 198 && o1 == 51 && o2 == 100) // TEST-NET-2
        || (o0 == 203 && o1 == 0 && o2 == 113) // TEST-NET-3
        || o0 >= 224 // multicast 224/4, reserved 240/4, broadcast
}

/// Whether a host name is a name for this machine that no resolver is asked
/// about: `localhost` and `*.localhost` (RFC 6761 §6.3).
pub fn is_localhost_name(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h == "localhost" || h.ends_with(".localhost")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_grammar() {
        let s = ServerName::parse("matrix.org").unwrap();
        assert_eq!((s.host(), s.port()), (&Host::Dns("matrix.org".into()), None));
        let s = ServerName::parse("hs1.test:8448").unwrap();
        assert_eq!(s.port(), Some(8448));
        assert!(!s.is_ip_literal());
        let s = ServerName::parse("1.2.3.4:80").unwrap();
        assert_eq!(s.host(), &Host::Ipv4(Ipv4Addr::new(1, 2, 3, 4)));
        let s = ServerName::parse("[2001:db8::1]:8448").unwrap();
        assert!(s.is_ip_literal());
        assert_eq!(s.host().to_string(), "[2001:db8::1]");
        assert_eq!(ServerName::parse("[::1]").unwrap().port(), None);
        assert!(ServerName::parse("a-b.c-d.example").is_ok());
        assert!(ServerName::parse("localhost").is_ok(), "valid grammar; refused later as a private address");
        assert!(ServerName::parse("xn--caf-dma.example").is_ok());
        assert!(ServerName::parse(&format!("{}.example", "a".repeat(63))).is_ok());
    }

    #[test]
    fn refuses_everything_else() {
        use ServerNameError::*;
        let cases: &[(&str, ServerNameError)] = &[
            ("", Empty),
            ("host/path?x", InvalidChar('/')),
            ("user@host", InvalidChar('@')),
            ("a b", InvalidChar(' ')),
            ("a.example#frag", InvalidChar('#')),
            ("a.example\\x", InvalidChar('\\')),
            ("ex%41mple.org", InvalidChar('%')),
            ("a..b", EmptyLabel),
            (".a", EmptyLabel),
            ("a.", EmptyLabel),
            (":8448", Empty),
            ("a:", InvalidPort),
            ("a:0", InvalidPort),
            ("a:65536", InvalidPort),
            ("a:123456", InvalidPort),
            ("a:+80", InvalidChar('+')),
            ("a:80:80", InvalidPort),
            ("[::1", InvalidIpv6),
            ("[zz::1]", InvalidIpv6),
            ("[::1]x", InvalidIpv6),
            ("[]", InvalidIpv6),
            ("[fe80::1%25eth0]", InvalidChar('%')),
            ("1.2.3.999", InvalidIpv4),
            ("127.1", InvalidIpv4),
            ("2130706433", InvalidIpv4),
            ("0x7f.0.0.1", InvalidIpv4),
            ("evil.0x7f", InvalidIpv4),
            ("01.2.3.4", InvalidIpv4),
            ("a]b", InvalidChar(']')),
        ];
        for (s, want) in cases {
            assert_eq!(ServerName::parse(s).as_ref().err(), Some(want), "{s:?}");
        }
        assert_eq!(ServerName::parse(&format!("{}.example", "a".repeat(64))), Err(LabelTooLong));
        let long = vec!["abcdefgh"; 30].join(".");
        assert_eq!(ServerName::parse(&long), Err(TooLong));
    }

    #[test]
    fn private_addresses() {
        let private = [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "198.18.0.1",
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd12::1",
            "ff02::1",
            "2001:db8::1",
            "fec0::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "2002:7f00:1::1",
            "2002:c0a8:101::",
        ];
        for a in private {
            assert!(is_private_address(a.parse().unwrap()), "{a} should be private");
        }
        let public =
            ["1.1.1.1", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1"];
        for a in public {
            assert!(!is_private_address(a.parse().unwrap()), "{a} should be public");
        }
        assert!(is_localhost_name("localhost") && is_localhost_name("LOCALHOST.") && is_localhost_name("a.localhost"));
        assert!(!is_localhost_name("localhost.example"));
    }
}
