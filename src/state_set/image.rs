//! The interned states in a room image ([`crate::image`]): the states'
//! pools as they are ([`super::pool`]: the keys of the rows of their full
//! segments, and the values held), then every chunk's recipe (its base, and
//! how many values of the pools it takes: its entries, or its change against
//! an earlier chunk with the same first key, at most [`MAX_CHAIN`] changes
//! from one stored whole), then every map as its length, hash, bits and
//! chunk list (whole, or its change against the list before), so that
//! chunks stay shared exactly as they were. Writing an image reads no row.
//!
//! A room that reads its image keeps each chunk as it was written and
//! builds it when a state that holds it is first built (reading the rows
//! its runs are in). The reader checks every recipe and list against the
//! pools' lengths, and the values it holds against the room (keys, events,
//! chunk numbers, sizes); a row's values were checked when it was written,
//! and a row read back is checked against its hash.

use super::pool::{Pool, Which};
use super::stored::{removes_entries_there, List, MapHead, Recipe, Stored, LIST_CHAIN, MAX_CHAIN, WHOLE};
use super::{StateSetId, StateSets};
use crate::image::{index, ImageError, Reader, Writer};

const FULL: u8 = 0;
const DELTA: u8 = 1;

fn corrupt<T>(what: String) -> Result<T, ImageError> {
    Err(ImageError::Corrupt(what))
}

impl StateSets {
    /// Writes the pools, every chunk's recipe, then every map. Nothing is
    /// built or read.
    pub(crate) fn write_image(&self, w: &mut Writer<'_>) {
        let stored = &self.stored;
        stored.removed.write_image(w);
        stored.added.write_image(w);
        stored.list_pool.write_image(w);
        w.len(stored.recipes.len());
        let (mut removed, mut added) = (0, 0);
        for r in &stored.recipes {
            w.u32(r.base);
            w.u32(r.removed_end - removed);
            w.u32(r.added_end - added);
            (removed, added) = (r.removed_end, r.added_end);
        }
        w.len(stored.len());
        let mut end = 0;
        for (i, list) in stored.lists.iter().enumerate() {
            let head = stored.head(i);
            w.len(head.len as usize);
            w.u64(head.hash);
            if list.whole() {
                w.u8(FULL);
            } else {
                w.u8(DELTA);
                w.len(list.keep_front as usize);
                w.len(list.keep_back as usize);
            }
            w.u32(list.end - end);
            end = list.end;
        }
        w.u32s(stored.last.iter().copied());
    }

