//! The event table's full blocks: built (a `StoredEvent` per event), packed
//! ([`packed`](super::packed): about a tenth of that), or both. With a
//! budget, [`Events::trim`] packs full blocks and drops the built ones used
//! longest ago; a block is built again when an event in it is asked for
//! ([`Events::get`]).
//!
//! A packed block's state events (`Block::states`: where each is in the
//! block, its ID and its auth-chain node) are built one by one, apart from
//! their block (`StateRef::built`): auth checks and state resolution read
//! state events all over the room (a message's auth check reads its
//! sender's membership), so a block is not built for one of them. They are
//! a cache too, bounded by [`resident_budget`] (dropped by the clock
//! algorithm: one not read since the last sweep goes); `/state_ids` and
//! auth-chain walks read only their IDs and auth nodes, and build none.
//!
//! With a page store a packed block is then paged (`Events::page_blocks`):
//! its packing becomes a row of [`Table::Blocks`], read back through the
//! page cache (checked against its key, a hash of it) when one of its
//! messages is asked for, and it keeps its state events packed alone, so
//! that a state event is still built without the store.

use std::cell::{Cell, OnceCell};

use super::{id_rows, packed, Events, Facts, StoredEvent, TextRef, EVENTS_CHUNK};
use crate::ids::EventIdx;
use crate::pages::{PageCache, PageError, Table};

/// Events of a full block of the event table.
pub const BLOCK_EVENTS: usize = EVENTS_CHUNK;

/// Blocks [`Events::trim`] packs at most a call (16,384 events, a few ms).
pub(super) const PACK_PER_TRIM: usize = 64;
/// Bytes of a built full block (its links counted as two an event).
pub(super) const BLOCK_BYTES: usize =
    EVENTS_CHUNK * (std::mem::size_of::<StoredEvent>() + 2 * std::mem::size_of::<EventIdx>());

impl Events {
    pub(super) fn tick(&self) -> u64 {
        let t = self.clock.get() + 1;
        self.clock.set(t);
        t
    }

    /// The events of full block `b`, built again if it is packed (its row
    /// read back if it is paged).
    ///
    /// # Errors
    /// The page store failed to read its row back, or it is corrupt.
    pub fn block_events(&self, b: usize) -> Result<&[StoredEvent], PageError> {
        Ok(&self.built_block(b)?.events)
    }

    /// Full block `b` built (its events and their links), from its packed
    /// form if needed.
    ///
    /// # Errors
    /// The page store failed to read the block's row back, or it is
    /// corrupt.
    pub(super) fn built_block(&self, b: usize) -> Result<&Built, PageError> {
        let blk = &self.blocks[b];
        blk.used.set(self.tick());
        if let Some(built) = blk.built.get() {
            return Ok(built);
        }
        let built = self.unpack(b, blk)?;
        self.built.set(self.built.get() + 1);
        Ok(blk.built.get_or_init(|| built))
    }

    /// The events of full block `b` (`blk`) and their links, read from its
    /// packed form.
    ///
    /// # Errors
    /// As [`built_block`](Self::built_block).
    pub(super) fn unpack(&self, b: usize, blk: &Block) -> Result<Built, PageError> {
        let p = blk.packed.as_ref().expect("a block not built is packed");
        let first = (b * EVENTS_CHUNK) as u32;
        let (events, links) = match p.bytes() {
            Some(_) => packed::unpack(p, first, EVENTS_CHUNK, &self.names),
            None => packed::unpack_bytes(&self.block_row(b, blk)?, p, first, EVENTS_CHUNK, &self.names),
        };
        Ok(Built { events: events.into_boxed_slice(), links: links.into_boxed_slice() })
    }

    /// The packing of paged block `b` (`blk`), read back through the page
    /// cache and checked against its key.
    fn block_row(&self, b: usize, blk: &Block) -> Result<std::sync::Arc<[u8]>, PageError> {
        let key = blk.row.expect("a paged block has a row");
        let pages = self.pdus.as_ref().expect("blocks are paged with a page store");
        pages.get_bytes(Table::Blocks, b as u32, || id_rows::key_text(&key), |row| id_rows::key(row) == key)
    }

