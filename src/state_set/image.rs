//! The interned states in a room image ([`crate::image`]): each distinct
//! chunk once, then every map as its length, hash, bits and chunk numbers,
//! so that chunks stay shared exactly as they were.
//!
//! A chunk is mostly an earlier chunk with an entry or two changed (a state
//! event replaces one entry of one chunk): it is written as that change
//! against the last chunk written with the same first key, when that is
//! less than half its size (a 100,000-member room's chunks hold hundreds of
//! entries each), and when that chunk is itself fewer than [`MAX_CHAIN`]
//! changes from one written whole.
//!
//! A room that reads its image keeps each chunk as it was written (its
//! entries, or its base, removed positions and added entries) and builds it
//! when a state that holds it is first built: at most [`MAX_CHAIN`] changes
//! applied. The 150,000-event room's 36,015 chunks are 1.3 MB written and
//! 19 MB built (2.4 M entries); a query after a restart builds the few it
//! reads.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::sync::Arc;

use super::{ChunkTable, StateMap, StateSetId, StateSets};
use crate::image::{index, ImageError, Numbering, Reader, Writer};

const FULL: u8 = 0;
const DELTA: u8 = 1;

/// The most changes between a chunk and the chunk written whole it is
/// built from (the writer writes a chunk whole rather than go further; the
/// reader refuses longer chains). Without it the 150,000-event room had
/// chains of 9,082.
pub const MAX_CHAIN: u32 = 32;

/// No base: a chunk written whole.
const WHOLE: u32 = u32::MAX;

/// A chunk as written: its `added` entries (whole), or its base chunk's
/// entries without those at its `removed` positions, merged with `added`.
/// Its lists are the runs of [`ReadMaps`]' pools that end at `removed_end`
/// and `added_end`.
#[derive(Clone, Copy, Debug)]
struct Recipe {
    base: u32,
    len: u32,
    /// Changes from the chunk written whole it is built from.
    depth: u32,
    removed_end: u32,
    added_end: u32,
}

/// A map's size, content hash and chunk bits.
#[derive(Clone, Copy, Debug)]
pub(super) struct MapHead {
    pub(super) len: usize,
    pub(super) hash: u64,
    pub(super) bits: u32,
}

/// The maps of a room image as read: their heads and chunk numbers, each
/// checked, built into a [`StateMap`] when first asked for
/// ([`StateSets::get`]). Building one costs a reference count per chunk;
/// building all 38,898 of a 150,000-event room's maps (385,645 chunk
/// references) took a sixth of its read-back.
#[derive(Debug, Default)]
pub(super) struct ReadMaps {
    recipes: Vec<Recipe>,
    removed: Vec<u32>,
    added: Vec<u64>,
    /// Each chunk once built.
    chunks: Vec<OnceCell<Arc<[u64]>>>,
    heads: Vec<MapHead>,
    /// Map `i`'s chunks are numbers `numbers[at[i]..at[i + 1]]` of `chunks`.
    numbers: Vec<u32>,
    at: Vec<usize>,
}

impl ReadMaps {
    pub(super) fn head(&self, i: usize) -> MapHead {
        self.heads[i]
    }

    pub(super) fn chunk_numbers(&self, i: usize) -> &[u32] {
        &self.numbers[self.at[i]..self.at[i + 1]]
    }

    /// Chunk `n`, built on first use.
    pub(super) fn chunk(&self, n: u32) -> &Arc<[u64]> {
        self.chunks[n as usize].get_or_init(|| self.build_chunk(n))
    }

    fn lists(&self, n: u32) -> (&[u32], &[u64]) {
        let r = &self.recipes[n as usize];
        let (removed_from, added_from) = match n.checked_sub(1) {
            Some(p) => (self.recipes[p as usize].removed_end, self.recipes[p as usize].added_end),
            None => (0, 0),
        };
        (
            &self.removed[removed_from as usize..r.removed_end as usize],
            &self.added[added_from as usize..r.added_end as usize],
        )
    }

