//! The federation history queries, as pure functions over a [`Room`].
//!
//! Each function takes the requesting server (`origin`) and returns either
//! the answer or a [`QueryError`] with the status code and `errcode` the
//! endpoint answers with. Checks run in the reference server's order (see
//! `contract.md`). All work is bounded by the request's capped limit, not by
//! the size of the room.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet, VecDeque};
use std::sync::Arc;

use crate::auth_chain::AuthNode;
use crate::event::StoredEvent;
use crate::ids::EventIdx;
use crate::pages::PageError;
use crate::room::Room;
use crate::visibility::{pruned_for, server_in_room};

/// Most events one `/backfill` returns (the reference server's cap).
pub const BACKFILL_CAP: usize = 100;
/// Most events one `/get_missing_events` returns (the reference server's cap).
pub const GET_MISSING_CAP: usize = 20;
/// `/get_missing_events` limit when the request gives none.
pub const GET_MISSING_DEFAULT: usize = 10;
/// Most `v` / `earliest_events` / `latest_events` entries read from a request;
/// the rest are ignored, so a request's cost does not grow with its size.
pub const MAX_REQUEST_IDS: usize = 256;

/// A query's error answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// 403 `M_FORBIDDEN`: the origin has no joined member in the room.
    #[error("Host not in room.")]
    NotInRoom,
    /// 404 `M_NOT_FOUND`.
    #[error("{0}")]
    NotFound(String),
    /// 500 `M_UNKNOWN`: the room's page store failed to read back what the
    /// answer needs (an event's ID).
    #[error("{0}")]
    Store(#[from] crate::pages::PageError),
}

impl QueryError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            QueryError::NotInRoom => 403,
            QueryError::NotFound(_) => 404,
            QueryError::Store(_) => 500,
        }
    }

    /// The Matrix `errcode`.
    pub fn errcode(&self) -> &'static str {
        match self {
            QueryError::NotInRoom => "M_FORBIDDEN",
            QueryError::NotFound(_) => "M_NOT_FOUND",
            QueryError::Store(_) => "M_UNKNOWN",
        }
    }
}

/// An event in an answer, with whether the origin gets it redacted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Served {
    /// The event.
    pub event: EventIdx,
    /// Served in redacted form.
    pub pruned: bool,
}

/// The `/state_ids` (and `/state`) answer.
#[derive(Clone, Debug)]
pub struct StateIds {
    /// The state before the event.
    pub pdu_ids: Vec<EventIdx>,
    /// The union of those events' auth chains.
    pub auth_chain_ids: Arc<[EventIdx]>,
}

/// Direction of `/timestamp_to_event`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// `f`: the first event at or after the timestamp.
    Forward,
    /// `b`: the last event at or before the timestamp.
    Backward,
}

/// 403 unless `origin` has a joined member in the current state.
pub fn require_in_room(room: &Room, origin: &str) -> Result<(), QueryError> {
    if server_in_room(room, &*room.current_state_map()?, origin) {
        Ok(())
    } else {
        Err(QueryError::NotInRoom)
    }
}

/// An accepted event in the timeline (outliers have no state: the reference
/// server answers 404 "State not known at event" for them).
fn accepted(room: &Room, event_id: &str) -> Result<Option<EventIdx>, QueryError> {
    let Some(e) = room.lookup(event_id)? else { return Ok(None) };
    let ev = room.event(e)?;
    Ok((ev.is_accepted() && !ev.outlier).then_some(e))
}

/// `GET /state_ids/{roomId}?event_id=`: the state before an accepted
/// timeline event and its auth chain.
pub fn state_ids(room: &Room, origin: &str, event_id: &str) -> Result<StateIds, QueryError> {
    require_in_room(room, origin)?;
    let e =
        accepted(room, event_id)?.ok_or_else(|| QueryError::NotFound(format!("Could not find event {event_id}")))?;
    let before = room.event(e)?.state_before;
    Ok(StateIds {
        pdu_ids: room.state(before)?.iter().map(|(_, e)| e).collect(),
        auth_chain_ids: room.state_auth_chain(before)?,
    })
}

