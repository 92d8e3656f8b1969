//! Bindings of the outbound federation client core (`crate::client`) and of
//! the signer rules the key fetcher needs. Conversion only.

use serde_json::{json, Value};
use wasm_bindgen::prelude::*;

use super::{js_error, to_json, WasmKeyRing};
use crate::client::backoff::{self, RequestResult, RetryTimings};
use crate::client::discovery::{Discovery, Resolution, SrvAnswer, SrvRecord, Step, WellKnownFetch};
use crate::client::request::{prepare_request, RequestError};
use crate::client::server_name::{is_localhost_name, is_private_address, ServerName};
use crate::client::well_known;
use crate::room_version::RoomVersionRules;
use crate::signatures::{raw_pdu_has_keys, required_signers, signers_missing_keys};

/// Why `name` is not a valid server name, or `undefined` if it is one.
#[wasm_bindgen(js_name = serverNameError)]
pub fn server_name_error(name: &str) -> Option<String> {
    ServerName::parse(name).err().map(|e| e.to_string())
}

/// Whether `ip` (an IPv4 or IPv6 address, without brackets) is loopback,
/// private, link-local, unspecified or otherwise not to be contacted.
#[wasm_bindgen(js_name = isPrivateAddress)]
pub fn private_address(ip: &str) -> Result<bool, JsError> {
    let ip: std::net::IpAddr = ip.trim_start_matches('[').trim_end_matches(']').parse().map_err(js_error)?;
    Ok(is_private_address(ip))
}

/// Whether a host name means this machine (`localhost`, `*.localhost`).
#[wasm_bindgen(js_name = isLocalhostName)]
pub fn localhost_name(host: &str) -> bool {
    is_localhost_name(host)
}

/// The discovery caches (`.well-known` and SRV answers).
#[wasm_bindgen(js_name = ServerDiscovery)]
#[derive(Default)]
pub struct WasmDiscovery {
    discovery: Discovery,
}

#[wasm_bindgen(js_class = ServerDiscovery)]
impl WasmDiscovery {
    /// Empty caches.
    #[wasm_bindgen(constructor)]
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts resolving a server name (throws if it is not a valid one).
    pub fn resolve(&mut self, server_name: &str, now_ms: f64, srv_available: bool) -> Result<WasmResolution, JsError> {
        let r = self.discovery.resolve(server_name, now_ms as i64, srv_available).map_err(js_error)?;
        Ok(WasmResolution { r })
    }

    /// Number of server names with a cached `.well-known` answer.
    #[wasm_bindgen(getter, js_name = cachedServers)]
    pub fn cached_servers(&self) -> u32 {
        self.discovery.cached_servers() as u32
    }

    /// Forgets every cached answer.
    pub fn clear(&mut self) {
        self.discovery.clear();
    }
}

/// One server name being resolved.
#[wasm_bindgen(js_name = ServerResolution)]
pub struct WasmResolution {
    r: Resolution,
}

#[wasm_bindgen(js_class = ServerResolution)]
impl WasmResolution {
    /// The next step (JSON): `{kind: "fetch", url, maxBytes}`,
    /// `{kind: "srv", name}`, `{kind: "resolved", server: {…}}` or
    /// `{kind: "failed", reason}`.
    pub fn step(&self) -> String {
        to_json(&match self.r.step() {
            Step::FetchWellKnown { url } => {
                json!({"kind": "fetch", "url": url, "maxBytes": well_known::MAX_BODY_BYTES})
            }
            Step::LookupSrv { name } => json!({"kind": "srv", "name": name}),
            Step::Resolved(s) => json!({"kind": "resolved", "server": {
                "serverName": s.server_name,
                "connectHost": s.connect_host,
                "port": s.port,
                "urlBase": s.url_base,
                "hostHeader": s.host_header,
                "tlsServerName": s.tls_server_name,
                "via": s.via,
                "delegated": s.delegated,
                "wellKnownError": s.well_known_error,
            }}),
            Step::Failed { reason } => json!({"kind": "failed", "reason": reason}),
        })
    }

