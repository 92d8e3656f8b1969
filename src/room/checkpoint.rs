//! Checkpoints: marking the room's extent before a batch and undoing the
//! batch when its write fails.

use std::collections::BTreeMap;

use crate::event::EventsMark;
use crate::ids::EventIdx;
use crate::state_set::{StateSetId, StatesMark};

use super::{Caches, Room};

/// The lengths of the room's append-only parts at a point in time, to undo a
/// failed batch.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    events: EventsMark,
    states: StatesMark,
    auth_nodes: usize,
    dropped: usize,
    dropped_bytes: usize,
    dropped_total: u64,
    room_id: Option<String>,
    extremities: BTreeMap<EventIdx, StateSetId>,
    timeline_min_depth: Option<i64>,
    referenced_log: usize,
    pending_log: usize,
    deferred_log: usize,
    new_records: usize,
}

impl Room {
    /// Marks the current extent of the room, to [`rollback`](Self::rollback)
    /// to; [`release`](Self::release) it once the batch is safely stored.
    pub fn checkpoint(&mut self) -> Checkpoint {
        self.checkpoint_open = true;
        self.events.hold();
        Checkpoint {
            events: self.events.mark(),
            states: self.states.mark(),
            auth_nodes: self.auth_index.len(),
            dropped: self.dropped.len(),
            dropped_bytes: self.dropped_bytes,
            dropped_total: self.dropped_total,
            room_id: self.room_id.clone(),
            extremities: self.extremities.clone(),
            timeline_min_depth: self.timeline_min_depth,
            referenced_log: self.referenced_log.len(),
            pending_log: self.pending_log.len(),
            deferred_log: self.deferred_log.len(),
            new_records: self.new_records.len(),
        }
    }

    /// Ends a checkpoint whose batch was stored (nothing to undo any more):
    /// the states' full pool segments are written as rows now.
    pub fn release(&mut self, _cp: Checkpoint) {
        self.checkpoint_open = false;
        self.events.release();
        self.referenced_log.clear();
        self.pending_log.clear();
        self.deferred_log.clear();
        self.trim_dropped_log();
        self.page_states();
    }

    /// Undoes everything stored since `cp` (a batch whose write failed).
    pub fn rollback(&mut self, cp: Checkpoint) {
        self.checkpoint_open = false;
        let kept = cp.events.len();
        self.by_id.remove_since(EventIdx(kept as u32));
        self.rejections.retain(|e, _| e.ix() < kept);
        self.events.cut(cp.events);
        self.events.release();
        self.referenced.truncate(kept);
        for p in self.referenced_log.drain(cp.referenced_log..) {
            if p.ix() < self.referenced.len() {
                self.referenced.set(p.ix(), false);
            }
        }
        for p in self.pending_log.drain(cp.pending_log..) {
            self.pending.remove(&p);
            if p.ix() < kept {
                self.unplaced_prevs.remove(&p);
            }
        }
        self.pending.retain(|e| e.ix() < kept);
        self.unplaced_prevs.retain(|e, _| e.ix() < kept);
        for d in self.deferred_log.drain(cp.deferred_log..) {
            self.deferred.remove(&d);
        }
        self.new_records.truncate(cp.new_records);
        self.states.truncate(&cp.states);
        self.auth_index.truncate(cp.auth_nodes);
        let limit = self.states.len();
        self.resolutions.retain(|k, v| (v.0 as usize) < limit && k.iter().all(|s| (s.0 as usize) < limit));
        self.dropped.truncate(cp.dropped);
        self.dropped_bytes = cp.dropped_bytes;
        self.dropped_total = cp.dropped_total;
        self.trim_dropped_log();
        self.room_id = cp.room_id;
        self.extremities = cp.extremities;
        self.timeline_min_depth = cp.timeline_min_depth;
        self.redactions.truncate(kept);
        *self.caches.borrow_mut() = Caches::default();
        self.mainlines.clear();
    }
}
