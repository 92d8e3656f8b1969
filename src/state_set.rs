//! Room states as shared, content-addressed sets.
//!
//! A state is a map `(type, state_key) → event`, stored as a sorted list of
//! packed `u64` entries (`key << 32 | event`), cut into chunks of about √s
//! entries. Chunks are reference-counted: the state after a state event is
//! the state before it with one chunk copied, so a room with `n` state
//! events and states of size `s` costs `O(n · √s)` memory instead of
//! `O(n · s)`.
//!
//! Chunk boundaries are *content-defined*: a chunk ends after a key whose
//! hash has at least `bits` trailing zero bits (chunks average `2^bits`
//! entries; `bits` depends only on the size band of the map), so two states
//! with the same entries in a key range cut that range the same way, however
//! they were built. With [`StateSets`] interning chunks, equal runs are one
//! chunk, and state resolution compares states chunk by chunk.
//!
//! [`StateSets`] interns states by content: every state is identified by a
//! [`StateSetId`], and two events whose states are equal share the id (the
//! lookup is by a 64-bit multiset hash, confirmed by comparing entries).
//! Ids make "are these states the same?" a comparison of integers, and key
//! the caches of digests and auth chains.

use std::collections::HashSet;
use std::sync::Arc;

use crate::event::StateKeyIdx;
use crate::ids::EventIdx;
use crate::pages::{PageCache, PageError};

mod cells;
mod image;
mod pool;
mod stored;

pub use stored::MAX_CHAIN;

use stored::Stored;

/// The extent of a room's states at a checkpoint ([`StateSets::mark`]).
#[derive(Clone, Debug)]
pub struct StatesMark(stored::Mark);

impl StatesMark {
    /// States then.
    fn len(&self) -> usize {
        self.0.maps()
    }
}

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

/// The boundary bits of a map of `len` entries: chunks average `2^bits`
/// entries, the power of two nearest √(2·len) (a change copies one chunk of
/// 8-byte entries and a spine of 16-byte pointers: that length minimises
/// the sum), between [`MIN_CHUNK`] and [`MAX_CHUNK`]. Constant over size
/// bands.
pub fn chunk_bits(len: usize) -> u32 {
    ((2 * len).max(1).ilog2().div_ceil(2)).clamp(MIN_CHUNK.ilog2(), MAX_CHUNK.ilog2())
}

/// A chunk longer than this many times its average is cut anyway (a run of
/// keys without a boundary; probability about e^-8 per chunk).
const MAX_RUN: usize = 8;

/// Whether a chunk ends after `key` (content-defined boundary).
#[inline]
fn ends_chunk(key: StateKeyIdx, bits: u32) -> bool {
    entry_hash(u64::from(key.0)).trailing_zeros() >= bits
}