    /// Chunk `n`'s entries: from the nearest built chunk or whole chunk
    /// back along its bases, its changes applied in order (each recipe was
    /// checked when read, and the chain is at most [`MAX_CHAIN`] long).
    fn build_chunk(&self, n: u32) -> Arc<[u64]> {
        let mut changes = Vec::new();
        let mut at = n;
        let mut entries: Vec<u64> = loop {
            if let Some(built) = self.chunks[at as usize].get() {
                break built.to_vec();
            }
            let r = &self.recipes[at as usize];
            if r.base == WHOLE {
                break self.lists(at).1.to_vec();
            }
            changes.push(at);
            at = r.base;
        };
        let mut next = Vec::new();
        for c in changes.iter().rev() {
            let (removed, added) = self.lists(*c);
            apply(&entries, removed, added, &mut next);
            std::mem::swap(&mut entries, &mut next);
        }
        Arc::from(entries)
    }

    /// Map `i`, built (its numbers were checked when read).
    pub(super) fn build(&self, i: usize) -> StateMap {
        let MapHead { len, hash, bits } = self.heads[i];
        let chunks = self.chunk_numbers(i).iter().map(|n| Arc::clone(self.chunk(*n))).collect();
        StateMap { chunks, len, hash, bits }
    }

    /// Forgets maps `len..` (their chunks stay until the room is dropped).
    pub(super) fn truncate(&mut self, len: usize) {
        if len < self.heads.len() {
            self.heads.truncate(len);
            self.at.truncate(len + 1);
            self.numbers.truncate(self.at[len]);
        }
    }
}

/// `c` against `base` (both sorted by key): the positions in `base` of the
/// entries `c` lacks, and the entries of `c` that `base` lacks.
fn delta(base: &[u64], c: &[u64]) -> (Vec<u32>, Vec<u64>) {
    let (mut removed, mut added) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < base.len() || j < c.len() {
        match (base.get(i), c.get(j)) {
            (Some(b), Some(x)) if b == x => {
                i += 1;
                j += 1;
            }
            (Some(b), Some(x)) if b >> 32 == x >> 32 => {
                removed.push(i as u32);
                added.push(*x);
                i += 1;
                j += 1;
            }
            (Some(b), Some(x)) if b >> 32 < x >> 32 => {
                removed.push(i as u32);
                i += 1;
            }
            (Some(_), None) => {
                removed.push(i as u32);
                i += 1;
            }
            (_, Some(x)) => {
                added.push(*x);
                j += 1;
            }
            (None, None) => unreachable!("the loop runs while either has entries"),
        }
    }
    (removed, added)
}

/// Whether `removed` names entries of a chunk of `len`, each once, in order.
fn removes_entries_there(removed: &[u32], len: u32) -> bool {
    removed.windows(2).all(|w| w[0] < w[1]) && removed.last().is_none_or(|r| *r < len)
}

/// `base` without the entries at `removed` (ascending positions, checked
/// with [`removes_entries_there`]), merged with `added` by key, into `kept`
/// (cleared first).
fn apply(base: &[u64], removed: &[u32], added: &[u64], kept: &mut Vec<u64>) {
    kept.clear();
    kept.reserve(base.len().saturating_sub(removed.len()) + added.len());
    let mut gone = removed.iter().peekable();
    let mut add = added.iter().peekable();
    for (i, x) in base.iter().enumerate() {
        if gone.peek() == Some(&&(i as u32)) {
            gone.next();
            continue;
        }
        while let Some(a) = add.next_if(|a| **a >> 32 < *x >> 32) {
            kept.push(*a);
        }
        kept.push(*x);
    }
    kept.extend(add);
}

