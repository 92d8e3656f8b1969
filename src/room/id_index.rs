//! The room's event ID → index map.

use std::collections::HashMap;

use crate::event::Events;
use crate::ids::{EventIdx, IntHasher, IntMap};
use crate::image::{index, ImageError, Reader, Writer};
use crate::pages::PageError;

/// Event ID → index, keyed by a 32-bit hash of the ID so that the ID text is
/// stored once (in the event); the rare colliding IDs go to a plain map.
///
/// Most events are in a sorted array of `hash << 32 | index` (8 bytes an
/// event; a binary search within the run of its hash's top bits finds an
/// ID, colliding hashes side by side): those read back from the room's
/// image, read as written (hashing 150,000 IDs into a map again took a
/// fifth of a read-back), and those merged in since. New events go to a
/// map first, merged into the array once the map holds an eighth of it: a
/// map of every event took 18 MiB at Matrix HQ's million events (hashbrown
/// at its load factor), the array takes 8.
#[derive(Debug, Default)]
pub(super) struct IdIndex {
    sorted: Vec<u64>,
    /// Where the run of each value of a hash's top `bits` bits starts in
    /// `sorted` (`2^bits + 1` entries; none while `sorted` is empty).
    starts: Vec<u32>,
    bits: u32,
    by_hash: IntMap<u32, EventIdx>,
    collisions: HashMap<Box<str>, EventIdx>,
}

/// The map is merged into the sorted array once it holds this many events
/// and an eighth of the array.
const MERGE_AT_LEAST: usize = 4096;

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

fn entry(h: u32, idx: EventIdx) -> u64 {
    u64::from(h) << 32 | u64::from(idx.0)
}

impl IdIndex {
    /// The sorted array read back from an image (checked by the caller).
    fn from_sorted(sorted: Vec<u64>) -> Self {
        let mut index = Self { sorted, ..Self::default() };
        index.reindex();
        index
    }

    /// The run of `sorted` whose hashes share `h`'s top bits.
    fn run(&self, h: u32) -> &[u64] {
        if self.starts.is_empty() {
            return &[];
        }
        let b = (u64::from(h) >> (32 - self.bits)) as usize;
        &self.sorted[self.starts[b] as usize..self.starts[b + 1] as usize]
    }

    /// Recomputes `starts` (about one run per 8 events, at most 2^16 runs).
    fn reindex(&mut self) {
        self.starts.clear();
        if self.sorted.is_empty() {
            return;
        }
        self.bits = (self.sorted.len() / 8).max(1).ilog2().min(16);
        let runs = 1usize << self.bits;
        self.starts.reserve_exact(runs + 1);
        let mut at = 0;
        for b in 0..runs as u64 {
            while at < self.sorted.len() && (self.sorted[at] >> 32) >> (32 - self.bits) < b {
                at += 1;
            }
            self.starts.push(at as u32);
        }
        self.starts.push(self.sorted.len() as u32);
    }

    /// Moves the map's events into the sorted array (merged from the back,
    /// in place).
    fn merge(&mut self) {
        let mut new: Vec<u64> = self.by_hash.iter().map(|(h, i)| entry(*h, *i)).collect();
        self.by_hash = IntMap::default();
        new.sort_unstable();
        let old = self.sorted.len();
        self.sorted.reserve_exact(new.len());
        self.sorted.resize(old + new.len(), 0);
        let (mut i, mut j) = (old, new.len());
        for k in (0..self.sorted.len()).rev() {
            if j == 0 {
                break;
            }
            if i > 0 && self.sorted[i - 1] > new[j - 1] {
                self.sorted[k] = self.sorted[i - 1];
                i -= 1;
            } else {
                self.sorted[k] = new[j - 1];
                j -= 1;
            }
        }
        self.reindex();
    }

    /// The event of ID `id`, if stored: those of its hash whose ID is
    /// `id` (an ID the room does not hold is read back from the page store).
    ///
    /// # Errors
    /// The page store failed to read back the ID of an event of that hash.
    pub(super) fn get(&self, id: &str, events: &Events) -> Result<Option<EventIdx>, PageError> {
        let h = id_hash(id);
        let run = self.run(h);
        let from = run.partition_point(|x| ((x >> 32) as u32) < h);
        for x in run[from..].iter().take_while(|x| (*x >> 32) as u32 == h) {
            let i = EventIdx(*x as u32);
            if events.id(&events[i.ix()])? == id {
                return Ok(Some(i));
            }
        }
        if let Some(i) = self.by_hash.get(&h) {
            if events.id(&events[i.ix()])? == id {
                return Ok(Some(*i));
            }
        }
        Ok(self.collisions.get(id).copied())
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
        if self.by_hash.len() >= MERGE_AT_LEAST.max(self.sorted.len() / 8) {
            self.merge();
        }
    }

