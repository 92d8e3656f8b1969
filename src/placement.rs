//! Where a stored event sits in the room, and rebuilding a room from its
//! records.
//!
//! A server that joins a room late holds a room whose history starts in the
//! middle (server-server API, "Joining Rooms" and "Backfilling and
//! retrieving missing events"):
//!
//! * **timeline events** are in the DAG. The state before one is the
//!   resolution of the states after its prev events when every prev event is
//!   placed; when some are not (they are the room's *backward extremities*),
//!   it is a state taken from a verified remote answer: the `send_join`
//!   state for the join event, `/state_ids` for an event whose gap could not
//!   be filled ([`Placement::WithState`]);
//! * **outliers** are known only as state or auth chain: checked against
//!   their own auth events, never state, never in a `/backfill` walk, never
//!   forward extremities ([`Placement::Outlier`]);
//! * **pending** timeline events came from history (`/backfill`) while their
//!   own prev events are not placed yet: kept as outliers until a rebuild
//!   places them ([`Placement::History`]).
//!
//! A room persists as a log of [`LogRecord`]s. Replaying the log with
//! [`restore`] gives the room back: records after the last
//! [`LogRecord::Rebuild`] marker are replayed in order, as they were first
//! ingested; everything before it is *placed* afresh: events in a
//! topological order of their prev and auth events, ties broken by when
//! each event first arrived, each placed from its prev events where they are
//! all placed (the remote state is only used where they are not). So events
//! fetched later attach to what is stored, state is computed from prev
//! events once they are known, and a room that becomes complete answers as
//! one replayed from scratch in that order. A host rebuilds by restoring its
//! log with a marker appended, then appends the marker.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::event::EventStatus;
use crate::pages::RestoreRows;
use crate::room::{Outcome, Room};
use crate::room_version::UnsupportedRoomVersion;

/// How a PDU is placed when it is ingested.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement<'a> {
    /// A live event (`/send`, an import): every prev and auth event must be
    /// placed, otherwise it is dropped (and can be sent again later).
    Timeline,
    /// A live event pushed into a room we are joined to: as [`Timeline`](Self::Timeline),
    /// then receipt check 6, "passes authorization rules based on the current
    /// state of the room, otherwise it is soft failed": a soft-failed event is
    /// stored and placed, but never a forward extremity (the reference
    /// server's `_check_for_soft_fail`; not done when its prev events are the
    /// forward extremities).
    Live,
    /// A timeline event known to be soft failed (replayed from its record).
    SoftFailed,
    /// A timeline event from history (`/backfill`, `/get_missing_events`):
    /// placed when every prev event is placed, otherwise kept pending (as an
    /// outlier) until a rebuild places it. Its auth events must be stored.
    History,
    /// A timeline event whose state before comes from a verified remote
    /// answer (event IDs of stored state events): used only when some prev
    /// event is not placed.
    WithState(&'a [String]),
    /// An outlier: known only as state or auth chain.
    Outlier,
}

impl Placement<'_> {
    /// The record kind this placement is logged as.
    pub fn kind(&self) -> RecordKind {
        match self {
            Placement::Outlier => RecordKind::Outlier,
            _ => RecordKind::Timeline,
        }
    }
}

/// How a record's event entered the room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    /// In the timeline (placed, or pending until its prev events are).
    Timeline,
    /// Known only as state or auth chain.
    Outlier,
}

/// A stored PDU as a persistent store keeps it: the original bytes, the
/// receipt verdict, how it entered the room and, for an event placed with a
/// remote state, that state. Replaying records rebuilds the room without
/// verifying signatures again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRecord {
    /// The event ID followed by the PDU.
    text: Arc<str>,
    id_len: usize,
    /// The receipt verdict (`None`: deferred until its auth events are stored).
    pub status: Option<EventStatus>,
    /// Timeline or outlier.
    pub kind: RecordKind,
    /// The state before the event (event IDs), when it came from a remote answer.
    pub state: Option<Vec<String>>,
    /// Soft failed on receipt (never a forward extremity).
    pub soft_failed: bool,
}

impl EventRecord {
    /// A timeline record from its parts (e.g. read back from a store).
    pub fn new(event_id: &str, raw: &str, status: EventStatus) -> Self {
        Self::with_kind(event_id, raw, Some(status), RecordKind::Timeline, None)
    }

