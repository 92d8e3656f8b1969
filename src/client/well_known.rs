//! `GET /.well-known/matrix/server` (spec: server-server API, "Resolving
//! server names" step 3): the response body, and how long an answer is
//! cached. Constants and rules are Synapse's
//! (`synapse/http/federation/well_known_resolver.py`).

use serde_json::Value;

use super::server_name::{ServerName, ServerNameError};

/// Cache period of a valid answer without cache headers: 24 h
/// (`WELL_KNOWN_DEFAULT_CACHE_PERIOD`), with ±10 % jitter
/// (`WELL_KNOWN_DEFAULT_CACHE_PERIOD_JITTER`).
pub const DEFAULT_CACHE_PERIOD_MS: i64 = 24 * 3600 * 1000;
/// Jitter applied to default and failure cache periods (±10 %).
pub const CACHE_PERIOD_JITTER: f64 = 0.1;
/// Cache period of a failure: 1 h (`WELL_KNOWN_INVALID_CACHE_PERIOD`).
pub const INVALID_CACHE_PERIOD_MS: i64 = 3600 * 1000;
/// Cache period of a failure when the server had a valid answer recently:
/// 2 min (`WELL_KNOWN_DOWN_CACHE_PERIOD`).
pub const DOWN_CACHE_PERIOD_MS: i64 = 2 * 60 * 1000;
/// How long after a valid answer expires we remember that there was one:
/// 2 h (`WELL_KNOWN_REMEMBER_DOMAIN_HAD_VALID`).
pub const REMEMBER_HAD_VALID_MS: i64 = 2 * 3600 * 1000;
/// Upper bound of a header-given cache period: 48 h (`WELL_KNOWN_MAX_CACHE_PERIOD`).
pub const MAX_CACHE_PERIOD_MS: i64 = 48 * 3600 * 1000;
/// Lower bound of a header-given cache period: 5 min (`WELL_KNOWN_MIN_CACHE_PERIOD`).
pub const MIN_CACHE_PERIOD_MS: i64 = 5 * 60 * 1000;
/// Largest body read: 50 KiB (`WELL_KNOWN_MAX_SIZE`).
pub const MAX_BODY_BYTES: usize = 50 * 1024;
/// A cached answer is fetched again once this share of its lifetime is left
/// (`WELL_KNOWN_GRACE_PERIOD_FACTOR`); a temporary failure then keeps the old answer.
pub const GRACE_PERIOD_FACTOR: f64 = 0.2;
/// Redirects followed (Twisted's `RedirectAgent` default, which Synapse uses).
pub const MAX_REDIRECTS: u32 = 20;

/// Why a `/.well-known/matrix/server` answer is not used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WellKnownError {
    /// Not a 200.
    #[error("non-200 response {0}")]
    Status(u16),
    /// Not a JSON object.
    #[error("body is not a JSON object")]
    NotJson,
    /// No string `m.server`.
    #[error("no m.server string")]
    NoServer,
    /// `m.server` is not a valid server name.
    #[error("m.server is not a valid server name: {0}")]
    InvalidServer(ServerNameError),
}

/// Parses a 200 answer's body: the delegated server name.
pub fn parse_body(body: &str) -> Result<ServerName, WellKnownError> {
    let v: Value = serde_json::from_str(body).map_err(|_| WellKnownError::NotJson)?;
    let obj = v.as_object().ok_or(WellKnownError::NotJson)?;
    let server = obj.get("m.server").and_then(Value::as_str).ok_or(WellKnownError::NoServer)?;
    ServerName::parse(server).map_err(WellKnownError::InvalidServer)
}

/// The cache period (ms) the response headers ask for (Synapse's
/// `_cache_period_from_headers`): `Some(0)` for `no-store` or an `Expires`
/// that cannot be read (RFC 9111: "already expired"), `max-age` when it is a
/// number, else `Expires` − now; `None` without any of these.
pub fn cache_period_from_headers(cache_control: Option<&str>, expires: Option<&str>, now_ms: i64) -> Option<i64> {
    let mut max_age: Option<Option<&str>> = None;
    let mut no_store = false;
    for directive in cache_control.unwrap_or("").split(',') {
        let (k, v) = match directive.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (directive.trim(), None),
        };
        if k.eq_ignore_ascii_case("no-store") {
            no_store = true;
        } else if k.eq_ignore_ascii_case("max-age") {
            max_age = Some(v);
        }
    }
    if no_store {
        return Some(0);
    }
    if let Some(Some(v)) = max_age {
        if let Ok(secs) = v.parse::<i64>() {
            return Some(secs.saturating_mul(1000));
        }
    }
    let expires = expires?;
    Some(match parse_http_date(expires) {
        Some(t) => t - now_ms,
        None => 0,
    })
}

/// The period a valid answer is cached: the headers' period clamped to
/// [5 min, 48 h], or 24 h × (1 ± 10 %) without cache headers. `jitter` is a
/// random number in [0, 1).
pub fn valid_cache_period(header_period: Option<i64>, jitter: f64) -> i64 {
    match header_period {
        Some(p) => p.clamp(MIN_CACHE_PERIOD_MS, MAX_CACHE_PERIOD_MS),
        None => jittered(DEFAULT_CACHE_PERIOD_MS, jitter),
    }
}

