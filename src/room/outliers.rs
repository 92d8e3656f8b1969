//! Events outside the timeline DAG (see [`crate::placement`]): outliers,
//! history events pending until a rebuild places them, history events
//! deferred until their auth events arrive; the remote states events are
//! placed with; and the backward extremities these leave.

use std::collections::HashMap;

use crate::ids::{EventId, EventIdx};
use crate::pdu::ParsedPdu;
use crate::placement::{EventRecord, Placement, RecordKind};
use crate::state_set::{StateMap, StateSetId};

use super::{DropStage, Outcome, PageError, Room};

/// A deferred history event's links.
#[derive(Debug)]
pub(super) struct Deferred {
    pub(super) prev_events: Box<[Box<str>]>,
    pub(super) auth_events: Box<[Box<str>]>,
    pub(super) depth: i64,
}

impl Room {
    /// A timeline PDU for an event stored as an outlier: the event is kept
    /// pending (with a timeline record) until a rebuild places it.
    ///
    /// # Errors
    /// The page store failed to read the stored PDU for its record (nothing
    /// changed then).
    pub(super) fn outlier_seen_in_timeline(
        &mut self,
        existing: EventIdx,
        pdu: &ParsedPdu,
        placement: Placement<'_>,
    ) -> Result<(), PageError> {
        let already_pending = self.pending.contains(&existing);
        let new_state = matches!(placement, Placement::WithState(_));
        if placement == Placement::Outlier || !self.event(existing)?.outlier || (already_pending && !new_state) {
            return Ok(());
        }
        let state = match placement {
            Placement::WithState(s) => Some(s.to_vec()),
            _ => None,
        };
        let e = self.event(existing)?;
        let record = match self.keep_records {
            true => Some(EventRecord::with_kind(
                &self.id(existing)?,
                &self.raw(existing)?,
                Some(e.status),
                RecordKind::Timeline,
                state,
            )),
            false => None,
        };
        let mut unplaced: Vec<Box<str>> = Vec::new();
        for p in &pdu.prev_events {
            if self.lookup(p)?.map(|i| self.is_outlier(i)).transpose()?.unwrap_or(true) {
                unplaced.push(Box::from(p.as_str()));
            }
        }
        let unplaced = unplaced.into_boxed_slice();
        if !already_pending {
            self.unplaced_prevs.insert(existing, unplaced);
            self.make_pending(existing);
        }
        self.new_records.extend(record);
        Ok(())
    }

    /// Logs a history event whose auth events are not all stored yet.
    pub(super) fn defer(
        &mut self,
        raw: &str,
        id: &EventId,
        prev_events: &[String],
        auth_events: &[String],
        depth: i64,
    ) -> Outcome {
        let ids = |l: &[String]| l.iter().map(|e| Box::from(e.as_str())).collect::<Box<[Box<str>]>>();
        let key: Box<str> = Box::from(id.as_str());
        self.deferred
            .insert(key.clone(), Deferred { prev_events: ids(prev_events), auth_events: ids(auth_events), depth });
        if self.checkpoint_open {
            self.deferred_log.push(key);
        }
        if self.keep_records {
            self.new_records.push(EventRecord::deferred(id.as_str(), raw));
        }
        Outcome::Deferred { event_id: id.clone() }
    }

    pub(super) fn make_pending(&mut self, idx: EventIdx) {
        self.pending.insert(idx);
        if self.checkpoint_open {
            self.pending_log.push(idx);
        }
    }

    /// The state map of a remote answer: stored state events by ID
    /// (rejected ones cannot be state and are left out).
    pub(super) fn remote_state(&self, ids: &[String]) -> Result<StateMap, (DropStage, String)> {
        let mut entries = Vec::with_capacity(ids.len());
        let mut missing: Vec<&str> = Vec::new();
        for id in ids {
            let Some(e) = self.lookup(id).map_err(|e| (DropStage::Store, e.to_string()))? else {
                missing.push(id);
                continue;
            };
            let ev = self.event(e).map_err(|e| (DropStage::Store, e.to_string()))?;
            match ev.key {
                Some(k) if ev.is_accepted() => entries.push((k, e)),
                Some(_) => {}
                None => return Err((DropStage::Parse, format!("state event {id} is not a state event"))),
            }
        }
        if !missing.is_empty() {
            missing.sort_unstable();
            return Err((DropStage::Missing, format!("unknown state events {missing:?}")));
        }
        let n = entries.len();
        let map = StateMap::from_entries(entries);
        if map.len() != n {
            return Err((DropStage::Parse, "the state lists one (type, state_key) twice".into()));
        }
        Ok(map)
    }

