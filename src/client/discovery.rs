//! Server discovery (spec: server-server API, "Resolving server names"), as
//! a state machine the transport drives: [`Discovery::resolve`] starts a
//! [`Resolution`]; its [`Resolution::step`] says what to do next — fetch a
//! `/.well-known/matrix/server` URL, look up an SRV record, or use the
//! [`ResolvedServer`] — and the transport feeds each answer back
//! ([`Resolution::on_well_known`], [`Resolution::on_srv`]). No I/O, no clock:
//! times and random numbers are parameters.
//!
//! The steps, for a server name `hostname[:port]`:
//!
//! 1. `hostname` is an IP literal: that IP, the port or 8448; `Host` is the
//!    server name; the certificate must be valid for the IP.
//! 2. An explicit port: `hostname:port`; `Host` is the server name; the
//!    certificate must be valid for `hostname`.
//! 3. `GET https://hostname/.well-known/matrix/server` (cached; redirects
//!    followed, at most [`MAX_REDIRECTS`]). A valid `m.server` names
//!    `delegated_hostname[:delegated_port]`:
//!    1. an IP literal: that IP, the port or 8448; `Host` is the delegated
//!       name (with its port, if given);
//!    2. with a port: `delegated_hostname:delegated_port`; `Host` is
//!       `delegated_hostname:delegated_port`;
//!    3. without: SRV `_matrix-fed._tcp.<delegated_hostname>`, then
//!    4. the deprecated `_matrix._tcp.<delegated_hostname>`, then
//!    5. `delegated_hostname:8448`; `Host` and certificate are
//!       `delegated_hostname`.
//! 4. No valid `.well-known`: SRV `_matrix-fed._tcp.<hostname>`;
//! 5. then the deprecated `_matrix._tcp.<hostname>`;
//! 6. then `hostname:8448`. `Host` and certificate are `hostname`.
//!
//! SRV steps run only when the host can look records up (`srv_available`);
//! otherwise they find nothing.

use super::cache::WellKnownEntry;
pub use super::cache::{Discovery, MAX_CACHED_SERVERS, MAX_SRV_CACHE_MS};
use super::server_name::{Host, ServerName, ServerNameError, DEFAULT_FEDERATION_PORT};
use super::srv::{choose_srv, srv_name};
pub use super::srv::{SrvAnswer, SrvRecord};
use super::well_known::{self, WellKnownError, GRACE_PERIOD_FACTOR, MAX_REDIRECTS, REMEMBER_HAD_VALID_MS};

/// Where to send a server's federation requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedServer {
    /// The server name asked about.
    pub server_name: String,
    /// The host to connect to (an IP literal, `[…]` for IPv6, or a DNS name).
    pub connect_host: String,
    /// The port to connect to.
    pub port: u16,
    /// `https://{connect_host}:{port}`.
    pub url_base: String,
    /// The `Host` header.
    pub host_header: String,
    /// The name the server's TLS certificate must be valid for (and the
    /// SNI, unless it is an IP address).
    pub tls_server_name: String,
    /// Which spec step gave the answer (`ip_literal`, `explicit_port`,
    /// `well_known_ip_literal`, `well_known_explicit_port`, `well_known_srv`,
    /// `well_known_deprecated_srv`, `well_known_default_port`, `srv`,
    /// `deprecated_srv`, `default_port`).
    pub via: &'static str,
    /// The delegated server name, when `.well-known` delegated.
    pub delegated: Option<String>,
    /// Why `.well-known` gave no delegation (now or when cached), if it failed.
    pub well_known_error: Option<String>,
}