/// Cuts the front of `pending` into chunks (each ending at a boundary or at
/// the length cap), appending them to `out`; what follows the last cut stays
/// in `pending`.
fn cut_chunks(pending: &mut Vec<u64>, bits: u32, out: &mut Vec<Arc<[u64]>>) {
    let cap = MAX_RUN << bits;
    let mut start = 0;
    for (i, x) in pending.iter().enumerate() {
        if ends_chunk(unpack(*x).0, bits) || i + 1 - start >= cap {
            out.push(Arc::from(&pending[start..=i]));
            start = i + 1;
        }
    }
    pending.drain(..start);
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
    /// The boundary bits the chunks were cut with ([`chunk_bits`] of `len`).
    bits: u32,
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

    fn from_sorted_packed(mut packed: Vec<u64>) -> Self {
        let hash = packed.iter().fold(0u64, |h, x| h.wrapping_add(entry_hash(*x)));
        let len = packed.len();
        let bits = chunk_bits(len);
        let mut chunks: Vec<Arc<[u64]>> = Vec::new();
        cut_chunks(&mut packed, bits, &mut chunks);
        if !packed.is_empty() {
            chunks.push(Arc::from(packed));
        }
        Self { chunks: chunks.into(), len, hash, bits }
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
        let probe = pack(key, EventIdx(0));
        self.get_packed(probe).map(unpack).filter(|(k, _)| *k == key).map(|(_, e)| e)
    }

    /// The first entry at or past `probe` in the chunk that would hold it.
    fn get_packed(&self, probe: u64) -> Option<u64> {
        if self.chunks.is_empty() {
            return None;
        }
        let c = &self.chunks[self.chunk_for(unpack(probe).0)];
        let i = c.partition_point(|x| *x < probe);
        c.get(i).copied()
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
        let mut hash = self.hash;
        let mut len = self.len;
        // Group the changes by target chunk, then rewrite each touched chunk once.
        let mut i = 0;
        let mut rewritten: Vec<(usize, Vec<u64>)> = Vec::new();
        while i < changes.len() {
            let ci = self.chunk_for(changes[i].0);
            let mut chunk: Vec<u64> = self.chunks[ci].to_vec();
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
        let bits = chunk_bits(len);
        if bits != self.bits {
            // A new size band: cut the whole map again.
            let mut packed = Vec::with_capacity(len);
            let mut touched = rewritten.into_iter().peekable();
            for (ci, c) in self.chunks.iter().enumerate() {
                match touched.next_if(|(t, _)| *t == ci) {
                    Some((_, new)) => packed.extend(new),
                    None => packed.extend(c.iter().copied()),
                }
            }
            return Self::from_sorted_packed(packed);
        }
        // Re-cut each touched chunk; when its new end is not a boundary it
        // runs on into the next chunk, which is re-cut with it.
        let mut chunks: Vec<Arc<[u64]>> = Vec::with_capacity(self.chunks.len() + 2);
        let mut pending: Vec<u64> = Vec::new();
        let mut touched = rewritten.into_iter().peekable();
        for (ci, c) in self.chunks.iter().enumerate() {
            match touched.next_if(|(t, _)| *t == ci) {
                Some((_, new)) => pending.extend(new),
                None if pending.is_empty() => {
                    chunks.push(Arc::clone(c));
                    continue;
                }
                None => pending.extend(c.iter().copied()),
            }
            cut_chunks(&mut pending, bits, &mut chunks);
        }
        if !pending.is_empty() {
            chunks.push(Arc::from(pending));
        }
        Self { chunks: chunks.into(), len, hash, bits }
    }

    /// The map's chunks in key order (each shared with the maps it was
    /// copied from or into).
    pub fn chunks(&self) -> impl ExactSizeIterator<Item = Chunk<'_>> + '_ {
        self.chunks.iter().map(Chunk)
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

/// One chunk of a [`StateMap`]: a run of entries shared by every map that
/// did not change it.
#[derive(Clone, Copy, Debug)]
pub struct Chunk<'a>(&'a Arc<[u64]>);

impl Chunk<'_> {
    /// Identifies the chunk while it is alive.
    pub fn address(&self) -> usize {
        Arc::as_ptr(self.0) as *const u64 as usize
    }

    /// The chunk's entries in key order.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = (StateKeyIdx, EventIdx)> + '_ {
        self.0.iter().map(|x| unpack(*x))
    }
}

/// Splits the chunks of `maps` into those every map holds (the same
/// entries in each map, so unconflicted) and, per map, the others. A key of
/// a common chunk is in no other chunk of any map. Costs O(maps × chunks).
pub fn common_chunks<'a>(maps: &[&'a StateMap]) -> (Vec<Chunk<'a>>, Vec<Vec<Chunk<'a>>>) {
    let sets: Vec<HashSet<usize>> = maps.iter().map(|m| m.chunks().map(|c| c.address()).collect()).collect();
    let in_all = |c: &Chunk<'_>| sets.iter().all(|s| s.contains(&c.address()));
    let common: Vec<Chunk<'a>> = maps.first().map(|m| m.chunks().filter(in_all).collect()).unwrap_or_default();
    let rest = maps.iter().map(|m| m.chunks().filter(|c| !in_all(c)).collect()).collect();
    (common, rest)
}

/// The room's interned states.
///
/// Each is stored compactly ([`stored`]: chunk numbers, each chunk as its
/// change against an earlier one) and built into a [`StateMap`] when first
/// asked for; built states and chunks are a cache, trimmed past a budget
/// ([`set_budget`](Self::set_budget)) when a state is next interned.
/// With a page store, the pools those are stored in (chunk entries, chunk
/// lists) are rows once full and stored ([`page`](Self::page)): building a
/// state reads the rows it needs through the page cache, and fails with a
/// typed [`PageError`] when one cannot be read back.
///
/// Chunks are interned too: a map's new chunks are replaced by an equal
/// chunk already held when there is one, so equal runs of entries are one
/// chunk however they were built (a resolution and an edit that produce
/// the same entries share them), and state resolution can tell equal
/// chunks apart from different ones by address.
#[derive(Debug)]
pub struct StateSets {
    stored: Stored,
    /// The first map with each content hash.
    by_hash: FirstByHash,
    /// Maps whose hash an earlier, different map already had (about never:
    /// the hash is 64 bits).
    collided: Vec<StateSetId>,
    /// Bytes of built states and chunks kept (unbounded unless set).
    budget: usize,
}

