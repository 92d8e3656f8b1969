//! The room's event ID → index map.

use std::collections::HashMap;

use crate::event::Events;
use crate::ids::{EventIdx, IntHasher, IntMap};
use crate::image::{index, ImageError, Reader, Writer};

/// Event ID → index, keyed by a 32-bit hash of the ID so that the ID text is
/// stored once (in the event); the rare colliding IDs go to a plain map.
///
/// A room read back from its image holds the events it had then as a
/// sorted array of `hash << 32 | index`, read as written (a binary search
/// finds an ID, colliding hashes side by side), and only the events stored
/// since in the maps: hashing 150,000 IDs into a map again took a fifth of
/// a read-back.
#[derive(Debug, Default)]
pub(super) struct IdIndex {
    read: Box<[u64]>,
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
    pub(super) fn get(&self, id: &str, events: &Events) -> Option<EventIdx> {
        let h = id_hash(id);
        let from = self.read.partition_point(|x| ((x >> 32) as u32) < h);
        for x in self.read[from..].iter().take_while(|x| (*x >> 32) as u32 == h) {
            let i = EventIdx(*x as u32);
            if events.id(&events[i.ix()]) == id {
                return Some(i);
            }
        }
        if let Some(i) = self.by_hash.get(&h) {
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

    /// Forgets an event stored since the room opened (a rollback; the
    /// events read back from its image stay).
    pub(super) fn remove(&mut self, id: &str, idx: EventIdx) {
        if self.collisions.remove(id).is_none() && self.by_hash.get(&id_hash(id)) == Some(&idx) {
            self.by_hash.remove(&id_hash(id));
        }
    }

    /// Writes every event's ID hash and index, sorted.
    pub(super) fn write_image(events: &Events, w: &mut Writer<'_>) {
        let mut sorted: Vec<u64> =
            events.iter().map(|e| u64::from(id_hash(events.id(&e))) << 32 | u64::from(e.idx.0)).collect();
        sorted.sort_unstable();
        w.u64s(&sorted);
    }

    /// Reads what [`write_image`](Self::write_image) wrote for `events`
    /// events: each of them once, in order.
    pub(super) fn read_image(r: &mut Reader<'_>, events: usize) -> Result<Self, ImageError> {
        let mut read = Vec::new();
        r.u64s_into(&mut read)?;
        let corrupt = || ImageError::Corrupt("the event ID index does not list each event once, in order".into());
        if read.len() != events || read.windows(2).any(|w| w[0] >= w[1]) {
            return Err(corrupt());
        }
        let mut seen = vec![false; events];
        for x in &read {
            let i = index(*x as u32, events, "an indexed event")? as usize;
            if std::mem::replace(&mut seen[i], true) {
                return Err(corrupt());
            }
        }
        Ok(Self { read: read.into_boxed_slice(), ..Self::default() })
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
        let (a, b) = colliding_ids();
        assert_eq!(id_hash(&a), id_hash(&b));
        let events = events_with(&[&a, &b, "$other"]);
        let mut index = IdIndex::default();
        for (i, id) in [&a, &b, &"$other".to_owned()].into_iter().enumerate() {
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

    /// Two IDs whose 32-bit hashes collide, as [`id_hash`] makes them.
    fn colliding_ids() -> (String, String) {
        let mut first_with: HashMap<u32, String> = HashMap::new();
        (0u64..)
            .find_map(|i| {
                let id = format!("${i}");
                first_with.insert(id_hash(&id), id.clone()).map(|other| (other, id))
            })
            .expect("a collision (birthday bound: about 2^16 IDs)")
    }

    fn events_with(ids: &[&str]) -> Events {
        let mut events = Events::default();
        for id in ids {
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
        }
        events
    }

    /// Read back from an image, the index finds every event (colliding
    /// hashes too) without a map; events stored since go to the maps, and a
    /// rollback removes them, not the events read back.
    #[test]
    fn id_index_read_back_finds_every_event_and_takes_new_ones() {
        let (a, b) = colliding_ids();
        let mut ids: Vec<String> = (0..500).map(|i| format!("$event{i}")).collect();
        ids.insert(17, a.clone());
        ids.insert(301, b.clone());
        let mut refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let written = events_with(&refs);
        let mut index =
            crate::image::round_trip(|w| IdIndex::write_image(&written, w), |r| IdIndex::read_image(r, written.len()))
                .unwrap();
        // The room as it is later, with one more event.
        refs.push("$later");
        let events = events_with(&refs);
        assert!(index.by_hash.is_empty() && index.collisions.is_empty());
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(index.get(id, &events), Some(EventIdx(i as u32)), "{id}");
        }
        assert_eq!(index.get("$absent", &events), None);
        assert_eq!(index.get("$later", &events), None);
        index.insert("$later", EventIdx(502));
        assert_eq!(index.get("$later", &events), Some(EventIdx(502)));
        index.remove("$later", EventIdx(502));
        assert_eq!(index.get("$later", &events), None);
        assert_eq!(index.get(&a, &events), Some(EventIdx(17)));
        assert_eq!(index.get(&b, &events), Some(EventIdx(301)));
    }

    /// An index that does not list each event once, in order, is refused.
    #[test]
    fn id_index_read_back_refuses_a_corrupt_list() {
        let read = |list: Vec<u64>, events: usize| {
            crate::image::round_trip(|w| w.u64s(&list), |r| IdIndex::read_image(r, events)).map(|_| ())
        };
        assert!(read(vec![1 << 32, 2 << 32 | 1], 2).is_ok());
        assert!(read(vec![1 << 32], 2).is_err(), "one missing");
        assert!(read(vec![2 << 32 | 1, 1 << 32], 2).is_err(), "out of order");
        assert!(read(vec![1 << 32, 2 << 32], 2).is_err(), "one twice");
        assert!(read(vec![1 << 32, 2 << 32 | 5], 2).is_err(), "past the events");
    }
}
