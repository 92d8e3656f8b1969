//! Full blocks of the event table, packed.
//!
//! A room with a page store keeps the [`StoredEvent`]s of its full blocks
//! ([`EVENTS_CHUNK`](super::EVENTS_CHUNK) events, never changed once full)
//! as bytes: each field as a varint, most as the change from the event
//! before it (depth, timestamp, states, where its text starts), the
//! interned names as numbers in a [`NameTable`], its links (prev events as
//! their distance back, where its auth list is as the change from the
//! event before's), and the content facts of the few events that have them
//! as they are, and what is the event before's (its ID length and link
//! counts, where its text is, its state before; its first prev event being
//! the event before, and its first linked prev event its first prev event)
//! or an earlier event's (its sender and auth list) as a flag alone: about
//! 14 bytes an event where it took 112 built and 8 more for its links
//! (Matrix HQ's messages).
//! A block is built again when an event in it is asked for
//! ([`super::Events::event`]); built blocks past the room's budget are
//! dropped by [`super::Events::trim`]. Once its bytes are a row of the page
//! store, a block holds its state events packed alone, the same way (each
//! with its own index), so that one is built without the row.

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;

use super::{EventStatus, Facts, StoredEvent, TextRef};
use crate::ids::{EventIdx, IntHasher, Name};
use crate::state_set::StateSetId;

/// Interned names as numbers: the packed blocks' `sender`, `type` and
/// `state_key`. A name keeps its number (and the table a clone of it) for
/// the room's life. Names are found by address (the room interns them), in
/// a hash table of their numbers alone: 4 bytes a slot, where a map from
/// address to number took 16 (2.2 of this table's 3.1 MiB at Matrix HQ's
/// size, ~100,000 names).
#[derive(Debug, Default)]
pub(super) struct NameTable {
    names: Vec<Name>,
    by_addr: HashTable<u32>,
}

/// A name's address, hashed: addresses are ours, not an attacker's. Their
/// low bits are the allocator's alignment (zero), shifted out first: the
/// multiply leaves zero low bits zero, and the table's buckets are chosen by
/// the low bits.
fn addr_hash(addr: usize) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<IntHasher>::default().hash_one(addr >> 3)
}

impl NameTable {
    pub(super) fn number(&mut self, name: &Name) -> u32 {
        let (addr, names) = (name.addr(), &self.names);
        let entry = self.by_addr.entry(
            addr_hash(addr),
            |n| names[*n as usize].addr() == addr,
            |n| addr_hash(names[*n as usize].addr()),
        );
        match entry {
            Entry::Occupied(slot) => *slot.get(),
            Entry::Vacant(slot) => {
                let n = u32::try_from(self.names.len()).expect("fewer than 2^32 names");
                slot.insert(n);
                self.names.push(name.clone());
                n
            }
        }
    }

    /// The number `name` has, if numbered.
    pub(super) fn known(&self, name: &Name) -> Option<u32> {
        let (addr, names) = (name.addr(), &self.names);
        self.by_addr.find(addr_hash(addr), |n| names[*n as usize].addr() == addr).copied()
    }

    /// The names, by number (the numbers packed blocks hold: a room image
    /// writes them in this order, and a room read back numbers them so
    /// again, so that the rows of paged blocks read back the same).
    pub(super) fn names(&self) -> &[Name] {
        &self.names
    }

    /// Gives `name` the next number, even if it has one (a room read back
    /// numbers its names as they were: [`names`](Self::names)); found by
    /// address, a name numbered twice is found at its first number.
    pub(super) fn push(&mut self, name: Name) -> u32 {
        let n = u32::try_from(self.names.len()).expect("fewer than 2^32 names");
        if self.known(&name).is_none() {
            let names = &self.names;
            self.by_addr.insert_unique(addr_hash(name.addr()), n, |k| addr_hash(names[*k as usize].addr()));
        }
        self.names.push(name);
        n
    }

    fn name(&self, n: u64) -> Name {
        self.names[usize::try_from(n).expect("a name's number fits")].clone()
    }
}