    /// Feeds the `.well-known` answer (JSON): `{status, location?,
    /// cacheControl?, expires?, body}` or `{failed: reason}`.
    #[wasm_bindgen(js_name = onWellKnown)]
    pub fn on_well_known(
        &mut self,
        discovery: &mut WasmDiscovery,
        fetch_json: &str,
        now_ms: f64,
        jitter: f64,
    ) -> Result<(), JsError> {
        let v: Value = serde_json::from_str(fetch_json).map_err(js_error)?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let fetch = match s("failed") {
            Some(reason) => WellKnownFetch::Failed { reason },
            None => WellKnownFetch::Response {
                status: v.get("status").and_then(Value::as_u64).unwrap_or(0).min(999) as u16,
                location: s("location"),
                cache_control: s("cacheControl"),
                expires: s("expires"),
                body: s("body").unwrap_or_default(),
            },
        };
        self.r.on_well_known(&mut discovery.discovery, fetch, now_ms as i64, jitter);
        Ok(())
    }

    /// Feeds the SRV answer (JSON): `{records: [{priority, weight, port,
    /// target}], ttl}` (no records: an empty list) or `{error: reason}`.
    #[wasm_bindgen(js_name = onSrv)]
    pub fn on_srv(
        &mut self,
        discovery: &mut WasmDiscovery,
        answer_json: &str,
        now_ms: f64,
        random: f64,
    ) -> Result<(), JsError> {
        let v: Value = serde_json::from_str(answer_json).map_err(js_error)?;
        let answer = if let Some(reason) = v.get("error") {
            SrvAnswer::Error { reason: reason.as_str().map_or_else(|| reason.to_string(), str::to_owned) }
        } else {
            let num = |r: &Value, k: &str| r.get(k).and_then(Value::as_u64).filter(|n| *n <= 65535).map(|n| n as u16);
            let records = v
                .get("records")
                .and_then(Value::as_array)
                .map(|rs| {
                    rs.iter()
                        .filter_map(|r| {
                            Some(SrvRecord {
                                priority: num(r, "priority")?,
                                weight: num(r, "weight")?,
                                port: num(r, "port")?,
                                target: r.get("target")?.as_str()?.to_owned(),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            let ttl = v.get("ttl").and_then(Value::as_u64).unwrap_or(0).min(u64::from(u32::MAX)) as u32;
            SrvAnswer::Records { records, ttl_secs: ttl }
        };
        self.r.on_srv(&mut discovery.discovery, answer, now_ms as i64, random);
        Ok(())
    }
}

/// Checks and signs an outgoing request: JSON `{destination, method,
/// target, body, authorization}` or `{error: {code, message}}` (code
/// `invalid_server_name` or `invalid_request`).
#[wasm_bindgen(js_name = prepareRequest)]
#[allow(clippy::too_many_arguments)]
pub fn prepare(
    origin: &str,
    key_id: &str,
    seed_b64: &str,
    destination: &str,
    method: &str,
    target: &str,
    body: Option<String>,
    signed: bool,
) -> Result<String, JsError> {
    let key = super::signing_key(origin, key_id, seed_b64)?;
    Ok(to_json(&match prepare_request(&key, destination, method, target, body.as_deref(), signed) {
        Ok(r) => json!({
            "destination": r.destination.as_str(),
            "method": r.method,
            "target": r.target,
            "body": r.body,
            "authorization": r.authorization,
        }),
        Err(e) => {
            let code = match e {
                RequestError::InvalidServerName(_) => "invalid_server_name",
                _ => "invalid_request",
            };
            json!({"error": {"code": code, "message": e.to_string()}})
        }
    }))
}

fn timings_from(v: &Value) -> RetryTimings {
    let n = |k: &str| v.get(k).and_then(Value::as_f64).map(|x| x as i64);
    RetryTimings {
        failure_ts: n("failureTs"),
        retry_last_ts: n("retryLastTs").unwrap_or(0),
        retry_interval: n("retryInterval").unwrap_or(0),
    }
}

/// When a destination may be contacted again (ms), if its timings (JSON
/// `{failureTs, retryLastTs, retryInterval}`) say it is backing off at `nowMs`.
#[wasm_bindgen(js_name = backingOffUntil)]
pub fn backing_off_until(timings_json: &str, now_ms: f64) -> Result<Option<f64>, JsError> {
    let v: Value = serde_json::from_str(timings_json).map_err(js_error)?;
    Ok(timings_from(&v).backing_off_until(now_ms as i64).map(|t| t as f64))
}

/// The timings after a request (JSON in and out; `null` out when clear).
/// `status`: the HTTP status, or 0 for no response.
#[wasm_bindgen(js_name = backoffAfterRequest)]
pub fn backoff_after_request(
    timings_json: &str,
    status: u16,
    now_ms: f64,
    random: f64,
    backoff_on_404: bool,
    ignore_backoff: bool,
) -> Result<String, JsError> {
    let v: Value = serde_json::from_str(timings_json).map_err(js_error)?;
    let result = match status {
        0 => RequestResult::NoResponse,
        200..=299 => RequestResult::Success,
        s => RequestResult::Status(s),
    };
    let t = backoff::after_request(timings_from(&v), result, now_ms as i64, random, backoff_on_404, ignore_backoff);
    Ok(to_json(&if t.is_clear() {
        Value::Null
    } else {
        json!({"failureTs": t.failure_ts, "retryLastTs": t.retry_last_ts, "retryInterval": t.retry_interval})
    }))
}

/// The servers whose signatures a PDU needs in a room version: the sender's
/// server, and for a restricted join the authorising server.
#[wasm_bindgen(js_name = requiredSigners)]
pub fn signers(raw: &str, room_version: &str) -> Result<Vec<String>, JsError> {
    let rules = RoomVersionRules::supported(room_version).map_err(js_error)?;
    let pdu = crate::pdu::parse_pdu(raw, rules).map_err(js_error)?;
    required_signers(&pdu, rules).map_err(js_error)
}

/// [`pdu_key_needs`] of each PDU (a JSON array, in order), with `null` for
/// each PDU whose signers' keys `keys` holds ([`raw_pdu_has_keys`]: read
/// without computing its event ID, which a fetcher needs only for a PDU it
/// refuses).
#[wasm_bindgen(js_name = pduKeyNeedsBatch)]
pub fn pdu_key_needs_batch(raws: Vec<String>, room_version: &str, keys: &WasmKeyRing) -> Result<String, JsError> {
    let rules = RoomVersionRules::supported(room_version).map_err(js_error)?;
    let mut out = String::from("[");
    for (i, raw) in raws.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if raw_pdu_has_keys(raw, rules, &keys.ring) {
            out.push_str("null");
        } else {
            out.push_str(&pdu_key_needs(raw, room_version, keys)?);
        }
    }
    out.push(']');
    Ok(out)
}

/// What checking a PDU's signatures needs (JSON): `{eventId, signers,
/// missing}` — the required signers, and those whose keys `keys` lacks —
/// or `{error}` when the PDU does not parse (it will be dropped anyway).
#[wasm_bindgen(js_name = pduKeyNeeds)]
pub fn pdu_key_needs(raw: &str, room_version: &str, keys: &WasmKeyRing) -> Result<String, JsError> {
    let rules = RoomVersionRules::supported(room_version).map_err(js_error)?;
    let pdu = match crate::pdu::parse_pdu(raw, rules) {
        Ok(p) => p,
        Err(e) => return Ok(to_json(&json!({"error": e.to_string()}))),
    };
    let (signers, missing) = match (required_signers(&pdu, rules), signers_missing_keys(&pdu, rules, &keys.ring)) {
        (Ok(s), Ok(m)) => (s, m),
        (Err(e), _) | (_, Err(e)) => return Ok(to_json(&json!({"eventId": pdu.event_id.as_str(), "error": e}))),
    };
    Ok(to_json(&json!({"eventId": pdu.event_id.as_str(), "signers": signers, "missing": missing})))
}