/// What the transport must do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// `GET url` (no authentication, no redirect following: report 3xx with
    /// their `Location`), reading at most [`well_known::MAX_BODY_BYTES`].
    FetchWellKnown {
        /// The URL (`https://…`).
        url: String,
    },
    /// Look up SRV records of `name` (e.g. `_matrix-fed._tcp.example.org`).
    LookupSrv {
        /// The record name.
        name: String,
    },
    /// Done: send requests here.
    Resolved(ResolvedServer),
    /// Discovery failed (an SRV lookup error, or a service the SRV records
    /// mark as unavailable).
    Failed {
        /// Why.
        reason: String,
    },
}

/// A `.well-known` fetch's result, as the transport saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WellKnownFetch {
    /// A complete response.
    Response {
        /// HTTP status.
        status: u16,
        /// `Location`, resolved against the request URL (for 3xx).
        location: Option<String>,
        /// `Cache-Control`.
        cache_control: Option<String>,
        /// `Expires`.
        expires: Option<String>,
        /// The body (at most [`well_known::MAX_BODY_BYTES`]).
        body: String,
    },
    /// No response: a network or TLS error, a timeout, a refused address, or
    /// a body over the size cap.
    Failed {
        /// Why.
        reason: String,
    },
}

/// Where a resolution is.
#[derive(Clone, Debug)]
enum State {
    /// Fetching `.well-known` (`redirects` so far).
    WellKnown {
        url: String,
        redirects: u32,
    },
    /// Looking up SRV records: `deprecated` is step 5 (`_matrix._tcp`).
    Srv {
        host: String,
        deprecated: bool,
        delegated: Option<String>,
    },
    Done(Step),
}

/// One server name being resolved. Drive it with [`Resolution::step`] and
/// the `on_*` methods until the step is [`Step::Resolved`] or [`Step::Failed`].
#[derive(Clone, Debug)]
pub struct Resolution {
    name: ServerName,
    srv_available: bool,
    state: State,
    /// A cached delegation past its grace point, used if the refetch fails
    /// temporarily.
    stale: Option<ServerName>,
    /// Why `.well-known` failed, for the resolved server.
    well_known_error: Option<String>,
}

impl Discovery {
    /// Starts resolving `server_name` (refused if it is not a valid server
    /// name). `srv_available`: whether the host can look up SRV records.
    pub fn resolve(
        &mut self,
        server_name: &str,
        now_ms: i64,
        srv_available: bool,
    ) -> Result<Resolution, ServerNameError> {
        let name = ServerName::parse(server_name)?;
        let mut r = Resolution {
            name,
            srv_available,
            state: State::Done(Step::Failed { reason: String::new() }),
            stale: None,
            well_known_error: None,
        };
        r.start(self, now_ms);
        Ok(r)
    }
}

impl Resolution {
    /// The server name being resolved.
    pub fn server_name(&self) -> &ServerName {
        &self.name
    }

    /// What to do next.
    pub fn step(&self) -> Step {
        match &self.state {
            State::WellKnown { url, .. } => Step::FetchWellKnown { url: url.clone() },
            State::Srv { host, deprecated, .. } => Step::LookupSrv { name: srv_name(host, *deprecated) },
            State::Done(step) => step.clone(),
        }
    }

    fn start(&mut self, discovery: &mut Discovery, now_ms: i64) {
        let name = &self.name;
        // Step 1: an IP literal.
        if name.is_ip_literal() {
            let host = name.host().to_string();
            let port = name.port().unwrap_or(DEFAULT_FEDERATION_PORT);
            self.finish(resolved(name, &host, port, name.as_str(), &ip_text(name.host()), "ip_literal", None));
            return;
        }
        let Host::Dns(hostname) = name.host().clone() else { unreachable!("IP literals were handled") };
        // Step 2: an explicit port.
        if let Some(port) = name.port() {
            self.finish(resolved(name, &hostname, port, name.as_str(), &hostname, "explicit_port", None));
            return;
        }
        // Step 3: `.well-known`, from the cache while fresh.
        if let Some(e) = discovery.well_known.get(&hostname) {
            let ttl = e.expires_at - e.stored_at;
            if (now_ms as f64) < e.expires_at as f64 - GRACE_PERIOD_FACTOR * ttl as f64 {
                let delegated = e.delegated.clone();
                self.well_known_error = e.error.clone();
                self.after_well_known(discovery, delegated, now_ms);
                return;
            }
            if now_ms < e.expires_at {
                self.stale = e.delegated.clone();
            }
        }
        self.state = State::WellKnown { url: format!("https://{hostname}/.well-known/matrix/server"), redirects: 0 };
    }

