//! The room's event ID → index map.

use std::collections::HashMap;

use super::id_buckets::IdBuckets;

use crate::event::Events;
use crate::ids::{EventIdx, IntHasher, IntMap};
use crate::image::{index, ImageError, Reader, Writer};
use crate::pages::PageError;

/// Event ID → index, keyed by a 32-bit hash of the ID so that the ID text is
/// stored once (with the event, or in its block's row of IDs); the rare
/// colliding IDs go to a plain map.
///
/// Most events are in a sorted array of `hash << 32 | index` (8 bytes an
/// event; a binary search finds an ID, colliding hashes side by side):
/// those read back from the room's image, read as written (hashing 150,000
/// IDs into a map again took a fifth of a read-back), and those merged in
/// since. New events go to a map first, merged into the array once the map
/// holds an eighth of it: a map of every event took 18 MiB at Matrix HQ's
/// million events (hashbrown at its load factor), the array takes 8. The
/// array is cut into chunks of at most `2 * CHUNK` entries (each sorted, each
/// below the next), so that a merge copies one chunk at a time: growing one
/// array held it twice while it was copied (8 MiB more at HQ's size).
///
/// With a page store, the entries of settled messages move to rows of the
/// store ([`IdBuckets`], by [`page`](Self::page)): those above stay in
/// memory for state events (every PDU's auth events are looked up), for
/// events not settled yet, and for settled messages until enough gather to
/// move.
#[derive(Debug, Default)]
pub(super) struct IdIndex {
    chunks: Vec<Box<[u64]>>,
    /// The first entry of each chunk.
    firsts: Vec<u64>,
    /// Entries in `chunks`.
    sorted: usize,
    by_hash: IntMap<u32, EventIdx>,
    collisions: HashMap<Box<str>, EventIdx>,
    paged: IdBuckets,
}

/// Settled messages' entries move to the page store once this many more
/// events are settled and an eighth of those there.
const PAGE_AT_LEAST: usize = 1024;

/// The map is merged into the sorted array once it holds this many events
/// and an eighth of the array.
const MERGE_AT_LEAST: usize = 4096;

/// Entries of a chunk of the sorted array (256 KiB); a chunk grown past
/// twice this is split. (The unit tests use small chunks, to have many.)
#[cfg(not(test))]
const CHUNK: usize = 1 << 15;
#[cfg(test)]
const CHUNK: usize = 1 << 8;

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

/// Appends the entries of `a` and `b` (each sorted) to `out`, in order.
pub(super) fn merge_sorted(a: &[u64], b: &[u64], out: &mut Vec<u64>) {
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if j == b.len() || (i < a.len() && a[i] < b[j]) {
            out.push(a[i]);
            i += 1;
        } else {
            out.push(b[j]);
            j += 1;
        }
    }
}

/// `sorted` cut into chunks of `CHUNK` entries.
fn chunked(sorted: &[u64]) -> Vec<Box<[u64]>> {
    sorted.chunks(CHUNK).map(Box::from).collect()
}

impl IdIndex {
    /// The sorted array read back from an image, in chunks (checked by the
    /// caller).
    fn from_chunks(chunks: Vec<Box<[u64]>>) -> Self {
        let mut index = Self { chunks, ..Self::default() };
        index.reindex();
        index
    }

    /// Drops empty chunks and recomputes `firsts` and `sorted`.
    fn reindex(&mut self) {
        self.chunks.retain(|c| !c.is_empty());
        self.firsts = self.chunks.iter().map(|c| c[0]).collect();
        self.sorted = self.chunks.iter().map(|c| c.len()).sum();
    }

