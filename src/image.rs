//! A room's image: its engine tables written into its page store, so that a
//! host reopens the room by reading them back instead of replaying its log.
//!
//! Replaying a log verifies nothing again, but it still parses every PDU,
//! runs the auth rules, resolves state at every merge and rebuilds every
//! index: O(room) work on each cold start (about 6 s for a 150,000-event
//! room in the Worker). An image holds the result of that work: the event
//! table, the event IDs of its state events and of its last, open block
//! (the PDUs are rows of [`Table::Pdu`] already, and the IDs of each full
//! block rows of [`Table::Ids`], named here by key), the prev/auth links, the interned names and
//! state keys, the state sets and their shared chunks, the auth-chain index,
//! the resolutions, extremities, redactions and the partial-DAG bookkeeping
//! (pending, unplaced prev events, deferred events). Caches are not written:
//! they fill again as queries run. Reading an image back decodes arrays;
//! the host then replays only the log records written after it.
//!
//! Layout, in the page store's [`Table::Image`]:
//!
//! * `meta`: JSON [`ImageInfo`] naming the current generation;
//! * `{generation}/{part}`: the image's bytes, cut into parts of
//!   [`PART_BYTES`] (a Durable Object's SQLite rows hold at most 2 MB).
//!
//! A new image is written under the next generation, then `meta` is
//! switched to it, then the previous generation's parts are deleted: a
//! host that stops half way leaves the previous image whole (and the Durable
//! Object commits the whole synchronous write at once anyway).
//!
//! Every count and index read back is checked (a corrupt image is an
//! [`ImageError`], never a panic or an oversized allocation): the log stays
//! the source of truth, and a host that cannot read an image replays the log.
//!
//! What a query needs first is read as it is, and the rest is built on
//! first use: the event ID index is a sorted array of ID hashes (format 4),
//! the states are kept as chunk numbers and each chunk as it was written,
//! its change against an earlier one at most
//! [`MAX_CHAIN`](crate::state_set::MAX_CHAIN) changes from one written whole
//! (format 5), and the resolutions as numbers, each built when first asked
//! for. Format 6: the IDs of a full block's events that are not state
//! events are not in the image (only its row's key), nor held once read.
//! Format 7: each event's links follow its record (there is no link
//! arena: a room keeps a block's links with the block), and the flags of
//! events referenced as a prev event are bits. Format 8: a full block
//! whose packing is a row of the page store (`Table::Blocks`) is written as
//! that row's key, its timeline's timestamps and its state events' records
//! alone; the packed blocks' name table in number order (the rows hold
//! those numbers); each forward extremity with the state after it, and the
//! timeline's least depth (none of them read from events, which may be
//! paged). Format 9: the ID index's entries of settled messages are rows
//! of the page store (`Table::IdBuckets`): the image lists the entries held
//! in memory, then the buckets' keys and lengths and their Bloom filter.
//! Format 10: the states' pools (state chunks' entries, chunk lists) are
//! segments, the full ones rows of the page store (`Table::StatePools`):
//! the image lists their keys and the values held, then each chunk's recipe
//! and each state's list as counts of those values.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::pages::{PageError, PageStore, Table};

/// Bytes per part of an image (each part is one row of [`Table::Image`]).
pub const PART_BYTES: usize = 1 << 20;

/// The image format this build writes and reads.
pub const FORMAT: u32 = 10;

/// What an image holds: the `meta` row of [`Table::Image`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageInfo {
    /// [`FORMAT`] when it was written.
    pub format: u32,
    /// Which parts are current (`{generation}/{part}`).
    pub generation: u64,
    /// Number of parts.
    pub parts: u32,
    /// Bytes in all parts.
    pub bytes: u64,
    /// The host's log position the image was taken at: the room is the one
    /// its first `log_length` records give; records from there on are
    /// replayed after the image is read.
    pub log_length: u64,
    /// Events in the room.
    pub events: u64,
    /// The room version.
    pub room_version: String,
}

