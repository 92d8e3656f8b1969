//! The texts an event reads back as: its ID ([`IdText`]) and its PDU
//! ([`PduText`]), borrowed from the room, from a decompressed group or from
//! a row of the page store.

use std::sync::Arc;

/// An event's ID: borrowed from the room, or a slice of a row read back
/// from the page store. Reads as a `&str` (and `to_owned` gives a `String`).
#[derive(Debug)]
pub enum IdText<'a> {
    /// Held by the room.
    Held(&'a str),
    /// In its block's row of IDs.
    Row(Arc<str>, std::ops::Range<usize>),
}

impl std::ops::Deref for IdText<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            IdText::Held(s) => s,
            IdText::Row(row, at) => &row[at.clone()],
        }
    }
}

impl PartialEq for IdText<'_> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for IdText<'_> {}

impl PartialOrd for IdText<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for IdText<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (**self).cmp(&**other)
    }
}

impl PartialEq<str> for IdText<'_> {
    fn eq(&self, other: &str) -> bool {
        **self == *other
    }
}

impl PartialEq<&str> for IdText<'_> {
    fn eq(&self, other: &&str) -> bool {
        **self == **other
    }
}

impl std::fmt::Display for IdText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

impl serde::Serialize for IdText<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self)
    }
}

/// An event's PDU text: borrowed from the group being filled, or shared
/// from a group decompressed or from the page cache. Reads as a `&str`.
#[derive(Clone, Debug)]
pub enum PduText<'a> {
    /// In the group of PDUs being filled (without a page store).
    Held(&'a str),
    /// From the page store.
    Paged(Arc<str>),
    /// A slice of a group of PDUs held compressed (without a page store).
    Grouped(Arc<String>, std::ops::Range<usize>),
}

impl std::ops::Deref for PduText<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            PduText::Held(s) => s,
            PduText::Paged(s) => s,
            PduText::Grouped(group, at) => &group[at.clone()],
        }
    }
}

impl PartialEq<str> for PduText<'_> {
    fn eq(&self, other: &str) -> bool {
        **self == *other
    }
}
