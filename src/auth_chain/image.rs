//! The auth-chain index in a room image ([`crate::image`]): node → event,
//! node → auth events, and each node's chain as numbers of shared blocks
//! (each distinct block written once, so they stay shared).

use std::collections::HashMap;
use std::sync::Arc;

use super::{AuthChainIndex, AuthNode, Block, Chain, BLOCK_BITS, WORDS};
use crate::ids::EventIdx;
use crate::image::{index, ImageError, Reader, Writer};

impl AuthChainIndex {
    /// Writes the index.
    pub(crate) fn write_image(&self, w: &mut Writer<'_>) {
        w.u32s(self.events.iter().map(|e| e.0));
        w.u32s(self.parents.iter().map(|p| p.0));
        w.u32s(self.parents_end.iter().copied());
        let mut numbers: HashMap<*const Block, u32> = HashMap::new();
        let mut blocks: Vec<&Arc<Block>> = Vec::new();
        let mut chains: Vec<u32> = Vec::new();
        for c in &self.chains {
            chains.push(c.blocks.len() as u32);
            for b in c.blocks.iter() {
                chains.push(b.as_ref().map_or(0, |b| {
                    1 + *numbers.entry(Arc::as_ptr(b)).or_insert_with(|| {
                        blocks.push(b);
                        (blocks.len() - 1) as u32
                    })
                }));
            }
        }
        w.len(blocks.len());
        for b in blocks {
            for word in b.iter() {
                w.u64(*word);
            }
        }
        w.u32s(chains.into_iter());
    }

    /// Reads an index written by [`write_image`](Self::write_image) for a
    /// room of `events` events.
    pub(crate) fn read_image(r: &mut Reader<'_>, events: usize) -> Result<Self, ImageError> {
        let nodes: Vec<EventIdx> = r.u32s()?.into_iter().map(EventIdx).collect();
        let n = nodes.len();
        for e in &nodes {
            index(e.0, events, "an auth node's event")?;
        }
        let parents: Vec<AuthNode> = r.u32s()?.into_iter().map(AuthNode).collect();
        for p in &parents {
            index(p.0, n, "an auth node's parent")?;
        }
        let parents_end = r.u32s()?;
        let ends_ok = parents_end.len() == n
            && parents_end.windows(2).all(|w| w[0] <= w[1])
            && parents_end.last().is_none_or(|e| *e as usize == parents.len());
        if !ends_ok {
            return Err(ImageError::Corrupt("the auth index's parent lists do not add up".into()));
        }
        let n_blocks = r.len(BLOCK_BITS / 8)?;
        let mut blocks: Vec<Arc<Block>> = Vec::with_capacity(n_blocks);
        for _ in 0..n_blocks {
            let mut b: Block = [0; WORDS];
            for word in &mut b {
                *word = r.u64()?;
            }
            blocks.push(Arc::new(b));
        }
        let flat = r.u32s()?;
        let mut at = 0;
        let mut chains = Vec::with_capacity(n);
        let max_blocks = n.div_ceil(BLOCK_BITS);
        for _ in 0..n {
            let len = *flat.get(at).ok_or_else(|| ImageError::Corrupt("the auth chains end early".into()))? as usize;
            let ids = flat.get(at + 1..at + 1 + len).filter(|_| len <= max_blocks);
            let ids = ids.ok_or_else(|| ImageError::Corrupt("an auth chain is outside the index".into()))?;
            let mut chain = Vec::with_capacity(len);
            for (bi, id) in ids.iter().enumerate() {
                chain.push(match id {
                    0 => None,
                    id => {
                        let b = &blocks[index(id - 1, blocks.len(), "an auth-chain block")? as usize];
                        check_block(b, bi, n)?;
                        Some(Arc::clone(b))
                    }
                });
            }
            chains.push(Chain { blocks: chain.into() });
            at += 1 + len;
        }
        if at != flat.len() {
            return Err(ImageError::Corrupt("the auth chains do not add up".into()));
        }
        Ok(AuthChainIndex { events: nodes, chains, parents, parents_end })
    }
}

/// A block at position `bi` names no node past the last of `nodes`.
fn check_block(b: &Block, bi: usize, nodes: usize) -> Result<(), ImageError> {
    let first = bi * BLOCK_BITS;
    if first + BLOCK_BITS <= nodes {
        return Ok(());
    }
    let beyond = (0..BLOCK_BITS).filter(|i| first + i >= nodes).any(|i| b[i / 64] & (1 << (i % 64)) != 0);
    if beyond {
        return Err(ImageError::Corrupt("an auth chain names a node that does not exist".into()));
    }
    Ok(())
}
