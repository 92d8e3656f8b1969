//! Where each event's ID is: in the text arena (every ID without a page
//! store; with one, those of state events), with the IDs of its block until
//! the block is settled (`Events::recent`), or in its full block's row of
//! IDs in the page store ([`Table::Ids`](crate::pages::Table::Ids)).
//!
//! With a page store, the event IDs are most of what a room holds per event
//! (44 bytes of 150 at Matrix HQ's size), and those of messages are read
//! rarely: to answer with an event's ID or read its PDU (whose row is keyed
//! by ID), and to tell apart two IDs of one 32-bit hash in the ID index. So
//! once a block is full and its batch stored, its IDs are written as a row
//! ([`super::Events::trim`]); the room keeps those of its state events
//! (read all over the room by auth checks and state resolution, and answered
//! by `/state_ids`) and reads the others back through the page cache.
//!
//! A row is text: the length of each of the block's IDs as two hex digits,
//! then the IDs one after the other. Its key is a hash of the row, so a row
//! is never overwritten with other IDs: a room restored beside the one it
//! replaces, or a block cut back by a rollback and filled again, writes
//! rows of its own.

use sha2::{Digest, Sha256};

use super::{Events, IdText, StoredEvent, TextRef, EVENTS_CHUNK, TEXT_BLOCK};
use crate::pages::{PageError, Table};

/// A [`super::TextRef`]'s block for an ID in the block's row.
pub(super) const PAGED: u32 = u32::MAX;
/// A [`super::TextRef`]'s block for an ID held in `Events::recent` (its
/// block's row is not written yet); the offset is in its block's string.
pub(super) const RECENT: u32 = u32::MAX - 1;

/// Bytes of a row's header: two hex digits an event.
const HEADER: usize = 2 * EVENTS_CHUNK;

/// The row of a full block whose IDs, in order, are `ids` one after the
/// other, of lengths `lens`.
pub(super) fn row(ids: &str, lens: impl Iterator<Item = u8>) -> String {
    let mut row = String::with_capacity(HEADER + ids.len());
    for len in lens {
        push_hex(&mut row, len);
    }
    debug_assert_eq!(row.len(), HEADER, "a full block's row");
    row.push_str(ids);
    row
}

/// A row's key (the first 16 bytes of its SHA-256): rows of IDs, and of
/// packed blocks ([`Table::Blocks`](crate::pages::Table::Blocks)).
pub(crate) fn key(row: &[u8]) -> [u8; 16] {
    Sha256::digest(row)[..16].try_into().expect("16 of 32 bytes")
}