impl Default for StateSets {
    fn default() -> Self {
        Self::new()
    }
}

impl StateSets {
    /// A registry holding only the empty state ([`StateSetId::EMPTY`]).
    pub fn new() -> Self {
        let mut s = Self {
            stored: Stored::default(),
            by_hash: FirstByHash::default(),
            collided: Vec::new(),
            budget: usize::MAX,
        };
        let id = s.intern(StateMap::default(), None);
        debug_assert_eq!(id, StateSetId::EMPTY);
        s
    }

    /// Keeps built states and chunks to about `bytes` (beyond the newest
    /// states and those in use), from the next [`intern`](Self::intern) on.
    pub fn set_budget(&mut self, bytes: usize) {
        self.budget = bytes;
    }

    /// Drops the states part by part (see `Room::drop_by_parts`).
    #[doc(hidden)]
    pub fn drop_by_parts(self, dropped: &mut dyn FnMut(&'static str)) {
        self.stored.drop_by_parts(dropped);
        drop((self.by_hash, self.collided));
        dropped("states: the first state of each content hash");
    }

    /// Bytes of the states and chunks built now.
    pub fn built_bytes(&self) -> usize {
        self.stored.built_bytes()
    }

    /// Drops built states and chunks past the budget.
    pub fn trim(&mut self) {
        self.stored.trim(self.budget);
    }

    /// Interns a map, returning the id of an equal map if one exists
    /// (states with its hash are read back through `pages` to compare).
    /// Never fails: a state with its hash that cannot be read back is taken
    /// as different, and the map gets an id of its own (two ids of one
    /// state cost sharing, not answers: a resolution of equal states is
    /// that state).
    pub fn intern(&mut self, map: StateMap, pages: Option<&PageCache>) -> StateSetId {
        self.trim();
        let id = StateSetId(u32::try_from(self.stored.len()).expect("fewer than 2^32 states"));
        let first = self.by_hash.get(&self.stored, map.hash);
        if let Some(first) = first {
            let same = std::iter::once(&first)
                .chain(self.collided.iter().filter(|c| self.hash_of(**c) == map.hash))
                .find(|c| self.get(**c, pages).is_ok_and(|m| *m == map));
            if let Some(same) = same {
                return *same;
            }
            self.collided.push(id);
        }
        self.stored.push_map(map, pages);
        if first.is_none() {
            self.by_hash.insert_first(&self.stored, id);
        }
        id
    }

    fn hash_of(&self, id: StateSetId) -> u64 {
        self.stored.hash_of(id.0 as usize)
    }

    /// The map of an id, built from its chunks (read back through `pages`
    /// when they are rows) if it is not built.
    ///
    /// # Errors
    /// A row of the states' pools could not be read back, or is damaged.
    pub fn get(&self, id: StateSetId, pages: Option<&PageCache>) -> Result<&StateMap, PageError> {
        self.stored.map(id.0 as usize, pages)
    }

    /// The event at `key` in the map of `id`, without building the map
    /// (only the chunks a binary search visits): the same answer as
    /// `self.get(id).get(key)`.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn lookup(
        &self,
        id: StateSetId,
        key: StateKeyIdx,
        pages: Option<&PageCache>,
    ) -> Result<Option<EventIdx>, PageError> {
        let found = self.stored.lookup(id.0 as usize, pack(key, EventIdx(0)), pages)?;
        Ok(found.map(unpack).filter(|(k, _)| *k == key).map(|(_, e)| e))
    }

    /// Writes every full segment of the states' pools (chunk entries,
    /// chunk lists) as a row of `pages`' store and lets go of it. Only
    /// between batches: a batch that may still roll back must not have its
    /// states' values in rows. The rows written.
    ///
    /// # Errors
    /// A row could not be written (what was not written stays held, and
    /// is tried again at the next call).
    pub fn page(&mut self, pages: &mut PageCache) -> Result<usize, PageError> {
        self.stored.page(pages)
    }

    /// The keys of the rows of [`Table::StatePools`](crate::pages::Table)
    /// the states name.
    pub(crate) fn named_rows(&self) -> Vec<[u8; 16]> {
        let s = &self.stored;
        [s.removed.row_keys(), s.added.row_keys(), s.list_pool.row_keys()].concat()
    }