    /// With a page store: writes the packing of each packed block (at most
    /// `PACK_PER_TRIM` a call) as a row of [`Table::Blocks`], and keeps of
    /// it only its state events, packed alone (read all over the room by
    /// the auth checks and state resolution, so never read from a row).
    /// A row not written is tried again at the next call.
    fn page_blocks(&mut self) {
        let Some(pages) = self.pdus.as_mut() else { return };
        let upto = (self.paged_to + PACK_PER_TRIM).min(self.packed_to);
        while self.paged_to < upto {
            let b = self.paged_to;
            let blk = &mut self.blocks[b];
            let p = blk.packed.as_mut().expect("a block before packed_to is packed");
            let bytes = p.bytes().expect("a block is paged once");
            let key = id_rows::key(bytes);
            if pages.put_row(Table::Blocks, &id_rows::key_text(&key), bytes).is_err() {
                return;
            }
            let unpacked;
            let (events, links) = match blk.built.get() {
                Some(built) => (&built.events[..], &built.links[..]),
                None => {
                    unpacked = packed::unpack(p, (b * EVENTS_CHUNK) as u32, EVENTS_CHUNK, &self.names);
                    (&unpacked.0[..], &unpacked.1[..])
                }
            };
            let names = &self.names;
            let known = |n: &crate::ids::Name| names.known(n).expect("a packed block's names are numbered");
            let states = pack_states(events, links, |_, e| {
                [known(&e.sender), known(&e.event_type), e.state_key.as_ref().map_or(0, known)]
            });
            p.page(states);
            blk.row = Some(key);
            self.paged_to += 1;
        }
    }

    /// The `k`th state event of packed block `b`, built alone from its
    /// packed form (the block's, or its state events' alone once the block
    /// is paged) if needed.
    pub(super) fn resident(&self, b: usize, k: usize) -> &StoredEvent {
        let blk = &self.blocks[b];
        let s = &blk.states[k];
        s.read.set(true);
        s.built.get_or_init(|| {
            self.residents.set(self.residents.get() + 1);
            let p = blk.packed.as_ref().expect("a block not built is packed");
            let first = (b * EVENTS_CHUNK) as u32;
            let at = usize::from(s.at);
            Box::new(match p.is_paged() {
                false => packed::unpack_one(p, first, at, &self.names),
                true => packed::unpack_nth(p, |j| first + u32::from(blk.states[j].at), k, at, &self.names),
            })
        })
    }

    /// An empty table that a read-back fills in order
    /// ([`push_read`](Self::push_read)): each full block is packed as it
    /// fills, so a table read back is never held built whole.
    pub(super) fn for_read(pdus: PageCache) -> Self {
        Self { pdus: Some(pdus), ..Self::default() }
    }

    /// Appends an event read back (its content facts follow, by
    /// [`set_read_facts`](Self::set_read_facts)), with its links (its prev
    /// events, then where its auth list is) and the numbers its names
    /// (sender, type, state key) have in the table's name table; a full
    /// block is packed. An event that is packed and not a state event is
    /// never read as it is pushed: its name fields may be placeholders.
    pub(super) fn push_read(&mut self, mut e: StoredEvent, links: &[EventIdx], numbers: [u32; 3]) {
        debug_assert_eq!(e.idx.ix(), self.len);
        debug_assert_eq!(links.len(), e.links_len() as usize);
        e.links_at = u32::try_from(self.tail_links.len()).expect("a block's links are fewer than 2^32");
        self.tail_links.extend_from_slice(links);
        self.tail.push(e);
        self.read_numbers.push(numbers);
        self.len += 1;
        if self.tail.len() == EVENTS_CHUNK {
            let numbers = &self.read_numbers;
            let p = packed::pack_numbered(&self.tail, &self.tail_links, |i, _| numbers[i]);
            let (states, state_links) = state_refs(&self.tail, &self.tail_links);
            let range = ts_range(&self.tail);
            self.tail.clear();
            self.tail_links.clear();
            self.read_numbers.clear();
            self.blocks.push(Block::packed(p, states, state_links, None, range));
            self.packed_to = self.blocks.len();
        }
    }

