//! The auth-chain index.
//!
//! > The auth chain for an event is the recursive list of auth events and the
//! > auth events of those auth events. (spec: server-server API)
//!
//! Only accepted state events can appear in the auth chain of an accepted
//! event (an accepted event's auth events are accepted state events, and so
//! on down), so only they are indexed: each gets a dense *node* number in
//! arrival order, and its auth chain (strict ancestors) is a bitset over
//! nodes.
//!
//! The bitsets are cut into [`BLOCK_BITS`]-bit blocks shared by reference:
//! a new event's chain is the union of its auth events' chains plus those
//! events, and every block in which that union equals one of the parents'
//! blocks reuses that block. Old blocks therefore stop being copied once
//! history settles, and a chain costs one pointer per block plus the few
//! blocks that changed. Chain unions, intersections and differences (state
//! resolution, `/state_ids`) are word-wise operations.

use std::sync::Arc;

use crate::ids::EventIdx;

/// Bits per shared block.
pub const BLOCK_BITS: usize = 1024;
const WORDS: usize = BLOCK_BITS / 64;

type Block = [u64; WORDS];

/// A node of the auth-chain index (an accepted state event).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AuthNode(pub u32);

/// One event's auth chain: strict ancestors, as shared blocks.
#[derive(Clone, Debug, Default)]
struct Chain {
    blocks: Box<[Option<Arc<Block>>]>,
}

impl Chain {
    fn add_to(&self, set: &mut NodeSet) {
        set.ensure(self.blocks.len() * WORDS);
        for (bi, b) in self.blocks.iter().enumerate() {
            if let Some(b) = b {
                for (i, w) in b.iter().enumerate() {
                    set.words[bi * WORDS + i] |= w;
                }
            }
        }
    }
}

/// A dense bitset over nodes (the working form of unions and differences).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeSet {
    words: Vec<u64>,
}

impl NodeSet {
    /// An empty set sized for `nodes` nodes.
    pub fn with_capacity(nodes: usize) -> Self {
        Self { words: vec![0; nodes.div_ceil(64)] }
    }

    fn ensure(&mut self, words: usize) {
        if self.words.len() < words {
            self.words.resize(words, 0);
        }
    }

    /// Adds a node.
    pub fn insert(&mut self, n: AuthNode) {
        let i = n.0 as usize;
        self.ensure(i / 64 + 1);
        self.words[i / 64] |= 1 << (i % 64);
    }

    /// Whether a node is present.
    pub fn contains(&self, n: AuthNode) -> bool {
        let i = n.0 as usize;
        self.words.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// `self |= other`.
    pub fn union_with(&mut self, other: &NodeSet) {
        self.ensure(other.words.len());
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }

    /// `self &= other`.
    pub fn intersect_with(&mut self, other: &NodeSet) {
        for (i, a) in self.words.iter_mut().enumerate() {
            *a &= other.words.get(i).copied().unwrap_or(0);
        }
    }

    /// `self &= !other`.
    pub fn subtract(&mut self, other: &NodeSet) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= !b;
        }
    }

    /// Whether the two sets share a node.
    pub fn intersects(&self, other: &NodeSet) -> bool {
        self.words.iter().zip(&other.words).any(|(a, b)| a & b != 0)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    /// Nodes in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = AuthNode> + '_ {
        self.words.iter().enumerate().flat_map(|(wi, w)| {
            let mut w = *w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let b = w.trailing_zeros();
                w &= w - 1;
                Some(AuthNode((wi * 64) as u32 + b))
            })
        })
    }
}

/// The index: node → event, and node → auth chain.
#[derive(Debug, Default)]
pub struct AuthChainIndex {
    events: Vec<EventIdx>,
    chains: Vec<Chain>,
}