    /// The record of a deferred history event.
    pub fn deferred(event_id: &str, raw: &str) -> Self {
        Self::with_kind(event_id, raw, None, RecordKind::Timeline, None)
    }

    /// A record of any kind.
    pub fn with_kind(
        event_id: &str,
        raw: &str,
        status: Option<EventStatus>,
        kind: RecordKind,
        state: Option<Vec<String>>,
    ) -> Self {
        Self {
            text: Arc::from(format!("{event_id}{raw}")),
            id_len: event_id.len(),
            status,
            kind,
            state,
            soft_failed: false,
        }
    }

    /// The event ID.
    pub fn event_id(&self) -> &str {
        &self.text[..self.id_len]
    }

    /// The PDU exactly as received.
    pub fn raw(&self) -> &str {
        &self.text[self.id_len..]
    }

    /// How this record is placed when it is replayed in order.
    pub fn placement(&self) -> Placement<'_> {
        match (self.kind, &self.state) {
            (RecordKind::Outlier, _) => Placement::Outlier,
            (RecordKind::Timeline, _) if self.soft_failed => Placement::SoftFailed,
            (RecordKind::Timeline, Some(state)) => Placement::WithState(state),
            (RecordKind::Timeline, None) => Placement::History,
        }
    }
}

/// One entry of a room's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogRecord {
    /// A stored event.
    Event(EventRecord),
    /// Everything before this was placed afresh (see the module docs).
    Rebuild,
}

/// Why a log could not be restored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// A record replayed in order did not give its stored verdict.
    #[error("stored record {event_id} replayed as {got} instead of {want}")]
    Inconsistent {
        /// The record's event.
        event_id: String,
        /// Its stored status.
        want: String,
        /// What replaying it gave.
        got: String,
    },
    /// The stored room version is not hosted.
    #[error(transparent)]
    RoomVersion(#[from] UnsupportedRoomVersion),
}

/// Rebuilds a room from its log (see the module docs). Records after the
/// last rebuild marker must replay to their stored verdicts; each is freed
/// once replayed, so a room restored from a log with no marker (one only
/// ever received live or imported) never holds its PDU bytes twice.
pub fn restore(room_version: &str, log: Vec<LogRecord>) -> Result<Room, RestoreError> {
    restore_into(Room::new(room_version)?, log, RestoreRows::Write)
}

/// Like [`restore`], into an empty room the caller made (one with a page
/// store, say), doing with the page store's rows what `rows` says (see
/// [`RestoreRows`]). While it restores, the rows of events it undoes stay
/// in the page store: the room it replaces may hold those events.
///
/// # Panics
/// If `room` holds events.
pub fn restore_into(room: Room, mut log: Vec<LogRecord>, rows: RestoreRows) -> Result<Room, RestoreError> {
    let tail = log.split_off(last_rebuild(&log));
    let mut restoring = Restoring::start(room, log, rows)?;
    restoring.replay(tail)?;
    Ok(restoring.finish())
}

/// A restore fed in parts, so that a host holding the log elsewhere (a JS
/// array, a store) never copies all of it into the engine's memory at once:
/// [`start`](Self::start) with the records up to the last rebuild marker
/// (all of them: they are placed afresh, in an order that needs them all),
/// [`replay`](Self::replay) the records after it in order, in chunks of any
/// size, then [`finish`](Self::finish). Same room as [`restore_into`].
pub struct Restoring {
    room: Room,
}

impl Restoring {
    /// Places `head` (the log up to and including its last rebuild marker;
    /// empty when it has none) afresh into `room` (empty).
    ///
    /// # Panics
    /// If `room` holds events.
    pub fn start(mut room: Room, head: Vec<LogRecord>, rows: RestoreRows) -> Result<Self, RestoreError> {
        assert!(room.events().is_empty(), "restore into an empty room");
        room.set_restoring_pages(Some(rows));
        place_afresh(&mut room, &head)?;
        Ok(Self { room })
    }

    /// Goes on from a room read back from its image
    /// ([`Room::open_image`]): the records written after the image are then
    /// [`replay`](Self::replay)ed (there must be no rebuild marker among
    /// them: a rebuild places the whole log afresh).
    pub fn resume(mut room: Room, rows: RestoreRows) -> Self {
        room.set_restoring_pages(Some(rows));
        room.set_keep_records(false);
        Self { room }
    }