    /// The sorted array's entries, in order.
    fn entries(&self) -> impl Iterator<Item = u64> + '_ {
        self.chunks.iter().flat_map(|c| c.iter().copied())
    }

    /// The sorted array's entries of hash `h`, in order.
    fn of_hash(&self, h: u32) -> impl Iterator<Item = EventIdx> + '_ {
        let lo = u64::from(h) << 32;
        let c = self.firsts.partition_point(|f| *f < lo).saturating_sub(1);
        let at = self.chunks.get(c).map_or(0, |chunk| chunk.partition_point(|x| *x < lo));
        let tail = self.chunks.get(c).map_or(&[][..], |chunk| &chunk[at..]);
        let rest = self.chunks.iter().skip(c + 1).flat_map(|chunk| chunk.iter());
        tail.iter().chain(rest).take_while(move |x| (*x >> 32) as u32 == h).map(|x| EventIdx(*x as u32))
    }

    /// Moves the map's events into the sorted array, one chunk at a time:
    /// each chunk that gets new entries is merged into a new chunk (split
    /// in two past `2 * CHUNK`), the old one freed.
    fn merge(&mut self) {
        let mut new: Vec<u64> = self.by_hash.iter().map(|(h, i)| entry(*h, *i)).collect();
        self.by_hash = IntMap::default();
        new.sort_unstable();
        if self.chunks.is_empty() {
            self.chunks = chunked(&new);
            self.reindex();
            return;
        }
        let mut at = 0;
        let n = self.chunks.len();
        let mut chunks = Vec::with_capacity(n + 1);
        for (c, old) in std::mem::take(&mut self.chunks).into_iter().enumerate() {
            // The new entries below the next chunk's first (all the rest
            // for the last chunk) go into this one.
            let end = match self.firsts.get(c + 1) {
                Some(next) => at + new[at..].partition_point(|x| x < next),
                None => new.len(),
            };
            if end == at {
                chunks.push(old);
                continue;
            }
            let mut merged = Vec::with_capacity(old.len() + end - at);
            merge_sorted(&old, &new[at..end], &mut merged);
            drop(old);
            at = end;
            if merged.len() > 2 * CHUNK {
                chunks.extend(chunked(&merged));
            } else {
                chunks.push(merged.into_boxed_slice());
            }
        }
        self.chunks = chunks;
        self.reindex();
    }

    /// The event of ID `id`, if stored: those of its hash whose ID is
    /// `id` (an ID the room does not hold is read back from the page store).
    ///
    /// # Errors
    /// The page store failed to read back the ID of an event of that hash.
    pub(super) fn get(&self, id: &str, events: &Events) -> Result<Option<EventIdx>, PageError> {
        let h = id_hash(id);
        for i in self.of_hash(h) {
            if events.id_at(i.ix())? == id {
                return Ok(Some(i));
            }
        }
        if let Some(i) = self.by_hash.get(&h) {
            if events.id_at(i.ix())? == id {
                return Ok(Some(*i));
            }
        }
        if let Some(i) = self.collisions.get(id) {
            return Ok(Some(*i));
        }
        for i in self.paged.of_hash(h, events.pages())? {
            if i.ix() >= events.len() {
                return Err(PageError::Corrupt {
                    table: crate::pages::Table::IdBuckets,
                    key: format!("entry {}", i.0),
                });
            }
            if events.id_at(i.ix())? == id {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// With a page store: once enough messages have been settled since the
    /// last time (`PAGE_AT_LEAST`, and an eighth of those paged), moves
    /// their entries from memory to the page store's buckets. Cheap when
    /// there is nothing to move (a call per PDU received).
    ///
    /// # Errors
    /// A bucket's row could not be read or written: nothing moved (tried
    /// again at the next call).
    pub(super) fn page(&mut self, events: &mut Events) -> Result<(), PageError> {
        let settled = events.settled_len();
        let from = self.paged.upto();
        if settled < from + PAGE_AT_LEAST.max(self.paged.len() / 8) {
            return Ok(());
        }
        let pageable = |x: &u64| {
            let i = *x as u32 as usize;
            (from..settled).contains(&i) && !events.is_state_at(i)
        };
        let mut new: Vec<u64> = self.entries().filter(pageable).collect();
        new.extend(self.by_hash.iter().map(|(h, i)| entry(*h, *i)).filter(pageable));
        new.sort_unstable();
        let Some(pages) = events.pages_mut() else { return Ok(()) };
        self.paged.merge(&new, settled as u32, pages)?;
        self.retain(|x| new.binary_search(&x).is_err());
        Ok(())
    }

    /// Keeps the entries held in memory that `keep` keeps (given an
    /// entry, `hash << 32 | index`), wherever they are.
    fn retain(&mut self, keep: impl Fn(u64) -> bool) {
        self.collisions.retain(|id, i| keep(entry(id_hash(id), *i)));
        self.by_hash.retain(|h, i| keep(entry(*h, *i)));
        for chunk in &mut self.chunks {
            if chunk.iter().any(|x| !keep(*x)) {
                *chunk = chunk.iter().copied().filter(|x| keep(*x)).collect();
            }
        }
        self.reindex();
    }

    /// Deletes the bucket rows merges replaced: an image naming the
    /// buckets as they are now was just committed.
    pub(super) fn sweep(&mut self, store: &mut dyn crate::pages::PageStore) {
        self.paged.sweep(store);
    }

    /// The keys of the rows of [`Table::IdBuckets`](crate::pages::Table)
    /// the index names.
    pub(super) fn named_rows(&self) -> Vec<[u8; 16]> {
        self.paged.named_rows()
    }

    /// Entries held in memory, and in the page store (the latter's buckets
    /// and its Bloom filter's bytes).
    pub(crate) fn footprint(&self) -> (usize, usize, (usize, usize)) {
        (self.sorted + self.by_hash.len() + self.collisions.len(), self.paged.len(), self.paged.footprint())
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
        if self.by_hash.len() >= MERGE_AT_LEAST.max(self.sorted / 8) {
            self.merge();
        }
    }

    /// Forgets the events from `first` on (a rollback of the batch that
    /// stored them: never a settled event, so none paged).
    pub(super) fn remove_since(&mut self, first: EventIdx) {
        debug_assert!(first.ix() >= self.paged.upto(), "a rollback reaches no settled event");
        self.retain(|x| (x as u32) < first.0);
    }

    /// Writes the ID hash and index of every event held in memory, sorted,
    /// then the paged buckets' keys and filter.
    ///
    /// From the index itself (every stored event is in one of its parts):
    /// no walk over the event table, no ID hashed again.
    /// The sorted array is merged with the map and side map as it is
    /// written (they are small), never copied whole.
    pub(super) fn write_image(&self, w: &mut Writer<'_>) {
        let mut more: Vec<u64> = self.by_hash.iter().map(|(h, i)| entry(*h, *i)).collect();
        more.extend(self.collisions.iter().map(|(id, i)| entry(id_hash(id), *i)));
        more.sort_unstable();
        let mut sorted = self.entries().peekable();
        let mut more = more.into_iter().peekable();
        let merged = std::iter::from_fn(|| match (sorted.peek(), more.peek()) {
            (Some(a), Some(b)) if b < a => more.next(),
            (Some(_), _) => sorted.next(),
            (None, _) => more.next(),
        });
        w.u64s_from(self.sorted + self.by_hash.len() + self.collisions.len(), merged);
        self.paged.write_image(w);
    }

    /// Reads what [`write_image`](Self::write_image) wrote for `events`
    /// events: those held in memory each once, in order, and as many in
    /// the buckets as make up the rest (their rows are checked as read).
    pub(super) fn read_image(r: &mut Reader<'_>, events: usize) -> Result<Self, ImageError> {
        let chunks = r.u64s_chunked(CHUNK)?;
        let paged = IdBuckets::read_image(r, events)?;
        let corrupt = || ImageError::Corrupt("the event ID index does not list each event once, in order".into());
        let read = || chunks.iter().flat_map(|c| c.iter().copied());
        let n: usize = chunks.iter().map(|c| c.len()).sum();
        if n + paged.len() != events || read().zip(read().skip(1)).any(|(a, b)| a >= b) {
            return Err(corrupt());
        }
        let mut seen = vec![false; events];
        for x in read() {
            let i = index(x as u32, events, "an indexed event")? as usize;
            if std::mem::replace(&mut seen[i], true) {
                return Err(corrupt());
            }
        }
        let mut index = Self::from_chunks(chunks);
        index.paged = paged;
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::NewEvent;

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
            assert!(index.by_hash.len() < MERGE_AT_LEAST.max(index.sorted / 8));
        }
        assert!(index.sorted > 15_000, "{} sorted", index.sorted);
        // In chunks of at most twice CHUNK, each sorted and below the next.
        assert!(index.chunks.len() > 30, "{} chunks", index.chunks.len());
        assert!(index.chunks.iter().all(|c| !c.is_empty() && c.len() <= 2 * CHUNK));
        let all: Vec<u64> = index.entries().collect();
        assert!(all.windows(2).all(|w| w[0] < w[1]) && all.len() == index.sorted);
        assert_eq!(index.firsts, index.chunks.iter().map(|c| c[0]).collect::<Vec<_>>());
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
        assert!(read.by_hash.is_empty() && read.sorted == ids.len());
        assert!(read.chunks.len() > 1 && read.chunks.iter().all(|c| c.len() <= CHUNK), "read back in chunks");
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
            let e = events.prepare(NewEvent::message(id, &[], &[])).unwrap();
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
        assert!(index.by_hash.is_empty() && index.collisions.is_empty() && index.sorted == written.len());
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
            crate::image::round_trip(
                |w| {
                    w.u64s(&list);
                    IdBuckets::default().write_image(w);
                },
                |r| IdIndex::read_image(r, events),
            )
            .map(|_| ())
        };
        assert!(read(vec![1 << 32, 2 << 32 | 1], 2).is_ok());
        assert!(read(vec![1 << 32], 2).is_err(), "one missing");
        assert!(read(vec![2 << 32 | 1, 1 << 32], 2).is_err(), "out of order");
        assert!(read(vec![1 << 32, 2 << 32], 2).is_err(), "one twice");
        assert!(read(vec![1 << 32, 2 << 32 | 5], 2).is_err(), "past the events");
    }
}