    /// Whether an event is an outlier (known only as state or auth chain,
    /// or a history event waiting for its prev events).
    ///
    /// # Errors
    /// As [`event`](Self::event).
    pub fn is_outlier(&self, idx: EventIdx) -> Result<bool, PageError> {
        Ok(self.event(idx)?.outlier)
    }

    /// History events stored as outliers until a rebuild places them.
    pub fn pending(&self) -> impl Iterator<Item = EventIdx> + '_ {
        self.pending.iter().copied()
    }

    /// The least depth of the room's timeline events (`min_depth` of
    /// `/get_missing_events`), 0 when there are none.
    /// (Kept as events are stored: no event is read.)
    pub fn min_depth(&self) -> i64 {
        self.timeline_min_depth.unwrap_or(0)
    }

    /// The state after each of `states` (lists of stored state event IDs,
    /// e.g. remote `/state_ids` answers), resolved with the room version's
    /// state resolution: the state before an event whose prev events are
    /// these, as event IDs. Rejected events are left out of each state.
    pub fn resolve_remote_states(&mut self, states: &[Vec<String>]) -> Result<Vec<String>, String> {
        let mut ids: Vec<StateSetId> = Vec::with_capacity(states.len());
        for s in states {
            let map = self.remote_state(s).map_err(|(_, reason)| reason)?;
            ids.push(self.states.intern(map, self.events.pages()));
        }
        ids.sort();
        ids.dedup();
        let resolved = match ids.as_slice() {
            [] => StateMap::default(),
            [one] => self.state(*one).map_err(|e| e.to_string())?.clone(),
            many => self.resolve_ids(many).map_err(|e| e.to_string())?.state,
        };
        Ok(resolved.iter().map(|(_, e)| self.state_id(e).to_owned()).collect())
    }

    /// History events logged before their auth events (see [`Outcome::Deferred`]).
    pub fn deferred_count(&self) -> usize {
        self.deferred.len()
    }

    /// Auth events of deferred events that are neither stored nor deferred
    /// themselves: what to fetch when history stops bringing them. One whose
    /// lookup could not read the page store counts as not stored: fetched
    /// again, it is a duplicate or stored then.
    pub fn missing_auth_events(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .deferred
            .values()
            .flat_map(|d| d.auth_events.iter())
            .filter(|a| !matches!(self.lookup(a), Ok(Some(_))) && !self.deferred.contains_key(&***a))
            .map(|a| a.to_string())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The backward extremities: prev events of timeline events (placed or
    /// pending) that are not in the timeline, by event ID — what
    /// `/backfill` is asked for. Sorted by the greatest depth of an event
    /// that lists them (newest gaps first), then by ID. One whose lookup
    /// could not read the page store counts as missing (asked for again).
    ///
    /// # Errors
    /// The page store failed to read back an event that lists them.
    pub fn backward_extremities(&self) -> Result<Vec<(String, i64)>, PageError> {
        let mut found: HashMap<&str, i64> = HashMap::new();
        let in_timeline = |p: &str| {
            self.deferred.contains_key(p)
                || self
                    .lookup(p)
                    .ok()
                    .flatten()
                    .is_some_and(|i| self.is_outlier(i).is_ok_and(|o| !o) || self.pending.contains(&i))
        };
        let mut lists = Vec::with_capacity(self.unplaced_prevs.len() + self.deferred.len());
        for (e, prevs) in &self.unplaced_prevs {
            lists.push((self.event(*e)?.depth, prevs));
        }
        lists.extend(self.deferred.values().map(|d| (d.depth, &d.prev_events)));
        for (depth, prevs) in lists {
            for p in prevs.iter().filter(|p| !in_timeline(p)) {
                let d = found.entry(p).or_insert(depth);
                *d = (*d).max(depth);
            }
        }
        let mut out: Vec<(String, i64)> = found.into_iter().map(|(id, d)| (id.to_owned(), d)).collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(out)
    }
}