/// A full block's events, packed: all of them, or (once the block's bytes
/// are a row of the page store: `paged`) its state events alone, packed the
/// same way one after the other, so that a state event is built without
/// reading the row.
#[derive(Debug)]
pub(super) struct Packed {
    bytes: Box<[u8]>,
    /// `bytes` packs the block's state events alone (the block's own
    /// packing is a row of the page store).
    paged: bool,
    /// The content facts of the block's events that have any, each once
    /// (a membership's are shared by the room's events that have them: a
    /// block's joins have one), kept apart from the bytes, so that a block
    /// read back from an image, whose facts come after its records, is
    /// packed before its facts are known.
    facts: Box<[Facts]>,
    /// Each event with facts, in order: its place in the block, and which
    /// of `facts` it has (two bytes where a `Facts` each took seventeen).
    facts_at: Box<[(u8, u8)]>,
}

impl Packed {
    /// Bytes held (the facts counted as their inline size).
    pub(super) fn size(&self) -> usize {
        self.bytes.len() + std::mem::size_of_val::<[Facts]>(&self.facts) + 2 * self.facts_at.len()
    }

    /// The packed bytes held (the block's, or its state events' alone).
    pub(super) fn into_bytes(self) -> Box<[u8]> {
        self.bytes
    }

    /// The block's packing (not held once paged).
    pub(super) fn bytes(&self) -> Option<&[u8]> {
        (!self.paged).then_some(&self.bytes[..])
    }

    /// Whether the block's packing is a row of the page store.
    pub(super) fn is_paged(&self) -> bool {
        self.paged
    }

    /// The block's packing now held as a row of the page store: holds
    /// `states` (the packing of its state events alone, [`pack`]ed) instead.
    pub(super) fn page(&mut self, states: Box<[u8]>) {
        self.bytes = states;
        self.paged = true;
    }

    /// A block read back whose packing is a row of the page store: its
    /// state events alone packed (`states`), and its facts (set later, by
    /// [`set_facts`](Self::set_facts)).
    pub(super) fn paged(states: Box<[u8]>) -> Self {
        Packed { bytes: states, paged: true, facts: Box::default(), facts_at: Box::default() }
    }

    /// The facts of the block's event at `at`.
    pub(super) fn facts_of(&self, at: usize) -> Facts {
        match u8::try_from(at).ok().and_then(|at| self.facts_at.binary_search_by_key(&at, |(a, _)| *a).ok()) {
            Some(k) => self.facts[usize::from(self.facts_at[k].1)].clone(),
            None => Facts::None,
        }
    }

    /// The events with facts: their places in the block and facts.
    pub(super) fn with_facts(&self) -> impl Iterator<Item = (usize, &Facts)> + '_ {
        self.facts_at.iter().map(|(at, k)| (usize::from(*at), &self.facts[usize::from(*k)]))
    }

    /// Gives the events at positions `at` (in the block, increasing) their
    /// facts, in place of those they were packed with.
    pub(super) fn set_facts(&mut self, at: Vec<u8>, facts: Vec<Facts>) {
        debug_assert!(at.windows(2).all(|w| w[0] < w[1]) && at.len() == facts.len());
        (self.facts, self.facts_at) = facts_once(at.into_iter().zip(facts));
    }
}

/// A block's facts held once each, and each event's place and which.
type BlockFacts = (Box<[Facts]>, Box<[(u8, u8)]>);

/// Facts of a block's events (each event's place and facts, in order), each
/// once: a membership's facts, shared by the room's events that have them,
/// are found by address among those of the block so far.
fn facts_once(list: impl IntoIterator<Item = (u8, Facts)>) -> BlockFacts {
    let mut once: Vec<Facts> = Vec::new();
    let mut at = Vec::new();
    for (place, f) in list {
        let same = |g: &Facts| matches!((g, &f), (Facts::Member(a), Facts::Member(b)) if std::sync::Arc::ptr_eq(a, b));
        let k = match once.iter().position(same) {
            Some(k) => k,
            None => {
                once.push(f);
                once.len() - 1
            }
        };
        at.push((place, u8::try_from(k).expect("a block holds at most 256 events")));
    }
    (once.into_boxed_slice(), at.into_boxed_slice())
}

impl Packed {
    /// The facts held once each (for tests).
    #[cfg(test)]
    fn distinct_facts(&self) -> usize {
        self.facts.len()
    }
}