    /// Feeds the answer to [`Step::FetchWellKnown`]. `jitter` is a random
    /// number in [0, 1) (cache periods are spread by ±10 %).
    pub fn on_well_known(&mut self, discovery: &mut Discovery, fetch: WellKnownFetch, now_ms: i64, jitter: f64) {
        let State::WellKnown { redirects, .. } = self.state.clone() else { return };
        let Host::Dns(hostname) = self.name.host().clone() else { return };
        let had_valid = discovery.had_valid_until.get(&hostname).is_some_and(|&u| u > now_ms);
        let outcome: Result<(ServerName, i64), (String, bool)> = match fetch {
            WellKnownFetch::Failed { reason } => Err((reason, true)),
            WellKnownFetch::Response { status, location, cache_control, expires, body } => {
                if (300..400).contains(&status) && location.is_some() {
                    let location = location.unwrap_or_default();
                    if redirects >= MAX_REDIRECTS {
                        Err((format!("more than {MAX_REDIRECTS} redirects"), true))
                    } else if !location.starts_with("https://") {
                        Err((format!("redirect to a non-https URL {location:?}"), false))
                    } else {
                        self.state = State::WellKnown { url: location, redirects: redirects + 1 };
                        return;
                    }
                } else if (500..600).contains(&status) {
                    Err((WellKnownError::Status(status).to_string(), true))
                } else if status != 200 {
                    Err((WellKnownError::Status(status).to_string(), false))
                } else {
                    match well_known::parse_body(&body) {
                        Ok(delegated) => {
                            let headers = well_known::cache_period_from_headers(
                                cache_control.as_deref(),
                                expires.as_deref(),
                                now_ms,
                            );
                            Ok((delegated, well_known::valid_cache_period(headers, jitter)))
                        }
                        Err(e) => Err((e.to_string(), false)),
                    }
                }
            }
        };
        let delegated = match outcome {
            Ok((delegated, period)) => {
                discovery.store_well_known(
                    &hostname,
                    WellKnownEntry {
                        delegated: Some(delegated.clone()),
                        error: None,
                        stored_at: now_ms,
                        expires_at: now_ms + period,
                    },
                );
                discovery.mark_had_valid(&hostname, now_ms + period + REMEMBER_HAD_VALID_MS, now_ms);
                Some(delegated)
            }
            // A temporary failure while an earlier answer is still valid: keep using it.
            Err((_, true)) if self.stale.is_some() => self.stale.clone(),
            Err((reason, _)) => {
                self.well_known_error = Some(reason.clone());
                let period = well_known::failure_cache_period(had_valid, jitter);
                discovery.store_well_known(
                    &hostname,
                    WellKnownEntry {
                        delegated: None,
                        error: Some(reason),
                        stored_at: now_ms,
                        expires_at: now_ms + period,
                    },
                );
                None
            }
        };
        self.after_well_known(discovery, delegated, now_ms);
    }