/// `GET /event_auth/{roomId}/{eventId}`: the full auth chain of an accepted
/// event, outliers included (the reference server reads any stored event
/// that is not rejected): its auth events, their auth events, and so on
/// (room v12: with the create event), the event itself left out. In arrival
/// order, which is a topological order (an auth event is stored before the
/// events it authorises).
///
/// Bounded by the room's accepted state events (one walk of the auth-chain
/// index, which visits each node of the answer once).
pub fn event_auth(room: &Room, origin: &str, event_id: &str) -> Result<Vec<EventIdx>, QueryError> {
    require_in_room(room, origin)?;
    let not_found = || QueryError::NotFound(format!("Could not find event {event_id}"));
    let e = room.lookup(event_id)?.ok_or_else(not_found)?;
    if !room.event(e)?.is_accepted() {
        return Err(not_found());
    }
    let index = room.auth_index();
    // An accepted event's auth events are accepted state events, all indexed.
    let auth: Vec<AuthNode> =
        room.auth_events(e)?.iter().filter_map(|a| room.events().auth_node_of(a.ix()).map(AuthNode)).collect();
    let chain = index.chains(&auth, true);
    Ok(chain.iter().map(|n| index.event(n)).collect())
}

/// `GET /backfill/{roomId}?v=…&limit=…`.
///
/// A best-first walk from the stored `v` events, popping the largest
/// `(depth, arrival)` first and pushing each popped event's prev events,
/// until `limit` (capped at [`BACKFILL_CAP`]) events are popped. Rejected
/// events are walked and counted but not returned. Newest first.
pub fn backfill(room: &Room, origin: &str, v: &[String], limit: usize) -> Result<Vec<Served>, QueryError> {
    require_in_room(room, origin)?;
    let limit = limit.min(BACKFILL_CAP);
    let key = |e: EventIdx| -> Result<(i64, EventIdx), PageError> { Ok((room.event(e)?.depth, e)) };
    let mut heap: BinaryHeap<(i64, EventIdx)> = BinaryHeap::new();
    let mut queued: HashSet<EventIdx> = HashSet::new();
    for id in v.iter().take(MAX_REQUEST_IDS) {
        if let Some(e) = room.lookup(id)? {
            if queued.insert(e) {
                heap.push(key(e)?);
            }
        }
    }
    let mut result: Vec<(i64, EventIdx)> = Vec::with_capacity(limit);
    while result.len() < limit {
        let Some(popped) = heap.pop() else { break };
        result.push(popped);
        for p in room.prev_events(popped.1)?.iter() {
            if queued.insert(*p) {
                heap.push(key(*p)?);
            }
        }
    }
    result.sort_by_key(|k| Reverse(*k));
    let mut served = Vec::with_capacity(result.len());
    for (_, e) in result {
        if room.event(e)?.is_accepted() {
            served.push(e);
        }
    }
    served_to(room, served, origin)
}

/// `POST /get_missing_events/{roomId}`.
///
/// A FIFO breadth-first walk: `seen` starts as `earliest ∪ latest`, the
/// queue as the stored `latest_events`; each popped event's prev events (in
/// PDU order) that are stored and unseen are marked, collected and queued,
/// until `limit` (default [`GET_MISSING_DEFAULT`], capped at
/// [`GET_MISSING_CAP`]) are collected. Oldest first; rejected events left
/// out. `min_depth` is ignored, like the reference server.
pub fn get_missing_events(
    room: &Room,
    origin: &str,
    earliest: &[String],
    latest: &[String],
    limit: Option<usize>,
) -> Result<Vec<Served>, QueryError> {
    require_in_room(room, origin)?;
    let limit = limit.unwrap_or(GET_MISSING_DEFAULT).min(GET_MISSING_CAP);
    let mut seen: HashSet<EventIdx> = HashSet::new();
    for id in earliest.iter().chain(latest).take(2 * MAX_REQUEST_IDS) {
        if let Some(e) = room.lookup(id)? {
            seen.insert(e);
        }
    }
    let mut queue: VecDeque<EventIdx> = VecDeque::new();
    let mut queued_seeds: HashSet<EventIdx> = HashSet::new();
    for id in latest.iter().take(MAX_REQUEST_IDS) {
        if let Some(e) = room.lookup(id)? {
            if queued_seeds.insert(e) {
                queue.push_back(e);
            }
        }
    }
    let mut result: Vec<EventIdx> = Vec::with_capacity(limit);
    'walk: while let Some(e) = queue.pop_front() {
        if result.len() >= limit {
            break;
        }
        for p in room.prev_events(e)?.iter() {
            if result.len() >= limit {
                break 'walk;
            }
            if seen.insert(*p) {
                result.push(*p);
                queue.push_back(*p);
            }
        }
    }
    result.reverse();
    let mut accepted = Vec::with_capacity(result.len());
    for e in result {
        if room.event(e)?.is_accepted() {
            accepted.push(e);
        }
    }
    served_to(room, accepted, origin)
}