impl StateSets {
    /// Writes every map and the chunks they share.
    pub(crate) fn write_image(&self, w: &mut Writer<'_>) {
        let mut numbers: Numbering<'_, [u64]> = Numbering::default();
        for i in 0..self.maps.len() {
            self.each_chunk(i, |c| numbers.number(c));
        }
        let chunks = &numbers.table;
        w.len(chunks.len());
        let mut by_first: HashMap<u32, u32> = HashMap::new();
        let mut depth: Vec<u32> = Vec::with_capacity(chunks.len());
        for (n, c) in chunks.iter().enumerate() {
            let first = (c[0] >> 32) as u32;
            let base = by_first.get(&first).filter(|b| depth[**b as usize] < MAX_CHAIN);
            let delta = base.map(|b| (*b, delta(chunks[*b as usize], c)));
            depth.push(0);
            match delta {
                Some((base, (removed, added))) if removed.len() * 4 + added.len() * 8 + 8 < c.len() * 4 => {
                    depth[n] = depth[base as usize] + 1;
                    w.u8(DELTA);
                    w.u32(base);
                    w.u32s(removed.into_iter());
                    w.u64s(&added);
                }
                _ => {
                    w.u8(FULL);
                    w.u64s(c);
                }
            }
            by_first.insert(first, n as u32);
        }
        w.len(self.maps.len());
        let mut prev: Vec<u32> = Vec::new();
        for i in 0..self.maps.len() {
            let head = self.head(i);
            w.len(head.len);
            w.u64(head.hash);
            w.u32(head.bits);
            let mut ids: Vec<u32> = Vec::new();
            self.each_chunk(i, |c| ids.push(numbers.of(c)));
            // Most states are the one before with a chunk or two replaced:
            // the chunks they share at both ends, and the middle.
            let p = ids.iter().zip(&prev).take_while(|(a, b)| a == b).count();
            let q = ids[p..].iter().rev().zip(prev[p..].iter().rev()).take_while(|(a, b)| a == b).count();
            let middle = &ids[p..ids.len() - q];
            if middle.len() * 4 + 16 < ids.len() * 2 {
                w.u8(DELTA);
                w.len(p);
                w.len(q);
                w.u32s(middle.iter().copied());
            } else {
                w.u8(FULL);
                w.u32s(ids.iter().copied());
            }
            prev = ids;
        }
    }

