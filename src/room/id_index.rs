//! The room's event ID → index map.

use std::collections::HashMap;

use crate::event::Events;
use crate::ids::{EventIdx, IntHasher, IntMap};

/// Event ID → index, keyed by a 32-bit hash of the ID so that the ID text is
/// stored once (in the event); the rare colliding IDs go to a plain map.
#[derive(Debug, Default)]
pub(super) struct IdIndex {
    by_hash: IntMap<u32, EventIdx>,
    collisions: HashMap<Box<str>, EventIdx>,
}

/// 32 bits of a hash of the ID: enough to find the event (a collision
/// costs one extra entry in the side map, keyed by the whole ID with a
/// random SipHash, never a wrong answer), so a fast unkeyed mix will do.
fn id_hash(id: &str) -> u32 {
    use std::hash::Hasher;
    let mut h = IntHasher::default();
    for chunk in id.as_bytes().chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h.write_u64(u64::from_le_bytes(word));
    }
    (h.finish() >> 32) as u32
}

impl IdIndex {
    /// An empty index with room for `n` IDs (a room read back from its image).
    pub(super) fn with_capacity(n: usize) -> Self {
        Self { by_hash: IntMap::with_capacity_and_hasher(n, Default::default()), collisions: HashMap::new() }
    }

    pub(super) fn get(&self, id: &str, events: &Events) -> Option<EventIdx> {
        if let Some(i) = self.by_hash.get(&id_hash(id)) {
            if events.id(&events[i.ix()]) == id {
                return Some(*i);
            }
        }
        self.collisions.get(id).copied()
    }

    pub(super) fn insert(&mut self, id: &str, idx: EventIdx) {
        match self.by_hash.entry(id_hash(id)) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(idx);
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.collisions.insert(id.into(), idx);
            }
        }
    }

    pub(super) fn remove(&mut self, id: &str, idx: EventIdx) {
        if self.collisions.remove(id).is_none() && self.by_hash.get(&id_hash(id)) == Some(&idx) {
            self.by_hash.remove(&id_hash(id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Facts, NewEvent};
    use crate::ids::Name;
    use crate::state_set::StateSetId;

    /// IDs whose 32-bit hashes collide are all found (the second goes to
    /// the side map), and removing one leaves the other.
    #[test]
    fn id_index_survives_hash_collisions() {
        let mut first_with: HashMap<u32, String> = HashMap::new();
        let (a, b) = (0u64..)
            .find_map(|i| {
                let id = format!("${i}");
                match first_with.insert(id_hash(&id), id.clone()) {
                    Some(other) => Some((other, id)),
                    None => None,
                }
            })
            .expect("a collision (birthday bound: about 2^16 IDs)");
        assert_eq!(id_hash(&a), id_hash(&b));
        let mut events = Events::default();
        let mut index = IdIndex::default();
        for (i, id) in [&a, &b, &"$other".to_owned()].into_iter().enumerate() {
            let e = events
                .prepare(NewEvent {
                    id,
                    raw: "{}",
                    prev_events: &[],
                    pdu_prev_count: 0,
                    first_prev: None,
                    outlier: false,
                    auth_events: &[],
                    sender: Name::new("@a:x"),
                    event_type: Name::new("m.room.message"),
                    state_key: None,
                    key: None,
                    depth: 0,
                    origin_server_ts: 0,
                    facts: Facts::None,
                    state_before: StateSetId::EMPTY,
                    redacted_on_receipt: false,
                })
                .unwrap();
            events.push(e);
            index.insert(id, EventIdx(i as u32));
        }
        assert_eq!(index.get(&a, &events), Some(EventIdx(0)));
        assert_eq!(index.get(&b, &events), Some(EventIdx(1)));
        assert_eq!(index.get("$other", &events), Some(EventIdx(2)));
        assert_eq!(index.get("$absent", &events), None);
        index.remove(&a, EventIdx(0));
        assert_eq!(index.get(&a, &events), None);
        assert_eq!(index.get(&b, &events), Some(EventIdx(1)));
    }
}
