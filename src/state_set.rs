//! Room states as shared, content-addressed sets.
//!
//! A state is a map `(type, state_key) → event`, stored as a sorted list of
//! packed `u64` entries (`key << 32 | event`), cut into chunks of at most
//! [`MAX_CHUNK`] entries. Chunks are reference-counted: the state after a
//! state event is the state before it with one chunk copied, so a room with
//! `n` state events and states of size `s` costs `O(n · (s / CHUNK + CHUNK))`
//! memory instead of `O(n · s)`.
//!
//! [`StateSets`] interns states by content: every state is identified by a
//! [`StateSetId`], and two events whose states are equal share the id (the
//! lookup is by a 64-bit multiset hash, confirmed by comparing entries).
//! Ids make "are these states the same?" a comparison of integers, and key
//! the caches of digests and auth chains.

use std::collections::HashMap;
use std::sync::Arc;

use crate::event::StateKeyIdx;
use crate::ids::EventIdx;

/// Identifies an interned state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StateSetId(pub u32);

impl StateSetId {
    /// The empty state (before the create event).
    pub const EMPTY: StateSetId = StateSetId(0);
}

/// Smallest chunk length built.
pub const MIN_CHUNK: usize = 8;
/// Largest chunk length built (a chunk splits when it grows past twice this).
pub const MAX_CHUNK: usize = 256;

/// The chunk length for a map of `len` entries: about √len, so that a change
/// copies O(√len) entries of chunk and O(√len) pointers of spine.
pub fn chunk_target(len: usize) -> usize {
    let mut r = 1usize;
    while r * r < len {
        r += 1;
    }
    r.clamp(MIN_CHUNK, MAX_CHUNK)
}

#[inline]
fn pack(k: StateKeyIdx, e: EventIdx) -> u64 {
    (u64::from(k.0) << 32) | u64::from(e.0)
}

#[inline]
fn unpack(x: u64) -> (StateKeyIdx, EventIdx) {
    (StateKeyIdx((x >> 32) as u32), EventIdx(x as u32))
}

