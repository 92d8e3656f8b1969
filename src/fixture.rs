//! The conformance fixtures of `contract.md`: rooms (`matrix-dag-oracle/1`),
//! queries (`roomdag-queries/1`) and answers (`roomdag-answers/1`).
//!
//! Rooms are read as a stream: each event is handed over as soon as it is
//! parsed, its PDU as raw JSON text, so replaying a 20k-event room never
//! holds the whole file in memory.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::signing::{PinnedKeys, ServerSigningKey};

/// A fixture problem.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// Reading the file failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The JSON is malformed or not of the expected shape.
    #[error("invalid fixture: {0}")]
    Json(#[from] serde_json::Error),
    /// A semantic problem (wrong format tag, bad key, …).
    #[error("invalid fixture: {0}")]
    Invalid(String),
}

/// One server of a fixture.
#[derive(Clone, Debug, Deserialize)]
pub struct FixtureServer {
    /// key ID → unpadded base64 public key.
    pub verify_keys: BTreeMap<String, String>,
    /// The signing key seed (lets tests sign requests as this server).
    #[serde(default)]
    pub signing_key_seed: Option<String>,
    /// The server's users.
    #[serde(default)]
    pub users: Vec<String>,
}

/// A fixture's header: everything but the events.
#[derive(Clone, Debug, Default)]
pub struct FixtureHeader {
    /// `format` (must be `matrix-dag-oracle/1`).
    pub format: Option<String>,
    /// The room version.
    pub room_version: Option<String>,
    /// The room ID the generator used.
    pub room_id: Option<String>,
    /// The servers and their keys.
    pub servers: BTreeMap<String, FixtureServer>,
}

impl FixtureHeader {
    /// Every server's verify keys, pinned.
    pub fn pinned_keys(&self) -> Result<PinnedKeys, FixtureError> {
        let mut keys = PinnedKeys::new();
        for (name, s) in &self.servers {
            for (key_id, b64) in &s.verify_keys {
                keys.insert(name, key_id, b64).map_err(|e| FixtureError::Invalid(e.to_string()))?;
            }
        }
        Ok(keys)
    }

    /// A server's signing key, from its seed.
    pub fn signing_key(&self, server: &str) -> Option<ServerSigningKey> {
        let s = self.servers.get(server)?;
        let key_id = s.verify_keys.keys().next()?;
        ServerSigningKey::from_seed_b64(server, key_id, s.signing_key_seed.as_deref()?)
    }
}

/// One event of a fixture.
#[derive(Debug, Deserialize)]
pub struct FixtureEvent {
    /// The generator's claim of the event ID (never trusted).
    pub event_id: String,
    /// The server that sent it.
    #[serde(default)]
    pub origin: Option<String>,
    /// The PDU as received.
    pub pdu: Box<RawValue>,
}

/// Opens a fixture file, transparently gunzipping `.gz`.
pub fn open(path: &std::path::Path) -> Result<Box<dyn Read + Send>, FixtureError> {
    let f = std::fs::File::open(path).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let r = std::io::BufReader::with_capacity(1 << 16, f);
    if path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(std::io::BufReader::new(flate2::read::GzDecoder::new(r))))
    } else {
        Ok(Box::new(r))
    }
}

/// Streams a room fixture: `on_event` is called for every event in order,
/// after the header is complete (events that precede `servers` in the file
/// are buffered until the header is known).
pub fn stream_room<R: Read>(
    reader: R,
    mut on_event: impl FnMut(&FixtureHeader, usize, FixtureEvent) -> Result<(), FixtureError>,
) -> Result<FixtureHeader, FixtureError> {
    // serde_json reads a stream a byte at a time: behind a buffer of its own
    // type each byte is an inlined copy, not a call through `reader` (often
    // a `Box<dyn Read>`).
    let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::with_capacity(1 << 16, reader));
    let mut state = StreamState { header: FixtureHeader::default(), buffered: Vec::new(), count: 0, error: None };
    let seed = RoomSeed { state: &mut state, on_event: &mut on_event };
    let res = seed.deserialize(&mut de);
    if let Some(e) = state.error.take() {
        return Err(e);
    }
    res?;
    de.end()?;
    check_header(&state.header)?;
    for ev in std::mem::take(&mut state.buffered) {
        let i = state.count;
        state.count += 1;
        on_event(&state.header, i, ev)?;
    }
    Ok(state.header)
}