    /// Forgets the events from `first` on (a rollback of the batch that
    /// stored them).
    pub(super) fn remove_since(&mut self, first: EventIdx) {
        let kept = |i: &EventIdx| i.0 < first.0;
        self.collisions.retain(|_, i| kept(i));
        self.by_hash.retain(|_, i| kept(i));
        let before = self.sorted.len();
        self.sorted.retain(|x| kept(&EventIdx(*x as u32)));
        if self.sorted.len() != before {
            self.reindex();
        }
    }

    /// Writes every event's ID hash and index, sorted.
    ///
    /// From the index itself (every stored event is in one of its parts):
    /// no walk over the event table, no ID hashed again.
    pub(super) fn write_image(&self, w: &mut Writer<'_>) {
        let mut all: Vec<u64> = Vec::with_capacity(self.sorted.len() + self.by_hash.len() + self.collisions.len());
        all.extend_from_slice(&self.sorted);
        all.extend(self.by_hash.iter().map(|(h, i)| entry(*h, *i)));
        all.extend(self.collisions.iter().map(|(id, i)| entry(id_hash(id), *i)));
        all.sort_unstable();
        w.u64s(&all);
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
        Ok(Self::from_sorted(read))
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
        assert_eq!(index.get(&a, &events).unwrap(), Some(EventIdx(0)));
        assert_eq!(index.get(&b, &events).unwrap(), Some(EventIdx(1)));
        assert_eq!(index.get("$other", &events).unwrap(), Some(EventIdx(2)));
        assert_eq!(index.get("$absent", &events).unwrap(), None);
        index.remove_since(EventIdx(1));
        assert_eq!(index.get(&a, &events).unwrap(), Some(EventIdx(0)));
        assert_eq!(index.get(&b, &events).unwrap(), None);
        assert_eq!(index.get("$other", &events).unwrap(), None);
        index.remove_since(EventIdx(0));
        assert_eq!(index.get(&a, &events).unwrap(), None);
    }

    /// Over many events (the map merged into the sorted array again and
    /// again, colliding IDs on either side of a merge), every ID is found
    /// and no other; the map stays under an eighth of the array; a
    /// rollback forgets exactly the events from its first on, wherever
    /// they are, and the index takes new events after it.
    #[test]
    fn id_index_merges_as_it_grows_and_rolls_back() {
        let (a, b) = colliding_ids();
        let mut ids: Vec<String> = (0..20_000).map(|i| format!("$e{i}")).collect();
        ids[5] = a.clone();
        ids[15_000] = b.clone();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let events = events_with(&refs);
        let mut index = IdIndex::default();
        for (i, id) in ids.iter().enumerate() {
            index.insert(id, EventIdx(i as u32));
            assert!(index.by_hash.len() < MERGE_AT_LEAST.max(index.sorted.len() / 8));
        }
        assert!(index.sorted.len() > 15_000 && index.bits > 8, "{} sorted, {} bits", index.sorted.len(), index.bits);
        let found = |index: &IdIndex, upto: usize| {
            for (i, id) in ids.iter().enumerate() {
                let want = (i < upto).then_some(EventIdx(i as u32));
                assert_eq!(index.get(id, &events).unwrap(), want, "{id}");
            }
            assert_eq!(index.get("$e20000", &events).unwrap(), None);
        };
        found(&index, ids.len());
        // Written from its parts (the sorted array, the map, the side map)
        // and read back, it lists each event once and finds every one.
        let read = crate::image::round_trip(|w| index.write_image(w), |r| IdIndex::read_image(r, ids.len())).unwrap();
        assert!(read.by_hash.is_empty() && read.sorted.len() == ids.len());
        found(&read, ids.len());
        index.remove_since(EventIdx(12_500));
        found(&index, 12_500);
        for (i, id) in ids.iter().enumerate().skip(12_500) {
            index.insert(id, EventIdx(i as u32));
        }
        found(&index, ids.len());
        index.remove_since(EventIdx(3));
        found(&index, 3);
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
        let mut live = IdIndex::default();
        for (i, id) in refs.iter().enumerate() {
            live.insert(id, EventIdx(i as u32));
        }
        let mut index =
            crate::image::round_trip(|w| live.write_image(w), |r| IdIndex::read_image(r, written.len())).unwrap();
        // The room as it is later, with one more event.
        refs.push("$later");
        let events = events_with(&refs);
        assert!(index.by_hash.is_empty() && index.collisions.is_empty() && index.sorted.len() == written.len());
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(index.get(id, &events).unwrap(), Some(EventIdx(i as u32)), "{id}");
        }
        assert_eq!(index.get("$absent", &events).unwrap(), None);
        assert_eq!(index.get("$later", &events).unwrap(), None);
        index.insert("$later", EventIdx(502));
        assert_eq!(index.get("$later", &events).unwrap(), Some(EventIdx(502)));
        index.remove_since(EventIdx(502));
        assert_eq!(index.get("$later", &events).unwrap(), None);
        assert_eq!(index.get(&a, &events).unwrap(), Some(EventIdx(17)));
        assert_eq!(index.get(&b, &events).unwrap(), Some(EventIdx(301)));
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
