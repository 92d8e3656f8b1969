//! The interned states in a room image ([`crate::image`]): each distinct
//! chunk once, then every map as its length, hash, bits and chunk numbers,
//! so that chunks stay shared exactly as they were.
//!
//! A chunk is mostly an earlier chunk with an entry or two changed (a state
//! event replaces one entry of one chunk): it is written as that change
//! against the last chunk written with the same first key, when that is
//! less than half its size (a 100,000-member room's chunks hold hundreds of
//! entries each).

use std::collections::HashMap;
use std::sync::Arc;

use super::{ChunkTable, StateMap, StateSetId, StateSets};
use crate::image::{index, ImageError, Numbering, Reader, Writer};

const FULL: u8 = 0;
const DELTA: u8 = 1;

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

/// `base` without the entries at `removed` (ascending positions), merged
/// with `added` by key, into `kept` (cleared first).
fn apply(base: &[u64], removed: &[u32], added: &[u64], kept: &mut Vec<u64>) -> Result<(), ImageError> {
    let ascending =
        removed.windows(2).all(|w| w[0] < w[1]) && removed.last().is_none_or(|r| (*r as usize) < base.len());
    if !ascending {
        return Err(ImageError::Corrupt("a state chunk's change removes entries that are not there".into()));
    }
    kept.clear();
    kept.reserve(base.len() - removed.len() + added.len());
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
    Ok(())
}

impl StateSets {
    /// Writes every map and the chunks they share.
    pub(crate) fn write_image(&self, w: &mut Writer<'_>) {
        let mut numbers: Numbering<'_, [u64]> = Numbering::default();
        for m in &self.maps {
            m.chunks.iter().for_each(|c| numbers.number(c));
        }
        let chunks = &numbers.table;
        w.len(chunks.len());
        let mut by_first: HashMap<u32, u32> = HashMap::new();
        for (n, c) in chunks.iter().enumerate() {
            let first = (c[0] >> 32) as u32;
            let delta = by_first.get(&first).map(|b| (*b, delta(chunks[*b as usize], c)));
            match delta {
                Some((base, (removed, added))) if removed.len() * 4 + added.len() * 8 + 8 < c.len() * 4 => {
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
        for m in &self.maps {
            w.len(m.len);
            w.u64(m.hash);
            w.u32(m.bits);
            let ids: Vec<u32> = m.chunks.iter().map(|c| numbers.of(c)).collect();
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
        let mut chunks: Vec<Arc<[u64]>> = Vec::with_capacity(n_chunks);
        // Scratch reused for every chunk: one allocation per chunk, its own.
        let (mut c, mut removed, mut added) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..n_chunks {
            match r.u8()? {
                FULL => r.u64s_into(&mut c)?,
                DELTA => {
                    let base = index(r.u32()?, chunks.len(), "a base chunk")?;
                    r.u32s_into(&mut removed)?;
                    r.u64s_into(&mut added)?;
                    apply(&chunks[base as usize], &removed, &added, &mut c)?;
                }
                t => return Err(ImageError::Corrupt(format!("a state chunk tagged {t}"))),
            }
            // Keys strictly ascending and every event stored (branch-free
            // loops: this runs over every entry of every chunk).
            let mut ordered = !c.is_empty();
            let mut max_event = 0u32;
            for w in c.windows(2) {
                ordered &= w[0] >> 32 < w[1] >> 32;
            }
            for x in &c {
                max_event = max_event.max(*x as u32);
            }
            if !ordered {
                return Err(ImageError::Corrupt("a state chunk is empty or out of key order".into()));
            }
            // In key order: the last entry holds the chunk's largest key.
            index((c[c.len() - 1] >> 32) as u32, keys, "a state key")?;
            index(max_event, events, "a state's event")?;
            chunks.push(Arc::from(&c[..]));
        }
        let n_maps = r.len(24)?;
        let mut sets = StateSets {
            maps: Vec::with_capacity(n_maps),
            by_hash: HashMap::with_capacity(n_maps),
            collided: Vec::new(),
            chunks: ChunkTable::default(),
            chunks_indexed: false,
        };
        let (mut prev, mut ids, mut middle): (Vec<u32>, Vec<u32>, Vec<u32>) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..n_maps {
            let len = r.len(0)?;
            let hash = r.u64()?;
            let bits = r.u32()?;
            match r.u8()? {
                FULL => r.u32s_into(&mut ids)?,
                DELTA => {
                    let (p, q) = (r.len(0)?, r.len(0)?);
                    r.u32s_into(&mut middle)?;
                    if p.checked_add(q).is_none_or(|n| n > prev.len()) {
                        return Err(ImageError::Corrupt(format!(
                            "state {i} shares more chunks than the state before has"
                        )));
                    }
                    ids.clear();
                    ids.extend_from_slice(&prev[..p]);
                    ids.extend_from_slice(&middle);
                    ids.extend_from_slice(&prev[prev.len() - q..]);
                }
                t => return Err(ImageError::Corrupt(format!("state {i}'s chunks tagged {t}"))),
            }
            let mut total = 0usize;
            for id in &ids {
                total += chunks[index(*id, chunks.len(), "a state chunk")? as usize].len();
            }
            if total != len || bits > 63 {
                return Err(ImageError::Corrupt(format!("state {i} does not add up")));
            }
            let parts: Arc<[Arc<[u64]>]> = ids.iter().map(|id| Arc::clone(&chunks[*id as usize])).collect();
            std::mem::swap(&mut prev, &mut ids);
            let map = StateMap { chunks: parts, len, hash, bits };
            let id = StateSetId(i as u32);
            match sets.by_hash.entry(hash) {
                std::collections::hash_map::Entry::Occupied(_) => sets.collided.push(id),
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(id);
                }
            }
            sets.maps.push(map);
        }
        if sets.maps.first().is_none_or(|m| m.len != 0) {
            return Err(ImageError::Corrupt("the first state is not the empty state".into()));
        }
        Ok(sets)
    }
}

#[cfg(test)]
mod tests {
    use super::{apply, delta};

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
                apply(&base, &removed, &added, &mut out).unwrap();
                assert_eq!(out, c, "seed {seed}");
            }
        }
    }

    #[test]
    fn a_delta_that_removes_what_is_not_there_is_an_error() {
        let base = chunk(9, 10);
        let mut out = Vec::new();
        assert!(apply(&base, &[3, 2], &[], &mut out).is_err());
        assert!(apply(&base, &[base.len() as u32], &[], &mut out).is_err());
    }
}
