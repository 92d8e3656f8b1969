//! The event IDs of a full block of the event table, as one row of the page
//! store ([`Table::Ids`](crate::pages::Table::Ids)).
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

use super::EVENTS_CHUNK;

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
pub(super) fn key(row: &[u8]) -> [u8; 16] {
    Sha256::digest(row)[..16].try_into().expect("16 of 32 bytes")
}

/// A key as the store's row key (hex).
pub(super) fn key_text(key: &[u8; 16]) -> String {
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
