//! Stored events: the original bytes plus a compact parsed view.
//!
//! A [`StoredEvent`] keeps the PDU exactly as it arrived (`raw`) and only the
//! fields the engine needs to answer questions without reparsing: interned
//! strings, interned references to other events ([`EventIdx`]), and the few
//! content facts that auth rules, state resolution, visibility and redaction
//! read ([`Facts`]).

use crate::ids::{EventIdx, Name};
use crate::pages::{PageCache, PageError, RestoreRows, Table};
use crate::state_set::StateSetId;

mod blocks;
mod facts;
mod id_rows;
mod image;
mod links;
mod packed;
mod pdu_groups;
mod text;

pub use blocks::{table_budget, BLOCK_EVENTS};
pub use facts::{CreateFacts, Facts, JoinRule, MemberFacts, Membership};
pub(crate) use id_rows::{key as row_key, key_text as row_key_text};
pub(crate) use image::RefBounds;
pub use text::{IdText, PduText};

use blocks::Block;

/// A block's events in a walk ([`Events::walk_blocks`]): borrowed if built.
type BlockEvents<'a> = std::borrow::Cow<'a, [StoredEvent]>;
/// A block's links in a walk: each event's from its `links_at` on.
type BlockLinks<'a> = std::borrow::Cow<'a, [EventIdx]>;

/// An interned `(type, state_key)` pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StateKeyIdx(pub u32);

/// What happened to a stored event on receipt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventStatus {
    /// Passed every check; may become state and a forward extremity.
    Accepted,
    /// Failed the auth rules; stored, but never state nor an extremity.
    Rejected,
}

/// One stored event.
///
/// Kept small (the room holds one per event): the event ID and the PDU text
/// live in the arenas of [`Events`] (one large allocation per megabyte of
/// events instead of several per event), the prev/auth references with its
/// block of the table (module `links`: `links_at` is where they start), and
/// rarely needed fields (rejection reasons) in side tables of the room. Read
/// them through [`Events::id`], [`Events::raw`], [`Events::prev_events`] and
/// [`Events::auth_events`].
#[derive(Clone, Debug)]
pub struct StoredEvent {
    /// Its position in the room (arrival order).
    pub idx: EventIdx,
    text: TextRef,
    links_at: u32,
    id_len: u8,
    /// Linked prev events (those stored in the room's DAG when it arrived).
    n_prev: u8,
    n_auth: u8,
    /// `prev_events` in the PDU (some may not be stored: see [`Self::outlier`]).
    pdu_prev_count: u8,
    /// Known only as state or auth chain (or waiting for its prev events to
    /// be placed): not in the DAG, no state, never a forward extremity.
    pub outlier: bool,
    /// Soft failed on receipt: in the DAG, never a forward extremity.
    pub soft_failed: bool,
    /// Accepted or rejected.
    pub status: EventStatus,
    /// The content hash failed: stored and served in redacted form.
    pub redacted_on_receipt: bool,
    /// A redaction whose sender lacked the `redact` level in some auth check
    /// (v3+ "handling redactions": it applies only to same-server targets).
    pub recheck_redaction: bool,
    /// The first prev event, when stored (the creator's first join is
    /// recognised by it): its index, or `u32::MAX` (read it with
    /// [`first_prev`](Self::first_prev); 4 bytes instead of 8).
    first_prev_ix: u32,
    /// `sender` (interned).
    pub sender: Name,
    /// `type` (interned).
    pub event_type: Name,
    /// `state_key` (interned), for state events.
    pub state_key: Option<Name>,
    /// The interned `(type, state_key)`, for state events.
    pub key: Option<StateKeyIdx>,
    /// `depth`.
    pub depth: i64,
    /// `origin_server_ts`.
    pub origin_server_ts: i64,
    /// Content facts.
    pub facts: Facts,
    /// The state before the event.
    pub state_before: StateSetId,
    /// The state after the event.
    pub state_after: StateSetId,
    /// Position + 1 in the auth-chain index (accepted state events only;
    /// read it with [`auth_node`](Self::auth_node)).
    pub(super) auth_node_plus_one: Option<std::num::NonZeroU32>,
}

/// Where an event's ID lives in the text arena; with a page
/// store, where its ID lives (the arena, `Events::recent`, or its block's
/// row: [`id_rows`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TextRef {
    block: u32,
    offset: u32,
    len: u32,
}

impl TextRef {
    /// An ID in its block's row ([`id_rows`]).
    const PAGED: TextRef = TextRef { block: id_rows::PAGED, offset: 0, len: 0 };
}

/// The fields of a new [`StoredEvent`].
pub struct NewEvent<'a> {
    /// The event ID.
    pub id: &'a str,
    /// The PDU as received.
    pub raw: &'a str,
    /// `prev_events` linked in the DAG (stored and placed).
    pub prev_events: &'a [EventIdx],
    /// Number of `prev_events` in the PDU.
    pub pdu_prev_count: usize,
    /// The PDU's first prev event, if stored (placed or not).
    pub first_prev: Option<EventIdx>,
    /// Stored as an outlier.
    pub outlier: bool,
    /// Resolved auth events.
    pub auth_events: &'a [EventIdx],
    /// Interned sender.
    pub sender: Name,
    /// Interned type.
    pub event_type: Name,
    /// Interned state key.
    pub state_key: Option<Name>,
    /// Interned `(type, state_key)`.
    pub key: Option<StateKeyIdx>,
    /// `depth`.
    pub depth: i64,
    /// `origin_server_ts`.
    pub origin_server_ts: i64,
    /// Content facts.
    pub facts: Facts,
    /// The state before it.
    pub state_before: StateSetId,
    /// The content hash failed.
    pub redacted_on_receipt: bool,
}

