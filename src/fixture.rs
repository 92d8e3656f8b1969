//! The conformance fixtures of `contract.md`: rooms (`matrix-dag-oracle/1`),
//! queries (`roomdag-queries/1`) and answers (`roomdag-answers/1`).
//!
//! Rooms are read as a stream: each event is handed over as soon as it is
//! parsed, its PDU as raw JSON text, so replaying a 20k-event room never
//! holds the whole file in memory.

use std::collections::BTreeMap;
use std::io::Read;

use serde::de::IgnoredAny;
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
    /// The room's page store failed.
    #[error("{0}")]
    Store(#[from] crate::pages::PageError),
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
///
/// The top level is split by [`Splitter`] (a scan for the end of each JSON
/// value) and each value parsed from its bytes by serde_json: a reader fed
/// to serde_json directly is read a byte at a time, several times slower
/// than a slice, while the split keeps only one event in memory.
pub fn stream_room<R: Read>(
    reader: R,
    mut on_event: impl FnMut(&FixtureHeader, usize, FixtureEvent) -> Result<(), FixtureError>,
) -> Result<FixtureHeader, FixtureError> {
    let mut header = FixtureHeader::default();
    let mut buffered: Vec<FixtureEvent> = Vec::new();
    let mut count = 0;
    let mut sp = Splitter::new(reader);
    sp.expect(b'{')?;
    if !sp.end_of(b'}')? {
        loop {
            let key: String = serde_json::from_slice(sp.string()?)?;
            sp.expect(b':')?;
            match key.as_str() {
                "format" => header.format = Some(serde_json::from_slice(sp.value()?)?),
                "room_version" => header.room_version = Some(serde_json::from_slice(sp.value()?)?),
                "room_id" => header.room_id = serde_json::from_slice(sp.value()?)?,
                "servers" => header.servers = serde_json::from_slice(sp.value()?)?,
                "events" => {
                    sp.expect(b'[')?;
                    if !sp.end_of(b']')? {
                        loop {
                            let ev: FixtureEvent = serde_json::from_slice(sp.value()?)?;
                            let ready = header.room_version.is_some() && !header.servers.is_empty();
                            if ready {
                                check_header(&header)?;
                                on_event(&header, count, ev)?;
                                count += 1;
                            } else {
                                buffered.push(ev);
                            }
                            if sp.end_of(b']')? {
                                break;
                            }
                            sp.expect(b',')?;
                        }
                    }
                }
                _ => {
                    serde_json::from_slice::<IgnoredAny>(sp.value()?)?;
                }
            }
            if sp.end_of(b'}')? {
                break;
            }
            sp.expect(b',')?;
        }
    }
    sp.expect_end()?;
    check_header(&header)?;
    for ev in buffered {
        on_event(&header, count, ev)?;
        count += 1;
    }
    Ok(header)
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

/// Cuts a JSON text read from a stream into the values of its top level
/// (and of one array in it), each handed out as the bytes of that value.
///
/// It only finds where a value ends (strings, escapes and nesting);
/// serde_json then parses (and so validates) each value's bytes, and the
/// punctuation between values is checked here.
struct Splitter<R> {
    reader: R,
    buf: Vec<u8>,
    /// The first byte not consumed yet.
    pos: usize,
    eof: bool,
}

/// Bytes read from the stream at a time.
const SPLIT_READ: usize = 1 << 16;

impl<R: Read> Splitter<R> {
    fn new(reader: R) -> Self {
        Self { reader, buf: Vec::with_capacity(SPLIT_READ), pos: 0, eof: false }
    }

    /// Reads more bytes after those held; false at the end of the stream.
    fn fill(&mut self) -> Result<bool, FixtureError> {
        if self.eof {
            return Ok(false);
        }
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let held = self.buf.len();
        self.buf.resize(held + SPLIT_READ, 0);
        let n = loop {
            match self.reader.read(&mut self.buf[held..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(held);
                    return Err(e.into());
                }
            }
        };
        self.buf.truncate(held + n);
        self.eof = n == 0;
        Ok(n > 0)
    }

    /// The next byte that is not JSON whitespace (not consumed), if any.
    fn peek(&mut self) -> Result<Option<u8>, FixtureError> {
        loop {
            while let Some(b) = self.buf.get(self.pos) {
                if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                    return Ok(Some(*b));
                }
                self.pos += 1;
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    fn unexpected(&mut self, wanted: &str) -> FixtureError {
        let found = match self.buf.get(self.pos) {
            Some(b) => format!("{:?}", char::from(*b)),
            None => "the end".into(),
        };
        FixtureError::Invalid(format!("expected {wanted}, found {found}"))
    }

    /// Consumes `b` (after whitespace).
    fn expect(&mut self, b: u8) -> Result<(), FixtureError> {
        if self.peek()? == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.unexpected(&format!("{:?}", char::from(b))))
        }
    }

    /// Consumes `close` if it comes next (after whitespace).
    fn end_of(&mut self, close: u8) -> Result<bool, FixtureError> {
        let next = self.peek()?;
        if next == Some(close) {
            self.pos += 1;
        }
        Ok(next == Some(close))
    }

    /// Only whitespace is left.
    fn expect_end(&mut self) -> Result<(), FixtureError> {
        match self.peek()? {
            None => Ok(()),
            Some(_) => Err(self.unexpected("the end")),
        }
    }

    /// The next value, which must be a string.
    fn string(&mut self) -> Result<&[u8], FixtureError> {
        if self.peek()? != Some(b'"') {
            return Err(self.unexpected("a string"));
        }
        self.value()
    }

    /// The bytes of the next value (consumed).
    fn value(&mut self) -> Result<&[u8], FixtureError> {
        if self.peek()?.is_none() {
            return Err(self.unexpected("a value"));
        }
        // Bytes of the value scanned so far, from `pos` (`fill` moves only
        // what precedes `pos`).
        let mut len = 0;
        let mut depth = 0usize;
        let mut in_string = false;
        let mut escaped = false;
        loop {
            let Some(&b) = self.buf.get(self.pos + len) else {
                if !self.fill()? {
                    break; // ends a bare number; anything else serde_json finds truncated
                }
                continue;
            };
            len += 1;
            if in_string {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_string = false;
                    if depth == 0 {
                        break;
                    }
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' if depth > 0 => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                // The end of a bare value (number, true, false, null).
                b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r' if depth == 0 => {
                    len -= 1;
                    break;
                }
                _ => {}
            }
        }
        let start = self.pos;
        self.pos += len;
        Ok(&self.buf[start..self.pos])
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out a few bytes at a time (refills inside values).
    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            self.1 = self.1 % 5 + 1;
            let n = self.1.min(out.len()).min(self.0.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn events_of(text: &str, trickle: bool) -> Result<(FixtureHeader, Vec<(String, String)>), FixtureError> {
        let mut seen = Vec::new();
        let on_event = |_: &FixtureHeader, i: usize, ev: FixtureEvent| {
            assert_eq!(i, seen.len());
            seen.push((ev.event_id, ev.pdu.get().to_owned()));
            Ok(())
        };
        let header = if trickle {
            stream_room(Trickle(text.as_bytes(), 0), on_event)?
        } else {
            stream_room(text.as_bytes(), on_event)?
        };
        Ok((header, seen))
    }

    const SERVERS: &str =
        r#"{"a.example":{"verify_keys":{"ed25519:1":"l8Hft5qXKn1vfHrg3p4+W8gELQVo8N13JkluMfmn2sQ"}}}"#;

    #[test]
    fn splits_events_with_tricky_strings_and_any_key_order() {
        let pdus = [
            r#"{"type":"m.room.message","content":{"body":"a \"quoted\" } ] { [ , \\ \u0022 \\\""},"n":[1,[2,{"x":null}]]}"#,
            r#"{"type":"x","content":{"e":"é ✓ \ud83d\ude00","t":true,"f":false,"z":-0.5e3}}"#,
        ];
        let events = format!(
            r#"[ {{"event_id":"$1","origin":"a.example","pdu":{},"meta":{{"k":[1,2,{{"s":"]}}"}}]}}}} ,
                {{"meta":null,"pdu":{},"event_id":"$2"}} ]"#,
            pdus[0], pdus[1]
        );
        let layouts = [
            format!(r#"{{"format":"matrix-dag-oracle/1","room_version":"11","servers":{SERVERS},"events":{events}}}"#),
            // Events first (buffered until the header is known), odd extras.
            format!(
                "\n{{ \"events\" : {events} , \"x\":[1, \"]\"], \"n\": 12 ,\"t\":true, \"room_version\":\"11\",\
                 \"servers\":{SERVERS},\"format\":\"matrix-dag-oracle/1\",\"nil\":null }}\n "
            ),
        ];
        for text in &layouts {
            for trickle in [false, true] {
                let (header, seen) = events_of(text, trickle).expect("parses");
                assert_eq!(header.room_version.as_deref(), Some("11"));
                assert_eq!(header.servers.len(), 1);
                assert_eq!(seen.len(), 2);
                assert_eq!(seen[0], ("$1".to_owned(), pdus[0].to_owned()));
                assert_eq!(seen[1], ("$2".to_owned(), pdus[1].to_owned()));
            }
        }
    }

    #[test]
    fn malformed_fixtures_are_refused() {
        let ev = r#"{"event_id":"$1","pdu":{}}"#;
        let head = format!(r#""format":"matrix-dag-oracle/1","room_version":"11","servers":{SERVERS}"#);
        for bad in [
            String::new(),
            "[]".into(),
            format!("{{{head},\"events\":[{ev} {ev}]}}"),
            format!("{{{head},\"events\":[{ev},]}}"),
            format!("{{{head} \"events\":[]}}"),
            format!("{{{head},\"events\":[{ev}]}} x"),
            format!("{{{head},\"events\":[{ev}]"),
            format!("{{{head},\"events\":[{ev}"),
            format!("{{{head},\"events\":[{{\"event_id\":\"$1\",\"pdu\":{{\"a\":\"}}]}}"),
            format!("{{{head},\"n\":01,\"events\":[]}}"),
            format!("{{{head},\"n\":,\"events\":[]}}"),
            format!("{{{head},7:1}}"),
            r#"{"format":"other","room_version":"11","events":[]}"#.into(),
        ] {
            for trickle in [false, true] {
                assert!(events_of(&bad, trickle).is_err(), "accepted {bad:?}");
            }
        }
    }
}