/// An image could not be written or read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// The page store failed.
    #[error(transparent)]
    Store(#[from] PageError),
    /// The room keeps its PDU texts in memory: an image is only written
    /// beside paged PDUs (it holds event IDs, not PDUs).
    #[error("the room's PDUs are not paged: no image is written for it")]
    NotPaged,
    /// A batch is open (images are taken between batches).
    #[error("a batch is open: an image is taken between batches")]
    BatchOpen,
    /// The image was written by another format.
    #[error("the image is of format {0}; this build reads format {FORMAT}")]
    Format(u32),
    /// The image's bytes are not what was written.
    #[error("the image is corrupt: {0}")]
    Corrupt(String),
}

fn corrupt(what: impl Into<String>) -> ImageError {
    ImageError::Corrupt(what.into())
}

const META_KEY: &str = "meta";

fn part_key(generation: u64, part: u32) -> String {
    format!("{generation}/{part:06}")
}

/// The image a page store holds, if any.
///
/// # Errors
/// The store failed, or its `meta` row is not an image's.
pub fn info(store: &dyn PageStore) -> Result<Option<ImageInfo>, ImageError> {
    let Some(bytes) = store.get(Table::Image, META_KEY)? else { return Ok(None) };
    let info: ImageInfo = serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("meta: {e}")))?;
    Ok(Some(info))
}

/// Writes an image's bytes as parts of a new generation.
pub(crate) struct Writer<'s> {
    store: &'s mut dyn PageStore,
    generation: u64,
    buf: Vec<u8>,
    parts: u32,
    bytes: u64,
    failed: Option<PageError>,
}

impl<'s> Writer<'s> {
    pub(crate) fn new(store: &'s mut dyn PageStore, generation: u64) -> Self {
        // One buffer for the whole image: a part, and the few bytes of a
        // value that runs past it.
        Self { store, generation, buf: Vec::with_capacity(PART_BYTES + 8), parts: 0, bytes: 0, failed: None }
    }

    fn flush(&mut self) {
        while self.buf.len() >= PART_BYTES {
            self.put_part(PART_BYTES);
        }
    }

    /// Writes the buffer's first `n` bytes as the next part.
    fn put_part(&mut self, n: usize) {
        if self.failed.is_none() {
            if let Err(e) = self.store.put(Table::Image, &part_key(self.generation, self.parts), &self.buf[..n]) {
                self.failed = Some(e);
            }
        }
        self.bytes += n as u64;
        self.parts += 1;
        self.buf.drain(..n);
    }

    pub(crate) fn raw(&mut self, b: &[u8]) {
        let mut b = b;
        while !b.is_empty() {
            let room = PART_BYTES - self.buf.len();
            let (now, later) = b.split_at(room.min(b.len()));
            self.buf.extend_from_slice(now);
            self.flush();
            b = later;
        }
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
        self.flush();
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.raw(&v.to_le_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.raw(&v.to_le_bytes());
    }

    pub(crate) fn i64(&mut self, v: i64) {
        self.raw(&v.to_le_bytes());
    }

    /// A count (written as `u64`).
    pub(crate) fn len(&mut self, n: usize) {
        self.u64(n as u64);
    }

    /// Bytes with their length.
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.raw(b);
    }

    pub(crate) fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    pub(crate) fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
        }
    }

    pub(crate) fn strs<S: AsRef<str>>(&mut self, v: &[S]) {
        self.len(v.len());
        for s in v {
            self.str(s.as_ref());
        }
    }

    /// `u32`s with their count.
    pub(crate) fn u32s(&mut self, v: impl ExactSizeIterator<Item = u32>) {
        self.len(v.len());
        for x in v {
            self.buf.extend_from_slice(&x.to_le_bytes());
            if self.buf.len() >= PART_BYTES {
                self.flush();
            }
        }
    }

    /// `u64`s with their count.
    pub(crate) fn u64s(&mut self, v: &[u64]) {
        self.u64s_from(v.len(), v.iter().copied());
    }

    /// `n` u64s from `items` (which must give exactly `n`), as
    /// [`u64s`](Self::u64s) writes a slice.
    pub(crate) fn u64s_from(&mut self, n: usize, items: impl Iterator<Item = u64>) {
        self.len(n);
        let mut written = 0;
        for x in items {
            self.buf.extend_from_slice(&x.to_le_bytes());
            written += 1;
            if self.buf.len() >= PART_BYTES {
                self.flush();
            }
        }
        assert_eq!(written, n, "u64s_from: as many items as said");
    }

    /// Writes the last part; the parts written and their bytes, or the
    /// store's error and the number of parts to discard.
    pub(crate) fn finish(mut self) -> Result<(u32, u64), (PageError, u32)> {
        if !self.buf.is_empty() {
            self.put_part(self.buf.len());
        }
        match self.failed {
            Some(e) => Err((e, self.parts)),
            None => Ok((self.parts, self.bytes)),
        }
    }
}