#[cfg(test)]
impl<'a> NewEvent<'a> {
    /// A message from `@a:x` with these links, `{}` as its PDU (tests).
    pub(crate) fn message(id: &'a str, prev: &'a [EventIdx], auth: &'a [EventIdx]) -> Self {
        NewEvent {
            id,
            raw: "{}",
            prev_events: prev,
            pdu_prev_count: prev.len(),
            first_prev: prev.first().copied(),
            outlier: false,
            auth_events: auth,
            sender: Name::new("@a:x"),
            event_type: Name::new("m.room.message"),
            state_key: None,
            key: None,
            depth: 0,
            origin_server_ts: 0,
            facts: Facts::None,
            state_before: StateSetId::EMPTY,
            redacted_on_receipt: false,
        }
    }
}

impl StoredEvent {
    /// Whether this is a state event.
    pub fn is_state(&self) -> bool {
        self.state_key.is_some()
    }

    /// The PDU's first prev event, when it is stored.
    pub fn first_prev(&self) -> Option<EventIdx> {
        (self.first_prev_ix != u32::MAX).then_some(EventIdx(self.first_prev_ix))
    }

    /// Number of prev events in the PDU (linked or not).
    pub fn prev_count(&self) -> usize {
        self.pdu_prev_count as usize
    }

    /// Whether this event is `(type, state_key)`.
    pub fn is(&self, ty: &str, state_key: &str) -> bool {
        &*self.event_type == ty && self.state_key.as_deref() == Some(state_key)
    }

    /// Position in the auth-chain index (accepted state events only).
    pub fn auth_node(&self) -> Option<u32> {
        self.auth_node_plus_one.map(|n| n.get() - 1)
    }

    /// Sets the position in the auth-chain index.
    pub fn set_auth_node(&mut self, node: u32) {
        self.auth_node_plus_one = std::num::NonZeroU32::new(node.checked_add(1).expect("fewer than 2^32 - 1 nodes"));
    }

    /// Whether the event's type is `m.room.create`. The auth rules' rule 1
    /// goes by type alone; the room's create event is `is("m.room.create", "")`.
    pub fn is_create_type(&self) -> bool {
        &*self.event_type == "m.room.create"
    }

    /// The membership of an `m.room.member` event.
    pub fn membership(&self) -> Option<&Membership> {
        match &self.facts {
            Facts::Member(m) => Some(&m.membership),
            _ => None,
        }
    }

    /// Accepted?
    pub fn is_accepted(&self) -> bool {
        self.status == EventStatus::Accepted
    }

    /// Entries it has in its block's links: its prev events, and where its
    /// auth events are in the auth-list arena (if it has any).
    fn links_len(&self) -> u32 {
        links_len(self.n_prev, self.n_auth)
    }

    /// Its links (prev events, then where its auth list is) in `links`,
    /// its block's.
    ///
    /// # Panics
    /// If they are not there (`links` is not its block's).
    fn links_in<'a>(&self, links: &'a [EventIdx]) -> &'a [EventIdx] {
        let at = self.links_at as usize;
        links.get(at..at + self.links_len() as usize).expect("an event's links are in its block's")
    }
}

/// Entries an event with `n_prev` linked prev events and `n_auth` auth
/// events has in its block's links: its prev events, and where its auth
/// events are (if it has any).
fn links_len(n_prev: u8, n_auth: u8) -> u32 {
    u32::from(n_prev) + u32::from(n_auth > 0)
}

/// Bytes per block of the ID arena (the text arena).
const TEXT_BLOCK: usize = 1 << 20;
/// Events per block of the event table.
const EVENTS_CHUNK: usize = 256;