/// `events` as served to `origin` (each pruned as it may see it).
fn served_to(room: &Room, events: Vec<EventIdx>, origin: &str) -> Result<Vec<Served>, QueryError> {
    events.into_iter().map(|e| Ok(Served { event: e, pruned: pruned_for(room, e, origin)? })).collect()
}

/// `GET /timestamp_to_event/{roomId}?ts=&dir=`: among accepted timeline events
/// ordered by `(origin_server_ts, depth, arrival)`, the first at or after
/// `ts` (`f`) or the last at or before it (`b`).
///
/// Reads the open block, then only the full blocks whose timeline's
/// timestamps may hold a better answer (each block's least and greatest
/// are held), nearest `ts` first, until none can: timestamps mostly grow
/// with arrival, so a block or two of a room of any size. Bounded by the
/// room's blocks whose timestamps span `ts` (all of them at worst, for
/// timestamps that jump back and forth).
pub fn timestamp_to_event(room: &Room, origin: &str, ts: i128, dir: Direction) -> Result<EventIdx, QueryError> {
    require_in_room(room, origin)?;
    let events = room.events();
    let forward = dir == Direction::Forward;
    let mut found: Option<(i128, i64, EventIdx)> = None;
    let consider = |found: &mut Option<(i128, i64, EventIdx)>, list: &[StoredEvent]| {
        for e in list.iter().filter(|e| e.is_accepted() && !e.outlier) {
            let k = (i128::from(e.origin_server_ts), e.depth, e.idx);
            *found = match *found {
                f if (forward && k.0 < ts) || (!forward && k.0 > ts) => f,
                Some(f) if (forward && f <= k) || (!forward && f >= k) => Some(f),
                _ => Some(k),
            };
        }
    };
    consider(&mut found, events.open_block());
    // The full blocks that may hold an answer, by the nearest timestamp to
    // `ts` each may hold.
    let mut blocks: Vec<(i128, usize)> = (0..events.full_blocks())
        .filter_map(|b| {
            let (lo, hi) = events.block_ts_range(b)?;
            let (lo, hi) = (i128::from(lo), i128::from(hi));
            match forward {
                true => (hi >= ts).then_some((lo.max(ts), b)),
                false => (lo <= ts).then_some((hi.min(ts), b)),
            }
        })
        .collect();
    blocks.sort_unstable_by_key(|&(nearest, b)| if forward { (nearest, b) } else { (-nearest, b) });
    for (nearest, b) in blocks {
        // A block whose nearest timestamp is worse than the answer found
        // cannot hold a better one (an equal timestamp may: depth decides).
        if found.is_some_and(|f| if forward { f.0 < nearest } else { f.0 > nearest }) {
            break;
        }
        consider(&mut found, events.block_events(b)?);
    }
    found.map(|(_, _, e)| e).ok_or_else(|| {
        let d = if dir == Direction::Forward { "forward" } else { "backward" };
        QueryError::NotFound(format!("Unable to find event from {ts} in {d} direction"))
    })
}

/// `GET /event/{eventId}`: any stored event (rejected ones too).
pub fn event(room: &Room, origin: &str, event_id: &str) -> Result<Served, QueryError> {
    let e = room.lookup(event_id)?.ok_or_else(|| QueryError::NotFound(format!("Could not find event {event_id}")))?;
    require_in_room(room, origin)?;
    Ok(Served { event: e, pruned: pruned_for(room, e, origin)? })
}