/// Reads an image's bytes back, a part at a time.
pub(crate) struct Reader<'s> {
    store: &'s dyn PageStore,
    info: &'s ImageInfo,
    next_part: u32,
    buf: Vec<u8>,
    pos: usize,
    /// Bytes not yet read (parts not loaded and the rest of `buf`).
    left: u64,
}

impl<'s> Reader<'s> {
    pub(crate) fn new(store: &'s dyn PageStore, info: &'s ImageInfo) -> Self {
        Self { store, info, next_part: 0, buf: Vec::new(), pos: 0, left: info.bytes }
    }

    /// The next part, as the store hands it over.
    fn next_part(&mut self) -> Result<Vec<u8>, ImageError> {
        if self.next_part >= self.info.parts {
            return Err(corrupt("it ends early"));
        }
        let key = part_key(self.info.generation, self.next_part);
        let part =
            self.store.get(Table::Image, &key)?.ok_or(PageError::Missing { table: Table::Image, key: key.clone() })?;
        if part.is_empty() || part.len() > PART_BYTES {
            return Err(corrupt(format!("part {key} holds {} bytes", part.len())));
        }
        self.next_part += 1;
        Ok(part)
    }

    /// Makes `n` bytes available in `buf` from `pos`: a part read whole
    /// becomes the buffer as it is; only what straddles two parts is copied.
    fn fill(&mut self, n: usize) -> Result<(), ImageError> {
        while self.buf.len() - self.pos < n {
            let part = self.next_part()?;
            if self.pos == self.buf.len() {
                self.buf = part;
            } else {
                self.buf.drain(..self.pos);
                self.buf.extend_from_slice(&part);
            }
            self.pos = 0;
        }
        Ok(())
    }

    /// Between 1 and `n` of the next bytes (`n` ≥ 1, at most what is left):
    /// what the buffer holds, or the next part's first bytes, never copied
    /// to join two parts. For arrays, which are most of an image.
    fn take_some(&mut self, n: usize) -> Result<&[u8], ImageError> {
        if n as u64 > self.left {
            return Err(corrupt("it ends early"));
        }
        if self.pos == self.buf.len() {
            self.fill(1)?;
        }
        let k = n.min(self.buf.len() - self.pos);
        self.left -= k as u64;
        let at = self.pos;
        self.pos += k;
        Ok(&self.buf[at..at + k])
    }

    /// The next `n` bytes (at most [`PART_BYTES`]), e.g. one fixed-width record.
    pub(crate) fn take(&mut self, n: usize) -> Result<&[u8], ImageError> {
        if n as u64 > self.left {
            return Err(corrupt("it ends early"));
        }
        self.fill(n)?;
        self.left -= n as u64;
        let at = self.pos;
        self.pos += n;
        Ok(&self.buf[at..at + n])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ImageError> {
        Ok(self.take(N)?.try_into().expect("N bytes taken"))
    }

    pub(crate) fn u8(&mut self) -> Result<u8, ImageError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, ImageError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, ImageError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub(crate) fn i64(&mut self) -> Result<i64, ImageError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// A count of items of at least `item_bytes` each: never more than the
    /// bytes left could hold (so a corrupt count cannot allocate more).
    pub(crate) fn len(&mut self, item_bytes: usize) -> Result<usize, ImageError> {
        let n = self.u64()?;
        if n.saturating_mul(item_bytes.max(1) as u64) > self.left {
            return Err(corrupt(format!("a count of {n} items of {item_bytes} bytes with {} bytes left", self.left)));
        }
        usize::try_from(n).map_err(|_| corrupt("a count past usize"))
    }

    pub(crate) fn bytes(&mut self) -> Result<Vec<u8>, ImageError> {
        let n = self.len(1)?;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let some = self.take_some(n - out.len())?;
            out.extend_from_slice(some);
        }
        Ok(out)
    }