/// The room's events in arrival order, with their texts and references.
///
/// Append-only arenas: the event table in fixed chunks (each block's links
/// with it), the event IDs in 1 MiB blocks, the shared auth lists
/// in blocks of 65,536 references, and the PDUs compressed in groups of
/// consecutive events' ([`pdu_groups`]: about 0.45× their size). Appending
/// never moves or copies what is stored, and a room costs a handful of
/// allocations per megabyte.
///
/// With a page store ([`set_pages`](Self::set_pages)), the PDU texts go to
/// the store instead and are read back through its byte-bounded cache (and
/// the IDs of full blocks follow: [`id_rows`], and their packed records but
/// for their state events': `Table::Blocks`); and with a budget
/// ([`set_budget`](Self::set_budget)) the table's full blocks are kept
/// packed ([`packed`]: about a tenth of their size, facts included), built again when an
/// event in them is asked for, and built ones past the budget dropped by
/// [`trim`](Self::trim).
#[derive(Debug, Default)]
pub struct Events {
    /// Full blocks of `EVENTS_CHUNK` events (never changed once full).
    blocks: Vec<Block>,
    /// The last block, being filled.
    tail: Vec<StoredEvent>,
    /// Blocks before this one are packed (with a budget).
    packed_to: usize,
    /// Blocks before this one are paged (with a page store): their packing
    /// is a row of the store, and they hold their state events' alone.
    paged_to: usize,
    /// Blocks built now (full ones).
    built: std::cell::Cell<usize>,
    /// State events of packed blocks built apart now (`StateRef::built`),
    /// and the block the clock's hand dropping them is at.
    residents: std::cell::Cell<usize>,
    resident_hand: usize,
    /// Bytes of built full blocks kept by [`trim`](Self::trim); `None`:
    /// unbounded, nothing packed.
    budget: Option<usize>,
    /// The last use, for dropping the blocks used longest ago.
    clock: std::cell::Cell<u64>,
    names: packed::NameTable,
    /// While a table is read back: the name numbers of the tail's events.
    read_numbers: Vec<[u32; 3]>,
    len: usize,
    /// Event IDs (with a page store, those held: see `recent`).
    text: Vec<String>,
    /// The PDUs, without a page store.
    groups: pdu_groups::PduGroups,
    /// The tail's links: each event's prev events, then (if it has auth
    /// events) where its auth events are in `auth_lists` (a full block's
    /// are with it: [`links`]).
    tail_links: Vec<EventIdx>,
    /// Lists of auth events, shared: the events of one sender under one
    /// power levels list the same auth events (create, power levels, the
    /// sender's membership), and most events are those.
    auth_lists: Vec<Vec<EventIdx>>,
    /// Where recent auth lists are in `auth_lists`, by a hash of the list
    /// (`AUTH_CACHE` slots, `u32::MAX` for none): a list found there again
    /// is shared, not stored again.
    auth_cache: Vec<u32>,
    pdus: Option<PageCache>,
    /// With a page store: the IDs of each block from `settled_to` on, the
    /// tail's last (a string a block, the IDs one after the other), until
    /// its row is written ([`id_rows`]).
    recent: std::collections::VecDeque<String>,
    /// Blocks before this one have their IDs in a row of the page store
    /// (those of their state events also in the text arena).
    settled_to: usize,
    /// The key of each settled block's row.
    row_keys: Vec<[u8; 16]>,
    /// While a batch may be rolled back: the table's length when it began
    /// (no block it may cut back is settled).
    hold_from: Option<usize>,
}

/// A position in the arenas, to cut them back to (rollback).
#[derive(Clone, Copy, Debug)]
pub struct EventsMark {
    len: usize,
    text_blocks: usize,
    text_len: usize,
    /// The tail's IDs' length, with a page store.
    recent_len: usize,
    auth_blocks: usize,
    auth_len: usize,
}

impl EventsMark {
    /// Number of events at the mark.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there were no events at the mark.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Events {
    /// Number of events.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps the PDU texts in `pages` from now on (only while empty: the
    /// texts already stored stay where they are otherwise).
    ///
    /// # Panics
    /// If events are stored already.
    pub fn set_pages(&mut self, pages: PageCache) {
        assert!(self.is_empty(), "set_pages on a room with events");
        self.pdus = Some(pages);
    }

    /// The page cache of the PDU texts, if they are paged.
    pub fn pages(&self) -> Option<&PageCache> {
        self.pdus.as_ref()
    }

    /// The keys of the rows of `table` the table names: its settled blocks'
    /// IDs ([`Table::Ids`]) and its paged blocks' packings
    /// ([`Table::Blocks`]); none of other tables.
    pub(crate) fn named_rows(&self, table: crate::pages::Table) -> Vec<[u8; 16]> {
        match table {
            crate::pages::Table::Ids => self.row_keys.clone(),
            crate::pages::Table::Blocks => self.blocks[..self.paged_to].iter().filter_map(|b| b.row).collect(),
            _ => Vec::new(),
        }
    }

    /// The page cache, to write rows of other tables through it.
    pub(crate) fn pages_mut(&mut self) -> Option<&mut PageCache> {
        self.pdus.as_mut()
    }

    /// Takes the page cache out (to write into its store while the table
    /// is read); [`restore_pages`](Self::restore_pages) puts it back.
    pub(crate) fn take_pages(&mut self) -> Option<PageCache> {
        self.pdus.take()
    }

    /// Puts a page cache (back) in place.
    pub(crate) fn restore_pages(&mut self, pages: PageCache) {
        self.pdus = Some(pages);
    }

    /// See [`PageCache::set_restoring`].
    pub fn set_restoring_pages(&mut self, restoring: Option<RestoreRows>) {
        if let Some(p) = self.pdus.as_mut() {
            p.set_restoring(restoring);
        }
    }