    /// Appends a full block read back whose packing is row `key` of the
    /// page store (after any other such block: they are the table's first
    /// ones), from its state events alone (`states`: each with its links
    /// and the table's numbers of its names, in order).
    pub(super) fn push_paged(
        &mut self,
        key: [u8; 16],
        states: &[(StoredEvent, Vec<EventIdx>, [u32; 3])],
        ts_range: Option<(i64, i64)>,
    ) {
        debug_assert!(self.tail.is_empty() && self.paged_to == self.blocks.len());
        let mut events = Vec::with_capacity(states.len());
        let mut links = Vec::new();
        for (e, own, _) in states {
            let links_at = u32::try_from(links.len()).expect("a block's links are fewer than 2^32");
            links.extend_from_slice(own);
            events.push(StoredEvent { links_at, ..e.clone() });
        }
        let number = |e: &StoredEvent| {
            let k = states.binary_search_by_key(&e.idx, |(s, _, _)| s.idx).expect("one of the block's state events");
            states[k].2
        };
        let p = packed::Packed::paged(pack_states(&events, &links, |_, e| number(e)));
        let (refs, state_links) = state_refs(&events, &links);
        self.blocks.push(Block::packed(p, refs, state_links, Some(key), ts_range));
        self.len += EVENTS_CHUNK;
        self.packed_to = self.blocks.len();
        self.paged_to = self.blocks.len();
    }

