//! The event table's full blocks: built (a `StoredEvent` per event), packed
//! ([`packed`](super::packed): about a fifth of that), or both. With a
//! budget, [`Events::trim`] packs full blocks and drops the built ones used
//! longest ago; a block is built again when an event in it is asked for
//! ([`Events::get`]). A packed block keeps its state events built
//! (`Block::resident`): auth checks and state resolution read them all over
//! the room.

use super::{packed, Events, Facts, StoredEvent, EVENTS_CHUNK};
use crate::pages::PageCache;

/// Blocks [`Events::trim`] packs at most a call (16,384 events, a few ms).
pub(super) const PACK_PER_TRIM: usize = 64;
/// Bytes of a built full block.
pub(super) const BLOCK_BYTES: usize = EVENTS_CHUNK * std::mem::size_of::<StoredEvent>();

impl Events {
    pub(super) fn tick(&self) -> u64 {
        let t = self.clock.get() + 1;
        self.clock.set(t);
        t
    }

    /// The events of full block `b`, built from its packed form if needed.
    pub(super) fn block(&self, b: usize) -> &[StoredEvent] {
        let blk = &self.blocks[b];
        blk.used.set(self.tick());
        blk.built.get_or_init(|| {
            self.built.set(self.built.get() + 1);
            self.unpack(b, blk).into_boxed_slice()
        })
    }

    /// The events of full block `b` (`blk`), read from its packed form.
    pub(super) fn unpack(&self, b: usize, blk: &Block) -> Vec<StoredEvent> {
        let p = blk.packed.as_ref().expect("a block not built is packed");
        packed::unpack(p, (b * EVENTS_CHUNK) as u32, EVENTS_CHUNK, &self.names)
    }

    /// An empty table that a read-back fills in order
    /// ([`push_read`](Self::push_read)): each full block is packed as it
    /// fills, so a table read back is never held built whole.
    pub(super) fn for_read(pdus: PageCache) -> Self {
        Self { pdus: Some(pdus), ..Self::default() }
    }

    /// Appends an event read back (its content facts follow, by
    /// [`set_read_facts`](Self::set_read_facts)), with the numbers its
    /// names (sender, type, state key) have in the table's name table; a
    /// full block is packed. An event that is packed and not a state event
    /// is never read as it is pushed: its name fields may be placeholders.
    pub(super) fn push_read(&mut self, e: StoredEvent, numbers: [u32; 3]) {
        debug_assert_eq!(e.idx.ix(), self.len);
        self.tail.push(e);
        self.read_numbers.push(numbers);
        self.len += 1;
        if self.tail.len() == EVENTS_CHUNK {
            let numbers = &self.read_numbers;
            let p = packed::pack_numbered(&self.tail, |i, _| numbers[i]);
            let resident = keep_resident(&self.tail);
            self.tail.clear();
            self.read_numbers.clear();
            self.blocks.push(Block::packed(p, resident));
            self.packed_to = self.blocks.len();
        }
    }

    /// Gives events read back their content facts: `facts` by event index,
    /// increasing. A packed block gets its facts in place of none, and its
    /// state events kept built theirs too.
    pub(super) fn set_read_facts(&mut self, facts: Vec<(u32, Facts)>) {
        let mut facts = facts.into_iter().peekable();
        for (b, blk) in self.blocks.iter_mut().enumerate() {
            let end = ((b + 1) * EVENTS_CHUNK) as u32;
            let mut at = Vec::new();
            let mut of_block = Vec::new();
            while let Some((i, f)) = facts.next_if(|(i, _)| *i < end) {
                if let Ok(k) = blk.resident.binary_search_by_key(&i, |e| e.idx.0) {
                    blk.resident[k].facts = f.clone();
                }
                at.push((i as usize % EVENTS_CHUNK) as u8);
                of_block.push(f);
            }
            if !at.is_empty() {
                blk.packed.as_mut().expect("a block read back is packed").set_facts(at, of_block);
            }
        }
        let first = self.blocks.len() * EVENTS_CHUNK;
        for (i, f) in facts {
            self.tail[i as usize - first].facts = f;
        }
    }

    /// Keeps the table's full blocks packed, and about `bytes` of them
    /// built, from the next [`trim`](Self::trim) on (`None`: all built,
    /// none packed, as by default).
    pub fn set_budget(&mut self, bytes: Option<usize>) {
        self.budget = bytes;
    }