/// A key as the store's row key (hex).
pub(crate) fn key_text(key: &[u8; 16]) -> String {
    let mut text = String::with_capacity(32);
    key.iter().for_each(|b| push_hex(&mut text, *b));
    text
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `b` as two lowercase hex digits.
fn push_hex(s: &mut String, b: u8) {
    s.push(char::from(HEX[usize::from(b >> 4)]));
    s.push(char::from(HEX[usize::from(b & 15)]));
}

/// The value of a lowercase hex digit (what [`push_hex`] writes).
fn hex_digit(d: u8) -> Option<usize> {
    match d {
        b'0'..=b'9' => Some(usize::from(d - b'0')),
        b'a'..=b'f' => Some(usize::from(d - b'a' + 10)),
        _ => None,
    }
}

/// Where the ID of the block's event `at` is in `row`; `None` if the row
/// is not one [`row`] wrote for a full block.
pub(super) fn find(row: &str, at: usize) -> Option<std::ops::Range<usize>> {
    let header = row.as_bytes().get(..HEADER)?;
    let len_of = |k: usize| -> Option<usize> { Some(hex_digit(header[2 * k])? << 4 | hex_digit(header[2 * k + 1])?) };
    let mut start = HEADER;
    for k in 0..at {
        start += len_of(k)?;
    }
    let end = start + len_of(at)?;
    (end <= row.len() && row.is_char_boundary(start) && row.is_char_boundary(end)).then_some(start..end)
}

impl Events {
    /// Stores an event's ID, and its PDU when there is no page store (in
    /// [`pdu_groups`], compressed with its neighbours).
    pub(super) fn push_text(&mut self, id: &str, raw: &str, state: bool) -> TextRef {
        if self.pdus.is_some() {
            // Paged: the PDU went to the store, the ID is held with its
            // block's until the block's row is written.
            let tail = self.tail_ids();
            if tail.capacity() == 0 {
                tail.reserve_exact(EVENTS_CHUNK * id.len());
            }
            let offset = tail.len();
            tail.push_str(id);
            return TextRef { block: RECENT, offset: offset as u32, len: id.len() as u32 };
        }
        debug_assert_eq!(self.groups.len(), self.len, "the PDU of the event prepared next");
        self.groups.push(raw, state);
        push_arena(&mut self.text, id)
    }

    /// The tail's IDs (with a page store).
    pub(super) fn tail_ids(&mut self) -> &mut String {
        let at = self.blocks.len() - self.settled_to;
        if self.recent.len() <= at {
            self.recent.resize(at + 1, String::new());
        }
        &mut self.recent[at]
    }

    /// With a page store: writes the IDs of each full block not held
    /// ([`hold`](Self::hold)) as a row of the store, and keeps those of
    /// its state events only (in the text arena). A block whose row cannot
    /// be written keeps its IDs (tried again at the next call).
    ///
    /// # Errors
    /// The store failed to write a row.
    pub fn settle_ids(&mut self) -> Result<(), PageError> {
        let Some(pages) = self.pdus.as_mut() else { return Ok(()) };
        let upto = (self.hold_from.unwrap_or(self.len) / EVENTS_CHUNK).min(self.blocks.len());
        while self.settled_to < upto {
            let b = self.settled_to;
            // Blocks are packed once settled: this one is built.
            let events = &mut self.blocks[b].built.get_mut().expect("a block not settled is built").events;
            let ids = &self.recent[0];
            let row = row(ids, events.iter().map(|e| e.id_len));
            let key = key(row.as_bytes());
            pages.put_row(Table::Ids, &key_text(&key), row.as_bytes())?;
            for e in events.iter_mut() {
                e.text = if e.key.is_some() {
                    let at = e.text.offset as usize;
                    push_arena(&mut self.text, &ids[at..at + usize::from(e.id_len)])
                } else {
                    TextRef::PAGED
                };
            }
            self.recent.pop_front();
            self.row_keys.push(key);
            self.settled_to += 1;
        }
        Ok(())
    }

    /// With a page store: the events before this one are in settled
    /// blocks (their IDs in rows; a rollback never reaches them). Without
    /// one, none is.
    pub fn settled_len(&self) -> usize {
        if self.pdus.is_some() {
            self.settled_to * EVENTS_CHUNK
        } else {
            0
        }
    }

    pub(super) fn text_of(&self, e: &StoredEvent) -> &str {
        let b = &self.text[e.text.block as usize];
        &b[e.text.offset as usize..(e.text.offset + e.text.len) as usize]
    }

    /// An event's ID, read from its block's row if the room does not hold
    /// it ([`id_rows`]: an event that is not a state event, in a full
    /// block, with a page store).
    ///
    /// # Errors
    /// The page store failed to read the row back, or it is corrupt.
    pub fn id(&self, e: &StoredEvent) -> Result<IdText<'_>, PageError> {
        if let Some(id) = self.held_id(e) {
            return Ok(IdText::Held(id));
        }
        let b = e.idx.ix() / EVENTS_CHUNK;
        let key = || key_text(&self.row_keys[b]);
        let pages = self.pdus.as_ref().expect("IDs are paged with a page store");
        let row = pages.get_row(Table::Ids, b as u32, key)?;
        match find(&row, e.idx.ix() % EVENTS_CHUNK) {
            Some(at) if at.len() == usize::from(e.id_len) => Ok(IdText::Row(row, at)),
            _ => Err(PageError::Corrupt { table: Table::Ids, key: key() }),
        }
    }

    /// The ID of event `i` ([`id`](Self::id)), read without building it
    /// when it is a state event of a packed block (an ID lookup confirms
    /// the event it finds by its ID, and a PDU's auth events are state
    /// events).
    ///
    /// # Errors
    /// As [`id`](Self::id).
    ///
    /// # Panics
    /// If `i` is past the table.
    pub fn id_at(&self, i: usize) -> Result<IdText<'_>, PageError> {
        match self.packed_state_id(i) {
            Some(id) => Ok(IdText::Held(id)),
            None => self.id(self.event(i)?),
        }
    }

    /// The ID of an event whose ID the room always holds: a state event,
    /// or one stored since the last [`trim`](Self::trim) (or in a batch
    /// held since: [`hold`](Self::hold)), such as one just prepared.
    ///
    /// # Panics
    /// If `e` is none of those and its ID is paged.
    pub fn resident_id(&self, e: &StoredEvent) -> &str {
        self.held_id(e).expect("a state event's ID, or a new event's, is held")
    }

    /// The ID of state event `i`, or of an event stored since the last
    /// [`trim`](Self::trim) (as [`resident_id`](Self::resident_id)), read
    /// without building the state event when its block is packed: a
    /// `/state_ids` answer lists thousands.
    ///
    /// # Panics
    /// If `i` is past the table, or its ID is paged.
    pub fn state_id(&self, i: usize) -> &str {
        self.packed_state_id(i).unwrap_or_else(|| self.resident_id(self.state_event(i)))
    }

    /// An event's ID, when the room holds it.
    pub(super) fn held_id(&self, e: &StoredEvent) -> Option<&str> {
        match e.text.block {
            PAGED => None,
            RECENT => {
                let ids = &self.recent[e.idx.ix() / EVENTS_CHUNK - self.settled_to];
                let at = e.text.offset as usize;
                Some(&ids[at..at + usize::from(e.id_len)])
            }
            _ => Some(&self.text_of(e)[..e.id_len as usize]),
        }
    }
}