    /// Gives events read back their content facts: `facts` by event index,
    /// increasing. A packed block gets its facts in place of none (its
    /// state events built before are dropped, to be built again with them).
    pub(super) fn set_read_facts(&mut self, facts: Vec<(u32, Facts)>) {
        let mut facts = facts.into_iter().peekable();
        for (b, blk) in self.blocks.iter_mut().enumerate() {
            let end = ((b + 1) * EVENTS_CHUNK) as u32;
            let mut at = Vec::new();
            let mut of_block = Vec::new();
            let dropped = blk.states.iter_mut().filter_map(|s| s.built.take()).count();
            self.residents.set(self.residents.get() - dropped);
            while let Some((i, f)) = facts.next_if(|(i, _)| *i < end) {
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
    /// built (and as many bytes of their state events built apart:
    /// [`resident_budget`]), from the next [`trim`](Self::trim) on (`None`:
    /// all built, none packed, as by default).
    pub fn set_budget(&mut self, bytes: Option<usize>) {
        self.budget = bytes;
    }

    /// With a budget: packs the full blocks not packed yet, then drops the
    /// built blocks used longest ago until those left fit in the budget (a
    /// quarter under it, so that trims are rare), and the state events
    /// built apart likewise ([`resident_budget`]). At most `PACK_PER_TRIM`
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
            let blk = &mut self.blocks[b];
            let built = blk.built.get().expect("a block not packed is built");
            let p = packed::pack(&built.events, &built.links, &mut self.names);
            (blk.states, blk.state_links) = state_refs(&built.events, &built.links);
            blk.packed = Some(p);
            if b + keep < self.blocks.len() {
                self.blocks[b].built.take();
                self.built.set(self.built.get() - 1);
            }
        }
        self.packed_to = packed_to;
        self.page_blocks();
        self.trim_residents(resident_budget(budget));
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

    /// Full blocks of the table ([`BLOCK_EVENTS`] events each; the open
    /// block follows them).
    pub fn full_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// The events of the open block (after the full blocks).
    pub fn open_block(&self) -> &[StoredEvent] {
        &self.tail
    }

    /// The least and greatest `origin_server_ts` of full block `b`'s
    /// accepted timeline events (none if it has none), held for every
    /// block.
    pub fn block_ts_range(&self, b: usize) -> Option<(i64, i64)> {
        self.blocks[b].ts_range
    }

    /// Drops the table part by part (see `Room::drop_by_parts`).
    pub(crate) fn drop_by_parts(mut self, dropped: &mut dyn FnMut(&'static str)) {
        self.blocks.iter_mut().for_each(|blk| drop(blk.built.take()));
        dropped("event table: built blocks (a cache)");
        self.blocks.iter_mut().flat_map(|blk| blk.states.iter_mut()).for_each(|s| drop(s.built.take()));
        dropped("event table: state events built alone (a cache)");
        drop((std::mem::take(&mut self.tail), std::mem::take(&mut self.tail_links)));
        dropped("event table: the open block");
        self.blocks.iter_mut().for_each(|blk| drop(blk.packed.take()));
        dropped("event table: packed blocks (a paged one: its state events alone), and their facts");
        for blk in &mut self.blocks {
            drop((std::mem::take(&mut blk.states), std::mem::take(&mut blk.state_links)));
        }
        dropped("event table: packed blocks' state events' places, IDs' places, auth nodes, links");
        drop(std::mem::take(&mut self.blocks));
        dropped("event table: the blocks (row keys, timestamps)");
        drop((std::mem::take(&mut self.text), std::mem::take(&mut self.recent)));
        dropped("event IDs held (state events', and those of blocks not settled)");
        drop(std::mem::take(&mut self.row_keys));
        dropped("row keys of the blocks' IDs");
        drop((std::mem::take(&mut self.auth_lists), std::mem::take(&mut self.auth_cache)));
        dropped("auth lists (shared) and their cache");
        drop(std::mem::take(&mut self.groups));
        dropped("PDUs held, compressed (without a page store)");
        drop(self.pdus.take());
        dropped("the page cache (PDUs, rows of IDs and of blocks read back)");
        drop(std::mem::take(&mut self.names));
        dropped("event table: the packed blocks' name table");
    }

    /// Every name an event of the table has (some more than once): the
    /// packed blocks' name table (every name of a packed event is in it),
    /// then the names of the events of blocks not packed yet and of the
    /// open block. Reads no row.
    pub(crate) fn event_names(&self) -> impl Iterator<Item = &crate::ids::Name> + '_ {
        let unpacked = self.blocks[self.packed_to..]
            .iter()
            .flat_map(|blk| blk.built.get().map_or(&[][..], |b| &b.events[..]))
            .chain(self.tail.iter());
        let of_event = unpacked.flat_map(|e| [Some(&e.sender), Some(&e.event_type), e.state_key.as_ref()]);
        self.names.names().iter().chain(of_event.flatten())
    }

    /// Drops state events built apart (`StateRef::built`) once they hold
    /// more than `budget` bytes, until they hold a quarter less: the clock
    /// algorithm, its hand going round the blocks from where it stopped
    /// last; a state event read since the hand last passed it is kept (and
    /// marked unread), one not read is dropped. Two rounds at most (after
    /// one, none is marked read).
    fn trim_residents(&mut self, budget: usize) {
        if self.residents.get() * RESIDENT_BYTES <= budget || self.blocks.is_empty() {
            return;
        }
        let keep = budget * 3 / 4 / RESIDENT_BYTES;
        let mut left = self.residents.get();
        let n = self.blocks.len();
        for step in 0..2 * n {
            if left <= keep {
                break;
            }
            let b = (self.resident_hand + step) % n;
            for s in self.blocks[b].states.iter_mut().filter(|s| s.built.get().is_some()) {
                if left > keep && !s.read.replace(false) {
                    s.built.take();
                    left -= 1;
                }
            }
            self.resident_hand = (b + 1) % n;
        }
        self.residents.set(left);
    }

    /// Bytes of the event table held: built blocks (their links counted
    /// as two an event) and the tail, packed ones, the state events built
    /// apart, and where packed blocks' state events are and their links.
    pub fn table_bytes(&self) -> usize {
        let packed: usize = self.blocks.iter().filter_map(|b| b.packed.as_ref()).map(packed::Packed::size).sum();
        let states: usize = self
            .blocks
            .iter()
            .map(|b| {
                std::mem::size_of_val::<[StateRef]>(&b.states) + std::mem::size_of_val::<[EventIdx]>(&b.state_links)
            })
            .sum();
        let tail = self.tail.capacity() * std::mem::size_of::<StoredEvent>()
            + self.tail_links.capacity() * std::mem::size_of::<EventIdx>();
        self.built.get() * BLOCK_BYTES + self.residents.get() * RESIDENT_BYTES + tail + packed + states
    }

    /// Event `i` when it is a state event of a packed block that is not
    /// built: where its ID is and its auth node (read without building it).
    fn packed_state(&self, i: usize) -> Option<&StateRef> {
        let blk = self.blocks.get(i / EVENTS_CHUNK).filter(|blk| blk.built.get().is_none())?;
        blk.states.get(blk.state_place(i % EVENTS_CHUNK)?)
    }

    /// The ID of event `i` when it is a state event of a packed block that
    /// is not built.
    pub(super) fn packed_state_id(&self, i: usize) -> Option<&str> {
        let s = self.packed_state(i)?;
        let text = self.text.get(s.text_block as usize)?;
        text.get(s.offset as usize..s.offset as usize + usize::from(s.id_len))
    }

    /// Whether event `i` is a state event (one with an interned `(type,
    /// state_key)`: those whose IDs the room holds), read without building
    /// it (a packed block keeps where its state events are).
    ///
    /// # Panics
    /// If `i` is past the table.
    pub fn is_state_at(&self, i: usize) -> bool {
        let at = i % EVENTS_CHUNK;
        match self.blocks.get(i / EVENTS_CHUNK) {
            None => self.tail[at].key.is_some(),
            Some(blk) if blk.packed.is_some() => blk.state_place(at).is_some(),
            Some(blk) => blk.built.get().expect("a block not packed is built").events[at].key.is_some(),
        }
    }

    /// The auth-chain node of event `i` ([`StoredEvent::auth_node`]), read
    /// without building it when its block is packed (only state events
    /// have one).
    ///
    /// # Panics
    /// If `i` is past the table.
    pub fn auth_node_of(&self, i: usize) -> Option<u32> {
        let at = i % EVENTS_CHUNK;
        match self.blocks.get(i / EVENTS_CHUNK) {
            None => self.tail[at].auth_node(),
            Some(blk) => match blk.built.get() {
                Some(built) => built.events[at].auth_node(),
                None => blk.state_place(at).and_then(|k| blk.states[k].auth_node_plus_one).map(|n| n.get() - 1),
            },
        }
    }
}

/// The bytes of state events a room keeps built apart from their blocks
/// for a table budget of `table_bytes` ([`table_budget`]): as many.
/// Ingest reads its senders' memberships (a few active senders send most
/// messages) and the state it resolves against; a query is trimmed after.
pub fn resident_budget(table_bytes: usize) -> usize {
    table_bytes
}

/// Bytes of a state event built apart (its box, with the allocator's
/// header).
const RESIDENT_BYTES: usize = std::mem::size_of::<StoredEvent>() + 16;

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
    pub(super) built: std::cell::OnceCell<Built>,
    pub(super) used: std::cell::Cell<u64>,
    /// Once packed: its state events (in index order): where each is in
    /// the block, its ID and auth node, and the event while built alone.
    /// (They were all kept built for the room's life before: 12 MB at
    /// Matrix HQ's size.)
    pub(super) states: Box<[StateRef]>,
    /// Once packed: the links of its state events, one after the other
    /// (`StateRef::n_links` each).
    pub(super) state_links: Box<[EventIdx]>,
    /// Once paged: the key of its packing's row in [`Table::Blocks`] (the
    /// packing holds its state events alone then).
    pub(super) row: Option<[u8; 16]>,
    /// The least and greatest `origin_server_ts` of its accepted timeline
    /// events, if it has any (`/timestamp_to_event` reads only the blocks
    /// that may hold its answer).
    pub(super) ts_range: Option<(i64, i64)>,
}

/// The least and greatest `origin_server_ts` of `events` that are accepted
/// timeline events (not outliers), if any.
pub(super) fn ts_range<'a>(events: impl IntoIterator<Item = &'a StoredEvent>) -> Option<(i64, i64)> {
    events.into_iter().filter(|e| e.is_accepted() && !e.outlier).fold(None, |r, e| {
        let t = e.origin_server_ts;
        Some(r.map_or((t, t), |(lo, hi): (i64, i64)| (lo.min(t), hi.max(t))))
    })
}

