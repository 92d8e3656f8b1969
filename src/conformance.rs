//! Replaying a fixture and answering its queries (`roomdag replay`).
//!
//! Shared by the native CLI, the wasm CLI and the tests, so all three produce
//! byte-identical `roomdag-answers/1` documents.

use std::io::{Read, Write};

use serde_json::{json, Value};

use crate::event::{EventStatus, IdText};
use crate::fixture::{read_queries, stream_room, FixtureError, FixtureHeader, Query};
use crate::ids::EventIdx;
use crate::pages::PageError;
use crate::queries::{self, Direction, QueryError, Served};
use crate::room::{DropStage, Outcome, Room, Verification};
use crate::signing::{encode_base64, PinnedKeys};

/// What happened to one fixture event (eight bytes: the room holds the rest).
#[derive(Clone, Copy, Debug)]
pub enum Line {
    /// Stored (accepted or rejected).
    Stored(EventIdx),
    /// A duplicate of an already stored event.
    Duplicate(EventIdx),
    /// Not stored: the index into [`Replay::dropped`].
    Dropped(u32),
}

/// A dropped fixture event.
#[derive(Clone, Debug)]
pub struct DroppedLine {
    /// The computed event ID, or the fixture's claim when the PDU could not be hashed.
    pub event_id: Box<str>,
    /// Which check dropped it.
    pub stage: DropStage,
    /// Why.
    pub reason: Box<str>,
}

/// The replayed room and what happened to each fixture event.
pub struct Replay {
    /// The room after every PDU.
    pub room: Room,
    /// The fixture header.
    pub header: FixtureHeader,
    /// One line per fixture event.
    pub lines: Vec<Line>,
    /// The dropped events' details.
    pub dropped: Vec<DroppedLine>,
}

/// Replays a room fixture through the full receipt pipeline, on the calling
/// thread.
pub fn replay(reader: impl Read) -> Result<Replay, FixtureError> {
    replay_with(reader, None)
}

/// Like [`replay`], checking signatures with a host function
/// `verify(public_key, message, signature)` instead of `ed25519-dalek`.
///
/// Without a host function, signatures are checked in batches of
/// [`SIGNATURE_BATCH`](crate::room::SIGNATURE_BATCH) events (one ed25519 batch
/// verification each; the verdicts are the same as one by one).
pub fn replay_with(reader: impl Read, verify: Option<HostVerify<'_>>) -> Result<Replay, FixtureError> {
    replay_inner(reader, verify, None)
}

/// Where a replayed room keeps its PDU texts instead of its own memory: a
/// page store, read back through a cache of `cache_bytes`.
pub struct Pages {
    /// The store.
    pub store: Box<dyn crate::pages::PageStore>,
    /// The cache in front of it.
    pub cache_bytes: usize,
}

/// Like [`replay`], the room's PDU texts kept in `pages`.
pub fn replay_paged(reader: impl Read, pages: Pages) -> Result<Replay, FixtureError> {
    replay_inner(reader, None, Some(pages))
}

pub use crate::signing::HostVerify;

fn replay_inner(
    reader: impl Read,
    verify: Option<HostVerify<'_>>,
    pages: Option<Pages>,
) -> Result<Replay, FixtureError> {
    use crate::room::{prepare_batch, SIGNATURE_BATCH};
    use serde_json::value::RawValue;

    let mut sink = ReplaySink { pages, ..ReplaySink::default() };
    let mut keys: Option<PinnedKeys> = None;
    let mut pending: Vec<(String, Box<RawValue>)> = Vec::with_capacity(SIGNATURE_BATCH);
    let flush = |sink: &mut ReplaySink,
                 header: &FixtureHeader,
                 keys: &PinnedKeys,
                 pending: &mut Vec<(String, Box<RawValue>)>| {
        let rules =
            crate::room_version::RoomVersionRules::supported(header.room_version.as_deref().unwrap_or_default())
                .map_err(|e| FixtureError::Invalid(e.to_string()))?;
        let raws: Vec<&str> = pending.iter().map(|(_, r)| r.get()).collect();
        let prepared = prepare_batch(&raws, rules, keys);
        for ((claimed, raw), p) in pending.drain(..).zip(prepared) {
            sink.ingest_prepared(header, claimed, raw.get(), p)?;
        }
        Ok::<(), FixtureError>(())
    };
    let mut last_header: Option<FixtureHeader> = None;
    let header = stream_room(reader, |header, _, ev| {
        if keys.is_none() {
            keys = Some(header.pinned_keys()?);
        }
        let keys = keys.as_ref().expect("just set");
        match verify {
            Some(f) => {
                let k = crate::signing::WithVerifier { keys, verify: f };
                sink.ingest(header, ev.event_id, ev.pdu.get(), Verification::Keys(&k))
            }
            None => {
                pending.push((ev.event_id, ev.pdu));
                if pending.len() >= SIGNATURE_BATCH {
                    flush(&mut sink, header, keys, &mut pending)?;
                }
                if last_header.is_none() {
                    last_header = Some(header.clone());
                }
                Ok(())
            }
        }
    })?;
    if !pending.is_empty() {
        let h = last_header.as_ref().unwrap_or(&header);
        flush(&mut sink, h, keys.as_ref().expect("events were seen"), &mut pending)?;
    }
    sink.finish(header)
}

