//! The interned states in a room image ([`crate::image`]): each distinct
//! chunk once, then every map as its length, hash, bits and chunk numbers,
//! so that chunks stay shared exactly as they were.

use std::collections::HashMap;
use std::sync::Arc;

use super::{ChunkTable, StateMap, StateSetId, StateSets};
use crate::image::{index, ImageError, Reader, Writer};

impl StateSets {
    /// Writes every map and the chunks they share.
    pub(crate) fn write_image(&self, w: &mut Writer<'_>) {
        let mut numbers: HashMap<usize, u32> = HashMap::new();
        let mut chunks: Vec<&Arc<[u64]>> = Vec::new();
        for m in &self.maps {
            for c in m.chunks.iter() {
                numbers.entry(Arc::as_ptr(c) as *const u64 as usize).or_insert_with(|| {
                    chunks.push(c);
                    (chunks.len() - 1) as u32
                });
            }
        }
        w.len(chunks.len());
        for c in &chunks {
            w.u64s(c);
        }
        w.len(self.maps.len());
        for m in &self.maps {
            w.len(m.len);
            w.u64(m.hash);
            w.u32(m.bits);
            w.u32s(m.chunks.iter().map(|c| numbers[&(Arc::as_ptr(c) as *const u64 as usize)]));
        }
    }

    /// Reads maps written by [`write_image`](Self::write_image); the index
    /// by hash is rebuilt, the chunk table when a state is next interned (as
    /// [`truncate`](Self::truncate) rebuilds it). The entries' keys and
    /// events are checked by the caller.
    pub(crate) fn read_image(r: &mut Reader<'_>) -> Result<Self, ImageError> {
        let n_chunks = r.len(8)?;
        let mut chunks: Vec<Arc<[u64]>> = Vec::with_capacity(n_chunks);
        for _ in 0..n_chunks {
            let c = r.u64s()?;
            if c.is_empty() || !c.windows(2).all(|w| w[0] >> 32 < w[1] >> 32) {
                return Err(ImageError::Corrupt("a state chunk is empty or out of key order".into()));
            }
            chunks.push(c.into());
        }
        let n_maps = r.len(24)?;
        let mut sets = StateSets {
            maps: Vec::with_capacity(n_maps),
            by_hash: HashMap::new(),
            collided: Vec::new(),
            chunks: ChunkTable::default(),
            chunks_indexed: false,
        };
        for i in 0..n_maps {
            let len = r.len(0)?;
            let hash = r.u64()?;
            let bits = r.u32()?;
            let ids = r.u32s()?;
            let mut parts = Vec::with_capacity(ids.len());
            for id in ids {
                parts.push(Arc::clone(&chunks[index(id, chunks.len(), "a state chunk")? as usize]));
            }
            if parts.iter().map(|c| c.len()).sum::<usize>() != len || bits > 63 {
                return Err(ImageError::Corrupt(format!("state {i} does not add up")));
            }
            let map = StateMap { chunks: parts.into(), len, hash, bits };
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

    /// Every entry of every distinct chunk, for the caller's checks.
    pub(crate) fn each_chunk_entry(&self, f: &mut dyn FnMut(u64) -> Result<(), ImageError>) -> Result<(), ImageError> {
        let mut seen = std::collections::HashSet::new();
        for m in &self.maps {
            for c in m.chunks.iter() {
                if seen.insert(Arc::as_ptr(c) as *const u64 as usize) {
                    for x in c.iter() {
                        f(*x)?;
                    }
                }
            }
        }
        Ok(())
    }
}