    pub(crate) fn str(&mut self) -> Result<String, ImageError> {
        String::from_utf8(self.bytes()?).map_err(|_| corrupt("a string is not UTF-8"))
    }

    pub(crate) fn opt_str(&mut self) -> Result<Option<String>, ImageError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.str()?)),
            t => Err(corrupt(format!("an optional string tagged {t}"))),
        }
    }

    pub(crate) fn strs(&mut self) -> Result<Vec<Box<str>>, ImageError> {
        let n = self.len(8)?;
        (0..n).map(|_| self.str().map(String::into_boxed_str)).collect()
    }

    /// `n` items of `N` bytes, converted as they lie in the parts (arrays
    /// are most of an image: no per-item bounds checks); an item that
    /// straddles two parts is joined on its own.
    fn items_into<const N: usize, T>(&mut self, from: fn([u8; N]) -> T, out: &mut Vec<T>) -> Result<(), ImageError> {
        let n = self.len(N)?;
        out.clear();
        out.reserve(n);
        self.items_onto(n, from, out)
    }

    /// `n` more items onto `out`.
    fn items_onto<const N: usize, T>(
        &mut self,
        n: usize,
        from: fn([u8; N]) -> T,
        out: &mut Vec<T>,
    ) -> Result<(), ImageError> {
        let n = out.len() + n;
        while out.len() < n {
            let whole = (self.buf.len() - self.pos) / N;
            if whole == 0 {
                let item = self.array::<N>()?;
                out.push(from(item));
                continue;
            }
            let bytes = self.take_some(whole.min(n - out.len()) * N)?;
            out.extend(bytes.chunks_exact(N).map(|c| from(c.try_into().expect("N bytes"))));
        }
        Ok(())
    }

    pub(crate) fn u32s(&mut self) -> Result<Vec<u32>, ImageError> {
        let mut v = Vec::new();
        self.items_into(u32::from_le_bytes, &mut v)?;
        Ok(v)
    }

    /// [`u32s`](Self::u32s) into `out` (cleared first; its allocation reused).
    pub(crate) fn u32s_into(&mut self, out: &mut Vec<u32>) -> Result<(), ImageError> {
        self.items_into(u32::from_le_bytes, out)
    }

    /// `n` little-endian u64s into `out` (cleared first; its allocation reused).
    pub(crate) fn u64s_into(&mut self, out: &mut Vec<u64>) -> Result<(), ImageError> {
        self.items_into(u64::from_le_bytes, out)
    }

    /// Little-endian u64s written by `Writer::u64s`, in chunks of `chunk`
    /// (the last shorter): never one allocation of them all.
    pub(crate) fn u64s_chunked(&mut self, chunk: usize) -> Result<Vec<Box<[u64]>>, ImageError> {
        let mut left = self.len(8)?;
        let mut chunks = Vec::with_capacity(left.div_ceil(chunk.max(1)));
        while left > 0 {
            let n = left.min(chunk.max(1));
            let mut c = Vec::with_capacity(n);
            self.items_onto(n, u64::from_le_bytes, &mut c)?;
            chunks.push(c.into_boxed_slice());
            left -= n;
        }
        Ok(chunks)
    }

    /// Checks that every byte was read.
    pub(crate) fn finish(self) -> Result<(), ImageError> {
        if self.left != 0 || self.next_part != self.info.parts {
            return Err(corrupt(format!("{} bytes are left unread", self.left)));
        }
        Ok(())
    }
}

/// Writes `meta` for a new image and deletes the parts of the previous one.
pub(crate) fn commit(
    store: &mut dyn PageStore,
    info: &ImageInfo,
    previous: Option<&ImageInfo>,
) -> Result<(), PageError> {
    let meta = serde_json::to_vec(info).expect("an ImageInfo serialises");
    store.put(Table::Image, META_KEY, &meta)?;
    if let Some(old) = previous {
        for part in 0..old.parts {
            store.delete(Table::Image, &part_key(old.generation, part))?;
        }
    }
    Ok(())
}

