//! The auth-chain index.
//!
//! > The auth chain for an event is the recursive list of auth events and the
//! > auth events of those auth events. (spec: server-server API)
//!
//! Only accepted state events can appear in the auth chain of an accepted
//! event (an accepted event's auth events are accepted state events, and so
//! on down), so only they are indexed: each gets a dense *node* number in
//! arrival order and keeps its direct auth events (nodes). Node numbers are
//! a topological order (an event's auth events are indexed before it).
//!
//! Every question is a walk down the auth events from the few nodes asked
//! about: an auth chain (`/state_ids`, `/event_auth`) visits each node of
//! the answer once, however many of the chains asked about hold it; state
//! resolution's auth difference of the states and the conflicted state
//! subgraph walk from the newest node down and stop where the answer is
//! settled, so that they cost what the difference holds rather than what
//! the room holds. The index is three flat arrays (4 bytes per node and per
//! auth edge), in memory and in a room image alike: nothing is derived from
//! them that a restart would have to build again.

use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap};

use crate::ids::{EventIdx, IntMap};

mod image;

/// A node of the auth-chain index (an accepted state event).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AuthNode(pub u32);

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

/// The index: node → event, and node → its auth events (nodes).
#[derive(Debug, Default)]
pub struct AuthChainIndex {
    events: Vec<EventIdx>,
    /// The auth events of every node, one after the other.
    parents: Vec<AuthNode>,
    /// Where each node's auth events end in `parents`.
    parents_end: Vec<u32>,
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
        debug_assert!(parents.iter().all(|p| p.0 < node.0), "auth events are indexed first");
        self.events.push(event);
        self.parents.extend_from_slice(parents);
        self.parents_end.push(u32::try_from(self.parents.len()).expect("fewer than 2^32 auth edges"));
        node
    }

    /// The auth events of a node (nodes).
    pub fn parents(&self, node: AuthNode) -> &[AuthNode] {
        let i = node.0 as usize;
        let start = if i == 0 { 0 } else { self.parents_end[i - 1] as usize };
        &self.parents[start..self.parents_end[i] as usize]
    }

    /// The auth chains of `nodes` (their strict auth ancestors; `nodes`
    /// themselves too when `inclusive`), as a set: one walk down the auth
    /// events, which visits each node of the answer once.
    pub fn chains(&self, nodes: &[AuthNode], inclusive: bool) -> NodeSet {
        let mut set = NodeSet::with_capacity(self.len());
        let mut stack: Vec<AuthNode> = Vec::new();
        for n in nodes {
            if inclusive {
                stack.push(*n);
            } else {
                stack.extend_from_slice(self.parents(*n));
            }
        }
        // A node enters the set only here, and its auth events are pushed as
        // it does: every node in the set has its whole chain in it.
        while let Some(x) = stack.pop() {
            if !set.contains(x) {
                set.insert(x);
                stack.extend_from_slice(self.parents(x));
            }
        }
        set
    }

    /// The auth chain (strict ancestors) of a node as a set.
    pub fn chain(&self, node: AuthNode) -> NodeSet {
        self.chains(&[node], false)
    }

    /// Forgets nodes ≥ `len` (rollback of a failed batch).
    pub fn truncate(&mut self, len: usize) {
        self.events.truncate(len);
        self.parents_end.truncate(len);
        self.parents.truncate(self.parents_end.last().map_or(0, |e| *e as usize));
    }

    /// The auth difference of some sets of nodes: the nodes in the full
    /// auth chain (nodes included) of some of the sets but not of all of
    /// them. Every set also holds the nodes of the events `common` (whose
    /// chain is therefore never in the difference); `node_of` gives them,
    /// and as nodes are numbered in arrival order, it is increasing.
    /// `in_common` tells whether a node is one of them (it may say no to
    /// one: it only lets the walk stop sooner).
    ///
    /// A walk from the newest node down (a max-heap on node numbers, which
    /// are topological), carrying which sets reach each node: a node is
    /// popped only after every node above it, so its mask is complete; it
    /// stops as soon as every node still queued is reached by all the sets,
    /// as everything below those is too. The events of `common` join the
    /// walk lazily, newest first, and a node the walk reaches that is one of
    /// them is reached by all the sets at once. The cost is the part of the
    /// auth DAG between the newest seeds and the lowest node of the
    /// difference, plus heapifying `common`, not the room's history.
    pub fn difference(
        &self,
        sets: &[Vec<AuthNode>],
        common: Vec<EventIdx>,
        node_of: impl Fn(EventIdx) -> AuthNode,
        in_common: impl Fn(AuthNode) -> bool,
    ) -> Vec<AuthNode> {
        let k = sets.len();
        if k < 2 {
            return Vec::new();
        }
        let words = k.div_ceil(64);
        let full_word = |w: usize| if w + 1 < words || k % 64 == 0 { u64::MAX } else { (1u64 << (k % 64)) - 1 };
        let mut masks = MaskArena { words, masks: Vec::new(), slot: HashMap::default() };
        let mut heap: BinaryHeap<u32> = BinaryHeap::new();
        for (i, set) in sets.iter().enumerate() {
            for n in set {
                let (slot, new) = masks.slot_of(n.0);
                masks.set_bit(slot, i);
                if new {
                    heap.push(n.0);
                }
            }
        }
        // Queued nodes not yet reached by every set.
        let mut not_full = heap.iter().filter(|n| !masks.is_full(masks.slot[n], &full_word)).count();
        let mut common = BinaryHeap::from(common);
        let mut common_top: Option<u32> = common.peek().map(|e| node_of(*e).0);
        let mut out = Vec::new();
        let full: Vec<u64> = (0..words).map(full_word).collect();
        let mut reached: Vec<u64> = vec![0; words];
        while not_full > 0 {
            let from_heap = heap.peek().copied();
            let x = match (from_heap, common_top) {
                (None, None) => break,
                (Some(h), Some(c)) => h.max(c),
                (Some(h), None) => h,
                (None, Some(c)) => c,
            };
            if from_heap == Some(x) {
                heap.pop();
            }
            let is_common = common_top == Some(x);
            while common_top == Some(x) {
                common.pop();
                common_top = common.peek().map(|e| node_of(*e).0);
            }
            // The sets reaching x.
            let slot = masks.slot.get(&x).copied();
            let is_full = match slot {
                Some(s) => {
                    let full = masks.is_full(s, &full_word);
                    if !full {
                        not_full -= 1;
                    }
                    full || is_common
                }
                None => true, // only reached as a common node
            };
            if is_full {
                reached.copy_from_slice(&full);
            } else {
                let s = slot.expect("not full: reached by some set");
                reached.copy_from_slice(masks.get(s));
                out.push(AuthNode(x));
            }
            for p in self.parents(AuthNode(x)) {
                let (ps, new) = masks.slot_of(p.0);
                let was_full = !new && masks.is_full(ps, &full_word);
                masks.or(ps, &reached);
                if new && !masks.is_full(ps, &full_word) && in_common(*p) {
                    masks.or(ps, &full);
                }
                let now_full = masks.is_full(ps, &full_word);
                if new {
                    heap.push(p.0);
                    if !now_full {
                        not_full += 1;
                    }
                } else if !was_full && now_full {
                    not_full -= 1;
                }
            }
        }
        out.sort_unstable();
        out
    }

    /// (Room v12) The conflicted state subgraph of some nodes: every node
    /// that is an auth ancestor-or-self of one of them and has one of them
    /// as auth ancestor-or-self.
    ///
    /// Such a node is at least the lowest of `nodes` (its own ancestors are
    /// lower), so the walk down from `nodes` stops there; then, lowest
    /// first, a node is in the subgraph when it is one of `nodes` or one of
    /// its auth events is.
    pub fn conflicted_subgraph(&self, nodes: &[AuthNode]) -> Vec<AuthNode> {
        let Some(floor) = nodes.iter().min() else {
            return Vec::new();
        };
        let mut seen: NodeMap<bool> = nodes.iter().map(|n| (n.0, true)).collect();
        let mut stack: Vec<AuthNode> = nodes.to_vec();
        while let Some(x) = stack.pop() {
            for p in self.parents(x) {
                if p >= floor {
                    if let Entry::Vacant(v) = seen.entry(p.0) {
                        v.insert(false);
                        stack.push(*p);
                    }
                }
            }
        }
        let mut walked: Vec<u32> = seen.keys().copied().collect();
        walked.sort_unstable();
        let mut out = Vec::new();
        for x in walked {
            let reaches = seen[&x] || self.parents(AuthNode(x)).iter().any(|p| seen.get(&p.0) == Some(&true));
            if reaches {
                seen.insert(x, true);
                out.push(AuthNode(x));
            }
        }
        out
    }

    /// Bytes held (the three arrays' capacity), for memory accounting.
    pub fn footprint(&self) -> usize {
        4 * (self.events.capacity() + self.parents.capacity() + self.parents_end.capacity())
    }
}

