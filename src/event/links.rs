//! Each event's links: its prev events, and where its auth list is. Auth
//! lists are stored once and shared (most events of one sender under one
//! power levels list the same create, power levels and membership events),
//! found again through a cache of recent lists by hash, in an append-only
//! arena of `LINK_BLOCK` references a block.
//!
//! The links themselves live with their block of the event table (an
//! event's `links_at` is where they start in its block's): the open block's
//! in `Events::tail_links`, a full block's with its built events, and a
//! packed block's in its packed bytes (a message's first prev event, the
//! event before, costs nothing there), its state events' also apart
//! (`Block::state_links`), so that the auth checks and state resolution
//! read a state event's auth events without building its block.

use super::{Events, StoredEvent, EVENTS_CHUNK};
use crate::ids::EventIdx;
use crate::pages::PageError;

/// References per auth-list arena block.
pub(super) const LINK_BLOCK: usize = 1 << 16;
/// Slots of the cache of recent auth lists: half the events stored, a
/// power of two between these (4 KiB to 1 MiB; it was 256 KiB for every
/// room). A room's auth lists are mostly its senders' (create, power
/// levels, their membership): more members, more lists in use at once.
pub(super) const AUTH_CACHE_MIN: usize = 1 << 10;
pub(super) const AUTH_CACHE_MAX: usize = 1 << 18;

impl Events {
    /// Stores the links of the event prepared next (its prev events, then
    /// where its auth list is, if it has one) with the open block's, and
    /// returns where they start there.
    pub(super) fn push_links(&mut self, prev: &[EventIdx], auth: &[EventIdx]) -> u32 {
        let auth_at = (!auth.is_empty()).then(|| EventIdx(self.auth_list(auth)));
        if self.tail_links.capacity() == 0 {
            // Most events have one prev event and auth events.
            self.tail_links.reserve_exact(2 * EVENTS_CHUNK);
        }
        let at = u32::try_from(self.tail_links.len()).expect("a block's links are fewer than 2^32");
        self.tail_links.extend_from_slice(prev);
        self.tail_links.extend(auth_at);
        at
    }

    /// Where `auth` is in the auth-list arena: a list stored recently, or
    /// stored now.
    pub(super) fn auth_list(&mut self, auth: &[EventIdx]) -> u32 {
        use std::hash::Hasher;
        let mut h = crate::ids::IntHasher::default();
        auth.iter().for_each(|a| h.write_u32(a.0));
        let slots = (self.len / 2).next_power_of_two().clamp(AUTH_CACHE_MIN, AUTH_CACHE_MAX);
        if self.auth_cache.len() < slots {
            // Grown by tiling: both lengths are powers of two, so a list's
            // new slot `h % slots` holds what its old slot `h % old` held.
            let old = std::mem::take(&mut self.auth_cache);
            self.auth_cache = match old.len() {
                0 => vec![u32::MAX; slots],
                n => (0..slots).map(|i| old[i % n]).collect(),
            };
        }
        let slot = (h.finish() >> 32) as usize % self.auth_cache.len();
        let cached = self.auth_cache[slot];
        if cached != u32::MAX && refs_at(&self.auth_lists, cached, auth.len()) == Some(auth) {
            return cached;
        }
        let at = push_refs(&mut self.auth_lists, &[auth]);
        self.auth_cache[slot] = at;
        at
    }

    /// An event's links: those of its block (built again if it is packed
    /// and `e` is a copy read in a walk), or a packed block's state event's,
    /// kept apart.
    ///
    /// # Errors
    /// `e` is a copy of an event of a block not built, whose row the page
    /// store failed to read back.
    pub(super) fn links_of(&self, e: &StoredEvent) -> Result<&[EventIdx], PageError> {
        if e.links_len() == 0 {
            return Ok(&[]);
        }
        let b = e.idx.ix() / EVENTS_CHUNK;
        let links = match self.blocks.get(b) {
            None => &self.tail_links[..],
            // A packed block's state events read their links apart, even
            // while it is built (one built alone has its place there).
            Some(blk) if e.key.is_some() && blk.packed.is_some() => {
                return Ok(blk.state_links(e.idx.ix() % EVENTS_CHUNK))
            }
            Some(blk) => match blk.built.get() {
                Some(built) => &built.links[..],
                None => &self.built_block(b)?.links[..],
            },
        };
        Ok(e.links_in(links))
    }