    /// Replays the next records after the last rebuild marker, in order:
    /// each must give its stored verdict.
    pub fn replay(&mut self, records: Vec<LogRecord>) -> Result<(), RestoreError> {
        for r in records {
            replay(&mut self.room, &r)?;
        }
        Ok(())
    }

    /// The restored room.
    pub fn finish(mut self) -> Room {
        self.room.set_keep_records(true);
        self.room.set_restoring_pages(None);
        self.room
    }
}

/// Where the records after the last rebuild marker start (0: none).
fn last_rebuild(log: &[LogRecord]) -> usize {
    log.iter().rposition(|r| matches!(r, LogRecord::Rebuild)).unwrap_or(0)
}

/// Stores in `room` (new) the events of `log` (everything up to the last rebuild
/// marker) placed in their topological order by first arrival. It records
/// nothing: every record is in the log already, and copies of them would
/// only double the PDU bytes held while restoring.
fn place_afresh(room: &mut Room, log: &[LogRecord]) -> Result<(), RestoreError> {
    room.set_keep_records(false);
    let placed: Vec<&EventRecord> = log
        .iter()
        .filter_map(|r| match r {
            LogRecord::Event(e) => Some(e),
            LogRecord::Rebuild => None,
        })
        .collect();
    for node in placement_order(&placed) {
        let state = node.state.map(|s| s.as_slice());
        let placement = match (node.kind, state) {
            (RecordKind::Outlier, _) => Placement::Outlier,
            (RecordKind::Timeline, _) if node.record.soft_failed => Placement::SoftFailed,
            (RecordKind::Timeline, Some(s)) => Placement::WithState(s),
            (RecordKind::Timeline, None) => Placement::History,
        };
        room.restore_as(node.record.raw(), node.record.event_id(), placement);
    }
    Ok(())
}

/// Replays one record after the last rebuild marker: it must give its stored verdict.
fn replay(room: &mut Room, r: &LogRecord) -> Result<(), RestoreError> {
    let LogRecord::Event(rec) = r else { return Ok(()) };
    let outcome = room.restore_as(rec.raw(), rec.event_id(), rec.placement());
    check_replayed(rec, &outcome)
}

fn check_replayed(rec: &EventRecord, outcome: &Outcome) -> Result<(), RestoreError> {
    let want = match rec.status {
        Some(EventStatus::Accepted) => "accepted",
        Some(EventStatus::Rejected) => "rejected",
        None => "deferred",
    };
    // A timeline record for an event stored before as an outlier replays as
    // a duplicate (it waits for the next rebuild): that is its verdict too.
    let got = outcome.status();
    if got == want || (got == "duplicate" && rec.kind == RecordKind::Timeline) {
        Ok(())
    } else {
        Err(RestoreError::Inconsistent { event_id: rec.event_id().to_owned(), want: want.into(), got: got.into() })
    }
}

/// One event in a rebuild: its first record (for the arrival order and the
/// bytes), whether any record put it in the timeline, and its latest remote state.
struct Node<'a> {
    record: &'a EventRecord,
    kind: RecordKind,
    state: Option<&'a Vec<String>>,
}

#[derive(Deserialize)]
struct Links<'a> {
    #[serde(default, borrow)]
    prev_events: Vec<&'a RawValue>,
    #[serde(default, borrow)]
    auth_events: Vec<&'a RawValue>,
    #[serde(rename = "type", default)]
    event_type: Option<&'a str>,
    #[serde(default)]
    state_key: Option<&'a str>,
}

fn ids<'a, 'v>(values: &'v [&'a RawValue]) -> impl Iterator<Item = &'a str> + 'v
where
    'a: 'v,
{
    values.iter().filter_map(|v| {
        let s = v.get();
        (s.len() >= 2 && s.starts_with('"') && s.ends_with('"') && !s.contains('\\')).then(|| &s[1..s.len() - 1])
    })
}