/// Per-node bitmasks of `words` words (which of the sets reach a node).
struct MaskArena {
    words: usize,
    masks: Vec<u64>,
    slot: NodeMap<usize>,
}

/// A map keyed by node numbers (dense integers we assign).
type NodeMap<V> = IntMap<u32, V>;

impl MaskArena {
    /// The slot of a node, and whether it was just made (all zero).
    fn slot_of(&mut self, node: u32) -> (usize, bool) {
        match self.slot.entry(node) {
            Entry::Occupied(o) => (*o.get(), false),
            Entry::Vacant(v) => {
                let s = self.masks.len() / self.words;
                self.masks.resize(self.masks.len() + self.words, 0);
                v.insert(s);
                (s, true)
            }
        }
    }

    fn get(&self, slot: usize) -> &[u64] {
        &self.masks[slot * self.words..(slot + 1) * self.words]
    }

    fn set_bit(&mut self, slot: usize, bit: usize) {
        self.masks[slot * self.words + bit / 64] |= 1 << (bit % 64);
    }

    fn or(&mut self, slot: usize, other: &[u64]) {
        for (m, o) in self.masks[slot * self.words..(slot + 1) * self.words].iter_mut().zip(other) {
            *m |= o;
        }
    }

    fn is_full(&self, slot: usize, full_word: &impl Fn(usize) -> u64) -> bool {
        self.get(slot).iter().enumerate().all(|(w, m)| *m == full_word(w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_are_transitive() {
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
        assert!(c.contains(join) && !c.contains(last));
        assert!(!idx.chain(join).contains(pl));
        // Inclusive: the nodes asked about too; a node below another is in its chain anyway.
        assert_eq!(idx.chains(&[join, pl], false).iter().collect::<Vec<_>>(), [create, join]);
        assert_eq!(idx.chains(&[join, pl], true).iter().collect::<Vec<_>>(), [create, join, pl]);
        assert!(idx.chains(&[], false).is_empty());
        // Counted: 3,000 nodes, their 1 + 2 + 3 × 2,997 auth edges, and 3,000 edge ends, 4 bytes each.
        let edges = 1 + 2 + 3 * 2997;
        assert!(idx.footprint() >= 4 * (3000 + edges + 3000), "{}", idx.footprint());
    }

    /// The auth chain by definition: the recursive list of auth events (one
    /// node at a time, no shared visits).
    fn chain_by_definition(idx: &AuthChainIndex, node: AuthNode) -> Vec<AuthNode> {
        let mut out: Vec<AuthNode> = Vec::new();
        let mut stack: Vec<AuthNode> = idx.parents(node).to_vec();
        while let Some(x) = stack.pop() {
            if !out.contains(&x) {
                out.push(x);
                stack.extend_from_slice(idx.parents(x));
            }
        }
        out.sort();
        out
    }

    /// A small deterministic generator (xorshift64*).
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n.max(1)
        }
    }

    /// Random auth DAGs: a few long "key" chains (each node cites the
    /// previous one of its chain) plus random older nodes, like membership
    /// and power-levels histories.
    fn random_index(rng: &mut Rng, n: usize) -> AuthChainIndex {
        let mut idx = AuthChainIndex::new();
        let chains = 1 + rng.below(12);
        let mut last: Vec<Option<AuthNode>> = vec![None; chains];
        for i in 0..n {
            let mut parents: Vec<AuthNode> = Vec::new();
            if i > 0 {
                parents.push(AuthNode(0));
                let c = rng.below(chains);
                if let Some(l) = last[c] {
                    parents.push(l);
                }
                for _ in 0..rng.below(3) {
                    parents.push(AuthNode(rng.below(i) as u32));
                }
                parents.sort();
                parents.dedup();
                last[c] = Some(AuthNode(i as u32));
            }
            idx.add(EventIdx(i as u32), &parents);
        }
        idx
    }

    fn full_chain(idx: &AuthChainIndex, nodes: &[AuthNode]) -> NodeSet {
        let mut s = NodeSet::with_capacity(idx.len());
        for n in nodes {
            s.insert(*n);
            for a in chain_by_definition(idx, *n) {
                s.insert(a);
            }
        }
        s
    }

    #[test]
    fn difference_walk_equals_the_chain_sets() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for round in 0..300 {
            let n = 2 + rng.below(if round % 10 == 0 { 3000 } else { 200 });
            let idx = random_index(&mut rng, n);
            let k = 2 + rng.below(if round % 7 == 0 { 130 } else { 4 });
            // Seeds mostly among the newest nodes, sometimes anywhere.
            let pick = |rng: &mut Rng| {
                let recent = rng.below(4) != 0;
                AuthNode(if recent { n - 1 - rng.below(n.min(30)) } else { rng.below(n) } as u32)
            };
            let sets: Vec<Vec<AuthNode>> =
                (0..k).map(|_| (0..rng.below(6)).map(|_| pick(&mut rng)).collect()).collect();
            let common: Vec<AuthNode> = (0..rng.below(8)).map(|_| pick(&mut rng)).collect();
            let chains: Vec<NodeSet> =
                sets.iter().map(|s| full_chain(&idx, &s.iter().chain(&common).copied().collect::<Vec<_>>())).collect();
            let mut union = NodeSet::default();
            let mut inter = chains[0].clone();
            for c in &chains {
                union.union_with(c);
                inter.intersect_with(c);
            }
            union.subtract(&inter);
            let want: Vec<AuthNode> = union.iter().collect();
            let stream: Vec<EventIdx> = common.iter().map(|n| EventIdx(n.0)).collect();
            let plain = idx.difference(&sets, stream.clone(), |e| AuthNode(e.0), |_| false);
            assert_eq!(plain, want, "round {round}: {k} sets, {n} nodes");
            let told = idx.difference(&sets, stream, |e| AuthNode(e.0), |n| common.contains(&n));
            assert_eq!(told, want, "round {round}: {k} sets, {n} nodes, common nodes known");
            // The walk's chains equal the chains by definition.
            let seeds: Vec<AuthNode> = sets.concat();
            assert_eq!(idx.chains(&seeds, true), full_chain(&idx, &seeds), "round {round}: chains of {seeds:?}");

            let conflicted: Vec<AuthNode> = (0..rng.below(6)).map(|_| pick(&mut rng)).collect();
            let want: Vec<AuthNode> = full_chain(&idx, &conflicted)
                .iter()
                .filter(|x| conflicted.iter().any(|c| c == x || chain_by_definition(&idx, *x).contains(c)))
                .collect();
            let mut got = idx.conflicted_subgraph(&conflicted);
            got.sort();
            assert_eq!(got, want, "round {round}: subgraph of {conflicted:?}");
        }
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