    /// An event's `prev_events`, in PDU order.
    ///
    /// # Errors
    /// `e` is a copy of an event of a block not built, whose row the page
    /// store failed to read back (never for an event read by reference from
    /// the table, whose links are held).
    pub fn prev_events(&self, e: &StoredEvent) -> Result<&[EventIdx], PageError> {
        Ok(&self.links_of(e)?[..e.n_prev as usize])
    }

    /// An event's auth events, in PDU order (room v12: with the create
    /// event appended).
    ///
    /// # Errors
    /// As [`prev_events`](Self::prev_events).
    pub fn auth_events(&self, e: &StoredEvent) -> Result<&[EventIdx], PageError> {
        Ok(match self.links_of(e)?.get(e.n_prev as usize) {
            None => &[],
            Some(at) => refs_at(&self.auth_lists, at.0, e.n_auth as usize).expect("an event's auth list is stored"),
        })
    }

    /// Calls `f` with every event in order, its prev events and its auth
    /// events, read block by block (a packed block not built is read into
    /// a copy, not built: a walk over the room does not keep it built).
    ///
    /// # Errors
    /// The page store failed to read a block back, or `f` failed.
    pub fn walk<E: From<PageError>>(
        &self,
        mut f: impl FnMut(&StoredEvent, &[EventIdx], &[EventIdx]) -> Result<(), E>,
    ) -> Result<(), E> {
        for block in self.walk_blocks(0) {
            let (events, links) = block?;
            for e in events.iter() {
                let own = e.links_in(&links);
                let (prev, auth_at) = own.split_at(usize::from(e.n_prev));
                let auth = match auth_at.first() {
                    None => &[][..],
                    Some(at) => {
                        refs_at(&self.auth_lists, at.0, e.n_auth as usize).expect("an event's auth list is stored")
                    }
                };
                f(e, prev, auth)?;
            }
        }
        Ok(())
    }

    /// A state event's auth events ([`auth_events`](Self::auth_events)),
    /// or those of an event read by reference from the table or prepared
    /// next: their links are held (a packed block's state events' apart,
    /// a built block's with it), so this reads no row.
    ///
    /// # Panics
    /// If `e` is a copy of an event that is not a state event, of a block
    /// not built, whose row cannot be read back.
    pub fn held_auth_events(&self, e: &StoredEvent) -> &[EventIdx] {
        self.auth_events(e).expect("a state event's links, or a held event's, are read without the page store")
    }

    /// A held event's `prev_events` (as [`held_auth_events`](Self::held_auth_events)).
    ///
    /// # Panics
    /// As [`held_auth_events`](Self::held_auth_events).
    pub fn held_prev_events(&self, e: &StoredEvent) -> &[EventIdx] {
        self.prev_events(e).expect("a state event's links, or a held event's, are read without the page store")
    }
}

/// `n` references at `at` of a reference arena, if there.
pub(super) fn refs_at(arena: &[Vec<EventIdx>], at: u32, n: usize) -> Option<&[EventIdx]> {
    let at = at as usize;
    arena.get(at / LINK_BLOCK)?.get(at % LINK_BLOCK..at % LINK_BLOCK + n)
}

/// Appends `parts` to a reference arena (`LINK_BLOCK` a block, a list never
/// split over two), returning where they start.
pub(super) fn push_refs(arena: &mut Vec<Vec<EventIdx>>, parts: &[&[EventIdx]]) -> u32 {
    let need: usize = parts.iter().map(|p| p.len()).sum();
    if arena.last().is_none_or(|b| b.capacity() - b.len() < need) {
        arena.push(Vec::with_capacity(need.max(LINK_BLOCK)));
    }
    let block = arena.len() - 1;
    let b = arena.last_mut().expect("just ensured");
    let at = (block * LINK_BLOCK + b.len()) as u32;
    parts.iter().for_each(|p| b.extend_from_slice(p));
    at
}