/// A full block's events built, and their links (an event's `links_at` is
/// where its links start here).
#[derive(Debug)]
pub(super) struct Built {
    pub(super) events: Box<[StoredEvent]>,
    pub(super) links: Box<[EventIdx]>,
}

/// A packed block's state event: its place in the block, where its ID is in
/// the text arena and its auth-chain node (what `/state_ids` and state
/// resolution's auth-chain walks read of every state event they meet), and
/// the event while it is built (24 bytes, and 128 while built).
#[derive(Debug)]
pub(super) struct StateRef {
    text_block: u32,
    offset: u32,
    auth_node_plus_one: Option<std::num::NonZeroU32>,
    pub(super) at: u8,
    id_len: u8,
    /// Its links in the block's `state_links`.
    n_links: u8,
    /// Read since the clock's hand last passed it ([`Events::trim`]).
    read: Cell<bool>,
    built: OnceCell<Box<StoredEvent>>,
}

impl Block {
    /// A block just filled: built, not packed yet.
    pub(super) fn built(events: Vec<StoredEvent>, links: Vec<EventIdx>, used: u64) -> Self {
        let ts_range = ts_range(&events);
        let built = Built { events: events.into_boxed_slice(), links: links.into_boxed_slice() };
        Self {
            ts_range,
            packed: None,
            built: OnceCell::from(built),
            used: used.into(),
            states: Box::default(),
            state_links: Box::default(),
            row: None,
        }
    }