    /// Reads maps written by [`write_image`](Self::write_image), checking
    /// every chunk's recipe and every map's list; the index by hash is
    /// rebuilt. Every entry held must have its key below `keys` and its
    /// event below `events`.
    pub(crate) fn read_image(r: &mut Reader<'_>, keys: usize, events: usize) -> Result<Self, ImageError> {
        let mut stored = Stored::default();
        stored.removed = Pool::read_image(r, Which::Removed)?;
        stored.added = Pool::read_image(r, Which::Added)?;
        stored.list_pool = Pool::read_image(r, Which::Lists)?;
        let n_chunks = r.len(12)?;
        stored.reserve(n_chunks, 0);
        let (mut removed_end, mut added_end) = (0usize, 0usize);
        // Each chunk's changes from one stored whole (while reading).
        let mut depths: Vec<u8> = Vec::with_capacity(n_chunks);
        for n in 0..n_chunks {
            let chunk = |what: &str| corrupt(format!("state chunk {n} {what}"));
            let (base, removed, added) = (r.u32()?, r.u32()? as usize, r.u32()? as usize);
            let (from_removed, from_added) = (removed_end, added_end);
            removed_end += removed;
            added_end += added;
            let past_u32 = u32::try_from(removed_end).is_err() || u32::try_from(added_end).is_err();
            if removed_end > stored.removed.len() || added_end > stored.added.len() || past_u32 {
                return chunk("runs past its pool");
            }
            let (len, depth) = match base {
                WHOLE if removed == 0 => (added, 0),
                WHOLE => return chunk("is whole but removes entries"),
                base => {
                    let b = stored.recipes[index(base, n, "a base chunk")? as usize];
                    let depth = u32::from(depths[base as usize]);
                    if depth >= MAX_CHAIN {
                        return chunk("is too many changes from one written whole");
                    }
                    if removed > b.len as usize {
                        return chunk("removes more entries than its base has");
                    }
                    if let Some(held) = stored.removed.held_from(from_removed) {
                        if !removes_entries_there(&held[..removed], b.len) {
                            return chunk("removes entries that are not there");
                        }
                    }
                    (b.len as usize - removed + added, depth + 1)
                }
            };
            if len == 0 || u32::try_from(len).is_err() {
                return chunk("is empty or too large");
            }
            if let Some(held) = stored.added.held_from(from_added) {
                // The entries it adds in strictly ascending key order, every
                // key and event stored (branch-free loops). Those of its base
                // were checked likewise; that the merge leaves no key twice
                // is the writer's (a corrupt image may give a wrong state,
                // never a panic).
                let held = &held[..added];
                let mut ordered = true;
                let mut max_event = 0u32;
                for w in held.windows(2) {
                    ordered &= w[0] >> 32 < w[1] >> 32;
                }
                for x in held {
                    max_event = max_event.max(*x as u32);
                }
                if !ordered {
                    return chunk("is out of key order");
                }
                if let Some(last) = held.last() {
                    index((last >> 32) as u32, keys, "a state key")?;
                    index(max_event, events, "a state's event")?;
                }
            }
            depths.push(depth as u8);
            stored.push_recipe_as(Recipe {
                base,
                len: len as u32,
                removed_end: removed_end as u32,
                added_end: added_end as u32,
            });
        }
        drop(depths);
        if removed_end != stored.removed.len() || added_end != stored.added.len() {
            return corrupt("the state chunks' pools hold values no chunk takes".into());
        }
        let n_maps = r.len(14)?;
        stored.reserve(0, n_maps);
        let mut by_hash =
            super::FirstByHash { table: hashbrown::HashTable::with_capacity(n_maps), ..Default::default() };
        let mut collided = Vec::new();
        // The list before (its length; its numbers while they are held).
        let (mut prev_len, mut prev): (usize, Option<Vec<u32>>) = (0, Some(Vec::new()));
        let mut end = 0usize;
        // The list before's changes from the list stored whole it is built on.
        let mut last_depth = 0;
        for i in 0..n_maps {
            let state = |what: &str| corrupt(format!("state {i} {what}"));
            // A size, not a count of what follows (checked against the chunks).
            let len = usize::try_from(r.u64()?).map_err(|_| ImageError::Corrupt("a state's size past usize".into()))?;
            let hash = r.u64()?;
            let (keep_front, keep_back, depth) = match r.u8()? {
                FULL => (0, 0, 0),
                DELTA => {
                    let (p, q) = (r.len(0)?, r.len(0)?);
                    let depth = last_depth + 1;
                    let kept = p.checked_add(q).filter(|n| *n > 0 && *n <= prev_len);
                    if i == 0 || kept.is_none() || depth >= LIST_CHAIN || p > 0xffff || q > 0xffff {
                        return state("shares more chunks than the state before has");
                    }
                    (p, q, depth)
                }
                t => return state(&format!("has its chunks tagged {t}")),
            };
            let from = end;
            end += r.u32()? as usize;
            if end > stored.list_pool.len() {
                return state("runs past the chunk lists' pool");
            }
            let list = match (stored.list_pool.held_from(from), &prev) {
                (Some(held), _) if depth == 0 => Some(held[..end - from].to_vec()),
                (Some(held), Some(prev)) => {
                    let mut list = prev[..keep_front].to_vec();
                    list.extend_from_slice(&held[..end - from]);
                    list.extend_from_slice(&prev[prev.len() - keep_back..]);
                    Some(list)
                }
                _ => None,
            };
            prev_len = keep_front + keep_back + (end - from);
            if let Some(list) = &list {
                let mut total = 0usize;
                for n in list {
                    total += stored.recipes[index(*n, stored.recipes.len(), "a state chunk")? as usize].len as usize;
                }
                if total != len {
                    return state("does not add up");
                }
            }
            prev = list;
            last_depth = depth;
            stored.push_list_as(List {
                keep_front: keep_front as u16,
                keep_back: keep_back as u16,
                end: u32::try_from(end).map_err(|_| ImageError::Corrupt("a chunk list past 2^32".into()))?,
            });
            let len = u32::try_from(len).map_err(|_| ImageError::Corrupt(format!("state {i} is too large")))?;
            stored.push_head(MapHead { len, hash });
            let id = StateSetId(i as u32);
            if !by_hash.insert_first(&stored, id) {
                collided.push(id);
            }
        }
        if end != stored.list_pool.len() {
            return corrupt("the chunk lists' pool holds numbers no state takes".into());
        }
        r.u32s_into(&mut stored.last)?;
        let last_ok = match &prev {
            Some(prev) => *prev == stored.last,
            None => stored.last.len() == prev_len && stored.last.iter().all(|n| (*n as usize) < stored.recipes.len()),
        };
        if !last_ok {
            return corrupt("the newest state's chunk list is not its own".into());
        }
        if stored.len() == 0 || stored.head(0).len != 0 {
            return corrupt("the first state is not the empty state".into());
        }
        Ok(StateSets { stored, by_hash, collided, budget: usize::MAX })
    }
}