    /// Step 3's sub-steps for a delegation, or step 4 without one.
    fn after_well_known(&mut self, discovery: &mut Discovery, delegated: Option<ServerName>, now_ms: i64) {
        let name = self.name.clone();
        let Some(d) = delegated else {
            let Host::Dns(hostname) = name.host() else { return };
            self.begin_srv(discovery, hostname.clone(), None, now_ms);
            return;
        };
        let delegated_text = Some(d.as_str().to_owned());
        match d.host() {
            // 3.1: an IP literal; `Host` is the IP (with the port, if one was given).
            Host::Ipv4(_) | Host::Ipv6(_) => {
                let host = d.host().to_string();
                let port = d.port().unwrap_or(DEFAULT_FEDERATION_PORT);
                let step = resolved(
                    &name,
                    &host,
                    port,
                    d.as_str(),
                    &ip_text(d.host()),
                    "well_known_ip_literal",
                    delegated_text,
                );
                self.finish(step);
            }
            Host::Dns(dh) => match d.port() {
                // 3.2: a port; `Host` is `delegated_hostname:delegated_port`.
                Some(port) => {
                    let step = resolved(&name, dh, port, d.as_str(), dh, "well_known_explicit_port", delegated_text);
                    self.finish(step);
                }
                // 3.3–3.5: SRV records of the delegated name, then 8448.
                None => self.begin_srv(discovery, dh.clone(), delegated_text, now_ms),
            },
        }
    }

    fn begin_srv(&mut self, discovery: &mut Discovery, host: String, delegated: Option<String>, now_ms: i64) {
        self.state = State::Srv { host, deprecated: false, delegated };
        self.srv_from_cache(discovery, now_ms);
    }

    /// Answers SRV steps from the cache (or, without a resolver, with "no
    /// records") until a lookup is needed or the resolution is done.
    fn srv_from_cache(&mut self, discovery: &mut Discovery, now_ms: i64) {
        while let State::Srv { host, deprecated, .. } = &self.state {
            let name = srv_name(host, *deprecated);
            if !self.srv_available {
                self.srv_records(Vec::new(), 0.0);
                continue;
            }
            match discovery.srv.get(&name) {
                Some(e) if e.expires_at > now_ms => {
                    let records = e.records.clone();
                    self.srv_records(records, 0.0);
                }
                _ => return,
            }
        }
    }

    /// Feeds the answer to [`Step::LookupSrv`]. `random` is a random number
    /// in [0, 1) (the weighted choice among records of one priority).
    pub fn on_srv(&mut self, discovery: &mut Discovery, answer: SrvAnswer, now_ms: i64, random: f64) {
        let State::Srv { host, deprecated, .. } = &self.state else { return };
        let name = srv_name(host, *deprecated);
        match answer {
            SrvAnswer::Error { reason } => {
                // Synapse (`SrvResolver.resolve_service`) fails the request on a
                // resolver error that is not "no such name".
                self.finish(Step::Failed { reason: format!("SRV lookup of {name} failed: {reason}") });
            }
            SrvAnswer::Records { records, ttl_secs } => {
                discovery.store_srv(&name, records.clone(), ttl_secs, now_ms);
                self.srv_records(records, random);
                self.srv_from_cache(discovery, now_ms);
            }
        }
    }

    /// Uses SRV records (RFC 2782: lowest priority, then weighted choice).
    fn srv_records(&mut self, records: Vec<SrvRecord>, random: f64) {
        let State::Srv { host, deprecated, delegated } = self.state.clone() else { return };
        let name = self.name.clone();
        // A single record with target "." says the service is not offered here.
        if records.len() == 1 && records[0].target.trim_end_matches('.').is_empty() {
            self.finish(Step::Failed {
                reason: format!("{} says the service is unavailable", srv_name(&host, deprecated)),
            });
            return;
        }
        let usable: Vec<&SrvRecord> = records
            .iter()
            .filter(|r| {
                r.port != 0
                    && ServerName::parse(r.target.trim_end_matches('.'))
                        .is_ok_and(|t| matches!(t.host(), Host::Dns(_)) && t.port().is_none())
            })
            .collect();
        let wk = delegated.is_some();
        if let Some(pick) = choose_srv(&usable, random) {
            let target = pick.target.trim_end_matches('.');
            let via = match (wk, deprecated) {
                (true, false) => "well_known_srv",
                (true, true) => "well_known_deprecated_srv",
                (false, false) => "srv",
                (false, true) => "deprecated_srv",
            };
            // `Host` and the certificate name stay the (delegated) hostname.
            self.finish(resolved(&name, target, pick.port, &host, &host, via, delegated));
            return;
        }
        if !deprecated {
            self.state = State::Srv { host, deprecated: true, delegated };
            return;
        }
        let via = if wk { "well_known_default_port" } else { "default_port" };
        self.finish(resolved(&name, &host, DEFAULT_FEDERATION_PORT, &host, &host, via, delegated));
    }