#[derive(Default)]
struct ReplaySink {
    /// Given to the room when it is made.
    pages: Option<Pages>,
    room: Option<Room>,
    lines: Vec<Line>,
    dropped: Vec<DroppedLine>,
}

impl ReplaySink {
    fn ingest(
        &mut self,
        header: &FixtureHeader,
        claimed: String,
        raw: &str,
        v: Verification<'_>,
    ) -> Result<(), FixtureError> {
        self.ingest_with(header, claimed, |room| room.ingest(raw, v))
    }

    fn ingest_prepared(
        &mut self,
        header: &FixtureHeader,
        claimed: String,
        raw: &str,
        p: crate::room::PreparedPdu,
    ) -> Result<(), FixtureError> {
        self.ingest_with(header, claimed, |room| room.ingest_prepared(raw, p))
    }

    fn ingest_with(
        &mut self,
        header: &FixtureHeader,
        claimed: String,
        f: impl FnOnce(&mut Room) -> Outcome,
    ) -> Result<(), FixtureError> {
        if self.room.is_none() {
            let version = header.room_version.as_deref().unwrap_or_default();
            let mut room = Room::new(version).map_err(|e| FixtureError::Invalid(e.to_string()))?;
            // No store behind a replay: records would only copy every PDU.
            room.set_keep_records(false);
            if let Some(p) = self.pages.take() {
                room.set_pages(p.store, p.cache_bytes).expect("a new room is empty");
            }
            self.room = Some(room);
        }
        let room = self.room.as_mut().expect("just set");
        let line = match f(room) {
            Outcome::Dropped { event_id, stage, reason } => {
                self.dropped.push(DroppedLine {
                    event_id: event_id.map_or_else(|| claimed.into(), |e| e.as_str().into()),
                    stage,
                    reason: reason.into(),
                });
                Line::Dropped(u32::try_from(self.dropped.len() - 1).expect("fewer than 2^32 lines"))
            }
            o => {
                let id = o.event_id().expect("stored outcomes have an ID");
                let event =
                    room.lookup(id.as_str())?.ok_or_else(|| FixtureError::Invalid(format!("{id} is not stored")))?;
                if matches!(o, Outcome::Duplicate { .. }) {
                    Line::Duplicate(event)
                } else {
                    Line::Stored(event)
                }
            }
        };
        self.lines.push(line);
        Ok(())
    }

    fn finish(self, header: FixtureHeader) -> Result<Replay, FixtureError> {
        let mut room = match self.room {
            Some(r) => r,
            None => Room::new(header.room_version.as_deref().unwrap_or_default())
                .map_err(|e| FixtureError::Invalid(e.to_string()))?,
        };
        // What is stored from now on is recorded as usual.
        room.set_keep_records(true);
        Ok(Replay { room, header, lines: self.lines, dropped: self.dropped })
    }
}

/// Replays with three threads: one decompresses and parses the fixture, one
/// verifies signatures (they depend only on the PDU and the keys), and the
/// calling thread runs the receipt pipeline in order. Same outcome as
/// [`replay`], about a third less wall time on two cores, about 2 MB more
/// memory (per-thread allocator arenas and the buffers in flight).
#[cfg(not(target_arch = "wasm32"))]
pub fn replay_pipelined(reader: impl Read + Send) -> Result<Replay, FixtureError> {
    pipelined_inner(reader, None)
}