fn check_header(h: &FixtureHeader) -> Result<(), FixtureError> {
    match h.format.as_deref() {
        Some("matrix-dag-oracle/1") => {}
        other => return Err(FixtureError::Invalid(format!("format is {other:?}, expected \"matrix-dag-oracle/1\""))),
    }
    if h.room_version.is_none() {
        return Err(FixtureError::Invalid("no room_version".into()));
    }
    Ok(())
}

struct StreamState {
    header: FixtureHeader,
    buffered: Vec<FixtureEvent>,
    count: usize,
    error: Option<FixtureError>,
}

type OnEvent<'f> = dyn FnMut(&FixtureHeader, usize, FixtureEvent) -> Result<(), FixtureError> + 'f;

struct RoomSeed<'a, 'f> {
    state: &'a mut StreamState,
    on_event: &'a mut OnEvent<'f>,
}

impl<'de> DeserializeSeed<'de> for RoomSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RoomSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a matrix-dag-oracle/1 room")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "format" => self.state.header.format = Some(map.next_value()?),
                "room_version" => self.state.header.room_version = Some(map.next_value()?),
                "room_id" => self.state.header.room_id = map.next_value()?,
                "servers" => self.state.header.servers = map.next_value()?,
                "events" => {
                    map.next_value_seed(EventsSeed { state: &mut *self.state, on_event: &mut *self.on_event })?
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

struct EventsSeed<'a, 'f> {
    state: &'a mut StreamState,
    on_event: &'a mut OnEvent<'f>,
}

impl<'de> DeserializeSeed<'de> for EventsSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EventsSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of events")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let ready = self.state.header.room_version.is_some() && !self.state.header.servers.is_empty();
        while let Some(ev) = seq.next_element::<FixtureEvent>()? {
            if ready && self.state.error.is_none() {
                if let Err(e) = check_header(&self.state.header) {
                    self.state.error = Some(e);
                    continue;
                }
                let i = self.state.count;
                self.state.count += 1;
                if let Err(e) = (self.on_event)(&self.state.header, i, ev) {
                    self.state.error = Some(e);
                }
            } else if self.state.error.is_none() {
                self.state.buffered.push(ev);
            }
        }
        Ok(())
    }
}

/// A query of `roomdag-queries/1`.
#[derive(Clone, Debug, Deserialize)]
pub struct Query {
    /// The query's ID.
    pub id: String,
    /// `state_ids`, `state`, `backfill`, `get_missing_events`, `timestamp_to_event` or `event`.
    pub endpoint: String,
    /// The requesting server.
    pub origin: String,
    /// `event_id` (state, state_ids, event).
    #[serde(default)]
    pub event_id: Option<String>,
    /// `v` (backfill).
    #[serde(default)]
    pub v: Option<Vec<String>>,
    /// `limit` (backfill).
    #[serde(default)]
    pub limit: Option<i64>,
    /// The request body (get_missing_events).
    #[serde(default)]
    pub body: Option<Value>,
    /// `ts` (timestamp_to_event): any JSON integer (kept exactly up to
    /// 128 bits, which compares like the integer itself against any event's
    /// 64-bit timestamp).
    #[serde(default, deserialize_with = "saturating_ts")]
    pub ts: Option<i128>,
    /// `dir` (timestamp_to_event).
    #[serde(default)]
    pub dir: Option<String>,
}

fn saturating_ts<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i128>, D::Error> {
    let v: Option<serde_json::Number> = Option::deserialize(d)?;
    Ok(v.map(|n| saturate(&n.to_string())))
}

/// An integer literal as an `i128`, saturating beyond its range. Every
/// event timestamp is an `i64`, so a saturated value still compares against
/// each of them exactly as the literal would.
pub fn saturate(literal: &str) -> i128 {
    match literal.parse::<i128>() {
        Ok(i) => i,
        Err(_) if literal.starts_with('-') => i128::MIN,
        Err(_) => i128::MAX,
    }
}

/// A `roomdag-queries/1` file.
#[derive(Clone, Debug, Deserialize)]
pub struct QueryFile {
    /// `roomdag-queries/1`.
    pub format: String,
    /// The room.
    #[serde(default)]
    pub room_id: Option<String>,
    /// The queries.
    pub queries: Vec<Query>,
}

/// Reads a `roomdag-queries/1` file.
pub fn read_queries(reader: impl Read) -> Result<QueryFile, FixtureError> {
    let q: QueryFile = serde_json::from_reader(reader)?;
    if q.format != "roomdag-queries/1" {
        return Err(FixtureError::Invalid(format!("format is {:?}, expected \"roomdag-queries/1\"", q.format)));
    }
    Ok(q)
}