// The flags a message has (its first prev event the event before and linked,
// its text after the event before's and as long, the same link counts, the
// same state before and no change of state, its sender and auth list an
// earlier event's) are the low seven bits: a message's flags are one byte,
// and its fields ~4 bytes fewer.
/// The first prev event is the event before (none of its bytes written).
const FIRST_PREV_BEFORE: u64 = 1;
/// The text follows the event before's in the same arena block and is as
/// long (two messages whose IDs are paged, two state events).
const TEXT_AS_BEFORE: u64 = 1 << 1;
/// The first linked prev event is the first prev event (none of its bytes
/// written).
const PREV_IS_FIRST: u64 = 1 << 2;
/// No change of state: `state_after == state_before`.
const SAME_STATE: u64 = 1 << 3;
/// The ID's length and the link counts are the event before's (a v4+
/// event ID is always 44 bytes, and most events have one prev event and
/// the auth events of the one before).
const SAME_COUNTS: u64 = 1 << 4;
/// The sender and auth list are those of the sender's last event with auth
/// events in the block (its place among the block's senders written): a
/// member who speaks often sends several of a block's messages, each with
/// the same auth events (create, power levels, the sender's membership)
/// until one changes.
const SAME_SENDER_AUTH: u64 = 1 << 5;
/// The state before is the event before's.
const SAME_STATE_BEFORE: u64 = 1 << 6;
const STATE_KEY: u64 = 1 << 7;
const KEY: u64 = 1 << 8;
const AUTH_NODE: u64 = 1 << 9;
/// A first prev event other than the event before (its change written).
const FIRST_PREV: u64 = 1 << 10;
const OUTLIER: u64 = 1 << 11;
const SOFT_FAILED: u64 = 1 << 12;
const REJECTED: u64 = 1 << 13;
const REDACTED_ON_RECEIPT: u64 = 1 << 14;
const RECHECK_REDACTION: u64 = 1 << 15;

// A fact's position in its block is a byte.
const _: () = assert!(super::EVENTS_CHUNK <= 256);

/// The senders of a block's events so far that have auth events, each with
/// where its auth list is, in order (a sender again for each other list).
/// At most one an event of the block: on the stack, as packing and reading
/// a block allocate nothing else (the first `/state_ids` after a Worker's
/// restart reads its image back, packing every block, and builds state
/// events one by one: 14 % slower with a vector and a map a block).
struct Senders {
    places: [(u64, i64); super::EVENTS_CHUNK],
    len: usize,
}

impl Senders {
    fn new() -> Self {
        Senders { places: [(0, 0); super::EVENTS_CHUNK], len: 0 }
    }

    fn push(&mut self, sender: u64, auth_at: i64) -> usize {
        self.places[self.len] = (sender, auth_at);
        self.len += 1;
        self.len - 1
    }

    fn get(&self, place: u64) -> (u64, i64) {
        self.places[..self.len][usize::try_from(place).expect("a place in a block")]
    }
}

/// Slots of the packer's cache of each sender's last place (a direct-mapped
/// table by the sender's number: a sender whose slot another took is
/// written again, which is still a valid packing).
const SENDER_SLOTS: usize = 64;

/// What the first event of a block is packed against.
struct Before {
    text: TextRef,
    /// ID length, prev events linked, auth events, prev events in the PDU.
    counts: [u8; 4],
    /// Where its links end in the block's.
    links_end: u64,
    /// Where the last auth list of the block so far is.
    auth_at: i64,
    depth: i64,
    ts: i64,
    state_before: u32,
}

impl Before {
    const START: Before = Before {
        text: TextRef { block: u32::MAX, offset: 0, len: 0 },
        counts: [0; 4],
        links_end: 0,
        auth_at: 0,
        depth: 0,
        ts: 0,
        state_before: 0,
    };

    fn after(e: &StoredEvent, auth_at: i64) -> Before {
        Before {
            text: e.text,
            counts: [e.id_len, e.n_prev, e.n_auth, e.pdu_prev_count],
            links_end: u64::from(e.links_at) + u64::from(e.links_len()),
            auth_at,
            depth: e.depth,
            ts: e.origin_server_ts,
            state_before: e.state_before.0,
        }
    }

    fn text_end(&self) -> u64 {
        u64::from(self.text.offset) + u64::from(self.text.len)
    }
}

fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// `a - b` as a zigzag varint (any two `i64`, wrapping).
fn put_change(out: &mut Vec<u8>, a: i64, b: i64) {
    let d = a.wrapping_sub(b);
    put(out, ((d << 1) ^ (d >> 63)) as u64);
}