/// Deletes the parts a failed write left (a generation `meta` never named).
pub(crate) fn discard(store: &mut dyn PageStore, generation: u64, parts: u32) {
    for part in 0..parts {
        let _ = store.delete(Table::Image, &part_key(generation, part));
    }
}

/// A `u32` read back as an index into a table of `len` items.
/// Numbers shared values (`Arc`s held by many maps) as a writer meets them,
/// each once, by address: an image writes each once and refers to it by
/// number.
pub(crate) struct Numbering<'a, T: ?Sized> {
    numbers: std::collections::HashMap<usize, u32>,
    /// The values in number order.
    pub(crate) table: Vec<&'a Arc<T>>,
}

impl<T: ?Sized> Default for Numbering<'_, T> {
    fn default() -> Self {
        Self { numbers: std::collections::HashMap::new(), table: Vec::new() }
    }
}

impl<'a, T: ?Sized> Numbering<'a, T> {
    fn addr(v: &Arc<T>) -> usize {
        Arc::as_ptr(v) as *const () as usize
    }

    /// Gives `v` the next number unless it has one.
    pub(crate) fn number(&mut self, v: &'a Arc<T>) {
        let table = &mut self.table;
        self.numbers.entry(Self::addr(v)).or_insert_with(|| {
            table.push(v);
            (table.len() - 1) as u32
        });
    }

    /// The number of a value numbered before.
    pub(crate) fn of(&self, v: &Arc<T>) -> u32 {
        self.numbers[&Self::addr(v)]
    }
}

pub(crate) fn index(v: u32, len: usize, what: &str) -> Result<u32, ImageError> {
    if (v as usize) < len {
        Ok(v)
    } else {
        Err(corrupt(format!("{what} {v} is out of range ({len})")))
    }
}

/// Writes with `write` into a fresh in-memory store and reads it back with
/// `read`, which must read every byte (for the codecs' unit tests).
#[cfg(test)]
pub(crate) fn round_trip<R>(
    write: impl FnOnce(&mut Writer<'_>),
    read: impl FnOnce(&mut Reader<'_>) -> Result<R, ImageError>,
) -> Result<R, ImageError> {
    let mut store = crate::pages::MemoryPages::new();
    let mut w = Writer::new(&mut store, 1);
    write(&mut w);
    let (parts, bytes) = w.finish().map_err(|(e, _)| e)?;
    let info =
        ImageInfo { format: FORMAT, generation: 1, parts, bytes, log_length: 0, events: 0, room_version: "10".into() };
    let mut r = Reader::new(&store, &info);
    let out = read(&mut r)?;
    r.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Arrays, byte strings and fixed-width values that straddle parts at
    /// odd offsets read back as written.
    #[test]
    fn values_across_parts_read_back_as_written() {
        let u64s: Vec<u64> = (0..300_000u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect();
        let blob: Vec<u8> = (0..1_500_001u32).map(|i| (i % 251) as u8).collect();
        let u32s: Vec<u32> = (0..100_000u32).map(|i| i ^ 0xdead_beef).collect();
        let (parts, read) = {
            let mut store = crate::pages::MemoryPages::new();
            let mut w = Writer::new(&mut store, 1);
            w.u8(7);
            w.u64s(&u64s);
            w.u32(42);
            w.bytes(&blob);
            w.u32s(u32s.iter().copied());
            w.str("the end");
            let (parts, bytes) = w.finish().map_err(|(e, _)| e).unwrap();
            let info = ImageInfo {
                format: FORMAT,
                generation: 1,
                parts,
                bytes,
                log_length: 0,
                events: 0,
                room_version: "10".into(),
            };
            let mut r = Reader::new(&store, &info);
            let mut back64 = Vec::new();
            let mut back32 = Vec::new();
            let read = (
                r.u8().unwrap(),
                r.u64s_into(&mut back64).map(|_| back64).unwrap(),
                r.u32().unwrap(),
                r.bytes().unwrap(),
                {
                    r.u32s_into(&mut back32).unwrap();
                    back32
                },
                r.str().unwrap(),
            );
            r.finish().unwrap();
            (parts, read)
        };
        assert!(parts >= 4, "{parts} parts");
        assert_eq!(read, (7, u64s, 42, blob, u32s, "the end".to_owned()));
    }
}