impl AuthChainIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether no node exists.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The event of a node.
    pub fn event(&self, n: AuthNode) -> EventIdx {
        self.events[n.0 as usize]
    }

    /// Adds an accepted state event whose auth events are the nodes `parents`
    /// (all already indexed). Returns its node.
    pub fn add(&mut self, event: EventIdx, parents: &[AuthNode]) -> AuthNode {
        let node = AuthNode(u32::try_from(self.events.len()).expect("fewer than 2^32 auth nodes"));
        let chain = self.merge(parents);
        self.events.push(event);
        self.chains.push(chain);
        node
    }

    /// The union of `parents` and their chains, block by block; a block
    /// equal to one of the parents' blocks is shared, not copied.
    fn merge(&self, parents: &[AuthNode]) -> Chain {
        let max_bit = parents.iter().map(|p| p.0 as usize).max();
        let n_blocks = parents
            .iter()
            .map(|p| self.chains[p.0 as usize].blocks.len())
            .chain(max_bit.map(|b| b / BLOCK_BITS + 1))
            .max()
            .unwrap_or(0);
        let mut blocks: Vec<Option<Arc<Block>>> = Vec::with_capacity(n_blocks);
        let mut parent_blocks: Vec<&Arc<Block>> = Vec::with_capacity(parents.len());
        for bi in 0..n_blocks {
            parent_blocks.clear();
            parent_blocks.extend(
                parents.iter().filter_map(|p| self.chains[p.0 as usize].blocks.get(bi).and_then(Option::as_ref)),
            );
            // Old blocks are shared by most chains: OR each distinct one once.
            parent_blocks.sort_unstable_by_key(|b| Arc::as_ptr(b));
            parent_blocks.dedup_by(|a, b| Arc::ptr_eq(a, b));
            let direct: Vec<usize> =
                parents.iter().map(|p| p.0 as usize).filter(|b| b / BLOCK_BITS == bi).map(|b| b % BLOCK_BITS).collect();
            if direct.is_empty() {
                match parent_blocks.as_slice() {
                    [] => {
                        blocks.push(None);
                        continue;
                    }
                    [only] => {
                        blocks.push(Some(Arc::clone(only)));
                        continue;
                    }
                    _ => {}
                }
            }
            let mut merged: Block = [0; WORDS];
            for b in &parent_blocks {
                for (m, w) in merged.iter_mut().zip(b.iter()) {
                    *m |= w;
                }
            }
            for bit in &direct {
                merged[bit / 64] |= 1 << (bit % 64);
            }
            // Reuse a parent's block when the union adds nothing to it.
            let shared = parent_blocks.iter().find(|b| ****b == merged).map(|b| Arc::clone(b));
            blocks.push(Some(shared.unwrap_or_else(|| Arc::new(merged))));
        }
        Chain { blocks: blocks.into() }
    }

    /// Adds the auth chain (strict ancestors) of `node` to `set`.
    pub fn add_chain_to(&self, node: AuthNode, set: &mut NodeSet) {
        self.chains[node.0 as usize].add_to(set);
    }

    /// Whether `ancestor` is in the auth chain of `node`.
    pub fn chain_contains(&self, node: AuthNode, ancestor: AuthNode) -> bool {
        let a = ancestor.0 as usize;
        self.chains[node.0 as usize]
            .blocks
            .get(a / BLOCK_BITS)
            .and_then(Option::as_ref)
            .is_some_and(|b| b[(a % BLOCK_BITS) / 64] & (1 << (a % 64)) != 0)
    }

    /// The auth chain of a node as a set.
    pub fn chain(&self, node: AuthNode) -> NodeSet {
        let mut s = NodeSet::with_capacity(self.len());
        self.add_chain_to(node, &mut s);
        s
    }

    /// Forgets nodes ≥ `len` (rollback of a failed batch).
    pub fn truncate(&mut self, len: usize) {
        self.events.truncate(len);
        self.chains.truncate(len);
    }

    /// (distinct blocks, block pointers) held, for memory accounting.
    pub fn footprint(&self) -> (usize, usize) {
        let mut seen = std::collections::HashSet::new();
        let mut ptrs = 0;
        for c in &self.chains {
            for b in c.blocks.iter().flatten() {
                ptrs += 1;
                seen.insert(Arc::as_ptr(b) as usize);
            }
        }
        (seen.len(), ptrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_are_transitive_and_shared() {
        let mut idx = AuthChainIndex::new();
        let create = idx.add(EventIdx(0), &[]);
        let join = idx.add(EventIdx(1), &[create]);
        let pl = idx.add(EventIdx(2), &[create, join]);
        let mut last = pl;
        for i in 3..3000 {
            last = idx.add(EventIdx(i), &[create, pl, last]);
        }
        let c = idx.chain(last);
        assert_eq!(c.len(), 2999);
        assert!(idx.chain_contains(last, join));
        assert!(!idx.chain_contains(join, pl));
        let (distinct, ptrs) = idx.footprint();
        // Each event adds at most its one changed (tip) block; the full blocks
        // below it are shared with its parents.
        assert!(distinct <= 3000, "one new block per event at most: {distinct} distinct of {ptrs}");
        assert!(ptrs > distinct + 2500, "old blocks are shared: {distinct} distinct of {ptrs}");
    }

    #[test]
    fn nodeset_ops() {
        let mut a = NodeSet::default();
        a.insert(AuthNode(3));
        a.insert(AuthNode(200));
        let mut b = NodeSet::default();
        b.insert(AuthNode(3));
        let mut u = a.clone();
        u.union_with(&b);
        assert_eq!(u.iter().collect::<Vec<_>>(), vec![AuthNode(3), AuthNode(200)]);
        let mut i = a.clone();
        i.intersect_with(&b);
        assert_eq!(i.iter().collect::<Vec<_>>(), vec![AuthNode(3)]);
        let mut d = a.clone();
        d.subtract(&b);
        assert_eq!(d.iter().collect::<Vec<_>>(), vec![AuthNode(200)]);
        assert!(a.intersects(&b));
    }
}