/// Packs a full block's events, with their links (`links`: the block's).
pub(super) fn pack(events: &[StoredEvent], links: &[EventIdx], names: &mut NameTable) -> Packed {
    pack_numbered(events, links, |_, e| {
        [names.number(&e.sender), names.number(&e.event_type), e.state_key.as_ref().map_or(0, |k| names.number(k))]
    })
}

/// Packs a full block's events, their names (sender, type, state key) as
/// `numbers` gives them: the table's numbers of those names. An event's
/// own name fields are then not read (a table read back from an image packs
/// its events from the image's name numbers without touching the names).
pub(super) fn pack_numbered(
    events: &[StoredEvent],
    links: &[EventIdx],
    mut numbers: impl FnMut(usize, &StoredEvent) -> [u32; 3],
) -> Packed {
    let mut out = Vec::with_capacity(events.len() * 24);
    let mut facts = Vec::new();
    let mut before = Before::START;
    let mut senders = Senders::new();
    let mut last_place = [(u32::MAX, 0usize); SENDER_SLOTS];
    for (i, e) in events.iter().enumerate() {
        let [sender, event_type, state_key] = numbers(i, e);
        let text_as_before = e.text.block == before.text.block
            && u64::from(e.text.offset) == before.text_end()
            && e.text.len == before.text.len;
        debug_assert_eq!(u64::from(e.links_at), before.links_end, "a block's links are its events', in order");
        let own = e.links_in(links);
        let (prevs, auth_at) = own.split_at(usize::from(e.n_prev));
        let auth_at = auth_at.first().map(|a| i64::from(a.0));
        let slot = sender as usize % SENDER_SLOTS;
        let same_sender_auth = Some(last_place[slot])
            .filter(|(s, p)| *s == sender && Some(senders.places[*p].1) == auth_at)
            .map(|(_, p)| p);
        let prev_is_first = prevs.first().is_some_and(|p| p.0 == e.first_prev_ix);
        let counts = [e.id_len, e.n_prev, e.n_auth, e.pdu_prev_count];
        let same_counts = counts == before.counts;
        let same_state_before = e.state_before.0 == before.state_before;
        let first_prev_before = e.idx.0.checked_sub(1).is_some_and(|p| p == e.first_prev_ix);
        let flags = [
            (e.outlier, OUTLIER),
            (e.soft_failed, SOFT_FAILED),
            (e.status == EventStatus::Rejected, REJECTED),
            (e.redacted_on_receipt, REDACTED_ON_RECEIPT),
            (e.recheck_redaction, RECHECK_REDACTION),
            (e.state_key.is_some(), STATE_KEY),
            (e.key.is_some(), KEY),
            (e.auth_node_plus_one.is_some(), AUTH_NODE),
            (first_prev_before, FIRST_PREV_BEFORE),
            (e.first_prev_ix != u32::MAX && !first_prev_before, FIRST_PREV),
            (text_as_before, TEXT_AS_BEFORE),
            (prev_is_first, PREV_IS_FIRST),
            (e.state_after == e.state_before, SAME_STATE),
            (same_counts, SAME_COUNTS),
            (same_sender_auth.is_some(), SAME_SENDER_AUTH),
            (same_state_before, SAME_STATE_BEFORE),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .fold(0, |f, (_, bit)| f | bit);
        put(&mut out, flags);
        if !text_as_before {
            put(&mut out, e.text.block.into());
            put(&mut out, e.text.offset.into());
            put(&mut out, e.text.len.into());
        }
        if !same_counts {
            out.extend_from_slice(&counts);
        }
        if e.first_prev_ix != u32::MAX && !first_prev_before {
            put_change(&mut out, e.idx.0.into(), e.first_prev_ix.into());
        }
        for p in &prevs[usize::from(prev_is_first)..] {
            put_change(&mut out, e.idx.0.into(), p.0.into());
        }
        match (same_sender_auth, auth_at) {
            (Some(p), _) => put(&mut out, p as u64),
            (None, Some(a)) => {
                put(&mut out, sender.into());
                put_change(&mut out, a, before.auth_at);
                last_place[slot] = (sender, senders.push(sender.into(), a));
            }
            (None, None) => put(&mut out, sender.into()),
        }
        let auth_at = auth_at.unwrap_or(before.auth_at);
        put(&mut out, event_type.into());
        if e.state_key.is_some() {
            put(&mut out, state_key.into());
        }
        if let Some(k) = e.key {
            put(&mut out, k.0.into());
        }
        put_change(&mut out, e.depth, before.depth);
        put_change(&mut out, e.origin_server_ts, before.ts);
        if !same_state_before {
            put_change(&mut out, e.state_before.0.into(), before.state_before.into());
        }
        if e.state_after != e.state_before {
            put_change(&mut out, e.state_after.0.into(), e.state_before.0.into());
        }
        if let Some(n) = e.auth_node_plus_one {
            put(&mut out, n.get().into());
        }
        if !matches!(e.facts, Facts::None) {
            facts.push((u8::try_from(i).expect("a block holds at most 256 events"), e.facts.clone()));
        }
        before = Before::after(e, auth_at);
    }
    let (once, at) = facts_once(facts);
    Packed { bytes: out.into_boxed_slice(), paged: false, facts: once, facts_at: at }
}

/// One event's fields as packed, its names as their numbers.
struct Fields {
    flags: u64,
    text: TextRef,
    links_at: u32,
    auth_at: i64,
    counts: [u8; 4],
    first_prev_ix: u32,
    names: [u64; 3],
    key: Option<super::StateKeyIdx>,
    depth: i64,
    ts: i64,
    state_before: StateSetId,
    state_after: StateSetId,
    auth_node_plus_one: Option<std::num::NonZeroU32>,
}

impl Fields {
    /// The next event's fields (event `idx`, after `before` and the block's
    /// `senders` so far), its links appended to `links`.
    fn read(r: &mut Reader<'_>, before: &Before, senders: &mut Senders, idx: u32, links: &mut Vec<EventIdx>) -> Fields {
        let flags = r.next();
        let on = |bit: u64| flags & bit != 0;
        let text = if on(TEXT_AS_BEFORE) {
            TextRef { offset: narrow(before.text_end()), ..before.text }
        } else {
            TextRef { block: r.u32(), offset: r.u32(), len: r.u32() }
        };
        let links_at = narrow(before.links_end);
        let counts = if on(SAME_COUNTS) { before.counts } else { r.four() };
        let back = |r: &mut Reader<'_>| narrow(i64::from(idx).wrapping_sub(r.change()) as u64);
        let first_prev_ix = if on(FIRST_PREV_BEFORE) {
            idx - 1
        } else if on(FIRST_PREV) {
            back(r)
        } else {
            u32::MAX
        };
        let [_, n_prev, n_auth, _] = counts;
        for k in 0..n_prev {
            links.push(EventIdx(if k == 0 && on(PREV_IS_FIRST) { first_prev_ix } else { back(r) }));
        }
        let (sender, auth_at) = if on(SAME_SENDER_AUTH) {
            let (sender, at) = senders.get(r.next());
            (sender, Some(at))
        } else {
            let sender = r.next();
            let at = (n_auth > 0).then(|| before.auth_at.wrapping_add(r.change()));
            if let Some(a) = at {
                senders.push(sender, a);
            }
            (sender, at)
        };
        links.extend(auth_at.map(|a| EventIdx(narrow(a as u64))));
        let auth_at = auth_at.unwrap_or(before.auth_at);
        let event_type = r.next();
        let state_key = if on(STATE_KEY) { r.next() } else { 0 };
        let key = on(KEY).then(|| super::StateKeyIdx(r.u32()));
        let depth = before.depth.wrapping_add(r.change());
        let ts = before.ts.wrapping_add(r.change());
        let state_before = if on(SAME_STATE_BEFORE) {
            StateSetId(before.state_before)
        } else {
            StateSetId(narrow(i64::from(before.state_before).wrapping_add(r.change()) as u64))
        };
        let state_after = if on(SAME_STATE) {
            state_before
        } else {
            StateSetId(narrow(i64::from(state_before.0).wrapping_add(r.change()) as u64))
        };
        let auth_node_plus_one = if on(AUTH_NODE) { std::num::NonZeroU32::new(r.u32()) } else { None };
        Fields {
            flags,
            text,
            links_at,
            auth_at,
            counts,
            first_prev_ix,
            names: [sender, event_type, state_key],
            key,
            depth,
            ts,
            state_before,
            state_after,
            auth_node_plus_one,
        }
    }

    /// What the event after this one is packed against.
    fn before_next(&self) -> Before {
        let [_, n_prev, n_auth, _] = self.counts;
        Before {
            text: self.text,
            counts: self.counts,
            links_end: u64::from(self.links_at) + u64::from(super::links_len(n_prev, n_auth)),
            auth_at: self.auth_at,
            depth: self.depth,
            ts: self.ts,
            state_before: self.state_before.0,
        }
    }

    fn event(self, idx: u32, names: &NameTable, facts: Facts) -> StoredEvent {
        let on = |bit: u64| self.flags & bit != 0;
        let [id_len, n_prev, n_auth, pdu_prev_count] = self.counts;
        let [sender, event_type, state_key] = self.names;
        StoredEvent {
            idx: EventIdx(idx),
            text: self.text,
            links_at: self.links_at,
            id_len,
            n_prev,
            n_auth,
            pdu_prev_count,
            outlier: on(OUTLIER),
            soft_failed: on(SOFT_FAILED),
            status: if on(REJECTED) { EventStatus::Rejected } else { EventStatus::Accepted },
            redacted_on_receipt: on(REDACTED_ON_RECEIPT),
            recheck_redaction: on(RECHECK_REDACTION),
            first_prev_ix: self.first_prev_ix,
            sender: names.name(sender),
            event_type: names.name(event_type),
            state_key: on(STATE_KEY).then(|| names.name(state_key)),
            key: self.key,
            depth: self.depth,
            origin_server_ts: self.ts,
            facts,
            state_before: self.state_before,
            state_after: self.state_after,
            auth_node_plus_one: self.auth_node_plus_one,
        }
    }
}

/// Reads a packed block back (the events from `first` on), and their links.
/// The bytes are the room's own, written by [`pack`]: a wrong byte is a
/// bug, and panics.
pub(super) fn unpack(p: &Packed, first: u32, len: usize, names: &NameTable) -> (Vec<StoredEvent>, Vec<EventIdx>) {
    debug_assert!(!p.paged, "a paged block is read from its row");
    unpack_bytes(&p.bytes, p, first, len, names)
}

/// The events packed in some bytes, read one after the other: each against
/// the one before (most fields are its change) and the block's senders so
/// far. The bytes are the room's own (a row of the page store is checked
/// against its key first): a wrong byte is a bug, and panics.
struct Decoder<'a> {
    r: Reader<'a>,
    before: Before,
    senders: Senders,
}

