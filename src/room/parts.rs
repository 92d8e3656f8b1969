//! A room taken apart part by part: what each part of it holds, for a
//! benchmark that counts its heap (`benches/hq.rs`).

use super::Room;

impl Room {
    /// Drops the room part by part, calling `dropped(part)` after each: a
    /// benchmark that counts the heap measures what each part held. A name
    /// (sender, type, state key) held by several parts is counted with the
    /// last to drop it (the interner). For measuring only.
    #[doc(hidden)]
    pub fn drop_by_parts(self, dropped: &mut dyn FnMut(&'static str)) {
        let Room {
            rules: _,
            room_id,
            events,
            by_id,
            rejections,
            strings,
            level_chunks,
            keys,
            key_names,
            states,
            auth_index,
            resolutions,
            mainlines,
            referenced,
            referenced_log,
            checkpoint_open: _,
            extremities,
            timeline_min_depth: _,
            dropped: dropped_log,
            dropped_bytes: _,
            dropped_total: _,
            redactions,
            pending,
            pending_log,
            unplaced_prevs,
            deferred,
            deferred_log,
            new_records,
            keep_records: _,
            caches,
        } = self;
        drop(caches);
        drop(mainlines);
        dropped("caches: current state, digests, state auth chains, mainlines");
        states.drop_by_parts(dropped);
        drop(resolutions);
        dropped("states: resolutions");
        events.drop_by_parts(dropped);
        drop(by_id);
        dropped("ID index (event ID hash → event)");
        drop(auth_index);
        dropped("auth-chain index");
        drop(referenced);
        drop(extremities);
        dropped("referenced flags, forward extremities");
        drop((rejections, redactions, pending, unplaced_prevs, deferred, dropped_log, new_records));
        drop((referenced_log, pending_log, deferred_log, room_id));
        dropped("rejections, redactions, pending and deferred events, dropped log, records");
        drop(level_chunks);
        dropped("power-level maps' chunks");
        drop(keys);
        drop(key_names);
        dropped("state keys: index and (type, state key) pairs");
        drop(strings);
        dropped("names: the interner (and every name's text)");
    }
}