    /// Where its event at `at` (in the block) is among its state events
    /// (`states`), if it is one of them.
    pub(super) fn state_place(&self, at: usize) -> Option<usize> {
        self.states.binary_search_by_key(&at, |s| usize::from(s.at)).ok()
    }

    /// The links of its state event at `at` (in the block), once packed.
    ///
    /// # Panics
    /// If the block is not packed, or that event is not a state event.
    pub(super) fn state_links(&self, at: usize) -> &[EventIdx] {
        let k = self.state_place(at).expect("a packed block's state event");
        let start: usize = self.states[..k].iter().map(|s| usize::from(s.n_links)).sum();
        &self.state_links[start..start + usize::from(self.states[k].n_links)]
    }

    /// Its state events built apart now.
    pub(super) fn states_built(&self) -> usize {
        self.states.iter().filter(|s| s.built.get().is_some()).count()
    }

    /// A block read back: packed (and paged, with `row`), not built.
    pub(super) fn packed(
        packed: packed::Packed,
        states: Box<[StateRef]>,
        state_links: Box<[EventIdx]>,
        row: Option<[u8; 16]>,
        ts_range: Option<(i64, i64)>,
    ) -> Self {
        Self { packed: Some(packed), built: OnceCell::new(), used: 0.into(), states, state_links, row, ts_range }
    }
}

/// Where a full block's state events are, their IDs, and their links
/// (`events`: the block's, or its state events alone; `links`: theirs).
fn state_refs(events: &[StoredEvent], links: &[EventIdx]) -> (Box<[StateRef]>, Box<[EventIdx]>) {
    let mut state_links = Vec::new();
    let states = events
        .iter()
        .filter(|e| e.key.is_some())
        .map(|e| {
            let at = e.idx.ix() % EVENTS_CHUNK;
            let TextRef { block, offset, .. } = e.text;
            let own = e.links_in(links);
            state_links.extend_from_slice(own);
            StateRef {
                text_block: block,
                offset,
                auth_node_plus_one: e.auth_node_plus_one,
                at: at as u8,
                id_len: e.id_len,
                n_links: u8::try_from(own.len()).expect("at most 255 prev events and an auth list"),
                read: Cell::new(false),
                built: OnceCell::new(),
            }
        })
        .collect();
    (states, state_links.into_boxed_slice())
}

/// The packing of a full block's state events alone (`links`: the block's),
/// their names as `numbers` gives them: each event packed with its own
/// index (so its prev events read back), its links one after the other as
/// the block's `state_links` hold them.
pub(super) fn pack_states(
    events: &[StoredEvent],
    links: &[EventIdx],
    mut numbers: impl FnMut(usize, &StoredEvent) -> [u32; 3],
) -> Box<[u8]> {
    let mut alone = Vec::new();
    let mut alone_links = Vec::new();
    for e in events.iter().filter(|e| e.key.is_some()) {
        let links_at = u32::try_from(alone_links.len()).expect("a block's links are fewer than 2^32");
        alone_links.extend_from_slice(e.links_in(links));
        alone.push(StoredEvent { links_at, ..e.clone() });
    }
    packed::pack_numbered(&alone, &alone_links, |_, e| numbers(e.idx.ix() % EVENTS_CHUNK, e)).into_bytes()
}