#[inline]
fn entry_hash(x: u64) -> u64 {
    // splitmix64 finaliser: a good 64-bit mix, so the sum of entry hashes is a
    // multiset hash with negligible collision probability.
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One immutable state map with structural sharing.
#[derive(Clone, Debug, Default)]
pub struct StateMap {
    chunks: Arc<[Arc<[u64]>]>,
    len: usize,
    hash: u64,
}

impl PartialEq for StateMap {
    fn eq(&self, other: &Self) -> bool {
        if self.len != other.len || self.hash != other.hash {
            return false;
        }
        if Arc::ptr_eq(&self.chunks, &other.chunks) {
            return true;
        }
        self.iter_packed().eq(other.iter_packed())
    }
}
impl Eq for StateMap {}

impl StateMap {
    /// Builds a map from entries (any order; the last value for a key wins).
    pub fn from_entries(mut entries: Vec<(StateKeyIdx, EventIdx)>) -> Self {
        entries.sort_by_key(|(k, _)| *k);
        let mut packed: Vec<u64> = Vec::with_capacity(entries.len());
        for (k, e) in entries {
            if let Some(last) = packed.last_mut() {
                if unpack(*last).0 == k {
                    *last = pack(k, e);
                    continue;
                }
            }
            packed.push(pack(k, e));
        }
        Self::from_sorted_packed(packed)
    }

    fn from_sorted_packed(packed: Vec<u64>) -> Self {
        let hash = packed.iter().fold(0u64, |h, x| h.wrapping_add(entry_hash(*x)));
        let len = packed.len();
        let chunks: Vec<Arc<[u64]>> = packed.chunks(chunk_target(len)).map(Arc::from).collect();
        Self { chunks: chunks.into(), len, hash }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The multiset hash of the entries.
    pub fn content_hash(&self) -> u64 {
        self.hash
    }

    fn iter_packed(&self) -> impl Iterator<Item = u64> + '_ {
        self.chunks.iter().flat_map(|c| c.iter().copied())
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (StateKeyIdx, EventIdx)> + '_ {
        self.iter_packed().map(unpack)
    }

    /// The chunk that would hold `key`.
    fn chunk_for(&self, key: StateKeyIdx) -> usize {
        let probe = pack(key, EventIdx(0));
        // First chunk whose last entry is >= probe; else the last chunk.
        let n = self.chunks.len();
        let i = self.chunks.partition_point(|c| c.last().is_some_and(|l| *l < probe));
        i.min(n.saturating_sub(1))
    }

    /// The event at `key`.
    pub fn get(&self, key: StateKeyIdx) -> Option<EventIdx> {
        if self.chunks.is_empty() {
            return None;
        }
        let c = &self.chunks[self.chunk_for(key)];
        let probe = pack(key, EventIdx(0));
        let i = c.partition_point(|x| *x < probe);
        c.get(i).map(|x| unpack(*x)).filter(|(k, _)| *k == key).map(|(_, e)| e)
    }

    /// A copy with the given changes applied (`None` removes the key).
    /// Unchanged chunks are shared with `self`.
    pub fn with_changes(&self, changes: &[(StateKeyIdx, Option<EventIdx>)]) -> Self {
        if changes.is_empty() {
            return self.clone();
        }
        let mut changes = changes.to_vec();
        changes.sort_by_key(|(k, _)| *k);
        if self.chunks.is_empty() {
            let entries = changes.iter().filter_map(|(k, e)| e.map(|e| (*k, e))).collect();
            return Self::from_entries(entries);
        }
        let mut chunks: Vec<Arc<[u64]>> = self.chunks.to_vec();
        let mut hash = self.hash;
        let mut len = self.len;
        // Group the changes by target chunk, then rewrite each touched chunk once.
        let mut i = 0;
        let mut rewritten: Vec<(usize, Vec<u64>)> = Vec::new();
        while i < changes.len() {
            let ci = self.chunk_for(changes[i].0);
            let mut chunk: Vec<u64> = chunks[ci].to_vec();
            while i < changes.len() && self.chunk_for(changes[i].0) == ci {
                let (k, e) = changes[i];
                let probe = pack(k, EventIdx(0));
                let pos = chunk.partition_point(|x| *x < probe);
                let present = chunk.get(pos).is_some_and(|x| unpack(*x).0 == k);
                if present {
                    hash = hash.wrapping_sub(entry_hash(chunk[pos]));
                    match e {
                        Some(e) => {
                            chunk[pos] = pack(k, e);
                            hash = hash.wrapping_add(entry_hash(chunk[pos]));
                        }
                        None => {
                            chunk.remove(pos);
                            len -= 1;
                        }
                    }
                } else if let Some(e) = e {
                    chunk.insert(pos, pack(k, e));
                    hash = hash.wrapping_add(entry_hash(pack(k, e)));
                    len += 1;
                }
                i += 1;
            }
            rewritten.push((ci, chunk));
        }
        // Replace from the back so indices stay valid while splitting.
        let target = chunk_target(len);
        for (ci, chunk) in rewritten.into_iter().rev() {
            let pieces: Vec<Arc<[u64]>> = if chunk.len() > 2 * target {
                chunk.chunks(target).map(Arc::from).collect()
            } else if chunk.is_empty() {
                Vec::new()
            } else {
                vec![Arc::from(chunk)]
            };
            chunks.splice(ci..=ci, pieces);
        }
        Self { chunks: chunks.into(), len, hash }
    }

    /// Number of chunks (for memory accounting).
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Whether two maps share chunk `i` (for memory accounting and tests).
    pub fn shares_chunks_with(&self, other: &Self) -> usize {
        self.chunks.iter().filter(|c| other.chunks.iter().any(|o| Arc::ptr_eq(c, o))).count()
    }
}

/// The room's interned states.
#[derive(Debug)]
pub struct StateSets {
    maps: Vec<StateMap>,
    by_hash: HashMap<u64, Vec<StateSetId>>,
}

impl Default for StateSets {
    fn default() -> Self {
        Self::new()
    }
}

impl StateSets {
    /// A registry holding only the empty state ([`StateSetId::EMPTY`]).
    pub fn new() -> Self {
        let mut s = Self { maps: Vec::new(), by_hash: HashMap::new() };
        let id = s.intern(StateMap::default());
        debug_assert_eq!(id, StateSetId::EMPTY);
        s
    }

    /// Interns a map, returning the id of an equal map if one exists.
    pub fn intern(&mut self, map: StateMap) -> StateSetId {
        let bucket = self.by_hash.entry(map.hash).or_default();
        for id in bucket.iter() {
            if self.maps[id.0 as usize] == map {
                return *id;
            }
        }
        let id = StateSetId(u32::try_from(self.maps.len()).expect("fewer than 2^32 states"));
        bucket.push(id);
        self.maps.push(map);
        id
    }

    /// The map of an id.
    pub fn get(&self, id: StateSetId) -> &StateMap {
        &self.maps[id.0 as usize]
    }

    /// Number of distinct states.
    pub fn len(&self) -> usize {
        self.maps.len()
    }

    /// Whether only the empty state exists.
    pub fn is_empty(&self) -> bool {
        self.maps.len() <= 1
    }

    /// Forgets every state with an id ≥ `len` (rollback of a failed batch).
    pub fn truncate(&mut self, len: usize) {
        if len >= self.maps.len() {
            return;
        }
        for (i, m) in self.maps.iter().enumerate().skip(len) {
            if let Some(b) = self.by_hash.get_mut(&m.hash) {
                b.retain(|id| id.0 as usize != i);
                if b.is_empty() {
                    self.by_hash.remove(&m.hash);
                }
            }
        }
        self.maps.truncate(len);
    }

    /// Total entries and chunks held (for memory accounting).
    pub fn footprint(&self) -> (usize, usize) {
        let mut seen = std::collections::HashSet::new();
        let mut entries = 0;
        for m in &self.maps {
            for c in m.chunks.iter() {
                if seen.insert(Arc::as_ptr(c) as *const u64 as usize) {
                    entries += c.len();
                }
            }
        }
        (entries, seen.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(i: u32) -> StateKeyIdx {
        StateKeyIdx(i)
    }
    fn e(i: u32) -> EventIdx {
        EventIdx(i)
    }

    #[test]
    fn insert_replace_remove_and_share() {
        let base = StateMap::from_entries((0..200).map(|i| (k(i * 2), e(i))).collect());
        assert_eq!(base.len(), 200);
        assert_eq!(base.get(k(10)), Some(e(5)));
        assert_eq!(base.get(k(11)), None);
        let next = base.with_changes(&[(k(11), Some(e(999))), (k(10), Some(e(7))), (k(398), None)]);
        assert_eq!(next.len(), 200);
        assert_eq!(next.get(k(11)), Some(e(999)));
        assert_eq!(next.get(k(10)), Some(e(7)));
        assert_eq!(next.get(k(398)), None);
        assert!(next.shares_chunks_with(&base) >= base.chunk_count() - 2);
        let back = next.with_changes(&[(k(11), None), (k(10), Some(e(5))), (k(398), Some(e(199)))]);
        assert_eq!(back, base);
        assert_eq!(back.content_hash(), base.content_hash());
    }

    #[test]
    fn chunks_split_when_they_grow() {
        let mut m = StateMap::from_entries(vec![(k(0), e(0))]);
        for i in 1..1000 {
            m = m.with_changes(&[(k(i), Some(e(i)))]);
        }
        assert_eq!(m.len(), 1000);
        assert!(m.chunk_count() >= 1000 / (2 * chunk_target(1000)));
        for i in 0..1000 {
            assert_eq!(m.get(k(i)), Some(e(i)));
        }
        let v: Vec<_> = m.iter().map(|(k, _)| k.0).collect();
        assert!(v.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn interning_dedups_by_content() {
        let mut sets = StateSets::new();
        let a = sets.intern(StateMap::from_entries(vec![(k(1), e(1)), (k(2), e(2))]));
        let b = sets.intern(StateMap::from_entries(vec![(k(2), e(2)), (k(1), e(1))]));
        let c = sets.intern(StateMap::from_entries(vec![(k(2), e(3)), (k(1), e(1))]));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(sets.intern(StateMap::default()), StateSetId::EMPTY);
        sets.truncate(2);
        assert_eq!(sets.len(), 2);
        let c2 = sets.intern(StateMap::from_entries(vec![(k(2), e(3)), (k(1), e(1))]));
        assert_eq!(c2, StateSetId(2));
    }
}