/// The events of `records` in placement order: a topological order of
/// their auth events (and, between timeline events, their prev events),
/// ties broken by first arrival. Kahn's algorithm with a heap: O(n log n).
fn placement_order<'a>(records: &[&'a EventRecord]) -> Vec<Node<'a>> {
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(records.len());
    let mut nodes: Vec<Node<'a>> = Vec::with_capacity(records.len());
    // One node per event: the first record gives the arrival order.
    for rec in records {
        match index.get(rec.event_id()) {
            Some(&i) => {
                let n = &mut nodes[i];
                if rec.kind == RecordKind::Timeline {
                    n.kind = RecordKind::Timeline;
                }
                if rec.state.is_some() {
                    n.state = rec.state.as_ref();
                }
            }
            None => {
                index.insert(rec.event_id(), nodes.len());
                nodes.push(Node { record: rec, kind: rec.kind, state: rec.state.as_ref() });
            }
        }
    }
    let links: Vec<(&str, &str, bool)> =
        nodes.iter().map(|n| (n.record.event_id(), n.record.raw(), n.kind == RecordKind::Timeline)).collect();
    let order = topological_order(&links);
    let mut slots: Vec<Option<Node<'a>>> = nodes.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

/// PDUs (event ID, JSON text) ordered so that every one follows its auth
/// events among them, ties broken by input order: how a `send_join` state
/// and auth chain are stored as outliers. Returns indices into `pdus`.
pub fn order_by_auth(pdus: &[(&str, &str)]) -> Vec<usize> {
    let nodes: Vec<(&str, &str, bool)> = pdus.iter().map(|(id, raw)| (*id, *raw, false)).collect();
    topological_order(&nodes)
}

/// PDUs ordered so that every one follows its prev and auth events among
/// them, ties broken by input order: the dependency order in which one
/// transaction's PDUs are processed. Returns indices into `pdus`.
pub fn order_by_prev_and_auth(pdus: &[(&str, &str)]) -> Vec<usize> {
    let nodes: Vec<(&str, &str, bool)> = pdus.iter().map(|(id, raw)| (*id, *raw, true)).collect();
    topological_order(&nodes)
}

/// Kahn's algorithm over `(event ID, JSON text, in the timeline)` nodes:
/// edges from auth events, and between timeline events from prev events;
/// the create event first (it has no prev or auth events, and in rooms
/// whose IDs are its hash, v12, it is every event's implied auth event);
/// otherwise the earliest input first. O(n log n). A cycle cannot happen
/// with hashed event IDs; if one did, its events follow in input order.
fn topological_order(nodes: &[(&str, &str, bool)]) -> Vec<usize> {
    let index: HashMap<&str, usize> = nodes.iter().enumerate().map(|(i, n)| (n.0, i)).collect();
    let mut successors: Vec<Vec<u32>> = vec![Vec::new(); nodes.len()];
    let mut indegree: Vec<u32> = vec![0; nodes.len()];
    let mut creates: Vec<usize> = Vec::new();
    for (i, &(_, raw, timeline)) in nodes.iter().enumerate() {
        let Ok(links) = serde_json::from_str::<Links<'_>>(raw) else { continue };
        if links.event_type == Some("m.room.create") && links.state_key == Some("") {
            creates.push(i);
        }
        let mut parents: Vec<usize> = ids(&links.auth_events).filter_map(|a| index.get(a).copied()).collect();
        if timeline {
            parents.extend(ids(&links.prev_events).filter_map(|p| index.get(p).copied()).filter(|&p| nodes[p].2));
        }
        parents.sort_unstable();
        parents.dedup();
        for p in parents.into_iter().filter(|&p| p != i) {
            successors[p].push(i as u32);
            indegree[i] += 1;
        }
    }
    let rank = |i: usize| (usize::from(!creates.contains(&i)), i);
    let mut ready: BinaryHeap<Reverse<(usize, usize)>> =
        (0..nodes.len()).filter(|&i| indegree[i] == 0).map(|i| Reverse(rank(i))).collect();
    let mut order: Vec<usize> = Vec::with_capacity(nodes.len());
    let mut done = vec![false; nodes.len()];
    while let Some(Reverse((_, i))) = ready.pop() {
        order.push(i);
        done[i] = true;
        for &s in &successors[i] {
            indegree[s as usize] -= 1;
            if indegree[s as usize] == 0 {
                ready.push(Reverse(rank(s as usize)));
            }
        }
    }
    order.extend((0..nodes.len()).filter(|&i| !done[i]));
    order
}