    /// Reads maps written by [`write_image`](Self::write_image); the index
    /// by hash is rebuilt, the chunk table when a state is next interned (as
    /// [`truncate`](Self::truncate) rebuilds it). Every entry's key must be
    /// below `keys` and its event below `events`.
    pub(crate) fn read_image(r: &mut Reader<'_>, keys: usize, events: usize) -> Result<Self, ImageError> {
        let n_chunks = r.len(8)?;
        let mut read = ReadMaps::default();
        read.recipes.reserve(n_chunks);
        let (mut removed, mut added) = (Vec::new(), Vec::new());
        let corrupt = |what: &str| Err(ImageError::Corrupt(format!("a state chunk {what}")));
        for n in 0..n_chunks {
            let (base, len, depth) = match r.u8()? {
                FULL => {
                    removed.clear();
                    r.u64s_into(&mut added)?;
                    (WHOLE, added.len(), 0)
                }
                DELTA => {
                    let base = index(r.u32()?, n, "a base chunk")?;
                    r.u32s_into(&mut removed)?;
                    r.u64s_into(&mut added)?;
                    let b = read.recipes[base as usize];
                    if b.depth >= MAX_CHAIN {
                        return corrupt("is too many changes from one written whole");
                    }
                    if !removes_entries_there(&removed, b.len) {
                        return corrupt("removes entries that are not there");
                    }
                    (base, b.len as usize - removed.len() + added.len(), b.depth + 1)
                }
                t => return corrupt(&format!("is tagged {t}")),
            };
            // The entries it adds in strictly ascending key order, every key
            // and event stored (branch-free loops). Those of its base were
            // checked likewise; that the merge leaves no key twice is the
            // writer's (a corrupt image may give a wrong state, never a panic).
            let mut ordered = true;
            let mut max_event = 0u32;
            for w in added.windows(2) {
                ordered &= w[0] >> 32 < w[1] >> 32;
            }
            for x in &added {
                max_event = max_event.max(*x as u32);
            }
            if !ordered || len == 0 {
                return corrupt("is empty or out of key order");
            }
            if let Some(last) = added.last() {
                index((last >> 32) as u32, keys, "a state key")?;
                index(max_event, events, "a state's event")?;
            }
            read.removed.extend_from_slice(&removed);
            read.added.extend_from_slice(&added);
            let end =
                |l: usize| u32::try_from(l).map_err(|_| ImageError::Corrupt("state chunks past 2^32 entries".into()));
            read.recipes.push(Recipe {
                base,
                len: end(len)?,
                depth,
                removed_end: end(read.removed.len())?,
                added_end: end(read.added.len())?,
            });
        }
        read.chunks = (0..n_chunks).map(|_| OnceCell::new()).collect();
        let n_maps = r.len(24)?;
        read.heads.reserve(n_maps);
        read.at.reserve(n_maps + 1);
        read.at.push(0);
        let mut by_hash = HashMap::with_capacity(n_maps);
        let mut collided = Vec::new();
        let mut middle: Vec<u32> = Vec::new();
        for i in 0..n_maps {
            // A size, not a count of what follows (checked against the chunks).
            let len = usize::try_from(r.u64()?).map_err(|_| ImageError::Corrupt("a state's size past usize".into()))?;
            let hash = r.u64()?;
            let bits = r.u32()?;
            let start = read.numbers.len();
            let prev = read.at[i.saturating_sub(1)]..start;
            match r.u8()? {
                FULL => {
                    r.u32s_into(&mut middle)?;
                    read.numbers.extend_from_slice(&middle);
                }
                DELTA => {
                    let (p, q) = (r.len(0)?, r.len(0)?);
                    r.u32s_into(&mut middle)?;
                    if p.checked_add(q).is_none_or(|n| n > prev.len()) {
                        return Err(ImageError::Corrupt(format!(
                            "state {i} shares more chunks than the state before has"
                        )));
                    }
                    read.numbers.extend_from_within(prev.start..prev.start + p);
                    read.numbers.extend_from_slice(&middle);
                    read.numbers.extend_from_within(prev.end - q..prev.end);
                }
                t => return Err(ImageError::Corrupt(format!("state {i}'s chunks tagged {t}"))),
            }
            let mut total = 0usize;
            for n in &read.numbers[start..] {
                total += read.recipes[index(*n, read.recipes.len(), "a state chunk")? as usize].len as usize;
            }
            if total != len || bits > 63 {
                return Err(ImageError::Corrupt(format!("state {i} does not add up")));
            }
            read.at.push(read.numbers.len());
            read.heads.push(MapHead { len, hash, bits });
            let id = StateSetId(i as u32);
            match by_hash.entry(hash) {
                std::collections::hash_map::Entry::Occupied(_) => collided.push(id),
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(id);
                }
            }
        }
        if read.heads.first().is_none_or(|m| m.len != 0) {
            return Err(ImageError::Corrupt("the first state is not the empty state".into()));
        }
        let sets = StateSets {
            maps: (0..n_maps).map(|_| OnceCell::new()).collect(),
            read,
            by_hash,
            collided,
            chunks: ChunkTable::default(),
            chunks_indexed: false,
        };
        Ok(sets)
    }
}

#[cfg(test)]
mod tests {
    use super::{apply, delta, removes_entries_there, MAX_CHAIN};
    use crate::event::StateKeyIdx;
    use crate::ids::EventIdx;
    use crate::state_set::{StateMap, StateSetId, StateSets};

    /// Sorted entries `key << 32 | event` from a seed (a small PRNG).
    fn chunk(seed: u64, len: usize) -> Vec<u64> {
        let mut x = seed | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut keys: Vec<u64> = (0..len).map(|_| next() % 400).collect();
        keys.sort_unstable();
        keys.dedup();
        keys.into_iter().map(|k| k << 32 | (next() % 1000)).collect()
    }

    #[test]
    fn a_chunk_is_its_base_with_its_delta_applied() {
        for seed in 0..300u64 {
            let base = chunk(seed + 1, (seed % 40) as usize + 1);
            // An edit of the base (replace, insert, remove), and an unrelated chunk.
            let mut edited = base.clone();
            let at = (seed as usize * 7) % edited.len();
            match seed % 3 {
                0 => edited[at] = (edited[at] & !0xffff_ffff) | 5000,
                1 => {
                    edited.remove(at);
                }
                _ => {
                    let key = (edited[at] >> 32) + 1;
                    if edited.get(at + 1).is_none_or(|n| n >> 32 > key) {
                        edited.insert(at + 1, key << 32 | 7);
                    }
                }
            }
            // The output buffer is reused, as the reader does.
            let mut out = vec![1, 2, 3];
            for c in [edited, chunk(seed + 1000, 30), base.clone(), Vec::new()] {
                let (removed, added) = delta(&base, &c);
                assert!(removes_entries_there(&removed, base.len() as u32));
                apply(&base, &removed, &added, &mut out);
                assert_eq!(out, c, "seed {seed}");
            }
        }
    }

