//! The PDU texts of a room without a page store, compressed in groups.
//!
//! A room without a page store holds every PDU it keeps; most are never
//! read again (a replay answers with event IDs). Those read are read in
//! runs (`/backfill`, `/get_missing_events` walk consecutive messages) or
//! are state events, which `/state` and auth chains read from anywhere in
//! the room. So the PDUs are held in two sequences, state events' and the
//! others', each in groups of [`GROUP`] PDUs: a group is one text until it
//! is full, then compressed (LZ4, about 2.2× on PDUs: their keys, senders
//! and the IDs they cite repeat; hashes and signatures do not). A read of a
//! full group decompresses it into a small cache of the groups read last;
//! a `/state` answer touches state groups only (a fifth of a room's PDUs).
//!
//! Which sequence an event's PDU is in is a bit per event, and its place in
//! the sequence the number of state events before it (a count per 64
//! events plus the bits before it in its word).

use std::cell::RefCell;
use std::sync::Arc;

/// PDUs per group.
const GROUP: usize = 32;
/// Decompressed groups kept for reads (a group is about 20 KiB), and the
/// bytes they may hold together (PDUs can be 1 MiB each: the group read
/// last is kept whatever its size).
const CACHED: usize = 8;
const CACHED_BYTES: usize = 1 << 20;

/// A full group could not be decompressed (the room's memory was
/// overwritten: never expected).
#[derive(Debug)]
pub(super) struct Damaged;

/// The PDUs of a room's events, by event index.
#[derive(Debug, Default)]
pub(super) struct PduGroups {
    /// The PDUs of the events that are not state events, then of those
    /// that are, each in arrival order.
    seqs: [Sequence; 2],
    /// Bit `i % 64` of word `i / 64`: event `i` is a state event.
    state: Vec<u64>,
    /// State events before each word of `state`.
    state_before: Vec<u32>,
    len: usize,
    /// Full groups read last, most recent first.
    cache: RefCell<Vec<(GroupKey, Arc<String>)>>,
}

/// A full group: (sequence, group).
type GroupKey = (usize, usize);

/// PDUs one after the other, in groups.
#[derive(Debug, Default)]
struct Sequence {
    /// The full groups, compressed.
    sealed: Vec<Box<[u8]>>,
    /// The texts of the PDUs from `sealed.len() * GROUP` on.
    open: String,
    /// Each PDU's end in its group's text (its start is the end of the
    /// one before it in the group, or 0).
    ends: Vec<u32>,
}

impl Sequence {
    fn push(&mut self, raw: &str) {
        self.open.push_str(raw);
        self.ends.push(u32::try_from(self.open.len()).expect("a group's PDUs are under 4 GiB"));
        if self.ends.len() % GROUP == 0 {
            self.sealed.push(lz4_flex::block::compress_prepend_size(self.open.as_bytes()).into_boxed_slice());
            self.open.clear();
        }
    }

    /// Where PDU `n` is in its group's text.
    fn range(&self, n: usize) -> std::ops::Range<usize> {
        let start = if n % GROUP == 0 { 0 } else { self.ends[n - 1] as usize };
        start..self.ends[n] as usize
    }

    fn truncate(&mut self, len: usize) -> Result<(), Damaged> {
        if len >= self.ends.len() {
            return Ok(());
        }
        let group = len / GROUP;
        if group < self.sealed.len() {
            self.open = decompress(&self.sealed[group])?;
            self.sealed.truncate(group);
        }
        self.ends.truncate(len);
        self.open.truncate(if len % GROUP == 0 { 0 } else { self.ends[len - 1] as usize });
        Ok(())
    }

    /// (bytes held, bytes of PDU text held).
    fn footprint(&self) -> (usize, usize) {
        let held = self.sealed.iter().map(|g| g.len()).sum::<usize>()
            + self.sealed.capacity() * std::mem::size_of::<Box<[u8]>>()
            + self.open.capacity()
            + self.ends.capacity() * 4;
        let full: usize = (1..=self.sealed.len()).map(|g| self.ends[g * GROUP - 1] as usize).sum();
        (held, full + self.open.len())
    }
}