impl<'a> Decoder<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { r: Reader { bytes, at: 0 }, before: Before::START, senders: Senders::new() }
    }

    /// The next event's fields (it is event `idx`), its links appended to
    /// `links`.
    fn next(&mut self, idx: u32, links: &mut Vec<EventIdx>) -> Fields {
        let fields = Fields::read(&mut self.r, &self.before, &mut self.senders, idx, links);
        self.before = fields.before_next();
        fields
    }
}

/// Reads a block packed as `bytes` back (the events from `first` on), its
/// facts those of `p`, and their links.
pub(super) fn unpack_bytes(
    bytes: &[u8],
    p: &Packed,
    first: u32,
    len: usize,
    names: &NameTable,
) -> (Vec<StoredEvent>, Vec<EventIdx>) {
    let mut d = Decoder::new(bytes);
    let mut facts = p.facts_at.iter().peekable();
    let mut events = Vec::with_capacity(len);
    let mut links = Vec::with_capacity(2 * len);
    for i in 0..len {
        let idx = first + u32::try_from(i).expect("a block holds fewer than 2^32 events");
        let fields = d.next(idx, &mut links);
        let facts = facts
            .next_if(|(at, _)| usize::from(*at) == i)
            .map_or(Facts::None, |(_, k)| p.facts[usize::from(*k)].clone());
        events.push(fields.event(idx, names, facts));
    }
    debug_assert_eq!(d.r.at, bytes.len(), "a packed block is read to its end");
    (events, links)
}