    /// The pools' rows and the bytes of the values held (for measuring):
    /// removed positions, added entries, chunk lists.
    #[doc(hidden)]
    pub fn pools_footprint(&self) -> [(usize, usize); 3] {
        let s = &self.stored;
        [s.removed.footprint(), s.added.footprint(), s.list_pool.footprint()]
    }

    /// Number of distinct states.
    pub fn len(&self) -> usize {
        self.stored.len()
    }

    /// Whether only the empty state exists.
    pub fn is_empty(&self) -> bool {
        self.stored.len() <= 1
    }

    /// The states' extent now, to [`truncate`](Self::truncate) back to.
    pub fn mark(&self) -> StatesMark {
        StatesMark(self.stored.mark())
    }

    /// Forgets every state stored since `mark` (rollback of a failed
    /// batch), reading nothing.
    pub fn truncate(&mut self, mark: &StatesMark) {
        let len = mark.len();
        if len >= self.stored.len() {
            return;
        }
        // (A collided map comes after the first with its hash, so it goes
        // whenever that one does.)
        let kept = |id: &StateSetId| (id.0 as usize) < len;
        self.by_hash.retain(kept);
        self.collided.retain(kept);
        self.stored.truncate(&mark.0);
    }

    /// Total entries and chunks stored (for memory accounting).
    pub fn footprint(&self) -> (usize, usize) {
        let entries = self.stored.recipes.iter().map(|r| r.len as usize).sum();
        (entries, self.stored.recipes.len())
    }
}

/// The first state with each content hash: state numbers in a hash table,
/// found by the hash in their heads (4 bytes a slot, where a map from hash
/// to number took 16: 1.5 MiB at Matrix HQ's 111,120 states).
#[derive(Debug, Default)]
struct FirstByHash {
    table: hashbrown::HashTable<u32>,
    /// SipHash with the process's random keys over a state's hash, as
    /// `std`'s maps (states follow what senders send).
    hasher: std::hash::RandomState,
}

impl FirstByHash {
    /// The first state stored with this hash.
    fn get(&self, stored: &Stored, hash: u64) -> Option<StateSetId> {
        use std::hash::BuildHasher;
        let same = |i: &u32| stored.hash_of(*i as usize) == hash;
        self.table.find(self.hasher.hash_one(hash), same).map(|i| StateSetId(*i))
    }

    /// Records state `id` (stored) as the first with its hash, unless one
    /// is; whether it was.
    fn insert_first(&mut self, stored: &Stored, id: StateSetId) -> bool {
        use hashbrown::hash_table::Entry;
        use std::hash::BuildHasher;
        let hash = stored.hash_of(id.0 as usize);
        let hasher = &self.hasher;
        let slot = self.table.entry(
            hasher.hash_one(hash),
            |i| stored.hash_of(*i as usize) == hash,
            |i| hasher.hash_one(stored.hash_of(*i as usize)),
        );
        match slot {
            Entry::Occupied(_) => false,
            Entry::Vacant(v) => {
                v.insert(id.0);
                true
            }
        }
    }