#[cfg(test)]
mod tests {
    use crate::event::StateKeyIdx;
    use crate::ids::EventIdx;
    use crate::state_set::stored::{apply, delta, removes_entries_there, MAX_CHAIN};
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
            ids.push(sets.intern(map.clone(), None));
        }
        (sets, ids)
    }

    fn round_trip(sets: &StateSets) -> StateSets {
        crate::image::round_trip(|w| sets.write_image(w), |r| StateSets::read_image(r, 2000, 3000)).unwrap()
    }

    /// A forged image of states: `chunks` (base, removed, added counts)
    /// over pools of `removed`, `added` and `lists` values held, `maps`
    /// (size, tag, kept ends, run count), then the newest list.
    fn forged(
        pools: (&[u32], &[u64], &[u32]),
        chunks: &[(u32, u32, u32)],
        maps: &[(usize, u8, usize, usize, u32)],
        last: &[u32],
    ) -> Result<StateSets, crate::image::ImageError> {
        let write = |w: &mut crate::image::Writer<'_>| {
            w.len(0);
            w.u32s(pools.0.iter().copied());
            w.len(0);
            w.u64s(pools.1);
            w.len(0);
            w.u32s(pools.2.iter().copied());
            w.len(chunks.len());
            for (base, removed, added) in chunks {
                w.u32(*base);
                w.u32(*removed);
                w.u32(*added);
            }
            w.len(maps.len());
            for (len, tag, p, q, run) in maps {
                w.len(*len);
                w.u64(0);
                w.u8(*tag);
                if *tag == 1 {
                    w.len(*p);
                    w.len(*q);
                }
                w.u32(*run);
            }
            w.u32s(last.iter().copied());
        };
        crate::image::round_trip(write, |r| StateSets::read_image(r, 10, 10))
    }

    /// What the reader checks without a row: counts past the pools or
    /// left over, a chain or removal its base cannot have, a list sharing
    /// more than the list before, a size its chunks do not add up to, a
    /// newest list not the last state's, a chunk number past the chunks,
    /// entries out of order or past the room's keys and events.
    #[test]
    fn forged_counts_and_values_are_refused() {
        let w = u32::MAX;
        let empty = (&[][..], &[][..], &[][..]);
        assert!(forged(empty, &[], &[(0, 0, 0, 0, 0)], &[]).is_ok(), "the empty state alone");
        let one = [1u64 << 32 | 2, 3 << 32 | 4];
        let ok = forged((&[], &one, &[0]), &[(w, 0, 2)], &[(0, 0, 0, 0, 0), (2, 0, 0, 0, 1)], &[0]);
        assert!(ok.is_ok(), "{:?}", ok.err());
        let refused = [
            forged((&[], &one, &[0]), &[(w, 0, 3)], &[(0, 0, 0, 0, 0), (2, 0, 0, 0, 1)], &[0]),
            forged((&[], &one, &[0]), &[(w, 0, 1)], &[(0, 0, 0, 0, 0), (2, 0, 0, 0, 1)], &[0]),
            forged((&[5], &one, &[0]), &[(w, 1, 2)], &[(0, 0, 0, 0, 0), (2, 0, 0, 0, 1)], &[0]),
            forged((&[5], &one, &[0, 1]), &[(w, 0, 2), (0, 1, 0)], &[(0, 0, 0, 0, 0), (2, 0, 0, 0, 2)], &[0, 1]),
            forged((&[], &one, &[0]), &[(w, 0, 2)], &[(0, 0, 0, 0, 0), (2, 1, 1, 1, 1)], &[0]),
            forged((&[], &one, &[0]), &[(w, 0, 2)], &[(0, 0, 0, 0, 0), (3, 0, 0, 0, 1)], &[0]),
            forged((&[], &one, &[0]), &[(w, 0, 2)], &[(0, 0, 0, 0, 0), (2, 0, 0, 0, 1)], &[]),
            forged((&[], &one, &[1]), &[(w, 0, 2)], &[(0, 0, 0, 0, 0), (2, 0, 0, 0, 1)], &[1]),
            forged((&[], &[3 << 32 | 2, 1 << 32 | 4], &[0]), &[(w, 0, 2)], &[(0, 0, 0, 0, 0), (2, 0, 0, 0, 1)], &[0]),
            forged((&[], &[1 << 32 | 2, 30 << 32 | 4], &[0]), &[(w, 0, 2)], &[(0, 0, 0, 0, 0), (2, 0, 0, 0, 1)], &[0]),
            forged((&[], &one, &[0]), &[(w, 0, 2)], &[(0, 0, 0, 0, 0), (2, 0, 0, 0, 2)], &[0]),
        ];
        for (i, r) in refused.iter().enumerate() {
            assert!(
                matches!(r, Err(crate::image::ImageError::Corrupt(_))),
                "forgery {i}: {:?}",
                r.as_ref().map(|s| s.len())
            );
        }
    }

    /// Read back, no state is built until asked for; each then equals the
    /// state written, and interning finds the states read back.
    #[test]
    fn states_read_back_are_built_when_first_asked_for() {
        let (sets, ids) = history();
        let mut read = round_trip(&sets);
        assert_eq!(read.len(), sets.len());
        assert_eq!(read.stored.built_maps(), 0);
        let asked = ids[1500];
        assert_eq!(read.get(asked, None).unwrap(), sets.get(asked, None).unwrap());
        assert_eq!(read.stored.built_maps(), 1);
        // Only its chunks are built, each at most MAX_CHAIN changes from a
        // chunk written whole (3,000 edits of 2,000 keys make longer runs).
        assert_eq!(read.stored.built_chunks(), read.get(asked, None).unwrap().chunk_count());
        let depths: Vec<u32> = (0..read.stored.recipes.len() as u32).map(|n| read.stored.depth_of(n)).collect();
        assert!(depths.iter().all(|d| *d <= MAX_CHAIN));
        assert!(depths.contains(&MAX_CHAIN));
        // Chunk lists are stored as changes too, at most LIST_CHAIN - 1 from
        // one stored whole: a fraction of the numbers they hold.
        use crate::state_set::stored::LIST_CHAIN;
        let depths: Vec<usize> = (0..read.len()).map(|i| i - read.stored.whole_list_of(i)).collect();
        assert!(depths.iter().all(|d| *d < LIST_CHAIN as usize));
        assert!(depths.iter().any(|d| *d == LIST_CHAIN as usize - 1));
        let held: usize = (0..read.len()).map(|i| read.stored.chunk_numbers(i, None).unwrap().len()).sum();
        let pooled = read.stored.lists.last().unwrap().end as usize;
        assert!(pooled * 4 < held, "{pooled} numbers pooled for {held} held");
        // An equal state is the one read back; a new one shares its chunks.
        assert_eq!(read.intern(sets.get(ids[2999], None).unwrap().clone(), None), ids[2999]);
        let next = read.get(ids[2999], None).unwrap().with_changes(&[(StateKeyIdx(5), None)]);
        let id = read.intern(next.clone(), None);
        assert_eq!(id.0 as usize, sets.len());
        assert_eq!(
            read.get(id, None).unwrap().chunk_count()
                - read.get(id, None).unwrap().shares_chunks_with(read.get(ids[2999], None).unwrap()),
            1
        );
        for id in &ids {
            assert_eq!(read.get(*id, None).unwrap(), sets.get(*id, None).unwrap());
        }
        assert_eq!(read.footprint(), {
            // (A new state's chunks are found by address among those built,
            // else by content among those stored or built since the read.)
            let mut all = round_trip(&sets);
            all.get(ids[2999], None).unwrap();
            all.intern(next, None);
            all.footprint()
        });
    }

    /// Under a budget, interning keeps what is built near it; every state
    /// is still the one interned, chunks held by a caller stay the ones the
    /// room builds (one address per chunk), and the room stores the same
    /// chunks and states as one without a budget.
    #[test]
    fn a_budget_bounds_what_is_built() {
        let (sets, ids) = history();
        let mut small = StateSets::new();
        small.set_budget(16 << 10);
        let mut map = StateMap::default();
        let mut peak = 0;
        let held = sets.get(ids[10], None).unwrap().clone();
        let mut held_here = None;
        for i in 0..3000u32 {
            map = map.with_changes(&[(StateKeyIdx(i * 7919 % 2000), Some(EventIdx(i)))]);
            let id = small.intern(map.clone(), None);
            assert_eq!(id, ids[i as usize + 1]);
            if i == 9 {
                held_here = Some(small.get(id, None).unwrap().clone());
            }
            // The next state derives from the one the room built.
            map = small.get(id, None).unwrap().clone();
            peak = peak.max(small.built_bytes());
        }
        // The newest states and their chunks, and at most as much again
        // before a trim: not the room's states (3,000 of 2,000 entries).
        let all: usize = {
            for id in &ids {
                sets.get(*id, None).unwrap();
            }
            sets.built_bytes()
        };
        assert!(peak < 160 << 10 && peak * 10 < all, "built {peak} bytes under a 16 KiB budget, {all} unbounded");
        assert!(small.stored.built_maps() <= 2 * crate::state_set::stored::KEEP_NEWEST);
        assert_eq!(small.footprint(), sets.footprint());
        for id in &ids {
            assert_eq!(small.get(*id, None).unwrap(), sets.get(*id, None).unwrap());
        }
        // The chunks a caller held through every trim are the room's.
        let held_here = held_here.unwrap();
        assert_eq!(held_here, held);
        assert_eq!(small.get(ids[10], None).unwrap().shares_chunks_with(&held_here), held_here.chunk_count());
        // The image of the budgeted room reads back the same states.
        let again = round_trip(&small);
        for id in &ids {
            assert_eq!(again.get(*id, None).unwrap(), sets.get(*id, None).unwrap());
        }
    }

    /// A rollback under a budget forgets the chunks only the dropped states
    /// held, whether built or not; the states interned again after it are
    /// stored as a room without a budget stores them.
    #[test]
    fn a_rollback_under_a_budget_forgets_what_it_dropped() {
        let (sets, ids) = history();
        let mut small = StateSets::new();
        small.set_budget(0);
        let mut map = StateMap::default();
        let mut maps = Vec::new();
        for i in 0..3000u32 {
            map = map.with_changes(&[(StateKeyIdx(i * 7919 % 2000), Some(EventIdx(i)))]);
            maps.push(map.clone());
            small.intern(map.clone(), None);
            if i == 1999 {
                // A batch that fails: states 2,001.. are dropped, then interned again.
                let (kept, mark) = (small.len(), small.mark());
                for j in 0..40u32 {
                    small.intern(map.with_changes(&[(StateKeyIdx(j), Some(EventIdx(9000 + j)))]), None);
                }
                small.truncate(&mark);
                assert_eq!(small.len(), kept);
            }
        }
        assert_eq!(small.footprint(), sets.footprint());
        for (i, m) in maps.iter().enumerate() {
            assert_eq!(small.get(ids[i + 1], None).unwrap(), m);
        }
        let again = round_trip(&small);
        for id in &ids {
            assert_eq!(again.get(*id, None).unwrap(), sets.get(*id, None).unwrap());
        }
    }

    /// An image written from a room read back, with some states built and
    /// some not, holds the same states; a rollback of states interned after
    /// the read forgets them.
    #[test]
    fn states_read_back_are_written_and_truncated_whether_built_or_not() {
        let (sets, ids) = history();
        let mut read = round_trip(&sets);
        for id in ids.iter().step_by(3) {
            read.get(*id, None).unwrap();
        }
        let again = round_trip(&read);
        for id in &ids {
            assert_eq!(again.get(*id, None).unwrap(), sets.get(*id, None).unwrap());
        }
        let (kept, mark) = (read.len(), read.mark());
        let newest = sets.get(ids[2999], None).unwrap().clone();
        for j in 0..40u32 {
            read.intern(newest.with_changes(&[(StateKeyIdx(j), Some(EventIdx(9000 + j)))]), None);
        }
        read.truncate(&mark);
        assert_eq!(read.len(), kept);
        assert_eq!(read.intern(sets.get(ids[999], None).unwrap().clone(), None), ids[999]);
        let new = newest.with_changes(&[(StateKeyIdx(0), Some(EventIdx(9000)))]);
        assert_eq!(read.intern(new, None).0 as usize, kept);
    }
}