    /// With a budget: packs the full blocks not packed yet, then drops the
    /// built blocks used longest ago until those left fit in the budget (a
    /// quarter under it, so that trims are rare). At most `PACK_PER_TRIM`
    /// blocks are packed a call: a table read back whole (an image) is
    /// packed over the next calls, not all before the first answer. A block
    /// packed here that is not among the newest the budget holds is dropped
    /// at once, so that packing never holds the table twice.
    ///
    /// With a page store, first writes the rows of the full blocks' IDs
    /// ([`settle_ids`](Self::settle_ids)); only settled blocks are packed.
    pub fn trim(&mut self) {
        // A row not written is tried again at the next trim (its IDs are
        // kept meanwhile), and an image refuses to be written without it.
        let _ = self.settle_ids();
        let Some(budget) = self.budget else { return };
        let keep = budget * 3 / 4 / BLOCK_BYTES;
        let packable = if self.pdus.is_some() { self.settled_to } else { self.blocks.len() };
        let packed_to = (self.packed_to + PACK_PER_TRIM).min(packable).max(self.packed_to);
        for b in self.packed_to..packed_to {
            let events = self.blocks[b].built.get().expect("a block not packed is built");
            let p = packed::pack(events, &mut self.names);
            self.blocks[b].resident = keep_resident(events);
            self.blocks[b].packed = Some(p);
            if b + keep < self.blocks.len() {
                self.blocks[b].built.take();
                self.built.set(self.built.get() - 1);
            }
        }
        self.packed_to = packed_to;
        if self.built.get() * BLOCK_BYTES <= budget {
            return;
        }
        let mut built: Vec<(u64, usize)> = self
            .blocks
            .iter()
            .enumerate()
            .filter(|(_, blk)| blk.built.get().is_some() && blk.packed.is_some())
            .map(|(b, blk)| (blk.used.get(), b))
            .collect();
        built.sort_unstable();
        let drop = built.len().saturating_sub(keep);
        for &(_, b) in &built[..drop] {
            self.blocks[b].built.take();
        }
        self.built.set(self.built.get() - drop);
    }

    /// Bytes of the event table held: built blocks and the tail, packed
    /// ones and the state events kept built.
    pub fn table_bytes(&self) -> usize {
        let packed: usize = self.blocks.iter().filter_map(|b| b.packed.as_ref()).map(packed::Packed::size).sum();
        let resident: usize = self.blocks.iter().map(|b| b.resident.len()).sum();
        let unpacked = (resident + self.tail.capacity()) * std::mem::size_of::<StoredEvent>();
        self.built.get() * BLOCK_BYTES + unpacked + packed
    }
}

/// The built blocks of the event table a room keeps for a cache of
/// `cache_bytes` (its page cache's): a quarter of it. Ingest reads the
/// newest blocks and those of the auth events it checks against; queries
/// read what they walk and are trimmed after.
pub fn table_budget(cache_bytes: usize) -> usize {
    cache_bytes / 4
}

/// A full block of the event table: built, packed, or both.
#[derive(Debug)]
pub(super) struct Block {
    pub(super) packed: Option<packed::Packed>,
    pub(super) built: std::cell::OnceCell<Box<[StoredEvent]>>,
    pub(super) used: std::cell::Cell<u64>,
    /// Its state events, kept built once it is packed (in index order):
    /// auth checks and state resolution read them all over the room, and a
    /// block need not be built for one of them. A slice a block, not one
    /// vector for the room: growing that one (12 MB at Matrix HQ's size)
    /// held it twice while it was copied.
    pub(super) resident: Box<[StoredEvent]>,
}

impl Block {
    /// A block just filled: built, not packed yet.
    pub(super) fn built(events: Vec<StoredEvent>, used: u64) -> Self {
        Self {
            packed: None,
            built: std::cell::OnceCell::from(events.into_boxed_slice()),
            used: used.into(),
            resident: Box::default(),
        }
    }

    /// A block read back: packed, not built.
    pub(super) fn packed(packed: packed::Packed, resident: Box<[StoredEvent]>) -> Self {
        Self { packed: Some(packed), built: std::cell::OnceCell::new(), used: 0.into(), resident }
    }
}

/// A built copy of a full block's state events.
pub(super) fn keep_resident(events: &[StoredEvent]) -> Box<[StoredEvent]> {
    events.iter().filter(|e| e.key.is_some()).cloned().collect()
}