/// Like [`replay_pipelined`], the room's PDU texts kept in `pages`.
#[cfg(not(target_arch = "wasm32"))]
pub fn replay_pipelined_paged(reader: impl Read + Send, pages: Pages) -> Result<Replay, FixtureError> {
    pipelined_inner(reader, Some(pages))
}

#[cfg(not(target_arch = "wasm32"))]
fn pipelined_inner(reader: impl Read + Send, pages: Option<Pages>) -> Result<Replay, FixtureError> {
    use std::sync::mpsc::sync_channel;
    use std::sync::Arc;

    use crate::room::{verify_batch_signatures, SIGNATURE_BATCH};
    use crate::room_version::RoomVersionRules;
    use serde_json::value::RawValue;

    /// How far each stage may run ahead of the next (bounds the memory in flight).
    const AHEAD: usize = 64;
    type Item = (Arc<FixtureHeader>, String, Box<RawValue>);
    let (read_tx, read_rx) = sync_channel::<Item>(AHEAD);
    let (verified_tx, verified_rx) = sync_channel::<(Item, Result<(), String>)>(AHEAD);
    std::thread::scope(|scope| {
        // Stage 1: decompress and parse the fixture.
        let reading = scope.spawn(move || {
            let mut shared: Option<Arc<FixtureHeader>> = None;
            stream_room(reader, |header, _, ev| {
                let h = shared.get_or_insert_with(|| Arc::new(header.clone()));
                // A closed channel means a later stage failed; it reports why.
                let _ = read_tx.send((Arc::clone(h), ev.event_id, ev.pdu));
                Ok(())
            })
        });
        // Stage 2: verify signatures, in batches.
        let verifying = scope.spawn(move || -> Result<(), FixtureError> {
            let mut keys: Option<(PinnedKeys, &'static RoomVersionRules)> = None;
            let mut batch: Vec<Item> = Vec::with_capacity(SIGNATURE_BATCH);
            let mut incoming = read_rx.into_iter().peekable();
            while let Some(item) = incoming.next() {
                if keys.is_none() {
                    let version = item.0.room_version.as_deref().unwrap_or_default();
                    let rules =
                        RoomVersionRules::supported(version).map_err(|e| FixtureError::Invalid(e.to_string()))?;
                    keys = Some((item.0.pinned_keys()?, rules));
                }
                batch.push(item);
                if batch.len() < SIGNATURE_BATCH && incoming.peek().is_some() {
                    continue;
                }
                let (k, rules) = keys.as_ref().expect("just set");
                let raws: Vec<&str> = batch.iter().map(|i| i.2.get()).collect();
                let verdicts = verify_batch_signatures(&raws, rules, k);
                for (item, verdict) in batch.drain(..).zip(verdicts) {
                    if verified_tx.send((item, verdict)).is_err() {
                        return Ok(());
                    }
                }
            }
            Ok(())
        });
        // Stage 3 (this thread): the receipt pipeline, in order.
        let mut sink = ReplaySink { pages, ..ReplaySink::default() };
        let mut failure: Option<FixtureError> = None;
        for ((header, claimed, raw), verdict) in verified_rx {
            if failure.is_none() {
                if let Err(e) = sink.ingest(&header, claimed, raw.get(), Verification::Precomputed(verdict)) {
                    failure = Some(e);
                }
            }
        }
        let header = reading.join().map_err(|_| FixtureError::Invalid("fixture reader thread panicked".into()))??;
        verifying.join().map_err(|_| FixtureError::Invalid("verifier thread panicked".into()))??;
        if let Some(e) = failure {
            return Err(e);
        }
        sink.finish(header)
    })
}

/// One entry of the answers' `events` list, its fields in the order a JSON
/// object of them is written in (sorted, like [`json!`] objects).
#[derive(serde::Serialize)]
struct LineEntry<'a> {
    event_id: IdText<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    redacted_on_receipt: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stage: Option<DropStage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state_after: Option<Hex>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state_before: Option<Hex>,
    status: &'static str,
}