    #[test]
    fn a_delta_that_removes_what_is_not_there_is_refused() {
        let base = chunk(9, 10);
        assert!(removes_entries_there(&[2, 3], base.len() as u32));
        assert!(!removes_entries_there(&[3, 2], base.len() as u32));
        assert!(!removes_entries_there(&[3, 3], base.len() as u32));
        assert!(!removes_entries_there(&[base.len() as u32], base.len() as u32));
    }

    /// States of a room whose 2,000 keys change one at a time.
    fn history() -> (StateSets, Vec<StateSetId>) {
        let mut sets = StateSets::new();
        let mut map = StateMap::default();
        let mut ids = vec![StateSetId::EMPTY];
        for i in 0..3000u32 {
            map = map.with_changes(&[(StateKeyIdx(i * 7919 % 2000), Some(EventIdx(i)))]);
            ids.push(sets.intern(map.clone()));
        }
        (sets, ids)
    }

    fn round_trip(sets: &StateSets) -> StateSets {
        crate::image::round_trip(|w| sets.write_image(w), |r| StateSets::read_image(r, 2000, 3000)).unwrap()
    }

    /// Read back, no state is built until asked for; each then equals the
    /// state written, and interning finds the states read back.
    #[test]
    fn states_read_back_are_built_when_first_asked_for() {
        let (sets, ids) = history();
        let mut read = round_trip(&sets);
        assert_eq!(read.len(), sets.len());
        assert!(read.maps.iter().all(|m| m.get().is_none()));
        let asked = ids[1500];
        assert_eq!(read.get(asked), sets.get(asked));
        assert_eq!(read.maps.iter().filter(|m| m.get().is_some()).count(), 1);
        // Only its chunks are built, each at most MAX_CHAIN changes from a
        // chunk written whole (3,000 edits of 2,000 keys make longer runs).
        assert_eq!(read.read.chunks.iter().filter(|c| c.get().is_some()).count(), read.get(asked).chunk_count());
        assert!(read.read.recipes.iter().all(|r| r.depth <= MAX_CHAIN));
        assert!(read.read.recipes.iter().any(|r| r.depth == MAX_CHAIN));
        // An equal state is the one read back; a new one shares its chunks.
        assert_eq!(read.intern(sets.get(ids[2999]).clone()), ids[2999]);
        let next = read.get(ids[2999]).with_changes(&[(StateKeyIdx(5), None)]);
        let id = read.intern(next.clone());
        assert_eq!(id.0 as usize, sets.len());
        assert_eq!(read.get(id).chunk_count() - read.get(id).shares_chunks_with(read.get(ids[2999])), 1);
        for id in &ids {
            assert_eq!(read.get(*id), sets.get(*id));
        }
        assert_eq!(read.footprint(), {
            let mut all = round_trip(&sets);
            all.intern(next);
            all.footprint()
        });
    }

    /// An image written from a room read back, with some states built and
    /// some not, holds the same states; a rollback forgets those after it.
    #[test]
    fn states_read_back_are_written_and_truncated_whether_built_or_not() {
        let (sets, ids) = history();
        let mut read = round_trip(&sets);
        for id in ids.iter().step_by(3) {
            read.get(*id);
        }
        let again = round_trip(&read);
        for id in &ids {
            assert_eq!(again.get(*id), sets.get(*id));
        }
        read.truncate(1000);
        assert_eq!(read.len(), 1000);
        assert_eq!(read.intern(sets.get(ids[999]).clone()), ids[999]);
        assert_eq!(read.intern(sets.get(ids[2000]).clone()).0, 1000);
    }
}