/// Reads the `k`th event packed in `p` back alone (the events before it
/// are read, not built): `index(j)` is the index of the `j`th event packed
/// (the block's events, or its state events alone once paged), `at(k)`
/// where the `k`th is in its block (its facts).
pub(super) fn unpack_nth(
    p: &Packed,
    index: impl Fn(usize) -> u32,
    k: usize,
    at: usize,
    names: &NameTable,
) -> StoredEvent {
    let mut d = Decoder::new(&p.bytes);
    let mut links = Vec::new();
    for j in 0..k {
        d.next(index(j), &mut links);
        links.clear();
    }
    d.next(index(k), &mut links).event(index(k), names, p.facts_of(at))
}

/// Reads the `n` events packed in `p` back (`index(j)` the index of the
/// `j`th: a paged block's state events, packed alone), without their facts
/// or links (a room image writes their records).
pub(super) fn unpack_alone(p: &Packed, index: impl Fn(usize) -> u32, n: usize, names: &NameTable) -> Vec<StoredEvent> {
    let mut d = Decoder::new(&p.bytes);
    let mut links = Vec::new();
    (0..n)
        .map(|j| {
            let fields = d.next(index(j), &mut links);
            links.clear();
            fields.event(index(j), names, Facts::None)
        })
        .collect()
}