fn decompress(group: &[u8]) -> Result<String, Damaged> {
    let bytes = lz4_flex::block::decompress_size_prepended(group).map_err(|_| Damaged)?;
    String::from_utf8(bytes).map_err(|_| Damaged)
}

impl PduGroups {
    /// Number of events held.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Appends the PDU of the next event (`state`: a state event's); a
    /// group filled by it is compressed.
    pub(super) fn push(&mut self, raw: &str, state: bool) {
        let (word, bit) = (self.len / 64, self.len % 64);
        if word == self.state.len() {
            self.state.push(0);
            self.state_before.push(u32::try_from(self.seqs[1].ends.len()).expect("under 2^32 events"));
        }
        self.state[word] |= u64::from(state) << bit;
        self.seqs[usize::from(state)].push(raw);
        self.len += 1;
    }

    /// State events among the first `i` events (`i` at most `len`).
    fn states_before(&self, i: usize) -> usize {
        let (word, bit) = (i / 64, i % 64);
        match self.state_before.get(word) {
            Some(&before) => before as usize + (self.state[word] & ((1u64 << bit) - 1)).count_ones() as usize,
            None => self.seqs[1].ends.len(),
        }
    }

    /// Event `i`'s sequence, and its place there.
    fn place(&self, i: usize) -> (usize, usize) {
        let before = self.states_before(i);
        match self.state[i / 64] >> (i % 64) & 1 {
            1 => (1, before),
            _ => (0, i - before),
        }
    }

    /// The PDU of event `i`: borrowed from an open group, or a slice of
    /// its full group decompressed.
    pub(super) fn get(&self, i: usize) -> Result<GroupText<'_>, Damaged> {
        let (s, n) = self.place(i);
        let seq = &self.seqs[s];
        let (group, at) = (n / GROUP, seq.range(n));
        if group == seq.sealed.len() {
            return Ok(GroupText::Open(&seq.open[at]));
        }
        let mut cache = self.cache.borrow_mut();
        let text = match cache.iter().position(|(k, _)| *k == (s, group)) {
            Some(p) => {
                let hit = cache.remove(p);
                cache.insert(0, hit.clone());
                hit.1
            }
            None => {
                let text = Arc::new(decompress(&seq.sealed[group])?);
                cache.insert(0, ((s, group), text.clone()));
                let mut bytes = 0;
                let keep = cache.iter().take(CACHED).take_while(|(_, t)| {
                    bytes += t.len();
                    bytes <= CACHED_BYTES
                });
                let keep = keep.count().max(1);
                cache.truncate(keep);
                text
            }
        };
        if text.get(at.clone()).is_none() {
            return Err(Damaged);
        }
        Ok(GroupText::Sealed(text, at))
    }

    /// Keeps the first `len` events' PDUs (a full group cut into is
    /// decompressed and open again).
    ///
    /// # Errors
    /// A group to open again could not be decompressed.
    pub(super) fn truncate(&mut self, len: usize) -> Result<(), Damaged> {
        if len >= self.len {
            return Ok(());
        }
        let state = self.states_before(len);
        self.seqs[1].truncate(state)?;
        self.seqs[0].truncate(len - state)?;
        let words = len.div_ceil(64);
        self.state.truncate(words);
        self.state_before.truncate(words);
        if len % 64 != 0 {
            self.state[words - 1] &= (1u64 << (len % 64)) - 1;
        }
        self.len = len;
        let seqs = &self.seqs;
        self.cache.borrow_mut().retain(|((s, g), _)| *g < seqs[*s].sealed.len());
        Ok(())
    }

    /// (bytes held, bytes of PDU text held) for memory accounting.
    pub(super) fn footprint(&self) -> (usize, usize) {
        let [a, b] = [self.seqs[0].footprint(), self.seqs[1].footprint()];
        let cached: usize = self.cache.borrow().iter().map(|(_, t)| t.len()).sum();
        let bits = (self.state.capacity() * 8) + self.state_before.capacity() * 4;
        (a.0 + b.0 + cached + bits, a.1 + b.1)
    }
}