    fn retain(&mut self, mut keep: impl FnMut(&StateSetId) -> bool) {
        self.table.retain(|i| keep(&StateSetId(*i)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn k(i: u32) -> StateKeyIdx {
        StateKeyIdx(i)
    }
    fn e(i: u32) -> EventIdx {
        EventIdx(i)
    }

    /// Two different maps with one content hash (a collision: about never
    /// with 64 bits) are interned apart, each found again, and a cut
    /// back forgets the one cut.
    #[test]
    fn maps_with_one_hash_are_told_apart() {
        let mut sets = StateSets::new();
        let a = StateMap::from_entries((0..50).map(|i| (k(i), e(i))).collect());
        let mut b = StateMap::from_entries((0..50).map(|i| (k(i), e(i + 1))).collect());
        b.hash = a.hash;
        let mark_a = sets.mark();
        let ia = sets.intern(a.clone(), None);
        let mark_b = sets.mark();
        let ib = sets.intern(b.clone(), None);
        assert_ne!(ia, ib);
        assert_eq!((sets.intern(b.clone(), None), sets.intern(a.clone(), None)), (ib, ia));
        assert_eq!((sets.len(), sets.get(ib, None).unwrap()), (3, &b));
        sets.truncate(&mark_b);
        assert_eq!(sets.len(), 2);
        assert_eq!((sets.intern(a.clone(), None), sets.intern(b.clone(), None)), (ia, ib));
        sets.truncate(&mark_a);
        // Now b is the first with the hash.
        assert_eq!((sets.intern(b.clone(), None), sets.intern(a.clone(), None)), (ia, ib));
        assert_eq!((sets.get(ia, None).unwrap(), sets.get(ib, None).unwrap()), (&b, &a));
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
    fn equal_entries_are_cut_the_same_way_whatever_the_history() {
        // Built in one go, grown key by key in two orders, and grown then
        // edited back: the same chunks (the same lengths, in order).
        let n = 3000;
        let direct = StateMap::from_entries((0..n).map(|i| (k(i), e(i))).collect());
        let mut up = StateMap::default();
        for i in 0..n {
            up = up.with_changes(&[(k(i), Some(e(i)))]);
        }
        let mut down = StateMap::default();
        for i in (0..n).rev() {
            down = down.with_changes(&[(k(i), Some(e(i + 1)))]);
        }
        let down = down.with_changes(&(0..n).map(|i| (k(i), Some(e(i)))).collect::<Vec<_>>());
        let edited = direct
            .with_changes(&[(k(7), None), (k(100), Some(e(5)))])
            .with_changes(&[(k(7), Some(e(7))), (k(100), Some(e(100)))]);
        let layout = |m: &StateMap| m.chunks().map(|c| c.entries().len()).collect::<Vec<_>>();
        for m in [&up, &down, &edited] {
            assert_eq!(*m, direct);
            assert_eq!(layout(m), layout(&direct));
        }
        let avg = n as usize / direct.chunk_count();
        assert!((chunk_target(n as usize) / 4..=chunk_target(n as usize) * 2).contains(&avg), "average chunk {avg}");
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
        let a = sets.intern(StateMap::from_entries(vec![(k(1), e(1)), (k(2), e(2))]), None);
        let b = sets.intern(StateMap::from_entries(vec![(k(2), e(2)), (k(1), e(1))]), None);
        let mark = sets.mark();
        let c = sets.intern(StateMap::from_entries(vec![(k(2), e(3)), (k(1), e(1))]), None);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(sets.intern(StateMap::default(), None), StateSetId::EMPTY);
        sets.truncate(&mark);
        assert_eq!(sets.len(), 2);
        let c2 = sets.intern(StateMap::from_entries(vec![(k(2), e(3)), (k(1), e(1))]), None);
        assert_eq!(c2, StateSetId(2));
    }

    #[test]
    fn one_key_is_looked_up_without_building_its_state() {
        // States of 0 to 3,000 entries, each the one before with a few keys
        // added, replaced and removed (every chunk stored as a change
        // against another, chains and list changes included); with nothing
        // built, every key present and absent (before the first key, between
        // keys, after the last) reads as in the entries, and the lookups
        // build no state.
        let mut sets = StateSets::new();
        sets.set_budget(0);
        let mut truth: BTreeMap<u32, u32> = BTreeMap::new();
        let mut map = StateMap::default();
        let mut ids = vec![(StateSetId::EMPTY, truth.clone())];
        let mut x = 7u64;
        let mut next = || {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (x >> 33) as u32
        };
        for step in 0..120u32 {
            let mut changes = Vec::new();
            for _ in 0..25 {
                let key = 2 * (next() % 3000) + 1;
                let value = (next() % 2 == 0 || step < 60).then(&mut next);
                changes.push((k(key), value.map(e)));
            }
            changes.sort_by_key(|(k, _)| *k);
            changes.dedup_by_key(|(k, _)| *k);
            for (key, value) in &changes {
                match value {
                    Some(v) => truth.insert(key.0, v.0),
                    None => truth.remove(&key.0),
                };
            }
            map = map.with_changes(&changes);
            ids.push((sets.intern(map.clone(), None), truth.clone()));
        }
        drop(map);
        sets.trim();
        // (Trimming keeps the newest states built.)
        assert!(sets.stored.built_maps() < ids.len() / 4);
        for (id, truth) in &ids {
            let kept = sets.stored.built_maps();
            for key in 0..=6002 {
                assert_eq!(
                    sets.lookup(*id, k(key), None).unwrap(),
                    truth.get(&key).map(|v| e(*v)),
                    "state {id:?}, key {key}"
                );
            }
            assert_eq!(sets.stored.built_maps(), kept, "no state built");
            assert_eq!(
                sets.get(*id, None).unwrap().iter().map(|(k, e)| (k.0, e.0)).collect::<BTreeMap<_, _>>(),
                *truth
            );
            assert_eq!(
                sets.lookup(*id, k(1), None).unwrap(),
                truth.get(&1).map(|v| e(*v)),
                "read from the built state"
            );
            sets.trim();
        }
    }
}