    /// Stores the texts and references of a new event and returns it (not
    /// yet in the table: see [`push`](Self::push)). If it is never pushed,
    /// [`cut`](Self::cut) back to a mark taken before.
    ///
    /// # Panics
    /// If the event ID is longer than 255 bytes or there are more than 255
    /// prev or auth events (the receipt checks refuse both before this point).
    ///
    /// # Errors
    /// The page store failed to write the PDU (nothing is stored then).
    pub fn prepare(&mut self, n: NewEvent<'_>) -> Result<StoredEvent, PageError> {
        let id_len = u8::try_from(n.id.len()).expect("event IDs are at most 255 bytes");
        let n_prev = u8::try_from(n.prev_events.len()).expect("at most 20 prev events");
        let pdu_prev_count = u8::try_from(n.pdu_prev_count).expect("at most 20 prev events");
        let n_auth = u8::try_from(n.auth_events.len()).expect("at most 10 auth events");
        let idx = EventIdx(u32::try_from(self.len).expect("fewer than 2^32 events"));
        if let Some(pages) = self.pdus.as_mut() {
            pages.put(idx.0, n.id, n.raw)?;
        }
        let text = self.push_text(n.id, n.raw, n.key.is_some());
        let links_at = self.push_links(n.prev_events, n.auth_events);
        Ok(StoredEvent {
            idx,
            text,
            links_at,
            id_len,
            n_prev,
            n_auth,
            pdu_prev_count,
            outlier: n.outlier,
            soft_failed: false,
            status: EventStatus::Accepted,
            redacted_on_receipt: n.redacted_on_receipt,
            recheck_redaction: false,
            first_prev_ix: n.first_prev.map_or(u32::MAX, |p| p.0),
            sender: n.sender,
            event_type: n.event_type,
            state_key: n.state_key,
            key: n.key,
            depth: n.depth,
            origin_server_ts: n.origin_server_ts,
            facts: n.facts,
            state_before: n.state_before,
            state_after: n.state_before,
            auth_node_plus_one: None,
        })
    }

    /// Appends a prepared event.
    pub fn push(&mut self, e: StoredEvent) {
        debug_assert_eq!(e.idx.ix(), self.len);
        if self.tail.capacity() == 0 {
            self.tail.reserve_exact(EVENTS_CHUNK);
        }
        self.tail.push(e);
        self.len += 1;
        if self.tail.len() == EVENTS_CHUNK {
            let full = std::mem::take(&mut self.tail);
            let links = std::mem::take(&mut self.tail_links);
            self.blocks.push(Block::built(full, links, self.tick()));
            self.built.set(self.built.get() + 1);
        }
    }

    /// Marks the start of a batch that may be cut back
    /// ([`cut`](Self::cut)): until [`release`](Self::release), no block
    /// filled since has its IDs written as a row and dropped.
    pub fn hold(&mut self) {
        self.hold_from = Some(self.len);
    }

    /// Ends [`hold`](Self::hold): the batch is stored, or was cut back.
    pub fn release(&mut self) {
        self.hold_from = None;
    }