/// A failure's cache period: 2 min if the server had a valid answer
/// recently, else 1 h; ± 10 %.
pub fn failure_cache_period(had_valid_recently: bool, jitter: f64) -> i64 {
    jittered(if had_valid_recently { DOWN_CACHE_PERIOD_MS } else { INVALID_CACHE_PERIOD_MS }, jitter)
}

fn jittered(period: i64, jitter: f64) -> i64 {
    let j = if jitter.is_finite() { jitter.clamp(0.0, 1.0) } else { 0.5 };
    (period as f64 * (1.0 - CACHE_PERIOD_JITTER + 2.0 * CACHE_PERIOD_JITTER * j)) as i64
}

/// Parses an HTTP date (RFC 9110 §5.6.7: IMF-fixdate, and the obsolete
/// RFC 850 and asctime forms) to ms since the epoch.
pub fn parse_http_date(s: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
    let (mut day, mut month, mut year, mut time) = (None, None, None, None);
    for tok in s.split([' ', ',', '-']).filter(|t| !t.is_empty()) {
        if tok.contains(':') {
            let parts: Vec<&str> = tok.split(':').collect();
            if parts.len() != 3 || parts.iter().any(|p| p.len() != 2 || !p.bytes().all(|b| b.is_ascii_digit())) {
                return None;
            }
            let n: Vec<i64> = parts.iter().map(|p| p.parse().unwrap_or(99)).collect();
            if n[0] > 23 || n[1] > 59 || n[2] > 60 {
                return None;
            }
            time = Some(n[0] * 3600 + n[1] * 60 + n[2]);
        } else if tok.bytes().all(|b| b.is_ascii_digit()) {
            let n: i64 = tok.parse().ok()?;
            match tok.len() {
                1 | 2 if day.is_none() => day = Some(n),
                // RFC 850 two-digit years: RFC 9110 says to read a year more
                // than 50 years in the future as the past century's.
                2 => year = Some(if n < 70 { 2000 + n } else { 1900 + n }),
                4 => year = Some(n),
                _ => return None,
            }
        } else if let Some(m) =
            MONTHS.iter().position(|m| tok.len() >= 3 && tok[..3].eq_ignore_ascii_case(m) && tok.len() == 3)
        {
            month = Some(m as i64 + 1);
        } else if tok.eq_ignore_ascii_case("GMT") || tok.eq_ignore_ascii_case("UTC") {
        } else if tok.len() >= 3 && tok.bytes().all(|b| b.is_ascii_alphabetic()) {
            // a day name
        } else {
            return None;
        }
    }
    let (d, m, y, t) = (day?, month?, year?, time?);
    if !(1..=31).contains(&d) || !(1970..=9999).contains(&y) {
        return None;
    }
    Some((days_from_civil(y, m, d) * 86_400 + t) * 1000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        assert_eq!(parse_body(r#"{"m.server":"matrix.example.org:443"}"#).unwrap().as_str(), "matrix.example.org:443");
        assert_eq!(parse_body("not json"), Err(WellKnownError::NotJson));
        assert_eq!(parse_body("[1]"), Err(WellKnownError::NotJson));
        assert_eq!(parse_body(r#"{"m.server":1}"#), Err(WellKnownError::NoServer));
        assert_eq!(parse_body("{}"), Err(WellKnownError::NoServer));
        assert!(matches!(parse_body(r#"{"m.server":"evil/path?x"}"#), Err(WellKnownError::InvalidServer(_))));
        assert!(matches!(parse_body(r#"{"m.server":"https://x.example"}"#), Err(WellKnownError::InvalidServer(_))));
    }

    #[test]
    fn dates() {
        let t = 784_111_777_000; // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(t));
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), Some(t));
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), Some(t));
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("Wed, 29 Feb 2024 12:00:00 GMT"), Some(1_709_208_000_000));
        assert_eq!(parse_http_date("0"), None);
        assert_eq!(parse_http_date("yesterday"), None);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 25:49:37 GMT"), None);
    }

    #[test]
    fn cache_periods() {
        let now = 1_000_000_000_000;
        assert_eq!(cache_period_from_headers(None, None, now), None);
        assert_eq!(cache_period_from_headers(Some("public, max-age=600"), None, now), Some(600_000));
        assert_eq!(cache_period_from_headers(Some("max-age=600, no-store"), None, now), Some(0));
        assert_eq!(cache_period_from_headers(Some("max-age=abc"), None, now), None);
        assert_eq!(
            cache_period_from_headers(Some("max-age"), Some("0"), now),
            Some(0),
            "an unreadable Expires has expired"
        );
        assert_eq!(cache_period_from_headers(None, Some("Thu, 01 Jan 1970 00:00:00 GMT"), 5_000), Some(-5_000));
        assert_eq!(valid_cache_period(Some(60_000), 0.5), MIN_CACHE_PERIOD_MS);
        assert_eq!(valid_cache_period(Some(7 * 24 * 3600 * 1000), 0.5), MAX_CACHE_PERIOD_MS);
        assert_eq!(valid_cache_period(Some(-5), 0.5), MIN_CACHE_PERIOD_MS);
        assert_eq!(valid_cache_period(None, 0.5), DEFAULT_CACHE_PERIOD_MS);
        assert_eq!(valid_cache_period(None, 0.0), DEFAULT_CACHE_PERIOD_MS * 9 / 10);
        assert_eq!(failure_cache_period(false, 0.5), INVALID_CACHE_PERIOD_MS);
        assert_eq!(failure_cache_period(true, 0.5), DOWN_CACHE_PERIOD_MS);
    }
}