/// A PDU read from [`PduGroups`].
#[derive(Clone, Debug)]
pub(super) enum GroupText<'a> {
    /// In a group being filled.
    Open(&'a str),
    /// A slice of a full group's text.
    Sealed(Arc<String>, std::ops::Range<usize>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &GroupText<'_>) -> String {
        match t {
            GroupText::Open(s) => (*s).to_owned(),
            GroupText::Sealed(s, at) => s[at.clone()].to_owned(),
        }
    }

    /// Every PDU reads back as pushed, state events' and others', from
    /// open and full groups, through cuts into full groups and open ones
    /// (at and off word and group boundaries) and pushes after them; full
    /// groups are held compressed.
    #[test]
    fn pdus_read_back_through_groups_and_cuts() {
        let pdu =
            |i: usize, state: bool| format!("{{\"n\":{i},\"state\":{state},\"body\":\"{}\"}}", "é".repeat(i % 50));
        // State events in runs and alone, as in a room.
        let is_state = |i: usize| i % 7 == 0 || (100..140).contains(&(i % 400));
        let mut g = PduGroups::default();
        let mut held: Vec<String> = Vec::new();
        let check = |g: &PduGroups, held: &[String]| {
            assert_eq!(g.len(), held.len());
            // Out of order, so that the cache is missed and hit.
            for i in (0..held.len()).rev().chain(0..held.len()).step_by(3) {
                assert_eq!(text(&g.get(i).unwrap()), held[i], "event {i}");
            }
        };
        for i in 0..1000 {
            g.push(&pdu(i, is_state(i)), is_state(i));
            held.push(pdu(i, is_state(i)));
        }
        check(&g, &held);
        assert!(g.seqs.iter().all(|s| s.sealed.len() > 3), "both sequences have full groups");
        let (_, text_bytes) = g.footprint();
        assert_eq!(text_bytes, held.iter().map(String::len).sum::<usize>());
        let compressed: usize = g.seqs.iter().flat_map(|s| &s.sealed).map(|c| c.len()).sum();
        assert!(compressed * 2 < text_bytes, "compressed: {compressed} for {text_bytes}");
        for cut in [999, 960, 640, 639, 576, 300, 129, 128, 64, 63, 1, 0] {
            g.truncate(cut).unwrap();
            held.truncate(cut);
            check(&g, &held);
            for i in cut..cut + 70 {
                let state = is_state(i * 3);
                g.push(&format!("again {i} {state}"), state);
                held.push(format!("again {i} {state}"));
            }
            check(&g, &held);
        }
    }

    /// Decompressed groups are kept by count and by bytes: groups of big
    /// PDUs (the raw cap is far above a typical PDU) do not pile up.
    #[test]
    fn the_cache_is_bounded_by_bytes() {
        let mut g = PduGroups::default();
        let big = |i: usize| format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(100_000));
        for i in 0..4 * GROUP {
            g.push(&big(i), false);
        }
        for i in [0, GROUP, 2 * GROUP, 1] {
            assert_eq!(text(&g.get(i).unwrap()), big(i));
            assert_eq!(g.cache.borrow().len(), 1, "one 3 MB group kept");
        }
        let mut g = PduGroups::default();
        for i in 0..20 * GROUP {
            g.push(&format!("{{\"n\":{i}}}"), i % 2 == 0);
        }
        for i in (0..20 * GROUP).step_by(GROUP / 2 + 1) {
            assert_eq!(text(&g.get(i).unwrap()), format!("{{\"n\":{i}}}"));
        }
        assert_eq!(g.cache.borrow().len(), CACHED);
    }
}