    fn finish(&mut self, mut step: Step) {
        if let Step::Resolved(s) = &mut step {
            s.well_known_error = self.well_known_error.clone();
        }
        self.state = State::Done(step);
    }
}

/// An IP literal as a certificate names it (no brackets).
fn ip_text(h: &Host) -> String {
    h.ip().map(|ip| ip.to_string()).unwrap_or_default()
}

fn resolved(
    name: &ServerName,
    connect_host: &str,
    port: u16,
    host_header: &str,
    tls: &str,
    via: &'static str,
    delegated: Option<String>,
) -> Step {
    Step::Resolved(ResolvedServer {
        server_name: name.as_str().to_owned(),
        connect_host: connect_host.to_owned(),
        port,
        url_base: format!("https://{connect_host}:{port}"),
        host_header: host_header.to_owned(),
        tls_server_name: tls.to_owned(),
        via,
        delegated,
        well_known_error: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn ok(body: &str) -> WellKnownFetch {
        WellKnownFetch::Response { status: 200, location: None, cache_control: None, expires: None, body: body.into() }
    }

    fn status(s: u16) -> WellKnownFetch {
        WellKnownFetch::Response { status: s, location: None, cache_control: None, expires: None, body: String::new() }
    }

    fn done(r: &Resolution) -> ResolvedServer {
        match r.step() {
            Step::Resolved(s) => s,
            other => panic!("not resolved: {other:?}"),
        }
    }

    #[test]
    fn step_1_ip_literals() {
        let mut d = Discovery::new();
        let r = d.resolve("1.2.3.4", NOW, true).unwrap();
        let s = done(&r);
        assert_eq!(
            (s.url_base.as_str(), s.host_header.as_str(), s.tls_server_name.as_str(), s.via),
            ("https://1.2.3.4:8448", "1.2.3.4", "1.2.3.4", "ip_literal")
        );
        let s = done(&d.resolve("[2001:db8::1]:443", NOW, true).unwrap());
        assert_eq!(
            (s.url_base.as_str(), s.host_header.as_str(), s.tls_server_name.as_str()),
            ("https://[2001:db8::1]:443", "[2001:db8::1]:443", "2001:db8::1")
        );
        assert_eq!(d.cached_servers(), 0, "no .well-known for IP literals");
    }

    #[test]
    fn step_2_explicit_port() {
        let mut d = Discovery::new();
        let s = done(&d.resolve("hs1.test:8448", NOW, true).unwrap());
        assert_eq!(
            (s.url_base.as_str(), s.host_header.as_str(), s.tls_server_name.as_str(), s.via),
            ("https://hs1.test:8448", "hs1.test:8448", "hs1.test", "explicit_port")
        );
    }

    #[test]
    fn invalid_names_are_refused() {
        let mut d = Discovery::new();
        for bad in ["host/path?x", "user@host", "a b", "a..b", "", "x:0"] {
            assert!(d.resolve(bad, NOW, true).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn step_3_delegation_forms() {
        let cases = [
            (r#"{"m.server":"5.6.7.8"}"#, "https://5.6.7.8:8448", "5.6.7.8", "5.6.7.8", "well_known_ip_literal"),
            (r#"{"m.server":"[::2]:9000"}"#, "https://[::2]:9000", "[::2]:9000", "::2", "well_known_ip_literal"),
            (
                r#"{"m.server":"matrix.example.org:443"}"#,
                "https://matrix.example.org:443",
                "matrix.example.org:443",
                "matrix.example.org",
                "well_known_explicit_port",
            ),
            (
                r#"{"m.server":"matrix.example.org"}"#,
                "https://matrix.example.org:8448",
                "matrix.example.org",
                "matrix.example.org",
                "well_known_default_port",
            ),
        ];
        for (body, url, host, tls, via) in cases {
            let mut d = Discovery::new();
            let mut r = d.resolve("example.org", NOW, false).unwrap();
            assert_eq!(r.step(), Step::FetchWellKnown { url: "https://example.org/.well-known/matrix/server".into() });
            r.on_well_known(&mut d, ok(body), NOW, 0.5);
            let s = done(&r);
            assert_eq!(
                (s.url_base.as_str(), s.host_header.as_str(), s.tls_server_name.as_str(), s.via),
                (url, host, tls, via),
                "{body}"
            );
            assert_eq!(s.server_name, "example.org");
        }
    }

    #[test]
    fn step_3_srv_of_the_delegated_name() {
        let mut d = Discovery::new();
        let mut r = d.resolve("example.org", NOW, true).unwrap();
        r.on_well_known(&mut d, ok(r#"{"m.server":"matrix.example.org"}"#), NOW, 0.5);
        assert_eq!(r.step(), Step::LookupSrv { name: "_matrix-fed._tcp.matrix.example.org".into() });
        r.on_srv(&mut d, SrvAnswer::Records { records: vec![], ttl_secs: 300 }, NOW, 0.5);
        assert_eq!(r.step(), Step::LookupSrv { name: "_matrix._tcp.matrix.example.org".into() });
        let rec = SrvRecord { priority: 10, weight: 5, port: 8443, target: "fed.example.net.".into() };
        r.on_srv(&mut d, SrvAnswer::Records { records: vec![rec], ttl_secs: 300 }, NOW, 0.5);
        let s = done(&r);
        assert_eq!(
            (s.url_base.as_str(), s.host_header.as_str(), s.tls_server_name.as_str(), s.via),
            ("https://fed.example.net:8443", "matrix.example.org", "matrix.example.org", "well_known_deprecated_srv")
        );
    }

    #[test]
    fn steps_4_to_6_without_well_known() {
        // 4: _matrix-fed._tcp, Host stays the server name.
        let mut d = Discovery::new();
        let mut r = d.resolve("example.org", NOW, true).unwrap();
        r.on_well_known(&mut d, status(404), NOW, 0.5);
        assert_eq!(r.step(), Step::LookupSrv { name: "_matrix-fed._tcp.example.org".into() });
        let recs = vec![
            SrvRecord { priority: 20, weight: 0, port: 1, target: "slow.example.net".into() },
            SrvRecord { priority: 10, weight: 0, port: 9449, target: "srv.example.net".into() },
        ];
        r.on_srv(&mut d, SrvAnswer::Records { records: recs, ttl_secs: 60 }, NOW, 0.9);
        let s = done(&r);
        assert_eq!(
            (s.url_base.as_str(), s.host_header.as_str(), s.tls_server_name.as_str(), s.via),
            ("https://srv.example.net:9449", "example.org", "example.org", "srv")
        );
        // Cached: the next resolution needs no I/O at all.
        let r = d.resolve("example.org", NOW + 1000, true).unwrap();
        assert_eq!(done(&r).url_base, "https://srv.example.net:9449");
        // 6: nothing anywhere → hostname:8448.
        let mut d = Discovery::new();
        let mut r = d.resolve("example.org", NOW, true).unwrap();
        r.on_well_known(&mut d, WellKnownFetch::Failed { reason: "connection refused".into() }, NOW, 0.5);
        r.on_srv(&mut d, SrvAnswer::Records { records: vec![], ttl_secs: 60 }, NOW, 0.5);
        r.on_srv(&mut d, SrvAnswer::Records { records: vec![], ttl_secs: 60 }, NOW, 0.5);
        let s = done(&r);
        assert_eq!(
            (s.url_base.as_str(), s.host_header.as_str(), s.via),
            ("https://example.org:8448", "example.org", "default_port")
        );
        // Without a resolver the SRV steps find nothing.
        let mut d = Discovery::new();
        let mut r = d.resolve("example.org", NOW, false).unwrap();
        r.on_well_known(&mut d, status(404), NOW, 0.5);
        assert_eq!(done(&r).via, "default_port");
    }

    #[test]
    fn srv_errors_and_unavailable_service() {
        let mut d = Discovery::new();
        let mut r = d.resolve("example.org", NOW, true).unwrap();
        r.on_well_known(&mut d, status(404), NOW, 0.5);
        r.on_srv(&mut d, SrvAnswer::Error { reason: "SERVFAIL".into() }, NOW, 0.5);
        assert!(matches!(r.step(), Step::Failed { reason } if reason.contains("SERVFAIL")));
        let mut d = Discovery::new();
        let mut r = d.resolve("example.org", NOW, true).unwrap();
        r.on_well_known(&mut d, status(404), NOW, 0.5);
        let dot = SrvRecord { priority: 0, weight: 0, port: 0, target: ".".into() };
        r.on_srv(&mut d, SrvAnswer::Records { records: vec![dot], ttl_secs: 60 }, NOW, 0.5);
        assert!(matches!(r.step(), Step::Failed { .. }));
        // Records whose targets are not host names are ignored.
        let mut d = Discovery::new();
        let mut r = d.resolve("example.org", NOW, true).unwrap();
        r.on_well_known(&mut d, status(404), NOW, 0.5);
        let bad = SrvRecord { priority: 0, weight: 0, port: 443, target: "evil/x".into() };
        r.on_srv(&mut d, SrvAnswer::Records { records: vec![bad], ttl_secs: 60 }, NOW, 0.5);
        assert_eq!(r.step(), Step::LookupSrv { name: "_matrix._tcp.example.org".into() });
    }

    #[test]
    fn well_known_caching_and_expiry() {
        let mut d = Discovery::new();
        let mut r = d.resolve("example.org", NOW, false).unwrap();
        let resp = WellKnownFetch::Response {
            status: 200,
            location: None,
            cache_control: Some("max-age=3600".into()),
            expires: None,
            body: r#"{"m.server":"m.example.org:443"}"#.into(),
        };
        r.on_well_known(&mut d, resp, NOW, 0.5);
        assert_eq!(done(&r).url_base, "https://m.example.org:443");
        // Fresh for 80 % of the hour: no fetch.
        let r = d.resolve("example.org", NOW + 47 * 60_000, false).unwrap();
        assert_eq!(done(&r).url_base, "https://m.example.org:443");
        // In the grace period: fetched again; a temporary failure keeps the old answer.
        let mut r = d.resolve("example.org", NOW + 50 * 60_000, false).unwrap();
        assert!(matches!(r.step(), Step::FetchWellKnown { .. }));
        r.on_well_known(&mut d, status(503), NOW + 50 * 60_000, 0.5);
        assert_eq!(done(&r).url_base, "https://m.example.org:443");
        // Expired: fetched; a permanent failure now means no delegation,
        // cached for the short "down" period since it had a valid answer.
        let t = NOW + 61 * 60_000;
        let mut r = d.resolve("example.org", t, false).unwrap();
        assert!(matches!(r.step(), Step::FetchWellKnown { .. }));
        r.on_well_known(&mut d, status(404), t, 0.5);
        assert_eq!(done(&r).url_base, "https://example.org:8448");
        assert_eq!(done(&d.resolve("example.org", t + 60_000, false).unwrap()).url_base, "https://example.org:8448");
        assert!(matches!(d.resolve("example.org", t + 3 * 60_000, false).unwrap().step(), Step::FetchWellKnown { .. }));
    }

    #[test]
    fn failures_are_cached_for_an_hour() {
        let mut d = Discovery::new();
        let mut r = d.resolve("example.org", NOW, false).unwrap();
        r.on_well_known(&mut d, ok("{not json"), NOW, 0.5);
        assert_eq!(done(&r).via, "default_port");
        assert_eq!(done(&r).well_known_error.as_deref(), Some("body is not a JSON object"));
        // Fresh until the grace period (the last 20 %): 48 min.
        assert_eq!(done(&d.resolve("example.org", NOW + 47 * 60_000, false).unwrap()).via, "default_port");
        assert!(matches!(
            d.resolve("example.org", NOW + 49 * 60_000, false).unwrap().step(),
            Step::FetchWellKnown { .. }
        ));
        assert!(matches!(
            d.resolve("example.org", NOW + 61 * 60_000, false).unwrap().step(),
            Step::FetchWellKnown { .. }
        ));
        // An oversized body (reported by the transport) is a failure too.
        let mut d = Discovery::new();
        let mut r = d.resolve("example.org", NOW, false).unwrap();
        r.on_well_known(&mut d, WellKnownFetch::Failed { reason: "body over 51200 bytes".into() }, NOW, 0.5);
        assert_eq!(done(&r).via, "default_port");
        // An invalid delegated name is not used.
        let mut d = Discovery::new();
        let mut r = d.resolve("example.org", NOW, false).unwrap();
        r.on_well_known(&mut d, ok(r#"{"m.server":"127.0.0.1/x"}"#), NOW, 0.5);
        assert_eq!(done(&r).url_base, "https://example.org:8448");
    }

    #[test]
    fn redirects() {
        let mut d = Discovery::new();
        let mut r = d.resolve("example.org", NOW, false).unwrap();
        let redirect = |to: &str| WellKnownFetch::Response {
            status: 301,
            location: Some(to.into()),
            cache_control: None,
            expires: None,
            body: String::new(),
        };
        r.on_well_known(&mut d, redirect("https://www.example.org/.well-known/matrix/server"), NOW, 0.5);
        assert_eq!(r.step(), Step::FetchWellKnown { url: "https://www.example.org/.well-known/matrix/server".into() });
        r.on_well_known(&mut d, ok(r#"{"m.server":"m.example.org:443"}"#), NOW, 0.5);
        assert_eq!(done(&r).host_header, "m.example.org:443");
        // A loop ends after MAX_REDIRECTS.
        let mut d = Discovery::new();
        let mut r = d.resolve("loop.example", NOW, false).unwrap();
        let mut n = 0;
        while let Step::FetchWellKnown { .. } = r.step() {
            r.on_well_known(&mut d, redirect("https://loop.example/.well-known/matrix/server"), NOW, 0.5);
            n += 1;
            assert!(n <= MAX_REDIRECTS + 1);
        }
        assert_eq!(n, MAX_REDIRECTS + 1);
        assert_eq!(done(&r).via, "default_port");
        // Never to plain HTTP.
        let mut d = Discovery::new();
        let mut r = d.resolve("example.org", NOW, false).unwrap();
        r.on_well_known(&mut d, redirect("http://example.org/x"), NOW, 0.5);
        assert_eq!(done(&r).via, "default_port");
    }

    #[test]
    fn caches_are_bounded() {
        let mut d = Discovery::new();
        for i in 0..MAX_CACHED_SERVERS + 50 {
            let name = format!("s{i}.example");
            let mut r = d.resolve(&name, NOW + i as i64, false).unwrap();
            r.on_well_known(&mut d, status(404), NOW + i as i64, 0.5);
        }
        assert_eq!(d.cached_servers(), MAX_CACHED_SERVERS);
    }
}