/// Reads event `at` of a packed block back alone (the block's events
/// from `first` on): the events before it are read, not built.
pub(super) fn unpack_one(p: &Packed, first: u32, at: usize, names: &NameTable) -> StoredEvent {
    debug_assert!(!p.paged, "a paged block's state events are packed alone");
    let index = |j: usize| first + u32::try_from(j).expect("a block holds fewer than 2^32 events");
    unpack_nth(p, index, at, at, names)
}

fn narrow(v: u64) -> u32 {
    u32::try_from(v).expect("packed from a u32")
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn next(&mut self) -> u64 {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let b = self.bytes[self.at];
            self.at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return v;
            }
            shift += 7;
        }
    }

    fn u32(&mut self) -> u32 {
        narrow(self.next())
    }

    fn change(&mut self) -> i64 {
        let z = self.next();
        ((z >> 1) as i64) ^ -((z & 1) as i64)
    }

    fn four(&mut self) -> [u8; 4] {
        let b = [self.bytes[self.at], self.bytes[self.at + 1], self.bytes[self.at + 2], self.bytes[self.at + 3]];
        self.at += 4;
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo room's events, each with its own links.
    fn demo_events() -> Vec<(StoredEvent, Vec<EventIdx>)> {
        let room = serde_json::to_vec(&crate::demo::demo_room(700)).unwrap();
        let replay = crate::conformance::replay(&room[..]).unwrap();
        let t = replay.room.events();
        t.iter()
            .map(|e| {
                let e = e.unwrap();
                let links = t.links_of(&e).unwrap().to_vec();
                (e.into_owned(), links)
            })
            .collect()
    }

    /// `events` as a block: each event's `links_at` where its links are in
    /// the block's, and those links.
    fn as_block(events: &[(StoredEvent, Vec<EventIdx>)]) -> (Vec<StoredEvent>, Vec<EventIdx>) {
        let mut links = Vec::new();
        let block = events
            .iter()
            .map(|(e, own)| {
                let e = StoredEvent { links_at: links.len() as u32, ..e.clone() };
                links.extend_from_slice(own);
                e
            })
            .collect();
        (block, links)
    }

    /// Every field of every event, and its links, read back as they were
    /// packed, whatever the block size (the demo room has forks, a
    /// rejection, a redaction, outliers, state and content facts).
    #[test]
    fn a_packed_block_reads_back_every_field() {
        let events = demo_events();
        assert!(events.len() > 600);
        assert!(events.iter().any(|(e, _)| e.status == EventStatus::Rejected));
        assert!(events.iter().any(|(e, _)| e.state_key.is_some() && !matches!(e.facts, Facts::None)));
        assert!(events.iter().any(|(e, _)| e.n_prev > 1), "merges");
        // A block's sender again with its auth list, and with another.
        let auth = |(e, l): &(StoredEvent, Vec<EventIdx>)| (e.sender.clone(), l.get(usize::from(e.n_prev)).copied());
        let again = |same: bool| {
            events.chunks(256).any(|b| {
                (1..b.len()).any(|i| {
                    let (sender, list) = auth(&b[i]);
                    b[..i].iter().map(auth).any(|(s, l)| s == sender && (l == list) == same)
                })
            })
        };
        assert!(again(true) && again(false));
        let mut names = NameTable::default();
        for size in [1, 7, 100, 256] {
            for (b, chunk) in events.chunks(size).enumerate() {
                let (block, links) = as_block(chunk);
                let p = pack(&block, &links, &mut names);
                let back = unpack(&p, (b * size) as u32, block.len(), &names);
                assert_eq!(format!("{:?}", (&block, &links)), format!("{back:?}"), "block {b} of {size}");
                for (i, e) in block.iter().enumerate() {
                    let one = unpack_one(&p, (b * size) as u32, i, &names);
                    assert_eq!(format!("{e:?}"), format!("{one:?}"), "event {i} of block {b} of {size}, alone");
                }
            }
        }
        let (block, links) = as_block(&events[..256]);
        let p = pack(&block, &links, &mut names);
        assert!(p.size() * 4 < 256 * std::mem::size_of::<StoredEvent>(), "packed: {} bytes", p.size());
        // The room's shared membership facts are held once a block.
        let with_facts = block.iter().filter(|e| !matches!(e.facts, Facts::None)).count();
        assert!(p.distinct_facts() < with_facts, "{} facts held for {with_facts}", p.distinct_facts());
    }

    /// Senders whose numbers share a slot of the packer's cache (0, 64 and
    /// 128 in turn) read back as they were, with their links.
    #[test]
    fn senders_sharing_a_slot_read_back() {
        let (block, links) = as_block(&demo_events()[..200]);
        let mut names = NameTable::default();
        let all: Vec<Name> = (0..3 * SENDER_SLOTS).map(|i| Name::new(&format!("@u{i}:x"))).collect();
        all.iter().for_each(|n| assert_eq!(names.number(n) as usize, names.names.len() - 1));
        let other = names.number(&Name::new("m.room.message"));
        let sender_of = |i: usize| (i % 3 * SENDER_SLOTS) as u32;
        let p = pack_numbered(&block, &links, |i, _| [sender_of(i), other, other]);
        let (back, back_links) = unpack(&p, 0, block.len(), &names);
        assert_eq!(back_links, links);
        for (i, e) in back.iter().enumerate() {
            assert_eq!(e.sender, all[sender_of(i) as usize], "event {i}");
            assert_eq!((e.depth, e.state_after), (block[i].depth, block[i].state_after), "event {i}");
        }
    }

    /// Extreme values (any `i64` depth and timestamp, the largest numbers a
    /// field holds, changes that wrap, 255 prev events) read back exactly.
    #[test]
    fn extreme_values_read_back() {
        let (base, _) = demo_events().into_iter().find(|(e, _)| e.state_key.is_some() && e.key.is_some()).unwrap();
        let mut block = Vec::new();
        for (i, (depth, ts)) in
            [(i64::MIN, i64::MAX), (i64::MAX, i64::MIN), (0, -1), (-5, 0), (i64::MAX, i64::MAX)].into_iter().enumerate()
        {
            let mut e = base.clone();
            e.idx = EventIdx(u32::MAX - 10 + i as u32);
            e.depth = depth;
            e.origin_server_ts = ts;
            e.first_prev_ix = if i % 2 == 0 { 0 } else { u32::MAX };
            e.state_before = StateSetId(if i % 2 == 0 { u32::MAX } else { 0 });
            e.state_after = StateSetId(if i == 1 { u32::MAX } else { e.state_before.0 });
            e.auth_node_plus_one = std::num::NonZeroU32::new(if i == 2 { u32::MAX } else { 0 });
            e.key = Some(super::super::StateKeyIdx(u32::MAX - i as u32));
            e.text = TextRef { block: u32::MAX - 1, offset: u32::MAX - 100, len: 7 };
            // 255 prev events (the first the first prev event, or not), or
            // two and an auth list at either end of the arena.
            let links: Vec<EventIdx> = if i % 2 == 0 {
                e.n_prev = 255;
                e.n_auth = 0;
                (0..255u32).map(|k| EventIdx(if k % 2 == i as u32 / 2 % 2 { 0 } else { u32::MAX - k })).collect()
            } else {
                e.n_prev = 2;
                e.n_auth = 3;
                vec![EventIdx(u32::MAX), EventIdx(1), EventIdx(if i == 1 { u32::MAX } else { 0 })]
            };
            block.push((e, links));
        }
        let (block, links) = as_block(&block);
        let mut names = NameTable::default();
        let p = pack(&block, &links, &mut names);
        let back = unpack(&p, u32::MAX - 10, block.len(), &names);
        assert_eq!(format!("{:?}", (&block, &links)), format!("{back:?}"));
    }
}