/// A digest, written as lowercase hex.
struct Hex([u8; 32]);

impl serde::Serialize for Hex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex(self.0))
    }
}

fn hex(d: [u8; 32]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for b in d {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

impl Replay {
    /// The entry of the answers' `events` list for one fixture line.
    ///
    /// # Errors
    /// The room's page store failed to read the event's ID back.
    pub fn line_json(&self, line: &Line) -> Result<Value, PageError> {
        Ok(serde_json::to_value(self.line_entry(line)?).expect("an entry is a JSON object"))
    }

    fn line_entry(&self, line: &Line) -> Result<LineEntry<'_>, PageError> {
        let mut entry = LineEntry {
            event_id: IdText::Held(""),
            reason: None,
            redacted_on_receipt: false,
            stage: None,
            state_after: None,
            state_before: None,
            status: "dropped",
        };
        match *line {
            Line::Dropped(i) => {
                let d = &self.dropped[i as usize];
                entry.event_id = IdText::Held(&d.event_id);
                entry.reason = Some(&d.reason);
                entry.stage = Some(d.stage);
            }
            Line::Duplicate(event) => {
                entry.event_id = self.room.id(event)?;
                entry.reason = Some("duplicate event");
            }
            Line::Stored(event) => {
                let e = self.room.event(event)?;
                entry.event_id = self.room.id(event)?;
                entry.status = match e.status {
                    EventStatus::Accepted => "accepted",
                    EventStatus::Rejected => "rejected",
                };
                entry.reason = self.room.rejection(event);
                entry.redacted_on_receipt = e.redacted_on_receipt;
                entry.state_before = Some(Hex(self.room.state_digest(e.state_before)?));
                entry.state_after = Some(Hex(self.room.state_digest(e.state_after)?));
            }
        }
        Ok(entry)
    }

    /// Writes the `roomdag-answers/1` document for `queries`, streaming one
    /// event and one answer at a time.
    pub fn write_answers(&mut self, queries: &[Query], mut w: impl Write) -> std::io::Result<()> {
        let current = self.room.current_state().map_err(std::io::Error::other)?;
        let extremities: Result<Vec<String>, PageError> =
            self.room.forward_extremities().map(|e| Ok(self.room.id(e)?.to_string())).collect();
        let mut extremities = extremities.map_err(std::io::Error::other)?;
        extremities.sort_unstable();
        let head = json!({
            "format": "roomdag-answers/1",
            "room_id": self.room.room_id(),
            "forward_extremities": extremities,
            "current_state_digest": hex(self.room.state_digest(current).map_err(std::io::Error::other)?),
            "servers_in_room": crate::visibility::servers_in_room(&self.room, self.room.state(current).map_err(std::io::Error::other)?),
        });
        let head = serde_json::to_string(&head)?;
        w.write_all(&head.as_bytes()[..head.len() - 1])?;
        w.write_all(b",\"events\":[")?;
        for (i, line) in self.lines.iter().enumerate() {
            if i > 0 {
                w.write_all(b",")?;
            }
            serde_json::to_writer(&mut w, &self.line_entry(line).map_err(std::io::Error::other)?)?;
        }
        w.write_all(b"],\"answers\":[")?;
        for (i, q) in queries.iter().enumerate() {
            if i > 0 {
                w.write_all(b",")?;
            }
            serde_json::to_writer(&mut w, &answer(&self.room, q))?;
        }
        w.write_all(b"]}\n")?;
        w.flush()
    }
}

/// Replays a fixture and answers a query file, writing the answers to `out`.
pub fn replay_and_answer(fixture: impl Read, queries: impl Read, out: impl Write) -> Result<(), FixtureError> {
    let queries = read_queries(queries)?;
    let mut replay = replay(fixture)?;
    replay.write_answers(&queries.queries, out)?;
    Ok(())
}

fn error(id: &str, status: u16, errcode: &str, message: &str) -> Value {
    json!({"id": id, "status": status, "errcode": errcode, "error": message})
}

fn query_error(id: &str, e: QueryError) -> Value {
    error(id, e.status(), e.errcode(), &e.to_string())
}

fn served(room: &Room, list: Vec<Served>) -> Result<Value, PageError> {
    let list: Result<Vec<Value>, PageError> =
        list.into_iter().map(|s| Ok(json!({"event_id": room.id(s.event)?.to_string(), "pruned": s.pruned}))).collect();
    Ok(Value::Array(list?))
}

/// State and auth-chain IDs (state events: held by the room).
fn state_ids(room: &Room, list: impl IntoIterator<Item = EventIdx>) -> Value {
    Value::Array(list.into_iter().map(|e| json!(room.state_id(e))).collect())
}

fn string_list(v: Option<&Value>) -> Option<Vec<String>> {
    v?.as_array()?.iter().map(|x| x.as_str().map(str::to_owned)).collect()
}

/// Answers one query (`contract.md` semantics).
pub fn answer(room: &Room, q: &Query) -> Value {
    let id = q.id.as_str();
    let missing = |p: &str| error(id, 400, "M_MISSING_PARAM", &format!("missing parameter {p}"));
    match q.endpoint.as_str() {
        "state_ids" | "state" => {
            let Some(event_id) = q.event_id.as_deref() else {
                return missing("event_id");
            };
            match queries::state_ids(room, &q.origin, event_id) {
                Ok(s) => {
                    json!({"id": id, "status": 200, "pdu_ids": state_ids(room, s.pdu_ids), "auth_chain_ids": state_ids(room, s.auth_chain_ids.iter().copied())})
                }
                Err(e) => query_error(id, e),
            }
        }
        "backfill" => {
            let Some(v) = q.v.as_ref() else {
                return missing("v");
            };
            let limit = match q.limit {
                Some(l) if l > 0 => l as usize,
                _ => return error(id, 400, "M_INVALID_PARAM", "limit must be a positive integer"),
            };
            match queries::backfill(room, &q.origin, v, limit).and_then(|l| Ok(served(room, l)?)) {
                Ok(list) => json!({"id": id, "status": 200, "pdus": list}),
                Err(e) => query_error(id, e),
            }
        }
        "get_missing_events" => {
            let body = q.body.as_ref();
            let Some(earliest) = string_list(body.and_then(|b| b.get("earliest_events"))) else {
                return missing("earliest_events");
            };
            let Some(latest) = string_list(body.and_then(|b| b.get("latest_events"))) else {
                return missing("latest_events");
            };
            let limit = match body.and_then(|b| b.get("limit")) {
                None => None,
                Some(l) => match l.as_i64() {
                    Some(l) => Some(l.max(0) as usize),
                    None => return error(id, 400, "M_INVALID_PARAM", "limit must be an integer"),
                },
            };
            match queries::get_missing_events(room, &q.origin, &earliest, &latest, limit)
                .and_then(|l| Ok(served(room, l)?))
            {
                Ok(list) => json!({"id": id, "status": 200, "events": list}),
                Err(e) => query_error(id, e),
            }
        }
        "timestamp_to_event" => {
            let Some(ts) = q.ts else { return missing("ts") };
            let dir = match q.dir.as_deref() {
                Some("f") => Direction::Forward,
                Some("b") => Direction::Backward,
                _ => return error(id, 400, "M_INVALID_PARAM", "dir must be f or b"),
            };
            let found = queries::timestamp_to_event(room, &q.origin, ts, dir)
                .and_then(|e| Ok((room.id(e)?, room.event(e)?.origin_server_ts)));
            match found {
                Ok((event_id, ts)) => json!({"id": id, "status": 200, "event_id": event_id, "origin_server_ts": ts}),
                Err(e) => query_error(id, e),
            }
        }
        "event" => {
            let Some(event_id) = q.event_id.as_deref() else {
                return missing("event_id");
            };
            match queries::event(room, &q.origin, event_id).and_then(|s| Ok((room.id(s.event)?, s))) {
                Ok((event_id, s)) => {
                    json!({"id": id, "status": 200, "event_id": event_id, "pruned": s.pruned})
                }
                Err(e) => query_error(id, e),
            }
        }
        other => error(id, 400, "M_UNRECOGNIZED", &format!("unknown endpoint {other}")),
    }
}

/// Unpadded base64 of a digest (for compact output).
pub fn b64(d: &[u8]) -> String {
    encode_base64(d)
}