    /// An event's PDU, exactly as received.
    ///
    /// # Errors
    /// The PDU is paged and the page store failed to read it (or its ID)
    /// back.
    pub fn raw(&self, e: &StoredEvent) -> Result<PduText<'_>, PageError> {
        match &self.pdus {
            None => match self.groups.get(e.idx.ix()) {
                Ok(pdu_groups::GroupText::Open(s)) => Ok(PduText::Held(s)),
                Ok(pdu_groups::GroupText::Sealed(group, at)) => Ok(PduText::Grouped(group, at)),
                Err(pdu_groups::Damaged) => Err(PageError::Corrupt { table: Table::Pdu, key: self.id(e)?.to_string() }),
            },
            Some(pages) => pages.get(e.idx.0, &self.id(e)?).map(PduText::Paged),
        }
    }

    /// The event at `i`, its block built again from its packed form if
    /// needed (a packed block of a room with a page store is a row there).
    ///
    /// # Errors
    /// The page store failed to read the block's row back, or it is corrupt.
    ///
    /// # Panics
    /// If `i` is past the table.
    pub fn event(&self, i: usize) -> Result<&StoredEvent, PageError> {
        assert!(i < self.len, "an event index within the room");
        let b = i / EVENTS_CHUNK;
        if b == self.blocks.len() {
            return Ok(&self.tail[i % EVENTS_CHUNK]);
        }
        let blk = &self.blocks[b];
        if blk.built.get().is_none() {
            if let Some(k) = blk.state_place(i % EVENTS_CHUNK) {
                return Ok(self.resident(b, k));
            }
        }
        Ok(&self.block_events(b)?[i % EVENTS_CHUNK])
    }

    /// State event `i`, or any event of a block the room holds built (the
    /// open block, a batch not trimmed yet): read without the page store (a
    /// packed block's state events are built alone from what the room
    /// holds), so infallibly. The auth checks and state resolution read
    /// state events only.
    ///
    /// # Panics
    /// If `i` is past the table, or it is an event that is not a state
    /// event, of a block not built, whose row cannot be read back.
    pub fn state_event(&self, i: usize) -> &StoredEvent {
        self.event(i).expect("a state event, or an event of a block built, is read without the page store")
    }

    /// Every event in order. A packed block that is not built is read into
    /// a copy for the walk, not built: a walk over the room (an image, an
    /// export) does not keep the whole table built.
    ///
    /// # Errors
    /// At a block whose row the page store failed to read back.
    pub fn iter(&self) -> impl Iterator<Item = Result<std::borrow::Cow<'_, StoredEvent>, PageError>> + '_ {
        use std::borrow::Cow;
        type Walk<'a> = Box<dyn Iterator<Item = Result<Cow<'a, StoredEvent>, PageError>> + 'a>;
        self.walk_blocks(0).flat_map(|block| -> Walk<'_> {
            match block {
                Err(e) => Box::new(std::iter::once(Err(e))),
                Ok((Cow::Borrowed(events), _)) => Box::new(events.iter().map(|e| Ok(Cow::Borrowed(e)))),
                Ok((Cow::Owned(events), _)) => Box::new(events.into_iter().map(|e| Ok(Cow::Owned(e)))),
            }
        })
    }

    /// Every block from block `from` on in order (the open one last, if it holds any event), its
    /// events and their links ([`links`]): a packed block that is not
    /// built is read into a copy, not built.
    ///
    /// # Errors
    /// At a block whose row the page store failed to read back.
    pub(super) fn walk_blocks(
        &self,
        from: usize,
    ) -> impl Iterator<Item = Result<(BlockEvents<'_>, BlockLinks<'_>), PageError>> + '_ {
        use std::borrow::Cow;
        let full = self.blocks.iter().enumerate().skip(from).map(move |(b, blk)| match blk.built.get() {
            Some(built) => Ok((Cow::Borrowed(&built.events[..]), Cow::Borrowed(&built.links[..]))),
            None => {
                let built = self.unpack(b, blk)?;
                Ok((Cow::Owned(built.events.into_vec()), Cow::Owned(built.links.into_vec())))
            }
        });
        let tail =
            (!self.tail.is_empty()).then(|| Ok((Cow::Borrowed(&self.tail[..]), Cow::Borrowed(&self.tail_links[..]))));
        full.chain(tail)
    }

    /// The current extent of the arenas.
    pub fn mark(&self) -> EventsMark {
        EventsMark {
            len: self.len,
            text_blocks: self.text.len(),
            text_len: self.text.last().map_or(0, String::len),
            recent_len: self.recent.get(self.blocks.len() - self.settled_to).map_or(0, String::len),
            auth_blocks: self.auth_lists.len(),
            auth_len: self.auth_lists.last().map_or(0, Vec::len),
        }
    }

    /// Undoes a prepared event that is not pushed: its texts and references
    /// (cut back to `mark`, taken before it was prepared) and its page row.
    pub fn discard(&mut self, e: &StoredEvent, mark: EventsMark) {
        debug_assert_eq!(e.idx.ix(), self.len, "only the event prepared last, unpushed");
        if let Some(mut pages) = self.pdus.take() {
            // As in `cut`: a row left behind is never read.
            if let Some(id) = self.held_id(e) {
                let _ = pages.undo(e.idx.0, id);
            }
            self.pdus = Some(pages);
        }
        self.cut(mark);
    }

    /// Cuts everything added since `mark`, returning the removed events.
    pub fn cut(&mut self, mark: EventsMark) -> Vec<StoredEvent> {
        let mut removed = Vec::new();
        while self.len > mark.len {
            if self.tail.is_empty() {
                // The last full block becomes the tail again.
                let b = self.blocks.len() - 1;
                assert!(b >= self.settled_to, "a block is cut back only while held (Events::hold)");
                let mut blk = self.blocks.pop().expect("len > 0");
                self.residents.set(self.residents.get() - blk.states_built());
                let built = match blk.built.take() {
                    Some(built) => {
                        self.built.set(self.built.get() - 1);
                        built
                    }
                    // A block cut back is held, so never paged.
                    None => self.unpack(b, &blk).expect("a block cut back is held, not paged"),
                };
                self.tail = built.events.into_vec();
                self.tail_links = built.links.into_vec();
                self.packed_to = self.packed_to.min(self.blocks.len());
                debug_assert!(self.paged_to <= self.blocks.len(), "a paged block is settled, never cut");
            }
            removed.push(self.tail.pop().expect("len > 0"));
            self.len -= 1;
        }
        removed.reverse();
        if let Some(mut pages) = self.pdus.take() {
            for e in &removed {
                // A row that cannot be deleted is left behind: it is read
                // only for a stored event, and storing the event writes it
                // again.
                if let Some(id) = self.held_id(e) {
                    let _ = pages.undo(e.idx.0, id);
                }
            }
            self.pdus = Some(pages);
        }
        // The IDs of the blocks cut back (read for the undo above) go, and
        // the tail's are cut to the mark.
        self.recent.truncate(self.blocks.len() - self.settled_to + 1);
        if let Some(ids) = self.recent.get_mut(self.blocks.len() - self.settled_to) {
            ids.truncate(mark.recent_len);
        }
        // With a page store the arena holds the IDs of settled blocks' state
        // events only, which a cut never reaches (a block settled since the
        // mark was full before it).
        if self.pdus.is_none() {
            self.groups.truncate(mark.len).expect("a group of PDUs this room compressed decompresses");
            self.text.truncate(mark.text_blocks);
            if let Some(b) = self.text.last_mut() {
                b.truncate(mark.text_len);
            }
        }
        // The tail's links end where its last event's do (those of the
        // events cut, and of an event prepared and discarded, go).
        self.tail_links.truncate(self.tail.last().map_or(0, |e| (e.links_at + e.links_len()) as usize));
        // A cached auth list cut here is found no more (its slot's list is
        // compared before it is shared).
        self.auth_lists.truncate(mark.auth_blocks);
        if let Some(b) = self.auth_lists.last_mut() {
            b.truncate(mark.auth_len);
        }
        removed
    }

    /// (text bytes held, text bytes used) for memory accounting (the page
    /// cache is counted by [`pages`](Self::pages)).
    pub fn text_footprint(&self) -> (usize, usize) {
        let texts = || self.text.iter().chain(&self.recent);
        let (pdus_held, pdus) = self.groups.footprint();
        (
            texts().map(String::capacity).sum::<usize>() + self.row_keys.capacity() * 16 + pdus_held,
            texts().map(String::len).sum::<usize>() + pdus,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::blocks::PACK_PER_TRIM;
    use super::links::AUTH_CACHE_MIN;
    use super::*;

    /// Pushes event `e` of `from` as event `idx` of `t`, with its links.
    fn push_copy(t: &mut Events, from: &Events, e: &StoredEvent, idx: usize) {
        let links_at = t.push_links(from.prev_events(e).unwrap(), from.auth_events(e).unwrap());
        t.push(StoredEvent { idx: EventIdx(idx as u32), links_at, ..e.clone() });
    }

    /// Every event of `t` has the links it has in `from`.
    fn same_links(t: &Events, from: &Events, upto: usize) {
        for i in 0..upto {
            let (e, want) = (t.event(i).unwrap(), from.event(i).unwrap());
            assert_eq!(t.prev_events(e).unwrap(), from.prev_events(want).unwrap(), "event {i}");
            assert_eq!(
                t.auth_events(e).unwrap().iter().map(|a| from.id_at(a.ix()).unwrap().to_string()).collect::<Vec<_>>(),
                from.auth_events(want)
                    .unwrap()
                    .iter()
                    .map(|a| from.id_at(a.ix()).unwrap().to_string())
                    .collect::<Vec<_>>(),
                "event {i}"
            );
        }
    }

    /// With a budget, full blocks are packed and built again on use: every
    /// event reads as pushed, whatever was dropped, before and after a cut
    /// back into a packed block, and the table holds a fraction of the
    /// bytes it holds built.
    #[test]
    fn a_budgeted_table_reads_every_event_as_pushed() {
        let room = serde_json::to_vec(&crate::demo::demo_room(1500)).unwrap();
        let replay = crate::conformance::replay(&room[..]).unwrap();
        let all: Vec<StoredEvent> = replay.room.events().iter().map(|e| e.unwrap().into_owned()).collect();
        assert!(all.len() > 5 * EVENTS_CHUNK);
        let same = |t: &Events, upto: usize| {
            assert_eq!(t.len(), upto);
            for (i, e) in all[..upto].iter().enumerate() {
                assert_eq!(format!("{:?}", t.event(i).unwrap()), format!("{e:?}"), "event {i}");
            }
        };
        let mut t = Events::default();
        t.set_budget(Some(0));
        let mut mark = None;
        for (i, e) in all.iter().enumerate() {
            if i == 3 * EVENTS_CHUNK - 5 {
                mark = Some(t.mark());
            }
            push_copy(&mut t, replay.room.events(), e, i);
            if i % 100 == 0 {
                t.trim();
                assert_eq!(t.built.get(), 0, "a zero budget keeps no block built");
            }
        }
        t.trim();
        let walked: Vec<String> = t.iter().map(|e| format!("{:?}", &*e.unwrap())).collect();
        assert_eq!(walked, all.iter().map(|e| format!("{e:?}")).collect::<Vec<_>>());
        assert_eq!(t.built.get(), 0, "a walk builds nothing");
        // A state event of a packed block is read without building it.
        let state = all[..t.blocks.len() * EVENTS_CHUNK].iter().rposition(|e| e.key.is_some()).unwrap();
        assert_eq!(format!("{:?}", t.event(state).unwrap()), format!("{:?}", all[state]));
        assert_eq!(t.built.get(), 0, "a state event builds no block");
        same(&t, all.len());
        same_links(&t, replay.room.events(), all.len());
        t.trim();
        // The full blocks, packed, take under a quarter of their built size.
        t.trim();
        let size = std::mem::size_of::<StoredEvent>();
        let full_bytes = t.blocks.len() * EVENTS_CHUNK * size;
        let packed = t.table_bytes() - t.tail.capacity() * size;
        assert!(packed * 4 < full_bytes, "{packed} of {full_bytes}");
        t.cut(mark.unwrap());
        same(&t, 3 * EVENTS_CHUNK - 5);
        same_links(&t, replay.room.events(), 3 * EVENTS_CHUNK - 5);
        for (i, e) in all.iter().enumerate().skip(3 * EVENTS_CHUNK - 5) {
            push_copy(&mut t, replay.room.events(), e, i);
        }
        t.trim();
        same(&t, all.len());
        same_links(&t, replay.room.events(), all.len());
        // A budget of two blocks keeps two, those used last.
        t.set_budget(Some(2 * EVENTS_CHUNK * std::mem::size_of::<StoredEvent>()));
        for i in (0..all.len()).step_by(EVENTS_CHUNK) {
            t.event(i).unwrap();
        }
        t.trim();
        assert!(t.built.get() <= 2, "{}", t.built.get());
        let last_full = t.blocks.len() - 1;
        assert!(t.blocks[last_full].built.get().is_some(), "the block used last is kept");
    }

    /// A packed block's state events are built apart from it, as a cache
    /// that the budget bounds, and read as pushed; their IDs are read
    /// without building anything.
    #[test]
    fn state_events_of_packed_blocks_are_a_bounded_cache() {
        let room = serde_json::to_vec(&crate::demo::demo_room(1500)).unwrap();
        let replay = crate::conformance::replay(&room[..]).unwrap();
        let all: Vec<StoredEvent> = replay.room.events().iter().map(|e| e.unwrap().into_owned()).collect();
        let one = std::mem::size_of::<StoredEvent>();
        let mut t = Events { text: replay.room.events().text.clone(), ..Events::default() };
        t.set_budget(Some(4 * one));
        for (i, e) in all.iter().enumerate() {
            push_copy(&mut t, replay.room.events(), e, i);
        }
        while t.packed_to < t.blocks.len() {
            t.trim();
        }
        let full = t.blocks.len() * EVENTS_CHUNK;
        let states: Vec<usize> = (0..full).filter(|i| all[*i].key.is_some()).collect();
        assert!(states.len() > 8, "{} state events in full blocks", states.len());
        assert_eq!((t.built.get(), t.residents.get()), (0, 0));
        for i in &states {
            assert_eq!(t.state_id(*i), replay.room.state_id(EventIdx(*i as u32)), "event {i}");
            assert_eq!(t.auth_node_of(*i), all[*i].auth_node(), "event {i}");
        }
        assert!(states.iter().any(|i| all[*i].auth_node().is_some()));
        assert_eq!((t.built.get(), t.residents.get()), (0, 0), "IDs and auth nodes are read without building events");
        for i in &states {
            assert_eq!(format!("{:?}", t.event(*i).unwrap()), format!("{:?}", all[*i]), "event {i}");
        }
        assert_eq!(t.built.get(), 0, "a state event builds no block");
        assert_eq!(t.residents.get(), states.len());
        // Nor do its links (the auth checks and state resolution read them).
        for i in &states {
            let e = t.event(*i).unwrap();
            let from = replay.room.events();
            assert_eq!(
                (t.prev_events(e).unwrap(), t.auth_events(e).unwrap().len()),
                (from.prev_events(&all[*i]).unwrap(), all[*i].n_auth as usize)
            );
        }
        assert_eq!(t.built.get(), 0, "a state event's links build no block");
        t.trim();
        assert!(t.residents.get() <= 3, "{} state events kept built", t.residents.get());
        // Those dropped are built again, as they were.
        for i in states.iter().rev() {
            assert_eq!(format!("{:?}", t.event(*i).unwrap()), format!("{:?}", all[*i]), "event {i}");
        }
        // A message builds its block.
        let message = (0..full).find(|i| all[*i].key.is_none()).unwrap();
        assert_eq!(format!("{:?}", t.event(message).unwrap()), format!("{:?}", all[message]));
        assert_eq!(t.built.get(), 1);
        t.trim();
        assert_eq!(t.built.get(), 0);
    }

    /// A table read back in order (an image: the records, then the content
    /// facts) is packed as it is read, never held built: each event reads
    /// as it was, a state event of a packed block with its facts without
    /// building the block, and a walk builds nothing.
    #[test]
    fn a_table_read_back_is_packed_as_it_is_read() {
        let room = serde_json::to_vec(&crate::demo::demo_room(1500)).unwrap();
        let replay = crate::conformance::replay(&room[..]).unwrap();
        let all: Vec<StoredEvent> = replay.room.events().iter().map(|e| e.unwrap().into_owned()).collect();
        assert!(all.len() > 5 * EVENTS_CHUNK && all.len() % EVENTS_CHUNK != 0);
        let placeholder = PageCache::new(Box::new(crate::pages::MemoryPages::new()), crate::pages::Table::Pdu, 0);
        let mut t = Events::for_read(placeholder);
        let mut facts = Vec::new();
        for (i, e) in all.iter().enumerate() {
            if !matches!(e.facts, Facts::None) {
                facts.push((e.idx.0, e.facts.clone()));
            }
            let numbers = [
                t.names.number(&e.sender),
                t.names.number(&e.event_type),
                e.state_key.as_ref().map_or(0, |k| t.names.number(k)),
            ];
            // What a packed event that is not a state event is pushed with
            // does not matter beyond its numbers: a placeholder name.
            let placeholder = (i < all.len() / EVENTS_CHUNK * EVENTS_CHUNK && e.key.is_none()).then(|| Name::new("?"));
            let e = StoredEvent { facts: Facts::None, ..e.clone() };
            let e = match placeholder {
                Some(p) => StoredEvent {
                    sender: p.clone(),
                    event_type: p.clone(),
                    state_key: e.state_key.as_ref().map(|_| p),
                    ..e
                },
                None => e,
            };
            let source = replay.room.events();
            let links = source.links_of(source.event(i).unwrap()).unwrap().to_vec();
            t.push_read(e, &links, numbers);
            assert_eq!(t.built.get(), 0);
        }
        t.set_read_facts(facts);
        assert_eq!((t.blocks.len(), t.packed_to), (all.len() / EVENTS_CHUNK, all.len() / EVENTS_CHUNK));
        let packed_events = t.blocks.len() * EVENTS_CHUNK;
        let with_facts = all[..packed_events].iter().filter(|e| e.key.is_some() && !matches!(e.facts, Facts::None));
        assert!(with_facts.clone().count() >= 10);
        for e in with_facts {
            assert_eq!(format!("{:?}", t.event(e.idx.ix()).unwrap()), format!("{e:?}"), "state event {}", e.idx.0);
        }
        assert_eq!(t.built.get(), 0, "state events are read without building their blocks");
        let walked: Vec<String> = t.iter().map(|e| format!("{:?}", &*e.unwrap())).collect();
        assert_eq!(walked, all.iter().map(|e| format!("{e:?}")).collect::<Vec<_>>());
        assert_eq!(t.built.get(), 0, "a walk builds nothing");
        for (i, e) in all.iter().enumerate() {
            assert_eq!(format!("{:?}", t.event(i).unwrap()), format!("{e:?}"), "event {i}");
        }
    }

    /// A table built whole (a room given its budget once filled) is packed over
    /// several trims, `PACK_PER_TRIM` blocks each, and reads as pushed
    /// throughout; a block not packed yet is never dropped.
    #[test]
    fn a_table_built_whole_is_packed_over_several_trims() {
        let room = serde_json::to_vec(&crate::demo::demo_room(300)).unwrap();
        let replay = crate::conformance::replay(&room[..]).unwrap();
        let demo: Vec<StoredEvent> = replay.room.events().iter().map(|e| e.unwrap().into_owned()).collect();
        let n = (PACK_PER_TRIM + 6) * EVENTS_CHUNK + 10;
        let all: Vec<StoredEvent> =
            (0..n).map(|i| StoredEvent { idx: EventIdx(i as u32), ..demo[i % demo.len()].clone() }).collect();
        let mut t = Events::default();
        for (i, e) in all.iter().enumerate() {
            push_copy(&mut t, replay.room.events(), &demo[i % demo.len()], e.idx.ix());
        }
        assert_eq!(t.built.get(), PACK_PER_TRIM + 6);
        // Each as pushed (its links where they are in its block).
        let all: Vec<StoredEvent> = t.iter().map(|e| e.unwrap().into_owned()).collect();
        t.set_budget(Some(0));
        t.trim();
        assert_eq!(t.packed_to, PACK_PER_TRIM);
        assert_eq!(t.built.get(), 6, "the blocks not packed yet stay built");
        for (i, e) in all.iter().enumerate() {
            assert_eq!(format!("{:?}", t.event(i).unwrap()), format!("{e:?}"), "event {i}");
        }
        t.trim();
        assert_eq!((t.packed_to, t.built.get()), (PACK_PER_TRIM + 6, 0));
        for (i, e) in all.iter().enumerate() {
            assert_eq!(format!("{:?}", t.event(i).unwrap()), format!("{e:?}"), "event {i}");
        }
    }

    /// Events that list the same auth events share one stored list; each
    /// reads its own prev and auth events back, through a cut that drops
    /// lists and new lists stored where they were.
    #[test]
    fn auth_lists_are_shared_and_read_back_through_a_cut() {
        let push = |t: &mut Events, prev: &[EventIdx], auth: &[EventIdx]| {
            let e = t.prepare(NewEvent::message(&format!("$e{}", t.len()), prev, auth)).unwrap();
            t.push(e);
        };
        let ix = |v: &[u32]| v.iter().map(|i| EventIdx(*i)).collect::<Vec<_>>();
        // 3,000 events over five auth lists (and some with none).
        let lists: Vec<Vec<EventIdx>> = (0..5).map(|k| ix(&[0, 1, 2 + k])).collect();
        let mut t = Events::default();
        let mut want: Vec<(Vec<EventIdx>, Vec<EventIdx>)> = Vec::new();
        for i in 0..3000u32 {
            let prev = if i == 0 { vec![] } else { ix(&[i - 1]) };
            let auth = if i % 7 == 0 { vec![] } else { lists[i as usize % 5].clone() };
            push(&mut t, &prev, &auth);
            want.push((prev, auth));
        }
        let stored: usize = t.auth_lists.iter().map(Vec::len).sum();
        assert!(t.auth_cache.len() > AUTH_CACHE_MIN, "the cache grew on the way");
        assert_eq!(stored, 5 * 3, "each list stored once");
        let reads = |t: &Events, want: &[(Vec<EventIdx>, Vec<EventIdx>)]| {
            for (i, (prev, auth)) in want.iter().enumerate() {
                let e = t.event(i).unwrap();
                assert_eq!((t.prev_events(e).unwrap(), t.auth_events(e).unwrap()), (&prev[..], &auth[..]), "event {i}");
            }
        };
        reads(&t, &want);
        // A list stored after a mark, cut, another stored where it was,
        // then the first again: not shared with what now sits there.
        let mark = t.mark();
        let (a, b) = (ix(&[5, 6, 7]), ix(&[8, 9, 10]));
        push(&mut t, &ix(&[2999]), &a);
        t.cut(mark);
        push(&mut t, &ix(&[2999]), &b);
        push(&mut t, &ix(&[3000]), &a);
        push(&mut t, &ix(&[3001]), &lists[2]);
        want.extend([(ix(&[2999]), b), (ix(&[3000]), a), (ix(&[3001]), lists[2].clone())]);
        reads(&t, &want);
        assert_eq!(t.auth_lists.iter().map(Vec::len).sum::<usize>(), 5 * 3 + 2 * 3);
    }

    /// The compact view stays compact: a 20,000-event room holds 20,000 of them.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn stored_event_is_112_bytes() {
        assert_eq!(std::mem::size_of::<Facts>(), 16);
        assert_eq!(std::mem::size_of::<StoredEvent>(), 112);
    }
}