/// Appends an event ID to the text arena.
pub(super) fn push_arena(text: &mut Vec<String>, id: &str) -> TextRef {
    if text.last().is_none_or(|b| b.capacity() - b.len() < id.len()) {
        text.push(String::with_capacity(id.len().max(TEXT_BLOCK)));
    }
    let block = text.len() - 1;
    let b = text.last_mut().expect("just ensured");
    let offset = b.len();
    b.push_str(id);
    TextRef { block: block as u32, offset: offset as u32, len: id.len() as u32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_of_a_row_is_found_and_a_damaged_row_is_refused() {
        let ids: Vec<String> = (0..EVENTS_CHUNK).map(|i| format!("${}é", "x".repeat(i % 50))).collect();
        let row = row(&ids.concat(), ids.iter().map(|id| id.len() as u8));
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(&row[find(&row, i).unwrap()], id, "ID {i}");
        }
        assert_eq!(key(row.as_bytes()), key(row.clone().as_bytes()));
        assert_ne!(key(row.as_bytes()), key(row.replacen('x', "y", 1).as_bytes()));
        assert_eq!(key_text(&key(row.as_bytes())).len(), 32);
        // Cut short, a header that is not hex, a length splitting a character.
        assert_eq!(find(&row[..row.len() - 2], EVENTS_CHUNK - 1), None);
        assert_eq!(find(&row[..100], 0), None);
        assert_eq!(find(&format!("zz{}", &row[2..]), 0), None);
        let split = format!("{:02x}{}", ids[0].len() - 1, &row[2..]);
        assert_eq!(find(&split, 0), None);
    }
}
